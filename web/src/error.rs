//! The one mapping from errors to HTTP responses: a status and a JSON body
//! `{"error": {"code": ..., "message": ..., "field": ...}}` that names the problem (and, where
//! one is at fault, the field, header or parameter).

use std::any::Any;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use covermap_ingest::IngestError;
use covermap_ingest::access::AccessError;
use covermap_store::StoreError;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("{0}")]
    NotFound(String),
    /// It was there, and was erased.
    #[error("{0}")]
    Gone(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMedia(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        /// Extra members of the error object (e.g. the offset a session stands at).
        extra: Value,
    },
    #[error("too many requests; try again in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    /// A consumer key used its quota of the UTC day.
    #[error("this key's quota of {} requests a day is used up until {}", .0.quota, .0.resets_at.to_rfc3339())]
    QuotaExceeded(crate::usage::QuotaExceeded),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn bad_field(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Gone(_) => (StatusCode::GONE, "erased"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::UnsupportedMedia(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::QuotaExceeded(_) => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
            ApiError::Access(e) if e.is_forbidden() => (StatusCode::FORBIDDEN, e.code()),
            ApiError::Access(e) => (StatusCode::UNAUTHORIZED, e.code()),
            ApiError::Store(StoreError::Conflict(_)) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Store(StoreError::NotFound(_)) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            ApiError::Ingest(e @ IngestError::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, e.code())
            }
            ApiError::Ingest(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.code()),
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            ApiError::BadRequest { field, .. } => field.clone(),
            ApiError::Access(e) => e.field().map(str::to_owned),
            ApiError::Ingest(e) => e.field(),
            _ => None,
        }
    }
}

impl From<covermap_pipeline::epochs::EpochError> for ApiError {
    fn from(e: covermap_pipeline::epochs::EpochError) -> Self {
        use covermap_pipeline::epochs::EpochError;
        match e {
            EpochError::NotClosed(_) => ApiError::NotFound(e.to_string()),
            EpochError::Store(e) => ApiError::Store(e),
            other => ApiError::Store(covermap_store::StoreError::Corrupt(other.to_string())),
        }
    }
}

impl From<covermap_pipeline::demand::DemandError> for ApiError {
    fn from(e: covermap_pipeline::demand::DemandError) -> Self {
        ApiError::bad_field(e.code, e.field, e.message)
    }
}

impl From<covermap_pipeline::estimate::EstimateError> for ApiError {
    fn from(e: covermap_pipeline::estimate::EstimateError) -> Self {
        ApiError::bad_field(e.code, e.field, e.message)
    }
}

impl From<covermap_pipeline::reports::BlurError> for ApiError {
    fn from(e: covermap_pipeline::reports::BlurError) -> Self {
        use covermap_pipeline::reports::BlurError;
        match e {
            BlurError::Boxes(v) => ApiError::bad_field("invalid_boxes", v.field, v.reason),
            BlurError::Store(e) => ApiError::Store(e),
            other @ BlurError::Unreadable(_) => {
                ApiError::Store(covermap_store::StoreError::Corrupt(other.to_string()))
            }
        }
    }
}

impl From<covermap_pipeline::AcceptError> for ApiError {
    fn from(e: covermap_pipeline::AcceptError) -> Self {
        match e {
            covermap_pipeline::AcceptError::Refused(e) => ApiError::Ingest(e),
            covermap_pipeline::AcceptError::Store(e) => ApiError::Store(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        // Storage errors can carry internals (URLs, SQL); clients get a generic message.
        let message = if status.is_server_error() {
            "storage is unavailable; nothing was stored, try again".to_owned()
        } else {
            self.to_string()
        };
        let mut error = json!({"code": code, "message": message, "field": self.field()});
        if let ApiError::Conflict { extra, .. } = &self
            && let (Some(e), Some(x)) = (error.as_object_mut(), extra.as_object())
        {
            e.extend(x.clone());
        }
        if let (ApiError::QuotaExceeded(q), Some(e)) = (&self, error.as_object_mut()) {
            e.insert("quota_per_day".into(), json!(q.quota));
            e.insert("resets_at".into(), json!(q.resets_at));
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        let retry_after_s = match &self {
            ApiError::RateLimited { retry_after_s } => Some(*retry_after_s),
            ApiError::QuotaExceeded(q) => {
                Some(u64::try_from((q.resets_at - chrono::Utc::now()).num_seconds()).unwrap_or(0))
            }
            _ => None,
        };
        if let Some(s) = retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s.max(1)));
        }
        if let ApiError::Access(e) = &self
            && !e.is_forbidden()
        {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"covermap\""),
            );
        }
        response
    }
}

pub(crate) fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": {"code": "internal", "message": "internal error", "field": null}})),
    )
        .into_response()
}
