//! Keys and devices: admins issue and revoke API keys; device keys register the ed25519 public
//! keys their devices sign uploads with, list their contributor's devices and revoke them; a
//! device replaces its own key with a request signed by the current one.
//!
//! A public key is registered once, ever, and answers about devices never tell one owner
//! anything about another's: a device id or key that is taken is a bare `409`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use covermap_domain::{DeviceId, Role};
use covermap_ingest::access::{self, AccessError};
use covermap_store::{ApiKeyRecord, DeviceFilter, DeviceRecord, Registration, Rotation};
use serde::Deserialize;
use serde_json::json;

use crate::api::{ListQuery, bad_query, checked_limit};
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
    /// Requests per UTC day: consumer keys must have one, other keys none.
    quota_per_day: Option<u64>,
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
    let quota = access::checked_quota(role, asked.quota_per_day)
        .map_err(|e| ApiError::bad_field("invalid_quota", "quota_per_day", e))?;
    let mut issued = access::issue_key(role, contributor);
    issued.record.quota_per_day = quota;
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

/// `GET /api/v1/devices?limit=N` (device or admin key): the devices the key may manage — its
/// contributor's (a key bound to none: those it registered; admins: all), revoked ones too.
pub(crate) async fn list_devices(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = key_with_role(&state, &headers, &uri, &[Role::Device]).await?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = checked_limit(q.limit, 1000, 10_000)?;
    let devices = state.store.devices(&devices_of(&key), limit).await?;
    Ok(Json(json!({ "devices": devices })).into_response())
}

/// The devices a device or admin key manages: an admin's all; a device key's those of its
/// contributor, or, for a key bound to none, those it registered.
fn devices_of(key: &ApiKeyRecord) -> DeviceFilter {
    match (&key.contributor, key.role) {
        (_, Role::Admin) => DeviceFilter::default(),
        (Some(c), _) => DeviceFilter {
            contributor: Some(c.clone()),
            registered_by: None,
        },
        (None, _) => DeviceFilter {
            contributor: None,
            registered_by: Some(key.id),
        },
    }
}

/// Whether `device` is one of [`devices_of`] `key`.
fn manages(key: &ApiKeyRecord, device: &DeviceRecord) -> bool {
    let filter = devices_of(key);
    filter
        .contributor
        .as_ref()
        .is_none_or(|c| device.contributor.as_ref() == Some(c))
        && filter
            .registered_by
            .is_none_or(|id| device.registered_by == id)
}

/// `DELETE /api/v1/devices/{device}` (a device key of its owner, or an admin key): revokes the
/// device at once — its signed requests get `401 revoked_device` — and retires its key for
/// ever. A device the key does not manage is `404`, as if it did not exist.
pub(crate) async fn revoke_device(
    State(state): State<AppState>,
    Path(device): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let key = key_with_role(&state, &headers, &uri, &[Role::Device]).await?;
    let not_found = || ApiError::NotFound(format!("no active device {device}"));
    let id: DeviceId = device.parse().map_err(|_| not_found())?;
    match state.store.device(&id).await? {
        Some(record) if manages(&key, &record) => {}
        _ => return Err(not_found()),
    }
    if state.store.revoke_device(&id, Utc::now()).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDeviceKey {
    public_key: String,
}

/// `POST /api/v1/devices/{device}/key`, signed by the device with its current key, body
/// `{"public_key": "<64 hex>"}`: the device signs with the new key from now on, and the old
/// key is retired for ever (requests signed with it get `401`). The new key must never have
/// been any device's (`409 public_key_taken`).
pub(crate) async fn rotate_device_key(
    State(state): State<AppState>,
    Path(device): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let raw = body::within(body, MAX_JSON_BYTES)?;
    let now = Utc::now();
    let caller =
        auth::signed_device(state.store.as_ref(), &method, &uri, &headers, &raw, now).await?;
    let Caller::Device(current) = caller else {
        return Err(AccessError::Unsigned(access::SIGNATURE_HEADER).into());
    };
    // A device replaces its own key only: another device's id in the path is not found.
    if current.device.as_str() != device {
        return Err(ApiError::NotFound(format!("no device {device} of yours")));
    }
    let asked: NewDeviceKey = body::json(&raw, "invalid_json")?;
    let new_key = checked_public_key(&asked.public_key)?;
    match state
        .store
        .rotate_device_key(&current.device, &current.public_key, &new_key, now)
        .await?
    {
        Rotation::Rotated(record) => Ok(Json(record).into_response()),
        Rotation::KeyTaken => Err(key_taken()),
        Rotation::Superseded => Err(ApiError::Conflict {
            code: "key_changed",
            message: "the device's key changed (or the device was revoked) while this rotation \
                      was on its way; sign again with the current key"
                .into(),
            extra: json!({}),
        }),
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
