//! The map use cases: one vector tile of one layer rendered from the store (for the server and
//! `covermap tiles export` alike), and each cell's reward weight now — the demand map, the
//! `demand` layer and a planner's preview — computed by the same function the epoch uses.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use covermap_domain::{BoundingBox, Cell};
use covermap_scoring::RewardPolicy;
use covermap_scoring::epoch::{coverage_gap, demand_multiplier, reward_weight};
use covermap_store::{Store, StoreError};
use covermap_tiles::layers::{self, CoverageCell, DemandCell, MapLayer, SeenSegment};
use covermap_tiles::tile::{self, TileId};
use h3o::Resolution;

/// Most rows one tile reads from each table.
const ROW_LIMIT: i64 = 200_000;

/// The box `[west, south, east, north]` clamped to the globe.
pub fn bbox_of(b: [f64; 4]) -> BoundingBox {
    let clamp_lat = |v: f64| v.clamp(-90.0, 90.0);
    let clamp_lon = |v: f64| v.clamp(-180.0, 180.0);
    BoundingBox {
        west: clamp_lon(b[0]),
        south: clamp_lat(b[1]),
        east: clamp_lon(b[2]),
        north: clamp_lat(b[3]),
    }
}

/// The box to read cells from for a tile drawn at `res`: the buffered tile grown by two edges of
/// a hexagon at `res`, so that each parent hexagon that reaches into the tile is summed from all
/// of its children, the same in every tile it shows in.
fn query_box(tile: TileId, res: Resolution) -> BoundingBox {
    let [w, s, e, n] = tile.buffered_bounds();
    // A child's centre lies within about two edges of its parent's boundary, and edges vary by
    // up to about 1.4× around the globe: three mean edges, on the side nearer the pole.
    let grow_lat = 3.0 * res.edge_length_m() / 111_320.0;
    let poleward = s.abs().max(n.abs()).min(89.0).to_radians().cos().max(0.01);
    let grow_lon = grow_lat / poleward;
    bbox_of([w - grow_lon, s - grow_lat, e + grow_lon, n + grow_lat])
}

/// Each cell's reward weight now and what it is made of, for the cells with roads or demand in
/// `bbox` (the demand map and the `demand` layer).
pub async fn demand_weights(
    store: &dyn Store,
    policy: &RewardPolicy,
    bbox: BoundingBox,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(DemandCell, Option<DateTime<Utc>>)>, StoreError> {
    let since = now - policy.coverage_window();
    let cells = store.demand_cells(bbox, now, since, limit).await?;
    let usage = usage_term(store, policy, now).await?;
    Ok(cells
        .iter()
        .map(|c| {
            let w = cell_weight(c, 0.0, &usage, policy, now);
            (
                DemandCell {
                    cell: c.cell,
                    weight: w.weight,
                    demand: w.demand,
                    staleness: w.staleness,
                    coverage_gap: w.coverage_gap,
                    open_bounties: c.open_bounties,
                },
                c.last_seen,
            )
        })
        .collect())
}

/// A cell's reward weight at `now` from its stored state, with `added` more area weight on it
/// than it has (0 for the weight in force; a planner's preview adds its area's).
pub fn cell_weight(
    c: &covermap_store::DemandCellState,
    added: f64,
    usage: &HashMap<Cell, u64>,
    policy: &RewardPolicy,
    now: DateTime<Utc>,
) -> covermap_scoring::epoch::CellWeight {
    let demand = demand_multiplier(c.cell, c.demand_weight + added, usage, policy);
    reward_weight(
        demand,
        c.last_seen,
        coverage_gap(c.road_length_m, c.observed_m),
        now,
        policy,
    )
}

/// The requests per cell the demand multiplier counts now: last epoch's, as the epoch being
/// filled will use them.
pub async fn usage_term(
    store: &dyn Store,
    policy: &RewardPolicy,
    now: DateTime<Utc>,
) -> Result<HashMap<Cell, u64>, StoreError> {
    Ok(match policy.epoch_at(now).and_then(|e| e.checked_sub(1)) {
        Some(prev) => store.usage(prev).await?.into_iter().collect(),
        None => HashMap::new(),
    })
}

/// One tile of one layer, as uncompressed MVT bytes (empty where nothing is under it).
pub async fn render(
    store: &dyn Store,
    policy: &RewardPolicy,
    finest: Resolution,
    layer: MapLayer,
    tile: TileId,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, StoreError> {
    let res = tile::resolution_for_zoom(tile.z, finest);
    let built = match layer {
        MapLayer::Coverage => {
            let bbox = query_box(tile, res);
            let observed = store.coverage(bbox, ROW_LIMIT).await?;
            let since = now - policy.coverage_window();
            let roads: HashMap<Cell, (f64, f64)> = store
                .demand_cells(bbox, now, since, ROW_LIMIT)
                .await?
                .into_iter()
                .map(|c| (c.cell, (c.road_length_m, c.observed_m)))
                .collect();
            let cells: Vec<CoverageCell> = observed
                .into_iter()
                .map(|c| CoverageCell {
                    cell: c.cell,
                    observations: c.fixes,
                    uploads: c.uploads,
                    contributors: c.devices,
                    last_seen: c.last_seen,
                })
                .collect();
            layers::coverage(tile, res, &cells, &roads, now, policy)
        }
        MapLayer::Radio => {
            let bbox = query_box(tile, res);
            let cells = store.radio_coverage(bbox, ROW_LIMIT).await?;
            let samples = if cells.is_empty() {
                Vec::new()
            } else {
                store.radio_samples(bbox, ROW_LIMIT).await?
            };
            layers::radio(tile, res, &cells, &samples)
        }
        MapLayer::Demand => {
            let bbox = query_box(tile, res);
            let cells: Vec<DemandCell> = demand_weights(store, policy, bbox, now, ROW_LIMIT)
                .await?
                .into_iter()
                .map(|(c, _)| c)
                .collect();
            layers::demand(tile, res, &cells)
        }
        MapLayer::Roads => {
            let bbox = bbox_of(tile.buffered_bounds());
            let segments = store.roads(bbox, ROW_LIMIT).await?;
            let seen: HashMap<(i64, u32), DateTime<Utc>> = store
                .roads_last_seen(bbox, ROW_LIMIT)
                .await?
                .into_iter()
                .map(|s| ((s.osm_way_id, s.piece), s.last_seen))
                .collect();
            let segments: Vec<SeenSegment> = segments
                .into_iter()
                .map(|segment| SeenSegment {
                    last_seen: seen.get(&(segment.osm_way_id, segment.piece)).copied(),
                    segment,
                })
                .collect();
            layers::roads(tile, &segments, now)
        }
    };
    Ok(covermap_tiles::mvt::encode(&[built]))
}
