//! Frames kept unpublished because the vision models were missing, judged once they are in
//! place: each is looked at as its drive's job would have (quality, faces and plates blurred,
//! repeats of a published picture refused) and then published, refused into the auditors'
//! queue, or left out as unreadable. A frame published late counts in the first epoch claimed
//! after it, never in the closed epoch its upload counted in (migration 0011), so closed epochs
//! still verify.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use covermap_domain::{Cell, RejectionStage};
use covermap_store::{Blobs, FrameRow, LateJudgement, Rejection, Store, StoreError};
use covermap_vision::{FramePool, Look, VisionError};

use crate::WorkerConfig;
use crate::process::{Verdict, duplicate_refusal, judge_frame, refusal, repeat_of};

/// How many pending frames are read and looked at together.
const PAGE: i64 = 16;

/// What one pass over the pending frames did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LateReport {
    pub published: u64,
    pub refused: u64,
    pub unreadable: u64,
    /// Left pending: the original could not be read or the models failed; tried next pass.
    pub failed: u64,
}

impl LateReport {
    pub fn judged(&self) -> u64 {
        self.published + self.refused + self.unreadable
    }
}

/// Judges every frame kept pending whose original is still kept, in (upload, frame) order, as
/// judged at `now`;
/// nothing to do without the vision stage's models. A frame another process judged meanwhile
/// is left as that process wrote it.
pub async fn judge_pending(
    store: &dyn Store,
    blobs: &Blobs,
    config: &WorkerConfig,
    now: DateTime<Utc>,
) -> Result<LateReport, StoreError> {
    let mut report = LateReport::default();
    let Some(pool) = config.vision.clone() else {
        return Ok(report);
    };
    // Hashes of the pictures published in this pass: two pending frames of one picture are one
    // publication, as within a drive's job.
    let mut seen: Vec<(i64, i32, String)> = Vec::new();
    let mut after = None;
    loop {
        let page = store.pending_frames(after, PAGE).await?;
        let Some((u, f)) = page.last() else { break };
        after = Some((*u, f.frame));
        let mut originals = Vec::with_capacity(page.len());
        for (upload_id, row) in &page {
            match blobs.get(&row.blob_key).await {
                Ok(bytes) => originals.push(Some(bytes)),
                Err(e) => {
                    tracing::warn!(upload = upload_id, frame = row.frame, error = %e, "a pending frame's original cannot be read");
                    originals.push(None);
                }
            }
        }
        let looks = look_all(pool.clone(), &originals).await?;
        for ((upload_id, row), look) in page.into_iter().zip(looks) {
            let Some(look) = look else {
                report.failed += 1;
                continue;
            };
            let name = format!("frame {} of upload {upload_id}", row.frame);
            let verdict = match judge_frame(&name, look) {
                Ok(v) => v,
                Err(failure) => {
                    tracing::warn!(
                        upload = upload_id,
                        frame = row.frame,
                        ?failure,
                        "the vision stage failed on a pending frame"
                    );
                    report.failed += 1;
                    continue;
                }
            };
            let judgement = match verdict {
                Verdict::Unreadable(reason, detail) => {
                    report.unreadable += 1;
                    LateJudgement::Unreadable(rejection(&row, reason, detail))
                }
                Verdict::Refuse {
                    reason,
                    scores,
                    phash,
                    review,
                } => {
                    report.refused += 1;
                    let detail = format!("{name}: {scores}");
                    let mut refused = refusal(&row, reason, scores, phash);
                    refused.review_key = Some(put(blobs, review).await?);
                    LateJudgement::Refuse(Box::new(refused), rejection(&row, reason, detail))
                }
                Verdict::Publish(mut vision, published) => {
                    match repeated(store, upload_id, &row, &vision.phash, &seen, config).await? {
                        Some((bits, of)) => {
                            report.refused += 1;
                            let (mut refused, why) = duplicate_refusal(&row, &vision, bits, of);
                            refused.review_key = Some(put(blobs, published).await?);
                            LateJudgement::Refuse(Box::new(refused), why)
                        }
                        None => {
                            report.published += 1;
                            seen.push((upload_id, row.frame, vision.phash.clone()));
                            vision.published_key = put(blobs, published).await?;
                            LateJudgement::Publish(vision)
                        }
                    }
                }
            };
            let verdict = judgement.verdict();
            if store
                .judge_pending_frame(upload_id, row.frame, &judgement, now)
                .await?
            {
                metrics::counter!("covermap_frames_judged_late_total", "verdict" => verdict)
                    .increment(1);
            } else {
                // Judged elsewhere first (the same bytes, kept), or erased meanwhile (its copy
                // goes).
                let written: Vec<String> = match &judgement {
                    LateJudgement::Publish(v) => vec![v.published_key.clone()],
                    LateJudgement::Refuse(r, _) => r.review_key.iter().cloned().collect(),
                    LateJudgement::Unreadable(_) => Vec::new(),
                };
                crate::erasure::delete_unreferenced(store, blobs, &written).await?;
                tracing::info!(
                    upload = upload_id,
                    frame = row.frame,
                    "a pending frame was judged elsewhere first, or erased"
                );
            }
        }
    }
    Ok(report)
}

/// The vision stage on the frames read, off the async threads; `None` where there was no
/// original to look at.
async fn look_all(
    pool: Arc<FramePool>,
    originals: &[Option<bytes::Bytes>],
) -> Result<Vec<Option<Result<Look, VisionError>>>, StoreError> {
    let owned: Vec<Option<bytes::Bytes>> = originals.to_vec();
    tokio::task::spawn_blocking(move || {
        let present: Vec<&[u8]> = owned.iter().flatten().map(AsRef::as_ref).collect();
        let mut looks = pool.look_all(&present).into_iter();
        owned
            .iter()
            .map(|o| o.as_ref().and_then(|_| looks.next()))
            .collect()
    })
    .await
    .map_err(|e| StoreError::Config(format!("the vision stage stopped: {e}")))
}

/// The nearest published picture (here or earlier in this pass) within the policy's
/// `imagery.duplicate_bits` of `phash`, in the frame's cell and the cells around it, from
/// another upload: (bits, (upload, frame)).
async fn repeated(
    store: &dyn Store,
    upload_id: i64,
    row: &FrameRow,
    phash: &str,
    seen: &[(i64, i32, String)],
    config: &WorkerConfig,
) -> Result<Option<(u32, (i64, i32))>, StoreError> {
    let cells: Vec<Cell> = row
        .cell
        .0
        .grid_disk::<Vec<_>>(1)
        .into_iter()
        .map(Cell)
        .collect();
    let earlier = store.frame_hashes(&cells, upload_id, 100_000).await?;
    Ok(repeat_of(
        phash,
        earlier
            .iter()
            .map(|h| (h.upload_id, h.frame, h.phash.as_str()))
            .chain(seen.iter().map(|(u, f, h)| (*u, *f, h.as_str()))),
        config.duplicate_bits,
    ))
}

fn rejection(row: &FrameRow, reason: &str, detail: String) -> Rejection {
    Rejection {
        stage: RejectionStage::Frame,
        item: i64::from(row.frame),
        reason: reason.to_owned(),
        detail: Some(detail),
    }
}

async fn put(blobs: &Blobs, bytes: Vec<u8>) -> Result<String, StoreError> {
    Ok(blobs.put(bytes.into()).await?.key)
}
