//! What the fuzz targets hold every parser's output to, whatever bytes went in.
//!
//! A parser may refuse any input; what it accepts must keep the promises its types make
//! (positions in range, times in the policy's window and in order, every item accounted for).
//! The targets themselves live in `fuzz_targets/`, one per upload format.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use covermap_ingest::radio::{RadioBatch, RadioPolicy};
use covermap_ingest::{DriveLimits, IngestPolicy, Track};

/// The server's clock for every target: a fixed instant, so a finding reproduces.
pub fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
        .single()
        .expect("a valid instant")
}

/// A century: the seed files were recorded years ago, and under the default 30 days every one
/// of their fixes would be refused as too old before the checks that follow could run.
const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The default track rules, but old drives are still news.
pub fn track_policy() -> IngestPolicy {
    IngestPolicy {
        max_age: CENTURY,
        ..IngestPolicy::default()
    }
}

/// The default radio rules, but old readings are still news.
pub fn radio_policy() -> RadioPolicy {
    RadioPolicy {
        max_age: CENTURY,
        ..RadioPolicy::default()
    }
}

/// Drive limits small enough that the fuzzer reaches each of them with small inputs.
pub fn drive_limits() -> DriveLimits {
    DriveLimits {
        max_frames: 8,
        max_entries: 16,
        max_frame_pixels: 40_000_000,
        max_entry_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        max_ratio: 50.0,
    }
}

/// A latitude and longitude a `LatLon` may hold.
pub fn assert_position(lat: f64, lon: f64, what: &str) {
    assert!(
        lat.is_finite() && (-90.0..=90.0).contains(&lat),
        "{what}: latitude {lat} out of range"
    );
    assert!(
        lon.is_finite() && (-180.0..=180.0).contains(&lon),
        "{what}: longitude {lon} out of range"
    );
}

/// A track `parse_*` accepted out of `points` points: every point is either a fix or rejected
/// once; fixes are valid positions, strictly later than the one before and inside the window.
pub fn assert_track(track: &Track, points: usize, policy: &IngestPolicy) {
    assert!(!track.fixes.is_empty(), "an accepted track has no fix");
    assert_eq!(
        track.fixes.len() + track.rejected.len(),
        points,
        "fixes + rejected != points read"
    );
    let latest = received_at() + policy.max_future_skew;
    let earliest = received_at() - policy.max_age;
    for fix in &track.fixes {
        assert_position(fix.pos.lat, fix.pos.lon, "fix");
        assert!(
            (earliest..=latest).contains(&fix.at),
            "fix at {} is outside the policy's window",
            fix.at
        );
    }
    for pair in track.fixes.windows(2) {
        assert!(
            pair[0].at < pair[1].at,
            "fixes out of order: {} then {}",
            pair[0].at,
            pair[1].at
        );
    }
    for pair in track.rejected.windows(2) {
        assert!(pair[0].0 < pair[1].0, "rejections not in upload order");
    }
    if let Some((last, _)) = track.rejected.last() {
        assert!(*last < points, "a rejection names point {last} of {points}");
    }
    let summary = track.summary();
    assert_eq!(summary.points, points);
    assert_eq!(summary.accepted, track.fixes.len());
    assert_eq!(
        summary.rejected.values().sum::<usize>(),
        track.rejected.len()
    );
}

/// A radio batch a parser accepted: every observation inside the policy, every rejection and
/// correction naming an item that was read, and the summary adding up.
pub fn assert_radio_batch(batch: &RadioBatch, policy: &RadioPolicy, max_items: usize) {
    assert!(
        batch.items <= max_items,
        "{} items read; the policy allows {max_items}",
        batch.items
    );
    let now = received_at();
    let earliest = now - policy.max_age;
    // WiGLE 1.4 times are local and may run up to UTC+14 ahead (`LOCAL_TIME_SLACK`).
    let latest = now + policy.max_future_skew + Duration::from_secs(14 * 3600);
    for o in &batch.observations {
        assert_position(o.pos.lat, o.pos.lon, "observation");
        assert!(
            (earliest..=latest).contains(&o.at),
            "observation at {} is outside the policy's window",
            o.at
        );
        if let Some(a) = o.accuracy_m {
            assert!(
                (0.0..=policy.max_accuracy_m).contains(&a),
                "accuracy {a} m kept"
            );
        }
        if let Some(a) = o.altitude_m {
            assert!(
                (policy.min_altitude_m..=policy.max_altitude_m).contains(&a),
                "altitude {a} m kept"
            );
        }
        if let Some(h) = o.heading_deg {
            assert!((0.0..=360.0).contains(&h), "heading {h}° kept");
        }
        if let Some(s) = o.speed_mps {
            assert!(
                (0.0..=policy.max_speed_mps).contains(&s),
                "speed {s} m/s kept"
            );
        }
        if let Some(age) = o.age_ms {
            assert!(
                age.unsigned_abs() <= policy.max_age_ms.unsigned_abs(),
                "age {age} ms kept"
            );
        }
        assert!(!o.emitter_key().is_empty(), "an observation without a key");
    }
    for r in &batch.rejected {
        assert!(
            r.item < batch.items,
            "a rejection names item {} of {}",
            r.item,
            batch.items
        );
    }
    for c in &batch.corrections {
        assert!(
            c.item < batch.items,
            "a correction names item {} of {}",
            c.item,
            batch.items
        );
    }
    let summary = batch.summary();
    assert_eq!(summary.items, batch.items);
    assert_eq!(summary.accepted, batch.observations.len());
    assert_eq!(
        summary.rejected.values().sum::<usize>(),
        batch.rejected.len()
    );
    assert_eq!(
        summary.corrected.values().sum::<usize>(),
        batch.corrections.len()
    );
}
