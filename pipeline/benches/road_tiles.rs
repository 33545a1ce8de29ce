//! A worker's roads on a country-sized network: the whole network read at once (as workers did
//! before tiles) beside the tiles around one job. The network is 400 generated towns, 30 × 30
//! blocks of 120 m each (1,860 road segments a town, 744,000 in all), a quarter of a degree
//! apart over 5° × 5°, stored in the embedded store. Printed: for each, the time to read and
//! build, the road segments held, and the growth of the process's resident memory.
//!
//! `cargo bench -p covermap-pipeline --bench road_tiles` (a quick check at a hundredth of the
//! size under `cargo test --all-targets`).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use covermap_domain::{BoundingBox, LatLon};
use covermap_pipeline::load_roads;
use covermap_pipeline::road_tiles::{AreaRoads, RoadTiles};

/// The process's resident memory now, MiB.
fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let side: i32 = if full { 20 } else { 2 };
    let dir = tempfile::tempdir().unwrap();
    let store = covermap_store::open(None, dir.path()).await.unwrap();
    store.migrate().await.unwrap();
    let mut segments = Vec::new();
    for i in 0..side {
        for j in 0..side {
            let centre =
                LatLon::new(45.0 + f64::from(i) * 0.25, 5.0 + f64::from(j) * 0.25).unwrap();
            let mut town = covermap_roads::town::generate(centre, 30, 120.0);
            let offset = i64::from(i * side + j) * 1_000_000;
            for s in &mut town.segments {
                s.osm_way_id += offset;
                for n in &mut s.osm_node_ids {
                    *n += offset;
                }
            }
            segments.extend(town.segments);
        }
    }
    let t = Instant::now();
    store.replace_roads(&segments, &[]).await.unwrap();
    eprintln!(
        "stored {} road segments of {} towns in {:.1} s",
        segments.len(),
        side * side,
        t.elapsed().as_secs_f64()
    );
    let total = segments.len();
    drop(segments);

    // One job's track: across the middle of the first town.
    let job = BoundingBox {
        west: 4.99,
        south: 44.99,
        east: 5.01,
        north: 45.01,
    };
    let before = resident_mib();
    let t = Instant::now();
    let tiles = RoadTiles::open(store.clone(), 1_000_000).await.unwrap();
    let AreaRoads::Graph(graph) = tiles.graph_for(job).await.unwrap() else {
        panic!("the job's area has roads")
    };
    let tiled = t.elapsed();
    let t = Instant::now();
    let AreaRoads::Graph(_) = tiles.graph_for(job).await.unwrap() else {
        panic!("the job's area has roads")
    };
    let again = t.elapsed();
    let held = tiles.stats();
    let tiled_mib = resident_mib() - before;
    println!(
        "tiles around one job: {} tiles, {} segments held, graph of {} segments, read and built \
         in {:.3} s (the next job there: {:.6} s), resident memory +{:.0} MiB",
        held.tiles,
        held.segments,
        graph.network().segments.len(),
        tiled.as_secs_f64(),
        again.as_secs_f64(),
        tiled_mib
    );
    drop(graph);
    drop(tiles);

    let before = resident_mib();
    let t = Instant::now();
    let whole = load_roads(store.as_ref()).await.unwrap();
    let took = t.elapsed();
    println!(
        "the whole network: {} segments of {total}, read and built in {:.3} s, resident memory \
         +{:.0} MiB",
        whole.network().segments.len(),
        took.as_secs_f64(),
        resident_mib() - before
    );
    let _keep: Arc<_> = whole;
}
