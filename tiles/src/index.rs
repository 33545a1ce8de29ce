//! The coverage map held in memory: every cell's figures at the stored resolution and, kept as
//! the cells change, every parent's at each coarser resolution a zoom draws, each with its
//! hexagon already projected to Web Mercator and filed in a grid of tiles; a `coverage` tile is
//! encoded from it with no query. The server fills it from the store at start and applies the
//! cells the change feed reports ([`MapIndex::apply`]); what changes by the clock alone (a
//! drive leaving the coverage window) is re-read when due ([`MapIndex::due`]).
//!
//! A parent's figures are its children's, summed or maxed as [`crate::layers::coverage`] sums
//! them from the rows under a tile, so a tile reads the same from here as from the store; they
//! are recomputed level by level from the seven children of each parent a change reaches, never
//! from all of a parent's descendants.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use covermap_domain::{Cell, MapCellState};
use covermap_scoring::RewardPolicy;
use h3o::{CellIndex, Resolution};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::layers;
use crate::mvt::Layer;
use crate::tile::{self, BUFFER, EXTENT, TileId};

/// A cell's figures: a stored cell's as read, a parent's summed over its children.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Figures {
    observations: i64,
    uploads: i64,
    contributors: i64,
    /// Newest observation (Unix seconds); `None` where nothing was observed: not drawn.
    last_seen: Option<i64>,
    road_length_m: f64,
    driven_m: f64,
}

impl Figures {
    fn of(s: &MapCellState) -> Self {
        let o = s.observed;
        Self {
            observations: o.map_or(0, |o| o.fixes),
            uploads: o.map_or(0, |o| o.uploads),
            contributors: o.map_or(0, |o| o.devices),
            last_seen: o.map(|o| o.last_seen.timestamp()),
            road_length_m: s.road_length_m,
            driven_m: s.driven_m,
        }
    }

    /// Adds a child's figures into its parent's.
    fn absorb(&mut self, c: &Figures) {
        self.observations += c.observations;
        self.uploads = self.uploads.max(c.uploads);
        self.contributors = self.contributors.max(c.contributors);
        self.last_seen = self.last_seen.max(c.last_seen);
        self.road_length_m += c.road_length_m;
        self.driven_m += c.driven_m;
    }
}

/// A hexagon's outline: its vertices as offsets from its centre in world units (the Web
/// Mercator world is 1 × 1), six inline and the rare longer outline (a pentagon, or a cell
/// across an icosahedron edge) on the heap.
#[derive(Debug, Clone)]
enum Outline {
    Six([[f32; 2]; 6]),
    Other(Box<[[f32; 2]]>),
}

impl Outline {
    fn vertices(&self) -> &[[f32; 2]] {
        match self {
            Self::Six(v) => v,
            Self::Other(v) => v,
        }
    }
}

/// One cell of one level.
#[derive(Debug, Clone)]
struct Entry {
    figures: Figures,
    /// Centre in world units, x east from the antimeridian, y south from the north edge.
    centre: [f64; 2],
    /// How far the outline reaches from the centre along either axis, in world units.
    reach: f32,
    outline: Outline,
}

impl Entry {
    fn new(cell: CellIndex, figures: Figures) -> Self {
        let ll = h3o::LatLng::from(cell);
        let centre = world(ll.lng(), ll.lat());
        let mut reach = 0f32;
        let offsets: Vec<[f32; 2]> = cell
            .boundary()
            .iter()
            .map(|v| {
                // Measured the short way round, so a cell across the antimeridian stays whole.
                let mut dx = (v.lng() - ll.lng() + 540.0).rem_euclid(360.0) - 180.0;
                dx /= 360.0;
                let dy = world(v.lng(), v.lat())[1] - centre[1];
                let o = [dx as f32, dy as f32];
                reach = reach.max(o[0].abs()).max(o[1].abs());
                o
            })
            .collect();
        let outline = match <[[f32; 2]; 6]>::try_from(offsets.as_slice()) {
            Ok(six) => Outline::Six(six),
            Err(_) => Outline::Other(offsets.into_boxed_slice()),
        };
        Self {
            figures,
            centre,
            reach,
            outline,
        }
    }
}

/// A lon/lat in world units.
fn world(lon: f64, lat: f64) -> [f64; 2] {
    let t = TileId { z: 0, x: 0, y: 0 }.project(lon, lat);
    [t.0 / f64::from(EXTENT), t.1 / f64::from(EXTENT)]
}

/// The zoom whose tiles are about 16 hexagon edges of `res` across at the equator (fewer
/// towards the poles): a grid tile holds a few dozen cells, so a tile of any zoom looks at few
/// more cells than it draws.
fn grid_zoom(res: Resolution) -> u8 {
    let across = 40_075_016.0 / (16.0 * res.edge_length_m());
    across.log2().floor().clamp(0.0, f64::from(tile::MAX_ZOOM)) as u8
}

/// One grid tile's cells, in id order.
type Run = [(u64, Entry)];

/// The cells of one resolution, filed by the grid tile their centre lies in: each grid tile's
/// cells side by side, in id order, so a tile reads its cells from a few runs of memory and in an
/// order that depends on the cells alone (every server draws the same bytes).
#[derive(Debug)]
struct Level {
    res: Resolution,
    /// The zoom of the grid the cells are filed in ([`grid_zoom`]).
    grid_zoom: u8,
    /// Which grid tile each cell is filed in.
    filed: FxHashMap<u64, (u32, u32)>,
    grid: FxHashMap<(u32, u32), Vec<(u64, Entry)>>,
    /// The farthest any outline of this level reaches from its centre.
    reach: f32,
}

impl Level {
    fn grid_tile(&self, centre: [f64; 2]) -> (u32, u32) {
        let n = f64::from(1u32 << self.grid_zoom);
        let last = (1u32 << self.grid_zoom) - 1;
        let at = |v: f64| ((v * n).floor().max(0.0) as u32).min(last);
        (at(centre[0]), at(centre[1]))
    }

    fn len(&self) -> usize {
        self.filed.len()
    }

    fn get(&self, id: u64) -> Option<&Entry> {
        let run = self.grid.get(self.filed.get(&id)?)?;
        let at = run.binary_search_by_key(&id, |(c, _)| *c).ok()?;
        run.get(at).map(|(_, e)| e)
    }

    /// Puts `figures` on `cell`, filing it when it is new.
    fn set(&mut self, cell: CellIndex, figures: Figures) {
        let id = u64::from(cell);
        if let Some(key) = self.filed.get(&id)
            && let Some(run) = self.grid.get_mut(key)
            && let Ok(at) = run.binary_search_by_key(&id, |(c, _)| *c)
            && let Some((_, e)) = run.get_mut(at)
        {
            e.figures = figures;
            return;
        }
        let entry = Entry::new(cell, figures);
        self.reach = self.reach.max(entry.reach);
        let key = self.grid_tile(entry.centre);
        let run = self.grid.entry(key).or_default();
        let at = run.partition_point(|(c, _)| *c < id);
        run.insert(at, (id, entry));
        self.filed.insert(id, key);
    }

    fn remove(&mut self, id: u64) {
        let Some(key) = self.filed.remove(&id) else {
            return;
        };
        if let Some(run) = self.grid.get_mut(&key) {
            if let Ok(at) = run.binary_search_by_key(&id, |(c, _)| *c) {
                run.remove(at);
            }
            if run.is_empty() {
                self.grid.remove(&key);
            }
        }
    }
}

/// The coverage map in memory (see the module's documentation).
#[derive(Debug)]
pub struct MapIndex {
    finest: Resolution,
    /// `levels[i]` holds resolution `coarsest + i`; the last is `finest`.
    levels: Vec<Level>,
    /// Stored cells whose road driven changes by the clock: (when, cell).
    due: BTreeSet<(i64, u64)>,
    due_at: FxHashMap<u64, i64>,
}

impl MapIndex {
    /// An empty index of cells stored at `finest`, keeping parents down to the resolution zoom
    /// `min_zoom` draws.
    pub fn new(finest: Resolution, min_zoom: u8) -> Self {
        let coarsest = tile::resolution_for_zoom(min_zoom, finest);
        let levels = (u8::from(coarsest)..=u8::from(finest))
            .filter_map(|r| Resolution::try_from(r).ok())
            .map(|res| Level {
                res,
                grid_zoom: grid_zoom(res),
                filed: FxHashMap::default(),
                grid: FxHashMap::default(),
                reach: 0.0,
            })
            .collect();
        Self {
            finest,
            levels,
            due: BTreeSet::new(),
            due_at: FxHashMap::default(),
        }
    }

    /// The index of `states` (every stored cell there is, as the store reads them), parents down
    /// to the resolution `min_zoom` draws.
    pub fn of(finest: Resolution, min_zoom: u8, states: &[MapCellState]) -> Self {
        let mut index = Self::new(finest, min_zoom);
        let cells: Vec<Cell> = states.iter().map(|s| s.cell).collect();
        index.apply(&cells, states);
        index
    }

    /// Stored cells held (with observations or road).
    pub fn len(&self) -> usize {
        self.levels.last().map_or(0, Level::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cells held at every level, stored and parents.
    pub fn cells_held(&self) -> usize {
        self.levels.iter().map(Level::len).sum()
    }

    /// Applies what the store now says of the cells `asked` about: `found` holds those still
    /// with something to show (a cell asked about and not found is gone). Then each parent the
    /// change reaches is summed again from its children, level by level.
    pub fn apply(&mut self, asked: &[Cell], found: &[MapCellState]) {
        let Some(fine) = self.levels.last_mut() else {
            return;
        };
        let mut dirty: FxHashSet<u64> = FxHashSet::default();
        // A state with nothing to show is as good as gone.
        let shows =
            |s: &&MapCellState| s.observed.is_some() || s.road_length_m > 0.0 || s.driven_m > 0.0;
        let seen: FxHashSet<u64> = found
            .iter()
            .filter(shows)
            .map(|s| u64::from(s.cell.0))
            .collect();
        for c in asked {
            let id = u64::from(c.0);
            if c.0.resolution() == self.finest && !seen.contains(&id) {
                fine.remove(id);
                dirty.insert(id);
                if let Some(t) = self.due_at.remove(&id) {
                    self.due.remove(&(t, id));
                }
            }
        }
        for s in found.iter().filter(shows) {
            if s.cell.0.resolution() != self.finest {
                continue;
            }
            let id = u64::from(s.cell.0);
            fine.set(s.cell.0, Figures::of(s));
            dirty.insert(id);
            if let Some(t) = self.due_at.remove(&id) {
                self.due.remove(&(t, id));
            }
            if let Some(t) = s.driven_until {
                let t = t.timestamp();
                self.due.insert((t, id));
                self.due_at.insert(id, t);
            }
        }
        self.refresh_parents(dirty);
    }

    /// Sums again, from its children, each parent of the `dirty` stored cells, coarser and
    /// coarser.
    fn refresh_parents(&mut self, mut dirty: FxHashSet<u64>) {
        for li in (0..self.levels.len().saturating_sub(1)).rev() {
            let (parents, children) = self.levels.split_at_mut(li + 1);
            let (level, below) = (&mut parents[li], &children[0]);
            let mut next: FxHashSet<u64> = FxHashSet::default();
            for id in &dirty {
                if let Some(p) = CellIndex::try_from(*id)
                    .ok()
                    .and_then(|c| c.parent(level.res))
                {
                    next.insert(u64::from(p));
                }
            }
            for id in &next {
                let Ok(p) = CellIndex::try_from(*id) else {
                    continue;
                };
                let mut sum: Option<Figures> = None;
                for child in p.children(below.res) {
                    if let Some(e) = below.get(u64::from(child)) {
                        sum.get_or_insert_with(Figures::default).absorb(&e.figures);
                    }
                }
                match sum {
                    Some(f) => level.set(p, f),
                    None => level.remove(*id),
                }
            }
            dirty = next;
        }
    }

    /// Stored cells whose road driven has changed by `now` through the clock alone (their
    /// oldest counted drive left the coverage window): to be read again and applied.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<Cell> {
        let now = now.timestamp();
        self.due
            .iter()
            .take_while(|(t, _)| *t <= now)
            .filter_map(|(_, id)| CellIndex::try_from(*id).ok().map(Cell))
            .collect()
    }

    /// The `coverage` layer of `tile` at `now`, as [`layers::coverage`] draws it from the rows
    /// under the tile; `None` for a zoom this index keeps no level for.
    pub fn coverage(
        &self,
        tile: TileId,
        now: DateTime<Utc>,
        policy: &RewardPolicy,
    ) -> Option<Layer> {
        let res = tile::resolution_for_zoom(tile.z, self.finest);
        let level = self.levels.iter().find(|l| l.res == res)?;
        let (runs, inside) = self.under(level, tile);
        let hexagons = runs.iter().map(|r| r.len()).sum::<usize>();
        let mut writer = layers::CoverageWriter::new(tile, res, hexagons, now.timestamp(), policy);
        let scale = f64::from(1u32 << tile.z) * f64::from(EXTENT);
        let origin = [
            f64::from(tile.x) * f64::from(EXTENT),
            f64::from(tile.y) * f64::from(EXTENT),
        ];
        let mut ring: Vec<(f64, f64)> = Vec::with_capacity(10);
        for (id, e) in runs
            .iter()
            .flat_map(|r| r.iter())
            .filter(|(_, e)| inside(e))
        {
            let f = &e.figures;
            let Some(last_seen) = f.last_seen else {
                continue;
            };
            ring.clear();
            ring.extend(e.outline.vertices().iter().map(|o| {
                (
                    (e.centre[0] + f64::from(o[0])) * scale - origin[0],
                    (e.centre[1] + f64::from(o[1])) * scale - origin[1],
                )
            }));
            writer.add(
                *id,
                &ring,
                last_seen,
                (f.observations, f.uploads, f.contributors),
                (f.road_length_m, f.driven_m),
            );
        }
        Some(writer.finish())
    }

    /// The runs of `level`'s grid tiles that `tile` and its buffer may reach into, row by row
    /// (each run's cells in id order), and whether a cell's outline may reach into them.
    fn under<'a>(
        &self,
        level: &'a Level,
        tile: TileId,
    ) -> (Vec<&'a Run>, impl Fn(&Entry) -> bool + use<'a>) {
        let n = f64::from(1u32 << tile.z);
        let b = f64::from(BUFFER) / f64::from(EXTENT);
        let lo = [(f64::from(tile.x) - b) / n, (f64::from(tile.y) - b) / n];
        let hi = [
            (f64::from(tile.x) + 1.0 + b) / n,
            (f64::from(tile.y) + 1.0 + b) / n,
        ];
        let grow = f64::from(level.reach);
        let g = f64::from(1u32 << level.grid_zoom);
        let last = (1u32 << level.grid_zoom) - 1;
        let at = |v: f64| ((v * g).floor().max(0.0) as u32).min(last);
        let (x0, x1) = (at(lo[0] - grow), at(hi[0] + grow));
        let (y0, y1) = (at(lo[1] - grow), at(hi[1] + grow));
        let runs = (y0..=y1)
            .flat_map(|gy| (x0..=x1).map(move |gx| (gx, gy)))
            .filter_map(|key| level.grid.get(&key).map(Vec::as_slice))
            .collect();
        let inside = move |e: &Entry| {
            let r = f64::from(e.reach);
            e.centre[0] + r >= lo[0]
                && e.centre[0] - r <= hi[0]
                && e.centre[1] + r >= lo[1]
                && e.centre[1] - r <= hi[1]
        };
        (runs, inside)
    }
}
