//! Uploads and resumable upload sessions: recording, reading, refusals, and the retention of originals.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{DeviceId, UploadStatus};

use crate::UploadTrust;
use crate::dialect::Columns;
use crate::dialect::micros;
use crate::error::{Result, SqlContext};
use crate::rows::UPLOAD_COLUMNS;
use crate::{
    DueOriginals, NewRefusal, NewUpload, PgStore, Rejection, SessionPart, SqliteStore, StoreStats,
    UploadFilter, UploadReceipt, UploadRecord, UploadSession, pg, rows,
};

/// Uploads and resumable upload sessions: recording, reading, refusals, and the retention of originals.
#[async_trait]
pub trait Uploads: Send + Sync {
    /// Records an upload and queues its job in one transaction. The same device uploading the
    /// same bytes again (a retry after a lost response) gets its first upload back, marked
    /// duplicate. The same bytes from another device are a new upload of that device, never the
    /// first device's duplicate, with `copy_of` naming the earliest upload of them by another
    /// device.
    async fn record_upload(&self, upload: NewUpload) -> Result<UploadReceipt>;

    async fn upload(&self, id: i64) -> Result<Option<UploadRecord>>;

    /// Newest first, only those `filter` admits.
    async fn recent_uploads(&self, limit: i64, filter: &UploadFilter) -> Result<Vec<UploadRecord>>;

    /// Records an upload refused outright: evidence against its contributor.
    async fn record_refusal(&self, refusal: &NewRefusal) -> Result<()>;

    /// What was left out of an upload, in the order it was found, at most `limit`.
    async fn rejections(&self, upload_id: i64, limit: i64) -> Result<Vec<Rejection>>;

    async fn stats(&self) -> Result<StoreStats>;

    async fn open_session(&self, session: &UploadSession) -> Result<()>;

    async fn session(&self, id: &str) -> Result<Option<UploadSession>>;

    /// Appends a part at `offset`, which must be where the session stands
    /// ([`StoreError::Conflict`](crate::StoreError::Conflict) otherwise); returns the new offset.
    async fn add_session_part(
        &self,
        id: &str,
        part: &SessionPart,
        now: DateTime<Utc>,
    ) -> Result<i64>;

    async fn session_parts(&self, id: &str) -> Result<Vec<SessionPart>>;

    async fn delete_session(&self, id: &str) -> Result<()>;

    /// The sessions a device has open, oldest first.
    async fn device_sessions(&self, device: &DeviceId) -> Result<Vec<UploadSession>>;

    /// Sessions of any device untouched since `before`, least recently touched first, at most
    /// `limit`: what the sweeper drops.
    async fn stale_sessions(&self, before: DateTime<Utc>, limit: i64)
    -> Result<Vec<UploadSession>>;

    /// Uploads whose originals are due for deletion and still kept, at most `limit`: processed
    /// drives received before `received_before`, and every upload the workers rejected (its
    /// bytes are of no further use), each with the blobs that only they (and other due uploads)
    /// reference.
    async fn originals_due(
        &self,
        received_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueOriginals>>;

    /// Marks a drive's originals (the upload's bytes and its frames') as deleted.
    async fn mark_originals_expired(&self, upload_id: i64, now: DateTime<Utc>) -> Result<()>;
}

/// An earlier upload of the same bytes by the same device: a retry of one already recorded.
const SAME_DEVICE_SAME_BYTES: &str =
    "SELECT id, status, copy_of FROM uploads WHERE device = $1 AND sha256 = $2";

// Recording an upload: PostgreSQL skips a duplicate ON CONFLICT (and looks for it after, under
// its advisory lock); SQLite has already looked for it under its single writer.
const INSERT_UPLOAD_PG: &str = "INSERT INTO uploads (device, kind, sha256, size_bytes, blob_key, \
         received_at, contributor, rewardable, copy_of) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
         (SELECT min(id) FROM uploads WHERE sha256 = $3 AND device <> $1)) \
     ON CONFLICT (device, sha256) DO NOTHING RETURNING id, copy_of";
const INSERT_UPLOAD_SQLITE: &str = "INSERT INTO uploads (device, kind, sha256, size_bytes, \
         blob_key, received_at, contributor, rewardable, copy_of) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
         (SELECT min(id) FROM uploads WHERE sha256 = $3 AND device <> $1)) \
     RETURNING id, copy_of";

/// An upload's processing job, due when the upload arrived.
const QUEUE_UPLOAD_JOB: &str = "INSERT INTO jobs (kind, upload_id, available_at, created_at) \
     VALUES ('process_upload', $1, $2, $2) RETURNING id";

/// An upload by its id.
static UPLOAD_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1"));

/// The newest uploads not erased: `$1` at most, of contributor `$2`, device `$3` and verdict `$4`
/// where given.
static RECENT_UPLOADS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads \
         WHERE erased_at IS NULL AND (CAST($2 AS text) IS NULL OR contributor = $2) \
           AND (CAST($3 AS text) IS NULL OR device = $3) \
           AND (CAST($4 AS text) IS NULL OR trust = $4) \
         ORDER BY id DESC LIMIT $1"
    )
});

const RECORD_REFUSAL: &str = "INSERT INTO upload_refusals (device, contributor, kind, sha256, \
         reason, detail, received_at, first_at, last_at, first_lat, first_lon, last_lat, \
         last_lon) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

const REJECTIONS: &str = "SELECT stage, item, reason, detail FROM rejected_observations \
     WHERE upload_id = $1 ORDER BY seq LIMIT $2";

const OPEN_SESSION: &str = "INSERT INTO upload_sessions (id, device, kind, size_bytes, sha256, \
         received_bytes, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

const SESSION_BY_ID: &str = "SELECT * FROM upload_sessions WHERE id = $1";

/// Moves session `$1` on from offset `$2` by `$3` bytes at `$4`, if it stands at `$2` and the
/// part fits.
const MOVE_SESSION_ON: &str = "UPDATE upload_sessions \
     SET received_bytes = received_bytes + $3, updated_at = $4 \
     WHERE id = $1 AND received_bytes = $2 AND received_bytes + $3 <= size_bytes \
     RETURNING received_bytes";

const INSERT_SESSION_PART: &str = "INSERT INTO upload_session_parts \
         (session_id, offset_bytes, size_bytes, blob_key) VALUES ($1, $2, $3, $4)";

const SESSION_PARTS: &str = "SELECT offset_bytes, size_bytes, blob_key FROM upload_session_parts \
     WHERE session_id = $1 ORDER BY offset_bytes";

const DELETE_SESSION: &str = "DELETE FROM upload_sessions WHERE id = $1";

const DEVICE_SESSIONS: &str = "SELECT * FROM upload_sessions WHERE device = $1 ORDER BY created_at";

const STALE_SESSIONS: &str =
    "SELECT * FROM upload_sessions WHERE updated_at < $1 ORDER BY updated_at LIMIT $2";

/// Uploads whose originals are due: rejected ones, and processed drives received before `$1`.
const ORIGINALS_DUE: &str = "SELECT id FROM uploads \
     WHERE blob_expired_at IS NULL \
           AND (status = 'rejected' \
                OR (kind = 'drive' AND status <> 'queued' AND received_at < $1)) \
     ORDER BY received_at, id LIMIT $2";

// The due uploads' blobs that nothing else needs: PostgreSQL takes the ids as one array
// (`= ANY($1)`, `<> ALL($1)`), SQLite as a literal list of integers (`IN (…)`, `NOT IN (…)`).
const DUE_ORIGINAL_KEYS_PG: &str = "WITH k AS ( \
         SELECT id AS upload_id, blob_key AS key FROM uploads WHERE id = ANY($1) \
         UNION SELECT upload_id, blob_key FROM frames WHERE upload_id = ANY($1) \
         UNION SELECT upload_id, blob_key FROM frame_rejections WHERE upload_id = ANY($1)) \
     SELECT upload_id, key FROM k \
     WHERE NOT EXISTS (SELECT 1 FROM uploads u WHERE u.blob_key = k.key \
                           AND u.blob_expired_at IS NULL AND u.id <> ALL($1)) \
       AND NOT EXISTS (SELECT 1 FROM frames f WHERE f.blob_key = k.key \
                           AND f.original_expired_at IS NULL AND f.upload_id <> ALL($1)) \
       AND NOT EXISTS (SELECT 1 FROM frame_rejections r WHERE r.blob_key = k.key \
                           AND r.original_expired_at IS NULL AND r.upload_id <> ALL($1)) \
       AND NOT EXISTS (SELECT 1 FROM frames f WHERE f.published_key = k.key) \
       AND NOT EXISTS (SELECT 1 FROM frame_rejections r WHERE r.review_key = k.key) \
     ORDER BY upload_id, key";
fn due_original_keys_sqlite(ids: &[i64]) -> String {
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    format!(
        "WITH k AS ( \
             SELECT id AS upload_id, blob_key AS key FROM uploads WHERE id IN ({list}) \
             UNION SELECT upload_id, blob_key FROM frames WHERE upload_id IN ({list}) \
             UNION SELECT upload_id, blob_key FROM frame_rejections \
                   WHERE upload_id IN ({list})) \
         SELECT upload_id, key FROM k \
         WHERE NOT EXISTS (SELECT 1 FROM uploads u WHERE u.blob_key = k.key \
                               AND u.blob_expired_at IS NULL AND u.id NOT IN ({list})) \
           AND NOT EXISTS (SELECT 1 FROM frames f WHERE f.blob_key = k.key \
                               AND f.original_expired_at IS NULL \
                               AND f.upload_id NOT IN ({list})) \
           AND NOT EXISTS (SELECT 1 FROM frame_rejections r WHERE r.blob_key = k.key \
                               AND r.original_expired_at IS NULL \
                               AND r.upload_id NOT IN ({list})) \
           AND NOT EXISTS (SELECT 1 FROM frames f WHERE f.published_key = k.key) \
           AND NOT EXISTS (SELECT 1 FROM frame_rejections r WHERE r.review_key = k.key) \
         ORDER BY upload_id, key"
    )
}

/// Marks upload `$1`'s originals, and its frames', deleted at `$2`.
const MARK_ORIGINALS_EXPIRED: [&str; 3] = [
    "UPDATE uploads SET blob_expired_at = $2 WHERE id = $1 AND blob_expired_at IS NULL",
    "UPDATE frames SET original_expired_at = $2 \
     WHERE upload_id = $1 AND original_expired_at IS NULL",
    "UPDATE frame_rejections SET original_expired_at = $2 \
     WHERE upload_id = $1 AND original_expired_at IS NULL",
];

/// An upload's row, read from [`UPLOAD_COLUMNS`].
pub(crate) fn upload_from_row(row: &impl Columns) -> Result<UploadRecord> {
    Ok(UploadRecord {
        id: row.col("id")?,
        device: row.word("device")?,
        kind: row.word("kind")?,
        sha256: row.col("sha256")?,
        size_bytes: row.col("size_bytes")?,
        received_at: row.time("received_at")?,
        status: row.word("status")?,
        reason: row.col("reason")?,
        fixes_accepted: row.col("fixes_accepted")?,
        fixes_rejected: row.col("fixes_rejected")?,
        cells: row.col("cells")?,
        matched_m: row.col("matched_m")?,
        processed_at: row.opt_time("processed_at")?,
        observations_accepted: row.col("observations_accepted")?,
        observations_rejected: row.col("observations_rejected")?,
        contributor: row.col("contributor")?,
        rewardable: row.col("rewardable")?,
        cells_seen: row.col("cells_seen")?,
        trust: UploadTrust::from_columns(
            row.col("trust")?,
            row.col("trust_findings")?,
            row.col("trust_epoch")?,
        ),
        evidence: row.col("evidence")?,
        copy_of: row.col("copy_of")?,
        erased_at: row.opt_time("erased_at")?,
    })
}

pub(crate) fn session_from_row(row: &impl Columns) -> Result<UploadSession> {
    Ok(UploadSession {
        id: row.col("id")?,
        device: row.word("device")?,
        kind: row.word("kind")?,
        size_bytes: row.col("size_bytes")?,
        sha256: row.col("sha256")?,
        received_bytes: row.col("received_bytes")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// A row of [`REJECTIONS`].
fn rejection_from_row(row: &impl Columns) -> Result<Rejection> {
    Ok(Rejection {
        stage: row.word("stage")?,
        item: row.col("item")?,
        reason: row.col("reason")?,
        detail: row.col("detail")?,
    })
}

/// A row of [`SESSION_PARTS`].
fn part_from_row(row: &impl Columns) -> Result<SessionPart> {
    Ok(SessionPart {
        offset: row.col("offset_bytes")?,
        size: row.col("size_bytes")?,
        blob_key: row.col("blob_key")?,
    })
}

#[async_trait]
impl Uploads for PgStore {
    async fn record_upload(&self, upload: NewUpload) -> Result<UploadReceipt> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        // Uploads of the same bytes take turns, so that of two devices sending them at once the
        // second sees the first's committed row and records itself as its copy.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(pg::SAME_BYTES_LOCK)
            .bind(&upload.blob.sha256)
            .execute(&mut *tx)
            .await
            .ctx("waiting for uploads of the same bytes")?;
        let inserted: Option<(i64, Option<i64>)> = sqlx::query_as(INSERT_UPLOAD_PG)
            .bind(upload.device.as_str())
            .bind(upload.kind.as_str())
            .bind(&upload.blob.sha256)
            .bind(upload.blob.size as i64)
            .bind(&upload.blob.key)
            .bind(upload.received_at)
            .bind(&upload.contributor)
            .bind(upload.rewardable)
            .fetch_optional(&mut *tx)
            .await
            .ctx("recording an upload")?;
        let Some((upload_id, copy_of)) = inserted else {
            let (id, status, copy_of): (i64, String, Option<i64>) =
                sqlx::query_as(SAME_DEVICE_SAME_BYTES)
                    .bind(upload.device.as_str())
                    .bind(&upload.blob.sha256)
                    .fetch_one(&mut *tx)
                    .await
                    .ctx("finding a duplicate upload")?;
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(UploadReceipt {
                upload_id: id,
                job_id: None,
                duplicate: true,
                status: status.parse()?,
                copy_of,
            });
        };
        let job_id: i64 = sqlx::query_scalar(QUEUE_UPLOAD_JOB)
            .bind(upload_id)
            .bind(upload.received_at)
            .fetch_one(&mut *tx)
            .await
            .ctx("queueing a job")?;
        tx.commit().await.ctx("committing an upload")?;
        Ok(UploadReceipt {
            upload_id,
            job_id: Some(job_id),
            duplicate: false,
            status: UploadStatus::Queued,
            copy_of,
        })
    }

    async fn upload(&self, id: i64) -> Result<Option<UploadRecord>> {
        let row = sqlx::query(&UPLOAD_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an upload")?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn recent_uploads(&self, limit: i64, filter: &UploadFilter) -> Result<Vec<UploadRecord>> {
        let rows = sqlx::query(&RECENT_UPLOADS)
            .bind(limit)
            .bind(&filter.contributor)
            .bind(filter.device.as_ref().map(DeviceId::as_str))
            .bind(&filter.trust)
            .fetch_all(&self.pool)
            .await
            .ctx("listing uploads")?;
        rows.iter().map(upload_from_row).collect()
    }

    async fn record_refusal(&self, r: &NewRefusal) -> Result<()> {
        sqlx::query(RECORD_REFUSAL)
            .bind(r.device.as_str())
            .bind(&r.contributor)
            .bind(r.kind.as_str())
            .bind(&r.sha256)
            .bind(&r.reason)
            .bind(&r.detail)
            .bind(r.received_at)
            .bind(r.span.map(|s| s.0.at))
            .bind(r.span.map(|s| s.1.at))
            .bind(r.span.map(|s| s.0.pos.lat))
            .bind(r.span.map(|s| s.0.pos.lon))
            .bind(r.span.map(|s| s.1.pos.lat))
            .bind(r.span.map(|s| s.1.pos.lon))
            .execute(&self.pool)
            .await
            .ctx("recording a refused upload")?;
        Ok(())
    }

    async fn rejections(&self, upload_id: i64, limit: i64) -> Result<Vec<Rejection>> {
        let rows = sqlx::query(REJECTIONS)
            .bind(upload_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading rejected observations")?;
        rows.iter().map(rejection_from_row).collect()
    }

    async fn stats(&self) -> Result<StoreStats> {
        let row: rows::StatsRow = sqlx::query_as(rows::STATS_SQL)
            .fetch_one(&self.pool)
            .await
            .ctx("reading stats")?;
        Ok(rows::stats_from_row(row))
    }

    async fn open_session(&self, session: &UploadSession) -> Result<()> {
        sqlx::query(OPEN_SESSION)
            .bind(&session.id)
            .bind(session.device.as_str())
            .bind(session.kind.as_str())
            .bind(session.size_bytes)
            .bind(&session.sha256)
            .bind(session.received_bytes)
            .bind(session.created_at)
            .bind(session.updated_at)
            .execute(&self.pool)
            .await
            .ctx("opening an upload session")?;
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<UploadSession>> {
        let row = sqlx::query(SESSION_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an upload session")?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn add_session_part(
        &self,
        id: &str,
        part: &SessionPart,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let moved: Option<i64> = sqlx::query_scalar(MOVE_SESSION_ON)
            .bind(id)
            .bind(part.offset)
            .bind(part.size)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .ctx("moving an upload session on")?;
        let Some(offset) = moved else {
            tx.rollback().await.ctx("ending a transaction")?;
            return Err(rows::part_conflict(self.session(id).await?, part));
        };
        sqlx::query(INSERT_SESSION_PART)
            .bind(id)
            .bind(part.offset)
            .bind(part.size)
            .bind(&part.blob_key)
            .execute(&mut *tx)
            .await
            .ctx("recording an upload part")?;
        tx.commit().await.ctx("committing an upload part")?;
        Ok(offset)
    }

    async fn session_parts(&self, id: &str) -> Result<Vec<SessionPart>> {
        let rows = sqlx::query(SESSION_PARTS)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .ctx("reading upload parts")?;
        rows.iter().map(part_from_row).collect()
    }

    async fn delete_session(&self, id: &str) -> Result<()> {
        sqlx::query(DELETE_SESSION)
            .bind(id)
            .execute(&self.pool)
            .await
            .ctx("deleting an upload session")?;
        Ok(())
    }

    async fn device_sessions(&self, device: &DeviceId) -> Result<Vec<UploadSession>> {
        let rows = sqlx::query(DEVICE_SESSIONS)
            .bind(device.as_str())
            .fetch_all(&self.pool)
            .await
            .ctx("listing upload sessions")?;
        rows.iter().map(session_from_row).collect()
    }

    async fn stale_sessions(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<UploadSession>> {
        let rows = sqlx::query(STALE_SESSIONS)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("listing stale upload sessions")?;
        rows.iter().map(session_from_row).collect()
    }

    async fn originals_due(
        &self,
        received_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueOriginals>> {
        let due: Vec<(i64,)> = sqlx::query_as(ORIGINALS_DUE)
            .bind(received_before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("finding originals past retention")?;
        let ids: Vec<i64> = due.into_iter().map(|(id,)| id).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Each due drive's blobs, less those that anything not due still needs.
        let keys: Vec<(i64, String)> = sqlx::query_as(DUE_ORIGINAL_KEYS_PG)
            .bind(&ids)
            .fetch_all(&self.pool)
            .await
            .ctx("listing originals past retention")?;
        Ok(rows::group_due(&ids, keys))
    }

    async fn mark_originals_expired(&self, upload_id: i64, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        for sql in MARK_ORIGINALS_EXPIRED {
            sqlx::query(sql)
                .bind(upload_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .ctx("marking originals deleted")?;
        }
        tx.commit().await.ctx("committing")
    }
}

#[async_trait]
impl Uploads for SqliteStore {
    async fn record_upload(&self, upload: NewUpload) -> Result<UploadReceipt> {
        let mut tx = self.write().await?;
        let existing: Option<(i64, String, Option<i64>)> = sqlx::query_as(SAME_DEVICE_SAME_BYTES)
            .bind(upload.device.as_str())
            .bind(&upload.blob.sha256)
            .fetch_optional(&mut *tx)
            .await
            .ctx("finding a duplicate upload")?;
        if let Some((id, status, copy_of)) = existing {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(UploadReceipt {
                upload_id: id,
                job_id: None,
                duplicate: true,
                status: status.parse()?,
                copy_of,
            });
        }
        let received = micros(upload.received_at);
        // Writers are serialised (BEGIN IMMEDIATE), so an earlier upload of the same bytes by
        // another device is either committed and seen here, or not yet begun.
        let (upload_id, copy_of): (i64, Option<i64>) = sqlx::query_as(INSERT_UPLOAD_SQLITE)
            .bind(upload.device.as_str())
            .bind(upload.kind.as_str())
            .bind(&upload.blob.sha256)
            .bind(upload.blob.size as i64)
            .bind(&upload.blob.key)
            .bind(received)
            .bind(&upload.contributor)
            .bind(upload.rewardable)
            .fetch_one(&mut *tx)
            .await
            .ctx("recording an upload")?;
        let job_id: i64 = sqlx::query_scalar(QUEUE_UPLOAD_JOB)
            .bind(upload_id)
            .bind(received)
            .fetch_one(&mut *tx)
            .await
            .ctx("queueing a job")?;
        tx.commit().await.ctx("committing an upload")?;
        Ok(UploadReceipt {
            upload_id,
            job_id: Some(job_id),
            duplicate: false,
            status: UploadStatus::Queued,
            copy_of,
        })
    }

    async fn upload(&self, id: i64) -> Result<Option<UploadRecord>> {
        let row = sqlx::query(&UPLOAD_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an upload")?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn recent_uploads(&self, limit: i64, filter: &UploadFilter) -> Result<Vec<UploadRecord>> {
        let rows = sqlx::query(&RECENT_UPLOADS)
            .bind(limit)
            .bind(&filter.contributor)
            .bind(filter.device.as_ref().map(DeviceId::as_str))
            .bind(&filter.trust)
            .fetch_all(&self.pool)
            .await
            .ctx("listing uploads")?;
        rows.iter().map(upload_from_row).collect()
    }

    async fn record_refusal(&self, r: &NewRefusal) -> Result<()> {
        sqlx::query(RECORD_REFUSAL)
            .bind(r.device.as_str())
            .bind(&r.contributor)
            .bind(r.kind.as_str())
            .bind(&r.sha256)
            .bind(&r.reason)
            .bind(&r.detail)
            .bind(micros(r.received_at))
            .bind(r.span.map(|s| micros(s.0.at)))
            .bind(r.span.map(|s| micros(s.1.at)))
            .bind(r.span.map(|s| s.0.pos.lat))
            .bind(r.span.map(|s| s.0.pos.lon))
            .bind(r.span.map(|s| s.1.pos.lat))
            .bind(r.span.map(|s| s.1.pos.lon))
            .execute(&self.pool)
            .await
            .ctx("recording a refused upload")?;
        Ok(())
    }

    async fn rejections(&self, upload_id: i64, limit: i64) -> Result<Vec<Rejection>> {
        let rows = sqlx::query(REJECTIONS)
            .bind(upload_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading rejected observations")?;
        rows.iter().map(rejection_from_row).collect()
    }

    async fn stats(&self) -> Result<StoreStats> {
        let row: rows::StatsRow = sqlx::query_as(rows::STATS_SQL)
            .fetch_one(&self.pool)
            .await
            .ctx("reading stats")?;
        Ok(rows::stats_from_row(row))
    }

    async fn open_session(&self, session: &UploadSession) -> Result<()> {
        sqlx::query(OPEN_SESSION)
            .bind(&session.id)
            .bind(session.device.as_str())
            .bind(session.kind.as_str())
            .bind(session.size_bytes)
            .bind(&session.sha256)
            .bind(session.received_bytes)
            .bind(micros(session.created_at))
            .bind(micros(session.updated_at))
            .execute(&self.pool)
            .await
            .ctx("opening an upload session")?;
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<UploadSession>> {
        let row = sqlx::query(SESSION_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an upload session")?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn add_session_part(
        &self,
        id: &str,
        part: &SessionPart,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let mut tx = self.write().await?;
        let moved: Option<i64> = sqlx::query_scalar(MOVE_SESSION_ON)
            .bind(id)
            .bind(part.offset)
            .bind(part.size)
            .bind(micros(now))
            .fetch_optional(&mut *tx)
            .await
            .ctx("moving an upload session on")?;
        let Some(offset) = moved else {
            tx.rollback().await.ctx("ending a transaction")?;
            return Err(rows::part_conflict(self.session(id).await?, part));
        };
        sqlx::query(INSERT_SESSION_PART)
            .bind(id)
            .bind(part.offset)
            .bind(part.size)
            .bind(&part.blob_key)
            .execute(&mut *tx)
            .await
            .ctx("recording an upload part")?;
        tx.commit().await.ctx("committing an upload part")?;
        Ok(offset)
    }

    async fn session_parts(&self, id: &str) -> Result<Vec<SessionPart>> {
        let rows = sqlx::query(SESSION_PARTS)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .ctx("reading upload parts")?;
        rows.iter().map(part_from_row).collect()
    }

    async fn delete_session(&self, id: &str) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM upload_session_parts WHERE session_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting upload parts")?;
        sqlx::query(DELETE_SESSION)
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting an upload session")?;
        tx.commit().await.ctx("committing")?;
        Ok(())
    }

    async fn device_sessions(&self, device: &DeviceId) -> Result<Vec<UploadSession>> {
        let rows = sqlx::query(DEVICE_SESSIONS)
            .bind(device.as_str())
            .fetch_all(&self.pool)
            .await
            .ctx("listing upload sessions")?;
        rows.iter().map(session_from_row).collect()
    }

    async fn stale_sessions(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<UploadSession>> {
        let rows = sqlx::query(STALE_SESSIONS)
            .bind(micros(before))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("listing stale upload sessions")?;
        rows.iter().map(session_from_row).collect()
    }

    async fn originals_due(
        &self,
        received_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueOriginals>> {
        let due: Vec<(i64,)> = sqlx::query_as(ORIGINALS_DUE)
            .bind(micros(received_before))
            .bind(limit.min(500))
            .fetch_all(&self.pool)
            .await
            .ctx("finding originals past retention")?;
        let ids: Vec<i64> = due.into_iter().map(|(id,)| id).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Each due drive's blobs, less those that anything not due still needs.
        let sql = due_original_keys_sqlite(&ids);
        let keys: Vec<(i64, String)> = sqlx::query_as(&sql)
            .fetch_all(&self.pool)
            .await
            .ctx("listing originals past retention")?;
        Ok(rows::group_due(&ids, keys))
    }

    async fn mark_originals_expired(&self, upload_id: i64, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write().await?;
        for sql in MARK_ORIGINALS_EXPIRED {
            sqlx::query(sql)
                .bind(upload_id)
                .bind(micros(now))
                .execute(&mut *tx)
                .await
                .ctx("marking originals deleted")?;
        }
        tx.commit().await.ctx("committing")
    }
}
