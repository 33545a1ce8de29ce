//! The road network a worker matches against, read in tiles of the area its jobs are in: a
//! country-sized network need not fit in every worker. A tile is a square of the lat/lon grid
//! ([`TILE_DEG`]); a job asks for the tiles around its track, and gets a matching graph of their
//! roads, built once for each set of tiles and kept while it is used. Tiles are read again after
//! [`TILE_TTL`], so a network imported since reaches the workers without a restart.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use covermap_domain::{BoundingBox, LatLon, RoadSegment};
use covermap_roads::RoadNetwork;
use covermap_roads::matching::RoadGraph;
use covermap_store::{Store, StoreError};

/// A tile's side, degrees of latitude and longitude (about 11 km north to south).
pub const TILE_DEG: f64 = 0.1;

/// How far around a track its graph reaches, metres: a route between two fixes may leave the
/// track's box, and a frame's road may lie just outside it.
pub const MARGIN_M: f64 = 2_000.0;

/// The most tiles one graph is built of (a 5° × 5° area); a larger area gets none.
pub const MAX_TILES: usize = 2_500;

/// How long a tile read from the store is used before it is read again.
pub const TILE_TTL: Duration = Duration::from_secs(600);

/// Graphs kept for reuse, the most recently used first out last.
const GRAPHS_KEPT: usize = 8;

/// A tile of the grid: its south-west corner in units of [`TILE_DEG`].
type TileKey = (i32, i32);

/// What [`RoadTiles::graph_for`] found.
#[derive(Debug, Clone)]
pub enum AreaRoads {
    /// The store holds no road network at all: uploads are indexed by their fixes.
    NoNetwork,
    /// The graph of the roads around the area (possibly none there: then nothing is matched).
    Graph(Arc<RoadGraph>),
    /// The area spans more than [`MAX_TILES`] tiles.
    TooLarge,
}

/// Tiles of the stored road network, read on demand and cached, and the graphs built of them.
#[derive(Debug)]
pub struct RoadTiles {
    store: Arc<dyn Store>,
    /// The most road segments kept in tiles at once; the least recently used tiles go first.
    max_segments: usize,
    cache: Mutex<Cache>,
}

#[derive(Debug)]
struct Cache {
    /// Whether the store holds any road at all, and when that was last read.
    network: (bool, Instant),
    tick: u64,
    tiles: HashMap<TileKey, Tile>,
    segments: usize,
    /// Graphs built of a set of tiles: the tiles, the graph, when it was built, its last use.
    graphs: Vec<(Vec<TileKey>, Arc<RoadGraph>, Instant, u64)>,
    reads: u64,
}

impl Cache {
    /// The next moment of use, for least-recently-used order.
    fn touch(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

#[derive(Debug)]
struct Tile {
    segments: Arc<Vec<RoadSegment>>,
    read_at: Instant,
    used: u64,
}

/// How much a [`RoadTiles`] holds and has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileStats {
    pub tiles: usize,
    pub segments: usize,
    pub graphs: usize,
    /// Tiles read from the store since it was made.
    pub reads: u64,
}

impl RoadTiles {
    /// Tiles of `store`'s network, keeping at most `max_segments` road segments in memory
    /// (the graphs being built or used hold theirs as well).
    pub async fn open(store: Arc<dyn Store>, max_segments: usize) -> Result<Self, StoreError> {
        let network = !store.roads(BoundingBox::WORLD, 1).await?.is_empty();
        Ok(Self {
            store,
            max_segments,
            cache: Mutex::new(Cache {
                network: (network, Instant::now()),
                tick: 0,
                tiles: HashMap::new(),
                segments: 0,
                graphs: Vec::new(),
                reads: 0,
            }),
        })
    }

    /// Whether the store held a road network when last read.
    pub fn has_network(&self) -> bool {
        self.lock().network.0
    }

    /// Whether the store holds a road network, read again after [`TILE_TTL`] (a network imported
    /// after the worker started reaches it).
    async fn network_stored(&self) -> Result<bool, StoreError> {
        let (known, read_at) = self.lock().network;
        if read_at.elapsed() < TILE_TTL {
            return Ok(known);
        }
        let now = !self.store.roads(BoundingBox::WORLD, 1).await?.is_empty();
        self.lock().network = (now, Instant::now());
        Ok(now)
    }

    pub fn stats(&self) -> TileStats {
        let c = self.lock();
        TileStats {
            tiles: c.tiles.len(),
            segments: c.segments,
            graphs: c.graphs.len(),
            reads: c.reads,
        }
    }

    /// The graph of the roads within [`MARGIN_M`] of `area`.
    pub async fn graph_for(&self, area: BoundingBox) -> Result<AreaRoads, StoreError> {
        self.graph_within(area, MARGIN_M).await
    }

    /// The graph of the roads within `margin_m` of `area`.
    pub async fn graph_within(
        &self,
        area: BoundingBox,
        margin_m: f64,
    ) -> Result<AreaRoads, StoreError> {
        if !self.network_stored().await? {
            return Ok(AreaRoads::NoNetwork);
        }
        let Some(keys) = tiles_around(area, margin_m) else {
            return Ok(AreaRoads::TooLarge);
        };
        // A graph of these tiles, built since each was last read and still fresh: shared.
        {
            let mut c = self.lock();
            let tick = c.touch();
            let newest_read = keys
                .iter()
                .map(|k| c.tiles.get(k).map(|t| t.read_at))
                .collect::<Option<Vec<_>>>()
                .and_then(|reads| reads.into_iter().max());
            let built_after = |built: Instant| {
                newest_read.is_some_and(|r| built >= r) && built.elapsed() < TILE_TTL
            };
            if let Some(g) = c
                .graphs
                .iter_mut()
                .find(|(k, _, built, _)| *k == keys && built_after(*built))
            {
                g.3 = tick;
                let graph = g.1.clone();
                for k in &keys {
                    if let Some(t) = c.tiles.get_mut(k) {
                        t.used = tick;
                    }
                }
                return Ok(AreaRoads::Graph(graph));
            }
        }
        let mut parts = Vec::with_capacity(keys.len());
        for &key in &keys {
            parts.push(self.tile(key).await?);
        }
        // A segment that crosses a tile's edge is in both tiles: once in the graph.
        let mut seen = HashSet::new();
        let segments: Vec<RoadSegment> = parts
            .iter()
            .flat_map(|p| p.iter())
            .filter(|s| seen.insert((s.osm_way_id, s.piece)))
            .cloned()
            .collect();
        let graph = Arc::new(
            tokio::task::spawn_blocking(move || RoadGraph::new(RoadNetwork { segments }))
                .await
                .map_err(|e| StoreError::Config(format!("building a road graph: {e}")))?,
        );
        let mut c = self.lock();
        let tick = c.touch();
        c.graphs.retain(|(k, _, _, _)| *k != keys);
        c.graphs.push((keys, graph.clone(), Instant::now(), tick));
        if c.graphs.len() > GRAPHS_KEPT {
            c.graphs.sort_by_key(|g| std::cmp::Reverse(g.3));
            c.graphs.truncate(GRAPHS_KEPT);
        }
        Ok(AreaRoads::Graph(graph))
    }

    /// One tile's segments: cached while fresh, else read from the store.
    async fn tile(&self, key: TileKey) -> Result<Arc<Vec<RoadSegment>>, StoreError> {
        {
            let mut c = self.lock();
            let tick = c.touch();
            if let Some(t) = c.tiles.get_mut(&key)
                && t.read_at.elapsed() < TILE_TTL
            {
                t.used = tick;
                return Ok(t.segments.clone());
            }
        }
        let segments = Arc::new(self.store.roads(tile_box(key), i64::MAX).await?);
        let mut c = self.lock();
        c.reads += 1;
        let tick = c.touch();
        if let Some(old) = c.tiles.insert(
            key,
            Tile {
                segments: segments.clone(),
                read_at: Instant::now(),
                used: tick,
            },
        ) {
            c.segments -= old.segments.len();
        }
        c.segments += segments.len();
        // Over the budget: the least recently used tiles go (never the one just read).
        while c.segments > self.max_segments && c.tiles.len() > 1 {
            let Some(oldest) = c
                .tiles
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, t)| t.used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(t) = c.tiles.remove(&oldest) {
                c.segments -= t.segments.len();
            }
        }
        Ok(segments)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Where a worker's roads come from: the whole network read once, or tiles of it read around
/// each job.
#[derive(Debug, Clone)]
pub enum Roads {
    /// The whole network (`None`: no network stored, uploads are indexed by their fixes).
    Whole(Option<Arc<RoadGraph>>),
    /// Tiles of it, read on demand.
    Tiles(Arc<RoadTiles>),
}

impl Roads {
    /// The graph to judge an upload covering `area` against; `None` when no network is stored
    /// (or the upload has no position). An area wider than [`MAX_TILES`] tiles is refused.
    pub async fn around(
        &self,
        area: Option<BoundingBox>,
    ) -> Result<Option<Arc<RoadGraph>>, covermap_store::JobFailure> {
        use covermap_store::JobFailure;
        match self {
            Roads::Whole(graph) => Ok(graph.clone()),
            Roads::Tiles(tiles) => {
                let Some(area) = area else { return Ok(None) };
                match tiles.graph_for(area).await {
                    Ok(AreaRoads::Graph(g)) => Ok(Some(g)),
                    Ok(AreaRoads::NoNetwork) => Ok(None),
                    Ok(AreaRoads::TooLarge) => Err(JobFailure::Rejected(format!(
                        "the upload spans more than {MAX_TILES} road tiles of {TILE_DEG}° \
                         (about 5° by 5°): upload it in parts"
                    ))),
                    Err(e) => Err(JobFailure::Transient(format!("reading road tiles: {e}"))),
                }
            }
        }
    }

    /// A graph to find the fastest drive between two places on (the ends of a gap between
    /// uploads): the whole network, or the tiles within their distance apart of both (at least
    /// [`MARGIN_M`]), which hold every route up to twice the straight line. `None` without a
    /// network, or when those tiles are more than [`MAX_TILES`]: then no drive is computed (a
    /// route cut short by a graph's edge could only look longer than it is, and flag an honest
    /// driver).
    pub async fn between(&self, from: LatLon, to: LatLon) -> Option<Arc<RoadGraph>> {
        match self {
            Roads::Whole(graph) => graph.clone(),
            Roads::Tiles(tiles) => {
                let margin = from.distance_m(to).max(MARGIN_M);
                match tiles.graph_within(area_of([from, to])?, margin).await {
                    Ok(AreaRoads::Graph(g)) => Some(g),
                    _ => None,
                }
            }
        }
    }
}

/// The tile holding `pos`.
fn tile_of(lat: f64, lon: f64) -> TileKey {
    (
        (lat / TILE_DEG).floor() as i32,
        (lon / TILE_DEG).floor() as i32,
    )
}

/// A tile's box.
fn tile_box((y, x): TileKey) -> BoundingBox {
    BoundingBox {
        west: f64::from(x) * TILE_DEG,
        south: f64::from(y) * TILE_DEG,
        east: f64::from(x + 1) * TILE_DEG,
        north: f64::from(y + 1) * TILE_DEG,
    }
}

/// The tiles within `margin_m` of `area`, in order; `None` past [`MAX_TILES`].
fn tiles_around(area: BoundingBox, margin_m: f64) -> Option<Vec<TileKey>> {
    let dlat = margin_m / 111_320.0;
    let widest = area.south.abs().max(area.north.abs()).min(85.0);
    let dlon = margin_m / (111_320.0 * widest.to_radians().cos());
    let (south, north) = (
        (area.south - dlat).max(-90.0),
        (area.north + dlat).min(90.0),
    );
    let (west, east) = (
        (area.west - dlon).max(-180.0),
        (area.east + dlon).min(180.0),
    );
    if !(south <= north && west <= east) {
        return None;
    }
    let (y0, x0) = tile_of(south, west);
    let (y1, x1) = tile_of(north, east);
    let count = (i64::from(y1 - y0) + 1) * (i64::from(x1 - x0) + 1);
    if count > MAX_TILES as i64 {
        return None;
    }
    Some(
        (y0..=y1)
            .flat_map(|y| (x0..=x1).map(move |x| (y, x)))
            .collect(),
    )
}

/// The box around some positions; `None` for none.
pub fn area_of(points: impl IntoIterator<Item = LatLon>) -> Option<BoundingBox> {
    points.into_iter().fold(None, |b, p| {
        Some(match b {
            None => BoundingBox {
                west: p.lon,
                south: p.lat,
                east: p.lon,
                north: p.lat,
            },
            Some(b) => BoundingBox {
                west: b.west.min(p.lon),
                south: b.south.min(p.lat),
                east: b.east.max(p.lon),
                north: b.north.max(p.lat),
            },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_area_takes_the_tiles_within_the_margin_of_it() {
        // Monaco's port: one point, 2 km around it, across two tiles of longitude.
        let keys = tiles_around(
            BoundingBox {
                west: 7.42,
                south: 43.73,
                east: 7.42,
                north: 43.73,
            },
            MARGIN_M,
        )
        .unwrap();
        assert_eq!(keys, vec![(437, 73), (437, 74)]);
        for k in &keys {
            let b = tile_box(*k);
            assert!(b.north - b.south > 0.099 && b.east - b.west > 0.099);
        }
        // West of Greenwich and south of the equator, floor not truncation.
        assert_eq!(tile_of(-0.05, -0.05), (-1, -1));
        // A continent is refused.
        assert!(
            tiles_around(
                BoundingBox {
                    west: -10.0,
                    south: 35.0,
                    east: 30.0,
                    north: 60.0
                },
                MARGIN_M
            )
            .is_none()
        );
        assert!(
            tiles_around(
                BoundingBox {
                    west: f64::NAN,
                    south: 0.0,
                    east: 1.0,
                    north: 1.0
                },
                MARGIN_M
            )
            .is_none()
        );
    }

    #[test]
    fn the_area_of_points_is_their_box() {
        let p = |lat, lon| LatLon::new(lat, lon).unwrap();
        let b = area_of([p(43.7, 7.4), p(43.8, 7.3), p(43.75, 7.45)]).unwrap();
        assert_eq!((b.west, b.south, b.east, b.north), (7.3, 43.7, 7.45, 43.8));
        assert!(area_of([]).is_none());
    }
}
