//! The demand use cases: a planner's request checked against the policy's `[demand]` limits and
//! turned into the cells of an area, and the preview of what an area would do before it is
//! created.

use chrono::{DateTime, Utc};
use covermap_roads::area::Area;
use covermap_scoring::RewardPolicy;
use covermap_store::NewDemandArea;
use serde::Deserialize;
use serde_json::json;

/// Why a demand area was refused: the field at fault, a stable code and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DemandError {
    pub code: &'static str,
    pub field: &'static str,
    pub message: String,
}

impl DemandError {
    fn new(code: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            field,
            message: message.into(),
        }
    }
}

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
) -> Result<NewDemandArea, DemandError> {
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(DemandError::new(
            "invalid_name",
            "name",
            "name must be 1 to 100 printable characters",
        ));
    }
    let rules = &policy.rules.demand;
    let max_w = rules.max_area_weight;
    if !(req.weight.is_finite() && (0.0..=max_w).contains(&req.weight)) {
        return Err(DemandError::new(
            "invalid_weight",
            "weight",
            format!("weight must be a number from 0 to {max_w}"),
        ));
    }
    if let Some(b) = req.budget {
        let epochs = rules.max_bounty_epochs;
        let max = policy.rules.epoch.emission.saturating_mul(epochs);
        if b == 0 || b > max || b > i64::MAX as u64 {
            return Err(DemandError::new(
                "invalid_budget",
                "budget",
                format!("budget must be 1 to {max} base units ({epochs} epochs' emission)"),
            ));
        }
        if req.expires_at.is_none() {
            return Err(DemandError::new(
                "missing_expiry",
                "expires_at",
                "a bounty needs expires_at: its unspent budget is refunded then",
            ));
        }
    }
    if let Some(e) = req.expires_at {
        if e <= now {
            return Err(DemandError::new(
                "invalid_expiry",
                "expires_at",
                "expires_at is in the past",
            ));
        }
        if e > now + chrono::Duration::days(i64::from(rules.max_expiry_days)) {
            return Err(DemandError::new(
                "invalid_expiry",
                "expires_at",
                format!(
                    "expires_at must be within {} days of now",
                    rules.max_expiry_days
                ),
            ));
        }
    }
    let geometry = match req.polygon.get("type").and_then(|t| t.as_str()) {
        Some("Feature") => req.polygon.get("geometry").cloned().unwrap_or_default(),
        _ => req.polygon,
    };
    let area = Area::from_geojson(&geometry)
        .map_err(|e| DemandError::new("invalid_polygon", "polygon", e.to_string()))?;
    let cells = area
        .cells(resolution, rules.max_area_cells)
        .map_err(|e| DemandError::new("invalid_polygon", "polygon", e.to_string()))?;
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
        let weight = |added: f64| crate::maps::cell_weight(&s, added, usage, policy, now).weight;
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
