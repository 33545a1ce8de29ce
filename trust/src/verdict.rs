//! Evidence and verdicts: what was measured of an upload, and what the thresholds make of it.

use serde::{Deserialize, Serialize};

use crate::radio::BatchMeasures;
use crate::rules::TrustRules;
use crate::track::TrackMeasures;
use crate::twins::Twin;
pub use covermap_domain::trust::{Finding, Verdict};

/// Everything measured of one upload: the worker writes it with the upload's results, and
/// every later verdict is computed from it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<TrackMeasures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radio: Option<BatchMeasures>,
    /// The earlier upload of the same bytes by another device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<i64>,
    /// The uploads of the same device or contributor just before and after it in time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
    /// The earlier upload it lies on most like a copy (a replayed drive, a copied batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<Twin>,
    /// Parked radio batches of the same contributor near this one over the day around it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub farm_batches: Option<u32>,
}

/// The way from one upload to a neighbouring one of the same device or contributor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub upload: i64,
    /// `device` or `contributor`: what the two share.
    pub shared: String,
    /// Seconds from the end of the earlier to the start of the later; 0 when they overlap in
    /// time, and then `distance_m` is how far apart they were at the same moments.
    pub seconds: f64,
    pub distance_m: f64,
    /// The least time to drive the way on the roads at their classes' reference speeds,
    /// where a road network is loaded and the way is short enough to look for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_drive_s: Option<f64>,
}

/// Whether no vehicle could have crossed `g`: far enough, and faster than allowed (or at the
/// same moment).
pub fn impossible_gap(g: &Gap, rules: &crate::TrackTrustRules) -> bool {
    let too_fast = g.seconds <= 0.0
        || g.distance_m / g.seconds > rules.gap_speed_mps
        || g.min_drive_s
            .is_some_and(|t| t > rules.max_class_ratio * g.seconds);
    g.distance_m >= rules.gap_min_m && too_fast
}

/// The findings against an upload under `rules`, in a fixed order; none means trusted.
pub fn judge(e: &Evidence, rules: &TrustRules) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(first) = e.copy_of {
        out.push(Finding::new(
            "copied_upload",
            format!("the same bytes were uploaded before by another device (upload {first})"),
        ));
    }
    for g in &e.gaps {
        if impossible_gap(g, &rules.track) {
            let other = if g.upload < 0 {
                format!("refused upload {}", -g.upload)
            } else {
                format!("upload {}", g.upload)
            };
            let roads = g.min_drive_s.map_or(String::new(), |t| {
                format!(", a way of {t:.0} s on its roads at their speeds")
            });
            let how = if g.seconds <= 0.0 {
                format!(
                    "{:.0} m away from {other} of the same {} at the same time",
                    g.distance_m, g.shared
                )
            } else {
                format!(
                    "{:.0} m from {other} of the same {} in {:.0} s ({:.0} m/s{roads})",
                    g.distance_m,
                    g.shared,
                    g.seconds,
                    g.distance_m / g.seconds
                )
            };
            out.push(Finding::new("teleport", how));
        }
    }
    if let Some(t) = &e.track {
        judge_track(t, e, rules, &mut out);
    }
    if let Some(r) = &e.radio {
        judge_radio(r, e, rules, &mut out);
    }
    out
}

fn judge_track(t: &TrackMeasures, e: &Evidence, rules: &TrustRules, out: &mut Vec<Finding>) {
    let r = &rules.track;
    if t.teleport_m >= r.teleport_m {
        out.push(Finding::new(
            "teleport",
            format!(
                "the track leaps {:.0} m between two fixes and never comes back",
                t.teleport_m
            ),
        ));
    }
    if t.sustained_speed_mps >= r.max_sustained_mps {
        out.push(Finding::new(
            "impossible_speed",
            format!("{:.0} km/h held for 20 s", t.sustained_speed_mps * 3.6),
        ));
    }
    if let Some(ratio) = t.roads.as_ref().and_then(|x| x.class_ratio)
        && ratio >= r.max_class_ratio
    {
        out.push(Finding::new(
            "impossible_speed",
            format!("{ratio:.2} times its roads' reference speed held for 20 s"),
        ));
    } else if let Some(ratio) = t.roads.as_ref().and_then(|x| x.class_ratio_median)
        && ratio >= r.max_class_ratio_median
    {
        out.push(Finding::new(
            "impossible_speed",
            format!("half of the drive at {ratio:.2} times or more its roads' reference speed"),
        ));
    }
    if t.noiseless_s >= r.noiseless_s {
        out.push(Finding::new(
            "synthetic_track",
            format!(
                "{:.0} s of fixes on a perfectly straight, evenly spaced line: no GNSS noise",
                t.noiseless_s
            ),
        ));
    }
    if let Some(roads) = &t.roads {
        let off = roads.over_50m >= r.off_network_share
            || roads.over_100m >= r.off_network_far_share
            || (t.path_m >= 300.0 && roads.matched_share < r.min_matched_share);
        if off {
            out.push(Finding::new(
                "off_network",
                format!(
                    "{:.0} % of fixes more than 50 m from any road ({:.0} % more than 100 m); {:.0} % of the distance matched to roads",
                    roads.over_50m * 100.0,
                    roads.over_100m * 100.0,
                    roads.matched_share.min(1.0) * 100.0
                ),
            ));
        } else if t.speed_cv < r.even_speed_cv || t.stops == 0 {
            // Cutting corners at an even pace, seen from the fixes (off the roads' line) or from
            // the roads (much longer than the track between the same places).
            let cut = if roads.over_25m >= r.corner_share {
                Some(format!(
                    "{:.0} % of fixes more than 25 m from any road",
                    roads.over_25m * 100.0
                ))
            } else if roads.matched_share >= r.max_matched_share {
                Some(format!(
                    "the roads joining its fixes are {:.1} times as long as the track",
                    roads.matched_share
                ))
            } else {
                None
            };
            if let Some(cut) = cut {
                out.push(Finding::new(
                    "synthetic_track",
                    format!(
                        "cuts corners: {cut}, at an even pace (speed varies {:.0} %, {} stops)",
                        t.speed_cv * 100.0,
                        t.stops
                    ),
                ));
            }
        }
    }
    if t.radius_m <= r.stationary_radius_m && t.duration_s >= r.stationary_s {
        out.push(Finding::new(
            "stationary",
            format!(
                "every fix within {:.0} m for {:.0} min: a parked device",
                t.radius_m,
                t.duration_s / 60.0
            ),
        ));
    }
    let total = f64::from(t.fixes + t.future_fixes + t.old_fixes).max(1.0);
    let bad = |n: u32| n >= r.bad_time_fixes || (n > 0 && f64::from(n) / total >= r.bad_time_share);
    if bad(t.future_fixes) {
        out.push(Finding::new(
            "future_time",
            format!("{} fixes dated after the upload arrived", t.future_fixes),
        ));
    } else if t.after_arrival_s > r.arrival_slack_s {
        out.push(Finding::new(
            "future_time",
            format!(
                "its last fix was taken {:.0} s after the upload arrived",
                t.after_arrival_s
            ),
        ));
    }
    if bad(t.old_fixes) {
        out.push(Finding::new(
            "ancient_time",
            format!("{} fixes older than the oldest age accepted", t.old_fixes),
        ));
    }
    if let Some(w) = &e.twin
        && w.overlap >= r.replay_overlap
        && w.shift_mad_s <= r.replay_shift_mad_s
        && w.offset_m <= r.replay_offset_m
    {
        out.push(Finding::new(
            "replay",
            format!(
                "{:.0} % of the track retraces upload {} at the same pace, shifted {:.0} s (±{:.1} s), {:.0} m apart",
                w.overlap * 100.0,
                w.upload,
                w.shift_s,
                w.shift_mad_s,
                w.offset_m
            ),
        ));
    }
}

fn judge_radio(b: &BatchMeasures, e: &Evidence, rules: &TrustRules, out: &mut Vec<Finding>) {
    let r = &rules.radio;
    if b.leaps >= r.leaps && f64::from(b.leaps) >= r.leap_share * f64::from(b.steps.max(1)) {
        out.push(Finding::new(
            "radio_teleport",
            format!(
                "{} of {} steps between scans jump 300 m or more faster than 70 m/s",
                b.leaps, b.steps
            ),
        ));
    }
    if b.positions >= 2
        && b.radius_m <= r.stationary_radius_m
        && b.duration_s >= r.stationary_s
        && b.claimed_speed_mps.is_some_and(|v| v > r.claimed_speed_mps)
    {
        out.push(Finding::new(
            "stationary_farming",
            format!(
                "every scan within {:.0} m for {:.0} min while claiming {:.0} km/h",
                b.radius_m,
                b.duration_s / 60.0,
                b.claimed_speed_mps.unwrap_or(0.0) * 3.6
            ),
        ));
    } else if let Some(n) = e.farm_batches
        && n >= r.farm_batches
    {
        out.push(Finding::new(
            "stationary_farming",
            format!(
                "{n} other parked batches of the same contributor within {:.0} m that day",
                r.farm_radius_m
            ),
        ));
    }
    let readings = f64::from(b.sightings + b.impossible_signals).max(1.0);
    if b.impossible_signals >= r.impossible_signals
        && f64::from(b.impossible_signals) / readings >= r.impossible_share
    {
        out.push(Finding::new(
            "impossible_signal",
            format!(
                "{} readings with a signal impossible for their technology",
                b.impossible_signals
            ),
        ));
    }
    if b.vanishing_loud_cells >= r.vanishing_loud_cells
        && f64::from(b.vanishing_loud_cells) >= r.vanishing_loud_share * f64::from(b.loud_cells)
    {
        out.push(Finding::new(
            "vanishing_loud_cells",
            format!(
                "{} of {} loud cell readings (-70 dBm or stronger) unheard by the scans just before and after, metres away: no real cell near enough to be that loud flickers so",
                b.vanishing_loud_cells, b.loud_cells
            ),
        ));
    }
    if b.area_code_share >= r.max_area_code_share {
        out.push(Finding::new(
            "fabricated_cells",
            format!(
                "{:.0} % of one operator's cells under area codes of their own: no network numbers its cells so",
                b.area_code_share * 100.0
            ),
        ));
    }
    if b.cell_spread_m > r.max_cell_spread_m || b.wifi_spread_m > r.max_wifi_spread_m {
        out.push(Finding::new(
            "emitter_spread",
            format!(
                "one emitter heard across {:.1} km (cells) / {:.1} km (Wi-Fi, Bluetooth) within the batch",
                b.cell_spread_m / 1000.0,
                b.wifi_spread_m / 1000.0
            ),
        ));
    }
    let copied = |w: &crate::twins::Twin| {
        if w.shared > 0 && w.shared < r.small_batch {
            w.overlap >= 0.999
                && w.offset_m <= r.small_offset_m
                && w.shift_mad_s <= r.duplicate_shift_mad_s
                && w.signal_diff_db.is_some_and(|d| d <= r.small_signal_db)
        } else {
            w.overlap >= r.duplicate_overlap
                && w.shift_mad_s <= r.duplicate_shift_mad_s
                && w.signal_diff_db.is_none_or(|d| d <= r.duplicate_signal_db)
        }
    };
    if let Some(w) = &e.twin
        && copied(w)
    {
        out.push(Finding::new(
            "duplicate_batch",
            format!(
                "{:.0} % of its readings repeat upload {}'s, signals {} apart, shifted {:.0} s (±{:.1} s)",
                w.overlap * 100.0,
                w.upload,
                w.signal_diff_db
                    .map_or_else(|| "?".to_owned(), |d| format!("{d:.1} dB")),
                w.shift_s,
                w.shift_mad_s
            ),
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::track::RoadMeasures;

    /// A 10-minute, 6 km drive on the roads at a town pace, with stops: nothing against it.
    fn honest() -> Evidence {
        Evidence {
            track: Some(TrackMeasures {
                fixes: 600,
                start: None,
                end: None,
                duration_s: 600.0,
                path_m: 6000.0,
                radius_m: 2000.0,
                future_fixes: 0,
                old_fixes: 0,
                after_arrival_s: 0.0,
                teleport_m: 0.0,
                sustained_speed_mps: 15.0,
                noiseless_s: 0.0,
                speed_cv: 0.3,
                stops: 2,
                roads: Some(RoadMeasures {
                    matched_share: 1.03,
                    over_25m: 0.0,
                    over_50m: 0.0,
                    over_100m: 0.0,
                    class_ratio: Some(0.9),
                    class_ratio_median: Some(0.8),
                }),
            }),
            ..Evidence::default()
        }
    }

    fn codes(e: &Evidence) -> Vec<String> {
        let rules = TrustRules {
            duplicate_frames: 3,
            spoofed_fix_share: 0.2,
            spoofed_fix_min: 10,
            offender_uploads: crate::rules::defaults::offender_uploads(),
            offender_share: crate::rules::defaults::offender_share(),
            track: crate::TrackTrustRules::default(),
            radio: crate::rules::RadioTrustRules::default(),
        };
        judge(e, &rules).into_iter().map(|f| f.code).collect()
    }

    fn roads(e: &mut Evidence) -> &mut RoadMeasures {
        e.track.as_mut().unwrap().roads.as_mut().unwrap()
    }

    #[test]
    fn an_honest_drive_has_no_findings() {
        assert!(codes(&honest()).is_empty());
    }

    #[test]
    fn a_calm_drive_played_at_twice_its_pace_is_too_fast_for_its_roads() {
        let mut e = honest();
        roads(&mut e).class_ratio = Some(1.35);
        roads(&mut e).class_ratio_median = Some(0.95);
        assert_eq!(codes(&e), ["impossible_speed"]);
        let mut e = honest();
        roads(&mut e).class_ratio_median = Some(1.15);
        assert_eq!(codes(&e), ["impossible_speed"]);
    }

    #[test]
    fn a_stretch_where_no_road_is_puts_the_drive_off_the_network() {
        let mut e = honest();
        roads(&mut e).over_50m = 0.16;
        roads(&mut e).over_100m = 0.15;
        assert_eq!(codes(&e), ["off_network"]);
        // A few fixes astray (a multipath excursion) are not a stretch.
        roads(&mut e).over_100m = 0.03;
        assert!(codes(&e).is_empty());
    }

    #[test]
    fn straight_lines_between_waypoints_cut_the_roads_corners() {
        let mut e = honest();
        roads(&mut e).matched_share = 2.4;
        e.track.as_mut().unwrap().speed_cv = 0.02;
        e.track.as_mut().unwrap().stops = 0;
        assert_eq!(codes(&e), ["synthetic_track"]);
        // The same roads at a real driver's varying pace, stops and all: a sparse logger on
        // a winding road.
        let mut e = honest();
        roads(&mut e).matched_share = 2.4;
        assert!(codes(&e).is_empty());
    }

    #[test]
    fn a_replay_keeps_one_shift_and_a_repeated_route_does_not() {
        let twin = |mad: f64| Twin {
            upload: 7,
            overlap: 1.0,
            shift_s: 86_400.0,
            shift_mad_s: mad,
            offset_m: 8.0,
            signal_diff_db: None,
            shared: 300,
        };
        let mut e = honest();
        e.twin = Some(twin(0.5));
        assert_eq!(codes(&e), ["replay"]);
        e.twin = Some(twin(2.5));
        assert!(codes(&e).is_empty());
    }
}
