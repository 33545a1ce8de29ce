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
    }
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
