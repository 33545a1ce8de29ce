//! The earnings estimate before driving: `POST /api/v1/estimate` with a planned route or area
//! and time answers what it would earn, cell by cell. Open to anyone, as the demand map is: it
//! reads nothing the demand map, the demand areas and the closed epochs do not already publish,
//! and it is rate-limited per client address with the other open endpoints.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use covermap_pipeline::estimate::{EstimateRequest, estimate_drive, estimate_json, planned_cells};

use crate::body::{self, Body};
use crate::{ApiError, AppState};

/// `POST /api/v1/estimate`: `{route | gpx | area, at?}` → the estimate (see
/// [`covermap_pipeline::estimate`]); `400` naming the field for a bad route, GPX, area or time.
pub(crate) async fn estimate(
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: EstimateRequest =
        body::json(&body::within(body, body::MAX_JSON_BYTES)?, "invalid_body")?;
    let now = Utc::now();
    let planned = planned_cells(&req, state.resolution, now)?;
    let e = estimate_drive(state.store.as_ref(), &state.policy.now(), &planned, now).await?;
    Ok(Json(estimate_json(&e, &planned)).into_response())
}
