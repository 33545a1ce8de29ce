//! Replays and copies: an upload compared with earlier ones.
//!
//! Two honest drives of the same street pass the same places, but each at its own pace: the
//! time between them changes along the way (a red light, a slower car), and each receiver's
//! error and each phone's fading are their own. A replay — a real drive uploaded again with its
//! times shifted, a few metres of offset or noise added — passes the same places with the same
//! pace: the time shift between the two stays the same all along. A copied radio batch hears
//! the same emitters at the same places with the same signals, give or take the few dB the
//! copier changed. [`Twin`] measures exactly those three things against the nearest earlier
//! upload: how much of this one lies on it, how steady the time shift is, how close the
//! signals are.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use covermap_domain::{Fix, LatLon};
use serde::{Deserialize, Serialize};

use crate::local::{Plane, dist, mad, median};
use crate::round3;

/// A track print keeps one point every this many seconds.
pub const PRINT_STEP_S: f64 = 2.0;
/// A point of one upload lies on another when one of its points is this close.
const TWIN_RADIUS_M: f64 = 40.0;
/// A radio sighting has a twin when the same emitter was heard this close.
const SIGHTING_RADIUS_M: f64 = 30.0;
/// Fewer shared track points than this say nothing.
const MIN_SHARED: usize = 10;
/// A radio batch may be small (an app sends a few scans at a time): two shared sightings are
/// compared, and the judge holds small batches to a stricter likeness.
const MIN_SHARED_SIGHTINGS: usize = 2;

/// A compact copy of a track, kept to compare later uploads with: `[unix seconds, lat, lon]`
/// every [`PRINT_STEP_S`], positions to a tenth of a metre.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrackPrint {
    pub points: Vec<[f64; 3]>,
}

impl TrackPrint {
    pub fn of(fixes: &[Fix]) -> Self {
        let mut points: Vec<[f64; 3]> = Vec::new();
        let mut last: Option<DateTime<Utc>> = None;
        for f in fixes {
            if last.is_none_or(|l| (f.at - l).as_seconds_f64() >= PRINT_STEP_S) {
                points.push([
                    f.at.timestamp_millis() as f64 / 1000.0,
                    (f.pos.lat * 1e6).round() / 1e6,
                    (f.pos.lon * 1e6).round() / 1e6,
                ]);
                last = Some(f.at);
            }
        }
        Self { points }
    }
}

/// One emitter heard at one place and time, as compared between batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    pub at: DateTime<Utc>,
    pub pos: LatLon,
    pub emitter: String,
    pub signal_dbm: Option<i32>,
}

/// How an upload lies on an earlier one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Twin {
    /// The earlier upload.
    pub upload: i64,
    /// Share of this upload's points (sightings) that lie on the earlier one.
    pub overlap: f64,
    /// The median time shift between the two at shared points, seconds, and its median
    /// absolute deviation: near 0 for a replay, tens of seconds for two honest drives.
    pub shift_s: f64,
    pub shift_mad_s: f64,
    /// The median distance between shared points.
    pub offset_m: f64,
    /// For radio: the median difference of the shared sightings' signals, dB.
    pub signal_diff_db: Option<f64>,
    /// Points (sightings) shared.
    #[serde(default)]
    pub shared: u32,
}

impl Twin {
    /// How much it looks like a copy: lying on the other all along, with a steady shift.
    fn likeness(&self) -> f64 {
        self.overlap / (1.0 + self.shift_mad_s / 5.0)
    }

    /// The most copy-like of `twins`.
    pub fn closest(twins: impl IntoIterator<Item = Twin>) -> Option<Twin> {
        twins.into_iter().max_by(|a, b| {
            a.likeness()
                .total_cmp(&b.likeness())
                .then(b.upload.cmp(&a.upload))
        })
    }
}

/// Buckets of points on a plane, for the nearest point within a radius.
struct Grid {
    size: f64,
    cells: HashMap<(i64, i64), Vec<usize>>,
}

impl Grid {
    fn new(points: &[[f64; 2]], size: f64) -> Self {
        let mut cells: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
        for (i, p) in points.iter().enumerate() {
            cells
                .entry(((p[0] / size).floor() as i64, (p[1] / size).floor() as i64))
                .or_default()
                .push(i);
        }
        Self { size, cells }
    }

    fn near(&self, p: [f64; 2]) -> impl Iterator<Item = usize> + '_ {
        let (cx, cy) = (
            (p[0] / self.size).floor() as i64,
            (p[1] / self.size).floor() as i64,
        );
        (-1..=1)
            .flat_map(move |dx| (-1..=1).map(move |dy| (cx + dx, cy + dy)))
            .filter_map(|k| self.cells.get(&k))
            .flatten()
            .copied()
    }
}

/// How the track `mine` lies on the earlier track `theirs` (upload `upload`); `None` when they
/// share too little to say.
pub fn compare_tracks(mine: &TrackPrint, theirs: &TrackPrint, upload: i64) -> Option<Twin> {
    let first = mine.points.first()?;
    let plane = Plane::around(LatLon {
        lat: first[1],
        lon: first[2],
    });
    let xy = |p: &[f64; 3]| {
        plane.xy(LatLon {
            lat: p[1],
            lon: p[2],
        })
    };
    let their_xy: Vec<[f64; 2]> = theirs.points.iter().map(xy).collect();
    let grid = Grid::new(&their_xy, TWIN_RADIUS_M);
    let mut shifts = Vec::new();
    let mut offsets = Vec::new();
    for p in &mine.points {
        let q = xy(p);
        let nearest = grid
            .near(q)
            .map(|j| (dist(q, their_xy[j]), j))
            .filter(|(d, _)| *d <= TWIN_RADIUS_M)
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((d, j)) = nearest {
            shifts.push(p[0] - time_along(&theirs.points, &their_xy, j, q));
            offsets.push(d);
        }
    }
    twin(upload, mine.points.len(), shifts, offsets, None, MIN_SHARED)
}

/// When the track `points` (at `xy`) passed the place nearest `q`, its point `j` being the
/// nearest: `q` projected onto the legs before and after `j`, the time interpolated along the
/// nearer one. A replay moved sideways or jittered then keeps the very same time shift; the
/// nearest point alone would round it to the print's step.
fn time_along(points: &[[f64; 3]], xy: &[[f64; 2]], j: usize, q: [f64; 2]) -> f64 {
    let mut best = (f64::INFINITY, points[j][0]);
    for (a, b) in [(j.wrapping_sub(1), j), (j, j + 1)] {
        let (Some(pa), Some(pb)) = (xy.get(a), xy.get(b)) else {
            continue;
        };
        let (dx, dy) = (pb[0] - pa[0], pb[1] - pa[1]);
        let len2 = dx * dx + dy * dy;
        let f = if len2 > 1e-9 {
            (((q[0] - pa[0]) * dx + (q[1] - pa[1]) * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let at = [pa[0] + f * dx, pa[1] + f * dy];
        let d = dist(q, at);
        if d < best.0 {
            best = (d, points[a][0] + f * (points[b][0] - points[a][0]));
        }
    }
    best.1
}

/// How the batch `mine` lies on the earlier batch `theirs` (upload `upload`).
pub fn compare_batches(mine: &[Heard], theirs: &[Heard], upload: i64) -> Option<Twin> {
    let first = mine.first()?;
    let plane = Plane::around(first.pos);
    let mut by_emitter: HashMap<&str, Vec<([f64; 2], &Heard)>> = HashMap::new();
    for h in theirs {
        by_emitter
            .entry(h.emitter.as_str())
            .or_default()
            .push((plane.xy(h.pos), h));
    }
    let mut shifts = Vec::new();
    let mut offsets = Vec::new();
    let mut signals = Vec::new();
    for h in mine {
        let q = plane.xy(h.pos);
        let Some(candidates) = by_emitter.get(h.emitter.as_str()) else {
            continue;
        };
        let nearest = candidates
            .iter()
            .map(|(p, other)| (dist(q, *p), *other))
            .filter(|(d, _)| *d <= SIGHTING_RADIUS_M)
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((d, other)) = nearest {
            shifts.push((h.at - other.at).as_seconds_f64());
            offsets.push(d);
            if let (Some(a), Some(b)) = (h.signal_dbm, other.signal_dbm) {
                signals.push(f64::from((a - b).abs()));
            }
        }
    }
    let signal = (!signals.is_empty()).then(|| median(&mut signals));
    twin(
        upload,
        mine.len(),
        shifts,
        offsets,
        signal,
        MIN_SHARED_SIGHTINGS,
    )
}

fn twin(
    upload: i64,
    total: usize,
    mut shifts: Vec<f64>,
    mut offsets: Vec<f64>,
    signal_diff_db: Option<f64>,
    min_shared: usize,
) -> Option<Twin> {
    if shifts.len() < min_shared || total == 0 {
        return None;
    }
    let shift_mad = mad(&shifts);
    Some(Twin {
        upload,
        overlap: round3(shifts.len() as f64 / total as f64),
        shift_s: round3(median(&mut shifts)),
        shift_mad_s: round3(shift_mad),
        offset_m: round3(median(&mut offsets)),
        signal_diff_db: signal_diff_db.map(round3),
        shared: shifts.len() as u32,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
    }

    /// A drive along a line with a speed profile given by `pace` (metres after `s` seconds).
    fn drive(start: i64, n: i64, pace: impl Fn(f64) -> f64, east_m: f64) -> Vec<Fix> {
        (0..n)
            .map(|i| Fix {
                at: t0() + chrono::Duration::seconds(start + i),
                pos: LatLon {
                    lat: 43.70 + pace(i as f64) / 111_195.0,
                    lon: 7.40 + east_m / 80_450.0,
                },
                accuracy_m: None,
            })
            .collect()
    }

    #[test]
    fn a_replay_keeps_its_pace_and_an_honest_drive_does_not() {
        let original = TrackPrint::of(&drive(0, 300, |s| 12.0 * s, 0.0));
        // The same drive a day later, 8 m to the side.
        let replay = TrackPrint::of(&drive(86_400, 300, |s| 12.0 * s, 8.0));
        let twin = compare_tracks(&replay, &original, 7).unwrap();
        assert_eq!(twin.upload, 7);
        assert!(twin.overlap > 0.95, "{twin:?}");
        assert!((twin.shift_s - 86_400.0).abs() < 0.5 && twin.shift_mad_s < 0.5);
        // Shifted by a fraction of the print's step: the shift is read along the legs, not
        // rounded to the nearest point.
        let off_step = TrackPrint::of(&drive(86_401, 300, |s| 12.0 * s + 13.0, 8.0));
        let between = compare_tracks(&off_step, &original, 7).unwrap();
        assert!(between.shift_mad_s < 0.5, "{between:?}");
        assert!((twin.offset_m - 8.0).abs() < 2.0);
        // Another driver on the same street, who waited at a light half way.
        let honest = TrackPrint::of(&drive(
            5_000,
            330,
            |s| {
                if s < 150.0 {
                    12.0 * s
                } else {
                    1800.0 + 12.0 * (s - 180.0).max(0.0)
                }
            },
            3.0,
        ));
        let other = compare_tracks(&honest, &original, 7).unwrap();
        assert!(other.shift_mad_s > 10.0, "{other:?}");
        // Somewhere else entirely.
        let elsewhere = TrackPrint::of(&drive(0, 300, |s| 5_000.0 + 12.0 * s, 0.0));
        assert!(compare_tracks(&elsewhere, &original, 7).is_none());
    }

    #[test]
    fn a_copied_batch_has_close_signals() {
        let heard = |t: i64, m: f64, e: &str, s: i32| Heard {
            at: t0() + chrono::Duration::seconds(t),
            pos: LatLon {
                lat: 43.70 + m / 111_195.0,
                lon: 7.40,
            },
            emitter: e.into(),
            signal_dbm: Some(s),
        };
        let original: Vec<Heard> = (0..40)
            .map(|i| {
                heard(
                    i * 5,
                    i as f64 * 50.0,
                    &format!("lte:{}", i / 4),
                    -80 - (i % 9) as i32,
                )
            })
            .collect();
        let copy: Vec<Heard> = original
            .iter()
            .map(|h| Heard {
                at: h.at + chrono::Duration::hours(3),
                signal_dbm: h.signal_dbm.map(|s| s + 1),
                ..h.clone()
            })
            .collect();
        let twin = compare_batches(&copy, &original, 3).unwrap();
        assert!(twin.overlap > 0.95 && twin.signal_diff_db == Some(1.0) && twin.shift_mad_s < 1.0);
    }

    #[test]
    fn the_closest_twin_is_the_most_copy_like() {
        let t = |upload, overlap, mad| Twin {
            upload,
            overlap,
            shift_s: 0.0,
            shift_mad_s: mad,
            offset_m: 0.0,
            signal_diff_db: None,
            shared: 20,
        };
        let best = Twin::closest([t(1, 1.0, 60.0), t(2, 0.9, 0.5), t(3, 0.3, 0.0)]).unwrap();
        assert_eq!(best.upload, 2);
    }
}
