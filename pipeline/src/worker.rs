//! Workers: lease a job, run it through the stages, write its results with its "done" mark.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use covermap_domain::BoundingBox;
use covermap_ingest::{GeotagParams, IngestRules};
use covermap_roads::RoadNetwork;
use covermap_roads::matching::{MatchParams, RoadGraph};
use covermap_store::{Blobs, JobFailure, Lease, QueuePolicy, Store, StoreError};
use covermap_vision::FramePool;
use h3o::Resolution;
use tokio::sync::{Notify, watch};

use crate::process::process;
use crate::road_tiles::{RoadTiles, Roads};
use crate::verify;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub lease: Duration,
    pub queue: QueuePolicy,
    pub rules: IngestRules,
    pub geotag: GeotagParams,
    /// Added to every frame's capture time: the camera clock's error against GPS time.
    pub camera_offset: chrono::Duration,
    /// The vision stage (quality, faces, plates, blur), one check per core; `None` where its
    /// models are not in place, and then frames are kept unpublished ("pending") until they are.
    pub vision: Option<Arc<FramePool>>,
    /// A published frame whose perceptual hash is within this many bits (of 64) of a frame
    /// published before, nearby, is refused as a `duplicate` (the policy's
    /// `imagery.duplicate_bits`).
    pub duplicate_bits: u32,
    /// How far (metres) a frame may be from the road segment it is filed under (the policy's
    /// `imagery.segment_radius_m`).
    pub segment_radius_m: f64,
    /// How long a drive's private originals are kept after it arrived.
    pub original_retention: chrono::Duration,
    pub resolution: Resolution,
    /// How often an idle worker looks for work that another process queued.
    pub idle_poll: Duration,
    pub matching: MatchParams,
    /// The most road segments a worker keeps in memory in tiles of the network (the graphs it
    /// is matching against hold theirs as well): the network is read in tiles around each job.
    pub road_tile_segments: usize,
    /// The trust stage's thresholds (the reward policy's `[verification]`): each upload is
    /// judged with its results, so a flagged one never reaches the map.
    pub trust: covermap_trust::TrustRules,
    /// Where the policy in force is read before each job (its duplicate distance, segment
    /// radius and trust thresholds replace the three above); `None` keeps those fixed.
    pub policy: Option<crate::governance::PolicyBook>,
}

impl WorkerConfig {
    /// The stages' settings under `policy` (duplicate frames, segment radius, trust thresholds)
    /// with `rules` for what ingest accepts, cells at `resolution`, and the defaults for the
    /// rest: 60-s leases, no camera clock offset, no vision models (frames stay pending),
    /// originals kept 30 days, σ = 10 m for matching, at most a million road segments in tiles.
    pub fn new(
        policy: &covermap_scoring::RewardPolicy,
        rules: IngestRules,
        resolution: Resolution,
    ) -> Self {
        Self {
            lease: Duration::from_secs(60),
            queue: QueuePolicy::default(),
            rules,
            geotag: GeotagParams::default(),
            camera_offset: chrono::Duration::zero(),
            vision: None,
            duplicate_bits: policy.rules.imagery.duplicate_bits,
            segment_radius_m: policy.rules.imagery.segment_radius_m,
            original_retention: chrono::Duration::days(30),
            resolution,
            idle_poll: Duration::from_millis(500),
            matching: MatchParams::for_sigma(10.0),
            road_tile_segments: 1_000_000,
            trust: policy.rules.verification.clone(),
            policy: None,
        }
    }

    /// This configuration under the policy in force now, where it follows a [`PolicyBook`].
    ///
    /// [`PolicyBook`]: crate::governance::PolicyBook
    pub fn in_force(&self) -> std::borrow::Cow<'_, WorkerConfig> {
        match &self.policy {
            None => std::borrow::Cow::Borrowed(self),
            Some(book) => {
                let p = book.now();
                std::borrow::Cow::Owned(WorkerConfig {
                    duplicate_bits: p.rules.imagery.duplicate_bits,
                    segment_radius_m: p.rules.imagery.segment_radius_m,
                    trust: p.rules.verification.clone(),
                    ..self.clone()
                })
            }
        }
    }
}

/// The stored road network as a matching graph; `None` when no roads are loaded (then uploads
/// are indexed by their fixes alone). Read once when the workers start.
pub async fn load_roads(store: &dyn Store) -> Option<Arc<RoadGraph>> {
    match store.roads(BoundingBox::WORLD, i64::MAX).await {
        Ok(segments) if !segments.is_empty() => {
            let graph =
                tokio::task::spawn_blocking(move || RoadGraph::new(RoadNetwork { segments }))
                    .await
                    .ok()?;
            tracing::info!(
                segments = graph.network().segments.len(),
                "road network loaded for matching"
            );
            Some(Arc::new(graph))
        }
        Ok(_) => {
            tracing::warn!(
                "no road network stored: uploads are indexed by their fixes only (covermap roads import FILE)"
            );
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the road network; uploads are indexed by their fixes only");
            None
        }
    }
}

/// Runs `n` worker tasks until `shutdown` turns true; each finishes its current job first.
pub async fn run_pool(
    n: usize,
    store: Arc<dyn Store>,
    blobs: Blobs,
    config: WorkerConfig,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) {
    if n == 0 {
        return;
    }
    let roads = match RoadTiles::open(store.clone(), config.road_tile_segments).await {
        Ok(tiles) if tiles.has_network() => {
            tracing::info!("road network read in tiles around each job");
            Roads::Tiles(Arc::new(tiles))
        }
        Ok(_) => {
            tracing::warn!(
                "no road network stored: uploads are indexed by their fixes only (covermap roads import FILE)"
            );
            Roads::Whole(None)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the road network; uploads are indexed by their fixes only");
            Roads::Whole(None)
        }
    };
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    // One task per process deletes originals past their retention.
    let sweeper = tokio::spawn(run_sweeper(
        store.clone(),
        blobs.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    // And one judges the frames kept pending while the vision models were missing.
    let judge = tokio::spawn(run_late_judging(
        store.clone(),
        blobs.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let name = format!("{host}/{}/{i}", std::process::id());
            tokio::spawn(run_one(
                name,
                store.clone(),
                blobs.clone(),
                roads.clone(),
                config.clone(),
                wake.clone(),
                shutdown.clone(),
            ))
        })
        .collect();
    for t in tasks.into_iter().chain([sweeper, judge]) {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "a worker task ended abnormally");
        }
    }
}

/// Sweeps originals past their retention, and the blobs of erasures an object store failed to
/// finish, and makes the month partitions ahead, every minute (every idle poll when the
/// retention is zero) until `shutdown` turns true.
async fn run_sweeper(
    store: Arc<dyn Store>,
    blobs: Blobs,
    config: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = if config.original_retention.is_zero() {
        config.idle_poll
    } else {
        Duration::from_secs(60)
    };
    while !*shutdown.borrow() {
        let before = Utc::now() - config.original_retention;
        match sweep_originals(store.as_ref(), &blobs, before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "originals past retention or rejected deleted"),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
        // The month partitions ahead (PostGIS): made at start too, but a process may run for
        // months.
        match store
            .ensure_partitions(Utc::now(), covermap_store::MONTHS_AHEAD)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(partitions = n, "month partitions made"),
            Err(e) => tracing::warn!(error = %e, "making month partitions failed"),
        }
        match crate::erasure::finish_pending(store.as_ref(), &blobs).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "erasures left unfinished completed"),
            Err(e) => tracing::warn!(error = %e, "finishing erasures failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// How often a worker with the vision models looks for frames kept pending without them.
const LATE_JUDGING_EVERY: Duration = Duration::from_secs(300);

/// Judges the frames kept pending while the vision models were missing: when the workers start
/// with the models in place, then every five minutes (other processes may still lack them),
/// until `shutdown` turns true. Without the models it does nothing.
async fn run_late_judging(
    store: Arc<dyn Store>,
    blobs: Blobs,
    config: WorkerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    if config.vision.is_none() {
        return;
    }
    while !*shutdown.borrow() {
        match crate::judge::judge_pending(store.as_ref(), &blobs, &config, Utc::now()).await {
            Ok(r) if r.judged() + r.failed == 0 => {}
            Ok(r) => tracing::info!(
                published = r.published,
                refused = r.refused,
                unreadable = r.unreadable,
                failed = r.failed,
                "frames kept pending without the vision models judged"
            ),
            Err(e) => tracing::warn!(error = %e, "judging pending frames failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(LATE_JUDGING_EVERY) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn run_one(
    name: String,
    store: Arc<dyn Store>,
    blobs: Blobs,
    roads: Roads,
    config: WorkerConfig,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!(worker = %name, "worker started");
    while !*shutdown.borrow() {
        let current = config.in_force();
        let pause = match work_once(&name, store.as_ref(), &blobs, &roads, &current).await {
            Ok(true) => continue,
            Ok(false) => config.idle_poll,
            Err(e) => {
                tracing::error!(worker = %name, error = %e, "worker could not reach the queue");
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!(worker = %name, "worker stopped");
}

/// Deletes the private originals (upload bytes, unblurred frames) of drives that arrived before
/// `received_before` and of every upload the workers rejected, keeping any blob another upload
/// still references, and marks them deleted; returns how many uploads were swept. Blobs go first, so a sweep cut short is simply
/// done again.
pub async fn sweep_originals(
    store: &dyn Store,
    blobs: &Blobs,
    received_before: chrono::DateTime<Utc>,
) -> Result<usize, StoreError> {
    let due = store.originals_due(received_before, 100).await?;
    for drive in &due {
        for key in &drive.blob_keys {
            blobs.delete(key).await?;
        }
        store
            .mark_originals_expired(drive.upload_id, Utc::now())
            .await?;
        metrics::counter!("covermap_originals_deleted_total")
            .increment(drive.blob_keys.len() as u64);
    }
    Ok(due.len())
}

/// Leases and runs at most one job; `Ok(false)` when none was ready.
pub async fn work_once(
    name: &str,
    store: &dyn Store,
    blobs: &Blobs,
    roads: &Roads,
    config: &WorkerConfig,
) -> Result<bool, StoreError> {
    let Some(lease) = store
        .lease_job(name, Utc::now(), config.lease, config.queue)
        .await?
    else {
        return Ok(false);
    };
    // The lease is renewed while the job runs, so a long drive is not taken over (and done
    // again) by another worker; if it is lost all the same, the work stops here.
    let processed = {
        let work = process(&lease, store, blobs, roads, config);
        tokio::pin!(work);
        tokio::select! {
            done = &mut work => Some(done),
            () = keep_lease(store, &lease, config.lease) => None,
        }
    };
    let result = match processed {
        // Counted and logged with a lease lost at the write, below.
        None => Err(StoreError::LeaseLost {
            job_id: lease.job_id,
        }),
        Some(Ok((outcome, probe))) => {
            let r = store.complete_job(&lease, &outcome, Utc::now()).await;
            if let Err(StoreError::Erased { .. }) = r {
                // Erased while it ran: the frames it stored go too, unless another upload's
                // rows name the same bytes.
                let written = crate::erasure::outcome_blobs(&outcome);
                if let Err(e) = crate::erasure::delete_unreferenced(store, blobs, &written).await {
                    tracing::warn!(upload = lease.upload_id, error = %e,
                        "an erased upload's frames were not deleted");
                }
            }
            if r.is_ok() {
                // Two alike uploads judged at the same moment do not see each other; once this
                // one is stored, it is compared again, and the later of a pair is amended.
                if let Err(e) = verify::recheck(&lease, store, &probe, &config.trust).await {
                    tracing::warn!(upload = lease.upload_id, ?e, "comparing again failed");
                }
                metrics::counter!("covermap_jobs_total", "outcome" => "done").increment(1);
                tracing::info!(
                    job = lease.job_id,
                    upload = lease.upload_id,
                    cells = outcome.visits.len(),
                    "upload processed"
                );
            }
            r
        }
        Some(Err(failure)) => {
            let outcome = match &failure {
                JobFailure::Rejected(_) => "rejected",
                JobFailure::Transient(_) => "retry",
            };
            metrics::counter!("covermap_jobs_total", "outcome" => outcome).increment(1);
            tracing::warn!(
                job = lease.job_id,
                upload = lease.upload_id,
                ?failure,
                "job failed"
            );
            store
                .fail_job(&lease, &failure, Utc::now(), config.queue)
                .await
        }
    };
    match result {
        Ok(()) => Ok(true),
        Err(StoreError::Erased { upload_id }) => {
            metrics::counter!("covermap_jobs_total", "outcome" => "erased").increment(1);
            tracing::info!(
                job = lease.job_id,
                upload = upload_id,
                "the upload was erased while its job ran; its results were discarded"
            );
            Ok(true)
        }
        Err(StoreError::LeaseLost { job_id }) => {
            metrics::counter!("covermap_jobs_total", "outcome" => "lease_lost").increment(1);
            tracing::warn!(
                job = job_id,
                "lease lost before the job finished; its results were discarded"
            );
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Renews `lease` every third of its length for as long as it is polled; returns once the lease
/// is lost. A renewal that fails for another reason (the database away for a moment) is tried
/// again at the next beat.
async fn keep_lease(store: &dyn Store, lease: &Lease, length: std::time::Duration) {
    let beat = (length / 3).max(std::time::Duration::from_millis(100));
    let length = chrono::Duration::from_std(length).unwrap_or(chrono::Duration::seconds(60));
    loop {
        tokio::time::sleep(beat).await;
        match store.renew_lease(lease, Utc::now() + length).await {
            Ok(()) => metrics::counter!("covermap_lease_renewals_total").increment(1),
            Err(StoreError::LeaseLost { .. }) => return,
            Err(e) => tracing::warn!(job = lease.job_id, error = %e, "renewing a lease failed"),
        }
    }
}
