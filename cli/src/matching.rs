//! `covermap match`: map-match a GPX track, or a batch of traces in the benchmark's CSV format.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use covermap_roads::matching::{MatchParams, MatchResult, RoadGraph, TracePoint};
use serde_json::{Value, json};

#[derive(Debug, Clone, Args)]
pub struct MatchArgs {
    /// Road network: .osm.pbf, or OSM XML (.osm, .osm.gz, .osm.bz2).
    #[arg(long, value_name = "FILE")]
    pub roads: PathBuf,
    /// A GPX track: prints one GeoJSON Feature of the matched path.
    #[arg(
        long,
        value_name = "TRACK.gpx",
        conflicts_with = "points",
        required_unless_present = "points"
    )]
    pub gpx: Option<PathBuf>,
    /// A CSV of traces (trace_id,seq,time_s,lat,lon; other columns ignored): writes one JSON line
    /// per trace to --out.
    #[arg(long, value_name = "POINTS.csv", requires = "out")]
    pub points: Option<PathBuf>,
    /// Where the JSON lines of --points go.
    #[arg(long, value_name = "OUT.jsonl")]
    pub out: Option<PathBuf>,
    /// With --points: write {"n_points", "match_wall_s"} (matching only) here.
    #[arg(long, value_name = "T.json")]
    pub timing: Option<PathBuf>,
    /// Standard deviation of the GPS noise, metres.
    #[arg(long, default_value_t = 10.0, value_name = "M")]
    pub sigma: f64,
}

pub fn run(args: &MatchArgs, resolution: h3o::Resolution) -> anyhow::Result<()> {
    if !(args.sigma.is_finite() && args.sigma > 0.0 && args.sigma <= 500.0) {
        bail!("--sigma must be a number of metres between 0 and 500");
    }
    let network = covermap_roads::osm::read(&args.roads)?;
    let graph = RoadGraph::new(network);
    let params = MatchParams::for_sigma(args.sigma);
    if let Some(gpx) = &args.gpx {
        let feature = match_gpx(&graph, gpx, &params, resolution)?;
        println!("{feature}");
        return Ok(());
    }
    let (Some(points), Some(out)) = (&args.points, &args.out) else {
        bail!("give --gpx, or --points with --out");
    };
    let traces = read_points(points)?;
    let mut matcher = graph.matcher();
    let mut lines = Vec::with_capacity(traces.len());
    let mut wall = 0.0;
    let mut n_points = 0;
    for (id, pts) in &traces {
        n_points += pts.len();
        let started = Instant::now();
        let result = matcher.match_trace(pts, &params);
        wall += started.elapsed().as_secs_f64();
        lines.push(match result {
            Ok(r) if !r.pieces.is_empty() => {
                json!({"trace_id": id, "geometry": multi_line(&r), "length_m": r.length_m()})
            }
            Ok(_) => json!({"trace_id": id, "error": "no fix could be placed on a road"}),
            Err(e) => json!({"trace_id": id, "error": e.to_string()}),
        });
    }
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?,
    );
    for line in &lines {
        writeln!(file, "{line}")?;
    }
    file.flush()?;
    if let Some(timing) = &args.timing {
        std::fs::write(
            timing,
            json!({"n_points": n_points, "match_wall_s": wall, "traces": traces.len()}).to_string(),
        )
        .with_context(|| format!("cannot write {}", timing.display()))?;
    }
    eprintln!(
        "matched {} traces, {n_points} points in {wall:.3} s ({:.0} points/s)",
        traces.len(),
        n_points as f64 / wall.max(1e-9)
    );
    Ok(())
}

fn match_gpx(
    graph: &RoadGraph,
    path: &Path,
    params: &MatchParams,
    resolution: h3o::Resolution,
) -> anyhow::Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let raw = covermap_ingest::read_gpx_points(&bytes)
        .with_context(|| format!("{} is not a usable GPX track", path.display()))?;
    let t0 = raw.iter().find_map(|p| p.2);
    let points: Vec<TracePoint> = raw
        .iter()
        .map(|&(lat, lon, time)| TracePoint {
            lat,
            lon,
            time_s: match (time, t0) {
                (Some(t), Some(t0)) => (t - t0).as_seconds_f64(),
                _ => f64::NAN,
            },
        })
        .collect();
    let result = graph
        .matcher()
        .match_trace(&points, params)
        .with_context(|| format!("cannot match {}", path.display()))?;
    let snapped = result.snaps.iter().filter(|s| s.is_some()).count();
    if result.pieces.is_empty() {
        bail!(
            "no fix of {} ({} fixes) could be placed on a road of the network ({} road segments): \
             is the track inside the area of --roads?",
            path.display(),
            points.len(),
            graph.network().segments.len()
        );
    }
    Ok(json!({
        "type": "Feature",
        "geometry": multi_line(&result),
        "properties": {
            "length_m": (result.length_m() * 10.0).round() / 10.0,
            "streets": result.streets(graph),
            "osm_node_ids": result.pieces.iter().map(|p| p.osm_node_ids.clone()).collect::<Vec<_>>(),
            "pieces": result.pieces.len(),
            "cells": result.pieces.iter()
                .flat_map(|p| covermap_roads::cut_matched(p, resolution))
                .map(|c| json!({
                    "cell": c.cell.to_string(),
                    "osm_way_id": graph.network().segments[c.segment].osm_way_id,
                    "length_m": (c.length_m * 10.0).round() / 10.0,
                }))
                .collect::<Vec<_>>(),
            "fixes": points.len(),
            "fixes_matched": snapped,
            "snapped": result.snaps.iter().map(|s| s.map(|s| json!({
                "lat": s.pos.lat, "lon": s.pos.lon,
                "distance_m": (s.distance_m * 10.0).round() / 10.0,
                "confidence": (s.confidence * 1000.0).round() / 1000.0,
                "osm_way_id": graph.network().segments[s.segment].osm_way_id,
            }))).collect::<Vec<_>>(),
        }
    }))
}

fn multi_line(result: &MatchResult) -> Value {
    let lines: Vec<Vec<[f64; 2]>> = result
        .pieces
        .iter()
        .map(|p| p.coords.iter().map(|c| [c.lon, c.lat]).collect())
        .collect();
    json!({"type": "MultiLineString", "coordinates": lines})
}

/// Traces in first-seen order, each sorted by `seq`.
fn read_points(path: &Path) -> anyhow::Result<Vec<(String, Vec<TracePoint>)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("{} has no column {name:?}", path.display()))
    };
    let (c_id, c_seq, c_time, c_lat, c_lon) = (
        col("trace_id")?,
        col("seq")?,
        col("time_s")?,
        col("lat")?,
        col("lon")?,
    );
    let mut order: Vec<String> = Vec::new();
    let mut traces: HashMap<String, Vec<(i64, TracePoint)>> = HashMap::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let get = |c: usize| f.get(c).copied().unwrap_or("").trim();
        let bad = || format!("{} line {}: unreadable row {line:?}", path.display(), n + 2);
        let id = get(c_id).to_owned();
        let seq: i64 = get(c_seq).parse().with_context(bad)?;
        let point = TracePoint {
            lat: get(c_lat).parse().with_context(bad)?,
            lon: get(c_lon).parse().with_context(bad)?,
            time_s: get(c_time).parse().unwrap_or(f64::NAN),
        };
        if !traces.contains_key(&id) {
            order.push(id.clone());
        }
        traces.entry(id).or_default().push((seq, point));
    }
    Ok(order
        .into_iter()
        .map(|id| {
            let mut pts = traces.remove(&id).unwrap_or_default();
            pts.sort_by_key(|p| p.0);
            (id, pts.into_iter().map(|p| p.1).collect())
        })
        .collect())
}
