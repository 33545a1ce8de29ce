//! Closing an epoch at the scale: 10,000 contributors, 1,000,000 observations (800,000
//! frames, 200,000 radio samples) over 100,000 cells, with earlier captures, roads, 50 demand
//! areas with bounties, verification evidence and previous totals.
//! `cargo bench -p covermap-scoring --bench epoch_close`.
//!
//! `COVERMAP_BENCH_SCALE=10 cargo bench -p covermap-scoring --bench epoch_close -- --once`:
//! ten times the frames and radio samples over the same cells and contributors, one close timed
//! (a sample of ten would take minutes at that size), with its root.
#![allow(clippy::unwrap_used, clippy::panic)]

use chrono::{Duration, TimeZone, Utc};
use covermap_domain::Cell;
use covermap_domain::rewards::{
    Bounty, Capture, CellLastSeen, CellRoads, ContributorEvidence, DemandArea, EpochInputs,
    EpochPeriod, PreviousTotal, RadioSample, UsageCount,
};
use covermap_scoring::RewardPolicy;
use covermap_scoring::epoch;
use criterion::{Criterion, criterion_group};

const CONTRIBUTORS: u64 = 10_000;
const FRAMES: u64 = 800_000;
const RADIO: u64 = 200_000;

/// How many times the frames and radio samples (`COVERMAP_BENCH_SCALE`, 1 by default).
fn scale() -> u64 {
    std::env::var("COVERMAP_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

fn inputs() -> EpochInputs {
    let (frames, radio_samples) = (FRAMES * scale(), RADIO * scale());
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    // 100,000 cells: a disk of radius 182 around a cell of Monaco (1 + 3·182·183 = 99,919)
    // plus the next ring's first cells.
    let centre = h3o::LatLng::new(43.73, 7.42)
        .unwrap()
        .to_cell(h3o::Resolution::Eleven);
    let mut cells: Vec<Cell> = centre
        .grid_disk::<Vec<_>>(183)
        .into_iter()
        .map(Cell)
        .collect();
    cells.truncate(100_000);
    let n_cells = cells.len() as u64;
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let day_us = 86_400_000_000u64;
    let who = |i: u64| format!("contributor-{i:05}");
    let captures = (0..frames)
        .map(|i| {
            let c = rand(CONTRIBUTORS);
            Capture {
                contributor: (c % 50 != 0).then(|| who(c)),
                upload_id: (i / 100) as i64,
                frame: (i % 100) as i32,
                cell: cells[rand(n_cells) as usize],
                captured_at: start + Duration::microseconds(rand(day_us) as i64),
            }
        })
        .collect();
    let techs = ["lte", "nr", "wcdma", "gsm", "wifi"];
    let radio = (0..radio_samples)
        .map(|i| {
            let cell = cells[rand(n_cells) as usize];
            let ll = h3o::LatLng::from(cell.0);
            let tech = techs[rand(5) as usize];
            RadioSample {
                contributor: Some(who(rand(CONTRIBUTORS))),
                upload_id: 1_000_000 + (i / 50) as i64,
                seq: (i % 50) as i32,
                cell,
                technology: tech.into(),
                operator: if tech == "wifi" {
                    String::new()
                } else {
                    format!("208-{}", rand(4))
                },
                emitter: format!("{tech}:208:1:{}", rand(5000)),
                signal_dbm: Some(-(40 + rand(80) as i32)),
                observed_at: start + Duration::microseconds(rand(day_us) as i64),
                lat: ll.lat(),
                lon: ll.lng(),
            }
        })
        .collect();
    let last_seen = cells
        .iter()
        .step_by(2)
        .map(|c| CellLastSeen {
            cell: *c,
            last_seen: start - Duration::minutes(rand(20 * 1440) as i64),
        })
        .collect();
    let roads = cells
        .iter()
        .map(|c| CellRoads {
            cell: *c,
            road_length_m: 50.0 + rand(200) as f64,
            observed_m: rand(250) as f64,
        })
        .collect();
    let demand = (0..50)
        .map(|i| DemandArea {
            id: i,
            name: format!("area {i}"),
            weight: 1.0 + (i % 3) as f64,
            cells: (0..200).map(|_| cells[rand(n_cells) as usize]).collect(),
            created_at: start - Duration::days(1),
            expires_at: Some(start + Duration::days(1 + i % 5)),
            bounty: (i % 2 == 0).then(|| Bounty {
                budget: 10_000_000,
                spent: 0,
                claimed: vec![],
                refunded: false,
            }),
        })
        .collect();
    let evidence = (0..CONTRIBUTORS)
        .step_by(7)
        .map(|c| ContributorEvidence {
            contributor: who(c),
            fixes_accepted: 1000,
            fixes_spoofed: rand(300),
            frames_duplicated: rand(4),
        })
        .collect();
    let previous = (0..CONTRIBUTORS)
        .map(|c| PreviousTotal {
            contributor: who(c),
            cumulative: u128::from(rand(1_000_000_000)),
        })
        .collect();
    EpochInputs {
        period: EpochPeriod {
            epoch: 304,
            start,
            end: start + Duration::days(1),
        },
        captures,
        last_seen,
        roads,
        radio,
        emitters: vec![],
        demand,
        evidence,
        previous,
        usage: cells
            .iter()
            .step_by(500)
            .map(|c| UsageCount {
                area: Cell(c.0.parent(h3o::Resolution::Seven).unwrap()),
                requests: rand(10_000),
            })
            .collect(),
        uploads: vec![],
        refusals: vec![],
    }
}

fn bench(c: &mut Criterion) {
    let inputs = inputs();
    let policy = RewardPolicy::shipped();
    let o = epoch::close(&inputs, &policy);
    eprintln!(
        "epoch close: {} cells, {} contributors, {} rewarded, {} flagged, {} claims; distributed {}, unallocated {}; root {}",
        o.cells.len(),
        o.rewards.len(),
        o.manifest.contributors,
        o.manifest.flagged,
        o.claims.len(),
        o.manifest.distributed,
        o.manifest.unallocated,
        o.manifest.root
    );
    let mut g = c.benchmark_group("epoch");
    g.sample_size(10);
    g.bench_function("close 10k contributors, 1M observations, 100k cells", |b| {
        b.iter(|| epoch::close(&inputs, &policy));
    });
    g.bench_function("input hashes alone", |b| {
        b.iter(|| epoch::input_hashes(&inputs));
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    if std::env::args().any(|a| a == "--once") {
        let inputs = inputs();
        let policy = RewardPolicy::shipped();
        let t = std::time::Instant::now();
        let o = epoch::close(&inputs, &policy);
        println!(
            "epoch close once: {} captures, {} radio samples: {:.2} s; root {}",
            inputs.captures.len(),
            inputs.radio.len(),
            t.elapsed().as_secs_f64(),
            o.manifest.root
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
