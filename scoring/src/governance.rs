//! Governance: how the policy changes. A proposal names a new policy file; the contributors who
//! earned in the trailing epochs vote on it; a proposal that passes activates at the first epoch
//! boundary after its voting period and delay. Every number of that process — who may vote, how
//! votes weigh, quorum, threshold, voting period, delay — is in the policy in force when the
//! proposal is made (`[governance]`), so the rules for changing the rules change by vote too.
//!
//! Pure: the store keeps proposals, electorates and votes; this checks a proposal against the
//! policy it amends, draws an electorate from epochs' rewards, tallies, and dates activation.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use covermap_domain::rewards::ContributorReward;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::RewardPolicy;

/// `[governance]`: how proposals are voted on. Absent in a policy file, these defaults apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceRules {
    /// How a vote weighs: one per contributor, or the base units it earned in the window.
    pub weighting: Weighting,
    /// The electorate: contributors who earned in the last this-many closed epochs before the
    /// proposal was made (and, with `rewards` weighting, what they earned there).
    pub trailing_epochs: u64,
    /// Share of the electorate's weight that must vote (yes, no or abstain) for a result.
    pub quorum: f64,
    /// A proposal passes when yes > threshold × (yes + no), by weight, and the quorum is met.
    pub threshold: f64,
    /// How long votes are taken after a proposal is made.
    pub voting_seconds: u64,
    /// A passed proposal activates at the first epoch boundary at least this long after its
    /// voting ends.
    pub activation_delay_seconds: u64,
}

impl Default for GovernanceRules {
    fn default() -> Self {
        Self {
            weighting: Weighting::Contributor,
            trailing_epochs: 7,
            quorum: 0.2,
            threshold: 0.5,
            voting_seconds: 7 * 86_400,
            activation_delay_seconds: 86_400,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weighting {
    /// One contributor, one vote.
    Contributor,
    /// A vote weighs the base units its contributor earned over the trailing epochs.
    Rewards,
}

impl GovernanceRules {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.trailing_epochs == 0 || self.trailing_epochs > 1000 {
            return Err("governance.trailing_epochs must be 1 to 1000".into());
        }
        for (name, v) in [("quorum", self.quorum), ("threshold", self.threshold)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("governance.{name} must lie in [0, 1], not {v}"));
            }
        }
        if self.voting_seconds == 0 || self.voting_seconds > 366 * 86_400 {
            return Err("governance.voting_seconds must be 1 s to a year".into());
        }
        if self.activation_delay_seconds > 366 * 86_400 {
            return Err("governance.activation_delay_seconds must be at most a year".into());
        }
        Ok(())
    }
}

/// Why a proposed policy cannot be put to a vote.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProposalError {
    #[error("the proposed policy is the policy in force (sha256 {0})")]
    Unchanged(String),
    #[error("the proposed policy's version must be greater than {current}, the version in force")]
    Version { current: u32 },
    #[error(
        "the proposed policy changes {0}: the epoch clock and the ledger's name are fixed for \
         the network's life (epochs already numbered and roots already published depend on them)"
    )]
    Fixed(&'static str),
    #[error("the proposal's {field} {reason}")]
    Text { field: &'static str, reason: String },
}

/// Longest title and rationale a proposal may carry (characters).
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_RATIONALE_CHARS: usize = 20_000;

/// Checks that `proposed` may be put to a vote against `current`, the policy in force: it
/// changes something, its version is newer, and it keeps the epoch clock (genesis, length) and
/// the distributor's name.
pub fn check_proposal(
    current: &RewardPolicy,
    proposed: &RewardPolicy,
    title: &str,
    rationale: &str,
) -> Result<(), ProposalError> {
    let text = |field, reason: &str| ProposalError::Text {
        field,
        reason: reason.to_owned(),
    };
    if title.trim().is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(text("title", "must be 1 to 200 characters"));
    }
    if title.chars().any(char::is_control) {
        return Err(text("title", "must be one line of printable text"));
    }
    if rationale.chars().count() > MAX_RATIONALE_CHARS {
        return Err(text("rationale", "must be at most 20,000 characters"));
    }
    if proposed.hash == current.hash {
        return Err(ProposalError::Unchanged(current.hash.clone()));
    }
    if proposed.rules.version <= current.rules.version {
        return Err(ProposalError::Version {
            current: current.rules.version,
        });
    }
    let (c, p) = (&current.rules, &proposed.rules);
    if p.epoch.genesis != c.epoch.genesis {
        return Err(ProposalError::Fixed("epoch.genesis"));
    }
    if p.epoch.length_seconds != c.epoch.length_seconds {
        return Err(ProposalError::Fixed("epoch.length_seconds"));
    }
    if p.distributor != c.distributor {
        return Err(ProposalError::Fixed("distributor"));
    }
    Ok(())
}

/// Who may vote on a proposal and what each vote weighs: contributors with a reward in the
/// trailing epochs (flagged epochs earn nothing and so count for nothing), by name.
pub fn electorate(rules: &GovernanceRules, rewards: &[ContributorReward]) -> BTreeMap<String, u64> {
    let mut earned: BTreeMap<String, u64> = BTreeMap::new();
    for r in rewards.iter().filter(|r| !r.flagged && r.base > 0) {
        let e = earned.entry(r.contributor.clone()).or_default();
        *e = e.saturating_add(r.base);
    }
    match rules.weighting {
        Weighting::Rewards => earned,
        Weighting::Contributor => earned.into_keys().map(|c| (c, 1)).collect(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    Yes,
    No,
    Abstain,
}

impl Choice {
    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Yes => "yes",
            Choice::No => "no",
            Choice::Abstain => "abstain",
        }
    }
}

impl std::str::FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "yes" => Ok(Choice::Yes),
            "no" => Ok(Choice::No),
            "abstain" => Ok(Choice::Abstain),
            other => Err(format!("a vote is yes, no or abstain, not {other:?}")),
        }
    }
}

/// One ballot as the tally reads it: a contributor's choice, in the order ballots were cast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ballot {
    pub contributor: String,
    pub choice: Choice,
}

/// A proposal's count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub yes: u64,
    pub no: u64,
    pub abstain: u64,
    /// The electorate's whole weight.
    pub eligible: u64,
    /// Contributors whose vote counted (their last ballot).
    pub voters: u64,
    pub quorum_met: bool,
    pub passed: bool,
}

/// Counts `ballots` (in the order they were cast; a contributor's last one counts, so a voter
/// may change their mind until the vote closes) of `electorate` under `rules`. Ballots from
/// outside the electorate count for nothing. Integer weights, so every machine counts alike.
pub fn tally(
    rules: &GovernanceRules,
    electorate: &BTreeMap<String, u64>,
    ballots: &[Ballot],
) -> Tally {
    let mut last: BTreeMap<&str, Choice> = BTreeMap::new();
    for b in ballots {
        if electorate.contains_key(&b.contributor) {
            last.insert(&b.contributor, b.choice);
        }
    }
    let (mut yes, mut no, mut abstain) = (0u64, 0u64, 0u64);
    for (who, choice) in &last {
        let w = electorate.get(*who).copied().unwrap_or(0);
        let sum = match choice {
            Choice::Yes => &mut yes,
            Choice::No => &mut no,
            Choice::Abstain => &mut abstain,
        };
        *sum = sum.saturating_add(w);
    }
    let eligible = electorate.values().fold(0u64, |a, w| a.saturating_add(*w));
    let turnout = u128::from(yes) + u128::from(no) + u128::from(abstain);
    // Shares compared in integers of millionths: quorum × eligible ≤ turnout, yes > t × (yes+no).
    let ppm = |share: f64| (share * 1e6).round() as u128;
    let quorum_met =
        eligible > 0 && turnout * 1_000_000 >= ppm(rules.quorum) * u128::from(eligible);
    let decided = u128::from(yes) + u128::from(no);
    let passed =
        quorum_met && yes > 0 && u128::from(yes) * 1_000_000 > ppm(rules.threshold) * decided;
    Tally {
        yes,
        no,
        abstain,
        eligible,
        voters: last.len() as u64,
        quorum_met,
        passed,
    }
}

/// The epoch a proposal whose voting ended at `voting_ends_at` activates at if it passed: the
/// first whose start is at least `activation_delay_seconds` after it (an end exactly on a
/// boundary activates at that boundary). `None` beyond what times can say.
pub fn activation_epoch(
    policy: &RewardPolicy,
    rules: &GovernanceRules,
    voting_ends_at: DateTime<Utc>,
) -> Option<u64> {
    let delay = chrono::Duration::try_seconds(i64::try_from(rules.activation_delay_seconds).ok()?)?;
    let at = voting_ends_at.checked_add_signed(delay)?;
    let len = i64::try_from(policy.rules.epoch.length_seconds).ok()?;
    let since = (at - policy.rules.epoch.genesis).num_microseconds()?;
    if since <= 0 {
        return Some(0);
    }
    let len_us = len.checked_mul(1_000_000)?;
    u64::try_from((since + len_us - 1) / len_us).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn reward(who: &str, base: u64, flagged: bool) -> ContributorReward {
        ContributorReward {
            contributor: who.into(),
            points: 1,
            base,
            bounty: 0,
            amount: base,
            cumulative: u128::from(base),
            flagged,
        }
    }

    fn ballots(v: &[(&str, Choice)]) -> Vec<Ballot> {
        v.iter()
            .map(|(c, ch)| Ballot {
                contributor: (*c).into(),
                choice: *ch,
            })
            .collect()
    }

    #[test]
    fn the_electorate_is_who_earned_and_weighs_by_the_rules() {
        let rewards = [
            reward("alice", 300, false),
            reward("bob", 100, false),
            reward("alice", 200, false),
            reward("mallory", 900, true),
            reward("nobody", 0, false),
        ];
        let mut rules = GovernanceRules::default();
        let one = electorate(&rules, &rewards);
        assert_eq!(one.len(), 2);
        assert_eq!(one["alice"], 1);
        rules.weighting = Weighting::Rewards;
        let by_rewards = electorate(&rules, &rewards);
        assert_eq!(by_rewards["alice"], 500);
        assert_eq!(by_rewards["bob"], 100);
        assert!(!by_rewards.contains_key("mallory"));
    }

    #[test]
    fn the_last_ballot_counts_and_outsiders_count_for_nothing() {
        let rules = GovernanceRules::default();
        let el: BTreeMap<String, u64> = [("a".into(), 1), ("b".into(), 1), ("c".into(), 1)].into();
        let t = tally(
            &rules,
            &el,
            &ballots(&[
                ("a", Choice::No),
                ("a", Choice::Yes),
                ("b", Choice::No),
                ("sybil1", Choice::Yes),
                ("sybil2", Choice::Yes),
            ]),
        );
        assert_eq!((t.yes, t.no, t.abstain, t.voters), (1, 1, 0, 2));
        assert!(t.quorum_met);
        assert!(!t.passed, "a tie is not more than half");
    }

    #[test]
    fn quorum_counts_abstentions_and_threshold_does_not() {
        let rules = GovernanceRules {
            quorum: 0.5,
            threshold: 0.5,
            ..GovernanceRules::default()
        };
        let el: BTreeMap<String, u64> = (0..10).map(|i| (format!("c{i}"), 1)).collect();
        let few = tally(
            &rules,
            &el,
            &ballots(&[("c0", Choice::Yes), ("c1", Choice::Yes)]),
        );
        assert!(!few.quorum_met && !few.passed);
        let with_abstentions = tally(
            &rules,
            &el,
            &ballots(&[
                ("c0", Choice::Yes),
                ("c1", Choice::Yes),
                ("c2", Choice::Abstain),
                ("c3", Choice::Abstain),
                ("c4", Choice::Abstain),
            ]),
        );
        assert!(with_abstentions.quorum_met && with_abstentions.passed);
        let all_abstain: Vec<_> = (0..10)
            .map(|i| (format!("c{i}"), Choice::Abstain))
            .collect();
        let all_abstain: Vec<Ballot> = all_abstain
            .into_iter()
            .map(|(contributor, choice)| Ballot {
                contributor,
                choice,
            })
            .collect();
        assert!(!tally(&rules, &el, &all_abstain).passed);
        assert!(!tally(&rules, &BTreeMap::new(), &[]).quorum_met);
    }

    #[test]
    fn rewards_weighting_lets_earners_outweigh_many_small_accounts() {
        let rules = GovernanceRules {
            weighting: Weighting::Rewards,
            quorum: 0.1,
            ..GovernanceRules::default()
        };
        let mut el: BTreeMap<String, u64> = (0..50).map(|i| (format!("s{i}"), 1)).collect();
        el.insert("driver".into(), 1_000);
        let mut b: Vec<_> = (0..50).map(|i| (format!("s{i}"), Choice::Yes)).collect();
        b.push(("driver".into(), Choice::No));
        let b: Vec<Ballot> = b
            .into_iter()
            .map(|(contributor, choice)| Ballot {
                contributor,
                choice,
            })
            .collect();
        let t = tally(&rules, &el, &b);
        assert_eq!((t.yes, t.no), (50, 1000));
        assert!(!t.passed);
    }

    #[test]
    fn activation_is_the_first_boundary_after_the_delay() {
        let p = RewardPolicy::shipped();
        let g = p.rules.epoch.genesis;
        let day = chrono::Duration::days(1);
        let mut rules = GovernanceRules {
            activation_delay_seconds: 0,
            ..GovernanceRules::default()
        };
        // Exactly on the boundary of epoch 10: that epoch.
        assert_eq!(activation_epoch(&p, &rules, g + day * 10), Some(10));
        // A microsecond later: the next.
        let later = g + day * 10 + chrono::Duration::microseconds(1);
        assert_eq!(activation_epoch(&p, &rules, later), Some(11));
        rules.activation_delay_seconds = 86_400;
        assert_eq!(activation_epoch(&p, &rules, g + day * 10), Some(11));
        let before = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(activation_epoch(&p, &rules, before), Some(0));
    }

    #[test]
    fn proposals_must_change_something_newer_and_keep_the_clock() {
        let current = RewardPolicy::shipped();
        let v = current.rules.version;
        let bump = |from: &str, to: &str| {
            let text = crate::policy::DEFAULT_POLICY
                .replace(&format!("version = {v}"), &format!("version = {}", v + 1))
                .replace(from, to);
            RewardPolicy::parse(&text).unwrap()
        };
        let ok = bump("points = 0.25", "points = 0.5");
        assert_eq!(check_proposal(&current, &ok, "More for radio", ""), Ok(()));
        assert_eq!(
            check_proposal(&current, &current, "Same", ""),
            Err(ProposalError::Unchanged(current.hash.clone()))
        );
        let older = RewardPolicy::parse(
            &crate::policy::DEFAULT_POLICY.replace("points = 0.25", "points = 0.5"),
        )
        .unwrap();
        assert!(matches!(
            check_proposal(&current, &older, "t", ""),
            Err(ProposalError::Version { .. })
        ));
        let clock = bump("length_seconds = 86400", "length_seconds = 3600");
        assert_eq!(
            check_proposal(&current, &clock, "t", ""),
            Err(ProposalError::Fixed("epoch.length_seconds"))
        );
        assert!(matches!(
            check_proposal(&current, &ok, " ", ""),
            Err(ProposalError::Text { field: "title", .. })
        ));
        assert!(matches!(
            check_proposal(&current, &ok, "a\nb", ""),
            Err(ProposalError::Text { field: "title", .. })
        ));
    }
}
