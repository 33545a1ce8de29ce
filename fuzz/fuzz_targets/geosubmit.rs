//! Ichnaea geosubmit bodies, v2 and v1: every input is read as both. Whatever is accepted keeps
//! every observation inside the radio policy and accounts for every item.

#![no_main]

use covermap_fuzz::{assert_radio_batch, radio_policy, received_at};
use covermap_ingest::radio::{parse_geosubmit_v1, parse_geosubmit_v2};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = radio_policy();
    for parse in [parse_geosubmit_v2, parse_geosubmit_v1] {
        if let Ok(batch) = parse(data, received_at(), &policy) {
            assert_radio_batch(&batch, &policy, policy.max_items);
        }
    }
});
