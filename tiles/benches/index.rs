//! The coverage map in memory: drawing a `coverage` tile from it at the harness's zooms (every
//! resolution-10 cell of a 20 km square around Monaco, as the tiles harness has them: res-8
//! parents at zoom 10, the cells themselves from zoom 12), reading a second's worth of changed
//! cells into it, and what it costs in memory per million stored cells (printed first).
//!
//! `cargo bench -p covermap-tiles --bench index` (`INDEX_MEMORY=0`: without the memory figure)
#![allow(clippy::unwrap_used, clippy::panic)]

use chrono::{Duration, TimeZone, Utc};
use covermap_domain::{Cell, CellObserved, MapCellState};
use covermap_scoring::RewardPolicy;
use covermap_tiles::index::MapIndex;
use covermap_tiles::mvt;
use covermap_tiles::tile::{self, TileId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use h3o::{LatLng, Resolution};

/// Every cell of `res` in a square `km` on a side around Monaco, with pseudo-random figures.
fn area(res: Resolution, km: f64) -> Vec<MapCellState> {
    let (lat0, lon0) = (43.74_f64, 7.42_f64);
    let dlat = km / 2.0 / 111.32;
    let dlon = km / 2.0 / (111.32 * lat0.to_radians().cos());
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state >> 11
    };
    let now = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    // A grid finer than the cells: each cell is hit, and kept once.
    let step = res.edge_length_m() / 111_320.0 / 2.0;
    let mut cells = std::collections::BTreeSet::new();
    let mut lat = lat0 - dlat;
    while lat <= lat0 + dlat {
        let mut lon = lon0 - dlon;
        while lon <= lon0 + dlon {
            cells.insert(LatLng::new(lat, lon).unwrap().to_cell(res));
            lon += step / lat.to_radians().cos();
        }
        lat += step;
    }
    cells
        .into_iter()
        .map(|c| {
            let fixes = 1 + (rand() % 200) as i64;
            MapCellState {
                cell: Cell(c),
                observed: Some(CellObserved {
                    fixes,
                    uploads: 1 + fixes / 10,
                    devices: 1 + fixes / 20,
                    last_seen: now - Duration::seconds((rand() % 2_000_000) as i64),
                }),
                road_length_m: 100.0,
                driven_m: (rand() % 100) as f64,
                driven_until: None,
            }
        })
        .collect()
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn memory_per_million() {
    // About a million resolution-11 cells: a 48 km square.
    let states = area(Resolution::Eleven, 48.0);
    let before = resident_bytes();
    let started = std::time::Instant::now();
    let index = MapIndex::of(Resolution::Eleven, 6, &states);
    let took = started.elapsed();
    let grown = resident_bytes().saturating_sub(before) as f64;
    println!(
        "map in memory: {} stored cells ({} held at every resolution) built in {:.2} s; \
         resident {:.0} MiB more: {:.0} MiB per million stored cells",
        index.len(),
        index.cells_held(),
        took.as_secs_f64(),
        grown / 1_048_576.0,
        grown / index.len() as f64 * 1e6 / 1_048_576.0
    );
}

fn bench(c: &mut Criterion) {
    // `INDEX_MEMORY=0` leaves the million-cell build out (for profiling the tiles alone).
    if std::env::var("INDEX_MEMORY").as_deref() != Ok("0") {
        memory_per_million();
    }
    let states = area(Resolution::Ten, 20.0);
    let mut index = MapIndex::of(Resolution::Ten, 6, &states);
    println!("harness area: {} resolution-10 cells", index.len());
    let now = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let policy = RewardPolicy::shipped();
    let mut g = c.benchmark_group("coverage tile from memory");
    for z in [10u8, 12, 13, 14] {
        let tiles: Vec<TileId> = tile::tiles_covering([7.30, 43.65, 7.54, 43.83], z);
        g.throughput(Throughput::Elements(tiles.len() as u64));
        g.bench_function(format!("z{z}, {} tiles", tiles.len()), |b| {
            b.iter(|| {
                let mut bytes = 0;
                for t in &tiles {
                    let layer = index.coverage(*t, now, &policy).unwrap();
                    bytes += mvt::encode(&[layer]).len();
                }
                bytes
            });
        });
    }
    g.finish();
    // A second's worth of changes: 1,000 cells read again, their parents summed again.
    let mut changed: Vec<MapCellState> = states.iter().step_by(26).take(1000).copied().collect();
    for s in &mut changed {
        if let Some(o) = s.observed.as_mut() {
            o.fixes += 1;
        }
    }
    let cells: Vec<Cell> = changed.iter().map(|s| s.cell).collect();
    let mut g = c.benchmark_group("apply changes");
    g.throughput(Throughput::Elements(cells.len() as u64));
    g.bench_function("1000 changed cells", |b| {
        b.iter(|| index.apply(&cells, &changed));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
