//! Mapbox Vector Tile 2.1 encoding: layers of polygons and lines with properties, written as
//! the spec's protobuf by hand (no codegen, no intermediate message structs).
//!
//! Owns projection into one tile, clipping to the tile grown by [`BUFFER`], rounding, ring
//! winding and the wire format. Which features go into which layer is [`crate::layers`]'s.
//!
//! Spec: <https://github.com/mapbox/vector-tile-spec/tree/master/2.1>.

use rustc_hash::FxHashMap;

use crate::tile::{BUFFER, EXTENT, Projection, TileId};

/// A property value, as the spec's `Value` message carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Double(f64),
    /// Written as `float_value`: half the bytes of a double, for figures rounded far coarser
    /// than its 24 bits (a share to thousandths).
    Float(f32),
    /// Written as `sint_value` (zigzag), so small negatives stay small.
    Int(i64),
    /// Written as `uint_value`.
    UInt(u64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::String(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Double(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Self::Int(i64::from(v))
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Self::UInt(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::UInt(u64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// A property value as [`Layer::add_keyed_ring`] takes it: borrowed, so writing a feature's
/// properties allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prop<'a> {
    Str(&'a str),
    Double(f64),
    Float(f32),
    Int(i64),
    UInt(u64),
    Bool(bool),
}

impl Prop<'_> {
    /// False for a NaN or infinite number: such a property is left out.
    fn is_finite(self) -> bool {
        match self {
            Self::Double(d) => d.is_finite(),
            Self::Float(f) => f.is_finite(),
            _ => true,
        }
    }
}

impl Value {
    fn as_prop(&self) -> Prop<'_> {
        match self {
            Self::String(v) => Prop::Str(v),
            Self::Double(v) => Prop::Double(*v),
            Self::Float(v) => Prop::Float(*v),
            Self::Int(v) => Prop::Int(*v),
            Self::UInt(v) => Prop::UInt(*v),
            Self::Bool(v) => Prop::Bool(*v),
        }
    }
}

// Field keys (field number << 3 | wire type) of the messages written here.
const TILE_LAYERS: u8 = 3 << 3 | 2;
const LAYER_NAME: u8 = 1 << 3 | 2;
const LAYER_FEATURES: u8 = 2 << 3 | 2;
const LAYER_KEYS: u8 = 3 << 3 | 2;
const LAYER_VALUES: u8 = 4 << 3 | 2;
const LAYER_EXTENT: u8 = 5 << 3;
const LAYER_VERSION: u8 = 15 << 3;
const FEATURE_ID: u8 = 1 << 3;
const FEATURE_TAGS: u8 = 2 << 3 | 2;
const FEATURE_TYPE: u8 = 3 << 3;
const FEATURE_GEOMETRY: u8 = 4 << 3 | 2;
const VALUE_STRING: u8 = 1 << 3 | 2;
const VALUE_FLOAT: u8 = 2 << 3 | 5;
const VALUE_DOUBLE: u8 = 3 << 3 | 1;
const VALUE_UINT: u8 = 5 << 3;
const VALUE_SINT: u8 = 6 << 3;
const VALUE_BOOL: u8 = 7 << 3;

const GEOM_LINESTRING: u32 = 2;
const GEOM_POLYGON: u32 = 3;

const MOVE_TO: u32 = 1;
const LINE_TO: u32 = 2;
const CLOSE_PATH: u32 = 7;

/// A point in tile coordinates after rounding.
type TilePoint = (i32, i32);

/// One named layer of one tile, filled feature by feature.
///
/// Features, keys and values are kept already encoded, so [`encode`] only concatenates.
#[derive(Debug)]
pub struct Layer {
    name: String,
    projection: Projection,
    /// Encoded `features` fields, back to back.
    features: Vec<u8>,
    feature_count: usize,
    /// Encoded `keys` fields, and each key's index.
    keys: Vec<u8>,
    key_index: FxHashMap<String, u32>,
    /// Each key by its index, and the key last seen at each position of a feature's
    /// properties: features of one layer mostly list the same keys in the same order.
    key_names: Vec<String>,
    key_at: Vec<u32>,
    /// By key index: whether the key's values are written as they come, not looked up (keys
    /// whose values are nearly all different, such as a feature's own id).
    key_unique: Vec<bool>,
    /// Encoded `values` fields; each value's index, numbers by kind and bits, strings by text.
    values: Vec<u8>,
    value_count: u32,
    number_index: FxHashMap<(u8, u64), u32>,
    string_index: FxHashMap<String, u32>,
    /// The indices of small whole numbers (`Int` and `UInt` below [`SMALL`]) and of floats
    /// that are thousandths from 0 to 1, looked up without hashing: counts and levels are
    /// mostly small, shares mostly rounded. `u32::MAX` where not yet a value.
    small_index: Vec<u32>,
    scratch: Scratch,
}

/// Whole numbers below this are indexed in [`Layer::small_index`].
const SMALL: u64 = 256;

/// Where `value` is filed in [`Layer::small_index`], if it is a small whole number or a float
/// that is exactly (bit for bit) a thousandth from 0 to 1 rounded to 32 bits.
fn small_slot(value: Prop<'_>) -> Option<usize> {
    const FLOATS: usize = 2 * SMALL as usize;
    match value {
        Prop::Int(v) if (0..SMALL as i64).contains(&v) => Some(v as usize),
        Prop::UInt(v) if v < SMALL => Some((SMALL + v) as usize),
        Prop::Float(f) if (0.0..=1.0).contains(&f) => {
            // Non-negative: adding a half and truncating rounds (a near-miss fails the check).
            let k = (f64::from(f) * 1000.0 + 0.5) as usize;
            ((k as f64 / 1000.0) as f32)
                .to_bits()
                .eq(&f.to_bits())
                .then_some(FLOATS + k)
        }
        _ => None,
    }
}

/// Slots of [`Layer::small_index`]: two runs of small whole numbers, then 0 to 1000
/// thousandths.
const SMALL_SLOTS: usize = 2 * SMALL as usize + 1001;

/// Buffers reused from feature to feature, so adding one allocates nothing once warm.
#[derive(Debug, Default)]
struct Scratch {
    projected: Vec<(f64, f64)>,
    clipped: Vec<(f64, f64)>,
    points: Vec<TilePoint>,
    piece_ends: Vec<usize>,
    geometry: Vec<u32>,
    tags: Vec<u32>,
    /// `geometry` and `tags` as packed varints.
    geometry_bytes: Vec<u8>,
    tag_bytes: Vec<u8>,
}

impl Scratch {
    /// Clips the ring in `projected` to the buffered tile, rounds it, winds it as the spec
    /// wants for an `exterior` or interior ring and adds it to `geometry`; false, adding
    /// nothing, when it vanishes or degenerates.
    fn push_projected_ring(&mut self, exterior: bool, cursor: &mut (i32, i32)) -> bool {
        clip_ring(&mut self.projected, &mut self.clipped);
        round_ring(&self.projected, &mut self.points);
        let twice_area = surveyor_area(&self.points);
        if self.points.len() < 3 || twice_area == 0 {
            return false;
        }
        if (twice_area > 0) != exterior {
            self.points.reverse();
        }
        push_path(&mut self.geometry, cursor, &self.points, true);
        true
    }
}

/// The clip box, in tile coordinates: the tile grown by `BUFFER` on each side.
const CLIP_LO: f64 = -(BUFFER as f64);
const CLIP_HI: f64 = (EXTENT + BUFFER) as f64;

impl Layer {
    /// An empty layer `name` of `tile` (MVT version 2, extent [`EXTENT`]).
    pub fn new(name: &str, tile: TileId) -> Self {
        Self {
            name: name.to_owned(),
            projection: Projection::new(tile),
            features: Vec::with_capacity(8 * 1024),
            feature_count: 0,
            keys: Vec::new(),
            key_index: FxHashMap::default(),
            key_names: Vec::new(),
            key_at: Vec::new(),
            key_unique: Vec::new(),
            values: Vec::with_capacity(1024),
            value_count: 0,
            number_index: FxHashMap::with_capacity_and_hasher(256, Default::default()),
            string_index: FxHashMap::with_capacity_and_hasher(64, Default::default()),
            small_index: Vec::new(),
            scratch: Scratch::default(),
        }
    }

    /// Makes room for `bytes` more of encoded features.
    pub fn reserve(&mut self, bytes: usize) {
        self.features.reserve(bytes);
    }

    /// Marks `keys` as ones whose values nearly all differ from feature to feature (an id, a
    /// time): their values are written as they come instead of being looked up among the
    /// layer's values, which costs a repeated value a few bytes and saves most of the work.
    pub fn unique_values(&mut self, keys: &[&str]) {
        for key in keys {
            let k = self.key_id(key);
            if self.key_unique.len() <= k as usize {
                self.key_unique.resize(k as usize + 1, false);
            }
            self.key_unique[k as usize] = true;
        }
    }

    /// The index of `key`, added to the layer's keys if new.
    fn key_id(&mut self, key: &str) -> u32 {
        if let Some(k) = self.key_index.get(key) {
            return *k;
        }
        let k = self.key_index.len() as u32;
        self.key_index.insert(key.to_owned(), k);
        self.key_names.push(key.to_owned());
        self.keys.push(LAYER_KEYS);
        put_bytes(&mut self.keys, key.as_bytes());
        k
    }

    /// Adds a polygon given as rings of (lon, lat) in degrees, the first ring exterior; rings
    /// may or may not repeat their first point.
    ///
    /// Rings are projected, clipped to the buffered tile, rounded, freed of repeated points and
    /// wound as the spec wants (exterior rings positive by its surveyor's formula in tile
    /// coordinates, interior ones negative) whatever their winding was in lon/lat. Interior
    /// rings that vanish are left out. Returns false, adding nothing, when the exterior ring
    /// has nothing left inside the buffered tile or degenerates.
    pub fn add_polygon(
        &mut self,
        id: Option<u64>,
        rings: &[Vec<(f64, f64)>],
        properties: &[(&str, Value)],
    ) -> bool {
        let s = &mut self.scratch;
        s.geometry.clear();
        let mut cursor = (0, 0);
        for (i, ring) in rings.iter().enumerate() {
            let exterior = i == 0;
            project(&self.projection, ring, &mut s.projected);
            if !s.push_projected_ring(exterior, &mut cursor) && exterior {
                return false;
            }
        }
        if s.geometry.is_empty() {
            return false;
        }
        self.push_feature(id, GEOM_POLYGON, properties);
        true
    }

    /// Adds a polygon of one ring already in this tile's coordinates (unrounded), as
    /// [`Self::add_polygon`] does after projecting: clipped, rounded, wound. Returns false,
    /// adding nothing, when nothing is left inside the buffered tile.
    #[cfg(test)]
    pub fn add_projected_polygon(
        &mut self,
        id: Option<u64>,
        ring: &[(f64, f64)],
        properties: &[(&str, Value)],
    ) -> bool {
        let s = &mut self.scratch;
        s.geometry.clear();
        s.projected.clear();
        s.projected.extend_from_slice(ring);
        if !s.push_projected_ring(true, &mut (0, 0)) {
            return false;
        }
        self.push_feature(id, GEOM_POLYGON, properties);
        true
    }

    /// The index of `key` among the layer's keys (added if new), for [`Self::add_keyed_ring`].
    pub fn key(&mut self, key: &str) -> u32 {
        self.key_id(key)
    }

    /// Adds a polygon of one ring already in this tile's coordinates (unrounded), clipped,
    /// rounded and wound as [`Self::add_polygon`] does after projecting, its properties under
    /// keys already indexed by
    /// [`Self::key`] (each key once): the hot path of layers of many small features, written
    /// straight to the wire. Returns false, adding nothing, when nothing is left inside the
    /// buffered tile.
    pub fn add_keyed_ring(
        &mut self,
        id: Option<u64>,
        ring: &[(f64, f64)],
        props: &[(u32, Prop<'_>)],
    ) -> bool {
        let s = &mut self.scratch;
        // Nearly every hexagon lies inside the buffered tile: rounded as it comes.
        let inside: &[(f64, f64)] = if ring.iter().all(|&p| inside_clip(p)) {
            ring
        } else {
            s.projected.clear();
            s.projected.extend_from_slice(ring);
            clip_ring(&mut s.projected, &mut s.clipped);
            &s.projected
        };
        round_ring(inside, &mut s.points);
        let twice_area = surveyor_area(&s.points);
        if s.points.len() < 3 || twice_area == 0 {
            return false;
        }
        if twice_area < 0 {
            s.points.reverse();
        }
        s.geometry_bytes.clear();
        put_ring(&mut s.geometry_bytes, &s.points);
        let mut tags = std::mem::take(&mut self.scratch.tag_bytes);
        tags.clear();
        tags.reserve(props.len() * 8);
        for &(key, value) in props {
            if !value.is_finite() {
                continue;
            }
            debug_assert!(self.key_names.len() > key as usize, "key {key} not indexed");
            let value_id = self.value_id(key, value);
            put_varint(&mut tags, u64::from(key));
            put_varint(&mut tags, u64::from(value_id));
        }
        self.scratch.tag_bytes = tags;
        self.write_feature(id, GEOM_POLYGON);
        true
    }

    /// The index of `value` under `key` among the layer's values, added if new (always, for
    /// a key whose values are written as they come).
    fn value_id(&mut self, key: u32, value: Prop<'_>) -> u32 {
        let unique = self.key_unique.get(key as usize) == Some(&true);
        let small = if unique { None } else { small_slot(value) };
        if !unique {
            if let Some(at) = small
                && let Some(&v) = self.small_index.get(at)
                && v != u32::MAX
            {
                return v;
            }
            let known = match value {
                Prop::Str(v) => self.string_index.get(v).copied(),
                other => self.number_index.get(&number_key(other)).copied(),
            };
            if let Some(v) = known {
                return v;
            }
        }
        let v = self.value_count;
        self.value_count += 1;
        if !unique {
            match value {
                Prop::Str(text) => {
                    self.string_index.insert(text.to_owned(), v);
                }
                other => {
                    self.number_index.insert(number_key(other), v);
                    if let Some(at) = small {
                        if self.small_index.is_empty() {
                            self.small_index = vec![u32::MAX; SMALL_SLOTS];
                        }
                        self.small_index[at] = v;
                    }
                }
            }
        }
        put_value(&mut self.values, value);
        v
    }

    /// Adds a line of (lon, lat) in degrees, clipped to the buffered tile; the pieces left
    /// inside become one (multi)line feature. Returns false, adding nothing, when no piece of
    /// at least two distinct points is left.
    pub fn add_line(
        &mut self,
        id: Option<u64>,
        line: &[(f64, f64)],
        properties: &[(&str, Value)],
    ) -> bool {
        let s = &mut self.scratch;
        project(&self.projection, line, &mut s.projected);
        clip_line(&s.projected, &mut s.points, &mut s.piece_ends);
        s.geometry.clear();
        let mut cursor = (0, 0);
        let mut start = 0;
        for &end in &s.piece_ends {
            if let Some(piece) = s.points.get(start..end)
                && piece.len() >= 2
            {
                push_path(&mut s.geometry, &mut cursor, piece, false);
            }
            start = end;
        }
        if s.geometry.is_empty() {
            return false;
        }
        self.push_feature(id, GEOM_LINESTRING, properties);
        true
    }

    /// True when no feature has been added.
    pub fn is_empty(&self) -> bool {
        self.feature_count == 0
    }

    /// How many features have been added.
    pub fn len(&self) -> usize {
        self.feature_count
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes one feature with the geometry in `scratch.geometry`.
    fn push_feature(&mut self, id: Option<u64>, geom_type: u32, properties: &[(&str, Value)]) {
        self.build_tags(properties);
        let s = &mut self.scratch;
        s.tag_bytes.clear();
        put_packed(&mut s.tag_bytes, &s.tags);
        s.geometry_bytes.clear();
        put_packed(&mut s.geometry_bytes, &s.geometry);
        self.write_feature(id, geom_type);
    }

    /// Writes one feature with the packed tags and geometry in `scratch`.
    fn write_feature(&mut self, id: Option<u64>, geom_type: u32) {
        let s = &self.scratch;
        let (tags_len, geometry_len) = (s.tag_bytes.len(), s.geometry_bytes.len());
        let mut body = 2 + 1 + varint_len(geometry_len as u64) + geometry_len;
        if let Some(id) = id {
            body += 1 + varint_len(id);
        }
        if tags_len > 0 {
            body += 1 + varint_len(tags_len as u64) + tags_len;
        }
        let out = &mut self.features;
        out.reserve(1 + varint_len(body as u64) + body);
        out.push(LAYER_FEATURES);
        put_varint(out, body as u64);
        if let Some(id) = id {
            out.push(FEATURE_ID);
            put_varint(out, id);
        }
        if tags_len > 0 {
            out.push(FEATURE_TAGS);
            put_bytes(out, &s.tag_bytes);
        }
        out.push(FEATURE_TYPE);
        out.push(geom_type as u8);
        out.push(FEATURE_GEOMETRY);
        put_bytes(out, &s.geometry_bytes);
        self.feature_count += 1;
    }

    /// Fills `scratch.tags` with key/value index pairs, adding new keys and values to the
    /// layer's tables. Non-finite doubles and repeated keys are left out.
    fn build_tags(&mut self, properties: &[(&str, Value)]) {
        let s = &mut self.scratch;
        s.tags.clear();
        for (at, (key, value)) in properties.iter().enumerate() {
            if !value.as_prop().is_finite() {
                continue;
            }
            let cached = self
                .key_at
                .get(at)
                .copied()
                .filter(|k| self.key_names.get(*k as usize).is_some_and(|n| n == key));
            let key_id = match cached {
                Some(k) => k,
                None => self.key_id(key),
            };
            if self.key_at.len() <= at {
                self.key_at.resize(at + 1, u32::MAX);
            }
            self.key_at[at] = key_id;
            if self
                .scratch
                .tags
                .chunks_exact(2)
                .any(|pair| pair.first() == Some(&key_id))
            {
                continue;
            }
            let value_id = self.value_id(key_id, value.as_prop());
            self.scratch.tags.push(key_id);
            self.scratch.tags.push(value_id);
        }
    }

    /// Bytes of the layer message's body.
    fn body_len(&self) -> usize {
        1 + varint_len(self.name.len() as u64)
            + self.name.len()
            + self.features.len()
            + self.keys.len()
            + self.values.len()
            + 1
            + varint_len(u64::from(EXTENT))
            + 2
    }
}

/// The tile's protobuf bytes, uncompressed. Empty layers are left out; a tile with no
/// features at all is empty.
pub fn encode(layers: &[Layer]) -> Vec<u8> {
    let total: usize = layers
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let body = l.body_len();
            1 + varint_len(body as u64) + body
        })
        .sum();
    let mut out = Vec::with_capacity(total);
    for layer in layers.iter().filter(|l| !l.is_empty()) {
        out.push(TILE_LAYERS);
        put_varint(&mut out, layer.body_len() as u64);
        out.push(LAYER_NAME);
        put_bytes(&mut out, layer.name.as_bytes());
        out.extend_from_slice(&layer.features);
        out.extend_from_slice(&layer.keys);
        out.extend_from_slice(&layer.values);
        out.push(LAYER_EXTENT);
        put_varint(&mut out, u64::from(EXTENT));
        out.push(LAYER_VERSION);
        out.push(2);
    }
    out
}

/// A number's (or boolean's) kind and bits: equal keys encode to equal values.
fn number_key(value: Prop<'_>) -> (u8, u64) {
    match value {
        Prop::Double(d) => (0, d.to_bits()),
        Prop::Int(i) => (1, i as u64),
        Prop::UInt(u) => (2, u),
        Prop::Bool(b) => (3, u64::from(b)),
        Prop::Str(_) => (4, 0),
        Prop::Float(f) => (5, u64::from(f.to_bits())),
    }
}

/// Writes a layer's `values` field: a `Value` message.
fn put_value(out: &mut Vec<u8>, value: Prop<'_>) {
    out.push(LAYER_VALUES);
    match value {
        Prop::Str(s) => {
            let len = s.len() as u64;
            put_varint(out, 1 + varint_len(len) as u64 + len);
            out.push(VALUE_STRING);
            put_bytes(out, s.as_bytes());
        }
        Prop::Double(d) => {
            out.push(9);
            out.push(VALUE_DOUBLE);
            out.extend_from_slice(&d.to_le_bytes());
        }
        Prop::Float(f) => {
            out.push(5);
            out.push(VALUE_FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Prop::Int(i) => {
            let z = zigzag64(i);
            out.push(1 + varint_len(z) as u8);
            out.push(VALUE_SINT);
            put_varint(out, z);
        }
        Prop::UInt(u) => {
            out.push(1 + varint_len(u) as u8);
            out.push(VALUE_UINT);
            put_varint(out, u);
        }
        Prop::Bool(b) => {
            out.push(2);
            out.push(VALUE_BOOL);
            out.push(u8::from(b));
        }
    }
}

/// Projects into tile coordinates, leaving out points that are not finite numbers.
fn project(projection: &Projection, coords: &[(f64, f64)], out: &mut Vec<(f64, f64)>) {
    out.clear();
    out.extend(
        coords
            .iter()
            .filter(|(lon, lat)| lon.is_finite() && lat.is_finite())
            .map(|&(lon, lat)| projection.project(lon, lat)),
    );
}

fn inside_clip(p: (f64, f64)) -> bool {
    (CLIP_LO..=CLIP_HI).contains(&p.0) && (CLIP_LO..=CLIP_HI).contains(&p.1)
}

/// Clips a ring in place to the buffered tile (Sutherland–Hodgman: exact for convex rings,
/// and for concave ones leaves at worst zero-width slivers along the clip edge).
fn clip_ring(ring: &mut Vec<(f64, f64)>, tmp: &mut Vec<(f64, f64)>) {
    if ring.iter().all(|&p| inside_clip(p)) {
        return;
    }
    // Each edge of the clip box: which axis, which bound, and whether inside is above it.
    for (axis_x, bound, keep_above) in [
        (true, CLIP_LO, true),
        (true, CLIP_HI, false),
        (false, CLIP_LO, true),
        (false, CLIP_HI, false),
    ] {
        let inside = |p: (f64, f64)| {
            let v = if axis_x { p.0 } else { p.1 };
            if keep_above { v >= bound } else { v <= bound }
        };
        let crossing = |a: (f64, f64), b: (f64, f64)| {
            if axis_x {
                let t = (bound - a.0) / (b.0 - a.0);
                (bound, a.1 + t * (b.1 - a.1))
            } else {
                let t = (bound - a.1) / (b.1 - a.1);
                (a.0 + t * (b.0 - a.0), bound)
            }
        };
        tmp.clear();
        let Some(mut prev) = ring.last().copied() else {
            return;
        };
        for &cur in ring.iter() {
            match (inside(prev), inside(cur)) {
                (true, true) => tmp.push(cur),
                (true, false) => tmp.push(crossing(prev, cur)),
                (false, true) => {
                    tmp.push(crossing(prev, cur));
                    tmp.push(cur);
                }
                (false, false) => {}
            }
            prev = cur;
        }
        std::mem::swap(ring, tmp);
    }
}

/// Rounds a ring to integers, dropping repeated points and the closing point if given.
fn round_ring(ring: &[(f64, f64)], out: &mut Vec<TilePoint>) {
    out.clear();
    for &p in ring {
        let q = round(p);
        if out.last() != Some(&q) {
            out.push(q);
        }
    }
    while out.len() > 1 && out.first() == out.last() {
        out.pop();
    }
}

fn round(p: (f64, f64)) -> TilePoint {
    (round_half_away(p.0), round_half_away(p.1))
}

/// `v.round() as i32`, without the call into libm that `round` is on a baseline x86-64 (this
/// runs for every vertex of every tile).
fn round_half_away(v: f64) -> i32 {
    let whole = v as i64;
    // Exact for every |v| below 2^52: a whole number and its fraction.
    let frac = v - whole as f64;
    // Without branches: which way a fraction rounds is a coin toss for the branch predictor.
    let r = whole
        .saturating_add(i64::from(frac >= 0.5))
        .saturating_sub(i64::from(frac <= -0.5));
    r.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// Twice the ring's area by the spec's surveyor's formula, in tile coordinates (y down):
/// positive for an exterior ring.
fn surveyor_area(ring: &[TilePoint]) -> i64 {
    let Some(&last) = ring.last() else {
        return 0;
    };
    let mut prev = last;
    let mut sum = 0i64;
    for &p in ring {
        sum += i64::from(prev.0) * i64::from(p.1) - i64::from(p.0) * i64::from(prev.1);
        prev = p;
    }
    sum
}

/// Clips a line to the buffered tile (Liang–Barsky per segment) and rounds it: the pieces'
/// points go to `points`, back to back, and where each piece ends to `ends`.
fn clip_line(line: &[(f64, f64)], points: &mut Vec<TilePoint>, ends: &mut Vec<usize>) {
    points.clear();
    ends.clear();
    let mut piece_start = 0;
    let mut end_piece = |points: &mut Vec<TilePoint>, piece_start: &mut usize| {
        if points.len() > *piece_start {
            ends.push(points.len());
            *piece_start = points.len();
        }
    };
    // A point repeating the one before it in the same piece adds nothing.
    let push = |points: &mut Vec<TilePoint>, piece_start: usize, p: TilePoint| {
        if points.len() == piece_start || points.last() != Some(&p) {
            points.push(p);
        }
    };
    if line.iter().all(|&p| inside_clip(p)) {
        for &p in line {
            push(points, piece_start, round(p));
        }
        end_piece(points, &mut piece_start);
        return;
    }
    for pair in line.windows(2) {
        let &[a, b] = pair else { continue };
        match clip_segment(a, b) {
            None => end_piece(points, &mut piece_start),
            Some(SegmentPart {
                t0,
                t1,
                from: p,
                to: q,
            }) => {
                if t0 > 0.0 {
                    end_piece(points, &mut piece_start);
                }
                if points.len() == piece_start {
                    push(points, piece_start, round(p));
                }
                push(points, piece_start, round(q));
                if t1 < 1.0 {
                    end_piece(points, &mut piece_start);
                }
            }
        }
    }
    end_piece(points, &mut piece_start);
}

/// The part of a segment a→b inside the buffered tile: from a + t0·(b − a) to a + t1·(b − a).
#[derive(Debug, Clone, Copy)]
struct SegmentPart {
    t0: f64,
    t1: f64,
    from: (f64, f64),
    to: (f64, f64),
}

/// The part of segment a→b inside the buffered tile, if any (Liang–Barsky).
fn clip_segment(a: (f64, f64), b: (f64, f64)) -> Option<SegmentPart> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - CLIP_LO),
        (dx, CLIP_HI - a.0),
        (-dy, a.1 - CLIP_LO),
        (dy, CLIP_HI - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                if r > t1 {
                    return None;
                }
                t0 = t0.max(r);
            } else {
                if r < t0 {
                    return None;
                }
                t1 = t1.min(r);
            }
        }
    }
    let at = |t: f64| (a.0 + t * dx, a.1 + t * dy);
    Some(SegmentPart {
        t0,
        t1,
        from: at(t0),
        to: at(t1),
    })
}

/// Appends a path's commands: MoveTo its first point, LineTo the rest, ClosePath for rings.
/// Deltas are from `cursor`, which the spec carries across all paths of a feature.
fn push_path(geometry: &mut Vec<u32>, cursor: &mut TilePoint, points: &[TilePoint], ring: bool) {
    let Some((first, rest)) = points.split_first() else {
        return;
    };
    let mut delta = |p: &TilePoint, geometry: &mut Vec<u32>| {
        geometry.push(zigzag32(p.0 - cursor.0));
        geometry.push(zigzag32(p.1 - cursor.1));
        *cursor = *p;
    };
    geometry.push(command(MOVE_TO, 1));
    delta(first, geometry);
    if !rest.is_empty() {
        geometry.push(command(LINE_TO, rest.len() as u32));
        for p in rest {
            delta(p, geometry);
        }
    }
    if ring {
        geometry.push(command(CLOSE_PATH, 1));
    }
}

/// Writes one closed ring's commands as packed varints, as [`push_path`] does from a fresh
/// cursor.
fn put_ring(out: &mut Vec<u8>, points: &[TilePoint]) {
    let Some((first, rest)) = points.split_first() else {
        return;
    };
    out.reserve(4 + 2 * 5 * points.len());
    put_varint(out, u64::from(command(MOVE_TO, 1)));
    put_varint(out, u64::from(zigzag32(first.0)));
    put_varint(out, u64::from(zigzag32(first.1)));
    let mut cursor = *first;
    if !rest.is_empty() {
        put_varint(out, u64::from(command(LINE_TO, rest.len() as u32)));
        for p in rest {
            put_varint(out, u64::from(zigzag32(p.0 - cursor.0)));
            put_varint(out, u64::from(zigzag32(p.1 - cursor.1)));
            cursor = *p;
        }
    }
    put_varint(out, u64::from(command(CLOSE_PATH, 1)));
}

fn command(id: u32, count: u32) -> u32 {
    (id & 0x7) | (count << 3)
}

pub(crate) fn zigzag32(n: i32) -> u32 {
    ((n << 1) ^ (n >> 31)) as u32
}

fn zigzag64(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn varint_len(v: u64) -> usize {
    // Seven bits a byte; zero still takes one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_packed(out: &mut Vec<u8>, values: &[u32]) {
    out.reserve(values.len() * 5);
    for &v in values {
        put_varint(out, u64::from(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_paths(paths: &[(&[TilePoint], bool)]) -> Vec<u32> {
        let mut geometry = Vec::new();
        let mut cursor = (0, 0);
        for (points, ring) in paths {
            push_path(&mut geometry, &mut cursor, points, *ring);
        }
        geometry
    }

    #[test]
    fn zigzag_maps_signed_to_unsigned_as_protobuf_does() {
        let cases = [
            (0, 0),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (2, 4),
            (i32::MAX, u32::MAX - 1),
        ];
        for (n, z) in cases {
            assert_eq!(zigzag32(n), z, "{n}");
        }
        assert_eq!(zigzag32(i32::MIN), u32::MAX);
        assert_eq!(zigzag64(-3), 5);
        assert_eq!(zigzag64(i64::MIN), u64::MAX);
    }

    #[test]
    fn varints_are_seven_bits_a_byte_low_first() {
        for (v, bytes) in [
            (0u64, vec![0u8]),
            (1, vec![1]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (4096, vec![0x80, 0x20]),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(varint_len(v), bytes.len(), "{v}");
        }
        let mut out = Vec::new();
        put_varint(&mut out, u64::MAX);
        assert_eq!(out.len(), 10);
        assert_eq!(varint_len(u64::MAX), 10);
    }

    #[test]
    fn commands_pack_id_and_count() {
        assert_eq!(command(MOVE_TO, 1), 9);
        assert_eq!(command(LINE_TO, 3), 26);
        assert_eq!(command(CLOSE_PATH, 1), 15);
    }

    // The geometry examples of the spec, section 4.3.5.

    #[test]
    fn spec_example_linestring() {
        let line: &[TilePoint] = &[(2, 2), (2, 10), (10, 10)];
        assert_eq!(encode_paths(&[(line, false)]), [9, 4, 4, 18, 0, 16, 16, 0]);
    }

    #[test]
    fn spec_example_multilinestring() {
        let a: &[TilePoint] = &[(2, 2), (2, 10), (10, 10)];
        let b: &[TilePoint] = &[(1, 1), (3, 5)];
        assert_eq!(
            encode_paths(&[(a, false), (b, false)]),
            [9, 4, 4, 18, 0, 16, 16, 0, 9, 17, 17, 10, 4, 8]
        );
    }

    #[test]
    fn spec_example_polygon() {
        let ring: &[TilePoint] = &[(3, 6), (8, 12), (20, 34)];
        assert!(
            surveyor_area(ring) > 0,
            "the spec's example is an exterior ring"
        );
        assert_eq!(
            encode_paths(&[(ring, true)]),
            [9, 6, 12, 18, 10, 12, 24, 44, 15]
        );
    }

    #[test]
    fn spec_example_multipolygon_with_a_square_and_a_holed_square() {
        let square: &[TilePoint] = &[(0, 0), (10, 0), (10, 10), (0, 10)];
        let outer: &[TilePoint] = &[(11, 11), (20, 11), (20, 20), (11, 20)];
        let hole: &[TilePoint] = &[(13, 13), (13, 17), (17, 17), (17, 13)];
        assert!(surveyor_area(square) > 0 && surveyor_area(outer) > 0);
        assert!(surveyor_area(hole) < 0);
        assert_eq!(
            encode_paths(&[(square, true), (outer, true), (hole, true)]),
            [
                9, 0, 0, 26, 20, 0, 0, 20, 19, 0, 15, 9, 22, 2, 26, 18, 0, 0, 18, 17, 0, 15, 9, 4,
                13, 26, 0, 8, 8, 0, 0, 7, 15
            ]
        );
    }

    #[test]
    fn the_surveyor_area_of_a_ten_square_is_two_hundred_doubled() {
        assert_eq!(surveyor_area(&[(0, 0), (10, 0), (10, 10), (0, 10)]), 200);
        assert_eq!(surveyor_area(&[(0, 0), (0, 10), (10, 10), (10, 0)]), -200);
    }

    #[test]
    fn a_ring_inside_the_buffer_is_not_clipped() {
        let mut ring = vec![(0.0, 0.0), (100.0, 0.0), (100.0, 100.0)];
        let before = ring.clone();
        clip_ring(&mut ring, &mut Vec::new());
        assert_eq!(ring, before);
    }

    #[test]
    fn a_ring_across_the_edge_is_cut_at_the_buffer() {
        let mut ring = vec![
            (4000.0, 100.0),
            (5000.0, 100.0),
            (5000.0, 200.0),
            (4000.0, 200.0),
        ];
        clip_ring(&mut ring, &mut Vec::new());
        let mut points = Vec::new();
        round_ring(&ring, &mut points);
        assert_eq!(
            points,
            vec![(4000, 100), (4160, 100), (4160, 200), (4000, 200)]
        );
        let mut far = vec![(9000.0, 100.0), (9100.0, 100.0), (9100.0, 200.0)];
        clip_ring(&mut far, &mut Vec::new());
        assert!(far.is_empty());
    }

    #[test]
    fn a_square_covering_the_tile_becomes_the_buffered_tile() {
        let mut ring = vec![(-1e6, -1e6), (1e6, -1e6), (1e6, 1e6), (-1e6, 1e6)];
        clip_ring(&mut ring, &mut Vec::new());
        let mut points = Vec::new();
        round_ring(&ring, &mut points);
        // Same ring whichever corner it starts from.
        let start = points.iter().position(|&p| p == (-64, -64)).unwrap();
        points.rotate_left(start);
        assert_eq!(
            points,
            vec![(-64, -64), (4160, -64), (4160, 4160), (-64, 4160)]
        );
    }

    #[test]
    fn rounding_drops_repeats_and_the_closing_point() {
        let mut points = Vec::new();
        round_ring(
            &[(0.1, 0.2), (0.3, 0.1), (5.0, 0.0), (5.0, 5.0), (0.0, 0.0)],
            &mut points,
        );
        assert_eq!(points, vec![(0, 0), (5, 0), (5, 5)]);
    }

    #[test]
    fn a_line_leaving_and_coming_back_becomes_two_pieces() {
        let line = [
            (100.0, 100.0),
            (5000.0, 100.0),
            (5000.0, 300.0),
            (100.0, 300.0),
        ];
        let (mut points, mut ends) = (Vec::new(), Vec::new());
        clip_line(&line, &mut points, &mut ends);
        assert_eq!(
            points,
            vec![(100, 100), (4160, 100), (4160, 300), (100, 300)]
        );
        assert_eq!(ends, vec![2, 4]);
    }

    #[test]
    fn a_line_passing_through_keeps_only_its_middle() {
        let line = [(-1000.0, 2000.0), (9000.0, 2000.0)];
        let (mut points, mut ends) = (Vec::new(), Vec::new());
        clip_line(&line, &mut points, &mut ends);
        assert_eq!(points, vec![(-64, 2000), (4160, 2000)]);
        assert_eq!(ends, vec![2]);
        clip_line(
            &[(-1000.0, -1000.0), (-900.0, 9000.0)],
            &mut points,
            &mut ends,
        );
        assert!(points.is_empty() && ends.is_empty());
    }

    fn z0() -> TileId {
        TileId::new(0, 0, 0).unwrap()
    }

    #[test]
    fn counter_clockwise_lon_lat_rings_are_turned_clockwise_on_screen() {
        let mut layer = Layer::new("cells", z0());
        // Counter-clockwise in lon/lat, as H3 gives boundaries, which is negative once y
        // points down; the hole the other way round. Both must come out turned.
        let exterior = vec![(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)];
        let hole = vec![(2.0, 2.0), (2.0, 8.0), (8.0, 8.0), (8.0, 2.0), (2.0, 2.0)];
        assert!(layer.add_polygon(None, &[exterior, hole], &[]));
        let g = &layer.scratch.geometry;
        // Decode the two rings back and check their winding.
        let mut rings = Vec::new();
        let (mut i, mut cursor) = (0, (0i32, 0i32));
        let unzig = |v: u32| ((v >> 1) as i32) ^ -((v & 1) as i32);
        while i < g.len() {
            let mut ring = Vec::new();
            assert_eq!(g[i], 9);
            cursor = (cursor.0 + unzig(g[i + 1]), cursor.1 + unzig(g[i + 2]));
            ring.push(cursor);
            let count = (g[i + 3] >> 3) as usize;
            for k in 0..count {
                cursor = (
                    cursor.0 + unzig(g[i + 4 + 2 * k]),
                    cursor.1 + unzig(g[i + 5 + 2 * k]),
                );
                ring.push(cursor);
            }
            i += 4 + 2 * count;
            assert_eq!(g[i], 15);
            i += 1;
            rings.push(ring);
        }
        assert_eq!(rings.len(), 2);
        assert!(surveyor_area(&rings[0]) > 0);
        assert!(surveyor_area(&rings[1]) < 0);
    }

    #[test]
    fn degenerate_and_far_away_polygons_are_refused() {
        let mut layer = Layer::new("cells", TileId::new(10, 0, 0).unwrap());
        let far = vec![(100.0, -40.0), (101.0, -40.0), (101.0, -39.0)];
        assert!(!layer.add_polygon(None, &[far], &[("a", 1i64.into())]));
        // Inside the tile, but all on one meridian: no area.
        let flat = vec![(-179.9, 85.03), (-179.9, 85.035), (-179.9, 85.04)];
        assert!(!layer.add_polygon(None, &[flat], &[]));
        assert!(!layer.add_polygon(None, &[], &[]));
        assert!(layer.is_empty());
        assert!(
            layer.key_index.is_empty(),
            "refused features leave no keys behind"
        );
        assert!(encode(&[layer]).is_empty());
    }

    #[test]
    fn points_that_are_not_numbers_are_left_out() {
        let mut layer = Layer::new("roads", z0());
        let line = [
            (0.0, 0.0),
            (f64::NAN, 5.0),
            (90.0, f64::INFINITY),
            (90.0, 0.0),
        ];
        assert!(layer.add_line(None, &line, &[]));
        assert_eq!(layer.scratch.geometry, [9, 4096, 4096, 10, 2048, 0]);
    }

    #[test]
    fn rounding_is_half_away_from_zero_as_f64_round() {
        for v in [
            0.0_f64,
            0.49,
            0.5,
            0.51,
            1.5,
            2.5,
            -0.5,
            -0.49,
            -1.5,
            -2.5,
            4095.5,
            -64.5,
            1e9,
            -1e9,
            0.499_999_999_999_999_94,
            1e300,
            -1e300,
        ] {
            let want = v.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
            assert_eq!(round_half_away(v), want, "{v}");
        }
    }

    #[test]
    fn keys_and_values_are_stored_once_per_layer() {
        let mut layer = Layer::new("roads", z0());
        let line = [(0.0, 0.0), (10.0, 10.0)];
        for _ in 0..3 {
            assert!(layer.add_line(
                Some(7),
                &line,
                &[("highway", "primary".into()), ("lanes", 2u64.into())]
            ));
        }
        assert!(layer.add_line(None, &line, &[("highway", "secondary".into())]));
        assert_eq!(layer.len(), 4);
        assert_eq!(layer.key_index.len(), 2);
        assert_eq!(layer.value_count, 3);
    }

    #[test]
    fn values_of_unique_keys_are_written_each_time_and_still_read_back() {
        let mut layer = Layer::new("cells", z0());
        layer.unique_values(&["id"]);
        let line = [(0.0, 0.0), (10.0, 10.0)];
        for _ in 0..3 {
            assert!(layer.add_line(None, &line, &[("id", "a".into()), ("n", 1u64.into())]));
        }
        // "a" three times (not looked up), 1 once.
        assert_eq!(layer.value_count, 4);
        let reader = mvt_reader::Reader::new(encode(&[layer])).unwrap();
        for f in reader.get_features(0).unwrap() {
            let p = f.properties.unwrap();
            assert_eq!(p["id"], mvt_reader::feature::Value::String("a".into()));
            assert_eq!(p["n"], mvt_reader::feature::Value::UInt(1));
        }
    }

    #[test]
    fn non_finite_doubles_and_repeated_keys_are_left_out() {
        let mut layer = Layer::new("cells", z0());
        let line = [(0.0, 0.0), (10.0, 10.0)];
        let props = [
            ("nan", Value::Double(f64::NAN)),
            ("inf", Value::Double(f64::INFINITY)),
            ("a", Value::Int(-1)),
            ("a", Value::Int(2)),
        ];
        assert!(layer.add_line(None, &line, &props));
        assert_eq!(layer.scratch.tags, vec![0, 0]);
        assert_eq!(layer.key_index.len(), 1);
    }

    #[test]
    fn values_are_written_with_the_spec_field_for_their_kind() {
        // Each a layer's `values` field (0x22), its length, then the `Value` message.
        let cases = [
            (Value::from("ab"), vec![0x22, 4, 0x0a, 2, b'a', b'b']),
            (Value::from(-1i64), vec![0x22, 2, 0x30, 1]),
            (Value::from(300u64), vec![0x22, 3, 0x28, 0xac, 0x02]),
            (Value::from(true), vec![0x22, 2, 0x38, 1]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            put_value(&mut out, value.as_prop());
            assert_eq!(out, bytes, "{value:?}");
        }
        let mut out = Vec::new();
        put_value(&mut out, Prop::Double(1.5));
        assert_eq!(out[..3], [0x22, 9, 0x19]);
        assert_eq!(&out[3..], &1.5f64.to_le_bytes());
    }

    #[test]
    fn a_keyed_ring_is_the_same_feature_as_a_projected_polygon() {
        // One ring across the buffer's edge (clipped), one inside it (rounded as it comes).
        let across = [(10.4, 10.6), (60.0, 12.0), (40.0, 70.2), (-30.0, 5000.0)];
        let inside = [(10.4, 10.6), (60.0, 12.0), (40.5, 70.5), (-30.5, 4000.49)];
        assert!(inside.iter().all(|&p| inside_clip(p)) && !across.iter().all(|&p| inside_clip(p)));
        // `share` looked up among the values (thousandths by slot), `id` written as it comes.
        let mut generic = Layer::new("cells", z0());
        generic.unique_values(&["id"]);
        let mut keyed = Layer::new("cells", z0());
        keyed.unique_values(&["id"]);
        // A key indexed ahead and never given a value is still listed: both layers list all.
        let keys = ["id", "n", "x", "share", "none"].map(|k| keyed.key(k));
        let _ = ["id", "n", "x", "share", "none"].map(|k| generic.key(k));
        for i in 0..6u64 {
            let ring: &[(f64, f64)] = if i % 2 == 0 { &across } else { &inside };
            let id = (i % 3 == 0).then_some(i);
            let share = i as f32 / 8.0;
            let props = [
                ("id", Value::from(format!("c{i}"))),
                ("n", Value::from(i % 2)),
                ("x", Value::from(0.5)),
                ("share", Value::Float(share)),
                ("none", Value::Float(f32::NAN)),
            ];
            assert!(generic.add_projected_polygon(id, ring, &props));
            let name = format!("c{i}");
            let props = [
                (keys[0], Prop::Str(&name)),
                (keys[1], Prop::UInt(i % 2)),
                (keys[2], Prop::Double(0.5)),
                (keys[3], Prop::Float(share)),
                (keys[4], Prop::Float(f32::NAN)),
            ];
            assert!(keyed.add_keyed_ring(id, ring, &props));
        }
        assert_eq!(encode(&[keyed]), encode(&[generic]));
    }

    #[test]
    fn thousandths_are_filed_without_hashing_and_nothing_else_is() {
        let share = |k: u32| (f64::from(k) / 1000.0) as f32;
        assert_eq!(small_slot(Prop::Float(share(0))), Some(512));
        assert_eq!(small_slot(Prop::Float(share(123))), Some(512 + 123));
        assert_eq!(small_slot(Prop::Float(share(1000))), Some(512 + 1000));
        assert_eq!(small_slot(Prop::Float(0.1234)), None);
        assert_eq!(small_slot(Prop::Float(-0.0)), None, "not 0.0's bits");
        assert_eq!(small_slot(Prop::Float(share(123) + 1e-6)), None);
        assert_eq!(small_slot(Prop::Float(1.001)), None);
        assert_eq!(small_slot(Prop::Float(f32::NAN)), None);
        assert_eq!(small_slot(Prop::Int(255)), Some(255));
        assert_eq!(small_slot(Prop::UInt(3)), Some(259));
        let mut layer = Layer::new("cells", z0());
        let k = layer.key("share");
        let a = layer.value_id(k, Prop::Float(share(250)));
        let b = layer.value_id(k, Prop::Float(0.1234));
        assert_eq!(
            layer.value_id(k, Prop::Float(share(250))),
            a,
            "one value, filed"
        );
        assert_eq!(
            layer.value_id(k, Prop::Float(0.1234)),
            b,
            "one value, hashed"
        );
        assert_ne!(
            layer.value_id(k, Prop::Float(-0.0)),
            layer.value_id(k, Prop::Float(0.0))
        );
    }

    #[test]
    fn a_float_is_a_four_byte_float_value() {
        let mut out = Vec::new();
        put_value(&mut out, Prop::Float(0.125));
        // values field, length 5, float_value (field 2, wire type 5), little-endian bits.
        assert_eq!(out[..3], [0x22, 5, 0x15]);
        assert_eq!(&out[3..], &0.125f32.to_le_bytes());
    }

    #[test]
    fn a_one_line_tile_has_the_expected_bytes() {
        let mut layer = Layer::new("r", z0());
        // From the centre of the world to 90°E on the equator: (2048,2048) → (3072,2048).
        assert!(layer.add_line(Some(1), &[(0.0, 0.0), (90.0, 0.0)], &[("k", true.into())]));
        let bytes = encode(&[layer, Layer::new("empty", z0())]);
        let geometry = [9, 0x80, 0x20, 0x80, 0x20, 10, 0x80, 0x10, 0];
        let mut feature = vec![0x08, 1, 0x12, 2, 0, 0, 0x18, 2, 0x22, geometry.len() as u8];
        feature.extend_from_slice(&geometry);
        let mut layer_body = vec![0x0a, 1, b'r', 0x12, feature.len() as u8];
        layer_body.extend_from_slice(&feature);
        layer_body.extend_from_slice(&[0x1a, 1, b'k', 0x22, 2, 0x38, 1, 0x28, 0x80, 0x20, 0x78, 2]);
        let mut expected = vec![0x1a, layer_body.len() as u8];
        expected.extend_from_slice(&layer_body);
        assert_eq!(bytes, expected);
    }
}
