//! Camera frames and their audit: frames, perceptual hashes, the auditors' queue and decision log, imagery per cell.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{BoundingBox, Cell, ImageryCellSummary, LatLon};

use crate::dialect::Columns;
use crate::dialect::micros;
use crate::error::{Result, SqlContext, StoreError};
use crate::{
    AuditFrame, AuditQuery, Decision, FrameDecision, FrameHash, FrameImage, FrameRejectionRow,
    FrameReport, FrameRow, LateJudgement, NewFrameDecision, NewFrameReport, PgStore, ReportBlur,
    SqliteStore, rows, sqlite,
};
use covermap_domain::ReportDecision;

/// Camera frames and their audit: frames, perceptual hashes, the auditors' queue and decision log, imagery per cell.
#[async_trait]
pub trait Imagery: Send + Sync {
    /// The frames a drive produced, by frame index.
    async fn frames(&self, upload_id: i64) -> Result<Vec<FrameRow>>;

    /// Published frames in `cells` from uploads other than `exclude_upload`, with their hashes,
    /// at most `limit`: where a repeated picture would be found.
    async fn frame_hashes(
        &self,
        cells: &[Cell],
        exclude_upload: i64,
        limit: i64,
    ) -> Result<Vec<FrameHash>>;

    /// Refused frames for the auditors' queue, each with its current decision.
    async fn audit_frames(&self, query: &AuditQuery) -> Result<Vec<AuditFrame>>;

    /// Records an auditor's decision on a refused frame and applies it in one transaction (see
    /// [`Decision`]): approving publishes the frame, rejecting unpublishes an approved one.
    /// [`StoreError::NotFound`] if there is no such refused frame; [`StoreError::Conflict`] if
    /// it cannot be approved. Nothing is written on error.
    async fn decide_frame(
        &self,
        decision: &NewFrameDecision,
        now: DateTime<Utc>,
    ) -> Result<FrameDecision>;

    /// The decision log, newest first, at most `limit`, older than `before_id` if given.
    async fn frame_decisions(
        &self,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<FrameDecision>>;

    /// The blob key of a frame's blurred derivative: a published frame's, or a refused frame's
    /// review copy; `None` where there is no such frame or image.
    async fn frame_image(
        &self,
        upload_id: i64,
        frame: i32,
        which: FrameImage,
    ) -> Result<Option<String>>;

    /// Published imagery summed per cell, for cells whose frames lie in `bbox`.
    async fn imagery(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<ImageryCellSummary>>;

    /// Records a report of a published frame and hides the frame at once (not served, not on
    /// the imagery map) until an auditor decides; [`StoreError::NotFound`] where there is no
    /// such published frame (or it was taken down already).
    async fn report_frame(
        &self,
        report: &NewFrameReport,
        now: DateTime<Utc>,
    ) -> Result<FrameReport>;

    /// Reports, newest first, only those no auditor decided yet if `open_only`, at most
    /// `limit`.
    async fn frame_reports(&self, open_only: bool, limit: i64) -> Result<Vec<FrameReport>>;

    /// An auditor's decision on report `id` (see [`ReportDecision`]), applied in one
    /// transaction. Answers the report as decided and, where the frame was removed and no other
    /// frame publishes the same bytes, its derivative's blob key for the caller to delete.
    /// [`StoreError::NotFound`] if there is no such report; [`StoreError::Conflict`] if it was
    /// decided already.
    async fn decide_report(
        &self,
        id: i64,
        decision: ReportDecision,
        auditor: &str,
        now: DateTime<Utc>,
    ) -> Result<(FrameReport, Option<String>)>;

    /// Report `id`, decided or not.
    async fn frame_report(&self, id: i64) -> Result<Option<FrameReport>>;

    /// An auditor's decision to blur a reported frame further, applied in one transaction: the
    /// report is decided as `blur` with its boxes, the frame (and its refused row's review copy,
    /// for a frame an approval published) points at `to_key` instead of `from_key`, and it is
    /// shown again unless another report of it is still open. Answers the report as decided
    /// and, where nothing else publishes or shows it any more, `from_key` for the caller to
    /// delete. [`StoreError::NotFound`] if there is no such report; [`StoreError::Conflict`] if
    /// it was decided already, or the frame no longer publishes `from_key` (taken down, or
    /// blurred by someone else meanwhile). Nothing is written on error.
    async fn blur_reported_frame(
        &self,
        blur: &ReportBlur,
        now: DateTime<Utc>,
    ) -> Result<(FrameReport, Option<String>)>;

    /// Frames kept pending because the vision models were missing whose originals are still
    /// kept, with their uploads, in (upload, frame) order after `after`, at most `limit`.
    async fn pending_frames(
        &self,
        after: Option<(i64, i32)>,
        limit: i64,
    ) -> Result<Vec<(i64, FrameRow)>>;

    /// Writes the vision stage's late verdict on a pending frame in one transaction (see
    /// [`LateJudgement`]): published as judged at `now`, or taken out of the drive's frames
    /// (into the auditors' queue where refused) with the reason among its upload's rejections
    /// and its counts moved from kept to refused. `false`, and nothing written, if the frame is
    /// no longer pending.
    async fn judge_pending_frame(
        &self,
        upload_id: i64,
        frame: i32,
        judgement: &LateJudgement,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}

// A drive's frames: PostGIS reads the position out of `geom` and casts the JSONB `quality` to
// text; SQLite keeps `lat`, `lon` and text.
const PG_FRAMES: &str = "SELECT frame, sequence, sha256, blob_key, captured_at, heading_deg, \
         width, height, cell, ST_Y(geom) AS lat, ST_X(geom) AS lon, published_key, phash, \
         faces, plates, quality::text AS quality, osm_way_id, way_piece \
     FROM frames WHERE upload_id = $1 ORDER BY frame";
const SQLITE_FRAMES: &str = "SELECT frame, sequence, sha256, blob_key, captured_at, heading_deg, \
         width, height, cell, lat, lon, published_key, phash, faces, plates, quality, \
         osm_way_id, way_piece \
     FROM frames WHERE upload_id = $1 ORDER BY frame";

// Published frames' hashes in some cells: PostgreSQL binds the cells as one array
// (`= ANY($1)`), SQLite lists them (`IN (?, …)`), a chunk of cells at a time.
const PG_FRAME_HASHES: &str = "SELECT upload_id, frame, phash FROM frames \
     WHERE cell = ANY($1) AND upload_id <> $2 AND status = 'published' AND phash IS NOT NULL \
     ORDER BY upload_id, frame LIMIT $3";
fn sqlite_frame_hashes(cells: usize) -> String {
    format!(
        "SELECT upload_id, frame, phash FROM frames \
         WHERE cell IN ({}) AND upload_id <> ? AND status = 'published' AND phash IS NOT NULL \
         ORDER BY upload_id, frame LIMIT ?",
        sqlite::placeholders(cells)
    )
}

// The auditors' queue (erased uploads' frames left out): PostGIS reads the position out of
// `geom`, casts JSONB `scores` to text,
// finds the newest decision by `LATERAL`, types its null parameters and compares (upload, frame)
// as a row; SQLite keeps `lat`, `lon` and text, finds the newest decision by `MAX(id)`, and
// spells the comparison out.
const PG_AUDIT_FRAMES: &str = "SELECT r.upload_id, u.device, u.contributor, r.frame, r.reason, \
         r.scores::text AS scores, r.sha256, r.blob_key, r.review_key, r.phash, \
         r.duplicate_of_upload, r.duplicate_of_frame, r.captured_at, r.cell, \
         ST_Y(r.geom) AS lat, ST_X(r.geom) AS lon, r.sequence, r.heading_deg, \
         r.width, r.height, r.osm_way_id, r.way_piece, d.id AS d_id, \
         d.decision AS d_decision, d.note AS d_note, d.auditor AS d_auditor, \
         d.auditor_key_id AS d_auditor_key_id, d.decided_at AS d_decided_at \
     FROM frame_rejections r JOIN uploads u ON u.id = r.upload_id \
     LEFT JOIN LATERAL (SELECT * FROM frame_decisions x \
         WHERE x.upload_id = r.upload_id AND x.frame = r.frame \
         ORDER BY x.id DESC LIMIT 1) d ON TRUE \
     WHERE u.erased_at IS NULL AND ($1::text IS NULL OR r.reason = $1) \
       AND ($2::bigint IS NULL OR r.upload_id = $2) \
       AND ($3::bigint IS NULL OR (r.upload_id, r.frame) > ($3, $4::int)) \
       AND (NOT $6 OR d.id IS NULL) \
     ORDER BY r.upload_id, r.frame LIMIT $5";
const SQLITE_AUDIT_FRAMES: &str = "SELECT r.upload_id, u.device, u.contributor, r.frame, \
         r.reason, r.scores, r.sha256, r.blob_key, r.review_key, r.phash, \
         r.duplicate_of_upload, r.duplicate_of_frame, r.captured_at, r.cell, r.lat, r.lon, \
         r.sequence, r.heading_deg, r.width, r.height, r.osm_way_id, r.way_piece, \
         d.id AS d_id, d.decision AS d_decision, d.note AS d_note, d.auditor AS d_auditor, \
         d.auditor_key_id AS d_auditor_key_id, d.decided_at AS d_decided_at \
     FROM frame_rejections r JOIN uploads u ON u.id = r.upload_id \
     LEFT JOIN frame_decisions d ON d.id = (SELECT MAX(x.id) FROM frame_decisions x \
         WHERE x.upload_id = r.upload_id AND x.frame = r.frame) \
     WHERE u.erased_at IS NULL AND ($1 IS NULL OR r.reason = $1) \
       AND ($2 IS NULL OR r.upload_id = $2) \
       AND ($3 IS NULL OR r.upload_id > $3 OR (r.upload_id = $3 AND r.frame > $4)) \
       AND (NOT $6 OR d.id IS NULL) \
     ORDER BY r.upload_id, r.frame LIMIT $5";

// A refused frame (has a review copy, has its placement): PostgreSQL locks its row
// (`FOR UPDATE`); SQLite's writer (`BEGIN IMMEDIATE`) holds the whole database already.
const PG_REFUSED_FRAME: &str = "SELECT review_key IS NOT NULL, \
         sequence IS NOT NULL AND heading_deg IS NOT NULL \
         AND width IS NOT NULL AND height IS NOT NULL \
     FROM frame_rejections WHERE upload_id = $1 AND frame = $2 FOR UPDATE";
const SQLITE_REFUSED_FRAME: &str = "SELECT review_key IS NOT NULL, \
         sequence IS NOT NULL AND heading_deg IS NOT NULL \
         AND width IS NOT NULL AND height IS NOT NULL \
     FROM frame_rejections WHERE upload_id = $1 AND frame = $2";

/// Records an auditor's decision; returns the row as [`decision_from_row`] reads it.
const RECORD_DECISION: &str = "INSERT INTO frame_decisions (upload_id, frame, decision, note, \
         auditor, auditor_key_id, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     RETURNING id, upload_id, frame, decision, note, auditor, auditor_key_id, decided_at";

// Publishes refused frame ($1, $2) from its own row, approved by decision $3: PostGIS copies
// `geom` and reads the counts out of JSONB `scores` with `->>`; SQLite copies `lat`, `lon` and
// reads them out of text `scores` with `json_type`/`json_extract`.
// The partitioned PostgreSQL `frames` has no unique key on (upload_id, frame) alone (its key holds
// the cell and partition key too, copied here), so the conflict names no columns.
const PG_PUBLISH_APPROVED_FRAME: &str = "INSERT INTO frames (upload_id, frame, sequence, sha256, \
         blob_key, captured_at, heading_deg, width, height, cell, geom, status, published_key, \
         phash, faces, plates, quality, osm_way_id, way_piece, original_expired_at, decision_id, \
         received_at) \
     SELECT upload_id, frame, sequence, sha256, blob_key, captured_at, heading_deg, \
         width, height, cell, geom, 'published', review_key, phash, \
         CASE WHEN scores->>'faces' ~ '^[0-9]{1,9}$' THEN (scores->>'faces')::int END, \
         CASE WHEN scores->>'plates' ~ '^[0-9]{1,9}$' THEN (scores->>'plates')::int END, \
         scores, osm_way_id, way_piece, original_expired_at, $3, received_at \
     FROM frame_rejections WHERE upload_id = $1 AND frame = $2 \
     ON CONFLICT DO NOTHING";
const SQLITE_PUBLISH_APPROVED_FRAME: &str = "INSERT INTO frames (upload_id, frame, sequence, \
         sha256, blob_key, captured_at, heading_deg, width, height, cell, lat, lon, status, \
         published_key, phash, faces, plates, quality, osm_way_id, way_piece, \
         original_expired_at, decision_id) \
     SELECT upload_id, frame, sequence, sha256, blob_key, captured_at, heading_deg, \
         width, height, cell, lat, lon, 'published', review_key, phash, \
         CASE WHEN json_type(scores, '$.faces') = 'integer' \
              THEN json_extract(scores, '$.faces') END, \
         CASE WHEN json_type(scores, '$.plates') = 'integer' \
              THEN json_extract(scores, '$.plates') END, \
         scores, osm_way_id, way_piece, original_expired_at, $3 \
     FROM frame_rejections WHERE upload_id = $1 AND frame = $2 \
     ON CONFLICT (upload_id, frame) DO NOTHING";

/// Unpublishes a rejected frame: only a frame an approval published; never one the vision stage
/// published.
const UNPUBLISH_REJECTED_FRAME: &str = "DELETE FROM frames \
     WHERE upload_id = $1 AND frame = $2 AND decision_id IS NOT NULL";

/// The decision log, newest first, older than `$1` where given, at most `$2`.
const FRAME_DECISIONS: &str = "SELECT id, upload_id, frame, decision, note, auditor, \
         auditor_key_id, decided_at \
     FROM frame_decisions WHERE (CAST($1 AS bigint) IS NULL OR id < $1) \
     ORDER BY id DESC LIMIT $2";

/// A published frame's blurred derivative, unless its upload is flagged.
const PUBLISHED_FRAME_IMAGE: &str = "SELECT published_key FROM frames \
     WHERE upload_id = $1 AND frame = $2 AND status = 'published' AND hidden_at IS NULL \
       AND upload_id NOT IN (SELECT id FROM uploads WHERE trust = 'flagged')";

/// A refused frame's review copy.
const REVIEW_FRAME_IMAGE: &str =
    "SELECT review_key FROM frame_rejections WHERE upload_id = $1 AND frame = $2";

// Imagery per cell in the box (west $1, south $2, east $3, north $4): PostGIS tests `geom`
// against the box (`&&`, its GiST index), SQLite compares the `lon`, `lat` columns.
const PG_IMAGERY: &str = "SELECT f.cell, COUNT(*) AS frames, \
         COUNT(DISTINCT COALESCE(u.contributor, u.device)) AS contributors, \
         COUNT(DISTINCT f.osm_way_id || ':' || f.way_piece) AS segments, \
         MAX(f.captured_at) AS newest, MIN(f.captured_at) AS oldest \
     FROM frames f JOIN uploads u ON u.id = f.upload_id \
     WHERE f.status = 'published' AND f.hidden_at IS NULL AND u.trust <> 'flagged' \
       AND f.geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) \
     GROUP BY f.cell ORDER BY f.cell LIMIT $5";
const SQLITE_IMAGERY: &str = "SELECT f.cell, COUNT(*) AS frames, \
         COUNT(DISTINCT COALESCE(u.contributor, u.device)) AS contributors, \
         COUNT(DISTINCT f.osm_way_id || ':' || f.way_piece) AS segments, \
         MAX(f.captured_at) AS newest, MIN(f.captured_at) AS oldest \
     FROM frames f JOIN uploads u ON u.id = f.upload_id \
     WHERE f.status = 'published' AND f.hidden_at IS NULL AND u.trust <> 'flagged' \
       AND f.lon BETWEEN $1 AND $3 AND f.lat BETWEEN $2 AND $4 \
     GROUP BY f.cell ORDER BY f.cell LIMIT $5";

/// A published frame still shown or hidden but not taken down, locked on PostgreSQL where
/// `FOR UPDATE` is appended.
const REPORTABLE_FRAME: &str = "SELECT published_key FROM frames \
     WHERE upload_id = $1 AND frame = $2 AND status = 'published' AND removed_at IS NULL";

/// Report of frame `$2` of upload `$1` for reason `$3` (note `$4`) by `$5` at `$6`.
const INSERT_REPORT: &str = "INSERT INTO frame_reports \
         (upload_id, frame, reason, note, reporter, reported_at) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING *";

/// Hides frame `$2` of upload `$1` from `$3` (if not hidden already).
const HIDE_FRAME: &str = "UPDATE frames SET hidden_at = COALESCE(hidden_at, $3) \
     WHERE upload_id = $1 AND frame = $2";

/// Reports, newest first (`$1`: only open ones), at most `$2`.
const REPORTS: &str = "SELECT * FROM frame_reports \
     WHERE (NOT $1 OR decision IS NULL) ORDER BY id DESC LIMIT $2";

/// Report `$1`.
const REPORT: &str = "SELECT * FROM frame_reports WHERE id = $1";

/// Decides report `$1`: `$2` by `$3` at `$4`.
const DECIDE_REPORT: &str = "UPDATE frame_reports \
     SET decision = $2, decided_by = $3, decided_at = $4 \
     WHERE id = $1 AND decision IS NULL RETURNING *";

/// Shows frame `$2` of upload `$1` again, unless another report of it is still open or it was
/// taken down.
const SHOW_FRAME: &str = "UPDATE frames SET hidden_at = NULL \
     WHERE upload_id = $1 AND frame = $2 AND removed_at IS NULL \
       AND NOT EXISTS (SELECT 1 FROM frame_reports r \
           WHERE r.upload_id = $1 AND r.frame = $2 AND r.decision IS NULL)";

/// Takes frame `$2` of upload `$1` down at `$3`; answers its derivative's key.
const REMOVE_FRAME: &str = "UPDATE frames \
     SET removed_at = $3, hidden_at = COALESCE(hidden_at, $3) \
     WHERE upload_id = $1 AND frame = $2 RETURNING published_key";

/// Closes the other open reports of frame `$2` of upload `$1` as removed by `$3` at `$4`.
const CLOSE_REPORTS: &str = "UPDATE frame_reports \
     SET decision = 'remove', decided_by = $3, decided_at = $4 \
     WHERE upload_id = $1 AND frame = $2 AND decision IS NULL";

/// Other frames publishing derivative `$1` (the same bytes), taken down or not.
const SAME_DERIVATIVE: &str = "SELECT COUNT(*) FROM frames \
     WHERE published_key = $1 AND removed_at IS NULL";

/// Decides report `$1` as blurred further, with boxes `$2` (JSON), by `$3` at `$4`.
const BLUR_REPORT: &str = "UPDATE frame_reports \
     SET decision = 'blur', boxes = $2, decided_by = $3, decided_at = $4 \
     WHERE id = $1 AND decision IS NULL RETURNING *";

/// Points frame `$2` of upload `$1` from derivative `$3` to `$4`, if it still publishes `$3`.
const REPLACE_DERIVATIVE: &str = "UPDATE frames SET published_key = $4 \
     WHERE upload_id = $1 AND frame = $2 AND status = 'published' AND removed_at IS NULL \
       AND published_key = $3";

/// Points the review copy of refused frame `$2` of upload `$1` from `$3` to `$4`: an approval
/// published the frame from it, and would again.
const REPLACE_REVIEW_COPY: &str = "UPDATE frame_rejections SET review_key = $4 \
     WHERE upload_id = $1 AND frame = $2 AND review_key = $3";

/// Frames still publishing derivative `$1`, and refused frames showing it to auditors.
const DERIVATIVE_USES: &str = "SELECT \
     (SELECT COUNT(*) FROM frames WHERE published_key = $1 AND removed_at IS NULL) \
     + (SELECT COUNT(*) FROM frame_rejections WHERE review_key = $1)";

/// The boxes of a blur decision, as the `boxes` column keeps them.
fn boxes_json(boxes: &[covermap_domain::BlurBox]) -> Result<String> {
    serde_json::to_string(boxes).map_err(|e| StoreError::Corrupt(format!("blur boxes: {e}")))
}

/// A `frame_reports` row.
fn report_from_row(r: &impl Columns) -> Result<FrameReport> {
    Ok(FrameReport {
        id: r.col("id")?,
        upload_id: r.col("upload_id")?,
        frame: r.col("frame")?,
        reason: r.word("reason")?,
        note: r.col("note")?,
        reporter: r.col("reporter")?,
        reported_at: r.time("reported_at")?,
        decision: r.opt_word("decision")?,
        decided_by: r.col("decided_by")?,
        decided_at: r.opt_time("decided_at")?,
        boxes: r
            .col::<Option<String>>("boxes")?
            .map(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("report's boxes are unreadable: {e}")))
            })
            .transpose()?,
    })
}

// Pending frames (migration 0011's partial index): positions as in `PG_FRAMES`/`SQLITE_FRAMES`.
const PG_PENDING_FRAMES: &str = "SELECT f.upload_id, f.frame, f.sequence, f.sha256, \
         f.blob_key, f.captured_at, f.heading_deg, f.width, f.height, f.cell, \
         ST_Y(f.geom) AS lat, ST_X(f.geom) AS lon, f.published_key, f.phash, f.faces, \
         f.plates, f.quality::text AS quality, f.osm_way_id, f.way_piece \
     FROM frames f \
     WHERE f.status = 'pending' AND f.original_expired_at IS NULL \
       AND (f.upload_id, f.frame) > ($1, $2) \
     ORDER BY f.upload_id, f.frame LIMIT $3";
const SQLITE_PENDING_FRAMES: &str = "SELECT f.upload_id, f.frame, f.sequence, f.sha256, \
         f.blob_key, f.captured_at, f.heading_deg, f.width, f.height, f.cell, f.lat, f.lon, \
         f.published_key, f.phash, f.faces, f.plates, f.quality, f.osm_way_id, f.way_piece \
     FROM frames f \
     WHERE f.status = 'pending' AND f.original_expired_at IS NULL \
       AND (f.upload_id, f.frame) > ($1, $2) \
     ORDER BY f.upload_id, f.frame LIMIT $3";

// Frame `$2` of upload `$1`, if still pending: PostgreSQL locks its row; SQLite's writer
// already holds the database.
const PG_PENDING_FRAME: &str = "SELECT 1 FROM frames \
     WHERE upload_id = $1 AND frame = $2 AND status = 'pending' FOR UPDATE";
const SQLITE_PENDING_FRAME: &str = "SELECT 1 FROM frames \
     WHERE upload_id = $1 AND frame = $2 AND status = 'pending'";

// Publishes pending frame `$2` of upload `$1` as judged at `$8`: `quality` is JSONB on
// PostgreSQL, text on SQLite.
const PG_PUBLISH_LATE: &str = "UPDATE frames SET status = 'published', published_key = $3, \
         phash = $4, faces = $5, plates = $6, quality = $7::jsonb, judged_at = $8 \
     WHERE upload_id = $1 AND frame = $2";
const SQLITE_PUBLISH_LATE: &str = "UPDATE frames SET status = 'published', published_key = $3, \
         phash = $4, faces = $5, plates = $6, quality = $7, judged_at = $8 \
     WHERE upload_id = $1 AND frame = $2";

// Refuses pending frame `$2` of upload `$1` for reason `$3` with scores `$4`, review copy `$5`,
// hash `$6` and the frame it repeats (`$7`, `$8`): its row is copied from `frames`, with its
// position (`geom` on PostgreSQL, `lat`/`lon` on SQLite) and placement.
const PG_REFUSE_LATE: &str = "INSERT INTO frame_rejections (upload_id, frame, reason, scores, \
         sha256, blob_key, review_key, phash, duplicate_of_upload, duplicate_of_frame, \
         captured_at, cell, geom, sequence, heading_deg, width, height, osm_way_id, way_piece, \
         received_at) \
     SELECT upload_id, frame, $3, $4::jsonb, sha256, blob_key, $5, $6, $7, $8, captured_at, \
         cell, geom, sequence, heading_deg, width, height, osm_way_id, way_piece, received_at \
     FROM frames WHERE upload_id = $1 AND frame = $2";
const SQLITE_REFUSE_LATE: &str = "INSERT INTO frame_rejections (upload_id, frame, reason, \
         scores, sha256, blob_key, review_key, phash, duplicate_of_upload, duplicate_of_frame, \
         captured_at, cell, lat, lon, sequence, heading_deg, width, height, osm_way_id, \
         way_piece) \
     SELECT upload_id, frame, $3, $4, sha256, blob_key, $5, $6, $7, $8, captured_at, cell, \
         lat, lon, sequence, heading_deg, width, height, osm_way_id, way_piece \
     FROM frames WHERE upload_id = $1 AND frame = $2";

/// Takes frame `$2` of upload `$1` out of its drive's frames.
const DROP_FRAME: &str = "DELETE FROM frames WHERE upload_id = $1 AND frame = $2";

/// Adds rejection (`$2` stage, `$3` item, `$4` reason, `$5` detail) to upload `$1`'s, last
/// (on PostgreSQL with the upload's `received_at`, the partition key).
const PG_ADD_REJECTION: &str = "INSERT INTO rejected_observations \
         (upload_id, seq, stage, item, reason, detail, received_at) \
     SELECT $1, COALESCE(MAX(seq) + 1, 0), $2, $3, $4, $5, \
         (SELECT received_at FROM uploads WHERE id = $1) \
     FROM rejected_observations WHERE upload_id = $1";
const SQLITE_ADD_REJECTION: &str = "INSERT INTO rejected_observations \
         (upload_id, seq, stage, item, reason, detail) \
     SELECT $1, COALESCE(MAX(seq) + 1, 0), $2, $3, $4, $5 \
     FROM rejected_observations WHERE upload_id = $1";

/// Counts one of upload `$1`'s kept frames as refused.
const COUNT_LATE_REFUSAL: &str = "UPDATE uploads \
     SET observations_accepted = COALESCE(observations_accepted, 1) - 1, \
         observations_rejected = COALESCE(observations_rejected, 0) + 1 \
     WHERE id = $1";

/// A `frames` row, with its position as `lat` and `lon` and `quality` as text.
fn frame_from_row(r: &impl Columns) -> Result<FrameRow> {
    Ok(FrameRow {
        frame: r.col("frame")?,
        sequence: r.col("sequence")?,
        sha256: r.col("sha256")?,
        blob_key: r.col("blob_key")?,
        captured_at: r.time("captured_at")?,
        heading_deg: r.col("heading_deg")?,
        width: r.col("width")?,
        height: r.col("height")?,
        pos: LatLon::new(r.col("lat")?, r.col("lon")?)?,
        cell: Cell::from_i64(r.col("cell")?)?,
        vision: rows::frame_vision(
            r.col("published_key")?,
            r.col("phash")?,
            r.col("faces")?,
            r.col("plates")?,
            r.col("quality")?,
        ),
        segment: rows::segment(r.col("osm_way_id")?, r.col("way_piece")?),
    })
}

/// A row of the auditors' queue: the refused frame (position as `lat` and `lon`, `scores` as
/// text), its upload's device and contributor, and its newest decision as `d_…` columns
/// (`d_id` null where there is none).
fn audit_frame_from_row(r: &impl Columns) -> Result<AuditFrame> {
    let device: String = r.col("device")?;
    let scores: String = r.col("scores")?;
    let dup_upload: Option<i64> = r.col("duplicate_of_upload")?;
    let dup_frame: Option<i32> = r.col("duplicate_of_frame")?;
    let upload_id: i64 = r.col("upload_id")?;
    let frame: i32 = r.col("frame")?;
    let decision = match r.col::<Option<i64>>("d_id")? {
        None => None,
        Some(id) => Some(FrameDecision {
            id,
            upload_id,
            frame,
            decision: r.word("d_decision")?,
            note: r.col("d_note")?,
            auditor: r.col("d_auditor")?,
            auditor_key_id: r.col("d_auditor_key_id")?,
            decided_at: r.time("d_decided_at")?,
        }),
    };
    Ok(AuditFrame {
        upload_id,
        device: device
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("{e}")))?,
        contributor: r.col("contributor")?,
        row: FrameRejectionRow {
            frame,
            reason: r.col("reason")?,
            scores: rows::json(&scores)?,
            sha256: r.col("sha256")?,
            blob_key: r.col("blob_key")?,
            review_key: r.col("review_key")?,
            phash: r.col("phash")?,
            duplicate_of: dup_upload.zip(dup_frame),
            captured_at: r.time("captured_at")?,
            pos: LatLon::new(r.col("lat")?, r.col("lon")?)?,
            cell: Cell::from_i64(r.col("cell")?)?,
            placement: rows::placement(
                r.col("sequence")?,
                r.col("heading_deg")?,
                r.col("width")?,
                r.col("height")?,
                r.col("osm_way_id")?,
                r.col("way_piece")?,
            ),
        },
        decision,
    })
}

/// A `frame_decisions` row.
pub(crate) fn decision_from_row(row: &impl Columns) -> Result<FrameDecision> {
    Ok(FrameDecision {
        id: row.col("id")?,
        upload_id: row.col("upload_id")?,
        frame: row.col("frame")?,
        decision: row.word("decision")?,
        note: row.col("note")?,
        auditor: row.col("auditor")?,
        auditor_key_id: row.col("auditor_key_id")?,
        decided_at: row.time("decided_at")?,
    })
}

/// A row of imagery per cell: `cell`, `frames`, `contributors`, `segments`, `newest`, `oldest`.
fn imagery_cell_from_row(r: &impl Columns) -> Result<ImageryCellSummary> {
    Ok(ImageryCellSummary {
        cell: Cell::from_i64(r.col("cell")?)?,
        frames: r.col("frames")?,
        contributors: r.col("contributors")?,
        segments: r.col("segments")?,
        newest: r.time("newest")?,
        oldest: r.time("oldest")?,
    })
}

#[async_trait]
impl Imagery for PgStore {
    async fn frames(&self, upload_id: i64) -> Result<Vec<FrameRow>> {
        let rows = sqlx::query(PG_FRAMES)
            .bind(upload_id)
            .fetch_all(&self.pool)
            .await
            .ctx("reading frames")?;
        rows.iter().map(frame_from_row).collect()
    }

    async fn frame_hashes(
        &self,
        cells: &[Cell],
        exclude_upload: i64,
        limit: i64,
    ) -> Result<Vec<FrameHash>> {
        let rows: Vec<(i64, i32, String)> = sqlx::query_as(PG_FRAME_HASHES)
            .bind(cells.iter().map(|c| c.as_i64()).collect::<Vec<_>>())
            .bind(exclude_upload)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading frame hashes")?;
        Ok(rows
            .into_iter()
            .map(|(upload_id, frame, phash)| FrameHash {
                upload_id,
                frame,
                phash,
            })
            .collect())
    }

    async fn audit_frames(&self, query: &AuditQuery) -> Result<Vec<AuditFrame>> {
        let rows = sqlx::query(PG_AUDIT_FRAMES)
            .bind(query.reason.as_deref())
            .bind(query.upload_id)
            .bind(query.after.map(|a| a.0))
            .bind(query.after.map(|a| a.1))
            .bind(query.limit)
            .bind(query.undecided_only)
            .fetch_all(&self.pool)
            .await
            .ctx("reading the audit queue")?;
        rows.iter().map(audit_frame_from_row).collect()
    }

    async fn decide_frame(
        &self,
        d: &NewFrameDecision,
        now: DateTime<Utc>,
    ) -> Result<FrameDecision> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        // The refused frame, locked: decisions on one frame apply one after the other.
        let found: Option<(bool, bool)> = sqlx::query_as(PG_REFUSED_FRAME)
            .bind(d.upload_id)
            .bind(d.frame)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a refused frame")?;
        rows::check_decision(d, found)?;
        let row = sqlx::query(RECORD_DECISION)
            .bind(d.upload_id)
            .bind(d.frame)
            .bind(d.decision.as_str())
            .bind(&d.note)
            .bind(&d.auditor)
            .bind(d.auditor_key_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .ctx("recording a decision")?;
        let decided = decision_from_row(&row)?;
        match d.decision {
            // Published from the refused frame's own row; an approval of a frame approved
            // already leaves it as it is.
            Decision::Approve => sqlx::query(PG_PUBLISH_APPROVED_FRAME)
                .bind(d.upload_id)
                .bind(d.frame)
                .bind(decided.id)
                .execute(&mut *tx)
                .await
                .ctx("publishing an approved frame")?,
            // Only a frame an approval published; never one the vision stage published.
            Decision::Reject => sqlx::query(UNPUBLISH_REJECTED_FRAME)
                .bind(d.upload_id)
                .bind(d.frame)
                .execute(&mut *tx)
                .await
                .ctx("unpublishing a rejected frame")?,
        };
        tx.commit().await.ctx("committing a decision")?;
        Ok(decided)
    }

    async fn frame_decisions(
        &self,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<FrameDecision>> {
        let rows = sqlx::query(FRAME_DECISIONS)
            .bind(before_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading the decision log")?;
        rows.iter().map(decision_from_row).collect()
    }

    async fn frame_image(
        &self,
        upload_id: i64,
        frame: i32,
        which: FrameImage,
    ) -> Result<Option<String>> {
        let sql = match which {
            FrameImage::Published => PUBLISHED_FRAME_IMAGE,
            FrameImage::Review => REVIEW_FRAME_IMAGE,
            FrameImage::Reported => REPORTABLE_FRAME,
        };
        let key: Option<(Option<String>,)> = sqlx::query_as(sql)
            .bind(upload_id)
            .bind(frame)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a frame's image")?;
        Ok(key.and_then(|k| k.0))
    }

    async fn imagery(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<ImageryCellSummary>> {
        let rows = sqlx::query(PG_IMAGERY)
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading imagery")?;
        rows.iter().map(imagery_cell_from_row).collect()
    }

    async fn report_frame(
        &self,
        report: &NewFrameReport,
        now: DateTime<Utc>,
    ) -> Result<FrameReport> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let found = sqlx::query(&format!("{REPORTABLE_FRAME} FOR UPDATE"))
            .bind(report.upload_id)
            .bind(report.frame)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a reported frame")?;
        if found.is_none() {
            return Err(no_published_frame(report.upload_id, report.frame));
        }
        let row = sqlx::query(INSERT_REPORT)
            .bind(report.upload_id)
            .bind(report.frame)
            .bind(report.reason.as_str())
            .bind(&report.note)
            .bind(&report.reporter)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .ctx("recording a report")?;
        sqlx::query(HIDE_FRAME)
            .bind(report.upload_id)
            .bind(report.frame)
            .bind(now)
            .execute(&mut *tx)
            .await
            .ctx("hiding a reported frame")?;
        tx.commit().await.ctx("committing a report")?;
        report_from_row(&row)
    }

    async fn frame_reports(&self, open_only: bool, limit: i64) -> Result<Vec<FrameReport>> {
        let rows = sqlx::query(REPORTS)
            .bind(open_only)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading reports")?;
        rows.iter().map(report_from_row).collect()
    }

    async fn frame_report(&self, id: i64) -> Result<Option<FrameReport>> {
        let row = sqlx::query(REPORT)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a report")?;
        row.as_ref().map(report_from_row).transpose()
    }

    async fn blur_reported_frame(
        &self,
        blur: &ReportBlur,
        now: DateTime<Utc>,
    ) -> Result<(FrameReport, Option<String>)> {
        let boxes = boxes_json(&blur.boxes)?;
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let Some(asked) = sqlx::query(REPORT)
            .bind(blur.report_id)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a report")?
        else {
            return Err(undecidable(blur.report_id, false));
        };
        let asked = report_from_row(&asked)?;
        // The frame first, locked, as a report of it locks it: a report made meanwhile is
        // either seen below (the frame stays hidden) or made after this one is done.
        sqlx::query(&format!("{REPORTABLE_FRAME} FOR UPDATE"))
            .bind(asked.upload_id)
            .bind(asked.frame)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a reported frame")?;
        let Some(row) = sqlx::query(BLUR_REPORT)
            .bind(blur.report_id)
            .bind(&boxes)
            .bind(&blur.auditor)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .ctx("deciding a report")?
        else {
            return Err(undecidable(blur.report_id, true));
        };
        let report = report_from_row(&row)?;
        let moved = sqlx::query(REPLACE_DERIVATIVE)
            .bind(report.upload_id)
            .bind(report.frame)
            .bind(&blur.from_key)
            .bind(&blur.to_key)
            .execute(&mut *tx)
            .await
            .ctx("pointing a frame at its blurred copy")?
            .rows_affected();
        if moved != 1 {
            return Err(derivative_changed(report.upload_id, report.frame));
        }
        sqlx::query(REPLACE_REVIEW_COPY)
            .bind(report.upload_id)
            .bind(report.frame)
            .bind(&blur.from_key)
            .bind(&blur.to_key)
            .execute(&mut *tx)
            .await
            .ctx("pointing a review copy at its blurred copy")?;
        sqlx::query(SHOW_FRAME)
            .bind(report.upload_id)
            .bind(report.frame)
            .execute(&mut *tx)
            .await
            .ctx("showing a frame again")?;
        let (uses,): (i64,) = sqlx::query_as(DERIVATIVE_USES)
            .bind(&blur.from_key)
            .fetch_one(&mut *tx)
            .await
            .ctx("looking for the same derivative")?;
        tx.commit().await.ctx("committing a report's decision")?;
        Ok((report, (uses == 0).then(|| blur.from_key.clone())))
    }

    async fn decide_report(
        &self,
        id: i64,
        decision: ReportDecision,
        auditor: &str,
        now: DateTime<Utc>,
    ) -> Result<(FrameReport, Option<String>)> {
        blur_needs_boxes(decision)?;
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let decided = sqlx::query(DECIDE_REPORT)
            .bind(id)
            .bind(decision.as_str())
            .bind(auditor)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .ctx("deciding a report")?;
        let Some(row) = decided else {
            let exists = sqlx::query(REPORT)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .ctx("reading a report")?;
            return Err(undecidable(id, exists.is_some()));
        };
        let report = report_from_row(&row)?;
        let mut delete = None;
        match decision {
            ReportDecision::Keep => {
                sqlx::query(SHOW_FRAME)
                    .bind(report.upload_id)
                    .bind(report.frame)
                    .execute(&mut *tx)
                    .await
                    .ctx("showing a frame again")?;
            }
            // Refused above: a blur carries its boxes and blurred copy.
            ReportDecision::Blur => {}
            ReportDecision::Remove => {
                let key: Option<(Option<String>,)> = sqlx::query_as(REMOVE_FRAME)
                    .bind(report.upload_id)
                    .bind(report.frame)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx("taking a frame down")?;
                sqlx::query(CLOSE_REPORTS)
                    .bind(report.upload_id)
                    .bind(report.frame)
                    .bind(auditor)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .ctx("closing a frame's reports")?;
                if let Some((Some(key),)) = key {
                    let (others,): (i64,) = sqlx::query_as(SAME_DERIVATIVE)
                        .bind(&key)
                        .fetch_one(&mut *tx)
                        .await
                        .ctx("looking for the same derivative")?;
                    delete = (others == 0).then_some(key);
                }
            }
        }
        tx.commit().await.ctx("committing a report's decision")?;
        Ok((report, delete))
    }

    async fn pending_frames(
        &self,
        after: Option<(i64, i32)>,
        limit: i64,
    ) -> Result<Vec<(i64, FrameRow)>> {
        let (upload, frame) = after.unwrap_or((0, -1));
        let rows = sqlx::query(PG_PENDING_FRAMES)
            .bind(upload)
            .bind(frame)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading pending frames")?;
        rows.iter()
            .map(|r| Ok((r.col("upload_id")?, frame_from_row(r)?)))
            .collect()
    }

    async fn judge_pending_frame(
        &self,
        upload_id: i64,
        frame: i32,
        judgement: &LateJudgement,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let pending = sqlx::query(PG_PENDING_FRAME)
            .bind(upload_id)
            .bind(frame)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a pending frame")?;
        if pending.is_none() {
            return Ok(false);
        }
        let rejection = match judgement {
            LateJudgement::Publish(v) => {
                sqlx::query(PG_PUBLISH_LATE)
                    .bind(upload_id)
                    .bind(frame)
                    .bind(&v.published_key)
                    .bind(&v.phash)
                    .bind(v.faces)
                    .bind(v.plates)
                    .bind(v.quality.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .ctx("publishing a frame judged late")?;
                None
            }
            LateJudgement::Refuse(row, rejection) => {
                sqlx::query(PG_REFUSE_LATE)
                    .bind(upload_id)
                    .bind(frame)
                    .bind(&row.reason)
                    .bind(row.scores.to_string())
                    .bind(&row.review_key)
                    .bind(&row.phash)
                    .bind(row.duplicate_of.map(|d| d.0))
                    .bind(row.duplicate_of.map(|d| d.1))
                    .execute(&mut *tx)
                    .await
                    .ctx("refusing a frame judged late")?;
                Some(rejection)
            }
            LateJudgement::Unreadable(rejection) => Some(rejection),
        };
        if let Some(r) = rejection {
            sqlx::query(DROP_FRAME)
                .bind(upload_id)
                .bind(frame)
                .execute(&mut *tx)
                .await
                .ctx("taking a frame out of its drive")?;
            sqlx::query(PG_ADD_REJECTION)
                .bind(upload_id)
                .bind(r.stage.as_str())
                .bind(r.item)
                .bind(&r.reason)
                .bind(&r.detail)
                .execute(&mut *tx)
                .await
                .ctx("recording a frame's refusal")?;
            sqlx::query(COUNT_LATE_REFUSAL)
                .bind(upload_id)
                .execute(&mut *tx)
                .await
                .ctx("counting a frame's refusal")?;
        }
        tx.commit().await.ctx("committing a frame judged late")?;
        Ok(true)
    }
}

#[async_trait]
impl Imagery for SqliteStore {
    async fn frames(&self, upload_id: i64) -> Result<Vec<FrameRow>> {
        let rows = sqlx::query(SQLITE_FRAMES)
            .bind(upload_id)
            .fetch_all(&self.pool)
            .await
            .ctx("reading frames")?;
        rows.iter().map(frame_from_row).collect()
    }

    async fn frame_hashes(
        &self,
        cells: &[Cell],
        exclude_upload: i64,
        limit: i64,
    ) -> Result<Vec<FrameHash>> {
        let mut out = Vec::new();
        for chunk in cells.chunks(500) {
            let sql = sqlite_frame_hashes(chunk.len());
            let mut q = sqlx::query_as::<_, (i64, i32, String)>(&sql);
            for c in chunk {
                q = q.bind(c.as_i64());
            }
            let rows = q
                .bind(exclude_upload)
                .bind(limit - out.len() as i64)
                .fetch_all(&self.pool)
                .await
                .ctx("reading frame hashes")?;
            out.extend(rows.into_iter().map(|(upload_id, frame, phash)| FrameHash {
                upload_id,
                frame,
                phash,
            }));
            if out.len() as i64 >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn audit_frames(&self, query: &AuditQuery) -> Result<Vec<AuditFrame>> {
        let rows = sqlx::query(SQLITE_AUDIT_FRAMES)
            .bind(query.reason.as_deref())
            .bind(query.upload_id)
            .bind(query.after.map(|a| a.0))
            .bind(query.after.map(|a| a.1))
            .bind(query.limit)
            .bind(query.undecided_only)
            .fetch_all(&self.pool)
            .await
            .ctx("reading the audit queue")?;
        rows.iter().map(audit_frame_from_row).collect()
    }

    async fn decide_frame(
        &self,
        d: &NewFrameDecision,
        now: DateTime<Utc>,
    ) -> Result<FrameDecision> {
        // BEGIN IMMEDIATE: decisions (on one frame or not) apply one after the other.
        let mut tx = self.write().await?;
        let found: Option<(bool, bool)> = sqlx::query_as(SQLITE_REFUSED_FRAME)
            .bind(d.upload_id)
            .bind(d.frame)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a refused frame")?;
        if let Err(e) = rows::check_decision(d, found) {
            tx.rollback().await.ctx("ending a transaction")?;
            return Err(e);
        }
        let row = sqlx::query(RECORD_DECISION)
            .bind(d.upload_id)
            .bind(d.frame)
            .bind(d.decision.as_str())
            .bind(&d.note)
            .bind(&d.auditor)
            .bind(d.auditor_key_id)
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await
            .ctx("recording a decision")?;
        let decided = decision_from_row(&row)?;
        match d.decision {
            // Published from the refused frame's own row; an approval of a frame approved
            // already leaves it as it is.
            Decision::Approve => sqlx::query(SQLITE_PUBLISH_APPROVED_FRAME)
                .bind(d.upload_id)
                .bind(d.frame)
                .bind(decided.id)
                .execute(&mut *tx)
                .await
                .ctx("publishing an approved frame")?,
            // Only a frame an approval published; never one the vision stage published.
            Decision::Reject => sqlx::query(UNPUBLISH_REJECTED_FRAME)
                .bind(d.upload_id)
                .bind(d.frame)
                .execute(&mut *tx)
                .await
                .ctx("unpublishing a rejected frame")?,
        };
        tx.commit().await.ctx("committing a decision")?;
        Ok(decided)
    }

    async fn frame_decisions(
        &self,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<FrameDecision>> {
        let rows = sqlx::query(FRAME_DECISIONS)
            .bind(before_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading the decision log")?;
        rows.iter().map(decision_from_row).collect()
    }

    async fn frame_image(
        &self,
        upload_id: i64,
        frame: i32,
        which: FrameImage,
    ) -> Result<Option<String>> {
        let sql = match which {
            FrameImage::Published => PUBLISHED_FRAME_IMAGE,
            FrameImage::Review => REVIEW_FRAME_IMAGE,
            FrameImage::Reported => REPORTABLE_FRAME,
        };
        let key: Option<(Option<String>,)> = sqlx::query_as(sql)
            .bind(upload_id)
            .bind(frame)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a frame's image")?;
        Ok(key.and_then(|k| k.0))
    }

    async fn imagery(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<ImageryCellSummary>> {
        let rows = sqlx::query(SQLITE_IMAGERY)
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading imagery")?;
        rows.iter().map(imagery_cell_from_row).collect()
    }

    async fn report_frame(
        &self,
        report: &NewFrameReport,
        now: DateTime<Utc>,
    ) -> Result<FrameReport> {
        let mut tx = self.write().await?;
        let found = sqlx::query(REPORTABLE_FRAME)
            .bind(report.upload_id)
            .bind(report.frame)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a reported frame")?;
        if found.is_none() {
            return Err(no_published_frame(report.upload_id, report.frame));
        }
        let row = sqlx::query(INSERT_REPORT)
            .bind(report.upload_id)
            .bind(report.frame)
            .bind(report.reason.as_str())
            .bind(&report.note)
            .bind(&report.reporter)
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await
            .ctx("recording a report")?;
        sqlx::query(HIDE_FRAME)
            .bind(report.upload_id)
            .bind(report.frame)
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .ctx("hiding a reported frame")?;
        tx.commit().await.ctx("committing a report")?;
        report_from_row(&row)
    }

    async fn frame_reports(&self, open_only: bool, limit: i64) -> Result<Vec<FrameReport>> {
        let rows = sqlx::query(REPORTS)
            .bind(open_only)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading reports")?;
        rows.iter().map(report_from_row).collect()
    }

    async fn frame_report(&self, id: i64) -> Result<Option<FrameReport>> {
        let row = sqlx::query(REPORT)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a report")?;
        row.as_ref().map(report_from_row).transpose()
    }

    async fn blur_reported_frame(
        &self,
        blur: &ReportBlur,
        now: DateTime<Utc>,
    ) -> Result<(FrameReport, Option<String>)> {
        let boxes = boxes_json(&blur.boxes)?;
        // SQLite's writer (`BEGIN IMMEDIATE`) holds the whole database: no report of the frame
        // comes between.
        let mut tx = self.write().await?;
        let Some(row) = sqlx::query(BLUR_REPORT)
            .bind(blur.report_id)
            .bind(&boxes)
            .bind(&blur.auditor)
            .bind(micros(now))
            .fetch_optional(&mut *tx)
            .await
            .ctx("deciding a report")?
        else {
            let exists = sqlx::query(REPORT)
                .bind(blur.report_id)
                .fetch_optional(&mut *tx)
                .await
                .ctx("reading a report")?;
            return Err(undecidable(blur.report_id, exists.is_some()));
        };
        let report = report_from_row(&row)?;
        let moved = sqlx::query(REPLACE_DERIVATIVE)
            .bind(report.upload_id)
            .bind(report.frame)
            .bind(&blur.from_key)
            .bind(&blur.to_key)
            .execute(&mut *tx)
            .await
            .ctx("pointing a frame at its blurred copy")?
            .rows_affected();
        if moved != 1 {
            return Err(derivative_changed(report.upload_id, report.frame));
        }
        sqlx::query(REPLACE_REVIEW_COPY)
            .bind(report.upload_id)
            .bind(report.frame)
            .bind(&blur.from_key)
            .bind(&blur.to_key)
            .execute(&mut *tx)
            .await
            .ctx("pointing a review copy at its blurred copy")?;
        sqlx::query(SHOW_FRAME)
            .bind(report.upload_id)
            .bind(report.frame)
            .execute(&mut *tx)
            .await
            .ctx("showing a frame again")?;
        let (uses,): (i64,) = sqlx::query_as(DERIVATIVE_USES)
            .bind(&blur.from_key)
            .fetch_one(&mut *tx)
            .await
            .ctx("looking for the same derivative")?;
        tx.commit().await.ctx("committing a report's decision")?;
        Ok((report, (uses == 0).then(|| blur.from_key.clone())))
    }

    async fn decide_report(
        &self,
        id: i64,
        decision: ReportDecision,
        auditor: &str,
        now: DateTime<Utc>,
    ) -> Result<(FrameReport, Option<String>)> {
        blur_needs_boxes(decision)?;
        let mut tx = self.write().await?;
        let decided = sqlx::query(DECIDE_REPORT)
            .bind(id)
            .bind(decision.as_str())
            .bind(auditor)
            .bind(micros(now))
            .fetch_optional(&mut *tx)
            .await
            .ctx("deciding a report")?;
        let Some(row) = decided else {
            let exists = sqlx::query(REPORT)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .ctx("reading a report")?;
            return Err(undecidable(id, exists.is_some()));
        };
        let report = report_from_row(&row)?;
        let mut delete = None;
        match decision {
            ReportDecision::Keep => {
                sqlx::query(SHOW_FRAME)
                    .bind(report.upload_id)
                    .bind(report.frame)
                    .execute(&mut *tx)
                    .await
                    .ctx("showing a frame again")?;
            }
            // Refused above: a blur carries its boxes and blurred copy.
            ReportDecision::Blur => {}
            ReportDecision::Remove => {
                let key: Option<(Option<String>,)> = sqlx::query_as(REMOVE_FRAME)
                    .bind(report.upload_id)
                    .bind(report.frame)
                    .bind(micros(now))
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx("taking a frame down")?;
                sqlx::query(CLOSE_REPORTS)
                    .bind(report.upload_id)
                    .bind(report.frame)
                    .bind(auditor)
                    .bind(micros(now))
                    .execute(&mut *tx)
                    .await
                    .ctx("closing a frame's reports")?;
                if let Some((Some(key),)) = key {
                    let (others,): (i64,) = sqlx::query_as(SAME_DERIVATIVE)
                        .bind(&key)
                        .fetch_one(&mut *tx)
                        .await
                        .ctx("looking for the same derivative")?;
                    delete = (others == 0).then_some(key);
                }
            }
        }
        tx.commit().await.ctx("committing a report's decision")?;
        Ok((report, delete))
    }

    async fn pending_frames(
        &self,
        after: Option<(i64, i32)>,
        limit: i64,
    ) -> Result<Vec<(i64, FrameRow)>> {
        let (upload, frame) = after.unwrap_or((0, -1));
        let rows = sqlx::query(SQLITE_PENDING_FRAMES)
            .bind(upload)
            .bind(frame)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading pending frames")?;
        rows.iter()
            .map(|r| Ok((r.col("upload_id")?, frame_from_row(r)?)))
            .collect()
    }

    async fn judge_pending_frame(
        &self,
        upload_id: i64,
        frame: i32,
        judgement: &LateJudgement,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let pending = sqlx::query(SQLITE_PENDING_FRAME)
            .bind(upload_id)
            .bind(frame)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a pending frame")?;
        if pending.is_none() {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(false);
        }
        let rejection = match judgement {
            LateJudgement::Publish(v) => {
                sqlx::query(SQLITE_PUBLISH_LATE)
                    .bind(upload_id)
                    .bind(frame)
                    .bind(&v.published_key)
                    .bind(&v.phash)
                    .bind(v.faces)
                    .bind(v.plates)
                    .bind(v.quality.to_string())
                    .bind(micros(now))
                    .execute(&mut *tx)
                    .await
                    .ctx("publishing a frame judged late")?;
                None
            }
            LateJudgement::Refuse(row, rejection) => {
                sqlx::query(SQLITE_REFUSE_LATE)
                    .bind(upload_id)
                    .bind(frame)
                    .bind(&row.reason)
                    .bind(row.scores.to_string())
                    .bind(&row.review_key)
                    .bind(&row.phash)
                    .bind(row.duplicate_of.map(|d| d.0))
                    .bind(row.duplicate_of.map(|d| d.1))
                    .execute(&mut *tx)
                    .await
                    .ctx("refusing a frame judged late")?;
                Some(rejection)
            }
            LateJudgement::Unreadable(rejection) => Some(rejection),
        };
        if let Some(r) = rejection {
            sqlx::query(DROP_FRAME)
                .bind(upload_id)
                .bind(frame)
                .execute(&mut *tx)
                .await
                .ctx("taking a frame out of its drive")?;
            sqlx::query(SQLITE_ADD_REJECTION)
                .bind(upload_id)
                .bind(r.stage.as_str())
                .bind(r.item)
                .bind(&r.reason)
                .bind(&r.detail)
                .execute(&mut *tx)
                .await
                .ctx("recording a frame's refusal")?;
            sqlx::query(COUNT_LATE_REFUSAL)
                .bind(upload_id)
                .execute(&mut *tx)
                .await
                .ctx("counting a frame's refusal")?;
        }
        tx.commit().await.ctx("committing a frame judged late")?;
        Ok(true)
    }
}

fn no_published_frame(upload: i64, frame: i32) -> StoreError {
    StoreError::NotFound(format!(
        "no published frame {frame} in upload {upload} (or it was taken down already)"
    ))
}

/// A report's decision is keep or remove here; a blur carries its boxes and blurred copy
/// ([`Imagery::blur_reported_frame`]).
fn blur_needs_boxes(decision: ReportDecision) -> Result<()> {
    if decision == ReportDecision::Blur {
        return Err(StoreError::Conflict(
            "blurring a report needs the boxes and the blurred copy".into(),
        ));
    }
    Ok(())
}

fn derivative_changed(upload: i64, frame: i32) -> StoreError {
    StoreError::Conflict(format!(
        "frame {frame} of upload {upload} no longer publishes the image that was blurred \
         (taken down, or blurred by someone else meanwhile); nothing changed"
    ))
}

fn undecidable(id: i64, exists: bool) -> StoreError {
    if exists {
        StoreError::Conflict(format!("report {id} was decided already"))
    } else {
        StoreError::NotFound(format!("no report {id}"))
    }
}
