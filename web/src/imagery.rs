//! Published imagery, and the auditors' queue of refused frames with their decisions.
//!
//! Anyone may see the published imagery per cell and fetch a published frame (its blurred
//! derivative, never the original). Refused frames, with their reasons and scores and their own
//! blurred copy, are for auditors (and admins) only; so are the decisions on them: approving a
//! refused frame publishes it from its blurred copy, rejecting it takes an approved frame down
//! again, and every decision stays in the log (see `covermap_store::Decision`).
//!
//! Anyone may also report a published frame that shows a face, a plate or anything else that
//! should not be public: it is hidden at once, until an auditor keeps it (shown again), blurs it
//! further where they mark it (shown again, blurred) or removes it (taken down for good, its
//! derivative deleted).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use covermap_domain::Role;
use covermap_domain::{BlurBox, ReportDecision, ReportReason};
use covermap_store::{AuditQuery, Decision, FrameImage, NewFrameDecision, NewFrameReport};
use serde::Deserialize;
use serde_json::json;

use crate::api::{AreaQuery, bad_query, checked_limit};
use crate::body::{self, Body};
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

/// `GET /api/v1/audit/frames/{upload}/{frame}/published` (auditors, admins): a published frame's
/// blurred derivative even while a report hides it, to decide the report.
pub(crate) async fn reported_frame(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(path): Path<(String, String)>,
) -> Result<Response, ApiError> {
    auditor_image(&state, &method, &uri, &headers, &path, FrameImage::Reported).await
}

/// `GET /api/v1/audit/frames?reason=&upload=&undecided=&after=UPLOAD:FRAME&limit=`: refused
/// frames, oldest first, each with its reason, scores, position, the link to its blurred copy
/// and its current decision (`undecided=true`: only those no auditor decided yet).
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
        undecided_only: q.undecided.unwrap_or(false),
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
                "decision": f.decision,
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
    Path(path): Path<(String, String)>,
) -> Result<Response, ApiError> {
    auditor_image(&state, &method, &uri, &headers, &path, FrameImage::Review).await
}

/// A frame's image for an auditor (or an admin) only.
async fn auditor_image(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    (upload, frame): &(String, String),
    which: FrameImage,
) -> Result<Response, ApiError> {
    auditor(state, method, uri, headers).await?;
    let (upload, frame) = frame_id(upload, frame)?;
    image(state, upload, frame, which).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuditParams {
    reason: Option<String>,
    upload: Option<i64>,
    undecided: Option<bool>,
    after: Option<String>,
    limit: Option<i64>,
}

/// Longest note an auditor may leave with a decision, in characters.
pub(crate) const MAX_NOTE_CHARS: usize = 1000;

/// A decision as an auditor sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionRequest {
    decision: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// `POST /api/v1/audit/frames/{upload}/{frame}/decision` (auditors, admins), with
/// `{"decision": "approve" | "reject", "note": "..."}`: records the decision and applies it —
/// approving publishes the refused frame from its blurred copy (409 if it has none), rejecting
/// takes an approved frame down again. Answers the decision as the log keeps it.
pub(crate) async fn decide(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((upload, frame)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auditor(&state, &method, &uri, &headers).await?;
    let (upload_id, frame) = frame_id(&upload, &frame)?;
    let req: DecisionRequest =
        body::json(&body::within(body, body::MAX_JSON_BYTES)?, "invalid_json")?;
    let decision: Decision = required(
        req.decision,
        "invalid_decision",
        "decision",
        "decision is missing: approve or reject",
    )?;
    let note = checked_note(req.note)?;
    let decided = state
        .store
        .decide_frame(
            &NewFrameDecision {
                upload_id,
                frame,
                decision,
                note,
                auditor: caller.name(),
                auditor_key_id: caller.key_id(),
            },
            Utc::now(),
        )
        .await?;
    Ok(Json(decided).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReportRequest {
    reason: Option<String>,
    note: Option<String>,
}

/// `POST /api/v1/frames/{upload}/{frame}/report` (anyone; rate-limited like the public reads),
/// with `{"reason": "face" | "plate" | "other", "note": "..."}`: records the report and hides
/// the frame at once, until an auditor decides (202 with the report; 404 if there is no such
/// published frame).
pub(crate) async fn report(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Path((upload, frame)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let (upload_id, frame) = frame_id(&upload, &frame)?;
    let req: ReportRequest =
        body::json(&body::within(body, body::MAX_JSON_BYTES)?, "invalid_json")?;
    let reason: ReportReason = required(
        req.reason,
        "invalid_reason",
        "reason",
        "reason is missing: face, plate or other",
    )?;
    let note = checked_note(req.note)?;
    // A key, where one is presented, names the reporter; anyone else is anonymous.
    let reporter = match auth::key_caller(state.store.as_ref(), &headers, &uri).await? {
        Some(caller) => caller
            .key_id()
            .map_or_else(|| caller.name(), |id| format!("key:{id}")),
        None => "anonymous".to_owned(),
    };
    let report = state
        .store
        .report_frame(
            &NewFrameReport {
                upload_id,
                frame,
                reason,
                note,
                reporter,
            },
            Utc::now(),
        )
        .await?;
    metrics::counter!("covermap_frame_reports_total", "reason" => reason.as_str()).increment(1);
    Ok((axum::http::StatusCode::ACCEPTED, Json(report)).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReportsParams {
    open: Option<bool>,
    limit: Option<i64>,
}

/// `GET /api/v1/audit/reports?open=true&limit=` (auditors, admins): reports of published
/// frames, newest first (`open=true`: only those no auditor decided yet).
pub(crate) async fn reports(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<ReportsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    auditor(&state, &method, &uri, &headers).await?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = checked_limit(q.limit, 100, 1000)?;
    let reports = state
        .store
        .frame_reports(q.open.unwrap_or(false), limit)
        .await?;
    Ok(Json(json!({"reports": reports})).into_response())
}

/// A decision on a report as an auditor sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportDecisionRequest {
    decision: Option<String>,
    /// With `blur` only: `[{x1, y1, x2, y2}, …]` in the published frame's pixels. Read as it
    /// came, so that a bad box is answered as `invalid_boxes`, not as unreadable JSON.
    #[serde(default)]
    boxes: Option<serde_json::Value>,
}

/// `POST /api/v1/audit/reports/{id}/decision` (auditors, admins), with
/// `{"decision": "keep" | "remove" | "blur", "boxes": [...]}`: keeping shows the frame again
/// (unless another report of it is still open); removing takes it down for good and deletes its
/// published derivative; blurring blurs the boxes marked on it (`blur` only, at least one), and
/// shows the blurred copy instead. Answers the report as decided (400 `invalid_boxes` naming
/// what is wrong with them, 404 no such report, 409 decided already).
pub(crate) async fn decide_report(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auditor(&state, &method, &uri, &headers).await?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_request("invalid_id", format!("report id {id:?} is not a number"))
    })?;
    let req: ReportDecisionRequest =
        body::json(&body::within(body, body::MAX_JSON_BYTES)?, "invalid_json")?;
    let decision: ReportDecision = required(
        req.decision,
        "invalid_decision",
        "decision",
        "decision is missing: keep, remove or blur",
    )?;
    if decision == ReportDecision::Blur {
        let boxes = blur_boxes(req.boxes)?;
        let report = covermap_pipeline::reports::blur_reported_frame(
            state.store.as_ref(),
            &state.blobs,
            id,
            boxes,
            &caller.name(),
            Utc::now(),
        )
        .await?;
        return Ok(Json(report).into_response());
    }
    if req.boxes.is_some() {
        return Err(ApiError::bad_field(
            "invalid_boxes",
            "boxes",
            "boxes go with decision blur only",
        ));
    }
    let (report, derivative) = state
        .store
        .decide_report(id, decision, &caller.name(), Utc::now())
        .await?;
    // The decision is recorded first: a blob left behind by a failed delete is only bytes no
    // row names, never a frame served.
    if let Some(key) = derivative
        && let Err(e) = state.blobs.delete(&key).await
    {
        tracing::warn!(report = id, key, error = %e, "a removed frame's derivative was not deleted");
    }
    Ok(Json(report).into_response())
}

/// The boxes a blur decision must carry: a list of `{x1, y1, x2, y2}`, each well formed, at
/// least one and at most [`BlurBox::MAX_PER_FRAME`]; whether they lie inside the frame is
/// checked against the frame.
fn blur_boxes(boxes: Option<serde_json::Value>) -> Result<Vec<BlurBox>, ApiError> {
    let bad = |message: String| ApiError::bad_field("invalid_boxes", "boxes", message);
    let boxes = boxes.ok_or_else(|| {
        bad("boxes are missing: mark at least one box {x1, y1, x2, y2} to blur".into())
    })?;
    let boxes: Vec<BlurBox> =
        serde_json::from_value(boxes).map_err(|e| bad(format!("boxes: {e}")))?;
    BlurBox::check_count(&boxes).map_err(|e| bad(e.reason))?;
    Ok(boxes)
}

/// A word of one of the API's vocabularies that the request must carry in `field`.
fn required<T>(
    value: Option<String>,
    code: &'static str,
    field: &'static str,
    missing: &'static str,
) -> Result<T, ApiError>
where
    T: std::str::FromStr<Err = covermap_domain::InvalidValue>,
{
    value
        .ok_or_else(|| ApiError::bad_field(code, field, missing))?
        .parse()
        .map_err(|e: covermap_domain::InvalidValue| ApiError::bad_field(code, field, e.reason))
}

/// A note: at most [`MAX_NOTE_CHARS`] characters, no control characters but line breaks and
/// tabs; blank is none.
fn checked_note(note: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(note) = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::bad_field(
            "invalid_note",
            "note",
            format!("note is longer than {MAX_NOTE_CHARS} characters"),
        ));
    }
    if note
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::bad_field(
            "invalid_note",
            "note",
            "note holds control characters",
        ));
    }
    Ok(Some(note))
}

#[derive(Debug, Deserialize)]
pub(crate) struct LogParams {
    before: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/v1/audit/log?before=ID&limit=` (auditors, admins): every decision, newest first;
/// `next` is the `before` of the next page.
pub(crate) async fn audit_log(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<LogParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    auditor(&state, &method, &uri, &headers).await?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = checked_limit(q.limit, 100, 1000)?;
    let decisions = state.store.frame_decisions(limit, q.before).await?;
    let next = (decisions.len() as i64 == limit)
        .then(|| decisions.last().map(|d| d.id))
        .flatten();
    Ok(Json(json!({"decisions": decisions, "next": next})).into_response())
}

/// The caller, who must be an auditor (or an admin).
async fn auditor(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<auth::Caller, ApiError> {
    auth::reader(state.store.as_ref(), method, uri, headers, &[Role::Auditor]).await
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
                FrameImage::Reported => "published or reported",
            }
        )));
    };
    let bytes = state.blobs.get(&key).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            // Content-addressed, the bytes never change; but a frame may be reported and
            // hidden, so caches keep it for five minutes, not a day.
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        bytes,
    )
        .into_response())
}
