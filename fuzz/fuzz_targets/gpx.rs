//! GPX tracks: `read_gpx_points` never panics, and what `parse_gpx` accepts is a checked track
//! of exactly the points `read_gpx_points` found.

#![no_main]

use covermap_fuzz::{assert_track, received_at, track_policy};
use covermap_ingest::{parse_gpx, read_gpx_points};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let points = read_gpx_points(data);
    let policy = track_policy();
    let parsed = parse_gpx(data, received_at(), &policy);
    match (&points, &parsed) {
        (Ok(points), Ok(track)) => assert_track(track, points.len(), &policy),
        (Err(_), Ok(_)) => panic!("parse_gpx accepted a file read_gpx_points refused"),
        _ => {}
    }
});
