//! Erasure: a contributor's uploads deleted at their request. The pixels (the upload's bytes,
//! its frames' originals and blurred derivatives) leave the object store, and every row that
//! says where they drove goes, except what a reward epoch that counted the upload reads: those
//! rows stay, stripped of pixels, keys and exact places, so the epoch still verifies.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{Cell, DeviceId};

use crate::dialect::{Columns, micros};
use crate::error::{Result, SqlContext, StoreError};
use crate::{ErasedItems, PgStore, SqliteStore, UploadErasure, UploadFilter};

/// Erasure: a contributor's uploads deleted at their request.
#[async_trait]
pub trait Erasure: Send + Sync {
    /// Erases upload `upload_id`, as `requested_by` asked at `now`, in one transaction:
    ///
    /// - its queued job is failed (a worker holding it finds its results refused), a queued
    ///   upload is rejected as `erased`, and it is never counted in an epoch from then on;
    /// - its coverage, trust extent and track print rows are deleted, and its open reports
    ///   closed as removed;
    /// - if no epoch counted it yet, every other row of it goes too (matched roads, radio,
    ///   frames, refused frames, left-out items, its evidence), but for refused frames an
    ///   auditor decided on, kept stripped for the append-only decision log;
    /// - if an epoch counted it, the rows epochs' closes read stay — published frames' cells and
    ///   times, radio samples, matched stretches, left-out items' reasons, its evidence — with
    ///   their pixels, blob keys, hashes, road segments and exact places gone (a frame's place
    ///   becomes its cell's centre); frames no epoch counted go;
    /// - the upload row keeps its amounts (who, when, counts) but not its bytes' hash.
    ///
    /// Answers the erasure as recorded, with the blobs to delete from the object store: those
    /// it named that no other row still needs. Erasing an erased upload changes nothing and
    /// answers its record, with whatever blobs are still to delete.
    /// [`StoreError::NotFound`] if there is no such upload.
    async fn erase_upload(
        &self,
        upload_id: i64,
        requested_by: &str,
        now: DateTime<Utc>,
    ) -> Result<UploadErasure>;

    /// The erasure of upload `upload_id`, if it was erased.
    async fn erasure(&self, upload_id: i64) -> Result<Option<UploadErasure>>;

    /// Erasures of the uploads `filter` admits (contributor, device), newest first, only those
    /// with blobs still to delete if `pending_only`, at most `limit`.
    async fn erasures(
        &self,
        filter: &UploadFilter,
        pending_only: bool,
        limit: i64,
    ) -> Result<Vec<UploadErasure>>;

    /// Uploads `filter` admits not erased yet, by id after `after`, at most `limit`.
    async fn uploads_to_erase(
        &self,
        filter: &UploadFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<i64>>;

    /// Records that the blobs of upload `upload_id`'s erasure are deleted.
    async fn erasure_done(&self, upload_id: i64, now: DateTime<Utc>) -> Result<()>;

    /// Of `keys`, those no row names any more: blobs that can be deleted.
    async fn unreferenced_blobs(&self, keys: &[String]) -> Result<Vec<String>>;
}

/// Upload `$1`'s epoch and whether it is erased, locked on PostgreSQL where `FOR UPDATE` is
/// appended.
const UPLOAD_TO_ERASE: &str =
    "SELECT reward_epoch, erased_at IS NOT NULL AS erased FROM uploads WHERE id = $1";

/// Every blob upload `$1`'s rows name: its bytes, and its frames' originals and derivatives.
const UPLOAD_BLOBS: &str = "SELECT blob_key FROM uploads \
         WHERE id = $1 AND blob_expired_at IS NULL \
     UNION SELECT blob_key FROM frames WHERE upload_id = $1 AND original_expired_at IS NULL \
     UNION SELECT published_key FROM frames \
         WHERE upload_id = $1 AND published_key IS NOT NULL \
     UNION SELECT blob_key FROM frame_rejections \
         WHERE upload_id = $1 AND original_expired_at IS NULL \
     UNION SELECT review_key FROM frame_rejections \
         WHERE upload_id = $1 AND review_key IS NOT NULL \
     UNION SELECT key FROM detached_blobs WHERE upload_id = $1";

/// The rows that still need blob `$1`: an upload's bytes or a frame's original not deleted yet,
/// a derivative published (and not taken down) or shown to auditors.
const BLOB_USES: &str = "SELECT \
       (SELECT COUNT(*) FROM uploads WHERE blob_key = $1 AND blob_expired_at IS NULL) \
     + (SELECT COUNT(*) FROM frames WHERE blob_key = $1 AND original_expired_at IS NULL) \
     + (SELECT COUNT(*) FROM frames WHERE published_key = $1 AND removed_at IS NULL) \
     + (SELECT COUNT(*) FROM frame_rejections \
            WHERE blob_key = $1 AND original_expired_at IS NULL) \
     + (SELECT COUNT(*) FROM frame_rejections WHERE review_key = $1) \
     + (SELECT COUNT(*) FROM detached_blobs WHERE key = $1)";

/// What each statement of an erasure is bound to: upload `$1`, and the time `$2` or whether an
/// epoch counted the upload `$2`.
#[derive(Clone, Copy)]
enum Args {
    Upload,
    UploadAt,
    UploadCounted,
}

/// What a statement's rows count as in the erasure's record.
#[derive(Clone, Copy)]
enum Counts {
    Jobs,
    Reports,
    Cells,
    Trust,
    Stretches,
    Radio,
    Rejections,
    Frames,
    RefusedFrames,
}

impl Counts {
    fn add(self, items: &mut ErasedItems, rows: u64) {
        let slot = match self {
            Counts::Jobs => &mut items.jobs_stopped,
            Counts::Reports => &mut items.reports_closed,
            Counts::Cells => &mut items.cells,
            Counts::Trust => &mut items.trust,
            Counts::Stretches => &mut items.stretches,
            Counts::Radio => &mut items.radio,
            Counts::Rejections => &mut items.rejections,
            Counts::Frames => &mut items.frames,
            Counts::RefusedFrames => &mut items.refused_frames,
        };
        *slot += rows;
    }
}

/// The statements of an erasure, in order, both backends alike. The frames' places are moved to
/// their cells' centres after these, by each backend's own statement.
const ERASE: &[(Counts, Args, &str)] = &[
    // A queued job will not run; a job a worker holds runs on, and its results are refused.
    (
        Counts::Jobs,
        Args::UploadAt,
        "UPDATE jobs SET status = 'failed', lease_token = NULL, leased_until = NULL, \
             finished_at = $2, last_error = 'erased' \
         WHERE upload_id = $1 AND status = 'queued'",
    ),
    (
        Counts::Cells,
        Args::Upload,
        "DELETE FROM cell_observations WHERE upload_id = $1",
    ),
    (
        Counts::Trust,
        Args::Upload,
        "DELETE FROM upload_extents WHERE upload_id = $1",
    ),
    (
        Counts::Trust,
        Args::Upload,
        "DELETE FROM track_prints WHERE upload_id = $1",
    ),
    (
        Counts::Trust,
        Args::Upload,
        "DELETE FROM radio_cells WHERE upload_id = $1",
    ),
    // The derivatives of its frames in a month detached since (PostGIS).
    (
        Counts::Frames,
        Args::Upload,
        "DELETE FROM detached_blobs WHERE upload_id = $1",
    ),
    // Later epochs read earlier counted uploads' stretches (how much of a cell's road was
    // driven before them); radio samples and left-out fixes are their own epoch's inputs.
    (
        Counts::Stretches,
        Args::UploadCounted,
        "DELETE FROM matched_stretches WHERE upload_id = $1 AND NOT $2",
    ),
    (
        Counts::Radio,
        Args::UploadCounted,
        "DELETE FROM radio_observations WHERE upload_id = $1 AND NOT $2",
    ),
    (
        Counts::Rejections,
        Args::UploadCounted,
        "DELETE FROM rejected_observations WHERE upload_id = $1 AND NOT $2",
    ),
    // A left-out fix's detail says where it was; its reason is what the epoch counts.
    (
        Counts::Rejections,
        Args::Upload,
        "UPDATE rejected_observations SET detail = NULL \
         WHERE upload_id = $1 AND detail IS NOT NULL",
    ),
    // The frames an epoch counts: published with their counted upload, or published late and
    // counted themselves (approved frames count through their refused row).
    (
        Counts::Frames,
        Args::UploadCounted,
        "DELETE FROM frames WHERE upload_id = $1 AND NOT ($2 AND \
             ((status = 'published' AND decision_id IS NULL AND judged_at IS NULL) \
              OR reward_epoch IS NOT NULL))",
    ),
    (
        Counts::Frames,
        Args::UploadAt,
        "UPDATE frames SET sha256 = '', blob_key = '', published_key = NULL, phash = NULL, \
             faces = NULL, plates = NULL, quality = NULL, osm_way_id = NULL, way_piece = NULL, \
             original_expired_at = COALESCE(original_expired_at, $2), \
             hidden_at = COALESCE(hidden_at, $2), removed_at = COALESCE(removed_at, $2) \
         WHERE upload_id = $1",
    ),
    // Refused frames: an epoch counts a counted upload's repeats, and approved ones; the
    // decision log (append-only) names the ones decided on.
    (
        Counts::RefusedFrames,
        Args::UploadCounted,
        "DELETE FROM frame_rejections WHERE upload_id = $1 AND NOT $2 \
             AND reward_epoch IS NULL AND NOT EXISTS (SELECT 1 FROM frame_decisions d \
                 WHERE d.upload_id = frame_rejections.upload_id \
                   AND d.frame = frame_rejections.frame)",
    ),
    (
        Counts::RefusedFrames,
        Args::UploadAt,
        "UPDATE frame_rejections SET sha256 = '', blob_key = '', review_key = NULL, \
             phash = NULL, scores = '{}', osm_way_id = NULL, way_piece = NULL, \
             original_expired_at = COALESCE(original_expired_at, $2) \
         WHERE upload_id = $1",
    ),
    // Its open reports, closed once its frames are held (a report of one waits, then finds it
    // taken down).
    (
        Counts::Reports,
        Args::UploadAt,
        "UPDATE frame_reports SET decision = 'remove', decided_by = 'erasure', \
             decided_at = $2 \
         WHERE upload_id = $1 AND decision IS NULL",
    ),
];

/// Marks upload `$1` erased at `$2`: a queued one rejected as `erased`, its bytes' hash and key
/// gone (so the same bytes sent again are a new upload, and nobody's copy of it), its evidence
/// and findings gone unless an epoch counted it (`$3`).
const MARK_ERASED: &str = "UPDATE uploads SET erased_at = $2, \
         sha256 = 'erased:' || CAST(id AS text), blob_key = '', \
         blob_expired_at = COALESCE(blob_expired_at, $2), \
         status = CASE WHEN status = 'queued' THEN 'rejected' ELSE status END, \
         reason = CASE WHEN status = 'queued' THEN 'erased' ELSE reason END, \
         evidence = CASE WHEN $3 THEN evidence END, \
         trust_findings = CASE WHEN $3 THEN trust_findings END \
     WHERE id = $1";

/// The frames, and refused frames, of upload `$1` kept for an epoch, with their cells.
const KEPT_FRAMES: [&str; 2] = [
    "SELECT frame, cell FROM frames WHERE upload_id = $1",
    "SELECT frame, cell FROM frame_rejections WHERE upload_id = $1",
];

// A kept frame (`$2` of upload `$1`) placed at its cell's centre (`$3` lat, `$4` lon):
// PostGIS's `geom`, SQLite's `lat` and `lon`; frames, then refused frames.
const PG_PLACE_AT_CENTRE: [&str; 2] = [
    "UPDATE frames SET geom = ST_SetSRID(ST_MakePoint($4, $3), 4326) \
     WHERE upload_id = $1 AND frame = $2",
    "UPDATE frame_rejections SET geom = ST_SetSRID(ST_MakePoint($4, $3), 4326) \
     WHERE upload_id = $1 AND frame = $2",
];
const SQLITE_PLACE_AT_CENTRE: [&str; 2] = [
    "UPDATE frames SET lat = $3, lon = $4 WHERE upload_id = $1 AND frame = $2",
    "UPDATE frame_rejections SET lat = $3, lon = $4 WHERE upload_id = $1 AND frame = $2",
];

/// Records upload `$1`'s erasure.
const RECORD_ERASURE: &str = "INSERT INTO upload_erasures (upload_id, requested_by, \
         requested_at, counted_in_epoch, erased, pending_blobs, completed_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

const ERASURE_COLUMNS: &str = "e.upload_id, u.device, u.contributor, e.requested_by, \
     e.requested_at, e.counted_in_epoch, e.erased, e.pending_blobs, e.completed_at \
     FROM upload_erasures e JOIN uploads u ON u.id = e.upload_id";

/// Upload `$1`'s erasure.
fn erasure_of() -> String {
    format!("SELECT {ERASURE_COLUMNS} WHERE e.upload_id = $1")
}

/// Erasures of contributor `$1`'s and device `$2`'s uploads (where given), only those with
/// blobs to delete if `$3`, newest first, at most `$4`.
fn erasures() -> String {
    format!(
        "SELECT {ERASURE_COLUMNS} \
         WHERE (CAST($1 AS text) IS NULL OR u.contributor = $1) \
           AND (CAST($2 AS text) IS NULL OR u.device = $2) \
           AND (NOT $3 OR e.pending_blobs IS NOT NULL) \
         ORDER BY e.requested_at DESC, e.upload_id DESC LIMIT $4"
    )
}

/// Uploads of contributor `$1` and device `$2` (where given) not erased, by id after `$3`, at
/// most `$4`.
const UPLOADS_TO_ERASE: &str = "SELECT id FROM uploads \
     WHERE (CAST($1 AS text) IS NULL OR contributor = $1) \
       AND (CAST($2 AS text) IS NULL OR device = $2) \
       AND erased_at IS NULL AND id > $3 \
     ORDER BY id LIMIT $4";

/// Upload `$1`'s erasure done at `$2`: its blobs are gone.
const ERASURE_DONE: &str = "UPDATE upload_erasures SET pending_blobs = NULL, \
         completed_at = COALESCE(completed_at, $2) \
     WHERE upload_id = $1";

fn erasure_from_row(r: &impl Columns) -> Result<UploadErasure> {
    let erased: String = r.col("erased")?;
    let pending: Option<String> = r.col("pending_blobs")?;
    Ok(UploadErasure {
        upload_id: r.col("upload_id")?,
        device: r.word("device")?,
        contributor: r.col("contributor")?,
        requested_by: r.col("requested_by")?,
        requested_at: r.time("requested_at")?,
        counted_in_epoch: r
            .col::<Option<i64>>("counted_in_epoch")?
            .map(|e| crate::reward_rows::to_u64(e, "counted_in_epoch"))
            .transpose()?,
        erased: serde_json::from_str(&erased)
            .map_err(|e| StoreError::Corrupt(format!("an erasure's counts: {e}")))?,
        pending_blobs: match pending {
            None => Vec::new(),
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("an erasure's blobs: {e}")))?,
        },
        completed_at: r.opt_time("completed_at")?,
    })
}

/// The erasure's record columns: its counts, and its blobs to delete (none: `NULL`, and done).
fn record_columns(erased: &ErasedItems, blobs: &[String]) -> Result<(String, Option<String>)> {
    let counts = serde_json::to_string(erased)
        .map_err(|e| StoreError::Corrupt(format!("an erasure's counts: {e}")))?;
    let pending = if blobs.is_empty() {
        None
    } else {
        Some(
            serde_json::to_string(blobs)
                .map_err(|e| StoreError::Corrupt(format!("an erasure's blobs: {e}")))?,
        )
    };
    Ok((counts, pending))
}

fn no_upload(upload_id: i64) -> StoreError {
    StoreError::NotFound(format!("no upload {upload_id}"))
}

/// A kept frame's cell, whose centre becomes its place.
fn centre(cell: i64) -> Result<covermap_domain::LatLon> {
    Ok(Cell::from_i64(cell)?.center())
}

#[async_trait]
impl Erasure for PgStore {
    async fn erase_upload(
        &self,
        upload_id: i64,
        requested_by: &str,
        now: DateTime<Utc>,
    ) -> Result<UploadErasure> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        // The upload's row, locked: a worker finishing its job checks it under the same lock,
        // and an epoch's claim counting it waits and sees it erased.
        let found: Option<(Option<i64>, bool)> =
            sqlx::query_as(&format!("{UPLOAD_TO_ERASE} FOR UPDATE"))
                .bind(upload_id)
                .fetch_optional(&mut *tx)
                .await
                .ctx("reading an upload to erase")?;
        let (epoch, erased) = found.ok_or_else(|| no_upload(upload_id))?;
        if erased {
            drop(tx);
            return self.erasure(upload_id).await?.ok_or_else(|| {
                StoreError::Corrupt(format!("upload {upload_id} is erased without a record"))
            });
        }
        let counted = epoch.is_some();
        let named: Vec<(String,)> = sqlx::query_as(UPLOAD_BLOBS)
            .bind(upload_id)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading an upload's blobs")?;
        let mut items = ErasedItems::default();
        for (counts, args, sql) in ERASE {
            let q = sqlx::query(sql).bind(upload_id);
            let q = match args {
                Args::Upload => q,
                Args::UploadAt => q.bind(now),
                Args::UploadCounted => q.bind(counted),
            };
            let rows = q
                .execute(&mut *tx)
                .await
                .ctx("erasing an upload")?
                .rows_affected();
            counts.add(&mut items, rows);
        }
        for (select, place) in KEPT_FRAMES.iter().zip(PG_PLACE_AT_CENTRE) {
            let kept: Vec<(i32, i64)> = sqlx::query_as(select)
                .bind(upload_id)
                .fetch_all(&mut *tx)
                .await
                .ctx("reading the frames kept for an epoch")?;
            for (frame, cell) in kept {
                let at = centre(cell)?;
                sqlx::query(place)
                    .bind(upload_id)
                    .bind(frame)
                    .bind(at.lat)
                    .bind(at.lon)
                    .execute(&mut *tx)
                    .await
                    .ctx("placing a kept frame at its cell's centre")?;
            }
        }
        sqlx::query(MARK_ERASED)
            .bind(upload_id)
            .bind(now)
            .bind(counted)
            .execute(&mut *tx)
            .await
            .ctx("marking an upload erased")?;
        let mut blobs = Vec::new();
        for (key,) in named {
            let (uses,): (i64,) = sqlx::query_as(BLOB_USES)
                .bind(&key)
                .fetch_one(&mut *tx)
                .await
                .ctx("looking for other uses of a blob")?;
            if uses == 0 {
                blobs.push(key);
            }
        }
        items.blobs = blobs.len() as u64;
        let (counts, pending) = record_columns(&items, &blobs)?;
        sqlx::query(RECORD_ERASURE)
            .bind(upload_id)
            .bind(requested_by)
            .bind(now)
            .bind(epoch)
            .bind(&counts)
            .bind(&pending)
            .bind(pending.is_none().then_some(now))
            .execute(&mut *tx)
            .await
            .ctx("recording an erasure")?;
        tx.commit().await.ctx("committing an erasure")?;
        self.erasure(upload_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("upload {upload_id}'s erasure vanished")))
    }

    async fn erasure(&self, upload_id: i64) -> Result<Option<UploadErasure>> {
        let row = sqlx::query(&erasure_of())
            .bind(upload_id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an erasure")?;
        row.as_ref().map(erasure_from_row).transpose()
    }

    async fn erasures(
        &self,
        filter: &UploadFilter,
        pending_only: bool,
        limit: i64,
    ) -> Result<Vec<UploadErasure>> {
        let rows = sqlx::query(&erasures())
            .bind(filter.contributor.as_deref())
            .bind(filter.device.as_ref().map(DeviceId::as_str))
            .bind(pending_only)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading erasures")?;
        rows.iter().map(erasure_from_row).collect()
    }

    async fn uploads_to_erase(
        &self,
        filter: &UploadFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        let ids: Vec<(i64,)> = sqlx::query_as(UPLOADS_TO_ERASE)
            .bind(filter.contributor.as_deref())
            .bind(filter.device.as_ref().map(DeviceId::as_str))
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading uploads to erase")?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    async fn erasure_done(&self, upload_id: i64, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(ERASURE_DONE)
            .bind(upload_id)
            .bind(now)
            .execute(&self.pool)
            .await
            .ctx("completing an erasure")?;
        Ok(())
    }

    async fn unreferenced_blobs(&self, keys: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for key in keys {
            let (uses,): (i64,) = sqlx::query_as(BLOB_USES)
                .bind(key)
                .fetch_one(&self.pool)
                .await
                .ctx("looking for uses of a blob")?;
            if uses == 0 {
                out.push(key.clone());
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Erasure for SqliteStore {
    async fn erase_upload(
        &self,
        upload_id: i64,
        requested_by: &str,
        now: DateTime<Utc>,
    ) -> Result<UploadErasure> {
        let mut tx = self.write().await?;
        // SQLite's writer (`BEGIN IMMEDIATE`) holds the database: a worker finishing the job, or
        // an epoch's claim, comes wholly before or after.
        let found: Option<(Option<i64>, bool)> = sqlx::query_as(UPLOAD_TO_ERASE)
            .bind(upload_id)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading an upload to erase")?;
        let (epoch, erased) = found.ok_or_else(|| no_upload(upload_id))?;
        if erased {
            drop(tx);
            return self.erasure(upload_id).await?.ok_or_else(|| {
                StoreError::Corrupt(format!("upload {upload_id} is erased without a record"))
            });
        }
        let counted = epoch.is_some();
        let named: Vec<(String,)> = sqlx::query_as(UPLOAD_BLOBS)
            .bind(upload_id)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading an upload's blobs")?;
        let mut items = ErasedItems::default();
        for (counts, args, sql) in ERASE {
            let q = sqlx::query(sql).bind(upload_id);
            let q = match args {
                Args::Upload => q,
                Args::UploadAt => q.bind(micros(now)),
                Args::UploadCounted => q.bind(counted),
            };
            let rows = q
                .execute(&mut *tx)
                .await
                .ctx("erasing an upload")?
                .rows_affected();
            counts.add(&mut items, rows);
        }
        for (select, place) in KEPT_FRAMES.iter().zip(SQLITE_PLACE_AT_CENTRE) {
            let kept: Vec<(i32, i64)> = sqlx::query_as(select)
                .bind(upload_id)
                .fetch_all(&mut *tx)
                .await
                .ctx("reading the frames kept for an epoch")?;
            for (frame, cell) in kept {
                let at = centre(cell)?;
                sqlx::query(place)
                    .bind(upload_id)
                    .bind(frame)
                    .bind(at.lat)
                    .bind(at.lon)
                    .execute(&mut *tx)
                    .await
                    .ctx("placing a kept frame at its cell's centre")?;
            }
        }
        sqlx::query(MARK_ERASED)
            .bind(upload_id)
            .bind(micros(now))
            .bind(counted)
            .execute(&mut *tx)
            .await
            .ctx("marking an upload erased")?;
        let mut blobs = Vec::new();
        for (key,) in named {
            let (uses,): (i64,) = sqlx::query_as(BLOB_USES)
                .bind(&key)
                .fetch_one(&mut *tx)
                .await
                .ctx("looking for other uses of a blob")?;
            if uses == 0 {
                blobs.push(key);
            }
        }
        items.blobs = blobs.len() as u64;
        let (counts, pending) = record_columns(&items, &blobs)?;
        sqlx::query(RECORD_ERASURE)
            .bind(upload_id)
            .bind(requested_by)
            .bind(micros(now))
            .bind(epoch)
            .bind(&counts)
            .bind(&pending)
            .bind(pending.is_none().then_some(micros(now)))
            .execute(&mut *tx)
            .await
            .ctx("recording an erasure")?;
        tx.commit().await.ctx("committing an erasure")?;
        self.erasure(upload_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("upload {upload_id}'s erasure vanished")))
    }

    async fn erasure(&self, upload_id: i64) -> Result<Option<UploadErasure>> {
        let row = sqlx::query(&erasure_of())
            .bind(upload_id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an erasure")?;
        row.as_ref().map(erasure_from_row).transpose()
    }

    async fn erasures(
        &self,
        filter: &UploadFilter,
        pending_only: bool,
        limit: i64,
    ) -> Result<Vec<UploadErasure>> {
        let rows = sqlx::query(&erasures())
            .bind(filter.contributor.as_deref())
            .bind(filter.device.as_ref().map(DeviceId::as_str))
            .bind(pending_only)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading erasures")?;
        rows.iter().map(erasure_from_row).collect()
    }

    async fn uploads_to_erase(
        &self,
        filter: &UploadFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        let ids: Vec<(i64,)> = sqlx::query_as(UPLOADS_TO_ERASE)
            .bind(filter.contributor.as_deref())
            .bind(filter.device.as_ref().map(DeviceId::as_str))
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading uploads to erase")?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    async fn erasure_done(&self, upload_id: i64, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(ERASURE_DONE)
            .bind(upload_id)
            .bind(micros(now))
            .execute(&self.pool)
            .await
            .ctx("completing an erasure")?;
        Ok(())
    }

    async fn unreferenced_blobs(&self, keys: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for key in keys {
            let (uses,): (i64,) = sqlx::query_as(BLOB_USES)
                .bind(key)
                .fetch_one(&self.pool)
                .await
                .ctx("looking for uses of a blob")?;
            if uses == 0 {
                out.push(key.clone());
            }
        }
        Ok(out)
    }
}
