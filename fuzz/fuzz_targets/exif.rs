//! JPEG headers and EXIF: `read_frame_meta` never panics, an accepted frame has a size, and the
//! questions the geotagger asks of it (position, capture time) never panic either.

#![no_main]

use chrono::{Duration, FixedOffset};
use covermap_fuzz::assert_position;
use covermap_ingest::read_frame_meta;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = read_frame_meta(data) else {
        return;
    };
    assert!(meta.width > 0 && meta.height > 0, "a frame of no size");
    assert_eq!(
        meta.pixels(),
        u64::from(meta.width) * u64::from(meta.height)
    );
    if let Ok((pos, _direction)) = meta.position() {
        assert_position(pos.lat, pos.lon, "frame");
    }
    if meta.xmp_gps {
        assert!(meta.gps.is_none(), "xmp_gps set beside EXIF GPS");
    }
    // The extremes a deployment might configure: no offset, and the widest zones.
    let zones = [
        None,
        FixedOffset::east_opt(14 * 3600),
        FixedOffset::west_opt(12 * 3600),
    ];
    for zone in zones {
        for offset in [Duration::zero(), Duration::hours(-24), Duration::hours(24)] {
            let _ = meta.capture_time(offset, zone);
        }
    }
});
