//! Who may send what: API keys (hashed, with a role) and the ed25519 signatures devices put on
//! their uploads. Pure: the HTTP layer reads the headers, the store keeps keys and nonces, and
//! these functions decide.
//!
//! A signed request carries four headers: `X-Covermap-Device` (the registered device id),
//! `X-Covermap-Timestamp` (Unix seconds), `X-Covermap-Nonce` (8 to 64 characters of
//! `[A-Za-z0-9_-]`, never reused by the device) and `X-Covermap-Signature` (128 hex digits: the
//! ed25519 signature of [`signed_message`]). The message binds the method, the path with its
//! query, the sha256 of the body, the time and the nonce, so a signature cannot be moved to
//! another endpoint, body or moment.

use std::fmt;

use chrono::{DateTime, Utc};
use covermap_domain::Role;
use covermap_store::NewApiKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
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
        },
        key,
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

/// The bytes a device signs.
pub fn signed_message(
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

    /// Checks the signature with the device's public key (hex) and the time against `now`.
    /// The nonce is the caller's to claim, after this passed.
    pub fn verify(
        &self,
        public_key_hex: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), AccessError> {
        let key = parse_public_key(public_key_hex).map_err(|_| AccessError::BadSignature)?;
        let message = signed_message(
            method,
            path_and_query,
            &hex::encode(Sha256::digest(body)),
            self.timestamp,
            &self.nonce,
        );
        key.verify(&message, &Signature::from_bytes(&self.signature))
            .map_err(|_| AccessError::BadSignature)?;
        if (now.timestamp() - self.timestamp).abs() > MAX_CLOCK_SKEW_S {
            return Err(AccessError::Stale {
                signed_at: self.timestamp,
            });
        }
        Ok(())
    }
}

/// A device's public key from 64 hex digits; the error says what is wrong with it.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("a public key is 64 hex digits (32 bytes of ed25519)")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not a valid ed25519 public key".to_owned())
}

/// A device's side of signing, for the demo, `covermap` tools and tests: a key pair and the
/// headers of a signed request.
#[derive(Debug, Clone)]
pub struct DeviceSigner {
    pub device: String,
    key: SigningKey,
}

impl DeviceSigner {
    pub fn generate(device: impl Into<String>) -> Self {
        Self::from_secret(device, rand::random())
    }

    pub fn from_secret(device: impl Into<String>, secret: [u8; 32]) -> Self {
        Self {
            device: device.into(),
            key: SigningKey::from_bytes(&secret),
        }
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
        let nonce = hex::encode(rand::random::<[u8; 12]>());
        let timestamp = now.timestamp();
        let message = signed_message(
            method,
            path_and_query,
            &hex::encode(Sha256::digest(body)),
            timestamp,
            &nonce,
        );
        let signature = self.key.sign(&message);
        [
            (DEVICE_HEADER, self.device.clone()),
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (NONCE_HEADER, nonce),
            (SIGNATURE_HEADER, hex::encode(signature.to_bytes())),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(headers: &[(&'static str, String)]) -> Result<SignedHeaders, AccessError> {
        let map: HashMap<&str, &str> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        SignedHeaders::read(|h| map.get(h).copied())
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let signer = DeviceSigner::generate("cam-1");
        let now = Utc::now();
        let body = b"<gpx/>";
        let h = signer.headers("POST", "/api/v1/uploads/gpx", body, now);
        let signed = read(&h).unwrap();
        let pk = signer.public_key_hex();
        signed
            .verify(&pk, "post", "/api/v1/uploads/gpx", body, now)
            .unwrap();
        let bad = |r: Result<(), AccessError>| r.unwrap_err();
        assert_eq!(
            bad(signed.verify(&pk, "POST", "/api/v1/uploads/gpx", b"<gpx />", now)),
            AccessError::BadSignature
        );
        assert_eq!(
            bad(signed.verify(&pk, "POST", "/api/v1/drives", body, now)),
            AccessError::BadSignature
        );
        let other = DeviceSigner::generate("cam-1").public_key_hex();
        assert_eq!(
            bad(signed.verify(&other, "POST", "/api/v1/uploads/gpx", body, now)),
            AccessError::BadSignature
        );
        let later = now + chrono::Duration::seconds(MAX_CLOCK_SKEW_S + 1);
        assert!(matches!(
            bad(signed.verify(&pk, "POST", "/api/v1/uploads/gpx", body, later)),
            AccessError::Stale { .. }
        ));
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
        let pk = DeviceSigner::generate("d").public_key_hex();
        assert!(parse_public_key(&pk).is_ok());
    }
}
