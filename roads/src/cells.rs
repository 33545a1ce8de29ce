//! Where in the H3 grid a drive was.
//!
//! Resolution 11 is the default: its hexagons have a mean edge of about 28 m and an area of about
//! 2,150 m² (H3's published resolution table), so a 100–150 m city block spans four to six cells
//! and a cell rarely holds two parallel streets. Coarser cells (10: ~76 m edge) blur a block into
//! one or two cells; finer ones (12: ~11 m) split a single lane and multiply rows tenfold.

use std::collections::BTreeMap;

use covermap_domain::{Cell, CellVisit, Fix, LatLon, MatchedStretch, RoadCell, RoadSegment};
use h3o::{LatLng, Resolution};

use crate::matching::MatchedPiece;

pub const DEFAULT_RESOLUTION: Resolution = Resolution::Eleven;

/// The cell a position falls in; `None` only for coordinates H3 refuses (never a valid LatLon).
pub fn cell_of(pos: LatLon, resolution: Resolution) -> Option<Cell> {
    LatLng::new(pos.lat, pos.lon)
        .ok()
        .map(|ll| Cell(ll.to_cell(resolution)))
}

/// Groups fixes by the cell they fall in, with how many and when; ordered by cell.
pub fn index_fixes(fixes: &[Fix], resolution: Resolution) -> Vec<CellVisit> {
    let mut visits: BTreeMap<Cell, CellVisit> = BTreeMap::new();
    for fix in fixes {
        let Ok(ll) = LatLng::new(fix.pos.lat, fix.pos.lon) else {
            continue;
        };
        let cell = Cell(ll.to_cell(resolution));
        visits
            .entry(cell)
            .and_modify(|v| {
                v.fixes += 1;
                v.first_seen = v.first_seen.min(fix.at);
                v.last_seen = v.last_seen.max(fix.at);
            })
            .or_insert(CellVisit {
                cell,
                fixes: 1,
                first_seen: fix.at,
                last_seen: fix.at,
            });
    }
    visits.into_values().collect()
}

/// A stretch of driven (or drivable) road inside one cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellStretch {
    pub cell: Cell,
    /// Index into the network's segments.
    pub segment: usize,
    pub length_m: f64,
}

/// Cuts a polyline into per-cell lengths. Each piece of the line is walked in steps of a fifth
/// of the cell edge and each step counted in the cell of its midpoint, so a line crossing a cell
/// corner is split within a few metres of where the boundary is. `segment_of(i)` names the
/// segment of the stretch from point `i` to point `i + 1`; consecutive steps in the same cell and
/// segment are merged.
fn cut_polyline(
    points: &[LatLon],
    resolution: Resolution,
    segment_of: impl Fn(usize) -> usize,
    out: &mut Vec<CellStretch>,
) {
    let step = resolution.edge_length_m() / 5.0;
    for (i, w) in points.windows(2).enumerate() {
        let (a, b) = (w[0], w[1]);
        let len = a.distance_m(b);
        if len <= 0.0 {
            continue;
        }
        let n = (len / step).ceil().max(1.0) as usize;
        let segment = segment_of(i);
        for k in 0..n {
            let f = (k as f64 + 0.5) / n as f64;
            let Ok(ll) = LatLng::new(a.lat + (b.lat - a.lat) * f, a.lon + (b.lon - a.lon) * f)
            else {
                continue;
            };
            let cell = Cell(ll.to_cell(resolution));
            match out.last_mut() {
                Some(last) if last.cell == cell && last.segment == segment => {
                    last.length_m += len / n as f64;
                }
                _ => out.push(CellStretch {
                    cell,
                    segment,
                    length_m: len / n as f64,
                }),
            }
        }
    }
}

/// The cells a matched piece drove through, in driving order, with the segment and length of
/// each stretch.
pub fn cut_matched(piece: &MatchedPiece, resolution: Resolution) -> Vec<CellStretch> {
    let mut out = Vec::new();
    cut_polyline(
        &piece.coords,
        resolution,
        |i| piece.point_segments.get(i).copied().unwrap_or(0),
        &mut out,
    );
    out
}

/// The cells a planned route (a polyline, not matched to roads) crosses, each once in the order
/// first reached, with the length of the route inside it.
pub fn cut_route(points: &[LatLon], resolution: Resolution) -> Vec<(Cell, f64)> {
    let mut stretches = Vec::new();
    cut_polyline(points, resolution, |_| 0, &mut stretches);
    let mut at: std::collections::HashMap<Cell, usize> = std::collections::HashMap::new();
    let mut out: Vec<(Cell, f64)> = Vec::new();
    for s in stretches {
        match at.get(&s.cell) {
            Some(&i) => out[i].1 += s.length_m,
            None => {
                at.insert(s.cell, out.len());
                out.push((s.cell, s.length_m));
            }
        }
    }
    out
}

/// Every cell's total road length: the denominator of coverage. Ordered by cell.
pub fn road_length_per_cell(segments: &[RoadSegment], resolution: Resolution) -> Vec<RoadCell> {
    let mut out = Vec::new();
    for (si, s) in segments.iter().enumerate() {
        cut_polyline(&s.points, resolution, |_| si, &mut out);
    }
    let mut per_cell: BTreeMap<Cell, f64> = BTreeMap::new();
    for stretch in out {
        *per_cell.entry(stretch.cell).or_insert(0.0) += stretch.length_m;
    }
    per_cell
        .into_iter()
        .map(|(cell, road_length_m)| RoadCell {
            cell,
            road_length_m,
        })
        .collect()
}

/// A whole match cut into cells, each stretch named by its OSM way and piece, in driving order.
pub fn matched_stretches(
    result: &crate::matching::MatchResult,
    graph: &crate::matching::RoadGraph,
    resolution: Resolution,
) -> Vec<MatchedStretch> {
    let segments = &graph.network().segments;
    result
        .pieces
        .iter()
        .enumerate()
        .flat_map(|(k, piece)| {
            cut_matched(piece, resolution)
                .into_iter()
                .map(move |c| MatchedStretch {
                    match_piece: k as u32,
                    cell: c.cell,
                    osm_way_id: segments[c.segment].osm_way_id,
                    way_piece: segments[c.segment].piece,
                    length_m: c.length_m,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use covermap_domain::LatLon;

    #[test]
    fn fixes_group_by_cell_with_counts_and_times() {
        let t = |s| Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, s).unwrap();
        let fix = |lat, lon, s| Fix {
            at: t(s),
            pos: LatLon::new(lat, lon).unwrap(),
            accuracy_m: None,
        };
        // Two fixes a metre apart share a cell; one 500 m away does not.
        let fixes = [
            fix(43.73840, 7.42460, 0),
            fix(43.73841, 7.42461, 1),
            fix(43.74290, 7.42460, 30),
        ];
        let visits = index_fixes(&fixes, DEFAULT_RESOLUTION);
        assert_eq!(visits.len(), 2);
        let shared = visits.iter().find(|v| v.fixes == 2).unwrap();
        assert_eq!((shared.first_seen, shared.last_seen), (t(0), t(1)));
        assert_eq!(shared.cell.0.resolution(), Resolution::Eleven);
        assert!(visits.windows(2).all(|w| w[0].cell < w[1].cell));
    }

    #[test]
    fn a_line_is_cut_into_cells_that_add_up_to_its_length() {
        let a = LatLon::new(43.7384, 7.4246).unwrap();
        let b = LatLon::new(43.7420, 7.4300).unwrap();
        let piece = MatchedPiece {
            coords: vec![a, b],
            point_segments: vec![3],
            length_m: a.distance_m(b),
            ..Default::default()
        };
        let cut = cut_matched(&piece, DEFAULT_RESOLUTION);
        let total: f64 = cut.iter().map(|c| c.length_m).sum();
        assert!(
            (total - piece.length_m).abs() < 1e-6,
            "{total} vs {}",
            piece.length_m
        );
        // About 590 m through ~28 m-edged hexagons: a dozen or more cells, none twice in a row.
        assert!(cut.len() >= 10, "{}", cut.len());
        assert!(cut.windows(2).all(|w| w[0].cell != w[1].cell));
        assert!(cut.iter().all(|c| c.segment == 3));
        // Consecutive cells touch: the line never skips one.
        for w in cut.windows(2) {
            assert!(w[0].cell.0.is_neighbor_with(w[1].cell.0).unwrap_or(false));
        }
    }

    #[test]
    fn a_route_there_and_back_crosses_each_cell_once_with_both_lengths() {
        let a = LatLon::new(43.7384, 7.4246).unwrap();
        let b = LatLon::new(43.7420, 7.4300).unwrap();
        let there = cut_route(&[a, b], DEFAULT_RESOLUTION);
        let back = cut_route(&[a, b, a], DEFAULT_RESOLUTION);
        assert_eq!(
            there.iter().map(|c| c.0).collect::<Vec<_>>(),
            back.iter().map(|c| c.0).collect::<Vec<_>>()
        );
        let total: f64 = back.iter().map(|c| c.1).sum();
        assert!((total - 2.0 * a.distance_m(b)).abs() < 1e-6, "{total}");
    }

    #[test]
    fn road_length_per_cell_sums_to_the_network() {
        let net = crate::town::generate(LatLon::new(48.0, 11.0).unwrap(), 4, 120.0);
        let per_cell = road_length_per_cell(&net.segments, DEFAULT_RESOLUTION);
        let total: f64 = per_cell.iter().map(|c| c.road_length_m).sum();
        assert!((total - net.total_length_m()).abs() < 1e-6);
        assert!(per_cell.windows(2).all(|w| w[0].cell < w[1].cell));
    }
}
