//! Epochs and rewards from the command line, and the schedule that closes epochs inside `serve`
//! and `worker`. The rules are scoring's; this only reads, computes and writes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use covermap_domain::rewards::EpochPeriod;
use covermap_scoring::RewardPolicy;
use covermap_scoring::epoch::{self, EpochOutcome};
use covermap_store::{EpochClaim, Store};
use serde_json::json;
use tokio::sync::watch;

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum EpochCommand {
    /// Close an ended epoch: attribute its contributions, split its emission, write the rewards
    /// and the manifest with its Merkle root. Exactly once, whatever the number of closers.
    Close {
        /// The epoch to close [default: the next one due].
        #[arg(long)]
        epoch: Option<u64>,
    },
    /// One JSON line per epoch: number, period, status, root, emitted, unallocated.
    List,
    /// Recompute an epoch's root from the stored inputs under the policy that closed it; print
    /// both roots; exit non-zero when they differ.
    Verify {
        /// The closed epoch to check.
        #[arg(long)]
        epoch: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum RewardsCommand {
    /// What each contributor and cell would have received in a closed epoch under a proposed
    /// policy, beside what they did receive (JSON lines).
    Simulate {
        /// The proposed policy, a TOML file.
        #[arg(long)]
        policy: PathBuf,
        /// The closed epoch to replay.
        #[arg(long)]
        epoch: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemandCommand {
    /// Create a demand area (a bounty when it has a budget) from a GeoJSON polygon.
    Add(DemandArgs),
    /// One JSON line per demand area, newest first.
    List,
}

#[derive(Debug, Args)]
pub struct DemandArgs {
    /// What planners and drivers see it called (1 to 100 printable characters).
    #[arg(long)]
    pub name: String,
    /// A GeoJSON file: a Polygon or MultiPolygon geometry, or a Feature holding one.
    #[arg(long)]
    pub polygon: PathBuf,
    /// Added to the demand multiplier of its cells.
    #[arg(long, default_value_t = 1.0)]
    pub weight: f64,
    /// Base units for the first fresh capture of its cells, split evenly.
    #[arg(long)]
    pub budget: Option<u64>,
    /// When it stops counting (RFC 3339); an unspent budget is refunded then.
    #[arg(long)]
    pub expires: Option<DateTime<Utc>>,
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

/// Closes epoch `n`: claim, read, compute, write. A failure gives the claim back.
pub async fn close_epoch(
    store: &Arc<dyn Store>,
    policy: &RewardPolicy,
    n: u64,
    closer: &str,
) -> anyhow::Result<Closed> {
    let period = period(policy, n)?;
    let now = Utc::now();
    if period.end > now {
        bail!(
            "epoch {n} has not ended: it ends at {}",
            period.end.to_rfc3339()
        );
    }
    let token = match store.claim_epoch(&period, closer, now, CLOSE_LEASE).await? {
        EpochClaim::Closed => return Ok(Closed::Already),
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
        let outcome = tokio::task::spawn_blocking(move || epoch::close(&inputs, &p)).await?;
        store
            .finish_epoch(&token, &outcome, &policy.source, Utc::now())
            .await?;
        anyhow::Ok(outcome)
    }
    .await;
    match result {
        Ok(outcome) => Ok(Closed::Now(Box::new(outcome))),
        Err(e) => {
            let _ = store.abandon_epoch(n, &token).await;
            Err(e.context(format!("closing epoch {n}")))
        }
    }
}

fn period(policy: &RewardPolicy, n: u64) -> anyhow::Result<EpochPeriod> {
    policy
        .period(n)
        .with_context(|| format!("epoch {n} lies beyond any date"))
}

fn coverage_since(policy: &RewardPolicy, period: &EpochPeriod) -> DateTime<Utc> {
    period.start - policy.coverage_window()
}

/// The next epoch to close at `now`: the one after the last closed, or, before any, the last
/// one that ended (earlier uploads count in it). `None` while it is still within its grace.
pub async fn next_due(
    store: &Arc<dyn Store>,
    policy: &RewardPolicy,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> anyhow::Result<Option<u64>> {
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

/// Closes every epoch that is due, one after another, until `shutdown`.
pub async fn run_closer(
    store: Arc<dyn Store>,
    policy: Arc<RewardPolicy>,
    closer: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let grace = chrono::Duration::seconds(policy.rules.epoch.grace_seconds as i64);
    let poll = Duration::from_secs(policy.rules.epoch.length_seconds.clamp(1, 30));
    loop {
        loop {
            match next_due(&store, &policy, Utc::now(), grace).await {
                Ok(Some(n)) => match close_epoch(&store, &policy, n, &closer).await {
                    Ok(Closed::Now(o)) => {
                        tracing::info!(epoch = n, root = %o.manifest.root,
                            distributed = o.manifest.distributed, "epoch closed");
                    }
                    Ok(Closed::Already) => {}
                    Ok(Closed::Busy { .. }) => break,
                    Err(e) => {
                        tracing::warn!(epoch = n, error = format!("{e:#}"), "epoch not closed");
                        break;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "cannot read the epochs");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

pub async fn epoch(command: EpochCommand, settings: &Settings) -> anyhow::Result<()> {
    let store = crate::open_store(settings).await?;
    let policy = settings.reward_policy()?;
    match command {
        EpochCommand::Close { epoch } => {
            let n = match epoch {
                Some(n) => n,
                None => next_due(&store, &policy, Utc::now(), chrono::Duration::zero())
                    .await?
                    .context("no epoch is due: the next one has not ended yet")?,
            };
            let closer = format!("cli-{}", std::process::id());
            match close_epoch(&store, &policy, n, &closer).await? {
                Closed::Now(o) => println!("{}", serde_json::to_string(&o.manifest)?),
                Closed::Already => {
                    let stored = store.closed_epoch(n).await?.context("the epoch vanished")?;
                    eprintln!("epoch {n} was closed already");
                    println!("{}", serde_json::to_string(&stored.manifest)?);
                }
                Closed::Busy { by, until } => bail!(
                    "epoch {n} is being closed by {by} (its claim runs until {})",
                    until.to_rfc3339()
                ),
            }
        }
        EpochCommand::List => {
            for e in store.epochs().await? {
                println!(
                    "{}",
                    json!({
                        "epoch": e.epoch,
                        "start": e.start,
                        "end": e.end,
                        "status": e.status,
                        "root": e.root,
                        "emitted": e.distributed,
                        "unallocated": e.unallocated,
                        "emission": e.emission,
                        "bounty_paid": e.bounty_paid,
                        "closed_at": e.closed_at,
                        "policy_hash": e.policy_hash,
                    })
                );
            }
        }
        EpochCommand::Verify { epoch } => {
            let report = verify(&store, epoch).await?;
            println!("{}", serde_json::to_string(&report)?);
            if !report.matches {
                bail!(
                    "epoch {epoch} does not verify: stored root {} but its inputs give {}",
                    report.stored_root,
                    report.recomputed_root
                );
            }
        }
    }
    Ok(())
}

#[derive(Debug, serde::Serialize)]
pub struct Verification {
    pub epoch: u64,
    pub stored_root: String,
    pub recomputed_root: String,
    pub policy_hash: String,
    /// Inputs whose hash differs from the manifest's: what changed since the close.
    pub changed_inputs: Vec<&'static str>,
    pub matches: bool,
}

/// Recomputes a closed epoch from the stored inputs under the policy text it recorded.
pub async fn verify(store: &Arc<dyn Store>, n: u64) -> anyhow::Result<Verification> {
    let stored = store
        .closed_epoch(n)
        .await?
        .with_context(|| format!("epoch {n} is not closed"))?;
    let policy = RewardPolicy::parse(&stored.policy).context("the epoch's recorded policy")?;
    if policy.hash != stored.manifest.policy_hash {
        bail!("epoch {n}'s recorded policy text does not match its hash");
    }
    let period = period(&policy, n)?;
    let inputs = store
        .epoch_inputs(&period, coverage_since(&policy, &period))
        .await?;
    let outcome = tokio::task::spawn_blocking(move || epoch::close(&inputs, &policy)).await?;
    let (a, b) = (&stored.manifest.inputs, &outcome.manifest.inputs);
    let mut changed = Vec::new();
    for (name, x, y) in [
        ("captures", &a.captures, &b.captures),
        ("last_seen", &a.last_seen, &b.last_seen),
        ("roads", &a.roads, &b.roads),
        ("radio", &a.radio, &b.radio),
        ("emitters", &a.emitters, &b.emitters),
        ("demand", &a.demand, &b.demand),
        ("evidence", &a.evidence, &b.evidence),
        ("previous", &a.previous, &b.previous),
        ("usage", &a.usage, &b.usage),
    ] {
        if x != y {
            changed.push(name);
        }
    }
    Ok(Verification {
        epoch: n,
        matches: stored.manifest.root == outcome.manifest.root && changed.is_empty(),
        stored_root: stored.manifest.root,
        recomputed_root: outcome.manifest.root,
        policy_hash: stored.manifest.policy_hash,
        changed_inputs: changed,
    })
}

pub async fn rewards(command: RewardsCommand, settings: &Settings) -> anyhow::Result<()> {
    let store = crate::open_store(settings).await?;
    let RewardsCommand::Simulate { policy, epoch: n } = command;
    let text = std::fs::read_to_string(&policy)
        .with_context(|| format!("cannot read {}", policy.display()))?;
    let proposed =
        RewardPolicy::parse(&text).with_context(|| format!("in {}", policy.display()))?;
    let sim = covermap_web::rewards::simulate(store.as_ref(), n, proposed)
        .await?
        .with_context(|| format!("epoch {n} is not closed"))?;
    println!(
        "{}",
        json!({
            "epoch": n,
            "policy_hash": sim.recorded.policy_hash,
            "proposed_policy_hash": sim.simulated.policy_hash,
            "received": sim.recorded,
            "simulated": sim.simulated,
        })
    );
    for line in sim.contributors.iter().chain(&sim.cells) {
        println!("{}", serde_json::to_string(line)?);
    }
    Ok(())
}

pub async fn demand(command: DemandCommand, settings: &Settings) -> anyhow::Result<()> {
    let store = crate::open_store(settings).await?;
    let policy = settings.reward_policy()?;
    match command {
        DemandCommand::List => {
            for a in store.demand_areas().await? {
                println!("{}", serde_json::to_string(&a)?);
            }
        }
        DemandCommand::Add(args) => {
            let text = std::fs::read_to_string(&args.polygon)
                .with_context(|| format!("cannot read {}", args.polygon.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", args.polygon.display()))?;
            let area = covermap_web::demand::new_area(
                covermap_web::demand::DemandRequest {
                    name: args.name,
                    polygon: v,
                    weight: args.weight,
                    budget: args.budget,
                    expires_at: args.expires,
                },
                &policy,
                settings.resolution(),
                None,
                Utc::now(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let record = store.create_demand_area(&area, Utc::now()).await?;
            println!("{}", serde_json::to_string(&record)?);
        }
    }
    Ok(())
}
