//! The road network as a routable graph: junctions as nodes, each direction of travel along a
//! segment as an edge, an R-tree over the segments' pieces for finding candidates, and a
//! reusable bounded Dijkstra.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use covermap_domain::LatLon;
use rstar::RTree;
use rstar::primitives::{GeomWithData, Line};

use crate::RoadNetwork;

/// A local flat projection in metres (equirectangular about the network's centre). Over a city
/// or a region of a few hundred kilometres its scale error stays under about one per cent, far
/// below GNSS noise for the short distances the matcher compares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Projection {
    lat0: f64,
    lon0: f64,
    kx: f64,
    ky: f64,
}

impl Projection {
    fn around(lat0: f64, lon0: f64) -> Self {
        Self {
            lat0,
            lon0,
            kx: 111_320.0 * lat0.to_radians().cos(),
            ky: 110_574.0,
        }
    }

    pub(crate) fn xy(&self, p: LatLon) -> [f64; 2] {
        [(p.lon - self.lon0) * self.kx, (p.lat - self.lat0) * self.ky]
    }

    pub(crate) fn latlon(&self, xy: [f64; 2]) -> LatLon {
        LatLon {
            lat: (self.lat0 + xy[1] / self.ky).clamp(-90.0, 90.0),
            lon: (self.lon0 + xy[0] / self.kx).clamp(-180.0, 180.0),
        }
    }
}

/// One direction of travel along one segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Edge {
    pub from: u32,
    pub to: u32,
    pub len: f64,
    pub segment: u32,
    pub forward: bool,
}

/// A segment's shape in metres, with cumulative lengths for offsets along it.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub pts: Vec<[f64; 2]>,
    pub cum: Vec<f64>,
    pub forward_edge: u32,
    pub backward_edge: Option<u32>,
}

impl Shape {
    pub fn len(&self) -> f64 {
        self.cum.last().copied().unwrap_or(0.0)
    }

    /// The point `offset` metres from the segment's first node.
    pub fn point_at(&self, offset: f64) -> [f64; 2] {
        let offset = offset.clamp(0.0, self.len());
        let i = match self.cum.binary_search_by(|c| c.total_cmp(&offset)) {
            Ok(i) => return self.pts[i],
            Err(i) => i.clamp(1, self.pts.len() - 1),
        };
        let (a, b) = (self.pts[i - 1], self.pts[i]);
        let span = self.cum[i] - self.cum[i - 1];
        let f = if span > 0.0 {
            (offset - self.cum[i - 1]) / span
        } else {
            0.0
        };
        [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f]
    }
}

type Piece = GeomWithData<Line<[f64; 2]>, (u32, u32)>;

/// The network, ready for matching.
#[derive(Debug)]
pub struct RoadGraph {
    pub(crate) network: RoadNetwork,
    pub(crate) proj: Projection,
    pub(crate) node_osm: Vec<i64>,
    pub(crate) edges: Vec<Edge>,
    first_out: Vec<u32>,
    out: Vec<u32>,
    pub(crate) shapes: Vec<Shape>,
    tree: RTree<Piece>,
}

impl RoadGraph {
    pub fn new(network: RoadNetwork) -> Self {
        let (mut lat, mut lon, mut n) = (0.0, 0.0, 0.0);
        for s in &network.segments {
            for p in &s.points {
                lat += p.lat;
                lon += p.lon;
                n += 1.0;
            }
        }
        let proj = if n > 0.0 {
            Projection::around(lat / n, lon / n)
        } else {
            Projection::around(0.0, 0.0)
        };
        let mut node_index: HashMap<i64, u32> = HashMap::new();
        let mut node_osm = Vec::new();
        let mut node = |id: i64| {
            *node_index.entry(id).or_insert_with(|| {
                node_osm.push(id);
                (node_osm.len() - 1) as u32
            })
        };
        let mut edges = Vec::new();
        let mut shapes = Vec::with_capacity(network.segments.len());
        let mut pieces = Vec::new();
        for (si, s) in network.segments.iter().enumerate() {
            let (Some(&first), Some(&last)) = (s.osm_node_ids.first(), s.osm_node_ids.last())
            else {
                continue;
            };
            let pts: Vec<[f64; 2]> = s.points.iter().map(|p| proj.xy(*p)).collect();
            let mut cum = Vec::with_capacity(pts.len());
            let mut total = 0.0;
            for (i, p) in pts.iter().enumerate() {
                if i > 0 {
                    total += dist(pts[i - 1], *p);
                }
                cum.push(total);
            }
            for (i, w) in pts.windows(2).enumerate() {
                pieces.push(GeomWithData::new(
                    Line::new(w[0], w[1]),
                    (si as u32, i as u32),
                ));
            }
            let (a, b) = (node(first), node(last));
            let forward_edge = edges.len() as u32;
            edges.push(Edge {
                from: a,
                to: b,
                len: total,
                segment: si as u32,
                forward: true,
            });
            let backward_edge = (!s.oneway).then(|| {
                edges.push(Edge {
                    from: b,
                    to: a,
                    len: total,
                    segment: si as u32,
                    forward: false,
                });
                (edges.len() - 1) as u32
            });
            shapes.push(Shape {
                pts,
                cum,
                forward_edge,
                backward_edge,
            });
        }
        let n_nodes = node_osm.len();
        let mut first_out = vec![0u32; n_nodes + 1];
        for e in &edges {
            first_out[e.from as usize + 1] += 1;
        }
        for i in 0..n_nodes {
            first_out[i + 1] += first_out[i];
        }
        let mut fill = first_out.clone();
        let mut out = vec![0u32; edges.len()];
        for (i, e) in edges.iter().enumerate() {
            out[fill[e.from as usize] as usize] = i as u32;
            fill[e.from as usize] += 1;
        }
        Self {
            network,
            proj,
            node_osm,
            edges,
            first_out,
            out,
            shapes,
            tree: RTree::bulk_load(pieces),
        }
    }

    pub fn network(&self) -> &RoadNetwork {
        &self.network
    }

    /// The edge that drives `edge`'s segment the other way, if it may be driven so.
    pub(crate) fn reverse(&self, edge: u32) -> u32 {
        let e = self.edges[edge as usize];
        let shape = &self.shapes[e.segment as usize];
        if e.forward {
            shape.backward_edge.unwrap_or(u32::MAX)
        } else {
            shape.forward_edge
        }
    }

    pub(crate) fn out_edges(&self, node: u32) -> &[u32] {
        let (a, b) = (
            self.first_out[node as usize] as usize,
            self.first_out[node as usize + 1] as usize,
        );
        &self.out[a..b]
    }

    /// The road segments within `radius_m` of `pos`, nearest first, at most `k`, each with its
    /// distance in metres: where a photo taken at `pos` belongs on the map.
    pub fn segments_near(
        &self,
        pos: LatLon,
        radius_m: f64,
        k: usize,
    ) -> Vec<(covermap_domain::SegmentRef, f64)> {
        let mut near = Vec::new();
        self.nearest_segments(self.proj.xy(pos), radius_m, k, &mut near);
        near.into_iter()
            .map(|(si, _, d)| {
                let s = &self.network.segments[si as usize];
                (
                    covermap_domain::SegmentRef {
                        osm_way_id: s.osm_way_id,
                        way_piece: s.piece,
                    },
                    d,
                )
            })
            .collect()
    }

    /// Whether `pos` lies within the network's extent (the bounding box of its roads, widened
    /// by `margin_m`): where the network says nothing, a fix far from its roads is not off the
    /// road, only off the map that was loaded.
    pub fn covers(&self, pos: LatLon, margin_m: f64) -> bool {
        if self.network.segments.is_empty() {
            return false;
        }
        let envelope = self.tree.root().envelope();
        let (lo, hi) = (envelope.lower(), envelope.upper());
        let p = self.proj.xy(pos);
        p[0] >= lo[0] - margin_m
            && p[0] <= hi[0] + margin_m
            && p[1] >= lo[1] - margin_m
            && p[1] <= hi[1] + margin_m
    }

    /// The road segments within `radius_m` of `pos`, nearest first, at most `k`, each with its
    /// distance in metres: what the trust stage asks of the road a fix was on (how far, which
    /// class).
    pub fn roads_near(
        &self,
        pos: LatLon,
        radius_m: f64,
        k: usize,
    ) -> Vec<(&covermap_domain::RoadSegment, f64)> {
        let mut near = Vec::new();
        self.nearest_segments(self.proj.xy(pos), radius_m, k, &mut near);
        near.into_iter()
            .map(|(si, _, d)| (&self.network.segments[si as usize], d))
            .collect()
    }

    /// The least time, in seconds, to drive from `from` to `to` along the network (oneways
    /// respected) when each segment is driven at `speed_of(segment)` m/s; both points are placed
    /// on their nearest road within `snap_m`. `None` when either is off the network or the
    /// destination lies beyond `limit_s`.
    pub fn fastest_s(
        &self,
        from: LatLon,
        to: LatLon,
        snap_m: f64,
        limit_s: f64,
        speed_of: impl Fn(&covermap_domain::RoadSegment) -> f64,
    ) -> Option<f64> {
        let mut near = Vec::new();
        self.nearest_segments(self.proj.xy(from), snap_m, 1, &mut near);
        let (sa, oa, _) = *near.first()?;
        self.nearest_segments(self.proj.xy(to), snap_m, 1, &mut near);
        let (sb, ob, _) = *near.first()?;
        let secs = |segment: u32, metres: f64| {
            metres / speed_of(&self.network.segments[segment as usize]).max(0.1)
        };
        let (shape_a, shape_b) = (&self.shapes[sa as usize], &self.shapes[sb as usize]);
        let mut best = f64::INFINITY;
        if sa == sb {
            if ob >= oa {
                best = secs(sa, ob - oa);
            } else if shape_a.backward_edge.is_some() {
                best = secs(sa, oa - ob);
            }
        }
        // Leaving `from`: forward to the segment's end node, or back to its start where allowed.
        let fwd = self.edges[shape_a.forward_edge as usize];
        let mut starts = vec![(fwd.to, secs(sa, shape_a.len() - oa))];
        if shape_a.backward_edge.is_some() {
            starts.push((fwd.from, secs(sa, oa)));
        }
        // Arriving at `to`: from the segment's start node forward, or its end node backward.
        let fwd_b = self.edges[shape_b.forward_edge as usize];
        let mut ends = vec![(fwd_b.from, secs(sb, ob))];
        if shape_b.backward_edge.is_some() {
            ends.push((fwd_b.to, secs(sb, shape_b.len() - ob)));
        }
        let mut time: HashMap<u32, f64> = HashMap::new();
        let mut heap = BinaryHeap::new();
        for (node, t) in starts {
            if t < time.get(&node).copied().unwrap_or(f64::INFINITY) {
                time.insert(node, t);
                heap.push(Queued(t, node));
            }
        }
        while let Some(Queued(t, n)) = heap.pop() {
            if t > time.get(&n).copied().unwrap_or(f64::INFINITY) || t > limit_s || t >= best {
                continue;
            }
            for (end, rest) in &ends {
                if *end == n {
                    best = best.min(t + rest);
                }
            }
            for &e in self.out_edges(n) {
                let edge = &self.edges[e as usize];
                let nt = t + secs(edge.segment, edge.len);
                if nt < time.get(&edge.to).copied().unwrap_or(f64::INFINITY) {
                    time.insert(edge.to, nt);
                    heap.push(Queued(nt, edge.to));
                }
            }
        }
        (best <= limit_s).then_some(best)
    }

    /// For each segment with a piece within `radius` of `p`: the nearest point on it, as
    /// (segment, offset from its first node, distance), nearest first, at most `k` segments.
    pub(crate) fn nearest_segments(
        &self,
        p: [f64; 2],
        radius: f64,
        k: usize,
        out: &mut Vec<(u32, f64, f64)>,
    ) {
        out.clear();
        for piece in self.tree.locate_within_distance(p, radius * radius) {
            let (si, pi) = piece.data;
            let line = piece.geom();
            let (a, b) = (line.from, line.to);
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let l2 = dx * dx + dy * dy;
            let t = if l2 > 0.0 {
                (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / l2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let q = [a[0] + t * dx, a[1] + t * dy];
            let d = dist(p, q);
            let shape = &self.shapes[si as usize];
            let offset = shape.cum[pi as usize] + t * l2.sqrt();
            match out.iter_mut().find(|c| c.0 == si) {
                Some(c) if d < c.2 => *c = (si, offset, d),
                Some(_) => {}
                None => out.push((si, offset, d)),
            }
        }
        out.sort_by(|a, b| a.2.total_cmp(&b.2));
        out.truncate(k);
    }
}

pub(crate) fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Queued(f64, u32);

impl Eq for Queued {}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .0
            .total_cmp(&self.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A Dijkstra whose arrays are allocated once and reset in O(1) by a generation stamp.
#[derive(Debug, Default)]
pub(crate) struct Router {
    dist: Vec<f64>,
    parent: Vec<u32>,
    stamp: Vec<u32>,
    generation: u32,
    heap: BinaryHeap<Queued>,
    pending: Vec<u32>,
}

impl Router {
    pub fn new(nodes: usize) -> Self {
        Self {
            dist: vec![0.0; nodes],
            parent: vec![u32::MAX; nodes],
            stamp: vec![0; nodes],
            generation: 0,
            heap: BinaryHeap::new(),
            pending: Vec::new(),
        }
    }

    /// Shortest distances from `source` to every node within `limit`, stopping early once every
    /// node of `targets` is settled. Leaving `source` by `uturn.0` (the reverse of the edge that
    /// arrived there) costs `uturn.1` extra: turning around is possible, never free.
    pub fn run(
        &mut self,
        g: &RoadGraph,
        source: u32,
        limit: f64,
        targets: &[u32],
        uturn: (u32, f64),
    ) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamp.fill(0);
            self.generation = 1;
        }
        self.heap.clear();
        self.pending.clear();
        self.pending.extend_from_slice(targets);
        self.pending.sort_unstable();
        self.pending.dedup();
        let gen_ = self.generation;
        self.stamp[source as usize] = gen_;
        self.dist[source as usize] = 0.0;
        self.parent[source as usize] = u32::MAX;
        self.heap.push(Queued(0.0, source));
        while let Some(Queued(d, n)) = self.heap.pop() {
            if d > self.dist[n as usize] {
                continue;
            }
            if let Ok(i) = self.pending.binary_search(&n) {
                self.pending.remove(i);
                if self.pending.is_empty() {
                    break;
                }
            }
            for &e in g.out_edges(n) {
                let edge = &g.edges[e as usize];
                let penalty = if n == source && e == uturn.0 {
                    uturn.1
                } else {
                    0.0
                };
                let nd = d + edge.len + penalty;
                if nd > limit {
                    continue;
                }
                let t = edge.to as usize;
                if self.stamp[t] != gen_ || nd < self.dist[t] {
                    self.stamp[t] = gen_;
                    self.dist[t] = nd;
                    self.parent[t] = e;
                    self.heap.push(Queued(nd, edge.to));
                }
            }
        }
    }

    /// The distance the last run found to `node`, if it reached it.
    pub fn distance(&self, node: u32) -> Option<f64> {
        (self.stamp[node as usize] == self.generation).then(|| self.dist[node as usize])
    }

    /// The edges of the last run's path to `node`, in driving order.
    pub fn path_to(&self, g: &RoadGraph, node: u32, out: &mut Vec<u32>) {
        out.clear();
        if self.stamp[node as usize] != self.generation {
            return;
        }
        let mut n = node;
        while self.parent[n as usize] != u32::MAX {
            let e = self.parent[n as usize];
            out.push(e);
            n = g.edges[e as usize].from;
        }
        out.reverse();
    }
}
