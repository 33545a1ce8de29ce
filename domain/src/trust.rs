//! What the trust stage concludes of an upload: findings and a verdict. How it measures and
//! judges is `covermap_trust`'s; these are the words the store, the epoch and the API share.

use serde::{Deserialize, Serialize};

/// One reason an upload is not believed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    /// A reason code: `teleport`, `impossible_speed`, `synthetic_track`, `replay`,
    /// `off_network`, `future_time`, `ancient_time`, `stationary`, `copied_upload`,
    /// `radio_teleport`, `stationary_farming`, `impossible_signal`, `emitter_spread`,
    /// `duplicate_batch`, and from an epoch's close `site_violation`, `fabricated_cells`.
    pub code: String,
    /// What was measured, in words.
    pub detail: String,
}

impl Finding {
    pub fn new(code: &str, detail: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            detail: detail.into(),
        }
    }
}

/// Whether an upload is believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing found against it: it counts.
    Trusted,
    /// Something was: it earns nothing and is left off every map.
    Flagged,
}

impl Verdict {
    pub fn of(findings: &[Finding]) -> Self {
        if findings.is_empty() {
            Verdict::Trusted
        } else {
            Verdict::Flagged
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Trusted => "trusted",
            Verdict::Flagged => "flagged",
        }
    }
}
