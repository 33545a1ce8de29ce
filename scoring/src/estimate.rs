//! The earnings estimate before driving: what a planned drive would earn at a planned time, cell
//! by cell, by the rules an epoch closes with ([`crate::epoch`]).
//!
//! - **Points.** A camera drive earns, in each cell it crosses, `points × weight` for its first
//!   frame there ([`reward_weight`] at the planned time: a cell last captured at L has recovered
//!   a staleness of `(t − L) / recovery_days`, at most 1). Later frames of the same cell moments
//!   later earn almost nothing, so one capture per cell is counted. Radio is left out: what a
//!   phone will hear is not known before driving.
//! - **Bounties.** Each open bounty of a cell that is still live at the planned time pays
//!   `budget / cells` (at most what is left of it) for the cell's first capture; one that
//!   expires first pays nothing. Together at most the epoch's bounty pool.
//! - **Base units.** An epoch splits its base pool pro rata to points; the denominator is not
//!   known before the epoch closes. For each of the trailing closed epochs (with points), the
//!   drive's share is `base_pool × p / (total + p)`. The expected figure is that share under
//!   the median epoch, low under the busiest (most points), high under the quietest — an empty
//!   trailing epoch included, where the drive would have taken the whole pool: a network whose
//!   epochs are sometimes empty cannot promise less. Without a closed epoch with points there is
//!   no denominator and no base estimate.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use covermap_domain::Cell;
use covermap_domain::rewards::EpochInputs;
use serde::Serialize;

use crate::epoch::{CellFactors, CellWeight, reward_weight};
use crate::policy::RewardPolicy;

/// Points are counted in millionths, as [`crate::epoch::close`] counts them.
const MICRO: f64 = 1_000_000.0;

/// What a cell will be like at the planned time, as far as is known now.
#[derive(Debug, Clone, PartialEq)]
pub struct CellOutlook {
    pub cell: Cell,
    /// Its demand multiplier (areas live at the planned time and the usage term).
    pub demand: f64,
    /// Its newest capture known now.
    pub last_seen: Option<DateTime<Utc>>,
    pub coverage_gap: f64,
    /// Bounties holding it that it has not been claimed from.
    pub bounties: Vec<OpenBounty>,
}

/// A bounty a cell could claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OpenBounty {
    pub area: i64,
    /// `budget / cells` of its area.
    pub per_cell: u64,
    /// Its budget not paid yet.
    pub left: u64,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A closed epoch the base estimate is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrailingEpoch {
    pub epoch: u64,
    /// Micro-points every contributor earned in it.
    pub total_points: u64,
    /// Its emission less what bounties took.
    pub base_pool: u64,
}

/// One cell of an estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellEstimate {
    pub cell: Cell,
    #[serde(flatten)]
    pub weight: CellWeight,
    pub last_seen: Option<DateTime<Utc>>,
    /// Micro-points for its first capture.
    pub points: u64,
    /// Base units its open bounties would pay for its first capture.
    pub bounty: u64,
}

/// Low, expected and high base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Range {
    pub low: u64,
    pub expected: u64,
    pub high: u64,
}

/// What a planned drive would earn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    pub at: DateTime<Utc>,
    pub cells: Vec<CellEstimate>,
    /// Micro-points, summed over the cells.
    pub points: u64,
    /// Base units from bounties, at most the epoch's bounty pool.
    pub bounty: u64,
    /// Base units from the base pool; `None` without a trailing epoch with points.
    pub base: Option<Range>,
    /// base + bounty.
    pub total: Option<Range>,
    /// The trailing epochs the base range was measured against, oldest first.
    pub trailing: Vec<TrailingEpoch>,
}

/// Estimates a drive through `cells` (each once, in the order given) at `at`.
pub fn estimate(
    cells: &[CellOutlook],
    at: DateTime<Utc>,
    trailing: &[TrailingEpoch],
    policy: &RewardPolicy,
) -> Estimate {
    let mut left: HashMap<i64, u64> = HashMap::new();
    let mut out = Vec::with_capacity(cells.len());
    for c in cells {
        let weight = reward_weight(c.demand, c.last_seen, c.coverage_gap, at, policy);
        let points = (policy.rules.imagery.points * weight.weight * MICRO).round() as u64;
        let mut bounty = 0u64;
        for b in c.bounties.iter().filter(|b| pays_at(b, at)) {
            let l = left.entry(b.area).or_insert(b.left);
            let amount = b.per_cell.min(*l);
            *l -= amount;
            bounty = bounty.saturating_add(amount);
        }
        out.push(CellEstimate {
            cell: c.cell,
            weight,
            last_seen: c.last_seen,
            points,
            bounty,
        });
    }
    let points: u64 = out.iter().map(|c| c.points).sum();
    let claimed: u64 = out.iter().map(|c| c.bounty).sum();
    let bounty = claimed.min(bounty_pool(policy));
    let base = base_range(points, trailing);
    Estimate {
        at,
        cells: out,
        points,
        bounty,
        base,
        total: base.map(|b| Range {
            low: b.low.saturating_add(bounty),
            expected: b.expected.saturating_add(bounty),
            high: b.high.saturating_add(bounty),
        }),
        trailing: trailing.to_vec(),
    }
}

/// A bounty pays a capture at `at` if it was posted by then and does not expire first.
fn pays_at(b: &OpenBounty, at: DateTime<Utc>) -> bool {
    b.created_at <= at && b.expires_at.is_none_or(|e| at < e)
}

/// At most this share of an epoch's emission pays bounty claims.
fn bounty_pool(policy: &RewardPolicy) -> u64 {
    let rules = &policy.rules;
    (u128::from(rules.epoch.emission) * ((rules.bounty.pool_share * MICRO).round() as u128)
        / MICRO as u128) as u64
}

/// The drive's base share under each trailing epoch with points: the median, the busiest (low)
/// and the quietest (high), an empty trailing epoch's whole pool included in the high end.
pub fn base_range(points: u64, trailing: &[TrailingEpoch]) -> Option<Range> {
    let mut shares: Vec<u64> = trailing
        .iter()
        .filter(|e| e.total_points > 0)
        .map(|e| share(e.base_pool, points, e.total_points))
        .collect();
    shares.sort_unstable();
    let low = *shares.first()?;
    let alone = trailing
        .iter()
        .filter(|e| e.total_points == 0)
        .map(|e| share(e.base_pool, points, 0));
    let high = shares.iter().copied().chain(alone).max().unwrap_or(low);
    let mid = shares.len() / 2;
    let expected = if shares.len() % 2 == 1 {
        shares[mid]
    } else {
        ((u128::from(shares[mid - 1]) + u128::from(shares[mid])) / 2) as u64
    };
    Some(Range {
        low,
        expected,
        high,
    })
}

/// `pool × p / (others + p)`, floored, as the epoch floors each share.
fn share(pool: u64, p: u64, others: u64) -> u64 {
    let total = u128::from(others) + u128::from(p);
    (u128::from(pool) * u128::from(p))
        .checked_div(total)
        .map_or(0, |v| v as u64)
}

/// The outlook of `cells` at `at` as an epoch's inputs describe them, leaving out the captures of
/// upload `without` and any at or after `at`: the state just before an upload, for measuring an
/// estimate made then against what the upload earned.
pub fn outlook_in_epoch(
    inputs: &EpochInputs,
    cells: &[Cell],
    at: DateTime<Utc>,
    without: i64,
    policy: &RewardPolicy,
) -> Vec<CellOutlook> {
    let factors = CellFactors::new(inputs, policy);
    let before: Vec<_> = inputs
        .captures
        .iter()
        .filter(|c| c.upload_id != without && c.captured_at < at)
        .collect();
    let mut seen: HashMap<Cell, DateTime<Utc>> = HashMap::new();
    for c in &before {
        let e = seen.entry(c.cell).or_insert(c.captured_at);
        *e = (*e).max(c.captured_at);
    }
    cells
        .iter()
        .map(|&cell| {
            let earlier = factors
                .last_seen
                .get(&cell)
                .and_then(|&t| DateTime::from_timestamp_micros(t));
            let bounties = inputs
                .demand
                .iter()
                .filter(|a| a.cells.contains(&cell))
                .filter_map(|a| {
                    let b = a.bounty.as_ref()?;
                    // Claimed in an earlier epoch, or by a capture of this one before `at`.
                    let taken = b.claimed.contains(&cell)
                        || before
                            .iter()
                            .any(|c| c.cell == cell && c.captured_at >= a.created_at);
                    let cells = a.cells.len() as u64;
                    (!b.refunded && !taken && cells > 0).then(|| OpenBounty {
                        area: a.id,
                        per_cell: b.budget / cells,
                        left: b.budget.saturating_sub(b.spent),
                        created_at: a.created_at,
                        expires_at: a.expires_at,
                    })
                })
                .collect();
            CellOutlook {
                cell,
                demand: factors.demand(&cell),
                last_seen: earlier.max(seen.get(&cell).copied()),
                coverage_gap: factors.gap(&cell),
                bounties,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0).unwrap()
    }

    fn cell(i: u64) -> Cell {
        let base = h3o::LatLng::new(43.73, 7.42)
            .unwrap()
            .to_cell(h3o::Resolution::Eleven);
        Cell(base.grid_disk::<Vec<_>>(3)[i as usize])
    }

    fn outlook(i: u64) -> CellOutlook {
        CellOutlook {
            cell: cell(i),
            demand: 1.0,
            last_seen: None,
            coverage_gap: 1.0,
            bounties: Vec::new(),
        }
    }

    fn epoch(n: u64, total: u64) -> TrailingEpoch {
        TrailingEpoch {
            epoch: n,
            total_points: total,
            base_pool: 1_000_000,
        }
    }

    #[test]
    fn a_never_seen_cell_earns_the_full_points_times_demand() {
        let p = RewardPolicy::shipped();
        let mut c = outlook(0);
        c.demand = 3.0;
        let e = estimate(&[c], t(10), &[], &p);
        assert_eq!(e.points, 3_000_000);
        assert_eq!(e.base, None, "no trailing epoch, no denominator");
        assert_eq!(e.total, None);
    }

    #[test]
    fn staleness_recovers_linearly_to_one_over_the_recovery_days() {
        let p = RewardPolicy::shipped();
        let days = p.rules.imagery.recovery_days;
        let mut c = outlook(0);
        c.last_seen = Some(t(1));
        // Planned half the recovery period later, then after it.
        let half = t(1) + chrono::Duration::seconds((days * 86_400.0 / 2.0) as i64);
        let e = estimate(std::slice::from_ref(&c), half, &[], &p);
        assert!((e.cells[0].weight.staleness - 0.5).abs() < 1e-9, "{e:?}");
        assert_eq!(e.points, 500_000);
        let e = estimate(&[c], t(1) + chrono::Duration::days(30), &[], &p);
        assert_eq!(e.cells[0].weight.staleness, 1.0);
    }

    #[test]
    fn a_bounty_that_expires_before_the_planned_time_pays_nothing() {
        let p = RewardPolicy::shipped();
        let bounty = |expires: u32| OpenBounty {
            area: 7,
            per_cell: 100,
            left: 150,
            created_at: t(1),
            expires_at: Some(t(expires)),
        };
        let mut a = outlook(0);
        a.bounties = vec![bounty(20)];
        let mut b = outlook(1);
        b.bounties = vec![bounty(20)];
        // Two cells of one area with 150 left: 100, then the 50 that remain.
        let e = estimate(&[a.clone(), b], t(10), &[], &p);
        assert_eq!(
            e.cells.iter().map(|c| c.bounty).collect::<Vec<_>>(),
            [100, 50]
        );
        assert_eq!(e.bounty, 150);
        a.bounties = vec![bounty(5)];
        assert_eq!(estimate(&[a.clone()], t(10), &[], &p).bounty, 0);
        // Nor does one posted after the planned time.
        a.bounties = vec![OpenBounty {
            created_at: t(12),
            ..bounty(20)
        }];
        assert_eq!(estimate(&[a], t(10), &[], &p).bounty, 0);
    }

    #[test]
    fn base_units_are_the_share_under_the_median_busiest_and_quietest_epochs() {
        let p = RewardPolicy::shipped();
        // 1 point (1e6 micro) against 1, 3 and 9 points: shares 1/2, 1/4, 1/10 of 1e6.
        let trailing = [
            epoch(1, 3_000_000),
            epoch(2, 1_000_000),
            epoch(3, 9_000_000),
        ];
        let e = estimate(&[outlook(0)], t(10), &trailing, &p);
        assert_eq!(
            e.base,
            Some(Range {
                low: 100_000,
                expected: 250_000,
                high: 500_000
            })
        );
        // An even count: the mean of the middle two; an empty epoch does not count towards the
        // expected figure, but alone in it the drive would have taken the whole pool: the high end.
        let trailing = [epoch(1, 3_000_000), epoch(2, 1_000_000), epoch(3, 0)];
        let r = base_range(1_000_000, &trailing).unwrap();
        assert_eq!((r.low, r.expected, r.high), (250_000, 375_000, 1_000_000));
        assert_eq!(base_range(1_000_000, &[epoch(3, 0)]), None);
        // Nothing to earn: nothing, not a division by zero.
        assert_eq!(base_range(0, &trailing).unwrap().high, 0);
    }

    #[test]
    fn bounties_together_take_at_most_the_pool() {
        let p = RewardPolicy::shipped();
        let pool = bounty_pool(&p);
        let mut a = outlook(0);
        a.bounties = vec![OpenBounty {
            area: 1,
            per_cell: u64::MAX / 4,
            left: u64::MAX / 4,
            created_at: t(1),
            expires_at: None,
        }];
        let e = estimate(&[a], t(10), &[epoch(1, 1)], &p);
        assert_eq!(e.bounty, pool);
        assert_eq!(e.total.unwrap().low, e.base.unwrap().low + pool);
    }
}
