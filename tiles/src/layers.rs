//! The map's four vector-tile layers, each built for one tile from the rows that lie under it:
//! `coverage`, `radio` and `demand` are H3 hexagons, `roads` are lines. Cells are stored at one
//! fine resolution; at lower zooms they are summed into their parents at the resolution the zoom
//! draws ([`crate::tile::resolution_for_zoom`]), so a hexagon stays a dozen pixels across.
//!
//! Every hexagon carries its cell id as a string property (`cell`), and no feature id: an H3
//! index does not fit a JavaScript number, so a numeric id would reach a web map rounded (a
//! client keys feature state on the cell with MapLibre's `promoteId: "cell"`).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use covermap_domain::rewards::RadioSample;
use covermap_domain::{Cell, RadioCellSummary, RoadSegment};
use covermap_scoring::{RewardPolicy, freshness_at_age};
use h3o::Resolution;
use serde_json::{Value as Json, json};

use crate::mvt::{Layer, Prop, Value};
use crate::tile::TileId;

/// One of the map's layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapLayer {
    Coverage,
    Radio,
    Demand,
    Roads,
}

impl MapLayer {
    pub const ALL: [MapLayer; 4] = [Self::Coverage, Self::Radio, Self::Demand, Self::Roads];

    pub fn name(self) -> &'static str {
        match self {
            Self::Coverage => "coverage",
            Self::Radio => "radio",
            Self::Demand => "demand",
            Self::Roads => "roads",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Coverage => {
                "Imagery and GPS coverage per H3 cell: last seen, freshness, road coverage"
            }
            Self::Radio => "Radio measurements per H3 cell: signal statistics per technology",
            Self::Demand => "Reward weight per H3 cell: demand, staleness, coverage gap, bounties",
            Self::Roads => "OSM road segments with the time a contributor last drove them",
        }
    }

    /// The layer's properties and their types, for TileJSON's `vector_layers`.
    pub fn fields(self) -> Json {
        let hex = [("cell", "String"), ("res", "Number")];
        let own: &[(&str, &str)] = match self {
            Self::Coverage => &[
                ("last_seen", "Number"),
                ("freshness", "Number"),
                ("coverage", "Number"),
                ("observations", "Number"),
                ("uploads", "Number"),
                ("contributors", "Number"),
            ],
            Self::Radio => &[
                ("observations", "Number"),
                ("emitters", "Number"),
                ("best_signal_dbm", "Number"),
                ("last_seen", "Number"),
                ("gsm_best_dbm", "Number"),
                ("gsm_median_dbm", "Number"),
                ("gsm_samples", "Number"),
                ("wcdma_best_dbm", "Number"),
                ("wcdma_median_dbm", "Number"),
                ("wcdma_samples", "Number"),
                ("lte_best_dbm", "Number"),
                ("lte_median_dbm", "Number"),
                ("lte_samples", "Number"),
                ("nr_best_dbm", "Number"),
                ("nr_median_dbm", "Number"),
                ("nr_samples", "Number"),
                ("wifi_best_dbm", "Number"),
                ("wifi_median_dbm", "Number"),
                ("wifi_samples", "Number"),
                ("bluetooth_best_dbm", "Number"),
                ("bluetooth_median_dbm", "Number"),
                ("bluetooth_samples", "Number"),
            ],
            Self::Demand => &[
                ("weight", "Number"),
                ("demand", "Number"),
                ("staleness", "Number"),
                ("coverage_gap", "Number"),
                ("open_bounties", "Number"),
            ],
            Self::Roads => &[
                ("osm_way_id", "Number"),
                ("highway", "String"),
                ("name", "String"),
                ("last_seen", "Number"),
                ("age_days", "Number"),
            ],
        };
        let mut fields = serde_json::Map::new();
        let all: Vec<&(&str, &str)> = if self == Self::Roads {
            own.iter().collect()
        } else {
            hex.iter().chain(own).collect()
        };
        for (name, kind) in all {
            fields.insert((*name).to_owned(), json!(kind));
        }
        Json::Object(fields)
    }
}

impl std::fmt::Display for MapLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What was observed in a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageCell {
    pub cell: Cell,
    pub observations: i64,
    pub uploads: i64,
    pub contributors: i64,
    pub last_seen: DateTime<Utc>,
}

/// A cell's reward weight and what it is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct DemandCell {
    pub cell: Cell,
    pub weight: f64,
    pub demand: f64,
    pub staleness: f64,
    pub coverage_gap: f64,
    pub open_bounties: i64,
}

/// A road segment and when a contributor last drove it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenSegment {
    pub segment: RoadSegment,
    pub last_seen: Option<DateTime<Utc>>,
}

/// `cell`'s ancestor at `res` (itself when it is not finer).
pub fn parent(cell: Cell, res: Resolution) -> Cell {
    if cell.0.resolution() <= res {
        return cell;
    }
    cell.0.parent(res).map_or(cell, Cell)
}

/// A cell's box, `[west, south, east, north]` in degrees (west > 180° from east when the cell
/// straddles the antimeridian).
pub fn cell_bounds(cell: Cell) -> [f64; 4] {
    crate::tile::bounds_of(cell.0.boundary().iter().map(|ll| (ll.lng(), ll.lat())))
}

fn age_days(t: DateTime<Utc>, now: DateTime<Utc>) -> f64 {
    round3((now - t).num_seconds().max(0) as f64 / 86_400.0)
}

/// To thousandths, half away from zero (without libm's `round`, a call on a baseline x86-64:
/// this runs for several figures of every hexagon of every tile).
fn round3(v: f64) -> f64 {
    let scaled = v * 1000.0;
    if scaled.is_nan() || scaled.abs() >= 4.0e15 {
        return (scaled.round()) / 1000.0;
    }
    let whole = scaled as i64;
    let frac = scaled - whole as f64;
    // Without branches, as `mvt` rounds.
    let r = whole + i64::from(frac >= 0.5) - i64::from(frac <= -0.5);
    r as f64 / 1000.0
}

/// Adds `cell`'s hexagon with `props`, its id as the `cell` property.
fn add_hex(layer: &mut Layer, cell: Cell, res: Resolution, props: &mut Vec<(&str, Value)>) {
    let ring: Vec<(f64, f64)> = cell
        .0
        .boundary()
        .iter()
        .map(|ll| (ll.lng(), ll.lat()))
        .collect();
    let id = cell.to_string();
    props.push(("cell", Value::String(id)));
    props.push(("res", Value::UInt(u64::from(u8::from(res)))));
    layer.add_polygon(None, &[ring], props);
}

/// The `coverage` layer: per hexagon with observations, the newest one (and its age and
/// freshness under `policy`), the share of its road driven in the coverage window (`roads`:
/// each cell's road length and length driven lately, summed over all of a parent's children,
/// driven or not), observations (GPS fixes), and uploads and contributors. A parent's uploads
/// and contributors are its busiest child's (a lower bound: one contributor may have driven
/// several children).
pub fn coverage(
    tile: TileId,
    res: Resolution,
    cells: &[CoverageCell],
    roads: &HashMap<Cell, (f64, f64)>,
    now: DateTime<Utc>,
    policy: &RewardPolicy,
) -> Layer {
    let mut groups: BTreeMap<Cell, CoverageCell> = BTreeMap::new();
    for c in cells {
        let p = parent(c.cell, res);
        groups
            .entry(p)
            .and_modify(|g| {
                g.observations += c.observations;
                g.uploads = g.uploads.max(c.uploads);
                g.contributors = g.contributors.max(c.contributors);
                g.last_seen = g.last_seen.max(c.last_seen);
            })
            .or_insert_with(|| CoverageCell {
                cell: p,
                ..c.clone()
            });
    }
    let mut road: HashMap<Cell, (f64, f64)> = HashMap::new();
    for (cell, (length, driven)) in roads {
        let p = parent(*cell, res);
        if groups.contains_key(&p) {
            let r = road.entry(p).or_default();
            r.0 += length;
            r.1 += driven;
        }
    }
    let mut layer = coverage_layer(tile);
    let mut props = Vec::with_capacity(10);
    for g in groups.values() {
        props.clear();
        let r = road.get(&g.cell).copied().unwrap_or_default();
        CoverageFigures::new(
            g.last_seen.timestamp(),
            (g.observations, g.uploads, g.contributors),
            r,
            now.timestamp(),
            policy,
        )
        .push_onto(&mut props);
        add_hex(&mut layer, g.cell, res, &mut props);
    }
    layer
}

/// An empty `coverage` layer of `tile`: its hexagons' ids and times are their own.
fn coverage_layer(tile: TileId) -> Layer {
    let mut layer = Layer::new(MapLayer::Coverage.name(), tile);
    // Shares are thousandths: a z12 tile's 3,200 hexagons hold some 850 freshness values and
    // 670 coverage values, each written once.
    layer.unique_values(&["cell", "last_seen"]);
    layer
}

/// A `coverage` hexagon's figures but its cell's, times as Unix seconds. The shares are to
/// thousandths, so they go as 32-bit floats (within 6e-8 of the thousandth; half a double's
/// bytes). Its age is not among them: `last_seen` says it exactly, where an age would be
/// stale as soon as the tile is cached.
struct CoverageFigures {
    last_seen: i64,
    freshness: f32,
    /// Share of the road driven lately; none without road.
    coverage: Option<f32>,
    observations: i64,
    uploads: i64,
    contributors: i64,
}

impl CoverageFigures {
    /// `counts` are observations, uploads and contributors, `road` road length and length
    /// driven.
    fn new(
        last_seen: i64,
        counts: (i64, i64, i64),
        road: (f64, f64),
        now: i64,
        policy: &RewardPolicy,
    ) -> Self {
        let age = now.saturating_sub(last_seen).max(0) as f64;
        let (length, driven) = road;
        Self {
            last_seen,
            freshness: round3(freshness_at_age(age, policy)) as f32,
            coverage: (length > 0.0).then(|| round3((driven / length).clamp(0.0, 1.0)) as f32),
            observations: counts.0,
            uploads: counts.1,
            contributors: counts.2,
        }
    }

    /// The properties as [`Layer::add_polygon`] takes them.
    fn push_onto(&self, props: &mut Vec<(&str, Value)>) {
        props.push(("last_seen", Value::Int(self.last_seen)));
        props.push(("freshness", Value::Float(self.freshness)));
        if let Some(c) = self.coverage {
            props.push(("coverage", Value::Float(c)));
        }
        props.push(("observations", Value::Int(self.observations)));
        props.push(("uploads", Value::Int(self.uploads)));
        props.push(("contributors", Value::Int(self.contributors)));
    }
}

/// A `coverage` layer drawn hexagon by hexagon from figures at hand (the map in memory), its
/// keys indexed once: the same features [`coverage`] draws from rows.
pub(crate) struct CoverageWriter<'p> {
    layer: Layer,
    res: Resolution,
    keys: [u32; 8],
    /// Unix seconds.
    now: i64,
    policy: &'p RewardPolicy,
}

impl<'p> CoverageWriter<'p> {
    /// A layer of about `hexagons` hexagons of `res` at `now` (Unix seconds) under `policy`.
    pub(crate) fn new(
        tile: TileId,
        res: Resolution,
        hexagons: usize,
        now: i64,
        policy: &'p RewardPolicy,
    ) -> Self {
        let mut layer = coverage_layer(tile);
        // A hexagon's feature is 45-51 bytes (its values go apart): the features grow in
        // place, not by copies.
        layer.reserve(hexagons * 64);
        let keys = [
            "last_seen",
            "freshness",
            "coverage",
            "observations",
            "uploads",
            "contributors",
            "cell",
            "res",
        ]
        .map(|k| layer.key(k));
        Self {
            layer,
            res,
            keys,
            now,
            policy,
        }
    }

    /// Adds hexagon `cell`, its outline in the tile's coordinates (unrounded), with its
    /// figures: `counts` observations, uploads and contributors, `road` road length and
    /// length driven.
    pub(crate) fn add(
        &mut self,
        cell: u64,
        ring: &[(f64, f64)],
        last_seen: i64,
        counts: (i64, i64, i64),
        road: (f64, f64),
    ) {
        let f = CoverageFigures::new(last_seen, counts, road, self.now, self.policy);
        let mut id = [0u8; 16];
        let k = &self.keys;
        let props = [
            (k[0], Prop::Int(f.last_seen)),
            (k[1], Prop::Float(f.freshness)),
            // No road, no share: a NaN is left out.
            (k[2], Prop::Float(f.coverage.unwrap_or(f32::NAN))),
            (k[3], Prop::Int(f.observations)),
            (k[4], Prop::Int(f.uploads)),
            (k[5], Prop::Int(f.contributors)),
            (k[6], Prop::Str(hex_id_in(cell, &mut id))),
            (k[7], Prop::UInt(u64::from(u8::from(self.res)))),
        ];
        self.layer.add_keyed_ring(None, ring, &props);
    }

    pub(crate) fn finish(self) -> Layer {
        self.layer
    }
}

/// An H3 index as H3 writes it: lower-case hex without leading zeros (as `Display` does,
/// without the formatting machinery: this runs for every hexagon of every tile), in `buf`.
fn hex_id_in(id: u64, buf: &mut [u8; 16]) -> &str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut at = buf.len();
    let mut v = id;
    loop {
        at -= 1;
        buf[at] = DIGITS[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

/// The `radio` layer: per hexagon, observations, emitters and best signal of all technologies,
/// and per technology seen there (`gsm`, `wcdma`, `lte`, `nr`, `wifi`, `bluetooth`) the best and
/// (lower) median signal and the number of samples, from `samples`.
pub fn radio(
    tile: TileId,
    res: Resolution,
    cells: &[RadioCellSummary],
    samples: &[RadioSample],
) -> Layer {
    struct Group {
        observations: i64,
        emitters: i64,
        best: Option<i32>,
        last_seen: DateTime<Utc>,
        by_tech: BTreeMap<String, Vec<i32>>,
        samples: BTreeMap<String, u64>,
    }
    let mut groups: BTreeMap<Cell, Group> = BTreeMap::new();
    for c in cells {
        let g = groups.entry(parent(c.cell, res)).or_insert(Group {
            observations: 0,
            emitters: 0,
            best: None,
            last_seen: c.last_seen,
            by_tech: BTreeMap::new(),
            samples: BTreeMap::new(),
        });
        g.observations += c.observations;
        g.emitters = g.emitters.max(c.emitters);
        g.best = g.best.max(c.best_signal_dbm);
        g.last_seen = g.last_seen.max(c.last_seen);
    }
    for s in samples {
        if let Some(g) = groups.get_mut(&parent(s.cell, res)) {
            *g.samples.entry(s.technology.clone()).or_default() += 1;
            let signals = g.by_tech.entry(s.technology.clone()).or_default();
            signals.extend(s.signal_dbm);
        }
    }
    let mut layer = Layer::new(MapLayer::Radio.name(), tile);
    layer.unique_values(&["cell"]);
    let mut names: Vec<(String, String, String)> = Vec::new();
    for (cell, g) in &mut groups {
        names.clear();
        for tech in g.samples.keys() {
            names.push((
                format!("{tech}_best_dbm"),
                format!("{tech}_median_dbm"),
                format!("{tech}_samples"),
            ));
        }
        let mut props: Vec<(&str, Value)> = vec![
            ("observations", Value::Int(g.observations)),
            ("emitters", Value::Int(g.emitters)),
            ("last_seen", Value::Int(g.last_seen.timestamp())),
        ];
        if let Some(b) = g.best {
            props.push(("best_signal_dbm", Value::Int(i64::from(b))));
        }
        for ((tech, n), (best_key, median_key, samples_key)) in g.samples.iter().zip(&names) {
            props.push((samples_key, Value::UInt(*n)));
            if let Some(signals) = g.by_tech.get_mut(tech).filter(|s| !s.is_empty()) {
                signals.sort_unstable();
                let best = signals[signals.len() - 1];
                let median = signals[(signals.len() - 1) / 2];
                props.push((best_key, Value::Int(i64::from(best))));
                props.push((median_key, Value::Int(i64::from(median))));
            }
        }
        add_hex(&mut layer, *cell, res, &mut props);
    }
    layer
}

/// The `demand` layer: per hexagon, the reward weight a capture would earn there now and what it
/// is made of. A parent shows its highest-weighted child (where a driver should go) and the
/// bounties of all its children.
pub fn demand(tile: TileId, res: Resolution, cells: &[DemandCell]) -> Layer {
    let mut groups: BTreeMap<Cell, DemandCell> = BTreeMap::new();
    for c in cells {
        let p = parent(c.cell, res);
        match groups.get_mut(&p) {
            Some(g) => {
                let bounties = g.open_bounties + c.open_bounties;
                if c.weight > g.weight {
                    *g = DemandCell {
                        cell: p,
                        ..c.clone()
                    };
                }
                g.open_bounties = bounties;
            }
            None => {
                groups.insert(
                    p,
                    DemandCell {
                        cell: p,
                        ..c.clone()
                    },
                );
            }
        }
    }
    let mut layer = Layer::new(MapLayer::Demand.name(), tile);
    layer.unique_values(&["cell"]);
    let mut props = Vec::with_capacity(8);
    for g in groups.values() {
        props.clear();
        props.push(("weight", Value::Double(round3(g.weight))));
        props.push(("demand", Value::Double(round3(g.demand))));
        props.push(("staleness", Value::Double(round3(g.staleness))));
        props.push(("coverage_gap", Value::Double(round3(g.coverage_gap))));
        props.push(("open_bounties", Value::Int(g.open_bounties)));
        add_hex(&mut layer, g.cell, res, &mut props);
    }
    layer
}

/// Road classes drawn below zoom 12 (all are drawn from 12 on).
const MAJOR_ROADS: [&str; 10] = [
    "motorway",
    "motorway_link",
    "trunk",
    "trunk_link",
    "primary",
    "primary_link",
    "secondary",
    "secondary_link",
    "tertiary",
    "tertiary_link",
];

/// Whether a road of class `highway` is drawn at zoom `z`.
pub fn road_drawn_at(highway: &str, z: u8) -> bool {
    z >= 12 || MAJOR_ROADS.contains(&highway)
}

/// The `roads` layer: each segment drawn at this zoom, with its OSM way, class, name and when a
/// contributor last drove it (left out where nobody has).
pub fn roads(tile: TileId, segments: &[SeenSegment], now: DateTime<Utc>) -> Layer {
    let mut layer = Layer::new(MapLayer::Roads.name(), tile);
    let mut line = Vec::new();
    let mut props = Vec::with_capacity(6);
    for s in segments {
        if !road_drawn_at(&s.segment.highway, tile.z) {
            continue;
        }
        line.clear();
        line.extend(s.segment.points.iter().map(|p| (p.lon, p.lat)));
        props.clear();
        props.push(("osm_way_id", Value::Int(s.segment.osm_way_id)));
        props.push(("highway", Value::String(s.segment.highway.clone())));
        if let Some(name) = &s.segment.name {
            props.push(("name", Value::String(name.clone())));
        }
        if let Some(t) = s.last_seen {
            props.push(("last_seen", Value::Int(t.timestamp())));
            props.push(("age_days", Value::Double(age_days(t, now))));
        }
        let id = u64::try_from(s.segment.osm_way_id)
            .ok()
            .map(|w| (w << 12) | (u64::from(s.segment.piece) & 0xfff));
        layer.add_line(id, &line, &props);
    }
    layer
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use covermap_domain::LatLon;

    fn cell_at(lat: f64, lon: f64, res: Resolution) -> Cell {
        Cell(h3o::LatLng::new(lat, lon).unwrap().to_cell(res))
    }

    #[test]
    fn thousandths_round_as_f64_round_does() {
        for v in [
            0.0,
            0.0005,
            0.0015,
            -0.0005,
            1.2345,
            2.0 / 3.0,
            -7.77777,
            1e13,
            1e300,
        ] {
            assert_eq!(round3(v), (v * 1000.0).round() / 1000.0, "{v}");
        }
        assert!(round3(f64::NAN).is_nan());
    }

    #[test]
    fn hexagon_ids_are_written_as_h3_writes_them() {
        let c = cell_at(43.7384, 7.4246, Resolution::Eleven);
        let mut buf = [0u8; 16];
        assert_eq!(hex_id_in(u64::from(c.0), &mut buf), c.to_string());
        assert_eq!(hex_id_in(0, &mut buf), "0");
        assert_eq!(hex_id_in(u64::MAX, &mut buf), "ffffffffffffffff");
    }

    #[test]
    fn layers_parse_by_name() {
        for l in MapLayer::ALL {
            assert_eq!(MapLayer::parse(l.name()), Some(l));
        }
        assert_eq!(MapLayer::parse("nope"), None);
    }

    #[test]
    fn children_are_summed_into_their_parent() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let a = cell_at(43.7384, 7.4246, Resolution::Eleven);
        let siblings: Vec<Cell> =
            a.0.parent(Resolution::Ten)
                .unwrap()
                .children(Resolution::Eleven)
                .take(2)
                .map(Cell)
                .collect();
        let row = |cell: Cell, obs: i64, days: i64| CoverageCell {
            cell,
            observations: obs,
            uploads: 1,
            contributors: obs,
            last_seen: now - chrono::Duration::days(days),
        };
        let rows = [row(siblings[0], 3, 2), row(siblings[1], 4, 1)];
        let tile = crate::tile::tiles_covering([7.4246, 43.7384, 7.4246, 43.7384], 14)[0];
        let policy = RewardPolicy::shipped();
        let roads: HashMap<Cell, (f64, f64)> =
            [(siblings[0], (100.0, 50.0)), (siblings[1], (100.0, 0.0))].into();
        let layer = coverage(tile, Resolution::Ten, &rows, &roads, now, &policy);
        assert_eq!(layer.len(), 1, "two children, one parent hexagon");
        let bytes = crate::mvt::encode(&[layer]);
        let reader = mvt_reader::Reader::new(bytes).unwrap();
        let f = &reader.get_features(0).unwrap()[0];
        let p = f.properties.as_ref().unwrap();
        use mvt_reader::feature::Value as V;
        assert_eq!(p["observations"], V::SInt(7), "observations are summed");
        assert_eq!(
            p["contributors"],
            V::SInt(4),
            "the busiest child's contributors"
        );
        assert_eq!(
            p["coverage"],
            V::Float(0.25),
            "50 m driven of 200 m of road"
        );
        assert_eq!(
            p["last_seen"],
            V::SInt((now - chrono::Duration::days(1)).timestamp()),
            "the newest child's"
        );
        assert!(f.id.is_none(), "no numeric id: the cell is the id");
        let layer = coverage(tile, Resolution::Eleven, &rows, &roads, now, &policy);
        assert_eq!(layer.len(), 2);
    }

    #[test]
    fn minor_roads_wait_for_zoom_12() {
        assert!(road_drawn_at("primary", 8));
        assert!(!road_drawn_at("residential", 11));
        assert!(road_drawn_at("residential", 12));
        let a = LatLon::new(43.7384, 7.4246).unwrap();
        let b = LatLon::new(43.7390, 7.4250).unwrap();
        let seg = |highway: &str| SeenSegment {
            segment: RoadSegment {
                osm_way_id: 7,
                piece: 0,
                osm_node_ids: vec![1, 2],
                points: vec![a, b],
                highway: highway.into(),
                name: None,
                oneway: false,
                length_m: a.distance_m(b),
            },
            last_seen: None,
        };
        let now = Utc::now();
        let tile = crate::tile::tiles_covering([7.4246, 43.7384, 7.4246, 43.7384], 11)[0];
        let layer = roads(tile, &[seg("primary"), seg("residential")], now);
        assert_eq!(layer.len(), 1);
    }
}
