//! Workers: lease a job, run it through the stages, write its results with its "done" mark.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use covermap_domain::{BoundingBox, Fix, UploadKind};
use covermap_ingest::radio::Emitter;
use covermap_ingest::{GeotagParams, IngestRules, Track};
use covermap_roads::RoadNetwork;
use covermap_roads::matching::{MatchParams, RoadGraph, TracePoint};
use covermap_store::{
    Blobs, FrameRow, FrameVision, JobFailure, JobOutcome, Lease, QueuePolicy, RadioRow, Rejection,
    Store, StoreError,
};
use covermap_vision::{FrameCheck, VisionError};
use h3o::Resolution;
use tokio::sync::{Notify, watch};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub lease: Duration,
    pub queue: QueuePolicy,
    pub rules: IngestRules,
    pub geotag: GeotagParams,
    /// Added to every frame's capture time: the camera clock's error against GPS time.
    pub camera_offset: chrono::Duration,
    /// The vision stage (quality, faces, plates, blur); `None` where its models are not in
    /// place, and then frames are kept unpublished ("pending") until they are.
    pub vision: Option<Arc<std::sync::Mutex<FrameCheck>>>,
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
            let r = store.complete_job(&lease, &outcome, Utc::now()).await;
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
) -> Result<JobOutcome, JobFailure> {
    let bytes = blobs.get(&lease.blob_key).await.map_err(|e| match e {
        StoreError::BlobMissing { .. } | StoreError::Corrupt(_) => {
            JobFailure::Rejected(format!("the upload's bytes are unusable: {e}"))
        }
        other => JobFailure::Transient(other.to_string()),
    })?;
    let (kind, received_at, config_) = (lease.kind, lease.received_at, config.clone());
    let (mut outcome, frame_bytes) = tokio::task::spawn_blocking(move || {
        let config = config_;
        if kind.is_track() {
            let track = covermap_ingest::parse(kind, &bytes, received_at, &config.rules.track)
                .map_err(|e| JobFailure::Rejected(e.to_string()))?;
            Ok((track_outcome(&track, roads.as_deref(), &config), Vec::new()))
        } else if kind.is_radio() {
            Ok((
                radio_outcome(kind, &bytes, received_at, &config)?,
                Vec::new(),
            ))
        } else {
            drive_outcome(&bytes, received_at, roads.as_deref(), &config)
        }
    })
    .await
    .map_err(|e| JobFailure::Transient(format!("processing task failed: {e}")))??;
    // Frames' bytes (the private original, and the blurred derivative that may be published)
    // go to the blob store before their rows are written with the job's result.
    for (row, (original, published)) in outcome.frames.iter_mut().zip(frame_bytes) {
        let put = |bytes: Vec<u8>| async {
            blobs
                .put(bytes.into())
                .await
                .map_err(|e| JobFailure::Transient(format!("storing a frame: {e}")))
        };
        let blob = put(original).await?;
        row.sha256 = blob.sha256;
        row.blob_key = blob.key;
        if let (Some(vision), Some(bytes)) = (row.vision.as_mut(), published) {
            vision.published_key = put(bytes).await?.key;
        }
    }
    Ok(outcome)
}

/// A track's cells, matched roads and left-out fixes.
fn track_outcome(track: &Track, roads: Option<&RoadGraph>, config: &WorkerConfig) -> JobOutcome {
    let stretches = match roads {
        Some(graph) => match_track(graph, &track.fixes, &config.matching, config.resolution),
        None => Vec::new(),
    };
    JobOutcome {
        fixes_accepted: track.fixes.len() as u32,
        fixes_rejected: track.rejected.len() as u32,
        visits: covermap_roads::index_fixes(&track.fixes, config.resolution),
        stretches,
        rejections: track
            .rejected
            .iter()
            .map(|(i, why)| Rejection {
                stage: "fix",
                item: *i as i64,
                reason: why.as_str().to_owned(),
                detail: None,
            })
            .collect(),
        ..JobOutcome::default()
    }
}

/// A radio upload's observations, each in its cell, and every observation left out.
fn radio_outcome(
    kind: UploadKind,
    bytes: &[u8],
    received_at: chrono::DateTime<Utc>,
    config: &WorkerConfig,
) -> Result<JobOutcome, JobFailure> {
    let batch = covermap_ingest::parse_radio(kind, bytes, received_at, &config.rules.radio)
        .map_err(|e| JobFailure::Rejected(e.to_string()))?;
    let mut outcome = JobOutcome::default();
    for (i, o) in batch.observations.iter().enumerate() {
        let Some(cell) = covermap_roads::cell_of(o.pos, config.resolution) else {
            // Never for a valid position; recorded rather than dropped all the same.
            outcome.rejections.push(Rejection {
                stage: "radio",
                item: i as i64,
                reason: "bad_position".into(),
                detail: Some(format!("observation {i}: {}", o.emitter_key())),
            });
            continue;
        };
        let (emitter_kind, radio) = emitter_kind(&o.emitter);
        outcome.radio.push(RadioRow {
            observed_at: o.at,
            emitter_kind,
            radio,
            emitter: o.emitter_key(),
            signal_dbm: o.signal_dbm,
            accuracy_m: o.accuracy_m,
            pos: o.pos,
            cell,
        });
    }
    outcome.rejections = batch
        .rejected
        .iter()
        .map(|r| Rejection {
            stage: "radio",
            item: r.item as i64,
            reason: r.reason.as_str().to_owned(),
            detail: Some(match &r.emitter {
                Some(e) => format!("{e}: {}", r.detail),
                None => r.detail.clone(),
            }),
        })
        .collect();
    Ok(outcome)
}

/// How the store files an emitter: its kind, and for a cell its radio type.
fn emitter_kind(e: &Emitter) -> (&'static str, Option<&'static str>) {
    match e {
        Emitter::Cell { radio, .. } => ("cell", Some(radio.as_str())),
        Emitter::Wifi { .. } => ("wifi", None),
        Emitter::Bluetooth { .. } => ("bluetooth", None),
    }
}

/// A camera drive: frames placed on its track (or on their own EXIF GPS), split into sequences,
/// each left-out frame with its reason; the track's cells and roads as for any track. Returns
/// the frames' bytes beside their rows, for the caller to store.
/// A frame's private original, and its blurred derivative where the vision stage passed it.
type FrameBytes = (Vec<u8>, Option<Vec<u8>>);

fn drive_outcome(
    bytes: &[u8],
    received_at: chrono::DateTime<Utc>,
    roads: Option<&RoadGraph>,
    config: &WorkerConfig,
) -> Result<(JobOutcome, Vec<FrameBytes>), JobFailure> {
    let mut drive = covermap_ingest::read_drive(bytes, &config.rules.drive)
        .map_err(|e| JobFailure::Rejected(e.to_string()))?;
    let mut rejections = Vec::new();
    let reject = |rejections: &mut Vec<Rejection>, index: usize, reason: &str, detail: String| {
        rejections.push(Rejection {
            stage: "frame",
            item: index as i64,
            reason: reason.to_owned(),
            detail: Some(detail),
        });
    };
    // Each readable frame with its capture time (and, for drives without a track, position).
    let mut timed = Vec::new();
    for f in &drive.frames {
        match &f.meta {
            Err(e) => reject(
                &mut rejections,
                f.index,
                e.code(),
                format!("{}: {e}", f.name),
            ),
            Ok(meta) => match meta.capture_time(config.camera_offset, None) {
                Ok(at) => timed.push((f.index, at, meta)),
                Err(why) => reject(&mut rejections, f.index, why.as_str(), f.name.clone()),
            },
        }
    }
    let (placed, track) = match &drive.track {
        Some((format, track_bytes)) => {
            let kind = match format {
                covermap_ingest::TrackFormat::Gpx => UploadKind::Gpx,
                covermap_ingest::TrackFormat::Nmea => UploadKind::Nmea,
            };
            let track = covermap_ingest::parse(kind, track_bytes, received_at, &config.rules.track)
                .map_err(|e| JobFailure::Rejected(format!("the drive's track: {e}")))?;
            let frames: Vec<_> = timed.iter().map(|(i, at, _)| (*i, *at)).collect();
            (
                covermap_ingest::geotag(&frames, &track.fixes, &config.geotag),
                track,
            )
        }
        None => {
            let mut frames = Vec::new();
            for (i, at, meta) in &timed {
                match meta.position() {
                    Ok((pos, direction)) => frames.push((*i, *at, pos, direction)),
                    Err(why) => reject(
                        &mut rejections,
                        *i,
                        why.as_str(),
                        drive.frames[*i].name.clone(),
                    ),
                }
            }
            let placed = covermap_ingest::geotag_from_exif(&frames, &config.geotag);
            let fixes = placed
                .sequences
                .iter()
                .flatten()
                .map(|f| Fix {
                    at: f.at,
                    pos: f.pos,
                    accuracy_m: None,
                })
                .collect();
            let track = Track {
                fixes,
                rejected: Vec::new(),
            };
            (placed, track)
        }
    };
    for (index, why) in &placed.rejected {
        reject(
            &mut rejections,
            *index,
            why.as_str(),
            drive.frames[*index].name.clone(),
        );
    }
    let mut outcome = track_outcome(&track, roads, config);
    let mut frame_bytes = Vec::new();
    for (sequence, frames) in placed.sequences.iter().enumerate() {
        for f in frames {
            let source = &mut drive.frames[f.index];
            let Some(cell) = covermap_roads::cell_of(f.pos, config.resolution) else {
                // Never for a valid position; recorded rather than dropped all the same.
                let detail = source.name.clone();
                reject(&mut rejections, f.index, "no_position", detail);
                continue;
            };
            let (width, height) = source
                .meta
                .as_ref()
                .map(|m| (m.width as i32, m.height as i32))
                .unwrap_or_default();
            // The vision stage: a frame too dark, washed out or blurred is left out with its
            // measures; one that passes is published only as its blurred derivative.
            let (vision, published) = match &config.vision {
                None => (None, None),
                Some(check) => match judge_frame(check, &source.name, &source.bytes)? {
                    Verdict::Publish(vision, published) => (Some(vision), Some(published)),
                    Verdict::LeaveOut(reason, detail) => {
                        reject(&mut rejections, f.index, reason, detail);
                        continue;
                    }
                },
            };
            outcome.frames.push(FrameRow {
                frame: f.index as i32,
                sequence: sequence as i32,
                sha256: String::new(),
                blob_key: String::new(),
                captured_at: f.at,
                heading_deg: f.heading_deg,
                width,
                height,
                pos: f.pos,
                cell,
                vision,
            });
            frame_bytes.push((std::mem::take(&mut source.bytes), published));
        }
    }
    rejections.sort_by_key(|r| r.item);
    outcome.rejections.extend(rejections);
    Ok((outcome, frame_bytes))
}

/// The vision stage's verdict on one frame: what to publish (its blurred derivative), or the
/// reason and measures it is left out for. The models failing is not the frame's fault: the
/// job is tried again later.
fn judge_frame(
    check: &std::sync::Mutex<FrameCheck>,
    name: &str,
    jpeg: &[u8],
) -> Result<Verdict, JobFailure> {
    let look = check
        .lock()
        .map_err(|_| JobFailure::Transient("the vision stage failed".into()))?
        .look(jpeg);
    Ok(match look {
        Err(e @ VisionError::Model(_)) => {
            return Err(JobFailure::Transient(format!("the vision stage: {e}")));
        }
        Err(e) => Verdict::LeaveOut(e.code(), format!("{name}: {e}")),
        Ok(look) => match look.quality.reasons.first() {
            Some(reason) => {
                let q = &look.quality;
                Verdict::LeaveOut(
                    reason.as_str(),
                    format!(
                        "{name}: brightness p5/p50/p95 {:?}, clipped {:.3}, sharpness {:.2}, \
                         anisotropy {:.2}",
                        q.brightness, q.clipped, q.sharpness, q.anisotropy
                    ),
                )
            }
            None => Verdict::Publish(
                FrameVision {
                    published_key: String::new(),
                    phash: look.phash,
                    faces: look.faces.len() as i32,
                    plates: look.plates.len() as i32,
                },
                look.published,
            ),
        },
    })
}

/// What becomes of a frame the vision stage looked at.
enum Verdict {
    /// Published as this derivative (faces and plates blurred).
    Publish(FrameVision, Vec<u8>),
    /// Left out, with the reason code and the measures behind it.
    LeaveOut(&'static str, String),
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
