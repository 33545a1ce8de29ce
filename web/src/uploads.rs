//! The upload API: tracks, camera drives (whole or in resumable parts), radio files and
//! Ichnaea-compatible geosubmit. Every handler checks who is calling, unpacks the body within
//! its limits, and hands it to `covermap_pipeline::accept_upload`; a 2xx means the bytes are in
//! the object store and the upload's row and job are committed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use covermap_domain::{Role, UploadKind};
use covermap_ingest::access::AccessError;
use covermap_ingest::{IngestError, gunzip_bounded};
use covermap_pipeline::Accepted;
use covermap_store::{SessionPart, StoreError, UploadSession};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::{self, Caller};
use crate::body::{self, Body};
use crate::{ApiError, AppState};

/// The body as sent, inflated if it came gzip-encoded (within the upload limit and a ratio).
fn decoded(state: &AppState, headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    let encoding = headers.get(header::CONTENT_ENCODING).map(|e| {
        String::from_utf8_lossy(e.as_bytes())
            .trim()
            .to_ascii_lowercase()
    });
    match encoding.as_deref() {
        None | Some("identity" | "") => Ok(body),
        Some("gzip" | "x-gzip") => Ok(Bytes::from(gunzip_bounded(
            &body,
            state.max_upload_bytes as u64,
            MAX_GZIP_RATIO,
        )?)),
        Some(other) => Err(ApiError::UnsupportedMedia(format!(
            "content-encoding {other:?} is not accepted; send gzip or no encoding"
        ))),
    }
}

/// Geosubmit JSON compresses 10–20× with gzip; past this a body is a decompression bomb.
const MAX_GZIP_RATIO: u64 = 100;

/// Accepts an upload; drives (read whole into memory to be checked) wait for a slot.
async fn accept(
    state: &AppState,
    caller: &Caller,
    kind: UploadKind,
    bytes: Bytes,
) -> Result<Accepted, ApiError> {
    let _slot = match kind {
        UploadKind::Drive => Some(state.drive_slot().await),
        _ => None,
    };
    accept_now(state, caller, kind, bytes).await
}

async fn accept_now(
    state: &AppState,
    caller: &Caller,
    kind: UploadKind,
    bytes: Bytes,
) -> Result<Accepted, ApiError> {
    // Run to the end even if the client goes away: the bytes are in hand, and a request
    // dropped half-way would leave a blob in the object store that no upload names. A client
    // that retries finds the upload committed (a duplicate, the same receipt).
    let (store, blobs, uploader, rules) = (
        state.store.clone(),
        state.blobs.clone(),
        caller.uploader(),
        state.rules,
    );
    let accepted = tokio::spawn(async move {
        covermap_pipeline::accept_upload(
            store.as_ref(),
            &blobs,
            uploader,
            kind,
            bytes,
            Utc::now(),
            &rules,
        )
        .await
    })
    .await
    .map_err(|e| {
        ApiError::Store(covermap_store::StoreError::Corrupt(format!(
            "accepting an upload stopped: {e}"
        )))
    })??;
    if !accepted.receipt.duplicate {
        state.jobs_waiting.notify_waiters();
    }
    Ok(accepted)
}

fn receipt_response(accepted: &Accepted) -> Response {
    let status = if accepted.receipt.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let location = format!("/api/v1/uploads/{}", accepted.receipt.upload_id);
    let mut body = serde_json::to_value(accepted).unwrap_or_default();
    body["status_url"] = json!(location);
    (status, [(header::LOCATION, location)], Json(body)).into_response()
}

/// Who may send `kind`: tracks and drives come from devices that sign them; radio files from
/// signing devices or from apps holding a device key.
async fn uploader_for(
    state: &AppState,
    kind: UploadKind,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<Caller, ApiError> {
    let now = Utc::now();
    let store = state.store.as_ref();
    let caller = if kind.is_radio() {
        auth::caller(store, method, uri, headers, raw, now).await?
    } else {
        auth::signed_device(store, method, uri, headers, raw, now).await?
    };
    caller.require(&[Role::Device])?;
    Ok(caller)
}

/// A request's body, read within its limit, and its caller, checked for `kind`.
async fn received(
    state: &AppState,
    kind: UploadKind,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Caller, Bytes), ApiError> {
    let raw = body::within(body, state.max_upload_bytes)?;
    let caller = uploader_for(state, kind, method, uri, headers, &raw).await?;
    Ok((caller, raw))
}

/// `POST /api/v1/uploads/{kind}`: a track (gpx, nmea), a drive, or a radio file (wigle,
/// opencellid, geosubmit_v2, geosubmit_v1).
pub(crate) async fn upload(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind: UploadKind = kind
        .parse()
        .map_err(|e: covermap_domain::InvalidValue| ApiError::NotFound(e.to_string()))?;
    let (caller, raw) = received(&state, kind, &method, &uri, &headers, body).await?;
    let bytes = decoded(&state, &headers, raw)?;
    Ok(receipt_response(
        &accept(&state, &caller, kind, bytes).await?,
    ))
}

/// `POST /api/v1/drives`: a camera drive as one zip, signed.
pub(crate) async fn drive(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = UploadKind::Drive;
    let (caller, raw) = received(&state, kind, &method, &uri, &headers, body).await?;
    Ok(receipt_response(&accept(&state, &caller, kind, raw).await?))
}

/// `POST /v2/geosubmit` and `/v1/geosubmit`, as Ichnaea answers them: `200 {}` once stored.
pub(crate) async fn geosubmit(
    state: AppState,
    kind: UploadKind,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (caller, raw) = received(&state, kind, &method, &uri, &headers, body).await?;
    let bytes = decoded(&state, &headers, raw)?;
    accept(&state, &caller, kind, bytes).await?;
    Ok((StatusCode::OK, Json(json!({}))).into_response())
}

pub(crate) async fn geosubmit_v2(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    geosubmit(state, UploadKind::GeosubmitV2, method, uri, headers, body).await
}

pub(crate) async fn geosubmit_v1(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    geosubmit(state, UploadKind::GeosubmitV1, method, uri, headers, body).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSession {
    size_bytes: i64,
    sha256: String,
}

/// `POST /api/v1/drives/sessions`: opens a resumable drive upload of `size_bytes` whose whole
/// will have `sha256`. Parts then go to `PUT /api/v1/drives/sessions/{id}` with `Upload-Offset`.
pub(crate) async fn open_session(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (caller, raw) = received(&state, UploadKind::Drive, &method, &uri, &headers, body).await?;
    let Caller::Device(device) = &caller else {
        return Err(AccessError::Unsigned(covermap_ingest::access::SIGNATURE_HEADER).into());
    };
    let asked: NewSession = body::json(&raw, "invalid_json")?;
    if asked.size_bytes <= 0 {
        return Err(ApiError::bad_field(
            "invalid_size",
            "size_bytes",
            "size_bytes must be positive",
        ));
    }
    if asked.size_bytes as u64 > state.max_drive_bytes {
        return Err(IngestError::TooLarge {
            what: "the drive".into(),
            limit: state.max_drive_bytes,
        }
        .into());
    }
    let sha = asked.sha256.to_ascii_lowercase();
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_field(
            "invalid_sha256",
            "sha256",
            "sha256 must be 64 hex digits",
        ));
    }
    let now = Utc::now();
    let session = UploadSession {
        id: uuid::Uuid::new_v4().simple().to_string(),
        device: device.device.clone(),
        kind: UploadKind::Drive,
        size_bytes: asked.size_bytes,
        sha256: sha,
        received_bytes: 0,
        created_at: now,
        updated_at: now,
    };
    // Sessions left for a day are dropped with their parts; a device keeps a few open at most.
    let mut open = 0;
    for old in state.store.device_sessions(&session.device).await? {
        if old.updated_at < now - chrono::Duration::hours(SESSION_TTL_HOURS) {
            close_session(&state, &old.id).await?;
        } else {
            open += 1;
        }
    }
    if open >= MAX_OPEN_SESSIONS {
        return Err(ApiError::Conflict {
            code: "too_many_sessions",
            message: format!(
                "this device has {open} upload sessions open; finish one (or wait \
                 {SESSION_TTL_HOURS} h for it to expire) before opening another"
            ),
            extra: json!({}),
        });
    }
    state.store.open_session(&session).await?;
    let url = format!("/api/v1/drives/sessions/{}", session.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, url.clone())],
        Json(
            json!({"session": session.id, "offset": 0, "size_bytes": session.size_bytes,
                    "upload_url": url}),
        ),
    )
        .into_response())
}

async fn own_session(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<UploadSession, ApiError> {
    let session = state.store.session(id).await?;
    match (session, caller) {
        (Some(s), Caller::Device(d)) if s.device == d.device => Ok(s),
        _ => Err(ApiError::NotFound(format!("no upload session {id}"))),
    }
}

/// `GET /api/v1/drives/sessions/{id}` (signed): where the session stands, to resume from.
pub(crate) async fn session_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = uploader_for(&state, UploadKind::Drive, &method, &uri, &headers, b"").await?;
    let s = own_session(&state, &caller, &id).await?;
    Ok(
        Json(json!({"session": s.id, "offset": s.received_bytes, "size_bytes": s.size_bytes}))
            .into_response(),
    )
}

/// Sessions untouched this long are dropped: by [`run_session_sweeper`], and at once when their
/// device opens a new one.
const SESSION_TTL_HOURS: i64 = 24;

/// Drops every upload session untouched for [`SESSION_TTL_HOURS`] at `now`, with its staged
/// parts; how many it dropped.
pub async fn sweep_sessions(state: &AppState, now: DateTime<Utc>) -> Result<usize, ApiError> {
    const BATCH: i64 = 500;
    let before = now - chrono::Duration::hours(SESSION_TTL_HOURS);
    let mut dropped = 0;
    loop {
        let stale = state.store.stale_sessions(before, BATCH).await?;
        for s in &stale {
            close_session(state, &s.id).await?;
        }
        dropped += stale.len();
        if (stale.len() as i64) < BATCH {
            return Ok(dropped);
        }
    }
}

/// Sweeps abandoned upload sessions now and every `every` until `stop` (a device that never
/// comes back would otherwise leave its staged parts for good).
pub async fn run_session_sweeper(
    state: AppState,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match sweep_sessions(&state, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("covermap_sessions_swept_total").increment(n as u64);
                tracing::info!(sessions = n, "dropped upload sessions untouched for a day");
            }
            Err(e) => tracing::warn!(error = %e, "sweeping upload sessions failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
/// Sessions one device may have open at once.
const MAX_OPEN_SESSIONS: usize = 4;

/// Deletes a session and its staged parts.
async fn close_session(state: &AppState, id: &str) -> Result<(), ApiError> {
    let parts = state.store.session_parts(id).await?;
    state.store.delete_session(id).await?;
    let keys: Vec<String> = parts.into_iter().map(|p| p.blob_key).collect();
    state.blobs.delete_staged(&keys).await?;
    Ok(())
}

/// `PUT /api/v1/drives/sessions/{id}` (signed) with `Upload-Offset: N`: the part of the drive
/// that starts at N. The last part assembles the drive, checks its sha256 and accepts it. A PUT
/// to a session that has all its bytes (its last answer was lost, or the server stopped while
/// assembling) assembles it again.
pub(crate) async fn session_part(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (caller, raw) = received(&state, UploadKind::Drive, &method, &uri, &headers, body).await?;
    let session = own_session(&state, &caller, &id).await?;
    if session.received_bytes == session.size_bytes {
        return finish_session(&state, &caller, &session).await;
    }
    let offset: i64 = headers
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            ApiError::bad_field(
                "missing_offset",
                "upload-offset",
                "the Upload-Offset header (whole bytes) is required",
            )
        })?;
    if raw.is_empty() {
        return Err(ApiError::bad_request(
            "empty_part",
            "a part must hold bytes",
        ));
    }
    let mismatch = |message: String, at: Option<i64>| ApiError::Conflict {
        code: "offset_mismatch",
        message,
        extra: json!({ "offset": at }),
    };
    if offset != session.received_bytes {
        return Err(mismatch(
            format!(
                "the session stands at offset {}, not {offset}",
                session.received_bytes
            ),
            Some(session.received_bytes),
        ));
    }
    let part = SessionPart {
        offset,
        size: raw.len() as i64,
        // A key of its own, so a part racing another for the same offset never overwrites it.
        blob_key: state
            .blobs
            .put_staged(&id, offset, uuid::Uuid::new_v4().simple().to_string(), raw)
            .await?,
    };
    let now_at = match state.store.add_session_part(&id, &part, Utc::now()).await {
        Ok(n) => n,
        Err(StoreError::Conflict(message)) => {
            state.blobs.delete_staged(&[part.blob_key]).await?;
            let current = state.store.session(&id).await?;
            return Err(mismatch(message, current.map(|s| s.received_bytes)));
        }
        Err(e) => return Err(e.into()),
    };
    if now_at < session.size_bytes {
        return Ok(Json(
            json!({"session": id, "offset": now_at, "size_bytes": session.size_bytes}),
        )
        .into_response());
    }
    let session = UploadSession {
        received_bytes: now_at,
        ..session
    };
    finish_session(&state, &caller, &session).await
}

/// Assembles a full session, checks it against its declared sha256 and accepts it as a drive.
/// Whatever the verdict on the drive, the session and its parts are then removed; only a
/// storage failure keeps them, for a later PUT to finish.
async fn finish_session(
    state: &AppState,
    caller: &Caller,
    session: &UploadSession,
) -> Result<Response, ApiError> {
    let _slot = state.drive_slot().await;
    let mut whole = Vec::with_capacity(session.size_bytes as usize);
    for p in state.store.session_parts(&session.id).await? {
        whole.extend_from_slice(&state.blobs.get_staged(&p.blob_key).await?);
    }
    let sha = hex::encode(Sha256::digest(&whole));
    if whole.len() as i64 != session.size_bytes || sha != session.sha256 {
        close_session(state, &session.id).await?;
        return Err(ApiError::bad_field(
            "checksum_mismatch",
            "sha256",
            format!(
                "the assembled drive has sha256 {sha}, not the {} the session declared; \
                 the session is closed, open a new one",
                session.sha256
            ),
        ));
    }
    let result = accept_now(state, caller, UploadKind::Drive, Bytes::from(whole)).await;
    if !matches!(result, Err(ApiError::Store(_))) {
        close_session(state, &session.id).await?;
    }
    Ok(receipt_response(&result?))
}
