//! Drive uploads: a zip of frames and a track (`read_drive`), and gzip bodies
//! (`gunzip_bounded`). Every input is tried as both; an inflated body is tried as a drive,
//! as a gzipped drive upload would be. Limits are small so the fuzzer reaches each of them.

#![no_main]

use covermap_fuzz::{drive_limits, received_at, track_policy};
use covermap_ingest::{TrackFormat, gunzip_bounded, parse_gpx, parse_nmea, read_drive};
use libfuzzer_sys::fuzz_target;

const MAX_OUT: u64 = 1 << 20;
const MAX_RATIO: u64 = 100;

fn drive(data: &[u8]) {
    let limits = drive_limits();
    let Ok(contents) = read_drive(data, &limits) else {
        return;
    };
    assert!(!contents.frames.is_empty(), "a drive without frames");
    assert!(
        contents.frames.len() <= limits.max_frames,
        "too many frames kept"
    );
    let mut total = 0u64;
    for (i, frame) in contents.frames.iter().enumerate() {
        assert_eq!(frame.index, i, "frame index");
        assert!(
            frame.bytes.len() as u64 <= limits.max_entry_bytes,
            "entry over the limit"
        );
        total += frame.bytes.len() as u64;
        if let Ok(meta) = &frame.meta {
            assert!(
                meta.pixels() <= limits.max_frame_pixels,
                "frame over the pixel limit"
            );
        }
    }
    for pair in contents.frames.windows(2) {
        assert!(pair[0].name <= pair[1].name, "frames not in name order");
    }
    if let Some((_, bytes)) = &contents.track {
        total += bytes.len() as u64;
    }
    assert!(
        total <= limits.max_total_bytes,
        "drive over the total limit"
    );
    let summary = contents.summary();
    assert!(
        summary.track.is_some() || summary.frames_with_gps > 0,
        "a drive with neither track nor GPS frames"
    );
    assert!(summary.unreadable_frames <= summary.frames);
    // The worker reads the track next; it must not panic on what a zip carried.
    if let Some((format, bytes)) = &contents.track {
        let _ = match format {
            TrackFormat::Gpx => parse_gpx(bytes, received_at(), &track_policy()),
            TrackFormat::Nmea => parse_nmea(bytes, received_at(), &track_policy()),
        };
    }
}

fuzz_target!(|data: &[u8]| {
    drive(data);
    if let Ok(body) = gunzip_bounded(data, MAX_OUT, MAX_RATIO) {
        let limit = MAX_OUT.min((data.len() as u64 * MAX_RATIO).max(64 * 1024));
        assert!(
            body.len() as u64 <= limit,
            "inflated {} bytes past {limit}",
            body.len()
        );
        drive(&body);
    }
});
