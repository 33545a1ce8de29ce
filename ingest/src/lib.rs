//! covermap ingest: what drivers' devices send, read and checked before anything is kept.
//!
//! It owns the upload formats (GPX tracks today; frames, NMEA and radio formats join later), the
//! per-fix plausibility rules ([`IngestPolicy`]) and [`accept_upload`], the one path by which
//! bytes become a stored, queued upload. A parser is pure: bytes in, [`Track`] or [`IngestError`]
//! out. HTTP framing lives in `web`; SQL and blobs in `store`.

mod gpx_track;
mod track;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use covermap_domain::{DeviceId, UploadKind};
use covermap_store::{Blobs, NewUpload, Store, StoreError, UploadReceipt};

pub use gpx_track::{GpxPoint, parse_gpx, read_gpx_points};
pub use track::{FixRejection, IngestPolicy, Track, TrackSummary};

/// Why an upload was refused. Each variant is the client's problem except [`IngestError::Store`].
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the upload is empty")]
    Empty,
    #[error("not a readable GPX file: {0}")]
    NotGpx(String),
    #[error("the track has no points")]
    NoPoints,
    #[error("none of the track's {total} points is usable: {summary}")]
    NoUsableFixes { total: usize, summary: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IngestError {
    /// A short stable code for API clients and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::Empty => "empty_upload",
            IngestError::NotGpx(_) => "invalid_gpx",
            IngestError::NoPoints => "no_points",
            IngestError::NoUsableFixes { .. } => "no_usable_fixes",
            IngestError::Store(_) => "storage_error",
        }
    }
}

/// Reads an upload of `kind` into a checked track.
pub fn parse(
    kind: UploadKind,
    bytes: &[u8],
    received_at: DateTime<Utc>,
    policy: &IngestPolicy,
) -> Result<Track, IngestError> {
    if bytes.is_empty() {
        return Err(IngestError::Empty);
    }
    match kind {
        UploadKind::Gpx => parse_gpx(bytes, received_at, policy),
    }
}

/// What [`accept_upload`] kept.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Accepted {
    #[serde(flatten)]
    pub receipt: UploadReceipt,
    pub sha256: String,
    pub summary: TrackSummary,
}

/// The one way bytes become an upload: check them, store the blob under its hash, then record the
/// upload and queue its job in one transaction. Refused bytes leave nothing behind; accepted ones
/// are durable before this returns.
pub async fn accept_upload(
    store: &dyn Store,
    blobs: &Blobs,
    device: DeviceId,
    kind: UploadKind,
    bytes: Bytes,
    received_at: DateTime<Utc>,
    policy: &IngestPolicy,
) -> Result<Accepted, IngestError> {
    let track = parse(kind, &bytes, received_at, policy)?;
    let blob = blobs.put(bytes).await?;
    let sha256 = blob.sha256.clone();
    let receipt = store
        .record_upload(NewUpload {
            device,
            kind,
            blob,
            received_at,
        })
        .await?;
    metrics::counter!("covermap_uploads_total", "kind" => kind.as_str(),
        "outcome" => if receipt.duplicate { "duplicate" } else { "accepted" })
    .increment(1);
    tracing::info!(upload = receipt.upload_id, duplicate = receipt.duplicate, %kind,
        fixes = track.fixes.len(), "upload accepted");
    Ok(Accepted {
        receipt,
        sha256,
        summary: track.summary(),
    })
}
