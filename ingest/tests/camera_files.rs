//! The camera formats read on real files from other projects' test suites (provenance in
//! testdata/README.md). Where an upstream test asserts a value, the expectation here is that
//! value and says where it comes from. A missing file fails the test, naming the path.

#![allow(clippy::unwrap_used, clippy::panic)]

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use covermap_ingest::{
    FrameMeta, FrameRejection, GeotagParams, Geotagged, IngestError, IngestPolicy, NmeaPoint,
    geotag, geotag_from_exif, parse_gpx, parse_nmea, read_frame_meta, read_nmea,
};

fn camera_file(rel: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/camera/").to_owned() + rel;
    std::fs::read(&path).unwrap_or_else(|e| panic!("test data {path} is missing: {e}"))
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn ms(at: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    at + Duration::milliseconds(ms)
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

fn frame(rel: &str) -> FrameMeta {
    read_frame_meta(&camera_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn assert_each_frame_once(frames: usize, out: &Geotagged) {
    let mut seen: Vec<usize> = out.sequences.iter().flatten().map(|f| f.index).collect();
    seen.extend(out.rejected.iter().map(|r| r.0));
    seen.sort_unstable();
    assert_eq!(seen, (0..frames).collect::<Vec<_>>());
}

// ---- NMEA ----

#[test]
fn nmea1_log_reads_every_line_and_993_fixes() {
    let log = read_nmea(&camera_file("nmea/nmea1.log")).unwrap();
    // AeroRust/nmea tests/file_log_parser: every one of the file's 14255 lines parses, so
    // none fails its checksum. 314 RMC say V and 314 GGA say quality 0; 993 epochs have a fix.
    assert_eq!((log.sentences, log.garbled), (14_255, 0));
    assert_eq!((log.without_fix, log.undated), (628, 0));
    assert_eq!(log.points.len(), 993);
    let first = log.points[0];
    // $GPRMC,110124,A,5505.330990,N,03858.587325,E,152.6,86.2,310317 + its GGA (alt 2177.0).
    assert_eq!(first.time, utc(2017, 3, 31, 11, 1, 24));
    assert!(close(first.lat, 55.0 + 5.330_99 / 60.0, 1e-12));
    assert!(close(first.lon, 38.0 + 58.587_325 / 60.0, 1e-12));
    assert!(close(first.speed_mps.unwrap(), 78.5, 0.05), "152.6 kn");
    assert_eq!(
        (first.course_deg, first.altitude_m, first.hdop),
        (Some(86.2), Some(2177.0), Some(0.9))
    );
    assert_eq!(log.points[992].time, utc(2017, 3, 31, 11, 19, 7));
    assert!(log.points.windows(2).all(|w| w[0].time < w[1].time));
}

#[test]
fn nmea1_log_is_refused_as_an_aircraft() {
    let bytes = camera_file("nmea/nmea1.log");
    let received = utc(2017, 4, 1, 0, 0, 0); // the day after; default max_age is 30 days
    let policy = IngestPolicy::default();

    // The log starts at 2040 m and 150 kn (78 m/s, ~280 km/h), descending; its first 7 s move
    // faster than 60 m/s step after step — no GNSS glitch jumps away coherently like that. The
    // whole log is refused, naming the speed.
    let err = parse_nmea(&bytes, received, &policy).unwrap_err();
    assert_eq!(err.code(), "implausible_speed");
    match err {
        IngestError::SustainedSpeed { seconds, speed_mps } => {
            assert!((5.0..=8.0).contains(&seconds), "{seconds}");
            assert!((60.0..=85.0).contains(&speed_mps), "{speed_mps}");
        }
        other => panic!("{other:?}"),
    }

    // Without that rule (a looser policy), the per-fix rule still flags each fast step: 17 of
    // the 993 fixes are implausible jumps, and the slow rest of the log stands.
    let lenient = IngestPolicy {
        max_fast: std::time::Duration::from_secs(3600),
        ..policy
    };
    let track = parse_nmea(&bytes, received, &lenient).unwrap();
    assert_eq!((track.fixes.len(), track.rejected.len()), (976, 17));
    assert_eq!(track.summary().rejected["implausible_jump"], 17);

    // Those first 7 s alone are mostly jumps: refused by the per-fix majority rule too.
    let text = String::from_utf8(bytes).unwrap();
    let first_seconds: String = text
        .lines()
        .take_while(|l| !l.starts_with("$GPRMC,,V"))
        .map(|l| format!("{l}\n"))
        .collect();
    let err = parse_nmea(first_seconds.as_bytes(), received, &lenient).unwrap_err();
    assert_eq!(err.code(), "implausible_speed");
    assert!(
        matches!(
            err,
            IngestError::ImplausibleTrack {
                rejected: 6,
                total: 7,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("60 m/s"), "{err}");
}

#[test]
fn nmea2_log_is_a_receiver_without_a_fix() {
    let bytes = camera_file("nmea/nmea2.log");
    match read_nmea(&bytes) {
        Err(IngestError::NoFix { sentences: 36 }) => {}
        other => panic!("{other:?}"),
    }
    let err = parse_nmea(&bytes, Utc::now(), &IngestPolicy::default()).unwrap_err();
    assert_eq!(err.code(), "no_gnss_fix");
}

#[test]
fn multi_gnss_log_reads_its_gn_fixes() {
    let log = read_nmea(&camera_file("nmea/nmea_with_sat_info.log")).unwrap();
    // AeroRust/nmea tests/file_log_parser test_parse_all_logs parses every line of this log
    // (CRLF, GP/GN/GL/GA/PQ talkers) without error.
    assert_eq!((log.sentences, log.garbled), (518, 0));
    assert_eq!(
        log.without_fix, 2,
        "the opening $GPRMC,,V and $GPGGA quality 0"
    );
    assert_eq!(log.points.len(), 36);
    let first: NmeaPoint = log.points[0];
    // $GNRMC,052345.77,A,4210.472433,N,02445.362882,E,0.0,,130422 + $GNGGA ... 0.7,171.9,M
    assert_eq!(first.time, ms(utc(2022, 4, 13, 5, 23, 45), 770));
    assert!(close(first.lat, 42.0 + 10.472_433 / 60.0, 1e-12));
    assert!(close(first.lon, 24.0 + 45.362_882 / 60.0, 1e-12));
    assert_eq!(
        (
            first.speed_mps,
            first.course_deg,
            first.altitude_m,
            first.hdop
        ),
        (Some(0.0), None, Some(171.9), Some(0.7))
    );
    assert_eq!(log.points[35].time, utc(2022, 4, 13, 5, 24, 21));
}

#[test]
fn blackvue_lines_are_read_and_the_garbled_ones_counted() {
    let log = read_nmea(&camera_file(
        "blackvue/blackvue_gps_excerpt_from_mapillary_test.gps",
    ))
    .unwrap();
    // The two "invalid line"s of mapillary_tools' test_parse_points; the two Python lines the
    // excerpt kept (`"""`, `gps_data = b"""`) hold no '$' and are not sentences.
    assert_eq!((log.sentences, log.garbled, log.without_fix), (14, 2, 0));
    let times: Vec<_> = log.points.iter().map(|p| p.time).collect();
    assert_eq!(
        times,
        vec![
            utc(2021, 6, 7, 20, 12, 4), // a GGA, dated by the RMC beside it
            utc(2021, 6, 7, 20, 12, 5),
            utc(2021, 6, 7, 20, 12, 8),
            utc(2021, 11, 24, 11, 4, 48),
            utc(2021, 11, 24, 11, 4, 49),
        ]
    );
    // mapillary_tools tests/unit/test_blackvue_parser.py: test_parse_points expects epoch
    // 1623096725 and 1623096728 at lat 38.88615816666667, lon -76.992434 (from the RMCs); an
    // older version of it expects the 201204 GGA at 38.8861575, -76.99239516666667, alt 10.2,
    // and the 201205 GGA at alt 7.7; test_timezone_offset_applied_to_all_points expects the
    // 24 Nov RMCs at epoch 1637751888 and 1637751889.
    let p = &log.points;
    assert_eq!(p[1].time.timestamp(), 1_623_096_725);
    assert_eq!(p[2].time.timestamp(), 1_623_096_728);
    assert_eq!(p[3].time.timestamp(), 1_637_751_888);
    assert_eq!(p[4].time.timestamp(), 1_637_751_889);
    for q in [&p[1], &p[2], &p[3]] {
        assert!(close(q.lat, 38.886_158_166_666_67, 1e-12), "{q:?}");
        assert!(close(q.lon, -76.992_434, 1e-12), "{q:?}");
    }
    assert!(close(p[0].lat, 38.886_157_5, 1e-12) && close(p[0].lon, -76.992_395_166_666_67, 1e-12));
    assert_eq!((p[0].altitude_m, p[1].altitude_m), (Some(10.2), Some(7.7)));
    assert_eq!(p[1].hdop, Some(0.82));
    assert!(close(
        p[1].speed_mps.unwrap(),
        5.849 * 1852.0 / 3600.0,
        1e-9
    ));
    // The camera clock of each epoch: the RMC's line where there is one.
    let cams: Vec<_> = p.iter().map(|q| q.camera_ms).collect();
    assert_eq!(
        cams,
        vec![
            Some(1_623_057_129_253),
            Some(1_623_057_129_256),
            Some(1_623_057_132_256),
            Some(1_637_762_688_000),
            Some(1_637_762_689_000),
        ]
    );
}

// ---- EXIF ----

#[test]
fn sony_frames_are_in_portland_with_gps_time() {
    // mapillary_tools tests/integration (test_process.py and others), EXPECTED_DESCS:
    // DSC00001.JPG MAPLatitude 45.5169031, MAPLongitude -122.572765, MAPAltitude 70.3,
    // TrueHeading 270.89, MAPCaptureTime 2018_06_08_20_24_11_000; DSC00497.JPG 45.5107231,
    // -122.5760514, 77.5, 271.27, 2018_06_08_20_32_28_000.
    for (file, lat, lon, alt, heading, gps_time, taken, kmh, dop) in [
        (
            "DSC00001.JPG",
            45.516_903_1,
            -122.572_765,
            70.3,
            270.89,
            utc(2018, 6, 8, 20, 24, 11),
            utc(2018, 6, 8, 20, 24, 10), // DateTimeOriginal 13:24:10 at -07:00
            22.95,
            1.78,
        ),
        (
            "DSC00497.JPG",
            45.510_723_1,
            -122.576_051_4,
            77.5,
            271.27,
            utc(2018, 6, 8, 20, 32, 28),
            utc(2018, 6, 8, 20, 32, 28),
            16.27,
            1.83,
        ),
    ] {
        let meta = frame(&format!("mapillary_tools/{file}"));
        assert_eq!((meta.width, meta.height), (3840, 2160), "{file}");
        let gps = meta.gps.unwrap();
        assert!(
            close(gps.lat, lat, 5e-8) && close(gps.lon, lon, 5e-8),
            "{file}: {gps:?}"
        );
        assert_eq!(gps.altitude_m, Some(alt), "{file}");
        assert_eq!(gps.direction_deg, Some(heading), "{file}: GPSTrack");
        assert!(close(gps.speed_mps.unwrap(), kmh / 3.6, 1e-9), "{file}");
        assert_eq!(gps.dop, Some(dop), "{file}");
        assert_eq!(meta.gps_time, Some(gps_time), "{file}");
        assert_eq!(meta.taken_at, Some(taken), "{file}");
        assert_eq!((meta.taken_local, meta.xmp_gps), (None, false), "{file}");
        assert_eq!(meta.capture_time(Duration::zero(), None), Ok(gps_time));
        let (pos, direction) = meta.position().unwrap();
        assert_eq!(
            (pos.lat, pos.lon, direction),
            (gps.lat, gps.lon, Some(heading))
        );
    }
}

#[test]
fn htc_frame_reads_past_its_broken_ifd_links() {
    // kamadak-exif reads 40 tags, then three "Unexpected next IFD" errors; the tags are good.
    // mapillary_tools tests/unit/test_exifread.py: capture time 2011-07-15T09:14:39+00:00, the
    // GPS time, not DateTimeOriginal 2018:06:26 17:46:33 (and "SubSecTime" is not its subsecond).
    let meta = frame("mapillary_tools/test_exif.jpg");
    assert_eq!(
        (meta.width, meta.height),
        (16, 16),
        "SOF, not EXIF's 1920x2560"
    );
    let gps = meta.gps.unwrap();
    assert!(close(gps.lat, 35.0 + 54.0 / 60.0 + 45.06 / 3600.0, 1e-12));
    assert!(close(gps.lon, 14.0 + 29.0 / 60.0 + 55.7 / 3600.0, 1e-12));
    assert_eq!((gps.altitude_m, gps.direction_deg), (Some(69.0), Some(1.0)));
    assert_eq!(meta.gps_time, Some(utc(2011, 7, 15, 9, 14, 39)));
    let local = NaiveDate::from_ymd_opt(2018, 6, 26)
        .unwrap()
        .and_hms_opt(17, 46, 33)
        .unwrap();
    assert_eq!((meta.taken_at, meta.taken_local), (None, Some(local)));
    assert_eq!(
        meta.capture_time(Duration::zero(), None),
        Ok(utc(2011, 7, 15, 9, 14, 39))
    );
}

#[test]
fn adobe_xmp_only_position_is_named_as_such() {
    // mapillary_tools tests/data/adobe_coords: the position is only in XMP ("0,4.21601S").
    let meta = frame("mapillary_tools/adobe_coords.jpg");
    assert_eq!((meta.width, meta.height), (32, 28));
    assert_eq!(meta.gps, None);
    assert!(meta.xmp_gps);
    assert_eq!(meta.position(), Err(FrameRejection::XmpOnlyGps));
    let local = NaiveDate::from_ymd_opt(2019, 7, 16)
        .unwrap()
        .and_hms_opt(10, 26, 11)
        .unwrap();
    assert_eq!(meta.taken_local, Some(local));
    let plus_three = chrono::FixedOffset::east_opt(3 * 3600);
    assert_eq!(
        meta.capture_time(Duration::seconds(2), plus_three),
        Ok(utc(2019, 7, 16, 7, 26, 13))
    );
}

#[test]
fn mapillary_corrupt_exif_files_are_readable_and_say_what_they_hold() {
    // mapillary_tools made these for piexif, which can load but not re-dump them (a tag of the
    // wrong type, a thumbnail over 64000 bytes). kamadak-exif reads all four without error.

    // A OnePlus frame near Rennes: GPS without time, GPSAltitudeRef of the wrong type and no
    // GPSAltitude, DateTimeOriginal without offset.
    let meta = frame("mapillary_tools/corrupt_exif.jpg");
    assert_eq!((meta.width, meta.height), (16, 16));
    let gps = meta.gps.unwrap();
    assert!(
        close(gps.lat, 48.0 + 4.0 / 60.0 + 51.763_08 / 3600.0, 1e-9),
        "{gps:?}"
    );
    assert!(
        close(gps.lon, -(1.0 + 40.0 / 60.0 + 4.227_96 / 3600.0), 1e-9),
        "{gps:?}"
    );
    assert_eq!(gps.altitude_m, None);
    assert!(close(
        gps.direction_deg.unwrap(),
        147.959_838_867_187_5,
        1e-9
    ));
    assert_eq!((meta.gps_time, meta.taken_at), (None, None));
    let local = NaiveDate::from_ymd_opt(2016, 7, 7)
        .unwrap()
        .and_hms_micro_opt(21, 42, 20, 683_670)
        .unwrap();
    assert_eq!(meta.taken_local, Some(local));
    assert_eq!(
        meta.capture_time(Duration::zero(), None),
        Err(FrameRejection::NoCaptureTime),
        "no zone given for a local clock time"
    );

    // Software=123 (a SHORT), a 64500-byte thumbnail, an empty IFD: no place, no time.
    for (file, size) in [
        ("corrupt_exif_wrong_type.jpg", (32, 32)),
        ("corrupt_exif_large_thumbnail.jpg", (100, 100)),
        ("empty_exif.jpg", (16, 16)),
    ] {
        let meta = frame(&format!("mapillary_tools/{file}"));
        assert_eq!((meta.width, meta.height), size, "{file}");
        assert_eq!(
            (meta.gps, meta.gps_time, meta.taken_at),
            (None, None, None),
            "{file}"
        );
        assert_eq!((meta.taken_local, meta.xmp_gps), (None, false), "{file}");
        assert_eq!(meta.position(), Err(FrameRejection::NoPosition), "{file}");
        assert_eq!(
            meta.capture_time(Duration::zero(), None),
            Err(FrameRejection::NoCaptureTime),
            "{file}"
        );
    }
}

#[test]
fn truncated_frames_are_refused_never_a_panic() {
    let whole = camera_file("mapillary_tools/DSC00001.JPG");
    // The EXIF segment is 42 kB; cut inside it, the file has no frame header.
    let err = read_frame_meta(&whole[..1000]).unwrap_err();
    assert_eq!(err.code(), "not_jpeg", "{err}");
    for end in (0..50_000).step_by(97) {
        let _ = read_frame_meta(&whole[..end]);
    }
    for file in ["corrupt_exif.jpg", "test_exif.jpg", "adobe_coords.jpg"] {
        let bytes = camera_file(&format!("mapillary_tools/{file}"));
        for end in (0..bytes.len()).step_by(7) {
            let _ = read_frame_meta(&bytes[..end]);
        }
    }
}

#[test]
fn exif_rs_sample_has_a_size_and_no_place_or_time() {
    // kamadak/exif-rs examples/reading.rs prints PixelXDimension 15 for tests/exif.jpg; its
    // only date is DateTime (2016:05:04 03:02:01), a modification time, not DateTimeOriginal.
    let meta = frame("exif_rs/exif.jpg");
    assert_eq!((meta.width, meta.height), (15, 7));
    assert_eq!(
        (meta.gps, meta.gps_time, meta.taken_at, meta.taken_local),
        (None, None, None, None)
    );
}

#[test]
fn non_jpeg_camera_files_are_not_jpeg() {
    for file in ["exif_rs/exif.png", "exif_rs/exif.heic", "nmea/nmea1.log"] {
        let err = read_frame_meta(&camera_file(file)).unwrap_err();
        assert_eq!(err.code(), "not_jpeg", "{file}: {err}");
    }
}

// ---- Geotagging ----

#[test]
fn frames_are_placed_on_a_real_gpx_track() {
    // gpx.studio's synthetic 30 km/h drive in San Francisco, 49 points over 93.6 s.
    let policy = IngestPolicy {
        max_age: std::time::Duration::from_secs(100 * 365 * 86_400),
        ..IngestPolicy::default()
    };
    let track = parse_gpx(
        &camera_file("mapillary_tools/sf_30km_h.gpx"),
        Utc::now(),
        &policy,
    )
    .unwrap();
    let (start, end) = (track.fixes[0].at, track.fixes[track.fixes.len() - 1].at);
    let frames: Vec<(usize, DateTime<Utc>)> = (0..100)
        .map(|i| (i, start + Duration::seconds(i64::try_from(i).unwrap() - 3)))
        .collect();
    let out = geotag(&frames, &track.fixes, &GeotagParams::default());
    assert_each_frame_once(frames.len(), &out);
    let outside = frames.iter().filter(|f| f.1 < start || f.1 > end).count();
    assert_eq!(out.rejected.len(), outside);
    assert!(
        out.rejected
            .iter()
            .all(|r| r.1 == FrameRejection::OutsideTrack)
    );
    assert_eq!(out.sequences.len(), 1, "1 s apart at 30 km/h: one sequence");
    let placed = &out.sequences[0];
    assert_eq!(placed.len(), frames.len() - outside);
    // Each frame lies on the road between the fixes around it, as far along as 30 km/h
    // (8.33 m/s) carries it; a second's chord is shorter only across a corner.
    for f in placed {
        let before = track.fixes.iter().rfind(|x| x.at <= f.at).unwrap();
        let travelled = (f.at - before.at).as_seconds_f64() * 30.0 / 3.6;
        let off = (before.pos.distance_m(f.pos) - travelled).abs();
        assert!(off < 0.05, "frame {}: {off} m off", f.index);
    }
    for pair in placed.windows(2) {
        let step = pair[0].pos.distance_m(pair[1].pos);
        assert!((5.8..8.4).contains(&step), "{step} m in 1 s");
    }
    assert!(placed.iter().all(|f| (0.0..360.0).contains(&f.heading_deg)));
}

#[test]
fn frames_with_their_own_gps_are_sequenced_from_exif() {
    let mut frames = Vec::new();
    for (i, file) in ["DSC00497.JPG", "DSC00001.JPG", "adobe_coords.jpg"]
        .into_iter()
        .enumerate()
    {
        let meta = frame(&format!("mapillary_tools/{file}"));
        match (meta.capture_time(Duration::zero(), None), meta.position()) {
            (Ok(at), Ok((pos, direction))) => frames.push((i, at, pos, direction)),
            (_, Err(why)) => assert_eq!((i, why), (2, FrameRejection::XmpOnlyGps)),
            (Err(why), _) => panic!("{file}: {why:?}"),
        }
    }
    let out = geotag_from_exif(&frames, &GeotagParams::default());
    // 8 minutes and 700 m apart: two sequences, in time order, headed as the camera says.
    let seqs: Vec<Vec<(usize, f64)>> = out
        .sequences
        .iter()
        .map(|s| s.iter().map(|f| (f.index, f.heading_deg)).collect())
        .collect();
    assert_eq!(seqs, vec![vec![(1, 270.89)], vec![(0, 271.27)]]);
    assert!(out.rejected.is_empty());
}

// ---- a drive as a whole ----

/// The zip a camera app uploads: the frames, stored as they are.
fn drive_zip(files: &[&str]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for f in files {
        zip.start_file(*f, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, &camera_file(&format!("mapillary_tools/{f}"))).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

#[test]
fn a_drive_whose_every_frame_is_out_of_the_window_is_refused_whole() {
    use covermap_domain::UploadKind;
    use covermap_ingest::{IngestRules, check_upload};
    // The Sony's frames were taken 2018-06-08 20:24–20:32 UTC (EXIF GPS time, as above).
    let zip = drive_zip(&["DSC00001.JPG", "DSC00497.JPG"]);
    let rules = IngestRules::default();
    let code =
        |received: DateTime<Utc>| match check_upload(UploadKind::Drive, &zip, received, &rules) {
            Ok(_) => "accepted".to_owned(),
            Err(e) => format!("{}: {e}", e.code()),
        };
    let late = code(utc(2026, 12, 6, 12, 0, 0));
    assert!(
        late.starts_with("frames_too_old: every frame was taken 2018-06-08 or earlier"),
        "{late}"
    );
    assert!(code(utc(2018, 6, 1, 0, 0, 0)).starts_with("frames_in_future"));
    // Received the next morning: news, taken.
    assert_eq!(code(utc(2018, 6, 9, 8, 0, 0)), "accepted");
    assert_eq!(
        covermap_ingest::camera_of(&camera_file("mapillary_tools/DSC00001.JPG")).as_deref(),
        Some("SONY HDR-AS300")
    );
}
