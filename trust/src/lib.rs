//! covermap trust: what an upload is worth believing.
//!
//! It owns the fraud detectors and the line between what they measure and what is decided from
//! it. A worker measures each upload as it processes it ([`track::measure`], [`radio::measure`],
//! and the comparisons with earlier uploads in [`twins`]) and keeps those measures as the
//! upload's [`Evidence`]; [`judge`] turns evidence into [`Finding`]s under the thresholds of the
//! reward policy's `[verification]` section ([`TrustRules`]). The worker judges at once, so the
//! live map leaves flagged uploads out; an epoch's close judges again from the stored evidence
//! under the epoch's policy, together with what only a whole epoch shows — where each radio
//! emitter stands and who else heard it ([`emitters`]) — so `epoch verify` recomputes every
//! verdict bit for bit.
//!
//! Pure: no database, no HTTP. It does not parse uploads (ingest does), match roads (roads
//! does) or pay anyone (scoring does).

pub mod emitters;
mod local;
pub mod radio;
pub mod rules;
pub mod track;
pub mod twins;
mod verdict;

pub use rules::{RadioTrustRules, TrackTrustRules, TrustRules};
pub use verdict::{Evidence, Finding, Gap, Verdict, impossible_gap, judge};

/// Rounds a measure to millimetres (or thousandths), so stored evidence reads back as the same
/// number on every machine and its hash never depends on the last bits of a float.
pub(crate) fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}
