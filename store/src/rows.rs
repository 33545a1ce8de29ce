//! What both backends share: the queue's failure rule and the encodings of values in rows.

use covermap_domain::{BoundingBox, Cell, LatLon, MatchedStretch, RoadCell, RoadSegment};

use crate::error::{Result, StoreError};
use crate::{JobFailure, JobOutcome, Lease, QueuePolicy, SessionPart, StoreStats, UploadSession};

pub(crate) fn gave_up(attempts: i32) -> String {
    format!("processing gave up after {attempts} attempts that did not finish")
}

pub(crate) enum NextStep {
    Retry { error: String },
    GiveUp { reason: String },
}

/// The queue's rule for a failed job: an unusable upload is rejected at once; anything else is
/// retried until the policy's attempts are spent.
pub(crate) fn next_step(lease: &Lease, failure: &JobFailure, policy: QueuePolicy) -> NextStep {
    match failure {
        JobFailure::Rejected(reason) => NextStep::GiveUp {
            reason: reason.clone(),
        },
        JobFailure::Transient(error) if lease.attempt >= policy.max_attempts => NextStep::GiveUp {
            reason: format!(
                "processing failed {} times; last error: {error}",
                lease.attempt
            ),
        },
        JobFailure::Transient(error) => NextStep::Retry {
            error: error.clone(),
        },
    }
}

pub(crate) fn node_ids_json(s: &RoadSegment) -> String {
    serde_json::to_string(&s.osm_node_ids).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn coords_json(s: &RoadSegment) -> String {
    let coords: Vec<[f64; 2]> = s.points.iter().map(|p| [p.lon, p.lat]).collect();
    serde_json::to_string(&coords).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn wkt_linestring(s: &RoadSegment) -> String {
    let coords: Vec<String> = s
        .points
        .iter()
        .map(|p| format!("{} {}", p.lon, p.lat))
        .collect();
    format!("LINESTRING({})", coords.join(","))
}

pub(crate) fn points_from_coords(coords: &serde_json::Value) -> Result<Vec<LatLon>> {
    let corrupt = || StoreError::Corrupt(format!("road geometry {coords} is not a line"));
    coords
        .as_array()
        .ok_or_else(corrupt)?
        .iter()
        .map(|c| match c.as_array().map(|xy| (xy.first(), xy.get(1))) {
            Some((Some(x), Some(y))) => {
                let (lon, lat) = (
                    x.as_f64().ok_or_else(corrupt)?,
                    y.as_f64().ok_or_else(corrupt)?,
                );
                Ok(LatLon::new(lat, lon)?)
            }
            _ => Err(corrupt()),
        })
        .collect()
}

pub(crate) fn points_from_geojson(geojson: &str) -> Result<Vec<LatLon>> {
    let value: serde_json::Value = serde_json::from_str(geojson)
        .map_err(|e| StoreError::Corrupt(format!("road geometry: {e}")))?;
    points_from_coords(&value["coordinates"])
}

pub(crate) fn points_from_json(text: &str) -> Result<Vec<LatLon>> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("road geometry: {e}")))?;
    points_from_coords(&value)
}

pub(crate) const STATS_SQL: &str = "SELECT \
    (SELECT COUNT(*) FROM uploads WHERE status = 'queued'), \
    (SELECT COUNT(*) FROM uploads WHERE status = 'processed'), \
    (SELECT COUNT(*) FROM uploads WHERE status = 'rejected'), \
    (SELECT COUNT(*) FROM jobs WHERE status = 'queued'), \
    (SELECT COUNT(*) FROM jobs WHERE status = 'leased'), \
    (SELECT COUNT(*) FROM jobs WHERE status = 'done'), \
    (SELECT COUNT(*) FROM jobs WHERE status = 'failed'), \
    (SELECT COUNT(DISTINCT cell) FROM cell_observations), \
    (SELECT COUNT(*) FROM road_segments)";

pub(crate) type StatsRow = (i64, i64, i64, i64, i64, i64, i64, i64, i64);

pub(crate) fn stats_from_row(r: StatsRow) -> StoreStats {
    StoreStats {
        uploads_queued: r.0,
        uploads_processed: r.1,
        uploads_rejected: r.2,
        jobs_queued: r.3,
        jobs_leased: r.4,
        jobs_done: r.5,
        jobs_failed: r.6,
        cells: r.7,
        road_segments: r.8,
    }
}

/// The matched length of an outcome; `None` when nothing was matched (no road network).
pub(crate) fn matched_m(outcome: &JobOutcome) -> Option<f64> {
    (!outcome.stretches.is_empty()).then(|| outcome.stretches.iter().map(|s| s.length_m).sum())
}

pub(crate) fn road_cells(rows: Vec<(i64, f64)>) -> Result<Vec<RoadCell>> {
    rows.into_iter()
        .map(|(cell, road_length_m)| {
            Ok(RoadCell {
                cell: Cell::from_i64(cell)?,
                road_length_m,
            })
        })
        .collect()
}

pub(crate) fn stretch(
    match_piece: i64,
    cell: i64,
    osm_way_id: i64,
    way_piece: i64,
    length_m: f64,
) -> Result<MatchedStretch> {
    Ok(MatchedStretch {
        match_piece: u32::try_from(match_piece)
            .map_err(|_| StoreError::Corrupt(format!("match piece {match_piece}")))?,
        cell: Cell::from_i64(cell)?,
        osm_way_id,
        way_piece: u32::try_from(way_piece)
            .map_err(|_| StoreError::Corrupt(format!("way piece {way_piece}")))?,
        length_m,
    })
}

/// The stored spelling of a value that the code knows as a `&'static str`.
/// A column of `row` by name; a missing column or a value of another type is `Corrupt`, never
/// a panic.
pub(crate) fn col<'r, R, T>(row: &'r R, name: &'static str) -> Result<T>
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

/// How many distinct cells an outcome touched: its track's, its radio observations' and its
/// frames'.
/// What an upload's row records of its trust: verdict, findings and evidence (`pending` and
/// nothing without a trust record), and the cells it credits: none once flagged.
pub(crate) struct TrustColumns<'a> {
    pub verdict: &'a str,
    pub findings: Option<&'a str>,
    pub evidence: Option<&'a str>,
    pub cells_seen: i64,
    pub cells: i64,
}

pub(crate) fn trust_columns(outcome: &JobOutcome) -> TrustColumns<'_> {
    let seen = cells_touched(outcome);
    match &outcome.trust {
        None => TrustColumns {
            verdict: "pending",
            findings: None,
            evidence: None,
            cells_seen: seen,
            cells: seen,
        },
        Some(t) => TrustColumns {
            verdict: t.verdict.as_str(),
            findings: Some(t.findings.as_str()),
            evidence: Some(t.evidence.as_str()),
            cells_seen: seen,
            cells: if t.verdict == "flagged" { 0 } else { seen },
        },
    }
}

/// Uploads whose rows every map leaves out, flagged or erased: `AND x.upload_id NOT IN (…)`.
pub(crate) const OFF_MAP_UPLOADS: &str =
    "(SELECT id FROM uploads WHERE trust = 'flagged' OR erased_at IS NOT NULL)";

pub(crate) fn cells_touched(outcome: &JobOutcome) -> i64 {
    let mut cells: Vec<i64> = outcome
        .visits
        .iter()
        .map(|v| v.cell.as_i64())
        .chain(outcome.radio.iter().map(|r| r.cell.as_i64()))
        .chain(outcome.frames.iter().map(|f| f.cell.as_i64()))
        .collect();
    cells.sort_unstable();
    cells.dedup();
    cells.len() as i64
}

/// Why a part could not be added: no session, the wrong offset, or past the declared size.
pub(crate) fn part_conflict(session: Option<UploadSession>, part: &SessionPart) -> StoreError {
    match session {
        None => StoreError::Conflict("no such upload session".into()),
        Some(s) if s.received_bytes != part.offset => StoreError::Conflict(format!(
            "the session stands at offset {}, not {}",
            s.received_bytes, part.offset
        )),
        Some(s) => StoreError::Conflict(format!(
            "a part of {} bytes at offset {} goes past the declared size of {} bytes",
            part.size, part.offset, s.size_bytes
        )),
    }
}

/// A frame's vision columns, present together or not at all (`quality` is null for frames
/// looked at before the quality scores were kept).
pub(crate) fn frame_vision(
    published_key: Option<String>,
    phash: Option<String>,
    faces: Option<i32>,
    plates: Option<i32>,
    quality: Option<String>,
) -> Option<crate::FrameVision> {
    Some(crate::FrameVision {
        published_key: published_key?,
        phash: phash?,
        faces: faces?,
        plates: plates?,
        quality: quality
            .and_then(|q| serde_json::from_str(&q).ok())
            .unwrap_or_default(),
    })
}

/// A road segment from its two columns, present together or not at all.
pub(crate) fn segment(
    osm_way_id: Option<i64>,
    way_piece: Option<i32>,
) -> Option<covermap_domain::SegmentRef> {
    Some(covermap_domain::SegmentRef {
        osm_way_id: osm_way_id?,
        way_piece: u32::try_from(way_piece?).ok()?,
    })
}

/// JSON kept as text (SQLite) or cast to text (Postgres), back to a value.
pub(crate) fn json(text: &str) -> crate::Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| crate::StoreError::Corrupt(format!("stored JSON is unreadable: {e}")))
}

/// Blob keys per due drive, one entry for every due drive (a drive whose blobs are all still
/// needed elsewhere is still marked expired, with nothing to delete).
pub(crate) fn group_due(ids: &[i64], keys: Vec<(i64, String)>) -> Vec<crate::DueOriginals> {
    let mut out: Vec<crate::DueOriginals> = ids
        .iter()
        .map(|&upload_id| crate::DueOriginals {
            upload_id,
            blob_keys: Vec::new(),
        })
        .collect();
    for (upload_id, key) in keys {
        if let Some(d) = out.iter_mut().find(|d| d.upload_id == upload_id) {
            d.blob_keys.push(key);
        }
    }
    out
}

/// A refused frame's placement in its drive, where all of it was kept (frames refused before
/// migration 0007 have none).
pub(crate) fn placement(
    sequence: Option<i32>,
    heading_deg: Option<f64>,
    width: Option<i32>,
    height: Option<i32>,
    osm_way_id: Option<i64>,
    way_piece: Option<i32>,
) -> Option<crate::FramePlacement> {
    Some(crate::FramePlacement {
        sequence: sequence?,
        heading_deg: heading_deg?,
        width: width?,
        height: height?,
        segment: segment(osm_way_id, way_piece),
    })
}

/// The one rule of what a decision may do to a refused frame, for both backends: a frame is
/// published from its review copy and its kept placement, so without either it cannot be
/// approved. `found` is `None` where there is no such refused frame, else (has a review copy,
/// has its placement).
pub(crate) fn check_decision(
    d: &crate::NewFrameDecision,
    found: Option<(bool, bool)>,
) -> crate::Result<()> {
    let (upload, frame) = (d.upload_id, d.frame);
    match found {
        None => Err(crate::StoreError::NotFound(format!(
            "no refused frame {frame} in upload {upload}"
        ))),
        Some((false, _)) if d.decision == crate::Decision::Approve => {
            Err(crate::StoreError::Conflict(format!(
                "frame {frame} of upload {upload} has no review copy (no blurred derivative): \
                 approving it would publish nothing; it can only be rejected"
            )))
        }
        Some((_, false)) if d.decision == crate::Decision::Approve => {
            Err(crate::StoreError::Conflict(format!(
                "frame {frame} of upload {upload} was refused before its place in the drive \
                 (sequence, heading, size, road) was kept; it cannot be published"
            )))
        }
        Some(_) => Ok(()),
    }
}

/// A box from (west, south, east, north), `None` where any side is missing (an empty table)
/// or not a coordinate.
pub(crate) fn extent(
    (west, south, east, north): (Option<f64>, Option<f64>, Option<f64>, Option<f64>),
) -> Option<BoundingBox> {
    let (west, south, east, north) = (west?, south?, east?, north?);
    let fine = |v: f64, limit: f64| v.is_finite() && v.abs() <= limit;
    (fine(west, 180.0)
        && fine(east, 180.0)
        && fine(south, 90.0)
        && fine(north, 90.0)
        && west <= east
        && south <= north)
        .then_some(BoundingBox {
            west,
            south,
            east,
            north,
        })
}

/// An upload's columns, in the order `upload_from_row` reads them.
pub(crate) const UPLOAD_COLUMNS: &str = "id, device, kind, sha256, size_bytes, received_at, status, \
     reason, fixes_accepted, fixes_rejected, cells, matched_m, processed_at, observations_accepted, \
     observations_rejected, contributor, rewardable, cells_seen, trust, trust_findings, \
     trust_epoch, evidence, copy_of, erased_at";

/// An epoch's columns.
pub(crate) const EPOCH_COLUMNS: &str = "epoch, start_at, end_at, status, closed_at, root, \
     policy_hash, emission, distributed, unallocated, bounty_paid";

/// A demand area with its cell count and what its bounties paid so far.
pub(crate) const AREA_QUERY: &str = "SELECT a.id, a.name, a.weight, CAST(a.polygon AS text) AS polygon, a.created_by, \
        a.created_at, a.expires_at, a.budget, a.refunded, a.refunded_epoch, \
        (SELECT COUNT(*) FROM demand_cells d WHERE d.area_id = a.id) AS cells, \
        (SELECT CAST(COALESCE(SUM(paid), 0) AS bigint) FROM bounty_claims b WHERE b.area_id = a.id) AS paid, \
        (SELECT COUNT(*) FROM bounty_claims b WHERE b.area_id = a.id) AS claimed \
     FROM demand_areas a";
