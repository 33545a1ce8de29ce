//! covermap's storage: the only crate that speaks SQL or talks to the object store.
//!
//! It owns the [`Store`] interface and its two backends — PostGIS through sqlx ([`PgStore`], the
//! system of record) and embedded SQLite ([`SqliteStore`], the zero-setup default) — the job
//! queue with leases, and the content-addressed blob store ([`Blobs`]). Both backends pass the
//! same conformance suite (`tests/conformance.rs`).
//!
//! It does not parse uploads, match roads or compute scores: it stores what those stages return.

mod blobs;
mod error;
mod pg;
mod rows;
mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{
    BoundingBox, CellCoverage, CellVisit, DeviceId, MatchedStretch, RoadCell, RoadSegment,
    UploadKind, UploadStatus,
};
use serde::Serialize;

pub use blobs::{BlobRef, Blobs};
pub use error::{Result, StoreError};
pub use pg::PgStore;
pub use sqlite::SqliteStore;

/// An upload whose bytes are already in the blob store, ready to be recorded and queued.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub device: DeviceId,
    pub kind: UploadKind,
    pub blob: BlobRef,
    pub received_at: DateTime<Utc>,
}

/// What the store answers when an upload is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UploadReceipt {
    pub upload_id: i64,
    pub job_id: Option<i64>,
    /// The same bytes were uploaded before; nothing new was queued.
    pub duplicate: bool,
    pub status: UploadStatus,
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
    pub processed_at: Option<DateTime<Utc>>,
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

/// What processing a track upload produced; written with the job's "done" mark in one transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrackOutcome {
    pub fixes_accepted: u32,
    pub fixes_rejected: u32,
    pub visits: Vec<CellVisit>,
    /// The matched path cut into cells, in driving order; empty where no road network is loaded.
    pub stretches: Vec<MatchedStretch>,
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

/// The storage interface every backend implements. Times are passed in, not read from a clock,
/// so the queue's lease rules can be tested without sleeping.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `postgis` or `sqlite`.
    fn backend(&self) -> &'static str;

    /// Brings the schema up to date; safe to run again.
    async fn migrate(&self) -> Result<()>;

    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    /// Records an upload and queues its job in one transaction. Uploading the same bytes again
    /// (a replay, a retry after a lost response) returns the first upload, marked duplicate.
    async fn record_upload(&self, upload: NewUpload) -> Result<UploadReceipt>;

    async fn upload(&self, id: i64) -> Result<Option<UploadRecord>>;

    /// Newest first.
    async fn recent_uploads(&self, limit: i64) -> Result<Vec<UploadRecord>>;

    /// Leases the oldest job that is ready: queued and due, or leased by a worker whose lease ran
    /// out. Jobs that ran out of attempts are failed instead of leased.
    async fn lease_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
        policy: QueuePolicy,
    ) -> Result<Option<Lease>>;

    /// Writes a track's observations, its upload's summary and the job's "done" mark in one
    /// transaction — or nothing, with [`StoreError::LeaseLost`], if the lease is no longer held.
    async fn complete_track_job(
        &self,
        lease: &Lease,
        outcome: &TrackOutcome,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Ends or postpones a job that failed, under the same lease rule.
    async fn fail_job(
        &self,
        lease: &Lease,
        failure: &JobFailure,
        now: DateTime<Utc>,
        policy: QueuePolicy,
    ) -> Result<()>;

    /// Coverage of the cells whose centres lie in `bbox`, at most `limit` of them, by cell id.
    async fn coverage(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<CellCoverage>>;

    /// Replaces the whole road network, and each cell's road length, in one transaction.
    async fn replace_roads(&self, segments: &[RoadSegment], cells: &[RoadCell]) -> Result<u64>;

    /// Road length of the cells whose centres lie in `bbox`, at most `limit`, by cell id.
    async fn road_cells(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadCell>>;

    /// The stretches of road an upload was matched to, in driving order.
    async fn matched_stretches(&self, upload_id: i64) -> Result<Vec<MatchedStretch>>;

    /// Road segments that intersect `bbox`, at most `limit`.
    async fn roads(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadSegment>>;

    async fn stats(&self) -> Result<StoreStats>;
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
