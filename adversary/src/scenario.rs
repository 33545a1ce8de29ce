//! A scenario: who contributes, with which devices, and every file they upload, in upload order,
//! each labelled honest or with the fraud it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Timelike, Utc};
use covermap_roads::RoadNetwork;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};

use crate::AdversaryError;
use crate::driving::{Driver, Pace, Trajectory};
use crate::formats::{self, GPX_STYLES, GpxStyle};
use crate::geo::{Xy, compass};
use crate::gnss::{self, Noise, Receiver, TrackPoint};
use crate::radio::{Phone, RadioItem, RadioWorld};
use crate::roads::RoadMap;

/// The fraud patterns of issue 14: tracks (alone, as under a camera drive) and radio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FraudType {
    /// Two real drives spliced with a jump between consecutive fixes, or between the end of one
    /// upload and the start of the next.
    Teleport,
    /// Sustained speeds no road vehicle reaches, or far over the road's class.
    ImpossibleSpeed,
    /// Interpolated between a few waypoints: straight, regular, noiseless, cutting corners.
    StraightLine,
    /// Someone else's drive, or the device's own, uploaded again with times shifted, offset
    /// and noise added.
    Replay,
    /// Most of the track far from any road (the sea beside Monaco, the hills).
    OffNetwork,
    /// Times in the future, years old, or after the upload arrived.
    BadTime,
    /// A parked device reporting for a long time, some with radio batches claiming movement.
    Stationary,
    /// Signals out of the technology's range, or far too strong for the distance to the site.
    RadioImpossibleSignal,
    /// Cell ids no one observed, ids that do not fit the operator's numbering, real emitters
    /// reported kilometres from their site.
    RadioFabricated,
    /// Someone else's batch, or one's own, submitted again with small changes.
    RadioDuplicate,
    /// One place, many batches, movement claimed.
    RadioStationary,
    /// Positions jumping kilometres every second.
    RadioTeleport,
}

impl FraudType {
    pub const ALL: [FraudType; 12] = [
        FraudType::Teleport,
        FraudType::ImpossibleSpeed,
        FraudType::StraightLine,
        FraudType::Replay,
        FraudType::OffNetwork,
        FraudType::BadTime,
        FraudType::Stationary,
        FraudType::RadioImpossibleSignal,
        FraudType::RadioFabricated,
        FraudType::RadioDuplicate,
        FraudType::RadioStationary,
        FraudType::RadioTeleport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FraudType::Teleport => "teleport",
            FraudType::ImpossibleSpeed => "impossible_speed",
            FraudType::StraightLine => "straight_line",
            FraudType::Replay => "replay",
            FraudType::OffNetwork => "off_network",
            FraudType::BadTime => "bad_time",
            FraudType::Stationary => "stationary",
            FraudType::RadioImpossibleSignal => "radio_impossible_signal",
            FraudType::RadioFabricated => "radio_fabricated",
            FraudType::RadioDuplicate => "radio_duplicate",
            FraudType::RadioStationary => "radio_stationary",
            FraudType::RadioTeleport => "radio_teleport",
        }
    }

    /// Every strength the generator makes of this type, in the order files cycle through them.
    pub fn strengths(self) -> &'static [&'static str] {
        match self {
            // within_*: the jump inside one file; across_*: between the end of one upload and
            // the start of the contributor's next (a contributor's first file, with no upload
            // before it, is made and labelled within_*).
            FraudType::Teleport => &[
                "within_300m",
                "across_1km",
                "within_5km",
                "across_300m",
                "within_1km",
                "across_5km",
            ],
            FraudType::ImpossibleSpeed => &["twice_class", "250kmh", "400kmh"],
            FraudType::StraightLine => &[
                "wp3_noise0m",
                "wp6_noise2m",
                "wp12_noise5m",
                "wp6_noise0m",
                "wp12_noise2m",
                "wp3_noise5m",
                "wp12_noise0m",
                "wp3_noise2m",
                "wp6_noise5m",
            ],
            FraudType::Replay => &["other", "own"],
            FraudType::OffNetwork => &["full", "partial"],
            FraudType::BadTime => &[
                "future_hours",
                "ancient_years",
                "future_days",
                "after_arrival",
            ],
            FraudType::Stationary => &["20min_5m", "60min_15m", "120min_30m"],
            FraudType::RadioImpossibleSignal => &["out_of_range", "too_strong"],
            FraudType::RadioFabricated => &["random_ids", "misfit_ids", "displaced"],
            FraudType::RadioDuplicate => &["other", "own"],
            FraudType::RadioStationary => &["5m", "15m", "30m"],
            FraudType::RadioTeleport => &["1km", "3km", "5km"],
        }
    }

    pub fn is_radio(self) -> bool {
        matches!(
            self,
            FraudType::RadioImpossibleSignal
                | FraudType::RadioFabricated
                | FraudType::RadioDuplicate
                | FraudType::RadioStationary
                | FraudType::RadioTeleport
        )
    }
}

impl fmt::Display for FraudType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FraudType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FraudType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown fraud type {s:?}"))
    }
}

/// What a file truly is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    Honest,
    Fraud(FraudType),
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Honest => "honest",
            Label::Fraud(t) => t.as_str(),
        }
    }

    pub fn fraud(self) -> Option<FraudType> {
        match self {
            Label::Honest => None,
            Label::Fraud(t) => Some(t),
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl FromStr for Label {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "honest" {
            Ok(Label::Honest)
        } else {
            s.parse().map(Label::Fraud)
        }
    }
}

/// How a file reaches covermap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A GPS track, signed by the contributor's registered device (`POST /api/v1/uploads/gpx`).
    Gpx,
    /// A geosubmit v2 body sent with the contributor's device key (`POST /v2/geosubmit?key=`).
    Geosubmit,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Gpx => "gpx",
            FileKind::Geosubmit => "geosubmit",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            FileKind::Gpx => "gpx",
            FileKind::Geosubmit => "json",
        }
    }
}

/// A device that signs uploads: its id and its ed25519 secret (for `DeviceSigner::from_secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub secret: [u8; 32],
}

/// One contributor: a name rewards are paid to, and the devices it signs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Contributor {
    pub name: String,
    /// `Honest`, or the one fraud type this contributor commits.
    pub label: Label,
    /// Signing devices (dashcams, loggers); geosubmit goes with the contributor's API key.
    pub devices: Vec<Device>,
}

/// One file to upload.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioFile {
    /// `f0001`, … in upload order.
    pub id: String,
    pub contributor: String,
    /// The signing device (GPX), or the phone that made a geosubmit batch (not a registered
    /// device: geosubmit is sent with the contributor's key).
    pub device: String,
    pub kind: FileKind,
    pub label: Label,
    /// One of the type's [`FraudType::strengths`]; empty for honest files.
    pub strength: String,
    /// The exact parameters drawn, in words (`jump 1 043 m after 812 s`).
    pub detail: String,
    /// The file this one copies (replays and duplicates).
    pub copy_of: Option<String>,
    /// First and last time in the file (Unix ms).
    pub first_ms: i64,
    pub last_ms: i64,
    pub bytes: Vec<u8>,
}

/// Which fraud to make and in which strengths (a subset of [`FraudType::strengths`]; empty for
/// all of them).
#[derive(Debug, Clone, PartialEq)]
pub struct FraudPlan {
    pub fraud: FraudType,
    pub strengths: Vec<String>,
}

/// Everything a scenario is drawn from.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioConfig {
    pub seed: u64,
    pub honest_contributors: usize,
    /// Drives per honest contributor (each a GPX file and, with a radio app, a geosubmit batch).
    pub drives_per_honest: usize,
    pub fraud_contributors_per_type: usize,
    pub files_per_fraud_contributor: usize,
    pub fraud: Vec<FraudPlan>,
    /// Honest driving happens in this window.
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// When the files will reach covermap: "future" and "after arrival" are relative to it.
    pub arrival: DateTime<Utc>,
}

impl ScenarioConfig {
    /// Every fraud type in every strength, and the given sizes.
    pub fn new(
        seed: u64,
        (honest_contributors, drives_per_honest): (usize, usize),
        (fraud_contributors_per_type, files_per_fraud_contributor): (usize, usize),
        (window_start, window_end): (DateTime<Utc>, DateTime<Utc>),
        arrival: DateTime<Utc>,
    ) -> Self {
        Self {
            seed,
            honest_contributors,
            drives_per_honest,
            fraud_contributors_per_type,
            files_per_fraud_contributor,
            fraud: FraudType::ALL
                .into_iter()
                .map(|fraud| FraudPlan {
                    fraud,
                    strengths: Vec::new(),
                })
                .collect(),
            window_start,
            window_end,
            arrival,
        }
    }

    /// The integration test's size: 12 honest contributors with 2 drives each, two fraud
    /// contributors per type with 3 files each.
    pub fn small(
        seed: u64,
        window: (DateTime<Utc>, DateTime<Utc>),
        arrival: DateTime<Utc>,
    ) -> Self {
        Self::new(seed, (12, 2), (2, 3), window, arrival)
    }

    /// The bench's size: 40 honest contributors with 3 drives each, four fraud contributors per
    /// type with 3 files each.
    pub fn bench(
        seed: u64,
        window: (DateTime<Utc>, DateTime<Utc>),
        arrival: DateTime<Utc>,
    ) -> Self {
        Self::new(seed, (40, 3), (4, 3), window, arrival)
    }

    /// A set of `size` to be uploaded at `arrival`, its honest drives in the week that ended at
    /// midnight (UTC) two days before: a historical set, as the held-out one is
    /// (`--max-fix-age-days` must take it). Whatever the hour of arrival, the same seed gives the
    /// same drives, shifted by whole days from one day to the next.
    pub fn for_arrival(size: SetSize, seed: u64, arrival: DateTime<Utc>) -> Self {
        let day = (arrival - Duration::days(2)).date_naive();
        let end = day.and_hms_opt(0, 0, 0).map_or(arrival, |d| d.and_utc());
        let window = (end - Duration::days(7), end);
        match size {
            SetSize::Small => Self::small(seed, window, arrival),
            SetSize::Bench => Self::bench(seed, window, arrival),
        }
    }

    fn check(&self) -> Result<(), AdversaryError> {
        if self.window_end <= self.window_start {
            return Err(AdversaryError::Config(
                "the window ends before it starts".into(),
            ));
        }
        if self.window_end > self.arrival {
            return Err(AdversaryError::Config(
                "honest drives must end before the files arrive".into(),
            ));
        }
        if self.honest_contributors < 2 {
            return Err(AdversaryError::Config(
                "copies need at least two honest contributors".into(),
            ));
        }
        for plan in &self.fraud {
            for s in &plan.strengths {
                if !plan.fraud.strengths().contains(&s.as_str()) {
                    return Err(AdversaryError::UnknownStrength {
                        fraud: plan.fraud.as_str(),
                        strength: s.clone(),
                        known: plan.fraud.strengths().join(", "),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The two sizes the test and the bench use (see [`ScenarioConfig::small`] and
/// [`ScenarioConfig::bench`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetSize {
    Small,
    Bench,
}

impl FromStr for SetSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "small" => Ok(SetSize::Small),
            "bench" => Ok(SetSize::Bench),
            other => Err(format!("unknown size {other:?}: small or bench")),
        }
    }
}

/// A generated world of uploads.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub config: ScenarioConfig,
    pub contributors: Vec<Contributor>,
    /// In upload order: a copy always after what it copies, each contributor's files in the
    /// order they were recorded.
    pub files: Vec<ScenarioFile>,
}

impl Scenario {
    pub fn contributor(&self, name: &str) -> Option<&Contributor> {
        self.contributors.iter().find(|c| c.name == name)
    }

    /// Everything but the bytes, as JSON: for a manifest beside the files.
    pub fn manifest(&self) -> Value {
        let c = &self.config;
        json!({
            "config": {
                "seed": c.seed,
                "honest_contributors": c.honest_contributors,
                "drives_per_honest": c.drives_per_honest,
                "fraud_contributors_per_type": c.fraud_contributors_per_type,
                "files_per_fraud_contributor": c.files_per_fraud_contributor,
                "fraud": c.fraud.iter().map(|p| json!({"fraud": p.fraud, "strengths": p.strengths})).collect::<Vec<_>>(),
                "window_start": c.window_start,
                "window_end": c.window_end,
                "arrival": c.arrival,
            },
            "contributors": self.contributors.iter().map(|c| json!({
                "name": c.name,
                "label": c.label,
                "devices": c.devices.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "files": self.files.iter().map(|f| json!({
                "id": f.id,
                "contributor": f.contributor,
                "device": f.device,
                "kind": f.kind,
                "label": f.label,
                "strength": f.strength,
                "detail": f.detail,
                "copy_of": f.copy_of,
                "first": DateTime::<Utc>::from_timestamp_millis(f.first_ms),
                "last": DateTime::<Utc>::from_timestamp_millis(f.last_ms),
                "bytes": f.bytes.len(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// How one contributor drives, logs and scans.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Persona {
    pub driver: Driver,
    pub logger: Receiver,
    pub phone_gnss: Receiver,
    /// `None` for contributors without a radio app.
    pub phone: Option<Phone>,
    /// Whether the contributor uploads tracks at all (many radio contributors have no dashcam).
    pub logs_tracks: bool,
    pub style: GpxStyle,
    pub camera: Device,
    pub phone_name: String,
    pub home: usize,
}

/// A drive as recorded, kept for the fraud that copies it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Recorded {
    pub points: Vec<TrackPoint>,
    pub items: Vec<RadioItem>,
    pub gpx_file: Option<usize>,
    pub radio_file: Option<usize>,
    pub end_junction: usize,
}

/// The file a generator step makes, before it gets its place in the upload order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Draft {
    pub contributor: usize,
    pub device: String,
    pub kind: FileKind,
    pub label: Label,
    pub strength: String,
    pub detail: String,
    pub copy_of: Option<usize>,
    pub first_ms: i64,
    pub last_ms: i64,
    pub bytes: Vec<u8>,
}

/// What every step of the generation shares.
#[derive(Debug)]
pub(crate) struct Generator<'c> {
    pub config: &'c ScenarioConfig,
    pub rng: StdRng,
    pub map: RoadMap,
    pub radio: RadioWorld,
    pub hubs: Vec<usize>,
    pub contributors: Vec<Contributor>,
    pub personas: Vec<Persona>,
    pub drafts: Vec<Draft>,
    pub honest_drives: Vec<(usize, Recorded)>,
    names: BTreeSet<String>,
}

/// Honest trips are 2–12 km.
pub(crate) const TRIP_M: (f64, f64) = (2000.0, 12_000.0);

impl<'c> Generator<'c> {
    pub fn ms(t: DateTime<Utc>) -> i64 {
        t.timestamp_millis()
    }

    pub fn coast_y(&self) -> f64 {
        self.map.min.y
    }

    fn fresh_name(&mut self, prefix: &str) -> String {
        loop {
            let n = format!("{prefix}-{:06x}", self.rng.random_range(0..0x100_0000u32));
            if self.names.insert(n.clone()) {
                return n;
            }
        }
    }

    /// A new contributor (honest or not, drawn alike so nothing but behaviour tells them apart).
    pub fn new_contributor(&mut self, label: Label, logs_tracks: bool, radio: bool) -> usize {
        let name = self.fresh_name("mapper");
        let camera = Device {
            id: self.fresh_name("cam"),
            secret: self.rng.random(),
        };
        let phone_name = self.fresh_name("phone");
        let driver = Driver::random(&mut self.rng);
        let logger = Receiver::random(&mut self.rng);
        let mut phone_gnss = Receiver::random(&mut self.rng);
        phone_gnss.interval_s = 1.0;
        let phone = radio.then(|| Phone::random(&self.radio, &mut self.rng));
        let style = GPX_STYLES[self.rng.random_range(0..GPX_STYLES.len())];
        let home = self.random_crossing();
        self.personas.push(Persona {
            driver,
            logger,
            phone_gnss,
            phone,
            logs_tracks,
            style,
            camera: camera.clone(),
            phone_name,
            home,
        });
        self.contributors.push(Contributor {
            name,
            label,
            devices: if logs_tracks {
                vec![camera]
            } else {
                Vec::new()
            },
        });
        self.contributors.len() - 1
    }

    pub fn random_crossing(&mut self) -> usize {
        let n = self.map.crossings.len().max(1);
        self.map
            .crossings
            .get(self.rng.random_range(0..n))
            .copied()
            .unwrap_or(0)
    }

    /// A time of day people drive at (07:00–21:00 in Monaco, UTC+1), at or after `t`.
    pub fn daytime(&mut self, t: i64) -> i64 {
        let local =
            DateTime::<Utc>::from_timestamp_millis(t).unwrap_or_default() + Duration::hours(1);
        if (7..20).contains(&local.hour()) {
            return t;
        }
        let days = i64::from(local.hour() >= 20);
        let next = local.date_naive() + Duration::days(days);
        let seven = next
            .and_hms_opt(7, 0, 0)
            .map(|d| d.and_utc() - Duration::hours(1))
            .unwrap_or_default();
        Self::ms(seven) + self.rng.random_range(0..3 * 3600 * 1000)
    }

    /// A trip of `persona`: a route from `from`, driven, its fixes as logged.
    pub fn trip(
        &mut self,
        persona: &Persona,
        from: Option<usize>,
        length: (f64, f64),
        pace: Pace,
    ) -> Result<Trajectory, AdversaryError> {
        let route = self
            .map
            .random_route(&mut self.rng, from, length, &self.hubs)
            .ok_or(AdversaryError::TooFewRoads("a trip"))?;
        Ok(Trajectory::drive(
            route,
            &persona.driver,
            pace,
            &mut self.rng,
        ))
    }

    pub fn log(&mut self, traj: &Trajectory, receiver: Receiver, start_ms: i64) -> Vec<TrackPoint> {
        gnss::record(
            traj,
            receiver,
            start_ms,
            &self.map.plane,
            self.coast_y(),
            &mut self.rng,
        )
    }

    /// The reports a radio app makes along `traj`: a scan every few seconds while moving.
    pub fn scan_along(
        &mut self,
        traj: &Trajectory,
        phone: &Phone,
        gnss: Receiver,
        start_ms: i64,
    ) -> Vec<RadioItem> {
        let duration = traj.duration_s();
        let mut noise = Noise::new(gnss, duration, &mut self.rng);
        let mut t = self.rng.random_range(0.0..3.0);
        let mut last: Option<Xy> = None;
        let mut items = Vec::new();
        while t <= duration {
            let state = traj.at(t);
            let e = noise.at(t, &mut self.rng);
            let moved = last.is_none_or(|l| l.dist(state.pos) > 20.0);
            if state.speed_mps > 0.5 || moved {
                let item = self.item_at(
                    phone,
                    state.pos,
                    e,
                    state.speed_mps,
                    state.heading,
                    start_ms,
                    t,
                );
                if !item.cells.is_empty() || !item.wifi.is_empty() {
                    items.push(item);
                    last = Some(state.pos);
                }
            }
            t += self
                .rng
                .random_range(phone.interval_s.0..phone.interval_s.1);
        }
        items
    }

    /// One report: what `phone` hears at `truth`, placed at its fix (`truth` + `err`).
    #[allow(clippy::too_many_arguments)]
    pub fn item_at(
        &mut self,
        phone: &Phone,
        truth: Xy,
        err: Xy,
        speed_mps: f64,
        heading: f64,
        start_ms: i64,
        t: f64,
    ) -> RadioItem {
        let (cells, wifi) = self.radio.hear(phone, truth, &mut self.rng);
        let (lat, lon) = self.map.plane.lat_lon(truth.add(err.x, err.y));
        let age_ms = self.rng.random_range(0..1500);
        let err_m = err.x.hypot(err.y);
        let speed = (speed_mps + crate::gauss(&mut self.rng, 0.2)).max(0.0);
        RadioItem {
            at_ms: start_ms + (t * 1000.0).round() as i64 + age_ms,
            lat,
            lon,
            accuracy_m: (err_m * self.rng.random_range(1.0..1.8) + self.rng.random_range(2.0..4.0))
                .clamp(3.0, 60.0),
            altitude_m: Some(
                gnss::terrain_m(truth, self.coast_y()) + crate::gauss(&mut self.rng, 5.0),
            ),
            heading: (speed > 1.0).then(|| compass(heading + crate::gauss(&mut self.rng, 3.0))),
            speed_mps: Some(speed),
            age_ms,
            cells,
            wifi,
        }
    }

    pub fn gpx_draft(
        &mut self,
        contributor: usize,
        label: Label,
        strength: &str,
        detail: String,
        points: &[TrackPoint],
    ) -> usize {
        let persona = &self.personas[contributor];
        let name = format!("Drive {}", self.drafts.len() + 1);
        let draft = Draft {
            contributor,
            device: persona.camera.id.clone(),
            kind: FileKind::Gpx,
            label,
            strength: strength.to_owned(),
            detail,
            copy_of: None,
            first_ms: points.first().map_or(0, |p| p.at_ms),
            last_ms: points.last().map_or(0, |p| p.at_ms),
            bytes: formats::gpx(points, &name, persona.style),
        };
        self.drafts.push(draft);
        self.drafts.len() - 1
    }

    pub fn radio_draft(
        &mut self,
        contributor: usize,
        label: Label,
        strength: &str,
        detail: String,
        items: &[RadioItem],
    ) -> usize {
        let draft = Draft {
            contributor,
            device: self.personas[contributor].phone_name.clone(),
            kind: FileKind::Geosubmit,
            label,
            strength: strength.to_owned(),
            detail,
            copy_of: None,
            first_ms: items.iter().map(|i| i.at_ms).min().unwrap_or(0),
            last_ms: items.iter().map(|i| i.at_ms).max().unwrap_or(0),
            bytes: formats::geosubmit(items),
        };
        self.drafts.push(draft);
        self.drafts.len() - 1
    }

    /// One honest drive of `contributor` starting at `start_ms` from `from`: its track (if it
    /// logs tracks) and its radio batch (if it runs a radio app), as files.
    pub fn honest_drive(
        &mut self,
        contributor: usize,
        from: Option<usize>,
        start_ms: i64,
    ) -> Result<Recorded, AdversaryError> {
        let persona = self.personas[contributor].clone();
        let traj = self.trip(&persona, from, TRIP_M, Pace::Traffic)?;
        let points = self.log(&traj, persona.logger, start_ms);
        let items = match &persona.phone {
            Some(phone) => self.scan_along(&traj, phone, persona.phone_gnss, start_ms),
            None => Vec::new(),
        };
        let detail = format!(
            "{:.0} m in {:.0} s",
            traj.route.length_m(),
            traj.duration_s()
        );
        let gpx_file = (persona.logs_tracks && points.len() >= 2)
            .then(|| self.gpx_draft(contributor, Label::Honest, "", detail.clone(), &points));
        let radio_file = (!items.is_empty())
            .then(|| self.radio_draft(contributor, Label::Honest, "", detail, &items));
        Ok(Recorded {
            points,
            items,
            gpx_file,
            radio_file,
            end_junction: traj.route.to,
        })
    }

    /// The honest contributors and their drives: each drive starts where the last one ended
    /// (mostly: sometimes the car was moved by someone else), at least 20 minutes later, in the
    /// daytime, inside the window.
    fn honest(&mut self) -> Result<(), AdversaryError> {
        let (w0, w1) = (
            Self::ms(self.config.window_start),
            Self::ms(self.config.window_end),
        );
        let drives = self.config.drives_per_honest.max(1) as i64;
        for _ in 0..self.config.honest_contributors {
            // Most contributors log tracks and scan radio; some only one of the two.
            let (tracks, radio) = match self.rng.random_range(0..100) {
                0..70 => (true, true),
                70..85 => (true, false),
                _ => (false, true),
            };
            let c = self.new_contributor(Label::Honest, tracks, radio);
            let mut at = self.personas[c].home;
            let mut t = w0 + self.rng.random_range(0..((w1 - w0) / (drives + 1)).max(1));
            for _ in 0..drives {
                t = self.daytime(t);
                let rec = self.honest_drive(c, Some(at), t)?;
                let end = rec
                    .points
                    .last()
                    .map(|p| p.at_ms)
                    .or(rec.items.last().map(|i| i.at_ms))
                    .unwrap_or(t);
                at = if self.rng.random_bool(0.8) {
                    rec.end_junction
                } else {
                    self.random_crossing()
                };
                self.honest_drives.push((c, rec));
                let room = ((w1 - end) / drives).max(20 * 60_000 + 1);
                t = end
                    + self
                        .rng
                        .random_range(20 * 60_000..room.max(20 * 60_000 + 1));
            }
        }
        Ok(())
    }

    /// The upload order: honest and fraud files interleaved at random, each contributor's in the
    /// order recorded, every copy after the file it copies.
    fn order(&mut self) -> Vec<usize> {
        let mut queues: BTreeMap<usize, std::collections::VecDeque<usize>> = BTreeMap::new();
        for (i, d) in self.drafts.iter().enumerate() {
            queues.entry(d.contributor).or_default().push_back(i);
        }
        let mut placed = vec![false; self.drafts.len()];
        let mut order = Vec::with_capacity(self.drafts.len());
        while order.len() < self.drafts.len() {
            let ready: Vec<usize> = queues
                .iter()
                .filter_map(|(c, q)| {
                    let head = *q.front()?;
                    let source_placed = self.drafts[head].copy_of.is_none_or(|s| placed[s]);
                    source_placed.then_some(*c)
                })
                .collect();
            // Weighted by what each contributor has left, so nobody's files bunch at the end.
            let total: usize = ready.iter().map(|c| queues[c].len()).sum();
            let Some(&pick) = (if total == 0 {
                None
            } else {
                let mut k = self.rng.random_range(0..total);
                ready.iter().find(|c| {
                    let n = queues[*c].len();
                    if k < n {
                        true
                    } else {
                        k -= n;
                        false
                    }
                })
            }) else {
                // Only copies of unplaced files are left: cannot happen, as every source is
                // placed before its copies are drafted; place the rest as they are.
                order.extend((0..self.drafts.len()).filter(|&i| !placed[i]));
                break;
            };
            if let Some(i) = queues
                .get_mut(&pick)
                .and_then(std::collections::VecDeque::pop_front)
            {
                placed[i] = true;
                order.push(i);
            }
        }
        order
    }
}

/// Makes the scenario `config` describes on `network`. The same network and configuration give
/// the same scenario, byte for byte.
pub fn generate(
    network: &RoadNetwork,
    config: &ScenarioConfig,
) -> Result<Scenario, AdversaryError> {
    config.check()?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let map = RoadMap::new(network);
    if map.crossings.len() < 20 {
        return Err(AdversaryError::TooFewRoads("junctions"));
    }
    let radio = RadioWorld::build(&map, &mut rng);
    // The places many trips start or end: a handful of crossings.
    let hubs = (0..8)
        .filter_map(|_| {
            map.crossings
                .get(rng.random_range(0..map.crossings.len()))
                .copied()
        })
        .collect();
    let mut g = Generator {
        config,
        rng,
        map,
        radio,
        hubs,
        contributors: Vec::new(),
        personas: Vec::new(),
        drafts: Vec::new(),
        honest_drives: Vec::new(),
        names: BTreeSet::new(),
    };
    g.honest()?;
    for plan in &config.fraud {
        let strengths: Vec<&'static str> = if plan.strengths.is_empty() {
            plan.fraud.strengths().to_vec()
        } else {
            plan.fraud
                .strengths()
                .iter()
                .copied()
                .filter(|s| plan.strengths.iter().any(|p| p == s))
                .collect()
        };
        for k in 0..config.fraud_contributors_per_type {
            g.fraudster(plan.fraud, k, &strengths)?;
        }
    }
    let order = g.order();
    let mut ids = vec![String::new(); g.drafts.len()];
    for (n, &i) in order.iter().enumerate() {
        ids[i] = format!("f{:04}", n + 1);
    }
    let files = order
        .iter()
        .map(|&i| {
            let d = &g.drafts[i];
            ScenarioFile {
                id: ids[i].clone(),
                contributor: g.contributors[d.contributor].name.clone(),
                device: d.device.clone(),
                kind: d.kind,
                label: d.label,
                strength: d.strength.clone(),
                detail: d.detail.clone(),
                copy_of: d.copy_of.map(|s| ids[s].clone()),
                first_ms: d.first_ms,
                last_ms: d.last_ms,
                bytes: d.bytes.clone(),
            }
        })
        .collect();
    Ok(Scenario {
        config: config.clone(),
        contributors: g.contributors,
        files,
    })
}
