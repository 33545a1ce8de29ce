//! The earnings estimate use case: a planned route (GPX, a GeoJSON line) or area checked and cut
//! into cells, their state at the planned time read as the demand map reads it, the trailing
//! epochs' totals, and `scoring`'s estimate over them ([`covermap_scoring::estimate`]); and the
//! backtest of that estimate against what closed epochs paid.
//!
//! Only public figures go in: the demand map's cell state (demand, last capture, coverage),
//! the bounties' public budgets, and the closed epochs' totals.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use covermap_domain::rewards::EpochInputs;
use covermap_domain::{BoundingBox, Cell, LatLon};
use covermap_roads::area::Area;
use covermap_scoring::RewardPolicy;
use covermap_scoring::epoch::{self, coverage_gap, demand_multiplier};
use covermap_scoring::estimate::{self, CellOutlook, Estimate, OpenBounty, TrailingEpoch};
use covermap_store::{Store, StoreError};
use serde::Deserialize;

/// Most cells one estimate covers (about 100 km of driving at resolution 11).
pub const MAX_CELLS: usize = 2_000;
/// Longest route read, before it is cut into cells.
pub const MAX_ROUTE_KM: f64 = 300.0;
/// Most positions one route may hold.
pub const MAX_POINTS: usize = 100_000;
/// How far back a planned time may lie (a clock a little behind; a plan is for later).
pub const MAX_PAST: Duration = Duration::hours(24);
/// How far ahead a planned time may lie.
pub const MAX_AHEAD_DAYS: i64 = 30;
/// Closed epochs the base range is measured against.
pub const TRAILING_EPOCHS: usize = 7;
/// The route's cells are read from the store in runs of this many, each in the box around it.
const CHUNK: usize = 64;

/// Why an estimate was refused: the field at fault, a stable code and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EstimateError {
    pub code: &'static str,
    pub field: &'static str,
    pub message: String,
}

impl EstimateError {
    fn new(code: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            field,
            message: message.into(),
        }
    }
}

/// A planned drive as sent: exactly one of a route (GeoJSON), a GPX file's text, or an area.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateRequest {
    /// A GeoJSON LineString or MultiLineString geometry, or a Feature holding one.
    #[serde(default)]
    pub route: Option<serde_json::Value>,
    /// A GPX file's text: its track points, in order, are the route.
    #[serde(default)]
    pub gpx: Option<String>,
    /// A GeoJSON Polygon or MultiPolygon: every cell whose centre lies in it.
    #[serde(default)]
    pub area: Option<serde_json::Value>,
    /// When the drive is planned; now if not given.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

/// The cells of a planned drive with the length of the route in each (0 for an area's).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCells {
    pub cells: Vec<(Cell, f64)>,
    pub at: DateTime<Utc>,
}

/// Checks a request and cuts its route or area into cells at `resolution`.
pub fn planned_cells(
    req: &EstimateRequest,
    resolution: h3o::Resolution,
    now: DateTime<Utc>,
) -> Result<PlannedCells, EstimateError> {
    let at = checked_time(req.at, now)?;
    let cells = match (&req.route, &req.gpx, &req.area) {
        (Some(route), None, None) => route_cells(&geojson_line(route)?, "route", resolution)?,
        (None, Some(gpx), None) => route_cells(&gpx_line(gpx)?, "gpx", resolution)?,
        (None, None, Some(area)) => area_cells(area, resolution)?,
        _ => {
            return Err(EstimateError::new(
                "invalid_route",
                "route",
                "send exactly one of route (a GeoJSON LineString), gpx (a GPX file's text) or \
                 area (a GeoJSON Polygon)",
            ));
        }
    };
    Ok(PlannedCells { cells, at })
}

fn checked_time(
    at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, EstimateError> {
    let at = at.unwrap_or(now);
    let (earliest, latest) = (now - MAX_PAST, now + Duration::days(MAX_AHEAD_DAYS));
    if at < earliest || at > latest {
        return Err(EstimateError::new(
            "invalid_time",
            "at",
            format!(
                "at must lie from {} hours before now to {MAX_AHEAD_DAYS} days after it \
                 ({} to {})",
                MAX_PAST.num_hours(),
                earliest.to_rfc3339(),
                latest.to_rfc3339()
            ),
        ));
    }
    Ok(at)
}

/// A position of a route, checked.
fn position(lat: f64, lon: f64, field: &'static str) -> Result<LatLon, EstimateError> {
    LatLon::new(lat, lon).map_err(|e| EstimateError::new("invalid_route", field, e.reason))
}

fn geojson_line(v: &serde_json::Value) -> Result<Vec<Vec<LatLon>>, EstimateError> {
    let bad = |m: &str| EstimateError::new("invalid_route", "route", m);
    let geometry = match v.get("type").and_then(|t| t.as_str()) {
        Some("Feature") => v.get("geometry").unwrap_or(&serde_json::Value::Null),
        _ => v,
    };
    let coords = geometry.get("coordinates");
    let lines: Vec<&serde_json::Value> = match geometry.get("type").and_then(|t| t.as_str()) {
        Some("LineString") => coords.into_iter().collect(),
        Some("MultiLineString") => coords
            .and_then(|c| c.as_array())
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        _ => return Err(bad("route must be a GeoJSON LineString or MultiLineString")),
    };
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let points = line
            .as_array()
            .ok_or_else(|| bad("a line's coordinates must be an array of [lon, lat]"))?;
        let mut l = Vec::with_capacity(points.len());
        for p in points {
            let pair = p.as_array().filter(|a| a.len() >= 2);
            let Some((Some(lon), Some(lat))) = pair.map(|a| (a[0].as_f64(), a[1].as_f64())) else {
                return Err(bad("each position must be [lon, lat] numbers"));
            };
            l.push(position(lat, lon, "route")?);
        }
        out.push(l);
    }
    Ok(out)
}

fn gpx_line(text: &str) -> Result<Vec<Vec<LatLon>>, EstimateError> {
    let points = covermap_ingest::read_gpx_points(text.as_bytes())
        .map_err(|e| EstimateError::new("invalid_gpx", "gpx", e.to_string()))?;
    let line = points
        .into_iter()
        .map(|(lat, lon, _)| position(lat, lon, "gpx"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![line])
}

fn route_cells(
    lines: &[Vec<LatLon>],
    field: &'static str,
    resolution: h3o::Resolution,
) -> Result<Vec<(Cell, f64)>, EstimateError> {
    let points: usize = lines.iter().map(Vec::len).sum();
    if points < 2 || lines.iter().all(|l| l.len() < 2) {
        return Err(EstimateError::new(
            "invalid_route",
            field,
            "a route needs at least two positions",
        ));
    }
    if points > MAX_POINTS {
        return Err(EstimateError::new(
            "route_too_long",
            field,
            format!("a route may hold at most {MAX_POINTS} positions, not {points}"),
        ));
    }
    let km: f64 = lines
        .iter()
        .flat_map(|l| l.windows(2).map(|w| w[0].distance_m(w[1])))
        .sum::<f64>()
        / 1000.0;
    if km > MAX_ROUTE_KM {
        return Err(EstimateError::new(
            "route_too_long",
            field,
            format!("a route may be at most {MAX_ROUTE_KM} km long, not {km:.1} km"),
        ));
    }
    let mut cells: Vec<(Cell, f64)> = Vec::new();
    let mut at: HashMap<Cell, usize> = HashMap::new();
    for line in lines {
        for (cell, m) in covermap_roads::cells::cut_route(line, resolution) {
            match at.get(&cell) {
                Some(&i) => cells[i].1 += m,
                None => {
                    at.insert(cell, cells.len());
                    cells.push((cell, m));
                }
            }
        }
    }
    if cells.len() > MAX_CELLS {
        return Err(EstimateError::new(
            "route_too_long",
            field,
            format!(
                "a route may cross at most {MAX_CELLS} cells, not {}",
                cells.len()
            ),
        ));
    }
    Ok(cells)
}

fn area_cells(
    v: &serde_json::Value,
    resolution: h3o::Resolution,
) -> Result<Vec<(Cell, f64)>, EstimateError> {
    let geometry = match v.get("type").and_then(|t| t.as_str()) {
        Some("Feature") => v.get("geometry").cloned().unwrap_or_default(),
        _ => v.clone(),
    };
    let bad = |e: covermap_roads::area::AreaError| {
        EstimateError::new("invalid_area", "area", e.to_string())
    };
    let area = Area::from_geojson(&geometry).map_err(bad)?;
    let cells = area.cells(resolution, MAX_CELLS).map_err(bad)?;
    Ok(cells.into_iter().map(|c| (c, 0.0)).collect())
}

/// What a planned drive would earn, from the store's state of its cells at its time.
pub async fn estimate_drive(
    store: &dyn Store,
    policy: &RewardPolicy,
    planned: &PlannedCells,
    now: DateTime<Utc>,
) -> Result<Estimate, StoreError> {
    let at = planned.at;
    let cells: Vec<Cell> = planned.cells.iter().map(|c| c.0).collect();
    let (states, bounties) = stored_state(store, policy, &cells, at).await?;
    // The usage term as it stands now: later epochs' usage is not known yet.
    let usage = crate::maps::usage_term(store, policy, now).await?;
    let outlook: Vec<CellOutlook> = cells
        .iter()
        .map(|cell| {
            let s = states.get(cell);
            CellOutlook {
                cell: *cell,
                demand: demand_multiplier(
                    *cell,
                    s.map_or(0.0, |s| s.demand_weight),
                    &usage,
                    policy,
                ),
                last_seen: s.and_then(|s| s.last_seen),
                coverage_gap: s.map_or(1.0, |s| coverage_gap(s.road_length_m, s.observed_m)),
                bounties: bounties.get(cell).cloned().unwrap_or_default(),
            }
        })
        .collect();
    let trailing = trailing_epochs(store, None).await?;
    Ok(estimate::estimate(&outlook, at, &trailing, policy))
}

/// An estimate as `POST /api/v1/estimate` answers it and `covermap estimate` prints it: the
/// totals, how the range was made, and each cell as a GeoJSON hexagon.
pub fn estimate_json(e: &Estimate, planned: &PlannedCells) -> serde_json::Value {
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let route_m: HashMap<Cell, f64> = planned.cells.iter().copied().collect();
    let hexagons = covermap_tiles::hexagons(e.cells.iter().map(|c| {
        (
            c.cell,
            serde_json::json!({
                "weight": round(c.weight.weight),
                "demand": round(c.weight.demand),
                "staleness": round(c.weight.staleness),
                "coverage_gap": round(c.weight.coverage_gap),
                "last_seen": c.last_seen,
                "points": c.points,
                "bounty": c.bounty,
                "route_m": route_m.get(&c.cell).map(|m| m.round()),
            }),
        )
    }));
    serde_json::json!({
        "at": e.at,
        "cells": e.cells.len(),
        "resolution": e.cells.first().map(|c| u8::from(c.cell.0.resolution())),
        "route_m": planned.cells.iter().map(|c| c.1).sum::<f64>().round(),
        "points": e.points,
        "bounty": e.bounty,
        "base": e.base,
        "total": e.total,
        "basis": {
            "trailing_epochs": e.trailing,
            "points": "one capture per cell (a camera drive's first frame there) at the planned \
                       time: points × demand × staleness × coverage factor; radio not counted",
            "range": "base units = base_pool × points / (epoch total + points) under each \
                      trailing closed epoch: expected under the median, low under the busiest, \
                      high under the quietest; null without a closed epoch with points",
            "bounty": "open bounties still live at the planned time, budget / cells each, at \
                       most the epoch's bounty pool; paid only to a cell's first capture",
        },
        "hexagons": hexagons,
    })
}

type CellStates = HashMap<Cell, covermap_store::DemandCellState>;
type CellBounties = HashMap<Cell, Vec<OpenBounty>>;

/// The demand map's state of `cells` at `at` and their open bounties, read run by run along the
/// route so that each box stays small whatever the route's extent.
async fn stored_state(
    store: &dyn Store,
    policy: &RewardPolicy,
    cells: &[Cell],
    at: DateTime<Utc>,
) -> Result<(CellStates, CellBounties), StoreError> {
    let since = at - policy.coverage_window();
    let wanted: std::collections::HashSet<Cell> = cells.iter().copied().collect();
    let (mut states, mut bounties) = (CellStates::new(), CellBounties::new());
    for run in cells.chunks(CHUNK) {
        let Some(bbox) = BoundingBox::around_cells(run) else {
            continue;
        };
        for s in store.demand_cells(bbox, at, since, 100_000).await? {
            if wanted.contains(&s.cell) {
                states.insert(s.cell, s);
            }
        }
        for b in store.open_bounty_cells(bbox, at, 100_000).await? {
            if !wanted.contains(&b.cell) || b.cells == 0 {
                continue;
            }
            let list = bounties.entry(b.cell).or_default();
            if !list.iter().any(|o| o.area == b.area) {
                list.push(OpenBounty {
                    area: b.area,
                    per_cell: b.budget / b.cells,
                    left: b.budget.saturating_sub(b.paid),
                    created_at: b.created_at,
                    expires_at: b.expires_at,
                });
            }
        }
    }
    Ok((states, bounties))
}

/// The last [`TRAILING_EPOCHS`] closed epochs (before `before`, where given), oldest first, with
/// their total points and base pools.
pub async fn trailing_epochs(
    store: &dyn Store,
    before: Option<u64>,
) -> Result<Vec<TrailingEpoch>, StoreError> {
    let mut closed: Vec<_> = store
        .epochs()
        .await?
        .into_iter()
        .filter(|e| e.status == "closed" && before.is_none_or(|b| e.epoch < b))
        .collect();
    closed.sort_by_key(|e| e.epoch);
    let from = closed.len().saturating_sub(TRAILING_EPOCHS);
    let mut out = Vec::with_capacity(closed.len() - from);
    for e in &closed[from..] {
        let total_points = store
            .epoch_rewards(e.epoch)
            .await?
            .iter()
            .map(|r| r.points)
            .sum();
        let emission = e.emission.unwrap_or(0);
        out.push(TrailingEpoch {
            epoch: e.epoch,
            total_points,
            base_pool: emission.saturating_sub(e.bounty_paid.unwrap_or(0)),
        });
    }
    Ok(out)
}

/// One upload of the backtest: the estimate made at its time against what it earned.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BacktestCase {
    pub epoch: u64,
    pub upload_id: i64,
    pub contributor: String,
    pub cells: usize,
    /// Base units the estimate expected (base + bounty), and its low and high.
    pub expected: u64,
    pub low: u64,
    pub high: u64,
    /// What the contributor's amount in the epoch would lose without the upload's captures.
    pub earned: u64,
}

/// For each closed epoch with closed epochs before it, each upload with captures whose
/// contributor earned in it: the estimate made at its first capture from the state just before
/// (the epoch's inputs without it and without anything captured later), against its marginal
/// earnings (the contributor's amount in the epoch less their amount closed without the
/// upload's captures), under the policy each epoch recorded.
pub async fn backtest(store: &dyn Store) -> Result<Vec<BacktestCase>, BacktestError> {
    let mut cases = Vec::new();
    let mut closed: Vec<u64> = store
        .epochs()
        .await?
        .into_iter()
        .filter(|e| e.status == "closed")
        .map(|e| e.epoch)
        .collect();
    closed.sort_unstable();
    for n in closed {
        let stored = store
            .closed_epoch(n)
            .await?
            .ok_or(BacktestError::NotClosed(n))?;
        let policy = RewardPolicy::parse(&stored.policy)
            .map_err(|e| BacktestError::Policy(n, e.to_string()))?;
        let period = policy.period(n).ok_or(BacktestError::NotClosed(n))?;
        let inputs = store
            .epoch_inputs(&period, period.start - policy.coverage_window())
            .await?;
        let trailing = trailing_epochs(store, Some(n)).await?;
        cases.extend(epoch_cases(n, &inputs, &trailing, &policy));
    }
    Ok(cases)
}

/// Why the backtest stopped.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("epoch {0} is not closed")]
    NotClosed(u64),
    #[error("epoch {0}'s recorded policy: {1}")]
    Policy(u64, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The backtest's cases of one epoch (pure: its inputs, closed with and without each upload).
pub fn epoch_cases(
    n: u64,
    inputs: &EpochInputs,
    trailing: &[TrailingEpoch],
    policy: &RewardPolicy,
) -> Vec<BacktestCase> {
    let full = epoch::close(inputs, policy);
    let amount_of = |rewards: &[covermap_domain::rewards::ContributorReward], who: &str| {
        rewards
            .iter()
            .find(|r| r.contributor == who)
            .map_or(0, |r| r.amount)
    };
    let mut uploads: Vec<(i64, String)> = inputs
        .captures
        .iter()
        .filter_map(|c| Some((c.upload_id, c.contributor.clone()?)))
        .collect();
    uploads.sort();
    uploads.dedup();
    let mut out = Vec::new();
    for (upload, who) in uploads {
        let earned_all = amount_of(&full.rewards, &who);
        if earned_all == 0 {
            continue;
        }
        let mine: Vec<_> = inputs
            .captures
            .iter()
            .filter(|c| c.upload_id == upload)
            .collect();
        let Some(first) = mine.iter().map(|c| c.captured_at).min() else {
            continue;
        };
        let mut cells: Vec<Cell> = Vec::new();
        for c in &mine {
            if !cells.contains(&c.cell) {
                cells.push(c.cell);
            }
        }
        let mut without = inputs.clone();
        without.captures.retain(|c| c.upload_id != upload);
        let earned =
            earned_all.saturating_sub(amount_of(&epoch::close(&without, policy).rewards, &who));
        let outlook = estimate::outlook_in_epoch(inputs, &cells, first, upload, policy);
        let e = estimate::estimate(&outlook, first, trailing, policy);
        let Some(total) = e.total else { continue };
        out.push(BacktestCase {
            epoch: n,
            upload_id: upload,
            contributor: who,
            cells: cells.len(),
            expected: total.expected,
            low: total.low,
            high: total.high,
            earned,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-03-10T12:00:00Z".parse().unwrap()
    }

    fn route(coords: serde_json::Value) -> EstimateRequest {
        EstimateRequest {
            route: Some(serde_json::json!({"type": "LineString", "coordinates": coords})),
            ..Default::default()
        }
    }

    fn refused(req: &EstimateRequest) -> EstimateError {
        planned_cells(req, h3o::Resolution::Eleven, now()).unwrap_err()
    }

    #[test]
    fn a_line_is_cut_into_the_cells_it_crosses() {
        let p = planned_cells(
            &route(serde_json::json!([[7.4246, 43.7384], [7.4300, 43.7420]])),
            h3o::Resolution::Eleven,
            now(),
        )
        .unwrap();
        assert!(p.cells.len() >= 10, "{}", p.cells.len());
        assert_eq!(p.at, now());
    }

    #[test]
    fn bad_routes_are_refused_naming_the_field() {
        let e = refused(&route(serde_json::json!([[7.42, 91.0], [7.43, 43.7]])));
        assert_eq!((e.code, e.field), ("invalid_route", "route"));
        assert!(e.message.contains("latitude"), "{e}");
        let e = refused(&route(serde_json::json!([[7.42, 43.7]])));
        assert_eq!(e.code, "invalid_route");
        // From Monaco to Paris: far past the cap.
        let e = refused(&route(serde_json::json!([[7.42, 43.73], [2.35, 48.85]])));
        assert_eq!(e.code, "route_too_long");
        let e = refused(&EstimateRequest {
            gpx: Some("<gpx><trk><trkseg><trkpt lat=\"NaN\" lon=\"7.4\"/>".into()),
            ..Default::default()
        });
        assert_eq!(e.field, "gpx");
        let e = refused(&EstimateRequest::default());
        assert_eq!(e.code, "invalid_route");
    }

    #[test]
    fn a_time_too_far_back_or_ahead_is_refused_with_its_limits() {
        let mut req = route(serde_json::json!([[7.4246, 43.7384], [7.4300, 43.7420]]));
        req.at = Some(now() + Duration::days(31));
        let e = refused(&req);
        assert_eq!((e.code, e.field), ("invalid_time", "at"));
        assert!(e.message.contains("30 days"), "{e}");
        req.at = Some(now() - Duration::hours(25));
        assert_eq!(refused(&req).code, "invalid_time");
    }
}
