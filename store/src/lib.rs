//! covermap's storage: the only crate that speaks SQL or talks to the object store.
//!
//! [`Store`] is the whole interface, one trait per capability: the job [`Queue`] with leases;
//! [`Uploads`] and resumable upload sessions with the retention of originals; their [`Erasure`]
//! at a contributor's request; what the [`Trust`]
//! stage reads and amends; [`Access`] (API keys, devices, nonces); [`Imagery`] and its audit
//! (frames, hashes, the auditors' queue and log, frames judged late); the [`Roads`] and coverage
//! per cell; [`Radio`] observations; reward [`Epochs`] and the ledger; planners' [`Demand`]; and
//! map [`Consumers`]' requests per day and area, and the lookers usage demand counts; and on
//! PostGIS the month [`Partitions`] of the high-volume tables.
//! Each capability's file holds its trait, the queries both backends share (one `const` each,
//! `$N` placeholders), the row decoders, and then its PostGIS and SQLite implementations side by
//! side; where the SQL really differs the two strings stand next to each other with the reason.
//! `dialect` names the differences (times, geometry, writers, casts) and reads rows of either
//! backend through one `Columns` trait.
//!
//! The backends are PostGIS through sqlx ([`PgStore`], the system of record) and embedded SQLite
//! ([`SqliteStore`], the zero-setup default); both pass the same conformance suite
//! (`tests/conformance.rs`). [`Blobs`] is the content-addressed blob store (`object_store`);
//! [`published`] writes a closed epoch's inputs there as Parquet files anyone can recompute its
//! root from, and reads them back. The auditors' log of decisions on refused frames is append-only, each decision applied with its
//! record (see [`Decision`]).
//!
//! It does not parse uploads, match roads or compute scores: it stores what those stages return,
//! as `covermap_domain` types (its only covermap dependency).

mod access;
mod blobs;
mod consumers;
mod demand;
mod dialect;
mod epochs;
mod erasure;
mod error;
mod feed;
mod governance;
mod imagery;
mod partitions;
mod pg;
pub mod published;
mod queue;
mod radio;
mod reward_rows;
mod roads;
mod rows;
mod sqlite;
mod trust;
mod uploads;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{
    Cell, CellVisit, DeviceId, EmitterKind, Fix, LatLon, MatchedStretch, RadioType, RejectionStage,
    Role, SegmentRef, UploadKind, UploadStatus,
};
use serde::Serialize;

pub use access::Access;
pub use blobs::{BlobRef, Blobs};
pub use consumers::{
    AreaRequests, ConsumerAreaRequests, ConsumerRequests, ConsumerUsage, Consumers, Look,
};
pub use covermap_domain::NewApiKey;
pub use demand::{CellBounty, Demand};
pub use epochs::Epochs;
pub use erasure::Erasure;
pub use error::{Result, StoreError};
pub use feed::{ChangeFeed, FeedChanges, FeedPosition};
pub use governance::{
    DecideRule, DecisionInputs, Governance, NewProposal, NewScheduledPolicy, NewVote,
    ProposalDecision, ProposalRecord, ScheduledPolicy, VoteRecord,
};
pub use imagery::Imagery;
pub use partitions::{MONTHS_AHEAD, PartitionInfo, Partitions};
pub use pg::PgStore;
pub use queue::Queue;
pub use radio::Radio;
pub use roads::Roads;
pub use sqlite::SqliteStore;
pub use trust::Trust;
pub use uploads::Uploads;

/// An upload whose bytes are already in the blob store, ready to be recorded and queued.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub device: DeviceId,
    pub kind: UploadKind,
    pub blob: BlobRef,
    pub received_at: DateTime<Utc>,
    /// Who is paid for it, where the uploader is bound to a contributor.
    pub contributor: Option<String>,
    /// Whether it may earn rewards: signed by a registered device, or sent with a key bound to a
    /// contributor.
    pub rewardable: bool,
}

/// What the store answers when an upload is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UploadReceipt {
    pub upload_id: i64,
    pub job_id: Option<i64>,
    /// The same device uploaded the same bytes before; nothing new was queued.
    pub duplicate: bool,
    pub status: UploadStatus,
    /// The earliest upload of the same bytes by another device, if any: this upload is a copy
    /// of someone else's (queued and processed as usual, for the trust stage to judge).
    pub copy_of: Option<i64>,
}

/// An upload as recorded, with what its processing found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadRecord {
    pub id: i64,
    pub device: DeviceId,
    pub kind: UploadKind,
    pub sha256: String,
    pub size_bytes: i64,
    pub received_at: DateTime<Utc>,
    pub status: UploadStatus,
    pub reason: Option<String>,
    pub fixes_accepted: Option<i64>,
    pub fixes_rejected: Option<i64>,
    pub cells: Option<i64>,
    /// Metres of road the upload was matched to (none where no road network was loaded).
    pub matched_m: Option<f64>,
    /// Radio observations or camera frames kept and refused (none for plain tracks).
    pub observations_accepted: Option<i64>,
    pub observations_rejected: Option<i64>,
    pub contributor: Option<String>,
    pub rewardable: bool,
    pub processed_at: Option<DateTime<Utc>>,
    /// The earliest upload of the same bytes by another device, if any.
    pub copy_of: Option<i64>,
    /// Cells the upload touched; `cells` is what it credits (none once flagged).
    pub cells_seen: Option<i64>,
    /// Whether it is believed, and why not.
    pub trust: UploadTrust,
    /// What the trust stage measured (`covermap_trust::Evidence` as JSON): for auditors.
    #[serde(skip)]
    pub evidence: Option<String>,
    /// When it was erased at its contributor's request (see [`Erasure::erase_upload`]).
    #[serde(skip)]
    pub erased_at: Option<DateTime<Utc>>,
}

/// An upload's trust verdict as its status shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadTrust {
    /// `pending` until processed, then `trusted` or `flagged`.
    pub verdict: String,
    /// Why it is flagged: reason codes with what was measured.
    pub findings: Vec<covermap_domain::trust::Finding>,
    /// The epoch whose close made the verdict final; until then the worker's verdict stands.
    pub epoch: Option<i64>,
}

impl UploadTrust {
    /// Reads the stored columns; findings that do not parse are shown as such, never dropped.
    pub fn from_columns(verdict: String, findings: Option<String>, epoch: Option<i64>) -> Self {
        let findings = match findings {
            None => Vec::new(),
            Some(text) => serde_json::from_str(&text).unwrap_or_else(|_| {
                vec![covermap_domain::trust::Finding::new(
                    "unreadable_findings",
                    text,
                )]
            }),
        };
        Self {
            verdict,
            findings,
            epoch,
        }
    }
}

/// An upload's erasure as recorded: who asked, when, and what went (see
/// [`Erasure::erase_upload`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadErasure {
    pub upload_id: i64,
    /// Whose upload it was.
    pub device: DeviceId,
    pub contributor: Option<String>,
    /// Who asked: the contributor, `key:<id>`, the signing device, or the operator.
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    /// The epoch that had counted the upload, whose inputs were kept (stripped of pixels and
    /// places) so that it still verifies; `None` where no epoch had, and every row went.
    pub counted_in_epoch: Option<u64>,
    /// What went, by kind.
    pub erased: ErasedItems,
    /// Blobs still to delete from the object store (a delete that failed is tried again);
    /// empty once all are gone.
    #[serde(skip)]
    pub pending_blobs: Vec<String>,
    /// When the last of its blobs was deleted; `None` while some are still to delete.
    pub completed_at: Option<DateTime<Utc>>,
}

/// What an erasure took away, counted by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct ErasedItems {
    /// Blobs deleted from the object store: the upload's bytes, its frames' originals and
    /// blurred derivatives (none that another upload still needs).
    pub blobs: u64,
    /// Frames whose pixels, keys, hashes and places went: rows deleted, or kept stripped where
    /// an epoch counted them.
    pub frames: u64,
    /// Refused frames, likewise.
    pub refused_frames: u64,
    /// Coverage rows (one per cell it was seen in).
    pub cells: u64,
    /// Stretches of road it was matched to.
    pub stretches: u64,
    /// Radio observations.
    pub radio: u64,
    /// Items left out of it: rows deleted, or their details (where a fix was) where kept.
    pub rejections: u64,
    /// What the trust stage kept to compare later uploads with: its extent and track print.
    pub trust: u64,
    /// Open reports of its frames, closed as removed.
    pub reports_closed: u64,
    /// Queued jobs that will not run.
    pub jobs_stopped: u64,
}

/// What the trust stage made of an upload, written with the upload's results.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrustRecord {
    /// `covermap_trust::Evidence` as JSON.
    pub evidence: String,
    /// `trusted` or `flagged`.
    pub verdict: String,
    /// The findings, as a JSON array of `{code, detail}`.
    pub findings: String,
    /// Where and when it lay, for the uploads that come after it.
    pub extent: Option<UploadExtent>,
    /// A track's print (`covermap_trust::twins::TrackPrint` as JSON), to find replays of it.
    pub print: Option<String>,
}

/// Where and when an upload lay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UploadExtent {
    /// A radio batch (else a track or drive).
    pub radio: bool,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub first: LatLon,
    pub last: LatLon,
    pub centre: LatLon,
    pub radius_m: f64,
}

/// A processed upload of the same device or contributor as another — or a refused track of
/// theirs, whose `upload_id` is then minus the refusal's id.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    pub upload_id: i64,
    pub device: DeviceId,
    pub contributor: Option<String>,
    pub extent: UploadExtent,
}

/// An upload refused outright, with who sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRefusal {
    pub device: DeviceId,
    pub contributor: Option<String>,
    pub kind: UploadKind,
    pub sha256: String,
    /// The refusal's code (`implausible_speed`, `no_usable_fixes`, …) and its message.
    pub reason: String,
    pub detail: Option<String>,
    pub received_at: DateTime<Utc>,
    /// A refused track's first and last timed fixes, where it had any.
    pub span: Option<(Fix, Fix)>,
}

/// Which uploads a listing shows: every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadFilter {
    pub contributor: Option<String>,
    pub device: Option<DeviceId>,
    /// Only uploads with this verdict (`pending`, `trusted`, `flagged`).
    pub trust: Option<String>,
}

/// A job a worker holds for a while. Only the holder of the current token may finish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job_id: i64,
    pub upload_id: i64,
    pub device: DeviceId,
    pub kind: UploadKind,
    pub blob_key: String,
    /// When the upload arrived: the reference time for its plausibility checks, so processing
    /// it again later gives the same result.
    pub received_at: DateTime<Utc>,
    /// Counting this one.
    pub attempt: i32,
    pub token: String,
    pub until: DateTime<Utc>,
}

/// What processing an upload produced; written with the job's "done" mark in one transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobOutcome {
    pub fixes_accepted: u32,
    pub fixes_rejected: u32,
    pub visits: Vec<CellVisit>,
    /// The matched path cut into cells, in driving order; empty where no road network is loaded.
    pub stretches: Vec<MatchedStretch>,
    /// Radio observations kept, in upload order.
    pub radio: Vec<RadioRow>,
    /// Camera frames kept, geotagged, their bytes already in the blob store.
    pub frames: Vec<FrameRow>,
    /// Frames the vision stage refused (quality, duplicate), kept for the auditors' queue; each
    /// also has its line in `rejections`.
    pub frame_rejections: Vec<FrameRejectionRow>,
    /// Every observation that was left out, with its reason: fixes, frames, radio items.
    pub rejections: Vec<Rejection>,
    /// The trust stage's evidence and verdict; `None` leaves the upload `pending`.
    pub trust: Option<TrustRecord>,
}

impl JobOutcome {
    /// Radio observations and frames kept, and refused; `None` for a plain track.
    pub fn observation_counts(&self) -> (Option<i64>, Option<i64>) {
        let kept = self.radio.len() + self.frames.len();
        let refused = self
            .rejections
            .iter()
            .filter(|r| r.stage != RejectionStage::Fix)
            .count();
        if kept + refused == 0 {
            (None, None)
        } else {
            (Some(kept as i64), Some(refused as i64))
        }
    }
}

/// One radio emitter seen at a place and time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RadioRow {
    pub observed_at: DateTime<Utc>,
    pub emitter_kind: EmitterKind,
    /// For cells: their radio generation.
    pub radio: Option<RadioType>,
    /// A stable key of the emitter (e.g. `lte:208:1:1234:56789`, `wifi:01005e901000`).
    pub emitter: String,
    pub signal_dbm: Option<i32>,
    pub accuracy_m: Option<f64>,
    pub pos: LatLon,
    pub cell: Cell,
}

/// A camera frame placed on the road: where and when it was taken, facing which way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameRow {
    /// Index of the frame in its drive.
    pub frame: i32,
    /// Which continuous sequence of the drive it belongs to (split on gaps).
    pub sequence: i32,
    pub sha256: String,
    pub blob_key: String,
    pub captured_at: DateTime<Utc>,
    pub heading_deg: f64,
    pub width: i32,
    pub height: i32,
    pub pos: LatLon,
    pub cell: Cell,
    /// The road segment it was taken on: the nearest of the drive's matched roads (none where
    /// no road network is loaded or no road is near).
    pub segment: Option<SegmentRef>,
    /// What the vision stage found; `None` while the frame waits for it (then nothing of it is
    /// published).
    pub vision: Option<FrameVision>,
}

/// The vision stage's verdict on a frame it looks at late, once its models are in place (see
/// [`Imagery::judge_pending_frame`]).
#[derive(Debug, Clone, PartialEq)]
pub enum LateJudgement {
    /// Published: its blurred derivative is stored under `published_key`.
    Publish(FrameVision),
    /// Refused for its quality or as a repeat: into the auditors' queue, the reason recorded
    /// on its upload.
    Refuse(Box<FrameRejectionRow>, Rejection),
    /// Not a frame the stage could read: left out of its drive, the reason recorded.
    Unreadable(Rejection),
}

impl LateJudgement {
    /// `published`, `refused` or `unreadable`.
    pub fn verdict(&self) -> &'static str {
        match self {
            Self::Publish(_) => "published",
            Self::Refuse(..) => "refused",
            Self::Unreadable(_) => "unreadable",
        }
    }
}

/// A frame the vision stage refused, for the auditors' queue: why, with the scores behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameRejectionRow {
    pub frame: i32,
    /// `dark`, `overexposed`, `defocus`, `motion_blur`, `obstructed`, `too_small`, `duplicate`.
    pub reason: String,
    /// The quality model's class probabilities and the classic measures, as a JSON object.
    pub scores: serde_json::Value,
    /// The private original.
    pub sha256: String,
    pub blob_key: String,
    /// Its blurred derivative (faces and plates), shown to auditors only.
    pub review_key: Option<String>,
    pub phash: Option<String>,
    /// For a duplicate: the published frame it repeats, as (upload, frame).
    pub duplicate_of: Option<(i64, i32)>,
    pub captured_at: DateTime<Utc>,
    pub pos: LatLon,
    pub cell: Cell,
    /// Where it stood in its drive, kept so that an auditor's approval publishes it as the
    /// vision stage would have; `None` for frames refused before migration 0007 kept it.
    pub placement: Option<FramePlacement>,
}

/// Where a frame stood in its drive, beside its position: what a published frame also records.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FramePlacement {
    pub sequence: i32,
    pub heading_deg: f64,
    pub width: i32,
    pub height: i32,
    pub segment: Option<SegmentRef>,
}

impl FramePlacement {
    /// The placement of a frame row.
    pub fn of(row: &FrameRow) -> Self {
        Self {
            sequence: row.sequence,
            heading_deg: row.heading_deg,
            width: row.width,
            height: row.height,
            segment: row.segment,
        }
    }
}

/// A refused frame as the auditors' queue lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditFrame {
    pub upload_id: i64,
    pub device: DeviceId,
    pub contributor: Option<String>,
    #[serde(flatten)]
    pub row: FrameRejectionRow,
    /// Its current decision (the newest), if an auditor decided.
    pub decision: Option<FrameDecision>,
}

/// Which refused frames the auditors' queue shows, oldest first from `after`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub reason: Option<String>,
    pub upload_id: Option<i64>,
    /// Start after this (upload, frame).
    pub after: Option<(i64, i32)>,
    /// Only frames no auditor decided yet.
    pub undecided_only: bool,
    pub limit: i64,
}

/// What an auditor decided about a refused frame.
///
/// - `Approve`: the refusal was wrong. In the same transaction as the decision, the frame is
///   published: inserted into `frames` with its blurred review copy as the published derivative
///   (and its original, capture time, cell, position, placement, phash, faces, plates, and its
///   scores as its quality). From then on it is in the imagery, served as a published frame,
///   found by the repeat search and counted on the demand map; for rewards it counts once, in
///   the first epoch claimed after the approval whose end is past it (closed epochs are never
///   reopened). A frame without a review copy, or refused before its placement was kept,
///   cannot be approved ([`StoreError::Conflict`]).
/// - `Reject`: the refusal stands. An approved frame is taken out of `frames` again (off the
///   map at once; an epoch that already counted it keeps it).
///
/// Either way the refused frame stays in the queue, with its decisions in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

impl std::str::FromStr for Decision {
    type Err = covermap_domain::InvalidValue;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "approve" => Ok(Decision::Approve),
            "reject" => Ok(Decision::Reject),
            other => Err(covermap_domain::InvalidValue {
                field: "decision",
                reason: format!("unknown decision {other:?}; decisions: approve, reject"),
            }),
        }
    }
}

/// A report of a published frame, to record (see [`Imagery::report_frame`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFrameReport {
    pub upload_id: i64,
    pub frame: i32,
    pub reason: covermap_domain::ReportReason,
    pub note: Option<String>,
    /// Who reported it: `key:<id>` for a key's holder, else `anonymous`.
    pub reporter: String,
}

/// A report of a published frame, and the auditor's decision on it once made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameReport {
    pub id: i64,
    pub upload_id: i64,
    pub frame: i32,
    pub reason: covermap_domain::ReportReason,
    pub note: Option<String>,
    pub reporter: String,
    pub reported_at: DateTime<Utc>,
    pub decision: Option<covermap_domain::ReportDecision>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// What the auditor marked, where the decision was to blur further.
    pub boxes: Option<Vec<covermap_domain::BlurBox>>,
}

/// An auditor's decision to blur a reported frame further (see [`Imagery::blur_reported_frame`]):
/// the boxes marked, and the frame's derivative before and after they were blurred.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportBlur {
    pub report_id: i64,
    pub boxes: Vec<covermap_domain::BlurBox>,
    /// The derivative the boxes were marked on and blurred in: the frame must still publish it.
    pub from_key: String,
    /// The blurred copy, already in the blob store.
    pub to_key: String,
    /// Who decided: the deciding key's contributor, or `key:<id>`.
    pub auditor: String,
}

/// A decision to record, by the key that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFrameDecision {
    pub upload_id: i64,
    pub frame: i32,
    pub decision: Decision,
    pub note: Option<String>,
    /// Who decided: the deciding key's contributor, or `key:<id>`.
    pub auditor: String,
    pub auditor_key_id: Option<i64>,
}

/// A decision as the append-only log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrameDecision {
    pub id: i64,
    pub upload_id: i64,
    pub frame: i32,
    pub decision: Decision,
    pub note: Option<String>,
    pub auditor: String,
    #[serde(skip)]
    pub auditor_key_id: Option<i64>,
    pub decided_at: DateTime<Utc>,
}

/// A published frame's perceptual hash, to find the same picture uploaded again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrameHash {
    pub upload_id: i64,
    pub frame: i32,
    pub phash: String,
}

/// Which stored image of a frame to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameImage {
    /// The blurred derivative of a published frame: public.
    Published,
    /// The blurred derivative of a refused frame: auditors only.
    Review,
    /// The blurred derivative of a published frame, even while a report hides it (not once it
    /// was taken down): auditors only, to decide the report.
    Reported,
}

/// A drive whose private originals are past their retention: the blobs that can go (none that a
/// younger upload still needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueOriginals {
    pub upload_id: i64,
    pub blob_keys: Vec<String>,
}

/// A frame the vision stage passed: its blurred derivative, published, and what was blurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrameVision {
    /// The published JPEG (faces and plates blurred), by its sha256.
    pub published_key: String,
    pub phash: String,
    pub faces: i32,
    pub plates: i32,
    /// The quality model's class probabilities and the classic measures, as a JSON object.
    pub quality: serde_json::Value,
}

/// An observation left out of an upload, and why; kept so auditors can see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub stage: RejectionStage,
    /// Index of the fix, frame, radio item or CSV row in the upload.
    pub item: i64,
    /// A stable reason code (`implausible_jump`, `outside_track`, `bad_mcc`, ...).
    pub reason: String,
    pub detail: Option<String>,
}

/// An API key as stored: its hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    pub id: i64,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    pub role: Role,
    pub contributor: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// A consumer key's requests per UTC day; none for other keys.
    pub quota_per_day: Option<u64>,
}

/// A device and the ed25519 public key its uploads are signed with now. Its owner is its
/// contributor, or, for a device bound to none, the key that registered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRecord {
    pub device: DeviceId,
    /// 32 bytes as lowercase hex.
    pub public_key: String,
    pub contributor: Option<String>,
    pub registered_by: i64,
    pub registered_at: DateTime<Utc>,
    /// When its key was last replaced (none when never); set by the store.
    pub rotated_at: Option<DateTime<Utc>>,
    /// When it was revoked: it signs nothing any more. Set by the store.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl DeviceRecord {
    /// Whether `asked` is this registration sent again (a retry): the same key and the same
    /// owner, and the device still in use.
    pub fn is_registered_again_as(&self, asked: &DeviceRecord) -> bool {
        let same_owner = match (&self.contributor, &asked.contributor) {
            (Some(ours), Some(theirs)) => ours == theirs,
            (None, None) => self.registered_by == asked.registered_by,
            _ => false,
        };
        self.revoked_at.is_none() && self.public_key == asked.public_key && same_owner
    }
}

/// What registering a device came to. A public key is registered once, ever: one that is or
/// was any device's (rotated away and revoked keys included) is never taken again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Registered now.
    Created(DeviceRecord),
    /// Registered before, by the same owner with the same key: that registration.
    Existing(DeviceRecord),
    /// The device id is taken: by another owner, with another key, or by a revoked device.
    DeviceTaken,
    /// The public key is, or was, some device's.
    KeyTaken,
}

/// What replacing a device's key came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The device signs with the new key from now on; the old one is retired for ever.
    Rotated(DeviceRecord),
    /// The new key is, or was, some device's.
    KeyTaken,
    /// The device no longer has the key the rotation was asked with (another rotation came
    /// first), was revoked, or does not exist.
    Superseded,
}

/// Which devices a listing shows: every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    pub contributor: Option<String>,
    pub registered_by: Option<i64>,
}

/// A resumable upload in progress: parts arrive in order until `size_bytes` have come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadSession {
    pub id: String,
    pub device: DeviceId,
    pub kind: UploadKind,
    pub size_bytes: i64,
    /// The sha256 the assembled upload must have.
    pub sha256: String,
    pub received_bytes: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One stored part of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPart {
    pub offset: i64,
    pub size: i64,
    pub blob_key: String,
}

/// Why a leased job did not produce an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobFailure {
    /// The upload is unusable; retrying cannot help. The upload is marked rejected with this reason.
    Rejected(String),
    /// Something outside the upload failed (a blob read, say); try again later.
    Transient(String),
}

/// How the queue behaves; the same for every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePolicy {
    /// A job is given up after this many leases that did not finish it.
    pub max_attempts: i32,
    /// How long a transient failure waits before the job is leased again.
    pub retry_after: Duration,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            retry_after: Duration::from_secs(10),
        }
    }
}

/// Counts for dashboards and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StoreStats {
    pub uploads_queued: i64,
    pub uploads_processed: i64,
    pub uploads_rejected: i64,
    pub jobs_queued: i64,
    pub jobs_leased: i64,
    pub jobs_done: i64,
    pub jobs_failed: i64,
    pub cells: i64,
    pub road_segments: i64,
}

/// What a closer got when it asked for an epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpochClaim {
    /// The epoch is this closer's to close until `until`; its uploads are tagged.
    Held {
        token: String,
        until: DateTime<Utc>,
        /// Uploads newly counted in the epoch by this claim.
        tagged: u64,
    },
    /// Another closer finished it already.
    Closed,
    /// Another closer holds it.
    Busy { by: String, until: DateTime<Utc> },
}

/// An epoch as `epoch list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpochRecord {
    pub epoch: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `closing` or `closed`.
    pub status: String,
    pub closed_at: Option<DateTime<Utc>>,
    pub root: Option<String>,
    pub policy_hash: Option<String>,
    pub emission: Option<u64>,
    pub distributed: Option<u64>,
    pub unallocated: Option<u64>,
    pub bounty_paid: Option<u64>,
}

/// A closed epoch's manifest with the policy text that closed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedEpoch {
    pub record: EpochRecord,
    pub manifest: covermap_domain::rewards::Manifest,
    pub policy: String,
}

/// A demand area to create: the cells are the polygon's, filled by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDemandArea {
    pub name: String,
    pub weight: f64,
    /// The GeoJSON geometry as drawn.
    pub polygon: serde_json::Value,
    pub cells: Vec<Cell>,
    pub created_by: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Base units set aside for first captures of its cells (a bounty).
    pub budget: Option<u64>,
}

/// A demand area as stored, with what its bounty paid so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemandAreaRecord {
    pub id: i64,
    pub name: String,
    pub weight: f64,
    pub polygon: serde_json::Value,
    pub cells: i64,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub budget: Option<u64>,
    /// Paid to claimants in closed epochs.
    pub paid: u64,
    /// Cells claimed so far.
    pub claimed_cells: i64,
    /// Released at expiry, and in which epoch.
    pub refunded: Option<u64>,
    pub refunded_epoch: Option<u64>,
}

/// What the demand map needs about one cell to weigh it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemandCellState {
    pub cell: Cell,
    /// Sum of the weights of live areas holding it.
    pub demand_weight: f64,
    /// Live bounties holding it that it has not been claimed from.
    pub open_bounties: i64,
    pub road_length_m: f64,
    /// Road length driven since the coverage window began.
    pub observed_m: f64,
    /// Newest published frame taken in it.
    pub last_seen: Option<DateTime<Utc>>,
}

/// When a road segment was last driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SegmentSeen {
    pub osm_way_id: i64,
    pub piece: u32,
    pub last_seen: DateTime<Utc>,
}

/// The storage interface every backend implements. Times are passed in, not read from a clock,
/// so the queue's lease rules can be tested without sleeping.
#[async_trait]
pub trait Store:
    Queue
    + Uploads
    + Erasure
    + Trust
    + Access
    + Imagery
    + Roads
    + Radio
    + Epochs
    + Demand
    + Governance
    + Consumers
    + ChangeFeed
    + Partitions
    + Send
    + Sync
    + std::fmt::Debug
{
    fn backend(&self) -> &'static str;

    /// Brings the schema up to date; safe to run again.
    async fn migrate(&self) -> Result<()>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
}
/// Opens the store that `database` names: a `postgres://` URL selects PostGIS; none selects the
/// embedded SQLite store in `data_dir`.
pub async fn open(database: Option<&str>, data_dir: &Path) -> Result<Arc<dyn Store>> {
    match database {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(PgStore::connect(url).await?))
        }
        Some(url) if url.starts_with("sqlite:") => Ok(Arc::new(SqliteStore::open_url(url).await?)),
        Some(other) => Err(StoreError::Config(format!(
            "database URL {:?} is neither postgres:// nor sqlite:",
            error::redact(other)
        ))),
        None => Ok(Arc::new(
            SqliteStore::open_file(&data_dir.join("covermap.sqlite3")).await?,
        )),
    }
}
