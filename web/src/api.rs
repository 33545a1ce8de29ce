//! The JSON API.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use covermap_domain::{BoundingBox, Role};
use serde::Deserialize;
use serde_json::json;

use crate::auth;
use crate::{ApiError, AppState};

pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ok", "backend": state.store.backend()})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "backend": state.store.backend()})),
            )
                .into_response()
        }
    }
}

pub(crate) async fn metrics(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    crate::admin::metrics_guard(&state, &method, &uri, &headers).await?;
    let stats = state.store.stats().await?;
    let gauges = [
        ("queued", "uploads", stats.uploads_queued),
        ("processed", "uploads", stats.uploads_processed),
        ("rejected", "uploads", stats.uploads_rejected),
        ("queued", "jobs", stats.jobs_queued),
        ("leased", "jobs", stats.jobs_leased),
        ("done", "jobs", stats.jobs_done),
        ("failed", "jobs", stats.jobs_failed),
    ];
    for (status, what, n) in gauges {
        metrics::gauge!(format!("covermap_{what}"), "status" => status).set(n as f64);
    }
    metrics::gauge!("covermap_cells_covered").set(stats.cells as f64);
    metrics::gauge!("covermap_road_segments").set(stats.road_segments as f64);
    let body = state
        .metrics
        .as_ref()
        .map(metrics_exporter_prometheus::PrometheusHandle::render)
        .unwrap_or_default();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// The caller of a read endpoint (a key, or a device signing an empty body), who must be
/// allowed to read upload `id`. Others get 404, as if it did not exist; those who may read it
/// get 410 once it was erased.
async fn readable_upload(
    state: &AppState,
    id: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<i64, ApiError> {
    let caller = auth::reader(
        state.store.as_ref(),
        method,
        uri,
        headers,
        &[Role::Device, Role::Auditor],
    )
    .await?;
    let id = parse_id(id)?;
    match state.store.upload(id).await? {
        Some(rec) if caller.may_read(&rec) => match rec.erased_at {
            Some(at) => Err(erased(id, at)),
            None => Ok(id),
        },
        _ => Err(ApiError::NotFound(format!("no upload {id}"))),
    }
}

/// The answer about upload `id`, erased at `at`.
pub(crate) fn erased(id: i64, at: chrono::DateTime<Utc>) -> ApiError {
    ApiError::Gone(format!(
        "upload {id} was erased at {} at its contributor's request",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    ))
}

/// An upload the caller may read, from the path's `{param}`: the key or signature is checked
/// before the handler runs.
pub(crate) struct ReadableUpload(i64);

impl FromRequestParts<AppState> for ReadableUpload {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
        readable_upload(state, &id, &parts.method, &parts.uri, &parts.headers)
            .await
            .map(Self)
    }
}

pub(crate) async fn upload_status(
    State(state): State<AppState>,
    ReadableUpload(id): ReadableUpload,
) -> Result<Response, ApiError> {
    match state.store.upload(id).await? {
        Some(rec) => Ok(Json(rec).into_response()),
        None => Err(ApiError::NotFound(format!("no upload {id}"))),
    }
}

/// `GET /api/v1/uploads/{id}/evidence` (auditors): what the trust stage measured of an upload
/// and what it found — the numbers behind its verdict.
pub(crate) async fn upload_evidence(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    auth::reader(
        state.store.as_ref(),
        &method,
        &uri,
        &headers,
        &[Role::Auditor],
    )
    .await?;
    let id = parse_id(&id)?;
    let rec = state
        .store
        .upload(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no upload {id}")))?;
    if let Some(at) = rec.erased_at {
        return Err(erased(id, at));
    }
    let evidence: Option<serde_json::Value> = rec
        .evidence
        .as_deref()
        .map(|e| serde_json::from_str(e).unwrap_or_else(|_| json!({"unreadable": e})));
    Ok(Json(json!({
        "upload_id": id,
        "device": rec.device,
        "contributor": rec.contributor,
        "trust": rec.trust,
        "evidence": evidence,
    }))
    .into_response())
}

/// The stretches of road an upload was matched to, cell by cell, in driving order.
pub(crate) async fn matched(
    State(state): State<AppState>,
    ReadableUpload(id): ReadableUpload,
) -> Result<Response, ApiError> {
    let stretches = state.store.matched_stretches(id).await?;
    let roads = matched_roads(state.store.as_ref(), &stretches).await?;
    Ok(Json(json!({"upload_id": id, "stretches": stretches, "roads": roads})).into_response())
}

/// The road segments a drive was matched to, as GeoJSON lines with the length driven on each
/// (for the driver's map of a drive), read by the segments its stretches name.
async fn matched_roads(
    store: &dyn covermap_store::Store,
    stretches: &[covermap_domain::MatchedStretch],
) -> Result<serde_json::Value, ApiError> {
    let mut driven: std::collections::HashMap<(i64, u32), f64> = std::collections::HashMap::new();
    for s in stretches {
        *driven.entry((s.osm_way_id, s.way_piece)).or_default() += s.length_m;
    }
    let mut refs: Vec<covermap_domain::SegmentRef> = driven
        .keys()
        .map(|&(osm_way_id, way_piece)| covermap_domain::SegmentRef {
            osm_way_id,
            way_piece,
        })
        .collect();
    refs.sort_unstable_by_key(|r| (r.osm_way_id, r.way_piece));
    let segments = store.road_segments(&refs).await?;
    let mut geojson = covermap_tiles::roads_geojson(&segments);
    if let Some(features) = geojson["features"].as_array_mut() {
        for (f, s) in features.iter_mut().zip(&segments) {
            let m = driven.get(&(s.osm_way_id, s.piece)).copied().unwrap_or(0.0);
            f["properties"]["driven_m"] = json!((m * 10.0).round() / 10.0);
        }
    }
    Ok(geojson)
}

/// Every observation an upload's processing left out, with its reason code.
pub(crate) async fn rejections(
    State(state): State<AppState>,
    ReadableUpload(id): ReadableUpload,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = list_limit(q)?;
    let rejections = state.store.rejections(id, limit).await?;
    Ok(Json(json!({"upload_id": id, "rejections": rejections})).into_response())
}

/// The radio observations an upload produced.
pub(crate) async fn upload_radio(
    State(state): State<AppState>,
    ReadableUpload(id): ReadableUpload,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = list_limit(q)?;
    let observations = state.store.radio_observations(id, limit).await?;
    Ok(Json(json!({"upload_id": id, "observations": observations})).into_response())
}

/// The geotagged frames of a drive.
pub(crate) async fn upload_frames(
    State(state): State<AppState>,
    ReadableUpload(id): ReadableUpload,
) -> Result<Response, ApiError> {
    let frames = state.store.frames(id).await?;
    Ok(Json(json!({"upload_id": id, "frames": frames})).into_response())
}

/// `?limit=` of an upload's observation lists: 10,000 unless said, at most 100,000.
fn list_limit(q: Result<Query<ListQuery>, QueryRejection>) -> Result<i64, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    checked_limit(q.limit, 10_000, 100_000)
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::bad_request("invalid_id", format!("upload id {id:?} is not a number"))
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    pub(crate) limit: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UploadsQuery {
    limit: Option<i64>,
    /// Only uploads with this trust verdict: `pending`, `trusted` or `flagged`.
    trust: Option<String>,
}

pub(crate) async fn recent_uploads(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<UploadsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let caller = auth::caller(
        state.store.as_ref(),
        &method,
        &uri,
        &headers,
        b"",
        Utc::now(),
    )
    .await?;
    let mut filter = caller.list_filter()?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = checked_limit(q.limit, 50, 1000)?;
    if let Some(t) = q.trust {
        if !matches!(t.as_str(), "pending" | "trusted" | "flagged") {
            return Err(ApiError::bad_field(
                "invalid_trust",
                "trust",
                format!("{t:?} is not one of pending, trusted, flagged"),
            ));
        }
        filter.trust = Some(t);
    }
    Ok(Json(json!({"uploads": state.store.recent_uploads(limit, &filter).await?})).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct AreaQuery {
    pub(crate) bbox: Option<String>,
    pub(crate) limit: Option<i64>,
}

impl AreaQuery {
    /// The box asked about, counted as map consumers' usage of its area when one was given.
    pub(crate) fn area(&self, state: &AppState) -> Result<BoundingBox, ApiError> {
        let b = self.bbox()?;
        if self.bbox.is_some() {
            state.usage.look(&state.policy.now(), &b, Utc::now());
        }
        Ok(b)
    }

    pub(crate) fn bbox(&self) -> Result<BoundingBox, ApiError> {
        match &self.bbox {
            None => Ok(BoundingBox::WORLD),
            Some(b) => b.parse().map_err(|e: covermap_domain::InvalidValue| {
                ApiError::bad_request("invalid_bbox", e.to_string())
            }),
        }
    }
}

pub(crate) fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

pub(crate) fn checked_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit {n} is not between 1 and {max}"),
        )),
    }
}

pub(crate) async fn coverage(
    State(state): State<AppState>,
    q: Result<Query<AreaQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = checked_limit(q.limit, 10_000, 100_000)?;
    let cells = state.store.coverage(q.area(&state)?, limit).await?;
    Ok(Json(covermap_tiles::coverage_geojson(
        &cells,
        Utc::now(),
        &state.policy.now(),
    ))
    .into_response())
}

pub(crate) async fn roads(
    State(state): State<AppState>,
    q: Result<Query<AreaQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = checked_limit(q.limit, 20_000, 100_000)?;
    let segments = state.store.roads(q.area(&state)?, limit).await?;
    Ok(Json(covermap_tiles::roads_geojson(&segments)).into_response())
}

/// Radio observations per cell: how many, of how many emitters, the best signal.
pub(crate) async fn radio(
    State(state): State<AppState>,
    q: Result<Query<AreaQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = checked_limit(q.limit, 10_000, 100_000)?;
    let cells = state.store.radio_coverage(q.area(&state)?, limit).await?;
    Ok(Json(covermap_tiles::radio_geojson(&cells)).into_response())
}

pub(crate) async fn stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    let stats = state.store.stats().await?;
    Ok(Json(json!({
        "backend": state.store.backend(),
        "stats": stats,
        "policy_version": state.policy.now().rules.version,
        "policy_hash": state.policy.now().hash,
    }))
    .into_response())
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("method not allowed on this endpoint".into())
}

/// `GET /api/v1/radio/networks?bbox=&limit=`: per cell and (technology, operator), the samples,
/// distinct contributors, best and median signal of the plausible measurements, and whether k
/// contributors corroborate the network there (the epoch's radio rules).
pub(crate) async fn radio_networks(
    State(state): State<AppState>,
    q: Result<Query<AreaQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = checked_limit(q.limit, 100_000, 1_000_000)?;
    let samples = state.store.radio_samples(q.area(&state)?, limit).await?;
    let (networks, implausible) =
        covermap_scoring::radio::networks(&samples, &state.policy.now().rules.radio);
    Ok(Json(json!({
        "networks": networks,
        "implausible": implausible,
        "truncated": samples.len() as i64 == limit,
    }))
    .into_response())
}
