//! Planners' demand areas and bounties, and the demand map drivers look at before driving: each
//! cell's reward weight now, computed by the same function the epoch uses.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use covermap_domain::Role;
use covermap_roads::area::Area;
use covermap_scoring::RewardPolicy;
use covermap_store::NewDemandArea;
use serde::Deserialize;
use serde_json::json;

use crate::api::{AreaQuery, bad_query, checked_limit};
use crate::body::{self, Body};
use crate::{ApiError, AppState, auth};

/// Most cells one area may hold (about 215 km² at resolution 11).
pub const MAX_AREA_CELLS: usize = 100_000;

/// A demand area as a planner sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandRequest {
    pub name: String,
    /// A GeoJSON Polygon or MultiPolygon geometry, or a Feature holding one.
    pub polygon: serde_json::Value,
    #[serde(default = "one")]
    pub weight: f64,
    /// Base units for the first capture of each of its cells, split evenly: a bounty.
    #[serde(default)]
    pub budget: Option<u64>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

fn one() -> f64 {
    1.0
}

/// Checks a request and finds its cells.
pub fn new_area(
    req: DemandRequest,
    policy: &RewardPolicy,
    resolution: h3o::Resolution,
    created_by: Option<i64>,
    now: DateTime<Utc>,
) -> Result<NewDemandArea, ApiError> {
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_field(
            "invalid_name",
            "name",
            "name must be 1 to 100 printable characters",
        ));
    }
    let max_w = policy.rules.demand.max_area_weight;
    if !(req.weight.is_finite() && (0.0..=max_w).contains(&req.weight)) {
        return Err(ApiError::bad_field(
            "invalid_weight",
            "weight",
            format!("weight must be a number from 0 to {max_w}"),
        ));
    }
    if let Some(b) = req.budget {
        let max = policy.rules.epoch.emission.saturating_mul(1000);
        if b == 0 || b > max || b > i64::MAX as u64 {
            return Err(ApiError::bad_field(
                "invalid_budget",
                "budget",
                format!("budget must be 1 to {max} base units (1000 epochs' emission)"),
            ));
        }
        if req.expires_at.is_none() {
            return Err(ApiError::bad_field(
                "missing_expiry",
                "expires_at",
                "a bounty needs expires_at: its unspent budget is refunded then",
            ));
        }
    }
    if let Some(e) = req.expires_at {
        if e <= now {
            return Err(ApiError::bad_field(
                "invalid_expiry",
                "expires_at",
                "expires_at is in the past",
            ));
        }
        if e > now + chrono::Duration::days(366) {
            return Err(ApiError::bad_field(
                "invalid_expiry",
                "expires_at",
                "expires_at must be within a year",
            ));
        }
    }
    let geometry = match req.polygon.get("type").and_then(|t| t.as_str()) {
        Some("Feature") => req.polygon.get("geometry").cloned().unwrap_or_default(),
        _ => req.polygon,
    };
    let area = Area::from_geojson(&geometry)
        .map_err(|e| ApiError::bad_field("invalid_polygon", "polygon", e.to_string()))?;
    let cells = area
        .cells(resolution, MAX_AREA_CELLS)
        .map_err(|e| ApiError::bad_field("invalid_polygon", "polygon", e.to_string()))?;
    Ok(NewDemandArea {
        name,
        weight: req.weight,
        polygon: geometry,
        cells,
        created_by,
        expires_at: req.expires_at,
        budget: req.budget,
    })
}

/// `POST /api/v1/demand`: planners (and admins) create a demand area or bounty.
pub(crate) async fn create(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auth::reader(&*state.store, &method, &uri, &headers, &[Role::Planner]).await?;
    let req: DemandRequest =
        body::json(&body::within(body, body::MAX_JSON_BYTES)?, "invalid_body")?;
    let now = Utc::now();
    let area = new_area(req, &state.policy, state.resolution, caller.key_id(), now)?;
    let record = state.store.create_demand_area(&area, now).await?;
    // Its cells' weights changed: the demand map shows it at once (other servers within a minute).
    state
        .tiles
        .drop_layer(covermap_tiles::layers::MapLayer::Demand);
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// `GET /api/v1/demand`: every demand area, newest first, with what its bounty paid.
pub(crate) async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(json!({"areas": state.store.demand_areas().await?})).into_response())
}

/// `GET /api/v1/demand/map?bbox=&limit=`: each cell's reward weight now, as GeoJSON hexagons.
pub(crate) async fn map(
    State(state): State<AppState>,
    q: Result<Query<AreaQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = checked_limit(q.limit, 10_000, 100_000)?;
    let now = Utc::now();
    let cells = crate::maptiles::demand_weights(
        state.store.as_ref(),
        &state.policy,
        q.area(&state)?,
        now,
        limit,
    )
    .await?;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(Json(covermap_tiles::hexagons(cells.iter().map(
        |(c, last_seen)| {
            (
                c.cell,
                json!({
                    "weight": round(c.weight),
                    "demand": round(c.demand),
                    "staleness": round(c.staleness),
                    "coverage_gap": round(c.coverage_gap),
                    "open_bounties": c.open_bounties,
                    "last_seen": last_seen,
                }),
            )
        },
    )))
    .into_response())
}
