//! Workers: lease a job, run it through the stages, write its results with its "done" mark.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use covermap_ingest::IngestPolicy;
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
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let name = format!("{host}/{}/{i}", std::process::id());
            tokio::spawn(run_one(
                name,
                store.clone(),
                blobs.clone(),
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
    config: WorkerConfig,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!(worker = %name, "worker started");
    while !*shutdown.borrow() {
        let pause = match work_once(&name, store.as_ref(), &blobs, &config).await {
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
    config: &WorkerConfig,
) -> Result<bool, StoreError> {
    let Some(lease) = store
        .lease_job(name, Utc::now(), config.lease, config.queue)
        .await?
    else {
        return Ok(false);
    };
    let result = match process(&lease, blobs, config).await {
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
    config: &WorkerConfig,
) -> Result<TrackOutcome, JobFailure> {
    let bytes = blobs.get(&lease.blob_key).await.map_err(|e| match e {
        StoreError::BlobMissing { .. } | StoreError::Corrupt(_) => {
            JobFailure::Rejected(format!("the upload's bytes are unusable: {e}"))
        }
        other => JobFailure::Transient(other.to_string()),
    })?;
    let (ingest, resolution) = (config.ingest, config.resolution);
    let (kind, received_at) = (lease.kind, lease.received_at);
    tokio::task::spawn_blocking(move || {
        let track = covermap_ingest::parse(kind, &bytes, received_at, &ingest)
            .map_err(|e| JobFailure::Rejected(e.to_string()))?;
        Ok(TrackOutcome {
            fixes_accepted: track.fixes.len() as u32,
            fixes_rejected: track.rejected.len() as u32,
            visits: covermap_roads::index_fixes(&track.fixes, resolution),
        })
    })
    .await
    .map_err(|e| JobFailure::Transient(format!("processing task failed: {e}")))?
}
