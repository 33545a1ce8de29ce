//! The whole signature check a signed request goes through: `SignedHeaders::read`, then
//! `verify`, over arbitrary header values, requests, bodies, keys and clocks. Requests are
//! signed for real (v2 at any `i64` timestamp, or v1) by a `DeviceSigner` and then perhaps
//! altered on the way, so the accepting path is fuzzed, not only the refusals.
//!
//! Whatever `verify` accepts: its timestamp is within `MAX_CLOCK_SKEW_S` of the clock (computed
//! here in `i128`, so an overflow in `verify` cannot hide); the key is the one that signed; and
//! the message the server checked — rebuilt from what the server saw — is byte for byte the one
//! the device signed, so no field of the request (device, contributor, method, path and query,
//! body, time, nonce) can be changed under a signature.

#![no_main]

use chrono::{DateTime, Utc};
use covermap_ingest::access::{
    DEVICE_HEADER, DeviceSigner, MAX_CLOCK_SKEW_S, NONCE_HEADER, SIGNATURE_HEADER,
    SignatureScheme, SignedHeaders, TIMESTAMP_HEADER, signed_message_v1, signed_message_v2,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});

/// What a request says about itself: as signed, or as the server received it.
#[derive(Debug, Clone, PartialEq)]
struct Request {
    device: String,
    contributor: Option<String>,
    method: String,
    path: String,
    body: Vec<u8>,
}

impl Request {
    fn arbitrary(u: &mut Unstructured) -> Result<Self> {
        Ok(Self {
            device: u.arbitrary()?,
            contributor: u.arbitrary()?,
            method: u.choose(&["POST", "PUT", "GET", "post", "DELETE"])?.to_string(),
            path: u.arbitrary()?,
            body: u.arbitrary()?,
        })
    }

    /// The same request, each part perhaps replaced on the way.
    fn altered(&self, u: &mut Unstructured) -> Result<Self> {
        let mut r = self.clone();
        if u.arbitrary()? {
            r.device = u.arbitrary()?;
        }
        if u.arbitrary()? {
            r.contributor = u.arbitrary()?;
        }
        if u.arbitrary()? {
            r.method = u.arbitrary()?;
        }
        if u.arbitrary()? {
            r.path = u.arbitrary()?;
        }
        if u.arbitrary()? {
            r.body = u.arbitrary()?;
        }
        Ok(r)
    }

    fn message(&self, scheme: SignatureScheme, timestamp: i64, nonce: &str) -> Vec<u8> {
        let body = hex::encode(Sha256::digest(&self.body));
        match scheme {
            SignatureScheme::V2 => signed_message_v2(
                &self.device,
                self.contributor.as_deref(),
                &self.method,
                &self.path,
                &body,
                timestamp,
                nonce,
            ),
            SignatureScheme::V1 => signed_message_v1(&self.method, &self.path, &body, timestamp, nonce),
        }
    }
}

fn check(u: &mut Unstructured) -> Result<()> {
    let secret: [u8; 32] = u.arbitrary()?;
    let signed = Request::arbitrary(u)?;
    let mut signer = DeviceSigner::from_secret(signed.device.clone(), secret);
    if let Some(c) = &signed.contributor {
        signer = signer.bound_to(c.clone());
    }
    // The server's clock, anywhere chrono reaches; the signature's time near it, at the ends of
    // i64, or anywhere.
    let now_s: i64 = u.int_in_range(-8_000_000_000_000..=8_000_000_000_000)?;
    let Some(now) = DateTime::<Utc>::from_timestamp(now_s, 0) else {
        return Ok(());
    };
    let near: i64 = u.int_in_range(-2 * MAX_CLOCK_SKEW_S..=2 * MAX_CLOCK_SKEW_S)?;
    let timestamp = match u.int_in_range(0..=2)? {
        0 => now_s.saturating_add(near),
        1 => now_s.wrapping_add(i64::MIN).wrapping_add(near),
        _ => u.arbitrary()?,
    };
    let v1 = u.arbitrary::<bool>()?;
    let headers = match (v1, DateTime::<Utc>::from_timestamp(timestamp, 0)) {
        (true, Some(at)) => signer.headers_v1(&signed.method, &signed.path, &signed.body, at),
        (true, None) => return Ok(()),
        (false, _) => signer.headers_at(&signed.method, &signed.path, &signed.body, timestamp),
    };
    let nonce = headers[2].1.clone();
    let scheme_signed = if v1 { SignatureScheme::V1 } else { SignatureScheme::V2 };
    // On the way: each header kept, dropped or replaced.
    let mut values: Vec<Option<String>> = Vec::new();
    for (_, value) in &headers {
        values.push(match u.int_in_range(0..=5)? {
            0 => None,
            1 => Some(u.arbitrary()?),
            _ => Some(value.clone()),
        });
    }
    let names = [DEVICE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER];
    let get = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| values[i].as_deref())
    };
    let Ok(read) = SignedHeaders::read(get) else {
        return Ok(());
    };
    // What the server saw: the device from the header, the rest perhaps altered; its key the
    // device's, or another device's.
    let received = Request {
        device: read.device.clone(),
        ..signed.altered(u)?
    };
    let signers_key = u.arbitrary::<bool>()?;
    let key = if signers_key {
        signer.public_key_hex()
    } else {
        DeviceSigner::from_secret("other", u.arbitrary()?).public_key_hex()
    };
    let verdict = read.verify(
        &key,
        received.contributor.as_deref(),
        &received.method,
        &received.path,
        &received.body,
        now,
    );
    let Ok(scheme) = verdict else {
        return Ok(());
    };
    let skew = (i128::from(now_s) - i128::from(read.timestamp)).abs();
    assert!(
        skew <= i128::from(MAX_CLOCK_SKEW_S),
        "verified {skew} s from the clock"
    );
    assert!(
        signers_key || key == signer.public_key_hex(),
        "verified under a key nobody signed with"
    );
    assert_eq!(
        received.message(scheme, read.timestamp, &read.nonce),
        signed.message(scheme_signed, timestamp, &nonce),
        "verified a request other than the one signed ({scheme:?}, signed {scheme_signed:?})"
    );
    Ok(())
}
