//! Issue 14's targets, measured end to end: a small adversarial set (`covermap-adversary`,
//! `ScenarioConfig::small`) through the real binary's public interfaces, on the embedded store
//! and on PostGIS. At least 95 % of the fraud files of every type must earn nothing and credit no
//! cells, and at most 2 % of the honest files may be flagged. `cargo bench -p covermap --bench
//! fraud` runs the larger set and writes BENCHMARKS.md's table.
#![allow(clippy::unwrap_used, clippy::panic)]

mod adversarial;

use adversarial::{Backend, Run};
use covermap_adversary::SetSize;

async fn targets_are_met(backend: Backend) {
    let run = Run {
        bin: env!("CARGO_BIN_EXE_covermap").into(),
        roads: adversarial::monaco(),
        backend,
        size: SetSize::Small,
        seed: 14,
        workers: 2,
    };
    let measured = run.measure().await.unwrap();
    println!("{}", measured.summary());
    let path =
        adversarial::target_dir().join(format!("fraud-report-test-{}.json", measured.backend));
    measured.write_json(&path).unwrap();
    let missed = measured.report.missed_targets();
    assert!(
        missed.is_empty(),
        "targets missed ({}):\n{}",
        path.display(),
        missed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fraud_is_caught_and_honest_work_is_not_flagged_sqlite() {
    targets_are_met(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fraud_is_caught_and_honest_work_is_not_flagged_postgis() {
    targets_are_met(Backend::postgis_from_env()).await;
}
