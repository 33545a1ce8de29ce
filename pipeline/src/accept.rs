//! Accepting an upload: the one path by which bytes become a stored, queued upload, for the HTTP
//! API and `covermap ingest` alike.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use covermap_domain::UploadKind;
use covermap_ingest::{
    IngestError, IngestRules, UploadSummary, Uploader, check_upload, track_span,
};
use covermap_store::{Blobs, NewRefusal, NewUpload, Store, StoreError, UploadReceipt};
use sha2::{Digest, Sha256};

/// Why [`accept_upload`] kept nothing.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The bytes were refused: the sender's problem, with its code and detail.
    #[error(transparent)]
    Refused(#[from] IngestError),
    /// Storage failed: not the upload's fault, nothing was kept, it may be sent again.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Keeps a refused upload's sender, kind, hash and reason: a contributor whose devices keep
/// sending impossible tracks is a repeat offender even though nothing of them was stored. A
/// failure to record it is logged; the uploader still gets the refusal.
async fn record_refusal(
    store: &dyn Store,
    uploader: &Uploader,
    kind: UploadKind,
    bytes: &[u8],
    received_at: DateTime<Utc>,
    error: &IngestError,
) {
    let refusal = NewRefusal {
        device: uploader.device.clone(),
        contributor: uploader.contributor.clone().filter(|_| uploader.rewardable),
        kind,
        sha256: hex::encode(Sha256::digest(bytes)),
        reason: error.code().to_owned(),
        detail: Some(error.to_string()),
        received_at,
        span: if kind.is_track() {
            track_span(kind, bytes)
        } else {
            None
        },
    };
    if let Err(e) = store.record_refusal(&refusal).await {
        tracing::warn!(error = %e, "could not record a refused upload");
    }
}

/// What [`accept_upload`] kept.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Accepted {
    #[serde(flatten)]
    pub receipt: UploadReceipt,
    pub sha256: String,
    pub summary: UploadSummary,
}

/// The one way bytes become an upload: check them, store the blob under its hash, then record the
/// upload and queue its job in one transaction. Refused bytes leave nothing behind; accepted ones
/// are durable before this returns.
pub async fn accept_upload(
    store: &dyn Store,
    blobs: &Blobs,
    uploader: Uploader,
    kind: UploadKind,
    bytes: Bytes,
    received_at: DateTime<Utc>,
    rules: &IngestRules,
) -> Result<Accepted, AcceptError> {
    let checked = {
        let (bytes, rules) = (bytes.clone(), *rules);
        tokio::task::spawn_blocking(move || check_upload(kind, &bytes, received_at, &rules))
            .await
            .map_err(|e| IngestError::BadEncoding(format!("checking the upload failed: {e}")))?
    };
    let summary = match checked {
        Ok(summary) => summary,
        Err(e) => {
            record_refusal(store, &uploader, kind, &bytes, received_at, &e).await;
            return Err(e.into());
        }
    };
    let blob = blobs.put(bytes).await?;
    let sha256 = blob.sha256.clone();
    let receipt = store
        .record_upload(NewUpload {
            device: uploader.device,
            kind,
            blob,
            received_at,
            contributor: uploader.contributor,
            rewardable: uploader.rewardable,
        })
        .await?;
    metrics::counter!("covermap_uploads_total", "kind" => kind.as_str(),
        "outcome" => if receipt.duplicate { "duplicate" } else { "accepted" })
    .increment(1);
    tracing::info!(upload = receipt.upload_id, duplicate = receipt.duplicate, %kind,
        "upload accepted");
    Ok(Accepted {
        receipt,
        sha256,
        summary,
    })
}
