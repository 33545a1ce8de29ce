//! NMEA 0183 logs as GNSS receivers and dashcams write them: plain logs, and BlackVue's
//! `[<camera clock, epoch ms>]$GPRMC,...` lines (the MP4 `gps ` box and the `.gps` side-car).
//!
//! Only RMC (date, time, position, speed, course) and GGA (time, position, altitude, HDOP) say
//! where the car was; the other sentences are counted and passed over. A line that fails its
//! checksum or does not parse is counted as garbled and skipped: one bad line from a flaky serial
//! link must not cost the drive.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};

use crate::track::RawPoint;
use crate::{IngestError, IngestPolicy, Track};

/// Talkers whose RMC and GGA carry a position: GPS, multi-GNSS, GLONASS, Galileo, BeiDou (twice).
const POSITION_TALKERS: [&str; 6] = ["GP", "GN", "GL", "GA", "BD", "GB"];

const MPS_PER_KNOT: f64 = 1852.0 / 3600.0;

/// What an NMEA log holds, with no plausibility rule applied.
#[derive(Debug, Clone, PartialEq)]
pub struct NmeaLog {
    /// One point per GNSS epoch, RMC and GGA of the same time merged, in time order (BlackVue
    /// writes its buffer out of order).
    pub points: Vec<NmeaPoint>,
    /// Well-formed sentences of any kind.
    pub sentences: usize,
    /// Lines that looked like a sentence but failed the checksum or did not parse.
    pub garbled: usize,
    /// RMC with status V and GGA with quality 0: the receiver said it had no fix.
    pub without_fix: usize,
    /// GGA fixes left out because nothing dated them: no RMC in the log and no camera clock.
    pub undated: usize,
}

/// One GNSS epoch of a log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NmeaPoint {
    pub time: DateTime<Utc>,
    pub lat: f64,
    pub lon: f64,
    pub speed_mps: Option<f64>,
    pub course_deg: Option<f64>,
    /// Above mean sea level, from GGA.
    pub altitude_m: Option<f64>,
    pub hdop: Option<f64>,
    /// The dashcam's own clock when it wrote the line (BlackVue), epoch milliseconds: compared
    /// with `time` it gives the camera's clock offset.
    pub camera_ms: Option<i64>,
}

/// Reads an NMEA log into checked fixes, as [`crate::parse_gpx`] does for GPX.
pub fn parse_nmea(
    bytes: &[u8],
    received_at: DateTime<Utc>,
    policy: &IngestPolicy,
) -> Result<Track, IngestError> {
    let log = read_nmea(bytes)?;
    let points = log.points.into_iter().map(|p| RawPoint {
        lat: p.lat,
        lon: p.lon,
        time: Some(p.time),
    });
    Track::check(points, received_at, policy)
}

/// The fixes of an NMEA log as written, with no plausibility rule applied.
///
/// Fails with [`IngestError::NotNmea`] when no line is an NMEA sentence, and with
/// [`IngestError::NoFix`] when there are sentences but the receiver never had a fix.
pub fn read_nmea(bytes: &[u8]) -> Result<NmeaLog, IngestError> {
    let mut log = NmeaLog {
        points: Vec::new(),
        sentences: 0,
        garbled: 0,
        without_fix: 0,
        undated: 0,
    };
    let mut rmcs = Vec::new();
    let mut ggas = Vec::new();
    let mut order = 0usize;
    for line in bytes.split(|&b| b == b'\n') {
        for (camera_ms, record) in records(line) {
            let record = record.trim_ascii();
            let Some(start) = record.iter().position(|&b| b == b'$') else {
                continue; // blank, or junk that is no sentence at all
            };
            order += 1;
            match read_sentence(&record[start..]) {
                Some(Sentence::Rmc(fix)) => rmcs.push((order, camera_ms, fix)),
                Some(Sentence::Gga(fix)) => ggas.push((order, camera_ms, fix)),
                Some(Sentence::NoFix) => log.without_fix += 1,
                Some(Sentence::Other) => {}
                None => {
                    log.garbled += 1;
                    continue;
                }
            }
            log.sentences += 1;
        }
    }
    if log.sentences == 0 {
        return Err(IngestError::NotNmea(format!(
            "no NMEA 0183 sentence found ({} garbled lines)",
            log.garbled
        )));
    }

    let mut epochs: BTreeMap<DateTime<Utc>, NmeaPoint> = BTreeMap::new();
    for (_, camera_ms, rmc) in &rmcs {
        let time = rmc.date.and_time(rmc.time).and_utc();
        epochs.entry(time).or_insert(NmeaPoint {
            time,
            lat: rmc.lat,
            lon: rmc.lon,
            speed_mps: rmc.speed_knots.map(|k| k * MPS_PER_KNOT),
            course_deg: rmc.course_deg,
            altitude_m: None,
            hdop: None,
            camera_ms: *camera_ms,
        });
    }
    for (order, camera_ms, gga) in &ggas {
        let Some(time) = date_gga(*order, *camera_ms, gga.time, &rmcs) else {
            log.undated += 1;
            continue;
        };
        let point = epochs.entry(time).or_insert(NmeaPoint {
            time,
            lat: gga.lat,
            lon: gga.lon,
            speed_mps: None,
            course_deg: None,
            altitude_m: None,
            hdop: None,
            camera_ms: *camera_ms,
        });
        point.altitude_m = point.altitude_m.or(gga.altitude_m);
        point.hdop = point.hdop.or(gga.hdop);
        point.camera_ms = point.camera_ms.or(*camera_ms);
    }
    log.points = epochs.into_values().collect();

    if log.points.is_empty() {
        if log.undated > 0 {
            return Err(IngestError::NoUsableFixes {
                total: log.undated,
                summary: format!("{} without_date (GGA with no RMC to date it)", log.undated),
            });
        }
        return Err(IngestError::NoFix {
            sentences: log.sentences,
        });
    }
    Ok(log)
}

/// Splits a line at BlackVue's `[epoch ms]` stamps. A plain NMEA line is one record without a
/// stamp; BlackVue sometimes glues the next stamp onto the end of a sentence.
fn records(line: &[u8]) -> Vec<(Option<i64>, &[u8])> {
    let mut out = Vec::new();
    let mut current: Option<i64> = None;
    let mut from = 0;
    let mut i = 0;
    while i < line.len() {
        if let Some((ms, len)) = camera_stamp(&line[i..]) {
            if i > from {
                out.push((current, &line[from..i]));
            }
            current = Some(ms);
            i += len;
            from = i;
        } else {
            i += 1;
        }
    }
    if from < line.len() {
        out.push((current, &line[from..]));
    }
    out
}

/// `[digits]` at the start of `s`: the stamp and its length in bytes.
fn camera_stamp(s: &[u8]) -> Option<(i64, usize)> {
    if s.first() != Some(&b'[') {
        return None;
    }
    let digits = s[1..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 16 || s.get(1 + digits) != Some(&b']') {
        return None;
    }
    let ms = std::str::from_utf8(&s[1..=digits]).ok()?.parse().ok()?;
    Some((ms, digits + 2))
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct RmcFix {
    date: NaiveDate,
    time: NaiveTime,
    lat: f64,
    lon: f64,
    speed_knots: Option<f64>,
    course_deg: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct GgaFix {
    time: NaiveTime,
    lat: f64,
    lon: f64,
    altitude_m: Option<f64>,
    hdop: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sentence {
    Rmc(RmcFix),
    Gga(GgaFix),
    /// An RMC or GGA that says the receiver has no fix.
    NoFix,
    /// A well-formed sentence that does not say where the car is.
    Other,
}

/// One sentence starting at `$`; `None` when it is garbled.
fn read_sentence(s: &[u8]) -> Option<Sentence> {
    if !s.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return None;
    }
    let s = std::str::from_utf8(s).ok()?.strip_prefix('$')?;
    let body = match s.split_once('*') {
        Some((body, sum)) => {
            if sum.len() != 2 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let sum = u8::from_str_radix(sum, 16).ok()?;
            (body.bytes().fold(0u8, |x, b| x ^ b) == sum).then_some(body)?
        }
        None => s,
    };
    let fields: Vec<&str> = body.split(',').collect();
    let address = fields[0];
    let well_formed = (2..=10).contains(&address.len())
        && address
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !well_formed {
        return None;
    }
    let (talker, kind) = address.split_at(2);
    if !POSITION_TALKERS.contains(&talker) {
        return Some(Sentence::Other);
    }
    match kind {
        "RMC" => read_rmc(&fields),
        "GGA" => read_gga(&fields),
        _ => Some(Sentence::Other),
    }
}

/// `$--RMC,hhmmss.ss,A,llll.ll,a,yyyyy.yy,a,x.x,x.x,ddmmyy,x.x,a[,m[,s]]`
fn read_rmc(f: &[&str]) -> Option<Sentence> {
    let status = *f.get(2)?;
    // NMEA 2.3 adds a mode field; "N" there means the data is not valid even if status says A.
    if status != "A" || f.get(12) == Some(&"N") {
        return (status == "V" || status == "A").then_some(Sentence::NoFix);
    }
    Some(Sentence::Rmc(RmcFix {
        time: time_of_day(f.get(1)?)?,
        lat: coordinate(f.get(3)?, f.get(4)?, "N", "S")?,
        lon: coordinate(f.get(5)?, f.get(6)?, "E", "W")?,
        speed_knots: optional_number(f.get(7)),
        course_deg: optional_number(f.get(8)),
        date: date(f.get(9)?)?,
    }))
}

/// `$--GGA,hhmmss.ss,llll.ll,a,yyyyy.yy,a,q,nn,h.h,a.a,M,g.g,M,x.x,xxxx`
fn read_gga(f: &[&str]) -> Option<Sentence> {
    let quality: u8 = match *f.get(6)? {
        "" => 0,
        q => q.parse().ok()?,
    };
    if quality == 0 {
        return Some(Sentence::NoFix);
    }
    Some(Sentence::Gga(GgaFix {
        time: time_of_day(f.get(1)?)?,
        lat: coordinate(f.get(2)?, f.get(3)?, "N", "S")?,
        lon: coordinate(f.get(4)?, f.get(5)?, "E", "W")?,
        hdop: optional_number(f.get(8)),
        altitude_m: optional_number(f.get(9)),
    }))
}

/// A GGA has no date: it takes the date of the RMC nearest to it in the log, or of the camera
/// clock beside it, moved a day either way when the two straddle midnight.
fn date_gga(
    order: usize,
    camera_ms: Option<i64>,
    time: NaiveTime,
    rmcs: &[(usize, Option<i64>, RmcFix)],
) -> Option<DateTime<Utc>> {
    let after = rmcs.partition_point(|(o, _, _)| *o < order);
    let nearest = [after.checked_sub(1), Some(after)]
        .into_iter()
        .flatten()
        .filter_map(|i| rmcs.get(i))
        .min_by_key(|(o, _, _)| o.abs_diff(order));
    let reference: NaiveDateTime = match nearest {
        Some((_, _, rmc)) => rmc.date.and_time(rmc.time),
        None => DateTime::from_timestamp_millis(camera_ms?)?.naive_utc(),
    };
    let mut at = reference.date().and_time(time);
    let half_day = TimeDelta::hours(12);
    if at - reference > half_day {
        at -= TimeDelta::days(1);
    } else if reference - at > half_day {
        at += TimeDelta::days(1);
    }
    Some(at.and_utc())
}

/// `hhmmss` or `hhmmss.sss`.
fn time_of_day(s: &str) -> Option<NaiveTime> {
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if whole.len() != 6 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |r: std::ops::Range<usize>| whole[r].parse::<u32>().ok();
    let nanos = fraction
        .bytes()
        .take(9)
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
    NaiveTime::from_hms_nano_opt(number(0..2)?, number(2..4)?, number(4..6)?, nanos)
}

/// `ddmmyy`; two-digit years are 1980-2079 (GPS time starts in 1980).
fn date(s: &str) -> Option<NaiveDate> {
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    let yy = number(4..6)?;
    let year = if yy >= 80 { 1900 + yy } else { 2000 + yy };
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, number(2..4)?, number(0..2)?)
}

/// `ddmm.mmmm` (latitude) or `dddmm.mmmm` (longitude) and its hemisphere letter. Degrees and
/// minutes are parsed apart so that no float division shifts the degrees.
fn coordinate(value: &str, hemisphere: &str, plus: &str, minus: &str) -> Option<f64> {
    let dot = value.find('.').unwrap_or(value.len());
    if dot < 3 || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let degrees: f64 = value[..dot - 2].parse().ok()?;
    let minutes: f64 = value[dot - 2..].parse().ok()?;
    if minutes >= 60.0 {
        return None;
    }
    let magnitude = degrees + minutes / 60.0;
    match hemisphere {
        h if h == plus => Some(magnitude),
        h if h == minus => Some(-magnitude),
        _ => None,
    }
}

/// An optional numeric field: empty or unreadable is "not given", not a reason to drop the fix.
fn optional_number(field: Option<&&str>) -> Option<f64> {
    field
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A sentence with its checksum.
    fn nmea(body: &str) -> String {
        let sum = body.bytes().fold(0u8, |x, b| x ^ b);
        format!("${body}*{sum:02X}")
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn rmc_and_gga_of_one_epoch_are_one_point() {
        let log = [
            nmea("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"),
            nmea("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
        ]
        .join("\r\n");
        let log = read_nmea(log.as_bytes()).unwrap();
        assert_eq!((log.sentences, log.garbled, log.without_fix), (2, 0, 0));
        let p = log.points[0];
        assert_eq!(log.points.len(), 1);
        assert_eq!(p.time, utc(1994, 3, 23, 12, 35, 19));
        assert!((p.lat - (48.0 + 7.038 / 60.0)).abs() < 1e-12);
        assert!((p.lon - (11.0 + 31.0 / 60.0)).abs() < 1e-12);
        assert!((p.speed_mps.unwrap() - 22.4 * 0.514_444).abs() < 1e-3);
        assert_eq!(
            (p.course_deg, p.altitude_m, p.hdop),
            (Some(84.4), Some(545.4), Some(0.9))
        );
        assert_eq!(p.camera_ms, None);
    }

    #[test]
    fn gga_takes_the_date_of_the_nearest_rmc_across_midnight() {
        let log = [
            nmea("GNGGA,235958.50,0100.000,S,00100.000,W,1,08,0.9,10.0,M,0,M,,"),
            nmea("GNRMC,235959.00,A,0100.000,S,00100.000,W,1.0,90.0,311224,,,A"),
            nmea("GNGGA,000000.00,0100.001,S,00100.000,W,1,08,0.9,10.0,M,0,M,,"),
            // An hour on: dated from the nearest RMC, the one after it, same day.
            nmea("GNGGA,010000.00,0100.002,S,00100.000,W,1,08,0.9,10.0,M,0,M,,"),
            nmea("GNRMC,000002.00,A,0100.003,S,00100.000,W,1.0,90.0,010125,,,A"),
            // Late evening after an RMC of 00:00:02 on 1 January: the evening before.
            nmea("GNGGA,235957.00,0100.004,S,00100.000,W,1,08,0.9,10.0,M,0,M,,"),
        ]
        .join("\n");
        let log = read_nmea(log.as_bytes()).unwrap();
        let times: Vec<_> = log.points.iter().map(|p| p.time).collect();
        let ms = |s: DateTime<Utc>, ms: i64| s + TimeDelta::milliseconds(ms);
        assert_eq!(
            times,
            vec![
                utc(2024, 12, 31, 23, 59, 57),
                ms(utc(2024, 12, 31, 23, 59, 58), 500),
                utc(2024, 12, 31, 23, 59, 59),
                utc(2024, 12, 31, 23, 59, 59) + TimeDelta::seconds(1),
                utc(2025, 1, 1, 0, 0, 2),
                utc(2025, 1, 1, 1, 0, 0),
            ]
        );
        assert!(log.points.iter().all(|p| p.lat < 0.0 && p.lon < 0.0));
    }

    #[test]
    fn bad_checksums_and_junk_are_garbled_not_fatal() {
        let good = nmea("GPRMC,120000,A,4807.038,N,01131.000,E,0.0,0.0,010620,,");
        let log = format!(
            "\u{feff}garbage before $GPXXX\n\n{good}\r\n{}\n$GPRMC,120001,A,4807.038,N*00\n\
             $GPGGA,**&^%$\n$GPRMC,12000x,A,4807.038,N,01131.000,E,0,0,010620,,\n\
             not a sentence at all\n{}\n",
            good.replace("120000", "120002"),
            nmea("GPRMC,120003,A,4807.038,X,01131.000,E,0,0,010620,,"),
        );
        let log = read_nmea(log.as_bytes()).unwrap();
        // "$GPXXX" is a well-formed sentence after leading junk; the copy of the good line with
        // its time changed keeps the old checksum.
        assert_eq!((log.sentences, log.garbled), (2, 5), "{log:?}");
        assert_eq!(log.points.len(), 1);
    }

    #[test]
    fn sentences_without_a_fix_are_counted() {
        let log = [
            nmea("GPRMC,,V,,,,,,,,,,N"),
            nmea("GPGGA,,,,,,0,,,,,,,,"),
            nmea("GPGSV,1,1,00"),
            // Status A but mode N (NMEA 2.3): not valid either.
            nmea("GPRMC,120000,A,4807.038,N,01131.000,E,0,0,010620,,,N"),
        ]
        .join("\n");
        match read_nmea(log.as_bytes()) {
            Err(e @ IngestError::NoFix { sentences: 4 }) => assert_eq!(e.code(), "no_gnss_fix"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_is_not_nmea_is_refused() {
        for junk in [
            &b""[..],
            b"hello\nworld",
            b"\x00\xff\x12",
            b"$GP\xffRMC,1*00",
        ] {
            let err = read_nmea(junk).unwrap_err();
            assert_eq!(err.code(), "invalid_nmea", "{err}");
        }
    }

    #[test]
    fn gga_without_any_date_is_not_a_fix_of_a_known_day() {
        let log = nmea("GPGGA,120000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,");
        let err = read_nmea(log.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "no_usable_fixes", "{err}");
        // With a BlackVue camera clock the GGA takes the camera's day.
        let stamped = format!("[1623057074211]{log}");
        let log = read_nmea(stamped.as_bytes()).unwrap();
        assert_eq!(log.points[0].time, utc(2021, 6, 7, 12, 0, 0));
        assert_eq!(log.points[0].camera_ms, Some(1_623_057_074_211));
    }

    #[test]
    fn blackvue_stamps_glued_to_a_sentence_are_split() {
        let line = format!(
            "[1]{}[2]{}[3]",
            nmea("GPVTG,284.43,T,,M,5.849,N,10.833,K,D"),
            nmea("GPRMC,120000,A,4807.038,N,01131.000,E,0,0,010620,,")
        );
        let recs = records(line.as_bytes());
        let stamps: Vec<_> = recs.iter().map(|r| r.0).collect();
        assert_eq!(
            stamps,
            vec![Some(1), Some(2)],
            "the empty record after [3] is dropped"
        );
        let log = read_nmea(line.as_bytes()).unwrap();
        assert_eq!((log.sentences, log.garbled), (2, 0));
        assert_eq!(log.points[0].camera_ms, Some(2));
    }

    #[test]
    fn coordinates_keep_their_hemisphere() {
        let lat = |v, h| coordinate(v, h, "N", "S");
        assert_eq!(lat("3853.16949", "N"), Some(38.0 + 53.16949 / 60.0));
        assert_eq!(
            coordinate("07659.54604", "W", "E", "W"),
            Some(-(76.0 + 59.54604 / 60.0))
        );
        assert_eq!(lat("0000.000", "S"), Some(-0.0));
        for (v, h) in [
            ("3860.0", "N"),
            ("38.5", "N"),
            ("3853.1", "E"),
            ("", "N"),
            ("1x00.0", "N"),
        ] {
            assert_eq!(lat(v, h), None, "{v} {h}");
        }
    }

    #[test]
    fn parse_nmea_applies_the_policy() {
        let log = [
            nmea("GPRMC,120000,A,4807.038,N,01131.000,E,0,0,010620,,"),
            nmea("GPRMC,120001,A,4807.038,N,01131.000,E,0,0,010620,,"),
        ]
        .join("\n");
        let now = utc(2020, 6, 1, 13, 0, 0);
        let track = parse_nmea(log.as_bytes(), now, &IngestPolicy::default()).unwrap();
        assert_eq!(track.fixes.len(), 2);
        let later = utc(2021, 6, 1, 0, 0, 0);
        let err = parse_nmea(log.as_bytes(), later, &IngestPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("too_old"), "{err}");
    }
}
