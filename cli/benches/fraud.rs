//! The adversarial set through covermap, measured: per fraud type the share of files that earn
//! nothing and credit no cells, and the share of honest files wrongly flagged (issue 14, section
//! 3). The set (`covermap-adversary`, `ScenarioConfig::bench`: 40 honest contributors with 3
//! drives each, 4 fraud contributors per type with 3 files each, seed 14) is generated on
//! Monaco's real roads and run through the real binary's public interfaces on a fresh database.
//!
//! `cargo bench -p covermap --bench fraud [-- postgres://postgres@127.0.0.1:5432/postgres]`
//! (the embedded store without a URL). Prints the table and writes it, with every file's
//! outcome, to `target/fraud-report.json`. Under `cargo test` (no `--bench`) it runs the small
//! set instead, as a check that the bench works.
#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../tests/adversarial/mod.rs"]
mod adversarial;

use adversarial::{Backend, Run};
use covermap_adversary::SetSize;

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let backend = std::env::args()
        .skip(1)
        .find(|a| a.starts_with("postgres"))
        .map_or(Backend::Sqlite, Backend::Postgis);
    let seed = std::env::var("COVERMAP_FRAUD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(14);
    let run = Run {
        bin: env!("CARGO_BIN_EXE_covermap").into(),
        roads: adversarial::monaco(),
        backend,
        size: if full { SetSize::Bench } else { SetSize::Small },
        seed,
        workers: 2,
    };
    let measured = run.measure().await.unwrap();
    println!("{}", measured.summary());
    let name = if full {
        "fraud-report.json"
    } else {
        "fraud-report-check.json"
    };
    let path = adversarial::target_dir().join(name);
    measured.write_json(&path).unwrap();
    println!("written to {}", path.display());
    for missed in measured.report.missed_targets() {
        println!("missed: {missed}");
    }
}
