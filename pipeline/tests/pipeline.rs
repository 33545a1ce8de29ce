//! The use cases in-process against the embedded store: uploads accepted (or refused) as the
//! API accepts them, processed by one `work_once` at a time on Monaco's real roads, judged by
//! the trust stage, and closed into an epoch that verifies and simulates. The uploads are the
//! adversarial generator's: honest drives and phones' batches with realistic GNSS and radio
//! error, and frauds made to look like them.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use covermap_adversary::{
    FileKind, FraudPlan, FraudType, Label, ScenarioConfig, ScenarioFile, SetSize,
};
use covermap_domain::{DeviceId, LatLon, UploadKind, UploadStatus};
use covermap_ingest::{IngestError, IngestRules, Uploader};
use covermap_pipeline::epochs::{self, Closed};
use covermap_pipeline::judge::judge_pending;
use covermap_pipeline::{
    AcceptError, RoadTiles, Roads, WorkerConfig, accept_upload, load_roads, work_once,
};
use covermap_roads::RoadNetwork;
use covermap_scoring::RewardPolicy;
use covermap_store::{Blobs, Store, UploadFilter};
use h3o::Resolution;

fn testdata(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(rel);
    assert!(p.exists(), "test data {} is missing", p.display());
    p
}

/// The embedded store in a fresh folder, Monaco's roads in it, and the stages' settings under
/// the shipped policy.
struct World {
    _dir: tempfile::TempDir,
    objects: PathBuf,
    store: Arc<dyn Store>,
    blobs: Blobs,
    /// The roads workers match against: tiles of the stored network, as `covermap worker` reads
    /// them.
    roads: Roads,
    network: RoadNetwork,
    policy: RewardPolicy,
    config: WorkerConfig,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = covermap_store::open(None, dir.path()).await.unwrap();
        store.migrate().await.unwrap();
        let objects = dir.path().join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        let blobs = Blobs::open(&objects.display().to_string()).await.unwrap();
        let network = covermap_roads::osm::read(&testdata("roads/monaco.osm.pbf")).unwrap();
        let resolution = Resolution::Eleven;
        store
            .replace_roads(
                &network.segments,
                &covermap_roads::road_length_per_cell(&network.segments, resolution),
            )
            .await
            .unwrap();
        let tiles = RoadTiles::open(store.clone(), 1_000_000).await.unwrap();
        assert!(tiles.has_network(), "the road network was not stored");
        let roads = Roads::Tiles(Arc::new(tiles));
        let policy = RewardPolicy::shipped();
        let config = WorkerConfig::new(&policy, IngestRules::default(), resolution);
        Self {
            _dir: dir,
            objects,
            store,
            blobs,
            roads,
            network,
            policy,
            config,
        }
    }

    /// Accepts a scenario file as the API would from its sender, at `received_at`.
    async fn accept(
        &self,
        file: &ScenarioFile,
        received_at: DateTime<Utc>,
    ) -> Result<covermap_pipeline::Accepted, AcceptError> {
        let kind = match file.kind {
            FileKind::Gpx => UploadKind::Gpx,
            FileKind::Geosubmit => UploadKind::GeosubmitV2,
        };
        let uploader = Uploader {
            device: file.device.parse::<DeviceId>().unwrap(),
            contributor: Some(file.contributor.clone()),
            rewardable: true,
        };
        accept_upload(
            self.store.as_ref(),
            &self.blobs,
            uploader,
            kind,
            Bytes::from(file.bytes.clone()),
            received_at,
            &self.config.rules,
        )
        .await
    }

    /// Runs the queue dry, one job at a time; returns how many jobs ran.
    async fn work(&self) -> usize {
        let mut n = 0;
        while work_once(
            "test",
            self.store.as_ref(),
            &self.blobs,
            &self.roads,
            &self.config,
        )
        .await
        .unwrap()
        {
            n += 1;
            assert!(n < 1000, "the queue never ran dry");
        }
        n
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// When the scenario's files arrive: a day and a bit ago, so that their epoch of the shipped
/// policy (daily from 2026-01-01) has ended. The drives were made in the week before.
fn arrival() -> DateTime<Utc> {
    Utc::now() - Duration::hours(26)
}

fn scenario(w: &World, honest: usize, fraud: &[FraudType]) -> Vec<ScenarioFile> {
    let mut config = ScenarioConfig::for_arrival(SetSize::Small, 7, arrival());
    config.honest_contributors = honest;
    config.drives_per_honest = 1;
    config.fraud_contributors_per_type = 1;
    config.files_per_fraud_contributor = 1;
    config.fraud = fraud
        .iter()
        .map(|&fraud| FraudPlan {
            fraud,
            strengths: Vec::new(),
        })
        .collect();
    covermap_adversary::generate(&w.network, &config)
        .unwrap()
        .files
}

/// Workers read the road network in tiles around each job: with a second region 600 km away
/// in the store, a drive in Monaco is matched exactly as against Monaco's whole network, and
/// the worker holds Monaco's tiles only; a drive there again reads nothing more.
#[tokio::test]
async fn workers_read_only_the_road_tiles_around_their_jobs() {
    let mut w = World::new().await;
    let mut town = covermap_roads::town::generate(LatLon::new(48.1, 11.5).unwrap(), 30, 120.0);
    for s in &mut town.segments {
        s.osm_way_id += 1_000_000_000_000;
        for n in &mut s.osm_node_ids {
            *n += 1_000_000_000_000;
        }
    }
    let mut both = w.network.segments.clone();
    both.extend(town.segments.iter().cloned());
    w.store
        .replace_roads(
            &both,
            &covermap_roads::road_length_per_cell(&both, w.config.resolution),
        )
        .await
        .unwrap();
    let tiles = Arc::new(RoadTiles::open(w.store.clone(), 1_000_000).await.unwrap());
    w.roads = Roads::Tiles(tiles.clone());
    let files = scenario(&w, 6, &[]);
    let mut drives = files.iter().filter(|f| f.kind == FileKind::Gpx);
    let (first, second) = (drives.next().unwrap(), drives.next().unwrap());
    let tiled = w.accept(first, arrival()).await.unwrap().receipt.upload_id;
    assert_eq!(w.work().await, 1);
    let held = tiles.stats();
    // Monaco's two tiles (a segment across their edge is in both), nothing of the town.
    assert!(
        held.tiles == 2 && held.segments < w.network.segments.len() * 21 / 20,
        "{held:?} of {} in Monaco, {} in the town",
        w.network.segments.len(),
        town.segments.len()
    );
    let stretches = w.store.matched_stretches(tiled).await.unwrap();
    assert!(stretches.iter().all(|s| s.osm_way_id < 1_000_000_000_000));

    // The same drive against the whole of Monaco's network, read at once.
    let whole = World::new().await;
    let whole = World {
        roads: Roads::Whole(load_roads(whole.store.as_ref()).await),
        ..whole
    };
    let id = whole
        .accept(first, arrival())
        .await
        .unwrap()
        .receipt
        .upload_id;
    assert_eq!(whole.work().await, 1);
    let expected = whole.store.matched_stretches(id).await.unwrap();
    let key = |s: &covermap_domain::MatchedStretch| (s.cell, s.osm_way_id, s.way_piece);
    assert_eq!(
        stretches.iter().map(key).collect::<Vec<_>>(),
        expected.iter().map(key).collect::<Vec<_>>()
    );
    for (a, b) in stretches.iter().zip(&expected) {
        assert!((a.length_m - b.length_m).abs() < 0.5, "{a:?} vs {b:?}");
    }

    // Another drive in Monaco: its tiles are in memory already.
    w.accept(second, arrival() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(w.work().await, 1);
    assert_eq!(tiles.stats().reads, held.reads);
}

#[tokio::test]
async fn an_honest_drive_is_accepted_matched_indexed_and_trusted() {
    let w = World::new().await;
    let files = scenario(&w, 2, &[]);
    let drive = files.iter().find(|f| f.kind == FileKind::Gpx).unwrap();
    let arrival = arrival();
    let accepted = w.accept(drive, arrival).await.unwrap();
    assert!(!accepted.receipt.duplicate);
    let queued = w
        .store
        .upload(accepted.receipt.upload_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queued.status, UploadStatus::Queued);

    assert_eq!(w.work().await, 1);
    let done = w
        .store
        .upload(accepted.receipt.upload_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, UploadStatus::Processed, "{done:?}");
    assert_eq!(done.trust.verdict, "trusted", "{:?}", done.trust.findings);
    assert!(done.cells.unwrap() > 3, "{done:?}");
    let stretches = w
        .store
        .matched_stretches(accepted.receipt.upload_id)
        .await
        .unwrap();
    let matched: f64 = stretches.iter().map(|s| s.length_m).sum();
    assert!(matched > 200.0, "matched {matched} m of Monaco's roads");
    assert_eq!(done.matched_m.map(f64::round), Some(matched.round()));
}

#[tokio::test]
async fn the_same_bytes_twice_are_one_upload_and_one_job() {
    let w = World::new().await;
    let files = scenario(&w, 2, &[]);
    let drive = files.iter().find(|f| f.kind == FileKind::Gpx).unwrap();
    let arrival = arrival();
    let first = w.accept(drive, arrival).await.unwrap();
    let again = w.accept(drive, arrival).await.unwrap();
    assert!(again.receipt.duplicate);
    assert_eq!(first.receipt.upload_id, again.receipt.upload_id);
    assert_eq!(w.work().await, 1);
}

#[tokio::test]
async fn refused_bytes_keep_no_upload_and_no_blob_but_are_remembered() {
    let w = World::new().await;
    let file = ScenarioFile {
        id: "f0".into(),
        contributor: "mallory".into(),
        device: "mallory-phone".into(),
        kind: FileKind::Gpx,
        label: Label::Honest,
        strength: String::new(),
        detail: String::new(),
        copy_of: None,
        first_ms: 0,
        last_ms: 0,
        bytes: b"<gpx><trk><trkseg><trkpt lat=\"91\" lon=\"7.4\"></trkpt>".to_vec(),
    };
    let refused = w.accept(&file, Utc::now()).await.unwrap_err();
    assert!(
        matches!(
            refused,
            AcceptError::Refused(IngestError::NotGpx(_) | IngestError::NoUsableFixes { .. })
        ),
        "{refused:?}"
    );
    let uploads = w
        .store
        .recent_uploads(10, &UploadFilter::default())
        .await
        .unwrap();
    assert!(uploads.is_empty(), "{uploads:?}");
    assert_eq!(w.work().await, 0);
    let blobs: Vec<_> = walk(&w.objects);
    assert!(blobs.is_empty(), "a refused upload left blobs: {blobs:?}");
}

#[tokio::test]
async fn a_teleporting_drive_is_processed_and_flagged() {
    let w = World::new().await;
    let files = scenario(&w, 2, &[FraudType::Teleport]);
    let arrival = arrival();
    let mut ids = Vec::new();
    for f in files
        .iter()
        .filter(|f| f.label == Label::Fraud(FraudType::Teleport))
    {
        ids.push(w.accept(f, arrival).await.unwrap().receipt.upload_id);
    }
    assert!(!ids.is_empty());
    w.work().await;
    for id in ids {
        let u = w.store.upload(id).await.unwrap().unwrap();
        assert_eq!(u.status, UploadStatus::Processed, "{u:?}");
        assert_eq!(u.trust.verdict, "flagged", "{u:?}");
        assert!(
            u.trust.findings.iter().any(|f| f.code == "teleport"),
            "{:?}",
            u.trust.findings
        );
    }
}

#[tokio::test]
async fn phones_batches_become_radio_observations_in_cells() {
    let w = World::new().await;
    let files = scenario(&w, 3, &[]);
    let arrival = arrival();
    let batches: Vec<_> = files
        .iter()
        .filter(|f| f.kind == FileKind::Geosubmit)
        .collect();
    assert!(!batches.is_empty(), "the scenario has no radio batches");
    let mut ids = Vec::new();
    for b in &batches {
        ids.push(w.accept(b, arrival).await.unwrap().receipt.upload_id);
    }
    w.work().await;
    for id in ids {
        let u = w.store.upload(id).await.unwrap().unwrap();
        assert_eq!(u.status, UploadStatus::Processed, "{u:?}");
        let seen = w.store.radio_observations(id, 10_000).await.unwrap();
        assert!(
            !seen.is_empty(),
            "upload {id} kept no observation: {u:?} {:?}",
            w.store.rejections(id, 5).await.unwrap()
        );
        assert_eq!(u.observations_accepted, Some(seen.len() as i64));
    }
}

#[tokio::test]
async fn an_epoch_closes_once_verifies_and_simulates_without_the_database_changing() {
    let w = World::new().await;
    // Tracks earn nothing by themselves (imagery pays for frames): the phones' batches earn.
    let files = scenario(&w, 4, &[FraudType::RadioTeleport]);
    let arrival = arrival();
    for f in &files {
        match w.accept(f, arrival).await {
            Ok(_) => {}
            // A fraud may be refused at the door already.
            Err(AcceptError::Refused(_)) if f.label != Label::Honest => {}
            Err(e) => panic!("{} ({:?}) was not accepted: {e}", f.id, f.label),
        }
    }
    w.work().await;
    let n = w.policy.epoch_at(arrival).unwrap();

    let Closed::Now(outcome) = epochs::close_epoch(w.store.as_ref(), &w.blobs, &w.policy, n, "a")
        .await
        .unwrap()
    else {
        panic!("epoch {n} was not closed now");
    };
    let paid: Vec<_> = outcome.rewards.iter().filter(|r| r.amount > 0).collect();
    assert!(paid.len() >= 2, "{:?}", outcome.rewards);
    let cheat = files
        .iter()
        .find(|f| f.label != Label::Honest)
        .map(|f| f.contributor.clone())
        .unwrap();
    assert!(
        outcome
            .rewards
            .iter()
            .all(|r| r.contributor != cheat || r.amount == 0),
        "the radio teleporter {cheat} was paid: {:?}",
        outcome.rewards
    );
    assert!(matches!(
        epochs::close_epoch(w.store.as_ref(), &w.blobs, &w.policy, n, "b")
            .await
            .unwrap(),
        Closed::Already
    ));

    let check = epochs::verify(w.store.as_ref(), n).await.unwrap();
    assert!(check.matches, "{check:?}");
    assert_eq!(check.recomputed_root, outcome.manifest.root);

    let same = epochs::simulate(w.store.as_ref(), n, w.policy.clone())
        .await
        .unwrap();
    assert_eq!(same.simulated.root, outcome.manifest.root);
    assert!(same.contributors.iter().all(|c| c.delta == 0));
    let halved = w
        .policy
        .source
        .replace("emission = 1000000000000", "emission = 500000000000");
    let proposed = RewardPolicy::parse(&halved).unwrap();
    let less = epochs::simulate(w.store.as_ref(), n, proposed)
        .await
        .unwrap();
    assert!(less.simulated.distributed < less.recorded.distributed);
    assert!(less.contributors.iter().all(|c| c.delta <= 0));
    // Nothing was written: the epoch still verifies against its recorded root.
    assert!(epochs::verify(w.store.as_ref(), n).await.unwrap().matches);

    let unclosed = epochs::verify(w.store.as_ref(), n + 1).await.unwrap_err();
    assert!(matches!(unclosed, epochs::EpochError::NotClosed(_)));
    let future = n + 1000;
    assert!(matches!(
        epochs::close_epoch(w.store.as_ref(), &w.blobs, &w.policy, future, "a").await,
        Err(epochs::EpochError::NotEnded { .. })
    ));
}

#[tokio::test]
async fn an_upload_the_workers_reject_has_its_bytes_collected() {
    let mut w = World::new().await;
    let files = scenario(&w, 2, &[]);
    let drive = files.iter().find(|f| f.kind == FileKind::Gpx).unwrap();
    let accepted = w.accept(drive, arrival()).await.unwrap();
    assert_eq!(walk(&w.objects).len(), 1, "the upload's bytes are kept");
    // The workers' rules were tightened since it was accepted: a week-old drive is too old now.
    w.config.rules.track.max_age = std::time::Duration::from_secs(3600);
    w.work().await;
    let u = w
        .store
        .upload(accepted.receipt.upload_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.status, UploadStatus::Rejected, "{u:?}");
    // The retention sweep takes rejected uploads at once, whatever their age.
    let swept = covermap_pipeline::sweep_originals(
        w.store.as_ref(),
        &w.blobs,
        Utc::now() - Duration::days(30),
    )
    .await
    .unwrap();
    assert_eq!(swept, 1);
    let left = walk(&w.objects);
    assert!(
        left.is_empty(),
        "a rejected upload's bytes were kept: {left:?}"
    );
    assert_eq!(
        covermap_pipeline::sweep_originals(w.store.as_ref(), &w.blobs, Utc::now())
            .await
            .unwrap(),
        0
    );
}

/// The vision stage's models, where `models/fetch` put them (`COVERMAP_MODELS`).
fn vision_models() -> Arc<covermap_vision::FramePool> {
    let dir = std::env::var("COVERMAP_MODELS").map_or_else(
        |_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/covermap/models/v1"),
        PathBuf::from,
    );
    let pool = covermap_vision::FramePool::load(&dir, 1).unwrap_or_else(|e| {
        panic!(
            "the vision models are not in {} (run models/fetch or set COVERMAP_MODELS): {e}",
            dir.display()
        )
    });
    Arc::new(pool)
}

/// A zip of `entries`, as a camera app uploads a drive.
fn zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    for (name, bytes) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

/// The first `<time>` of a GPX file.
fn first_time(gpx: &[u8]) -> DateTime<Utc> {
    let text = std::str::from_utf8(gpx).unwrap();
    let start = text.find("<time>").unwrap() + "<time>".len();
    let end = start + text[start..].find("</time>").unwrap();
    text[start..end].parse().unwrap()
}

/// Copies a directory tree (the published epoch, to tamper with a copy).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Writes `inputs` as epoch `n`'s files under `dir` and `manifest`, naming them, as a forger
/// with write access to the object store would.
fn republish(
    dir: &Path,
    n: u64,
    inputs: &covermap_domain::rewards::EpochInputs,
    policy: &str,
    manifest: &mut covermap_domain::rewards::Manifest,
) {
    use covermap_store::published;
    for (file, bytes) in published::encode(inputs, policy).unwrap() {
        let target = dir.join(published::file_key(n, &file));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, &bytes).unwrap();
        let slot = manifest
            .files
            .iter_mut()
            .find(|f| f.name == file.name)
            .unwrap();
        *slot = file;
    }
    std::fs::write(
        dir.join(published::manifest_key(n)),
        serde_json::to_vec(&*manifest).unwrap(),
    )
    .unwrap();
}

#[tokio::test]
async fn a_closed_epoch_verifies_from_its_published_files_alone_and_an_altered_file_does_not() {
    use covermap_domain::rewards::Manifest;
    use covermap_store::published;

    let w = World::new().await;
    let files = scenario(&w, 4, &[FraudType::RadioTeleport]);
    let arrival = arrival();
    for f in &files {
        let _ = w.accept(f, arrival).await;
    }
    w.work().await;
    let n = w.policy.epoch_at(arrival).unwrap();
    let Closed::Now(outcome) = epochs::close_epoch(w.store.as_ref(), &w.blobs, &w.policy, n, "a")
        .await
        .unwrap()
    else {
        panic!("epoch {n} was not closed now");
    };
    // The manifest names the eleven input files and the policy, each with its sha256; the
    // database holds the same manifest as the object store.
    let names: Vec<&str> = outcome
        .manifest
        .files
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names.len(), 12, "{names:?}");
    assert!(names.contains(&"radio.parquet") && names.contains(&"policy.toml"));
    let radio = outcome
        .manifest
        .files
        .iter()
        .find(|f| f.name == "radio.parquet")
        .unwrap();
    assert_eq!(radio.rows, outcome.manifest.radio_samples);
    assert!(radio.rows > 0, "the scenario's phones measured nothing");
    let stored = w.store.closed_epoch(n).await.unwrap().unwrap();
    assert_eq!(stored.manifest, outcome.manifest);
    let public = w.objects.join(format!("epochs/{n}"));
    let on_disk: Manifest =
        serde_json::from_slice(&std::fs::read(public.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(on_disk, outcome.manifest);

    // Read back by someone with no database: only the object store's folder.
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&w.objects.join("epochs"), &copy.path().join("epochs"));
    let source = Blobs::open_to_read(&copy.path().display().to_string()).unwrap();
    let check = epochs::verify_published(&source, n, None).await.unwrap();
    assert!(check.matches, "{check:?}");
    assert_eq!(check.recomputed_root, outcome.manifest.root);

    // One byte of a file changed: refused before anything is computed, naming the file.
    let radio_path = copy.path().join(published::file_key(n, radio));
    let original = std::fs::read(&radio_path).unwrap();
    let mut altered = original.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 0x01;
    std::fs::write(&radio_path, &altered).unwrap();
    let e = epochs::verify_published(&source, n, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("radio.parquet was altered"), "{e}");
    // A file longer than the manifest says is not read past its size.
    std::fs::write(&radio_path, [&original[..], &[0u8; 64][..]].concat()).unwrap();
    let e = epochs::verify_published(&source, n, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than"), "{e}");
    std::fs::write(&radio_path, &original).unwrap();

    // A forger who rewrites a sample and the manifest's sha256 to match: the file is read, but
    // the inputs no longer hash to what the close recorded, so the epoch does not verify.
    let mut by_name = std::collections::BTreeMap::new();
    for f in &outcome.manifest.files {
        let bytes = std::fs::read(copy.path().join(published::file_key(n, f))).unwrap();
        by_name.insert(f.name.clone(), Bytes::from(bytes));
    }
    let period = w.policy.period(n).unwrap();
    let mut inputs = published::decode(period, &by_name).unwrap();
    inputs.radio[0].signal_dbm = Some(-40);
    let mut manifest = outcome.manifest.clone();
    republish(copy.path(), n, &inputs, &w.policy.source, &mut manifest);
    let forged = epochs::verify_published(&source, n, None).await.unwrap();
    assert!(!forged.matches, "{forged:?}");
    assert_eq!(forged.changed_inputs, vec!["radio"]);

    // A forger who also rewrites the totals the epoch starts from (and the input hashes, and
    // so could keep the root by moving earnings into the past): those totals must hash to
    // epoch N - 1's root, which here is unpublished, so a root held from elsewhere is asked for
    // — and the one held (nothing was paid before) is not what they hash to.
    inputs.previous = vec![covermap_domain::rewards::PreviousTotal {
        contributor: "mallory".into(),
        cumulative: 1_000,
    }];
    manifest.inputs = covermap_scoring::epoch::input_hashes(&inputs);
    republish(copy.path(), n, &inputs, &w.policy.source, &mut manifest);
    let e = epochs::verify_published(&source, n, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("previous totals cannot be checked"), "{e}");
    let nothing: [covermap_scoring::ledger::LedgerLeaf; 0] = [];
    let empty = hex::encode(covermap_scoring::ledger::MerkleTree::new(&nothing).root());
    let e = epochs::verify_published(&source, n, Some(&empty))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("earnings were moved between epochs"), "{e}");
    // Had mallory really been paid 1000 by epoch N - 1 (a root that says so), the totals pass,
    // and the epoch recomputes to another root than its manifest's: it does not verify.
    let held = covermap_scoring::ledger::MerkleTree::new(&[covermap_scoring::ledger::LedgerLeaf {
        epoch: n - 1,
        distributor: w.policy.rules.distributor.clone(),
        contributor: "mallory".into(),
        cumulative: 1_000,
    }])
    .root();
    let held = hex::encode(held);
    let moved = epochs::verify_published(&source, n, Some(&held))
        .await
        .unwrap();
    assert_eq!(moved.previous_root.as_deref(), Some(held.as_str()));
    assert!(!moved.matches, "{moved:?}");
    assert_ne!(moved.recomputed_root, moved.stored_root);

    // No manifest: the epoch is not (yet) published, said plainly.
    std::fs::remove_file(copy.path().join(published::manifest_key(n))).unwrap();
    let e = epochs::verify_published(&source, n, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("manifest.json"), "{e}");

    // A close that crashed after the database's commit left no public manifest: the next
    // closer to find the epoch closed writes it.
    std::fs::remove_file(public.join("manifest.json")).unwrap();
    assert!(matches!(
        epochs::close_epoch(w.store.as_ref(), &w.blobs, &w.policy, n, "b")
            .await
            .unwrap(),
        Closed::Already
    ));
    let again: Manifest =
        serde_json::from_slice(&std::fs::read(public.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(again, outcome.manifest);
}

#[tokio::test]
async fn frames_kept_pending_without_models_are_judged_once_they_are_in_place_and_closed_epochs_still_verify()
 {
    let mut w = World::new().await;
    // Two days ago: the upload's epoch and the next have both ended.
    let arrival = Utc::now() - Duration::hours(50);
    let mut config = ScenarioConfig::for_arrival(SetSize::Small, 11, arrival);
    config.honest_contributors = 2;
    config.drives_per_honest = 1;
    config.fraud = Vec::new();
    let files = covermap_adversary::generate(&w.network, &config)
        .unwrap()
        .files;
    let track = files.iter().find(|f| f.kind == FileKind::Gpx).unwrap();
    // A real 4K street frame (taken 2018-06-08 20:24:10 UTC), on the honest drive's track 30 s
    // after it starts: the camera's clock is set right by the worker's camera offset.
    let frame = std::fs::read(testdata("camera/mapillary_tools/DSC00001.JPG")).unwrap();
    let taken: DateTime<Utc> = "2018-06-08T20:24:10Z".parse().unwrap();
    w.config.camera_offset = first_time(&track.bytes) + Duration::seconds(30) - taken;
    let drive = zip_of(&[("a.jpg", frame), ("track.gpx", track.bytes.clone())]);
    let uploader = Uploader {
        device: track.device.parse::<DeviceId>().unwrap(),
        contributor: Some(track.contributor.clone()),
        rewardable: true,
    };
    let upload = accept_upload(
        w.store.as_ref(),
        &w.blobs,
        uploader,
        UploadKind::Drive,
        Bytes::from(drive),
        arrival,
        &w.config.rules,
    )
    .await
    .unwrap()
    .receipt
    .upload_id;

    // No models: the drive is processed, its frame kept and nothing of it published.
    assert!(w.config.vision.is_none());
    assert_eq!(w.work().await, 1);
    let done = w.store.upload(upload).await.unwrap().unwrap();
    assert_eq!(done.status, UploadStatus::Processed, "{done:?}");
    assert_eq!(done.trust.verdict, "trusted", "{:?}", done.trust.findings);
    let frames = w.store.frames(upload).await.unwrap();
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert!(frames[0].vision.is_none(), "published without models");
    // Without the models, judging does nothing.
    let nothing = judge_pending(w.store.as_ref(), &w.blobs, &w.config, Utc::now())
        .await
        .unwrap();
    assert_eq!(nothing.judged() + nothing.failed, 0);

    // Its epoch closes with the frame pending: the drive earns nothing for it.
    let n = w.policy.epoch_at(arrival).unwrap();
    let Closed::Now(first) = epochs::close_epoch(w.store.as_ref(), &w.blobs, &w.policy, n, "a")
        .await
        .unwrap()
    else {
        panic!("epoch {n} was not closed now");
    };
    let earned = |o: &covermap_domain::rewards::EpochOutcome| {
        o.rewards
            .iter()
            .filter(|r| r.contributor == track.contributor)
            .map(|r| r.amount)
            .sum::<u64>()
    };
    assert_eq!(earned(&first), 0, "{:?}", first.rewards);

    // The models are in place, during the next epoch: the frame is judged and published.
    w.config.vision = Some(vision_models());
    let during_next = w.policy.period(n + 1).unwrap().start + Duration::hours(1);
    let report = judge_pending(w.store.as_ref(), &w.blobs, &w.config, during_next)
        .await
        .unwrap();
    assert_eq!(
        (report.published, report.refused, report.failed),
        (1, 0, 0),
        "{report:?}"
    );
    let frames = w.store.frames(upload).await.unwrap();
    let vision = frames[0]
        .vision
        .as_ref()
        .expect("the frame was not published");
    let published = w.blobs.get(&vision.published_key).await.unwrap();
    assert!(
        !published.windows(6).any(|b| b == b"Exif\0\0"),
        "the published derivative keeps no EXIF"
    );
    // Judged once: a second pass finds nothing pending.
    let again = judge_pending(w.store.as_ref(), &w.blobs, &w.config, Utc::now())
        .await
        .unwrap();
    assert_eq!(again.judged() + again.failed, 0, "{again:?}");

    // The closed epoch's inputs did not change: it still verifies.
    let check = epochs::verify(w.store.as_ref(), n).await.unwrap();
    assert!(check.matches, "{check:?}");
    // The frame counts once, in the next epoch to close.
    let Closed::Now(next) = epochs::close_epoch(w.store.as_ref(), &w.blobs, &w.policy, n + 1, "a")
        .await
        .unwrap()
    else {
        panic!("epoch {} was not closed now", n + 1);
    };
    assert!(earned(&next) > 0, "{:?}", next.rewards);
    assert!(
        epochs::verify(w.store.as_ref(), n + 1)
            .await
            .unwrap()
            .matches
    );
    assert!(epochs::verify(w.store.as_ref(), n).await.unwrap().matches);
    // From the published files too, the later epoch's starting totals checked against the
    // earlier epoch's published root.
    let source = Blobs::open_to_read(&w.objects.display().to_string()).unwrap();
    let later = epochs::verify_published(&source, n + 1, None)
        .await
        .unwrap();
    assert!(later.matches, "{later:?}");
    let first = w.store.closed_epoch(n).await.unwrap().unwrap().manifest;
    assert_eq!(later.previous_root.as_deref(), Some(first.root.as_str()));
}
