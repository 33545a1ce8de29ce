//! What a track's own fixes say about it: how it moved, how it sits on the roads, and whether it
//! moved like a car with a GNSS receiver or like something drawn.
//!
//! Every measure here is a fact about the track (seconds, metres, shares), not a judgement:
//! [`crate::judge`] compares them with the policy's thresholds.

use chrono::{DateTime, Utc};
use covermap_domain::{Fix, LatLon};
use covermap_roads::matching::RoadGraph;
use serde::{Deserialize, Serialize};

use crate::local::{Plane, dist, median};
use crate::round3;

/// A leap this long, this fast, is no car: the detectors look for the track coming back.
const LEAP_M: f64 = 200.0;
const LEAP_SPEED_MPS: f64 = 70.0;
/// A GNSS glitch comes back near where it left within this long and this close.
const GLITCH_RETURN_S: f64 = 30.0;
const GLITCH_RETURN_M: f64 = 100.0;
/// And it comes back in a leap of at least this share of the leap out.
const RETURN_LEAP_SHARE: f64 = 0.5;
/// Or a leap this long, this fast, and this many times the pace of the steps around it (within
/// [`PACE_WINDOW_S`]): a splice hidden in a sparse logger's step. A fast driver is fast
/// throughout; a car does not go from 50 to 200 km/h and back between two fixes.
const PACE_LEAP_SPEED_MPS: f64 = 40.0;
const PACE_LEAP_FACTOR: f64 = 3.0;
const PACE_WINDOW_S: f64 = 30.0;
/// Speeds are taken over net displacement across at least this long, so noise does not add up.
const SPEED_SPAN_S: f64 = 5.0;
/// A speed held this long is "sustained".
pub const SUSTAINED_S: f64 = 20.0;
/// A road within this distance of a fix may be the one it drove (for its class's speed).
const CLASS_RADIUS_M: f64 = 30.0;
/// Fixes whose neighbours put them this close to a straight, evenly spaced line are noiseless.
const NOISELESS_DEV_M: f64 = 0.15;
const NOISELESS_SPEED_MPS: f64 = 0.15;
/// Moving means at least this fast.
const MOVING_MPS: f64 = 2.0;

/// The reference speed of a road class, m/s: what it is usually signed for where people map
/// (motorways 130 km/h, trunk roads 110, primary 70 and secondary 60 — between town and
/// country limits —, other streets 50), which honest drivers exceed by a little and a
/// fabricated "drive" by a lot. Unknown classes count as 50 km/h.
pub fn class_speed_mps(highway: &str) -> f64 {
    let kmh = match highway {
        "motorway" => 130.0,
        "trunk" => 110.0,
        "motorway_link" | "trunk_link" => 80.0,
        "primary" => 70.0,
        "secondary" | "primary_link" => 60.0,
        "living_street" | "service" | "track" => 30.0,
        _ => 50.0,
    };
    kmh / 3.6
}

/// How a track sits on the road network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoadMeasures {
    /// Metres of road it was matched to over the metres it moved (1 for a track on the roads).
    pub matched_share: f64,
    /// Share of its fixes farther than 25, 50 and 100 m from any drivable road.
    pub over_25m: f64,
    pub over_50m: f64,
    pub over_100m: f64,
    /// The highest ratio of speed to its road class's reference speed held for
    /// [`SUSTAINED_S`] (`None` where no stretch that long lies near a road).
    pub class_ratio: Option<f64>,
    /// The median of that ratio over the moving fixes near a road: a whole drive at twice the
    /// limits shows here even where bends keep any 20 s from being fast throughout.
    #[serde(default)]
    pub class_ratio_median: Option<f64>,
}

/// What a track's fixes say about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackMeasures {
    /// Accepted fixes.
    pub fixes: u32,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub duration_s: f64,
    /// Metres moved (net displacement summed over spans of five seconds or more).
    pub path_m: f64,
    /// 95th percentile of the fixes' distances from their median position.
    pub radius_m: f64,
    /// Fixes refused for lying in the future, or before the oldest age accepted.
    pub future_fixes: u32,
    pub old_fixes: u32,
    /// Seconds the last fix lies after the upload arrived (0 when before): a file cannot hold
    /// a fix taken after it was sent, whatever clock skew a device's signature is allowed.
    #[serde(default)]
    pub after_arrival_s: f64,
    /// The longest leap (200 m or more, faster than 70 m/s) the track never came back from:
    /// two drives spliced together. 0 when none.
    pub teleport_m: f64,
    /// The fastest net speed held over 20 s, m/s.
    pub sustained_speed_mps: f64,
    /// The longest run, in seconds, of moving fixes lying on a straight line at even spacing
    /// to within centimetres: interpolated, not measured.
    pub noiseless_s: f64,
    /// Coefficient of variation of the five-second speeds while moving.
    pub speed_cv: f64,
    /// Stops of five seconds or more while the track lasted.
    pub stops: u32,
    /// `None` where no road network is loaded.
    pub roads: Option<RoadMeasures>,
}

/// A track as the worker holds it after the ingest checks.
#[derive(Debug, Clone, Copy)]
pub struct TrackInput<'a> {
    /// Accepted fixes, in time order.
    pub fixes: &'a [Fix],
    /// Points refused as implausible jumps from the fix before them, with where they were.
    pub jumps: &'a [Fix],
    pub future_fixes: u32,
    pub old_fixes: u32,
    /// Metres of road the matcher placed the track on; `None` without a road network.
    pub matched_m: Option<f64>,
    /// When the upload arrived.
    pub received_at: Option<DateTime<Utc>>,
}

/// Measures a track. `roads` is the network it should lie on, where one is loaded.
pub fn measure(input: &TrackInput<'_>, roads: Option<&RoadGraph>) -> TrackMeasures {
    let fixes = input.fixes;
    let Some(first) = fixes.first() else {
        return TrackMeasures {
            fixes: 0,
            start: None,
            end: None,
            duration_s: 0.0,
            path_m: 0.0,
            radius_m: 0.0,
            future_fixes: input.future_fixes,
            old_fixes: input.old_fixes,
            after_arrival_s: 0.0,
            teleport_m: teleport_m(
                input.jumps,
                &[],
                Plane::around(LatLon { lat: 0.0, lon: 0.0 }),
            ),
            sustained_speed_mps: 0.0,
            noiseless_s: 0.0,
            speed_cv: 0.0,
            stops: 0,
            roads: None,
        };
    };
    let plane = Plane::around(first.pos);
    let xy: Vec<[f64; 2]> = fixes.iter().map(|f| plane.xy(f.pos)).collect();
    let t: Vec<f64> = fixes
        .iter()
        .map(|f| (f.at - first.at).as_seconds_f64())
        .collect();
    let speeds = span_speeds(&xy, &t);
    let moving: Vec<f64> = speeds
        .iter()
        .flatten()
        .copied()
        .filter(|v| *v > MOVING_MPS)
        .collect();
    let speed_cv = if moving.len() >= 2 {
        let mean = moving.iter().sum::<f64>() / moving.len() as f64;
        let var = moving.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / moving.len() as f64;
        var.sqrt() / mean
    } else {
        0.0
    };
    // Roads say something only where the loaded network reaches: fixes beyond its extent are
    // off the map, not off the road, and a track that leaves it is not judged by its matching.
    let road_measures = roads.and_then(|g| {
        let covered: Vec<bool> = fixes
            .iter()
            .map(|f| g.covers(f.pos, EXTENT_MARGIN_M))
            .collect();
        let all = covered.iter().all(|c| *c);
        covered.iter().any(|c| *c).then(|| {
            let matched = if all { input.matched_m } else { None };
            road_measures(fixes, &covered, &t, &speeds, matched, g)
        })
    });
    let path_m = path_m(&xy, &t);
    TrackMeasures {
        fixes: fixes.len() as u32,
        start: Some(first.at),
        end: fixes.last().map(|f| f.at),
        duration_s: round3(t.last().copied().unwrap_or(0.0)),
        path_m: round3(path_m),
        radius_m: round3(radius_m(&xy)),
        future_fixes: input.future_fixes,
        old_fixes: input.old_fixes,
        after_arrival_s: round3(match (input.received_at, fixes.last()) {
            (Some(r), Some(l)) => (l.at - r).as_seconds_f64().max(0.0),
            _ => 0.0,
        }),
        teleport_m: round3(teleport_m(input.jumps, fixes, plane)),
        sustained_speed_mps: round3(sustained_speed(&xy, &t)),
        noiseless_s: round3(noiseless_s(&xy, &t)),
        speed_cv: round3(speed_cv),
        stops: stops(&speeds, &t),
        roads: road_measures.map(|r| RoadMeasures {
            matched_share: round3(if path_m > 1.0 { r.matched_share } else { 1.0 }),
            over_25m: round3(r.over_25m),
            over_50m: round3(r.over_50m),
            over_100m: round3(r.over_100m),
            class_ratio: r.class_ratio.map(round3),
            class_ratio_median: r.class_ratio_median.map(round3),
        }),
    }
}

/// For each fix, its net speed to the first fix at least [`SPEED_SPAN_S`] later (within three
/// times that); `None` at the end or across a gap.
fn span_speeds(xy: &[[f64; 2]], t: &[f64]) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(xy.len());
    let mut j = 0;
    for i in 0..xy.len() {
        j = j.max(i + 1);
        while j < xy.len() && t[j] - t[i] < SPEED_SPAN_S {
            j += 1;
        }
        out.push(match t.get(j) {
            Some(tj) if tj - t[i] <= 3.0 * SPEED_SPAN_S => Some(dist(xy[i], xy[j]) / (tj - t[i])),
            _ => None,
        });
    }
    out
}

fn path_m(xy: &[[f64; 2]], t: &[f64]) -> f64 {
    let mut anchor = 0;
    let mut total = 0.0;
    for i in 1..xy.len() {
        if t[i] - t[anchor] >= SPEED_SPAN_S || i + 1 == xy.len() {
            total += dist(xy[anchor], xy[i]);
            anchor = i;
        }
    }
    total
}

fn radius_m(xy: &[[f64; 2]]) -> f64 {
    let mut xs: Vec<f64> = xy.iter().map(|p| p[0]).collect();
    let mut ys: Vec<f64> = xy.iter().map(|p| p[1]).collect();
    let centre = [median(&mut xs), median(&mut ys)];
    let mut d: Vec<f64> = xy.iter().map(|p| dist(*p, centre)).collect();
    d.sort_by(f64::total_cmp);
    d.get(((d.len() as f64 * 0.95).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0)
}

/// The longest leap in the fixes and the refused jumps, taken together in time order, after
/// which the track never came back near where it left.
fn teleport_m(jumps: &[Fix], fixes: &[Fix], plane: Plane) -> f64 {
    let mut all: Vec<&Fix> = fixes.iter().chain(jumps).collect();
    all.sort_by_key(|f| f.at);
    let xy: Vec<[f64; 2]> = all.iter().map(|f| plane.xy(f.pos)).collect();
    let mut longest = 0.0f64;
    let step_speed = |i: usize| {
        let dt = (all[i].at - all[i - 1].at).as_seconds_f64().max(1e-3);
        dist(xy[i - 1], xy[i]) / dt
    };
    // The pace around step i: the median speed of the other steps within the window.
    let pace = |i: usize| {
        let mut around: Vec<f64> = (1..all.len())
            .filter(|&k| k != i && (all[k].at - all[i].at).as_seconds_f64().abs() <= PACE_WINDOW_S)
            .map(step_speed)
            .collect();
        (around.len() >= 2).then(|| median(&mut around))
    };
    // Where the last glitch left from, and when: the leap back to it is no teleport.
    let mut departure: Option<([f64; 2], DateTime<Utc>)> = None;
    for i in 1..all.len() {
        let d = dist(xy[i - 1], xy[i]);
        if d < LEAP_M {
            continue;
        }
        let v = step_speed(i);
        let leap = v >= LEAP_SPEED_MPS
            || (v >= PACE_LEAP_SPEED_MPS && pace(i).is_some_and(|p| v >= PACE_LEAP_FACTOR * p));
        if !leap {
            continue;
        }
        if let Some((from, at)) = departure
            && (all[i].at - at).as_seconds_f64() <= GLITCH_RETURN_S
            && dist(xy[i], from) <= GLITCH_RETURN_M
        {
            departure = None;
            continue;
        }
        // A glitch leaps back: the fix that returns near the departure comes in a leap of its
        // own. A second drive spliced on that merely passes near where the first ended drives
        // there, step by step.
        let returned = (i + 1..all.len())
            .take_while(|&k| (all[k].at - all[i].at).as_seconds_f64() <= GLITCH_RETURN_S)
            .any(|k| {
                dist(xy[k], xy[i - 1]) <= GLITCH_RETURN_M
                    && dist(xy[k - 1], xy[k]) >= RETURN_LEAP_SHARE * d
            });
        if returned {
            departure = Some((xy[i - 1], all[i].at));
        } else {
            longest = longest.max(d);
        }
    }
    longest
}

fn sustained_speed(xy: &[[f64; 2]], t: &[f64]) -> f64 {
    let mut fastest = 0.0f64;
    let mut j = 0;
    for i in 0..xy.len() {
        j = j.max(i + 1);
        while j < xy.len() && t[j] - t[i] < SUSTAINED_S {
            j += 1;
        }
        let Some(tj) = t.get(j) else { break };
        if tj - t[i] <= 2.0 * SUSTAINED_S {
            fastest = fastest.max(dist(xy[i], xy[j]) / (tj - t[i]));
        }
    }
    fastest
}

/// The longest run of moving fixes that sit on the line through their neighbours, evenly
/// spaced, to within centimetres. Real receivers wobble by decimetres from fix to fix even
/// when smoothed; interpolated points do not wobble at all.
fn noiseless_s(xy: &[[f64; 2]], t: &[f64]) -> f64 {
    let mut longest = 0.0f64;
    let mut run_start: Option<usize> = None;
    for i in 1..xy.len().saturating_sub(1) {
        let (a, b, c) = (xy[i - 1], xy[i], xy[i + 1]);
        let (dt1, dt2) = (t[i] - t[i - 1], t[i + 1] - t[i]);
        let (s1, s2) = (dist(a, b), dist(b, c));
        let ok = dt1 > 0.0 && dt2 > 0.0 && s1 / dt1 > MOVING_MPS && s2 / dt2 > MOVING_MPS && {
            let chord = dist(a, c);
            let cross = ((c[0] - a[0]) * (b[1] - a[1]) - (c[1] - a[1]) * (b[0] - a[0])).abs();
            chord > 0.0
                && cross / chord < NOISELESS_DEV_M
                && (s1 / dt1 - s2 / dt2).abs() < NOISELESS_SPEED_MPS
        };
        match (ok, run_start) {
            (true, None) => run_start = Some(i - 1),
            (true, Some(_)) => {}
            (false, Some(s)) => {
                longest = longest.max(t[i] - t[s]);
                run_start = None;
            }
            (false, None) => {}
        }
    }
    if let Some(s) = run_start {
        longest = longest.max(t[t.len() - 1] - t[s]);
    }
    longest
}

fn stops(speeds: &[Option<f64>], t: &[f64]) -> u32 {
    let mut n = 0;
    let mut since: Option<f64> = None;
    let mut counted = false;
    for (v, ti) in speeds.iter().zip(t) {
        match v {
            Some(v) if *v < 1.0 => {
                let s = *since.get_or_insert(*ti);
                if !counted && ti - s >= 5.0 {
                    n += 1;
                    counted = true;
                }
            }
            _ => {
                since = None;
                counted = false;
            }
        }
    }
    n
}

/// A fix this far outside the loaded road network's extent (its roads' bounding box) is beyond
/// what the network can say anything about.
const EXTENT_MARGIN_M: f64 = 2_000.0;

struct RawRoadMeasures {
    matched_share: f64,
    over_25m: f64,
    over_50m: f64,
    over_100m: f64,
    class_ratio: Option<f64>,
    class_ratio_median: Option<f64>,
}

fn road_measures(
    fixes: &[Fix],
    covered: &[bool],
    t: &[f64],
    speeds: &[Option<f64>],
    matched_m: Option<f64>,
    roads: &RoadGraph,
) -> RawRoadMeasures {
    let n = covered.iter().filter(|c| **c).count().max(1) as f64;
    let (mut over25, mut over50, mut over100) = (0usize, 0usize, 0usize);
    let mut ratios: Vec<Option<f64>> = Vec::with_capacity(fixes.len());
    for ((f, v), inside) in fixes.iter().zip(speeds).zip(covered) {
        let near = roads.roads_near(f.pos, 100.0, 8);
        let d = near.first().map_or(f64::INFINITY, |(_, d)| *d);
        if *inside {
            over25 += usize::from(d > 25.0);
            over50 += usize::from(d > 50.0);
            over100 += usize::from(d > 100.0);
        }
        let reference = near
            .iter()
            .filter(|(_, d)| *d <= CLASS_RADIUS_M)
            .map(|(s, _)| class_speed_mps(&s.highway))
            .max_by(f64::total_cmp);
        ratios.push(match (v, reference) {
            (Some(v), Some(r)) => Some(v / r),
            _ => None,
        });
    }
    let xy_path = {
        let plane = Plane::around(fixes[0].pos);
        let xy: Vec<[f64; 2]> = fixes.iter().map(|f| plane.xy(f.pos)).collect();
        path_m(&xy, t)
    };
    RawRoadMeasures {
        matched_share: matched_m.map_or(1.0, |m| m / xy_path.max(1.0)),
        over_25m: over25 as f64 / n,
        over_50m: over50 as f64 / n,
        over_100m: over100 as f64 / n,
        class_ratio: sustained_min(&ratios, t),
        class_ratio_median: {
            let mut moving: Vec<f64> = ratios
                .iter()
                .zip(speeds)
                .filter_map(|(r, v)| r.filter(|_| v.is_some_and(|v| v > MOVING_MPS)))
                .collect();
            (moving.len() >= 10).then(|| median(&mut moving))
        },
    }
}

/// The highest value held (as the minimum over a window) across every window of at least
/// [`SUSTAINED_S`] in which every fix has a value.
fn sustained_min(values: &[Option<f64>], t: &[f64]) -> Option<f64> {
    let mut best: Option<f64> = None;
    for i in 0..values.len() {
        let mut low = f64::INFINITY;
        for k in i..values.len() {
            let Some(v) = values[k] else { break };
            low = low.min(v);
            if t[k] - t[i] >= SUSTAINED_S {
                best = Some(best.map_or(low, |b: f64| b.max(low)));
                break;
            }
        }
    }
    best
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn fix(t: i64, lat: f64, lon: f64) -> Fix {
        Fix {
            at: Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(t),
            pos: LatLon { lat, lon },
            accuracy_m: None,
        }
    }

    /// A drive north at `speed` m/s, one fix a second, with a small zig-zag of `wobble` metres.
    fn drive(n: i64, speed: f64, wobble: f64) -> Vec<Fix> {
        (0..n)
            .map(|i| {
                let north = speed * i as f64 / 111_195.0;
                let east = if i % 2 == 0 { wobble } else { -wobble } / 80_000.0;
                fix(i, 43.70 + north, 7.40 + east)
            })
            .collect()
    }

    fn input(fixes: &[Fix]) -> TrackInput<'_> {
        TrackInput {
            fixes,
            jumps: &[],
            future_fixes: 0,
            old_fixes: 0,
            matched_m: None,
            received_at: None,
        }
    }

    /// One straight road north along 7.40 E from 43.70 N, 2 km long.
    fn one_road() -> RoadGraph {
        let points: Vec<LatLon> = (0..=20)
            .map(|i| LatLon {
                lat: 43.70 + f64::from(i) * 0.0009,
                lon: 7.40,
            })
            .collect();
        RoadGraph::new(covermap_roads::RoadNetwork {
            segments: vec![covermap_domain::RoadSegment {
                osm_way_id: 1,
                piece: 0,
                osm_node_ids: (1..=21).collect(),
                points,
                highway: "primary".into(),
                name: None,
                oneway: false,
                length_m: 2000.0,
            }],
        })
    }

    #[test]
    fn roads_judge_only_where_the_loaded_network_reaches() {
        let g = one_road();
        // On the road.
        let on = measure(&input(&drive(120, 12.0, 0.4)), Some(&g));
        assert_eq!(on.roads.as_ref().unwrap().over_50m, 0.0, "{on:?}");
        // 300 m beside it, within its extent: off the road.
        let beside: Vec<Fix> = drive(120, 12.0, 0.4)
            .into_iter()
            .map(|mut f| {
                f.pos.lon += 0.0037;
                f
            })
            .collect();
        let m = measure(&input(&beside), Some(&g));
        assert_eq!(m.roads.as_ref().unwrap().over_100m, 1.0, "{m:?}");
        // 50 km away, where the loaded network says nothing: no road measures at all.
        let elsewhere: Vec<Fix> = drive(120, 12.0, 0.4)
            .into_iter()
            .map(|mut f| {
                f.pos.lat += 0.45;
                f
            })
            .collect();
        assert_eq!(measure(&input(&elsewhere), Some(&g)).roads, None);
    }

    #[test]
    fn an_interpolated_line_is_noiseless_and_a_wobbling_one_is_not() {
        let line = drive(120, 12.0, 0.0);
        assert!(measure(&input(&line), None).noiseless_s >= 100.0);
        let real = drive(120, 12.0, 0.4);
        assert_eq!(measure(&input(&real), None).noiseless_s, 0.0);
    }

    #[test]
    fn a_splice_is_a_teleport_and_a_glitch_is_not() {
        let mut spliced = drive(60, 10.0, 0.3);
        let jumps: Vec<Fix> = (60..120)
            .map(|i| fix(i, 43.75 + 10.0 * i as f64 / 111_195.0, 7.40))
            .collect();
        let m = measure(
            &TrackInput {
                jumps: &jumps,
                ..input(&spliced)
            },
            None,
        );
        assert!(m.teleport_m > 4000.0, "{m:?}");
        // One fix 500 m off, then back: a multipath glitch.
        let glitch = vec![fix(30, 43.7080, 7.40)];
        spliced.truncate(60);
        let m = measure(
            &TrackInput {
                jumps: &glitch,
                ..input(&spliced)
            },
            None,
        );
        assert_eq!(m.teleport_m, 0.0);
    }

    #[test]
    fn a_splice_that_drives_back_past_the_join_is_still_a_teleport() {
        // North at 10 m/s for 60 s (to 590 m), then a second drive that starts 290 m south of
        // there, at 300 m, and heads north again: within 30 s it passes where the first ended,
        // step by step, never leaping back as a glitch does.
        let spliced: Vec<Fix> = (0..120)
            .map(|i| {
                let m = if i < 60 {
                    10.0 * i as f64
                } else {
                    300.0 + 12.0 * (i - 60) as f64
                };
                fix(i, 43.70 + m / 111_195.0, 7.40 + (i % 2) as f64 * 4e-6)
            })
            .collect();
        let m = measure(&input(&spliced), None);
        assert!((280.0..300.0).contains(&m.teleport_m), "{m:?}");
    }

    #[test]
    fn a_splice_inside_a_sparse_loggers_step_is_a_teleport_and_a_fast_driver_is_not() {
        // A logger every 5 s at 15 m/s; at 60 s the track jumps 280 m ahead (56 m/s).
        let spliced: Vec<Fix> = (0..30)
            .map(|k| {
                let t = k * 5;
                let m = 15.0 * t as f64 + if t >= 60 { 205.0 } else { 0.0 };
                fix(t, 43.70 + m / 111_195.0, 7.40 + (k % 2) as f64 * 4e-6)
            })
            .collect();
        let m = measure(&input(&spliced), None);
        assert!((270.0..300.0).contains(&m.teleport_m), "{m:?}");
        // 200 km/h throughout, on an autobahn: fast, not spliced.
        let fast: Vec<Fix> = (0..30)
            .map(|k| {
                let t = k * 5;
                let m = 55.0 * t as f64;
                fix(t, 43.70 + m / 111_195.0, 7.40 + (k % 2) as f64 * 4e-6)
            })
            .collect();
        assert_eq!(measure(&input(&fast), None).teleport_m, 0.0);
    }

    #[test]
    fn parked_speeding_and_stopping_are_measured() {
        let parked: Vec<Fix> = (0..600)
            .map(|i| fix(i, 43.70 + (i % 7) as f64 * 1e-5, 7.40))
            .collect();
        let m = measure(&input(&parked), None);
        assert!(m.radius_m < 10.0 && m.duration_s == 599.0, "{m:?}");
        let fast = drive(60, 70.0, 0.3);
        assert!((measure(&input(&fast), None).sustained_speed_mps - 70.0).abs() < 1.0);
        let mut stop_and_go = drive(30, 10.0, 0.3);
        let last = stop_and_go[29];
        stop_and_go.extend((30..45).map(|i| fix(i, last.pos.lat, last.pos.lon)));
        assert_eq!(measure(&input(&stop_and_go), None).stops, 1);
    }

    #[test]
    fn class_speeds_rise_with_the_class() {
        assert!(class_speed_mps("motorway") > class_speed_mps("primary"));
        assert!(class_speed_mps("primary") > class_speed_mps("residential"));
        assert_eq!(class_speed_mps("unknown"), 50.0 / 3.6);
    }

    #[test]
    fn sustained_min_needs_the_whole_window() {
        let t: Vec<f64> = (0..30).map(f64::from).collect();
        let mut v: Vec<Option<f64>> = vec![Some(2.0); 30];
        assert_eq!(sustained_min(&v, &t), Some(2.0));
        v[10] = None;
        assert_eq!(sustained_min(&v, &t), None);
        v[10] = Some(1.0);
        assert_eq!(sustained_min(&v, &t), Some(1.0));
        v[29] = Some(3.0);
        assert_eq!(sustained_min(&v, &t), Some(1.0));
    }
}
