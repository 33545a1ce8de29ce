//! The storage conformance suite: every test here runs once on the embedded SQLite store and once
//! on a fresh PostGIS database, and both must behave the same.
//!
//! PostGIS comes from `COVERMAP_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates and drops its own database.
//! There is no skipping: without a reachable PostGIS these tests fail and say why.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use covermap_domain::{
    BoundingBox, Cell, CellVisit, LatLon, MatchedStretch, RoadCell, RoadSegment, SegmentRef,
    UploadKind, UploadStatus,
};
use covermap_domain::{DeviceId, EmitterKind, RadioType, RejectionStage, Role};
use covermap_store::{
    AuditQuery, BlobRef, Decision, DeviceFilter, DeviceRecord, FrameDecision, FrameImage,
    FramePlacement, FrameRejectionRow, FrameRow, FrameVision, JobFailure, JobOutcome,
    LateJudgement, NewApiKey, NewUpload, QueuePolicy, RadioRow, Registration, Rejection, Rotation,
    SessionPart, SqliteStore, Store, StoreError, UploadFilter, UploadSession,
};
use sqlx::Connection;

const LEASE: Duration = Duration::from_secs(30);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn secs(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    pg_db: Option<String>,
}

impl Backend {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_file(&dir.path().join("db.sqlite3"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Self {
            store: Arc::new(store),
            _dir: Some(dir),
            pg_db: None,
        }
    }

    async fn postgis() -> Self {
        let admin_url = admin_url();
        let name = format!("covermap_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("PostGIS conformance tests need a PostgreSQL at {admin_url} (set COVERMAP_TEST_DATABASE_URL): {e}")
        });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let url = with_database(&admin_url, &name);
        let store = covermap_store::PgStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap_or_else(|e| {
            panic!("migrating {url} failed (is PostGIS installed? scripts/test installs it): {e}")
        });
        Self {
            store: Arc::new(store),
            _dir: None,
            pg_db: Some(name),
        }
    }

    async fn finish(self) {
        let Self { store, pg_db, .. } = self;
        drop(store);
        if let Some(name) = pg_db {
            let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
}

fn admin_url() -> String {
    std::env::var("COVERMAP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, name: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(&format!("/{name}"));
    u.to_string()
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = super::Backend::sqlite().await;
                    super::$name(backend.store.clone()).await;
                    backend.finish().await;
                }
            )*
        }
        mod postgis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = super::Backend::postgis().await;
                    super::$name(backend.store.clone()).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

conformance!(
    migrations_run_twice,
    the_change_feed_tells_every_reader_each_changed_cell,
    the_policy_schedule_is_seeded_once_and_votes_close_when_decided,
    upload_is_recorded_and_queued,
    same_bytes_are_a_duplicate_only_from_the_same_device,
    concurrent_copies_of_the_same_bytes_name_the_first,
    completed_job_writes_coverage_and_is_not_leased_again,
    expired_lease_is_taken_over_and_counted_once,
    a_renewed_lease_is_not_taken_over,
    concurrent_workers_take_each_job_once,
    rejected_upload_keeps_its_reason,
    a_rejected_uploads_bytes_are_due_at_once_unless_another_keeps_them,
    transient_failures_retry_then_give_up,
    leases_that_keep_running_out_fail_the_job,
    coverage_is_filtered_by_box_and_counts_devices,
    the_map_reads_each_cells_figures_and_the_road_driven,
    road_network_round_trips_and_filters_by_box,
    observations_frames_and_rejections_are_written_with_the_job,
    keys_devices_and_nonces,
    consumers_requests_usage_and_lookers,
    a_public_key_is_registered_once_ever,
    devices_rotate_their_keys_and_are_revoked,
    devices_are_listed_by_contributor_and_registering_key,
    upload_sessions_take_parts_in_order,
    uploads_are_listed_by_contributor_and_device,
    refused_frames_imagery_and_retention,
    epochs_close_once_in_order_over_stored_inputs,
    auditors_approve_and_reject_refused_frames,
    approved_frames_count_once_without_reopening_closed_epochs,
    frames_judged_late_are_published_or_refused_and_count_once_without_reopening_epochs,
    reported_frames_are_hidden_until_an_auditor_keeps_or_removes_them,
    reported_frames_are_blurred_further_under_a_new_key,
    erased_uploads_lose_pixels_and_places_and_their_epoch_still_verifies,
    nothing_of_an_upload_erased_while_queued_or_processed_comes_back,
    trust_keeps_flagged_uploads_off_the_maps_and_epochs_make_verdicts_final,
    open_bounties_are_read_as_they_stand_at_the_planned_time,
);

fn new_upload(device: &str, content: &str, at: DateTime<Utc>) -> NewUpload {
    NewUpload {
        device: device.parse().unwrap(),
        kind: UploadKind::Gpx,
        blob: BlobRef::of(content.as_bytes()),
        received_at: at,
        contributor: None,
        rewardable: false,
    }
}

fn cell_at(lat: f64, lon: f64) -> Cell {
    Cell(
        h3o::LatLng::new(lat, lon)
            .unwrap()
            .to_cell(h3o::Resolution::Eleven),
    )
}

fn outcome(points: &[(f64, f64)], at: DateTime<Utc>) -> JobOutcome {
    JobOutcome {
        fixes_accepted: points.len() as u32,
        fixes_rejected: 1,
        visits: points
            .iter()
            .enumerate()
            .map(|(i, &(lat, lon))| CellVisit {
                cell: cell_at(lat, lon),
                fixes: 2,
                first_seen: at + secs(i as i64),
                last_seen: at + secs(i as i64 + 1),
            })
            .collect(),
        stretches: points
            .iter()
            .enumerate()
            .map(|(i, &(lat, lon))| MatchedStretch {
                match_piece: 0,
                cell: cell_at(lat, lon),
                osm_way_id: 7,
                way_piece: i as u32,
                length_m: 12.5,
            })
            .collect(),
        ..JobOutcome::default()
    }
}

const MONACO: [(f64, f64); 3] = [(43.7384, 7.4246), (43.7400, 7.4270), (43.7311, 7.4197)];

async fn migrations_run_twice(store: Arc<dyn Store>) {
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
}

/// The change feed: a job's cells and a demand area's, reported once to each reader from its own
/// position, whoever wrote them; nothing before a reader's position; too many at once say so; an
/// upload's cells when it is flagged, not when it is trusted.
async fn the_change_feed_tells_every_reader_each_changed_cell(store: Arc<dyn Store>) {
    use std::collections::BTreeSet;
    let start = store.feed_position().await.unwrap();
    assert!(
        store
            .changes_since(&start, 100)
            .await
            .unwrap()
            .cells
            .is_empty()
    );
    let receipt = store
        .record_upload(new_upload("car-1", "t", t0()))
        .await
        .unwrap();
    let lease = store
        .lease_job("w1", t0(), LEASE, QueuePolicy::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.upload_id, receipt.upload_id);
    // A road matched through a cell with no fix of its own (the matcher's path between fixes).
    let between = cell_at(43.7450, 7.4300);
    let mut job = outcome(&MONACO, t0());
    job.stretches.push(MatchedStretch {
        match_piece: 0,
        cell: between,
        osm_way_id: 8,
        way_piece: 0,
        length_m: 30.0,
    });
    store
        .complete_job(&lease, &job, t0() + secs(1))
        .await
        .unwrap();
    let driven: BTreeSet<Cell> = MONACO
        .iter()
        .map(|&(lat, lon)| cell_at(lat, lon))
        .chain([between])
        .collect();
    assert_eq!(driven.len(), MONACO.len() + 1);
    let first = store.changes_since(&start, 100).await.unwrap();
    assert!(!first.truncated);
    assert_eq!(first.cells.iter().copied().collect::<BTreeSet<_>>(), driven);
    // From where it stopped, nothing more; a second reader from the start sees the same cells.
    let after = store.changes_since(&first.position, 100).await.unwrap();
    assert!(after.cells.is_empty(), "{:?}", after.cells);
    let other = store.changes_since(&start, 100).await.unwrap();
    assert_eq!(other.cells.iter().copied().collect::<BTreeSet<_>>(), driven);
    // More than the limit: the reader is told to start afresh.
    let few = store.changes_since(&start, 1).await.unwrap();
    assert!(few.truncated && few.cells.is_empty());
    // A planner's area elsewhere: its cells, and only those, to a reader that saw the drive.
    let harbour = cell_at(43.7350, 7.4230);
    store
        .create_demand_area(
            &covermap_store::NewDemandArea {
                name: "harbour".into(),
                weight: 1.0,
                polygon: serde_json::json!({"type": "Polygon", "coordinates": []}),
                cells: vec![harbour],
                created_by: None,
                expires_at: None,
                budget: None,
            },
            t0() + secs(2),
        )
        .await
        .unwrap();
    let area = store.changes_since(&after.position, 100).await.unwrap();
    assert_eq!(area.cells, vec![harbour]);
    // A verdict changes the maps only when the upload enters or leaves `flagged`: trusting it
    // reports nothing (an epoch's close trusts thousands), flagging it every cell it holds,
    // those of its matched road included.
    let id = receipt.upload_id;
    assert!(
        store
            .amend_trust(id, "{}", "trusted", "[]", t0() + secs(3))
            .await
            .unwrap()
    );
    let trusted = store.changes_since(&area.position, 100).await.unwrap();
    assert!(trusted.cells.is_empty(), "{:?}", trusted.cells);
    assert!(
        store
            .amend_trust(id, "{}", "flagged", "[]", t0() + secs(4))
            .await
            .unwrap()
    );
    let flagged = store.changes_since(&trusted.position, 100).await.unwrap();
    assert_eq!(
        flagged.cells.iter().copied().collect::<BTreeSet<_>>(),
        driven
    );
    let later = store.feed_position().await.unwrap();
    assert!(
        store
            .changes_since(&later, 100)
            .await
            .unwrap()
            .cells
            .is_empty()
    );
}

/// Governance: the first seed wins; a proposal's ballots are refused once it is decided or its
/// vote closed, and a nonce is taken once; a proposal is decided once, however many decide it,
/// from the ballots cast before its close; a passed one is scheduled.
async fn the_policy_schedule_is_seeded_once_and_votes_close_when_decided(store: Arc<dyn Store>) {
    use covermap_store::{NewProposal, NewScheduledPolicy, NewVote, ProposalDecision};
    let seed = |hash: &str| NewScheduledPolicy {
        from_epoch: 0,
        policy_hash: hash.into(),
        version: 1,
        source: format!("text of {hash}"),
    };
    let first = store.seed_policy(&seed("a"), t0()).await.unwrap();
    let again = store.seed_policy(&seed("b"), t0() + secs(1)).await.unwrap();
    assert_eq!(first, again);
    assert_eq!((again.len(), again[0].policy_hash.as_str()), (1, "a"));
    assert_eq!(again[0].source, "text of a");

    let ends = t0() + secs(100);
    let proposal = NewProposal {
        title: "More radio".into(),
        rationale: "why".into(),
        source: "text of c".into(),
        policy_hash: "c".into(),
        version: 2,
        proposed_by: "planner".into(),
        base_hash: "a".into(),
        voting_rules: "{}".into(),
        electorate_epochs: Some((3, 9)),
        electorate: vec![("alice".into(), 5), ("bob".into(), 7)],
        simulation: "[]".into(),
        voting_ends_at: ends,
    };
    let p = store.create_proposal(&proposal, 1, t0()).await.unwrap();
    // One open proposal per proposer here: the second is refused, at once or together.
    let (a, b) = tokio::join!(
        store.create_proposal(&proposal, 1, t0()),
        store.create_proposal(&proposal, 1, t0()),
    );
    assert!(matches!(a, Err(StoreError::Conflict(_))), "{a:?}");
    assert!(matches!(b, Err(StoreError::Conflict(_))), "{b:?}");
    let elsewhere = NewProposal {
        proposed_by: "alice".into(),
        ..proposal.clone()
    };
    let (a, b) = tokio::join!(
        store.create_proposal(&elsewhere, 1, t0()),
        store.create_proposal(&elsewhere, 1, t0()),
    );
    assert_eq!(
        [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "two at once: one is made"
    );
    assert_eq!((p.electorate_from, p.electorate_to), (Some(3), Some(9)));
    assert_eq!(p.voting_ends_at, ends);
    assert_eq!(
        store.proposal_electorate(p.id).await.unwrap(),
        vec![("alice".to_owned(), 5), ("bob".to_owned(), 7)]
    );
    let ballot = |who: &str, nonce: &str| NewVote {
        proposal: p.id,
        contributor: who.into(),
        device: format!("cam-{who}"),
        public_key: "00".repeat(32),
        choice: "yes".into(),
        method: "POST".into(),
        path: "/".into(),
        body: "{}".into(),
        signed_at: 0,
        nonce: nonce.into(),
        signature: "00".repeat(64),
    };
    store
        .cast_vote(&ballot("alice", "n-1"), t0() + secs(1))
        .await
        .unwrap();
    assert!(matches!(
        store
            .cast_vote(&ballot("alice", "n-1"), t0() + secs(2))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.cast_vote(&ballot("bob", "n-2"), ends).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store
            .proposals_due(ends - secs(1))
            .await
            .unwrap()
            .is_empty()
    );
    // Closed at the same time: in the order they were made.
    assert_eq!(store.proposals_due(ends).await.unwrap().len(), 2);
    assert_eq!(store.proposals_due(ends).await.unwrap()[0], p.id);

    // Deciding before the close does nothing; after it, once.
    let seen = std::sync::Mutex::new(Vec::new());
    let rule = |i: covermap_store::DecisionInputs<'_>| {
        seen.lock().unwrap().push(i.votes.len());
        ProposalDecision {
            outcome: "passed".into(),
            tally: "{}".into(),
            schedule: Some(NewScheduledPolicy {
                from_epoch: 30,
                policy_hash: i.proposal.policy_hash.clone(),
                version: i.proposal.version,
                source: i.proposal.source.clone(),
            }),
        }
    };
    assert!(
        store
            .decide_proposal(p.id, &rule, ends - secs(1))
            .await
            .unwrap()
            .is_none()
    );
    let (a, b) = tokio::join!(
        store.decide_proposal(p.id, &rule, ends + secs(1)),
        store.decide_proposal(p.id, &rule, ends + secs(1)),
    );
    let decided: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(decided.len(), 1, "decided exactly once");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![1],
        "from the one ballot cast in time"
    );
    assert_eq!(decided[0].outcome.as_deref(), Some("passed"));
    assert_eq!(decided[0].activates_epoch, Some(30));
    assert!(matches!(
        store.cast_vote(&ballot("bob", "n-3"), t0() + secs(3)).await,
        Err(StoreError::Conflict(_))
    ));
    let schedule = store.policy_schedule().await.unwrap();
    assert_eq!(schedule.len(), 2);
    assert_eq!(
        (schedule[1].from_epoch, schedule[1].proposal),
        (30, Some(p.id))
    );
    assert_eq!(store.proposals(10).await.unwrap().len(), 2);
    assert_eq!(store.proposal_votes(p.id).await.unwrap().len(), 1);
}

async fn upload_is_recorded_and_queued(store: Arc<dyn Store>) {
    let receipt = store
        .record_upload(new_upload("car-1", "track a", t0()))
        .await
        .unwrap();
    assert!(!receipt.duplicate);
    assert!(receipt.job_id.is_some());
    assert_eq!(receipt.status, UploadStatus::Queued);
    let rec = store.upload(receipt.upload_id).await.unwrap().unwrap();
    assert_eq!(rec.device.as_str(), "car-1");
    assert_eq!(rec.kind, UploadKind::Gpx);
    assert_eq!(rec.received_at, t0());
    assert_eq!(rec.size_bytes, 7);
    assert_eq!(rec.sha256, BlobRef::of(b"track a").sha256);
    assert_eq!(rec.status, UploadStatus::Queued);
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.uploads_queued, stats.jobs_queued), (1, 1));
    assert!(
        store
            .upload(receipt.upload_id + 1000)
            .await
            .unwrap()
            .is_none()
    );
    let recent = store.recent_uploads(10, &Default::default()).await.unwrap();
    assert_eq!(recent.len(), 1);
}

/// The same bytes again from the same device are its retry: the first upload. From another
/// device they are that device's own upload, queued as usual, marked as a copy of the earliest
/// other device's upload of them — never handed over as the first device's duplicate.
async fn same_bytes_are_a_duplicate_only_from_the_same_device(store: Arc<dyn Store>) {
    let first = store
        .record_upload(new_upload("car-1", "same", t0()))
        .await
        .unwrap();
    assert_eq!(first.copy_of, None);
    let again = store
        .record_upload(new_upload("car-1", "same", t0() + secs(5)))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.upload_id, first.upload_id);
    assert_eq!(again.job_id, None);
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.jobs_queued, 1, "a replay must not queue a second job");

    let copy = store
        .record_upload(new_upload("car-2", "same", t0() + secs(10)))
        .await
        .unwrap();
    assert!(!copy.duplicate);
    assert_ne!(copy.upload_id, first.upload_id);
    assert!(copy.job_id.is_some());
    assert_eq!(copy.copy_of, Some(first.upload_id));
    let rec = store.upload(copy.upload_id).await.unwrap().unwrap();
    assert_eq!(rec.device.as_str(), "car-2");
    assert_eq!(rec.copy_of, Some(first.upload_id));
    assert_eq!(
        store
            .upload(first.upload_id)
            .await
            .unwrap()
            .unwrap()
            .copy_of,
        None
    );
    // The copier's retry is its own duplicate; a third device's copy names the earliest.
    let copy_again = store
        .record_upload(new_upload("car-2", "same", t0() + secs(15)))
        .await
        .unwrap();
    assert_eq!(
        (
            copy_again.duplicate,
            copy_again.upload_id,
            copy_again.copy_of
        ),
        (true, copy.upload_id, Some(first.upload_id))
    );
    let third = store
        .record_upload(new_upload("car-3", "same", t0() + secs(20)))
        .await
        .unwrap();
    assert_eq!(third.copy_of, Some(first.upload_id));
    // The first device's own resend is still its first upload, not anyone else's.
    let resend = store
        .record_upload(new_upload("car-1", "same", t0() + secs(25)))
        .await
        .unwrap();
    assert_eq!(
        (resend.duplicate, resend.upload_id),
        (true, first.upload_id)
    );
    assert_eq!(store.stats().await.unwrap().jobs_queued, 3);
}

/// Devices sending the same bytes at once: one is first, every other one its copy.
async fn concurrent_copies_of_the_same_bytes_name_the_first(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_upload(new_upload(&format!("car-{i}"), "raced", t0()))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.push(t.await.unwrap());
    }
    let first = receipts.iter().map(|r| r.upload_id).min().unwrap();
    for r in &receipts {
        assert!(!r.duplicate);
        let expected = (r.upload_id != first).then_some(first);
        assert_eq!(r.copy_of, expected, "{receipts:?}");
    }
}

async fn completed_job_writes_coverage_and_is_not_leased_again(store: Arc<dyn Store>) {
    let receipt = store
        .record_upload(new_upload("car-1", "t", t0()))
        .await
        .unwrap();
    let now = t0() + secs(1);
    let lease = store
        .lease_job("w1", now, LEASE, QueuePolicy::default())
        .await
        .unwrap()
        .expect("a queued job is leased");
    assert_eq!(lease.upload_id, receipt.upload_id);
    assert_eq!(lease.attempt, 1);
    assert_eq!(lease.blob_key, BlobRef::of(b"t").key);
    assert_eq!(lease.received_at, t0());
    assert!(
        store
            .lease_job("w2", now, LEASE, QueuePolicy::default())
            .await
            .unwrap()
            .is_none(),
        "a held job is not leased twice"
    );
    store
        .complete_job(&lease, &outcome(&MONACO, t0()), now + secs(1))
        .await
        .unwrap();
    let rec = store.upload(receipt.upload_id).await.unwrap().unwrap();
    assert_eq!(rec.status, UploadStatus::Processed);
    assert_eq!(
        (rec.fixes_accepted, rec.fixes_rejected, rec.cells),
        (Some(3), Some(1), Some(3))
    );
    assert_eq!(rec.processed_at, Some(now + secs(1)));
    assert_eq!(rec.matched_m, Some(37.5));
    let stretches = store.matched_stretches(receipt.upload_id).await.unwrap();
    assert_eq!(
        stretches,
        outcome(&MONACO, t0()).stretches,
        "in driving order"
    );
    let cov = store.coverage(BoundingBox::WORLD, 100).await.unwrap();
    assert_eq!(cov.len(), 3);
    assert!(
        cov.iter()
            .all(|c| c.fixes == 2 && c.devices == 1 && c.uploads == 1)
    );
    let first = cov
        .iter()
        .find(|c| c.cell == cell_at(MONACO[0].0, MONACO[0].1))
        .unwrap();
    assert_eq!((first.first_seen, first.last_seen), (t0(), t0() + secs(1)));
    let later = now + secs(3600);
    assert!(
        store
            .lease_job("w2", later, LEASE, QueuePolicy::default())
            .await
            .unwrap()
            .is_none(),
        "a done job is never leased again"
    );
    // Finishing twice with the same lease is refused: the lease ended with the first.
    let again = store
        .complete_job(&lease, &outcome(&MONACO, t0()), later)
        .await;
    assert!(
        matches!(again, Err(StoreError::LeaseLost { .. })),
        "{again:?}"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.jobs_done, stats.cells, stats.uploads_processed),
        (1, 3, 1)
    );
}

async fn a_renewed_lease_is_not_taken_over(store: Arc<dyn Store>) {
    store
        .record_upload(new_upload("car-1", "t", t0()))
        .await
        .unwrap();
    let policy = QueuePolicy::default();
    let a = store
        .lease_job("a", t0(), LEASE, policy)
        .await
        .unwrap()
        .unwrap();
    // A long job: its worker renews the lease before it runs out, again and again.
    for k in 1..=4 {
        store
            .renew_lease(&a, t0() + secs(30 * k + 30))
            .await
            .unwrap();
    }
    for at in [31, 90, 149] {
        assert!(
            store
                .lease_job("b", t0() + secs(at), LEASE, policy)
                .await
                .unwrap()
                .is_none(),
            "a renewed lease is held at {at} s"
        );
    }
    // Still the first attempt, and its results land.
    store
        .complete_job(&a, &outcome(&MONACO, t0()), t0() + secs(149))
        .await
        .unwrap();
    // A lease that ended (done) or was never held cannot be renewed.
    let again = store.renew_lease(&a, t0() + secs(300)).await;
    assert!(
        matches!(again, Err(StoreError::LeaseLost { .. })),
        "{again:?}"
    );
    let mut forged = a.clone();
    forged.token = "not-the-token".into();
    let forged = store.renew_lease(&forged, t0() + secs(300)).await;
    assert!(
        matches!(forged, Err(StoreError::LeaseLost { .. })),
        "{forged:?}"
    );
    let cov = store.coverage(BoundingBox::WORLD, 100).await.unwrap();
    assert_eq!(cov.iter().map(|c| c.fixes).sum::<i64>(), 6, "counted once");
}

async fn expired_lease_is_taken_over_and_counted_once(store: Arc<dyn Store>) {
    store
        .record_upload(new_upload("car-1", "t", t0()))
        .await
        .unwrap();
    let policy = QueuePolicy::default();
    // Worker A leases the job and then dies (or stalls) without finishing.
    let a = store
        .lease_job("a", t0(), LEASE, policy)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .lease_job("b", t0() + secs(29), LEASE, policy)
            .await
            .unwrap()
            .is_none(),
        "not before the lease runs out"
    );
    let b = store
        .lease_job("b", t0() + secs(31), LEASE, policy)
        .await
        .unwrap()
        .expect("a job whose lease ran out is leased again");
    assert_eq!(b.job_id, a.job_id);
    assert_eq!(b.attempt, 2);
    assert_ne!(b.token, a.token);
    // A wakes up and tries to write its results: refused, and nothing of it lands.
    let late = store
        .complete_job(&a, &outcome(&MONACO, t0()), t0() + secs(32))
        .await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost { .. })),
        "{late:?}"
    );
    assert!(
        store
            .coverage(BoundingBox::WORLD, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let failed = store
        .fail_job(
            &a,
            &JobFailure::Transient("x".into()),
            t0() + secs(32),
            policy,
        )
        .await;
    assert!(
        matches!(failed, Err(StoreError::LeaseLost { .. })),
        "{failed:?}"
    );
    store
        .complete_job(&b, &outcome(&MONACO, t0()), t0() + secs(33))
        .await
        .unwrap();
    let cov = store.coverage(BoundingBox::WORLD, 100).await.unwrap();
    assert_eq!(cov.iter().map(|c| c.fixes).sum::<i64>(), 6, "counted once");
    assert!(cov.iter().all(|c| c.uploads == 1));
}

async fn concurrent_workers_take_each_job_once(store: Arc<dyn Store>) {
    const JOBS: usize = 24;
    for i in 0..JOBS {
        store
            .record_upload(new_upload("car-1", &format!("track {i}"), t0()))
            .await
            .unwrap();
    }
    let mut workers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let now = t0() + secs(1);
            while let Some(lease) = store
                .lease_job(&format!("w{w}"), now, LEASE, QueuePolicy::default())
                .await
                .unwrap()
            {
                store
                    .complete_job(&lease, &outcome(&MONACO, t0()), now)
                    .await
                    .unwrap();
                done.push(lease.job_id);
            }
            done
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, JOBS, "every job done exactly once");
    assert_eq!(all.len(), JOBS);
    let cov = store.coverage(BoundingBox::WORLD, 100).await.unwrap();
    assert_eq!(cov.iter().map(|c| c.fixes).sum::<i64>(), (JOBS * 6) as i64);
    assert!(cov.iter().all(|c| c.uploads == JOBS as i64));
}

async fn rejected_upload_keeps_its_reason(store: Arc<dyn Store>) {
    let r = store
        .record_upload(new_upload("car-1", "junk", t0()))
        .await
        .unwrap();
    let policy = QueuePolicy::default();
    let lease = store
        .lease_job("w", t0(), LEASE, policy)
        .await
        .unwrap()
        .unwrap();
    store
        .fail_job(
            &lease,
            &JobFailure::Rejected("no fixes with a time".into()),
            t0() + secs(1),
            policy,
        )
        .await
        .unwrap();
    let rec = store.upload(r.upload_id).await.unwrap().unwrap();
    assert_eq!(rec.status, UploadStatus::Rejected);
    assert_eq!(rec.reason.as_deref(), Some("no fixes with a time"));
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.jobs_failed, stats.uploads_rejected), (1, 1));
    assert!(
        store
            .lease_job("w", t0() + secs(3600), LEASE, policy)
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_rejected_uploads_bytes_are_due_at_once_unless_another_keeps_them(store: Arc<dyn Store>) {
    let policy = QueuePolicy::default();
    let first = store
        .record_upload(new_upload("car-1", "junk", t0()))
        .await
        .unwrap();
    // The same bytes from another device: its own upload of the same blob.
    let copy = store
        .record_upload(new_upload("car-2", "junk", t0() + secs(1)))
        .await
        .unwrap();
    let reject = |at: DateTime<Utc>| {
        let store = store.clone();
        async move {
            let lease = store
                .lease_job("w", at, LEASE, policy)
                .await
                .unwrap()
                .unwrap();
            store
                .fail_job(&lease, &JobFailure::Rejected("junk".into()), at, policy)
                .await
                .unwrap();
            lease.upload_id
        }
    };
    assert_eq!(reject(t0() + secs(2)).await, first.upload_id);
    // Due at once (no retention), but its bytes stay: the queued copy still needs them.
    let due = store.originals_due(t0(), 10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].upload_id, first.upload_id);
    assert!(due[0].blob_keys.is_empty(), "{due:?}");
    store
        .mark_originals_expired(first.upload_id, t0() + secs(3))
        .await
        .unwrap();
    assert!(store.originals_due(t0(), 10).await.unwrap().is_empty());
    // Once the copy is rejected too, the bytes go with it.
    assert_eq!(reject(t0() + secs(4)).await, copy.upload_id);
    let due = store.originals_due(t0(), 10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].upload_id, copy.upload_id);
    assert_eq!(due[0].blob_keys, vec![BlobRef::of(b"junk").key]);
}

async fn transient_failures_retry_then_give_up(store: Arc<dyn Store>) {
    let r = store
        .record_upload(new_upload("car-1", "t", t0()))
        .await
        .unwrap();
    let policy = QueuePolicy {
        max_attempts: 2,
        retry_after: Duration::from_secs(10),
    };
    let first = store
        .lease_job("w", t0(), LEASE, policy)
        .await
        .unwrap()
        .unwrap();
    store
        .fail_job(
            &first,
            &JobFailure::Transient("blob store timed out".into()),
            t0(),
            policy,
        )
        .await
        .unwrap();
    assert!(
        store
            .lease_job("w", t0() + secs(5), LEASE, policy)
            .await
            .unwrap()
            .is_none(),
        "a retry waits for its back-off"
    );
    let second = store
        .lease_job("w", t0() + secs(11), LEASE, policy)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.attempt, 2);
    store
        .fail_job(
            &second,
            &JobFailure::Transient("again".into()),
            t0() + secs(12),
            policy,
        )
        .await
        .unwrap();
    let rec = store.upload(r.upload_id).await.unwrap().unwrap();
    assert_eq!(rec.status, UploadStatus::Rejected);
    assert!(rec.reason.unwrap().contains("again"));
    assert!(
        store
            .lease_job("w", t0() + secs(3600), LEASE, policy)
            .await
            .unwrap()
            .is_none()
    );
}

async fn leases_that_keep_running_out_fail_the_job(store: Arc<dyn Store>) {
    let r = store
        .record_upload(new_upload("car-1", "poison", t0()))
        .await
        .unwrap();
    let policy = QueuePolicy {
        max_attempts: 2,
        retry_after: Duration::from_secs(1),
    };
    let mut now = t0();
    for attempt in 1..=2 {
        let lease = store
            .lease_job("w", now, LEASE, policy)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lease.attempt, attempt);
        now += secs(31);
    }
    assert!(
        store
            .lease_job("w", now, LEASE, policy)
            .await
            .unwrap()
            .is_none()
    );
    let rec = store.upload(r.upload_id).await.unwrap().unwrap();
    assert_eq!(rec.status, UploadStatus::Rejected);
    assert!(rec.reason.unwrap().contains("gave up after 2 attempts"));
    assert_eq!(store.stats().await.unwrap().jobs_failed, 1);
}

const PARIS: [(f64, f64); 1] = [(48.8584, 2.2945)];

/// Three drives processed at `t0`: car-1 through Monaco's three points, car-2 through the first
/// of them, then car-2 in Paris.
async fn three_drives(store: &dyn Store) {
    for (device, content, points) in [
        ("car-1", "a", &MONACO[..]),
        ("car-2", "b", &MONACO[..1]),
        ("car-2", "c", &PARIS[..]),
    ] {
        store
            .record_upload(new_upload(device, content, t0()))
            .await
            .unwrap();
        let lease = store
            .lease_job("w", t0(), LEASE, QueuePolicy::default())
            .await
            .unwrap()
            .unwrap();
        store
            .complete_job(&lease, &outcome(points, t0()), t0())
            .await
            .unwrap();
    }
}

async fn coverage_is_filtered_by_box_and_counts_devices(store: Arc<dyn Store>) {
    assert_eq!(
        store.extent().await.unwrap(),
        None,
        "an empty store is nowhere"
    );
    three_drives(store.as_ref()).await;
    let monaco: BoundingBox = "7.40,43.72,7.44,43.75".parse().unwrap();
    let cov = store.coverage(monaco, 100).await.unwrap();
    assert_eq!(cov.len(), 3, "the Paris cell is outside the box");
    let shared = cov
        .iter()
        .find(|c| c.cell == cell_at(MONACO[0].0, MONACO[0].1))
        .unwrap();
    assert_eq!((shared.devices, shared.uploads, shared.fixes), (2, 2, 4));
    assert_eq!(
        store.coverage(monaco, 1).await.unwrap().len(),
        1,
        "limit holds"
    );
    assert_eq!(
        store.coverage(BoundingBox::WORLD, 100).await.unwrap().len(),
        4
    );
    let mut ids: Vec<_> = cov.iter().map(|c| c.cell).collect();
    let sorted = {
        let mut s = ids.clone();
        s.sort();
        s
    };
    assert_eq!(ids, sorted, "ordered by cell");
    ids.dedup();
    assert_eq!(ids.len(), 3);
    // With no roads loaded, the data is where it was observed: Monaco to Paris.
    assert_monaco_to_paris(store.extent().await.unwrap());
}

/// What the coverage map in memory reads: each cell's observations (devices, uploads, fixes,
/// newest time), its road and the road driven in the window, and when that figure changes by
/// the clock; every cell, or the ones named. A road network imported is in the change feed.
async fn the_map_reads_each_cells_figures_and_the_road_driven(store: Arc<dyn Store>) {
    let quiet = (43.7500, 7.4400);
    let roads = [
        RoadCell {
            cell: cell_at(MONACO[0].0, MONACO[0].1),
            road_length_m: 40.0,
        },
        RoadCell {
            cell: cell_at(quiet.0, quiet.1),
            road_length_m: 25.0,
        },
    ];
    let before_roads = store.feed_position().await.unwrap();
    store.replace_roads(&[], &roads).await.unwrap();
    let mut fed = store.changes_since(&before_roads, 100).await.unwrap().cells;
    fed.sort();
    let mut want: Vec<Cell> = roads.iter().map(|r| r.cell).collect();
    want.sort();
    assert_eq!(
        fed, want,
        "an imported network's cells are in the change feed"
    );
    three_drives(store.as_ref()).await;
    let day = chrono::Duration::days(1);
    let all = store.map_cells(None, t0() + secs(60), day).await.unwrap();
    assert_eq!(
        all.len(),
        5,
        "four cells observed and a road nobody drove: {all:?}"
    );
    let busy = all.iter().find(|c| c.cell == roads[0].cell).unwrap();
    let seen = busy.observed.unwrap();
    assert_eq!((seen.devices, seen.uploads, seen.fixes), (2, 2, 4));
    assert_eq!(seen.last_seen, t0() + secs(1));
    // Both uploads drove the same piece of way 7 there: the longest stretch counts once.
    assert_eq!((busy.road_length_m, busy.driven_m), (40.0, 12.5));
    assert_eq!(busy.driven_until, Some(t0() + day));
    let idle = all.iter().find(|c| c.cell == roads[1].cell).unwrap();
    assert_eq!(
        (
            idle.observed,
            idle.road_length_m,
            idle.driven_m,
            idle.driven_until
        ),
        (None, 25.0, 0.0, None)
    );
    let far = all
        .iter()
        .find(|c| c.cell == cell_at(PARIS[0].0, PARIS[0].1))
        .unwrap();
    assert_eq!((far.road_length_m, far.driven_m), (0.0, 12.5));
    // The cells named only; a cell with nothing to show is left out.
    let nowhere = cell_at(10.0, 10.0);
    let some = store
        .map_cells(Some(&[roads[0].cell, nowhere]), t0() + secs(60), day)
        .await
        .unwrap();
    assert_eq!(some, vec![*busy]);
    // Past the window, nothing is driven any more.
    let later = store
        .map_cells(Some(&[roads[0].cell]), t0() + secs(2 * 86_400), day)
        .await
        .unwrap();
    assert_eq!((later[0].driven_m, later[0].driven_until), (0.0, None));
    assert_eq!(later[0].observed, busy.observed);
}

/// The box from the cells at Monaco's points (east, south) to the Paris one (west, north).
fn assert_monaco_to_paris(b: Option<BoundingBox>) {
    let b = b.expect("the store holds data, so it has an extent");
    assert!(
        (2.28..2.31).contains(&b.west)
            && (7.42..7.44).contains(&b.east)
            && (43.72..43.75).contains(&b.south)
            && (48.85..48.87).contains(&b.north),
        "{b:?}"
    );
}

fn segment(way: i64, piece: u32, points: &[(f64, f64)], name: Option<&str>) -> RoadSegment {
    let pts: Vec<LatLon> = points
        .iter()
        .map(|&(lat, lon)| LatLon::new(lat, lon).unwrap())
        .collect();
    RoadSegment {
        osm_way_id: way,
        piece,
        osm_node_ids: (0..pts.len() as i64).map(|i| way * 100 + i).collect(),
        length_m: pts.windows(2).map(|w| w[0].distance_m(w[1])).sum(),
        points: pts,
        highway: "residential".into(),
        name: name.map(str::to_owned),
        oneway: piece == 1,
    }
}

async fn road_network_round_trips_and_filters_by_box(store: Arc<dyn Store>) {
    let segments = vec![
        segment(
            7,
            0,
            &[(43.7384, 7.4246), (43.7390, 7.4250)],
            Some("Boulevard Albert 1er"),
        ),
        segment(
            7,
            1,
            &[(43.7390, 7.4250), (43.7400, 7.4270), (43.7401, 7.4280)],
            None,
        ),
        segment(
            9,
            0,
            &[(48.8584, 2.2945), (48.8590, 2.2950)],
            Some("Quai Branly"),
        ),
    ];
    let cells = [
        RoadCell {
            cell: cell_at(43.7384, 7.4246),
            road_length_m: 40.0,
        },
        RoadCell {
            cell: cell_at(48.8584, 2.2945),
            road_length_m: 70.5,
        },
    ];
    assert_eq!(store.extent().await.unwrap(), None);
    assert_eq!(store.replace_roads(&segments, &cells).await.unwrap(), 3);
    // The road network is where the data is: its cells, Monaco to Paris.
    assert_monaco_to_paris(store.extent().await.unwrap());
    let monaco: BoundingBox = "7.40,43.72,7.44,43.75".parse().unwrap();
    let got = store.roads(monaco, 100).await.unwrap();
    assert_eq!(got, segments[..2].to_vec());
    assert_eq!(store.roads(BoundingBox::WORLD, 100).await.unwrap().len(), 3);
    // By reference: the pieces named, in way and piece order, an unknown one left out.
    let named = |w, p| covermap_domain::SegmentRef {
        osm_way_id: w,
        way_piece: p,
    };
    let refs = [named(9, 0), named(7, 1), named(7, 5), named(9, 0)];
    assert_eq!(
        store.road_segments(&refs).await.unwrap(),
        vec![segments[1].clone(), segments[2].clone()]
    );
    assert!(store.road_segments(&[]).await.unwrap().is_empty());
    assert_eq!(
        store.road_cells(monaco, 100).await.unwrap(),
        cells[..1].to_vec()
    );
    // Replacing is whole: the old network is gone.
    store
        .replace_roads(&segments[2..], &cells[1..])
        .await
        .unwrap();
    assert!(store.road_cells(monaco, 100).await.unwrap().is_empty());
    assert!(store.roads(monaco, 100).await.unwrap().is_empty());
    assert_eq!(store.stats().await.unwrap().road_segments, 1);
}

async fn observations_frames_and_rejections_are_written_with_the_job(store: Arc<dyn Store>) {
    let r = store
        .record_upload(new_upload("phone-1", "radio+frames", t0()))
        .await
        .unwrap();
    let lease = store
        .lease_job("w", t0(), LEASE, QueuePolicy::default())
        .await
        .unwrap()
        .unwrap();
    let monaco = LatLon::new(43.7384, 7.4246).unwrap();
    let radio = vec![
        RadioRow {
            observed_at: t0(),
            emitter_kind: EmitterKind::Cell,
            radio: Some(RadioType::Lte),
            emitter: "lte:208:1:4711:26140929".into(),
            signal_dbm: Some(-85),
            accuracy_m: Some(10.0),
            pos: monaco,
            cell: cell_at(43.7384, 7.4246),
        },
        RadioRow {
            observed_at: t0() + secs(1),
            emitter_kind: EmitterKind::Wifi,
            radio: None,
            emitter: "wifi:1cb72caabb01".into(),
            signal_dbm: None,
            accuracy_m: None,
            pos: monaco,
            cell: cell_at(43.7384, 7.4246),
        },
    ];
    let frames = vec![FrameRow {
        frame: 3,
        sequence: 0,
        sha256: "ab".repeat(32),
        blob_key: "sha256/ab/x".into(),
        captured_at: t0(),
        heading_deg: 90.0,
        width: 3840,
        height: 2160,
        pos: monaco,
        cell: cell_at(43.7384, 7.4246),
        segment: Some(SegmentRef {
            osm_way_id: 4_097_656,
            way_piece: 2,
        }),
        vision: Some(FrameVision {
            published_key: "sha256/cd/y".into(),
            phash: "f9e0cf8c985964d0".into(),
            faces: 2,
            plates: 1,
            quality: serde_json::json!({"quality": {"class": "ok", "sharpness": 21.5}}),
        }),
    }];
    let rejections = vec![
        Rejection {
            stage: RejectionStage::Frame,
            item: 1,
            reason: "outside_track".into(),
            detail: Some("b.jpg".into()),
        },
        Rejection {
            stage: RejectionStage::Radio,
            item: 0,
            reason: "bad_mac".into(),
            detail: None,
        },
        Rejection {
            stage: RejectionStage::Fix,
            item: 7,
            reason: "implausible_jump".into(),
            detail: None,
        },
    ];
    let outcome = JobOutcome {
        radio: radio.clone(),
        frames: frames.clone(),
        rejections: rejections.clone(),
        ..JobOutcome::default()
    };
    store.complete_job(&lease, &outcome, t0()).await.unwrap();
    assert_eq!(
        store.radio_observations(r.upload_id, 10).await.unwrap(),
        radio
    );
    assert_eq!(store.frames(r.upload_id).await.unwrap(), frames);
    assert_eq!(store.rejections(r.upload_id, 10).await.unwrap(), rejections);
    assert_eq!(store.rejections(r.upload_id, 1).await.unwrap().len(), 1);
    let rec = store.upload(r.upload_id).await.unwrap().unwrap();
    // Frames and radio observations kept; the frame and radio rejections (not the fix's).
    assert_eq!(
        (rec.observations_accepted, rec.observations_rejected),
        (Some(3), Some(2))
    );
    assert_eq!(rec.cells, Some(1));
    let cells = store.radio_coverage(BoundingBox::WORLD, 10).await.unwrap();
    assert_eq!(cells.len(), 1);
    let c = &cells[0];
    assert_eq!(
        (
            c.observations,
            c.emitters,
            c.cells_seen,
            c.wifi_seen,
            c.best_signal_dbm
        ),
        (2, 2, 1, 1, Some(-85))
    );
    assert_eq!(c.last_seen, t0() + secs(1));
    let paris: BoundingBox = "2.2,48.8,2.4,48.9".parse().unwrap();
    assert!(store.radio_coverage(paris, 10).await.unwrap().is_empty());
}

async fn keys_devices_and_nonces(store: Arc<dyn Store>) {
    let key = store
        .create_api_key(
            &NewApiKey {
                key_hash: "h1".into(),
                prefix: "cm_1234567".into(),
                role: Role::Device,
                contributor: Some("alice".into()),
                quota_per_day: None,
            },
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(
        (key.role, key.contributor.as_deref()),
        (Role::Device, Some("alice"))
    );
    assert_eq!(store.api_key("h1").await.unwrap(), Some(key.clone()));
    assert_eq!(store.api_key("nope").await.unwrap(), None);
    // The same hash twice is refused (keys are unique).
    assert!(
        store
            .create_api_key(
                &NewApiKey {
                    key_hash: "h1".into(),
                    prefix: "cm_x".into(),
                    role: Role::Admin,
                    contributor: None,
                    quota_per_day: None,
                },
                t0(),
            )
            .await
            .is_err()
    );
    let device: DeviceId = "cam-1".parse().unwrap();
    let rec = device_record("cam-1", "aa", key.contributor.as_deref(), key.id);
    assert_eq!(
        store.register_device(&rec).await.unwrap(),
        Registration::Created(rec.clone())
    );
    // Again with the same key: the first registration; with another key: taken.
    let again = DeviceRecord {
        registered_at: t0() + secs(60),
        ..rec.clone()
    };
    assert_eq!(
        store.register_device(&again).await.unwrap(),
        Registration::Existing(rec.clone())
    );
    let other = DeviceRecord {
        public_key: "bb".repeat(32),
        ..rec.clone()
    };
    assert_eq!(
        store.register_device(&other).await.unwrap(),
        Registration::DeviceTaken
    );
    assert_eq!(store.device(&device).await.unwrap(), Some(rec));
    // A nonce counts once; old ones are forgotten.
    assert!(
        store
            .claim_nonce(&device, "n-1", t0(), t0() - secs(600))
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_nonce(&device, "n-1", t0(), t0() - secs(600))
            .await
            .unwrap()
    );
    let other_device: DeviceId = "cam-2".parse().unwrap();
    assert!(
        store
            .claim_nonce(&other_device, "n-1", t0(), t0() - secs(600))
            .await
            .unwrap()
    );
    let later = t0() + secs(3600);
    assert!(
        store
            .claim_nonce(&device, "n-1", later, later - secs(600))
            .await
            .unwrap()
    );
    // Revoking is once.
    assert!(store.revoke_api_key(key.id, t0()).await.unwrap());
    assert!(!store.revoke_api_key(key.id, t0()).await.unwrap());
    let keys = store.api_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].revoked_at, Some(t0()));
}

/// A device registration of `device` with the key of 32 bytes `byte` (two hex digits) repeated.
fn device_record(device: &str, byte: &str, contributor: Option<&str>, key_id: i64) -> DeviceRecord {
    DeviceRecord {
        device: device.parse().unwrap(),
        public_key: byte.repeat(32),
        contributor: contributor.map(str::to_owned),
        registered_by: key_id,
        registered_at: t0(),
        rotated_at: None,
        revoked_at: None,
    }
}

async fn device_key(store: &dyn Store, hash: &str, contributor: Option<&str>) -> i64 {
    store
        .create_api_key(
            &NewApiKey {
                key_hash: hash.into(),
                prefix: "cm_0000000".into(),
                role: Role::Device,
                contributor: contributor.map(str::to_owned),
                quota_per_day: None,
            },
            t0(),
        )
        .await
        .unwrap()
        .id
}

/// The clone attack of issue 14: a key registered to one device cannot be registered to
/// another, whoever asks; and a device id is not given to another owner, even with its key.
async fn a_public_key_is_registered_once_ever(store: Arc<dyn Store>) {
    let alice = device_key(&*store, "ha", Some("alice")).await;
    let alice_2 = device_key(&*store, "ha2", Some("alice")).await;
    let bob = device_key(&*store, "hb", Some("bob")).await;
    let anon = device_key(&*store, "hn", None).await;
    let anon_2 = device_key(&*store, "hn2", None).await;
    let cam = device_record("cam-alice", "a1", Some("alice"), alice);
    assert!(matches!(
        store.register_device(&cam).await.unwrap(),
        Registration::Created(_)
    ));
    // Bob, with alice's public key, under a new id: the key is taken.
    let clone = device_record("cam-bob-clone", "a1", Some("bob"), bob);
    assert_eq!(
        store.register_device(&clone).await.unwrap(),
        Registration::KeyTaken
    );
    assert_eq!(store.device(&clone.device).await.unwrap(), None);
    // Bob, with alice's device id and key: the id is taken, and nothing of it is handed out.
    let takeover = DeviceRecord {
        device: cam.device.clone(),
        ..clone.clone()
    };
    assert_eq!(
        store.register_device(&takeover).await.unwrap(),
        Registration::DeviceTaken
    );
    // Another of alice's keys sending the same registration again: the same owner, a retry.
    let retry = DeviceRecord {
        registered_by: alice_2,
        registered_at: t0() + secs(5),
        ..cam.clone()
    };
    assert_eq!(
        store.register_device(&retry).await.unwrap(),
        Registration::Existing(cam.clone())
    );
    // A device bound to no contributor belongs to the key that registered it.
    let loose = device_record("cam-loose", "c1", None, anon);
    assert!(matches!(
        store.register_device(&loose).await.unwrap(),
        Registration::Created(_)
    ));
    assert!(matches!(
        store.register_device(&loose).await.unwrap(),
        Registration::Existing(_)
    ));
    let other_anon = DeviceRecord {
        registered_by: anon_2,
        ..loose.clone()
    };
    assert_eq!(
        store.register_device(&other_anon).await.unwrap(),
        Registration::DeviceTaken
    );
    // Registrations racing for one key: exactly one wins.
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .register_device(&device_record(&format!("race-{i}"), "d1", None, anon))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Registration::Created(_) => created += 1,
            Registration::KeyTaken => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 1);
}

async fn devices_rotate_their_keys_and_are_revoked(store: Arc<dyn Store>) {
    let alice = device_key(&*store, "ha", Some("alice")).await;
    let cam = device_record("cam-1", "a1", Some("alice"), alice);
    store.register_device(&cam).await.unwrap();
    store
        .register_device(&device_record("cam-2", "b1", Some("alice"), alice))
        .await
        .unwrap();
    let (old, new) = ("a1".repeat(32), "a2".repeat(32));
    // To a key that is another device's: refused, nothing changes.
    assert_eq!(
        store
            .rotate_device_key(&cam.device, &old, &"b1".repeat(32), t0() + secs(10))
            .await
            .unwrap(),
        Rotation::KeyTaken
    );
    assert_eq!(store.device(&cam.device).await.unwrap(), Some(cam.clone()));
    let Rotation::Rotated(rotated) = store
        .rotate_device_key(&cam.device, &old, &new, t0() + secs(20))
        .await
        .unwrap()
    else {
        panic!("not rotated");
    };
    assert_eq!(rotated.public_key, new);
    assert_eq!(rotated.rotated_at, Some(t0() + secs(20)));
    assert_eq!(
        store.device(&cam.device).await.unwrap(),
        Some(rotated.clone())
    );
    // A second rotation signed with the old key lost the race; the old key is retired for
    // ever, for this device as for any other; so is rotating back to it.
    assert_eq!(
        store
            .rotate_device_key(&cam.device, &old, &"a3".repeat(32), t0() + secs(30))
            .await
            .unwrap(),
        Rotation::Superseded
    );
    assert_eq!(
        store
            .rotate_device_key(&cam.device, &new, &old, t0() + secs(30))
            .await
            .unwrap(),
        Rotation::KeyTaken
    );
    assert_eq!(
        store
            .register_device(&device_record("cam-9", "a1", Some("alice"), alice))
            .await
            .unwrap(),
        Registration::KeyTaken
    );
    assert_eq!(
        store
            .register_device(&DeviceRecord {
                public_key: old.clone(),
                ..cam.clone()
            })
            .await
            .unwrap(),
        Registration::DeviceTaken
    );
    // Revoking is once; a revoked device is not rotated, re-registered, nor its key reused.
    assert!(
        store
            .revoke_device(&cam.device, t0() + secs(40))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_device(&cam.device, t0() + secs(50))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_device(&"cam-none".parse().unwrap(), t0())
            .await
            .unwrap()
    );
    let revoked = store.device(&cam.device).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(t0() + secs(40)));
    assert_eq!(
        store
            .rotate_device_key(&cam.device, &new, &"a4".repeat(32), t0() + secs(60))
            .await
            .unwrap(),
        Rotation::Superseded
    );
    assert_eq!(
        store.register_device(&rotated).await.unwrap(),
        Registration::DeviceTaken
    );
    assert_eq!(
        store
            .register_device(&device_record("cam-10", "a2", Some("alice"), alice))
            .await
            .unwrap(),
        Registration::KeyTaken
    );
    assert_eq!(
        store
            .rotate_device_key(&"cam-none".parse().unwrap(), &new, &"a5".repeat(32), t0())
            .await
            .unwrap(),
        Rotation::Superseded
    );
}

async fn devices_are_listed_by_contributor_and_registering_key(store: Arc<dyn Store>) {
    let alice = device_key(&*store, "ha", Some("alice")).await;
    let bob = device_key(&*store, "hb", Some("bob")).await;
    let anon = device_key(&*store, "hn", None).await;
    for (device, byte, contributor, key) in [
        ("cam-b", "01", Some("alice"), alice),
        ("cam-a", "02", Some("alice"), alice),
        ("cam-c", "03", Some("bob"), bob),
        ("cam-d", "04", None, anon),
    ] {
        store
            .register_device(&device_record(device, byte, contributor, key))
            .await
            .unwrap();
    }
    store
        .revoke_device(&"cam-b".parse().unwrap(), t0())
        .await
        .unwrap();
    let names = |devices: Vec<DeviceRecord>| {
        devices
            .into_iter()
            .map(|d| d.device.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    let all = store.devices(&DeviceFilter::default(), 100).await.unwrap();
    assert_eq!(names(all.clone()), ["cam-a", "cam-b", "cam-c", "cam-d"]);
    assert_eq!(all[1].revoked_at, Some(t0()));
    let of_alice = DeviceFilter {
        contributor: Some("alice".into()),
        registered_by: None,
    };
    assert_eq!(
        names(store.devices(&of_alice, 100).await.unwrap()),
        ["cam-a", "cam-b"]
    );
    assert_eq!(names(store.devices(&of_alice, 1).await.unwrap()), ["cam-a"]);
    let of_anon = DeviceFilter {
        contributor: None,
        registered_by: Some(anon),
    };
    assert_eq!(
        names(store.devices(&of_anon, 100).await.unwrap()),
        ["cam-d"]
    );
}

async fn upload_sessions_take_parts_in_order(store: Arc<dyn Store>) {
    let session = UploadSession {
        id: "s1".into(),
        device: "cam-1".parse().unwrap(),
        kind: UploadKind::Drive,
        size_bytes: 10,
        sha256: "cd".repeat(32),
        received_bytes: 0,
        created_at: t0(),
        updated_at: t0(),
    };
    store.open_session(&session).await.unwrap();
    assert_eq!(store.session("s1").await.unwrap(), Some(session));
    let part = |offset, size| SessionPart {
        offset,
        size,
        blob_key: format!("k{offset}"),
    };
    assert_eq!(
        store
            .add_session_part("s1", &part(0, 4), t0())
            .await
            .unwrap(),
        4
    );
    // The same part again, a part from the wrong place, one past the end: conflicts.
    for bad in [part(0, 4), part(6, 2), part(4, 7)] {
        assert!(matches!(
            store.add_session_part("s1", &bad, t0()).await,
            Err(StoreError::Conflict(_))
        ));
    }
    assert!(matches!(
        store.add_session_part("nope", &part(0, 1), t0()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .add_session_part("s1", &part(4, 6), t0())
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        store.session_parts("s1").await.unwrap(),
        vec![part(0, 4), part(4, 6)]
    );
    // Sessions of any device untouched since a time, least recently touched first: the sweep.
    let other = UploadSession {
        id: "s2".into(),
        device: "cam-2".parse().unwrap(),
        created_at: t0() + secs(60),
        updated_at: t0() + secs(60),
        ..store.session("s1").await.unwrap().unwrap()
    };
    store.open_session(&other).await.unwrap();
    let ids = |v: Vec<UploadSession>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert!(ids(store.stale_sessions(t0(), 10).await.unwrap()).is_empty());
    assert_eq!(
        ids(store.stale_sessions(t0() + secs(30), 10).await.unwrap()),
        ["s1"]
    );
    assert_eq!(
        ids(store.stale_sessions(t0() + secs(90), 10).await.unwrap()),
        ["s1", "s2"]
    );
    assert_eq!(
        ids(store.stale_sessions(t0() + secs(90), 1).await.unwrap()),
        ["s1"]
    );
    store.delete_session("s2").await.unwrap();
    store.delete_session("s1").await.unwrap();
    assert_eq!(store.session("s1").await.unwrap(), None);
    assert!(store.session_parts("s1").await.unwrap().is_empty());
}

async fn uploads_are_listed_by_contributor_and_device(store: Arc<dyn Store>) {
    for (device, contributor, body) in [
        ("cam-a", Some("alice"), "1"),
        ("cam-b", Some("bob"), "2"),
        ("key-3", None, "3"),
    ] {
        store
            .record_upload(NewUpload {
                contributor: contributor.map(str::to_owned),
                rewardable: contributor.is_some(),
                ..new_upload(device, body, t0())
            })
            .await
            .unwrap();
    }
    let all = store
        .recent_uploads(10, &UploadFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let alice = store
        .recent_uploads(
            10,
            &UploadFilter {
                contributor: Some("alice".into()),
                ..UploadFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(alice.len(), 1);
    assert!(alice[0].rewardable && alice[0].device.as_str() == "cam-a");
    let key3 = store
        .recent_uploads(
            10,
            &UploadFilter {
                device: Some("key-3".parse().unwrap()),
                ..UploadFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(key3.len(), 1);
    assert!(!key3[0].rewardable && key3[0].contributor.is_none());
}

/// A drive, processed: one frame published, one pending, two refused (dark, and a repeat).
async fn processed_drive(
    store: &dyn Store,
    content: &str,
    at: DateTime<Utc>,
    original_key: &str,
) -> (i64, JobOutcome) {
    let outcome = drive_outcome(content, at, original_key);
    let id = completed_drive(store, ("cam-1", "alice"), content, at, &outcome).await;
    (id, outcome)
}

/// Drive `content` of `device` (bound to `contributor`), received at `at`, processed into
/// `outcome`.
async fn completed_drive(
    store: &dyn Store,
    (device, contributor): (&str, &str),
    content: &str,
    at: DateTime<Utc>,
    outcome: &JobOutcome,
) -> i64 {
    let r = store
        .record_upload(NewUpload {
            device: device.parse().unwrap(),
            kind: UploadKind::Drive,
            blob: BlobRef::of(content.as_bytes()),
            received_at: at,
            contributor: Some(contributor.into()),
            rewardable: true,
        })
        .await
        .unwrap();
    let lease = store
        .lease_job("w", at, LEASE, QueuePolicy::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.upload_id, r.upload_id);
    store.complete_job(&lease, outcome, at).await.unwrap();
    r.upload_id
}

/// What a drive's processing made of `content`: a published frame (its original under
/// `original_key`), a pending one, a refused one and a refused repeat of frame 0 of upload 1.
fn drive_outcome(content: &str, at: DateTime<Utc>, original_key: &str) -> JobOutcome {
    let monaco = LatLon::new(43.7384, 7.4246).unwrap();
    let frame = |i: i32, key: &str, published: bool| FrameRow {
        frame: i,
        sequence: 0,
        sha256: format!("{i:064}"),
        blob_key: key.into(),
        captured_at: at - secs(60 - i64::from(i)),
        heading_deg: 10.0,
        width: 1920,
        height: 1080,
        pos: monaco,
        cell: cell_at(43.7384, 7.4246),
        segment: Some(SegmentRef {
            osm_way_id: 77,
            way_piece: i as u32,
        }),
        vision: published.then(|| FrameVision {
            published_key: format!("published/{content}/{i}"),
            phash: "f9e0cf8c985964d0".into(),
            faces: 0,
            plates: 1,
            quality: serde_json::json!({"quality": {"class": "ok"}}),
        }),
    };
    let refused = |i: i32, reason: &str, duplicate_of: Option<(i64, i32)>| FrameRejectionRow {
        frame: i,
        reason: reason.into(),
        scores: serde_json::json!({"quality": {"class": reason, "p": 0.93}, "faces": 1, "plates": 0}),
        sha256: format!("{i:064}"),
        blob_key: format!("original/{content}/{i}"),
        review_key: Some(format!("review/{content}/{i}")),
        phash: Some("0123456789abcdef".into()),
        duplicate_of,
        captured_at: at - secs(30),
        pos: monaco,
        cell: cell_at(43.7384, 7.4246),
        placement: Some(FramePlacement {
            sequence: 1,
            heading_deg: 95.5,
            width: 1280,
            height: 720,
            // The repeat off any road, to keep both kinds.
            segment: duplicate_of.is_none().then_some(SegmentRef {
                osm_way_id: 78,
                way_piece: i as u32,
            }),
        }),
    };
    JobOutcome {
        frames: vec![
            frame(0, original_key, true),
            frame(1, &format!("original/{content}/1"), false),
        ],
        frame_rejections: vec![
            refused(2, "dark", None),
            refused(3, "duplicate", Some((1, 0))),
        ],
        ..JobOutcome::default()
    }
}

async fn refused_frames_imagery_and_retention(store: Arc<dyn Store>) {
    let (a, outcome) = processed_drive(store.as_ref(), "drive a", t0(), "original/shared").await;
    assert_eq!(store.frames(a).await.unwrap(), outcome.frames);
    // The auditors' queue: every refused frame, by reason, by upload, after a cursor.
    let all = store
        .audit_frames(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|f| f.row.clone()).collect::<Vec<_>>(),
        outcome.frame_rejections
    );
    assert_eq!(all[0].device.as_str(), "cam-1");
    assert_eq!(all[0].contributor.as_deref(), Some("alice"));
    let dark = AuditQuery {
        reason: Some("dark".into()),
        limit: 10,
        ..AuditQuery::default()
    };
    assert_eq!(store.audit_frames(&dark).await.unwrap().len(), 1);
    let after = AuditQuery {
        after: Some((a, 2)),
        limit: 10,
        ..AuditQuery::default()
    };
    let rest = store.audit_frames(&after).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].row.duplicate_of, Some((1, 0)));
    let other_upload = AuditQuery {
        upload_id: Some(a + 1),
        limit: 10,
        ..AuditQuery::default()
    };
    assert!(store.audit_frames(&other_upload).await.unwrap().is_empty());
    // Images: the published derivative of a published frame only; review copies of refused ones.
    let image = |f, which| store.frame_image(a, f, which);
    assert_eq!(
        image(0, FrameImage::Published).await.unwrap().as_deref(),
        Some("published/drive a/0")
    );
    assert_eq!(image(1, FrameImage::Published).await.unwrap(), None);
    assert_eq!(image(2, FrameImage::Published).await.unwrap(), None);
    assert_eq!(
        image(2, FrameImage::Review).await.unwrap().as_deref(),
        Some("review/drive a/2")
    );
    assert_eq!(image(0, FrameImage::Review).await.unwrap(), None);
    // Repeats are looked for among other uploads' published frames in the cells asked.
    let cells = [cell_at(43.7384, 7.4246)];
    let hashes = store.frame_hashes(&cells, a + 100, 10).await.unwrap();
    assert_eq!(
        hashes
            .iter()
            .map(|h| (h.upload_id, h.frame, h.phash.as_str()))
            .collect::<Vec<_>>(),
        vec![(a, 0, "f9e0cf8c985964d0")]
    );
    assert!(store.frame_hashes(&cells, a, 10).await.unwrap().is_empty());
    let paris = [cell_at(48.8584, 2.2945)];
    assert!(
        store
            .frame_hashes(&paris, a + 100, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Imagery per cell: published frames only.
    let imagery = store.imagery(BoundingBox::WORLD, 10).await.unwrap();
    assert_eq!(imagery.len(), 1);
    let i = &imagery[0];
    assert_eq!((i.frames, i.contributors, i.segments), (1, 1, 1));
    assert_eq!(i.newest, outcome.frames[0].captured_at);
    let paris_box: BoundingBox = "2.2,48.8,2.4,48.9".parse().unwrap();
    assert!(store.imagery(paris_box, 10).await.unwrap().is_empty());

    // Retention: a younger drive shares one original with drive a (the same frame's bytes).
    let (b, _) = processed_drive(
        store.as_ref(),
        "drive b",
        t0() + secs(864_000),
        "original/shared",
    )
    .await;
    let queued = store
        .record_upload(NewUpload {
            kind: UploadKind::Drive,
            ..new_upload("cam-2", "not processed yet", t0())
        })
        .await
        .unwrap();
    let due = store.originals_due(t0() + secs(86_400), 10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].upload_id, a);
    let mut expected = vec![
        BlobRef::of(b"drive a").key,
        "original/drive a/1".to_owned(),
        "original/drive a/2".to_owned(),
        "original/drive a/3".to_owned(),
    ];
    expected.sort();
    assert_eq!(due[0].blob_keys, expected, "the shared original stays");
    store
        .mark_originals_expired(a, t0() + secs(86_400))
        .await
        .unwrap();
    assert!(
        store
            .originals_due(t0() + secs(86_400), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Once drive b is due too, the shared original goes with it; the queued drive never.
    let due = store
        .originals_due(t0() + secs(2_000_000), 10)
        .await
        .unwrap();
    assert_eq!(due.iter().map(|d| d.upload_id).collect::<Vec<_>>(), vec![b]);
    assert!(due[0].blob_keys.contains(&"original/shared".to_owned()));
    assert!(!due.iter().any(|d| d.upload_id == queued.upload_id));
    // What is published stays.
    assert!(image(0, FrameImage::Published).await.unwrap().is_some());
}

fn period(epoch: u64, start: DateTime<Utc>) -> covermap_domain::rewards::EpochPeriod {
    covermap_domain::rewards::EpochPeriod {
        epoch,
        start,
        end: start + secs(7200),
    }
}

async fn epochs_close_once_in_order_over_stored_inputs(store: Arc<dyn Store>) {
    use covermap_scoring::RewardPolicy;
    use covermap_scoring::epoch;
    use covermap_store::{EpochClaim, NewDemandArea};
    let policy = RewardPolicy::shipped();
    let (a, drive) = processed_drive(store.as_ref(), "drive a", t0(), "original/a").await;
    let e5 = period(5, t0() - secs(3600));
    let since = e5.start - secs(30 * 86_400);
    let claim = |p, who: &'static str| store.claim_epoch(p, who, t0() + secs(4000), LEASE);
    let EpochClaim::Held { token, tagged, .. } = claim(&e5, "one").await.unwrap() else {
        panic!("the first closer gets the epoch");
    };
    assert_eq!(tagged, 1);
    assert!(matches!(
        claim(&e5, "two").await.unwrap(),
        EpochClaim::Busy { by, .. } if by == "one"
    ));
    let inputs = store.epoch_inputs(&e5, since).await.unwrap();
    // The published frame is the only capture; the refused ones are not.
    assert_eq!(inputs.captures.len(), 1);
    let c = &inputs.captures[0];
    assert_eq!(
        (c.contributor.as_deref(), c.upload_id, c.frame, c.cell),
        (Some("alice"), a, 0, drive.frames[0].cell)
    );
    assert_eq!(c.captured_at, drive.frames[0].captured_at);
    assert!(inputs.last_seen.is_empty() && inputs.previous.is_empty());
    let outcome = epoch::close(&inputs, &policy);
    assert_eq!(outcome.rewards.len(), 1);
    assert_eq!(outcome.rewards[0].amount, policy.rules.epoch.emission);
    // Only the holder may finish it, and only once.
    assert!(matches!(
        store
            .finish_epoch("not-the-token", &outcome, &policy.source, t0())
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .finish_epoch(&token, &outcome, &policy.source, t0() + secs(4001))
        .await
        .unwrap();
    assert!(matches!(
        store
            .finish_epoch(&token, &outcome, &policy.source, t0())
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(claim(&e5, "two").await.unwrap(), EpochClaim::Closed);
    let listed = store.epochs().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, "closed");
    assert_eq!(
        listed[0].root.as_deref(),
        Some(outcome.manifest.root.as_str())
    );
    let stored = store.closed_epoch(5).await.unwrap().unwrap();
    assert_eq!(stored.manifest, outcome.manifest);
    assert_eq!(stored.policy, policy.source);
    assert_eq!(store.last_closed_epoch().await.unwrap(), Some(5));
    assert_eq!(store.epoch_rewards(5).await.unwrap(), outcome.rewards);
    assert_eq!(store.epoch_cells(5).await.unwrap(), outcome.cells);
    assert_eq!(
        store.contributor_rewards("alice").await.unwrap(),
        vec![(5, outcome.rewards[0].clone())]
    );

    // Epochs close in order.
    let e4 = period(4, e5.start - secs(7200));
    let e7 = period(7, e5.start + secs(2 * 7200));
    assert!(matches!(
        claim(&e4, "x").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        claim(&e7, "x").await,
        Err(StoreError::Conflict(_))
    ));

    // The next epoch: a second drive of the same place; the first is its cell's last capture,
    // and alice's total so far is the previous total.
    let (b, _) = processed_drive(store.as_ref(), "drive b", t0() + secs(7200), "original/b").await;
    let e6 = period(6, e5.end);
    let EpochClaim::Held { token, tagged, .. } = claim(&e6, "one").await.unwrap() else {
        panic!("epoch 6 is free");
    };
    assert_eq!(tagged, 1);
    let next = store.epoch_inputs(&e6, since).await.unwrap();
    assert_eq!(next.captures.len(), 1);
    assert_eq!(next.captures[0].upload_id, b);
    assert_eq!(next.last_seen.len(), 1);
    assert_eq!(next.last_seen[0].last_seen, drive.frames[0].captured_at);
    assert_eq!(next.previous.len(), 1);
    assert_eq!(
        next.previous[0].cumulative,
        u128::from(policy.rules.epoch.emission)
    );
    let o6 = epoch::close(&next, &policy);
    store
        .finish_epoch(&token, &o6, &policy.source, t0() + secs(9000))
        .await
        .unwrap();
    // Epoch 5's inputs read the same after later epochs closed: it can be verified.
    assert_eq!(store.epoch_inputs(&e5, since).await.unwrap(), inputs);

    // A claim given back is free at once.
    let e7 = period(7, e6.end);
    let EpochClaim::Held { token, .. } = claim(&e7, "one").await.unwrap() else {
        panic!("epoch 7 is free");
    };
    store.abandon_epoch(7, &token).await.unwrap();
    assert!(matches!(
        claim(&e7, "two").await.unwrap(),
        EpochClaim::Held { .. }
    ));

    // Demand areas: stored with their cells, listed, and on the demand map with their weight.
    let cell = cell_at(43.7384, 7.4246);
    let area = store
        .create_demand_area(
            &NewDemandArea {
                name: "harbour".into(),
                weight: 2.0,
                polygon: serde_json::json!({"type": "Polygon", "coordinates": []}),
                cells: vec![cell, cell],
                created_by: None,
                expires_at: Some(t0() + secs(86_400)),
                budget: Some(500),
            },
            t0(),
        )
        .await
        .unwrap();
    assert_eq!((area.cells, area.budget, area.paid), (1, Some(500), 0));
    assert_eq!(store.demand_areas().await.unwrap(), vec![area]);
    let map = store
        .demand_cells(BoundingBox::WORLD, t0() + secs(60), since, 10)
        .await
        .unwrap();
    assert_eq!(map.len(), 1);
    assert_eq!(
        (map[0].cell, map[0].demand_weight, map[0].open_bounties),
        (cell, 2.0, 1)
    );
    assert_eq!(
        map[0].last_seen,
        Some(drive.frames[0].captured_at + secs(7200))
    );
    let later = store
        .demand_cells(BoundingBox::WORLD, t0() + secs(2 * 86_400), since, 10)
        .await
        .unwrap();
    assert!(later.is_empty(), "an expired area leaves the map");
}

/// The earnings estimate's bounties: a bounty's unclaimed cells in a box, live at the planned
/// time — not before it was posted, not once it expired — with its budget and cell count.
async fn open_bounties_are_read_as_they_stand_at_the_planned_time(store: Arc<dyn Store>) {
    let (a, b) = (cell_at(43.7384, 7.4246), cell_at(43.7420, 7.4300));
    let area = |name: &str, cells: Vec<Cell>, budget: Option<u64>| covermap_store::NewDemandArea {
        name: name.into(),
        weight: 1.0,
        polygon: serde_json::json!({"type": "Polygon", "coordinates": []}),
        cells,
        created_by: None,
        expires_at: Some(t0() + secs(86_400)),
        budget,
    };
    let bounty = store
        .create_demand_area(&area("harbour", vec![a, b], Some(501)), t0())
        .await
        .unwrap();
    // No budget: demand, not a bounty.
    store
        .create_demand_area(&area("plain", vec![a], None), t0())
        .await
        .unwrap();
    let open = store
        .open_bounty_cells(BoundingBox::WORLD, t0() + secs(60), 10)
        .await
        .unwrap();
    let mut cells = vec![a, b];
    cells.sort();
    assert_eq!(open.iter().map(|o| o.cell).collect::<Vec<_>>(), cells);
    assert!(open.iter().all(|o| o.area == bounty.id
        && (o.budget, o.cells, o.paid) == (501, 2, 0)
        && o.created_at == t0()
        && o.expires_at == Some(t0() + secs(86_400))));
    // Before it was posted, after it expired, and outside the box: nothing.
    for at in [t0() - secs(1), t0() + secs(86_400)] {
        let none = store
            .open_bounty_cells(BoundingBox::WORLD, at, 10)
            .await
            .unwrap();
        assert!(none.is_empty(), "{at}: {none:?}");
    }
    let paris = BoundingBox {
        west: 2.2,
        south: 48.8,
        east: 2.4,
        north: 48.9,
    };
    assert!(
        store
            .open_bounty_cells(paris, t0() + secs(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // At most `limit`, by cell.
    let one = store
        .open_bounty_cells(BoundingBox::WORLD, t0() + secs(60), 1)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].cell, cells[0]);
}

async fn decide(
    store: &dyn Store,
    (upload_id, frame): (i64, i32),
    decision: Decision,
    note: Option<&str>,
    at: DateTime<Utc>,
) -> Result<FrameDecision, StoreError> {
    let d = covermap_store::NewFrameDecision {
        upload_id,
        frame,
        decision,
        note: note.map(Into::into),
        auditor: "carol".into(),
        auditor_key_id: None,
    };
    store.decide_frame(&d, at).await
}

/// A drive whose only frames are `refused`.
async fn refused_drive(
    store: &dyn Store,
    content: &str,
    at: DateTime<Utc>,
    refused: Vec<FrameRejectionRow>,
) -> i64 {
    let r = store
        .record_upload(NewUpload {
            kind: UploadKind::Drive,
            ..new_upload("cam-2", content, at)
        })
        .await
        .unwrap();
    let lease = store
        .lease_job("w", at, LEASE, QueuePolicy::default())
        .await
        .unwrap()
        .unwrap();
    let outcome = JobOutcome {
        frame_rejections: refused,
        ..JobOutcome::default()
    };
    store.complete_job(&lease, &outcome, at).await.unwrap();
    r.upload_id
}

async fn auditors_approve_and_reject_refused_frames(store: Arc<dyn Store>) {
    let (a, drive) = processed_drive(store.as_ref(), "drive a", t0(), "original/a").await;
    let dark = drive.frame_rejections[0].clone();
    assert_eq!((dark.frame, dark.reason.as_str()), (2, "dark"));
    let queue = |undecided_only| {
        let store = store.clone();
        async move {
            store
                .audit_frames(&AuditQuery {
                    undecided_only,
                    limit: 10,
                    ..AuditQuery::default()
                })
                .await
        }
    };
    assert!(
        queue(false)
            .await
            .unwrap()
            .iter()
            .all(|f| f.decision.is_none())
    );
    assert_eq!(queue(true).await.unwrap().len(), 2);
    let frames_in_imagery = || async {
        store
            .imagery(BoundingBox::WORLD, 10)
            .await
            .unwrap()
            .iter()
            .map(|c| c.frames)
            .sum::<i64>()
    };
    assert_eq!(frames_in_imagery().await, 1);

    // Approved: published from its review copy, placed where it was refused, at once.
    let approved = decide(
        store.as_ref(),
        (a, 2),
        Decision::Approve,
        Some("dusk, not dark"),
        t0() + secs(100),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            approved.upload_id,
            approved.frame,
            approved.decision,
            approved.note.as_deref(),
            approved.auditor.as_str(),
            approved.decided_at
        ),
        (
            a,
            2,
            Decision::Approve,
            Some("dusk, not dark"),
            "carol",
            t0() + secs(100)
        )
    );
    assert_eq!(
        store
            .frame_image(a, 2, FrameImage::Published)
            .await
            .unwrap()
            .as_deref(),
        Some("review/drive a/2")
    );
    let place = dark.placement.unwrap();
    let published = FrameRow {
        frame: 2,
        sequence: place.sequence,
        sha256: dark.sha256.clone(),
        blob_key: dark.blob_key.clone(),
        captured_at: dark.captured_at,
        heading_deg: place.heading_deg,
        width: place.width,
        height: place.height,
        pos: dark.pos,
        cell: dark.cell,
        segment: place.segment,
        vision: Some(FrameVision {
            published_key: "review/drive a/2".into(),
            phash: dark.phash.clone().unwrap(),
            faces: 1,
            plates: 0,
            quality: dark.scores.clone(),
        }),
    };
    let frames = store.frames(a).await.unwrap();
    assert_eq!(frames.iter().find(|f| f.frame == 2), Some(&published));
    assert_eq!(frames_in_imagery().await, 2);
    let hashes = store.frame_hashes(&[dark.cell], a + 100, 10).await.unwrap();
    assert!(hashes.iter().any(|h| (h.upload_id, h.frame) == (a, 2)));
    // The queue keeps it, with its decision; the log has it.
    let listed = queue(false).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].decision.as_ref(), Some(&approved));
    assert_eq!(listed[0].row, dark);
    let undecided = queue(true).await.unwrap();
    assert_eq!(
        undecided.iter().map(|f| f.row.frame).collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(
        store.frame_decisions(10, None).await.unwrap(),
        vec![approved.clone()]
    );
    // Approving again changes nothing published.
    let again = decide(
        store.as_ref(),
        (a, 2),
        Decision::Approve,
        None,
        t0() + secs(150),
    )
    .await
    .unwrap();
    assert_eq!(store.frames(a).await.unwrap(), frames);

    // Rejected after all: taken out of the published frames; both decisions stay in the log.
    let rejected = decide(
        store.as_ref(),
        (a, 2),
        Decision::Reject,
        Some("too dark after all"),
        t0() + secs(200),
    )
    .await
    .unwrap();
    assert_eq!(rejected.decision, Decision::Reject);
    assert_eq!(
        store
            .frame_image(a, 2, FrameImage::Published)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.frames(a).await.unwrap(), drive.frames);
    assert_eq!(frames_in_imagery().await, 1);
    assert_eq!(
        store.frame_decisions(10, None).await.unwrap(),
        vec![rejected.clone(), again.clone(), approved.clone()]
    );
    assert_eq!(
        store.frame_decisions(1, Some(rejected.id)).await.unwrap(),
        vec![again.clone()]
    );
    assert!(
        store
            .frame_decisions(10, Some(approved.id))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        queue(false).await.unwrap()[0].decision.as_ref(),
        Some(&rejected)
    );
    // A rejection never unpublishes what the vision stage published (frame 0 is no refused
    // frame at all), and neither decision applies to a frame that was not refused.
    let log = store.frame_decisions(10, None).await.unwrap();
    for (frame, decision) in [
        ((a, 0), Decision::Reject),
        ((a, 99), Decision::Approve),
        ((a + 1000, 2), Decision::Reject),
    ] {
        assert!(
            matches!(
                decide(store.as_ref(), frame, decision, None, t0() + secs(300)).await,
                Err(StoreError::NotFound(_))
            ),
            "{frame:?}"
        );
    }
    assert_eq!(store.frames(a).await.unwrap(), drive.frames);

    // Without a review copy, or refused before its placement was kept, a frame cannot be
    // approved; nothing is written. It can still be rejected.
    let no_copy = FrameRejectionRow {
        frame: 0,
        review_key: None,
        ..dark.clone()
    };
    let unplaced = FrameRejectionRow {
        frame: 1,
        placement: None,
        ..dark.clone()
    };
    let b = refused_drive(store.as_ref(), "drive b", t0(), vec![no_copy, unplaced]).await;
    for frame in [0, 1] {
        assert!(
            matches!(
                decide(store.as_ref(), (b, frame), Decision::Approve, None, t0()).await,
                Err(StoreError::Conflict(_))
            ),
            "frame {frame}"
        );
    }
    assert_eq!(store.frame_decisions(10, None).await.unwrap(), log);
    assert!(store.frames(b).await.unwrap().is_empty());
    assert_eq!(frames_in_imagery().await, 1);
    let kept = decide(store.as_ref(), (b, 0), Decision::Reject, None, t0())
        .await
        .unwrap();
    assert_eq!(store.frame_decisions(1, None).await.unwrap(), vec![kept]);
}

/// Closes epoch `p` at `now` over the stored inputs (coverage since `since`); its inputs.
async fn closed_epoch(
    store: Arc<dyn Store>,
    policy: covermap_scoring::RewardPolicy,
    p: covermap_domain::rewards::EpochPeriod,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> covermap_domain::rewards::EpochInputs {
    let covermap_store::EpochClaim::Held { token, .. } =
        store.claim_epoch(&p, "closer", now, LEASE).await.unwrap()
    else {
        panic!("epoch {} is free", p.epoch);
    };
    let inputs = store.epoch_inputs(&p, since).await.unwrap();
    let outcome = covermap_scoring::epoch::close(&inputs, &policy);
    store
        .finish_epoch(&token, &outcome, &policy.source, now)
        .await
        .unwrap();
    inputs
}

/// The (upload, frame) of an epoch's captures, in order.
fn captured(inputs: &covermap_domain::rewards::EpochInputs) -> Vec<(i64, i32)> {
    let mut c: Vec<_> = inputs
        .captures
        .iter()
        .map(|c| (c.upload_id, c.frame))
        .collect();
    c.sort_unstable();
    c
}

async fn approved_frames_count_once_without_reopening_closed_epochs(store: Arc<dyn Store>) {
    let policy = covermap_scoring::RewardPolicy::shipped();
    let (a, drive) = processed_drive(store.as_ref(), "drive a", t0(), "original/a").await;
    let e5 = period(5, t0() - secs(3600));
    let since = e5.start - secs(30 * 86_400);
    let close = |p, now| closed_epoch(store.clone(), policy.clone(), p, since, now);
    let i5 = close(e5, t0() + secs(4000)).await;
    assert_eq!(captured(&i5), vec![(a, 0)]);

    // Approved after epoch 5 closed: epoch 5 reads the same; the frame counts in epoch 6.
    decide(
        store.as_ref(),
        (a, 2),
        Decision::Approve,
        None,
        t0() + secs(4100),
    )
    .await
    .unwrap();
    assert_eq!(store.epoch_inputs(&e5, since).await.unwrap(), i5);
    let e6 = period(6, e5.end);
    let i6 = close(e6, t0() + secs(11_000)).await;
    assert_eq!(captured(&i6), vec![(a, 2)]);
    let c = &i6.captures[0];
    assert_eq!(
        (c.contributor.as_deref(), c.cell, c.captured_at),
        (
            Some("alice"),
            drive.frame_rejections[0].cell,
            drive.frame_rejections[0].captured_at
        )
    );

    // Rejected later: off the map, but epoch 6 is not reopened; approved again, it does not
    // count a second time.
    decide(
        store.as_ref(),
        (a, 2),
        Decision::Reject,
        None,
        t0() + secs(11_100),
    )
    .await
    .unwrap();
    assert_eq!(store.epoch_inputs(&e6, since).await.unwrap(), i6);
    assert_eq!(store.epoch_inputs(&e5, since).await.unwrap(), i5);
    decide(
        store.as_ref(),
        (a, 2),
        Decision::Approve,
        None,
        t0() + secs(11_200),
    )
    .await
    .unwrap();
    let e7 = period(7, e6.end);
    assert!(captured(&close(e7, t0() + secs(20_000)).await).is_empty());

    // Approved during an epoch, a frame of an upload not counted yet counts with it, once.
    let (b, _) = processed_drive(store.as_ref(), "drive b", e7.end + secs(60), "original/b").await;
    decide(
        store.as_ref(),
        (b, 2),
        Decision::Approve,
        None,
        e7.end + secs(120),
    )
    .await
    .unwrap();
    let e8 = period(8, e7.end);
    assert_eq!(
        captured(&close(e8, e8.end + secs(10)).await),
        vec![(b, 0), (b, 2)]
    );
}

async fn frames_judged_late_are_published_or_refused_and_count_once_without_reopening_epochs(
    store: Arc<dyn Store>,
) {
    let policy = covermap_scoring::RewardPolicy::shipped();
    // Frame 0 published with its drive, frame 1 kept pending (no models), 2 and 3 refused.
    let (a, drive) = processed_drive(store.as_ref(), "drive a", t0(), "original/a").await;
    let pending = store.pending_frames(None, 10).await.unwrap();
    assert_eq!(pending, vec![(a, drive.frames[1].clone())]);
    assert!(
        store
            .pending_frames(Some((a, 1)), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let e5 = period(5, t0() - secs(3600));
    let since = e5.start - secs(30 * 86_400);
    let close = |p, now| closed_epoch(store.clone(), policy.clone(), p, since, now);
    let i5 = close(e5, t0() + secs(4000)).await;
    assert_eq!(
        captured(&i5),
        vec![(a, 0)],
        "a pending frame counts nowhere"
    );

    // The models are in place after epoch 5 closed: the frame is published, once.
    let vision = FrameVision {
        published_key: "published/drive a/1".into(),
        phash: "00ff00ff00ff00ff".into(),
        faces: 2,
        plates: 0,
        quality: serde_json::json!({"quality": {"class": "ok"}}),
    };
    let publish = LateJudgement::Publish(vision.clone());
    let judged_at = t0() + secs(4100);
    let before_judging = store.feed_position().await.unwrap();
    assert!(
        store
            .judge_pending_frame(a, 1, &publish, judged_at)
            .await
            .unwrap()
    );
    assert!(
        !store
            .judge_pending_frame(a, 1, &publish, judged_at)
            .await
            .unwrap(),
        "a frame is judged once"
    );
    assert!(store.pending_frames(None, 10).await.unwrap().is_empty());
    let frames = store.frames(a).await.unwrap();
    assert_eq!(frames[1].vision, Some(vision));
    assert_eq!(
        store
            .frame_image(a, 1, FrameImage::Published)
            .await
            .unwrap()
            .as_deref(),
        Some("published/drive a/1")
    );
    // The tile cache hears of it.
    assert!(
        store
            .changes_since(&before_judging, 100)
            .await
            .unwrap()
            .cells
            .contains(&frames[1].cell)
    );
    // Epoch 5 reads the same; the frame counts in the next epoch claimed, and only there.
    assert_eq!(store.epoch_inputs(&e5, since).await.unwrap(), i5);
    let e6 = period(6, e5.end);
    let i6 = close(e6, t0() + secs(11_000)).await;
    assert_eq!(captured(&i6), vec![(a, 1)]);
    assert_eq!(i6.captures[0].contributor.as_deref(), Some("alice"));
    let e7 = period(7, e6.end);
    assert!(captured(&close(e7, t0() + secs(20_000)).await).is_empty());
    assert_eq!(store.epoch_inputs(&e5, since).await.unwrap(), i5);
    assert_eq!(store.epoch_inputs(&e6, since).await.unwrap(), i6);

    // Refused late: into the auditors' queue with its placement, the reason on its upload, its
    // count moved from kept to refused.
    let (b, drive_b) =
        processed_drive(store.as_ref(), "drive b", e7.end + secs(60), "original/b").await;
    let before = store.upload(b).await.unwrap().unwrap();
    let row = drive_b.frames[1].clone();
    let refused = FrameRejectionRow {
        frame: 1,
        reason: "defocus".into(),
        scores: serde_json::json!({"quality": {"class": "defocus"}}),
        sha256: row.sha256.clone(),
        blob_key: row.blob_key.clone(),
        review_key: Some("review/drive b/1".into()),
        phash: Some("1111111111111111".into()),
        duplicate_of: None,
        captured_at: row.captured_at,
        pos: row.pos,
        cell: row.cell,
        placement: Some(FramePlacement::of(&row)),
    };
    let why = Rejection {
        stage: RejectionStage::Frame,
        item: 1,
        reason: "defocus".into(),
        detail: Some("frame 1: judged late".into()),
    };
    assert!(
        store
            .judge_pending_frame(
                b,
                1,
                &LateJudgement::Refuse(Box::new(refused.clone()), why.clone()),
                e7.end + secs(120),
            )
            .await
            .unwrap()
    );
    assert!(store.frames(b).await.unwrap().iter().all(|f| f.frame != 1));
    let queue = store
        .audit_frames(&AuditQuery {
            upload_id: Some(b),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let late = queue.iter().find(|f| f.row.frame == 1).unwrap();
    assert_eq!(late.row, refused);
    assert_eq!(store.rejections(b, 100).await.unwrap().last(), Some(&why));
    let after = store.upload(b).await.unwrap().unwrap();
    assert_eq!(
        (after.observations_accepted, after.observations_rejected),
        (
            before.observations_accepted.map(|n| n - 1),
            before.observations_rejected.map(|n| n + 1)
        )
    );

    // Unreadable late: out of its drive, the reason kept, nothing in the auditors' queue.
    let (c, _) = processed_drive(store.as_ref(), "drive c", e7.end + secs(180), "original/c").await;
    let unreadable = Rejection {
        stage: RejectionStage::Frame,
        item: 1,
        reason: "undecodable".into(),
        detail: None,
    };
    assert!(
        store
            .judge_pending_frame(
                c,
                1,
                &LateJudgement::Unreadable(unreadable.clone()),
                e7.end + secs(240),
            )
            .await
            .unwrap()
    );
    assert!(store.frames(c).await.unwrap().iter().all(|f| f.frame != 1));
    assert_eq!(
        store.rejections(c, 100).await.unwrap().last(),
        Some(&unreadable)
    );
    assert!(
        store
            .audit_frames(&AuditQuery {
                upload_id: Some(c),
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .unwrap()
            .iter()
            .all(|f| f.row.frame != 1)
    );
    assert!(store.pending_frames(None, 10).await.unwrap().is_empty());
}

async fn reported_frames_are_hidden_until_an_auditor_keeps_or_removes_them(store: Arc<dyn Store>) {
    use covermap_domain::{ReportDecision, ReportReason};
    use covermap_store::NewFrameReport;
    let (a, drive) = processed_drive(store.as_ref(), "drive a", t0(), "original/a").await;
    let cell = drive.frames[0].cell;
    let whole = BoundingBox {
        west: -180.0,
        south: -90.0,
        east: 180.0,
        north: 90.0,
    };
    let shown = |store: Arc<dyn Store>| async move {
        store
            .frame_image(a, 0, FrameImage::Published)
            .await
            .unwrap()
    };
    let mapped = |store: Arc<dyn Store>| async move {
        store
            .imagery(whole, 100)
            .await
            .unwrap()
            .iter()
            .map(|c| c.frames)
            .sum::<i64>()
    };
    assert_eq!(
        shown(store.clone()).await.as_deref(),
        Some("published/drive a/0")
    );
    assert_eq!(mapped(store.clone()).await, 1);
    let period = period(5, t0() - secs(3600));
    let since = period.start - secs(30 * 86_400);
    let report = |reason, reporter: &str| NewFrameReport {
        upload_id: a,
        frame: 0,
        reason,
        note: Some("a face in the window".into()),
        reporter: reporter.into(),
    };
    // Only published frames can be reported: frame 1 is pending, frame 9 does not exist.
    for frame in [1, 9] {
        let err = store
            .report_frame(
                &NewFrameReport {
                    frame,
                    ..report(ReportReason::Face, "anonymous")
                },
                t0(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }

    // Reported: hidden at once, off the map, in the open reports; the tile cache hears of it.
    let before_report = store.feed_position().await.unwrap();
    let r1 = store
        .report_frame(&report(ReportReason::Face, "anonymous"), t0() + secs(10))
        .await
        .unwrap();
    assert_eq!((r1.reason, r1.decision), (ReportReason::Face, None));
    assert_eq!(shown(store.clone()).await, None);
    // Auditors still see it, to decide.
    assert_eq!(
        store
            .frame_image(a, 0, FrameImage::Reported)
            .await
            .unwrap()
            .as_deref(),
        Some("published/drive a/0")
    );
    assert_eq!(mapped(store.clone()).await, 0);
    assert!(
        store
            .changes_since(&before_report, 100)
            .await
            .unwrap()
            .cells
            .contains(&cell)
    );
    let r2 = store
        .report_frame(&report(ReportReason::Plate, "key:7"), t0() + secs(20))
        .await
        .unwrap();
    let open = store.frame_reports(true, 10).await.unwrap();
    assert_eq!(
        open.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![r2.id, r1.id]
    );

    // Kept once: still hidden while the other report is open; kept twice: shown again.
    let (kept, gone) = store
        .decide_report(r1.id, ReportDecision::Keep, "auditor", t0() + secs(30))
        .await
        .unwrap();
    assert_eq!(
        (kept.decision, kept.decided_by.as_deref(), gone),
        (Some(ReportDecision::Keep), Some("auditor"), None)
    );
    assert_eq!(shown(store.clone()).await, None);
    let err = store
        .decide_report(r1.id, ReportDecision::Remove, "auditor", t0() + secs(31))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let err = store
        .decide_report(9999, ReportDecision::Keep, "auditor", t0() + secs(31))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    store
        .decide_report(r2.id, ReportDecision::Keep, "auditor", t0() + secs(40))
        .await
        .unwrap();
    assert_eq!(
        shown(store.clone()).await.as_deref(),
        Some("published/drive a/0")
    );
    assert_eq!(mapped(store.clone()).await, 1);
    assert!(store.frame_reports(true, 10).await.unwrap().is_empty());

    // Reported again and removed: taken down for good, its derivative's key given back for
    // deleting, every open report of it closed; it cannot be reported again.
    let before = store.epoch_inputs(&period, since).await.unwrap();
    let r3 = store
        .report_frame(&report(ReportReason::Face, "anonymous"), t0() + secs(50))
        .await
        .unwrap();
    let r4 = store
        .report_frame(&report(ReportReason::Other, "anonymous"), t0() + secs(55))
        .await
        .unwrap();
    let (removed, derivative) = store
        .decide_report(r3.id, ReportDecision::Remove, "auditor", t0() + secs(60))
        .await
        .unwrap();
    assert_eq!(removed.decision, Some(ReportDecision::Remove));
    assert_eq!(derivative.as_deref(), Some("published/drive a/0"));
    assert_eq!(shown(store.clone()).await, None);
    assert_eq!(
        store.frame_image(a, 0, FrameImage::Reported).await.unwrap(),
        None,
        "a frame taken down is gone for auditors too"
    );
    assert_eq!(mapped(store.clone()).await, 0);
    let all = store.frame_reports(false, 10).await.unwrap();
    let closed = all.iter().find(|r| r.id == r4.id).unwrap();
    assert_eq!(closed.decision, Some(ReportDecision::Remove));
    let err = store
        .report_frame(&report(ReportReason::Face, "anonymous"), t0() + secs(70))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    // The ledger keeps amounts, not pixels: what an epoch counts does not change.
    assert_eq!(store.epoch_inputs(&period, since).await.unwrap(), before);
}

async fn reported_frames_are_blurred_further_under_a_new_key(store: Arc<dyn Store>) {
    use covermap_domain::{BlurBox, ReportDecision, ReportReason};
    use covermap_store::{NewFrameReport, ReportBlur};
    let (a, drive) = processed_drive(store.as_ref(), "drive a", t0(), "original/a").await;
    let cell = drive.frames[0].cell;
    let period = period(5, t0() - secs(3600));
    let since = period.start - secs(30 * 86_400);
    let before = store.epoch_inputs(&period, since).await.unwrap();
    let report = |frame: i32, at: i64| {
        let store = store.clone();
        async move {
            store
                .report_frame(
                    &NewFrameReport {
                        upload_id: a,
                        frame,
                        reason: ReportReason::Face,
                        note: None,
                        reporter: "anonymous".into(),
                    },
                    t0() + secs(at),
                )
                .await
                .unwrap()
        }
    };
    let shown = |frame: i32| {
        let store = store.clone();
        async move {
            store
                .frame_image(a, frame, FrameImage::Published)
                .await
                .unwrap()
        }
    };
    let boxes = vec![
        BlurBox::new(10.0, 20.0, 110.0, 140.0).unwrap(),
        BlurBox::new(500.5, 300.0, 640.0, 400.25).unwrap(),
    ];
    let blur = |id: i64, from: &str, to: &str| ReportBlur {
        report_id: id,
        boxes: boxes.clone(),
        from_key: from.into(),
        to_key: to.into(),
        auditor: "carol".into(),
    };
    let r1 = report(0, 10).await;
    let r2 = report(0, 20).await;
    // A blur is decided with its boxes and blurred copy, never as a plain decision.
    let err = store
        .decide_report(r1.id, ReportDecision::Blur, "carol", t0() + secs(25))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    // A blur of a copy the frame no longer publishes (someone blurred it meanwhile) changes
    // nothing.
    let err = store
        .blur_reported_frame(
            &blur(r1.id, "published/elsewhere", "blurred/x"),
            t0() + secs(30),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        store.frame_report(r1.id).await.unwrap().unwrap().decision,
        None
    );
    let err = store
        .blur_reported_frame(
            &blur(9999, "published/drive a/0", "blurred/x"),
            t0() + secs(30),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    // Blurred: the frame publishes the new copy; it stays hidden while the other report is
    // open. The old derivative is given back for deleting: nothing else publishes it.
    let (decided, unused) = store
        .blur_reported_frame(
            &blur(r1.id, "published/drive a/0", "blurred/a/0"),
            t0() + secs(40),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            decided.decision,
            decided.decided_by.as_deref(),
            decided.boxes.as_deref(),
            unused.as_deref()
        ),
        (
            Some(ReportDecision::Blur),
            Some("carol"),
            Some(boxes.as_slice()),
            Some("published/drive a/0")
        )
    );
    assert_eq!(store.frame_report(r1.id).await.unwrap().unwrap(), decided);
    assert_eq!(shown(0).await, None, "another report of it is still open");
    assert_eq!(
        store
            .frame_image(a, 0, FrameImage::Reported)
            .await
            .unwrap()
            .as_deref(),
        Some("blurred/a/0")
    );
    let err = store
        .blur_reported_frame(&blur(r1.id, "blurred/a/0", "blurred/a/0b"), t0() + secs(45))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "decided once: {err}"
    );
    // Blurred again for the other report: shown, and the tile cache hears of it.
    let before_blur = store.feed_position().await.unwrap();
    let (_, unused) = store
        .blur_reported_frame(&blur(r2.id, "blurred/a/0", "blurred/a/0b"), t0() + secs(50))
        .await
        .unwrap();
    assert_eq!(unused.as_deref(), Some("blurred/a/0"));
    assert_eq!(shown(0).await.as_deref(), Some("blurred/a/0b"));
    assert!(
        store
            .changes_since(&before_blur, 100)
            .await
            .unwrap()
            .cells
            .contains(&cell)
    );
    assert!(store.frame_reports(true, 10).await.unwrap().is_empty());

    // A frame an approval published from its review copy: the review copy is blurred with it,
    // so approving it again would never publish the old one.
    decide(
        store.as_ref(),
        (a, 2),
        Decision::Approve,
        None,
        t0() + secs(60),
    )
    .await
    .unwrap();
    assert_eq!(shown(2).await.as_deref(), Some("review/drive a/2"));
    let r3 = report(2, 70).await;
    let (_, unused) = store
        .blur_reported_frame(
            &blur(r3.id, "review/drive a/2", "blurred/a/2"),
            t0() + secs(80),
        )
        .await
        .unwrap();
    assert_eq!(unused.as_deref(), Some("review/drive a/2"));
    assert_eq!(shown(2).await.as_deref(), Some("blurred/a/2"));
    assert_eq!(
        store
            .frame_image(a, 2, FrameImage::Review)
            .await
            .unwrap()
            .as_deref(),
        Some("blurred/a/2")
    );

    // Blurring to the same bytes (nothing changed where it was marked) keeps the copy.
    let r4 = report(2, 90).await;
    let (_, unused) = store
        .blur_reported_frame(&blur(r4.id, "blurred/a/2", "blurred/a/2"), t0() + secs(95))
        .await
        .unwrap();
    assert_eq!(unused, None);
    assert_eq!(shown(2).await.as_deref(), Some("blurred/a/2"));
    // The ledger keeps amounts, not pixels: what an epoch counts does not change.
    assert_eq!(store.epoch_inputs(&period, since).await.unwrap(), before);
}

/// A drive with everything processing leaves of one: frames as [`drive_outcome`] makes them,
/// the cells and roads of a track over Monaco, a fix left out where it was, a radio sample, and
/// what the trust stage keeps to compare later uploads with.
fn full_outcome(content: &str, at: DateTime<Utc>, original_key: &str) -> JobOutcome {
    let mut o = JobOutcome {
        rejections: vec![Rejection {
            stage: RejectionStage::Fix,
            item: 4,
            reason: "implausible_jump".into(),
            detail: Some("at 43.7390000, 7.4250000".into()),
        }],
        radio: vec![RadioRow {
            observed_at: at,
            emitter_kind: EmitterKind::Cell,
            radio: Some(RadioType::Lte),
            emitter: "lte:208:1:4711:26140929".into(),
            signal_dbm: Some(-85),
            accuracy_m: Some(10.0),
            pos: LatLon::new(43.7384, 7.4246).unwrap(),
            cell: cell_at(43.7384, 7.4246),
        }],
        trust: Some(covermap_store::TrustRecord {
            evidence: r#"{"track": {"centre": [43.7384, 7.4246]}}"#.into(),
            verdict: "trusted".into(),
            findings: "[]".into(),
            extent: Some(covermap_store::UploadExtent {
                radio: false,
                first_at: at,
                last_at: at + secs(3),
                first: LatLon::new(43.7384, 7.4246).unwrap(),
                last: LatLon::new(43.7311, 7.4197).unwrap(),
                centre: LatLon::new(43.7384, 7.4246).unwrap(),
                radius_m: 800.0,
            }),
            print: Some("[[43.7384, 7.4246]]".into()),
        }),
        ..drive_outcome(content, at, original_key)
    };
    let track = outcome(&MONACO, at);
    (o.fixes_accepted, o.visits, o.stretches) =
        (track.fixes_accepted, track.visits, track.stretches);
    o
}

async fn erased_uploads_lose_pixels_and_places_and_their_epoch_still_verifies(
    store: Arc<dyn Store>,
) {
    use covermap_domain::{ReportDecision, ReportReason};
    use covermap_store::NewFrameReport;
    let policy = covermap_scoring::RewardPolicy::shipped();
    let whole = BoundingBox::WORLD;
    // alice's drive and bob's, whose first frame has the same bytes as hers, counted and
    // closed in epoch 5; a later drive of alice's no epoch counted yet.
    let a_drive = full_outcome("drive a", t0(), "original/shared");
    let a = completed_drive(
        store.as_ref(),
        ("cam-1", "alice"),
        "drive a",
        t0(),
        &a_drive,
    )
    .await;
    let b_drive = drive_outcome("drive b", t0() + secs(1), "original/shared");
    let b = completed_drive(
        store.as_ref(),
        ("cam-2", "bob"),
        "drive b",
        t0() + secs(1),
        &b_drive,
    )
    .await;
    let e5 = period(5, t0() - secs(3600));
    let since = e5.start - secs(30 * 86_400);
    let counted = closed_epoch(store.clone(), policy.clone(), e5, since, t0() + secs(4000)).await;
    assert_eq!(captured(&counted), vec![(a, 0), (b, 0)]);
    let later = t0() + secs(7200);
    let c_drive = full_outcome("drive c", later, "original/c");
    let c = completed_drive(
        store.as_ref(),
        ("cam-1", "alice"),
        "drive c",
        later,
        &c_drive,
    )
    .await;
    let report = store
        .report_frame(
            &NewFrameReport {
                upload_id: a,
                frame: 0,
                reason: ReportReason::Face,
                note: None,
                reporter: "anonymous".into(),
            },
            later,
        )
        .await
        .unwrap();
    let alice = UploadFilter {
        contributor: Some("alice".into()),
        ..UploadFilter::default()
    };
    assert_eq!(
        store.uploads_to_erase(&alice, 0, 10).await.unwrap(),
        vec![a, c]
    );

    // Erasing the counted drive: its blobs are named for deleting, but the frame original
    // bob's drive shares; the rows its epoch read stay, stripped, and the epoch reads the same.
    let err = store.erase_upload(9999, "alice", later).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let at = later + secs(60);
    let erased = store.erase_upload(a, "alice", at).await.unwrap();
    assert_eq!(
        (
            erased.upload_id,
            erased.contributor.as_deref(),
            erased.requested_by.as_str(),
            erased.requested_at,
            erased.counted_in_epoch,
            erased.completed_at,
        ),
        (a, Some("alice"), "alice", at, Some(5), None)
    );
    let mut pending = erased.pending_blobs.clone();
    pending.sort();
    let mut expected = vec![
        BlobRef::of(b"drive a").key,
        "original/drive a/1".to_owned(),
        "original/drive a/2".to_owned(),
        "original/drive a/3".to_owned(),
        "published/drive a/0".to_owned(),
        "review/drive a/2".to_owned(),
        "review/drive a/3".to_owned(),
    ];
    expected.sort();
    assert_eq!(pending, expected, "all but the original bob's drive shares");
    let e = erased.erased;
    assert_eq!(
        // Trust: its extent, its print and its one radio cell (its sample stays, counted).
        (e.blobs, e.frames, e.refused_frames, e.cells, e.trust),
        (7, 2, 2, 3, 3),
        "{e:?}"
    );
    assert_eq!(
        (
            e.stretches,
            e.radio,
            e.rejections,
            e.reports_closed,
            e.jobs_stopped
        ),
        (0, 0, 1, 1, 0),
        "kept for the epoch: {e:?}"
    );
    // Epoch 5 still verifies: the same inputs (in any order), the same root.
    let now_read = store.epoch_inputs(&e5, since).await.unwrap();
    let hashes = covermap_scoring::epoch::input_hashes;
    assert_eq!(hashes(&now_read), hashes(&counted));
    assert_eq!(
        Some(
            covermap_scoring::epoch::close(&now_read, &policy)
                .manifest
                .root
        ),
        store.closed_epoch(5).await.unwrap().unwrap().record.root
    );
    // Nothing of it is shown: not its frame, not its cells, not its refused frames to auditors.
    assert_eq!(
        store
            .frame_image(a, 0, FrameImage::Published)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.frame_image(a, 0, FrameImage::Reported).await.unwrap(),
        None
    );
    assert_eq!(
        store.frame_image(a, 2, FrameImage::Review).await.unwrap(),
        None
    );
    let mapped: Vec<i64> = store
        .imagery(whole, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| c.frames)
        .collect();
    assert_eq!(mapped, vec![2], "bob's frame, and alice's later drive's");
    let queue = store
        .audit_frames(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(queue.iter().all(|f| f.upload_id != a), "{queue:?}");
    let samples = store.radio_samples(whole, 100).await.unwrap();
    assert_eq!(
        samples.iter().map(|s| s.upload_id).collect::<Vec<_>>(),
        vec![c],
        "its radio sample stays for the epoch, off the map"
    );
    // What stays of its frame: its cell and time, at its cell's centre; no key, hash or road.
    let frames = store.frames(a).await.unwrap();
    assert_eq!(frames.len(), 1, "the pending frame, never counted, is gone");
    let f = &frames[0];
    assert_eq!(
        (
            f.frame,
            f.cell,
            f.captured_at,
            f.blob_key.as_str(),
            f.sha256.as_str()
        ),
        (
            0,
            a_drive.frames[0].cell,
            a_drive.frames[0].captured_at,
            "",
            ""
        )
    );
    assert_eq!((f.vision.clone(), f.segment), (None, None));
    assert_eq!(f.pos, f.cell.center());
    assert_eq!(
        store.rejections(a, 10).await.unwrap()[0].detail,
        None,
        "where the fix was goes; why it was left out stays"
    );
    assert!(store.track_prints(&[a]).await.unwrap().is_empty());
    let rec = store.upload(a).await.unwrap().unwrap();
    assert_eq!(rec.erased_at, Some(at));
    assert_ne!(rec.sha256, BlobRef::of(b"drive a").sha256);
    assert!(rec.evidence.is_some(), "its epoch reads it");
    let listed = store
        .recent_uploads(10, &UploadFilter::default())
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![c, b],
        "erased uploads are not listed"
    );
    let closed = store.frame_reports(false, 10).await.unwrap();
    let closed = closed.iter().find(|r| r.id == report.id).unwrap();
    assert_eq!(
        (closed.decision, closed.decided_by.as_deref()),
        (Some(ReportDecision::Remove), Some("erasure"))
    );
    // Asked again: the same record, nothing more.
    assert_eq!(
        store
            .erase_upload(a, "someone else", at + secs(5))
            .await
            .unwrap(),
        erased
    );
    assert_eq!(store.erasure(a).await.unwrap(), Some(erased.clone()));
    // Blobs no row names any more may go; the shared original may not.
    assert_eq!(
        store
            .unreferenced_blobs(&["original/shared".into(), "published/drive a/0".into()])
            .await
            .unwrap(),
        vec!["published/drive a/0".to_owned()]
    );
    assert_eq!(
        store.erasures(&alice, true, 10).await.unwrap(),
        vec![erased.clone()]
    );
    store.erasure_done(a, at + secs(10)).await.unwrap();
    let done = store.erasure(a).await.unwrap().unwrap();
    assert_eq!(
        (done.pending_blobs.len(), done.completed_at),
        (0, Some(at + secs(10)))
    );
    assert!(store.erasures(&alice, true, 10).await.unwrap().is_empty());

    // Erasing the drive no epoch counted: every row of it goes, and no epoch will count it.
    let before_erasure = store.feed_position().await.unwrap();
    // Every cell the drive holds: its road, its frames and its radio.
    let mut c_cells: std::collections::BTreeSet<Cell> = store
        .matched_stretches(c)
        .await
        .unwrap()
        .iter()
        .map(|s| s.cell)
        .collect();
    c_cells.extend(store.frames(c).await.unwrap().iter().map(|f| f.cell));
    c_cells.extend(
        store
            .radio_observations(c, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.cell),
    );
    let gone = store.erase_upload(c, "key:7", at + secs(20)).await.unwrap();
    let e = gone.erased;
    assert_eq!(gone.counted_in_epoch, None);
    assert_eq!(
        (
            e.frames,
            e.refused_frames,
            e.cells,
            e.stretches,
            e.radio,
            e.rejections,
            e.trust
        ),
        (2, 2, 3, 3, 1, 1, 3),
        "{e:?}"
    );
    assert!(store.frames(c).await.unwrap().is_empty());
    assert!(store.rejections(c, 10).await.unwrap().is_empty());
    assert!(store.radio_observations(c, 10).await.unwrap().is_empty());
    assert!(store.matched_stretches(c).await.unwrap().is_empty());
    assert!(store.coverage(whole, 100).await.unwrap().is_empty());
    assert!(store.radio_samples(whole, 100).await.unwrap().is_empty());
    let mapped: Vec<i64> = store
        .imagery(whole, 100)
        .await
        .unwrap()
        .iter()
        .map(|c| c.frames)
        .collect();
    assert_eq!(mapped, vec![1], "bob's frame only");
    assert_eq!(store.upload(c).await.unwrap().unwrap().evidence, None);
    assert!(
        store
            .uploads_to_erase(&alice, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let e6 = period(6, e5.end);
    let covermap_store::EpochClaim::Held { tagged, .. } = store
        .claim_epoch(&e6, "closer", later + secs(7200), LEASE)
        .await
        .unwrap()
    else {
        panic!("epoch 6 is free");
    };
    assert_eq!(tagged, 0, "an erased upload is never counted");
    assert!(
        store
            .epoch_inputs(&e6, since)
            .await
            .unwrap()
            .captures
            .is_empty()
    );
    // The same bytes sent again are a new upload, nobody's duplicate or copy.
    let again = store
        .record_upload(NewUpload {
            device: "cam-1".parse().unwrap(),
            kind: UploadKind::Drive,
            blob: BlobRef::of(b"drive c"),
            received_at: at + secs(30),
            contributor: Some("alice".into()),
            rewardable: true,
        })
        .await
        .unwrap();
    assert_eq!((again.duplicate, again.copy_of), (false, None));
    assert_ne!(again.upload_id, c);
    // The map caches hear of erasures: every cell the erased drive held.
    let heard: std::collections::BTreeSet<Cell> = store
        .changes_since(&before_erasure, 100)
        .await
        .unwrap()
        .cells
        .into_iter()
        .collect();
    assert!(
        !c_cells.is_empty() && c_cells.is_subset(&heard),
        "{c_cells:?} in {heard:?}"
    );
    let after_erasure = store.feed_position().await.unwrap();
    assert!(
        store
            .changes_since(&after_erasure, 100)
            .await
            .unwrap()
            .cells
            .is_empty(),
        "nothing after it"
    );
}

async fn nothing_of_an_upload_erased_while_queued_or_processed_comes_back(store: Arc<dyn Store>) {
    let policy = QueuePolicy::default();
    // One drive a worker holds, one still queued.
    let held = store
        .record_upload(NewUpload {
            kind: UploadKind::Drive,
            ..new_upload("cam-1", "held", t0())
        })
        .await
        .unwrap();
    let queued = store
        .record_upload(NewUpload {
            kind: UploadKind::Drive,
            ..new_upload("cam-1", "queued", t0() + secs(1))
        })
        .await
        .unwrap();
    let lease = store
        .lease_job("w", t0() + secs(2), LEASE, policy)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.upload_id, held.upload_id);
    let e = store
        .erase_upload(held.upload_id, "operator", t0() + secs(3))
        .await
        .unwrap();
    assert_eq!(e.erased.jobs_stopped, 0, "a worker holds it");
    let e = store
        .erase_upload(queued.upload_id, "operator", t0() + secs(3))
        .await
        .unwrap();
    assert_eq!(e.erased.jobs_stopped, 1);
    // The worker finishes: its results are refused, and the job ends.
    let err = store
        .complete_job(
            &lease,
            &full_outcome("held", t0(), "original/held"),
            t0() + secs(4),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Erased { upload_id } if upload_id == held.upload_id),
        "{err}"
    );
    assert!(store.frames(held.upload_id).await.unwrap().is_empty());
    assert!(
        store
            .coverage(BoundingBox::WORLD, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let err = store
        .renew_lease(&lease, t0() + secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    // A worker failing it likewise; and nothing is left to lease, even once leases run out.
    let err = store
        .fail_job(
            &lease,
            &JobFailure::Transient("blob store away".into()),
            t0() + secs(5),
            policy,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    assert_eq!(
        store
            .lease_job("w", t0() + secs(3600), LEASE, policy)
            .await
            .unwrap(),
        None
    );
    for id in [held.upload_id, queued.upload_id] {
        let rec = store.upload(id).await.unwrap().unwrap();
        assert_eq!(
            (rec.status, rec.reason.as_deref()),
            (UploadStatus::Rejected, Some("erased"))
        );
    }
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.jobs_queued, stats.jobs_leased), (0, 0));
}

/// A processed track of `device` (contributor `who`) over `points`, with a trust record.
async fn judged_track(
    store: &dyn Store,
    device: &str,
    who: &str,
    content: &str,
    at: DateTime<Utc>,
    points: &[(f64, f64)],
    evidence: &covermap_trust::Evidence,
) -> i64 {
    let mut up = new_upload(device, content, at);
    up.contributor = Some(who.into());
    up.rewardable = true;
    let id = store.record_upload(up).await.unwrap().upload_id;
    let lease = store
        .lease_job("w", at, LEASE, QueuePolicy::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.upload_id, id);
    let findings = covermap_trust::judge(
        evidence,
        &covermap_scoring::RewardPolicy::shipped().rules.verification,
    );
    let pos = |(lat, lon): (f64, f64)| LatLon { lat, lon };
    let mut o = outcome(points, at);
    o.radio = points
        .iter()
        .enumerate()
        .map(|(i, &(lat, lon))| RadioRow {
            observed_at: at + secs(i as i64),
            emitter_kind: EmitterKind::Cell,
            radio: Some(RadioType::Lte),
            emitter: "lte:208:1:100:25601".into(),
            signal_dbm: Some(-80 - i as i32),
            accuracy_m: Some(10.0),
            pos: pos((lat, lon)),
            cell: cell_at(lat, lon),
        })
        .collect();
    o.trust = Some(covermap_store::TrustRecord {
        evidence: serde_json::to_string(evidence).unwrap(),
        verdict: covermap_trust::Verdict::of(&findings).as_str().into(),
        findings: serde_json::to_string(&findings).unwrap(),
        extent: Some(covermap_store::UploadExtent {
            radio: false,
            first_at: at,
            last_at: at + secs(points.len() as i64),
            first: pos(points[0]),
            last: pos(points[points.len() - 1]),
            centre: pos(points[0]),
            radius_m: 800.0,
        }),
        print: Some(format!(
            "{{\"points\":[[{}.0,{},{}]]}}",
            at.timestamp(),
            points[0].0,
            points[0].1
        )),
    });
    store.complete_job(&lease, &o, at + secs(1)).await.unwrap();
    id
}

async fn trust_keeps_flagged_uploads_off_the_maps_and_epochs_make_verdicts_final(
    store: Arc<dyn Store>,
) {
    use covermap_scoring::{RewardPolicy, epoch};
    use covermap_store::{EpochClaim, NewRefusal};
    let honest = covermap_trust::Evidence::default();
    let copied = covermap_trust::Evidence {
        copy_of: Some(1),
        ..covermap_trust::Evidence::default()
    };
    let a = judged_track(
        store.as_ref(),
        "cam-a",
        "alice",
        "a",
        t0(),
        &MONACO,
        &honest,
    )
    .await;
    let b = judged_track(
        store.as_ref(),
        "cam-a",
        "alice",
        "b",
        t0() + secs(60),
        &MONACO[..2],
        &copied,
    )
    .await;
    let ra = store.upload(a).await.unwrap().unwrap();
    let rb = store.upload(b).await.unwrap().unwrap();
    assert_eq!(ra.trust.verdict, "trusted");
    assert_eq!((ra.cells, ra.cells_seen), (Some(3), Some(3)));
    assert_eq!(rb.trust.verdict, "flagged");
    assert_eq!(rb.trust.findings[0].code, "copied_upload");
    assert_eq!((rb.cells, rb.cells_seen), (Some(0), Some(2)));
    assert!(rb.evidence.unwrap().contains("copy_of"));
    // The maps count alice's trusted upload only.
    let cov = store.coverage(BoundingBox::WORLD, 100).await.unwrap();
    assert_eq!(cov.len(), 3);
    assert!(cov.iter().all(|c| c.uploads == 1));
    let radio = store.radio_coverage(BoundingBox::WORLD, 100).await.unwrap();
    assert!(radio.iter().all(|c| c.observations == 1));
    let flagged = store
        .recent_uploads(
            10,
            &UploadFilter {
                trust: Some("flagged".into()),
                ..UploadFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(flagged.iter().map(|u| u.id).collect::<Vec<_>>(), vec![b]);
    // What later uploads are compared with.
    let n = store
        .neighbours(
            b,
            &"cam-a".parse().unwrap(),
            Some("alice"),
            t0() - secs(3600),
            t0() + secs(3600),
            10,
        )
        .await
        .unwrap();
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].upload_id, n[0].extent.radius_m), (a, 800.0));
    let cells: Vec<Cell> = MONACO.iter().map(|&(la, lo)| cell_at(la, lo)).collect();
    assert_eq!(
        store.shared_cells(b, false, &cells, 100, 5).await.unwrap(),
        vec![(a, 3)]
    );
    assert_eq!(
        store.shared_cells(b, true, &cells, 100, 5).await.unwrap(),
        vec![(a, 3)]
    );
    // Later uploads are found too: a copy processed before its original is compared with it.
    assert_eq!(
        store.shared_cells(a, false, &cells, 100, 5).await.unwrap(),
        vec![(b, 2)]
    );
    // Only each cell's newest uploads are read: one a cell, and `b` is the newer where it was.
    assert_eq!(
        store
            .shared_cells(i64::MAX, false, &cells, 1, 5)
            .await
            .unwrap(),
        vec![(b, 2), (a, 1)]
    );
    assert_eq!(
        store
            .shared_cells(i64::MAX, false, &cells, 2, 5)
            .await
            .unwrap(),
        vec![(a, 3), (b, 2)]
    );
    // A verdict not yet final can be amended; the maps follow.
    let copy_of_a = r#"{"copy_of":1}"#;
    let finding = r#"[{"code":"duplicate_batch","detail":"x"}]"#;
    assert!(
        store
            .amend_trust(a, copy_of_a, "flagged", finding, t0() + secs(200))
            .await
            .unwrap()
    );
    let ra = store.upload(a).await.unwrap().unwrap();
    assert_eq!((ra.trust.verdict.as_str(), ra.cells), ("flagged", Some(0)));
    // Flagged, its radio cells leave the look for twins: a flood of flagged copies cannot push
    // an original out of a cell's newest.
    assert!(
        store
            .shared_cells(b, true, &cells, 100, 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .coverage(BoundingBox::WORLD, 100)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .amend_trust(a, "{}", "trusted", "[]", t0() + secs(201))
        .await
        .unwrap();
    assert_eq!(store.upload(a).await.unwrap().unwrap().cells, Some(3));
    let prints = store.track_prints(&[a, b, 999]).await.unwrap();
    assert_eq!(prints.iter().map(|p| p.0).collect::<Vec<_>>(), vec![a, b]);
    store
        .record_refusal(&NewRefusal {
            device: "cam-a".parse().unwrap(),
            contributor: Some("alice".into()),
            kind: UploadKind::Gpx,
            sha256: "00".repeat(32),
            reason: "implausible_speed".into(),
            detail: None,
            received_at: t0() + secs(120),
            span: Some((
                covermap_domain::Fix {
                    at: t0() + secs(100),
                    pos: LatLon {
                        lat: 43.75,
                        lon: 7.43,
                    },
                    accuracy_m: None,
                },
                covermap_domain::Fix {
                    at: t0() + secs(110),
                    pos: LatLon {
                        lat: 43.76,
                        lon: 7.43,
                    },
                    accuracy_m: None,
                },
            )),
        })
        .await
        .unwrap();
    // A refused track still says where the device was: a neighbour with a negative id.
    let n = store
        .neighbours(
            b,
            &"cam-a".parse().unwrap(),
            Some("alice"),
            t0() - secs(3600),
            t0() + secs(3600),
            10,
        )
        .await
        .unwrap();
    let refused = n.iter().find(|x| x.upload_id < 0).unwrap();
    assert_eq!(refused.extent.last.lat, 43.76);
    assert_eq!(refused.extent.first_at, t0() + secs(100));
    // The epoch reads every upload's evidence and the refusal, and makes the verdicts final.
    let policy = RewardPolicy::shipped();
    let e = period(5, t0() - secs(3600));
    let EpochClaim::Held { token, .. } = store
        .claim_epoch(&e, "c", t0() + secs(4000), LEASE)
        .await
        .unwrap()
    else {
        panic!("the epoch is free");
    };
    let inputs = store
        .epoch_inputs(&e, e.start - secs(86_400))
        .await
        .unwrap();
    let mut ids: Vec<i64> = inputs.uploads.iter().map(|u| u.upload_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![a, b]);
    assert_eq!(inputs.refusals.len(), 1);
    assert_eq!(inputs.refusals[0].reason, "implausible_speed");
    let outcome = epoch::close(&inputs, &policy);
    // One copy and one refusal of three sent: alice is a repeat offender.
    assert_eq!(outcome.penalties[0].reason, "repeat_offender");
    assert_eq!(outcome.emitters.len(), 1);
    let before = t0() + secs(4000);
    store
        .finish_epoch(&token, &outcome, &policy.source, before + secs(1))
        .await
        .unwrap();
    let rb = store.upload(b).await.unwrap().unwrap();
    assert_eq!(
        (rb.trust.verdict.as_str(), rb.trust.epoch),
        ("flagged", Some(5))
    );
    assert_eq!(store.upload(a).await.unwrap().unwrap().trust.epoch, Some(5));
    assert!(
        !store
            .amend_trust(a, "{}", "flagged", "[]", t0() + secs(5000))
            .await
            .unwrap(),
        "a final verdict stays"
    );
    assert_eq!(
        store
            .epoch_inputs(&e, e.start - secs(86_400))
            .await
            .unwrap(),
        inputs,
        "inputs read the same after the close"
    );
    // The next epoch knows where the emitter stands, and who heard it.
    let c = judged_track(
        store.as_ref(),
        "cam-c",
        "carol",
        "c",
        t0() + secs(86_400),
        &MONACO,
        &honest,
    )
    .await;
    let e6 = period(6, t0() - secs(3600) + secs(86_400));
    let EpochClaim::Held { .. } = store
        .claim_epoch(&e6, "c", t0() + secs(90_000), LEASE)
        .await
        .unwrap()
    else {
        panic!("epoch 6 is next");
    };
    let next = store
        .epoch_inputs(&e6, e6.start - secs(86_400))
        .await
        .unwrap();
    assert_eq!(next.uploads.len(), 1);
    assert_eq!(next.uploads[0].upload_id, c);
    assert_eq!(next.emitters.len(), 1);
    assert_eq!(next.emitters[0].emitter, "lte:208:1:100:25601");
    assert_eq!(next.emitters[0].observers, vec!["alice".to_owned()]);
}

/// Migrations 0001 to 0008 of `backend`, copied into a folder of their own: the schema as the
/// release before identity left it.
fn migrations_before_identity(backend: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(backend);
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0009" {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    dir
}

/// Rows as the release before identity could leave them: `cam-clone` registered with
/// `cam-a`'s key (the clone attack), uploads with jobs and rejections, and an upload deleted since
/// (its id must not be handed out again). `{t}` is a time in the backend's form.
fn rows_before_identity(t: impl Fn(i64) -> String) -> String {
    let (aa, bb) = ("aa".repeat(32), "bb".repeat(32));
    let sha = |s: &str| BlobRef::of(s.as_bytes()).sha256;
    format!(
        "INSERT INTO api_keys (key_hash, prefix, role, contributor, created_at) \
             VALUES ('h1', 'cm_1', 'device', 'alice', {t0}), ('h2', 'cm_2', 'device', 'bob', {t0});
         INSERT INTO devices (device, public_key, contributor, registered_by, registered_at) \
             VALUES ('cam-a', '{aa}', 'alice', 1, {t1}), ('cam-clone', '{aa}', 'bob', 2, {t3}), \
                    ('cam-b', '{bb}', 'bob', 2, {t2});
         INSERT INTO uploads (device, kind, sha256, size_bytes, blob_key, received_at) \
             VALUES ('cam-a', 'gpx', '{s1}', 5, 'k1', {t1}), ('cam-a', 'gpx', '{s2}', 5, 'k2', {t1}), \
                    ('cam-b', 'gpx', '{s3}', 5, 'k3', {t1});
         DELETE FROM uploads WHERE id = 3;
         INSERT INTO jobs (kind, upload_id, available_at, created_at) \
             VALUES ('process_upload', 1, {t1}, {t1}), ('process_upload', 2, {t1}, {t1});
         INSERT INTO rejected_observations (upload_id, seq, stage, item, reason) \
             VALUES (2, 0, 'fix', 7, 'implausible_jump');",
        t0 = t(0),
        t1 = t(1),
        t2 = t(2),
        t3 = t(3),
        s1 = sha("old 1"),
        s2 = sha("old 2"),
        s3 = sha("old 3"),
    )
}

/// What an upgraded database must hold: every upload, job and rejection; the clone revoked and its
/// key still the first device's; uploads unique per device, with ids after the deleted one.
async fn check_upgraded(store: &dyn Store) {
    let first = store.upload(1).await.unwrap().unwrap();
    assert_eq!((first.device.as_str(), first.copy_of), ("cam-a", None));
    assert_eq!(store.upload(2).await.unwrap().unwrap().size_bytes, 5);
    assert!(store.upload(3).await.unwrap().is_none());
    assert_eq!(store.rejections(2, 10).await.unwrap()[0].item, 7);
    let clone = store.device(&"cam-clone".parse().unwrap()).await.unwrap();
    assert!(clone.unwrap().revoked_at.is_some());
    for kept in ["cam-a", "cam-b"] {
        let d = store.device(&kept.parse().unwrap()).await.unwrap().unwrap();
        assert_eq!((d.revoked_at, d.rotated_at), (None, None), "{kept}");
    }
    assert_eq!(
        store
            .register_device(&device_record("cam-new", "aa", Some("bob"), 2))
            .await
            .unwrap(),
        Registration::KeyTaken
    );
    let again = store
        .record_upload(new_upload("cam-a", "old 1", t0()))
        .await
        .unwrap();
    assert_eq!((again.duplicate, again.upload_id), (true, 1));
    let copy = store
        .record_upload(new_upload("cam-b", "old 1", t0()))
        .await
        .unwrap();
    assert_eq!((copy.duplicate, copy.copy_of), (false, Some(1)));
    // Never the deleted upload's id (PostgreSQL's sequence may have skipped a few more).
    assert!(copy.upload_id > 3, "{copy:?}");
    let lease = store
        .lease_job("w", t0() + secs(3600), LEASE, QueuePolicy::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.upload_id, 1);
}

#[tokio::test]
async fn sqlite_upgrade_keeps_uploads_and_revokes_cloned_devices() {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = SqlitePool::connect_with(options.clone()).await.unwrap();
    let old = migrations_before_identity("sqlite");
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(&rows_before_identity(|s| {
        (t0() + secs(s)).timestamp_micros().to_string()
    }))
    .execute(&pool)
    .await
    .unwrap();
    let store = SqliteStore::open_file(&path).await.unwrap();
    store.migrate().await.unwrap();
    check_upgraded(&store).await;
    // The rebuilt table has every index it had, and one more (0009), the trust stage's two
    // (0010) and erasure's (0014); nothing dangles.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'uploads' \
         AND name NOT LIKE 'sqlite_autoindex%' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "uploads_blob",
            "uploads_contributor",
            "uploads_device",
            "uploads_erased",
            "uploads_flagged",
            "uploads_processed",
            "uploads_retention",
            "uploads_reward_epoch",
            "uploads_sha256",
            "uploads_trust_changed",
            "uploads_untagged"
        ]
    );
    let dangling: Vec<(String,)> = sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(dangling.is_empty(), "{dangling:?}");
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
}

#[tokio::test]
async fn postgis_upgrade_keeps_uploads_and_revokes_cloned_devices() {
    let admin_url = admin_url();
    let name = format!("covermap_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = with_database(&admin_url, &name);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let old = migrations_before_identity("postgres");
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(&rows_before_identity(|s| {
        format!("'{}'::timestamptz", (t0() + secs(s)).to_rfc3339())
    }))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let store = covermap_store::PgStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    check_upgraded(&store).await;
    drop(store);
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

async fn consumer_key(
    store: &dyn Store,
    hash: &str,
    role: Role,
    quota: Option<u64>,
) -> Result<i64, StoreError> {
    store
        .create_api_key(
            &NewApiKey {
                key_hash: hash.into(),
                prefix: "cm_c000000".into(),
                role,
                contributor: None,
                quota_per_day: quota,
            },
            t0(),
        )
        .await
        .map(|k| {
            assert_eq!((k.role, k.quota_per_day), (role, quota));
            k.id
        })
}

async fn consumers_requests_usage_and_lookers(store: Arc<dyn Store>) {
    use covermap_store::{ConsumerAreaRequests, ConsumerRequests, Look};
    let a = consumer_key(store.as_ref(), "c1", Role::Consumer, Some(100))
        .await
        .unwrap();
    let b = consumer_key(store.as_ref(), "c2", Role::Consumer, Some(5))
        .await
        .unwrap();
    assert_eq!(
        store.api_key("c1").await.unwrap().unwrap().quota_per_day,
        Some(100)
    );
    // A consumer key has a quota, and no other key has one.
    assert!(
        consumer_key(store.as_ref(), "c3", Role::Consumer, None)
            .await
            .is_err()
    );
    assert!(
        consumer_key(store.as_ref(), "c4", Role::Device, Some(5))
            .await
            .is_err()
    );

    let day1 = t0().date_naive();
    let day2 = day1.succ_opt().unwrap();
    let area = cell_at(43.73, 7.42)
        .0
        .parent(h3o::Resolution::Seven)
        .map(Cell)
        .unwrap();
    let other = cell_at(48.85, 2.35)
        .0
        .parent(h3o::Resolution::Seven)
        .map(Cell)
        .unwrap();
    let req = |key_id, day, requests| ConsumerRequests {
        key_id,
        day,
        requests,
    };
    let per_area = |key_id, day, area, requests| ConsumerAreaRequests {
        key_id,
        day,
        area,
        requests,
    };
    let totals = store
        .record_consumer_requests(
            &[req(a, day1, 5), req(b, day1, 2)],
            &[per_area(a, day1, area, 4)],
        )
        .await
        .unwrap();
    assert_eq!(totals.len(), 2);
    // Another process's flush adds to the same day, and hears the total.
    let totals = store
        .record_consumer_requests(
            &[req(a, day1, 3), req(a, day2, 1)],
            &[per_area(a, day1, area, 1), per_area(a, day1, other, 2)],
        )
        .await
        .unwrap();
    let mut totals: Vec<_> = totals.iter().map(|t| (t.day, t.requests)).collect();
    totals.sort();
    assert_eq!(totals, [(day1, 8), (day2, 1)]);
    assert_eq!(store.consumer_requests(a, day1).await.unwrap(), 8);
    assert_eq!(store.consumer_requests(a, day2).await.unwrap(), 1);
    assert_eq!(store.consumer_requests(b, day2).await.unwrap(), 0);

    let usage = store.consumer_usage(Some(a), day1).await.unwrap();
    assert_eq!(usage.len(), 2);
    assert_eq!((usage[0].day, usage[0].requests), (day1, 8));
    let mut areas: Vec<_> = usage[0]
        .areas
        .iter()
        .map(|x| (x.area, x.requests))
        .collect();
    areas.sort();
    let mut expected = vec![(area, 5), (other, 2)];
    expected.sort();
    assert_eq!(areas, expected);
    assert!(usage[1].areas.is_empty());
    let all = store.consumer_usage(None, day1).await.unwrap();
    assert_eq!(
        all.iter().map(|u| (u.key_id, u.day)).collect::<Vec<_>>(),
        [(a, day1), (a, day2), (b, day1)]
    );
    assert_eq!(store.consumer_usage(None, day2).await.unwrap().len(), 1);

    // Lookers: each once per epoch and area; anonymous ones up to the cap.
    let look = |looker: &str, anonymous| Look {
        epoch: 5,
        area,
        looker: looker.into(),
        anonymous,
    };
    let refreshes: Vec<_> = (0..100).map(|_| look("key:1", false)).collect();
    assert_eq!(store.record_looks(&refreshes, 3).await.unwrap(), 1);
    assert_eq!(store.usage(5).await.unwrap(), [(area, 1)]);
    assert_eq!(
        store
            .record_looks(&[look("key:1", false), look("key:2", false)], 3)
            .await
            .unwrap(),
        1
    );
    let crowd: Vec<_> = (0..10).map(|i| look(&format!("addr:{i}"), true)).collect();
    assert_eq!(store.record_looks(&crowd, 3).await.unwrap(), 10);
    assert_eq!(store.usage(5).await.unwrap(), [(area, 2 + 3)]);
    assert_eq!(store.record_looks(&crowd, 3).await.unwrap(), 0);
    assert!(store.usage(4).await.unwrap().is_empty());
    // Flushes of several processes at once count every new key exactly once.
    let tasks: Vec<_> = (0..4)
        .map(|p| {
            let store = store.clone();
            tokio::spawn(async move {
                let looks: Vec<_> = (0..10)
                    .map(|i| Look {
                        epoch: 6,
                        area,
                        looker: format!("key:{}", 100 + (p * 5 + i) % 20),
                        anonymous: false,
                    })
                    .collect();
                store.record_looks(&looks, 3).await.unwrap()
            })
        })
        .collect();
    let mut new = 0;
    for t in tasks {
        new += t.await.unwrap();
    }
    assert_eq!(new, 20);
    assert_eq!(store.usage(6).await.unwrap(), [(area, 20)]);
}

/// The partition of `table` that holds upload `id`'s rows, each distinct one.
async fn partitions_holding(pool: &sqlx::PgPool, table: &str, id: i64) -> Vec<String> {
    sqlx::query_scalar(&format!(
        "SELECT DISTINCT tableoid::regclass::text FROM {table} WHERE upload_id = $1"
    ))
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// PostGIS keeps the high-volume tables in month partitions: made ahead when the database opens,
/// an upload's rows in the month it was received (a month made late takes its rows out of the
/// default partition without the maps seeing a change), a second write still refused by the key,
/// and old months detached only once nothing in them is still to be counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgis_keeps_months_apart_and_detaches_only_what_was_counted() {
    const TABLES: [&str; 6] = [
        "cell_observations",
        "radio_observations",
        "frames",
        "frame_rejections",
        "matched_stretches",
        "rejected_observations",
    ];
    let backend = Backend::postgis().await;
    let store = backend.store.clone();
    let url = with_database(&admin_url(), backend.pg_db.as_deref().unwrap());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();

    // Opening made this month and the next three of every table, and a default each.
    let listed = store.partitions().await.unwrap();
    let this_month = Utc::now().format("%Y%m").to_string();
    for table in TABLES {
        let names: Vec<&str> = listed
            .iter()
            .filter(|p| p.table == table)
            .map(|p| p.partition.as_str())
            .collect();
        assert_eq!(names.len(), 5, "{table}: {names:?}");
        assert_eq!(names[0], format!("{table}_p{this_month}"));
        assert_eq!(names[4], format!("{table}_default"));
    }
    // Ready to distribute by cell: each unique key holds `cell` (but rejections', which go with
    // their upload) and the partition key; no reference but rejections' to their upload.
    let keys: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT conrelid::regclass::text, contype::text, pg_get_constraintdef(oid) \
         FROM pg_constraint WHERE contype IN ('p', 'u', 'f') \
           AND conrelid::regclass::text = ANY ($1) ORDER BY 1, 2",
    )
    .bind(TABLES.map(String::from).to_vec())
    .fetch_all(&pool)
    .await
    .unwrap();
    for (table, kind, def) in &keys {
        match (table.as_str(), kind.as_str()) {
            ("rejected_observations", "f") => {
                assert_eq!(def, "FOREIGN KEY (upload_id) REFERENCES uploads(id)");
            }
            ("rejected_observations", "p") => {
                assert_eq!(def, "PRIMARY KEY (upload_id, seq, received_at)");
            }
            (_, "p" | "u") => assert!(
                def.contains("cell") && def.contains("received_at"),
                "{table}: {def}"
            ),
            _ => panic!("{table} references another table: {def}"),
        }
    }
    let (decisions_refs,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_constraint WHERE contype = 'f' \
           AND conrelid = 'frame_decisions'::regclass AND confrelid <> 'api_keys'::regclass",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(decisions_refs, 0);
    assert_eq!(keys.len(), 7);
    let first = listed.iter().find(|p| p.table == "frames").unwrap();
    assert_eq!(first.from.unwrap().format("%Y%m").to_string(), this_month);
    assert!(first.to.unwrap() - first.from.unwrap() >= chrono::Duration::days(28));

    // A September drive and a November one with frames, before their months exist.
    let september = Utc.with_ymd_and_hms(2026, 9, 15, 8, 0, 0).unwrap();
    let monaco = LatLon::new(43.7384, 7.4246).unwrap();
    let with_radio = JobOutcome {
        radio: vec![RadioRow {
            observed_at: september,
            emitter_kind: EmitterKind::Wifi,
            radio: None,
            emitter: "wifi:1cb72caabb01".into(),
            signal_dbm: Some(-70),
            accuracy_m: Some(8.0),
            pos: monaco,
            cell: cell_at(43.7384, 7.4246),
        }],
        rejections: vec![Rejection {
            stage: RejectionStage::Fix,
            item: 7,
            reason: "implausible_jump".into(),
            detail: None,
        }],
        ..outcome(&MONACO, september)
    };
    let old = completed_drive(
        store.as_ref(),
        ("cam-1", "alice"),
        "september drive",
        september,
        &with_radio,
    )
    .await;
    let (framed, _) = processed_drive(store.as_ref(), "november drive", t0(), "original/n").await;
    assert_eq!(
        partitions_holding(&pool, "cell_observations", old).await,
        ["cell_observations_default"]
    );
    let position = store.feed_position().await.unwrap();
    assert_eq!(store.ensure_partitions(september, 0).await.unwrap(), 6);
    assert_eq!(store.ensure_partitions(t0(), 0).await.unwrap(), 6);
    assert_eq!(store.ensure_partitions(t0(), 0).await.unwrap(), 0);
    for table in [
        "cell_observations",
        "radio_observations",
        "matched_stretches",
        "rejected_observations",
    ] {
        assert_eq!(
            partitions_holding(&pool, table, old).await,
            [format!("{table}_p202609")]
        );
    }
    for table in ["frames", "frame_rejections"] {
        assert_eq!(
            partitions_holding(&pool, table, framed).await,
            [format!("{table}_p202611")]
        );
    }
    let moved = store.changes_since(&position, 100).await.unwrap();
    assert!(
        moved.cells.is_empty(),
        "moving rows is no map change: {moved:?}"
    );
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM cell_observations_default")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);

    // The key still refuses a second write of a job's rows.
    let twice = sqlx::query(
        "INSERT INTO cell_observations SELECT * FROM cell_observations WHERE upload_id = $1",
    )
    .bind(old)
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(twice.to_string().contains("duplicate key"), "{twice}");

    // An August drive with a published frame, and an August upload erased before any epoch
    // counted it (it never will be: it must not hold its month back).
    let august = Utc.with_ymd_and_hms(2026, 8, 20, 8, 0, 0).unwrap();
    store.ensure_partitions(august, 0).await.unwrap();
    let published = JobOutcome {
        frames: vec![FrameRow {
            frame: 0,
            sequence: 0,
            sha256: "ab".repeat(32),
            blob_key: "original/august/0".into(),
            captured_at: august,
            heading_deg: 90.0,
            width: 1920,
            height: 1080,
            pos: monaco,
            cell: cell_at(43.7384, 7.4246),
            segment: None,
            vision: Some(FrameVision {
                published_key: "published/august/0".into(),
                phash: "f9e0cf8c985964d0".into(),
                faces: 0,
                plates: 0,
                quality: serde_json::json!({"quality": {"class": "ok"}}),
            }),
        }],
        ..outcome(&MONACO, august)
    };
    let drive = completed_drive(
        store.as_ref(),
        ("cam-2", "bob"),
        "august drive",
        august,
        &published,
    )
    .await;
    let gone = completed_drive(
        store.as_ref(),
        ("cam-3", "carol"),
        "august, erased",
        august + secs(60),
        &outcome(&MONACO, august),
    )
    .await;
    store
        .erase_upload(gone, "carol", august + secs(120))
        .await
        .unwrap();

    // Both months are still to be counted until epochs holding them close.
    let october = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let refused = store.detach_partitions(october).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict(m) if m.contains("2026-08-20")),
        "{refused}"
    );
    let policy = covermap_scoring::RewardPolicy::shipped();
    for (n, at) in [(0, august), (1, september)] {
        let e = period(n, at - secs(3600));
        closed_epoch(
            store.clone(),
            policy.clone(),
            e,
            e.start - secs(30 * 86_400),
            at + secs(86_400),
        )
        .await;
    }
    // The August frame's original is still kept (the retention sweep finds it by its row).
    let refused = store.detach_partitions(october).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict(m) if m.contains("retention")),
        "{refused}"
    );
    store
        .mark_originals_expired(drive, september + secs(86_400))
        .await
        .unwrap();
    let detached = store.detach_partitions(october).await.unwrap();
    let mut names: Vec<&str> = detached.iter().map(|p| p.partition.as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<String> = TABLES
        .iter()
        .flat_map(|t| [format!("{t}_p202608"), format!("{t}_p202609")])
        .collect();
    expected.sort_unstable();
    assert_eq!(names, expected);
    // The August drive's published frame is outside covermap; erasing the drive still deletes it.
    let erased = store
        .erase_upload(drive, "bob", october + secs(60))
        .await
        .unwrap();
    assert!(
        erased
            .pending_blobs
            .contains(&"published/august/0".to_owned()),
        "{erased:?}"
    );
    assert!(
        store
            .partitions()
            .await
            .unwrap()
            .iter()
            .all(|p| !p.partition.ends_with("_p202609"))
    );
    // Outside covermap now, whole, as a table of its own.
    let (kept,): (i64,) = sqlx::query_as("SELECT count(*) FROM cell_observations_p202609")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, MONACO.len() as i64);
    assert!(
        partitions_holding(&pool, "cell_observations", old)
            .await
            .is_empty()
    );
    // November's drive is in no closed epoch (and has a frame pending judgement).
    let december = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    assert!(matches!(
        store.detach_partitions(december).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        partitions_holding(&pool, "frames", framed).await,
        ["frames_p202611"]
    );
    pool.close().await;
    backend.finish().await;
}
