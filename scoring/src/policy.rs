//! The reward policy: every constant of the scoring rules, read from one versioned TOML file
//! whose sha256 each epoch's manifest records.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The policy covermap ships with (`scoring/policy/v1.toml`).
pub const DEFAULT_POLICY: &str = include_str!("../policy/v1.toml");

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("the reward policy is not valid TOML for covermap: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("the reward policy's {field} {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// A parsed, checked policy with the text and hash it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewardPolicy {
    pub rules: Rules,
    /// The file's bytes, kept so an epoch can be recomputed under exactly these rules.
    #[serde(skip)]
    pub source: String,
    /// sha256 of `source`, hex.
    pub hash: String,
}

/// The constants, as the TOML file names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub version: u32,
    pub distributor: String,
    pub epoch: EpochRules,
    pub imagery: ImageryRules,
    pub radio: RadioRules,
    pub demand: DemandRules,
    pub bounty: BountyRules,
    pub verification: VerificationRules,
    /// How this policy is changed: proposals and votes (defaults where the file has none).
    #[serde(default)]
    pub governance: crate::governance::GovernanceRules,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochRules {
    pub genesis: DateTime<Utc>,
    pub length_seconds: u64,
    pub grace_seconds: u64,
    pub emission: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageryRules {
    pub points: f64,
    pub recovery_days: f64,
    pub coverage_window_days: f64,
    pub coverage_gap_weight: f64,
    pub display_half_life_days: f64,
    /// A published frame whose perceptual hash is within this many bits (of 64) of a frame
    /// published before, nearby, is refused as a `duplicate`.
    #[serde(default = "ImageryRules::default_duplicate_bits")]
    pub duplicate_bits: u32,
    /// How far (metres) a frame may be from the road segment it is filed under.
    #[serde(default = "ImageryRules::default_segment_radius_m")]
    pub segment_radius_m: f64,
}

impl ImageryRules {
    fn default_duplicate_bits() -> u32 {
        6
    }
    fn default_segment_radius_m() -> f64 {
        30.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadioRules {
    pub points: f64,
    pub corroboration_k: u32,
    pub corroboration_ring: u32,
    pub uncorroborated_factor: f64,
    pub max_eirp_dbm: f64,
    /// Plausible signal range per technology, dBm, both ends included. A technology missing here
    /// has no plausible signal: its samples never count.
    pub signal_dbm: BTreeMap<String, [i32; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandRules {
    pub max_multiplier: f64,
    pub max_area_weight: f64,
    pub usage_weight: f64,
    pub usage_resolution: u8,
    /// Most cells one demand area may hold.
    #[serde(default = "DemandRules::default_max_area_cells")]
    pub max_area_cells: usize,
    /// A bounty's budget is at most this many epochs' emission.
    #[serde(default = "DemandRules::default_max_bounty_epochs")]
    pub max_bounty_epochs: u64,
    /// An area or bounty expires at most this many days after it is created.
    #[serde(default = "DemandRules::default_max_expiry_days")]
    pub max_expiry_days: u32,
}

impl DemandRules {
    fn default_max_area_cells() -> usize {
        100_000
    }
    fn default_max_bounty_epochs() -> u64 {
        1000
    }
    fn default_max_expiry_days() -> u32 {
        366
    }

    pub fn usage_resolution(&self) -> h3o::Resolution {
        h3o::Resolution::try_from(self.usage_resolution).unwrap_or(h3o::Resolution::Seven)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BountyRules {
    pub pool_share: f64,
}

/// `[verification]`: the trust stage's thresholds (see `covermap_trust`).
pub use covermap_trust::TrustRules as VerificationRules;

impl RewardPolicy {
    /// Parses and checks a policy file's text.
    pub fn parse(source: &str) -> Result<Self, PolicyError> {
        let rules: Rules = toml::from_str(source)?;
        rules.check()?;
        Ok(Self {
            rules,
            source: source.to_owned(),
            hash: hex::encode(Sha256::digest(source.as_bytes())),
        })
    }

    /// The policy covermap ships with.
    pub fn shipped() -> Self {
        #[allow(clippy::expect_used)]
        Self::parse(DEFAULT_POLICY).expect("the shipped policy parses (tested)")
    }

    pub fn epoch_length(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.rules.epoch.length_seconds as i64)
    }

    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.rules.epoch.grace_seconds)
    }

    /// How far back driven road counts towards a cell's coverage (at most ten years: checked).
    pub fn coverage_window(&self) -> chrono::Duration {
        chrono::Duration::seconds((self.rules.imagery.coverage_window_days * 86_400.0) as i64)
    }

    /// The epoch holding `t`; `None` before genesis.
    pub fn epoch_at(&self, t: DateTime<Utc>) -> Option<u64> {
        let since = (t - self.rules.epoch.genesis).num_seconds();
        (since >= 0).then(|| since as u64 / self.rules.epoch.length_seconds)
    }

    /// Epoch `n`'s period; `None` if it lies beyond what times can say.
    pub fn period(&self, n: u64) -> Option<covermap_domain::rewards::EpochPeriod> {
        let len = i64::try_from(self.rules.epoch.length_seconds).ok()?;
        let start_s = i64::try_from(n).ok()?.checked_mul(len)?;
        let start = self
            .rules
            .epoch
            .genesis
            .checked_add_signed(chrono::Duration::try_seconds(start_s)?)?;
        let end = start.checked_add_signed(chrono::Duration::try_seconds(len)?)?;
        Some(covermap_domain::rewards::EpochPeriod {
            epoch: n,
            start,
            end,
        })
    }
}

impl Rules {
    fn check(&self) -> Result<(), PolicyError> {
        fn bad(field: &'static str, reason: impl Into<String>) -> PolicyError {
            PolicyError::Invalid {
                field,
                reason: reason.into(),
            }
        }
        let finite_pos = |field: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(field, format!("must be a positive number, not {v}")))
            }
        };
        let share = |field: &'static str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(bad(field, format!("must lie in [0, 1], not {v}")))
            }
        };
        if self.distributor.is_empty() || self.distributor.len() > 64 {
            return Err(bad("distributor", "must be 1 to 64 characters"));
        }
        self.governance
            .check()
            .map_err(|reason| PolicyError::Invalid {
                field: "governance",
                reason,
            })?;
        if self.epoch.length_seconds == 0 {
            return Err(bad("epoch.length_seconds", "must be at least 1"));
        }
        if self.epoch.length_seconds > 366 * 86400 {
            return Err(bad("epoch.length_seconds", "must be at most a year"));
        }
        if self.epoch.grace_seconds > 366 * 86400 {
            return Err(bad("epoch.grace_seconds", "must be at most a year"));
        }
        if self.epoch.emission > i64::MAX as u64 {
            return Err(bad("epoch.emission", "must fit in 63 bits"));
        }
        finite_pos("imagery.recovery_days", self.imagery.recovery_days)?;
        finite_pos(
            "imagery.coverage_window_days",
            self.imagery.coverage_window_days,
        )?;
        if self.imagery.coverage_window_days > 3_650.0 {
            return Err(PolicyError::Invalid {
                field: "imagery.coverage_window_days",
                reason: "must be at most 3650 (ten years of history)".into(),
            });
        }
        finite_pos(
            "imagery.display_half_life_days",
            self.imagery.display_half_life_days,
        )?;
        if !(self.imagery.points.is_finite() && self.imagery.points >= 0.0) {
            return Err(bad("imagery.points", "must be a number ≥ 0"));
        }
        if !(self.radio.points.is_finite() && self.radio.points >= 0.0) {
            return Err(bad("radio.points", "must be a number ≥ 0"));
        }
        if self.imagery.points + self.radio.points > 1000.0 {
            return Err(bad(
                "imagery.points",
                "and radio.points must be at most 1000",
            ));
        }
        share(
            "imagery.coverage_gap_weight",
            self.imagery.coverage_gap_weight,
        )?;
        share(
            "radio.uncorroborated_factor",
            self.radio.uncorroborated_factor,
        )?;
        share("bounty.pool_share", self.bounty.pool_share)?;
        if self.radio.corroboration_k == 0 {
            return Err(bad("radio.corroboration_k", "must be at least 1"));
        }
        if self.radio.corroboration_ring > 5 {
            return Err(bad("radio.corroboration_ring", "must be at most 5"));
        }
        if !self.radio.max_eirp_dbm.is_finite() {
            return Err(bad("radio.max_eirp_dbm", "must be a number"));
        }
        for (tech, [lo, hi]) in &self.radio.signal_dbm {
            if lo > hi {
                return Err(bad(
                    "radio.signal_dbm",
                    format!("range of {tech} is inverted ({lo} > {hi})"),
                ));
            }
        }
        if !(self.demand.max_multiplier.is_finite() && self.demand.max_multiplier >= 1.0) {
            return Err(bad("demand.max_multiplier", "must be at least 1"));
        }
        finite_pos("demand.max_area_weight", self.demand.max_area_weight)?;
        if !(self.demand.usage_weight.is_finite() && self.demand.usage_weight >= 0.0) {
            return Err(bad("demand.usage_weight", "must be a number ≥ 0"));
        }
        if self.demand.usage_resolution > 15 {
            return Err(bad("demand.usage_resolution", "must be 0 to 15"));
        }
        if self.demand.max_area_cells == 0 || self.demand.max_area_cells > 10_000_000 {
            return Err(bad("demand.max_area_cells", "must be 1 to 10,000,000"));
        }
        if self.demand.max_bounty_epochs == 0 {
            return Err(bad("demand.max_bounty_epochs", "must be at least 1"));
        }
        if self.demand.max_expiry_days == 0 {
            return Err(bad("demand.max_expiry_days", "must be at least 1"));
        }
        if self.imagery.duplicate_bits > 64 {
            return Err(bad("imagery.duplicate_bits", "must be 0 to 64"));
        }
        if !(self.imagery.segment_radius_m.is_finite() && self.imagery.segment_radius_m > 0.0) {
            return Err(bad("imagery.segment_radius_m", "must be a number > 0"));
        }
        if self.verification.duplicate_frames == 0 {
            return Err(bad("verification.duplicate_frames", "must be at least 1"));
        }
        self.verification
            .check()
            .map_err(|(field, reason)| bad(field, reason))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policy_parses_with_its_documented_defaults() {
        let p = RewardPolicy::shipped();
        assert_eq!(p.rules.version, 4);
        assert_eq!(p.rules.epoch.length_seconds, 86_400);
        assert_eq!(p.rules.imagery.recovery_days, 7.0);
        assert_eq!(p.hash.len(), 64);
        assert_eq!(p.rules.radio.signal_dbm["lte"], [-140, -43]);
    }

    #[test]
    fn the_hash_is_of_the_files_bytes() {
        let a = RewardPolicy::shipped();
        let b = RewardPolicy::parse(&format!("{DEFAULT_POLICY}\n# a comment\n")).unwrap();
        assert_eq!(a.rules, b.rules);
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn bad_policies_are_refused_naming_the_field() {
        let cases = [
            (
                "length_seconds = 86400",
                "length_seconds = 0",
                "epoch.length_seconds",
            ),
            ("pool_share = 0.2", "pool_share = 1.5", "bounty.pool_share"),
            (
                "recovery_days = 7.0",
                "recovery_days = nan",
                "imagery.recovery_days",
            ),
            (
                "corroboration_k = 2",
                "corroboration_k = 0",
                "radio.corroboration_k",
            ),
            ("lte = [-140, -43]", "lte = [-43, -140]", "radio.signal_dbm"),
        ];
        for (from, to, field) in cases {
            let text = DEFAULT_POLICY.replace(from, to);
            let e = RewardPolicy::parse(&text).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
        let e = RewardPolicy::parse(&format!("{DEFAULT_POLICY}\nsurprise = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("surprise"), "{e}");
    }

    #[test]
    fn epochs_count_from_genesis() {
        let p = RewardPolicy::shipped();
        let g = p.rules.epoch.genesis;
        assert_eq!(p.epoch_at(g), Some(0));
        assert_eq!(p.epoch_at(g - chrono::Duration::seconds(1)), None);
        assert_eq!(p.epoch_at(g + chrono::Duration::days(3)), Some(3));
        let e3 = p.period(3).unwrap();
        assert_eq!(e3.start, g + chrono::Duration::days(3));
        assert_eq!(e3.end, g + chrono::Duration::days(4));
        assert!(p.period(u64::MAX).is_none());
    }
}
