//! Radio uploads — Ichnaea geosubmit v1 and v2, WiGLE CSV 1.4 and 1.6, OpenCelliD measurement CSV —
//! read into checked [`RadioObservation`]s.
//!
//! Pure: bytes in, a [`RadioBatch`] or a [`RadioError`] out; no I/O (gzip is the HTTP layer's).
//! Every emitter of every item ends in exactly one of `observations` and `rejected`, with a typed
//! [`RadioRejection`]; a field that was blanked or corrected the way Ichnaea does it is listed in
//! `corrections`, so nothing changes silently either.
//!
//! The rules are Ichnaea's (mozilla/ichnaea, `ichnaea/models/constants.py` and the schemas that use
//! it), cited beside each range in `validate.rs`, plus those a coverage map needs and Ichnaea lacks:
//! no readings from the future or from long ago, none from a poor fix, a car-speed limit, a sane
//! altitude, and a bound on how far apart in time the fix and the scan were. Their numbers live in
//! one [`RadioPolicy`].

mod geosubmit;
mod opencellid;
mod validate;
mod wigle;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use covermap_domain::LatLon;
use serde::Serialize;

pub use geosubmit::{parse_geosubmit_v1, parse_geosubmit_v2};
pub use opencellid::parse_opencellid_csv;
pub use wigle::parse_wigle_csv;

pub use covermap_domain::RadioType;

/// What was heard: a cell, a Wi-Fi access point or a Bluetooth device, by its identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Emitter {
    Cell {
        radio: RadioType,
        mcc: u16,
        mnc: u16,
        /// LAC for GSM and WCDMA, TAC for LTE and NR.
        area: u32,
        /// Cell id: 16 bits for GSM, 28 for WCDMA (RNC + cell) and LTE (ECI), 36 for NR (NCI).
        cid: u64,
        /// Primary scrambling code (WCDMA) or physical cell id (LTE, NR).
        psc: Option<u16>,
    },
    Wifi {
        /// BSSID as 12 lowercase hex digits.
        mac: String,
        ssid: Option<String>,
        channel: Option<u16>,
        frequency_mhz: Option<u32>,
    },
    Bluetooth {
        /// 12 lowercase hex digits.
        mac: String,
    },
}

impl Emitter {
    /// A stable key for the emitter: `lte:208:1:1234:56789`, `wifi:01005e901000`, `ble:ff742789...`.
    /// The PSC is not part of it: it is a reused local code, not an identity.
    pub fn key(&self) -> String {
        match self {
            Emitter::Cell {
                radio,
                mcc,
                mnc,
                area,
                cid,
                ..
            } => format!("{radio}:{mcc}:{mnc}:{area}:{cid}"),
            Emitter::Wifi { mac, .. } => format!("wifi:{mac}"),
            Emitter::Bluetooth { mac } => format!("ble:{mac}"),
        }
    }
}

/// One emitter heard at one place and time, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RadioObservation {
    /// When the position was fixed (an item's timestamp less its position age, as Ichnaea does).
    pub at: DateTime<Utc>,
    pub pos: LatLon,
    pub accuracy_m: Option<f64>,
    pub altitude_m: Option<f64>,
    pub heading_deg: Option<f64>,
    pub speed_mps: Option<f64>,
    pub emitter: Emitter,
    pub signal_dbm: Option<i32>,
    pub asu: Option<i32>,
    pub timing_advance: Option<i32>,
    /// Milliseconds between hearing the emitter and the position fix (positive: heard before).
    pub age_ms: Option<i64>,
}

impl RadioObservation {
    /// See [`Emitter::key`].
    pub fn emitter_key(&self) -> String {
        self.emitter.key()
    }
}

/// Why an emitter's reading was left out, or (for the auxiliary fields) why a field was blanked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RadioRejection {
    // Where and when: these reject every emitter of the item.
    NoPosition,
    BadPosition,
    BadTime,
    InFuture,
    TooOld,
    BadAccuracy,
    BadAltitude,
    BadSpeed,
    BadAge,
    // The emitter's identity: these reject the emitter.
    UnknownRadio,
    BadMcc,
    BadMnc,
    BadArea,
    BadCellId,
    BadMac,
    NomapSsid,
    /// A signal no receiver reports for its technology (an LTE cell at −20 dBm, a Wi-Fi access
    /// point at −130 dBm): the reading is made up, and is refused rather than blanked.
    ImpossibleSignal,
    // Fields that are only blanked, as Ichnaea blanks them; they appear in `corrections`.
    BadHeading,
    BadPsc,
    BadSignal,
    BadAsu,
    BadTimingAdvance,
    BadChannel,
    BadFrequency,
    // The upload's shape.
    NoEmitters,
    Duplicate,
    UnparsableRow,
}

impl RadioRejection {
    pub fn as_str(self) -> &'static str {
        match self {
            RadioRejection::NoPosition => "no_position",
            RadioRejection::BadPosition => "bad_position",
            RadioRejection::BadTime => "bad_time",
            RadioRejection::InFuture => "in_future",
            RadioRejection::TooOld => "too_old",
            RadioRejection::BadAccuracy => "bad_accuracy",
            RadioRejection::BadAltitude => "bad_altitude",
            RadioRejection::BadSpeed => "bad_speed",
            RadioRejection::BadAge => "bad_age",
            RadioRejection::UnknownRadio => "unknown_radio",
            RadioRejection::BadMcc => "bad_mcc",
            RadioRejection::BadMnc => "bad_mnc",
            RadioRejection::BadArea => "bad_area",
            RadioRejection::BadCellId => "bad_cell_id",
            RadioRejection::BadMac => "bad_mac",
            RadioRejection::NomapSsid => "nomap_ssid",
            RadioRejection::ImpossibleSignal => "impossible_signal",
            RadioRejection::BadHeading => "bad_heading",
            RadioRejection::BadPsc => "bad_psc",
            RadioRejection::BadSignal => "bad_signal",
            RadioRejection::BadAsu => "bad_asu",
            RadioRejection::BadTimingAdvance => "bad_timing_advance",
            RadioRejection::BadChannel => "bad_channel",
            RadioRejection::BadFrequency => "bad_frequency",
            RadioRejection::NoEmitters => "no_emitters",
            RadioRejection::Duplicate => "duplicate",
            RadioRejection::UnparsableRow => "unparsable_row",
        }
    }
}

impl fmt::Display for RadioRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One emitter (or one item with none, or one unreadable row) that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedObservation {
    /// Index of the item (geosubmit) or data row (CSV, header lines not counted), from 0.
    pub item: usize,
    /// The emitter's key where its identity could be read.
    pub emitter: Option<String>,
    pub reason: RadioRejection,
    pub detail: String,
}

/// A field of a kept observation that was blanked or changed, and why; `emitter` is `None` for
/// a field of the item's position, which applies to all its observations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldCorrection {
    pub item: usize,
    pub emitter: Option<String>,
    pub field: &'static str,
    pub reason: RadioRejection,
    pub detail: String,
}

/// What a radio upload held, checked.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RadioBatch {
    /// Items (geosubmit) or data rows (CSV) read.
    pub items: usize,
    pub observations: Vec<RadioObservation>,
    pub rejected: Vec<RejectedObservation>,
    pub corrections: Vec<FieldCorrection>,
}

/// A batch in a few numbers, for the uploader's receipt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RadioSummary {
    pub items: usize,
    pub accepted: usize,
    pub rejected: BTreeMap<&'static str, usize>,
    pub corrected: BTreeMap<&'static str, usize>,
}

impl RadioBatch {
    pub fn summary(&self) -> RadioSummary {
        let mut rejected = BTreeMap::new();
        for r in &self.rejected {
            *rejected.entry(r.reason.as_str()).or_insert(0) += 1;
        }
        let mut corrected = BTreeMap::new();
        for c in &self.corrections {
            *corrected.entry(c.reason.as_str()).or_insert(0) += 1;
        }
        RadioSummary {
            items: self.items,
            accepted: self.observations.len(),
            rejected,
            corrected,
        }
    }
}

/// The numbers the radio rules use. One struct, so every parser applies the same ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RadioPolicy {
    /// Items in one geosubmit body. NeoStumbler sends at most 2000 reports a request
    /// (mjaakko/NeoStumbler, `ichnaea/ReportSender.kt`, `MAX_REPORTS_PER_BATCH`); 10 000 leaves
    /// room for other clients and still bounds the work one request can ask for.
    pub max_items: usize,
    /// Emitters (cells, access points, beacons) in one submission, all items together: 2000
    /// reports of a few dozen emitters each stay well under it, and it bounds the rows one
    /// upload writes.
    pub max_observations: usize,
    /// Data rows in one CSV file. A WiGLE or Tower Collector export is one row per emitter heard;
    /// 200 000 rows is a long day of driving, and at ~150 bytes a row some 30 MB of text.
    pub max_rows: usize,
    /// A device clock may run this far ahead of the server's before a reading is "in the future";
    /// the same 5 minutes as [`crate::IngestPolicy`].
    pub max_future_skew: Duration,
    /// Readings older than this are no longer news about coverage; the same 30 days as
    /// [`crate::IngestPolicy`]. NeoStumbler's "reduced metadata" mode truncates timestamps to the
    /// day (`ReportSender.kt`, `reduceMetadata`), which this leaves room for.
    pub max_age: Duration,
    /// A fix less accurate than this cannot place a reading in an H3 cell of a few hundred metres.
    /// Ichnaea gives an observation no weight past 200 m for Wi-Fi, 100 m for Bluetooth and 1000 m
    /// for cells (`ichnaea/models/constants.py`, `*_MAX_OBSERVATION_ACCURACY`); 200 m is the Wi-Fi
    /// limit, applied to all.
    pub max_accuracy_m: f64,
    /// Faster than this is not a car on a road (216 km/h); Ichnaea gives observations no weight
    /// past 50 m/s (`MAX_OBSERVATION_SPEED`).
    pub max_speed_mps: f64,
    /// The Dead Sea shore is at −430 m; lower is a bad fix.
    pub min_altitude_m: f64,
    /// Above 10 km the device is in an aircraft: what it hears is not ground coverage. (Ichnaea
    /// only blanks altitudes outside −10 911 m .. 100 km, `MIN_ALTITUDE`/`MAX_ALTITUDE`.)
    pub max_altitude_m: f64,
    /// The most milliseconds between the position fix and hearing an emitter (and the most a
    /// position may be older than its item). Ichnaea gives observations no weight past 20 s
    /// (`MAX_OBSERVATION_AGE`); at 30 m/s that is 600 m of travel.
    pub max_age_ms: i64,
}

impl Default for RadioPolicy {
    fn default() -> Self {
        Self {
            max_items: 10_000,
            max_observations: 200_000,
            max_rows: 200_000,
            max_future_skew: Duration::from_secs(5 * 60),
            max_age: Duration::from_secs(30 * 24 * 3600),
            max_accuracy_m: 200.0,
            max_speed_mps: 60.0,
            min_altitude_m: -500.0,
            max_altitude_m: 10_000.0,
            max_age_ms: 20_000,
        }
    }
}

/// Why a whole radio upload was refused. Anything narrower is a [`RejectedObservation`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RadioError {
    #[error("not JSON: {detail}")]
    NotJson { detail: String },
    #[error("not a geosubmit body: {field}: {detail}")]
    InvalidGeosubmit { field: &'static str, detail: String },
    #[error("{count} items in one submission; at most {max} are accepted")]
    TooManyItems { count: usize, max: usize },
    #[error(
        "{count} cells, access points and beacons in one submission; at most {max} are accepted"
    )]
    TooManyObservations { count: usize, max: usize },
    #[error("not a readable CSV file: {detail}")]
    NotCsv { detail: String },
    #[error("not a {format} header: {detail}")]
    InvalidHeader {
        format: &'static str,
        /// The column that is missing, where one is.
        column: Option<&'static str>,
        detail: String,
    },
    #[error("more than {max} rows in one file; split it")]
    TooManyRows { max: usize },
}

impl RadioError {
    /// A short stable code for API clients and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RadioError::NotJson { .. } => "not_json",
            RadioError::InvalidGeosubmit { .. } => "invalid_geosubmit",
            RadioError::TooManyItems { .. } => "too_many_items",
            RadioError::TooManyObservations { .. } => "too_many_observations",
            RadioError::NotCsv { .. } => "not_csv",
            RadioError::InvalidHeader { .. } => "invalid_header",
            RadioError::TooManyRows { .. } => "too_many_rows",
        }
    }

    /// The JSON field or CSV column at fault, where one is.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            RadioError::InvalidGeosubmit { field, .. } => Some(field),
            RadioError::TooManyItems { .. } | RadioError::TooManyObservations { .. } => {
                Some("items")
            }
            RadioError::InvalidHeader { column, .. } => *column,
            RadioError::NotJson { .. }
            | RadioError::NotCsv { .. }
            | RadioError::TooManyRows { .. } => None,
        }
    }
}
