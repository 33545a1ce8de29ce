//! Who may send what: API keys (hashed, with a role) and the ed25519 signatures devices put on
//! their uploads. Pure: the HTTP layer reads the headers, the store keeps keys and nonces, and
//! these functions decide.
//!
//! A signed request carries four headers: `X-Covermap-Device` (the registered device id),
//! `X-Covermap-Timestamp` (Unix seconds), `X-Covermap-Nonce` (8 to 64 characters of
//! `[A-Za-z0-9_-]`, never reused by the device) and `X-Covermap-Signature` (128 hex digits: the
//! ed25519 signature of [`signed_message_v2`]). The message binds the device, the contributor it
//! is bound to, the method, the path with its query, the sha256 of the body, the time and the
//! nonce, so a signature cannot be moved to another device, endpoint, body or moment.
//!
//! Signatures of the older [`signed_message_v1`] (no device, no contributor) are still accepted
//! and reported as [`SignatureScheme::V1`] so the server can mark them deprecated: a public key
//! is registered to one device only, ever, so even a v1 signature verifies for its own device
//! alone.

use std::fmt;

use chrono::{DateTime, Utc};
use covermap_domain::{NewApiKey, Role};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The header names of a signed request.
pub const DEVICE_HEADER: &str = "x-covermap-device";
pub const TIMESTAMP_HEADER: &str = "x-covermap-timestamp";
pub const NONCE_HEADER: &str = "x-covermap-nonce";
pub const SIGNATURE_HEADER: &str = "x-covermap-signature";

/// How far a signed request's timestamp may be from the server's clock, either way. Nonces are
/// remembered this long, so a replay is refused as stale or as a reused nonce, never accepted.
pub const MAX_CLOCK_SKEW_S: i64 = 300;

/// Why a request was not let in. Every variant is a 401 except [`AccessError::Forbidden`] (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("this endpoint needs an API key (Authorization: Bearer KEY)")]
    NoKey,
    #[error("the API key is not known")]
    UnknownKey,
    #[error("the API key was revoked")]
    RevokedKey,
    #[error("a {role} key may not do this; it needs one of: {needed}")]
    Forbidden { role: Role, needed: String },
    #[error("the upload is not signed: header {0} is missing")]
    Unsigned(&'static str),
    #[error("header {header} is malformed: {reason}")]
    MalformedSignature {
        header: &'static str,
        reason: String,
    },
    #[error("device {0} is not registered")]
    UnknownDevice(String),
    #[error("the key that registered device {0} was revoked, and the device with it")]
    RevokedDevice(String),
    #[error("the signature does not match the request and the device's key")]
    BadSignature,
    #[error("the request was signed at {signed_at}, more than {MAX_CLOCK_SKEW_S} s from now")]
    Stale { signed_at: i64 },
    #[error("the nonce was used before: a replayed request")]
    Replayed,
}

impl AccessError {
    pub fn code(&self) -> &'static str {
        match self {
            AccessError::NoKey => "missing_key",
            AccessError::UnknownKey => "unknown_key",
            AccessError::RevokedKey => "revoked_key",
            AccessError::Forbidden { .. } => "forbidden",
            AccessError::Unsigned(_) => "unsigned",
            AccessError::MalformedSignature { .. } => "malformed_signature",
            AccessError::UnknownDevice(_) => "unknown_device",
            AccessError::RevokedDevice(_) => "revoked_device",
            AccessError::BadSignature => "bad_signature",
            AccessError::Stale { .. } => "stale_request",
            AccessError::Replayed => "replayed_request",
        }
    }

    /// The header or parameter at fault, where there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            AccessError::Unsigned(h) => Some(h),
            AccessError::MalformedSignature { header, .. } => Some(header),
            AccessError::UnknownDevice(_) | AccessError::RevokedDevice(_) => Some(DEVICE_HEADER),
            AccessError::BadSignature => Some(SIGNATURE_HEADER),
            AccessError::Stale { .. } => Some(TIMESTAMP_HEADER),
            AccessError::Replayed => Some(NONCE_HEADER),
            _ => None,
        }
    }

    pub fn is_forbidden(&self) -> bool {
        matches!(self, AccessError::Forbidden { .. })
    }
}

/// A fresh API key: the secret to hand out once, and what the store keeps of it.
pub struct IssuedKey {
    pub key: String,
    pub record: NewApiKey,
}

impl fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedKey")
            .field("prefix", &self.record.prefix)
            .field("role", &self.record.role)
            .finish_non_exhaustive()
    }
}

/// Makes a new key: `cm_` and 48 hex digits (192 random bits).
pub fn issue_key(role: Role, contributor: Option<String>) -> IssuedKey {
    let secret: [u8; 24] = rand::random();
    let key = format!("cm_{}", hex::encode(secret));
    IssuedKey {
        record: NewApiKey {
            key_hash: hash_key(&key),
            prefix: key[..10].to_owned(),
            role,
            contributor,
            quota_per_day: None,
        },
        key,
    }
}

/// The quota a key of `role` is created with: a consumer key must have one (requests per UTC
/// day, at least 1), no other key has one. `Err` says why not.
pub fn checked_quota(role: Role, quota_per_day: Option<u64>) -> Result<Option<u64>, &'static str> {
    match (role, quota_per_day) {
        (Role::Consumer, Some(q)) if q >= 1 && q <= i64::MAX as u64 => Ok(Some(q)),
        (Role::Consumer, Some(_)) => Err("a quota is 1 or more requests per day"),
        (Role::Consumer, None) => Err("a consumer key needs a quota of requests per day"),
        (_, None) => Ok(None),
        (_, Some(_)) => Err("only consumer keys have a quota"),
    }
}

/// What the store keeps of a key (and looks it up by).
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whether `role` may use an endpoint open to `allowed`. Admin may use every endpoint.
pub fn check_role(role: Role, allowed: &[Role]) -> Result<(), AccessError> {
    if role == Role::Admin || allowed.contains(&role) {
        Ok(())
    } else {
        Err(AccessError::Forbidden {
            role,
            needed: allowed
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// Which message a signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    /// [`signed_message_v1`]: the request alone. Deprecated.
    V1,
    /// [`signed_message_v2`]: the device, its contributor and the request.
    V2,
}

/// The bytes a device signs: the lines `covermap-signature-v2`, the device id, the contributor
/// the device is bound to (an empty line if none), the method (uppercase), the path with its
/// query, the body's sha256 in hex, the timestamp and the nonce, joined by `\n`. Device ids,
/// contributors, paths and nonces hold no line break, so the lines cannot be shifted.
pub fn signed_message_v2(
    device: &str,
    contributor: Option<&str>,
    method: &str,
    path_and_query: &str,
    body_sha256_hex: &str,
    timestamp: i64,
    nonce: &str,
) -> Vec<u8> {
    format!(
        "covermap-signature-v2\n{device}\n{}\n{}\n{path_and_query}\n{body_sha256_hex}\n{timestamp}\n{nonce}",
        contributor.unwrap_or_default(),
        method.to_ascii_uppercase()
    )
    .into_bytes()
}

/// The bytes of a deprecated v1 signature: the v2 lines without the device and contributor,
/// under `covermap-signature-v1`.
pub fn signed_message_v1(
    method: &str,
    path_and_query: &str,
    body_sha256_hex: &str,
    timestamp: i64,
    nonce: &str,
) -> Vec<u8> {
    format!(
        "covermap-signature-v1\n{}\n{path_and_query}\n{body_sha256_hex}\n{timestamp}\n{nonce}",
        method.to_ascii_uppercase()
    )
    .into_bytes()
}

/// Whether a request signed at `timestamp` may be taken at `now`: at most
/// [`MAX_CLOCK_SKEW_S`] either way. Any `i64` may come in a header, so the distance is computed
/// without overflow; one too far to compute is too far.
pub fn within_clock_skew(timestamp: i64, now: DateTime<Utc>) -> bool {
    now.timestamp()
        .checked_sub(timestamp)
        .and_then(i64::checked_abs)
        .is_some_and(|skew| skew <= MAX_CLOCK_SKEW_S)
}

/// The headers of a signed request, read but not yet checked against a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub device: String,
    pub timestamp: i64,
    pub nonce: String,
    pub signature: [u8; 64],
}

impl SignedHeaders {
    /// Reads the four headers through `get` (a header lookup returning text).
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, AccessError> {
        let need = |h: &'static str| get(h).ok_or(AccessError::Unsigned(h));
        let malformed = |header: &'static str, reason: &str| AccessError::MalformedSignature {
            header,
            reason: reason.to_owned(),
        };
        let device = need(DEVICE_HEADER)?.to_owned();
        let timestamp = need(TIMESTAMP_HEADER)?
            .trim()
            .parse::<i64>()
            .map_err(|_| malformed(TIMESTAMP_HEADER, "not whole Unix seconds"))?;
        let nonce = need(NONCE_HEADER)?.to_owned();
        if !(8..=64).contains(&nonce.len())
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(malformed(
                NONCE_HEADER,
                "must be 8 to 64 characters of A-Z a-z 0-9 - _",
            ));
        }
        let signature: [u8; 64] = hex::decode(need(SIGNATURE_HEADER)?.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed(SIGNATURE_HEADER, "must be 128 hex digits"))?;
        Ok(Self {
            device,
            timestamp,
            nonce,
            signature,
        })
    }

    /// Checks the time against `now`, then the signature with the device's public key (hex) and
    /// the contributor the device is bound to: a v2 signature first, else a (deprecated) v1
    /// one. Answers which one it was. The nonce is the caller's to claim, after this passed.
    pub fn verify(
        &self,
        public_key_hex: &str,
        contributor: Option<&str>,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<SignatureScheme, AccessError> {
        // The clock first: a stale request is refused without spending a signature check on it.
        if !within_clock_skew(self.timestamp, now) {
            return Err(AccessError::Stale {
                signed_at: self.timestamp,
            });
        }
        let key = parse_public_key(public_key_hex).map_err(|_| AccessError::BadSignature)?;
        let signature = Signature::from_bytes(&self.signature);
        let body_sha256 = hex::encode(Sha256::digest(body));
        let v2 = signed_message_v2(
            &self.device,
            contributor,
            method,
            path_and_query,
            &body_sha256,
            self.timestamp,
            &self.nonce,
        );
        // Strict: no small-order keys or non-canonical signatures, which honest signers never
        // produce and which would let one signature verify under more than one key.
        if key.verify_strict(&v2, &signature).is_ok() {
            return Ok(SignatureScheme::V2);
        }
        let v1 = signed_message_v1(
            method,
            path_and_query,
            &body_sha256,
            self.timestamp,
            &self.nonce,
        );
        key.verify_strict(&v1, &signature)
            .map(|()| SignatureScheme::V1)
            .map_err(|_| AccessError::BadSignature)
    }
}

/// A device's public key from 64 hex digits; the error says what is wrong with it. Weak
/// (small-order) keys are refused: a signature "by" one proves nothing.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("a public key is 64 hex digits (32 bytes of ed25519)")?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "not a valid ed25519 public key".to_owned())?;
    if key.is_weak() {
        return Err("a weak (small-order) ed25519 key signs for anyone".to_owned());
    }
    Ok(key)
}

/// A device's side of signing, for the demo, `covermap` tools and tests: a key pair, the
/// contributor the device is registered under, and the headers of a signed request.
#[derive(Debug, Clone)]
pub struct DeviceSigner {
    pub device: String,
    contributor: Option<String>,
    key: SigningKey,
}

impl DeviceSigner {
    pub fn generate(device: impl Into<String>) -> Self {
        Self::from_secret(device, rand::random())
    }

    pub fn from_secret(device: impl Into<String>, secret: [u8; 32]) -> Self {
        Self {
            device: device.into(),
            contributor: None,
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The contributor the device is registered under (the registering key's), which v2
    /// signatures name.
    pub fn bound_to(self, contributor: impl Into<String>) -> Self {
        Self {
            contributor: Some(contributor.into()),
            ..self
        }
    }

    pub fn contributor(&self) -> Option<&str> {
        self.contributor.as_deref()
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// The four headers (name, value) that sign `body` for `method path_and_query` at `now`.
    pub fn headers(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> [(&'static str, String); 4] {
        self.headers_at(method, path_and_query, body, now.timestamp())
    }

    /// [`DeviceSigner::headers`] with the timestamp as given, in Unix seconds (any `i64`: for
    /// tests of the server's clock check).
    pub fn headers_at(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp: i64,
    ) -> [(&'static str, String); 4] {
        let nonce = fresh_nonce();
        let message = signed_message_v2(
            &self.device,
            self.contributor.as_deref(),
            method,
            path_and_query,
            &hex::encode(Sha256::digest(body)),
            timestamp,
            &nonce,
        );
        self.headers_of(&message, timestamp, nonce)
    }

    /// The headers of a deprecated v1 signature, as devices built before v2 send them.
    pub fn headers_v1(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> [(&'static str, String); 4] {
        let nonce = fresh_nonce();
        let timestamp = now.timestamp();
        let message = signed_message_v1(
            method,
            path_and_query,
            &hex::encode(Sha256::digest(body)),
            timestamp,
            &nonce,
        );
        self.headers_of(&message, timestamp, nonce)
    }

    fn headers_of(
        &self,
        message: &[u8],
        timestamp: i64,
        nonce: String,
    ) -> [(&'static str, String); 4] {
        [
            (DEVICE_HEADER, self.device.clone()),
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (NONCE_HEADER, nonce),
            (
                SIGNATURE_HEADER,
                hex::encode(self.key.sign(message).to_bytes()),
            ),
        ]
    }
}

/// 96 random bits: never repeated in practice, well within the nonce alphabet and length.
fn fresh_nonce() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn read(headers: &[(&'static str, String)]) -> Result<SignedHeaders, AccessError> {
        let map: HashMap<&str, &str> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        SignedHeaders::read(|h| map.get(h).copied())
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let signer = DeviceSigner::generate("cam-1").bound_to("alice");
        let now = Utc::now();
        let body = b"<gpx/>";
        let h = signer.headers("POST", "/api/v1/uploads/gpx", body, now);
        let signed = read(&h).unwrap();
        let pk = signer.public_key_hex();
        let alice = Some("alice");
        assert_eq!(
            signed
                .verify(&pk, alice, "post", "/api/v1/uploads/gpx", body, now)
                .unwrap(),
            SignatureScheme::V2
        );
        let bad = |r: Result<SignatureScheme, AccessError>| r.unwrap_err();
        assert_eq!(
            bad(signed.verify(&pk, alice, "POST", "/api/v1/uploads/gpx", b"<gpx />", now)),
            AccessError::BadSignature
        );
        assert_eq!(
            bad(signed.verify(&pk, alice, "POST", "/api/v1/drives", body, now)),
            AccessError::BadSignature
        );
        // Bound to its contributor: the same request is not bob's, nor unbound.
        for contributor in [Some("bob"), None] {
            assert_eq!(
                bad(signed.verify(&pk, contributor, "POST", "/api/v1/uploads/gpx", body, now)),
                AccessError::BadSignature
            );
        }
        // Bound to its device: the same signature under another device's header fails.
        let moved = SignedHeaders {
            device: "cam-2".into(),
            ..signed.clone()
        };
        assert_eq!(
            bad(moved.verify(&pk, alice, "POST", "/api/v1/uploads/gpx", body, now)),
            AccessError::BadSignature
        );
        let other = DeviceSigner::generate("cam-1").public_key_hex();
        assert_eq!(
            bad(signed.verify(&other, alice, "POST", "/api/v1/uploads/gpx", body, now)),
            AccessError::BadSignature
        );
        let later = now + chrono::Duration::seconds(MAX_CLOCK_SKEW_S + 1);
        assert!(matches!(
            bad(signed.verify(&pk, alice, "POST", "/api/v1/uploads/gpx", body, later)),
            AccessError::Stale { .. }
        ));
    }

    #[test]
    fn v1_signatures_still_verify_and_say_so() {
        let signer = DeviceSigner::generate("cam-1").bound_to("alice");
        let now = Utc::now();
        let h = signer.headers_v1("POST", "/api/v1/uploads/gpx", b"x", now);
        let signed = read(&h).unwrap();
        let pk = signer.public_key_hex();
        assert_eq!(
            signed
                .verify(&pk, Some("alice"), "POST", "/api/v1/uploads/gpx", b"x", now)
                .unwrap(),
            SignatureScheme::V1
        );
        assert_eq!(
            signed
                .verify(&pk, Some("alice"), "POST", "/api/v1/uploads/gpx", b"y", now)
                .unwrap_err(),
            AccessError::BadSignature
        );
    }

    /// `now - timestamp` overflowed for timestamps near `i64::MIN` and `i64::MAX` (and wrapped to
    /// a small skew in release builds, so `now + i64::MIN` passed).
    #[test]
    fn timestamps_at_the_ends_of_i64_are_stale_not_overflows() {
        let signer = DeviceSigner::generate("cam-1");
        let pk = signer.public_key_hex();
        let now = Utc::now();
        let t = now.timestamp();
        for timestamp in [
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            t.wrapping_add(i64::MIN),
            t.wrapping_add(i64::MIN) + 1,
            t.wrapping_sub(i64::MIN),
            t.wrapping_add(i64::MAX),
            t + MAX_CLOCK_SKEW_S + 1,
            t - MAX_CLOCK_SKEW_S - 1,
        ] {
            let h = signer.headers_at("POST", "/x", b"", timestamp);
            let signed = read(&h).unwrap();
            assert_eq!(
                signed.verify(&pk, None, "POST", "/x", b"", now),
                Err(AccessError::Stale {
                    signed_at: timestamp
                }),
                "timestamp {timestamp}"
            );
            assert!(!within_clock_skew(timestamp, now));
        }
        for offset in [-MAX_CLOCK_SKEW_S, 0, MAX_CLOCK_SKEW_S] {
            let h = signer.headers_at("POST", "/x", b"", t + offset);
            read(&h)
                .unwrap()
                .verify(&pk, None, "POST", "/x", b"", now)
                .unwrap();
        }
    }

    proptest! {
        /// Whatever the timestamp and the clock, a well-signed request verifies exactly when the
        /// two are at most `MAX_CLOCK_SKEW_S` apart.
        #[test]
        fn only_timestamps_within_the_skew_verify(
            timestamp in prop_oneof![
                any::<i64>(),
                (-2 * MAX_CLOCK_SKEW_S..=2 * MAX_CLOCK_SKEW_S).prop_map(|o| 1_800_000_000 + o),
            ],
            now_s in -8_000_000_000_i64..=8_000_000_000,
            clock_near_stamp in any::<bool>(),
        ) {
            let signer = DeviceSigner::from_secret("cam-1", [9; 32]);
            let now_s = if clock_near_stamp { 1_800_000_000 } else { now_s };
            let now = DateTime::from_timestamp(now_s, 0).unwrap();
            let h = signer.headers_at("POST", "/x", b"", timestamp);
            let verified = read(&h)
                .unwrap()
                .verify(&signer.public_key_hex(), None, "POST", "/x", b"", now);
            let within = (i128::from(now_s) - i128::from(timestamp)).abs()
                <= i128::from(MAX_CLOCK_SKEW_S);
            prop_assert_eq!(verified.is_ok(), within, "{:?}", verified);
        }
    }

    #[test]
    fn missing_and_malformed_headers_name_the_header() {
        let signer = DeviceSigner::generate("cam-1");
        let mut h = signer.headers("POST", "/x", b"", Utc::now()).to_vec();
        h.retain(|(k, _)| *k != NONCE_HEADER);
        assert_eq!(read(&h).unwrap_err(), AccessError::Unsigned(NONCE_HEADER));
        h.push((NONCE_HEADER, "short".into()));
        assert_eq!(read(&h).unwrap_err().field(), Some(NONCE_HEADER));
        let mut h = signer.headers("POST", "/x", b"", Utc::now()).to_vec();
        h[3].1 = "zz".into();
        assert_eq!(read(&h).unwrap_err().field(), Some(SIGNATURE_HEADER));
    }

    #[test]
    fn keys_are_random_hashed_and_roles_checked() {
        assert_eq!(checked_quota(Role::Consumer, Some(10)), Ok(Some(10)));
        assert!(checked_quota(Role::Consumer, None).is_err());
        assert!(checked_quota(Role::Consumer, Some(0)).is_err());
        assert!(checked_quota(Role::Planner, Some(10)).is_err());
        assert_eq!(checked_quota(Role::Planner, None), Ok(None));
        let a = issue_key(Role::Device, Some("alice".into()));
        let b = issue_key(Role::Device, None);
        assert_ne!(a.key, b.key);
        assert_eq!(a.record.key_hash, hash_key(&a.key));
        assert!(a.key.starts_with(&a.record.prefix) && a.key.len() == 51);
        assert!(
            !format!("{a:?}").contains(&a.key),
            "Debug must not print the secret"
        );
        check_role(Role::Admin, &[Role::Auditor]).unwrap();
        check_role(Role::Auditor, &[Role::Auditor, Role::Planner]).unwrap();
        assert!(
            check_role(Role::Device, &[Role::Auditor])
                .unwrap_err()
                .is_forbidden()
        );
    }

    #[test]
    fn public_keys_are_checked() {
        assert!(parse_public_key("abc").is_err());
        // The identity point: a small-order key any signature could be forged for.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(parse_public_key(&hex::encode(identity)).is_err());
        let pk = DeviceSigner::generate("d").public_key_hex();
        assert!(parse_public_key(&pk).is_ok());
    }
}
