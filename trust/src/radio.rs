//! What a radio batch's own sightings say about it: where and how it moved, what it claimed
//! about moving, and whether one emitter was "heard" farther apart than any emitter reaches.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use covermap_domain::LatLon;
use serde::{Deserialize, Serialize};

use crate::local::{Plane, dist, median};
use crate::round3;

/// A step between two scan positions this long and this fast is a jump, not a drive.
const LEAP_M: f64 = 300.0;
const LEAP_SPEED_MPS: f64 = 70.0;
/// A cell reading this loud (dBm) is heard close to its site, where a few metres more change it
/// by a few dB, not by the 40 dB that would take it below any phone's sensitivity.
const LOUD_CELL_DBM: i32 = -70;
/// Scans this close (metres) and this soon after one another (seconds) hear the same loud
/// cells.
const ADJACENT_SCAN_M: f64 = 100.0;
const ADJACENT_SCAN_S: f64 = 30.0;

/// One emitter heard at one place and time, as the worker kept it.
#[derive(Debug, Clone, Copy)]
pub struct Sighting<'a> {
    pub at: DateTime<Utc>,
    pub pos: LatLon,
    /// The speed the device reported with the position, m/s.
    pub speed_mps: Option<f64>,
    pub emitter: &'a str,
    /// `gsm`, `wcdma`, `lte`, `nr`, `wifi` or `bluetooth`.
    pub technology: &'a str,
    pub signal_dbm: Option<i32>,
}

/// What a radio batch's sightings say about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchMeasures {
    pub sightings: u32,
    /// Distinct scan positions (time and place).
    pub positions: u32,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub duration_s: f64,
    /// The median scan position, and the 95th percentile of the distances from it.
    pub centre: Option<LatLon>,
    pub radius_m: f64,
    /// The median speed the device reported, where it reported any.
    pub claimed_speed_mps: Option<f64>,
    /// Steps between consecutive scan positions of 300 m or more at over 70 m/s.
    pub leaps: u32,
    pub steps: u32,
    /// Readings refused because their signal is impossible for their technology.
    pub impossible_signals: u32,
    /// The widest span (bounding-box diagonal) over which one cell, and one Wi-Fi or Bluetooth
    /// emitter, was heard within the batch.
    pub cell_spread_m: f64,
    pub wifi_spread_m: f64,
    /// Of the operators (per technology) it heard six or more cells of, the highest share of
    /// distinct area codes (LAC, TAC) among those cells. A network gives one area code to
    /// dozens of neighbouring cells; made-up ids scatter them.
    #[serde(default)]
    pub area_code_share: f64,
    /// Loud cell readings (−70 dBm or stronger) with a scan of the same technology just before
    /// or after, within 100 m and 30 s; and how many of them that scan (or those scans) did not
    /// hear at all. A cell that loud is a few hundred metres from its site at most: the next
    /// scan, metres away, hears it too. A far cell pasted into scans "as if beside the phone"
    /// flickers in and out.
    #[serde(default)]
    pub loud_cells: u32,
    #[serde(default)]
    pub vanishing_loud_cells: u32,
}

/// Measures a batch from its kept sightings and the count of readings refused for an
/// impossible signal.
pub fn measure(sightings: &[Sighting<'_>], impossible_signals: u32) -> BatchMeasures {
    let mut positions: Vec<(DateTime<Utc>, LatLon)> =
        sightings.iter().map(|s| (s.at, s.pos)).collect();
    positions.sort_by(|a, b| {
        (a.0, a.1.lat, a.1.lon)
            .partial_cmp(&(b.0, b.1.lat, b.1.lon))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    positions.dedup();
    let Some(first) = positions.first() else {
        return BatchMeasures {
            sightings: 0,
            positions: 0,
            start: None,
            end: None,
            duration_s: 0.0,
            centre: None,
            radius_m: 0.0,
            claimed_speed_mps: None,
            leaps: 0,
            steps: 0,
            impossible_signals,
            cell_spread_m: 0.0,
            wifi_spread_m: 0.0,
            area_code_share: 0.0,
            loud_cells: 0,
            vanishing_loud_cells: 0,
        };
    };
    let plane = Plane::around(first.1);
    let xy: Vec<[f64; 2]> = positions.iter().map(|p| plane.xy(p.1)).collect();
    let mut lats: Vec<f64> = positions.iter().map(|p| p.1.lat).collect();
    let mut lons: Vec<f64> = positions.iter().map(|p| p.1.lon).collect();
    let centre = LatLon {
        lat: (median(&mut lats) * 1e6).round() / 1e6,
        lon: (median(&mut lons) * 1e6).round() / 1e6,
    };
    let c = plane.xy(centre);
    let mut d: Vec<f64> = xy.iter().map(|p| dist(*p, c)).collect();
    d.sort_by(f64::total_cmp);
    let radius = d
        .get(((d.len() as f64 * 0.95).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    let mut leaps = 0;
    for i in 1..positions.len() {
        let step = dist(xy[i - 1], xy[i]);
        let dt = (positions[i].0 - positions[i - 1].0).as_seconds_f64();
        if step >= LEAP_M && (dt <= 0.0 || step / dt >= LEAP_SPEED_MPS) {
            leaps += 1;
        }
    }
    let mut speeds: Vec<f64> = sightings
        .iter()
        .filter_map(|s| s.speed_mps)
        .filter(|v| v.is_finite())
        .collect();
    let claimed = (!speeds.is_empty()).then(|| round3(median(&mut speeds)));
    // Bounding boxes per emitter: [min x, min y, max x, max y].
    let mut boxes: HashMap<&str, (bool, [f64; 4])> = HashMap::new();
    for s in sightings {
        let p = plane.xy(s.pos);
        let cell = !matches!(s.technology, "wifi" | "bluetooth");
        let e = boxes
            .entry(s.emitter)
            .or_insert((cell, [p[0], p[1], p[0], p[1]]));
        e.1 = [
            e.1[0].min(p[0]),
            e.1[1].min(p[1]),
            e.1[2].max(p[0]),
            e.1[3].max(p[1]),
        ];
    }
    let (mut cell_spread, mut wifi_spread) = (0.0f64, 0.0f64);
    for (cell, b) in boxes.values() {
        let span = (b[2] - b[0]).hypot(b[3] - b[1]);
        if *cell {
            cell_spread = cell_spread.max(span);
        } else {
            wifi_spread = wifi_spread.max(span);
        }
    }
    let end = positions.last().map(|p| p.0);
    let (loud_cells, vanishing_loud_cells) = vanishing_loud_cells(sightings, &plane);
    BatchMeasures {
        sightings: sightings.len() as u32,
        positions: positions.len() as u32,
        start: Some(first.0),
        end,
        duration_s: round3(end.map_or(0.0, |e| (e - first.0).as_seconds_f64())),
        centre: Some(centre),
        radius_m: round3(radius),
        claimed_speed_mps: claimed,
        leaps,
        steps: positions.len().saturating_sub(1) as u32,
        impossible_signals,
        cell_spread_m: round3(cell_spread),
        wifi_spread_m: round3(wifi_spread),
        area_code_share: round3(area_code_share(sightings)),
        loud_cells,
        vanishing_loud_cells,
    }
}

/// See [`BatchMeasures::loud_cells`]: (loud readings with an adjacent scan, those vanishing).
fn vanishing_loud_cells(sightings: &[Sighting<'_>], plane: &Plane) -> (u32, u32) {
    // Cell scans in time order: (time, position, technology) → (emitter, signal).
    let mut scans: std::collections::BTreeMap<(DateTime<Utc>, i64, i64), Vec<&Sighting<'_>>> =
        std::collections::BTreeMap::new();
    for s in sightings {
        if matches!(s.technology, "wifi" | "bluetooth") {
            continue;
        }
        let key = (
            s.at,
            (s.pos.lat * 1e7).round() as i64,
            (s.pos.lon * 1e7).round() as i64,
        );
        scans.entry(key).or_default().push(s);
    }
    let scans: Vec<(DateTime<Utc>, [f64; 2], Vec<&Sighting<'_>>)> = scans
        .into_iter()
        .map(|((at, _, _), v)| (at, plane.xy(v[0].pos), v))
        .collect();
    let (mut loud, mut vanishing) = (0, 0);
    for (i, (at, xy, heard)) in scans.iter().enumerate() {
        let adjacent: Vec<&Vec<&Sighting<'_>>> = [i.checked_sub(1), Some(i + 1)]
            .into_iter()
            .flatten()
            .filter_map(|j| scans.get(j))
            .filter(|(t, p, _)| {
                dist(*p, *xy) <= ADJACENT_SCAN_M
                    && (*t - *at).as_seconds_f64().abs() <= ADJACENT_SCAN_S
            })
            .map(|(_, _, v)| v)
            .collect();
        for s in heard {
            if s.signal_dbm.is_none_or(|x| x < LOUD_CELL_DBM) {
                continue;
            }
            let same_tech: Vec<&&Vec<&Sighting<'_>>> = adjacent
                .iter()
                .filter(|v| v.iter().any(|o| o.technology == s.technology))
                .collect();
            if same_tech.is_empty() {
                continue;
            }
            loud += 1;
            if !same_tech
                .iter()
                .any(|v| v.iter().any(|o| o.emitter == s.emitter))
            {
                vanishing += 1;
            }
        }
    }
    (loud, vanishing)
}

/// See [`BatchMeasures::area_code_share`].
fn area_code_share(sightings: &[Sighting<'_>]) -> f64 {
    // (technology, mcc, mnc) → cells → their area codes.
    let mut groups: HashMap<(&str, &str, &str), HashMap<&str, &str>> = HashMap::new();
    for s in sightings {
        let mut parts = s.emitter.split(':');
        let (Some(tech), Some(mcc), Some(mnc), Some(area)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !matches!(tech, "gsm" | "wcdma" | "lte" | "nr") {
            continue;
        }
        groups
            .entry((tech, mcc, mnc))
            .or_default()
            .insert(s.emitter, area);
    }
    groups
        .values()
        .filter(|cells| cells.len() >= 6)
        .map(|cells| {
            let codes: std::collections::HashSet<&&str> = cells.values().collect();
            codes.len() as f64 / cells.len() as f64
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn s(
        t: i64,
        lat: f64,
        lon: f64,
        emitter: &'static str,
        speed: Option<f64>,
    ) -> Sighting<'static> {
        Sighting {
            at: Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(t),
            pos: LatLon { lat, lon },
            speed_mps: speed,
            emitter,
            technology: if emitter.starts_with("wifi") {
                "wifi"
            } else {
                "lte"
            },
            signal_dbm: Some(-90),
        }
    }

    #[test]
    fn loud_cells_pasted_into_scans_vanish_from_the_next_ones() {
        const FAR: [&str; 6] = [
            "lte:208:10:1:901",
            "lte:208:10:1:902",
            "lte:208:10:1:903",
            "lte:208:10:1:904",
            "lte:208:10:1:905",
            "lte:208:10:1:906",
        ];
        let mut honest = Vec::new();
        let mut pasted = Vec::new();
        // A drive of 40 scans 30 m and 3 s apart; the serving cell is loud while near its site
        // and heard in every scan, a neighbour fades in and out at −95 dBm.
        for i in 0..40i64 {
            let lat = 43.73 + i as f64 * 0.00027;
            let mut serving = s(i * 3, lat, 7.42, "lte:208:10:1:100", None);
            serving.signal_dbm = Some(-60 - (i / 4) as i32);
            let mut neighbour = s(i * 3, lat, 7.42, "lte:208:10:1:101", None);
            neighbour.signal_dbm = Some(-95);
            honest.push(serving);
            if i % 2 == 0 {
                honest.push(neighbour);
            }
            // The fraud: each scan also "hears" a different far cell at −55 dBm.
            pasted.push(serving);
            let mut far = s(i * 3, lat, 7.42, FAR[i as usize % FAR.len()], None);
            far.signal_dbm = Some(-55);
            pasted.push(far);
        }
        let m = measure(&honest, 0);
        assert!(m.loud_cells >= 30, "{m:?}");
        assert_eq!(m.vanishing_loud_cells, 0, "{m:?}");
        let m = measure(&pasted, 0);
        assert_eq!(m.vanishing_loud_cells, 40, "{m:?}");
        assert_eq!(m.loud_cells, 80, "{m:?}");
        // Scans far apart (a 500 m interval) say nothing about each other.
        let sparse: Vec<_> = pasted
            .iter()
            .map(|x| {
                let mut x = *x;
                x.pos.lat = 43.73 + (x.at.timestamp() % 1000) as f64 * 0.0015;
                x
            })
            .collect();
        assert_eq!(measure(&sparse, 0).loud_cells, 0);
    }

    #[test]
    fn a_parked_phone_claiming_speed_is_measured_as_such() {
        let batch: Vec<_> = (0..60)
            .map(|i| {
                s(
                    i * 10,
                    43.73,
                    7.42 + (i % 3) as f64 * 1e-5,
                    "lte:1",
                    Some(12.0),
                )
            })
            .collect();
        let m = measure(&batch, 0);
        assert!(m.radius_m < 5.0, "{m:?}");
        assert_eq!(m.claimed_speed_mps, Some(12.0));
        assert_eq!(m.duration_s, 590.0);
        assert_eq!(m.leaps, 0);
    }

    #[test]
    fn scattered_area_codes_are_measured() {
        let real: Vec<String> = (0..8)
            .map(|i| format!("lte:208:1:{}:{}", 100 + i / 4, 25600 + i))
            .collect();
        let fake: Vec<String> = (0..8)
            .map(|i| format!("lte:208:1:{}:{}", 7000 + i, 99_000 + i))
            .collect();
        let of = |keys: &[String]| {
            let batch: Vec<Sighting<'_>> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| Sighting {
                    emitter: k.as_str(),
                    ..s(i as i64, 43.7, 7.42, "lte:x", None)
                })
                .collect();
            measure(&batch, 0).area_code_share
        };
        assert_eq!(of(&real), 0.25);
        assert_eq!(of(&fake), 1.0);
        assert_eq!(of(&fake[..5]), 0.0, "too few cells to say");
    }

    #[test]
    fn positions_jumping_kilometres_are_leaps_and_far_sightings_spread() {
        let batch: Vec<_> = (0..10)
            .map(|i| s(i, 43.70 + (i % 2) as f64 * 0.05, 7.42, "wifi:aa", None))
            .collect();
        let m = measure(&batch, 2);
        assert_eq!((m.leaps, m.steps), (9, 9));
        assert!(m.wifi_spread_m > 5000.0 && m.cell_spread_m == 0.0, "{m:?}");
        assert_eq!(m.impossible_signals, 2);
        assert!(measure(&[], 0).centre.is_none());
    }
}
