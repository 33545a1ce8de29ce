//! Erasure: a contributor asks for their uploads to be deleted — one (`DELETE
//! /api/v1/uploads/{id}`) or all of them (`POST /api/v1/erasures`) — authenticated as
//! themselves: a request signed by one of their devices, or their contributor's device key. An
//! admin may ask on their behalf. Originals and derivatives leave the object store, the rows
//! that say where they drove go, and the reward ledger keeps its history (see
//! `covermap_pipeline::erasure`). Asking twice is harmless; an upload that is not the caller's
//! is `404`, as if it did not exist.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use covermap_domain::{DeviceId, Role};
use covermap_pipeline::erasure::{self, Subject};
use covermap_store::UploadErasure;
use serde::Deserialize;
use serde_json::json;

use crate::api::{bad_query, checked_limit};
use crate::body::{self, Body};
use crate::{ApiError, AppState, auth};

/// `DELETE /api/v1/uploads/{id}` (the upload's contributor — a device of theirs signing the
/// request, or their device key — or the device or key that sent it; admins): erases the
/// upload. `200` with the erasure's record, or `202` while some of its blobs are still to delete
/// (asking again finishes it); the same record when asked again. `404` for an upload that is not
/// the caller's, or none.
pub(crate) async fn erase_upload(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let raw = body::within(body, body::MAX_JSON_BYTES)?;
    let caller = eraser(&state, &method, &uri, &headers, &raw).await?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_request("invalid_id", format!("upload id {id:?} is not a number"))
    })?;
    match state.store.upload(id).await? {
        Some(upload) if caller.may_erase(&upload) => {}
        _ => return Err(ApiError::NotFound(format!("no upload {id}"))),
    }
    let erasure = erasure::erase_upload(
        state.store.as_ref(),
        &state.blobs,
        id,
        &caller.name(),
        Utc::now(),
    )
    .await?;
    let status = if erasure.completed_at.is_some() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(erasure)).into_response())
}

/// Whose uploads to erase, as an admin names them (nobody else names any).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErasureRequest {
    contributor: Option<String>,
    device: Option<String>,
}

/// `POST /api/v1/erasures` (a contributor's signed device or device key: all of theirs; an
/// admin, with `{"contributor": NAME}` or `{"device": ID}`: all of that contributor's or
/// device's): erases every upload of theirs not erased yet, and finishes earlier erasures with
/// blobs still to delete. `200 {subject, erasures}` (`202` while blobs are still to delete),
/// each erasure as `DELETE /api/v1/uploads/{id}` answers it.
pub(crate) async fn erase_all(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let raw = body::within(body, body::MAX_JSON_BYTES)?;
    let caller = eraser(&state, &method, &uri, &headers, &raw).await?;
    let asked: ErasureRequest = if raw.iter().all(u8::is_ascii_whitespace) {
        ErasureRequest::default()
    } else {
        body::json(&raw, "invalid_json")?
    };
    let subject = subject(&caller, asked)?;
    let erasures = erasure::erase_all(
        state.store.as_ref(),
        &state.blobs,
        &subject,
        &caller.name(),
        Utc::now(),
    )
    .await?;
    let status = if erasures.iter().all(|e| e.completed_at.is_some()) {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(json!({"subject": subject_json(&subject), "erasures": erasures})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErasuresQuery {
    limit: Option<i64>,
}

/// `GET /api/v1/erasures?limit=N`: the erasures of the caller's uploads (a contributor's
/// device or device key), or every erasure (admins), newest first.
pub(crate) async fn erasures(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<ErasuresQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let caller = eraser(&state, &method, &uri, &headers, b"").await?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = checked_limit(q.limit, 100, 1000)?;
    // An admin's are everyone's.
    let filter = caller.own_uploads().map(|s| s.filter()).unwrap_or_default();
    let erasures: Vec<UploadErasure> = state.store.erasures(&filter, false, limit).await?;
    Ok(Json(json!({"erasures": erasures})).into_response())
}

/// The caller of an erasure: a signed device or a device key (their own uploads), or an admin.
async fn eraser(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<auth::Caller, ApiError> {
    let caller = auth::caller(state.store.as_ref(), method, uri, headers, body, Utc::now()).await?;
    caller.require(&[Role::Device])?;
    Ok(caller)
}

/// Whose uploads an erasure of all takes: the caller's own, or, for an admin, whose it names
/// (exactly one of a contributor and a device).
fn subject(caller: &auth::Caller, asked: ErasureRequest) -> Result<Subject, ApiError> {
    let named = match (asked.contributor, asked.device) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_field(
                "invalid_subject",
                "device",
                "name a contributor or a device, not both",
            ));
        }
        (Some(c), None) => Some(Subject::Contributor(
            crate::checked_contributor(Some(c))?.unwrap_or_default(),
        )),
        (None, Some(d)) => {
            Some(Subject::Device(d.parse::<DeviceId>().map_err(|e| {
                ApiError::bad_field("invalid_subject", "device", e.reason)
            })?))
        }
        (None, None) => None,
    };
    match (caller.own_uploads(), named) {
        // An admin names whose; a contributor may name themselves.
        (None, Some(s)) => Ok(s),
        (None, None) => Err(ApiError::bad_field(
            "invalid_subject",
            "contributor",
            "an admin names whose uploads to erase: {\"contributor\": NAME} or {\"device\": ID}",
        )),
        (Some(own), None) => Ok(own),
        (Some(own), Some(s)) if s == own => Ok(own),
        // Only an admin erases someone else's uploads.
        (Some(_), Some(_)) => Err(covermap_ingest::access::AccessError::Forbidden {
            role: Role::Device,
            needed: Role::Admin.as_str().to_owned(),
        }
        .into()),
    }
}

fn subject_json(subject: &Subject) -> serde_json::Value {
    match subject {
        Subject::Contributor(c) => json!({"contributor": c}),
        Subject::Device(d) => json!({"device": d}),
    }
}
