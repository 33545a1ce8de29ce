//! covermap adversary: our own adversarial set, and the arithmetic of how well covermap resists it.
//!
//! It owns a generator that is pure and deterministic from a seed: given a real road network
//! ([`covermap_roads::RoadNetwork`]) and a [`ScenarioConfig`], [`generate`] makes a [`Scenario`]
//! of contributors, their devices and the files they upload — honest drives (GPX tracks with
//! realistic GNSS error, geosubmit v2 batches of what a phone hears from a modelled radio world)
//! and every fraud pattern of issue 14 in several strengths, each file labelled. It also owns
//! [`report`]: from what happened to each file, the share of fraud caught per type and of honest
//! work wrongly flagged.
//!
//! It does not own running a scenario through covermap (that is I/O: the harness in
//! `cli/tests/adversarial` starts the real binary), and it never reads covermap's detectors or
//! thresholds: the data models drivers, phones and fraudsters, not what a rule looks for.

pub mod driving;
pub mod formats;
pub mod fraud;
pub mod geo;
pub mod gnss;
pub mod radio;
pub mod report;
pub mod roads;
pub mod scenario;

pub use report::{FileOutcome, Report, TypeRow};
pub use scenario::{
    Contributor, Device, FileKind, FraudPlan, FraudType, Label, Scenario, ScenarioConfig,
    ScenarioFile, SetSize, generate,
};

use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::StandardNormal;

/// Why a scenario could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdversaryError {
    #[error("the road network has too few connected roads to draw {0} from")]
    TooFewRoads(&'static str),
    #[error("{fraud} has no strength {strength:?}; it has {known}")]
    UnknownStrength {
        fraud: &'static str,
        strength: String,
        known: String,
    },
    #[error("the configuration is not usable: {0}")]
    Config(String),
}

/// A draw from a normal distribution of mean 0 and deviation `sigma`.
pub(crate) fn gauss(rng: &mut StdRng, sigma: f64) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    z * sigma
}
