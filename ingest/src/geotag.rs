//! Frames placed on a drive: each frame's position and heading, from the drive's track or from the
//! frame's own EXIF GPS, then the frames cut into continuous sequences with the frames of a
//! standing car dropped.
//!
//! Every frame handed in comes out exactly once: placed in a sequence, or rejected with a reason.

use chrono::{DateTime, Duration, Utc};
use covermap_domain::{Fix, LatLon};
use serde::Serialize;

use crate::FrameRejection;

/// Two positions closer than this say nothing about heading: it is the jitter of a standing car.
const MIN_HEADING_MOVE_M: f64 = 1.0;

/// How frames are cut into sequences and which count as repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeotagParams {
    /// Consecutive frames further apart in time start a new sequence.
    pub max_gap: Duration,
    /// Consecutive frames further apart in space start a new sequence.
    pub max_jump_m: f64,
    /// A frame this close to the last kept one ...
    pub duplicate_m: f64,
    /// ... and looking the same way within this many degrees shows nothing new.
    pub duplicate_deg: f64,
}

impl Default for GeotagParams {
    fn default() -> Self {
        Self {
            max_gap: Duration::seconds(60),
            max_jump_m: 100.0,
            duplicate_m: 0.1,
            duplicate_deg: 5.0,
        }
    }
}

/// A frame placed on the map.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GeotaggedFrame {
    /// The frame's index in the caller's list.
    pub index: usize,
    pub at: DateTime<Utc>,
    pub pos: LatLon,
    /// Degrees clockwise from true north, in [0, 360).
    pub heading_deg: f64,
}

/// The frames of a drive in continuous sequences, in time order, and those left out.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Geotagged {
    pub sequences: Vec<Vec<GeotaggedFrame>>,
    /// Index of the frame and why it was left out, by index.
    pub rejected: Vec<(usize, FrameRejection)>,
}

/// Places frames, given as (index, capture time), on a track: each frame's position is
/// interpolated between the fixes before and after its time, and its heading is the bearing of
/// that pair of fixes (or of the nearest pair that moves, while the car stands).
///
/// A frame before the first fix, after the last, or inside a hole of the track longer than
/// `max_gap` is rejected as `outside_track`: the track does not say where it was.
pub fn geotag(
    frames: &[(usize, DateTime<Utc>)],
    track: &[Fix],
    params: &GeotagParams,
) -> Geotagged {
    let mut fixes = track.to_vec();
    fixes.sort_by_key(|f| f.at);
    fixes.dedup_by_key(|f| f.at);
    let positions: Vec<LatLon> = fixes.iter().map(|f| f.pos).collect();
    let mut placed = Vec::with_capacity(frames.len());
    let mut rejected = Vec::new();
    for &(index, at) in frames {
        match place(&fixes, &positions, at, params.max_gap) {
            Some((pos, heading)) => placed.push(Placed {
                index,
                at,
                pos,
                heading: Some(heading),
            }),
            None => rejected.push((index, FrameRejection::OutsideTrack)),
        }
    }
    sequences(placed, rejected, params)
}

/// Places frames that carry their own position, given as (index, capture time, position, EXIF
/// direction): the heading is the EXIF direction, else the bearing towards the next frame of
/// the same sequence (from the one before, for the last).
pub fn geotag_from_exif(
    frames: &[(usize, DateTime<Utc>, LatLon, Option<f64>)],
    params: &GeotagParams,
) -> Geotagged {
    let placed = frames
        .iter()
        .map(|&(index, at, pos, direction)| Placed {
            index,
            at,
            pos,
            heading: direction
                .filter(|d| d.is_finite())
                .map(|d| d.rem_euclid(360.0)),
        })
        .collect();
    sequences(placed, Vec::new(), params)
}

/// A frame with a position, and a heading if one is known yet.
#[derive(Debug, Clone, Copy)]
struct Placed {
    index: usize,
    at: DateTime<Utc>,
    pos: LatLon,
    heading: Option<f64>,
}

/// Position and heading at `at` on a track sorted by time with distinct times.
fn place(
    fixes: &[Fix],
    positions: &[LatLon],
    at: DateTime<Utc>,
    max_gap: Duration,
) -> Option<(LatLon, f64)> {
    let (first, last) = (fixes.first()?, fixes.last()?);
    if at < first.at || at > last.at {
        return None;
    }
    // The first fix after `at`; there is one at or before it.
    let after = fixes.partition_point(|f| f.at <= at);
    let Some(b) = fixes.get(after) else {
        return Some((last.pos, heading(positions, after.saturating_sub(2))));
    };
    let a = &fixes[after - 1];
    if at > a.at && b.at - a.at > max_gap {
        return None;
    }
    let t = (at - a.at).as_seconds_f64() / (b.at - a.at).as_seconds_f64();
    Some((interpolate(a.pos, b.pos, t), heading(positions, after - 1)))
}

/// Sorts placed frames by time, cuts them into sequences, fills in missing headings from
/// neighbours within each sequence, and drops near-duplicates.
fn sequences(
    mut placed: Vec<Placed>,
    mut rejected: Vec<(usize, FrameRejection)>,
    params: &GeotagParams,
) -> Geotagged {
    placed.sort_by_key(|p| (p.at, p.index));
    let mut runs: Vec<Vec<Placed>> = Vec::new();
    for p in placed {
        let continuing = runs
            .last()
            .and_then(|run| run.last())
            .is_some_and(|prev| continues(prev, &p, params));
        match runs.last_mut() {
            Some(run) if continuing => run.push(p),
            _ => runs.push(vec![p]),
        }
    }
    let mut out = Vec::with_capacity(runs.len());
    for run in runs {
        let positions: Vec<LatLon> = run.iter().map(|p| p.pos).collect();
        let mut kept: Vec<GeotaggedFrame> = Vec::with_capacity(run.len());
        for (i, p) in run.iter().enumerate() {
            let heading_deg = p
                .heading
                .unwrap_or_else(|| heading(&positions, i.min(positions.len().saturating_sub(2))));
            let frame = GeotaggedFrame {
                index: p.index,
                at: p.at,
                pos: p.pos,
                heading_deg,
            };
            let repeats = kept.last().is_some_and(|prev| {
                prev.pos.distance_m(frame.pos) <= params.duplicate_m
                    && angle_between(prev.heading_deg, frame.heading_deg) <= params.duplicate_deg
            });
            if repeats {
                rejected.push((frame.index, FrameRejection::NearDuplicate));
            } else {
                kept.push(frame);
            }
        }
        out.push(kept);
    }
    rejected.sort_unstable();
    Geotagged {
        sequences: out,
        rejected,
    }
}

fn continues(prev: &Placed, next: &Placed, params: &GeotagParams) -> bool {
    next.at - prev.at <= params.max_gap && prev.pos.distance_m(next.pos) <= params.max_jump_m
}

/// The bearing of the pair of positions (`pair`, `pair + 1`), or of the nearest pair that moves
/// when that one does not. A drive that never moves has no heading; north stands in.
fn heading(positions: &[LatLon], pair: usize) -> f64 {
    let pairs = positions.len().saturating_sub(1);
    let moving = |j: usize| {
        let (a, b) = (*positions.get(j)?, *positions.get(j + 1)?);
        (a.distance_m(b) >= MIN_HEADING_MOVE_M).then(|| bearing_deg(a, b))
    };
    let reach = pair.max(pairs.saturating_sub(pair));
    for k in 0..=reach {
        let before = pair.checked_sub(k);
        let after = (k > 0).then(|| pair + k);
        if let Some(h) = [before, after].into_iter().flatten().find_map(&moving) {
            return h;
        }
    }
    0.0
}

/// Initial great-circle bearing from `a` to `b`, degrees clockwise from north in [0, 360).
fn bearing_deg(a: LatLon, b: LatLon) -> f64 {
    let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
    let dl = (b.lon - a.lon).to_radians();
    let y = dl.sin() * p2.cos();
    let x = p1.cos() * p2.sin() - p1.sin() * p2.cos() * dl.cos();
    y.atan2(x).to_degrees().rem_euclid(360.0)
}

/// Linear between two fixes a second or so apart, across the antimeridian the short way.
fn interpolate(a: LatLon, b: LatLon, t: f64) -> LatLon {
    let wrap = |d: f64| {
        if d > 180.0 {
            d - 360.0
        } else if d < -180.0 {
            d + 360.0
        } else {
            d
        }
    };
    LatLon {
        lat: a.lat + (b.lat - a.lat) * t,
        lon: wrap(a.lon + wrap(b.lon - a.lon) * t),
    }
}

/// The smaller angle between two headings, in [0, 180].
fn angle_between(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap() + Duration::seconds(s)
    }

    fn ll(lat: f64, lon: f64) -> LatLon {
        LatLon::new(lat, lon).unwrap()
    }

    fn fix(s: i64, lat: f64, lon: f64) -> Fix {
        Fix {
            at: t(s),
            pos: ll(lat, lon),
            accuracy_m: None,
        }
    }

    /// Every frame handed in is placed once or rejected once.
    fn assert_each_frame_once(input: impl IntoIterator<Item = usize>, out: &Geotagged) {
        let mut seen: Vec<usize> = out
            .sequences
            .iter()
            .flatten()
            .map(|f| f.index)
            .chain(out.rejected.iter().map(|r| r.0))
            .collect();
        seen.sort_unstable();
        let mut input: Vec<usize> = input.into_iter().collect();
        input.sort_unstable();
        assert_eq!(seen, input, "{out:?}");
    }

    fn indices(out: &Geotagged) -> Vec<Vec<usize>> {
        out.sequences
            .iter()
            .map(|s| s.iter().map(|f| f.index).collect())
            .collect()
    }

    /// Northbound at 0.0001 degree (11 m) a second.
    fn northbound(seconds: i64) -> Vec<Fix> {
        (0..=seconds)
            .map(|s| fix(s, 43.7 + 0.0001 * s as f64, 7.4))
            .collect()
    }

    #[test]
    fn positions_are_interpolated_between_the_surrounding_fixes() {
        let track = vec![fix(0, 43.70, 7.40), fix(10, 43.71, 7.42)];
        let frames = [(0, t(0)), (1, t(5)), (2, t(10))];
        let out = geotag(&frames, &track, &GeotagParams::default());
        assert_each_frame_once(0..3, &out);
        assert!(out.rejected.is_empty(), "{out:?}");
        // 5 s apart but 1.4 km: three sequences, each of one frame.
        assert_eq!(indices(&out), vec![vec![0], vec![1], vec![2]]);
        let mid = out.sequences[1][0];
        assert!((mid.pos.lat - 43.705).abs() < 1e-12 && (mid.pos.lon - 7.41).abs() < 1e-12);
        assert_eq!(out.sequences[0][0].pos, track[0].pos);
        assert_eq!(out.sequences[2][0].pos, track[1].pos);
        // North-north-east: 1.1 km north, 1.6 km east at 43.7 degrees.
        for f in out.sequences.iter().flatten() {
            assert!((f.heading_deg - 55.3).abs() < 0.5, "{}", f.heading_deg);
        }
    }

    #[test]
    fn frames_outside_the_track_or_in_its_holes_are_outside_track() {
        let mut track = northbound(10);
        track.push(fix(200, 43.7011, 7.4)); // a 190 s hole, car barely moved
        let frames = [(0, t(-1)), (1, t(3)), (2, t(100)), (3, t(201)), (4, t(200))];
        let out = geotag(&frames, &track, &GeotagParams::default());
        assert_each_frame_once(0..5, &out);
        assert_eq!(
            out.rejected,
            vec![
                (0, FrameRejection::OutsideTrack),
                (2, FrameRejection::OutsideTrack),
                (3, FrameRejection::OutsideTrack),
            ]
        );
        assert_eq!(indices(&out), vec![vec![1], vec![4]], "197 s apart");
        assert!(
            geotag(&frames, &[], &GeotagParams::default())
                .sequences
                .is_empty()
        );
    }

    #[test]
    fn sequences_split_on_a_gap_and_on_a_jump() {
        let frames: Vec<_> = [0, 1, 2, 63, 64]
            .into_iter()
            .enumerate()
            .map(|(i, s)| (i, t(s)))
            .collect();
        let out = geotag(&frames, &northbound(70), &GeotagParams::default());
        assert_each_frame_once(0..5, &out);
        assert_eq!(indices(&out), vec![vec![0, 1, 2], vec![3, 4]]);

        let own = [
            (0, t(0), ll(43.7, 7.4), None),
            (1, t(1), ll(43.7001, 7.4), None),
            (2, t(2), ll(43.7021, 7.4), None), // 222 m in a second
            (3, t(3), ll(43.7022, 7.4), None),
        ];
        let out = geotag_from_exif(&own, &GeotagParams::default());
        assert_each_frame_once(0..4, &out);
        assert_eq!(indices(&out), vec![vec![0, 1], vec![2, 3]]);
        assert!(out.sequences.iter().flatten().all(|f| f.heading_deg < 1e-6));
    }

    #[test]
    fn a_standing_car_keeps_one_frame_and_the_heading_it_arrived_with() {
        // East for 2 s, then standing for 10 s.
        let mut track = vec![fix(0, 43.7, 7.4), fix(1, 43.7, 7.4001)];
        track.extend((2..=12).map(|s| fix(s, 43.7, 7.4002)));
        let frames: Vec<_> = (0..8usize)
            .map(|i| (i, t(i64::try_from(i).unwrap() + 3)))
            .collect();
        let out = geotag(&frames, &track, &GeotagParams::default());
        assert_each_frame_once(0..8, &out);
        assert_eq!(indices(&out), vec![vec![0]]);
        assert!((out.sequences[0][0].heading_deg - 90.0).abs() < 0.01);
        assert!(
            out.rejected
                .iter()
                .all(|r| r.1 == FrameRejection::NearDuplicate)
        );
    }

    #[test]
    fn the_same_place_looking_elsewhere_is_not_a_duplicate() {
        let here = ll(43.7, 7.4);
        let frames = [
            (5, t(0), here, Some(0.0)),
            (6, t(1), here, Some(4.0)),
            (7, t(2), here, Some(370.0)), // 10 degrees
            (8, t(3), ll(43.7, 7.400_000_5), Some(9.0)),
        ];
        let out = geotag_from_exif(&frames, &GeotagParams::default());
        assert_each_frame_once(5..9, &out);
        assert_eq!(indices(&out), vec![vec![5, 7]]);
        assert_eq!(out.sequences[0][1].heading_deg, 10.0);
        assert_eq!(
            out.rejected,
            vec![
                (6, FrameRejection::NearDuplicate),
                (8, FrameRejection::NearDuplicate)
            ]
        );
    }

    #[test]
    fn frames_come_out_in_time_order_whatever_order_they_came_in() {
        let frames = [(0, t(4)), (1, t(2)), (2, t(3))];
        let out = geotag(&frames, &northbound(10), &GeotagParams::default());
        assert_eq!(indices(&out), vec![vec![1, 2, 0]]);
    }

    #[test]
    fn headings_and_interpolation_across_the_antimeridian() {
        assert!((bearing_deg(ll(0.0, 0.0), ll(0.0, 1.0)) - 90.0).abs() < 1e-9);
        assert!((bearing_deg(ll(0.0, 0.0), ll(-1.0, 0.0)) - 180.0).abs() < 1e-9);
        assert!((bearing_deg(ll(0.0, 179.9), ll(0.0, -179.9)) - 90.0).abs() < 1e-9);
        let mid = interpolate(ll(0.0, 179.9), ll(0.0, -179.9), 0.75);
        assert!((mid.lon + 179.95).abs() < 1e-9, "{mid:?}");
        assert_eq!(angle_between(359.0, 2.0), 3.0);
        assert_eq!(heading(&[ll(1.0, 1.0)], 0), 0.0);
    }
}
