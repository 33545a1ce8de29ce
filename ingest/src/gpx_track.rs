//! GPX 1.0 / 1.1 tracks, as dashcams, phone apps and gpx.studio write them.

use chrono::{DateTime, Utc};

use crate::track::RawPoint;
use crate::{IngestError, IngestPolicy, Track};

/// Reads every track point of every track and segment, in file order, and checks each one.
/// Routes and waypoints are plans, not drives, and are not read.
pub fn parse_gpx(
    bytes: &[u8],
    received_at: DateTime<Utc>,
    policy: &IngestPolicy,
) -> Result<Track, IngestError> {
    let gpx = gpx::read(bytes).map_err(|e| IngestError::NotGpx(e.to_string()))?;
    let points = gpx
        .tracks
        .iter()
        .flat_map(|t| &t.segments)
        .flat_map(|s| &s.points)
        .map(|w| {
            let p = w.point();
            RawPoint {
                lat: p.y(),
                lon: p.x(),
                time: w
                    .time
                    .and_then(|t| t.format().ok())
                    .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                    .map(|t| t.with_timezone(&Utc)),
            }
        });
    Track::check(points, received_at, policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FixRejection;
    use chrono::TimeZone;
    use std::path::PathBuf;

    fn shared(rel: &str) -> Vec<u8> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data")
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
