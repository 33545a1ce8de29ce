//! Processing one job: each stage called in turn — ingest reads the upload into a track, placed
//! frames or radio observations; roads matches the track and cuts it into cells; vision looks at
//! each frame; trust measures and judges — and the results assembled into the one
//! [`JobOutcome`] the store writes with the job's "done" mark. Nothing is written here but the
//! frames' bytes, which go to the blob store before the outcome refers to them.

use std::sync::Arc;

use chrono::Utc;
use covermap_domain::{
    EmitterKind, Fix, LatLon, RadioType, RejectionStage, SegmentRef, UploadKind,
};
use covermap_ingest::Track;
use covermap_ingest::radio::Emitter;
use covermap_roads::matching::{MatchParams, RoadGraph, TracePoint};
use covermap_store::{
    Blobs, FramePlacement, FrameRejectionRow, FrameRow, FrameVision, JobFailure, JobOutcome, Lease,
    RadioRow, Rejection, Store, StoreError,
};
use covermap_vision::{Look, VisionError};
use h3o::Resolution;

use crate::road_tiles::{Roads, area_of};
use crate::verify::{self, Measured};
use crate::worker::WorkerConfig;

/// Turns a leased upload into what the store keeps of it.
pub(crate) async fn process(
    lease: &Lease,
    store: &dyn Store,
    blobs: &Blobs,
    roads: &Roads,
    config: &WorkerConfig,
) -> Result<(JobOutcome, verify::Probe), JobFailure> {
    let bytes = blobs.get(&lease.blob_key).await.map_err(|e| match e {
        StoreError::BlobMissing { .. } | StoreError::Corrupt(_) => {
            JobFailure::Rejected(format!("the upload's bytes are unusable: {e}"))
        }
        other => JobFailure::Transient(other.to_string()),
    })?;
    let (kind, received_at, config_) = (lease.kind, lease.received_at, config.clone());
    let (handle, roads_) = (tokio::runtime::Handle::current(), roads.clone());
    let mut draft = tokio::task::spawn_blocking(move || {
        let config = config_;
        // The roads around the track, once it is read (tiles may come from the store: this
        // thread may wait for them).
        let roads_around = |track: &Track| {
            handle.block_on(roads_.around(area_of(track.fixes.iter().map(|f| f.pos))))
        };
        if kind.is_track() {
            let track = covermap_ingest::parse(kind, &bytes, received_at, &config.rules.track)
                .map_err(|e| JobFailure::Rejected(e.to_string()))?;
            let graph = roads_around(&track)?;
            let outcome = track_outcome(&track, graph.as_deref(), &config);
            let measured = measure_track(&track, graph.as_deref(), &outcome, received_at);
            Ok(DriveDraft::plain(outcome, measured))
        } else if kind.is_radio() {
            let (outcome, measured) = radio_outcome(kind, &bytes, received_at, &config)?;
            Ok(DriveDraft::plain(outcome, measured))
        } else {
            drive_outcome(&bytes, received_at, &roads_around, &config)
        }
    })
    .await
    .map_err(|e| JobFailure::Transient(format!("processing task failed: {e}")))??;
    let measured = std::mem::take(&mut draft.measured);
    let probe = measured.probe();
    // Everything that can fail for a reason other than the blob store comes first: the frames'
    // bytes are written last, so a job that fails leaves none behind (a retry writes the same
    // content-addressed keys again).
    let trust = verify::judge(lease, store, measured, &config.trust, roads).await?;
    let mut outcome = finish_drive(lease, store, blobs, draft, config).await?;
    outcome.trust = Some(trust);
    Ok((outcome, probe))
}

/// The roads around a track, as the job's thread reads them (tiles may come from the store).
type RoadsAround<'a> = dyn Fn(&Track) -> Result<Option<Arc<RoadGraph>>, JobFailure> + 'a;

/// The trust stage's measures of a track, with the cells it touched.
fn measure_track(
    track: &Track,
    roads: Option<&RoadGraph>,
    outcome: &JobOutcome,
    received_at: chrono::DateTime<Utc>,
) -> Measured {
    let matched =
        (!outcome.stretches.is_empty()).then(|| outcome.stretches.iter().map(|s| s.length_m).sum());
    let cells = outcome.visits.iter().map(|v| v.cell).collect();
    verify::measure_track(track, roads, matched, received_at, cells)
}

/// A drive's result before its frames' bytes are stored and repeated pictures looked for.
#[derive(Default)]
struct DriveDraft {
    outcome: JobOutcome,
    kept: Vec<KeptFrame>,
    refused: Vec<RefusedFrame>,
    /// What the trust stage measured, to be finished against earlier uploads.
    measured: Measured,
}

impl DriveDraft {
    fn plain(outcome: JobOutcome, measured: Measured) -> Self {
        Self {
            outcome,
            measured,
            ..Self::default()
        }
    }
}

/// A frame to keep: its private original, and the blurred derivative where the vision stage
/// passed it.
struct KeptFrame {
    row: FrameRow,
    original: Vec<u8>,
    published: Option<Vec<u8>>,
}

/// A frame the vision stage refused: its original and the blurred copy auditors see.
struct RefusedFrame {
    row: FrameRejectionRow,
    original: Vec<u8>,
    review: Option<Vec<u8>>,
}

/// Refuses the pictures already published (here or earlier in this drive), stores the frames'
/// bytes, and fills the outcome's frame rows.
async fn finish_drive(
    lease: &Lease,
    store: &dyn Store,
    blobs: &Blobs,
    draft: DriveDraft,
    config: &WorkerConfig,
) -> Result<JobOutcome, JobFailure> {
    let DriveDraft {
        mut outcome,
        kept,
        mut refused,
        ..
    } = draft;
    if kept.is_empty() && refused.is_empty() {
        return Ok(outcome);
    }
    let mut cells: Vec<covermap_domain::Cell> = kept
        .iter()
        .filter(|k| k.row.vision.is_some())
        .flat_map(|k| k.row.cell.0.grid_disk::<Vec<_>>(1))
        .map(covermap_domain::Cell)
        .collect();
    cells.sort_unstable_by_key(|c| c.as_i64());
    cells.dedup();
    let earlier = if cells.is_empty() {
        Vec::new()
    } else {
        store
            .frame_hashes(&cells, lease.upload_id, 100_000)
            .await
            .map_err(|e| JobFailure::Transient(format!("looking for repeated frames: {e}")))?
    };
    let mut seen: Vec<(i64, i32, String)> = earlier
        .into_iter()
        .map(|h| (h.upload_id, h.frame, h.phash))
        .collect();
    let mut keep = Vec::new();
    for frame in kept {
        let Some(vision) = &frame.row.vision else {
            keep.push(frame);
            continue;
        };
        let nearest = repeat_of(
            &vision.phash,
            seen.iter().map(|(u, f, h)| (*u, *f, h.as_str())),
            config.duplicate_bits,
        );
        match nearest {
            Some((bits, of)) => {
                let (row, why) = duplicate_refusal(&frame.row, vision, bits, of);
                outcome.rejections.push(why);
                refused.push(RefusedFrame {
                    row,
                    original: frame.original,
                    review: frame.published,
                });
            }
            None => {
                seen.push((lease.upload_id, frame.row.frame, vision.phash.clone()));
                keep.push(frame);
            }
        }
    }
    // The bytes go to the blob store before the rows are written with the job's result.
    for KeptFrame {
        mut row,
        original,
        published,
    } in keep
    {
        let (blob, published_key) = store_frame(blobs, original, published).await?;
        row.sha256 = blob.sha256;
        row.blob_key = blob.key;
        if let (Some(vision), Some(key)) = (row.vision.as_mut(), published_key) {
            vision.published_key = key;
        }
        outcome.frames.push(row);
    }
    for RefusedFrame {
        mut row,
        original,
        review,
    } in refused
    {
        let (blob, review_key) = store_frame(blobs, original, review).await?;
        row.sha256 = blob.sha256;
        row.blob_key = blob.key;
        row.review_key = review_key;
        outcome.frame_rejections.push(row);
    }
    outcome.frame_rejections.sort_by_key(|r| r.frame);
    outcome
        .rejections
        .sort_by_key(|r| (r.stage != RejectionStage::Fix, r.item));
    Ok(outcome)
}

/// The nearest of the `seen` pictures (upload, frame, hash) to `phash`, if at most `max_bits` of
/// its 64 hash bits differ: (bits, (upload, frame)).
pub(crate) fn repeat_of<'a>(
    phash: &str,
    seen: impl IntoIterator<Item = (i64, i32, &'a str)>,
    max_bits: u32,
) -> Option<(u32, (i64, i32))> {
    seen.into_iter()
        .filter_map(|(u, f, h)| covermap_vision::phash::distance(phash, h).map(|d| (d, u, f)))
        .min()
        .filter(|(bits, _, _)| *bits <= max_bits)
        .map(|(bits, u, f)| (bits, (u, f)))
}

/// A frame the vision stage passed, refused as a repeat of frame `of` (`bits` hash bits
/// apart): its row in the auditors' queue and the reason among its upload's rejections.
pub(crate) fn duplicate_refusal(
    row: &FrameRow,
    vision: &FrameVision,
    bits: u32,
    (of_upload, of_frame): (i64, i32),
) -> (FrameRejectionRow, Rejection) {
    let mut scores = vision.quality.clone();
    if let Some(map) = scores.as_object_mut() {
        map.insert("duplicate_bits".into(), bits.into());
    }
    let mut refused = refusal(row, "duplicate", scores, vision.phash.clone());
    refused.duplicate_of = Some((of_upload, of_frame));
    let why = Rejection {
        stage: RejectionStage::Frame,
        item: i64::from(row.frame),
        reason: "duplicate".into(),
        detail: Some(format!(
            "repeats frame {of_frame} of upload {of_upload} ({bits} of 64 hash bits differ)"
        )),
    };
    (refused, why)
}

/// Stores a frame's private original and, where there is one, its blurred derivative; returns
/// the original's blob and the derivative's key.
async fn store_frame(
    blobs: &Blobs,
    original: Vec<u8>,
    derivative: Option<Vec<u8>>,
) -> Result<(covermap_store::BlobRef, Option<String>), JobFailure> {
    let failed = |e: StoreError| JobFailure::Transient(format!("storing a frame: {e}"));
    let blob = blobs.put(original.into()).await.map_err(failed)?;
    let key = match derivative {
        Some(bytes) => Some(blobs.put(bytes.into()).await.map_err(failed)?.key),
        None => None,
    };
    Ok((blob, key))
}

/// The auditors' row for a frame refused for `reason` (its bytes not stored yet).
pub(crate) fn refusal(
    row: &FrameRow,
    reason: &str,
    scores: serde_json::Value,
    phash: String,
) -> FrameRejectionRow {
    FrameRejectionRow {
        frame: row.frame,
        reason: reason.to_owned(),
        scores,
        sha256: String::new(),
        blob_key: String::new(),
        review_key: None,
        phash: Some(phash),
        duplicate_of: None,
        captured_at: row.captured_at,
        pos: row.pos,
        cell: row.cell,
        placement: Some(FramePlacement::of(row)),
    }
}

/// A track's cells, matched roads and left-out fixes. Where a road network is loaded, only the
/// fixes the matcher placed on a road mark the map: a fix in a field or the sea covers nothing.
fn track_outcome(track: &Track, roads: Option<&RoadGraph>, config: &WorkerConfig) -> JobOutcome {
    let (stretches, visits) = match roads {
        Some(graph) => {
            let (stretches, placed) =
                match_track(graph, &track.fixes, &config.matching, config.resolution);
            let on_roads: Vec<Fix> = track
                .fixes
                .iter()
                .zip(placed)
                .filter(|(_, p)| *p)
                .map(|(f, _)| *f)
                .collect();
            (
                stretches,
                covermap_roads::index_fixes(&on_roads, config.resolution),
            )
        }
        None => (
            Vec::new(),
            covermap_roads::index_fixes(&track.fixes, config.resolution),
        ),
    };
    // Where a left-out fix was, as its detail: the driver's map places it ("at LAT, LON").
    let at: std::collections::HashMap<usize, LatLon> = track.rejected_at.iter().copied().collect();
    JobOutcome {
        fixes_accepted: track.fixes.len() as u32,
        fixes_rejected: track.rejected.len() as u32,
        visits,
        stretches,
        rejections: track
            .rejected
            .iter()
            .map(|(i, why)| Rejection {
                stage: RejectionStage::Fix,
                item: *i as i64,
                reason: why.as_str().to_owned(),
                detail: at.get(i).map(|p| format!("at {:.7}, {:.7}", p.lat, p.lon)),
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
) -> Result<(JobOutcome, Measured), JobFailure> {
    let batch = covermap_ingest::parse_radio(kind, bytes, received_at, &config.rules.radio)
        .map_err(|e| JobFailure::Rejected(e.to_string()))?;
    let mut outcome = JobOutcome::default();
    for (i, o) in batch.observations.iter().enumerate() {
        let Some(cell) = covermap_roads::cell_of(o.pos, config.resolution) else {
            // Never for a valid position; recorded rather than dropped all the same.
            outcome.rejections.push(Rejection {
                stage: RejectionStage::Radio,
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
            stage: RejectionStage::Radio,
            item: r.item as i64,
            reason: r.reason.as_str().to_owned(),
            detail: Some(match &r.emitter {
                Some(e) => format!("{e}: {}", r.detail),
                None => r.detail.clone(),
            }),
        })
        .collect();
    let measured = verify::measure_radio(&batch, outcome.radio.iter().map(|r| r.cell).collect());
    Ok((outcome, measured))
}

/// How the store files an emitter: its kind, and for a cell its radio type.
fn emitter_kind(e: &Emitter) -> (EmitterKind, Option<RadioType>) {
    match e {
        Emitter::Cell { radio, .. } => (EmitterKind::Cell, Some(*radio)),
        Emitter::Wifi { .. } => (EmitterKind::Wifi, None),
        Emitter::Bluetooth { .. } => (EmitterKind::Bluetooth, None),
    }
}

/// A camera drive: frames placed on its track (or on their own EXIF GPS), split into sequences,
/// each on its road segment, through the vision stage (in parallel), each left-out frame with
/// its reason; the track's cells and roads as for any track. The frames' bytes come back beside
/// their rows, for the caller to store.
fn drive_outcome(
    bytes: &[u8],
    received_at: chrono::DateTime<Utc>,
    roads_around: &RoadsAround<'_>,
    config: &WorkerConfig,
) -> Result<DriveDraft, JobFailure> {
    let mut drive = covermap_ingest::read_drive(bytes, &config.rules.drive)
        .map_err(|e| JobFailure::Rejected(e.to_string()))?;
    let mut rejections = Vec::new();
    let reject = |rejections: &mut Vec<Rejection>, index: usize, reason: &str, detail: String| {
        rejections.push(Rejection {
            stage: RejectionStage::Frame,
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
                jumps: Vec::new(),
                rejected_at: Vec::new(),
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
    let graph = roads_around(&track)?;
    let roads = graph.as_deref();
    let mut outcome = track_outcome(&track, roads, config);
    let measured = measure_track(&track, roads, &outcome, received_at);
    // Frames are filed under the nearest road segment this drive was matched to (or, where the
    // match found none near, the nearest road).
    let driven: std::collections::HashSet<SegmentRef> = outcome
        .stretches
        .iter()
        .map(|s| SegmentRef {
            osm_way_id: s.osm_way_id,
            way_piece: s.way_piece,
        })
        .collect();
    let segment_of = |pos| {
        let near = roads?.segments_near(pos, config.segment_radius_m, 8);
        near.iter()
            .find(|(s, _)| driven.contains(s))
            .or(near.first())
            .map(|(s, _)| *s)
    };
    let mut draft_rows = Vec::new();
    for (sequence, frames) in placed.sequences.iter().enumerate() {
        for f in frames {
            let Some(cell) = covermap_roads::cell_of(f.pos, config.resolution) else {
                // Never for a valid position; recorded rather than dropped all the same.
                let detail = drive.frames[f.index].name.clone();
                reject(&mut rejections, f.index, "no_position", detail);
                continue;
            };
            let (width, height) = drive.frames[f.index]
                .meta
                .as_ref()
                .map(|m| (m.width as i32, m.height as i32))
                .unwrap_or_default();
            draft_rows.push(FrameRow {
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
                segment: segment_of(f.pos),
                vision: None,
            });
        }
    }
    // The vision stage, frames in parallel: a frame too dark, washed out or blurred is refused
    // with its scores; one that passes is published only as its blurred derivative.
    let looks: Vec<Option<Result<Look, VisionError>>> = match &config.vision {
        None => draft_rows.iter().map(|_| None).collect(),
        Some(pool) => {
            let jpegs: Vec<&[u8]> = draft_rows
                .iter()
                .map(|r| drive.frames[r.frame as usize].bytes.as_slice())
                .collect();
            pool.look_all(&jpegs).into_iter().map(Some).collect()
        }
    };
    let mut draft = DriveDraft::default();
    for (mut row, look) in draft_rows.into_iter().zip(looks) {
        let source = &mut drive.frames[row.frame as usize];
        let original = std::mem::take(&mut source.bytes);
        let Some(look) = look else {
            draft.kept.push(KeptFrame {
                row,
                original,
                published: None,
            });
            continue;
        };
        match judge_frame(&source.name, look)? {
            Verdict::Unreadable(reason, detail) => {
                reject(&mut rejections, row.frame as usize, reason, detail);
            }
            Verdict::Refuse {
                reason,
                scores,
                phash,
                review,
            } => {
                let detail = format!("{}: {scores}", source.name);
                reject(&mut rejections, row.frame as usize, reason, detail);
                draft.refused.push(RefusedFrame {
                    row: refusal(&row, reason, scores, phash),
                    original,
                    review: Some(review),
                });
            }
            Verdict::Publish(vision, published) => {
                row.vision = Some(vision);
                draft.kept.push(KeptFrame {
                    row,
                    original,
                    published: Some(published),
                });
            }
        }
    }
    rejections.sort_by_key(|r| r.item);
    outcome.rejections.extend(rejections);
    draft.outcome = outcome;
    draft.measured = measured;
    Ok(draft)
}

/// The vision stage's verdict on one frame. The models failing is not the frame's fault: the
/// job is tried again later.
pub(crate) fn judge_frame(
    name: &str,
    look: Result<Look, VisionError>,
) -> Result<Verdict, JobFailure> {
    let look = match look {
        Err(e @ VisionError::Model(_)) => {
            return Err(JobFailure::Transient(format!("the vision stage: {e}")));
        }
        Err(e) => return Ok(Verdict::Unreadable(e.code(), format!("{name}: {e}"))),
        Ok(look) => look,
    };
    // What the auditors read: the measures, the frame's size and the thresholds they were
    // judged by.
    let scores = serde_json::json!({
        "quality": look.quality,
        "width": look.width,
        "height": look.height,
        "limits": look.limits,
        "faces": look.faces.len(),
        "plates": look.plates.len(),
        // Boxes blurred because a detector was unsure of them.
        "unsure": look.unsure.len(),
    });
    Ok(match look.quality.reasons.first() {
        Some(reason) => Verdict::Refuse {
            reason: reason.as_str(),
            scores,
            phash: look.phash,
            review: look.published,
        },
        None => Verdict::Publish(
            FrameVision {
                published_key: String::new(),
                phash: look.phash,
                faces: look.faces.len() as i32,
                plates: look.plates.len() as i32,
                quality: scores,
            },
            look.published,
        ),
    })
}

/// What becomes of a frame the vision stage looked at.
pub(crate) enum Verdict {
    /// Published as this derivative (faces and plates blurred).
    Publish(FrameVision, Vec<u8>),
    /// Refused for its quality, with the scores behind it and the blurred copy auditors see.
    Refuse {
        reason: &'static str,
        scores: serde_json::Value,
        phash: String,
        review: Vec<u8>,
    },
    /// Not a frame the stage could read (undecodable, too many pixels).
    Unreadable(&'static str, String),
}

/// The roads a track drove, cut into cells, and which of its fixes the matcher placed on them.
/// A track the matcher cannot place (off the map) has no stretches and no placed fixes.
fn match_track(
    graph: &RoadGraph,
    fixes: &[Fix],
    params: &MatchParams,
    resolution: Resolution,
) -> (Vec<covermap_domain::MatchedStretch>, Vec<bool>) {
    let Some(t0) = fixes.first().map(|f| f.at) else {
        return (Vec::new(), Vec::new());
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
        Ok(result) => {
            let placed = result.snaps.iter().map(Option::is_some).collect();
            (
                covermap_roads::matched_stretches(&result, graph, resolution),
                placed,
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "track could not be matched");
            (Vec::new(), vec![false; fixes.len()])
        }
    }
}
