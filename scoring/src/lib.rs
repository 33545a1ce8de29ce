//! covermap scoring: what observations are worth, as pure functions over plain data.
//!
//! It owns the rules — freshness, coverage gaps, radio plausibility and corroboration
//! ([`radio`]), demand and reward weights, closing an epoch into integer rewards ([`epoch`]),
//! the earnings estimate of a planned drive ([`estimate`]) and the rewards ledger's Merkle tree
//! ([`ledger`]) — and keeps every constant of them in one
//! versioned [`RewardPolicy`] read from TOML, so a result can always name the rules that made it.
//! No I/O: the store reads the inputs and writes the outcome.

pub mod epoch;
pub mod estimate;
pub mod governance;
pub mod ledger;
pub mod policy;
pub mod radio;

use chrono::{DateTime, Utc};

pub use policy::{PolicyError, RewardPolicy};

/// Freshness of what was last seen at `last_seen`, at time `now`, as the map shades it: 1.0 when
/// just seen, halving every `display_half_life_days`. A time after `now` (a clock ahead) counts
/// as just seen.
pub fn freshness(last_seen: DateTime<Utc>, now: DateTime<Utc>, policy: &RewardPolicy) -> f64 {
    freshness_at_age((now - last_seen).as_seconds_f64(), policy)
}

/// [`freshness`] of something `age_seconds` old (the map draws thousands a tile).
pub fn freshness_at_age(age_seconds: f64, policy: &RewardPolicy) -> f64 {
    let half_life = policy.rules.imagery.display_half_life_days * 86_400.0;
    // 2^-x is 0.5^x, without the logarithm of the base `powf` takes on every call.
    (-(age_seconds.max(0.0) / half_life)).exp2()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn freshness_halves_every_half_life() {
        let p = RewardPolicy::shipped();
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        assert_eq!(freshness(now, now, &p), 1.0);
        let week = chrono::Duration::days(7);
        assert!((freshness(now - week, now, &p) - 0.5).abs() < 1e-12);
        assert!((freshness(now - week * 2, now, &p) - 0.25).abs() < 1e-12);
        assert_eq!(freshness(now + week, now, &p), 1.0);
    }
}
