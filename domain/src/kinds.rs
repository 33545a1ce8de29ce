//! Small closed vocabularies the stages, the store and the API share: the stage that left an
//! item of an upload out, why a fix was left out, what kind of emitter a radio observation
//! heard, a cell's radio generation, and why a published frame was reported and what an auditor
//! decided. Each is written as its snake-case name in the database and in JSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::InvalidValue;

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident, $field:literal, { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.iter().copied().find(|k| k.as_str() == s).ok_or_else(|| {
                    let known: Vec<_> = Self::ALL.iter().map(|k| k.as_str()).collect();
                    InvalidValue::new(
                        $field,
                        format!("unknown {} {s:?}; known: {}", $field, known.join(", ")),
                    )
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary!(
    /// The stage of processing that left one item of an upload out.
    RejectionStage, "stage", {
        /// A GPS fix of a track.
        Fix => "fix",
        /// A camera frame of a drive.
        Frame => "frame",
        /// A radio observation of a batch.
        Radio => "radio",
    }
);

vocabulary!(
    /// What a radio observation heard.
    EmitterKind, "emitter kind", {
        Cell => "cell",
        Wifi => "wifi",
        Bluetooth => "bluetooth",
    }
);

vocabulary!(
    /// The cellular radio generations a coverage map keys cells by. CDMA is not among them:
    /// Ichnaea refuses it too (mozilla/ichnaea, `ichnaea/models/cell.py`,
    /// `RadioType.deserialize`).
    RadioType, "radio", {
        Gsm => "gsm",
        Wcdma => "wcdma",
        Lte => "lte",
        Nr => "nr",
    }
);

vocabulary!(
    /// Why one fix of a track was left out; the track keeps going without it.
    FixRejection, "fix rejection", {
        BadPosition => "bad_position",
        NoTime => "no_time",
        InFuture => "in_future",
        TooOld => "too_old",
        Duplicate => "duplicate",
        OutOfOrder => "out_of_order",
        ImplausibleJump => "implausible_jump",
    }
);

impl FixRejection {
    /// Whether a fix left out for this reason was physically impossible — a jump no vehicle
    /// makes, a time after the upload arrived — rather than merely unusable: the epoch counts
    /// these as spoofed fixes against the contributor (the policy's `spoofed_fix_share`).
    pub fn is_spoofing(self) -> bool {
        matches!(self, FixRejection::ImplausibleJump | FixRejection::InFuture)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_word_reads_back_and_json_uses_it() {
        for s in RejectionStage::ALL {
            assert_eq!(s.as_str().parse::<RejectionStage>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        for k in EmitterKind::ALL {
            assert_eq!(k.as_str().parse::<EmitterKind>().unwrap(), *k);
        }
        for r in RadioType::ALL {
            assert_eq!(r.as_str().parse::<RadioType>().unwrap(), *r);
            assert_eq!(serde_json::to_string(r).unwrap(), format!("\"{r}\""));
        }
        for f in FixRejection::ALL {
            assert_eq!(f.as_str().parse::<FixRejection>().unwrap(), *f);
        }
        let spoofing: Vec<_> = FixRejection::ALL
            .iter()
            .filter(|f| f.is_spoofing())
            .map(|f| f.as_str())
            .collect();
        assert_eq!(spoofing, ["in_future", "implausible_jump"]);
        let e = "cdma".parse::<RadioType>().unwrap_err();
        assert_eq!(e.field, "radio");
        assert!(e.reason.contains("gsm, wcdma, lte, nr"), "{}", e.reason);
    }
}

vocabulary!(
    /// Why someone reported a published frame.
    ReportReason, "reason", {
        /// A face is recognisable.
        Face => "face",
        /// A licence plate is readable.
        Plate => "plate",
        /// Anything else that should not be public.
        Other => "other",
    }
);

vocabulary!(
    /// What an auditor decided about a reported frame.
    ReportDecision, "decision", {
        /// Nothing to hide: shown again (unless another report of it is still open).
        Keep => "keep",
        /// Taken down for good: hidden, its published derivative deleted.
        Remove => "remove",
        /// Blurred further where the auditor marked it, then shown again: the frame's published
        /// derivative replaced by the blurred copy (under a key of its own), the old one deleted.
        Blur => "blur",
    }
);
