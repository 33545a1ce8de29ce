//! The in-memory index draws the `coverage` layer as the rows under a tile draw it
//! ([`layers::coverage`], the store's path), at every zoom, after any sequence of changes; read
//! back with an independent decoder.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, TimeZone, Utc};
use covermap_domain::{Cell, CellObserved, MapCellState};
use covermap_scoring::RewardPolicy;
use covermap_tiles::index::MapIndex;
use covermap_tiles::layers::{self, CoverageCell};
use covermap_tiles::mvt;
use covermap_tiles::tile::{self, TileId};
use geo_types::Geometry;
use h3o::{LatLng, Resolution};
use mvt_reader::Reader;
use mvt_reader::feature::Value;

const FINEST: Resolution = Resolution::Eleven;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

/// A deterministic spread of cells around Monaco: observed ones, road-only ones, both.
fn cells(seed: u64, count: usize) -> Vec<MapCellState> {
    let centre = LatLng::new(43.7384, 7.4246)
        .unwrap()
        .to_cell(Resolution::Seven);
    let mut x = seed;
    let mut next = || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        x >> 33
    };
    let mut out = BTreeMap::new();
    let all: Vec<_> = centre
        .grid_disk::<Vec<_>>(1)
        .into_iter()
        .flat_map(|c| c.children(FINEST))
        .collect();
    while out.len() < count {
        let cell = all[next() as usize % all.len()];
        let kind = next() % 4;
        let observed = (kind != 0).then(|| CellObserved {
            fixes: 1 + (next() % 50) as i64,
            uploads: 1 + (next() % 5) as i64,
            devices: 1 + (next() % 3) as i64,
            last_seen: now() - Duration::seconds((next() % 5_000_000) as i64),
        });
        let road = if kind == 1 {
            0.0
        } else {
            (1 + next() % 300) as f64
        };
        out.insert(
            cell,
            MapCellState {
                cell: Cell(cell),
                observed,
                road_length_m: road,
                driven_m: if road > 0.0 {
                    (next() % 300) as f64
                } else {
                    0.0
                },
                driven_until: None,
            },
        );
    }
    out.into_values().collect()
}

/// The tile as the store's path draws it from every row.
fn from_rows(states: &[MapCellState], t: TileId) -> Vec<u8> {
    let res = tile::resolution_for_zoom(t.z, FINEST);
    let rows: Vec<CoverageCell> = states
        .iter()
        .filter_map(|s| {
            s.observed.map(|o| CoverageCell {
                cell: s.cell,
                observations: o.fixes,
                uploads: o.uploads,
                contributors: o.devices,
                last_seen: o.last_seen,
            })
        })
        .collect();
    let roads: HashMap<Cell, (f64, f64)> = states
        .iter()
        .map(|s| (s.cell, (s.road_length_m, s.driven_m)))
        .collect();
    let layer = layers::coverage(t, res, &rows, &roads, now(), &RewardPolicy::shipped());
    mvt::encode(&[layer])
}

fn from_index(index: &MapIndex, t: TileId) -> Vec<u8> {
    let layer = index
        .coverage(t, now(), &RewardPolicy::shipped())
        .expect("a level for every zoom served");
    mvt::encode(&[layer])
}

/// Features by cell (the `cell` property): properties and outline (tile units).
type Decoded = BTreeMap<u64, (Vec<(String, String)>, Vec<(f32, f32)>)>;

fn decode(bytes: Vec<u8>) -> Decoded {
    if bytes.is_empty() {
        return BTreeMap::new();
    }
    let reader = Reader::new(bytes).expect("a tile");
    let mut out = BTreeMap::new();
    for f in reader.get_features(0).expect("layer 0") {
        let mut props: Vec<(String, String)> = f
            .properties
            .as_ref()
            .expect("properties")
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                (k.clone(), v)
            })
            .collect();
        props.sort();
        let ring = match &f.geometry {
            Geometry::Polygon(p) => p.exterior().0.iter().map(|c| (c.x, c.y)).collect(),
            Geometry::MultiPolygon(m) if m.0.len() == 1 => {
                m.0[0].exterior().0.iter().map(|c| (c.x, c.y)).collect()
            }
            other => panic!("expected a polygon, got {other:?}"),
        };
        assert!(f.id.is_none(), "no numeric id: the cell is the id");
        let cell = props
            .iter()
            .find(|(k, _)| k == "cell")
            .map(|(_, v)| u64::from_str_radix(v, 16).expect("a hex cell id"))
            .expect("a cell");
        out.insert(cell, (props, ring));
    }
    out
}

/// The same features with the same properties, outlines within a tile unit (the index keeps
/// outlines as offsets from the centre).
fn assert_same(index: Decoded, rows: Decoded, t: TileId) {
    assert_eq!(
        index.keys().collect::<Vec<_>>(),
        rows.keys().collect::<Vec<_>>(),
        "the same hexagons in {t}"
    );
    for (id, (props, ring)) in &index {
        let (want_props, want_ring) = &rows[id];
        assert_eq!(props, want_props, "properties of {id:x} in {t}");
        assert_eq!(ring.len(), want_ring.len(), "outline of {id:x} in {t}");
        for (a, b) in ring.iter().zip(want_ring) {
            assert!(
                (a.0 - b.0).abs() <= 1.0 && (a.1 - b.1).abs() <= 1.0,
                "outline of {id:x} in {t}: {a:?} against {b:?}"
            );
        }
    }
}

fn tiles_over(states: &[MapCellState]) -> Vec<TileId> {
    let b = tile::bounds_of(states.iter().map(|s| {
        let ll = LatLng::from(s.cell.0);
        (ll.lng(), ll.lat())
    }));
    let mut out = Vec::new();
    for z in [6, 9, 10, 11, 12, 13, 14, 15, 16] {
        out.extend(tile::tiles_covering(b, z));
    }
    out
}

fn index_of(states: &[MapCellState]) -> MapIndex {
    MapIndex::of(FINEST, 6, states)
}

#[test]
fn the_index_draws_what_the_rows_draw_at_every_zoom() {
    let states = cells(7, 4_000);
    let index = index_of(&states);
    assert_eq!(index.len(), states.len());
    let tiles = tiles_over(&states);
    assert!(tiles.len() > 40, "{} tiles", tiles.len());
    let mut drawn = 0;
    for t in tiles {
        let got = decode(from_index(&index, t));
        drawn += got.len();
        assert_same(got, decode(from_rows(&states, t)), t);
    }
    assert!(drawn > 4_000, "{drawn} hexagons drawn");
}

#[test]
fn parents_follow_their_children_through_changes() {
    let mut states = cells(11, 3_000);
    let mut index = index_of(&states);
    // Change a third of the cells, empty a sixth, add new ones: as the change feed reports them.
    let added = cells(12, 500);
    let mut asked = Vec::new();
    for (i, s) in states.iter_mut().enumerate() {
        match i % 6 {
            0 => {
                s.observed = None;
                s.road_length_m = 0.0;
                s.driven_m = 0.0;
                asked.push(s.cell);
            }
            1 | 2 => {
                if let Some(o) = s.observed.as_mut() {
                    o.fixes += 10;
                    o.last_seen -= Duration::days(3);
                    o.devices = 1;
                }
                s.driven_m /= 2.0;
                asked.push(s.cell);
            }
            _ => {}
        }
    }
    let mut merged: BTreeMap<Cell, MapCellState> = states
        .into_iter()
        .filter(|s| s.observed.is_some() || s.road_length_m > 0.0)
        .map(|s| (s.cell, s))
        .collect();
    for s in added {
        asked.push(s.cell);
        merged.insert(s.cell, s);
    }
    let found: Vec<MapCellState> = asked
        .iter()
        .filter_map(|c| merged.get(c).copied())
        .collect();
    index.apply(&asked, &found);
    let final_states: Vec<MapCellState> = merged.into_values().collect();
    assert_eq!(index.len(), final_states.len());
    let fresh = index_of(&final_states);
    assert_eq!(
        index.cells_held(),
        fresh.cells_held(),
        "no parent left behind"
    );
    for t in tiles_over(&final_states) {
        let got = decode(from_index(&index, t));
        assert_same(got.clone(), decode(from_rows(&final_states, t)), t);
        assert_eq!(got, decode(from_index(&fresh, t)), "{t} as if built afresh");
    }
}

#[test]
fn a_cell_is_due_when_its_oldest_drive_leaves_the_window() {
    let mut states = cells(3, 10);
    states[0].driven_until = Some(now() + Duration::hours(1));
    states[1].driven_until = Some(now() + Duration::days(2));
    let mut index = index_of(&states);
    assert!(index.due(now()).is_empty());
    assert_eq!(index.due(now() + Duration::hours(2)), vec![states[0].cell]);
    // Read again: its drive has left, nothing more is due for it.
    let mut again = states[0];
    again.driven_m = 0.0;
    again.driven_until = None;
    index.apply(&[again.cell], &[again]);
    assert!(index.due(now() + Duration::hours(2)).is_empty());
    assert_eq!(index.due(now() + Duration::days(3)), vec![states[1].cell]);
}
