//! covermap scoring: what observations are worth, as pure functions over plain data.
//!
//! It owns the rules — today freshness, and the rewards ledger's Merkle tree ([`ledger`]);
//! coverage, radio, demand and epoch rewards join later — and keeps every constant of them in one
//! versioned [`ScoringPolicy`], so a result can always name the rules that made it. No I/O.

pub mod ledger;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Every constant the scoring rules use, under one version number that results cite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScoringPolicy {
    pub version: u32,
    /// After this long without a new observation, a cell's freshness has halved.
    pub freshness_half_life: Duration,
}

impl ScoringPolicy {
    pub const V1: ScoringPolicy = ScoringPolicy {
        version: 1,
        freshness_half_life: Duration::from_secs(7 * 24 * 3600),
    };
}

impl Default for ScoringPolicy {
    fn default() -> Self {
        Self::V1
    }
}

/// Freshness of what was last seen at `last_seen`, at time `now`: 1.0 when just seen, halving
/// every half-life, never below 0. A time after `now` (a clock ahead) counts as just seen.
pub fn freshness(last_seen: DateTime<Utc>, now: DateTime<Utc>, policy: &ScoringPolicy) -> f64 {
    let age = (now - last_seen).as_seconds_f64().max(0.0);
    let half_life = policy.freshness_half_life.as_secs_f64();
    if half_life <= 0.0 {
        return 0.0;
    }
    0.5f64.powf(age / half_life)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn freshness_halves_every_half_life() {
        let p = ScoringPolicy::V1;
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        assert_eq!(freshness(now, now, &p), 1.0);
        let week = chrono::Duration::days(7);
        assert!((freshness(now - week, now, &p) - 0.5).abs() < 1e-12);
        assert!((freshness(now - week * 2, now, &p) - 0.25).abs() < 1e-12);
        assert_eq!(freshness(now + week, now, &p), 1.0);
    }
}
