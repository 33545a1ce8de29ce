//! `covermap estimate`: what a planned route would earn, as `POST /api/v1/estimate` answers it,
//! and `covermap estimate backtest`: that estimate measured against what closed epochs paid.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use covermap_pipeline::estimate::{
    BacktestCase, EstimateRequest, backtest, estimate_drive, estimate_json, planned_cells,
};
use serde_json::json;

use crate::config::Settings;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EstimateArgs {
    #[command(subcommand)]
    pub command: Option<EstimateCommand>,
    /// The planned route: a GPX file, or a GeoJSON LineString (or a Feature holding one).
    #[arg(long, required_unless_present = "area", conflicts_with = "area")]
    pub route: Option<PathBuf>,
    /// A GeoJSON Polygon instead: every cell whose centre lies in it.
    #[arg(long)]
    pub area: Option<PathBuf>,
    /// When the drive is planned (RFC 3339) [default: now].
    #[arg(long)]
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Subcommand)]
pub enum EstimateCommand {
    /// For every closed epoch after the first, each upload with captures that earned: the
    /// estimate made at its first capture from the state just before it, against what it
    /// earned. Prints the error distribution as one JSON line (each case too with --cases).
    Backtest {
        /// Print each case as a JSON line before the summary.
        #[arg(long)]
        cases: bool,
    },
}

pub async fn run(args: EstimateArgs, settings: &Settings) -> anyhow::Result<()> {
    let store = crate::open_store(settings).await?;
    if let Some(EstimateCommand::Backtest { cases }) = args.command {
        let all = backtest(store.as_ref()).await?;
        if cases {
            for c in &all {
                println!("{}", serde_json::to_string(c)?);
            }
        }
        println!("{}", summary(&all));
        return Ok(());
    }
    let policy = settings.reward_policy()?;
    let req = request(&args)?;
    let now = Utc::now();
    let planned = planned_cells(&req, settings.resolution(), now)?;
    let e = estimate_drive(store.as_ref(), &policy, &planned, now).await?;
    println!("{}", estimate_json(&e, &planned));
    Ok(())
}

/// The request a file makes: GPX text, or GeoJSON read as a route or an area.
fn request(args: &EstimateArgs) -> anyhow::Result<EstimateRequest> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let json = |p: &PathBuf, text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .with_context(|| format!("{} is neither GPX nor GeoJSON", p.display()))
    };
    let mut req = EstimateRequest {
        at: args.at,
        ..EstimateRequest::default()
    };
    if let Some(p) = &args.area {
        req.area = Some(json(p, &read(p)?)?);
    } else if let Some(p) = &args.route {
        let text = read(p)?;
        if text.trim_start().starts_with('<') {
            req.gpx = Some(text);
        } else {
            req.route = Some(json(p, &text)?);
        }
    }
    Ok(req)
}

/// The backtest's error distribution: relative error `(expected − earned) / earned` per case.
fn summary(cases: &[BacktestCase]) -> serde_json::Value {
    let mut errors: Vec<f64> = cases
        .iter()
        .filter(|c| c.earned > 0)
        .map(|c| (c.expected as f64 - c.earned as f64) / c.earned as f64)
        .collect();
    errors.sort_by(f64::total_cmp);
    let within = cases
        .iter()
        .filter(|c| (c.low..=c.high).contains(&c.earned))
        .count();
    let q = |p: f64| -> Option<f64> {
        let last = errors.len().checked_sub(1)?;
        let i = ((last as f64) * p).round() as usize;
        errors.get(i).map(|e| (e * 1000.0).round() / 1000.0)
    };
    json!({
        "cases": errors.len(),
        "relative_error": {"p10": q(0.1), "median": q(0.5), "p90": q(0.9)},
        "earned_within_low_high": within,
        "epochs": cases.iter().map(|c| c.epoch).collect::<std::collections::BTreeSet<_>>(),
    })
}
