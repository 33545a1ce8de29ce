//! NMEA 0183 logs: `read_nmea` never panics, its points are one per epoch in time order, and what
//! `parse_nmea` accepts is a checked track of exactly those points.

#![no_main]

use covermap_fuzz::{assert_track, received_at, track_policy};
use covermap_ingest::{parse_nmea, read_nmea};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let log = read_nmea(data);
    if let Ok(log) = &log {
        assert!(
            log.points.len() <= log.sentences,
            "{} points from {} sentences",
            log.points.len(),
            log.sentences
        );
        for pair in log.points.windows(2) {
            assert!(pair[0].time < pair[1].time, "epochs not in time order");
        }
    }
    let policy = track_policy();
    let parsed = parse_nmea(data, received_at(), &policy);
    match (&log, &parsed) {
        (Ok(log), Ok(track)) => assert_track(track, log.points.len(), &policy),
        (Err(_), Ok(_)) => panic!("parse_nmea accepted a log read_nmea refused"),
        _ => {}
    }
});
