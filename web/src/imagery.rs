//! Published imagery and the auditors' queue of refused frames.
//!
//! Anyone may see the published imagery per cell and fetch a published frame (its blurred
//! derivative, never the original). Refused frames, with their reasons and scores and their own
//! blurred copy, are for auditors (and admins) only.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use covermap_domain::Role;
use covermap_store::{AuditQuery, FrameImage};
use serde::Deserialize;
use serde_json::json;

use crate::api::{AreaQuery, bad_query, checked_limit};
use crate::{ApiError, AppState, auth};

/// `GET /api/v1/imagery?bbox=&limit=`: published frames summed per cell, as GeoJSON.
pub(crate) async fn imagery(
    State(state): State<AppState>,
    q: Result<Query<AreaQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = checked_limit(q.limit, 10_000, 100_000)?;
    let cells = state.store.imagery(q.area(&state)?, limit).await?;
    Ok(Json(covermap_tiles::imagery_geojson(&cells)).into_response())
}

/// `GET /api/v1/frames/{upload}/{frame}/image`: a published frame, faces and plates blurred.
pub(crate) async fn published_frame(
    State(state): State<AppState>,
    Path((upload, frame)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (upload, frame) = frame_id(&upload, &frame)?;
    image(&state, upload, frame, FrameImage::Published).await
}

/// `GET /api/v1/audit/frames?reason=&upload=&after=UPLOAD:FRAME&limit=`: refused frames, oldest
/// first, each with its reason, scores, position and the link to its blurred copy.
pub(crate) async fn audit_queue(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    auditor(&state, &method, &uri, &headers).await?;
    let Query(q) = q.map_err(bad_query)?;
    let after = match q.after.as_deref() {
        None => None,
        Some(cursor) => {
            let (u, f) = cursor.split_once(':').ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_cursor",
                    format!("after={cursor:?} is not UPLOAD:FRAME"),
                )
            })?;
            Some(frame_id(u, f)?)
        }
    };
    let query = AuditQuery {
        reason: q.reason,
        upload_id: q.upload,
        after,
        undecided_only: false,
        limit: checked_limit(q.limit, 100, 1000)?,
    };
    let frames = state.store.audit_frames(&query).await?;
    let next = (frames.len() as i64 == query.limit)
        .then(|| {
            frames
                .last()
                .map(|f| format!("{}:{}", f.upload_id, f.row.frame))
        })
        .flatten();
    let items: Vec<_> = frames
        .iter()
        .map(|f| {
            json!({
                "upload_id": f.upload_id,
                "frame": f.row.frame,
                "device": f.device,
                "contributor": f.contributor,
                "reason": f.row.reason,
                "scores": f.row.scores,
                "phash": f.row.phash,
                "duplicate_of": f.row.duplicate_of.map(|(u, fr)| json!({"upload_id": u, "frame": fr})),
                "captured_at": f.row.captured_at,
                "lat": f.row.pos.lat,
                "lon": f.row.pos.lon,
                "cell": f.row.cell.to_string(),
                "image": f.row.review_key.as_ref().map(|_| {
                    format!("/api/v1/audit/frames/{}/{}/image", f.upload_id, f.row.frame)
                }),
            })
        })
        .collect();
    Ok(Json(json!({"frames": items, "next": next})).into_response())
}

/// `GET /api/v1/audit/frames/{upload}/{frame}/image`: a refused frame's blurred copy.
pub(crate) async fn review_frame(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((upload, frame)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    auditor(&state, &method, &uri, &headers).await?;
    let (upload, frame) = frame_id(&upload, &frame)?;
    image(&state, upload, frame, FrameImage::Review).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuditParams {
    reason: Option<String>,
    upload: Option<i64>,
    after: Option<String>,
    limit: Option<i64>,
}

async fn auditor(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    auth::reader(state.store.as_ref(), method, uri, headers, &[Role::Auditor]).await?;
    Ok(())
}

fn frame_id(upload: &str, frame: &str) -> Result<(i64, i32), ApiError> {
    let upload = upload.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_id",
            format!("upload id {upload:?} is not a number"),
        )
    })?;
    let frame = frame.parse().map_err(|_| {
        ApiError::bad_request("invalid_id", format!("frame {frame:?} is not a number"))
    })?;
    Ok((upload, frame))
}

async fn image(
    state: &AppState,
    upload: i64,
    frame: i32,
    which: FrameImage,
) -> Result<Response, ApiError> {
    let Some(key) = state.store.frame_image(upload, frame, which).await? else {
        return Err(ApiError::NotFound(format!(
            "no {} frame {frame} in upload {upload}",
            match which {
                FrameImage::Published => "published",
                FrameImage::Review => "refused",
            }
        )));
    };
    let bytes = state.blobs.get(&key).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            // Content-addressed: the bytes behind this frame never change.
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        bytes,
    )
        .into_response())
}
