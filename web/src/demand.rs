//! Planners' demand areas and bounties, and the demand map drivers look at before driving: each
//! cell's reward weight now, computed by the same function the epoch uses.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use covermap_domain::{BoundingBox, Role};
use serde_json::json;

use crate::api::{AreaQuery, bad_query, checked_limit};
use crate::body::{self, Body};
use crate::{ApiError, AppState, auth};
use covermap_pipeline::demand::{DemandRequest, area_preview, new_area};

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
    let area = new_area(req, &state.policy.now(), state.resolution, key_id, now)?;
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
    let area = new_area(req, &state.policy.now(), state.resolution, None, now)?;
    // The stored state of the cells around it (those whose centres lie in the box).
    let states = match BoundingBox::around_cells(&area.cells) {
        Some(bbox) => {
            let since = now - state.policy.now().coverage_window();
            let limit = i64::try_from(4 * state.policy.now().rules.demand.max_area_cells)
                .unwrap_or(i64::MAX);
            state.store.demand_cells(bbox, now, since, limit).await?
        }
        None => Vec::new(),
    };
    let usage =
        covermap_pipeline::maps::usage_term(state.store.as_ref(), &state.policy.now(), now).await?;
    Ok(Json(area_preview(
        &area,
        &states,
        &usage,
        &state.policy.now(),
        now,
    ))
    .into_response())
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
    let cells = covermap_pipeline::maps::demand_weights(
        state.store.as_ref(),
        &state.policy.now(),
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
