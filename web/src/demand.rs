//! Planners' demand areas and bounties, and the demand map drivers look at before driving: each
//! cell's reward weight now, computed by the same function the epoch uses.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use covermap_domain::{BoundingBox, Role};
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
    /// Required to create an area (a missing one is refused as empty); a preview needs none.
    #[serde(default)]
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

/// A planner's (or admin's) key id and the area its request body holds.
async fn planners_area(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Option<i64>, DemandRequest), ApiError> {
    let caller = auth::reader(&*state.store, method, uri, headers, &[Role::Planner]).await?;
    let req = body::json(&body::within(body, body::MAX_JSON_BYTES)?, "invalid_body")?;
    Ok((caller.key_id(), req))
}

/// `POST /api/v1/demand`: planners (and admins) create a demand area or bounty.
pub(crate) async fn create(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (key_id, req) = planners_area(&state, &method, &uri, &headers, body).await?;
    let now = Utc::now();
    let area = new_area(req, &state.policy, state.resolution, key_id, now)?;
    let record = state.store.create_demand_area(&area, now).await?;
    // Its cells' weights changed: the demand map shows it at once (other servers within a minute).
    state
        .tiles
        .drop_layer(covermap_tiles::layers::MapLayer::Demand);
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// `POST /api/v1/demand/preview`: what an area would do, before it is created — its cells, their
/// road length and how much of it was driven in the coverage window, the reward weights now and
/// with the area, and what a bounty of the given budget pays per cell. Nothing is written; the
/// request is checked as a creation is (the name may be left out).
pub(crate) async fn preview(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, mut req) = planners_area(&state, &method, &uri, &headers, body).await?;
    if req.name.trim().is_empty() {
        "preview".clone_into(&mut req.name);
    }
    let now = Utc::now();
    let area = new_area(req, &state.policy, state.resolution, None, now)?;
    // The stored state of the cells around it (those whose centres lie in the box).
    let states = match BoundingBox::around_cells(&area.cells) {
        Some(bbox) => {
            let since = now - state.policy.coverage_window();
            let limit = i64::try_from(4 * MAX_AREA_CELLS).unwrap_or(i64::MAX);
            state.store.demand_cells(bbox, now, since, limit).await?
        }
        None => Vec::new(),
    };
    let usage = crate::maptiles::usage_term(state.store.as_ref(), &state.policy, now).await?;
    Ok(Json(area_preview(&area, &states, &usage, &state.policy, now)).into_response())
}

fn empty_cell(cell: covermap_domain::Cell) -> covermap_store::DemandCellState {
    covermap_store::DemandCellState {
        cell,
        demand_weight: 0.0,
        open_bounties: 0,
        road_length_m: 0.0,
        observed_m: 0.0,
        last_seen: None,
    }
}

/// The figures of [`preview`], from the area and the stored state of the cells around it.
pub fn area_preview(
    area: &NewDemandArea,
    states: &[covermap_store::DemandCellState],
    usage: &std::collections::HashMap<covermap_domain::Cell, u64>,
    policy: &RewardPolicy,
    now: DateTime<Utc>,
) -> serde_json::Value {
    let by_cell: std::collections::HashMap<_, _> = states.iter().map(|s| (s.cell, s)).collect();
    let n = area.cells.len();
    let (mut road_m, mut driven_m, mut with_roads, mut never_seen) = (0.0, 0.0, 0usize, 0usize);
    let (mut now_sum, mut now_max, mut after_sum, mut after_max) = (0.0, 0.0f64, 0.0, 0.0f64);
    for cell in &area.cells {
        // A cell with no roads, no demand and no capture is not stored: it counts as empty.
        let s = by_cell
            .get(cell)
            .map_or_else(|| empty_cell(*cell), |s| (*s).clone());
        if s.road_length_m > 0.0 {
            with_roads += 1;
        }
        if s.last_seen.is_none() {
            never_seen += 1;
        }
        road_m += s.road_length_m;
        driven_m += s.observed_m.min(s.road_length_m);
        let weight =
            |added: f64| crate::maptiles::cell_weight(&s, added, usage, policy, now).weight;
        let (before, after) = (weight(0.0), weight(area.weight));
        now_sum += before;
        now_max = now_max.max(before);
        after_sum += after;
        after_max = after_max.max(after);
    }
    let mean = |sum: f64| if n == 0 { 0.0 } else { sum / n as f64 };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let emission = policy.rules.epoch.emission;
    let pool_share = policy.rules.bounty.pool_share;
    json!({
        "cells": n,
        "resolution": area.cells.first().map(|c| u8::from(c.0.resolution())),
        "cells_with_roads": with_roads,
        "cells_never_captured": never_seen,
        "road_length_m": road_m.round(),
        "driven_m": driven_m.round(),
        "uncovered_share": (road_m > 0.0).then(|| round(1.0 - driven_m / road_m)),
        "weight_now": {"mean": round(mean(now_sum)), "max": round(now_max)},
        "weight_with_area": {"mean": round(mean(after_sum)), "max": round(after_max)},
        "bounty": area.budget.map(|b| json!({
            "budget": b,
            "per_cell": if n == 0 { 0 } else { b / n as u64 },
            "pool_share": pool_share,
            "epoch_pool": (emission as f64 * pool_share).floor() as u64,
        })),
    })
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
