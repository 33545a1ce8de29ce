//! What a JPEG frame says about itself: its size, and where and when its camera says it was taken.
//!
//! Everything comes from the header segments before the image data; no pixel is decoded, so a
//! decompression bomb costs nothing here (the caller holds [`FrameMeta::pixels`] to its limit).
//! EXIF is read with kamadak-exif; each tag is then checked on its own, so one bad tag costs that
//! tag, not the frame.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use covermap_domain::LatLon;
use exif::{Exif, In, Tag, Value};
use serde::Serialize;

/// Cameras whose clock battery went flat write 1970 (or 0000); nothing before this is a real time.
const EARLIEST_YEAR: i32 = 1990;

const EXIF_ID: &[u8] = b"Exif\0\0";
const XMP_IDS: [&[u8]; 2] = [
    b"http://ns.adobe.com/xap/1.0/\0",
    b"http://ns.adobe.com/xmp/extension/\0",
];

/// What a frame says about itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameMeta {
    /// From the JPEG frame header (SOF), not from EXIF, which may describe another size.
    pub width: u32,
    pub height: u32,
    pub gps: Option<ExifGps>,
    /// GPSDateStamp + GPSTimeStamp: satellite time, UTC.
    pub gps_time: Option<DateTime<Utc>>,
    /// DateTimeOriginal + SubSecTimeOriginal, placed by OffsetTimeOriginal.
    pub taken_at: Option<DateTime<Utc>>,
    /// DateTimeOriginal of a camera that did not say its UTC offset.
    pub taken_local: Option<NaiveDateTime>,
    /// The position is only in an XMP packet (as Adobe tools write it), not in EXIF.
    pub xmp_gps: bool,
}

/// The EXIF GPS block, checked: a position in range, and what else the camera wrote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExifGps {
    pub lat: f64,
    pub lon: f64,
    pub altitude_m: Option<f64>,
    pub speed_mps: Option<f64>,
    /// GPSImgDirection, else GPSTrack, in degrees from true north.
    pub direction_deg: Option<f64>,
    pub dop: Option<f64>,
}

/// Why a frame's bytes could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("not a JPEG: {0}")]
    NotJpeg(&'static str),
    #[error("the EXIF block is unreadable: {0}")]
    CorruptExif(String),
}

impl FrameError {
    /// A short stable code for API clients and metrics.
    pub fn code(&self) -> &'static str {
        self.rejection().as_str()
    }

    pub fn rejection(&self) -> FrameRejection {
        match self {
            FrameError::NotJpeg(_) => FrameRejection::NotJpeg,
            FrameError::CorruptExif(_) => FrameRejection::CorruptExif,
        }
    }
}

/// Why one frame of a drive was left out. The drive keeps going without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameRejection {
    NoCaptureTime,
    XmpOnlyGps,
    CorruptExif,
    OutsideTrack,
    NearDuplicate,
    NoPosition,
    TooManyPixels,
    NotJpeg,
}

impl FrameRejection {
    pub const ALL: [FrameRejection; 8] = [
        FrameRejection::NoCaptureTime,
        FrameRejection::XmpOnlyGps,
        FrameRejection::CorruptExif,
        FrameRejection::OutsideTrack,
        FrameRejection::NearDuplicate,
        FrameRejection::NoPosition,
        FrameRejection::TooManyPixels,
        FrameRejection::NotJpeg,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FrameRejection::NoCaptureTime => "no_capture_time",
            FrameRejection::XmpOnlyGps => "xmp_only_gps",
            FrameRejection::CorruptExif => "corrupt_exif",
            FrameRejection::OutsideTrack => "outside_track",
            FrameRejection::NearDuplicate => "near_duplicate",
            FrameRejection::NoPosition => "no_position",
            FrameRejection::TooManyPixels => "too_many_pixels",
            FrameRejection::NotJpeg => "not_jpeg",
        }
    }
}

impl FrameMeta {
    /// What decoding the frame would cost, to hold against a limit before decoding it.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// When the frame was taken, in UTC: satellite time if the camera wrote it, else its clock
    /// with the offset it wrote, else its clock read in `local_utc_offset` (the driver's zone).
    /// `camera_offset` then corrects the result whatever its source, as mapillary_tools'
    /// `--offset_time` does: whoever sets it has compared these very times with the track.
    pub fn capture_time(
        &self,
        camera_offset: Duration,
        local_utc_offset: Option<FixedOffset>,
    ) -> Result<DateTime<Utc>, FrameRejection> {
        let local = || {
            let zone = local_utc_offset?;
            let at = self.taken_local?.and_local_timezone(zone).single()?;
            Some(at.with_timezone(&Utc))
        };
        self.gps_time
            .or(self.taken_at)
            .or_else(local)
            .and_then(|at| at.checked_add_signed(camera_offset))
            .ok_or(FrameRejection::NoCaptureTime)
    }

    /// Where the frame says it was taken and which way it looked, for drives without a track.
    pub fn position(&self) -> Result<(LatLon, Option<f64>), FrameRejection> {
        match self.gps {
            Some(gps) => LatLon::new(gps.lat, gps.lon)
                .map(|pos| (pos, gps.direction_deg))
                .map_err(|_| FrameRejection::NoPosition),
            None if self.xmp_gps => Err(FrameRejection::XmpOnlyGps),
            None => Err(FrameRejection::NoPosition),
        }
    }
}

/// Reads a JPEG's size and what its EXIF says about place and time.
///
/// A frame without EXIF, or whose tags are missing or nonsense, is read with those fields `None`;
/// only bytes that are not a JPEG, or an EXIF block that cannot be parsed at all, are errors.
pub fn read_frame_meta(jpeg: &[u8]) -> Result<FrameMeta, FrameError> {
    let segments = jpeg_segments(jpeg)?;
    let (width, height) = segments.size.ok_or(FrameError::NotJpeg(
        "no frame header (SOF) before the image data",
    ))?;
    if width == 0 || height == 0 {
        return Err(FrameError::NotJpeg("the frame header gives no size"));
    }
    let exif = segments.exif.map(read_exif).transpose()?;
    let gps = exif.as_ref().and_then(read_gps);
    let (taken_at, taken_local) = exif.as_ref().map(read_taken).unwrap_or_default();
    Ok(FrameMeta {
        width,
        height,
        gps,
        gps_time: exif.as_ref().and_then(read_gps_time),
        taken_at,
        taken_local,
        xmp_gps: segments.xmp_gps && gps.is_none(),
    })
}

/// The camera a frame says it came from: make, model and body serial number as its EXIF writes
/// them, joined by spaces; `None` without EXIF or when the camera named itself not at all.
pub fn camera_of(jpeg: &[u8]) -> Option<String> {
    let exif = read_exif(jpeg_segments(jpeg).ok()?.exif?).ok()?;
    let parts: Vec<String> = [Tag::Make, Tag::Model, Tag::BodySerialNumber]
        .into_iter()
        .filter_map(|t| ascii(&exif, t))
        .map(|b| {
            String::from_utf8_lossy(b)
                .trim_matches(['\0', ' '])
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

#[derive(Debug, Default)]
struct Segments<'a> {
    size: Option<(u32, u32)>,
    /// The TIFF structure inside the first APP1 "Exif" segment.
    exif: Option<&'a [u8]>,
    xmp_gps: bool,
}

/// Walks the marker segments from SOI to the first scan (SOS), where the headers end.
fn jpeg_segments(jpeg: &[u8]) -> Result<Segments<'_>, FrameError> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return Err(FrameError::NotJpeg("no SOI marker"));
    }
    let mut out = Segments::default();
    let mut i = 2;
    while i < jpeg.len() {
        // Bytes between segments are junk that decoders skip; so do we.
        if jpeg[i] != 0xFF {
            i += 1;
            continue;
        }
        // A marker may be padded with any number of 0xFF.
        while jpeg.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = jpeg.get(i) else { break };
        i += 1;
        match marker {
            0x00 | 0x01 | 0xD0..=0xD8 => continue, // no length: stuffing, TEM, RSTn, SOI
            0xD9 | 0xDA => break,                  // EOI, SOS: the headers are over
            _ => {}
        }
        let Some(len) = jpeg
            .get(i..i + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            break;
        };
        if len < 2 {
            return Err(FrameError::NotJpeg(
                "a segment shorter than its length field",
            ));
        }
        let Some(body) = jpeg.get(i + 2..i + len) else {
            break; // truncated: keep what was read
        };
        i += len;
        match marker {
            // SOF0-15 less DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF if out.size.is_none() => {
                if let [_precision, h1, h2, w1, w2, ..] = *body {
                    let height = u16::from_be_bytes([h1, h2]);
                    let width = u16::from_be_bytes([w1, w2]);
                    out.size = Some((width.into(), height.into()));
                }
            }
            0xE1 if out.exif.is_none() && body.starts_with(EXIF_ID) => {
                out.exif = Some(&body[EXIF_ID.len()..]);
            }
            0xE1 if XMP_IDS.iter().any(|id| body.starts_with(id)) => {
                out.xmp_gps |= body.windows(11).any(|w| w == b"GPSLatitude");
            }
            _ => {}
        }
    }
    Ok(out)
}

fn read_exif(tiff: &[u8]) -> Result<Exif, FrameError> {
    match exif::Reader::new()
        .continue_on_error(true)
        .read_raw(tiff.to_vec())
    {
        Ok(exif) => Ok(exif),
        // Some writers leave broken links between IFDs (HTC's test_exif.jpg has three); the tags
        // read up to them are good, and each is checked on its own below.
        Err(exif::Error::PartialResult(partial)) => Ok(partial.into_inner().0),
        Err(e) => Err(FrameError::CorruptExif(e.to_string())),
    }
}

fn value(exif: &Exif, tag: Tag) -> Option<&Value> {
    exif.get_field(tag, In::PRIMARY).map(|f| &f.value)
}

fn ascii(exif: &Exif, tag: Tag) -> Option<&[u8]> {
    match value(exif, tag)? {
        Value::Ascii(strings) => strings.first().map(Vec::as_slice),
        _ => None,
    }
}

fn rationals(exif: &Exif, tag: Tag) -> Option<Vec<f64>> {
    match value(exif, tag)? {
        Value::Rational(v) => Some(v.iter().map(exif::Rational::to_f64).collect()),
        Value::SRational(v) => Some(v.iter().map(exif::SRational::to_f64).collect()),
        _ => None,
    }
}

/// The first rational of a tag; a zero denominator reads as absent.
fn rational(exif: &Exif, tag: Tag) -> Option<f64> {
    rationals(exif, tag)?
        .first()
        .copied()
        .filter(|v| v.is_finite())
}

fn read_gps(exif: &Exif) -> Option<ExifGps> {
    let lat = degrees(exif, Tag::GPSLatitude, Tag::GPSLatitudeRef, b'N', b'S')?;
    let lon = degrees(exif, Tag::GPSLongitude, Tag::GPSLongitudeRef, b'E', b'W')?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return None;
    }
    // Cameras without a fix often write 0/0 rather than nothing.
    if lat == 0.0 && lon == 0.0 {
        return None;
    }
    let below_sea_level =
        matches!(value(exif, Tag::GPSAltitudeRef), Some(Value::Byte(b)) if b.first() == Some(&1));
    let mps_per_unit = match ascii(exif, Tag::GPSSpeedRef) {
        None | Some(b"K") => Some(1000.0 / 3600.0),
        Some(b"M") => Some(1609.344 / 3600.0),
        Some(b"N") => Some(1852.0 / 3600.0),
        Some(_) => None,
    };
    Some(ExifGps {
        lat,
        lon,
        altitude_m: rational(exif, Tag::GPSAltitude).map(|a| if below_sea_level { -a } else { a }),
        speed_mps: rational(exif, Tag::GPSSpeed)
            .zip(mps_per_unit)
            .map(|(v, unit)| v * unit),
        direction_deg: rational(exif, Tag::GPSImgDirection)
            .or_else(|| rational(exif, Tag::GPSTrack))
            .filter(|d| (0.0..=360.0).contains(d))
            .map(|d| d % 360.0),
        dop: rational(exif, Tag::GPSDOP),
    })
}

/// Degrees, minutes, seconds and the hemisphere letter. Without the letter the sign is unknown,
/// and no position beats one in the wrong hemisphere.
fn degrees(exif: &Exif, tag: Tag, hemisphere: Tag, plus: u8, minus: u8) -> Option<f64> {
    let magnitude = match rationals(exif, tag)?.as_slice() {
        [d] => *d,
        [d, m] => d + m / 60.0,
        [d, m, s, ..] => d + m / 60.0 + s / 3600.0,
        [] => return None,
    };
    if !magnitude.is_finite() || magnitude < 0.0 {
        return None;
    }
    match ascii(exif, hemisphere)?.first()?.to_ascii_uppercase() {
        c if c == plus => Some(magnitude),
        c if c == minus => Some(-magnitude),
        _ => None,
    }
}

fn read_gps_time(exif: &Exif) -> Option<DateTime<Utc>> {
    let stamp = std::str::from_utf8(ascii(exif, Tag::GPSDateStamp)?).ok()?;
    let mut parts = stamp
        .split([':', '-'])
        .map(|p| p.trim().parse::<u32>().ok());
    let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
    let date = plausible(NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?)?;
    let hms = rationals(exif, Tag::GPSTimeStamp)?;
    let [h, mi, s] = hms[..] else {
        return None;
    };
    let seconds = h * 3600.0 + mi * 60.0 + s;
    if !(0.0..86_400.0).contains(&seconds) {
        return None;
    }
    // Whole milliseconds of a day always fit an i64; `as` cannot overflow here.
    let ms = (seconds * 1000.0).round() as i64;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc() + Duration::milliseconds(ms))
}

/// DateTimeOriginal, with its subseconds, in UTC when the camera wrote its offset and as local
/// clock time when it did not.
fn read_taken(exif: &Exif) -> (Option<DateTime<Utc>>, Option<NaiveDateTime>) {
    let Some(mut t) =
        ascii(exif, Tag::DateTimeOriginal).and_then(|raw| exif::DateTime::from_ascii(raw).ok())
    else {
        return (None, None);
    };
    // A bad subsecond or offset costs only itself.
    if let Some(sub) = ascii(exif, Tag::SubSecTimeOriginal) {
        t.parse_subsec(sub).ok();
    }
    if let Some(offset) = ascii(exif, Tag::OffsetTimeOriginal) {
        t.parse_offset(offset).ok();
    }
    let local = NaiveDate::from_ymd_opt(t.year.into(), t.month.into(), t.day.into())
        .and_then(plausible)
        .and_then(|date| {
            let time = NaiveTime::from_hms_nano_opt(
                t.hour.into(),
                t.minute.into(),
                t.second.into(),
                t.nanosecond.unwrap_or(0),
            )?;
            Some(date.and_time(time))
        });
    let Some(local) = local else {
        return (None, None);
    };
    let zone = t
        .offset
        .and_then(|minutes| FixedOffset::east_opt(i32::from(minutes) * 60));
    match zone.and_then(|z| local.and_local_timezone(z).single()) {
        Some(at) => (Some(at.with_timezone(&Utc)), None),
        None => (None, Some(local)),
    }
}

fn plausible(date: NaiveDate) -> Option<NaiveDate> {
    (date.year() >= EARLIEST_YEAR).then_some(date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use exif::Field;
    use exif::experimental::Writer;

    fn ascii_field(tag: Tag, s: &str) -> Field {
        Field {
            tag,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![s.as_bytes().to_vec()]),
        }
    }

    fn rational_field(tag: Tag, parts: &[(u32, u32)]) -> Field {
        Field {
            tag,
            ifd_num: In::PRIMARY,
            value: Value::Rational(parts.iter().map(|&p| p.into()).collect()),
        }
    }

    /// A minimal JPEG: SOI, an APP1 EXIF block made of `fields`, the frame header, SOS, EOI.
    fn jpeg(fields: &[Field], width: u16, height: u16) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        if !fields.is_empty() {
            let mut writer = Writer::new();
            for f in fields {
                writer.push_field(f);
            }
            let mut tiff = std::io::Cursor::new(Vec::new());
            writer.write(&mut tiff, false).unwrap();
            let mut body = EXIF_ID.to_vec();
            body.extend(tiff.into_inner());
            out.extend([0xFF, 0xE1]);
            out.extend(u16::try_from(body.len() + 2).unwrap().to_be_bytes());
            out.extend(body);
        }
        out.extend([0xFF, 0xC0, 0x00, 0x0B, 0x08]);
        out.extend(height.to_be_bytes());
        out.extend(width.to_be_bytes());
        out.extend([0x01, 0x01, 0x11, 0x00]);
        out.extend([0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
        out.extend([0x12, 0x34, 0xFF, 0x00, 0xFF, 0xD9]);
        out
    }

    fn position_fields(lat_ref: &str, lon_ref: &str) -> Vec<Field> {
        vec![
            ascii_field(Tag::GPSLatitudeRef, lat_ref),
            rational_field(Tag::GPSLatitude, &[(45, 1), (30, 1), (36, 1)]),
            ascii_field(Tag::GPSLongitudeRef, lon_ref),
            rational_field(Tag::GPSLongitude, &[(122, 1), (15, 1), (0, 1)]),
        ]
    }

    #[test]
    fn size_comes_from_the_frame_header_without_decoding() {
        // 60000 x 60000 would be 3.6 Gpx decoded; reading it costs a few bytes.
        let meta = read_frame_meta(&jpeg(&[], 60_000, 60_000)).unwrap();
        assert_eq!(
            (meta.width, meta.height, meta.pixels()),
            (60_000, 60_000, 3_600_000_000)
        );
        assert_eq!(meta.gps, None);
        assert_eq!(
            meta.capture_time(Duration::zero(), None),
            Err(FrameRejection::NoCaptureTime)
        );
        assert_eq!(meta.position(), Err(FrameRejection::NoPosition));
    }

    #[test]
    fn hemispheres_are_applied_and_nonsense_is_no_position() {
        let meta = read_frame_meta(&jpeg(&position_fields("S", "W"), 8, 8)).unwrap();
        let gps = meta.gps.unwrap();
        assert!((gps.lat + 45.51).abs() < 1e-12 && (gps.lon + 122.25).abs() < 1e-12);
        assert_eq!(gps.altitude_m, None);

        let mut no_ref = position_fields("S", "W");
        no_ref.remove(0);
        let mut too_far = position_fields("N", "E");
        too_far[1] = rational_field(Tag::GPSLatitude, &[(91, 1), (0, 1), (0, 1)]);
        let mut zero_denominator = position_fields("N", "E");
        zero_denominator[3] = rational_field(Tag::GPSLongitude, &[(1, 0), (0, 1), (0, 1)]);
        let null_island = vec![
            ascii_field(Tag::GPSLatitudeRef, "N"),
            rational_field(Tag::GPSLatitude, &[(0, 1), (0, 1), (0, 1)]),
            ascii_field(Tag::GPSLongitudeRef, "E"),
            rational_field(Tag::GPSLongitude, &[(0, 1), (0, 1), (0, 1)]),
        ];
        for fields in [no_ref, too_far, zero_denominator, null_island] {
            let meta = read_frame_meta(&jpeg(&fields, 8, 8)).unwrap();
            assert_eq!(meta.gps, None, "{fields:?}");
        }
    }

    #[test]
    fn speed_altitude_and_direction_are_converted() {
        let mut fields = position_fields("N", "E");
        fields.extend([
            ascii_field(Tag::GPSSpeedRef, "N"),
            rational_field(Tag::GPSSpeed, &[(10, 1)]),
            Field {
                tag: Tag::GPSAltitudeRef,
                ifd_num: In::PRIMARY,
                value: Value::Byte(vec![1]),
            },
            rational_field(Tag::GPSAltitude, &[(125, 10)]),
            rational_field(Tag::GPSTrack, &[(360, 1)]),
            rational_field(Tag::GPSDOP, &[(3, 2)]),
        ]);
        let gps = read_frame_meta(&jpeg(&fields, 8, 8)).unwrap().gps.unwrap();
        assert!((gps.speed_mps.unwrap() - 5.144).abs() < 1e-3);
        assert_eq!(gps.altitude_m, Some(-12.5));
        assert_eq!(gps.direction_deg, Some(0.0));
        assert_eq!(gps.dop, Some(1.5));
    }

    #[test]
    fn times_before_1990_are_no_times() {
        for (original, stamp) in [
            ("1970:01:01 00:00:00", "1970:01:01"),
            ("0000:00:00 00:00:00", "0000:00:00"),
            ("1989:12:31 23:59:59", "1989:12:31"),
            ("2020:13:01 00:00:00", "2020:02:30"),
            ("    :  :     :  :  ", "garbage"),
        ] {
            let fields = [
                ascii_field(Tag::DateTimeOriginal, original),
                ascii_field(Tag::GPSDateStamp, stamp),
                rational_field(Tag::GPSTimeStamp, &[(1, 1), (2, 1), (3, 1)]),
            ];
            let meta = read_frame_meta(&jpeg(&fields, 8, 8)).unwrap();
            assert_eq!(
                (meta.gps_time, meta.taken_at, meta.taken_local),
                (None, None, None),
                "{original}"
            );
        }
    }

    #[test]
    fn capture_time_prefers_gps_then_offset_then_the_drivers_zone() {
        let utc = |h, m, s| Utc.with_ymd_and_hms(2024, 5, 6, h, m, s).unwrap();
        let gps_time = [
            ascii_field(Tag::GPSDateStamp, "2024:05:06"),
            rational_field(Tag::GPSTimeStamp, &[(10, 1), (0, 1), (1250, 100)]),
        ];
        let original = ascii_field(Tag::DateTimeOriginal, "2024:05:06 12:00:10");
        let subsec = ascii_field(Tag::SubSecTimeOriginal, "25");
        let offset = ascii_field(Tag::OffsetTimeOriginal, "+02:00");
        let plus_two = FixedOffset::east_opt(7200);
        let no_shift = Duration::zero();

        let all = [
            gps_time.to_vec(),
            vec![original.clone(), subsec.clone(), offset.clone()],
        ];
        let meta = read_frame_meta(&jpeg(&all.concat(), 8, 8)).unwrap();
        let gps_at = utc(10, 0, 12) + Duration::milliseconds(500);
        assert_eq!(meta.gps_time, Some(gps_at));
        assert_eq!(
            meta.taken_at,
            Some(utc(10, 0, 10) + Duration::milliseconds(250))
        );
        assert_eq!(meta.taken_local, None);
        assert_eq!(meta.capture_time(no_shift, None), Ok(gps_at));
        assert_eq!(
            meta.capture_time(Duration::seconds(-3), None),
            Ok(gps_at - Duration::seconds(3))
        );

        let meta = read_frame_meta(&jpeg(&[original.clone(), offset], 8, 8)).unwrap();
        assert_eq!(meta.capture_time(no_shift, None), Ok(utc(10, 0, 10)));

        let meta = read_frame_meta(&jpeg(&[original], 8, 8)).unwrap();
        assert_eq!(meta.taken_at, None);
        assert_eq!(
            meta.capture_time(no_shift, None),
            Err(FrameRejection::NoCaptureTime),
            "local clock time without a zone is no time"
        );
        assert_eq!(meta.capture_time(no_shift, plus_two), Ok(utc(10, 0, 10)));
    }

    #[test]
    fn what_is_not_a_jpeg_says_so() {
        let no_sof = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9];
        let bad_length = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01];
        for bytes in [&b""[..], b"GIF89a", b"\x89PNG\r\n", &no_sof, &bad_length] {
            let err = read_frame_meta(bytes).unwrap_err();
            assert_eq!(err.code(), "not_jpeg", "{err}");
            assert_eq!(err.rejection(), FrameRejection::NotJpeg);
        }
        // Cut anywhere, a JPEG gives an answer, never a panic.
        let whole = jpeg(&position_fields("N", "E"), 8, 8);
        for end in 0..whole.len() {
            let _ = read_frame_meta(&whole[..end]);
        }
    }

    #[test]
    fn an_exif_block_that_does_not_parse_is_corrupt_exif() {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x0E];
        bytes.extend(b"Exif\0\0XX*\0\0\0");
        bytes.extend(&jpeg(&[], 8, 8)[2..]);
        let err = read_frame_meta(&bytes).unwrap_err();
        assert_eq!(err.code(), "corrupt_exif", "{err}");
        assert_eq!(FrameRejection::CorruptExif.as_str(), "corrupt_exif");
    }

    #[test]
    fn xmp_only_positions_are_named() {
        let mut bytes = vec![0xFF, 0xD8];
        let mut xmp = XMP_IDS[0].to_vec();
        xmp.extend(b"<x:xmpmeta><rdf:Description exif:GPSLatitude=\"0,4.21601S\"/></x:xmpmeta>");
        bytes.extend([0xFF, 0xE1]);
        bytes.extend(u16::try_from(xmp.len() + 2).unwrap().to_be_bytes());
        bytes.extend(xmp);
        bytes.extend(&jpeg(&[], 8, 8)[2..]);
        let meta = read_frame_meta(&bytes).unwrap();
        assert!(meta.xmp_gps);
        assert_eq!(meta.position(), Err(FrameRejection::XmpOnlyGps));
    }

    #[test]
    fn rejections_serialize_as_their_codes() {
        for r in FrameRejection::ALL {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.as_str())
            );
        }
    }
}
