//! The hidden Markov model and its Viterbi decoding.

use covermap_domain::LatLon;

use super::graph::{RoadGraph, Router, dist};

/// The matcher's knobs. `MatchParams::for_sigma` gives sound defaults for a noise level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchParams {
    /// Standard deviation of GNSS noise, metres.
    pub sigma: f64,
    /// Scale of the transition's exponential, metres of |route − great circle|.
    pub beta: f64,
    /// Candidates are searched this far from a fix, metres.
    pub radius: f64,
    /// At most this many road segments are candidates for one fix.
    pub max_candidates: usize,
    /// A gap in time longer than this splits the match, seconds.
    pub max_gap_s: f64,
    /// Dense fixes (under three seconds apart) closer than this to the last kept fix are matched
    /// afterwards, metres; sparse ones only within two sigma.
    pub min_spacing_m: f64,
    /// A step back along the same road up to this far is standing still, metres.
    pub stay_tolerance_m: f64,
    /// Extra cost of turning around at the end of a segment, metres of route.
    pub uturn_penalty_m: f64,
    /// No route is considered that would need a faster average speed, metres per second.
    pub max_speed_mps: f64,
}

impl MatchParams {
    pub fn for_sigma(sigma: f64) -> Self {
        let sigma = if sigma.is_finite() && sigma > 0.0 {
            sigma
        } else {
            5.0
        };
        Self {
            sigma,
            beta: (2.0 * sigma).max(5.0),
            radius: (4.0 * sigma).clamp(30.0, 200.0),
            max_candidates: 12,
            max_gap_s: 60.0,
            min_spacing_m: 3.0 * sigma + 60.0,
            stay_tolerance_m: 4.0 * sigma + 10.0,
            uturn_penalty_m: 8.0 * sigma + 40.0,
            max_speed_mps: 60.0,
        }
    }
}

impl Default for MatchParams {
    fn default() -> Self {
        Self::for_sigma(10.0)
    }
}

/// One fix of a track. `time_s` may be NaN when the track has no times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TracePoint {
    pub lat: f64,
    pub lon: f64,
    pub time_s: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MatchError {
    #[error("the track has no fixes")]
    Empty,
    #[error("fix {index}: {reason}")]
    InvalidFix { index: usize, reason: String },
}

/// Where one fix was placed on the road.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snap {
    pub pos: LatLon,
    pub distance_m: f64,
    /// Index into the network's segments.
    pub segment: usize,
    /// How sure the model is of this placement against the fix's other candidates, 0 to 1.
    pub confidence: f64,
}

/// A continuous stretch of matched driving.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MatchedPiece {
    pub coords: Vec<LatLon>,
    pub osm_node_ids: Vec<i64>,
    /// Indices into the network's segments, in driving order, adjacent repeats merged.
    pub segments: Vec<usize>,
    /// For each stretch between consecutive `coords`, the segment it drives.
    pub point_segments: Vec<usize>,
    pub length_m: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MatchResult {
    pub pieces: Vec<MatchedPiece>,
    /// One entry per input fix: `None` for a fix that was dropped or fell between pieces.
    pub snaps: Vec<Option<Snap>>,
}

impl MatchResult {
    pub fn length_m(&self) -> f64 {
        self.pieces.iter().map(|p| p.length_m).sum()
    }

    /// Street names along the match, adjacent repeats merged.
    pub fn streets(&self, graph: &RoadGraph) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for piece in &self.pieces {
            for &s in &piece.segments {
                if let Some(name) = &graph.network.segments[s].name
                    && out.last() != Some(name)
                {
                    out.push(name.clone());
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
struct Cand {
    edge: u32,
    offset: f64,
    dist: f64,
    emission: f64,
}

#[derive(Debug)]
struct Step {
    index: usize,
    xy: [f64; 2],
    time: f64,
    cands: Vec<Cand>,
}

const MAX_SKIPS: usize = 3;

/// A step that lowers the best log-likelihood by more than this is treated as an outlier.
const SKIP_COST: f64 = 5.0;

/// The same for fixes ten or more seconds apart, each of which carries more of the route.
const SKIP_COST_SPARSE: f64 = 20.0;

/// Fixes closer in time than this are "dense" (1 Hz logging and the like).
const DENSE_INTERVAL_S: f64 = 3.0;

/// Thinning keeps at least one dense fix in this many seconds.
const MAX_THINNED_S: f64 = 8.0;

/// A matcher over one graph; reusable across tracks (its routing arrays are allocated once).
#[derive(Debug)]
pub struct Matcher<'g> {
    graph: &'g RoadGraph,
    router: Router,
    near: Vec<(u32, f64, f64)>,
}

impl RoadGraph {
    pub fn matcher(&self) -> Matcher<'_> {
        Matcher {
            graph: self,
            router: Router::new(self.node_osm.len()),
            near: Vec::new(),
        }
    }
}

impl<'g> Matcher<'g> {
    pub fn match_trace(
        &mut self,
        points: &[TracePoint],
        params: &MatchParams,
    ) -> Result<MatchResult, MatchError> {
        if points.is_empty() {
            return Err(MatchError::Empty);
        }
        let mut latlons = Vec::with_capacity(points.len());
        for (index, p) in points.iter().enumerate() {
            let ll = LatLon::new(p.lat, p.lon).map_err(|e| MatchError::InvalidFix {
                index,
                reason: e.to_string(),
            })?;
            latlons.push(ll);
        }
        let g = self.graph;
        let xy: Vec<[f64; 2]> = latlons.iter().map(|p| g.proj.xy(*p)).collect();
        let steps = self.steps(points, &xy, params);
        let mut result = MatchResult {
            pieces: Vec::new(),
            snaps: vec![None; points.len()],
        };
        for piece in self.decode(&steps, params) {
            self.emit(&steps, &piece, &xy, params, &mut result);
        }
        Ok(result)
    }

    /// The fixes worth a state, each with its candidates.
    fn steps(&mut self, points: &[TracePoint], xy: &[[f64; 2]], p: &MatchParams) -> Vec<Step> {
        let g = self.graph;
        let mut steps: Vec<Step> = Vec::new();
        let floor = (-0.5f64 * 3.0 * 3.0).exp();
        for (i, &pt) in xy.iter().enumerate() {
            if let Some(last) = steps.last() {
                // Dense fixes (a second or two apart) are thinned to `min_spacing_m`; sparse ones
                // only when within noise of each other: each of those carries route information.
                let d = dist(last.xy, pt);
                let dt = points[i].time_s - points[i - 1].time_s;
                // A track without times counts as dense.
                let dense = dt.is_nan() || dt < DENSE_INTERVAL_S;
                // …but never for long: a road that doubles back (a hairpin) keeps every fix
                // near the last kept one while the car drives on.
                let since = points[i].time_s - last.time;
                let recent = since.is_nan() || since < MAX_THINNED_S;
                let close = d < 2.0 * p.sigma || (dense && recent && d < p.min_spacing_m);
                let is_last = i + 1 == xy.len();
                if close && !is_last {
                    continue;
                }
            }
            g.nearest_segments(pt, p.radius, p.max_candidates, &mut self.near);
            if self.near.is_empty() {
                continue;
            }
            let mut cands = Vec::with_capacity(self.near.len() * 2);
            for &(s, offset, d) in &self.near {
                let z = d / p.sigma;
                let emission = ((-0.5 * z * z).exp() + floor).ln();
                let shape = &g.shapes[s as usize];
                cands.push(Cand {
                    edge: shape.forward_edge,
                    offset,
                    dist: d,
                    emission,
                });
                if let Some(b) = shape.backward_edge {
                    cands.push(Cand {
                        edge: b,
                        offset: shape.len() - offset,
                        dist: d,
                        emission,
                    });
                }
            }
            steps.push(Step {
                index: i,
                xy: pt,
                time: points[i].time_s,
                cands,
            });
        }
        steps
    }

    /// Viterbi over the steps, split into pieces; each piece is the chosen candidate per step,
    /// as (step index, candidate index, confidence).
    fn decode(&mut self, steps: &[Step], p: &MatchParams) -> Vec<Vec<(usize, usize, f64)>> {
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < steps.len() {
            // Per step in this piece: (step index, scores, back pointers).
            let mut trellis: Vec<(usize, Vec<f64>, Vec<u32>)> = vec![(
                start,
                steps[start].cands.iter().map(|c| c.emission).collect(),
                vec![u32::MAX; steps[start].cands.len()],
            )];
            let mut next = start + 1;
            let mut skipped = 0;
            let mut restart = None;
            while next < steps.len() {
                let Some((prev_i, prev_scores, _)) = trellis.last() else {
                    break;
                };
                let (prev, cur) = (&steps[*prev_i], &steps[next]);
                let dt = cur.time - prev.time;
                if dt.is_finite() && dt > p.max_gap_s {
                    restart = Some(next);
                    break;
                }
                let (scores, back) = self.advance(prev, prev_scores, cur, p);
                let before = prev_scores
                    .iter()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max);
                let after = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                // A fix that only a long detour can reach is more likely wrong than the road:
                // skip it like an unreachable one, and take it only if the next ones agree.
                // Untimed tracks (drawn or exported routes) are sparse as a rule.
                let dt = cur.time - prev.time;
                let skip_cost = if dt.is_nan() || dt >= 10.0 {
                    SKIP_COST_SPARSE
                } else {
                    SKIP_COST
                };
                let implausible = before - after > skip_cost && skipped < MAX_SKIPS;
                if after.is_finite() && !implausible {
                    trellis.push((next, scores, back));
                    skipped = 0;
                    next += 1;
                } else if skipped < MAX_SKIPS {
                    skipped += 1;
                    next += 1;
                } else {
                    restart = Some(next - skipped);
                    break;
                }
            }
            pieces.push(backtrack(&trellis));
            match restart {
                Some(r) => start = r,
                None => {
                    // Skipped fixes at the very end cannot be reached: match them on their own.
                    start = if skipped > 0 {
                        next - skipped
                    } else {
                        steps.len()
                    };
                }
            }
        }
        pieces
    }

    fn advance(
        &mut self,
        prev: &Step,
        prev_scores: &[f64],
        cur: &Step,
        p: &MatchParams,
    ) -> (Vec<f64>, Vec<u32>) {
        let g = self.graph;
        let gc = dist(prev.xy, cur.xy);
        let dt = cur.time - prev.time;
        let limit = if dt.is_finite() && dt > 0.0 {
            p.max_speed_mps * dt + 2.0 * p.radius
        } else {
            3.0 * gc + 4.0 * p.radius
        }
        .min(gc + 2000.0);
        let mut scores = vec![f64::NEG_INFINITY; cur.cands.len()];
        let mut back = vec![u32::MAX; cur.cands.len()];
        let targets: Vec<u32> = cur
            .cands
            .iter()
            .map(|c| g.edges[c.edge as usize].from)
            .collect();
        // One search per edge arrived on (not per node): what leaving the node costs depends on
        // it, since turning back onto the same road pays the U-turn penalty.
        let mut sources: Vec<(u32, usize)> = prev
            .cands
            .iter()
            .enumerate()
            .filter(|(i, _)| prev_scores[*i].is_finite())
            .map(|(i, c)| (c.edge, i))
            .collect();
        sources.sort_unstable();
        let mut routed_from = u32::MAX;
        for &(source_edge, i) in &sources {
            let a = &prev.cands[i];
            let ea = g.edges[a.edge as usize];
            let rest = ea.len - a.offset;
            let node = source_edge;
            if node != routed_from && rest <= limit {
                let uturn = (g.reverse(a.edge), p.uturn_penalty_m);
                self.router.run(g, ea.to, limit - rest, &targets, uturn);
                routed_from = node;
            }
            for (j, b) in cur.cands.iter().enumerate() {
                let route = if a.edge == b.edge && b.offset >= a.offset - p.stay_tolerance_m {
                    (b.offset - a.offset).max(0.0)
                } else if behind(g, a.edge, a.offset, b, p.stay_tolerance_m) {
                    0.0
                } else if node != routed_from {
                    continue;
                } else {
                    let eb = g.edges[b.edge as usize];
                    let Some(d) = self.router.distance(eb.from) else {
                        continue;
                    };
                    let uturn = if eb.segment == ea.segment && eb.forward != ea.forward {
                        p.uturn_penalty_m
                    } else {
                        0.0
                    };
                    rest + d + b.offset + uturn
                };
                if route > limit + p.uturn_penalty_m {
                    continue;
                }
                let s = prev_scores[i] - (route - gc).abs() / p.beta + b.emission;
                if s > scores[j] {
                    scores[j] = s;
                    back[j] = i as u32;
                }
            }
        }
        (scores, back)
    }

    /// Turns a decoded piece into geometry, node ids and segments, and snaps its fixes.
    fn emit(
        &mut self,
        steps: &[Step],
        chosen: &[(usize, usize, f64)],
        xy: &[[f64; 2]],
        p: &MatchParams,
        result: &mut MatchResult,
    ) {
        let g = self.graph;
        let Some(&(first_step, first_cand, _)) = chosen.first() else {
            return;
        };
        let mut path = PathBuilder::default();
        let c0 = steps[first_step].cands[first_cand];
        let (mut edge, mut off) = (c0.edge, c0.offset);
        path.start(g, edge, off);
        let mut step_coord = Vec::with_capacity(chosen.len());
        step_coord.push(0usize);
        let mut edges = Vec::new();
        let mut prev = c0;
        // Where the path stood when it entered its current edge, while it may be taken back.
        let mut entered: Option<Checkpoint> = None;
        for &(si, ci, _) in &chosen[1..] {
            let c = steps[si].cands[ci];
            // The path only ever moves forward: a candidate at or a little behind where the path
            // already is means standing still, and so does any step the decoder itself read as
            // one (its steps back can add up between fixes, beyond the tolerance).
            let decoded_as_stay = (prev.edge == c.edge
                && c.offset >= prev.offset - p.stay_tolerance_m)
                || behind(g, prev.edge, prev.offset, &c, p.stay_tolerance_m);
            prev = c;
            if c.edge == edge && c.offset > off {
                path.along(g, edge, off, c.offset);
                off = c.offset;
            } else if let Some(cp) = entered
                && off <= 2.0 * p.stay_tolerance_m
                && g.edges[c.edge as usize].to == g.edges[edge as usize].from
                && g.edges[c.edge as usize].segment != g.edges[edge as usize].segment
            {
                // The decoder went back to the road before the junction the path had just
                // crossed, so it may yet leave the junction another way: take back the few
                // metres past the junction and wait at it.
                path.rewind(cp);
                let last = path.xy.len() - 1;
                for at in &mut step_coord {
                    *at = (*at).min(last);
                }
                edge = c.edge;
                off = g.edges[edge as usize].len;
                entered = None;
            } else if (c.edge == edge && c.offset >= off - 2.0 * p.stay_tolerance_m)
                || behind(g, edge, off, &c, 2.0 * p.stay_tolerance_m)
                || decoded_as_stay
            {
            } else {
                let e = g.edges[edge as usize];
                path.along(g, edge, off, e.len);
                let target = g.edges[c.edge as usize].from;
                let uturn = (g.reverse(edge), p.uturn_penalty_m);
                self.router.run(g, e.to, f64::INFINITY, &[target], uturn);
                self.router.path_to(g, target, &mut edges);
                for &mid in &edges {
                    path.along(g, mid, 0.0, g.edges[mid as usize].len);
                }
                entered = Some(path.checkpoint());
                path.enter(g, c.edge);
                path.along(g, c.edge, 0.0, c.offset);
                edge = c.edge;
                off = c.offset;
            }
            step_coord.push(path.xy.len() - 1);
        }
        let coords: Vec<LatLon> = path.xy.iter().map(|q| g.proj.latlon(*q)).collect();
        let length_m = coords.windows(2).map(|w| w[0].distance_m(w[1])).sum();
        // Snap the decoded fixes to their candidates, and the others between them onto the path.
        for (k, &(si, ci, confidence)) in chosen.iter().enumerate() {
            let c = steps[si].cands[ci];
            let e = g.edges[c.edge as usize];
            let shape = &g.shapes[e.segment as usize];
            let along = if e.forward {
                c.offset
            } else {
                e.len - c.offset
            };
            result.snaps[steps[si].index] = Some(Snap {
                pos: g.proj.latlon(shape.point_at(along)),
                distance_m: c.dist,
                segment: e.segment as usize,
                confidence,
            });
            let (lo, hi) = (
                step_coord[k],
                step_coord.get(k + 1).copied().unwrap_or(step_coord[k]),
            );
            let until = chosen
                .get(k + 1)
                .map_or(steps[si].index + 1, |n| steps[n.0].index);
            for (fix, &fix_xy) in xy.iter().enumerate().take(until).skip(steps[si].index + 1) {
                let (q, d, seg) = path.project(fix_xy, lo, hi);
                result.snaps[fix] = Some(Snap {
                    pos: g.proj.latlon(q),
                    distance_m: d,
                    segment: seg,
                    confidence,
                });
            }
        }
        result.pieces.push(MatchedPiece {
            coords,
            osm_node_ids: path.nodes,
            segments: path.segments,
            point_segments: path.point_segment,
            length_m,
        });
    }
}

/// Whether candidate `c` lies at most `tolerance` behind the position `offset` along `edge`:
/// on the same edge, or on an edge leading into it (but not its own reverse, which would be a
/// turn, not a stop).
fn behind(g: &RoadGraph, edge: u32, offset: f64, c: &Cand, tolerance: f64) -> bool {
    if c.edge == edge {
        return c.offset <= offset && c.offset >= offset - tolerance;
    }
    let (e, ce) = (g.edges[edge as usize], g.edges[c.edge as usize]);
    ce.to == e.from && ce.segment != e.segment && offset + (ce.len - c.offset) <= tolerance
}

fn backtrack(trellis: &[(usize, Vec<f64>, Vec<u32>)]) -> Vec<(usize, usize, f64)> {
    let Some((_, last_scores, _)) = trellis.last() else {
        return Vec::new();
    };
    let mut best = argmax(last_scores);
    let mut out = Vec::with_capacity(trellis.len());
    for (step, scores, back) in trellis.iter().rev() {
        out.push((*step, best, confidence(scores, best)));
        best = back[best] as usize;
    }
    out.reverse();
    out
}

fn argmax(scores: &[f64]) -> usize {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    best
}

/// The chosen state's share of the step's likelihood, over states of distinct positions.
fn confidence(scores: &[f64], chosen: usize) -> f64 {
    let max = scores[chosen];
    if !max.is_finite() {
        return 0.0;
    }
    let total: f64 = scores
        .iter()
        .filter(|s| s.is_finite())
        .map(|s| (s - max).exp())
        .sum();
    if total > 0.0 { 1.0 / total } else { 0.0 }
}

/// Accumulates a matched path: points, the OSM nodes it passes and the segments it drives.
#[derive(Debug, Default)]
struct PathBuilder {
    xy: Vec<[f64; 2]>,
    /// For each point after the first, the segment of the stretch that ends there.
    point_segment: Vec<usize>,
    nodes: Vec<i64>,
    segments: Vec<usize>,
}

/// The lengths of a path's lists at one moment, to cut it back to.
#[derive(Debug, Clone, Copy)]
struct Checkpoint {
    xy: usize,
    nodes: usize,
    segments: usize,
}

impl PathBuilder {
    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            xy: self.xy.len(),
            nodes: self.nodes.len(),
            segments: self.segments.len(),
        }
    }

    fn rewind(&mut self, cp: Checkpoint) {
        self.xy.truncate(cp.xy.max(1));
        self.point_segment.truncate(cp.xy.max(1) - 1);
        self.nodes.truncate(cp.nodes);
        self.segments.truncate(cp.segments.max(1));
    }

    fn start(&mut self, g: &RoadGraph, edge: u32, offset: f64) {
        let e = g.edges[edge as usize];
        let shape = &g.shapes[e.segment as usize];
        let along = if e.forward { offset } else { e.len - offset };
        self.xy.push(shape.point_at(along));
        self.enter(g, edge);
    }

    fn enter(&mut self, g: &RoadGraph, edge: u32) {
        let s = g.edges[edge as usize].segment as usize;
        if self.segments.last() != Some(&s) {
            self.segments.push(s);
        }
    }

    /// Drives `edge` from `from` to `to` metres along its direction of travel.
    fn along(&mut self, g: &RoadGraph, edge: u32, from: f64, to: f64) {
        if to <= from {
            return;
        }
        self.enter(g, edge);
        let e = g.edges[edge as usize];
        let si = e.segment as usize;
        let shape = &g.shapes[si];
        let ids = &g.network.segments[si].osm_node_ids;
        let n = shape.pts.len();
        let mut push = |xy: [f64; 2], node: Option<i64>| {
            if self.xy.last() != Some(&xy) {
                self.xy.push(xy);
                self.point_segment.push(si);
            }
            if let Some(id) = node
                && self.nodes.last() != Some(&id)
            {
                self.nodes.push(id);
            }
        };
        let mut at_vertex = false;
        for k in 0..n {
            // Vertices in travel order, with their offset along the edge.
            let v = if e.forward { k } else { n - 1 - k };
            let o = if e.forward {
                shape.cum[v]
            } else {
                e.len - shape.cum[v]
            };
            if o <= from {
                continue;
            }
            if o > to {
                break;
            }
            push(shape.pts[v], ids.get(v).copied());
            at_vertex = (o - to).abs() < 1e-9;
        }
        if !at_vertex {
            let along = if e.forward { to } else { e.len - to };
            push(shape.point_at(along), None);
        }
    }

    /// The nearest point to `q` on the path between point indices `lo` and `hi`.
    fn project(&self, q: [f64; 2], lo: usize, hi: usize) -> ([f64; 2], f64, usize) {
        let hi = hi.min(self.xy.len() - 1);
        let lo = lo.min(hi);
        let mut best = (self.xy[lo], dist(q, self.xy[lo]), self.segment_at(lo));
        for i in lo..hi {
            let (a, b) = (self.xy[i], self.xy[i + 1]);
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let l2 = dx * dx + dy * dy;
            let t = if l2 > 0.0 {
                (((q[0] - a[0]) * dx + (q[1] - a[1]) * dy) / l2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let r = [a[0] + t * dx, a[1] + t * dy];
            let d = dist(q, r);
            if d < best.1 {
                best = (r, d, self.point_segment[i]);
            }
        }
        best
    }

    fn segment_at(&self, i: usize) -> usize {
        match i {
            0 => self.segments.first().copied().unwrap_or(0),
            _ => self.point_segment[i - 1],
        }
    }
}
