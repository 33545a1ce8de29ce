//! Who is calling: an API key (`Authorization: Bearer KEY`, `X-Api-Key: KEY`, or `?key=KEY` as
//! Ichnaea's clients send it), or a registered device that signed the request (see
//! `covermap_ingest::access`). Handlers name the roles they admit; this module answers who the
//! caller is and whether they may.

use std::cell::Cell;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use covermap_domain::{DeviceId, Role};
use covermap_ingest::Uploader;
use covermap_ingest::access::{
    self, AccessError, DEVICE_HEADER, MAX_CLOCK_SKEW_S, SIGNATURE_HEADER, SignatureScheme,
    SignedHeaders,
};
use covermap_pipeline::erasure::Subject;
use covermap_store::{ApiKeyRecord, DeviceRecord, Store, UploadFilter, UploadRecord};

use crate::ApiError;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    Key(ApiKeyRecord),
    Device(DeviceRecord),
}

impl Caller {
    /// Whether this caller may act as one of `roles`. A signed device acts as `device`.
    pub fn require(&self, roles: &[Role]) -> Result<(), AccessError> {
        match self {
            Caller::Key(k) => access::check_role(k.role, roles),
            Caller::Device(_) => access::check_role(Role::Device, roles),
        }
    }

    /// The API key's id, for records of who did what; `None` for a signed device.
    pub fn key_id(&self) -> Option<i64> {
        match self {
            Caller::Key(k) => Some(k.id),
            Caller::Device(_) => None,
        }
    }

    /// How records of what this caller did name it: a key's contributor, else `key:<id>`; a
    /// signed device's id.
    pub fn name(&self) -> String {
        match self {
            Caller::Key(k) => k
                .contributor
                .clone()
                .unwrap_or_else(|| format!("key:{}", k.id)),
            Caller::Device(d) => d.device.as_str().to_owned(),
        }
    }

    /// Who an upload sent by this caller belongs to.
    pub fn uploader(&self) -> Uploader {
        match self {
            Caller::Device(d) => Uploader {
                device: d.device.clone(),
                contributor: d.contributor.clone(),
                rewardable: d.contributor.is_some(),
            },
            Caller::Key(k) => Uploader {
                // Keys upload under a device id of their own: unsigned apps have no device key.
                device: key_device(k.id),
                contributor: k.contributor.clone(),
                rewardable: k.contributor.is_some(),
            },
        }
    }

    /// Whether this caller may read `upload`: auditors and admins read every upload; a device
    /// reads its own, and a device key the uploads of its contributor.
    pub fn may_read(&self, upload: &UploadRecord) -> bool {
        match self {
            Caller::Key(k) if matches!(k.role, Role::Admin | Role::Auditor) => true,
            Caller::Key(k) => {
                k.role == Role::Device
                    && (upload.device == key_device(k.id)
                        || (k.contributor.is_some() && upload.contributor == k.contributor))
            }
            Caller::Device(d) => upload.device == d.device,
        }
    }

    /// Whether this caller may erase `upload`: admins any upload; a contributor's own — a signed
    /// device or a device key bound to the upload's contributor, or the device (or key) that
    /// sent it. Auditors and planners erase nothing (they are refused by role before this).
    pub fn may_erase(&self, upload: &UploadRecord) -> bool {
        let theirs = |contributor: &Option<String>| {
            contributor.is_some() && upload.contributor == *contributor
        };
        match self {
            Caller::Key(k) if k.role == Role::Admin => true,
            Caller::Key(k) => {
                k.role == Role::Device
                    && (upload.device == key_device(k.id) || theirs(&k.contributor))
            }
            Caller::Device(d) => upload.device == d.device || theirs(&d.contributor),
        }
    }

    /// Whose uploads "all of mine" means for this caller: its contributor's, or, bound to none,
    /// its own device's. `None` for an admin, who names whose.
    pub fn own_uploads(&self) -> Option<Subject> {
        match self {
            Caller::Key(k) if k.role == Role::Admin => None,
            Caller::Key(k) => Some(match &k.contributor {
                Some(c) => Subject::Contributor(c.clone()),
                None => Subject::Device(key_device(k.id)),
            }),
            Caller::Device(d) => Some(match &d.contributor {
                Some(c) => Subject::Contributor(c.clone()),
                None => Subject::Device(d.device.clone()),
            }),
        }
    }

    /// Which uploads a listing shows this caller: all of them to auditors and admins; a
    /// device's own to a device; its contributor's (or its own) to a device key.
    pub fn list_filter(&self) -> Result<UploadFilter, AccessError> {
        match self {
            Caller::Key(k) if matches!(k.role, Role::Admin | Role::Auditor) => {
                Ok(UploadFilter::default())
            }
            Caller::Key(k) if k.role == Role::Device => Ok(match &k.contributor {
                Some(c) => UploadFilter {
                    contributor: Some(c.clone()),
                    ..UploadFilter::default()
                },
                None => UploadFilter {
                    device: Some(key_device(k.id)),
                    ..UploadFilter::default()
                },
            }),
            Caller::Device(d) => Ok(UploadFilter {
                device: Some(d.device.clone()),
                ..UploadFilter::default()
            }),
            other => other
                .require(&[Role::Device, Role::Auditor])
                .map(|()| UploadFilter::default()),
        }
    }
}

fn key_device(id: i64) -> DeviceId {
    DeviceId::for_api_key(id)
}

/// The API key a request carries, if any.
fn presented_key<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(k) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(k.trim().to_owned());
        }
    }
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim().to_owned());
    }
    uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "key")
            .map(|(_, v)| v.into_owned())
    })
}

/// Looks up the key a request carries; `None` if it carries none.
pub(crate) async fn key_caller(
    store: &dyn Store,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Option<Caller>, ApiError> {
    let Some(key) = presented_key(headers, uri) else {
        return Ok(None);
    };
    match store.api_key(&access::hash_key(&key)).await? {
        None => Err(AccessError::UnknownKey.into()),
        Some(k) if k.revoked_at.is_some() => Err(AccessError::RevokedKey.into()),
        Some(k) => Ok(Some(Caller::Key(k))),
    }
}

/// The caller of a read endpoint (no body), who must hold one of `roles` (admins always do).
pub(crate) async fn reader(
    store: &dyn Store,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    roles: &[Role],
) -> Result<Caller, ApiError> {
    let caller = caller(store, method, uri, headers, b"", Utc::now()).await?;
    caller.require(roles)?;
    Ok(caller)
}

/// The caller of a request with `body`: a signed device if it carries a signature, else the
/// holder of the key it carries. `Err(NoKey)` if it carries neither.
pub(crate) async fn caller(
    store: &dyn Store,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Caller, ApiError> {
    if headers.contains_key(SIGNATURE_HEADER) || headers.contains_key(DEVICE_HEADER) {
        return signed_device(store, method, uri, headers, body, now).await;
    }
    key_caller(store, headers, uri)
        .await?
        .ok_or_else(|| AccessError::NoKey.into())
}

/// A request that must be signed by a registered device.
pub(crate) async fn signed_device(
    store: &dyn Store,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Caller, ApiError> {
    let signed = SignedHeaders::read(|h| headers.get(h).and_then(|v| v.to_str().ok()))?;
    let device: DeviceId = signed
        .device
        .parse()
        .map_err(|_| AccessError::UnknownDevice(signed.device.clone()))?;
    let record = store
        .device(&device)
        .await?
        .ok_or_else(|| AccessError::UnknownDevice(signed.device.clone()))?;
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let scheme = signed.verify(
        &record.public_key,
        record.contributor.as_deref(),
        method.as_str(),
        path,
        body,
        now,
    )?;
    // A device is revoked itself, or with the key that registered it.
    if record.revoked_at.is_some()
        || store
            .api_key_by_id(record.registered_by)
            .await?
            .is_none_or(|k| k.revoked_at.is_some())
    {
        return Err(AccessError::RevokedDevice(signed.device.clone()).into());
    }
    // A signature is good from 300 s before its timestamp to 300 s after: its nonce must be
    // remembered longer than those 600 s (and the second its timestamp was rounded to).
    let fresh = store
        .claim_nonce(
            &device,
            &signed.nonce,
            now,
            now - Duration::seconds(2 * MAX_CLOCK_SKEW_S + 60),
        )
        .await?;
    if !fresh {
        return Err(AccessError::Replayed.into());
    }
    if scheme == SignatureScheme::V1 {
        metrics::counter!("covermap_v1_signatures_total").increment(1);
        // Outside `deprecated_signatures` (a handler called directly) there is nobody to tell.
        let _ = V1_SIGNED.try_with(|v1| v1.set(true));
    }
    Ok(Caller::Device(record))
}

tokio::task_local! {
    /// Set when the request being answered was signed with a deprecated v1 signature. The
    /// signature is checked deep inside whichever handler answers, after the body was read, so
    /// this is how the answer, whatever it is, gets to say so.
    static V1_SIGNED: Cell<bool>;
}

/// Middleware: answers to requests signed with a v1 signature carry `Deprecation: true`, so
/// device makers learn they must move to v2 before v1 is refused.
pub(crate) async fn deprecated_signatures(req: Request, next: Next) -> Response {
    let (v1, mut response) = V1_SIGNED
        .scope(Cell::new(false), async {
            let response = next.run(req).await;
            (V1_SIGNED.try_with(Cell::get).unwrap_or(false), response)
        })
        .await;
    if v1 {
        response
            .headers_mut()
            .insert("deprecation", HeaderValue::from_static("true"));
    }
    response
}
