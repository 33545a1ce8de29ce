//! Map matching: which roads a GPS track drove, by a hidden Markov model (Newson & Krumm 2009).
//!
//! States are candidate positions on the road network near each fix; a state's emission
//! likelihood falls with its distance from the fix (Gaussian, with a floor so one outlier cannot
//! drag the path away); a transition's likelihood falls with the difference between the route
//! distance and the great-circle distance of the two fixes. Viterbi picks the most likely
//! sequence. Around that core:
//! - fixes closer than `min_spacing_m` to the last kept one are matched afterwards onto the path
//!   (noise around a slow or standing car says nothing about the route);
//! - a small step backwards along the same road is read as standing still, not as turning
//!   around twice (`stay_tolerance_m`), so 1 Hz noise never becomes back-and-forth driving;
//! - a fix with no candidate is dropped; a fix no candidate of the previous one can reach, or
//!   only by a detour that costs more than a few units of log-likelihood, is skipped as an
//!   outlier (up to three in a row); beyond that, or after a gap in time, the match is split
//!   into pieces;
//! - oneways are respected: the graph has an edge only for each permitted direction.

mod graph;
mod hmm;

pub use graph::RoadGraph;
pub use hmm::{MatchError, MatchParams, MatchResult, MatchedPiece, Matcher, Snap, TracePoint};
