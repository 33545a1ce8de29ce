//! Workers: lease a job, run it through the stages, write its results with its "done" mark.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use covermap_domain::{BoundingBox, Fix};
use covermap_ingest::IngestPolicy;
use covermap_roads::RoadNetwork;
use covermap_roads::matching::{MatchParams, RoadGraph, TracePoint};
use covermap_store::{Blobs, JobFailure, Lease, QueuePolicy, Store, StoreError, TrackOutcome};
use h3o::Resolution;
use tokio::sync::{Notify, watch};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub lease: Duration,
    pub queue: QueuePolicy,
    pub ingest: IngestPolicy,
    pub resolution: Resolution,
    /// How often an idle worker looks for work that another process queued.
    pub idle_poll: Duration,
    pub matching: MatchParams,
}

/// The stored road network as a matching graph; `None` when no roads are loaded (then uploads
/// are indexed by their fixes alone). Read once when the workers start.
async fn load_roads(store: &dyn Store) -> Option<Arc<RoadGraph>> {
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
    let roads = load_roads(store.as_ref()).await;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
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
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "a worker task ended abnormally");
        }
    }
}

async fn run_one(
    name: String,
    store: Arc<dyn Store>,
    blobs: Blobs,
    roads: Option<Arc<RoadGraph>>,
    config: WorkerConfig,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!(worker = %name, "worker started");
    while !*shutdown.borrow() {
        let pause = match work_once(&name, store.as_ref(), &blobs, roads.as_ref(), &config).await {
            Ok(true) => continue,
            Ok(false) => config.idle_poll,
            Err(e) => {
                tracing::error!(worker = %name, error = %e, "worker could not reach the queue");
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!(worker = %name, "worker stopped");
}

/// Leases and runs at most one job; `Ok(false)` when none was ready.
pub async fn work_once(
    name: &str,
    store: &dyn Store,
    blobs: &Blobs,
    roads: Option<&Arc<RoadGraph>>,
    config: &WorkerConfig,
) -> Result<bool, StoreError> {
    let Some(lease) = store
        .lease_job(name, Utc::now(), config.lease, config.queue)
        .await?
    else {
        return Ok(false);
    };
    let result = match process(&lease, blobs, roads.cloned(), config).await {
        Ok(outcome) => {
            let r = store.complete_track_job(&lease, &outcome, Utc::now()).await;
            if r.is_ok() {
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
        Err(failure) => {
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

/// Turns a leased upload into what the store keeps of it.
async fn process(
    lease: &Lease,
    blobs: &Blobs,
    roads: Option<Arc<RoadGraph>>,
    config: &WorkerConfig,
) -> Result<TrackOutcome, JobFailure> {
    let bytes = blobs.get(&lease.blob_key).await.map_err(|e| match e {
        StoreError::BlobMissing { .. } | StoreError::Corrupt(_) => {
            JobFailure::Rejected(format!("the upload's bytes are unusable: {e}"))
        }
        other => JobFailure::Transient(other.to_string()),
    })?;
    let (ingest, resolution, matching) = (config.ingest, config.resolution, config.matching);
    let (kind, received_at) = (lease.kind, lease.received_at);
    tokio::task::spawn_blocking(move || {
        let track = covermap_ingest::parse(kind, &bytes, received_at, &ingest)
            .map_err(|e| JobFailure::Rejected(e.to_string()))?;
        let stretches = match &roads {
            Some(graph) => match_track(graph, &track.fixes, &matching, resolution),
            None => Vec::new(),
        };
        Ok(TrackOutcome {
            fixes_accepted: track.fixes.len() as u32,
            fixes_rejected: track.rejected.len() as u32,
            visits: covermap_roads::index_fixes(&track.fixes, resolution),
            stretches,
        })
    })
    .await
    .map_err(|e| JobFailure::Transient(format!("processing task failed: {e}")))?
}

/// The roads a track drove, cut into cells. A track the matcher cannot place (off the map) has
/// no stretches; its fixes still count.
fn match_track(
    graph: &RoadGraph,
    fixes: &[Fix],
    params: &MatchParams,
    resolution: Resolution,
) -> Vec<covermap_domain::MatchedStretch> {
    let Some(t0) = fixes.first().map(|f| f.at) else {
        return Vec::new();
    };
    let points: Vec<TracePoint> = fixes
        .iter()
        .map(|f| TracePoint {
            lat: f.pos.lat,
            lon: f.pos.lon,
            time_s: (f.at - t0).as_seconds_f64(),
        })
        .collect();
    match graph.matcher().match_trace(&points, params) {
        Ok(result) => covermap_roads::matched_stretches(&result, graph, resolution),
        Err(e) => {
            tracing::warn!(error = %e, "track could not be matched");
            Vec::new()
        }
    }
}
