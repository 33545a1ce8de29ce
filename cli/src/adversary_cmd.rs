//! `covermap adversary generate`: an adversarial set (`covermap-adversary`) written to a folder,
//! every file and a manifest of who sends what and what each file truly is, so that a set can be
//! kept, inspected or uploaded by other tools.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use covermap_adversary::{ScenarioConfig, SetSize};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum AdversaryCommand {
    /// Generate labelled honest and fraudulent uploads on an OSM extract's roads.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Road network: .osm.pbf, or OSM XML (.osm, .osm.gz, .osm.bz2).
    #[arg(long, value_name = "FILE")]
    pub roads: PathBuf,
    /// Folder to write `manifest.json` and `files/` into (created).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed of the random choices: the same seed writes the same scenario.
    #[arg(long, default_value_t = 14, value_name = "N")]
    pub seed: u64,
    /// small (12 honest contributors, two fraud contributors per type) or bench (40 and 4).
    #[arg(long, default_value = "small", value_name = "SIZE")]
    pub size: SetSize,
    /// When the files will be uploaded (RFC 3339) [default: now]. Future times are relative to
    /// it; honest drives fill the week that ended two days before.
    #[arg(long, value_name = "TIME")]
    pub arrival: Option<DateTime<Utc>>,
}

pub fn run(command: AdversaryCommand) -> anyhow::Result<()> {
    let AdversaryCommand::Generate(args) = command;
    let network = covermap_roads::osm::read(&args.roads)?;
    let arrival = args.arrival.unwrap_or_else(Utc::now);
    let config = ScenarioConfig::for_arrival(args.size, args.seed, arrival);
    let scenario = covermap_adversary::generate(&network, &config)?;
    let files = args.out.join("files");
    std::fs::create_dir_all(&files)
        .with_context(|| format!("cannot create {}", files.display()))?;
    let mut by_label: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &scenario.files {
        let path = files.join(format!("{}.{}", f.id, f.kind.extension()));
        std::fs::write(&path, &f.bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
        *by_label.entry(f.label.as_str()).or_default() += 1;
    }
    let mut manifest = scenario.manifest();
    // The devices' signing secrets: a synthetic set's keys, so it can be uploaded signed.
    manifest["device_secrets"] = scenario
        .contributors
        .iter()
        .flat_map(|c| &c.devices)
        .map(|d| {
            let hex: String = d.secret.iter().map(|b| format!("{b:02x}")).collect();
            (d.id.clone(), json!(hex))
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    let path = args.out.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "{}",
        json!({
            "out": args.out,
            "files": scenario.files.len(),
            "bytes": scenario.files.iter().map(|f| f.bytes.len()).sum::<usize>(),
            "contributors": scenario.contributors.len(),
            "by_label": by_label,
        })
    );
    Ok(())
}
