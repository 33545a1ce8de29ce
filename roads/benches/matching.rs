//! The matcher's hot path: candidates, bounded Dijkstra and Viterbi over a 1 Hz drive on
//! Monaco's real network. `cargo bench -p covermap-roads --bench matching`.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use covermap_roads::matching::{MatchParams, RoadGraph, TracePoint};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn monaco() -> RoadGraph {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/roads/monaco.osm.pbf");
    assert!(p.exists(), "bench data {} is missing", p.display());
    RoadGraph::new(covermap_roads::osm::read(&p).unwrap())
}

/// A deterministic drive: from segment to connected segment, never straight back, sampled once a
/// second at 10 m/s, with ±`noise` metres of pseudo-random GNSS error.
fn drive(graph: &RoadGraph, seconds: usize, noise: f64) -> Vec<TracePoint> {
    let net = graph.network();
    let departures = net.departures();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut seg = 0;
    let mut path = Vec::new();
    while path.len() < seconds * 2 {
        let s = &net.segments[seg];
        path.extend(s.points.iter().copied());
        let end = s.osm_node_ids.last().unwrap();
        let next: Vec<_> = departures
            .get(end)
            .map(|d| {
                d.iter()
                    .filter(|(i, fwd)| *i != seg && *fwd)
                    .map(|(i, _)| *i)
                    .collect()
            })
            .unwrap_or_default();
        seg = if next.is_empty() {
            (seg + 1) % net.segments.len()
        } else {
            next[(rand() * next.len() as f64) as usize % next.len()]
        };
    }
    let mut out = Vec::new();
    let (mut i, mut along) = (0, 0.0);
    for t in 0..seconds {
        let mut step = 10.0;
        while i + 1 < path.len() {
            let d = path[i].distance_m(path[i + 1]);
            if along + step <= d {
                along += step;
                break;
            }
            step -= d - along;
            along = 0.0;
            i += 1;
        }
        if i + 1 >= path.len() {
            break;
        }
        let (a, b) = (path[i], path[i + 1]);
        let f = along / a.distance_m(b).max(1e-9);
        let jitter = |r: f64| (r - 0.5) * 2.0 * noise / 111_320.0;
        out.push(TracePoint {
            lat: a.lat + (b.lat - a.lat) * f + jitter(rand()),
            lon: a.lon + (b.lon - a.lon) * f + jitter(rand()) / a.lat.to_radians().cos(),
            time_s: t as f64,
        });
    }
    out
}

fn matching(c: &mut Criterion) {
    let graph = monaco();
    let track = drive(&graph, 1000, 8.0);
    let mut group = c.benchmark_group("match_trace");
    group.throughput(Throughput::Elements(track.len() as u64));
    for (name, sigma) in [("1hz_sigma5", 5.0), ("1hz_sigma15", 15.0)] {
        let params = MatchParams::for_sigma(sigma);
        let mut matcher = graph.matcher();
        group.bench_function(name, |b| {
            b.iter(|| matcher.match_trace(&track, &params).unwrap());
        });
    }
    group.finish();
    c.bench_function("road_graph_build_monaco", |b| {
        b.iter(|| RoadGraph::new(graph.network().clone()));
    });
}

criterion_group!(benches, matching);
criterion_main!(benches);
