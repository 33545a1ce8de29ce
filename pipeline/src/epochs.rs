//! The epoch use cases: close an ended epoch exactly once whatever the number of closers and
//! publish its inputs, find the next one due, verify a closed one from its stored inputs or from
//! its published files alone, and simulate one under another policy. The rules are `scoring`'s
//! ([`epoch::close`]); this reads, computes and writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use covermap_domain::rewards::EpochPeriod;
use covermap_domain::rewards::{InputHashes, Manifest, PublishedFile};
use covermap_scoring::RewardPolicy;
use covermap_scoring::epoch::{self, EpochOutcome};
use covermap_scoring::ledger::{LedgerLeaf, MerkleTree};
use covermap_store::published::{self, POLICY};
use covermap_store::{Blobs, EpochClaim, Store, StoreError};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// Why an epoch use case could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    #[error("epoch {epoch} has not ended: it ends at {}", .end.to_rfc3339())]
    NotEnded { epoch: u64, end: DateTime<Utc> },
    #[error("epoch {0} lies beyond any date")]
    BeyondAnyDate(u64),
    #[error("epoch {0} is not closed")]
    NotClosed(u64),
    #[error("epoch {epoch}'s recorded policy: {detail}")]
    RecordedPolicy { epoch: u64, detail: String },
    #[error("computing epoch {epoch} failed: {detail}")]
    Computation { epoch: u64, detail: String },
    /// A published epoch's files are missing, altered or unreadable.
    #[error("epoch {epoch}'s published files: {detail}")]
    Published { epoch: u64, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long a closer holds an epoch before another may take it over.
const CLOSE_LEASE: Duration = Duration::from_secs(600);

/// What closing found.
#[derive(Debug)]
pub enum Closed {
    Now(Box<EpochOutcome>),
    Already,
    Busy { by: String, until: DateTime<Utc> },
}

/// Closes epoch `n`: claim, read, compute, publish the inputs, write; then publish the
/// manifest. A failure gives the claim back.
///
/// The inputs go to the object store before the results go to the database, so a closed epoch
/// always has its files; the manifest (naming their sha256) goes after, as the public mark that
/// the epoch is closed. A manifest lost to a crash in between is written by the next closer
/// that finds the epoch closed.
pub async fn close_epoch(
    store: &dyn Store,
    blobs: &Blobs,
    policy: &RewardPolicy,
    n: u64,
    closer: &str,
) -> Result<Closed, EpochError> {
    let period = period(policy, n)?;
    let now = Utc::now();
    if period.end > now {
        return Err(EpochError::NotEnded {
            epoch: n,
            end: period.end,
        });
    }
    let token = match store.claim_epoch(&period, closer, now, CLOSE_LEASE).await? {
        EpochClaim::Closed => {
            if let Err(e) = publish_manifest_if_missing(store, blobs, n).await {
                tracing::warn!(epoch = n, error = %e, "the manifest is not published yet");
            }
            return Ok(Closed::Already);
        }
        EpochClaim::Busy { by, until } => return Ok(Closed::Busy { by, until }),
        EpochClaim::Held { token, tagged, .. } => {
            tracing::info!(epoch = n, uploads = tagged, "closing epoch");
            token
        }
    };
    let result = async {
        let inputs = store
            .epoch_inputs(&period, coverage_since(policy, &period))
            .await?;
        let p = policy.clone();
        let (mut outcome, files) = compute_and_encode(n, inputs, p).await?;
        outcome.manifest.files = publish_files(blobs, n, files).await?;
        store
            .finish_epoch(&token, &outcome, &policy.source, Utc::now())
            .await?;
        Ok::<_, EpochError>(outcome)
    }
    .await;
    match result {
        Ok(outcome) => {
            if let Err(e) = publish_manifest(blobs, &outcome.manifest).await {
                // Closed all the same: the next closer to look writes it.
                tracing::warn!(epoch = n, error = %e, "the manifest is not published yet");
            }
            Ok(Closed::Now(Box::new(outcome)))
        }
        Err(e) => {
            if let Err(given_back) = store.abandon_epoch(n, &token).await {
                tracing::warn!(epoch = n, error = %given_back, "could not give the claim back");
            }
            Err(e)
        }
    }
}

fn period(policy: &RewardPolicy, n: u64) -> Result<EpochPeriod, EpochError> {
    policy.period(n).ok_or(EpochError::BeyondAnyDate(n))
}

/// `scoring`'s close, off the async threads (an epoch can hold a million observations).
async fn compute(
    n: u64,
    inputs: covermap_domain::rewards::EpochInputs,
    policy: RewardPolicy,
) -> Result<EpochOutcome, EpochError> {
    off_thread(n, move || epoch::close(&inputs, &policy)).await
}

/// The close and the encoding of its inputs as files, off the async threads.
async fn compute_and_encode(
    n: u64,
    inputs: covermap_domain::rewards::EpochInputs,
    policy: RewardPolicy,
) -> Result<(EpochOutcome, Vec<(PublishedFile, Bytes)>), EpochError> {
    off_thread(n, move || {
        let outcome = epoch::close(&inputs, &policy);
        published::encode(&inputs, &policy.source).map(|files| (outcome, files))
    })
    .await?
    .map_err(EpochError::Store)
}

/// Runs epoch `n`'s computation on a blocking thread (an epoch can hold a million
/// observations).
async fn off_thread<T: Send + 'static>(
    n: u64,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EpochError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| EpochError::Computation {
            epoch: n,
            detail: e.to_string(),
        })
}

/// Writes an epoch's files to the object store; what its manifest names.
async fn publish_files(
    blobs: &Blobs,
    n: u64,
    files: Vec<(PublishedFile, Bytes)>,
) -> Result<Vec<PublishedFile>, EpochError> {
    let mut named = Vec::with_capacity(files.len());
    for (file, bytes) in files {
        blobs
            .put_published(&published::file_key(n, &file), bytes)
            .await?;
        named.push(file);
    }
    Ok(named)
}

async fn publish_manifest(blobs: &Blobs, manifest: &Manifest) -> Result<(), EpochError> {
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| EpochError::Computation {
        epoch: manifest.epoch,
        detail: e.to_string(),
    })?;
    blobs
        .put_published(&published::manifest_key(manifest.epoch), Bytes::from(json))
        .await?;
    Ok(())
}

/// Writes a closed epoch's manifest to the object store if its close did not get to.
async fn publish_manifest_if_missing(
    store: &dyn Store,
    blobs: &Blobs,
    n: u64,
) -> Result<(), EpochError> {
    if blobs.exists(&published::manifest_key(n)).await? {
        return Ok(());
    }
    let Some(stored) = store.closed_epoch(n).await? else {
        return Ok(());
    };
    if stored.manifest.files.is_empty() {
        // Closed before inputs were published: there is nothing for a manifest to name.
        return Ok(());
    }
    publish_manifest(blobs, &stored.manifest).await
}

fn coverage_since(policy: &RewardPolicy, period: &EpochPeriod) -> DateTime<Utc> {
    period.start - policy.coverage_window()
}

/// The next epoch to close at `now`: the one after the last closed, or, before any, the last
/// one that ended (earlier uploads count in it). `None` while it is still within its grace.
pub async fn next_due(
    store: &dyn Store,
    policy: &RewardPolicy,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> Result<Option<u64>, EpochError> {
    let next = match store.last_closed_epoch().await? {
        Some(l) => l + 1,
        None => match policy.epoch_at(now - grace) {
            Some(current) if current > 0 => current - 1,
            _ => return Ok(None),
        },
    };
    let p = period(policy, next)?;
    Ok((p.end + grace <= now).then_some(next))
}

/// Closes epoch `n` under the policy in force for it: the votes that closed are decided and the
/// schedule read again first, so every closer closes it under the same policy.
pub async fn close_in_force(
    store: &dyn Store,
    blobs: &Blobs,
    book: &crate::governance::PolicyBook,
    n: u64,
    closer: &str,
) -> Result<Closed, EpochError> {
    if let Err(e) = book.refresh(store, Utc::now()).await {
        return Err(match e {
            crate::governance::GovernanceError::Store(s) => EpochError::Store(s),
            other => EpochError::Computation {
                epoch: n,
                detail: other.to_string(),
            },
        });
    }
    close_epoch(store, blobs, &book.for_epoch(n), n, closer).await
}

/// Detaches the month partitions (PostGIS) that end at or before `before`, as
/// [`covermap_store::Partitions::detach_partitions`] does, and refuses a `before` later than
/// the start of the next epoch's coverage window too: the road driven since then counts in it.
pub async fn detach_months(
    store: &dyn Store,
    book: &crate::governance::PolicyBook,
    before: DateTime<Utc>,
) -> Result<Vec<covermap_store::PartitionInfo>, EpochError> {
    let next = store.last_closed_epoch().await?.map_or(0, |l| l + 1);
    let policy = book.for_epoch(next);
    let since = coverage_since(&policy, &period(&policy, next)?);
    if before > since {
        return Err(EpochError::Store(StoreError::Conflict(format!(
            "epoch {next}, the next to close, counts the road driven from {} on; detach only \
             months before that",
            since.to_rfc3339()
        ))));
    }
    Ok(store.detach_partitions(before).await?)
}

/// Closes every epoch that is due, one after another, until `shutdown`, each under the policy
/// in force for it. (The epoch clock is the same in every policy: proposals cannot change it.)
pub async fn run_closer(
    store: Arc<dyn Store>,
    blobs: Blobs,
    book: crate::governance::PolicyBook,
    closer: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let clock = book.for_epoch(0);
    let poll = Duration::from_secs(clock.rules.epoch.length_seconds.clamp(1, 30));
    // The last closed epoch whose manifest is known to be published: checked once each, not
    // every poll.
    let mut manifest_seen = None;
    loop {
        // A close that crashed between its commit and its manifest's upload is published here.
        match store.last_closed_epoch().await {
            Ok(Some(last)) if manifest_seen != Some(last) => {
                match publish_manifest_if_missing(store.as_ref(), &blobs, last).await {
                    Ok(()) => manifest_seen = Some(last),
                    Err(e) => {
                        tracing::warn!(epoch = last, error = %e, "the manifest is not published yet");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the epochs"),
        }
        loop {
            let grace = chrono::Duration::seconds(book.now().rules.epoch.grace_seconds as i64);
            match next_due(store.as_ref(), &clock, Utc::now(), grace).await {
                Ok(Some(n)) => {
                    match close_in_force(store.as_ref(), &blobs, &book, n, &closer).await {
                        Ok(Closed::Now(o)) => {
                            tracing::info!(epoch = n, root = %o.manifest.root,
                            distributed = o.manifest.distributed, "epoch closed");
                        }
                        Ok(Closed::Already) => {}
                        Ok(Closed::Busy { .. }) => break,
                        Err(e) => {
                            tracing::warn!(epoch = n, error = %e, "epoch not closed");
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the epochs");
                    break;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// A closed epoch recomputed from its stored inputs, beside what was recorded.
#[derive(Debug, serde::Serialize)]
pub struct Verification {
    pub epoch: u64,
    pub stored_root: String,
    pub recomputed_root: String,
    pub policy_hash: String,
    /// Inputs whose hash differs from the manifest's: what changed since the close.
    pub changed_inputs: Vec<&'static str>,
    /// Figures of the manifest (amounts, counts) the recomputation does not give.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed_figures: Vec<String>,
    /// From published files: the root of epoch N − 1 that the previous totals the epoch starts
    /// from hash to (absent when there were none: the ledger's first epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_root: Option<String>,
    pub matches: bool,
}

/// Recomputes a closed epoch from the stored inputs under the policy text it recorded.
pub async fn verify(store: &dyn Store, n: u64) -> Result<Verification, EpochError> {
    let stored = store
        .closed_epoch(n)
        .await?
        .ok_or(EpochError::NotClosed(n))?;
    let policy = RewardPolicy::parse(&stored.policy).map_err(|e| EpochError::RecordedPolicy {
        epoch: n,
        detail: e.to_string(),
    })?;
    if policy.hash != stored.manifest.policy_hash {
        return Err(EpochError::RecordedPolicy {
            epoch: n,
            detail: "its text does not match its hash".into(),
        });
    }
    let period = period(&policy, n)?;
    let inputs = store
        .epoch_inputs(&period, coverage_since(&policy, &period))
        .await?;
    let outcome = compute(n, inputs, policy).await?;
    Ok(Verification::of(stored.manifest, &outcome.manifest))
}

impl Verification {
    fn of(stored: Manifest, recomputed: &Manifest) -> Self {
        let changed = changed_inputs(&stored.inputs, &recomputed.inputs);
        let figures = changed_figures(&stored, recomputed);
        Self {
            epoch: stored.epoch,
            matches: stored.root == recomputed.root && changed.is_empty() && figures.is_empty(),
            stored_root: stored.root,
            recomputed_root: recomputed.root.clone(),
            policy_hash: stored.policy_hash,
            changed_inputs: changed,
            changed_figures: figures,
            previous_root: None,
        }
    }
}

/// The manifest's fields other than the input hashes, the root and the files that differ.
fn changed_figures(stored: &Manifest, recomputed: &Manifest) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (
        serde_json::to_value(stored),
        serde_json::to_value(recomputed),
    ) else {
        return vec!["manifest".into()];
    };
    a.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "inputs" | "root" | "files"))
        .filter(|(k, v)| b.get(k.as_str()) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Input lists whose hashes differ. A hash the manifest does not hold (an epoch closed before
/// that list was hashed) is not compared.
fn changed_inputs(a: &InputHashes, b: &InputHashes) -> Vec<&'static str> {
    [
        ("captures", &a.captures, &b.captures),
        ("last_seen", &a.last_seen, &b.last_seen),
        ("roads", &a.roads, &b.roads),
        ("radio", &a.radio, &b.radio),
        ("emitters", &a.emitters, &b.emitters),
        ("demand", &a.demand, &b.demand),
        ("evidence", &a.evidence, &b.evidence),
        ("previous", &a.previous, &b.previous),
        ("usage", &a.usage, &b.usage),
        ("uploads", &a.uploads, &b.uploads),
        ("refusals", &a.refusals, &b.refusals),
    ]
    .into_iter()
    .filter(|(_, x, y)| !x.is_empty() && x != y)
    .map(|(name, _, _)| name)
    .collect()
}

/// Recomputes a closed epoch from its published files alone — the manifest, the policy and the
/// inputs, read from `source` (an object store or a web server holding `epochs/{n}/…`) — with no
/// database. Each file must hash to what the manifest says, the policy to the manifest's policy
/// hash and the epoch's dates; then the inputs are closed again and the root compared.
///
/// The root commits to every contributor's cumulative total, and the epoch starts from the
/// totals before it (`previous.parquet`): those must hash to epoch N − 1's root — the
/// `previous_root` given (one held from elsewhere), or else N − 1's published manifest's — or a
/// forger could move earnings between epochs and keep the root. Without either, the previous
/// totals must be empty (the ledger's first epoch).
pub async fn verify_published(
    source: &Blobs,
    n: u64,
    previous_root: Option<&str>,
) -> Result<Verification, EpochError> {
    let fail = |detail: String| EpochError::Published { epoch: n, detail };
    let manifest = published_manifest(source, n).await?.ok_or_else(|| {
        fail(format!(
            "no {} at {}: the epoch is not closed, or was closed before inputs were published",
            published::manifest_key(n),
            source.url()
        ))
    })?;
    let mut files = std::collections::BTreeMap::new();
    for file in &manifest.files {
        let key = published::file_key(n, file);
        let bytes = match source.get_published_at_most(&key, file.bytes).await {
            Ok(bytes) => bytes,
            Err(StoreError::BlobMissing { .. }) => {
                return Err(fail(format!("{} is missing ({key})", file.name)));
            }
            Err(e) => return Err(e.into()),
        };
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != file.sha256 || bytes.len() as u64 != file.bytes {
            return Err(fail(format!(
                "{} was altered: the manifest says sha256 {} ({} bytes), the file hashes to {sha} ({} bytes)",
                file.name,
                file.sha256,
                file.bytes,
                bytes.len()
            )));
        }
        files.insert(file.name.clone(), bytes);
    }
    let text = files
        .get(POLICY)
        .ok_or_else(|| fail(format!("the manifest names no {POLICY}")))?;
    let text = std::str::from_utf8(text).map_err(|e| fail(format!("{POLICY}: {e}")))?;
    let policy = RewardPolicy::parse(text).map_err(|e| fail(format!("{POLICY}: {e}")))?;
    if policy.hash != manifest.policy_hash {
        return Err(fail(format!(
            "{POLICY} hashes to {}, the manifest says {}",
            policy.hash, manifest.policy_hash
        )));
    }
    let period = period(&policy, n)?;
    if (period.start, period.end) != (manifest.start, manifest.end) {
        return Err(fail(format!(
            "the policy puts epoch {n} at {} to {}, the manifest at {} to {}",
            period.start.to_rfc3339(),
            period.end.to_rfc3339(),
            manifest.start.to_rfc3339(),
            manifest.end.to_rfc3339()
        )));
    }
    let inputs = tokio::task::spawn_blocking(move || published::decode(period, &files))
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))?;
    // The totals the epoch starts from, as epoch N − 1's ledger leaves.
    let before = match (previous_root, n.checked_sub(1)) {
        (_, None) => None,
        (Some(root), Some(m)) => Some((m, root.to_ascii_lowercase(), None)),
        (None, Some(m)) => published_manifest(source, m)
            .await?
            .map(|b| (m, b.root, Some(b.distributor))),
    };
    let previous_root = match before {
        None if inputs.previous.iter().all(|p| p.cumulative == 0) => None,
        None => {
            return Err(fail(format!(
                "its previous totals cannot be checked: epoch {} is not published at {}; give \
                 the root you hold for it (--previous-root)",
                n.saturating_sub(1),
                source.url()
            )));
        }
        Some((m, root, distributor)) => {
            let distributor = distributor.unwrap_or_else(|| policy.rules.distributor.clone());
            let leaves: Vec<LedgerLeaf> = inputs
                .previous
                .iter()
                .filter(|p| p.cumulative > 0)
                .map(|p| LedgerLeaf {
                    epoch: m,
                    distributor: distributor.clone(),
                    contributor: p.contributor.clone(),
                    cumulative: p.cumulative,
                })
                .collect();
            let hashed = hex::encode(MerkleTree::new(&leaves).root());
            if hashed != root {
                return Err(fail(format!(
                    "its previous totals hash to {hashed}, not to epoch {m}'s root {root}: \
                     earnings were moved between epochs"
                )));
            }
            Some(root)
        }
    };
    let outcome = compute(n, inputs, policy).await?;
    let mut report = Verification::of(manifest, &outcome.manifest);
    report.previous_root = previous_root;
    Ok(report)
}

/// The size beyond which a published manifest is not read.
const MANIFEST_MAX_BYTES: u64 = 1 << 20;

/// Epoch `n`'s published manifest, `None` when there is none.
async fn published_manifest(source: &Blobs, n: u64) -> Result<Option<Manifest>, EpochError> {
    let key = published::manifest_key(n);
    let fail = |detail: String| EpochError::Published { epoch: n, detail };
    let manifest: Manifest = match source.get_published_at_most(&key, MANIFEST_MAX_BYTES).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| fail(format!("{key} is not a manifest: {e}")))?,
        Err(StoreError::BlobMissing { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if manifest.epoch != n {
        return Err(fail(format!(
            "{key} is epoch {}'s manifest",
            manifest.epoch
        )));
    }
    Ok(Some(manifest))
}

/// What a closed epoch would have paid under another policy, beside what it paid.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Simulation {
    pub epoch: u64,
    pub recorded: SimulationTotals,
    pub simulated: SimulationTotals,
    pub contributors: Vec<SimulatedAmount>,
    pub cells: Vec<SimulatedAmount>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SimulationTotals {
    pub distributed: u64,
    pub unallocated: u64,
    pub root: String,
    pub policy_version: u32,
    pub policy_hash: String,
}

/// One contributor's (or cell's) amount, received and simulated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimulatedAmount {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contributor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<covermap_domain::Cell>,
    pub received: u64,
    pub simulated: u64,
    pub delta: i128,
}

impl SimulatedAmount {
    fn new(
        contributor: Option<String>,
        cell: Option<covermap_domain::Cell>,
        a: u64,
        b: u64,
    ) -> Self {
        Self {
            contributor,
            cell,
            received: a,
            simulated: b,
            delta: i128::from(b) - i128::from(a),
        }
    }
}

/// Closes epoch `n` again from its stored inputs under `proposed` — its period stays as it was
/// closed — and sets each contributor's and cell's amount beside what it received. The ledger
/// is not touched.
pub async fn simulate(
    store: &dyn Store,
    n: u64,
    proposed: RewardPolicy,
) -> Result<Simulation, EpochError> {
    let stored = store
        .closed_epoch(n)
        .await?
        .ok_or(EpochError::NotClosed(n))?;
    let closed_under =
        RewardPolicy::parse(&stored.policy).map_err(|e| EpochError::RecordedPolicy {
            epoch: n,
            detail: e.to_string(),
        })?;
    let period = period(&closed_under, n)?;
    let inputs = store
        .epoch_inputs(&period, period.start - proposed.coverage_window())
        .await?;
    let sim = compute(n, inputs, proposed.clone()).await?;
    let received = store.epoch_rewards(n).await?;
    let cells = store.epoch_cells(n).await?;
    // Both sides keyed once: an epoch has up to 100,000 cells.
    let mut by_contributor: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in received {
        by_contributor.entry(r.contributor).or_default().0 = r.amount;
    }
    for r in &sim.rewards {
        by_contributor.entry(r.contributor.clone()).or_default().1 = r.amount;
    }
    let mut by_cell: BTreeMap<covermap_domain::Cell, (u64, u64)> = BTreeMap::new();
    for c in &cells {
        by_cell.entry(c.cell).or_default().0 = c.amount;
    }
    for c in &sim.cells {
        by_cell.entry(c.cell).or_default().1 = c.amount;
    }
    Ok(Simulation {
        epoch: n,
        recorded: SimulationTotals {
            distributed: stored.manifest.distributed,
            unallocated: stored.manifest.unallocated,
            root: stored.manifest.root.clone(),
            policy_version: closed_under.rules.version,
            policy_hash: stored.manifest.policy_hash.clone(),
        },
        simulated: SimulationTotals {
            distributed: sim.manifest.distributed,
            unallocated: sim.manifest.unallocated,
            root: sim.manifest.root.clone(),
            policy_version: proposed.rules.version,
            policy_hash: proposed.hash.clone(),
        },
        contributors: by_contributor
            .into_iter()
            .map(|(who, (a, b))| SimulatedAmount::new(Some(who), None, a, b))
            .collect(),
        cells: by_cell
            .into_iter()
            .map(|(cell, (a, b))| SimulatedAmount::new(None, Some(cell), a, b))
            .collect(),
    })
}
