//! An epoch closed end to end on a real database at the scale: 10,000 contributors,
//! 1,000,000 observations (800,000 published frames in 10,000 drives, one per contributor,
//! 200,000 radio samples in 1,000 uploads) over 100,000 cells with roads. Times each step of one
//! close: claim (tagging the uploads), reading the inputs, computing, publishing the inputs as
//! Parquet files to a local object store, writing the results and manifest; then, apart, what
//! a verifier spends reading the files back (`covermap epoch verify --from` before it closes
//! the epoch again).
//!
//! `cargo bench -p covermap-store --bench epoch_store` (embedded SQLite), or with
//! `-- postgres://postgres@127.0.0.1:5432/postgres` to run it on a fresh PostGIS database there;
//! `COVERMAP_BENCH_SCALE=10` for ten times the uploads.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use covermap_domain::{Cell, LatLon, RoadCell, UploadKind};
use covermap_scoring::RewardPolicy;
use covermap_scoring::epoch;
use covermap_store::published;
use covermap_store::{
    BlobRef, EpochClaim, FrameRow, FrameVision, JobOutcome, NewUpload, QueuePolicy, RadioRow, Store,
};
use sqlx::Connection;

const CONTRIBUTORS: u64 = 10_000;
const FRAMES_PER_DRIVE: u64 = 80;
const SAMPLES_PER_UPLOAD: u64 = 200;

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this too, as a quick check
    // of the bench itself at a hundredth of the size.
    let full = std::env::args().any(|a| a == "--bench");
    // COVERMAP_BENCH_SCALE=10: ten times the drives and radio uploads (10,000,000 observations)
    // over the same cells and contributors.
    let scale: u64 = std::env::var("COVERMAP_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let (drives, radio_uploads): (u64, u64) = if full {
        (10_000 * scale, 1_000 * scale)
    } else {
        (100, 10)
    };
    let pg = std::env::args().skip(1).find(|a| a.starts_with("postgres"));
    let dir = tempfile::tempdir().unwrap();
    let mut pg_url = None;
    let (store, backend): (Arc<dyn Store>, String) = match &pg {
        Some(admin) => {
            let name = format!("covermap_bench_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let mut url = url::Url::parse(admin).unwrap();
            url.set_path(&format!("/{name}"));
            let s = covermap_store::open(Some(url.as_str()), dir.path())
                .await
                .unwrap();
            pg_url = Some(url.to_string());
            (s, format!("PostGIS ({name})"))
        }
        None => (
            covermap_store::open(None, dir.path()).await.unwrap(),
            "embedded SQLite".into(),
        ),
    };
    store.migrate().await.unwrap();

    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
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
    let road_cells: Vec<RoadCell> = cells
        .iter()
        .map(|c| RoadCell {
            cell: *c,
            road_length_m: 50.0 + rand(200) as f64,
        })
        .collect();
    store.replace_roads(&[], &road_cells).await.unwrap();

    let received = Utc.with_ymd_and_hms(2026, 11, 1, 6, 0, 0).unwrap();
    // On PostGIS, the month the uploads are received in, as the server makes it ahead.
    store.ensure_partitions(received, 0).await.unwrap();
    let t = Instant::now();
    let lease_for = Duration::from_secs(600);
    for u in 0..drives + radio_uploads {
        let who = format!("contributor-{:05}", u % CONTRIBUTORS);
        let kind = if u < drives {
            UploadKind::Drive
        } else {
            UploadKind::GeosubmitV2
        };
        store
            .record_upload(NewUpload {
                device: format!("dev-{u}").parse().unwrap(),
                kind,
                blob: BlobRef::of(format!("upload {u}").as_bytes()),
                received_at: received,
                contributor: Some(who),
                rewardable: true,
            })
            .await
            .unwrap();
        let lease = store
            .lease_job("bench", received, lease_for, QueuePolicy::default())
            .await
            .unwrap()
            .unwrap();
        let mut outcome = JobOutcome::default();
        if u < drives {
            outcome.frames = (0..FRAMES_PER_DRIVE)
                .map(|i| {
                    let cell = cells[rand(n_cells) as usize];
                    let p = cell.center();
                    FrameRow {
                        frame: i as i32,
                        sequence: 0,
                        sha256: format!("{u:032}{i:032}"),
                        blob_key: format!("o/{u}/{i}"),
                        captured_at: received - chrono::Duration::seconds(rand(3600) as i64),
                        heading_deg: 0.0,
                        width: 1920,
                        height: 1080,
                        pos: LatLon::new(p.lat, p.lon).unwrap(),
                        cell,
                        segment: None,
                        vision: Some(FrameVision {
                            published_key: format!("p/{u}/{i}"),
                            phash: "0".into(),
                            faces: 0,
                            plates: 0,
                            quality: serde_json::json!({}),
                        }),
                    }
                })
                .collect();
        } else {
            outcome.radio = (0..SAMPLES_PER_UPLOAD)
                .map(|_| {
                    let cell = cells[rand(n_cells) as usize];
                    let p = cell.center();
                    RadioRow {
                        observed_at: received - chrono::Duration::seconds(rand(3600) as i64),
                        emitter_kind: covermap_domain::EmitterKind::Cell,
                        radio: Some(covermap_domain::RadioType::Lte),
                        emitter: format!("lte:208:{}:1:{}", rand(4), rand(5000)),
                        signal_dbm: Some(-(40 + rand(80) as i32)),
                        accuracy_m: Some(10.0),
                        pos: LatLon::new(p.lat, p.lon).unwrap(),
                        cell,
                    }
                })
                .collect();
        }
        store
            .complete_job(&lease, &outcome, received)
            .await
            .unwrap();
    }
    eprintln!(
        "{backend}: loaded {} observations in {:.1} s",
        drives * FRAMES_PER_DRIVE + radio_uploads * SAMPLES_PER_UPLOAD,
        t.elapsed().as_secs_f64()
    );

    // A PostgreSQL in service has its planner's statistics: autovacuum analyses a table once a
    // fifth of it changed, within a minute of a load like this one. Without them the planner
    // guesses a handful of rows where there are 800,000 and picks plans no deployment would run.
    if let Some(url) = &pg_url {
        let t = Instant::now();
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
        eprintln!(
            "{backend}: analysed in {:.1} s (as autovacuum would)",
            t.elapsed().as_secs_f64()
        );
    }

    let policy = RewardPolicy::shipped();
    let n = policy.epoch_at(received).unwrap();
    let period = policy.period(n).unwrap();
    let since = period.start - chrono::Duration::days(30);
    let now = period.end + chrono::Duration::hours(2);
    let total = Instant::now();
    let t = Instant::now();
    let EpochClaim::Held { token, tagged, .. } = store
        .claim_epoch(&period, "bench", now, lease_for)
        .await
        .unwrap()
    else {
        panic!("a fresh database's epoch is free")
    };
    let claim = t.elapsed();
    let t = Instant::now();
    let inputs = store.epoch_inputs(&period, since).await.unwrap();
    let read = t.elapsed();
    let t = Instant::now();
    let mut outcome = epoch::close(&inputs, &policy);
    let compute = t.elapsed();
    let t = Instant::now();
    let objects = dir.path().join("objects");
    let blobs = covermap_store::Blobs::open(&objects.display().to_string())
        .await
        .unwrap();
    let files = published::encode(&inputs, &policy.source).unwrap();
    let published_bytes: u64 = files.iter().map(|(f, _)| f.bytes).sum();
    let mut by_name = std::collections::BTreeMap::new();
    for (file, bytes) in files {
        blobs
            .put_published(&published::file_key(n, &file), bytes.clone())
            .await
            .unwrap();
        by_name.insert(file.name.clone(), bytes);
        outcome.manifest.files.push(file);
    }
    let publish = t.elapsed();
    let t = Instant::now();
    store
        .finish_epoch(&token, &outcome, &policy.source, now)
        .await
        .unwrap();
    let write = t.elapsed();
    let whole = total.elapsed();
    let t = Instant::now();
    let back = published::decode(period, &by_name).unwrap();
    let decode = t.elapsed();
    assert_eq!(epoch::input_hashes(&back), outcome.manifest.inputs);
    let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    println!(
        "{backend}: epoch close of {tagged} uploads, {} captures, {} radio samples, {} cells \
         paid, {} contributors: {} (claim {}, read inputs {}, compute {}, publish {} ({:.1} MiB \
         of Parquet), write {}); a verifier reads the files back in {}",
        inputs.captures.len(),
        inputs.radio.len(),
        outcome.cells.len(),
        outcome.rewards.len(),
        s(whole),
        s(claim),
        s(read),
        s(compute),
        s(publish),
        published_bytes as f64 / (1024.0 * 1024.0),
        s(write),
        s(decode)
    );
    // The close holds its inputs whole: what that costs in memory, at the peak.
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("{backend}: peak resident memory of the whole run {peak}");
    if let Some(admin) = pg.filter(|_| std::env::var_os("COVERMAP_BENCH_KEEP").is_none()) {
        drop(store);
        let name = backend
            .trim_start_matches("PostGIS (")
            .trim_end_matches(')');
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}
