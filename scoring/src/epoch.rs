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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use covermap_domain::Cell;
use covermap_domain::rewards::{Capture, EpochInputs, EpochPeriod, KnownEmitter, RadioSample};
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

/// A contributor's result for the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContributorReward {
    pub contributor: String,
    /// Micro-points earned (imagery and radio).
    pub points: u64,
    pub base: u64,
    pub bounty: u64,
    /// base + bounty.
    pub amount: u64,
    /// Every epoch's amounts up to this one: the ledger leaf's value.
    pub cumulative: u128,
    pub flagged: bool,
}

/// What a cell contributed to the epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellReward {
    pub cell: Cell,
    pub captures: u64,
    pub radio_units: u64,
    /// Micro-points its contributions earned.
    pub points: u64,
    /// Its share of the base pool (floored) plus bounties claimed in it.
    pub amount: u64,
    /// The reward weight at the epoch's start (what the demand map showed).
    pub weight_at_start: f64,
    /// The newest capture of the cell counted so far (this epoch's or an earlier one's): the
    /// next epoch's starting point for its staleness.
    pub last_seen: Option<DateTime<Utc>>,
}

/// A contributor left out by verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Penalty {
    pub contributor: String,
    /// `duplicated_frames`, `spoofing` or `repeat_offender`.
    pub reason: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BountyClaim {
    pub area: i64,
    pub cell: Cell,
    pub contributor: String,
    /// budget / cells, what the claim was worth.
    pub claimed: u64,
    /// What was paid, after the pool cap.
    pub paid: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BountyRefund {
    pub area: i64,
    /// Budget not paid out, released at expiry.
    pub amount: u64,
}

/// sha256 (hex) of each input list in a canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InputHashes {
    pub captures: String,
    pub last_seen: String,
    pub roads: String,
    pub radio: String,
    pub emitters: String,
    pub demand: String,
    pub evidence: String,
    pub previous: String,
    #[serde(default)]
    pub usage: String,
    #[serde(default)]
    pub uploads: String,
    #[serde(default)]
    pub refusals: String,
}

/// The epoch's record: written last, it is the mark that the epoch is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Manifest {
    pub epoch: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub distributor: String,
    pub policy_version: u32,
    pub policy_hash: String,
    pub inputs: InputHashes,
    pub captures: u64,
    pub radio_samples: u64,
    pub emission: u64,
    pub bounty_paid: u64,
    pub base_pool: u64,
    /// Paid to contributors: base + bounty.
    pub distributed: u64,
    /// Rounding dust and any base pool nobody earned.
    pub unallocated: u64,
    pub bounty_refunded: u64,
    pub contributors: u64,
    pub flagged: u64,
    /// Uploads of the epoch the trust stage flagged.
    #[serde(default)]
    pub flagged_uploads: u64,
    /// The Merkle root, hex.
    pub root: String,
}

/// Everything closing an epoch produces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochOutcome {
    pub manifest: Manifest,
    /// One per contributor with a cumulative total (earning this epoch or before), by name.
    pub rewards: Vec<ContributorReward>,
    /// One per cell captured or earning points or bounties, by cell.
    pub cells: Vec<CellReward>,
    pub penalties: Vec<Penalty>,
    pub claims: Vec<BountyClaim>,
    pub refunds: Vec<BountyRefund>,
    /// Every upload counted in the epoch with its final verdict, by upload id.
    pub verdicts: Vec<UploadVerdict>,
    /// The emitters heard in the epoch and where they stand: the next epoch's known sites.
    pub emitters: Vec<KnownEmitter>,
    /// Sightings of trusted batches that do not count (an emitter nobody else heard, a reading
    /// out of place), as (upload, seq): the radio map leaves them out.
    pub uncounted_radio: Vec<(i64, i32)>,
}

/// An upload's verdict at its epoch's close: final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadVerdict {
    pub upload_id: i64,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// For a radio batch: the cells its counted sightings lie in (verified emitters, in
    /// place) — what it adds to the radio map; `None` for other uploads.
    pub credited_cells: Option<u64>,
}

impl EpochOutcome {
    /// The ledger leaves behind the root: every contributor with a cumulative total above 0.
    pub fn leaves(&self) -> Vec<LedgerLeaf> {
        leaves_of(
            self.manifest.epoch,
            &self.manifest.distributor,
            &self.rewards,
        )
    }
}

/// Closes an epoch: pure, deterministic, and independent of the order of every input list.
pub fn close(inputs: &EpochInputs, policy: &RewardPolicy) -> EpochOutcome {
    let rules = &policy.rules;
    let period = &inputs.period;
    let emission = rules.epoch.emission;

    // 1. Verification: each upload from its evidence, then the epoch's radio as a whole, then
    // each contributor.
    let v = &rules.verification;
    let mut findings = upload_findings(inputs, policy);
    let trusted = |f: &BTreeMap<i64, Vec<Finding>>, id: i64| f.get(&id).is_none_or(Vec::is_empty);
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
    let eligible: Vec<bool> = inputs
        .radio
        .iter()
        .map(|s| {
            s.contributor.is_some()
                && trusted(&findings, s.upload_id)
                && radio::plausibility(s, &rules.radio).is_ok()
        })
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
    penalties.extend(repeat_offenders(inputs, &findings, v));
    penalties.sort_by(|a, b| {
        (&a.contributor, &a.reason, &a.detail).cmp(&(&b.contributor, &b.reason, &b.detail))
    });
    penalties.dedup_by(|a, b| a.contributor == b.contributor);
    let flagged: HashSet<&str> = penalties.iter().map(|p| p.contributor.as_str()).collect();
    let counts = |c: &Option<String>| c.as_deref().is_none_or(|c| !flagged.contains(c));

    let areas = area_weights(inputs, policy);
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
    let gaps: HashMap<Cell, f64> = roads
        .into_iter()
        .map(|(c, (len, seen))| (c, coverage_gap(len, seen)))
        .collect();
    let mut last_seen: HashMap<Cell, i64> = HashMap::with_capacity(inputs.last_seen.len());
    for l in &inputs.last_seen {
        let t = l.last_seen.timestamp_micros();
        let e = last_seen.entry(l.cell).or_insert(t);
        *e = (*e).max(t);
    }
    let g = rules.imagery.coverage_gap_weight;
    let recovery = recovery_micros(policy);
    let demand_of =
        |c: &Cell| demand_multiplier(*c, areas.get(c).copied().unwrap_or(0.0), &usage, policy);
    let gap_of = |c: &Cell| gaps.get(c).copied().unwrap_or(1.0);

    // Contributors are numbered by name, so every tally below is keyed by a small integer.
    let mut names: Vec<&str> = inputs
        .captures
        .iter()
        .filter_map(|c| c.contributor.as_deref())
        .chain(inputs.radio.iter().filter_map(|r| r.contributor.as_deref()))
        .chain(inputs.previous.iter().map(|p| p.contributor.as_str()))
        .chain(flagged.iter().copied())
        .collect();
    names.sort_unstable();
    names.dedup();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let mut points = vec![0u64; names.len()];
    let mut cells: BTreeMap<Cell, CellReward> = BTreeMap::new();

    // 2. Imagery, cell by cell in time order.
    let mut captures: Vec<&Capture> = inputs
        .captures
        .iter()
        .filter(|c| counts(&c.contributor) && trusted(&findings, c.upload_id))
        .collect();
    captures.sort_unstable_by_key(|c| (c.cell, c.captured_at, c.upload_id, c.frame));
    captures.dedup_by_key(|c| (c.cell, c.captured_at, c.upload_id, c.frame));
    let mut i = 0;
    while i < captures.len() {
        let cell = captures[i].cell;
        let mut j = i;
        let mut prev = last_seen.get(&cell).copied();
        let factor = demand_of(&cell) * ((1.0 - g) + g * gap_of(&cell));
        let entry = cells.entry(cell).or_insert_with(|| empty_cell(cell));
        while j < captures.len() && captures[j].cell == cell {
            let c = captures[j];
            let t = c.captured_at.timestamp_micros();
            let w = staleness(prev, t, recovery) * factor;
            let p = (rules.imagery.points * w * MICRO).round() as u64;
            if let Some(who) = c.contributor.as_deref() {
                points[index[who]] += p;
                entry.points += p;
            }
            entry.captures += 1;
            prev = Some(prev.map_or(t, |x| x.max(t)));
            j += 1;
        }
        entry.last_seen = prev.and_then(DateTime::from_timestamp_micros);
        i = j;
    }

    // 3. Radio: counted sightings only (trusted upload, signal in range, verified emitter, in
    // place), of contributors not flagged.
    let plausible: Vec<(&RadioSample, &str)> = inputs
        .radio
        .iter()
        .zip(&assessment.counts)
        .filter(|(_, counted)| **counted)
        .filter_map(|(s, _)| {
            let who = s.contributor.as_deref()?;
            (!flagged.contains(who)).then_some((s, who))
        })
        .collect();
    let corroborated = radio::corroboration(
        plausible.iter().map(|(s, w)| (*s, *w)),
        rules.radio.corroboration_ring,
    );
    let mut units: Vec<(Cell, &str, &str, &str)> = plausible
        .iter()
        .map(|(s, w)| (s.cell, s.technology.as_str(), s.operator.as_str(), *w))
        .collect();
    units.sort_unstable();
    units.dedup();
    for (cell, tech, op, who) in units {
        let k = corroborated.get(&(cell, tech, op)).copied().unwrap_or(0);
        let factor = if k >= rules.radio.corroboration_k as usize {
            1.0
        } else {
            rules.radio.uncorroborated_factor
        };
        let p = (rules.radio.points * demand_of(&cell) * factor * MICRO).round() as u64;
        points[index[who]] += p;
        let entry = cells.entry(cell).or_insert_with(|| empty_cell(cell));
        entry.points += p;
        entry.radio_units += 1;
    }

    // 4. Bounties.
    let mut claims: Vec<BountyClaim> = Vec::new();
    let mut refunds: Vec<BountyRefund> = Vec::new();
    let mut first_capture: HashMap<Cell, Vec<&Capture>> = HashMap::new();
    for c in captures.iter().filter(|c| c.contributor.is_some()) {
        first_capture.entry(c.cell).or_default().push(c);
    }
    let mut areas: Vec<_> = inputs.demand.iter().collect();
    areas.sort_by_key(|a| a.id);
    let mut spent_now: HashMap<i64, u64> = HashMap::new();
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
    let cap = (u128::from(emission) * ((rules.bounty.pool_share * MICRO).round() as u128)
        / MICRO as u128) as u64;
    let claimed_total: u128 = claims.iter().map(|c| u128::from(c.claimed)).sum();
    if claimed_total > u128::from(cap) {
        for c in &mut claims {
            c.paid = (u128::from(c.claimed) * u128::from(cap) / claimed_total) as u64;
        }
    }
    let mut bounty_of = vec![0u64; names.len()];
    for c in &claims {
        bounty_of[index[c.contributor.as_str()]] += c.paid;
        *spent_now.entry(c.area).or_default() += c.paid;
        cells
            .entry(c.cell)
            .or_insert_with(|| empty_cell(c.cell))
            .amount += c.paid;
    }
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
    let bounty_paid: u64 = claims.iter().map(|c| c.paid).sum();

    // 5. Split.
    let base_pool = emission - bounty_paid;
    let total_points: u128 = points.iter().map(|&p| u128::from(p)).sum();
    let share = |p: u64| -> u64 {
        (u128::from(base_pool) * u128::from(p))
            .checked_div(total_points)
            .map_or(0, |v| v as u64)
    };
    for c in cells.values_mut() {
        c.amount += share(c.points);
        let last = last_seen
            .get(&c.cell)
            .map(|&t| DateTime::from_timestamp_micros(t).unwrap_or(period.start));
        c.last_seen = c.last_seen.max(last);
        c.weight_at_start = reward_weight(
            demand_of(&c.cell),
            last,
            gap_of(&c.cell),
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
        let amount = base + bounty_of[i];
        let before = previous.get(name).copied().unwrap_or(0);
        let is_flagged = flagged.contains(name);
        if before == 0 && amount == 0 && points[i] == 0 && !is_flagged {
            continue;
        }
        rewards.push(ContributorReward {
            contributor: (*name).to_owned(),
            points: points[i],
            base,
            bounty: bounty_of[i],
            amount,
            cumulative: before + u128::from(amount),
            flagged: is_flagged,
        });
    }
    let unallocated = base_pool - distributed_base;

    // 6. Ledger.
    let root = MerkleTree::new(&leaves_of(period.epoch, &rules.distributor, &rewards)).root();
    let manifest = Manifest {
        epoch: period.epoch,
        start: period.start,
        end: period.end,
        distributor: rules.distributor.clone(),
        policy_version: rules.version,
        policy_hash: policy.hash.clone(),
        inputs: input_hashes(inputs),
        captures: inputs.captures.len() as u64,
        radio_samples: inputs.radio.len() as u64,
        emission,
        bounty_paid,
        base_pool,
        distributed: distributed_base + bounty_paid,
        unallocated,
        bounty_refunded: refunds.iter().map(|r| r.amount).sum(),
        contributors: rewards.iter().filter(|r| r.amount > 0).count() as u64,
        flagged: penalties.len() as u64,
        flagged_uploads: findings.values().filter(|f| !f.is_empty()).count() as u64,
        root: hex::encode(root),
    };
    let cells = cells
        .into_values()
        .filter(|c| c.captures > 0 || c.points > 0 || c.amount > 0)
        .collect();
    // What each radio batch adds to the map: the cells of its counted sightings.
    let mut radio_cells: BTreeMap<i64, BTreeSet<Cell>> = BTreeMap::new();
    let mut uncounted_radio = Vec::new();
    for (s, counted) in inputs.radio.iter().zip(&assessment.counts) {
        let cells = radio_cells.entry(s.upload_id).or_default();
        if *counted {
            cells.insert(s.cell);
        } else if trusted(&findings, s.upload_id) {
            uncounted_radio.push((s.upload_id, s.seq));
        }
    }
    uncounted_radio.sort_unstable();
    let verdicts = findings
        .into_iter()
        .map(|(upload_id, findings)| UploadVerdict {
            upload_id,
            verdict: Verdict::of(&findings),
            credited_cells: radio_cells.get(&upload_id).map(|c| c.len() as u64),
            findings,
        })
        .collect();
    EpochOutcome {
        manifest,
        rewards,
        cells,
        penalties,
        claims,
        refunds,
        verdicts,
        emitters: assessment.sites,
        uncounted_radio,
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
                    let mut cells: Vec<String> = a.cells.iter().map(|c| c.to_string()).collect();
                    cells.sort_unstable();
                    let bounty = a.bounty.as_ref().map(|b| {
                        let mut claimed: Vec<String> =
                            b.claimed.iter().map(|c| c.to_string()).collect();
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
