//! Closing an epoch: attributing its contributions, splitting its emission in integer base units
//! and committing every contributor's cumulative total to a Merkle root.
//!
//! The rules, in the order they apply:
//!
//! 1. **Verification.** Every upload is judged again from the evidence its worker measured
//!    (`covermap_trust::judge` under the policy's `[verification]`): a flagged upload earns
//!    nothing and makes no place look fresh. Two uploads of one device or contributor that no
//!    vehicle could have driven between are both flagged, and so is a batch that hears one cell
//!    too loud at places too far apart for any one site (`self_contradiction`). Then the
//!    epoch's radio is assessed as a
//!    whole (`covermap_trust::emitters`): each emitter's site is placed from the trusted
//!    sightings, readings are checked against the site the *other* contributors place their
//!    emitter at, batches of cells nobody else heard are fabricated; only sightings of emitters
//!    enough independent contributors heard count. Last, a contributor whose uploads carry
//!    `duplicate_frames` frames refused as repeats of someone else's, a `spoofed_fix_share` of
//!    physically impossible fixes, or `offender_uploads` flagged or refused uploads, is flagged:
//!    a penalty is recorded, and all its contributions are left out.
//! 2. **Imagery.** A cell's captures are taken in time order. Each earns
//!    `points × weight`, where [`reward_weight`] is the cell's demand multiplier × its
//!    staleness at that moment × its coverage factor. Staleness is the time since the cell's
//!    previous capture (this epoch's or the newest of earlier epochs) over the recovery period,
//!    capped at 1: the first fresh capture of a stale place earns most, a repeat moments later
//!    almost nothing. Uploads bound to no contributor make places fresh but earn nothing.
//! 3. **Radio.** Each contributor earns `points × demand` once per (cell, technology, operator)
//!    it measured with a counted sighting (a signal in range, of a verified emitter, in place),
//!    scaled by `uncorroborated_factor` unless k contributors measured the same network in or
//!    around the cell.
//! 4. **Bounties.** The first capture of each unclaimed cell of a live bounty (at or after the
//!    bounty was posted) claims `budget / cells`. Claims together take at most `pool_share` of
//!    the emission; beyond it they are paid in proportion, the rest staying in the bounty. A
//!    bounty that expired by the epoch's end releases what it did not pay (its refund).
//! 5. **Split.** What bounties did not take is split pro rata to points, which are counted in
//!    integer micro-points, flooring each share; the remainder is recorded as unallocated dust.
//! 6. **Ledger.** Every contributor's cumulative total (earlier epochs plus this one) is a leaf;
//!    the root commits to all of them.
//!
//! [`close`] calls one function per step — `verify`, `score_imagery`, `score_radio`,
//! `pay_bounties`, `split_pool`, `manifest` — over the cells' factors (`CellFactors`: demand,
//! coverage gap, last capture) and a tally of points by contributor and cell; each is tested on
//! its own below, and the whole close by hand and by its properties in `tests/epoch.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use covermap_domain::Cell;
pub use covermap_domain::rewards::{
    BountyClaim, BountyRefund, CellReward, ContributorReward, EpochOutcome, InputHashes, Manifest,
    Penalty, UploadVerdict,
};
use covermap_domain::rewards::{Capture, EpochInputs, EpochPeriod, RadioSample};
use covermap_trust::{Evidence, Finding, Verdict};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ledger::{self, LedgerLeaf, MerkleTree};
use crate::policy::RewardPolicy;
use crate::radio;

/// Points are counted in millionths, as integers, so sums do not depend on order.
const MICRO: f64 = 1_000_000.0;

/// What a place is worth to capture now: the demand map's number and the epoch's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CellWeight {
    /// 1 + the weights of the demand areas holding the cell + the usage term, at most the
    /// policy's maximum.
    pub demand: f64,
    /// 0 just after a capture, rising linearly to 1 over the recovery period; 1 if never seen.
    pub staleness: f64,
    /// Share of the cell's road length not driven within the coverage window (1 without roads).
    pub coverage_gap: f64,
    /// demand × staleness × ((1 − g) + g × coverage_gap), g the policy's coverage_gap_weight.
    pub weight: f64,
}

/// The documented reward weight of a cell at time `t`.
pub fn reward_weight(
    demand: f64,
    last_seen: Option<DateTime<Utc>>,
    coverage_gap: f64,
    t: DateTime<Utc>,
    policy: &RewardPolicy,
) -> CellWeight {
    let staleness = staleness(
        last_seen.map(|l| l.timestamp_micros()),
        t.timestamp_micros(),
        recovery_micros(policy),
    );
    let g = policy.rules.imagery.coverage_gap_weight;
    CellWeight {
        demand,
        staleness,
        coverage_gap,
        weight: demand * staleness * ((1.0 - g) + g * coverage_gap),
    }
}

fn recovery_micros(policy: &RewardPolicy) -> f64 {
    policy.rules.imagery.recovery_days * 86_400.0 * 1e6
}

fn staleness(last_seen: Option<i64>, t: i64, recovery: f64) -> f64 {
    match last_seen {
        None => 1.0,
        Some(l) => ((t - l) as f64 / recovery).clamp(0.0, 1.0),
    }
}

/// Share of a cell's roads not driven recently: 1 − observed / length, in [0, 1].
pub fn coverage_gap(road_length_m: f64, observed_m: f64) -> f64 {
    if road_length_m > 0.0 && observed_m.is_finite() {
        1.0 - (observed_m / road_length_m).clamp(0.0, 1.0)
    } else {
        1.0
    }
}

/// A cell's demand multiplier: 1, plus `area_weight` (the weights of the live areas holding it,
/// see [`area_weights`]), plus the usage term of the area map consumers looked at (`usage`,
/// requests per H3 cell at the policy's usage resolution), at most the policy's maximum.
pub fn demand_multiplier(
    cell: Cell,
    area_weight: f64,
    usage: &HashMap<Cell, u64>,
    policy: &RewardPolicy,
) -> f64 {
    let d = &policy.rules.demand;
    let requests = if usage.is_empty() {
        0
    } else {
        cell.0
            .parent(d.usage_resolution())
            .and_then(|p| usage.get(&Cell(p)).copied())
            .unwrap_or(0)
    };
    // ⌊log2(1 + requests)⌋ as an integer, so every machine computes the same multiplier.
    let doublings = u64::BITS - (requests.saturating_add(1)).leading_zeros() - 1;
    (1.0 + area_weight + d.usage_weight * f64::from(doublings)).min(d.max_multiplier)
}

/// Sum of the weights of the live demand areas holding each cell.
pub fn area_weights(inputs: &EpochInputs, policy: &RewardPolicy) -> HashMap<Cell, f64> {
    let mut m: HashMap<Cell, f64> = HashMap::new();
    for area in inputs
        .demand
        .iter()
        .filter(|a| live_in(a.created_at, a.expires_at, &inputs.period))
    {
        let w = area.weight.clamp(0.0, policy.rules.demand.max_area_weight);
        let mut cells = area.cells.clone();
        cells.sort_unstable();
        cells.dedup();
        for c in &cells {
            *m.entry(*c).or_insert(0.0) += w;
        }
    }
    m
}

fn live_in(created: DateTime<Utc>, expires: Option<DateTime<Utc>>, p: &EpochPeriod) -> bool {
    created < p.end && expires.is_none_or(|e| e > p.start)
}

/// The ledger leaves behind an epoch's root: every contributor with a cumulative total above 0.
pub fn leaves(outcome: &EpochOutcome) -> Vec<LedgerLeaf> {
    leaves_of(
        outcome.manifest.epoch,
        &outcome.manifest.distributor,
        &outcome.rewards,
    )
}

/// Closes an epoch: pure, deterministic, and independent of the order of every input list.
pub fn close(inputs: &EpochInputs, policy: &RewardPolicy) -> EpochOutcome {
    let verified = verify(inputs, policy);
    let factors = CellFactors::new(inputs, policy);
    let mut tally = Tally::new(inputs, &verified.flagged);
    let captures = counted_captures(inputs, &verified);
    score_imagery(&captures, &factors, &mut tally, policy);
    score_radio(inputs, &verified, &factors, &mut tally, policy);
    let bounties = pay_bounties(inputs, &captures, &mut tally, policy);
    let split = split_pool(inputs, &factors, tally, &bounties, &verified, policy);
    let radio = radio_results(inputs, &verified);
    let Verified {
        findings,
        assessment,
        penalties,
        ..
    } = verified;
    let root = MerkleTree::new(&leaves_of(
        inputs.period.epoch,
        &policy.rules.distributor,
        &split.rewards,
    ))
    .root();
    let manifest = manifest(
        inputs, policy, &split, &bounties, &penalties, &findings, root,
    );
    let verdicts = findings
        .into_iter()
        .map(|(upload_id, findings)| UploadVerdict {
            upload_id,
            verdict: Verdict::of(&findings),
            credited_cells: radio.cells.get(&upload_id).map(|c| c.len() as u64),
            findings,
        })
        .collect();
    EpochOutcome {
        manifest,
        rewards: split.rewards,
        cells: split.cells,
        penalties,
        claims: bounties.claims,
        refunds: bounties.refunds,
        verdicts,
        emitters: assessment.sites,
        uncounted_radio: radio.uncounted,
    }
}

/// Step 1's verdicts: each upload's findings, which radio sightings count, and the contributors
/// left out with their penalties.
struct Verified {
    findings: BTreeMap<i64, Vec<Finding>>,
    assessment: covermap_trust::emitters::RadioAssessment,
    /// By contributor, one each.
    penalties: Vec<Penalty>,
    flagged: HashSet<String>,
}

impl Verified {
    /// Whether nothing was found against `upload` (an upload without evidence is trusted).
    fn trusted(&self, upload: i64) -> bool {
        self.findings.get(&upload).is_none_or(Vec::is_empty)
    }

    /// Whether a contribution of `contributor` counts (one bound to nobody does).
    fn counts(&self, contributor: Option<&str>) -> bool {
        contributor.is_none_or(|c| !self.flagged.contains(c))
    }
}

/// Step 1, verification: each upload from its evidence, then the epoch's radio as a whole
/// (self-contradicting batches, then emitters' sites and who heard them), then each contributor.
fn verify(inputs: &EpochInputs, policy: &RewardPolicy) -> Verified {
    let rules = &policy.rules;
    let v = &rules.verification;
    let mut findings = upload_findings(inputs, policy);
    let plausible: Vec<bool> = inputs
        .radio
        .iter()
        .map(|s| s.contributor.is_some() && radio::plausibility(s, &rules.radio).is_ok())
        .collect();
    let contradicting = covermap_trust::emitters::contradictions(
        &inputs.radio,
        &plausible,
        &v.radio,
        rules.radio.max_eirp_dbm,
    );
    for (upload, f) in contradicting {
        findings.entry(upload).or_default().extend(f);
    }
    let trusted = |id: i64| findings.get(&id).is_none_or(Vec::is_empty);
    let eligible: Vec<bool> = inputs
        .radio
        .iter()
        .zip(&plausible)
        .map(|(s, plausible)| *plausible && trusted(s.upload_id))
        .collect();
    let assessment = covermap_trust::emitters::assess(
        &inputs.radio,
        &eligible,
        &inputs.emitters,
        &v.radio,
        rules.radio.max_eirp_dbm,
    );
    for (upload, f) in &assessment.findings {
        findings
            .entry(*upload)
            .or_default()
            .extend(f.iter().cloned());
    }
    let penalties = penalties(inputs, &findings, v);
    let flagged = penalties.iter().map(|p| p.contributor.clone()).collect();
    Verified {
        findings,
        assessment,
        penalties,
        flagged,
    }
}

/// The contributors left out, one penalty each (the first by reason, then detail): duplicated
/// frames, spoofed fixes, repeat offences.
fn penalties(
    inputs: &EpochInputs,
    findings: &BTreeMap<i64, Vec<Finding>>,
    v: &covermap_trust::TrustRules,
) -> Vec<Penalty> {
    let mut penalties: Vec<Penalty> = Vec::new();
    for e in &inputs.evidence {
        let fixes = e.fixes_accepted + e.fixes_spoofed;
        if e.frames_duplicated >= v.duplicate_frames {
            penalties.push(Penalty {
                contributor: e.contributor.clone(),
                reason: "duplicated_frames".into(),
                detail: format!(
                    "{} frames repeated another contributor's published frames",
                    e.frames_duplicated
                ),
            });
        } else if e.fixes_spoofed >= v.spoofed_fix_min
            && fixes > 0
            && e.fixes_spoofed as f64 >= v.spoofed_fix_share * fixes as f64
        {
            penalties.push(Penalty {
                contributor: e.contributor.clone(),
                reason: "spoofing".into(),
                detail: format!(
                    "{} of {fixes} fixes were physically impossible",
                    e.fixes_spoofed
                ),
            });
        }
    }
    penalties.extend(repeat_offenders(inputs, findings, v));
    penalties.sort_by(|a, b| {
        (&a.contributor, &a.reason, &a.detail).cmp(&(&b.contributor, &b.reason, &b.detail))
    });
    penalties.dedup_by(|a, b| a.contributor == b.contributor);
    penalties
}

/// What a cell's contributions are worth besides their own: its demand multiplier, coverage gap
/// and the newest capture before the epoch.
pub(crate) struct CellFactors<'a> {
    policy: &'a RewardPolicy,
    areas: HashMap<Cell, f64>,
    usage: HashMap<Cell, u64>,
    gaps: HashMap<Cell, f64>,
    /// Unix micros.
    pub(crate) last_seen: HashMap<Cell, i64>,
}

impl<'a> CellFactors<'a> {
    pub(crate) fn new(inputs: &EpochInputs, policy: &'a RewardPolicy) -> Self {
        let mut usage: HashMap<Cell, u64> = HashMap::new();
        for u in &inputs.usage {
            *usage.entry(u.area).or_default() += u.requests;
        }
        // A cell listed twice has its roads in two rows: they add up.
        let mut roads: HashMap<Cell, (f64, f64)> = HashMap::new();
        let mut sorted_roads: Vec<_> = inputs.roads.iter().collect();
        sorted_roads.sort_by(|a, b| {
            (a.cell, a.road_length_m, a.observed_m)
                .partial_cmp(&(b.cell, b.road_length_m, b.observed_m))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        for r in sorted_roads {
            let e = roads.entry(r.cell).or_default();
            e.0 += r.road_length_m;
            e.1 += r.observed_m;
        }
        let gaps = roads
            .into_iter()
            .map(|(c, (len, seen))| (c, coverage_gap(len, seen)))
            .collect();
        let mut last_seen: HashMap<Cell, i64> = HashMap::with_capacity(inputs.last_seen.len());
        for l in &inputs.last_seen {
            let t = l.last_seen.timestamp_micros();
            let e = last_seen.entry(l.cell).or_insert(t);
            *e = (*e).max(t);
        }
        Self {
            policy,
            areas: area_weights(inputs, policy),
            usage,
            gaps,
            last_seen,
        }
    }

    pub(crate) fn demand(&self, c: &Cell) -> f64 {
        let area = self.areas.get(c).copied().unwrap_or(0.0);
        demand_multiplier(*c, area, &self.usage, self.policy)
    }

    /// A cell without roads is all gap.
    pub(crate) fn gap(&self, c: &Cell) -> f64 {
        self.gaps.get(c).copied().unwrap_or(1.0)
    }

    /// A capture's weight before staleness: demand × the coverage factor.
    fn imagery_factor(&self, c: &Cell) -> f64 {
        let g = self.policy.rules.imagery.coverage_gap_weight;
        self.demand(c) * ((1.0 - g) + g * self.gap(c))
    }
}

/// Points by contributor (numbered by name, so every tally is keyed by a small integer) and by
/// cell.
struct Tally<'a> {
    names: Vec<&'a str>,
    index: HashMap<&'a str, usize>,
    points: Vec<u64>,
    cells: BTreeMap<Cell, CellReward>,
}

impl<'a> Tally<'a> {
    /// Everyone who contributed, earned before or was flagged.
    fn new(inputs: &'a EpochInputs, flagged: &'a HashSet<String>) -> Self {
        let mut names: Vec<&str> = inputs
            .captures
            .iter()
            .filter_map(|c| c.contributor.as_deref())
            .chain(inputs.radio.iter().filter_map(|r| r.contributor.as_deref()))
            .chain(inputs.previous.iter().map(|p| p.contributor.as_str()))
            .chain(flagged.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        let index = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        Self {
            points: vec![0; names.len()],
            names,
            index,
            cells: BTreeMap::new(),
        }
    }

    fn cell(&mut self, cell: Cell) -> &mut CellReward {
        self.cells.entry(cell).or_insert_with(|| empty_cell(cell))
    }

    fn credit(&mut self, who: &str, cell: Cell, points: u64) {
        self.points[self.index[who]] += points;
        self.cell(cell).points += points;
    }
}

/// The captures that count — of trusted uploads, of contributors not flagged — by cell and
/// time, each once.
fn counted_captures<'a>(inputs: &'a EpochInputs, verified: &Verified) -> Vec<&'a Capture> {
    let mut captures: Vec<&Capture> = inputs
        .captures
        .iter()
        .filter(|c| verified.counts(c.contributor.as_deref()) && verified.trusted(c.upload_id))
        .collect();
    captures.sort_unstable_by_key(|c| (c.cell, c.captured_at, c.upload_id, c.frame));
    captures.dedup_by_key(|c| (c.cell, c.captured_at, c.upload_id, c.frame));
    captures
}

/// Step 2, imagery: each cell's captures in time order, each earning `points × weight` at its
/// moment; the cell's newest capture is kept for the next epoch.
fn score_imagery(
    captures: &[&Capture],
    factors: &CellFactors,
    tally: &mut Tally,
    policy: &RewardPolicy,
) {
    let recovery = recovery_micros(policy);
    for same_cell in captures.chunk_by(|a, b| a.cell == b.cell) {
        let cell = same_cell[0].cell;
        let mut prev = factors.last_seen.get(&cell).copied();
        let factor = factors.imagery_factor(&cell);
        let mut cell_points = 0;
        for c in same_cell {
            let t = c.captured_at.timestamp_micros();
            let w = staleness(prev, t, recovery) * factor;
            let p = (policy.rules.imagery.points * w * MICRO).round() as u64;
            if let Some(who) = c.contributor.as_deref() {
                tally.points[tally.index[who]] += p;
                cell_points += p;
            }
            prev = Some(prev.map_or(t, |x| x.max(t)));
        }
        let entry = tally.cell(cell);
        entry.points += cell_points;
        entry.captures += same_cell.len() as u64;
        entry.last_seen = prev.and_then(DateTime::from_timestamp_micros);
    }
}

/// Step 3, radio: counted sightings only (trusted upload, signal in range, verified emitter, in
/// place), of contributors not flagged; one unit per (cell, technology, operator, contributor),
/// scaled down unless corroborated.
fn score_radio(
    inputs: &EpochInputs,
    verified: &Verified,
    factors: &CellFactors,
    tally: &mut Tally,
    policy: &RewardPolicy,
) {
    let rules = &policy.rules.radio;
    let counted: Vec<(&RadioSample, &str)> = inputs
        .radio
        .iter()
        .zip(&verified.assessment.counts)
        .filter(|(_, counted)| **counted)
        .filter_map(|(s, _)| {
            let who = s.contributor.as_deref()?;
            verified.counts(Some(who)).then_some((s, who))
        })
        .collect();
    let corroborated = radio::corroboration(
        counted.iter().map(|(s, w)| (*s, *w)),
        rules.corroboration_ring,
    );
    let mut units: Vec<(Cell, &str, &str, &str)> = counted
        .iter()
        .map(|(s, w)| (s.cell, s.technology.as_str(), s.operator.as_str(), *w))
        .collect();
    units.sort_unstable();
    units.dedup();
    for (cell, tech, op, who) in units {
        let k = corroborated.get(&(cell, tech, op)).copied().unwrap_or(0);
        let factor = if k >= rules.corroboration_k as usize {
            1.0
        } else {
            rules.uncorroborated_factor
        };
        let p = (rules.points * factors.demand(&cell) * factor * MICRO).round() as u64;
        tally.credit(who, cell, p);
        tally.cell(cell).radio_units += 1;
    }
}

/// Step 4's result.
struct Bounties {
    claims: Vec<BountyClaim>,
    refunds: Vec<BountyRefund>,
    /// Paid by contributor index.
    paid_to: Vec<u64>,
    paid: u64,
}

/// Step 4, bounties: the first capture of each unclaimed cell of a live bounty claims
/// `budget / cells`; claims together take at most `pool_share` of the emission (beyond it they
/// are paid in proportion); an expired bounty releases what it did not pay.
fn pay_bounties(
    inputs: &EpochInputs,
    captures: &[&Capture],
    tally: &mut Tally,
    policy: &RewardPolicy,
) -> Bounties {
    let period = &inputs.period;
    let mut claims: Vec<BountyClaim> = Vec::new();
    let mut first_capture: HashMap<Cell, Vec<&Capture>> = HashMap::new();
    for c in captures.iter().filter(|c| c.contributor.is_some()) {
        first_capture.entry(c.cell).or_default().push(c);
    }
    let mut areas: Vec<_> = inputs.demand.iter().collect();
    areas.sort_by_key(|a| a.id);
    for area in &areas {
        let Some(b) = &area.bounty else { continue };
        if b.refunded || !live_in(area.created_at, area.expires_at, period) {
            continue;
        }
        let mut area_cells = area.cells.clone();
        area_cells.sort_unstable();
        area_cells.dedup();
        if area_cells.is_empty() {
            continue;
        }
        let per_cell = b.budget / area_cells.len() as u64;
        let claimed: HashSet<Cell> = b.claimed.iter().copied().collect();
        let mut left = b.budget.saturating_sub(b.spent);
        for cell in area_cells {
            if claimed.contains(&cell) || left == 0 {
                continue;
            }
            let winner = first_capture.get(&cell).and_then(|cs| {
                cs.iter().find(|c| {
                    c.captured_at >= area.created_at
                        && area.expires_at.is_none_or(|e| c.captured_at < e)
                })
            });
            if let Some(w) = winner.and_then(|c| c.contributor.as_deref()) {
                let amount = per_cell.min(left);
                left -= amount;
                claims.push(BountyClaim {
                    area: area.id,
                    cell,
                    contributor: w.to_owned(),
                    claimed: amount,
                    paid: amount,
                });
            }
        }
    }
    let rules = &policy.rules;
    let cap = (u128::from(rules.epoch.emission)
        * ((rules.bounty.pool_share * MICRO).round() as u128)
        / MICRO as u128) as u64;
    let claimed_total: u128 = claims.iter().map(|c| u128::from(c.claimed)).sum();
    if claimed_total > u128::from(cap) {
        for c in &mut claims {
            c.paid = (u128::from(c.claimed) * u128::from(cap) / claimed_total) as u64;
        }
    }
    let mut paid_to = vec![0u64; tally.names.len()];
    let mut spent_now: HashMap<i64, u64> = HashMap::new();
    for c in &claims {
        paid_to[tally.index[c.contributor.as_str()]] += c.paid;
        *spent_now.entry(c.area).or_default() += c.paid;
        tally.cell(c.cell).amount += c.paid;
    }
    let mut refunds: Vec<BountyRefund> = Vec::new();
    for area in &areas {
        let Some(b) = &area.bounty else { continue };
        if b.refunded || area.expires_at.is_none_or(|e| e > period.end) {
            continue;
        }
        let spent = b.spent + spent_now.get(&area.id).copied().unwrap_or(0);
        refunds.push(BountyRefund {
            area: area.id,
            amount: b.budget.saturating_sub(spent),
        });
    }
    Bounties {
        paid: claims.iter().map(|c| c.paid).sum(),
        claims,
        refunds,
        paid_to,
    }
}

/// Step 5's result.
struct Split {
    base_pool: u64,
    distributed_base: u64,
    rewards: Vec<ContributorReward>,
    cells: Vec<CellReward>,
}

/// Step 5, the split: what bounties did not take, pro rata to points, each share floored; each
/// contributor's cumulative total; each cell's amount and its weight at the epoch's start.
fn split_pool(
    inputs: &EpochInputs,
    factors: &CellFactors,
    tally: Tally,
    bounties: &Bounties,
    verified: &Verified,
    policy: &RewardPolicy,
) -> Split {
    let period = &inputs.period;
    let base_pool = policy.rules.epoch.emission - bounties.paid;
    let Tally {
        names,
        points,
        mut cells,
        ..
    } = tally;
    let total_points: u128 = points.iter().map(|&p| u128::from(p)).sum();
    let share = |p: u64| -> u64 {
        (u128::from(base_pool) * u128::from(p))
            .checked_div(total_points)
            .map_or(0, |v| v as u64)
    };
    for c in cells.values_mut() {
        c.amount += share(c.points);
        let last = factors
            .last_seen
            .get(&c.cell)
            .map(|&t| DateTime::from_timestamp_micros(t).unwrap_or(period.start));
        c.last_seen = c.last_seen.max(last);
        c.weight_at_start = reward_weight(
            factors.demand(&c.cell),
            last,
            factors.gap(&c.cell),
            period.start,
            policy,
        )
        .weight;
    }
    let previous: HashMap<&str, u128> = inputs
        .previous
        .iter()
        .map(|p| (p.contributor.as_str(), p.cumulative))
        .collect();
    let mut rewards = Vec::with_capacity(names.len());
    let mut distributed_base = 0u64;
    for (i, name) in names.iter().enumerate() {
        let base = share(points[i]);
        distributed_base += base;
        let amount = base + bounties.paid_to[i];
        let before = previous.get(name).copied().unwrap_or(0);
        let is_flagged = verified.flagged.contains(*name);
        if before == 0 && amount == 0 && points[i] == 0 && !is_flagged {
            continue;
        }
        rewards.push(ContributorReward {
            contributor: (*name).to_owned(),
            points: points[i],
            base,
            bounty: bounties.paid_to[i],
            amount,
            cumulative: before + u128::from(amount),
            flagged: is_flagged,
        });
    }
    Split {
        base_pool,
        distributed_base,
        rewards,
        cells: cells
            .into_values()
            .filter(|c| c.captures > 0 || c.points > 0 || c.amount > 0)
            .collect(),
    }
}

/// What each radio batch adds to the map (the cells of its counted sightings, by upload), and
/// the sightings of trusted batches that do not count, as (upload, seq).
struct RadioResults {
    cells: BTreeMap<i64, BTreeSet<Cell>>,
    uncounted: Vec<(i64, i32)>,
}

fn radio_results(inputs: &EpochInputs, verified: &Verified) -> RadioResults {
    let mut cells: BTreeMap<i64, BTreeSet<Cell>> = BTreeMap::new();
    let mut uncounted = Vec::new();
    for (s, counted) in inputs.radio.iter().zip(&verified.assessment.counts) {
        let batch = cells.entry(s.upload_id).or_default();
        if *counted {
            batch.insert(s.cell);
        } else if verified.trusted(s.upload_id) {
            uncounted.push((s.upload_id, s.seq));
        }
    }
    uncounted.sort_unstable();
    RadioResults { cells, uncounted }
}

/// Step 6, the record: the inputs' hashes, the amounts and the Merkle root.
fn manifest(
    inputs: &EpochInputs,
    policy: &RewardPolicy,
    split: &Split,
    bounties: &Bounties,
    penalties: &[Penalty],
    findings: &BTreeMap<i64, Vec<Finding>>,
    root: ledger::Hash,
) -> Manifest {
    let (rules, period) = (&policy.rules, &inputs.period);
    Manifest {
        epoch: period.epoch,
        start: period.start,
        end: period.end,
        distributor: rules.distributor.clone(),
        policy_version: rules.version,
        policy_hash: policy.hash.clone(),
        inputs: input_hashes(inputs),
        captures: inputs.captures.len() as u64,
        radio_samples: inputs.radio.len() as u64,
        emission: rules.epoch.emission,
        bounty_paid: bounties.paid,
        base_pool: split.base_pool,
        distributed: split.distributed_base + bounties.paid,
        unallocated: split.base_pool - split.distributed_base,
        bounty_refunded: bounties.refunds.iter().map(|r| r.amount).sum(),
        contributors: split.rewards.iter().filter(|r| r.amount > 0).count() as u64,
        flagged: penalties.len() as u64,
        flagged_uploads: findings.values().filter(|f| !f.is_empty()).count() as u64,
        root: hex::encode(root),
        files: Vec::new(),
    }
}

/// Each upload's findings from its evidence under the policy, by upload id (every upload of the
/// epoch has an entry). Two uploads of one device or contributor that no vehicle could have
/// driven between are both flagged: at least one of them is made up, and the same hand sent both.
fn upload_findings(inputs: &EpochInputs, policy: &RewardPolicy) -> BTreeMap<i64, Vec<Finding>> {
    let rules = &policy.rules.verification;
    let mut out: BTreeMap<i64, Vec<Finding>> = BTreeMap::new();
    let mut evidence: Vec<(i64, Evidence)> = Vec::with_capacity(inputs.uploads.len());
    for u in &inputs.uploads {
        match serde_json::from_str::<Evidence>(&u.evidence) {
            Ok(e) => {
                out.insert(u.upload_id, covermap_trust::judge(&e, rules));
                evidence.push((u.upload_id, e));
            }
            Err(e) => {
                out.insert(
                    u.upload_id,
                    vec![Finding::new(
                        "unreadable_evidence",
                        format!("the stored evidence does not read: {e}"),
                    )],
                );
            }
        }
    }
    for (upload, e) in &evidence {
        for g in &e.gaps {
            if covermap_trust::impossible_gap(g, &rules.track)
                && let Some(other) = out.get_mut(&g.upload)
                && !other.iter().any(|f| {
                    f.code == "teleport" && f.detail.contains(&format!("upload {upload} "))
                })
            {
                other.push(Finding::new(
                    "teleport",
                    format!(
                        "upload {upload} of the same {} lies {:.0} m away {}",
                        g.shared,
                        g.distance_m,
                        if g.seconds <= 0.0 {
                            "at the same time".to_owned()
                        } else {
                            format!("{:.0} s later", g.seconds)
                        }
                    ),
                ));
            }
        }
    }
    out
}

/// Contributors with at least `offender_uploads` flagged or refused uploads in the epoch, making
/// up at least `offender_share` of what they sent.
fn repeat_offenders(
    inputs: &EpochInputs,
    findings: &BTreeMap<i64, Vec<Finding>>,
    rules: &covermap_trust::TrustRules,
) -> Vec<Penalty> {
    // contributor → (sent, flagged, refused)
    let mut tally: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for u in &inputs.uploads {
        let Some(who) = u.contributor.as_deref() else {
            continue;
        };
        let t = tally.entry(who).or_default();
        t.0 += 1;
        t.1 += u64::from(findings.get(&u.upload_id).is_some_and(|f| !f.is_empty()));
    }
    for r in &inputs.refusals {
        let t = tally.entry(r.contributor.as_str()).or_default();
        t.0 += 1;
        t.2 += 1;
    }
    tally
        .into_iter()
        .filter(|(_, (sent, flagged, refused))| {
            let bad = flagged + refused;
            bad >= rules.offender_uploads && bad as f64 >= rules.offender_share * *sent as f64
        })
        .map(|(who, (sent, flagged, refused))| Penalty {
            contributor: who.to_owned(),
            reason: "repeat_offender".into(),
            detail: format!(
                "{flagged} of its {sent} uploads were flagged and {refused} refused in the epoch"
            ),
        })
        .collect()
}

/// The ledger leaves of an epoch's rewards: every contributor with a cumulative total above 0.
pub fn leaves_of(epoch: u64, distributor: &str, rewards: &[ContributorReward]) -> Vec<LedgerLeaf> {
    rewards
        .iter()
        .filter(|r| r.cumulative > 0)
        .map(|r| LedgerLeaf {
            epoch,
            distributor: distributor.to_owned(),
            contributor: r.contributor.clone(),
            cumulative: r.cumulative,
        })
        .collect()
}

fn empty_cell(cell: Cell) -> CellReward {
    CellReward {
        cell,
        captures: 0,
        radio_units: 0,
        points: 0,
        amount: 0,
        weight_at_start: 0.0,
        last_seen: None,
    }
}

/// A contributor's proof against an epoch's root, from the stored leaves.
pub fn proof_for(
    leaves: &[LedgerLeaf],
    contributor: &str,
) -> Option<(LedgerLeaf, Vec<ledger::Hash>)> {
    let leaf = leaves
        .iter()
        .find(|l| l.contributor == contributor)?
        .clone();
    let proof = MerkleTree::new(leaves).proof(&leaf)?;
    Some((leaf, proof))
}

/// Hashes each input list: its lines, one per item, sorted, each ending in a newline.
pub fn input_hashes(inputs: &EpochInputs) -> InputHashes {
    fn digest(mut lines: Vec<String>) -> String {
        lines.sort_unstable();
        let mut h = Sha256::new();
        for l in &lines {
            h.update(l.as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }
    fn who(c: &Option<String>) -> &str {
        c.as_deref().unwrap_or("")
    }
    InputHashes {
        captures: digest(
            inputs
                .captures
                .iter()
                .map(|c| {
                    format!(
                        "{}\t{}\t{}\t{}\t{}",
                        c.upload_id,
                        c.frame,
                        c.cell,
                        c.captured_at.timestamp_micros(),
                        who(&c.contributor)
                    )
                })
                .collect(),
        ),
        last_seen: digest(
            inputs
                .last_seen
                .iter()
                .map(|l| format!("{}\t{}", l.cell, l.last_seen.timestamp_micros()))
                .collect(),
        ),
        roads: digest(
            inputs
                .roads
                .iter()
                .map(|r| format!("{}\t{:?}\t{:?}", r.cell, r.road_length_m, r.observed_m))
                .collect(),
        ),
        radio: digest(
            inputs
                .radio
                .iter()
                .map(|r| {
                    format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{:?}\t{}\t{:?}\t{:?}\t{}",
                        r.upload_id,
                        r.seq,
                        r.cell,
                        r.technology,
                        r.operator,
                        r.emitter,
                        r.signal_dbm,
                        r.observed_at.timestamp_micros(),
                        r.lat,
                        r.lon,
                        who(&r.contributor)
                    )
                })
                .collect(),
        ),
        emitters: digest(
            inputs
                .emitters
                .iter()
                .map(|e| {
                    format!(
                        "{}\t{:?}\t{:?}\t{:?}\t{}\t{:?}\t{}",
                        e.emitter,
                        e.lat,
                        e.lon,
                        e.frequency_mhz,
                        e.samples,
                        e.radius_m,
                        e.observers.join(",")
                    )
                })
                .collect(),
        ),
        demand: digest(
            inputs
                .demand
                .iter()
                .map(|a| {
                    let mut cells: Vec<String> = a
                        .cells
                        .iter()
                        .map(std::string::ToString::to_string)
                        .collect();
                    cells.sort_unstable();
                    let bounty = a.bounty.as_ref().map(|b| {
                        let mut claimed: Vec<String> = b
                            .claimed
                            .iter()
                            .map(std::string::ToString::to_string)
                            .collect();
                        claimed.sort_unstable();
                        format!(
                            "{}/{}/{}/{}",
                            b.budget,
                            b.spent,
                            b.refunded,
                            claimed.join(",")
                        )
                    });
                    format!(
                        "{}\t{}\t{:?}\t{}\t{:?}\t{:?}\t{}",
                        a.id,
                        a.name,
                        a.weight,
                        a.created_at.timestamp_micros(),
                        a.expires_at.map(|e| e.timestamp_micros()),
                        bounty,
                        cells.join(",")
                    )
                })
                .collect(),
        ),
        evidence: digest(
            inputs
                .evidence
                .iter()
                .map(|e| {
                    format!(
                        "{}\t{}\t{}\t{}",
                        e.contributor, e.fixes_accepted, e.fixes_spoofed, e.frames_duplicated
                    )
                })
                .collect(),
        ),
        previous: digest(
            inputs
                .previous
                .iter()
                .map(|p| format!("{}\t{}", p.contributor, p.cumulative))
                .collect(),
        ),
        usage: digest(
            inputs
                .usage
                .iter()
                .map(|u| format!("{}\t{}", u.area, u.requests))
                .collect(),
        ),
        uploads: digest(
            inputs
                .uploads
                .iter()
                .map(|u| {
                    format!(
                        "{}\t{}\t{}\t{}\t{}",
                        u.upload_id,
                        who(&u.contributor),
                        u.device,
                        u.kind,
                        u.evidence
                    )
                })
                .collect(),
        ),
        refusals: digest(
            inputs
                .refusals
                .iter()
                .map(|r| {
                    format!(
                        "{}\t{}\t{}\t{}",
                        r.contributor,
                        r.device,
                        r.reason,
                        r.at.timestamp_micros()
                    )
                })
                .collect(),
        ),
    }
}

/// Each step of [`close`] on its own; `tests/epoch.rs` checks the whole close by hand and by
/// its properties.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use covermap_domain::rewards::{
        Bounty, ContributorEvidence, DemandArea, PreviousTotal, Refusal, UploadEvidence,
    };

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn empty() -> EpochInputs {
        EpochInputs {
            period: EpochPeriod {
                epoch: 0,
                start: start(),
                end: start() + chrono::Duration::days(1),
            },
            captures: Vec::new(),
            last_seen: Vec::new(),
            roads: Vec::new(),
            radio: Vec::new(),
            emitters: Vec::new(),
            demand: Vec::new(),
            evidence: Vec::new(),
            previous: Vec::new(),
            usage: Vec::new(),
            uploads: Vec::new(),
            refusals: Vec::new(),
        }
    }

    fn cell(lat: f64, lon: f64) -> Cell {
        Cell(
            h3o::LatLng::new(lat, lon)
                .unwrap()
                .to_cell(h3o::Resolution::Eleven),
        )
    }

    fn capture(who: &str, upload: i64, frame: i32, cell: Cell, minutes: i64) -> Capture {
        Capture {
            contributor: Some(who.into()),
            upload_id: upload,
            frame,
            cell,
            captured_at: start() + chrono::Duration::minutes(minutes),
        }
    }

    fn upload(id: i64, who: &str, evidence: &str) -> UploadEvidence {
        UploadEvidence {
            upload_id: id,
            contributor: Some(who.into()),
            device: format!("{who}-phone"),
            kind: "gpx".into(),
            evidence: evidence.into(),
        }
    }

    fn nobody_flagged() -> Verified {
        Verified {
            findings: BTreeMap::new(),
            assessment: covermap_trust::emitters::RadioAssessment {
                counts: Vec::new(),
                findings: BTreeMap::new(),
                sites: Vec::new(),
            },
            penalties: Vec::new(),
            flagged: HashSet::new(),
        }
    }

    #[test]
    fn verification_flags_unreadable_evidence_and_penalises_contributors_once() {
        let policy = RewardPolicy::shipped();
        let mut inputs = empty();
        inputs.uploads = vec![upload(1, "alice", "{}"), upload(2, "mallory", "not json")];
        inputs.evidence = vec![ContributorEvidence {
            contributor: "mallory".into(),
            fixes_accepted: 10,
            fixes_spoofed: 90,
            frames_duplicated: 5,
        }];
        let verified = verify(&inputs, &policy);
        assert!(verified.trusted(1));
        assert!(!verified.trusted(2));
        assert_eq!(verified.findings[&2][0].code, "unreadable_evidence");
        // Both duplicated frames and spoofing apply: one penalty, the first by reason.
        assert_eq!(verified.penalties.len(), 1);
        assert_eq!(verified.penalties[0].reason, "duplicated_frames");
        assert!(!verified.counts(Some("mallory")));
        assert!(verified.counts(Some("alice")));
        assert!(verified.counts(None));
    }

    #[test]
    fn repeat_offenders_count_flagged_and_refused_uploads() {
        let policy = RewardPolicy::shipped();
        let mut inputs = empty();
        inputs.uploads = vec![upload(1, "eve", "broken"), upload(2, "eve", "{}")];
        inputs.refusals = vec![Refusal {
            contributor: "eve".into(),
            device: "eve-phone".into(),
            reason: "implausible_speed".into(),
            at: start(),
        }];
        let verified = verify(&inputs, &policy);
        assert_eq!(verified.penalties.len(), 1, "{:?}", verified.penalties);
        assert_eq!(verified.penalties[0].reason, "repeat_offender");
        assert_eq!(
            verified.penalties[0].detail,
            "1 of its 3 uploads were flagged and 1 refused in the epoch"
        );
    }

    #[test]
    fn counted_captures_leave_out_flagged_work_and_repeats() {
        let a = cell(43.73, 7.42);
        let mut inputs = empty();
        inputs.captures = vec![
            capture("alice", 1, 0, a, 10),
            capture("alice", 1, 0, a, 10),
            capture("mallory", 2, 0, a, 5),
            capture("bob", 3, 0, a, 1),
        ];
        let mut verified = nobody_flagged();
        verified.flagged.insert("mallory".into());
        verified
            .findings
            .insert(3, vec![Finding::new("replay", "a copy")]);
        let counted = counted_captures(&inputs, &verified);
        assert_eq!(counted.len(), 1);
        assert_eq!(counted[0].contributor.as_deref(), Some("alice"));
    }

    #[test]
    fn imagery_pays_the_first_capture_of_a_stale_cell_and_little_for_a_repeat() {
        let policy = RewardPolicy::shipped();
        let a = cell(43.73, 7.42);
        let mut inputs = empty();
        inputs.captures = vec![capture("alice", 1, 0, a, 0), capture("bob", 2, 0, a, 1)];
        let verified = nobody_flagged();
        let factors = CellFactors::new(&inputs, &policy);
        let mut tally = Tally::new(&inputs, &verified.flagged);
        let captures = counted_captures(&inputs, &verified);
        score_imagery(&captures, &factors, &mut tally, &policy);
        let (alice, bob) = (
            tally.points[tally.index["alice"]],
            tally.points[tally.index["bob"]],
        );
        // Never seen, no roads (all gap), no demand: weight 1, one point.
        assert_eq!(alice, 1_000_000);
        // A minute later of a 7-day recovery: 1/10080 of a point.
        assert_eq!(bob, (MICRO / (7.0 * 24.0 * 60.0)).round() as u64);
        let c = &tally.cells[&a];
        assert_eq!((c.captures, c.points), (2, alice + bob));
        assert_eq!(c.last_seen, Some(start() + chrono::Duration::minutes(1)));
    }

    #[test]
    fn radio_pays_corroborated_networks_in_full_and_lone_ones_a_quarter() {
        let policy = RewardPolicy::shipped();
        let (a, far) = (cell(43.73, 7.42), cell(43.80, 7.50));
        let sample = |who: &str, upload: i64, cell: Cell| {
            let c = h3o::LatLng::from(cell.0);
            RadioSample {
                contributor: Some(who.into()),
                upload_id: upload,
                seq: 0,
                cell,
                technology: "lte".into(),
                operator: "208-1".into(),
                emitter: "lte:208:1:1:1".into(),
                signal_dbm: Some(-90),
                observed_at: start(),
                lat: c.lat(),
                lon: c.lng(),
            }
        };
        let mut inputs = empty();
        inputs.radio = vec![
            sample("alice", 1, a),
            sample("alice", 1, a),
            sample("bob", 2, a),
            sample("carol", 3, far),
        ];
        let mut verified = nobody_flagged();
        verified.assessment.counts = vec![true; 4];
        let factors = CellFactors::new(&inputs, &policy);
        let mut tally = Tally::new(&inputs, &verified.flagged);
        score_radio(&inputs, &verified, &factors, &mut tally, &policy);
        let points = |who: &str| tally.points[tally.index[who]];
        assert_eq!(points("alice"), 250_000, "one unit however many samples");
        assert_eq!(points("bob"), 250_000);
        assert_eq!(points("carol"), 62_500, "heard by nobody else: 0.25 × 0.25");
        assert_eq!(tally.cells[&a].radio_units, 2);
    }

    #[test]
    fn bounties_pay_first_captures_within_the_pool_cap_and_refund_at_expiry() {
        let policy = RewardPolicy::shipped();
        let (a, b) = (cell(43.73, 7.42), cell(43.74, 7.43));
        let mut inputs = empty();
        inputs.captures = vec![capture("alice", 1, 0, a, 30), capture("bob", 2, 0, a, 60)];
        let emission = policy.rules.epoch.emission;
        inputs.demand = vec![DemandArea {
            id: 1,
            name: "harbour".into(),
            weight: 1.0,
            cells: vec![a, b],
            created_at: start() - chrono::Duration::days(1),
            expires_at: Some(start() + chrono::Duration::hours(12)),
            bounty: Some(Bounty {
                // Each cell's claim is the whole emission: over the 20 % pool.
                budget: 2 * emission,
                spent: 0,
                claimed: Vec::new(),
                refunded: false,
            }),
        }];
        let verified = nobody_flagged();
        let mut tally = Tally::new(&inputs, &verified.flagged);
        let captures = counted_captures(&inputs, &verified);
        let bounties = pay_bounties(&inputs, &captures, &mut tally, &policy);
        assert_eq!(bounties.claims.len(), 1);
        let claim = &bounties.claims[0];
        assert_eq!((claim.contributor.as_str(), claim.cell), ("alice", a));
        assert_eq!(claim.claimed, emission);
        assert_eq!(claim.paid, emission / 5, "capped at the pool share");
        assert_eq!(bounties.paid, emission / 5);
        assert_eq!(bounties.paid_to[tally.index["alice"]], emission / 5);
        assert_eq!(bounties.paid_to[tally.index["bob"]], 0);
        assert_eq!(bounties.refunds.len(), 1);
        assert_eq!(bounties.refunds[0].amount, 2 * emission - emission / 5);
    }

    #[test]
    fn the_split_floors_shares_keeps_past_earners_and_leaves_dust_unallocated() {
        let policy = RewardPolicy::shipped();
        let a = cell(43.73, 7.42);
        let mut inputs = empty();
        inputs.previous = vec![PreviousTotal {
            contributor: "dora".into(),
            cumulative: 42,
        }];
        inputs.captures = vec![
            capture("alice", 1, 0, a, 0),
            capture("bob", 2, 0, a, 1),
            capture("carol", 3, 0, a, 2),
        ];
        let verified = nobody_flagged();
        let factors = CellFactors::new(&inputs, &policy);
        let mut tally = Tally::new(&inputs, &verified.flagged);
        // Three contributors with one point each: a third of the pool each, floored.
        for who in ["alice", "bob", "carol"] {
            tally.credit(who, a, 1_000_000);
        }
        let bounties = Bounties {
            claims: Vec::new(),
            refunds: Vec::new(),
            paid_to: vec![0; tally.names.len()],
            paid: 0,
        };
        let split = split_pool(&inputs, &factors, tally, &bounties, &verified, &policy);
        let third = policy.rules.epoch.emission / 3;
        assert_eq!(split.distributed_base, 3 * third);
        assert_eq!(split.base_pool - split.distributed_base, 1, "the dust");
        let dora = split
            .rewards
            .iter()
            .find(|r| r.contributor == "dora")
            .unwrap();
        assert_eq!((dora.amount, dora.cumulative), (0, 42));
        assert!(
            split
                .rewards
                .iter()
                .filter(|r| r.contributor != "dora")
                .all(|r| r.amount == third)
        );
        assert_eq!(split.cells.len(), 1);
    }
}
