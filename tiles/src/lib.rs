//! covermap tiles: map output from scored cells and roads.
//!
//! GeoJSON (hexagons of coverage with their freshness, road lines) for the JSON API; Mapbox Vector
//! Tiles 2.1 ([`mvt`]) in the Web Mercator tile grid ([`tile`]), with the map's layers built from
//! cell and road rows ([`layers`]); PMTiles v3 archives ([`pmtiles`]) for static hosting; the
//! glyphs the map draws road names with, from a bundled font ([`glyphs`]); the coverage map held
//! in memory, parents kept per resolution as cells change, so a tile needs no query ([`index`]). It
//! computes nothing about worth — that comes from `scoring` — and reads nothing from storage.

pub mod glyphs;
pub mod index;
pub mod layers;
pub mod mvt;
pub mod pmtiles;
pub mod tile;

use chrono::{DateTime, Utc};
use covermap_domain::{Cell, CellCoverage, ImageryCellSummary, RadioCellSummary, RoadSegment};
use covermap_scoring::{RewardPolicy, freshness};
use serde_json::{Value, json};

/// A GeoJSON FeatureCollection with one hexagon per covered cell.
pub fn coverage_geojson(
    cells: &[CellCoverage],
    now: DateTime<Utc>,
    policy: &RewardPolicy,
) -> Value {
    let features: Vec<Value> = cells
        .iter()
        .map(|c| {
            let ring = hexagon(c.cell);
            json!({
                "type": "Feature",
                "id": c.cell.to_string(),
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "cell": c.cell.to_string(),
                    "fixes": c.fixes,
                    "uploads": c.uploads,
                    "devices": c.devices,
                    "first_seen": c.first_seen,
                    "last_seen": c.last_seen,
                    "freshness": (freshness(c.last_seen, now, policy) * 1000.0).round() / 1000.0,
                }
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "policy_version": policy.rules.version, "features": features})
}

/// A cell's hexagon as a closed GeoJSON ring of `[lon, lat]`.
fn hexagon(cell: Cell) -> Vec<[f64; 2]> {
    let mut ring: Vec<[f64; 2]> = cell
        .0
        .boundary()
        .iter()
        .map(|ll| [round7(ll.lng()), round7(ll.lat())])
        .collect();
    if let Some(first) = ring.first().copied() {
        ring.push(first);
    }
    ring
}

/// A GeoJSON FeatureCollection with one hexagon per cell where radio was measured.
pub fn radio_geojson(cells: &[RadioCellSummary]) -> Value {
    hexagons(cells.iter().map(|c| {
        (
            c.cell,
            json!({
                "observations": c.observations,
                "emitters": c.emitters,
                "cells_seen": c.cells_seen,
                "wifi_seen": c.wifi_seen,
                "bluetooth_seen": c.bluetooth_seen,
                "best_signal_dbm": c.best_signal_dbm,
                "last_seen": c.last_seen,
            }),
        )
    }))
}

/// A GeoJSON FeatureCollection with one hexagon per cell that has published imagery: how many
/// frames, from how many contributors, on how many road segments, and how fresh.
pub fn imagery_geojson(cells: &[ImageryCellSummary]) -> Value {
    hexagons(cells.iter().map(|c| {
        (
            c.cell,
            json!({
                "frames": c.frames,
                "contributors": c.contributors,
                "segments": c.segments,
                "newest": c.newest,
                "oldest": c.oldest,
            }),
        )
    }))
}

/// A FeatureCollection of cells' hexagons with their properties; each also carries its cell id
/// as the feature id and as a `cell` property (an H3 index does not fit a JavaScript number).
pub fn hexagons(cells: impl Iterator<Item = (Cell, Value)>) -> Value {
    let features: Vec<Value> = cells
        .map(|(cell, mut properties)| {
            if let Some(p) = properties.as_object_mut() {
                p.insert("cell".into(), cell.to_string().into());
            }
            json!({
                "type": "Feature",
                "id": cell.to_string(),
                "geometry": {"type": "Polygon", "coordinates": [hexagon(cell)]},
                "properties": properties,
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

/// A GeoJSON FeatureCollection with one LineString per road segment.
pub fn roads_geojson(segments: &[RoadSegment]) -> Value {
    let features: Vec<Value> = segments
        .iter()
        .map(|s| {
            let coords: Vec<[f64; 2]> = s.points.iter().map(|p| [p.lon, p.lat]).collect();
            json!({
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": coords},
                "properties": {
                    "osm_way_id": s.osm_way_id,
                    "piece": s.piece,
                    "highway": s.highway,
                    "name": s.name,
                    "oneway": s.oneway,
                    "length_m": (s.length_m * 10.0).round() / 10.0,
                }
            })
        })
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

fn round7(v: f64) -> f64 {
    (v * 1e7).round() / 1e7
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use covermap_domain::{Cell, LatLon};

    #[test]
    fn a_cell_becomes_a_closed_hexagon_with_its_counts() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        let cell = Cell(
            h3o::LatLng::new(43.7384, 7.4246)
                .unwrap()
                .to_cell(h3o::Resolution::Eleven),
        );
        let fc = coverage_geojson(
            &[CellCoverage {
                cell,
                fixes: 5,
                uploads: 2,
                devices: 1,
                first_seen: now - chrono::Duration::days(14),
                last_seen: now - chrono::Duration::days(7),
            }],
            now,
            &RewardPolicy::shipped(),
        );
        let f = &fc["features"][0];
        let ring = f["geometry"]["coordinates"][0].as_array().unwrap();
        assert_eq!(ring.len(), 7, "six corners and the closing one");
        assert_eq!(ring[0], ring[6]);
        assert_eq!(f["properties"]["fixes"], 5);
        assert_eq!(f["properties"]["freshness"], 0.5);
        assert_eq!(f["properties"]["cell"], cell.to_string());
        let lon = ring[0][0].as_f64().unwrap();
        assert!((lon - 7.4246).abs() < 0.001);
    }

    #[test]
    fn a_road_becomes_a_line() {
        let a = LatLon::new(43.0, 7.0).unwrap();
        let b = LatLon::new(43.001, 7.0).unwrap();
        let fc = roads_geojson(&[RoadSegment {
            osm_way_id: 1,
            piece: 0,
            osm_node_ids: vec![1, 2],
            points: vec![a, b],
            highway: "primary".into(),
            name: Some("Main".into()),
            oneway: false,
            length_m: a.distance_m(b),
        }]);
        assert_eq!(fc["features"][0]["geometry"]["coordinates"][1][1], 43.001);
        assert_eq!(fc["features"][0]["properties"]["length_m"], 111.2);
    }
}
