//! Epochs and rewards from the command line: arguments read, `covermap_pipeline::epochs` called,
//! its answers printed.

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use covermap_pipeline::epochs::{
    Closed, Verification, close_in_force, next_due, verify, verify_published,
};
use covermap_scoring::RewardPolicy;
use serde_json::json;

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
    /// both roots; exit non-zero when they differ. With --from, from the published files alone:
    /// no database is opened.
    Verify {
        /// The closed epoch to check.
        #[arg(long)]
        epoch: u64,
        /// Where the epoch's files are published: a server's `http://HOST/published`, or the
        /// object store itself (`s3://bucket/prefix`, `file:///dir`, a directory). Its
        /// `epochs/N/manifest.json` names each file and its sha256.
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        /// The root you hold from elsewhere (the chain, a signed announcement): with --from, the
        /// published manifest must carry it too.
        #[arg(long, value_name = "HEX", requires = "from")]
        root: Option<String>,
        /// With --from: the root of epoch N − 1 you hold, which the totals epoch N starts from
        /// must hash to [default: epoch N − 1's published manifest's root].
        #[arg(long, value_name = "HEX", requires = "from")]
        previous_root: Option<String>,
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

pub async fn epoch(command: EpochCommand, settings: &Settings) -> anyhow::Result<()> {
    if let EpochCommand::Verify {
        epoch,
        from: Some(from),
        root,
        previous_root,
    } = &command
    {
        let source = covermap_store::Blobs::open_to_read(from)?;
        let report = verify_published(&source, *epoch, previous_root.as_deref()).await?;
        print_verification(&report)?;
        if let Some(root) = root
            && !root.eq_ignore_ascii_case(&report.stored_root)
        {
            bail!(
                "epoch {epoch}'s published manifest carries root {}, not the {root} you hold",
                report.stored_root
            );
        }
        return Ok(());
    }
    let store = crate::open_store(settings).await?;
    let book = crate::policy_cmd::open_book(settings, store.as_ref()).await?;
    match command {
        EpochCommand::Close { epoch } => {
            let n = match epoch {
                Some(n) => n,
                None => next_due(
                    store.as_ref(),
                    &book.for_epoch(0),
                    Utc::now(),
                    chrono::Duration::zero(),
                )
                .await?
                .context("no epoch is due: the next one has not ended yet")?,
            };
            let closer = format!("cli-{}", std::process::id());
            let blobs = covermap_store::Blobs::open(&settings.objects).await?;
            match close_in_force(store.as_ref(), &blobs, &book, n, &closer).await? {
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
        EpochCommand::Verify { epoch, .. } => {
            print_verification(&verify(store.as_ref(), epoch).await?)?;
        }
    }
    Ok(())
}

fn print_verification(report: &Verification) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(report)?);
    if !report.matches {
        bail!(
            "epoch {} does not verify: recorded root {} but its inputs give {}{}",
            report.epoch,
            report.stored_root,
            report.recomputed_root,
            if report.changed_inputs.is_empty() && report.changed_figures.is_empty() {
                String::new()
            } else {
                format!(
                    " (inputs that differ: [{}]; figures that differ: [{}])",
                    report.changed_inputs.join(", "),
                    report.changed_figures.join(", ")
                )
            }
        );
    }
    Ok(())
}

pub async fn rewards(command: RewardsCommand, settings: &Settings) -> anyhow::Result<()> {
    let store = crate::open_store(settings).await?;
    let RewardsCommand::Simulate { policy, epoch: n } = command;
    let text = std::fs::read_to_string(&policy)
        .with_context(|| format!("cannot read {}", policy.display()))?;
    let proposed =
        RewardPolicy::parse(&text).with_context(|| format!("in {}", policy.display()))?;
    let sim = covermap_pipeline::epochs::simulate(store.as_ref(), n, proposed).await?;
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
    let policy = crate::policy_cmd::open_book(settings, store.as_ref())
        .await?
        .now();
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
            let area = covermap_pipeline::demand::new_area(
                covermap_pipeline::demand::DemandRequest {
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
