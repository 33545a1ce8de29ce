//! The road network as a driver sees it: junctions, the segments between them with their class
//! and direction, fastest routes between junctions, and how far a point is from any road.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use covermap_domain::LatLon;
use covermap_roads::RoadNetwork;
use rand::Rng;
use rand::rngs::StdRng;

use crate::geo::{Plane, Xy, to_segment};

/// What kind of road a segment is, for the speeds drivers keep on it and the lane they keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoadClass {
    Motorway,
    MotorwayLink,
    Trunk,
    Primary,
    Secondary,
    Tertiary,
    Link,
    Residential,
    LivingStreet,
    Service,
}

impl RoadClass {
    pub fn from_highway(highway: &str) -> Self {
        match highway {
            "motorway" => RoadClass::Motorway,
            "motorway_link" => RoadClass::MotorwayLink,
            "trunk" => RoadClass::Trunk,
            "primary" => RoadClass::Primary,
            "secondary" => RoadClass::Secondary,
            "tertiary" => RoadClass::Tertiary,
            "trunk_link" | "primary_link" | "secondary_link" | "tertiary_link" => RoadClass::Link,
            "living_street" => RoadClass::LivingStreet,
            "service" => RoadClass::Service,
            _ => RoadClass::Residential,
        }
    }

    /// The speeds (km/h) drivers keep on such a road when nothing slows them: the low end for a
    /// careful driver in traffic, the high end for a brisk one on a clear road. French and
    /// Monegasque limits: 130 on motorways, 50 in towns (30 in many Monaco streets), 80–90 on
    /// roads between towns.
    pub fn speed_range_kmh(self) -> (f64, f64) {
        match self {
            RoadClass::Motorway => (90.0, 130.0),
            RoadClass::MotorwayLink => (50.0, 80.0),
            RoadClass::Trunk => (70.0, 90.0),
            RoadClass::Primary => (50.0, 70.0),
            RoadClass::Secondary => (40.0, 60.0),
            RoadClass::Tertiary => (35.0, 50.0),
            RoadClass::Link => (30.0, 50.0),
            RoadClass::Residential => (30.0, 50.0),
            RoadClass::LivingStreet => (10.0, 20.0),
            RoadClass::Service => (15.0, 25.0),
        }
    }

    /// How far right of the centreline (metres) a car on a two-way road of this class drives:
    /// half a lane on a two-lane street, further out on multi-lane roads.
    pub fn lane_offset_range_m(self) -> (f64, f64) {
        match self {
            RoadClass::Motorway | RoadClass::Trunk => (3.5, 7.0),
            RoadClass::Primary | RoadClass::Secondary => (1.8, 4.0),
            RoadClass::Tertiary | RoadClass::Residential | RoadClass::Link => (1.2, 2.5),
            RoadClass::MotorwayLink => (0.5, 2.0),
            RoadClass::LivingStreet | RoadClass::Service => (0.0, 1.0),
        }
    }

    fn mean_speed_mps(self) -> f64 {
        let (lo, hi) = self.speed_range_kmh();
        (lo + hi) / 2.0 / 3.6
    }
}

/// A junction (or dead end) of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Junction {
    pub osm_node: i64,
    pub pos: Xy,
}

/// One direction a segment can be driven in.
#[derive(Debug, Clone, PartialEq)]
struct Edge {
    to: usize,
    segment: usize,
    forward: bool,
    length_m: f64,
    seconds: f64,
}

/// A segment's shape on the plane.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    points: Vec<Xy>,
    class: RoadClass,
    oneway: bool,
}

/// A route as driven: the polyline, the distance along it at each vertex, and what each piece
/// between vertices is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Route {
    pub points: Vec<Xy>,
    /// Metres from the start at each point.
    pub along: Vec<f64>,
    /// For each piece `points[i]..points[i+1]`: its road class and whether the road is oneway.
    pub pieces: Vec<(RoadClass, bool)>,
    /// Whether a point is a junction between two segments (where a driver may stop or turn).
    pub junction: Vec<bool>,
    pub from: usize,
    pub to: usize,
}

impl Route {
    pub fn length_m(&self) -> f64 {
        self.along.last().copied().unwrap_or(0.0)
    }

    /// The point `s` metres along the route, the index of its piece, and the piece's bearing.
    pub fn at(&self, s: f64) -> (Xy, usize, f64) {
        let n = self.points.len();
        if n < 2 {
            return (self.points.first().copied().unwrap_or_default(), 0, 0.0);
        }
        let s = s.clamp(0.0, self.length_m());
        let i = match self.along.binary_search_by(|a| a.total_cmp(&s)) {
            Ok(i) => i.min(n - 2),
            Err(i) => i.saturating_sub(1).min(n - 2),
        };
        let (a, b) = (self.points[i], self.points[i + 1]);
        let len = self.along[i + 1] - self.along[i];
        let t = if len > 0.0 {
            (s - self.along[i]) / len
        } else {
            0.0
        };
        (a.lerp(b, t), i, a.bearing_to(b))
    }

    /// This route followed by `next` (which must start where this one ends).
    pub fn then(mut self, next: &Route) -> Route {
        let offset = self.length_m();
        for (k, p) in next.points.iter().enumerate().skip(1) {
            self.points.push(*p);
            self.along.push(offset + next.along[k]);
            self.junction.push(next.junction[k]);
        }
        if let Some(j) = self.junction.get_mut(self.points.len() - next.points.len()) {
            *j = true;
        }
        self.pieces.extend(next.pieces.iter().copied());
        self.to = next.to;
        self
    }
}

/// The network, indexed for routing and for distance-to-road questions.
#[derive(Debug, Clone)]
pub struct RoadMap {
    pub plane: Plane,
    pub junctions: Vec<Junction>,
    edges: Vec<Vec<Edge>>,
    shapes: Vec<Shape>,
    /// Pieces of segments by 100 m grid square: (segment, index of the piece's first point).
    grid: HashMap<(i64, i64), Vec<(usize, usize)>>,
    /// Junctions with more than two ways out: where trips start and end.
    pub crossings: Vec<usize>,
    pub min: Xy,
    pub max: Xy,
}

const GRID_M: f64 = 100.0;

fn grid_key(p: Xy) -> (i64, i64) {
    ((p.x / GRID_M).floor() as i64, (p.y / GRID_M).floor() as i64)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Queued {
    cost: f64,
    node: usize,
}

impl Eq for Queued {}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap pops the cheapest first; ties by node so the order is fixed.
        other
            .cost
            .total_cmp(&self.cost)
            .then_with(|| other.node.cmp(&self.node))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The fastest ways out of one junction: for each junction, the edge that reaches it, seconds
/// and metres.
#[derive(Debug, Clone)]
pub struct Tree {
    from: usize,
    reached_by: Vec<Option<(usize, usize)>>,
    pub seconds: Vec<f64>,
    pub metres: Vec<f64>,
}

impl RoadMap {
    pub fn new(network: &RoadNetwork) -> Self {
        let first = network
            .segments
            .iter()
            .filter_map(|s| s.points.first())
            .next()
            .copied()
            .unwrap_or(LatLon {
                lat: 43.7384,
                lon: 7.4246,
            });
        let plane = Plane::around(first);
        let mut index: BTreeMap<i64, usize> = BTreeMap::new();
        let mut junctions = Vec::new();
        let mut node_of = |osm: i64, pos: Xy, junctions: &mut Vec<Junction>| -> usize {
            *index.entry(osm).or_insert_with(|| {
                junctions.push(Junction { osm_node: osm, pos });
                junctions.len() - 1
            })
        };
        let mut shapes = Vec::new();
        let mut ends = Vec::new();
        for seg in &network.segments {
            let points: Vec<Xy> = seg.points.iter().map(|p| plane.xy(*p)).collect();
            let (Some(&a), Some(&b), Some(&pa), Some(&pb)) = (
                seg.osm_node_ids.first(),
                seg.osm_node_ids.last(),
                points.first(),
                points.last(),
            ) else {
                shapes.push(Shape {
                    points,
                    class: RoadClass::from_highway(&seg.highway),
                    oneway: seg.oneway,
                });
                ends.push(None);
                continue;
            };
            let (na, nb) = (
                node_of(a, pa, &mut junctions),
                node_of(b, pb, &mut junctions),
            );
            ends.push(Some((na, nb)));
            shapes.push(Shape {
                points,
                class: RoadClass::from_highway(&seg.highway),
                oneway: seg.oneway,
            });
        }
        let mut edges: Vec<Vec<Edge>> = vec![Vec::new(); junctions.len()];
        for (i, (shape, end)) in shapes.iter().zip(&ends).enumerate() {
            let Some((a, b)) = *end else { continue };
            let length_m: f64 = shape.points.windows(2).map(|w| w[0].dist(w[1])).sum();
            let seconds = length_m / shape.class.mean_speed_mps();
            edges[a].push(Edge {
                to: b,
                segment: i,
                forward: true,
                length_m,
                seconds,
            });
            if !shape.oneway {
                edges[b].push(Edge {
                    to: a,
                    segment: i,
                    forward: false,
                    length_m,
                    seconds,
                });
            }
        }
        let mut grid: HashMap<(i64, i64), Vec<(usize, usize)>> = HashMap::new();
        let (mut min, mut max) = (
            Xy::new(f64::INFINITY, f64::INFINITY),
            Xy::new(f64::NEG_INFINITY, f64::NEG_INFINITY),
        );
        for (s, shape) in shapes.iter().enumerate() {
            for (k, w) in shape.points.windows(2).enumerate() {
                let (lo, hi) = (grid_key(w[0]), grid_key(w[1]));
                for gx in lo.0.min(hi.0)..=lo.0.max(hi.0) {
                    for gy in lo.1.min(hi.1)..=lo.1.max(hi.1) {
                        grid.entry((gx, gy)).or_default().push((s, k));
                    }
                }
            }
            for p in &shape.points {
                min = Xy::new(min.x.min(p.x), min.y.min(p.y));
                max = Xy::new(max.x.max(p.x), max.y.max(p.y));
            }
        }
        let mut degree = vec![0usize; junctions.len()];
        for (a, out) in edges.iter().enumerate() {
            for e in out {
                degree[a] += 1;
                degree[e.to] += 1;
            }
        }
        let crossings = (0..junctions.len()).filter(|&j| degree[j] >= 3).collect();
        Self {
            plane,
            junctions,
            edges,
            shapes,
            grid,
            crossings,
            min,
            max,
        }
    }

    /// Distance (m) from `p` to the nearest road, looking at most `within` metres away
    /// (`f64::INFINITY` when no road is that close).
    pub fn distance_to_road(&self, p: Xy, within: f64) -> f64 {
        let r = (within / GRID_M).ceil() as i64;
        let c = grid_key(p);
        let mut best = f64::INFINITY;
        for gx in c.0 - r..=c.0 + r {
            for gy in c.1 - r..=c.1 + r {
                for &(s, k) in self.grid.get(&(gx, gy)).map_or(&[][..], Vec::as_slice) {
                    let pts = &self.shapes[s].points;
                    best = best.min(to_segment(p, pts[k], pts[k + 1]).0);
                }
            }
        }
        if best <= within { best } else { f64::INFINITY }
    }

    /// Every segment's points on the plane, in the network's order.
    pub fn segment_points(&self) -> impl Iterator<Item = &[Xy]> {
        self.shapes.iter().map(|s| s.points.as_slice())
    }

    /// The junction nearest `p`.
    pub fn nearest_junction(&self, p: Xy) -> usize {
        (0..self.junctions.len())
            .min_by(|&a, &b| {
                self.junctions[a]
                    .pos
                    .dist(p)
                    .total_cmp(&self.junctions[b].pos.dist(p))
            })
            .unwrap_or(0)
    }

    /// Fastest routes out of `from` (travel time at each class's typical speed).
    pub fn tree(&self, from: usize) -> Tree {
        let n = self.junctions.len();
        let mut tree = Tree {
            from,
            reached_by: vec![None; n],
            seconds: vec![f64::INFINITY; n],
            metres: vec![f64::INFINITY; n],
        };
        if from >= n {
            return tree;
        }
        tree.seconds[from] = 0.0;
        tree.metres[from] = 0.0;
        let mut heap = BinaryHeap::new();
        heap.push(Queued {
            cost: 0.0,
            node: from,
        });
        while let Some(Queued { cost, node }) = heap.pop() {
            if cost > tree.seconds[node] {
                continue;
            }
            for (k, e) in self.edges[node].iter().enumerate() {
                let c = cost + e.seconds;
                if c < tree.seconds[e.to] {
                    tree.seconds[e.to] = c;
                    tree.metres[e.to] = tree.metres[node] + e.length_m;
                    tree.reached_by[e.to] = Some((node, k));
                    heap.push(Queued {
                        cost: c,
                        node: e.to,
                    });
                }
            }
        }
        tree
    }

    /// The route the tree took to `to`, or `None` where `to` cannot be reached.
    pub fn route(&self, tree: &Tree, to: usize) -> Option<Route> {
        if to >= self.junctions.len() || !tree.seconds[to].is_finite() || to == tree.from {
            return None;
        }
        let mut steps = Vec::new();
        let mut at = to;
        while at != tree.from {
            let (prev, k) = tree.reached_by[at]?;
            steps.push(&self.edges[prev][k]);
            at = prev;
        }
        steps.reverse();
        let mut route = Route {
            from: tree.from,
            to,
            ..Route::default()
        };
        for e in steps {
            let shape = &self.shapes[e.segment];
            let mut pts = shape.points.clone();
            if !e.forward {
                pts.reverse();
            }
            let skip = usize::from(!route.points.is_empty());
            for (k, p) in pts.iter().enumerate().skip(skip) {
                let s = route
                    .points
                    .last()
                    .zip(route.along.last())
                    .map_or(0.0, |(q, s)| s + q.dist(*p));
                if k > 0 {
                    route.pieces.push((shape.class, shape.oneway));
                }
                route.points.push(*p);
                route.along.push(s);
                route.junction.push(k == 0 || k + 1 == pts.len());
            }
        }
        Some(route)
    }

    /// A fastest route from `from` (a random crossing if `None`) of `min_m` to `max_m`, to a
    /// destination drawn among those in range; `hubs` are drawn more often, as trips gather at
    /// the places everyone drives to.
    pub fn random_route(
        &self,
        rng: &mut StdRng,
        from: Option<usize>,
        (min_m, max_m): (f64, f64),
        hubs: &[usize],
    ) -> Option<Route> {
        for attempt in 0..40 {
            let origin = match from {
                Some(f) if attempt < 20 => f,
                _ => *self
                    .crossings
                    .get(rng.random_range(0..self.crossings.len().max(1)))?,
            };
            let tree = self.tree(origin);
            let in_range: Vec<usize> = self
                .crossings
                .iter()
                .copied()
                .filter(|&j| (min_m..=max_m).contains(&tree.metres[j]))
                .collect();
            if in_range.is_empty() {
                continue;
            }
            let hubs_in_range: Vec<usize> = hubs
                .iter()
                .copied()
                .filter(|h| in_range.contains(h))
                .collect();
            let to = if !hubs_in_range.is_empty() && rng.random_bool(0.35) {
                hubs_in_range[rng.random_range(0..hubs_in_range.len())]
            } else {
                in_range[rng.random_range(0..in_range.len())]
            };
            if let Some(r) = self.route(&tree, to) {
                return Some(r);
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::path::Path;
    use std::sync::OnceLock;

    /// Monaco's real network, read once for all tests.
    pub(crate) fn monaco() -> &'static RoadNetwork {
        static NET: OnceLock<RoadNetwork> = OnceLock::new();
        NET.get_or_init(|| {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/roads/monaco.osm.pbf");
            covermap_roads::osm::read_pbf(&p).unwrap()
        })
    }

    #[test]
    fn routes_follow_segments_end_to_end_and_respect_oneways() {
        let map = RoadMap::new(monaco());
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..20 {
            let r = map
                .random_route(&mut rng, None, (2000.0, 12000.0), &[])
                .unwrap();
            assert!(r.length_m() >= 2000.0 && r.length_m() <= 12500.0);
            assert_eq!(r.points.len(), r.along.len());
            assert_eq!(r.pieces.len() + 1, r.points.len());
            // Consecutive points are close: no jumps between segments.
            for w in r.points.windows(2) {
                assert!(w[0].dist(w[1]) < 1000.0);
            }
            assert_eq!(r.points[0], map.junctions[r.from].pos);
            assert_eq!(*r.points.last().unwrap(), map.junctions[r.to].pos);
        }
        // A oneway edge exists only forwards.
        for (a, out) in map.edges.iter().enumerate() {
            for e in out {
                if map.shapes[e.segment].oneway {
                    assert!(
                        e.forward,
                        "oneway segment {} driven backwards from {a}",
                        e.segment
                    );
                }
            }
        }
    }

    #[test]
    fn distance_to_road_is_zero_on_a_road_and_infinite_far_away() {
        let map = RoadMap::new(monaco());
        let on = map.junctions[map.crossings[0]].pos;
        assert!(map.distance_to_road(on, 50.0) < 0.01);
        let far = Xy::new(map.max.x + 5000.0, map.max.y + 5000.0);
        assert!(map.distance_to_road(far, 300.0).is_infinite());
    }
}
