//! covermap web: the HTTP face of the pipeline — the upload API drivers' devices call, the read
//! API map clients call, `/healthz`, `/metrics`, and the pages of the web UI.
//!
//! Handlers are thin: they read the request (who calls, body limits, query), call the use case in
//! `covermap_pipeline` (accept an upload, simulate an epoch, render a tile, create a demand
//! area) or read `store`, and turn the answer (or the error, through the one [`ApiError`]
//! mapping) into a response. HTTP-only state lives here: the tile cache and its invalidator,
//! rate limits, the usage meter, resumable-upload sessions and their sweeper. The workers that
//! empty the queue are the pipeline's, wired by the `covermap` binary.

mod admin;
mod api;
mod auth;
mod body;
mod client;
mod consumers;
mod demand;
mod erasure;
mod error;
mod estimate;
mod governance;
mod imagery;
pub mod maptiles;
mod pages;
mod ratelimit;
mod rewards;
pub mod uploads;
pub mod usage;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use covermap_ingest::IngestRules;
use covermap_pipeline::governance::PolicyBook;
use covermap_store::{Blobs, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use admin::checked_contributor;
pub use client::{InvalidProxy, TrustedProxies};
pub use error::ApiError;
pub use pages::bundled_vendor_dir;
pub use ratelimit::RateLimit;

/// Everything a handler may use: [`Shared`] behind one reference count, so handing it to a
/// request (axum clones the state for every one) costs one atomic increment.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    pub rules: IngestRules,
    /// The policy in force, the database's (see `covermap_pipeline::governance`).
    pub policy: PolicyBook,
    /// Map consumers' requests per area, written to the store by [`usage::run_flusher`].
    pub usage: Arc<usage::UsageMeter>,
    /// H3 resolution cells are counted at (demand areas are filled at it).
    pub resolution: h3o::Resolution,
    /// Rendered vector tiles, dropped by [`maptiles::run_invalidator`] when cells change.
    pub tiles: Arc<maptiles::TileCache>,
    /// Larger request bodies are refused with 413 before they are read in full.
    pub max_upload_bytes: usize,
    /// Largest drive assembled from resumable parts.
    pub max_drive_bytes: u64,
    /// Calls per client address to the endpoints open without a key.
    pub public_rate: RateLimit,
    /// Reverse proxies whose forwarding headers name the client (`--trusted-proxies`).
    pub trusted_proxies: TrustedProxies,
    /// Renders `/metrics`; `None` where no recorder is installed (some tests).
    pub metrics: Option<PrometheusHandle>,
    /// Pinged after each queued upload so idle in-process workers start at once.
    pub jobs_waiting: Arc<tokio::sync::Notify>,
    /// Drives are checked (and sessions assembled) in memory: this many at a time.
    pub drive_slots: Arc<tokio::sync::Semaphore>,
    /// MapLibre GL JS's `dist` folder, served under `/vendor/maplibre-gl/`.
    pub web_vendor: std::path::PathBuf,
}

impl AppState {
    /// Waits for a drive slot; held until the guard is dropped.
    pub(crate) async fn drive_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        // The semaphore is never closed, so this only fails if it were.
        self.drive_slots.clone().acquire_owned().await.ok()
    }
}

/// What a `covermap worker` process serves: `/metrics` (its job counters, admin key) and
/// `/healthz`, nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}

pub fn router(state: AppState) -> Router {
    let limit = DefaultBodyLimit::max(state.max_upload_bytes);
    let gate = |rate| consumers::Gate {
        state: state.clone(),
        limiter: Arc::new(ratelimit::Limiter::new(rate)),
    };
    // Open to anyone: a token bucket per client address, or a consumer key's daily quota.
    let public = Router::new()
        .route("/api/v1/coverage", get(api::coverage))
        .route("/api/v1/roads", get(api::roads))
        .route("/api/v1/radio", get(api::radio))
        .route("/api/v1/radio/networks", get(api::radio_networks))
        .route("/api/v1/imagery", get(imagery::imagery))
        .route(
            "/api/v1/frames/{upload}/{frame}/image",
            get(imagery::published_frame),
        )
        .route(
            "/api/v1/frames/{upload}/{frame}/report",
            post(imagery::report),
        )
        .route("/api/v1/stats", get(api::stats))
        .route("/api/v1/demand/map", get(demand::map))
        .route("/api/v1/estimate", post(estimate::estimate))
        .route("/api/v1/epochs", get(rewards::epochs))
        .route("/api/v1/epochs/{n}", get(rewards::epoch))
        .route("/published/{*key}", get(rewards::published))
        .route("/api/v1/rewards/{contributor}", get(rewards::contributor))
        .route("/api/v1/rewards/{contributor}/proof", get(rewards::proof))
        .route("/api/v1/policy", get(rewards::policy))
        .route("/api/v1/policy/proposals/{id}", get(governance::show))
        .layer(middleware::from_fn_with_state(
            gate(state.public_rate),
            consumers::gate,
        ));
    // A map view holds a few dozen tiles per layer and refreshes them: ten times the rate.
    let tile_gate = gate(RateLimit {
        per_second: state.public_rate.per_second * 10.0,
        burst: state.public_rate.burst * 10.0,
    });
    let tiles = Router::new()
        .route("/tiles/{file}", get(maptiles::tilejson))
        .route("/tiles/{layer}/{z}/{x}/{y}", get(maptiles::tile))
        .route("/fonts/{fontstack}/{range}", get(maptiles::glyphs))
        .layer(middleware::from_fn_with_state(tile_gate, consumers::gate));
    Router::new()
        .route("/", get(pages::index))
        .route("/planner", get(pages::planner))
        .route("/auditor", get(pages::auditor))
        .route("/driver", get(pages::driver))
        .route("/assets/{file}", get(pages::asset))
        .route("/vendor/maplibre-gl/{file}", get(pages::maplibre))
        .route("/openapi.json", get(pages::openapi))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        // Uploads: signed by a device, or (radio) sent with a device key.
        .route(
            "/api/v1/uploads/{param}",
            post(uploads::upload)
                .layer(limit)
                .get(api::upload_status)
                .delete(erasure::erase_upload),
        )
        .route("/api/v1/drives", post(uploads::drive).layer(limit))
        .route(
            "/api/v1/drives/sessions",
            post(uploads::open_session).layer(limit),
        )
        .route(
            "/api/v1/drives/sessions/{id}",
            put(uploads::session_part)
                .layer(limit)
                .get(uploads::session_status),
        )
        .route("/v2/geosubmit", post(uploads::geosubmit_v2).layer(limit))
        .route("/v1/geosubmit", post(uploads::geosubmit_v1).layer(limit))
        // Reading uploads: devices their own, auditors and admins all.
        .route("/api/v1/uploads", get(api::recent_uploads))
        .route("/api/v1/uploads/{param}/matched", get(api::matched))
        .route("/api/v1/uploads/{param}/rejections", get(api::rejections))
        .route("/api/v1/uploads/{param}/radio", get(api::upload_radio))
        .route("/api/v1/uploads/{param}/frames", get(api::upload_frames))
        .route(
            "/api/v1/uploads/{param}/evidence",
            get(api::upload_evidence),
        )
        // The auditors' queue of refused frames, their decisions and the decisions' log.
        .route("/api/v1/audit/frames", get(imagery::audit_queue))
        .route(
            "/api/v1/audit/frames/{upload}/{frame}/image",
            get(imagery::review_frame),
        )
        .route(
            "/api/v1/audit/frames/{upload}/{frame}/published",
            get(imagery::reported_frame),
        )
        .route(
            "/api/v1/audit/frames/{upload}/{frame}/decision",
            post(imagery::decide),
        )
        .route("/api/v1/audit/log", get(imagery::audit_log))
        .route("/api/v1/audit/reports", get(imagery::reports))
        .route(
            "/api/v1/audit/reports/{id}/decision",
            post(imagery::decide_report),
        )
        // Keys and devices.
        .route(
            "/api/v1/keys",
            get(admin::list_keys).post(admin::create_key),
        )
        .route("/api/v1/keys/{id}", delete(admin::revoke_key))
        .route("/api/v1/consumers/usage", get(consumers::usage))
        .route(
            "/api/v1/devices",
            get(admin::list_devices).post(admin::register_device),
        )
        .route("/api/v1/devices/{device}", delete(admin::revoke_device))
        .route(
            "/api/v1/devices/{device}/key",
            post(admin::rotate_device_key),
        )
        // What-if: a closed epoch under a proposed policy (planners).
        .route(
            "/api/v1/policy/simulate",
            post(rewards::simulate_handler).layer(DefaultBodyLimit::max(rewards::MAX_POLICY_BYTES)),
        )
        .route("/api/v1/me", get(rewards::me))
        // The policy's governance: proposals (contributors, planners, admins) and signed ballots.
        .route(
            "/api/v1/policy/proposals",
            get(governance::list)
                .post(governance::propose)
                .layer(DefaultBodyLimit::max(governance::MAX_PROPOSAL_BYTES)),
        )
        .route(
            "/api/v1/policy/proposals/{id}/votes",
            post(governance::vote),
        )
        // A contributor's uploads erased at their request (or an admin's, on their behalf).
        .route(
            "/api/v1/erasures",
            get(erasure::erasures).post(erasure::erase_all),
        )
        // Planners' demand areas: anyone reads them, planners create them.
        .route("/api/v1/demand", get(demand::list).post(demand::create))
        .route("/api/v1/demand/preview", post(demand::preview))
        .merge(public)
        .merge(tiles)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        // Every route without a limit of its own reads JSON; the handlers answer past it (see
        // `body`). The routes' own layers are inner, so theirs win.
        .layer(DefaultBodyLimit::max(body::MAX_JSON_BYTES))
        .layer(middleware::from_fn(auth::deprecated_signatures))
        .layer(middleware::from_fn(count_requests))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}

async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("covermap_http_requests_total", "method" => method, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("covermap_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
