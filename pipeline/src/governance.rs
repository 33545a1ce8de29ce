//! The policy in force and how it changes: the [`PolicyBook`] every process reads the policy
//! from (the database's schedule, not a file each process was started with), proposals with
//! their simulated effect, signed ballots, and the decision of a closed vote. The rules are
//! `scoring::governance`'s; this reads, checks and writes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use covermap_ingest::access::{MAX_CLOCK_SKEW_S, parse_public_key, signed_message_v2};
use covermap_scoring::RewardPolicy;
use covermap_scoring::governance::{self, Ballot, Choice, GovernanceRules, ProposalError, Tally};
use covermap_store::{
    DecisionInputs, NewProposal, NewScheduledPolicy, NewVote, ProposalDecision, ProposalRecord,
    ScheduledPolicy, Store, StoreError, VoteRecord,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::epochs::{self, EpochError, Simulation};

/// Why a governance use case could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    #[error("the proposed policy is not valid: {0}")]
    InvalidPolicy(#[from] covermap_scoring::PolicyError),
    #[error(transparent)]
    Proposal(#[from] ProposalError),
    #[error(
        "the policy in force (version {version}, sha256 {hash}) is the network's: {given} \
         was never in force. A process does not change the rules by starting with another file; \
         propose it (`covermap policy propose`) and let contributors vote"
    )]
    NotInForce {
        given: String,
        version: u32,
        hash: String,
    },
    #[error("the stored policy from epoch {epoch} does not parse: {detail}")]
    StoredPolicy { epoch: u64, detail: String },
    #[error("{0} has {1} proposals open already; at most {MAX_OPEN_PER_PROPOSER} at a time")]
    TooManyOpen(String, usize),
    #[error("no proposal {0}")]
    NoProposal(i64),
    #[error(
        "{0} may not vote on proposal {1}: only contributors who earned in its trailing epochs may"
    )]
    NotEligible(String, i64),
    #[error(
        "a ballot must be signed with a covermap-signature-v2 signature by a device bound to a contributor"
    )]
    Unsigned,
    #[error("{0} has cast {MAX_BALLOTS_PER_VOTER} ballots on this proposal already")]
    TooManyBallots(String),
    #[error(transparent)]
    Epoch(#[from] EpochError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Open proposals one proposer may have at a time.
pub const MAX_OPEN_PER_PROPOSER: usize = 3;
/// Closed epochs a proposal's effect is simulated on.
pub const SIMULATED_EPOCHS: u64 = 3;
/// Ballots one contributor may cast on one proposal (a change of mind, not a flood: every
/// reader of the proposal checks every ballot's signature).
pub const MAX_BALLOTS_PER_VOTER: usize = 10;

/// Proposals simulated at once in this process: each closes three epochs again.
static SIMULATIONS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Policies by the epoch they are in force from, ascending.
type Schedule = Vec<(u64, Arc<RewardPolicy>)>;

/// The schedule of policies in force, as this process last read it from the store.
#[derive(Debug, Clone)]
pub struct PolicyBook {
    schedule: Arc<RwLock<Schedule>>,
}

impl PolicyBook {
    /// A book of one policy, in force for ever (tests, and tools without a store).
    pub fn fixed(policy: RewardPolicy) -> Self {
        Self {
            schedule: Arc::new(RwLock::new(vec![(0, Arc::new(policy))])),
        }
    }

    /// Opens the book of `store`. An empty schedule is seeded with `genesis`. If `explicit` (the
    /// operator named a policy file) and that file was never in the schedule, that is an error:
    /// the network's rules change by proposal, not by starting a process with another file. (A
    /// file that was in force once and was replaced by vote since is taken quietly: the schedule
    /// wins.)
    pub async fn open(
        store: &dyn Store,
        genesis: &RewardPolicy,
        explicit: bool,
        now: DateTime<Utc>,
    ) -> Result<Self, GovernanceError> {
        let schedule = store
            .seed_policy(
                &NewScheduledPolicy {
                    from_epoch: 0,
                    policy_hash: genesis.hash.clone(),
                    version: genesis.rules.version,
                    source: genesis.source.clone(),
                },
                now,
            )
            .await?;
        let known = schedule.iter().any(|s| s.policy_hash == genesis.hash);
        let book = Self {
            schedule: Arc::new(RwLock::new(parse_schedule(&schedule)?)),
        };
        let in_force = book.at(now);
        if !known && explicit {
            return Err(GovernanceError::NotInForce {
                given: format!("the given policy file (sha256 {})", genesis.hash),
                version: in_force.rules.version,
                hash: in_force.hash.clone(),
            });
        }
        if in_force.hash != genesis.hash {
            tracing::info!(version = in_force.rules.version, hash = %in_force.hash,
                "the policy in force is the store's schedule's, not the file's");
        }
        Ok(book)
    }

    /// The policy in force for epoch `n`.
    pub fn for_epoch(&self, n: u64) -> Arc<RewardPolicy> {
        let schedule = self
            .schedule
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        schedule
            .iter()
            .rev()
            .find(|(from, _)| *from <= n)
            .or(schedule.first())
            .map_or_else(|| Arc::new(RewardPolicy::shipped()), |(_, p)| p.clone())
    }

    /// The policy in force at `t` (the genesis policy before genesis).
    pub fn at(&self, t: DateTime<Utc>) -> Arc<RewardPolicy> {
        let genesis = self.for_epoch(0);
        match genesis.epoch_at(t) {
            Some(n) => self.for_epoch(n),
            None => genesis,
        }
    }

    /// The policy in force now.
    pub fn now(&self) -> Arc<RewardPolicy> {
        self.at(Utc::now())
    }

    /// Decides the proposals whose vote closed by `now`, then reads the schedule again.
    pub async fn refresh(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<(), GovernanceError> {
        settle(store, self, now).await?;
        let fresh = parse_schedule(&store.policy_schedule().await?)?;
        if !fresh.is_empty() {
            *self
                .schedule
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        }
        Ok(())
    }
}

fn parse_schedule(rows: &[ScheduledPolicy]) -> Result<Schedule, GovernanceError> {
    rows.iter()
        .map(|r| {
            RewardPolicy::parse(&r.source)
                .map(|p| (r.from_epoch, Arc::new(p)))
                .map_err(|e| GovernanceError::StoredPolicy {
                    epoch: r.from_epoch,
                    detail: e.to_string(),
                })
        })
        .collect()
}

/// Keeps `book` current until `shutdown`: decides closed votes and rereads the schedule every
/// `every`, so every process serves the same policy within that time of a change.
pub async fn run_refresher(
    book: PolicyBook,
    store: Arc<dyn Store>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = book.refresh(store.as_ref(), Utc::now()).await {
            tracing::warn!(error = %e, "cannot refresh the policy in force");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// A proposal as it is put: who, why, and the policy file's text.
#[derive(Debug, Clone)]
pub struct Proposing<'a> {
    pub proposed_by: &'a str,
    pub title: &'a str,
    pub rationale: &'a str,
    pub policy: &'a str,
}

/// Makes a proposal at `now`: checks it against the policy in force, draws its electorate from
/// the trailing closed epochs, simulates it on the last closed ones, and opens its vote under
/// the `[governance]` rules in force.
pub async fn propose(
    store: &dyn Store,
    book: &PolicyBook,
    p: Proposing<'_>,
    now: DateTime<Utc>,
) -> Result<ProposalRecord, GovernanceError> {
    book.refresh(store, now).await?;
    let current = book.at(now);
    let proposed = RewardPolicy::parse(p.policy)?;
    governance::check_proposal(&current, &proposed, p.title, p.rationale)?;
    let open = store
        .proposals(1000)
        .await?
        .into_iter()
        .filter(|r| r.proposed_by == p.proposed_by && r.decided_at.is_none())
        .count();
    if open >= MAX_OPEN_PER_PROPOSER {
        return Err(GovernanceError::TooManyOpen(p.proposed_by.to_owned(), open));
    }
    let rules = current.rules.governance.clone();
    let last = store.last_closed_epoch().await?;
    let window = last.map(|l| (l.saturating_sub(rules.trailing_epochs - 1), l));
    let mut rewards = Vec::new();
    if let Some((from, to)) = window {
        for n in from..=to {
            rewards.extend(store.epoch_rewards(n).await?);
        }
    }
    let electorate = governance::electorate(&rules, &rewards);
    let mut simulations: Vec<Simulation> = Vec::new();
    let _turn = SIMULATIONS.acquire().await.ok();
    if let Some(l) = last {
        for n in (l.saturating_sub(SIMULATED_EPOCHS - 1)..=l).rev() {
            match epochs::simulate(store, n, proposed.clone()).await {
                Ok(s) => simulations.push(s),
                Err(EpochError::NotClosed(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let voting = chrono::Duration::seconds(i64::try_from(rules.voting_seconds).unwrap_or(i64::MAX));
    let record = store
        .create_proposal(
            &NewProposal {
                title: p.title.trim().to_owned(),
                rationale: p.rationale.to_owned(),
                source: proposed.source.clone(),
                policy_hash: proposed.hash.clone(),
                version: proposed.rules.version,
                proposed_by: p.proposed_by.to_owned(),
                base_hash: current.hash.clone(),
                voting_rules: json(&rules),
                electorate_epochs: window,
                electorate: electorate.into_iter().collect(),
                simulation: json(&simulations),
                voting_ends_at: now + voting,
            },
            MAX_OPEN_PER_PROPOSER,
            now,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                GovernanceError::TooManyOpen(p.proposed_by.to_owned(), MAX_OPEN_PER_PROPOSER)
            }
            other => other.into(),
        })?;
    Ok(record)
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// A ballot as it arrived: the signed request's parts.
#[derive(Debug, Clone)]
pub struct SignedBallot<'a> {
    pub proposal: i64,
    pub contributor: &'a str,
    pub device: &'a str,
    pub public_key: &'a str,
    pub choice: Choice,
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
    pub signed_at: i64,
    pub nonce: &'a str,
    pub signature_hex: &'a str,
}

/// Records a ballot at `now` after checking its v2 signature (the device bound to its
/// contributor signed this very request) and that its contributor is in the electorate.
pub async fn cast(
    store: &dyn Store,
    b: SignedBallot<'_>,
    now: DateTime<Utc>,
) -> Result<VoteRecord, GovernanceError> {
    let body = std::str::from_utf8(b.body).map_err(|_| GovernanceError::Unsigned)?;
    let vote = NewVote {
        proposal: b.proposal,
        contributor: b.contributor.to_owned(),
        device: b.device.to_owned(),
        public_key: b.public_key.to_owned(),
        choice: b.choice.as_str().to_owned(),
        method: b.method.to_ascii_uppercase(),
        path: b.path.to_owned(),
        body: body.to_owned(),
        signed_at: b.signed_at,
        nonce: b.nonce.to_owned(),
        signature: b.signature_hex.to_ascii_lowercase(),
    };
    if !ballot_signature_holds(&vote) {
        return Err(GovernanceError::Unsigned);
    }
    store
        .proposal(b.proposal)
        .await?
        .ok_or(GovernanceError::NoProposal(b.proposal))?;
    let electorate = store.proposal_electorate(b.proposal).await?;
    if !electorate.iter().any(|(c, _)| c == b.contributor) {
        return Err(GovernanceError::NotEligible(
            b.contributor.to_owned(),
            b.proposal,
        ));
    }
    let cast_before = store
        .proposal_votes(b.proposal)
        .await?
        .iter()
        .filter(|v| v.contributor == b.contributor)
        .count();
    if cast_before >= MAX_BALLOTS_PER_VOTER {
        return Err(GovernanceError::TooManyBallots(b.contributor.to_owned()));
    }
    Ok(store.cast_vote(&vote, now).await?)
}

/// Whether a stored ballot's signature holds: the v2 message rebuilt from its parts verifies
/// under its public key, and its body says the choice it is filed under. Anyone holding the
/// published ballot can run this.
pub fn ballot_signature_holds(v: &NewVote) -> bool {
    let Ok(key) = parse_public_key(&v.public_key) else {
        return false;
    };
    let Some(signature) = hex::decode(&v.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    let said = serde_json::from_str::<serde_json::Value>(&v.body)
        .ok()
        .and_then(|b| b.get("choice").and_then(|c| c.as_str()).map(str::to_owned));
    if said.as_deref() != Some(v.choice.as_str()) {
        return false;
    }
    let message = signed_message_v2(
        &v.device,
        Some(&v.contributor),
        &v.method,
        &v.path,
        &hex::encode(Sha256::digest(v.body.as_bytes())),
        v.signed_at,
        &v.nonce,
    );
    key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&signature))
        .is_ok()
}

/// A ballot as stored, as the check reads it.
pub fn as_new_vote(v: &VoteRecord) -> NewVote {
    NewVote {
        proposal: v.proposal,
        contributor: v.contributor.clone(),
        device: v.device.clone(),
        public_key: v.public_key.clone(),
        choice: v.choice.clone(),
        method: v.method.clone(),
        path: v.path.clone(),
        body: v.body.clone(),
        signed_at: v.signed_at,
        nonce: v.nonce.clone(),
        signature: v.signature.clone(),
    }
}

/// The path a ballot on proposal `id` is signed for: a ballot signed for one proposal cannot be
/// filed under another.
pub fn ballot_path(id: i64) -> String {
    format!("/api/v1/policy/proposals/{id}/votes")
}

/// Whether a ballot may count on proposal `id`, whose vote closes at `ends`, as anyone holding it
/// can check: signed for this proposal's ballot path with a POST, signed no later than the close
/// plus the clock skew a signature is allowed (so a server cannot slip in one signed after), and
/// its signature holds.
pub fn ballot_counts(v: &VoteRecord, id: i64, ends: DateTime<Utc>) -> bool {
    v.proposal == id
        && v.path == ballot_path(id)
        && v.method == "POST"
        && v.signed_at <= ends.timestamp().saturating_add(MAX_CLOCK_SKEW_S)
        && ballot_signature_holds(&as_new_vote(v))
}

/// The count of `votes` on proposal `id` (those cast before its close at `ends`) under `rules`:
/// ballots that may not count ([`ballot_counts`]) and repeats of a signed ballot left out; a
/// contributor's ballots taken in the order their devices signed them, so the last they signed
/// counts, whatever order a server lists them in.
pub fn count(
    id: i64,
    ends: DateTime<Utc>,
    rules: &GovernanceRules,
    electorate: &[(String, u64)],
    votes: &[VoteRecord],
) -> Tally {
    let counted: Vec<&VoteRecord> = votes
        .iter()
        .filter(|v| ballot_counts(v, id, ends))
        .collect();
    tally_of(rules, electorate, counted)
}

fn tally_of(
    rules: &GovernanceRules,
    electorate: &[(String, u64)],
    mut counted: Vec<&VoteRecord>,
) -> Tally {
    let electorate: BTreeMap<String, u64> = electorate.iter().cloned().collect();
    let mut seen = std::collections::HashSet::new();
    counted.retain(|v| seen.insert((v.device.as_str(), v.nonce.as_str())));
    counted.sort_by_key(|v| (v.signed_at, v.id));
    let ballots: Vec<Ballot> = counted
        .into_iter()
        .filter_map(|v| {
            Some(Ballot {
                contributor: v.contributor.clone(),
                choice: v.choice.parse().ok()?,
            })
        })
        .collect();
    governance::tally(rules, &electorate, &ballots)
}

/// The decision of a closed vote: its count; if it passed, the epoch its policy is in force
/// from — unless the policy it amends is no longer the newest scheduled (another proposal got
/// there first), when it is `superseded`.
fn decide(book_genesis: &RewardPolicy, i: DecisionInputs<'_>) -> ProposalDecision {
    let p = i.proposal;
    let rules: GovernanceRules = serde_json::from_str(&p.voting_rules).unwrap_or_default();
    let tally = count(p.id, p.voting_ends_at, &rules, i.electorate, i.votes);
    let newest = i.schedule.iter().max_by_key(|s| s.from_epoch);
    let activates = governance::activation_epoch(book_genesis, &rules, p.voting_ends_at);
    let (outcome, schedule) = match (tally.passed, activates) {
        (false, _) | (true, None) => ("failed", None),
        (true, Some(_)) if newest.is_some_and(|s| s.policy_hash != p.base_hash) => {
            ("superseded", None)
        }
        (true, Some(epoch)) if newest.is_some_and(|s| s.from_epoch >= epoch) => {
            ("superseded", None)
        }
        (true, Some(epoch)) => (
            "passed",
            Some(NewScheduledPolicy {
                from_epoch: epoch,
                policy_hash: p.policy_hash.clone(),
                version: p.version,
                source: p.source.clone(),
            }),
        ),
    };
    ProposalDecision {
        outcome: outcome.to_owned(),
        tally: json(&tally),
        schedule,
    }
}

/// Decides every proposal whose vote closed by `now`, oldest close first. Safe to run in many
/// processes at once: each decision is made once, in the store's transaction.
pub async fn settle(
    store: &dyn Store,
    book: &PolicyBook,
    now: DateTime<Utc>,
) -> Result<Vec<ProposalRecord>, GovernanceError> {
    let genesis = book.for_epoch(0);
    let rule = move |i: DecisionInputs<'_>| decide(&genesis, i);
    let mut decided = Vec::new();
    for id in store.proposals_due(now).await? {
        if let Some(r) = store.decide_proposal(id, &rule, now).await? {
            tracing::info!(proposal = r.id, outcome = r.outcome.as_deref().unwrap_or(""),
                activates = ?r.activates_epoch, "policy proposal decided");
            decided.push(r);
        }
    }
    Ok(decided)
}

/// A proposal with everything needed to check it: its policy text, the rules it is voted under,
/// its simulated effect, electorate, every ballot (signed), and its count — final once decided,
/// else so far.
#[derive(Debug, Serialize)]
pub struct ProposalView {
    #[serde(flatten)]
    pub record: ProposalRecord,
    pub policy: String,
    pub voting_rules: GovernanceRules,
    pub simulation: serde_json::Value,
    pub electorate: Vec<Elector>,
    pub votes: Vec<BallotView>,
    pub tally: Tally,
    pub open: bool,
}

#[derive(Debug, Serialize)]
pub struct Elector {
    pub contributor: String,
    pub weight: u64,
}

#[derive(Debug, Serialize)]
pub struct BallotView {
    #[serde(flatten)]
    pub vote: VoteRecord,
    /// Whether it may count: signed for this proposal, by the close (plus the allowed clock
    /// skew), and its signature holds — anyone can check it again from the fields.
    pub signature_valid: bool,
    /// Whether it was cast before the vote closed.
    pub in_time: bool,
}

/// Proposal `id` in full, at `now`.
pub async fn view(
    store: &dyn Store,
    id: i64,
    now: DateTime<Utc>,
) -> Result<ProposalView, GovernanceError> {
    let record = store
        .proposal(id)
        .await?
        .ok_or(GovernanceError::NoProposal(id))?;
    let electorate = store.proposal_electorate(id).await?;
    let votes = store.proposal_votes(id).await?;
    let rules: GovernanceRules = serde_json::from_str(&record.voting_rules).unwrap_or_default();
    let ends = record.voting_ends_at;
    // Each ballot checked once: for the page, and for the count.
    let votes: Vec<BallotView> = votes
        .into_iter()
        .map(|v| BallotView {
            signature_valid: ballot_counts(&v, id, ends),
            in_time: v.cast_at < ends,
            vote: v,
        })
        .collect();
    let counted = votes
        .iter()
        .filter(|b| b.signature_valid && b.in_time)
        .map(|b| &b.vote)
        .collect();
    let tally = tally_of(&rules, &electorate, counted);
    Ok(ProposalView {
        policy: record.source.clone(),
        simulation: serde_json::from_str(&record.simulation).unwrap_or(serde_json::Value::Null),
        voting_rules: rules,
        electorate: electorate
            .into_iter()
            .map(|(contributor, weight)| Elector {
                contributor,
                weight,
            })
            .collect(),
        votes,
        tally,
        open: record.decided_at.is_none() && now < record.voting_ends_at,
        record,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use covermap_ingest::access::DeviceSigner;

    /// A ballot as a device signs it: on `path`, at `signed_at`, listed as `id`.
    fn ballot(
        signer: &DeviceSigner,
        proposal: i64,
        path: &str,
        choice: &str,
        signed_at: i64,
        id: i64,
    ) -> VoteRecord {
        let body = format!("{{\"choice\":\"{choice}\"}}");
        let h = signer.headers_at("POST", path, body.as_bytes(), signed_at);
        let get = |name: &str| h.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        VoteRecord {
            id,
            proposal,
            contributor: signer.contributor().unwrap().to_owned(),
            device: signer.device.clone(),
            public_key: signer.public_key_hex(),
            choice: choice.to_owned(),
            method: "POST".into(),
            path: path.to_owned(),
            body,
            signed_at,
            nonce: get("x-covermap-nonce"),
            signature: get("x-covermap-signature"),
            cast_at: DateTime::from_timestamp(signed_at, 0).unwrap(),
        }
    }

    #[test]
    fn a_recount_trusts_the_signatures_not_the_listing() {
        let alice = DeviceSigner::generate("cam-alice").bound_to("alice");
        let bob = DeviceSigner::generate("cam-bob").bound_to("bob");
        let rules = GovernanceRules {
            quorum: 0.5,
            ..GovernanceRules::default()
        };
        let electorate = vec![("alice".to_owned(), 1), ("bob".to_owned(), 1)];
        let ends = DateTime::from_timestamp(10_000, 0).unwrap();
        let path = ballot_path(7);
        let yes = ballot(&alice, 7, &path, "yes", 9_000, 1);
        let no_later = ballot(&alice, 7, &path, "no", 9_500, 2);
        // Listed in the other order, alice's last signed ballot (no) still counts.
        let t = count(
            7,
            ends,
            &rules,
            &electorate,
            &[no_later.clone(), yes.clone()],
        );
        assert_eq!((t.yes, t.no), (0, 1));
        // Her earlier yes listed twice more, as if cast again: a repeat counts once.
        let t = count(
            7,
            ends,
            &rules,
            &electorate,
            &[yes.clone(), no_later, yes.clone()],
        );
        assert_eq!((t.yes, t.no), (0, 1));
        // Bob's ballot on proposal 8, filed under 7: not counted.
        let elsewhere = VoteRecord {
            proposal: 7,
            ..ballot(&bob, 8, &ballot_path(8), "yes", 9_000, 3)
        };
        assert!(!ballot_counts(&elsewhere, 7, ends));
        // Signed after the close (past the allowed skew): not counted, whatever cast_at says.
        let late = VoteRecord {
            cast_at: ends - chrono::Duration::seconds(1),
            ..ballot(&bob, 7, &path, "yes", 10_000 + MAX_CLOCK_SKEW_S + 1, 4)
        };
        assert!(!ballot_counts(&late, 7, ends));
        // A changed choice breaks the signature.
        let forged = VoteRecord {
            choice: "no".into(),
            body: "{\"choice\":\"no\"}".into(),
            ..ballot(&bob, 7, &path, "yes", 9_000, 5)
        };
        assert!(!ballot_counts(&forged, 7, ends));
        let t = count(
            7,
            ends,
            &rules,
            &electorate,
            &[yes, elsewhere, late, forged],
        );
        assert_eq!((t.yes, t.no, t.voters), (1, 0, 1));
    }
}
