//! Keys and devices: admins issue and revoke API keys; device keys register the ed25519 public
//! keys their devices sign uploads with.
//!
//! A public key is registered once, ever, and answers about devices never tell one owner
//! anything about another's: a device id or key that is taken is a bare `409`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use covermap_domain::{DeviceId, Role};
use covermap_ingest::access::{self, AccessError};
use covermap_store::{DeviceRecord, Registration};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{self, Caller};
use crate::body::{self, Body, MAX_JSON_BYTES};
use crate::{ApiError, AppState};

/// The caller's key, which must admit one of `roles`.
pub(crate) async fn key_with_role(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    roles: &[Role],
) -> Result<covermap_store::ApiKeyRecord, ApiError> {
    match auth::key_caller(state.store.as_ref(), headers, uri).await? {
        Some(Caller::Key(k)) => {
            access::check_role(k.role, roles)?;
            Ok(k)
        }
        _ => Err(AccessError::NoKey.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    role: String,
    contributor: Option<String>,
}

/// `POST /api/v1/keys` (admin): issues a key; the answer is the only time it is shown.
pub(crate) async fn create_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    key_with_role(&state, &headers, &uri, &[Role::Admin]).await?;
    let asked: NewKey = body::json(&body::within(body, MAX_JSON_BYTES)?, "invalid_json")?;
    let role: Role = asked
        .role
        .parse()
        .map_err(|e: covermap_domain::InvalidValue| {
            ApiError::bad_field("invalid_role", "role", e.reason)
        })?;
    let contributor = checked_contributor(asked.contributor)?;
    let issued = access::issue_key(role, contributor);
    let record = state
        .store
        .create_api_key(&issued.record, Utc::now())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"key": issued.key, "record": record})),
    )
        .into_response())
}

/// A contributor name: 1 to 64 printable characters.
pub fn checked_contributor(c: Option<String>) -> Result<Option<String>, ApiError> {
    match c {
        Some(c) if c.is_empty() || c.len() > 64 || c.chars().any(char::is_control) => {
            Err(ApiError::bad_field(
                "invalid_contributor",
                "contributor",
                "a contributor is 1 to 64 printable characters",
            ))
        }
        other => Ok(other),
    }
}

/// `GET /api/v1/keys` (admin): every key, without the secrets.
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    key_with_role(&state, &headers, &uri, &[Role::Admin]).await?;
    Ok(Json(json!({"keys": state.store.api_keys().await?})).into_response())
}

/// `DELETE /api/v1/keys/{id}` (admin): revokes a key at once.
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    key_with_role(&state, &headers, &uri, &[Role::Admin]).await?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_request("invalid_id", format!("key id {id:?} is not a number"))
    })?;
    if state.store.revoke_api_key(id, Utc::now()).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!("no active key {id}")))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDevice {
    device: String,
    public_key: String,
}

/// A public key as sent: 64 hex digits of a valid, not weak, ed25519 key; kept in lowercase.
fn checked_public_key(public_key: &str) -> Result<String, ApiError> {
    let public_key = public_key.trim().to_ascii_lowercase();
    access::parse_public_key(&public_key)
        .map_err(|e| ApiError::bad_field("invalid_public_key", "public_key", e))?;
    Ok(public_key)
}

/// The `409` of a device id that is taken: the same whoever holds it, and naming no one.
fn device_taken(device: &DeviceId) -> ApiError {
    ApiError::Conflict {
        code: "device_registered",
        message: format!(
            "device id {device} is taken (or was revoked); register the device under another id"
        ),
        extra: json!({"field": "device"}),
    }
}

/// The `409` of a public key that is, or was, some device's.
fn key_taken() -> ApiError {
    ApiError::Conflict {
        code: "public_key_taken",
        message: "this public key is registered already; a key belongs to one device, once: \
                  generate a new key pair"
            .into(),
        extra: json!({"field": "public_key"}),
    }
}

/// `POST /api/v1/devices` (device or admin key): registers a device's ed25519 public key under
/// the key's contributor. The same registration again (same device, key and owner) is `200`
/// with the first one; a device id taken in any other way is `409 device_registered`, a public
/// key some device has or had `409 public_key_taken`.
pub(crate) async fn register_device(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let key = key_with_role(&state, &headers, &uri, &[Role::Device]).await?;
    let asked: NewDevice = body::json(&body::within(body, MAX_JSON_BYTES)?, "invalid_json")?;
    let device: DeviceId = asked
        .device
        .parse()
        .map_err(|e: covermap_domain::InvalidValue| {
            ApiError::bad_field("invalid_device", "device", e.reason)
        })?;
    if device.is_api_key_id() {
        return Err(ApiError::bad_field(
            "invalid_device",
            "device",
            "ids of the form key-N are kept for uploads sent with API keys",
        ));
    }
    let asked = DeviceRecord {
        device,
        public_key: checked_public_key(&asked.public_key)?,
        contributor: key.contributor.clone(),
        registered_by: key.id,
        registered_at: Utc::now(),
        rotated_at: None,
        revoked_at: None,
    };
    match state.store.register_device(&asked).await? {
        Registration::Created(record) => Ok((StatusCode::CREATED, Json(record)).into_response()),
        Registration::Existing(record) => Ok((StatusCode::OK, Json(record)).into_response()),
        Registration::DeviceTaken => Err(device_taken(&asked.device)),
        Registration::KeyTaken => Err(key_taken()),
    }
}

/// `GET /metrics` (admin): Prometheus text.
pub(crate) async fn metrics_guard(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    auth::reader(state.store.as_ref(), method, uri, headers, &[Role::Admin]).await?;
    Ok(())
}
