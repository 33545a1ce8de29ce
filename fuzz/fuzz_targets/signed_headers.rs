//! The device-signature headers. The input is the four header values, one a line (device,
//! timestamp, nonce, signature); a missing line is a missing header. Whatever `read` accepts
//! holds its documented shape, and `verify` against an unrelated key refuses it without panic.

#![no_main]

use covermap_fuzz::received_at;
use covermap_ingest::access::{
    DEVICE_HEADER, DeviceSigner, NONCE_HEADER, SIGNATURE_HEADER, SignedHeaders, TIMESTAMP_HEADER,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let values: Vec<Option<&str>> = (0..4).map(|_| lines.next()).collect();
    let names = [
        DEVICE_HEADER,
        TIMESTAMP_HEADER,
        NONCE_HEADER,
        SIGNATURE_HEADER,
    ];
    let get = |name: &str| {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .and_then(|i| values[i])
    };
    let Ok(headers) = SignedHeaders::read(get) else {
        return;
    };
    assert_eq!(Some(headers.device.as_str()), values[0]);
    assert!((8..=64).contains(&headers.nonce.len()), "nonce length");
    assert!(
        headers
            .nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "nonce alphabet"
    );
    let key = DeviceSigner::from_secret("fuzz", [7; 32]).public_key_hex();
    let body = data;
    assert!(
        headers
            .verify(&key, None, "POST", "/v1/uploads", body, received_at())
            .is_err(),
        "a signature verified under a key nobody signed with"
    );
});
