//! The rules every radio parser shares. A parser turns its format into a [`RawFix`] and
//! [`RawEmitter`]s without judging them; [`Checker`] judges them, one item at a time.
//!
//! Where Ichnaea only blanks a bad field (its colander `DefaultNode`s turn an invalid value into
//! `None`), so do we, and say so in a [`FieldCorrection`]; a bad position, time or cell identity
//! rejects, as it makes Ichnaea drop the observation.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use covermap_domain::LatLon;

use super::{
    Emitter, FieldCorrection, RadioBatch, RadioObservation, RadioPolicy, RadioRejection, RadioType,
    RejectedObservation,
};
use RadioRejection as R;

/// A value as a parser found it: `Ok(None)` when absent, `null` or an empty CSV field; `Err` when
/// present but unreadable, with what was there.
pub(crate) type Raw<T> = Result<Option<T>, String>;

/// Where and when an item was recorded, as uploaded.
#[derive(Debug, Clone)]
pub(crate) struct RawFix {
    pub lat: Raw<f64>,
    pub lon: Raw<f64>,
    /// The item's time; absent means "just now", as Ichnaea reads it (`UnixTimeFromInteger`).
    pub time: Raw<DateTime<Utc>>,
    /// Milliseconds the position fix is older than `time` (geosubmit v2's `position.age`).
    pub position_age_ms: Raw<i64>,
    pub accuracy_m: Raw<f64>,
    pub altitude_m: Raw<f64>,
    pub heading_deg: Raw<f64>,
    pub speed_mps: Raw<f64>,
    /// Extra room past `max_future_skew` for times whose zone the format does not say.
    pub future_slack: Duration,
}

impl Default for RawFix {
    fn default() -> Self {
        Self {
            lat: Ok(None),
            lon: Ok(None),
            time: Ok(None),
            position_age_ms: Ok(None),
            accuracy_m: Ok(None),
            altitude_m: Ok(None),
            heading_deg: Ok(None),
            speed_mps: Ok(None),
            future_slack: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RawCell {
    /// The parser resolves its format's names; `Err` explains an unknown or unsupported one.
    pub radio: Result<RadioType, String>,
    pub mcc: Raw<i64>,
    pub mnc: Raw<i64>,
    pub area: Raw<i64>,
    pub cid: Raw<i64>,
    pub psc: Raw<i64>,
    pub signal: Raw<i64>,
    pub asu: Raw<i64>,
    pub ta: Raw<i64>,
    pub age_ms: Raw<i64>,
}

impl RawCell {
    pub(crate) fn new(radio: Result<RadioType, String>) -> Self {
        Self {
            radio,
            mcc: Ok(None),
            mnc: Ok(None),
            area: Ok(None),
            cid: Ok(None),
            psc: Ok(None),
            signal: Ok(None),
            asu: Ok(None),
            ta: Ok(None),
            age_ms: Ok(None),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RawWifi {
    pub mac: Raw<String>,
    pub ssid: Option<String>,
    pub channel: Raw<i64>,
    pub frequency: Raw<i64>,
    pub signal: Raw<i64>,
    pub age_ms: Raw<i64>,
}

impl RawWifi {
    pub(crate) fn new(mac: Raw<String>) -> Self {
        Self {
            mac,
            ssid: None,
            channel: Ok(None),
            frequency: Ok(None),
            signal: Ok(None),
            age_ms: Ok(None),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RawBlue {
    pub mac: Raw<String>,
    pub signal: Raw<i64>,
    pub age_ms: Raw<i64>,
}

#[derive(Debug, Clone)]
pub(crate) enum RawEmitter {
    Cell(RawCell),
    Wifi(RawWifi),
    Blue(RawBlue),
    /// Refused while reading, before any rule: an entry that is not an object, a CDMA row.
    Refused(RadioRejection, String),
}

// ---- Reading values -------------------------------------------------------------------------

/// A whole number as clients write it: `-77`, `208`, `208.0`, ` 12 `. A fraction is an error,
/// not a truncation: a cell id of 12.5 is not cell 12.
pub(crate) fn int_text(s: &str) -> Raw<i64> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if let Ok(i) = t.parse::<i64>() {
        return Ok(Some(i));
    }
    match t.parse::<f64>() {
        Ok(f) => whole(f).map(Some),
        Err(_) => Err(format!("{t:?} is not a number")),
    }
}

pub(crate) fn whole(f: f64) -> Result<i64, String> {
    // 2^53: past it an f64 no longer holds every whole number.
    if f.is_finite() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
        Ok(f as i64)
    } else {
        Err(format!("{f} is not a whole number"))
    }
}

pub(crate) fn float_text(s: &str) -> Raw<f64> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    t.parse::<f64>()
        .map(Some)
        .map_err(|_| format!("{t:?} is not a number"))
}

/// An accuracy of 0 is what writers put when they do not know one: no fix is exact.
pub(crate) fn unknown_if_zero(v: Raw<f64>) -> Raw<f64> {
    match v {
        Ok(Some(0.0)) => Ok(None),
        other => other,
    }
}

pub(crate) fn time_millis(ms: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("{ms} ms since 1970 is not a time"))
}

/// A UTC time written as text the ways uploads write it: RFC 3339; WiGLE's FirstSeen
/// `2024-05-01 12:00:00`; Tower Collector's measured_at `2024-05-01 12:00:00.000Z`; and
/// OpenCelliD's accepted `yyyy-MM-dd HH:mm:ss.SSSZ`, `yyyyMMddHHmmss` and `yyyy-MM-dd`, all UTC
/// (wiki.opencellid.org/wiki/API, "Adding a single measurement"). Bare epoch numbers are the
/// caller's, whose format says their unit.
pub(crate) fn time_text(s: &str) -> Raw<DateTime<Utc>> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(Some(dt.with_timezone(&Utc)));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%z"] {
        if let Ok(dt) = DateTime::parse_from_str(t, fmt) {
            return Ok(Some(dt.with_timezone(&Utc)));
        }
    }
    let naive = t.strip_suffix(['Z', 'z']).unwrap_or(t);
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y%m%d%H%M%S",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Ok(Some(dt.and_utc()));
        }
    }
    if let Some(dt) = NaiveDate::parse_from_str(naive, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(Some(dt.and_utc()));
    }
    Err(format!("{t:?} is not a time"))
}

// ---- The ranges ------------------------------------------------------------------------------

/// MIN_LAT/MAX_LAT in mozilla/ichnaea `ichnaea/constants.py`: Web Mercator's limit, which our
/// tiles share.
const MAX_ABS_LAT: f64 = 85.051;
/// MIN_LON/MAX_LON, same file.
const MAX_ABS_LON: f64 = 180.0;

/// MIN_MCC..MAX_MCC, mozilla/ichnaea `ichnaea/models/constants.py`. Ichnaea also checks the code
/// against the `mobile_codes` list of assigned MCCs and the position against the MCC's country;
/// we keep neither list.
const MCC: RangeInclusive<i64> = 1..=999;
/// MIN_MNC..MAX_MNC, same file.
const MNC: RangeInclusive<i64> = 0..=999;
/// MIN_LAC..MAX_LAC, same file: 0 and 65534 are reserved "deleted" values (3GPP TS 24.008
/// §10.5.3, quoted in Ichnaea's `docs/api/cell.rst`) and 65535 is what phones say when unknown.
const LAC: RangeInclusive<i64> = 1..=65_533;
/// An NR tracking area code has 24 bits (3GPP TS 23.003 §19.4.2.3); Ichnaea predates NR.
const TAC_NR: RangeInclusive<i64> = 1..=0xFF_FFFF;
/// MIN_CID..MAX_CID, `ichnaea/models/constants.py`: 28 bits, LTE's E-UTRAN cell identity and
/// UMTS's RNC id + cell id.
const CID: RangeInclusive<i64> = 1..=0x0FFF_FFFF;
/// MAX_CID_GSM, same file. A "GSM" cell id above it is a WCDMA cell, and Ichnaea re-types it
/// (`ichnaea/models/cell.py`, `ValidCellKeySchema.deserialize`).
const MAX_CID_GSM: i64 = 0xFFFF;
/// An NR cell identity has 36 bits (3GPP TS 38.300 §8.2); Android reports it as a long.
const NCI: RangeInclusive<i64> = 1..=0xF_FFFF_FFFF;
/// MIN_PSC..MAX_PSC and MAX_PSC_LTE, `ichnaea/models/constants.py`; NR has 1008 physical cell
/// ids (3GPP TS 38.211 §7.4.2.1).
fn psc_range(radio: RadioType) -> RangeInclusive<i64> {
    match radio {
        RadioType::Gsm | RadioType::Wcdma => 0..=511,
        RadioType::Lte => 0..=503,
        RadioType::Nr => 0..=1007,
    }
}
/// MIN_CELL_ASU/MAX_CELL_ASU per radio, `ichnaea/models/constants.py`; NR's ASU is on LTE's
/// 0..97 scale (Android `CellSignalStrengthNr.getAsuLevel`).
fn asu_range(radio: RadioType) -> RangeInclusive<i64> {
    match radio {
        RadioType::Gsm => 0..=31,
        RadioType::Wcdma => -5..=91,
        RadioType::Lte | RadioType::Nr => 0..=97,
    }
}
/// MIN_CELL_SIGNAL/MAX_CELL_SIGNAL per radio, `ichnaea/models/constants.py`; NR's SS-RSRP is
/// -140..-44 dBm as Android reports it (`CellSignalStrengthNr.getDbm`).
fn signal_range(radio: RadioType) -> RangeInclusive<i64> {
    match radio {
        RadioType::Gsm => -113..=-51,
        RadioType::Wcdma => -121..=-25,
        RadioType::Lte => -140..=-43,
        RadioType::Nr => -140..=-44,
    }
}
/// `_signal_from_asu` in `ichnaea/models/observation.py` (`ValidCellReportSchema`); NR as LTE.
fn signal_from_asu(radio: RadioType, asu: i64) -> i64 {
    match radio {
        RadioType::Gsm => asu * 2 - 113,
        RadioType::Wcdma => asu - 116,
        RadioType::Lte | RadioType::Nr => asu - 140,
    }
}
/// MIN_CELL_TA..MAX_CELL_TA, `ichnaea/models/constants.py` (GSM's 6-bit timing advance, which
/// Ichnaea applies to LTE too).
const TA: RangeInclusive<i64> = 0..=63;
/// MIN_WIFI_CHANNEL..MAX_WIFI_CHANNEL is 1..199 and MIN/MAX_WIFI_FREQUENCY 2400..5999 MHz in
/// `ichnaea/models/constants.py`, which predates Wi-Fi 6E: the 6 GHz band (5925..7125 MHz,
/// channels 1..233), which NeoStumbler reports, is let in rather than blanked.
const WIFI_CHANNEL: RangeInclusive<i64> = 1..=233;
const WIFI_FREQUENCY: RangeInclusive<i64> = 2400..=7125;
/// MIN_WIFI_SIGNAL..MAX_WIFI_SIGNAL, `ichnaea/models/constants.py`.
const WIFI_SIGNAL: RangeInclusive<i64> = -100..=-10;
/// MIN_BLUE_SIGNAL..MAX_BLUE_SIGNAL, same file.
const BLUE_SIGNAL: RangeInclusive<i64> = -127..=0;
/// WIFI_TEST_MAC, same file: a documentation-only multicast address (RFC 7042 §2.1.1) that
/// Ichnaea's tests use and its submissions refuse.
const TEST_MAC: &str = "01005e901000";

/// Normalises a MAC as Ichnaea's `MacNode.preparer` does (`ichnaea/models/mac.py`: drop `:`, `-`
/// and `.`, lowercase) and applies its validator: 12 hex digits, not all zero, not broadcast, not
/// the test address.
pub(crate) fn normalise_mac(raw: &str) -> Result<String, String> {
    let mac: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if mac.len() != 12 || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{raw:?} is not a MAC address (12 hex digits)"));
    }
    match mac.as_str() {
        "000000000000" => Err("the all-zero MAC is no device's address".to_owned()),
        "ffffffffffff" => Err("the broadcast MAC is no device's address".to_owned()),
        TEST_MAC => Err(format!(
            "{TEST_MAC} is Ichnaea's documentation test address"
        )),
        _ => Ok(mac),
    }
}

/// The IEEE 802 individual/group bit. An access point's BSSID is an individual address, so a
/// Wi-Fi MAC with it set was not heard from an AP. Ichnaea does not check it (its tests keep
/// `0a0000000000`, `ichnaea/models/tests/test_observation.py`) and its doc examples use such
/// made-up addresses; Bluetooth is exempt, as a BLE random static address has both top bits set.
fn is_group_address(mac: &str) -> bool {
    mac.get(..2)
        .and_then(|b| u8::from_str_radix(b, 16).ok())
        .is_some_and(|b| b & 1 == 1)
}

/// `_nomap` is how an AP owner opts out of location services (Ichnaea's
/// `docs/api/geosubmit2.rst`: "must not be collected"; NeoStumbler's `filterHiddenNetworks`);
/// `_optout` is Microsoft's equivalent. Matched without regard to case.
fn opted_out(ssid: &str) -> bool {
    let s = ssid.to_lowercase();
    s.ends_with("_nomap") || s.contains("_optout")
}

/// Fills the missing one of channel and frequency as Ichnaea's `channel_frequency` does
/// (`ichnaea/models/mac.py`).
fn channel_frequency(channel: Option<i64>, frequency: Option<i64>) -> (Option<i64>, Option<i64>) {
    match (channel, frequency) {
        (Some(c), None) => {
            let f = match c {
                1..=13 => Some(c * 5 + 2407),
                14 => Some(2484),
                15..=185 => Some(c * 5 + 5000),
                186..=199 => Some(c * 5 + 4000),
                _ => None,
            };
            (Some(c), f)
        }
        (None, Some(f)) => {
            let c = match f {
                2412..=2472 => Some((f - 2407) / 5),
                2484 => Some(14),
                4915..=4995 => Some((f - 4000) / 5),
                5075..=5925 => Some((f - 5000) / 5),
                _ => None,
            };
            (c, Some(f))
        }
        other => other,
    }
}

// ---- Checking ---------------------------------------------------------------------------------

struct Note {
    field: &'static str,
    reason: RadioRejection,
    detail: String,
}

struct Refusal {
    key: Option<String>,
    reason: RadioRejection,
    detail: String,
}

fn refusal(key: Option<String>, reason: RadioRejection, detail: impl Into<String>) -> Refusal {
    Refusal {
        key,
        reason,
        detail: detail.into(),
    }
}

struct CheckedEmitter {
    emitter: Emitter,
    key: String,
    signal_dbm: Option<i32>,
    asu: Option<i32>,
    timing_advance: Option<i32>,
    age_ms: Option<i64>,
    notes: Vec<Note>,
}

struct CheckedFix {
    at: DateTime<Utc>,
    pos: LatLon,
    accuracy_m: Option<f64>,
    altitude_m: Option<f64>,
    heading_deg: Option<f64>,
    speed_mps: Option<f64>,
    position_age_ms: i64,
    notes: Vec<Note>,
}

/// Applies the policy to the items of one upload and collects the batch.
pub(crate) struct Checker<'p> {
    policy: &'p RadioPolicy,
    received_at: DateTime<Utc>,
    latest: DateTime<Utc>,
    earliest: DateTime<Utc>,
    batch: RadioBatch,
}

impl<'p> Checker<'p> {
    pub(crate) fn new(received_at: DateTime<Utc>, policy: &'p RadioPolicy) -> Self {
        let latest = later(received_at, policy.max_future_skew);
        let earliest = TimeDelta::from_std(policy.max_age)
            .ok()
            .and_then(|d| received_at.checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        Self {
            policy,
            received_at,
            latest,
            earliest,
            batch: RadioBatch::default(),
        }
    }

    /// Records an item or row that could not be read at all.
    pub(crate) fn reject(
        &mut self,
        item: usize,
        emitter: Option<String>,
        reason: RadioRejection,
        detail: impl Into<String>,
    ) {
        self.batch.rejected.push(RejectedObservation {
            item,
            emitter,
            reason,
            detail: detail.into(),
        });
    }

    pub(crate) fn finish(mut self, items: usize) -> RadioBatch {
        self.batch.items = items;
        self.batch
    }

    /// Checks one item: its position and time once, then each emitter. Every emitter ends up
    /// observed or rejected; an item without any is one `no_emitters` rejection.
    pub(crate) fn check_item(&mut self, item: usize, fix: RawFix, emitters: Vec<RawEmitter>) {
        if emitters.is_empty() {
            self.reject(
                item,
                None,
                R::NoEmitters,
                "the item lists no cell tower, Wi-Fi access point or Bluetooth beacon",
            );
            return;
        }
        let checked: Vec<Result<CheckedEmitter, Refusal>> =
            emitters.into_iter().map(check_emitter).collect();
        let fix = match self.check_fix(fix) {
            Ok(fix) => fix,
            Err(why) => {
                for c in checked {
                    let key = match c {
                        Ok(c) => Some(c.key),
                        Err(r) => r.key,
                    };
                    self.reject(item, key, why.reason, why.detail.clone());
                }
                return;
            }
        };

        let max_age = self.policy.max_age_ms.unsigned_abs();
        let mut kept: Vec<CheckedEmitter> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for c in checked {
            let mut c = match c {
                Ok(c) => c,
                Err(r) => {
                    self.reject(item, r.key, r.reason, r.detail);
                    continue;
                }
            };
            // Ichnaea makes each station's age relative to the position fix
            // (`ichnaea/data/internal.py`, `InternalTransform`: `age - gps_age`).
            if fix.position_age_ms != 0 {
                c.age_ms = Some(c.age_ms.unwrap_or(0).saturating_sub(fix.position_age_ms));
            }
            if let Some(age) = c.age_ms
                && age.unsigned_abs() > max_age
            {
                let when = if age >= 0 { "before" } else { "after" };
                let detail = format!(
                    "heard {} ms {when} the position fix; at most {max_age} ms apart is accepted",
                    age.unsigned_abs()
                );
                self.reject(item, Some(c.key), R::BadAge, detail);
                continue;
            }
            match by_key.get(&c.key) {
                Some(&i) => {
                    let loser = if stronger(&c, &kept[i]) {
                        std::mem::replace(&mut kept[i], c)
                    } else {
                        c
                    };
                    self.reject(
                        item,
                        Some(loser.key),
                        R::Duplicate,
                        "the same emitter twice in one item: the stronger reading is kept, as \
                         Ichnaea keeps one observation per station and report",
                    );
                }
                None => {
                    by_key.insert(c.key.clone(), kept.len());
                    kept.push(c);
                }
            }
        }

        if !kept.is_empty() {
            for n in &fix.notes {
                self.batch.corrections.push(FieldCorrection {
                    item,
                    emitter: None,
                    field: n.field,
                    reason: n.reason,
                    detail: n.detail.clone(),
                });
            }
        }
        for c in kept {
            for n in c.notes {
                self.batch.corrections.push(FieldCorrection {
                    item,
                    emitter: Some(c.key.clone()),
                    field: n.field,
                    reason: n.reason,
                    detail: n.detail,
                });
            }
            self.batch.observations.push(RadioObservation {
                at: fix.at,
                pos: fix.pos,
                accuracy_m: fix.accuracy_m,
                altitude_m: fix.altitude_m,
                heading_deg: fix.heading_deg,
                speed_mps: fix.speed_mps,
                emitter: c.emitter,
                signal_dbm: c.signal_dbm,
                asu: c.asu,
                timing_advance: c.timing_advance,
                age_ms: c.age_ms,
            });
        }
    }

    fn check_fix(&self, fix: RawFix) -> Result<CheckedFix, Refusal> {
        let p = self.policy;
        let mut notes = Vec::new();
        let lat = coordinate(fix.lat, "latitude")?;
        let lon = coordinate(fix.lon, "longitude")?;
        let pos = position(lat, lon)?;

        let position_age_ms = match fix.position_age_ms {
            Ok(age) => age.unwrap_or(0),
            Err(t) => {
                notes.push(Note {
                    field: "position_age",
                    reason: R::BadAge,
                    detail: format!("{t}: taken as 0"),
                });
                0
            }
        };
        if position_age_ms.unsigned_abs() > p.max_age_ms.unsigned_abs() {
            return Err(refusal(
                None,
                R::BadAge,
                format!(
                    "the position is {position_age_ms} ms older than the item; at most {} ms is \
                     accepted",
                    p.max_age_ms
                ),
            ));
        }
        let stamp = match fix.time {
            Ok(Some(t)) => t,
            Ok(None) => self.received_at,
            Err(t) => return Err(refusal(None, R::BadTime, t)),
        };
        // The position's time, as Ichnaea computes it (`InternalTransform`: timestamp - gps_age).
        let at = TimeDelta::try_milliseconds(position_age_ms)
            .and_then(|d| stamp.checked_sub_signed(d))
            .ok_or_else(|| refusal(None, R::BadTime, format!("{stamp} is out of range")))?;
        if at > later(self.latest, fix.future_slack) {
            return Err(refusal(
                None,
                R::InFuture,
                format!(
                    "{at} is after the upload was received ({})",
                    self.received_at
                ),
            ));
        }
        if at < self.earliest {
            let hint = if at.year() == 1970 {
                " (seconds where milliseconds are expected?)"
            } else {
                ""
            };
            return Err(refusal(
                None,
                R::TooOld,
                format!(
                    "{at} is older than {} days{hint}",
                    p.max_age.as_secs() / 86_400
                ),
            ));
        }

        let accuracy_m = match real(fix.accuracy_m, "accuracy", R::BadAccuracy, &mut notes) {
            Some(a) if a < 0.0 => {
                notes.push(Note {
                    field: "accuracy",
                    reason: R::BadAccuracy,
                    detail: format!("{a} m is negative: blanked"),
                });
                None
            }
            Some(a) if a > p.max_accuracy_m => {
                return Err(refusal(
                    None,
                    R::BadAccuracy,
                    format!("{a} m; at most {} m is accepted", p.max_accuracy_m),
                ));
            }
            a => a,
        };
        let altitude_m = real(fix.altitude_m, "altitude", R::BadAltitude, &mut notes);
        if let Some(a) = altitude_m
            && !(p.min_altitude_m..=p.max_altitude_m).contains(&a)
        {
            return Err(refusal(
                None,
                R::BadAltitude,
                format!(
                    "{a} m is outside {} m..{} m",
                    p.min_altitude_m, p.max_altitude_m
                ),
            ));
        }
        let heading_deg = match real(fix.heading_deg, "heading", R::BadHeading, &mut notes) {
            // MIN_HEADING..MAX_HEADING, `ichnaea/models/constants.py`.
            Some(h) if !(0.0..=360.0).contains(&h) => {
                notes.push(Note {
                    field: "heading",
                    reason: R::BadHeading,
                    detail: format!("{h}° is outside 0..360: blanked"),
                });
                None
            }
            h => h,
        };
        let speed_mps = match real(fix.speed_mps, "speed", R::BadSpeed, &mut notes) {
            Some(s) if s < 0.0 => {
                notes.push(Note {
                    field: "speed",
                    reason: R::BadSpeed,
                    detail: format!("{s} m/s is negative: blanked"),
                });
                None
            }
            Some(s) if s > p.max_speed_mps => {
                return Err(refusal(
                    None,
                    R::BadSpeed,
                    format!("{s} m/s; at most {} m/s is accepted", p.max_speed_mps),
                ));
            }
            s => s,
        };
        Ok(CheckedFix {
            at,
            pos,
            accuracy_m,
            altitude_m,
            heading_deg,
            speed_mps,
            position_age_ms,
            notes,
        })
    }
}

fn later(t: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(by)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn coordinate(v: Raw<f64>, name: &str) -> Result<f64, Refusal> {
    match v {
        Ok(Some(x)) => Ok(x),
        Ok(None) => Err(refusal(
            None,
            R::NoPosition,
            format!("the {name} is missing"),
        )),
        Err(t) => Err(refusal(None, R::BadPosition, format!("the {name}: {t}"))),
    }
}

fn position(lat: f64, lon: f64) -> Result<LatLon, Refusal> {
    if !lat.is_finite() || lat.abs() > MAX_ABS_LAT {
        return Err(refusal(
            None,
            R::BadPosition,
            format!("latitude {lat} is outside ±{MAX_ABS_LAT}°"),
        ));
    }
    if !lon.is_finite() || lon.abs() > MAX_ABS_LON {
        return Err(refusal(
            None,
            R::BadPosition,
            format!("longitude {lon} is outside ±{MAX_ABS_LON}°"),
        ));
    }
    if lat == 0.0 && lon == 0.0 {
        return Err(refusal(
            None,
            R::BadPosition,
            "0, 0 is where a device without a fix says it is",
        ));
    }
    LatLon::new(lat, lon).map_err(|e| refusal(None, R::BadPosition, e.to_string()))
}

/// A finite real, or a note and a blank.
fn real(
    v: Raw<f64>,
    field: &'static str,
    reason: RadioRejection,
    notes: &mut Vec<Note>,
) -> Option<f64> {
    match v {
        Ok(Some(x)) if x.is_finite() => Some(x),
        Ok(Some(x)) => {
            notes.push(Note {
                field,
                reason,
                detail: format!("{x} is not a finite number: blanked"),
            });
            None
        }
        Ok(None) => None,
        Err(t) => {
            notes.push(Note {
                field,
                reason,
                detail: format!("{t}: blanked"),
            });
            None
        }
    }
}

fn optional(
    v: Raw<i64>,
    field: &'static str,
    reason: RadioRejection,
    notes: &mut Vec<Note>,
) -> Option<i64> {
    v.unwrap_or_else(|t| {
        notes.push(Note {
            field,
            reason,
            detail: format!("{t}: blanked"),
        });
        None
    })
}

fn within(
    v: Option<i64>,
    range: RangeInclusive<i64>,
    field: &'static str,
    reason: RadioRejection,
    notes: &mut Vec<Note>,
) -> Option<i64> {
    match v {
        Some(x) if !range.contains(&x) => {
            notes.push(Note {
                field,
                reason,
                detail: format!("{x} is outside {}..{}: blanked", range.start(), range.end()),
            });
            None
        }
        other => other,
    }
}

/// A signal checked against its technology's range. Ichnaea blanks one outside it; covermap
/// refuses the reading instead, because a made-up strength is what a fabricated reading carries.
/// Values that are no measurement at all — 0 and above, which apps send for "unknown", and
/// sentinels like `i32::MIN` — are still blanked.
fn signal_within(
    v: Option<i64>,
    range: RangeInclusive<i64>,
    key: &str,
    notes: &mut Vec<Note>,
) -> Result<Option<i64>, Refusal> {
    match v {
        Some(x) if !range.contains(&x) && !(-1000..0).contains(&x) => {
            notes.push(Note {
                field: "signal",
                reason: R::BadSignal,
                detail: format!("{x} is not a measurement (an app's placeholder): blanked"),
            });
            Ok(None)
        }
        Some(x) if !range.contains(&x) => Err(refusal(
            Some(key.to_owned()),
            R::ImpossibleSignal,
            format!(
                "signal {x} dBm is outside what {} receivers report ({}..{} dBm)",
                key.split(':').next().unwrap_or("its"),
                range.start(),
                range.end()
            ),
        )),
        other => Ok(other),
    }
}

fn required(v: Raw<i64>, what: &str, reason: RadioRejection) -> Result<i64, Refusal> {
    match v {
        Ok(Some(x)) => Ok(x),
        Ok(None) => Err(refusal(None, reason, format!("the {what} is missing"))),
        Err(t) => Err(refusal(None, reason, format!("the {what}: {t}"))),
    }
}

fn small<T: TryFrom<i64>>(v: Option<i64>) -> Option<T> {
    v.and_then(|x| T::try_from(x).ok())
}

/// Which of two readings of one emitter to keep: the stronger signal, else the one heard nearer
/// the fix (Ichnaea's `better` comparators, `ichnaea/models/observation.py`).
fn stronger(a: &CheckedEmitter, b: &CheckedEmitter) -> bool {
    match (a.signal_dbm, b.signal_dbm) {
        (Some(x), Some(y)) if x != y => x > y,
        _ => match (a.age_ms, b.age_ms) {
            (Some(x), Some(y)) => x.unsigned_abs() < y.unsigned_abs(),
            _ => false,
        },
    }
}

fn check_emitter(e: RawEmitter) -> Result<CheckedEmitter, Refusal> {
    match e {
        RawEmitter::Cell(c) => check_cell(c),
        RawEmitter::Wifi(w) => check_wifi(w),
        RawEmitter::Blue(b) => check_blue(b),
        RawEmitter::Refused(reason, detail) => Err(refusal(None, reason, detail)),
    }
}

fn check_cell(raw: RawCell) -> Result<CheckedEmitter, Refusal> {
    let mut notes = Vec::new();
    let mut radio = raw.radio.map_err(|d| refusal(None, R::UnknownRadio, d))?;
    let mcc = required(raw.mcc, "mobile country code", R::BadMcc)?;
    if !MCC.contains(&mcc) {
        return Err(refusal(
            None,
            R::BadMcc,
            format!("MCC {mcc} is outside 1..999"),
        ));
    }
    let mnc = required(raw.mnc, "mobile network code", R::BadMnc)?;
    if !MNC.contains(&mnc) {
        return Err(refusal(
            None,
            R::BadMnc,
            format!("MNC {mnc} is outside 0..999"),
        ));
    }
    let area = required(raw.area, "location or tracking area code", R::BadArea)?;
    let cid = required(raw.cid, "cell id", R::BadCellId)?;
    if radio == RadioType::Gsm && cid > MAX_CID_GSM && CID.contains(&cid) {
        notes.push(Note {
            field: "radio",
            reason: R::BadCellId,
            detail: format!(
                "a GSM cell id has 16 bits; {cid} is a WCDMA cell's: re-typed as wcdma, as \
                 Ichnaea does"
            ),
        });
        radio = RadioType::Wcdma;
    }
    let area_range = if radio == RadioType::Nr { TAC_NR } else { LAC };
    if !area_range.contains(&area) {
        return Err(refusal(
            None,
            R::BadArea,
            format!(
                "{radio} area code {area} is outside {}..{}",
                area_range.start(),
                area_range.end()
            ),
        ));
    }
    let cid_range = match radio {
        RadioType::Gsm => 1..=MAX_CID_GSM,
        RadioType::Wcdma | RadioType::Lte => CID,
        RadioType::Nr => NCI,
    };
    if !cid_range.contains(&cid) {
        return Err(refusal(
            None,
            R::BadCellId,
            format!(
                "{radio} cell id {cid} is outside {}..{}",
                cid_range.start(),
                cid_range.end()
            ),
        ));
    }
    let (Ok(mcc), Ok(mnc), Ok(area), Ok(cid)) = (
        u16::try_from(mcc),
        u16::try_from(mnc),
        u32::try_from(area),
        u64::try_from(cid),
    ) else {
        return Err(refusal(
            None,
            R::BadCellId,
            "the cell identity does not fit",
        ));
    };
    let key = format!("{radio}:{mcc}:{mnc}:{area}:{cid}");

    let psc = optional(raw.psc, "psc", R::BadPsc, &mut notes);
    let psc = within(psc, psc_range(radio), "psc", R::BadPsc, &mut notes);
    let mut signal = optional(raw.signal, "signal", R::BadSignal, &mut notes);
    let mut asu = optional(raw.asu, "asu", R::BadAsu, &mut notes);
    // "Sometimes the asu and signal fields are swapped" (`ichnaea/models/observation.py`).
    if let Some(a) = asu
        && a < -5
        && signal.is_none_or(|s| s >= 0)
    {
        notes.push(Note {
            field: "asu",
            reason: R::BadAsu,
            detail: format!("asu {a} is a dBm value: read as the signal, as Ichnaea does"),
        });
        signal = Some(a);
        asu = None;
    }
    let asu = within(asu, asu_range(radio), "asu", R::BadAsu, &mut notes);
    let mut signal = signal_within(signal, signal_range(radio), &key, &mut notes)?;
    if signal.is_none()
        && let Some(a) = asu
    {
        signal = Some(signal_from_asu(radio, a));
    }
    let mut ta = optional(raw.ta, "timing_advance", R::BadTimingAdvance, &mut notes);
    if radio == RadioType::Wcdma
        && let Some(t) = ta.take()
    {
        notes.push(Note {
            field: "timing_advance",
            reason: R::BadTimingAdvance,
            detail: format!("WCDMA has no timing advance ({t}): blanked, as Ichnaea does"),
        });
    }
    let ta = within(ta, TA, "timing_advance", R::BadTimingAdvance, &mut notes);
    let age_ms = optional(raw.age_ms, "age", R::BadAge, &mut notes);
    Ok(CheckedEmitter {
        emitter: Emitter::Cell {
            radio,
            mcc,
            mnc,
            area,
            cid,
            psc: small(psc),
        },
        key,
        signal_dbm: small(signal),
        asu: small(asu),
        timing_advance: small(ta),
        age_ms,
        notes,
    })
}

fn mac_of(raw: Raw<String>) -> Result<String, Refusal> {
    match raw {
        Ok(Some(m)) => normalise_mac(&m).map_err(|d| refusal(None, R::BadMac, d)),
        Ok(None) => Err(refusal(None, R::BadMac, "the MAC address is missing")),
        Err(t) => Err(refusal(None, R::BadMac, t)),
    }
}

fn check_wifi(raw: RawWifi) -> Result<CheckedEmitter, Refusal> {
    let mut notes = Vec::new();
    let mac = mac_of(raw.mac)?;
    let key = format!("wifi:{mac}");
    if is_group_address(&mac) {
        return Err(refusal(
            Some(key),
            R::BadMac,
            format!("{mac} has the group (multicast) bit set: no access point sends from it"),
        ));
    }
    let ssid = raw.ssid.filter(|s| !s.is_empty());
    if let Some(s) = &ssid
        && opted_out(s)
    {
        return Err(refusal(
            Some(key),
            R::NomapSsid,
            format!("SSID {s:?} asks not to be mapped"),
        ));
    }
    let channel = optional(raw.channel, "channel", R::BadChannel, &mut notes);
    let channel = within(channel, WIFI_CHANNEL, "channel", R::BadChannel, &mut notes);
    let frequency = optional(raw.frequency, "frequency", R::BadFrequency, &mut notes);
    let frequency = within(
        frequency,
        WIFI_FREQUENCY,
        "frequency",
        R::BadFrequency,
        &mut notes,
    );
    let (channel, frequency) = channel_frequency(channel, frequency);
    let signal = optional(raw.signal, "signal", R::BadSignal, &mut notes);
    let signal = signal_within(signal, WIFI_SIGNAL, &key, &mut notes)?;
    let age_ms = optional(raw.age_ms, "age", R::BadAge, &mut notes);
    Ok(CheckedEmitter {
        emitter: Emitter::Wifi {
            mac,
            ssid,
            channel: small(channel),
            frequency_mhz: small(frequency),
        },
        key,
        signal_dbm: small(signal),
        asu: None,
        timing_advance: None,
        age_ms,
        notes,
    })
}

fn check_blue(raw: RawBlue) -> Result<CheckedEmitter, Refusal> {
    let mut notes = Vec::new();
    let mac = mac_of(raw.mac)?;
    let key = format!("ble:{mac}");
    let signal = optional(raw.signal, "signal", R::BadSignal, &mut notes);
    let signal = signal_within(signal, BLUE_SIGNAL, &key, &mut notes)?;
    let age_ms = optional(raw.age_ms, "age", R::BadAge, &mut notes);
    Ok(CheckedEmitter {
        emitter: Emitter::Bluetooth { mac },
        key,
        signal_dbm: small(signal),
        asu: None,
        timing_advance: None,
        age_ms,
        notes,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
    }

    fn fix() -> RawFix {
        RawFix {
            lat: Ok(Some(48.8566)),
            lon: Ok(Some(2.3522)),
            time: Ok(Some(now() - TimeDelta::minutes(10))),
            ..RawFix::default()
        }
    }

    fn lte(cid: i64) -> RawCell {
        RawCell {
            mcc: Ok(Some(208)),
            mnc: Ok(Some(1)),
            area: Ok(Some(1234)),
            cid: Ok(Some(cid)),
            ..RawCell::new(Ok(RadioType::Lte))
        }
    }

    fn wifi(mac: &str) -> RawWifi {
        RawWifi::new(Ok(Some(mac.to_owned())))
    }

    fn run(fix: RawFix, emitters: Vec<RawEmitter>) -> RadioBatch {
        let policy = RadioPolicy::default();
        let mut c = Checker::new(now(), &policy);
        c.check_item(0, fix, emitters);
        c.finish(1)
    }

    fn reasons(b: &RadioBatch) -> Vec<RadioRejection> {
        b.rejected.iter().map(|r| r.reason).collect()
    }

    fn one_cell(cell: RawCell) -> RadioBatch {
        run(fix(), vec![RawEmitter::Cell(cell)])
    }

    #[test]
    fn a_good_cell_is_observed_with_its_key() {
        let b = one_cell(RawCell {
            signal: Ok(Some(-95)),
            psc: Ok(Some(5)),
            ta: Ok(Some(3)),
            ..lte(56789)
        });
        assert!(b.rejected.is_empty() && b.corrections.is_empty(), "{b:?}");
        let o = &b.observations[0];
        assert_eq!(o.emitter_key(), "lte:208:1:1234:56789");
        assert_eq!(o.at, now() - TimeDelta::minutes(10));
        assert_eq!(
            (o.signal_dbm, o.timing_advance, o.pos.lat),
            (Some(-95), Some(3), 48.8566)
        );
        assert!(matches!(o.emitter, Emitter::Cell { psc: Some(5), .. }));
    }

    #[test]
    fn position_rules_reject_every_emitter_of_the_item() {
        let cases: Vec<(Raw<f64>, Raw<f64>, RadioRejection)> = vec![
            (Ok(None), Ok(Some(2.0)), R::NoPosition),
            (
                Err("\"x\" is not a number".into()),
                Ok(Some(2.0)),
                R::BadPosition,
            ),
            (Ok(Some(85.06)), Ok(Some(2.0)), R::BadPosition),
            (Ok(Some(48.0)), Ok(Some(180.5)), R::BadPosition),
            (Ok(Some(f64::NAN)), Ok(Some(2.0)), R::BadPosition),
            (Ok(Some(0.0)), Ok(Some(0.0)), R::BadPosition),
        ];
        for (lat, lon, why) in cases {
            let b = run(
                RawFix { lat, lon, ..fix() },
                vec![
                    RawEmitter::Cell(lte(1)),
                    RawEmitter::Wifi(wifi("00:11:22:33:44:55")),
                ],
            );
            assert!(b.observations.is_empty());
            assert_eq!(reasons(&b), vec![why, why]);
            let keys: Vec<_> = b.rejected.iter().map(|r| r.emitter.clone()).collect();
            assert_eq!(
                keys,
                vec![
                    Some("lte:208:1:1234:1".to_owned()),
                    Some("wifi:001122334455".to_owned())
                ]
            );
        }
    }

    #[test]
    fn time_rules() {
        let at = |t: Raw<DateTime<Utc>>| {
            reasons(&run(
                RawFix { time: t, ..fix() },
                vec![RawEmitter::Cell(lte(1))],
            ))
        };
        assert_eq!(
            at(Ok(Some(now() + TimeDelta::minutes(6)))),
            vec![R::InFuture]
        );
        assert!(at(Ok(Some(now() + TimeDelta::minutes(4)))).is_empty());
        assert_eq!(at(Ok(Some(now() - TimeDelta::days(31)))), vec![R::TooOld]);
        assert_eq!(at(Err("\"soon\" is not a time".into())), vec![R::BadTime]);
        // Absent: the upload's own time.
        let b = run(
            RawFix {
                time: Ok(None),
                ..fix()
            },
            vec![RawEmitter::Cell(lte(1))],
        );
        assert_eq!(b.observations[0].at, now());
        // Slack for formats whose zone is unknown.
        let b = run(
            RawFix {
                time: Ok(Some(now() + TimeDelta::hours(9))),
                future_slack: Duration::from_secs(14 * 3600),
                ..fix()
            },
            vec![RawEmitter::Cell(lte(1))],
        );
        assert_eq!(b.observations.len(), 1);
        let old = run(
            RawFix {
                time: Ok(Some(time_millis(1_405_602_028).unwrap())),
                ..fix()
            },
            vec![RawEmitter::Cell(lte(1))],
        );
        assert!(old.rejected[0].detail.contains("seconds"), "{old:?}");
    }

    #[test]
    fn position_age_moves_the_time_and_emitter_ages_become_relative_to_the_fix() {
        let t = now() - TimeDelta::minutes(10);
        let cell = RawCell {
            age_ms: Ok(Some(3000)),
            ..lte(1)
        };
        let late = RawCell {
            age_ms: Ok(Some(25_000)),
            ..lte(2)
        };
        let b = run(
            RawFix {
                position_age_ms: Ok(Some(1000)),
                ..fix()
            },
            vec![RawEmitter::Cell(cell), RawEmitter::Cell(late)],
        );
        assert_eq!(b.observations[0].at, t - TimeDelta::seconds(1));
        assert_eq!(b.observations[0].age_ms, Some(2000));
        assert_eq!(reasons(&b), vec![R::BadAge]);
        assert!(b.rejected[0].detail.contains("24000 ms before"));
        let b = run(
            RawFix {
                position_age_ms: Ok(Some(21_000)),
                ..fix()
            },
            vec![RawEmitter::Cell(lte(1))],
        );
        assert_eq!(reasons(&b), vec![R::BadAge]);
    }

    #[test]
    fn accuracy_altitude_and_speed_reject_past_the_policy_and_blank_nonsense() {
        let with = |f: RawFix| run(f, vec![RawEmitter::Cell(lte(1))]);
        assert_eq!(
            reasons(&with(RawFix {
                accuracy_m: Ok(Some(250.0)),
                ..fix()
            })),
            vec![R::BadAccuracy]
        );
        assert_eq!(
            reasons(&with(RawFix {
                altitude_m: Ok(Some(11_000.0)),
                ..fix()
            })),
            vec![R::BadAltitude]
        );
        assert_eq!(
            reasons(&with(RawFix {
                altitude_m: Ok(Some(-600.0)),
                ..fix()
            })),
            vec![R::BadAltitude]
        );
        assert_eq!(
            reasons(&with(RawFix {
                speed_mps: Ok(Some(61.0)),
                ..fix()
            })),
            vec![R::BadSpeed]
        );
        let b = with(RawFix {
            accuracy_m: Ok(Some(-1.0)),
            speed_mps: Ok(Some(-3.0)),
            heading_deg: Ok(Some(400.0)),
            altitude_m: Err("\"high\" is not a number".into()),
            ..fix()
        });
        assert_eq!(b.observations.len(), 1);
        let o = &b.observations[0];
        assert_eq!(
            (o.accuracy_m, o.speed_mps, o.heading_deg, o.altitude_m),
            (None, None, None, None)
        );
        let fixed: Vec<_> = b
            .corrections
            .iter()
            .map(|c| (c.field, c.reason, c.emitter.clone()))
            .collect();
        assert_eq!(
            fixed,
            vec![
                ("accuracy", R::BadAccuracy, None),
                ("altitude", R::BadAltitude, None),
                ("heading", R::BadHeading, None),
                ("speed", R::BadSpeed, None),
            ]
        );
    }

    #[test]
    fn cell_identity_rules() {
        let why = |c: RawCell| reasons(&one_cell(c));
        assert_eq!(
            why(RawCell::new(Err("radioType \"cdma\"".into()))),
            vec![R::UnknownRadio]
        );
        assert_eq!(
            why(RawCell {
                mcc: Ok(Some(0)),
                ..lte(1)
            }),
            vec![R::BadMcc]
        );
        assert_eq!(
            why(RawCell {
                mcc: Ok(None),
                ..lte(1)
            }),
            vec![R::BadMcc]
        );
        assert_eq!(
            why(RawCell {
                mnc: Ok(Some(1000)),
                ..lte(1)
            }),
            vec![R::BadMnc]
        );
        assert_eq!(
            why(RawCell {
                area: Ok(Some(0)),
                ..lte(1)
            }),
            vec![R::BadArea]
        );
        assert_eq!(
            why(RawCell {
                area: Ok(Some(65_534)),
                ..lte(1)
            }),
            vec![R::BadArea]
        );
        assert_eq!(why(lte(0)), vec![R::BadCellId]);
        assert_eq!(why(lte(0x1000_0000)), vec![R::BadCellId]);
        assert_eq!(
            why(RawCell {
                cid: Err("12.5 is not a whole number".into()),
                ..lte(1)
            }),
            vec![R::BadCellId]
        );
        let nr = |area: i64, cid: i64| RawCell {
            radio: Ok(RadioType::Nr),
            area: Ok(Some(area)),
            ..lte(cid)
        };
        assert!(why(nr(1_000_000, 0xF_FFFF_FFFF)).is_empty());
        assert_eq!(why(nr(0x100_0000, 1)), vec![R::BadArea]);
        assert_eq!(why(nr(1, 0x10_0000_0000)), vec![R::BadCellId]);
    }

    #[test]
    fn a_gsm_cell_id_past_16_bits_is_retyped_wcdma() {
        let b = one_cell(RawCell {
            radio: Ok(RadioType::Gsm),
            ..lte(70_000)
        });
        assert_eq!(b.observations[0].emitter_key(), "wcdma:208:1:1234:70000");
        assert_eq!(b.corrections[0].field, "radio");
        let b = one_cell(RawCell {
            radio: Ok(RadioType::Gsm),
            ..lte(0x1000_0000)
        });
        assert_eq!(reasons(&b), vec![R::BadCellId]);
    }

    #[test]
    fn cell_signal_fields_are_blanked_or_derived_as_ichnaea_does() {
        let b = one_cell(RawCell {
            psc: Ok(Some(504)),
            signal: Ok(Some(0)),
            asu: Ok(Some(98)),
            ta: Ok(Some(64)),
            ..lte(1)
        });
        let o = &b.observations[0];
        assert!(matches!(o.emitter, Emitter::Cell { psc: None, .. }));
        assert_eq!((o.signal_dbm, o.asu, o.timing_advance), (None, None, None));
        let why: Vec<_> = b.corrections.iter().map(|c| c.reason).collect();
        assert_eq!(
            why,
            vec![R::BadPsc, R::BadAsu, R::BadSignal, R::BadTimingAdvance]
        );
        assert_eq!(
            b.corrections[0].emitter.as_deref(),
            Some("lte:208:1:1234:1")
        );

        // A signal no LTE receiver reports is a made-up reading: refused, not blanked.
        let b = run(
            fix(),
            vec![RawEmitter::Cell(RawCell {
                signal: Ok(Some(-30)),
                ..lte(1)
            })],
        );
        assert_eq!(reasons(&b), vec![R::ImpossibleSignal]);
        assert!(b.observations.is_empty());
        assert!(b.rejected[0].detail.contains("-30 dBm"), "{:?}", b.rejected);

        // Signal from ASU, per radio (Ichnaea's test_asu_signal: asu 15 -> -83, -101, -125).
        for (radio, signal) in [
            (RadioType::Gsm, -83),
            (RadioType::Wcdma, -101),
            (RadioType::Lte, -125),
            (RadioType::Nr, -125),
        ] {
            let mut cell = lte(1);
            cell.radio = Ok(radio);
            cell.asu = Ok(Some(15));
            if radio == RadioType::Nr {
                cell.cid = Ok(Some(1));
            }
            let o = &one_cell(cell).observations[0];
            assert_eq!((o.signal_dbm, o.asu), (Some(signal), Some(15)), "{radio}");
        }
        // Swapped fields.
        let b = one_cell(RawCell {
            asu: Ok(Some(-95)),
            signal: Ok(Some(0)),
            ..lte(1)
        });
        assert_eq!(
            (b.observations[0].signal_dbm, b.observations[0].asu),
            (Some(-95), None)
        );
        assert_eq!(b.corrections[0].reason, R::BadAsu);
        // WCDMA has no timing advance.
        let b = one_cell(RawCell {
            radio: Ok(RadioType::Wcdma),
            ta: Ok(Some(1)),
            ..lte(1)
        });
        assert_eq!(b.observations[0].timing_advance, None);
        assert_eq!(b.corrections[0].reason, R::BadTimingAdvance);
    }

    #[test]
    fn mac_rules() {
        assert_eq!(normalise_mac("00:11:22:AA:bb:CC").unwrap(), "001122aabbcc");
        assert_eq!(normalise_mac("00-11-22-33-44-55").unwrap(), "001122334455");
        assert_eq!(normalise_mac("0011.2233.4455").unwrap(), "001122334455");
        for bad in [
            "",
            "00:11:22:33:44",
            "00:11:22:33:44:5g",
            "000000000000",
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:90:10:00",
            "00:11:22:33:44:55:66",
        ] {
            assert!(normalise_mac(bad).is_err(), "{bad}");
        }
        let b = run(
            fix(),
            vec![
                RawEmitter::Wifi(wifi("01:23:45:67:89:ab")),
                RawEmitter::Wifi(wifi("0a:00:00:00:00:01")),
                RawEmitter::Wifi(RawWifi::new(Ok(None))),
                RawEmitter::Blue(RawBlue {
                    mac: Ok(Some("ff:23:45:67:89:ab".into())),
                    signal: Ok(Some(-2_000_000)),
                    age_ms: Ok(None),
                }),
            ],
        );
        assert_eq!(reasons(&b), vec![R::BadMac, R::BadMac]);
        assert_eq!(b.rejected[0].emitter.as_deref(), Some("wifi:0123456789ab"));
        let keys: Vec<_> = b
            .observations
            .iter()
            .map(super::super::RadioObservation::emitter_key)
            .collect();
        // A locally administered BSSID is kept, as Ichnaea keeps it; BLE random static too.
        assert_eq!(keys, vec!["wifi:0a0000000001", "ble:ff23456789ab"]);
        assert_eq!(b.observations[1].signal_dbm, None);
    }

    #[test]
    fn nomap_and_optout_ssids_are_refused() {
        let named = |ssid: &str| {
            RawEmitter::Wifi(RawWifi {
                ssid: Some(ssid.to_owned()),
                ..wifi("00:11:22:33:44:55")
            })
        };
        let b = run(
            fix(),
            vec![
                named("Cafe_nomap"),
                named("home_OptOut_5G"),
                named("nomap cafe"),
            ],
        );
        assert_eq!(reasons(&b), vec![R::NomapSsid, R::NomapSsid]);
        assert!(matches!(
            &b.observations[0].emitter,
            Emitter::Wifi { ssid: Some(s), .. } if s == "nomap cafe"
        ));
    }

    #[test]
    fn wifi_channel_and_frequency() {
        let radio = |channel: Raw<i64>, frequency: Raw<i64>, signal| {
            let b = run(
                fix(),
                vec![RawEmitter::Wifi(RawWifi {
                    channel,
                    frequency,
                    signal: Ok(Some(signal)),
                    ..wifi("00:11:22:33:44:55")
                })],
            );
            let o = b.observations[0].clone();
            let Emitter::Wifi {
                channel,
                frequency_mhz,
                ..
            } = o.emitter
            else {
                unreachable!()
            };
            (channel, frequency_mhz, o.signal_dbm, b.corrections.len())
        };
        assert_eq!(
            radio(Ok(Some(6)), Ok(None), -70),
            (Some(6), Some(2437), Some(-70), 0)
        );
        assert_eq!(
            radio(Ok(None), Ok(Some(5180)), -70),
            (Some(36), Some(5180), Some(-70), 0)
        );
        // 6 GHz (Wi-Fi 6E) is kept even though Ichnaea's range stops at 5999 MHz.
        assert_eq!(
            radio(Ok(Some(37)), Ok(Some(6135)), -70),
            (Some(37), Some(6135), Some(-70), 0)
        );
        assert_eq!(radio(Ok(Some(0)), Ok(Some(10)), 5), (None, None, None, 3));
    }

    #[test]
    fn duplicates_keep_the_stronger_reading() {
        let at = |signal| {
            RawEmitter::Wifi(RawWifi {
                signal: Ok(Some(signal)),
                ..wifi("00:11:22:33:44:55")
            })
        };
        let b = run(fix(), vec![at(-80), at(-60), at(-90)]);
        assert_eq!(b.observations.len(), 1);
        assert_eq!(b.observations[0].signal_dbm, Some(-60));
        assert_eq!(reasons(&b), vec![R::Duplicate, R::Duplicate]);
    }

    #[test]
    fn an_item_without_emitters_is_one_rejection() {
        let b = run(fix(), vec![]);
        assert_eq!(reasons(&b), vec![R::NoEmitters]);
        assert_eq!(b.rejected[0].emitter, None);
        let b = run(
            fix(),
            vec![RawEmitter::Refused(R::UnparsableRow, "x".into())],
        );
        assert_eq!(reasons(&b), vec![R::UnparsableRow]);
    }

    #[test]
    fn time_text_reads_the_formats_uploads_use() {
        let t = Utc.with_ymd_and_hms(2024, 5, 1, 12, 34, 56).unwrap();
        let ms = t + TimeDelta::milliseconds(789);
        for (s, want) in [
            ("2024-05-01 12:34:56", t),
            ("2024-05-01T12:34:56Z", t),
            ("2024-05-01T14:34:56+02:00", t),
            ("2024-05-01 12:34:56.789Z", ms),
            ("2024-05-01 12:34:56.789+0000", ms),
            ("20240501123456", t),
        ] {
            assert_eq!(time_text(s), Ok(Some(want)), "{s}");
        }
        assert_eq!(
            time_text("2024-05-01"),
            Ok(Some(Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap()))
        );
        assert_eq!(time_text(" "), Ok(None));
        assert!(time_text("yesterday").is_err());
    }

    #[test]
    fn numbers_are_read_leniently_but_not_truncated() {
        assert_eq!(int_text(" 208 "), Ok(Some(208)));
        assert_eq!(int_text("-77.0"), Ok(Some(-77)));
        assert_eq!(int_text(""), Ok(None));
        assert!(int_text("12.5").is_err());
        assert!(int_text("abc").is_err());
        assert_eq!(float_text("3.6"), Ok(Some(3.6)));
        assert!(float_text("3,6").is_err());
    }
}
