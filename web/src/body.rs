//! Request bodies, read within their route's limit. Axum answers a body over the limit with a
//! plain-text 413 of its own when a handler extracts it directly; every handler here takes the
//! rejection instead and answers through [`ApiError`], so a body too large is
//! `413 too_large` with the JSON error body on every route, and an unreadable one `400`.

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// Largest body of the routes that take JSON (keys, devices, decisions, demand areas). The
/// router sets it for every route that sets no other; a demand area's polygon is the largest
/// such body in practice.
pub(crate) const MAX_JSON_BYTES: usize = 2 * 1024 * 1024;

/// A body as axum read it under the route's `DefaultBodyLimit`, or why it could not.
pub(crate) type Body = Result<Bytes, BytesRejection>;

/// The body, if it was read whole within `limit` (the limit the route was given).
pub(crate) fn within(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge { limit }
        } else {
            ApiError::bad_request("unreadable_body", rejection.body_text())
        }
    })
}

/// The body as JSON of `T`; `code` names the 400 of a body that is not (routes kept the codes
/// they had). The content type is not required: signed clients and Ichnaea-style apps often
/// send none.
pub(crate) fn json<T: DeserializeOwned>(bytes: &[u8], code: &'static str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(code, format!("the JSON body is not valid: {e}")))
}
