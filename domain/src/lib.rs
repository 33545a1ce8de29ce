//! Domain types that several covermap stages share: who uploaded ([`DeviceId`]), what they sent
//! ([`UploadKind`], [`Fix`]), where it landed ([`Cell`], [`BoundingBox`]), how far through the
//! pipeline it is ([`UploadStatus`]), what an epoch reads and produces ([`rewards`]) and what the
//! trust stage concludes ([`trust`]).
//!
//! No I/O and no rules live here: validation of single values only, so a value of these types is
//! always well formed. Rules (what counts as coverage, what is paid) live in `scoring`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod kinds;
pub mod rewards;
pub mod trust;

pub use kinds::{
    EmitterKind, FixRejection, RadioType, RejectionStage, ReportDecision, ReportReason,
};

/// A value that failed its own validity check, with the reason in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidValue {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// The identity a contributor's device uploads under: 1 to 64 characters of `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    pub const MAX_LEN: usize = 64;

    /// The device id that uploads sent with API key `id` (not signed by a device) are kept under.
    /// Registered devices may not take ids of this form.
    pub fn for_api_key(id: i64) -> Self {
        Self(format!("key-{id}"))
    }

    /// Whether this id is of the form [`DeviceId::for_api_key`] gives.
    pub fn is_api_key_id(&self) -> bool {
        self.0
            .strip_prefix("key-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DeviceId {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(InvalidValue::new(
                "device",
                format!("must be 1 to {} characters", Self::MAX_LEN),
            ));
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
        {
            return Err(InvalidValue::new(
                "device",
                format!("character {bad:?} is not allowed (use A-Z a-z 0-9 . _ : -)"),
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for DeviceId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeviceId> for String {
    fn from(d: DeviceId) -> Self {
        d.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an upload holds; decides which parser and which job handle it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadKind {
    /// A GPS track of a drive as GPX 1.0/1.1.
    Gpx,
    /// A GPS track as an NMEA 0183 log (plain, or BlackVue's `[epoch ms]$GP…` lines).
    Nmea,
    /// A camera drive: a zip of JPEG frames with a track file, or frames with EXIF GPS.
    Drive,
    /// Radio observations in Ichnaea's geosubmit v2 JSON (NeoStumbler, Tower Collector).
    GeosubmitV2,
    /// Radio observations in Ichnaea's older geosubmit v1 JSON.
    GeosubmitV1,
    /// A WiGLE CSV export (WigleWifi-1.4 or 1.6).
    Wigle,
    /// An OpenCelliD / Tower Collector measurements CSV.
    Opencellid,
}

impl UploadKind {
    pub const ALL: [UploadKind; 7] = [
        UploadKind::Gpx,
        UploadKind::Nmea,
        UploadKind::Drive,
        UploadKind::GeosubmitV2,
        UploadKind::GeosubmitV1,
        UploadKind::Wigle,
        UploadKind::Opencellid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UploadKind::Gpx => "gpx",
            UploadKind::Nmea => "nmea",
            UploadKind::Drive => "drive",
            UploadKind::GeosubmitV2 => "geosubmit_v2",
            UploadKind::GeosubmitV1 => "geosubmit_v1",
            UploadKind::Wigle => "wigle",
            UploadKind::Opencellid => "opencellid",
        }
    }

    /// A GPS track of a drive (its fixes are matched to roads).
    pub fn is_track(self) -> bool {
        matches!(self, UploadKind::Gpx | UploadKind::Nmea)
    }

    /// Radio measurements (cells, Wi-Fi, Bluetooth seen at positions).
    pub fn is_radio(self) -> bool {
        matches!(
            self,
            UploadKind::GeosubmitV2
                | UploadKind::GeosubmitV1
                | UploadKind::Wigle
                | UploadKind::Opencellid
        )
    }
}

/// What an API key may do. Each endpoint names the roles it admits; `admin` is admitted everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A contributor's device or app: registers device keys, uploads, follows its own uploads.
    Device,
    /// Reviews what was accepted and rejected, and why.
    Auditor,
    /// Plans coverage: reads and writes demand.
    Planner,
    /// Everything, including managing keys.
    Admin,
    /// A map consumer: reads the public map endpoints under a daily quota of requests instead
    /// of the anonymous per-address rate limit, and its looks count towards usage demand.
    Consumer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Device,
        Role::Auditor,
        Role::Planner,
        Role::Admin,
        Role::Consumer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Device => "device",
            Role::Auditor => "auditor",
            Role::Planner => "planner",
            Role::Admin => "admin",
            Role::Consumer => "consumer",
        }
    }
}

impl FromStr for Role {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                InvalidValue::new(
                    "role",
                    format!("unknown role {s:?}; roles: device, auditor, planner, admin, consumer"),
                )
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UploadKind {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
                InvalidValue::new(
                    "kind",
                    format!("unknown upload kind {s:?}; known: {}", known.join(", ")),
                )
            })
    }
}

impl fmt::Display for UploadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an upload is in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadStatus {
    /// Stored and waiting for a worker.
    Queued,
    /// A worker turned it into observations.
    Processed,
    /// A worker found nothing usable in it; the reason is recorded beside it.
    Rejected,
}

impl UploadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Queued => "queued",
            UploadStatus::Processed => "processed",
            UploadStatus::Rejected => "rejected",
        }
    }
}

impl FromStr for UploadStatus {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "queued" => Ok(Self::Queued),
            "processed" => Ok(Self::Processed),
            "rejected" => Ok(Self::Rejected),
            other => Err(InvalidValue::new(
                "status",
                format!("unknown upload status {other:?}"),
            )),
        }
    }
}

/// A WGS84 position, validated: finite, latitude in [-90, 90], longitude in [-180, 180].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

impl LatLon {
    pub fn new(lat: f64, lon: f64) -> Result<Self, InvalidValue> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(InvalidValue::new(
                "lat",
                format!("{lat} is not a latitude in [-90, 90]"),
            ));
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(InvalidValue::new(
                "lon",
                format!("{lon} is not a longitude in [-180, 180]"),
            ));
        }
        Ok(Self { lat, lon })
    }

    /// Great-circle distance in metres (haversine on the mean Earth radius).
    pub fn distance_m(self, other: LatLon) -> f64 {
        const EARTH_RADIUS_M: f64 = 6_371_008.8;
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().asin()
    }
}

/// One GNSS fix of a drive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    pub at: DateTime<Utc>,
    pub pos: LatLon,
    /// Horizontal accuracy in metres, where the device reported one.
    pub accuracy_m: Option<f64>,
}

/// An H3 cell index, stored as BIGINT (H3 indices use 63 bits, so they are always positive) and
/// written in JSON as H3's usual hexadecimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cell(pub h3o::CellIndex);

impl TryFrom<String> for Cell {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse::<h3o::CellIndex>()
            .map(Cell)
            .map_err(|e| InvalidValue::new("cell", format!("{s:?} is not an H3 cell: {e}")))
    }
}

impl From<Cell> for String {
    fn from(c: Cell) -> Self {
        c.0.to_string()
    }
}

impl Cell {
    pub fn as_i64(self) -> i64 {
        // H3 indices have their top bit clear, so this never wraps.
        u64::from(self.0) as i64
    }

    pub fn from_i64(v: i64) -> Result<Self, InvalidValue> {
        h3o::CellIndex::try_from(v as u64)
            .map(Cell)
            .map_err(|e| InvalidValue::new("cell", format!("{v:#x} is not an H3 cell: {e}")))
    }

    pub fn center(self) -> LatLon {
        let ll = h3o::LatLng::from(self.0);
        LatLon {
            lat: ll.lat(),
            lon: ll.lng(),
        }
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A WGS84 box, west/south/east/north, as map clients send it (`bbox=w,s,e,n`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub west: f64,
    pub south: f64,
    pub east: f64,
    pub north: f64,
}

impl BoundingBox {
    pub const WORLD: BoundingBox = BoundingBox {
        west: -180.0,
        south: -90.0,
        east: 180.0,
        north: 90.0,
    };

    pub fn new(west: f64, south: f64, east: f64, north: f64) -> Result<Self, InvalidValue> {
        let sw = LatLon::new(south, west).map_err(|e| InvalidValue::new("bbox", e.reason))?;
        let ne = LatLon::new(north, east).map_err(|e| InvalidValue::new("bbox", e.reason))?;
        if sw.lat > ne.lat || sw.lon > ne.lon {
            return Err(InvalidValue::new(
                "bbox",
                "must be west,south,east,north with west <= east and south <= north",
            ));
        }
        Ok(Self {
            west,
            south,
            east,
            north,
        })
    }

    pub fn contains(&self, p: LatLon) -> bool {
        (self.south..=self.north).contains(&p.lat) && (self.west..=self.east).contains(&p.lon)
    }

    /// The smallest box holding every hexagon of `cells` whole (so their centres too); None for
    /// no cells.
    pub fn around_cells<'a>(cells: impl IntoIterator<Item = &'a Cell>) -> Option<Self> {
        let mut b: Option<Self> = None;
        for cell in cells {
            for v in cell.0.boundary().iter() {
                let (lon, lat) = (v.lng(), v.lat());
                b = Some(match b {
                    None => Self {
                        west: lon,
                        south: lat,
                        east: lon,
                        north: lat,
                    },
                    Some(b) => Self {
                        west: b.west.min(lon),
                        south: b.south.min(lat),
                        east: b.east.max(lon),
                        north: b.north.max(lat),
                    },
                });
            }
        }
        b
    }
}

impl FromStr for BoundingBox {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                InvalidValue::new("bbox", "must be four numbers: west,south,east,north")
            })?;
        match parts[..] {
            [w, s, e, n] => Self::new(w, s, e, n),
            _ => Err(InvalidValue::new(
                "bbox",
                "must be four numbers: west,south,east,north",
            )),
        }
    }
}

/// What one upload saw of one cell: how many accepted fixes fell in it, and when.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CellVisit {
    pub cell: Cell,
    pub fixes: u32,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// Everything known of one cell, summed over the uploads that visited it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CellCoverage {
    pub cell: Cell,
    pub fixes: i64,
    pub uploads: i64,
    pub devices: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// What the coverage map shows of one cell at the stored resolution: its observations (unless
/// only flagged or erased uploads made them) and its road, driven and not. The map's in-process
/// index is built from these and kept current by the change feed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MapCellState {
    pub cell: Cell,
    /// `None` where nothing on the map was observed in it (a road cell nobody drove).
    pub observed: Option<CellObserved>,
    pub road_length_m: f64,
    /// Road length driven in the coverage window the state was read for.
    pub driven_m: f64,
    /// When `driven_m` next changes by the clock alone: the oldest drive it counts leaves the
    /// window then. `None` when it counts none.
    pub driven_until: Option<DateTime<Utc>>,
}

/// A cell's observations, summed over the uploads on the map.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CellObserved {
    pub fixes: i64,
    pub uploads: i64,
    pub devices: i64,
    pub last_seen: DateTime<Utc>,
}

/// A stretch of road an upload was matched to, inside one cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MatchedStretch {
    /// Which continuous piece of the match (a gap or an unreachable stretch starts a new one).
    pub match_piece: u32,
    pub cell: Cell,
    pub osm_way_id: i64,
    /// The road segment's piece of its way (see [`RoadSegment::piece`]).
    pub way_piece: u32,
    pub length_m: f64,
}

/// How much road a cell holds: the denominator of its coverage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoadCell {
    pub cell: Cell,
    pub road_length_m: f64,
}

/// A drivable piece of an OSM way, between two of its nodes that other ways share (or its ends).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoadSegment {
    pub osm_way_id: i64,
    /// Which piece of the way this is, counting from its first node.
    pub piece: u32,
    pub osm_node_ids: Vec<i64>,
    pub points: Vec<LatLon>,
    pub highway: String,
    pub name: Option<String>,
    pub oneway: bool,
    pub length_m: f64,
}

/// One road segment, named as the matcher and the roads table name it: a piece of an OSM way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SegmentRef {
    pub osm_way_id: i64,
    pub way_piece: u32,
}

/// A rectangle of a published frame an auditor marked to blur further, in the frame's pixels:
/// `x` to the right and `y` down from its top-left corner, from (`x1`, `y1`) to (`x2`, `y2`).
/// Well formed on its own (finite, not negative, not empty); whether it lies inside a frame is
/// [`BlurBox::check_within`]'s to say once the frame's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "BoxCorners")]
pub struct BlurBox {
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
}

/// A box as sent, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BoxCorners {
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
}

impl TryFrom<BoxCorners> for BlurBox {
    type Error = InvalidValue;
    fn try_from(c: BoxCorners) -> Result<Self, Self::Error> {
        Self::new(c.x1, c.y1, c.x2, c.y2)
    }
}

impl BlurBox {
    /// Most boxes one decision may mark: more than a crowd's faces and every plate of a street,
    /// and few enough that a request cannot make the server blur the same frame thousands of
    /// times.
    pub const MAX_PER_FRAME: usize = 32;

    pub fn new(x1: f64, y1: f64, x2: f64, y2: f64) -> Result<Self, InvalidValue> {
        if ![x1, y1, x2, y2].iter().all(|v| v.is_finite()) {
            return Err(InvalidValue::new(
                "boxes",
                "a box's corners must be finite numbers",
            ));
        }
        if x1 < 0.0 || y1 < 0.0 {
            return Err(InvalidValue::new(
                "boxes",
                format!("a box starts at ({x1}, {y1}): outside the frame"),
            ));
        }
        if x2 <= x1 || y2 <= y1 {
            return Err(InvalidValue::new(
                "boxes",
                format!(
                    "a box from ({x1}, {y1}) to ({x2}, {y2}) is empty: x2 must be past x1 and \
                     y2 past y1"
                ),
            ));
        }
        Ok(Self { x1, y1, x2, y2 })
    }

    /// Checks a decision's list of boxes: at least one, at most [`BlurBox::MAX_PER_FRAME`].
    pub fn check_count(boxes: &[BlurBox]) -> Result<(), InvalidValue> {
        match boxes.len() {
            0 => Err(InvalidValue::new("boxes", "mark at least one box to blur")),
            n if n > Self::MAX_PER_FRAME => Err(InvalidValue::new(
                "boxes",
                format!("{n} boxes; at most {} may be marked", Self::MAX_PER_FRAME),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the box lies inside a `width`×`height` frame.
    pub fn check_within(&self, width: u32, height: u32) -> Result<(), InvalidValue> {
        if self.x2 > f64::from(width) || self.y2 > f64::from(height) {
            return Err(InvalidValue::new(
                "boxes",
                format!(
                    "a box reaches ({}, {}), outside the {width}×{height} frame",
                    self.x2, self.y2
                ),
            ));
        }
        Ok(())
    }
}

/// What one H3 cell's published imagery adds up to: the imagery observations of the place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageryCellSummary {
    pub cell: Cell,
    /// Published frames taken in the cell.
    pub frames: i64,
    /// Distinct contributors (or devices, for uploads bound to no contributor) among them.
    pub contributors: i64,
    /// Distinct road segments the frames were placed on.
    pub segments: i64,
    pub newest: DateTime<Utc>,
    pub oldest: DateTime<Utc>,
}

/// What one H3 cell's radio observations add up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RadioCellSummary {
    pub cell: Cell,
    pub observations: i64,
    pub emitters: i64,
    pub cells_seen: i64,
    pub wifi_seen: i64,
    pub bluetooth_seen: i64,
    pub best_signal_dbm: Option<i32>,
    pub last_seen: DateTime<Utc>,
}

/// An API key to create, as the store keeps it: its hash (never the key), the prefix that names
/// it in listings, the role it grants, the contributor it is bound to and, for a consumer key,
/// its quota of requests per UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub key_hash: String,
    pub prefix: String,
    pub role: Role,
    pub contributor: Option<String>,
    pub quota_per_day: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_checked() {
        assert!("phone-1:a.b_c".parse::<DeviceId>().is_ok());
        assert!("".parse::<DeviceId>().is_err());
        assert!("a b".parse::<DeviceId>().is_err());
        assert!("x".repeat(65).parse::<DeviceId>().is_err());
    }

    #[test]
    fn blur_boxes_are_checked_alone_and_against_their_frame() {
        let b = BlurBox::new(10.0, 20.0, 110.5, 220.0).unwrap();
        assert!(b.check_within(111, 220).is_ok());
        assert!(b.check_within(110, 220).is_err());
        assert!(b.check_within(200, 219).is_err());
        for (x1, y1, x2, y2) in [
            (f64::NAN, 0.0, 1.0, 1.0),
            (0.0, 0.0, f64::INFINITY, 1.0),
            (-1.0, 0.0, 1.0, 1.0),
            (5.0, 0.0, 5.0, 1.0),
            (0.0, 9.0, 1.0, 3.0),
        ] {
            let e = BlurBox::new(x1, y1, x2, y2).unwrap_err();
            assert_eq!(e.field, "boxes");
        }
        let parsed: BlurBox =
            serde_json::from_str(r#"{"x1": 1, "y1": 2, "x2": 3, "y2": 4}"#).unwrap();
        assert_eq!(parsed, BlurBox::new(1.0, 2.0, 3.0, 4.0).unwrap());
        assert!(
            serde_json::from_str::<BlurBox>(r#"{"x1": 3, "y1": 2, "x2": 1, "y2": 4}"#).is_err()
        );
        assert!(serde_json::from_str::<BlurBox>(r#"{"x1": 1, "y1": 2, "x2": 3}"#).is_err());
        assert!(BlurBox::check_count(&[]).is_err());
        assert!(BlurBox::check_count(&[b; BlurBox::MAX_PER_FRAME]).is_ok());
        assert!(BlurBox::check_count(&[b; BlurBox::MAX_PER_FRAME + 1]).is_err());
    }

    #[test]
    fn positions_reject_nan_and_out_of_range() {
        assert!(LatLon::new(f64::NAN, 0.0).is_err());
        assert!(LatLon::new(0.0, f64::INFINITY).is_err());
        assert!(LatLon::new(91.0, 0.0).is_err());
        assert!(LatLon::new(0.0, -180.5).is_err());
        assert!(LatLon::new(43.73, 7.42).is_ok());
    }

    #[test]
    fn haversine_matches_a_known_distance() {
        // One degree of latitude is about 111.2 km on the mean sphere.
        let d = LatLon::new(0.0, 0.0)
            .unwrap()
            .distance_m(LatLon::new(1.0, 0.0).unwrap());
        assert!((d - 111_195.0).abs() < 5.0, "{d}");
    }

    #[test]
    fn a_box_around_cells_holds_their_hexagons_whole() {
        assert_eq!(BoundingBox::around_cells(&[]), None);
        let cell = Cell(
            h3o::LatLng::new(43.7331, 7.4200)
                .unwrap()
                .to_cell(h3o::Resolution::Ten),
        );
        let far = Cell(
            h3o::LatLng::new(43.7500, 7.4400)
                .unwrap()
                .to_cell(h3o::Resolution::Ten),
        );
        let b = BoundingBox::around_cells(&[cell, far]).unwrap();
        for c in [cell, far] {
            for v in c.0.boundary().iter() {
                assert!(
                    b.contains(LatLon {
                        lat: v.lat(),
                        lon: v.lng()
                    }),
                    "{b:?}"
                );
            }
        }
        assert!(b.west < 7.4200 && b.east > 7.4400 && b.south < 43.7331 && b.north > 43.75);
    }

    #[test]
    fn bbox_parses_and_rejects_inverted_boxes() {
        let b: BoundingBox = "7.40,43.72,7.44,43.75".parse().unwrap();
        assert!(b.contains(LatLon::new(43.73, 7.42).unwrap()));
        assert!("7.44,43.72,7.40,43.75".parse::<BoundingBox>().is_err());
        assert!("1,2,3".parse::<BoundingBox>().is_err());
        assert!("a,b,c,d".parse::<BoundingBox>().is_err());
    }

    #[test]
    fn cells_round_trip_through_bigint() {
        let c = h3o::LatLng::new(43.73, 7.42)
            .unwrap()
            .to_cell(h3o::Resolution::Eleven);
        let cell = Cell(c);
        assert!(cell.as_i64() > 0);
        assert_eq!(Cell::from_i64(cell.as_i64()).unwrap(), cell);
        assert!(Cell::from_i64(12345).is_err());
    }
}
