//! The thresholds of verification: the reward policy's `[verification]` section. Every number
//! a verdict depends on is here, so the policy's hash names them and `epoch verify` applies the
//! same ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[verification]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRules {
    /// A contributor is flagged, and earns nothing in the epoch, when among its uploads of the
    /// epoch this many frames were refused as repeats of another contributor's frames, or
    pub duplicate_frames: u64,
    /// at least this share of its fixes (and at least `spoofed_fix_min` of them) were refused as
    /// physically impossible, or
    pub spoofed_fix_share: f64,
    pub spoofed_fix_min: u64,
    /// at least `offender_uploads` of its uploads of the epoch were flagged or refused, making
    /// up at least `offender_share` of them: a repeat offender.
    #[serde(default = "defaults::offender_uploads")]
    pub offender_uploads: u64,
    #[serde(default = "defaults::offender_share")]
    pub offender_share: f64,
    #[serde(default)]
    pub track: TrackTrustRules,
    #[serde(default)]
    pub radio: RadioTrustRules,
}

/// `[verification.track]`: tracks, alone or under a camera drive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackTrustRules {
    /// A leap of this many metres that the track never comes back from (two drives spliced).
    pub teleport_m: f64,
    /// Between the end of one upload and the start of the next of the same device or
    /// contributor: a gap of at least `gap_min_m` metres crossed faster than `gap_speed_mps`.
    pub gap_min_m: f64,
    pub gap_speed_mps: f64,
    /// No road vehicle holds this speed for 20 s.
    pub max_sustained_mps: f64,
    /// Nor this many times its road class's reference speed for 20 s, nor this many times
    /// (`max_class_ratio_median`) for half of its moving fixes.
    pub max_class_ratio: f64,
    pub max_class_ratio_median: f64,
    /// Interpolated: this many seconds of moving fixes without any GNSS noise.
    pub noiseless_s: f64,
    /// Cutting corners: at least this share of fixes more than 25 m from any road, with
    /// the speed too even (`speed_cv` below `even_speed_cv`) or without a single stop.
    pub corner_share: f64,
    pub even_speed_cv: f64,
    /// Cutting corners, seen from the roads: the roads joining its fixes are this many times
    /// longer than the track itself, at a pace as even or as unbroken as above.
    pub max_matched_share: f64,
    /// Off the network: at least this share of fixes more than 50 m from any road, or less
    /// than `min_matched_share` of the distance moved matched to roads.
    pub off_network_share: f64,
    pub min_matched_share: f64,
    /// Or at least this share of fixes more than 100 m from any road: a stretch of the drive
    /// where no road is.
    pub off_network_far_share: f64,
    /// Parked: all fixes within this radius for at least `stationary_s`.
    pub stationary_radius_m: f64,
    pub stationary_s: f64,
    /// Times: this many fixes in the future (past the allowed clock skew) or older than the
    /// oldest age accepted, or this share of them.
    pub bad_time_fixes: u32,
    pub bad_time_share: f64,
    /// A last fix more than this many seconds after the upload arrived.
    pub arrival_slack_s: f64,
    /// A replay: at least `replay_overlap` of the track on an earlier upload's, the time
    /// shift steady to within `replay_shift_mad_s`, at most `replay_offset_m` apart.
    pub replay_overlap: f64,
    pub replay_shift_mad_s: f64,
    pub replay_offset_m: f64,
}

/// `[verification.radio]`: radio batches (geosubmit, WiGLE, OpenCelliD).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadioTrustRules {
    /// Positions jumping: this many leaps (300 m at 70 m/s or faster), and this share of steps.
    pub leaps: u32,
    pub leap_share: f64,
    /// Parked while claiming to move: all scans within `stationary_radius_m` for at least
    /// `stationary_s`, with a median reported speed above `claimed_speed_mps`.
    pub stationary_radius_m: f64,
    pub stationary_s: f64,
    pub claimed_speed_mps: f64,
    /// Farming: this many parked batches of the same contributor within `farm_radius_m` over
    /// the day around it.
    pub farm_batches: u32,
    pub farm_radius_m: f64,
    /// Readings with a signal impossible for their technology: this many and this share.
    pub impossible_signals: u32,
    pub impossible_share: f64,
    /// Loud cells flickering: this many loud cell readings (−70 dBm or stronger) that the
    /// scans just before and after (within 100 m) did not hear, and this share of the loud
    /// readings that had such a scan.
    pub vanishing_loud_cells: u32,
    pub vanishing_loud_share: f64,
    /// One emitter heard across more than this within one batch.
    pub max_cell_spread_m: f64,
    pub max_wifi_spread_m: f64,
    /// A copy: at least `duplicate_overlap` of its sightings on an earlier batch's, signals
    /// within `duplicate_signal_db`, the time shift steady to within `duplicate_shift_mad_s`.
    pub duplicate_overlap: f64,
    pub duplicate_signal_db: f64,
    pub duplicate_shift_mad_s: f64,
    /// A batch sharing fewer sightings than `small_batch` is a copy only when every one of them
    /// repeats one of the earlier batch's, within `small_signal_db` and `small_offset_m`.
    pub small_batch: u32,
    pub small_signal_db: f64,
    pub small_offset_m: f64,
    /// An emitter counts (earns, and estimates sites) once this many independent contributors
    /// heard it, in this epoch or before.
    pub emitter_min_contributors: u32,
    /// How far from its site each technology is heard at most, metres.
    pub max_range_m: BTreeMap<String, f64>,
    /// The most an emitter of each technology radiates in what phones report (dBm EIRP: for
    /// LTE and NR the reference signal of one resource element, for Wi-Fi the whole
    /// channel): the free-space bound starts from it.
    pub max_eirp_dbm: BTreeMap<String, f64>,
    /// A reading louder than every other contributor's reading of its emitter close by (within
    /// 200 m), by more than this many dB, is out of place; so is a cell at `local_strong_dbm`
    /// or stronger that none of them heard there although they heard its operator's cells.
    pub local_margin_db: f64,
    pub local_strong_dbm: f64,
    /// A batch whose readings break the range or free-space bound of their emitter's site
    /// (as the other contributors place it): this many and this share.
    pub site_violations: u32,
    pub site_violation_share: f64,
    /// A batch whose cells nobody else heard while others measured the same operator around
    /// (in its H3 cell at `area_resolution` or next to it), and whose area codes fit none of
    /// that operator's seen there: this many and this share of its cells.
    pub fabricated_cells: u32,
    pub fabricated_share: f64,
    pub area_resolution: u8,
    /// A batch whose cells of one operator (six or more) carry this share of distinct area
    /// codes or more.
    pub max_area_code_share: f64,
    /// A cell's site id (eNB, gNB, RNC) fits the operator's numbering around when it lies
    /// within this many of a site id other contributors heard there.
    pub site_id_gap: u64,
}

impl Default for TrackTrustRules {
    fn default() -> Self {
        Self {
            teleport_m: 200.0,
            gap_min_m: 500.0,
            gap_speed_mps: 30.0,
            max_sustained_mps: 55.0,
            max_class_ratio: 1.3,
            max_class_ratio_median: 1.0,
            noiseless_s: 40.0,
            corner_share: 0.12,
            even_speed_cv: 0.12,
            max_matched_share: 1.4,
            off_network_share: 0.4,
            off_network_far_share: 0.1,
            min_matched_share: 0.4,
            stationary_radius_m: 50.0,
            stationary_s: 300.0,
            bad_time_fixes: 3,
            bad_time_share: 0.05,
            arrival_slack_s: 30.0,
            replay_overlap: 0.9,
            replay_shift_mad_s: 2.0,
            replay_offset_m: 30.0,
        }
    }
}

impl Default for RadioTrustRules {
    fn default() -> Self {
        Self {
            leaps: 2,
            leap_share: 0.05,
            stationary_radius_m: 50.0,
            stationary_s: 120.0,
            claimed_speed_mps: 2.0,
            farm_batches: 4,
            farm_radius_m: 200.0,
            impossible_signals: 2,
            impossible_share: 0.05,
            vanishing_loud_cells: 10,
            vanishing_loud_share: 0.5,
            max_cell_spread_m: 40_000.0,
            max_wifi_spread_m: 1_500.0,
            duplicate_overlap: 0.8,
            duplicate_signal_db: 3.0,
            duplicate_shift_mad_s: 5.0,
            small_batch: 10,
            small_signal_db: 1.0,
            small_offset_m: 5.0,
            emitter_min_contributors: 2,
            max_range_m: [
                ("gsm", 35_000.0),
                ("wcdma", 20_000.0),
                ("lte", 20_000.0),
                ("nr", 10_000.0),
                ("wifi", 500.0),
                ("bluetooth", 100.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            max_eirp_dbm: [
                ("gsm", 61.0),
                ("wcdma", 51.0),
                ("lte", 35.0),
                ("nr", 35.0),
                ("wifi", 30.0),
                ("bluetooth", 20.0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            local_margin_db: 30.0,
            local_strong_dbm: -70.0,
            site_violations: 5,
            site_violation_share: 0.01,
            fabricated_cells: 3,
            fabricated_share: 0.5,
            area_resolution: 6,
            max_area_code_share: 0.5,
            site_id_gap: 500,
        }
    }
}

pub(crate) mod defaults {
    pub fn offender_uploads() -> u64 {
        2
    }
    pub fn offender_share() -> f64 {
        0.3
    }
}

impl TrustRules {
    /// Checks what a policy file may get wrong: the field at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let share = |field: &'static str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err((field, format!("must lie in [0, 1], not {v}")))
            }
        };
        let positive = |field: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err((field, format!("must be a positive number, not {v}")))
            }
        };
        share("verification.spoofed_fix_share", self.spoofed_fix_share)?;
        share("verification.offender_share", self.offender_share)?;
        let t = &self.track;
        for (f, v) in [
            ("verification.track.teleport_m", t.teleport_m),
            ("verification.track.gap_min_m", t.gap_min_m),
            ("verification.track.gap_speed_mps", t.gap_speed_mps),
            ("verification.track.max_sustained_mps", t.max_sustained_mps),
            ("verification.track.max_class_ratio", t.max_class_ratio),
            ("verification.track.noiseless_s", t.noiseless_s),
            ("verification.track.max_matched_share", t.max_matched_share),
            (
                "verification.track.stationary_radius_m",
                t.stationary_radius_m,
            ),
            ("verification.track.stationary_s", t.stationary_s),
            (
                "verification.track.replay_shift_mad_s",
                t.replay_shift_mad_s,
            ),
            ("verification.track.replay_offset_m", t.replay_offset_m),
        ] {
            positive(f, v)?;
        }
        for (f, v) in [
            ("verification.track.corner_share", t.corner_share),
            ("verification.track.even_speed_cv", t.even_speed_cv),
            ("verification.track.off_network_share", t.off_network_share),
            (
                "verification.track.off_network_far_share",
                t.off_network_far_share,
            ),
            ("verification.track.min_matched_share", t.min_matched_share),
            ("verification.track.bad_time_share", t.bad_time_share),
            ("verification.track.replay_overlap", t.replay_overlap),
        ] {
            share(f, v)?;
        }
        let r = &self.radio;
        for (f, v) in [
            ("verification.radio.leap_share", r.leap_share),
            ("verification.radio.impossible_share", r.impossible_share),
            (
                "verification.radio.vanishing_loud_share",
                r.vanishing_loud_share,
            ),
            ("verification.radio.duplicate_overlap", r.duplicate_overlap),
            (
                "verification.radio.site_violation_share",
                r.site_violation_share,
            ),
            ("verification.radio.fabricated_share", r.fabricated_share),
            (
                "verification.radio.max_area_code_share",
                r.max_area_code_share,
            ),
        ] {
            share(f, v)?;
        }
        for (f, v) in [
            (
                "verification.radio.stationary_radius_m",
                r.stationary_radius_m,
            ),
            ("verification.radio.stationary_s", r.stationary_s),
            ("verification.radio.farm_radius_m", r.farm_radius_m),
            ("verification.radio.max_cell_spread_m", r.max_cell_spread_m),
            ("verification.radio.max_wifi_spread_m", r.max_wifi_spread_m),
            ("verification.radio.local_margin_db", r.local_margin_db),
            (
                "verification.radio.duplicate_signal_db",
                r.duplicate_signal_db,
            ),
            (
                "verification.radio.duplicate_shift_mad_s",
                r.duplicate_shift_mad_s,
            ),
        ] {
            positive(f, v)?;
        }
        if r.emitter_min_contributors == 0 {
            return Err((
                "verification.radio.emitter_min_contributors",
                "must be at least 1".into(),
            ));
        }
        if r.area_resolution > 15 {
            return Err((
                "verification.radio.area_resolution",
                "must be an H3 resolution, 0 to 15".into(),
            ));
        }
        for (tech, m) in &r.max_range_m {
            if !(m.is_finite() && *m > 0.0) {
                return Err((
                    "verification.radio.max_range_m",
                    format!("{tech}: must be a positive number of metres, not {m}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_their_own_check_and_bad_values_name_the_field() {
        let rules = TrustRules {
            duplicate_frames: 3,
            spoofed_fix_share: 0.2,
            spoofed_fix_min: 20,
            offender_uploads: 2,
            offender_share: 0.3,
            track: TrackTrustRules::default(),
            radio: RadioTrustRules::default(),
        };
        rules.check().unwrap();
        let mut bad = rules.clone();
        bad.track.replay_overlap = 1.5;
        assert_eq!(
            bad.check().unwrap_err().0,
            "verification.track.replay_overlap"
        );
        let mut bad = rules;
        bad.radio.max_range_m.insert("lte".into(), f64::NAN);
        assert_eq!(bad.check().unwrap_err().0, "verification.radio.max_range_m");
    }
}
