//! Camera frames and their audit: frames, perceptual hashes, the auditors' queue and decision log, imagery per cell.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{BoundingBox, Cell, ImageryCellSummary, LatLon};
use sqlx::Row;

use crate::dialect::Columns;
use crate::dialect::{micros, time};
use crate::error::{Result, SqlContext, StoreError};
use crate::{
    AuditFrame, AuditQuery, Decision, FrameDecision, FrameHash, FrameImage, FrameRejectionRow,
    FrameRow, NewFrameDecision, PgStore, SqliteStore, rows, sqlite,
};

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
}

#[async_trait]
impl Imagery for PgStore {
    async fn frames(&self, upload_id: i64) -> Result<Vec<FrameRow>> {
        let rows = sqlx::query(
            "SELECT frame, sequence, sha256, blob_key, captured_at, heading_deg, width, height, \
                 cell, ST_Y(geom) AS lat, ST_X(geom) AS lon, published_key, phash, faces, plates, \
                 quality::text AS quality, osm_way_id, way_piece \
             FROM frames WHERE upload_id = $1 ORDER BY frame",
        )
        .bind(upload_id)
        .fetch_all(&self.pool)
        .await
        .ctx("reading frames")?;
        rows.iter()
            .map(|row| {
                let ctx = "reading a frame";
                Ok(FrameRow {
                    frame: row.try_get("frame").ctx(ctx)?,
                    sequence: row.try_get("sequence").ctx(ctx)?,
                    sha256: row.try_get("sha256").ctx(ctx)?,
                    blob_key: row.try_get("blob_key").ctx(ctx)?,
                    captured_at: row.try_get("captured_at").ctx(ctx)?,
                    heading_deg: row.try_get("heading_deg").ctx(ctx)?,
                    width: row.try_get("width").ctx(ctx)?,
                    height: row.try_get("height").ctx(ctx)?,
                    pos: LatLon::new(row.try_get("lat").ctx(ctx)?, row.try_get("lon").ctx(ctx)?)?,
                    cell: Cell::from_i64(row.try_get("cell").ctx(ctx)?)?,
                    vision: rows::frame_vision(
                        row.try_get("published_key").ctx(ctx)?,
                        row.try_get("phash").ctx(ctx)?,
                        row.try_get("faces").ctx(ctx)?,
                        row.try_get("plates").ctx(ctx)?,
                        row.try_get("quality").ctx(ctx)?,
                    ),
                    segment: rows::segment(
                        row.try_get("osm_way_id").ctx(ctx)?,
                        row.try_get("way_piece").ctx(ctx)?,
                    ),
                })
            })
            .collect()
    }

    async fn frame_hashes(
        &self,
        cells: &[Cell],
        exclude_upload: i64,
        limit: i64,
    ) -> Result<Vec<FrameHash>> {
        let rows: Vec<(i64, i32, String)> = sqlx::query_as(
            "SELECT upload_id, frame, phash FROM frames \
             WHERE cell = ANY($1) AND upload_id <> $2 AND status = 'published' \
                   AND phash IS NOT NULL \
             ORDER BY upload_id, frame LIMIT $3",
        )
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
        let rows = sqlx::query(
            "SELECT r.upload_id, u.device, u.contributor, r.frame, r.reason, \
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
             WHERE ($1::text IS NULL OR r.reason = $1) \
               AND ($2::bigint IS NULL OR r.upload_id = $2) \
               AND ($3::bigint IS NULL OR (r.upload_id, r.frame) > ($3, $4::int)) \
               AND (NOT $6 OR d.id IS NULL) \
             ORDER BY r.upload_id, r.frame LIMIT $5",
        )
        .bind(query.reason.as_deref())
        .bind(query.upload_id)
        .bind(query.after.map(|a| a.0))
        .bind(query.after.map(|a| a.1))
        .bind(query.limit)
        .bind(query.undecided_only)
        .fetch_all(&self.pool)
        .await
        .ctx("reading the audit queue")?;
        rows.iter()
            .map(|row| {
                let ctx = "reading a refused frame";
                let device: String = row.try_get("device").ctx(ctx)?;
                let scores: String = row.try_get("scores").ctx(ctx)?;
                let dup_upload: Option<i64> = row.try_get("duplicate_of_upload").ctx(ctx)?;
                let dup_frame: Option<i32> = row.try_get("duplicate_of_frame").ctx(ctx)?;
                let upload_id: i64 = row.try_get("upload_id").ctx(ctx)?;
                let frame: i32 = row.try_get("frame").ctx(ctx)?;
                let decision = match row.try_get::<Option<i64>, _>("d_id").ctx(ctx)? {
                    None => None,
                    Some(id) => Some(FrameDecision {
                        id,
                        upload_id,
                        frame,
                        decision: row.try_get::<String, _>("d_decision").ctx(ctx)?.parse()?,
                        note: row.try_get("d_note").ctx(ctx)?,
                        auditor: row.try_get("d_auditor").ctx(ctx)?,
                        auditor_key_id: row.try_get("d_auditor_key_id").ctx(ctx)?,
                        decided_at: row.try_get("d_decided_at").ctx(ctx)?,
                    }),
                };
                Ok(AuditFrame {
                    upload_id,
                    device: device
                        .parse()
                        .map_err(|e| StoreError::Corrupt(format!("{e}")))?,
                    contributor: row.try_get("contributor").ctx(ctx)?,
                    row: FrameRejectionRow {
                        frame,
                        reason: row.try_get("reason").ctx(ctx)?,
                        scores: rows::json(&scores)?,
                        sha256: row.try_get("sha256").ctx(ctx)?,
                        blob_key: row.try_get("blob_key").ctx(ctx)?,
                        review_key: row.try_get("review_key").ctx(ctx)?,
                        phash: row.try_get("phash").ctx(ctx)?,
                        duplicate_of: dup_upload.zip(dup_frame),
                        captured_at: row.try_get("captured_at").ctx(ctx)?,
                        pos: LatLon::new(
                            row.try_get("lat").ctx(ctx)?,
                            row.try_get("lon").ctx(ctx)?,
                        )?,
                        cell: Cell::from_i64(row.try_get("cell").ctx(ctx)?)?,
                        placement: rows::placement(
                            row.try_get("sequence").ctx(ctx)?,
                            row.try_get("heading_deg").ctx(ctx)?,
                            row.try_get("width").ctx(ctx)?,
                            row.try_get("height").ctx(ctx)?,
                            row.try_get("osm_way_id").ctx(ctx)?,
                            row.try_get("way_piece").ctx(ctx)?,
                        ),
                    },
                    decision,
                })
            })
            .collect()
    }

    async fn decide_frame(
        &self,
        d: &NewFrameDecision,
        now: DateTime<Utc>,
    ) -> Result<FrameDecision> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        // The refused frame, locked: decisions on one frame apply one after the other.
        let found: Option<(bool, bool)> = sqlx::query_as(
            "SELECT review_key IS NOT NULL, sequence IS NOT NULL AND heading_deg IS NOT NULL \
                    AND width IS NOT NULL AND height IS NOT NULL \
             FROM frame_rejections WHERE upload_id = $1 AND frame = $2 FOR UPDATE",
        )
        .bind(d.upload_id)
        .bind(d.frame)
        .fetch_optional(&mut *tx)
        .await
        .ctx("reading a refused frame")?;
        rows::check_decision(d, found)?;
        let row = sqlx::query(
            "INSERT INTO frame_decisions (upload_id, frame, decision, note, auditor, \
                 auditor_key_id, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             RETURNING id, upload_id, frame, decision, note, auditor, auditor_key_id, decided_at",
        )
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
            Decision::Approve => sqlx::query(
                "INSERT INTO frames (upload_id, frame, sequence, sha256, blob_key, captured_at, \
                     heading_deg, width, height, cell, geom, status, published_key, phash, \
                     faces, plates, quality, osm_way_id, way_piece, original_expired_at, \
                     decision_id) \
                 SELECT upload_id, frame, sequence, sha256, blob_key, captured_at, heading_deg, \
                     width, height, cell, geom, 'published', review_key, phash, \
                     CASE WHEN scores->>'faces' ~ '^[0-9]{1,9}$' \
                          THEN (scores->>'faces')::int END, \
                     CASE WHEN scores->>'plates' ~ '^[0-9]{1,9}$' \
                          THEN (scores->>'plates')::int END, \
                     scores, osm_way_id, way_piece, original_expired_at, $3 \
                 FROM frame_rejections WHERE upload_id = $1 AND frame = $2 \
                 ON CONFLICT (upload_id, frame) DO NOTHING",
            )
            .bind(d.upload_id)
            .bind(d.frame)
            .bind(decided.id)
            .execute(&mut *tx)
            .await
            .ctx("publishing an approved frame")?,
            // Only a frame an approval published; never one the vision stage published.
            Decision::Reject => sqlx::query(
                "DELETE FROM frames \
                 WHERE upload_id = $1 AND frame = $2 AND decision_id IS NOT NULL",
            )
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
        let rows = sqlx::query(
            "SELECT id, upload_id, frame, decision, note, auditor, auditor_key_id, decided_at \
             FROM frame_decisions WHERE ($1::bigint IS NULL OR id < $1) \
             ORDER BY id DESC LIMIT $2",
        )
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
            FrameImage::Published => {
                "SELECT published_key FROM frames \
                 WHERE upload_id = $1 AND frame = $2 AND status = 'published' \
                   AND upload_id NOT IN (SELECT id FROM uploads WHERE trust = 'flagged')"
            }
            FrameImage::Review => {
                "SELECT review_key FROM frame_rejections WHERE upload_id = $1 AND frame = $2"
            }
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
        type R = (i64, i64, i64, i64, DateTime<Utc>, DateTime<Utc>);
        let rows: Vec<R> = sqlx::query_as(
            "SELECT f.cell, COUNT(*), COUNT(DISTINCT COALESCE(u.contributor, u.device)), \
                    COUNT(DISTINCT f.osm_way_id || ':' || f.way_piece), \
                    MAX(f.captured_at), MIN(f.captured_at) \
             FROM frames f JOIN uploads u ON u.id = f.upload_id \
             WHERE f.status = 'published' AND u.trust <> 'flagged' \
               AND f.geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) \
             GROUP BY f.cell ORDER BY f.cell LIMIT $5",
        )
        .bind(bbox.west)
        .bind(bbox.south)
        .bind(bbox.east)
        .bind(bbox.north)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading imagery")?;
        rows.into_iter()
            .map(|(cell, frames, contributors, segments, newest, oldest)| {
                Ok(ImageryCellSummary {
                    cell: Cell::from_i64(cell)?,
                    frames,
                    contributors,
                    segments,
                    newest,
                    oldest,
                })
            })
            .collect()
    }
}

#[async_trait]
impl Imagery for SqliteStore {
    async fn frames(&self, upload_id: i64) -> Result<Vec<FrameRow>> {
        let rows = sqlx::query(
            "SELECT frame, sequence, sha256, blob_key, captured_at, heading_deg, width, height, \
                 cell, lat, lon, published_key, phash, faces, plates, quality, osm_way_id, \
                 way_piece FROM frames WHERE upload_id = ? ORDER BY frame",
        )
        .bind(upload_id)
        .fetch_all(&self.pool)
        .await
        .ctx("reading frames")?;
        rows.iter()
            .map(|row| {
                let ctx = "reading a frame";
                Ok(FrameRow {
                    frame: row.try_get("frame").ctx(ctx)?,
                    sequence: row.try_get("sequence").ctx(ctx)?,
                    sha256: row.try_get("sha256").ctx(ctx)?,
                    blob_key: row.try_get("blob_key").ctx(ctx)?,
                    captured_at: time(row.try_get("captured_at").ctx(ctx)?)?,
                    heading_deg: row.try_get("heading_deg").ctx(ctx)?,
                    width: row.try_get("width").ctx(ctx)?,
                    height: row.try_get("height").ctx(ctx)?,
                    pos: LatLon::new(row.try_get("lat").ctx(ctx)?, row.try_get("lon").ctx(ctx)?)?,
                    cell: Cell::from_i64(row.try_get("cell").ctx(ctx)?)?,
                    vision: rows::frame_vision(
                        row.try_get("published_key").ctx(ctx)?,
                        row.try_get("phash").ctx(ctx)?,
                        row.try_get("faces").ctx(ctx)?,
                        row.try_get("plates").ctx(ctx)?,
                        row.try_get("quality").ctx(ctx)?,
                    ),
                    segment: rows::segment(
                        row.try_get("osm_way_id").ctx(ctx)?,
                        row.try_get("way_piece").ctx(ctx)?,
                    ),
                })
            })
            .collect()
    }

    async fn frame_hashes(
        &self,
        cells: &[Cell],
        exclude_upload: i64,
        limit: i64,
    ) -> Result<Vec<FrameHash>> {
        let mut out = Vec::new();
        for chunk in cells.chunks(500) {
            let sql = format!(
                "SELECT upload_id, frame, phash FROM frames \
                 WHERE cell IN ({}) AND upload_id <> ? AND status = 'published' \
                       AND phash IS NOT NULL \
                 ORDER BY upload_id, frame LIMIT ?",
                sqlite::placeholders(chunk.len())
            );
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
        let rows = sqlx::query(
            "SELECT r.upload_id, u.device, u.contributor, r.frame, r.reason, r.scores, r.sha256, \
                    r.blob_key, r.review_key, r.phash, r.duplicate_of_upload, \
                    r.duplicate_of_frame, r.captured_at, r.cell, r.lat, r.lon, r.sequence, \
                    r.heading_deg, r.width, r.height, r.osm_way_id, r.way_piece, d.id AS d_id, \
                    d.decision AS d_decision, d.note AS d_note, d.auditor AS d_auditor, \
                    d.auditor_key_id AS d_auditor_key_id, d.decided_at AS d_decided_at \
             FROM frame_rejections r JOIN uploads u ON u.id = r.upload_id \
             LEFT JOIN frame_decisions d ON d.id = (SELECT MAX(x.id) FROM frame_decisions x \
                 WHERE x.upload_id = r.upload_id AND x.frame = r.frame) \
             WHERE (?1 IS NULL OR r.reason = ?1) \
               AND (?2 IS NULL OR r.upload_id = ?2) \
               AND (?3 IS NULL OR r.upload_id > ?3 OR (r.upload_id = ?3 AND r.frame > ?4)) \
               AND (NOT ?6 OR d.id IS NULL) \
             ORDER BY r.upload_id, r.frame LIMIT ?5",
        )
        .bind(query.reason.as_deref())
        .bind(query.upload_id)
        .bind(query.after.map(|a| a.0))
        .bind(query.after.map(|a| a.1))
        .bind(query.limit)
        .bind(query.undecided_only)
        .fetch_all(&self.pool)
        .await
        .ctx("reading the audit queue")?;
        rows.iter()
            .map(|row| {
                let ctx = "reading a refused frame";
                let device: String = row.try_get("device").ctx(ctx)?;
                let scores: String = row.try_get("scores").ctx(ctx)?;
                let dup_upload: Option<i64> = row.try_get("duplicate_of_upload").ctx(ctx)?;
                let dup_frame: Option<i32> = row.try_get("duplicate_of_frame").ctx(ctx)?;
                let upload_id: i64 = row.try_get("upload_id").ctx(ctx)?;
                let frame: i32 = row.try_get("frame").ctx(ctx)?;
                let decision = match row.try_get::<Option<i64>, _>("d_id").ctx(ctx)? {
                    None => None,
                    Some(id) => Some(FrameDecision {
                        id,
                        upload_id,
                        frame,
                        decision: row.try_get::<String, _>("d_decision").ctx(ctx)?.parse()?,
                        note: row.try_get("d_note").ctx(ctx)?,
                        auditor: row.try_get("d_auditor").ctx(ctx)?,
                        auditor_key_id: row.try_get("d_auditor_key_id").ctx(ctx)?,
                        decided_at: time(row.try_get("d_decided_at").ctx(ctx)?)?,
                    }),
                };
                Ok(AuditFrame {
                    upload_id,
                    device: device
                        .parse()
                        .map_err(|e| StoreError::Corrupt(format!("{e}")))?,
                    contributor: row.try_get("contributor").ctx(ctx)?,
                    row: FrameRejectionRow {
                        frame,
                        reason: row.try_get("reason").ctx(ctx)?,
                        scores: rows::json(&scores)?,
                        sha256: row.try_get("sha256").ctx(ctx)?,
                        blob_key: row.try_get("blob_key").ctx(ctx)?,
                        review_key: row.try_get("review_key").ctx(ctx)?,
                        phash: row.try_get("phash").ctx(ctx)?,
                        duplicate_of: dup_upload.zip(dup_frame),
                        captured_at: time(row.try_get("captured_at").ctx(ctx)?)?,
                        pos: LatLon::new(
                            row.try_get("lat").ctx(ctx)?,
                            row.try_get("lon").ctx(ctx)?,
                        )?,
                        cell: Cell::from_i64(row.try_get("cell").ctx(ctx)?)?,
                        placement: rows::placement(
                            row.try_get("sequence").ctx(ctx)?,
                            row.try_get("heading_deg").ctx(ctx)?,
                            row.try_get("width").ctx(ctx)?,
                            row.try_get("height").ctx(ctx)?,
                            row.try_get("osm_way_id").ctx(ctx)?,
                            row.try_get("way_piece").ctx(ctx)?,
                        ),
                    },
                    decision,
                })
            })
            .collect()
    }

    async fn decide_frame(
        &self,
        d: &NewFrameDecision,
        now: DateTime<Utc>,
    ) -> Result<FrameDecision> {
        // BEGIN IMMEDIATE: decisions (on one frame or not) apply one after the other.
        let mut tx = self.write().await?;
        let found: Option<(bool, bool)> = sqlx::query_as(
            "SELECT review_key IS NOT NULL, sequence IS NOT NULL AND heading_deg IS NOT NULL \
                    AND width IS NOT NULL AND height IS NOT NULL \
             FROM frame_rejections WHERE upload_id = ? AND frame = ?",
        )
        .bind(d.upload_id)
        .bind(d.frame)
        .fetch_optional(&mut *tx)
        .await
        .ctx("reading a refused frame")?;
        if let Err(e) = rows::check_decision(d, found) {
            tx.rollback().await.ctx("ending a transaction")?;
            return Err(e);
        }
        let row = sqlx::query(
            "INSERT INTO frame_decisions (upload_id, frame, decision, note, auditor, \
                 auditor_key_id, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
             RETURNING id, upload_id, frame, decision, note, auditor, auditor_key_id, decided_at",
        )
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
            Decision::Approve => sqlx::query(
                "INSERT INTO frames (upload_id, frame, sequence, sha256, blob_key, captured_at, \
                     heading_deg, width, height, cell, lat, lon, status, published_key, phash, \
                     faces, plates, quality, osm_way_id, way_piece, original_expired_at, \
                     decision_id) \
                 SELECT upload_id, frame, sequence, sha256, blob_key, captured_at, heading_deg, \
                     width, height, cell, lat, lon, 'published', review_key, phash, \
                     CASE WHEN json_type(scores, '$.faces') = 'integer' \
                          THEN json_extract(scores, '$.faces') END, \
                     CASE WHEN json_type(scores, '$.plates') = 'integer' \
                          THEN json_extract(scores, '$.plates') END, \
                     scores, osm_way_id, way_piece, original_expired_at, ?3 \
                 FROM frame_rejections WHERE upload_id = ?1 AND frame = ?2 \
                 ON CONFLICT (upload_id, frame) DO NOTHING",
            )
            .bind(d.upload_id)
            .bind(d.frame)
            .bind(decided.id)
            .execute(&mut *tx)
            .await
            .ctx("publishing an approved frame")?,
            // Only a frame an approval published; never one the vision stage published.
            Decision::Reject => sqlx::query(
                "DELETE FROM frames \
                 WHERE upload_id = ? AND frame = ? AND decision_id IS NOT NULL",
            )
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
        let rows = sqlx::query(
            "SELECT id, upload_id, frame, decision, note, auditor, auditor_key_id, decided_at \
             FROM frame_decisions WHERE (?1 IS NULL OR id < ?1) \
             ORDER BY id DESC LIMIT ?2",
        )
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
            FrameImage::Published => {
                "SELECT published_key FROM frames \
                 WHERE upload_id = ? AND frame = ? AND status = 'published' \
                   AND upload_id NOT IN (SELECT id FROM uploads WHERE trust = 'flagged')"
            }
            FrameImage::Review => {
                "SELECT review_key FROM frame_rejections WHERE upload_id = ? AND frame = ?"
            }
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
        let rows: Vec<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT f.cell, COUNT(*), COUNT(DISTINCT COALESCE(u.contributor, u.device)), \
                    COUNT(DISTINCT f.osm_way_id || ':' || f.way_piece), \
                    MAX(f.captured_at), MIN(f.captured_at) \
             FROM frames f JOIN uploads u ON u.id = f.upload_id \
             WHERE f.status = 'published' AND u.trust <> 'flagged' \
               AND f.lon BETWEEN ? AND ? AND f.lat BETWEEN ? AND ? \
             GROUP BY f.cell ORDER BY f.cell LIMIT ?",
        )
        .bind(bbox.west)
        .bind(bbox.east)
        .bind(bbox.south)
        .bind(bbox.north)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading imagery")?;
        rows.into_iter()
            .map(|(cell, frames, contributors, segments, newest, oldest)| {
                Ok(ImageryCellSummary {
                    cell: Cell::from_i64(cell)?,
                    frames,
                    contributors,
                    segments,
                    newest: time(newest)?,
                    oldest: time(oldest)?,
                })
            })
            .collect()
    }
}

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
