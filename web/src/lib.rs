//! covermap web: the HTTP face of the pipeline — the upload API drivers' devices call, the read
//! API map clients call, `/healthz`, `/metrics`, and the pages of the web UI.
//!
//! Handlers are thin: they read the request, call `ingest`, `store`, `scoring` or `tiles`, and
//! turn the answer (or the error, through the one [`ApiError`] mapping) into a response. The
//! workers that empty the queue are wired by the `covermap` binary, not here.

mod api;
mod error;
mod pages;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use covermap_ingest::IngestPolicy;
use covermap_scoring::ScoringPolicy;
use covermap_store::{Blobs, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

/// Everything a handler may use.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    pub ingest_policy: IngestPolicy,
    pub scoring_policy: ScoringPolicy,
    /// Larger request bodies are refused with 413 before they are read in full.
    pub max_upload_bytes: usize,
    /// Renders `/metrics`; `None` where no recorder is installed (some tests).
    pub metrics: Option<PrometheusHandle>,
    /// Pinged after each queued upload so idle in-process workers start at once.
    pub jobs_waiting: Arc<tokio::sync::Notify>,
}

pub fn router(state: AppState) -> Router {
    let limit = state.max_upload_bytes;
    Router::new()
        .route("/", get(pages::index))
        .route("/app.js", get(pages::app_js))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        // POST /api/v1/uploads/{kind} sends an upload; GET /api/v1/uploads/{id} follows it.
        .route(
            "/api/v1/uploads/{param}",
            post(api::upload)
                .layer(DefaultBodyLimit::max(limit))
                .get(api::upload_status),
        )
        .route("/api/v1/uploads/{param}/matched", get(api::matched))
        .route("/api/v1/uploads", get(api::recent_uploads))
        .route("/api/v1/coverage", get(api::coverage))
        .route("/api/v1/roads", get(api::roads))
        .route("/api/v1/stats", get(api::stats))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(middleware::from_fn(count_requests))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}

async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("covermap_http_requests_total", "method" => method, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("covermap_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
