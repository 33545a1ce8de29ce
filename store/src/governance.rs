//! Governance: the schedule of policies in force, proposals to change it, their electorates and
//! their signed votes. The queries are the same on both backends; one macro writes both
//! implementations, which differ only in how a time is bound, how a write begins, and how the
//! proposal row is locked (PostgreSQL `FOR UPDATE`; SQLite's single writer already excludes).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::dialect::{Columns, micros};
use crate::error::{Result, SqlContext, StoreError};
use crate::reward_rows::{to_i64, to_u64};
use crate::{PgStore, SqliteStore};

/// A policy in force from an epoch on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduledPolicy {
    pub from_epoch: u64,
    pub policy_hash: String,
    pub version: u32,
    #[serde(skip)]
    pub source: String,
    /// The proposal that brought it in; `None` for the genesis policy.
    pub proposal: Option<i64>,
    pub recorded_at: DateTime<Utc>,
}

/// A policy to put in the schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct NewScheduledPolicy {
    pub from_epoch: u64,
    pub policy_hash: String,
    pub version: u32,
    pub source: String,
}

/// A proposal as it is made.
#[derive(Debug, Clone, PartialEq)]
pub struct NewProposal {
    pub title: String,
    pub rationale: String,
    pub source: String,
    pub policy_hash: String,
    pub version: u32,
    pub proposed_by: String,
    pub base_hash: String,
    /// The `[governance]` rules it is voted under, JSON.
    pub voting_rules: String,
    /// The closed epochs whose rewards drew the electorate, if any were closed.
    pub electorate_epochs: Option<(u64, u64)>,
    /// Who may vote and what each vote weighs.
    pub electorate: Vec<(String, u64)>,
    /// Its simulated effect on the last closed epochs, JSON.
    pub simulation: String,
    pub voting_ends_at: DateTime<Utc>,
}

/// A proposal as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProposalRecord {
    pub id: i64,
    pub title: String,
    pub rationale: String,
    #[serde(skip)]
    pub source: String,
    pub policy_hash: String,
    pub version: u32,
    pub proposed_by: String,
    pub proposed_at: DateTime<Utc>,
    pub base_hash: String,
    #[serde(skip)]
    pub voting_rules: String,
    pub electorate_from: Option<u64>,
    pub electorate_to: Option<u64>,
    #[serde(skip)]
    pub simulation: String,
    pub voting_ends_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    /// `passed`, `failed` or `superseded`, once decided.
    pub outcome: Option<String>,
    #[serde(skip)]
    pub tally: Option<String>,
    pub activates_epoch: Option<u64>,
}

/// A ballot as a device signed it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVote {
    pub proposal: i64,
    pub contributor: String,
    pub device: String,
    pub public_key: String,
    pub choice: String,
    pub method: String,
    pub path: String,
    pub body: String,
    pub signed_at: i64,
    pub nonce: String,
    pub signature: String,
}

/// A ballot as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteRecord {
    pub id: i64,
    pub proposal: i64,
    pub contributor: String,
    pub device: String,
    pub public_key: String,
    pub choice: String,
    pub method: String,
    pub path: String,
    pub body: String,
    pub signed_at: i64,
    pub nonce: String,
    pub signature: String,
    pub cast_at: DateTime<Utc>,
}

/// A closed vote's result, as the deciding rule reads it from what is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalDecision {
    /// `passed`, `failed` or `superseded`.
    pub outcome: String,
    /// The count, JSON.
    pub tally: String,
    /// For a passed proposal, the policy and the epoch it is in force from.
    pub schedule: Option<NewScheduledPolicy>,
}

/// What a proposal's decision is made from, read in the transaction that records it.
#[derive(Debug)]
pub struct DecisionInputs<'a> {
    pub proposal: &'a ProposalRecord,
    pub electorate: &'a [(String, u64)],
    /// Ballots cast before the vote closed, in the order they were cast.
    pub votes: &'a [VoteRecord],
    /// The schedule as it stands.
    pub schedule: &'a [ScheduledPolicy],
}

/// The rule that decides a proposal (the pure tally, passed in so the store need not know it).
pub type DecideRule<'a> = &'a (dyn Fn(DecisionInputs<'_>) -> ProposalDecision + Send + Sync);

/// Governance: the policies in force, proposals and votes.
#[async_trait]
pub trait Governance: Send + Sync {
    /// The schedule of policies, by epoch.
    async fn policy_schedule(&self) -> Result<Vec<ScheduledPolicy>>;

    /// Puts `genesis` in force from epoch 0 if the schedule is empty; answers the schedule.
    async fn seed_policy(
        &self,
        genesis: &NewScheduledPolicy,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScheduledPolicy>>;

    /// Records a proposal, unless its proposer has `max_open` undecided ones already
    /// ([`StoreError::Conflict`]): counted and written in one transaction that excludes other
    /// proposals being made, so simultaneous requests cannot all pass the count.
    async fn create_proposal(
        &self,
        p: &NewProposal,
        max_open: usize,
        now: DateTime<Utc>,
    ) -> Result<ProposalRecord>;

    /// Proposals, newest first, at most `limit`.
    async fn proposals(&self, limit: i64) -> Result<Vec<ProposalRecord>>;

    async fn proposal(&self, id: i64) -> Result<Option<ProposalRecord>>;

    /// A proposal's electorate, by contributor.
    async fn proposal_electorate(&self, id: i64) -> Result<Vec<(String, u64)>>;

    /// Every ballot on a proposal, in the order cast.
    async fn proposal_votes(&self, id: i64) -> Result<Vec<VoteRecord>>;

    /// Records a ballot, at `now`. [`StoreError::NotFound`] without such a proposal;
    /// [`StoreError::Conflict`] once its vote closed (decided, or `now` at or past its end) or if
    /// the nonce was used for a ballot before.
    async fn cast_vote(&self, vote: &NewVote, now: DateTime<Utc>) -> Result<VoteRecord>;

    /// Proposals whose vote closed by `now` and are not decided yet, in the order they closed.
    async fn proposals_due(&self, now: DateTime<Utc>) -> Result<Vec<i64>>;

    /// Decides proposal `id` with `decide`, in one transaction that excludes ballots on it and
    /// other decisions: records the result and, for a passed proposal, its schedule row.
    /// Answers `None` if it was decided already or its vote has not closed by `now`.
    async fn decide_proposal(
        &self,
        id: i64,
        decide: DecideRule<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<ProposalRecord>>;
}

const SCHEDULE: &str = "SELECT from_epoch, policy_hash, version, source, proposal, recorded_at \
     FROM policy_schedule ORDER BY from_epoch";

const INSERT_SCHEDULE: &str = "INSERT INTO policy_schedule \
     (from_epoch, policy_hash, version, source, proposal, recorded_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (from_epoch) DO NOTHING";

const PROPOSAL_COLUMNS: &str = "SELECT id, title, rationale, source, policy_hash, version, \
     proposed_by, proposed_at, base_hash, voting_rules, electorate_from, electorate_to, \
     simulation, voting_ends_at, decided_at, outcome, tally, activates_epoch \
     FROM policy_proposals";

const INSERT_PROPOSAL: &str = "INSERT INTO policy_proposals (title, rationale, source, \
     policy_hash, version, proposed_by, proposed_at, base_hash, voting_rules, electorate_from, \
     electorate_to, simulation, voting_ends_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id";

const OPEN_BY_PROPOSER: &str = "SELECT COUNT(*) FROM policy_proposals \
     WHERE proposed_by = $1 AND decided_at IS NULL";

const INSERT_ELECTOR: &str =
    "INSERT INTO policy_electorate (proposal, contributor, weight) VALUES ($1, $2, $3)";

const ELECTORATE: &str = "SELECT contributor, weight FROM policy_electorate \
     WHERE proposal = $1 ORDER BY contributor";

const VOTE_COLUMNS: &str = "SELECT id, proposal, contributor, device, public_key, choice, \
     method, path, body, signed_at, nonce, signature, cast_at FROM policy_votes";

const INSERT_VOTE: &str = "INSERT INTO policy_votes (proposal, contributor, device, public_key, \
     choice, method, path, body, signed_at, nonce, signature, cast_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id";

const NONCE_USED: &str = "SELECT 1 FROM policy_votes WHERE device = $1 AND nonce = $2";

const DUE: &str = "SELECT id FROM policy_proposals \
     WHERE decided_at IS NULL AND voting_ends_at <= $1 ORDER BY voting_ends_at, id";

const DECIDE: &str = "UPDATE policy_proposals \
     SET decided_at = $2, outcome = $3, tally = $4, activates_epoch = $5 \
     WHERE id = $1 AND decided_at IS NULL";

fn scheduled(r: &impl Columns) -> Result<ScheduledPolicy> {
    Ok(ScheduledPolicy {
        from_epoch: to_u64(r.col("from_epoch")?, "from_epoch")?,
        policy_hash: r.col("policy_hash")?,
        version: version(r.col("version")?)?,
        source: r.col("source")?,
        proposal: r.col("proposal")?,
        recorded_at: r.time("recorded_at")?,
    })
}

fn version(v: i32) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("policy version {v}")))
}

fn opt_u64(r: &impl Columns, name: &'static str) -> Result<Option<u64>> {
    r.col::<Option<i64>>(name)?
        .map(|v| to_u64(v, name))
        .transpose()
}

fn proposal(r: &impl Columns) -> Result<ProposalRecord> {
    Ok(ProposalRecord {
        id: r.col("id")?,
        title: r.col("title")?,
        rationale: r.col("rationale")?,
        source: r.col("source")?,
        policy_hash: r.col("policy_hash")?,
        version: version(r.col("version")?)?,
        proposed_by: r.col("proposed_by")?,
        proposed_at: r.time("proposed_at")?,
        base_hash: r.col("base_hash")?,
        voting_rules: r.col("voting_rules")?,
        electorate_from: opt_u64(r, "electorate_from")?,
        electorate_to: opt_u64(r, "electorate_to")?,
        simulation: r.col("simulation")?,
        voting_ends_at: r.time("voting_ends_at")?,
        decided_at: r.opt_time("decided_at")?,
        outcome: r.col("outcome")?,
        tally: r.col("tally")?,
        activates_epoch: opt_u64(r, "activates_epoch")?,
    })
}

fn elector(r: &impl Columns) -> Result<(String, u64)> {
    Ok((r.col("contributor")?, to_u64(r.col("weight")?, "weight")?))
}

fn vote(r: &impl Columns) -> Result<VoteRecord> {
    Ok(VoteRecord {
        id: r.col("id")?,
        proposal: r.col("proposal")?,
        contributor: r.col("contributor")?,
        device: r.col("device")?,
        public_key: r.col("public_key")?,
        choice: r.col("choice")?,
        method: r.col("method")?,
        path: r.col("path")?,
        body: r.col("body")?,
        signed_at: r.col("signed_at")?,
        nonce: r.col("nonce")?,
        signature: r.col("signature")?,
        cast_at: r.time("cast_at")?,
    })
}

fn signed_version(v: u32) -> Result<i32> {
    i32::try_from(v).map_err(|_| StoreError::Conflict(format!("policy version {v} is too large")))
}

/// A time as PostgreSQL binds it.
fn pg_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t
}

impl PgStore {
    async fn governance_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool().begin().await.ctx("starting a transaction")
    }
    fn governance_read(&self) -> &sqlx::PgPool {
        self.pool()
    }
}

impl SqliteStore {
    async fn governance_write(&self) -> Result<crate::sqlite::WriteTx> {
        self.write().await
    }
    fn governance_read(&self) -> &sqlx::SqlitePool {
        &self.pool
    }
}

/// The implementation for one backend: `$at` binds a time, `$lock` locks the rows a `SELECT`
/// read (what is appended to it), `$lock_schedule` excludes other writers of the schedule and
/// `$lock_proposals` other proposals being made.
macro_rules! governance_for {
    ($store:ty, $at:path, $lock:expr, $lock_schedule:expr, $lock_proposals:expr) => {
        #[async_trait]
        impl Governance for $store {
            async fn policy_schedule(&self) -> Result<Vec<ScheduledPolicy>> {
                let rows = sqlx::query(SCHEDULE)
                    .fetch_all(self.governance_read())
                    .await
                    .ctx("reading the policy schedule")?;
                rows.iter().map(scheduled).collect()
            }

            async fn seed_policy(
                &self,
                genesis: &NewScheduledPolicy,
                now: DateTime<Utc>,
            ) -> Result<Vec<ScheduledPolicy>> {
                let mut tx = self.governance_write().await?;
                let empty = sqlx::query("SELECT 1 FROM policy_schedule LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx("reading the policy schedule")?
                    .is_none();
                if empty {
                    sqlx::query(INSERT_SCHEDULE)
                        .bind(0i64)
                        .bind(&genesis.policy_hash)
                        .bind(signed_version(genesis.version)?)
                        .bind(&genesis.source)
                        .bind(None::<i64>)
                        .bind($at(now))
                        .execute(&mut *tx)
                        .await
                        .ctx("seeding the policy schedule")?;
                }
                let rows = sqlx::query(SCHEDULE)
                    .fetch_all(&mut *tx)
                    .await
                    .ctx("reading the policy schedule")?;
                tx.commit().await.ctx("seeding the policy schedule")?;
                rows.iter().map(scheduled).collect()
            }

            async fn create_proposal(
                &self,
                p: &NewProposal,
                max_open: usize,
                now: DateTime<Utc>,
            ) -> Result<ProposalRecord> {
                let (from, to) = p.electorate_epochs.unzip();
                let mut tx = self.governance_write().await?;
                if !$lock_proposals.is_empty() {
                    sqlx::query($lock_proposals)
                        .execute(&mut *tx)
                        .await
                        .ctx("locking the proposals")?;
                }
                let (open,): (i64,) = sqlx::query_as(OPEN_BY_PROPOSER)
                    .bind(&p.proposed_by)
                    .fetch_one(&mut *tx)
                    .await
                    .ctx("counting open proposals")?;
                if usize::try_from(open).unwrap_or(usize::MAX) >= max_open {
                    return Err(StoreError::Conflict(format!(
                        "{} has {open} proposals open already; at most {max_open} at a time",
                        p.proposed_by
                    )));
                }
                let (id,): (i64,) = sqlx::query_as(INSERT_PROPOSAL)
                    .bind(&p.title)
                    .bind(&p.rationale)
                    .bind(&p.source)
                    .bind(&p.policy_hash)
                    .bind(signed_version(p.version)?)
                    .bind(&p.proposed_by)
                    .bind($at(now))
                    .bind(&p.base_hash)
                    .bind(&p.voting_rules)
                    .bind(from.map(|e| to_i64(e, "epoch")).transpose()?)
                    .bind(to.map(|e| to_i64(e, "epoch")).transpose()?)
                    .bind(&p.simulation)
                    .bind($at(p.voting_ends_at))
                    .fetch_one(&mut *tx)
                    .await
                    .ctx("recording a proposal")?;
                for (who, weight) in &p.electorate {
                    sqlx::query(INSERT_ELECTOR)
                        .bind(id)
                        .bind(who)
                        .bind(to_i64(*weight, "weight")?)
                        .execute(&mut *tx)
                        .await
                        .ctx("recording a proposal's electorate")?;
                }
                let row = sqlx::query(&format!("{PROPOSAL_COLUMNS} WHERE id = $1"))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .ctx("reading a proposal")?;
                let record = proposal(&row)?;
                tx.commit().await.ctx("recording a proposal")?;
                Ok(record)
            }

            async fn proposals(&self, limit: i64) -> Result<Vec<ProposalRecord>> {
                let rows = sqlx::query(&format!("{PROPOSAL_COLUMNS} ORDER BY id DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(self.governance_read())
                    .await
                    .ctx("listing proposals")?;
                rows.iter().map(proposal).collect()
            }

            async fn proposal(&self, id: i64) -> Result<Option<ProposalRecord>> {
                let row = sqlx::query(&format!("{PROPOSAL_COLUMNS} WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(self.governance_read())
                    .await
                    .ctx("reading a proposal")?;
                row.as_ref().map(proposal).transpose()
            }

            async fn proposal_electorate(&self, id: i64) -> Result<Vec<(String, u64)>> {
                let rows = sqlx::query(ELECTORATE)
                    .bind(id)
                    .fetch_all(self.governance_read())
                    .await
                    .ctx("reading a proposal's electorate")?;
                rows.iter().map(elector).collect()
            }

            async fn proposal_votes(&self, id: i64) -> Result<Vec<VoteRecord>> {
                let rows = sqlx::query(&format!("{VOTE_COLUMNS} WHERE proposal = $1 ORDER BY id"))
                    .bind(id)
                    .fetch_all(self.governance_read())
                    .await
                    .ctx("reading a proposal's votes")?;
                rows.iter().map(vote).collect()
            }

            async fn cast_vote(&self, v: &NewVote, now: DateTime<Utc>) -> Result<VoteRecord> {
                let mut tx = self.governance_write().await?;
                let row = sqlx::query(&format!("{PROPOSAL_COLUMNS} WHERE id = $1{}", $lock))
                    .bind(v.proposal)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx("reading a proposal")?;
                let p =
                    row.as_ref().map(proposal).transpose()?.ok_or_else(|| {
                        StoreError::NotFound(format!("no proposal {}", v.proposal))
                    })?;
                if p.decided_at.is_some() || now >= p.voting_ends_at {
                    return Err(StoreError::Conflict(format!(
                        "the vote on proposal {} closed at {}",
                        p.id,
                        p.voting_ends_at.to_rfc3339()
                    )));
                }
                let used = sqlx::query(NONCE_USED)
                    .bind(&v.device)
                    .bind(&v.nonce)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx("checking a ballot's nonce")?;
                if used.is_some() {
                    return Err(StoreError::Conflict(
                        "this signed ballot was cast before".into(),
                    ));
                }
                let (id,): (i64,) = sqlx::query_as(INSERT_VOTE)
                    .bind(v.proposal)
                    .bind(&v.contributor)
                    .bind(&v.device)
                    .bind(&v.public_key)
                    .bind(&v.choice)
                    .bind(&v.method)
                    .bind(&v.path)
                    .bind(&v.body)
                    .bind(v.signed_at)
                    .bind(&v.nonce)
                    .bind(&v.signature)
                    .bind($at(now))
                    .fetch_one(&mut *tx)
                    .await
                    .ctx("recording a ballot")?;
                let row = sqlx::query(&format!("{VOTE_COLUMNS} WHERE id = $1"))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .ctx("reading a ballot")?;
                let record = vote(&row)?;
                tx.commit().await.ctx("recording a ballot")?;
                Ok(record)
            }

            async fn proposals_due(&self, now: DateTime<Utc>) -> Result<Vec<i64>> {
                let rows: Vec<(i64,)> = sqlx::query_as(DUE)
                    .bind($at(now))
                    .fetch_all(self.governance_read())
                    .await
                    .ctx("finding proposals to decide")?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn decide_proposal(
                &self,
                id: i64,
                decide: DecideRule<'_>,
                now: DateTime<Utc>,
            ) -> Result<Option<ProposalRecord>> {
                let mut tx = self.governance_write().await?;
                if !$lock_schedule.is_empty() {
                    sqlx::query($lock_schedule)
                        .execute(&mut *tx)
                        .await
                        .ctx("locking the policy schedule")?;
                }
                let row = sqlx::query(&format!("{PROPOSAL_COLUMNS} WHERE id = $1{}", $lock))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx("reading a proposal")?;
                let Some(p) = row.as_ref().map(proposal).transpose()? else {
                    return Ok(None);
                };
                if p.decided_at.is_some() || now < p.voting_ends_at {
                    return Ok(None);
                }
                let electorate = sqlx::query(ELECTORATE)
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await
                    .ctx("reading a proposal's electorate")?
                    .iter()
                    .map(elector)
                    .collect::<Result<Vec<_>>>()?;
                let votes = sqlx::query(&format!(
                    "{VOTE_COLUMNS} WHERE proposal = $1 AND cast_at < $2 ORDER BY id"
                ))
                .bind(id)
                .bind($at(p.voting_ends_at))
                .fetch_all(&mut *tx)
                .await
                .ctx("reading a proposal's votes")?
                .iter()
                .map(vote)
                .collect::<Result<Vec<_>>>()?;
                let schedule = sqlx::query(SCHEDULE)
                    .fetch_all(&mut *tx)
                    .await
                    .ctx("reading the policy schedule")?
                    .iter()
                    .map(scheduled)
                    .collect::<Result<Vec<_>>>()?;
                let decision = decide(DecisionInputs {
                    proposal: &p,
                    electorate: &electorate,
                    votes: &votes,
                    schedule: &schedule,
                });
                let activates = decision.schedule.as_ref().map(|s| s.from_epoch);
                sqlx::query(DECIDE)
                    .bind(id)
                    .bind($at(now))
                    .bind(&decision.outcome)
                    .bind(&decision.tally)
                    .bind(activates.map(|e| to_i64(e, "epoch")).transpose()?)
                    .execute(&mut *tx)
                    .await
                    .ctx("recording a proposal's result")?;
                if let Some(s) = &decision.schedule {
                    let written = sqlx::query(INSERT_SCHEDULE)
                        .bind(to_i64(s.from_epoch, "epoch")?)
                        .bind(&s.policy_hash)
                        .bind(signed_version(s.version)?)
                        .bind(&s.source)
                        .bind(Some(id))
                        .bind($at(now))
                        .execute(&mut *tx)
                        .await
                        .ctx("scheduling a passed policy")?
                        .rows_affected();
                    if written != 1 {
                        return Err(StoreError::Conflict(format!(
                            "epoch {} already has a policy scheduled",
                            s.from_epoch
                        )));
                    }
                }
                let row = sqlx::query(&format!("{PROPOSAL_COLUMNS} WHERE id = $1"))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .ctx("reading a proposal")?;
                let record = proposal(&row)?;
                tx.commit().await.ctx("recording a proposal's result")?;
                Ok(Some(record))
            }
        }
    };
}

governance_for!(
    PgStore,
    pg_time,
    " FOR UPDATE",
    "LOCK TABLE policy_schedule IN EXCLUSIVE MODE",
    "LOCK TABLE policy_proposals IN SHARE ROW EXCLUSIVE MODE"
);
governance_for!(SqliteStore, micros, "", "", "");
