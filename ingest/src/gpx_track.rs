//! GPX 1.0 / 1.1 tracks, as dashcams, phone apps and gpx.studio write them.

use chrono::{DateTime, Utc};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::track::RawPoint;
use crate::{IngestError, IngestPolicy, Track};

/// Reads every track point of every track and segment, in file order, and checks each one.
/// Routes and waypoints are plans, not drives, and are not read.
pub fn parse_gpx(
    bytes: &[u8],
    received_at: DateTime<Utc>,
    policy: &IngestPolicy,
) -> Result<Track, IngestError> {
    let points = read_gpx_points(bytes)?
        .into_iter()
        .map(|(lat, lon, time)| RawPoint { lat, lon, time });
    Track::check(points, received_at, policy)
}

/// A track point as written: latitude, longitude and its time if it has one.
pub type GpxPoint = (f64, f64, Option<DateTime<Utc>>);

/// The track points of a GPX file as written — latitude, longitude and time where there is one —
/// with no rule applied. For tools that take a track as it is (`covermap match`).
///
/// A streaming reader of only what a drive needs (`trkpt` positions and times): files from real
/// writers carry empty or unusual elements (`<name/>` from gpxpy, vendor extensions) that a
/// strict full-schema reader refuses, and none of them matter here.
pub fn read_gpx_points(bytes: &[u8]) -> Result<Vec<GpxPoint>, IngestError> {
    let mut reader = Reader::from_reader(bytes);
    let mut buf = Vec::new();
    let mut points = Vec::new();
    let mut depth = 0usize;
    let mut saw_root = false;
    let mut in_trkpt = false;
    let mut in_time = false;
    let bad = |reader: &Reader<&[u8]>, message: String| {
        IngestError::NotGpx(format!("{message} (at byte {})", reader.buffer_position()))
    };
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| {
            IngestError::NotGpx(format!("{e} (at byte {})", reader.error_position()))
        })?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_start = matches!(event, Event::Start(_));
                let name = e.local_name();
                if depth == 0 && name.as_ref() != b"gpx" {
                    return Err(bad(
                        &reader,
                        format!(
                            "the root element is <{}>, not <gpx>",
                            String::from_utf8_lossy(name.as_ref())
                        ),
                    ));
                }
                saw_root = true;
                match name.as_ref() {
                    b"trkpt" => {
                        let lat = coordinate(e, b"lat").map_err(|m| bad(&reader, m))?;
                        let lon = coordinate(e, b"lon").map_err(|m| bad(&reader, m))?;
                        points.push((lat, lon, None));
                        in_trkpt = is_start;
                    }
                    b"time" if in_trkpt && is_start => in_time = true,
                    _ => {}
                }
                if is_start {
                    depth += 1;
                }
            }
            Event::Text(ref t) if in_time => {
                let text = String::from_utf8_lossy(t.as_ref());
                if let (Some(last), Ok(time)) =
                    (points.last_mut(), DateTime::parse_from_rfc3339(text.trim()))
                {
                    last.2 = Some(time.with_timezone(&Utc));
                }
            }
            Event::End(ref e) => {
                depth = depth.saturating_sub(1);
                match e.local_name().as_ref() {
                    b"trkpt" => in_trkpt = false,
                    b"time" => in_time = false,
                    _ => {}
                }
            }
            Event::Eof => {
                if !saw_root {
                    return Err(bad(&reader, "no <gpx> element".into()));
                }
                if depth > 0 {
                    return Err(bad(
                        &reader,
                        "the file ends before the GPX is closed".into(),
                    ));
                }
                break;
            }
            _ => {}
        }
        buf.clear();
    }
    Ok(points)
}

/// A required `lat`/`lon` attribute as a number. "NaN" parses (and is refused later, per fix).
fn coordinate(e: &BytesStart<'_>, key: &[u8]) -> Result<f64, String> {
    let name = String::from_utf8_lossy(key).into_owned();
    for a in e.attributes() {
        let a = a.map_err(|err| err.to_string())?;
        if a.key.as_ref() == key {
            let v = String::from_utf8_lossy(&a.value).into_owned();
            return v
                .trim()
                .parse()
                .map_err(|_| format!("a track point has {name}={v:?}, not a number"));
        }
    }
    Err(format!("a track point has no {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FixRejection;
    use chrono::TimeZone;
    use std::path::PathBuf;

    fn shared(rel: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata")
            .join(rel);
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("test data {} is missing: {e}", path.display()))
    }

    fn lenient() -> IngestPolicy {
        IngestPolicy {
            max_age: std::time::Duration::from_secs(100 * 365 * 86400),
            ..IngestPolicy::default()
        }
    }

    #[test]
    fn reads_a_real_gpx_studio_track() {
        let bytes = shared("camera/mapillary_tools/sf_30km_h.gpx");
        let track = parse_gpx(&bytes, Utc::now(), &lenient()).unwrap();
        assert!(track.fixes.len() > 10, "{}", track.fixes.len());
        assert!(
            track.rejected.is_empty(),
            "{:?}",
            &track.rejected[..3.min(track.rejected.len())]
        );
        let f = track.fixes[0];
        assert!((37.0..38.5).contains(&f.pos.lat) && (-123.0..-122.0).contains(&f.pos.lon));
        assert!(track.fixes.windows(2).all(|w| w[0].at < w[1].at));
    }

    #[test]
    fn real_tracks_from_other_writers_parse() {
        for file in [
            "wikipedia_example.gpx",
            "garmin_with_extensions.gpx",
            "wahoo_example.gpx",
        ] {
            let bytes = shared(&format!("camera/gpx/{file}"));
            match parse_gpx(&bytes, Utc::now(), &lenient()) {
                Ok(track) => assert!(!track.fixes.is_empty(), "{file}"),
                Err(IngestError::NoPoints | IngestError::NoUsableFixes { .. }) => {}
                Err(e) => panic!("{file}: {e}"),
            }
        }
    }

    #[test]
    fn old_drives_are_too_old_under_the_default_policy() {
        let bytes = shared("camera/mapillary_tools/sf_30km_h.gpx");
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let err = parse_gpx(&bytes, now, &IngestPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("too_old"), "{err}");
    }

    #[test]
    fn malformed_files_are_refused_with_the_parser_message() {
        let bad = shared("camera/gpx/badcharacter.xml");
        assert!(matches!(
            parse_gpx(&bad, Utc::now(), &lenient()),
            Err(IngestError::NotGpx(_))
        ));
        for junk in [
            &b"not xml at all"[..],
            b"<gpx version=\"1.1\"><trk><trkseg><trkpt lat=\"x\"",
        ] {
            let err = parse_gpx(junk, Utc::now(), &lenient()).unwrap_err();
            assert_eq!(err.code(), "invalid_gpx", "{err}");
        }
    }

    #[test]
    fn empty_elements_from_real_writers_are_fine() {
        // gpxpy writes <name/>, <type/>, <desc/>; strict readers refuse them.
        let bytes = shared("roads/graphhopper/issue-13.gpx");
        let points = read_gpx_points(&bytes).unwrap();
        assert_eq!(points.len(), 29);
        assert!(points.iter().all(|p| p.2.is_some()));
    }

    #[test]
    fn routes_and_waypoints_are_not_drives() {
        let gpx = br#"<gpx version="1.1"><wpt lat="1" lon="1"/><rte><rtept lat="2" lon="2"/></rte>
            <trk><trkseg><trkpt lat="3" lon="4"/></trkseg></trk></gpx>"#;
        assert_eq!(read_gpx_points(gpx).unwrap(), vec![(3.0, 4.0, None)]);
    }

    #[test]
    fn future_points_are_left_out() {
        let gpx = br#"<?xml version="1.0"?><gpx version="1.1" creator="t" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>
            <trkpt lat="43.7384" lon="7.4246"><time>2026-11-01T12:00:00Z</time></trkpt>
            <trkpt lat="43.7385" lon="7.4247"><time>2026-11-01T12:00:01Z</time></trkpt>
            <trkpt lat="43.7386" lon="7.4248"><time>2027-11-01T12:00:02Z</time></trkpt>
        </trkseg></trk></gpx>"#;
        let now = Utc.with_ymd_and_hms(2026, 11, 1, 13, 0, 0).unwrap();
        let track = parse_gpx(gpx, now, &IngestPolicy::default()).unwrap();
        assert_eq!(track.fixes.len(), 2);
        assert_eq!(track.rejected, vec![(2, FixRejection::InFuture)]);
    }
}
