//! What an epoch's close reads and writes: plain data the store fills and scoring computes over.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Cell;
use crate::trust::{Finding, Verdict};

/// A numbered reward period: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochPeriod {
    pub epoch: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A published camera frame counted in an epoch: who captured which place, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    /// `None` for uploads that are mapped but not rewarded (no contributor bound to them).
    pub contributor: Option<String>,
    pub upload_id: i64,
    pub frame: i32,
    pub cell: Cell,
    pub captured_at: DateTime<Utc>,
}

/// The newest capture of a cell counted in an earlier epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellLastSeen {
    pub cell: Cell,
    pub last_seen: DateTime<Utc>,
}

/// A cell's road length and how much of it was driven (matched) in the coverage window before
/// the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CellRoads {
    pub cell: Cell,
    pub road_length_m: f64,
    pub observed_m: f64,
}

/// One radio measurement counted in an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RadioSample {
    pub contributor: Option<String>,
    pub upload_id: i64,
    pub seq: i32,
    pub cell: Cell,
    /// `gsm`, `wcdma`, `lte`, `nr`, `wifi` or `bluetooth`.
    pub technology: String,
    /// `MCC-MNC` for cellular emitters; empty for Wi-Fi and Bluetooth.
    pub operator: String,
    pub emitter: String,
    pub signal_dbm: Option<i32>,
    pub observed_at: DateTime<Utc>,
    /// Where the sample was taken (degrees), for the path-loss bound.
    pub lat: f64,
    pub lon: f64,
}

/// An emitter whose site is known — estimated from the plausible sightings of earlier epochs, or
/// from an operator's site list — so a measured signal can be checked against the distance to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownEmitter {
    pub emitter: String,
    pub lat: f64,
    pub lon: f64,
    /// Carrier frequency in MHz; 0 when unknown (the lowest band of its technology is assumed).
    pub frequency_mhz: f64,
    /// Sightings behind the estimate.
    #[serde(default)]
    pub samples: u64,
    /// Contributors who heard it (sorted, at most a few): independent witnesses.
    #[serde(default)]
    pub observers: Vec<String>,
    /// How far from the site its sightings lay (weighted RMS), metres.
    #[serde(default)]
    pub radius_m: f64,
}

/// One upload counted in an epoch, with what the trust stage measured of it: the epoch judges
/// it again from this, under its own policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadEvidence {
    pub upload_id: i64,
    /// The contributor it is paid to (`None` for uploads that earn nothing).
    pub contributor: Option<String>,
    pub device: String,
    pub kind: String,
    /// `covermap_trust::Evidence` as the worker stored it (JSON).
    pub evidence: String,
}

/// An upload a contributor's device sent and covermap refused outright (nothing usable, an
/// impossible track), counted against the contributor in the epoch it arrived in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub contributor: String,
    pub device: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A planner's demand area as the epoch sees it: its cells, weight and optional bounty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemandArea {
    pub id: i64,
    pub name: String,
    /// Added to the demand multiplier of each of its cells.
    pub weight: f64,
    pub cells: Vec<Cell>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub bounty: Option<Bounty>,
}

/// Base units a planner set aside for the first fresh capture of each cell of an area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounty {
    pub budget: u64,
    /// Paid out in earlier epochs.
    pub spent: u64,
    /// Cells already claimed in earlier epochs.
    pub claimed: Vec<Cell>,
    /// Set once the unspent budget was released at expiry.
    pub refunded: bool,
}

/// What verification found about a contributor's uploads counted in an epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContributorEvidence {
    pub contributor: String,
    pub fixes_accepted: u64,
    /// Fixes refused for reasons that point at spoofing (impossible speeds and jumps, times in
    /// the future).
    pub fixes_spoofed: u64,
    /// Frames refused as repeats of a frame another contributor published.
    pub frames_duplicated: u64,
}

/// Map consumers' requests that looked at an area (an H3 cell at the policy's usage resolution)
/// in the epoch before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCount {
    pub area: Cell,
    pub requests: u64,
}

/// A contributor's cumulative reward before the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousTotal {
    pub contributor: String,
    pub cumulative: u128,
}

/// Everything an epoch's rewards are computed from. The same inputs give the same result and
/// the same Merkle root, in whatever order their lists come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochInputs {
    pub period: EpochPeriod,
    pub captures: Vec<Capture>,
    pub last_seen: Vec<CellLastSeen>,
    pub roads: Vec<CellRoads>,
    pub radio: Vec<RadioSample>,
    pub emitters: Vec<KnownEmitter>,
    pub demand: Vec<DemandArea>,
    pub evidence: Vec<ContributorEvidence>,
    pub previous: Vec<PreviousTotal>,
    pub usage: Vec<UsageCount>,
    /// Every upload counted in the epoch, with its evidence.
    #[serde(default)]
    pub uploads: Vec<UploadEvidence>,
    /// Uploads refused outright while the epoch ran.
    #[serde(default)]
    pub refusals: Vec<Refusal>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The epoch's inputs and policy as published to the object store, under
    /// `epochs/{epoch}/`: anyone holding them can recompute the root (`covermap epoch verify
    /// --from`). Empty for epochs closed before inputs were published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PublishedFile>,
}

/// One file of an epoch's published inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedFile {
    /// Its name under `epochs/{epoch}/`: `captures.parquet`, …, `policy.toml`.
    pub name: String,
    /// sha256 of its bytes, hex.
    pub sha256: String,
    pub bytes: u64,
    /// Rows it holds (1 for the policy).
    pub rows: u64,
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
