//! A contributor's uploads erased at their request (GDPR-style): one upload, or all of theirs.
//!
//! The store erases the rows in one transaction (see `covermap_store::Erasure`) and names the
//! blobs nothing else needs; they are deleted from the object store after it commits, and the
//! erasure is marked complete once the last is gone. A delete that fails leaves them named in
//! the record: asking again, or the workers' sweep, finishes the job. Nothing of an erased
//! upload comes back: its queued job never runs, a worker holding it has its results refused
//! and deletes the blobs it wrote, and a frame judged late meanwhile is dropped with its blob.
//!
//! The reward ledger keeps its history: an epoch that counted an erased upload keeps the rows
//! it was computed from (cells, times, counts; no pixels, no exact places) and still verifies.
//! An erased upload counts in no epoch after: it is never tagged, and a later epoch's "driven
//! before" leaves it out.

use chrono::{DateTime, Utc};
use covermap_domain::DeviceId;
use covermap_store::{Blobs, JobOutcome, Store, StoreError, UploadErasure, UploadFilter};

/// Whose uploads an erasure of all of them takes: a contributor's (every device of theirs and
/// every key bound to them), or a device's bound to no contributor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Contributor(String),
    Device(DeviceId),
}

impl Subject {
    /// The uploads it names, as a listing's filter.
    pub fn filter(&self) -> UploadFilter {
        match self {
            Subject::Contributor(c) => UploadFilter {
                contributor: Some(c.clone()),
                ..UploadFilter::default()
            },
            Subject::Device(d) => UploadFilter {
                device: Some(d.clone()),
                ..UploadFilter::default()
            },
        }
    }
}

/// Uploads erased per store round trip when erasing all of a subject's.
const PAGE: i64 = 100;

/// Erases upload `upload_id` as `requested_by` asked at `now` (asking again is harmless: the
/// record is answered, and any blob still to delete is deleted); answers its record.
pub async fn erase_upload(
    store: &dyn Store,
    blobs: &Blobs,
    upload_id: i64,
    requested_by: &str,
    now: DateTime<Utc>,
) -> Result<UploadErasure, StoreError> {
    let erasure = store.erase_upload(upload_id, requested_by, now).await?;
    delete_blobs(store, blobs, erasure).await
}

/// Erases every upload of `subject` not erased yet, and finishes earlier erasures of theirs whose
/// blobs are still to delete; answers the erasures this request made or finished, oldest upload
/// first.
pub async fn erase_all(
    store: &dyn Store,
    blobs: &Blobs,
    subject: &Subject,
    requested_by: &str,
    now: DateTime<Utc>,
) -> Result<Vec<UploadErasure>, StoreError> {
    let filter = subject.filter();
    let mut done = Vec::new();
    let mut after = 0;
    loop {
        let ids = store.uploads_to_erase(&filter, after, PAGE).await?;
        let Some(&last) = ids.last() else { break };
        for id in ids {
            done.push(erase_upload(store, blobs, id, requested_by, now).await?);
        }
        after = last;
    }
    for pending in store.erasures(&filter, true, PAGE).await? {
        done.push(delete_blobs(store, blobs, pending).await?);
    }
    tracing::info!(
        ?subject,
        uploads = done.len(),
        by = requested_by,
        "uploads erased"
    );
    Ok(done)
}

/// Finishes erasures whose blobs are still to delete (an object store that failed); answers how
/// many it finished. The workers' sweep runs it.
pub async fn finish_pending(store: &dyn Store, blobs: &Blobs) -> Result<usize, StoreError> {
    let pending = store.erasures(&UploadFilter::default(), true, PAGE).await?;
    let mut finished = 0;
    for erasure in pending {
        if delete_blobs(store, blobs, erasure)
            .await?
            .completed_at
            .is_some()
        {
            finished += 1;
        }
    }
    Ok(finished)
}

/// Deletes `keys` (blobs someone wrote for an upload whose rows never landed, or no longer
/// name them) where no row names them; answers how many it deleted.
pub async fn delete_unreferenced(
    store: &dyn Store,
    blobs: &Blobs,
    keys: &[String],
) -> Result<usize, StoreError> {
    let unused = store.unreferenced_blobs(keys).await?;
    for key in &unused {
        blobs.delete(key).await?;
    }
    Ok(unused.len())
}

/// The blobs a job's outcome names: its frames' originals and blurred copies.
pub(crate) fn outcome_blobs(outcome: &JobOutcome) -> Vec<String> {
    let frames = outcome.frames.iter().flat_map(|f| {
        std::iter::once(f.blob_key.clone())
            .chain(f.vision.as_ref().map(|v| v.published_key.clone()))
    });
    let refused = outcome
        .frame_rejections
        .iter()
        .flat_map(|r| std::iter::once(r.blob_key.clone()).chain(r.review_key.clone()));
    frames.chain(refused).collect()
}

/// Deletes an erasure's remaining blobs and marks it complete; a delete that fails is logged and
/// leaves it pending (answered with `completed_at` still `None`).
async fn delete_blobs(
    store: &dyn Store,
    blobs: &Blobs,
    erasure: UploadErasure,
) -> Result<UploadErasure, StoreError> {
    if erasure.completed_at.is_some() {
        return Ok(erasure);
    }
    for key in &erasure.pending_blobs {
        if let Err(e) = blobs.delete(key).await {
            tracing::warn!(upload = erasure.upload_id, key, error = %e,
                "an erased upload's blob was not deleted; it is tried again later");
            return Ok(erasure);
        }
    }
    store.erasure_done(erasure.upload_id, Utc::now()).await?;
    // As recorded (times as the database keeps them), so that asking again answers the same.
    Ok(store.erasure(erasure.upload_id).await?.unwrap_or(erasure))
}
