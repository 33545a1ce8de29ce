//! OpenCelliD / Tower Collector CSV: whatever is accepted keeps every observation inside the
//! radio policy and accounts for every row.

#![no_main]

use covermap_fuzz::{assert_radio_batch, radio_policy, received_at};
use covermap_ingest::radio::parse_opencellid_csv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = radio_policy();
    if let Ok(batch) = parse_opencellid_csv(data, received_at(), &policy) {
        assert_radio_batch(&batch, &policy, policy.max_rows);
    }
});
