//! Embedded backend: one SQLite file in WAL mode, so `covermap serve` needs no database server.
//! Every writing transaction starts with `BEGIN IMMEDIATE`: SQLite has one writer at a time, and
//! taking the write lock up front is what makes the queue's lease safe across processes.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{
    BoundingBox, Cell, CellCoverage, DeviceId, ImageryCellSummary, LatLon, MatchedStretch,
    RadioCellSummary, RadioType, RoadCell, RoadSegment, UploadStatus,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use covermap_domain::rewards::{CellReward, ContributorReward, EpochOutcome, Penalty};
use covermap_domain::rewards::{EpochInputs, EpochPeriod};

use crate::error::{Result, SqlContext, StoreError};
use crate::rows::FLAGGED_UPLOADS;
use crate::{
    ApiKeyRecord, AuditFrame, AuditQuery, ClosedEpoch, Decision, DemandAreaRecord, DemandCellState,
    DeviceFilter, DeviceRecord, DueOriginals, EpochClaim, EpochRecord, FrameDecision, FrameHash,
    FrameImage, FrameRejectionRow, FrameRow, JobFailure, JobOutcome, Lease, NewApiKey,
    NewDemandArea, NewFrameDecision, NewUpload, QueuePolicy, RadioRow, Registration, Rejection,
    Rotation, SegmentSeen, SessionPart, Store, StoreStats, UploadFilter, UploadReceipt,
    UploadRecord, UploadSession, rows,
};
use crate::{Neighbour, NewRefusal, UploadExtent, UploadTrust};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// Writers of this process queue here, in order, before taking SQLite's write lock: SQLite's
    /// own busy handler makes waiting writers sleep and retry (up to 100 ms a sleep), which
    /// under many concurrent uploads turns into long tail latencies. Other processes on the
    /// same file still meet at SQLite's lock.
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction holding this process's writer turn.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> std::result::Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    async fn rollback(self) -> std::result::Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

const UPLOAD_COLUMNS: &str = "id, device, kind, sha256, size_bytes, received_at, status, reason, \
     fixes_accepted, fixes_rejected, cells, matched_m, processed_at, observations_accepted, \
     observations_rejected, contributor, rewardable, cells_seen, trust, trust_findings, \
     trust_epoch, evidence, copy_of";

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {us} is out of range")))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open_file(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Config(format!(
                    "cannot create data directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::open(options, &path.display().to_string()).await
    }

    /// Opens a `sqlite:` URL, e.g. `sqlite:///var/lib/covermap/db.sqlite3` or `sqlite::memory:`.
    pub async fn open_url(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|source| StoreError::Connect {
                url: url.to_owned(),
                source,
            })?
            .create_if_missing(true);
        Self::open(options, url).await
    }

    async fn open(options: SqliteConnectOptions, shown_as: &str) -> Result<Self> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the client hears 2xx, power loss included (WAL
            // with NORMAL would only survive a crash of the process).
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                url: shown_as.to_owned(),
                source,
            })?;
        Ok(Self {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    pub(crate) async fn write(&self) -> Result<WriteTx> {
        let turn = self.writer.clone().lock_owned().await;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .ctx("starting a write transaction")?;
        Ok(WriteTx { tx, _turn: turn })
    }

    async fn holding(tx: &mut SqliteConnection, lease: &Lease) -> Result<()> {
        let held = sqlx::query(
            "SELECT 1 FROM jobs WHERE id = ? AND status = 'leased' AND lease_token = ?",
        )
        .bind(lease.job_id)
        .bind(&lease.token)
        .fetch_optional(&mut *tx)
        .await
        .ctx("checking a lease")?;
        match held {
            Some(_) => Ok(()),
            None => Err(StoreError::LeaseLost {
                job_id: lease.job_id,
            }),
        }
    }

    async fn reject_upload(
        tx: &mut SqliteConnection,
        upload_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE uploads SET status = 'rejected', reason = ?, processed_at = ? WHERE id = ?",
        )
        .bind(reason)
        .bind(micros(now))
        .bind(upload_id)
        .execute(&mut *tx)
        .await
        .ctx("rejecting an upload")?;
        Ok(())
    }
}

fn upload_from_row(row: &SqliteRow) -> Result<UploadRecord> {
    let get_i64 = |c: &str| row.try_get::<i64, _>(c).ctx("reading an upload");
    let get_opt = |c: &str| row.try_get::<Option<i64>, _>(c).ctx("reading an upload");
    let get_str = |c: &str| row.try_get::<String, _>(c).ctx("reading an upload");
    Ok(UploadRecord {
        id: get_i64("id")?,
        device: get_str("device")?.parse()?,
        kind: get_str("kind")?.parse()?,
        sha256: get_str("sha256")?,
        size_bytes: get_i64("size_bytes")?,
        received_at: time(get_i64("received_at")?)?,
        status: get_str("status")?.parse()?,
        reason: row.try_get("reason").ctx("reading an upload")?,
        fixes_accepted: get_opt("fixes_accepted")?,
        fixes_rejected: get_opt("fixes_rejected")?,
        cells: get_opt("cells")?,
        matched_m: row.try_get("matched_m").ctx("reading an upload")?,
        processed_at: get_opt("processed_at")?.map(time).transpose()?,
        observations_accepted: get_opt("observations_accepted")?,
        observations_rejected: get_opt("observations_rejected")?,
        contributor: row.try_get("contributor").ctx("reading an upload")?,
        rewardable: row.try_get("rewardable").ctx("reading an upload")?,
        cells_seen: get_opt("cells_seen")?,
        trust: UploadTrust::from_columns(
            get_str("trust")?,
            row.try_get("trust_findings").ctx("reading an upload")?,
            get_opt("trust_epoch")?,
        ),
        evidence: row.try_get("evidence").ctx("reading an upload")?,
        copy_of: get_opt("copy_of")?,
    })
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKeyRecord> {
    let ctx = "reading an API key";
    Ok(ApiKeyRecord {
        id: row.try_get("id").ctx(ctx)?,
        prefix: row.try_get("prefix").ctx(ctx)?,
        role: row.try_get::<String, _>("role").ctx(ctx)?.parse()?,
        contributor: row.try_get("contributor").ctx(ctx)?,
        created_at: time(row.try_get("created_at").ctx(ctx)?)?,
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")
            .ctx(ctx)?
            .map(time)
            .transpose()?,
    })
}

fn device_from_row(row: &SqliteRow) -> Result<DeviceRecord> {
    let ctx = "reading a device";
    Ok(DeviceRecord {
        device: row.try_get::<String, _>("device").ctx(ctx)?.parse()?,
        public_key: row.try_get("public_key").ctx(ctx)?,
        contributor: row.try_get("contributor").ctx(ctx)?,
        registered_by: row.try_get("registered_by").ctx(ctx)?,
        registered_at: time(row.try_get("registered_at").ctx(ctx)?)?,
        rotated_at: row
            .try_get::<Option<i64>, _>("rotated_at")
            .ctx(ctx)?
            .map(time)
            .transpose()?,
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")
            .ctx(ctx)?
            .map(time)
            .transpose()?,
    })
}

fn decision_from_row(row: &SqliteRow) -> Result<FrameDecision> {
    let ctx = "reading a frame decision";
    Ok(FrameDecision {
        id: row.try_get("id").ctx(ctx)?,
        upload_id: row.try_get("upload_id").ctx(ctx)?,
        frame: row.try_get("frame").ctx(ctx)?,
        decision: row.try_get::<String, _>("decision").ctx(ctx)?.parse()?,
        note: row.try_get("note").ctx(ctx)?,
        auditor: row.try_get("auditor").ctx(ctx)?,
        auditor_key_id: row.try_get("auditor_key_id").ctx(ctx)?,
        decided_at: time(row.try_get("decided_at").ctx(ctx)?)?,
    })
}

fn session_from_row(row: &SqliteRow) -> Result<UploadSession> {
    let ctx = "reading an upload session";
    Ok(UploadSession {
        id: row.try_get("id").ctx(ctx)?,
        device: row.try_get::<String, _>("device").ctx(ctx)?.parse()?,
        kind: row.try_get::<String, _>("kind").ctx(ctx)?.parse()?,
        size_bytes: row.try_get("size_bytes").ctx(ctx)?,
        sha256: row.try_get("sha256").ctx(ctx)?,
        received_bytes: row.try_get("received_bytes").ctx(ctx)?,
        created_at: time(row.try_get("created_at").ctx(ctx)?)?,
        updated_at: time(row.try_get("updated_at").ctx(ctx)?)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .ctx("pinging")?;
        Ok(())
    }

    async fn record_upload(&self, upload: NewUpload) -> Result<UploadReceipt> {
        let mut tx = self.write().await?;
        let existing: Option<(i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, status, copy_of FROM uploads WHERE device = ? AND sha256 = ?",
        )
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
        let (upload_id, copy_of): (i64, Option<i64>) = sqlx::query_as(
            "INSERT INTO uploads (device, kind, sha256, size_bytes, blob_key, received_at, \
                 contributor, rewardable, copy_of) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
                 (SELECT min(id) FROM uploads WHERE sha256 = ?3 AND device <> ?1)) \
             RETURNING id, copy_of",
        )
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
        let job_id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (kind, upload_id, available_at, created_at) \
             VALUES ('process_upload', ?, ?, ?) RETURNING id",
        )
        .bind(upload_id)
        .bind(received)
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
        let row = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .ctx("reading an upload")?;
        row.as_ref().map(upload_from_row).transpose()
    }

    async fn recent_uploads(&self, limit: i64, filter: &UploadFilter) -> Result<Vec<UploadRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads \
             WHERE (?1 IS NULL OR contributor = ?1) AND (?2 IS NULL OR device = ?2) \
               AND (?4 IS NULL OR trust = ?4) \
             ORDER BY id DESC LIMIT ?3"
        ))
        .bind(&filter.contributor)
        .bind(
            filter
                .device
                .as_ref()
                .map(covermap_domain::DeviceId::as_str),
        )
        .bind(limit)
        .bind(&filter.trust)
        .fetch_all(&self.pool)
        .await
        .ctx("listing uploads")?;
        rows.iter().map(upload_from_row).collect()
    }

    async fn lease_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
        policy: QueuePolicy,
    ) -> Result<Option<Lease>> {
        let mut tx = self.write().await?;
        let now_us = micros(now);
        let exhausted: Vec<(i64, i32)> = sqlx::query_as(
            "UPDATE jobs SET status = 'failed', finished_at = ?1, lease_token = NULL, \
                 last_error = 'lease ran out ' || attempts || ' times without the job finishing' \
             WHERE status = 'leased' AND leased_until < ?1 AND attempts >= ?2 \
             RETURNING upload_id, attempts",
        )
        .bind(now_us)
        .bind(policy.max_attempts)
        .fetch_all(&mut *tx)
        .await
        .ctx("failing exhausted jobs")?;
        for (upload_id, attempts) in exhausted {
            Self::reject_upload(&mut tx, upload_id, &rows::gave_up(attempts), now).await?;
        }
        let token = uuid::Uuid::new_v4().to_string();
        let until = now + lease_for;
        let leased: Option<(i64, i64, i32)> = sqlx::query_as(
            "UPDATE jobs SET status = 'leased', attempts = attempts + 1, lease_token = ?3, \
                 leased_by = ?4, leased_until = ?5 \
             WHERE id = (SELECT id FROM jobs \
                         WHERE (status = 'queued' AND available_at <= ?1) \
                            OR (status = 'leased' AND leased_until < ?1 AND attempts < ?2) \
                         ORDER BY id LIMIT 1) \
             RETURNING id, upload_id, attempts",
        )
        .bind(now_us)
        .bind(policy.max_attempts)
        .bind(&token)
        .bind(worker)
        .bind(micros(until))
        .fetch_optional(&mut *tx)
        .await
        .ctx("leasing a job")?;
        let Some((job_id, upload_id, attempt)) = leased else {
            tx.commit().await.ctx("committing")?;
            return Ok(None);
        };
        let (device, kind, blob_key, received_at): (String, String, String, i64) =
            sqlx::query_as("SELECT device, kind, blob_key, received_at FROM uploads WHERE id = ?")
                .bind(upload_id)
                .fetch_one(&mut *tx)
                .await
                .ctx("reading a leased upload")?;
        tx.commit().await.ctx("committing a lease")?;
        Ok(Some(Lease {
            job_id,
            upload_id,
            device: device.parse()?,
            kind: kind.parse()?,
            blob_key,
            received_at: time(received_at)?,
            attempt,
            token,
            until,
        }))
    }

    async fn renew_lease(&self, lease: &Lease, until: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write().await?;
        let renewed = sqlx::query(
            "UPDATE jobs SET leased_until = ?1 \
             WHERE id = ?2 AND status = 'leased' AND lease_token = ?3",
        )
        .bind(micros(until))
        .bind(lease.job_id)
        .bind(&lease.token)
        .execute(&mut *tx)
        .await
        .ctx("renewing a lease")?
        .rows_affected();
        tx.commit().await.ctx("committing a lease's renewal")?;
        if renewed == 0 {
            return Err(StoreError::LeaseLost {
                job_id: lease.job_id,
            });
        }
        Ok(())
    }

    async fn complete_job(
        &self,
        lease: &Lease,
        outcome: &JobOutcome,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        Self::holding(&mut tx, lease).await?;
        for visit in &outcome.visits {
            let center = visit.cell.center();
            sqlx::query(
                "INSERT INTO cell_observations \
                     (upload_id, cell, device, fixes, first_seen, last_seen, lat, lon) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(lease.upload_id)
            .bind(visit.cell.as_i64())
            .bind(lease.device.as_str())
            .bind(i64::from(visit.fixes))
            .bind(micros(visit.first_seen))
            .bind(micros(visit.last_seen))
            .bind(center.lat)
            .bind(center.lon)
            .execute(&mut *tx)
            .await
            .ctx("writing cell observations")?;
        }
        for (seq, st) in outcome.stretches.iter().enumerate() {
            sqlx::query(
                "INSERT INTO matched_stretches \
                     (upload_id, seq, match_piece, cell, osm_way_id, way_piece, length_m) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(lease.upload_id)
            .bind(seq as i64)
            .bind(i64::from(st.match_piece))
            .bind(st.cell.as_i64())
            .bind(st.osm_way_id)
            .bind(i64::from(st.way_piece))
            .bind(st.length_m)
            .execute(&mut *tx)
            .await
            .ctx("writing matched stretches")?;
        }
        for (seq, r) in outcome.radio.iter().enumerate() {
            sqlx::query(
                "INSERT INTO radio_observations (upload_id, seq, observed_at, emitter_kind, radio, \
                     emitter, signal_dbm, accuracy_m, cell, lat, lon) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(lease.upload_id)
            .bind(seq as i64)
            .bind(micros(r.observed_at))
            .bind(r.emitter_kind.as_str())
            .bind(r.radio.map(RadioType::as_str))
            .bind(&r.emitter)
            .bind(r.signal_dbm)
            .bind(r.accuracy_m)
            .bind(r.cell.as_i64())
            .bind(r.pos.lat)
            .bind(r.pos.lon)
            .execute(&mut *tx)
            .await
            .ctx("writing radio observations")?;
        }
        for f in &outcome.frames {
            sqlx::query(
                "INSERT INTO frames (upload_id, frame, sequence, sha256, blob_key, captured_at, \
                     heading_deg, width, height, cell, lat, lon, status, published_key, phash, \
                     faces, plates, quality, osm_way_id, way_piece) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(lease.upload_id)
            .bind(f.frame)
            .bind(f.sequence)
            .bind(&f.sha256)
            .bind(&f.blob_key)
            .bind(micros(f.captured_at))
            .bind(f.heading_deg)
            .bind(f.width)
            .bind(f.height)
            .bind(f.cell.as_i64())
            .bind(f.pos.lat)
            .bind(f.pos.lon)
            .bind(if f.vision.is_some() {
                "published"
            } else {
                "pending"
            })
            .bind(f.vision.as_ref().map(|v| v.published_key.as_str()))
            .bind(f.vision.as_ref().map(|v| v.phash.as_str()))
            .bind(f.vision.as_ref().map(|v| v.faces))
            .bind(f.vision.as_ref().map(|v| v.plates))
            .bind(f.vision.as_ref().map(|v| v.quality.to_string()))
            .bind(f.segment.map(|s| s.osm_way_id))
            .bind(f.segment.map(|s| s.way_piece as i32))
            .execute(&mut *tx)
            .await
            .ctx("writing frames")?;
        }
        for f in &outcome.frame_rejections {
            sqlx::query(
                "INSERT INTO frame_rejections (upload_id, frame, reason, scores, sha256, \
                     blob_key, review_key, phash, duplicate_of_upload, duplicate_of_frame, \
                     captured_at, cell, lat, lon, sequence, heading_deg, width, height, \
                     osm_way_id, way_piece) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(lease.upload_id)
            .bind(f.frame)
            .bind(&f.reason)
            .bind(f.scores.to_string())
            .bind(&f.sha256)
            .bind(&f.blob_key)
            .bind(f.review_key.as_deref())
            .bind(f.phash.as_deref())
            .bind(f.duplicate_of.map(|d| d.0))
            .bind(f.duplicate_of.map(|d| d.1))
            .bind(micros(f.captured_at))
            .bind(f.cell.as_i64())
            .bind(f.pos.lat)
            .bind(f.pos.lon)
            .bind(f.placement.map(|p| p.sequence))
            .bind(f.placement.map(|p| p.heading_deg))
            .bind(f.placement.map(|p| p.width))
            .bind(f.placement.map(|p| p.height))
            .bind(f.placement.and_then(|p| p.segment).map(|s| s.osm_way_id))
            .bind(
                f.placement
                    .and_then(|p| p.segment)
                    .map(|s| s.way_piece as i32),
            )
            .execute(&mut *tx)
            .await
            .ctx("writing refused frames")?;
        }
        for (seq, r) in outcome.rejections.iter().enumerate() {
            sqlx::query(
                "INSERT INTO rejected_observations (upload_id, seq, stage, item, reason, detail) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(lease.upload_id)
            .bind(seq as i64)
            .bind(r.stage.as_str())
            .bind(r.item)
            .bind(&r.reason)
            .bind(&r.detail)
            .execute(&mut *tx)
            .await
            .ctx("writing rejected observations")?;
        }
        let (kept, refused) = outcome.observation_counts();
        let trust = rows::trust_columns(outcome);
        sqlx::query(
            "UPDATE uploads SET status = 'processed', reason = NULL, fixes_accepted = ?1, \
                 fixes_rejected = ?2, cells = ?3, processed_at = ?4, matched_m = ?5, \
                 observations_accepted = ?6, observations_rejected = ?7, cells_seen = ?9, \
                 trust = ?10, trust_findings = ?11, evidence = ?12, trust_changed_at = ?4 \
             WHERE id = ?8",
        )
        .bind(i64::from(outcome.fixes_accepted))
        .bind(i64::from(outcome.fixes_rejected))
        .bind(trust.cells)
        .bind(micros(now))
        .bind(rows::matched_m(outcome))
        .bind(kept)
        .bind(refused)
        .bind(lease.upload_id)
        .bind(trust.cells_seen)
        .bind(trust.verdict)
        .bind(trust.findings)
        .bind(trust.evidence)
        .execute(&mut *tx)
        .await
        .ctx("summarising an upload")?;
        if let Some(t) = &outcome.trust {
            if let Some(e) = &t.extent {
                sqlx::query(
                    "INSERT INTO upload_extents (upload_id, device, contributor, radio, first_at, \
                         last_at, first_lat, first_lon, last_lat, last_lon, centre_lat, centre_lon, \
                         radius_m) \
                     SELECT ?1, device, contributor, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11 \
                     FROM uploads WHERE id = ?1",
                )
                .bind(lease.upload_id)
                .bind(e.radio)
                .bind(micros(e.first_at))
                .bind(micros(e.last_at))
                .bind(e.first.lat)
                .bind(e.first.lon)
                .bind(e.last.lat)
                .bind(e.last.lon)
                .bind(e.centre.lat)
                .bind(e.centre.lon)
                .bind(e.radius_m)
                .execute(&mut *tx)
                .await
                .ctx("writing an upload's extent")?;
            }
            if let Some(print) = &t.print {
                sqlx::query("INSERT INTO track_prints (upload_id, points) VALUES (?, ?)")
                    .bind(lease.upload_id)
                    .bind(print)
                    .execute(&mut *tx)
                    .await
                    .ctx("writing a track's print")?;
            }
        }
        sqlx::query(
            "UPDATE jobs SET status = 'done', finished_at = ?, lease_token = NULL WHERE id = ?",
        )
        .bind(micros(now))
        .bind(lease.job_id)
        .execute(&mut *tx)
        .await
        .ctx("marking a job done")?;
        tx.commit().await.ctx("committing a job")?;
        Ok(())
    }

    async fn fail_job(
        &self,
        lease: &Lease,
        failure: &JobFailure,
        now: DateTime<Utc>,
        policy: QueuePolicy,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        Self::holding(&mut tx, lease).await?;
        match rows::next_step(lease, failure, policy) {
            rows::NextStep::Retry { error } => {
                sqlx::query(
                    "UPDATE jobs SET status = 'queued', lease_token = NULL, leased_until = NULL, \
                         available_at = ?, last_error = ? WHERE id = ?",
                )
                .bind(micros(now + policy.retry_after))
                .bind(error)
                .bind(lease.job_id)
                .execute(&mut *tx)
                .await
                .ctx("postponing a job")?;
            }
            rows::NextStep::GiveUp { reason } => {
                sqlx::query(
                    "UPDATE jobs SET status = 'failed', lease_token = NULL, finished_at = ?, \
                         last_error = ? WHERE id = ?",
                )
                .bind(micros(now))
                .bind(&reason)
                .bind(lease.job_id)
                .execute(&mut *tx)
                .await
                .ctx("failing a job")?;
                Self::reject_upload(&mut tx, lease.upload_id, &reason, now).await?;
            }
        }
        tx.commit().await.ctx("committing a job failure")?;
        Ok(())
    }

    async fn coverage(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<CellCoverage>> {
        let rows: Vec<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(&format!(
            "SELECT cell, SUM(fixes), COUNT(*), COUNT(DISTINCT device), MIN(first_seen), \
                    MAX(last_seen) \
             FROM cell_observations \
             WHERE lat BETWEEN ? AND ? AND lon BETWEEN ? AND ? \
               AND upload_id NOT IN {FLAGGED_UPLOADS} \
             GROUP BY cell ORDER BY cell LIMIT ?",
        ))
        .bind(bbox.south)
        .bind(bbox.north)
        .bind(bbox.west)
        .bind(bbox.east)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading coverage")?;
        rows.into_iter()
            .map(|(cell, fixes, uploads, devices, first_seen, last_seen)| {
                Ok(CellCoverage {
                    cell: Cell::from_i64(cell)?,
                    fixes,
                    uploads,
                    devices,
                    first_seen: time(first_seen)?,
                    last_seen: time(last_seen)?,
                })
            })
            .collect()
    }

    async fn replace_roads(&self, segments: &[RoadSegment], cells: &[RoadCell]) -> Result<u64> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM road_segments")
            .execute(&mut *tx)
            .await
            .ctx("clearing the road network")?;
        sqlx::query("DELETE FROM road_cells")
            .execute(&mut *tx)
            .await
            .ctx("clearing road cells")?;
        for c in cells {
            let center = c.cell.center();
            sqlx::query(
                "INSERT INTO road_cells (cell, road_length_m, lat, lon) VALUES (?, ?, ?, ?)",
            )
            .bind(c.cell.as_i64())
            .bind(c.road_length_m)
            .bind(center.lat)
            .bind(center.lon)
            .execute(&mut *tx)
            .await
            .ctx("writing road cells")?;
        }
        for s in segments {
            let (mut w, mut so, mut e, mut n) = (180.0f64, 90.0f64, -180.0f64, -90.0f64);
            for p in &s.points {
                w = w.min(p.lon);
                e = e.max(p.lon);
                so = so.min(p.lat);
                n = n.max(p.lat);
            }
            sqlx::query(
                "INSERT INTO road_segments (osm_way_id, piece, osm_node_ids, highway, name, oneway, \
                     length_m, coords, min_lon, min_lat, max_lon, max_lat) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(s.osm_way_id)
            .bind(i64::from(s.piece))
            .bind(rows::node_ids_json(s))
            .bind(&s.highway)
            .bind(&s.name)
            .bind(s.oneway)
            .bind(s.length_m)
            .bind(rows::coords_json(s))
            .bind(w)
            .bind(so)
            .bind(e)
            .bind(n)
            .execute(&mut *tx)
            .await
            .ctx("writing road segments")?;
        }
        tx.commit().await.ctx("committing the road network")?;
        Ok(segments.len() as u64)
    }

    async fn roads(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadSegment>> {
        let rows = sqlx::query(
            "SELECT osm_way_id, piece, osm_node_ids, highway, name, oneway, length_m, coords \
             FROM road_segments \
             WHERE min_lon <= ? AND max_lon >= ? AND min_lat <= ? AND max_lat >= ? \
             ORDER BY osm_way_id, piece LIMIT ?",
        )
        .bind(bbox.east)
        .bind(bbox.west)
        .bind(bbox.north)
        .bind(bbox.south)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading road segments")?;
        rows.iter().map(road_segment).collect()
    }

    async fn road_segments(
        &self,
        refs: &[covermap_domain::SegmentRef],
    ) -> Result<Vec<RoadSegment>> {
        let mut out = Vec::with_capacity(refs.len());
        // Two variables a reference, well under SQLite's 32,766.
        for chunk in refs.chunks(10_000) {
            let pairs = vec!["(?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT osm_way_id, piece, osm_node_ids, highway, name, oneway, length_m, coords \
                 FROM road_segments WHERE (osm_way_id, piece) IN (VALUES {pairs})"
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query.bind(r.osm_way_id).bind(i64::from(r.way_piece));
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .ctx("reading road segments by reference")?;
            for row in &rows {
                out.push(road_segment(row)?);
            }
        }
        out.sort_by_key(|s| (s.osm_way_id, s.piece));
        out.dedup_by_key(|s| (s.osm_way_id, s.piece));
        Ok(out)
    }

    async fn roads_last_seen(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<SegmentSeen>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(&format!(
            "WITH s AS (SELECT osm_way_id, piece FROM road_segments \
                        WHERE min_lon <= ? AND max_lon >= ? AND min_lat <= ? AND max_lat >= ?), \
                  seen AS ( \
                    SELECT m.osm_way_id, m.way_piece AS piece, co.last_seen AS t \
                    FROM s JOIN matched_stretches m \
                      ON m.osm_way_id = s.osm_way_id AND m.way_piece = s.piece \
                    JOIN cell_observations co ON co.upload_id = m.upload_id AND co.cell = m.cell \
                    WHERE m.upload_id NOT IN {FLAGGED_UPLOADS} \
                    UNION ALL \
                    SELECT f.osm_way_id, f.way_piece, f.captured_at \
                    FROM s JOIN frames f ON f.osm_way_id = s.osm_way_id AND f.way_piece = s.piece \
                    WHERE f.upload_id NOT IN {FLAGGED_UPLOADS}) \
             SELECT osm_way_id, piece, MAX(t) FROM seen GROUP BY osm_way_id, piece \
             ORDER BY osm_way_id, piece LIMIT ?",
        ))
        .bind(bbox.east)
        .bind(bbox.west)
        .bind(bbox.north)
        .bind(bbox.south)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading when roads were last driven")?;
        rows.into_iter()
            .map(|(osm_way_id, piece, t)| {
                Ok(SegmentSeen {
                    osm_way_id,
                    piece: u32::try_from(piece)
                        .map_err(|_| StoreError::Corrupt(format!("road piece {piece}")))?,
                    last_seen: time(t)?,
                })
            })
            .collect()
    }

    async fn changed_cells(&self, since: DateTime<Utc>, limit: i64) -> Result<Vec<Cell>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "WITH u AS (SELECT id FROM uploads WHERE processed_at > ?1 \
                        UNION SELECT id FROM uploads WHERE trust_changed_at > ?1) \
             SELECT cell FROM cell_observations WHERE upload_id IN (SELECT id FROM u) \
             UNION SELECT cell FROM radio_observations WHERE upload_id IN (SELECT id FROM u) \
             UNION SELECT cell FROM frames WHERE upload_id IN (SELECT id FROM u) \
             UNION SELECT r.cell FROM frame_decisions d JOIN frame_rejections r \
                 ON r.upload_id = d.upload_id AND r.frame = d.frame WHERE d.decided_at > ?1 \
             LIMIT ?2",
        )
        .bind(micros(since))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading changed cells")?;
        rows.into_iter()
            .map(|(c,)| Ok(Cell::from_i64(c)?))
            .collect()
    }

    async fn extent(&self) -> Result<Option<BoundingBox>> {
        let roads: (Option<f64>, Option<f64>, Option<f64>, Option<f64>) =
            sqlx::query_as("SELECT min(lon), min(lat), max(lon), max(lat) FROM road_cells")
                .fetch_one(&self.pool)
                .await
                .ctx("reading the road network's extent")?;
        if roads.0.is_some() {
            return Ok(rows::extent(roads));
        }
        let seen = sqlx::query_as(
            "SELECT min(lon), min(lat), max(lon), max(lat) FROM \
             (SELECT lat, lon FROM cell_observations UNION ALL \
              SELECT lat, lon FROM radio_observations)",
        )
        .fetch_one(&self.pool)
        .await
        .ctx("reading the observations' extent")?;
        Ok(rows::extent(seen))
    }

    async fn road_cells(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadCell>> {
        let rows: Vec<(i64, f64)> = sqlx::query_as(
            "SELECT cell, road_length_m FROM road_cells \
             WHERE lat BETWEEN ? AND ? AND lon BETWEEN ? AND ? ORDER BY cell LIMIT ?",
        )
        .bind(bbox.south)
        .bind(bbox.north)
        .bind(bbox.west)
        .bind(bbox.east)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading road cells")?;
        rows::road_cells(rows)
    }

    async fn matched_stretches(&self, upload_id: i64) -> Result<Vec<MatchedStretch>> {
        let rows: Vec<(i64, i64, i64, i64, f64)> = sqlx::query_as(
            "SELECT match_piece, cell, osm_way_id, way_piece, length_m FROM matched_stretches \
             WHERE upload_id = ? ORDER BY seq",
        )
        .bind(upload_id)
        .fetch_all(&self.pool)
        .await
        .ctx("reading matched stretches")?;
        rows.into_iter()
            .map(|(mp, c, w, wp, l)| rows::stretch(mp, c, w, wp, l))
            .collect()
    }

    async fn stats(&self) -> Result<StoreStats> {
        let row: rows::StatsRow = sqlx::query_as(rows::STATS_SQL)
            .fetch_one(&self.pool)
            .await
            .ctx("reading stats")?;
        Ok(rows::stats_from_row(row))
    }

    async fn rejections(&self, upload_id: i64, limit: i64) -> Result<Vec<Rejection>> {
        let rows: Vec<(String, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT stage, item, reason, detail FROM rejected_observations \
             WHERE upload_id = ? ORDER BY seq LIMIT ?",
        )
        .bind(upload_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading rejected observations")?;
        rows.into_iter()
            .map(|(stage, item, reason, detail)| {
                Ok(Rejection {
                    stage: rows::word(&stage)?,
                    item,
                    reason,
                    detail,
                })
            })
            .collect()
    }

    async fn radio_observations(&self, upload_id: i64, limit: i64) -> Result<Vec<RadioRow>> {
        type R = (
            i64,
            String,
            Option<String>,
            String,
            Option<i32>,
            Option<f64>,
            i64,
            f64,
            f64,
        );
        let rows: Vec<R> = sqlx::query_as(
            "SELECT observed_at, emitter_kind, radio, emitter, signal_dbm, accuracy_m, cell, lat, \
                 lon FROM radio_observations WHERE upload_id = ? ORDER BY seq LIMIT ?",
        )
        .bind(upload_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading radio observations")?;
        rows.into_iter()
            .map(|(at, kind, radio, emitter, signal, acc, cell, lat, lon)| {
                Ok(RadioRow {
                    observed_at: time(at)?,
                    emitter_kind: rows::word(&kind)?,
                    radio: radio.map(|r| rows::word(&r)).transpose()?,
                    emitter,
                    signal_dbm: signal,
                    accuracy_m: acc,
                    pos: LatLon::new(lat, lon)?,
                    cell: Cell::from_i64(cell)?,
                })
            })
            .collect()
    }

    async fn radio_coverage(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RadioCellSummary>> {
        type R = (i64, i64, i64, i64, i64, i64, Option<i32>, i64);
        let rows: Vec<R> = sqlx::query_as(&format!(
            "SELECT cell, COUNT(*), COUNT(DISTINCT emitter), \
                    COUNT(DISTINCT CASE WHEN emitter_kind = 'cell' THEN emitter END), \
                    COUNT(DISTINCT CASE WHEN emitter_kind = 'wifi' THEN emitter END), \
                    COUNT(DISTINCT CASE WHEN emitter_kind = 'bluetooth' THEN emitter END), \
                    MAX(signal_dbm), MAX(observed_at) \
             FROM radio_observations \
             WHERE lat BETWEEN ? AND ? AND lon BETWEEN ? AND ? \
               AND upload_id NOT IN {FLAGGED_UPLOADS} AND (counted IS NULL OR counted) \
             GROUP BY cell ORDER BY cell LIMIT ?",
        ))
        .bind(bbox.south)
        .bind(bbox.north)
        .bind(bbox.west)
        .bind(bbox.east)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading radio coverage")?;
        rows.into_iter()
            .map(|(cell, n, emitters, cells, wifi, ble, best, last)| {
                Ok(RadioCellSummary {
                    cell: Cell::from_i64(cell)?,
                    observations: n,
                    emitters,
                    cells_seen: cells,
                    wifi_seen: wifi,
                    bluetooth_seen: ble,
                    best_signal_dbm: best,
                    last_seen: time(last)?,
                })
            })
            .collect()
    }

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

    async fn neighbours(
        &self,
        upload_id: i64,
        device: &DeviceId,
        contributor: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Neighbour>> {
        let rows = sqlx::query(
            "SELECT * FROM ( \
                 SELECT upload_id, device, contributor, radio, first_at, last_at, first_lat, \
                        first_lon, last_lat, last_lon, centre_lat, centre_lon, radius_m \
                 FROM upload_extents \
                 WHERE upload_id <> ?1 AND (device = ?2 OR contributor = ?3) \
                   AND last_at >= ?4 AND first_at <= ?5 \
                 UNION ALL \
                 SELECT -id, device, contributor, 0, first_at, last_at, first_lat, \
                        first_lon, last_lat, last_lon, first_lat, first_lon, 0.0 \
                 FROM upload_refusals \
                 WHERE first_at IS NOT NULL AND (device = ?2 OR contributor = ?3) \
                   AND last_at >= ?4 AND first_at <= ?5) \
             ORDER BY first_at, upload_id LIMIT ?6",
        )
        .bind(upload_id)
        .bind(device.as_str())
        .bind(contributor)
        .bind(micros(from))
        .bind(micros(to))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading neighbouring uploads")?;
        rows.iter()
            .map(|r| {
                let ctx = "reading an upload's extent";
                let at = |lat: &str, lon: &str| -> Result<LatLon> {
                    Ok(LatLon::new(
                        r.try_get(lat).ctx(ctx)?,
                        r.try_get(lon).ctx(ctx)?,
                    )?)
                };
                Ok(Neighbour {
                    upload_id: r.try_get("upload_id").ctx(ctx)?,
                    device: r.try_get::<String, _>("device").ctx(ctx)?.parse()?,
                    contributor: r.try_get("contributor").ctx(ctx)?,
                    extent: UploadExtent {
                        radio: r.try_get("radio").ctx(ctx)?,
                        first_at: time(r.try_get("first_at").ctx(ctx)?)?,
                        last_at: time(r.try_get("last_at").ctx(ctx)?)?,
                        first: at("first_lat", "first_lon")?,
                        last: at("last_lat", "last_lon")?,
                        centre: at("centre_lat", "centre_lon")?,
                        radius_m: r.try_get("radius_m").ctx(ctx)?,
                    },
                })
            })
            .collect()
    }

    async fn shared_cells(
        &self,
        upload_id: i64,
        radio: bool,
        cells: &[Cell],
        limit: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let table = if radio {
            "(SELECT DISTINCT upload_id, cell FROM radio_observations \
              WHERE cell IN (SELECT value FROM json_each(?2)))"
        } else {
            "(SELECT upload_id, cell FROM cell_observations \
              WHERE cell IN (SELECT value FROM json_each(?2)))"
        };
        let list = serde_json::to_string(&cells.iter().map(|c| c.as_i64()).collect::<Vec<_>>())
            .map_err(|e| StoreError::Corrupt(format!("cell list: {e}")))?;
        let rows: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT o.upload_id, COUNT(*) FROM {table} o \
             WHERE o.upload_id <> ?1 \
             GROUP BY o.upload_id ORDER BY COUNT(*) DESC, o.upload_id LIMIT ?3"
        ))
        .bind(upload_id)
        .bind(list)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("looking for uploads that share cells")?;
        Ok(rows)
    }

    async fn amend_trust(
        &self,
        upload_id: i64,
        evidence: &str,
        verdict: &str,
        findings: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE uploads SET evidence = ?2, trust_findings = ?4, \
                 trust_changed_at = CASE WHEN trust <> ?3 THEN ?5 ELSE trust_changed_at END, \
                 trust = ?3, \
                 cells = CASE WHEN ?3 = 'flagged' THEN 0 ELSE COALESCE(cells_seen, cells) END \
             WHERE id = ?1 AND status = 'processed' AND trust_epoch IS NULL",
        )
        .bind(upload_id)
        .bind(evidence)
        .bind(verdict)
        .bind(findings)
        .bind(micros(now))
        .execute(&self.pool)
        .await
        .ctx("amending an upload's verdict")?;
        Ok(done.rows_affected() == 1)
    }

    async fn track_prints(&self, upload_ids: &[i64]) -> Result<Vec<(i64, String)>> {
        let list = serde_json::to_string(upload_ids)
            .map_err(|e| StoreError::Corrupt(format!("upload list: {e}")))?;
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT upload_id, points FROM track_prints \
             WHERE upload_id IN (SELECT value FROM json_each(?)) ORDER BY upload_id",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await
        .ctx("reading track prints")?;
        Ok(rows)
    }

    async fn record_refusal(&self, r: &NewRefusal) -> Result<()> {
        sqlx::query(
            "INSERT INTO upload_refusals (device, contributor, kind, sha256, reason, detail, \
                 received_at, first_at, last_at, first_lat, first_lon, last_lat, last_lon) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
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

    async fn create_api_key(&self, key: &NewApiKey, now: DateTime<Utc>) -> Result<ApiKeyRecord> {
        let row = sqlx::query(
            "INSERT INTO api_keys (key_hash, prefix, role, contributor, created_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(key.role.as_str())
        .bind(&key.contributor)
        .bind(micros(now))
        .fetch_one(&self.pool)
        .await
        .ctx("creating an API key")?;
        key_from_row(&row)
    }

    async fn api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = ?")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an API key")?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .ctx("listing API keys")?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(micros(now))
                .bind(id)
                .execute(&self.pool)
                .await
                .ctx("revoking an API key")?;
        Ok(done.rows_affected() == 1)
    }

    async fn register_device(&self, device: &DeviceRecord) -> Result<Registration> {
        let mut tx = self.write().await?;
        let existing = sqlx::query("SELECT * FROM devices WHERE device = ?")
            .bind(device.device.as_str())
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a device")?;
        if let Some(row) = existing {
            tx.rollback().await.ctx("ending a transaction")?;
            let stored = device_from_row(&row)?;
            return Ok(if stored.is_registered_again_as(device) {
                Registration::Existing(stored)
            } else {
                Registration::DeviceTaken
            });
        }
        let key_used = sqlx::query("SELECT 1 FROM device_keys WHERE public_key = ?")
            .bind(&device.public_key)
            .fetch_optional(&mut *tx)
            .await
            .ctx("looking a public key up")?;
        if key_used.is_some() {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(Registration::KeyTaken);
        }
        sqlx::query(
            "INSERT INTO devices (device, public_key, contributor, registered_by, registered_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(device.device.as_str())
        .bind(&device.public_key)
        .bind(&device.contributor)
        .bind(device.registered_by)
        .bind(micros(device.registered_at))
        .execute(&mut *tx)
        .await
        .ctx("registering a device")?;
        sqlx::query("INSERT INTO device_keys (public_key, device, added_at) VALUES (?, ?, ?)")
            .bind(&device.public_key)
            .bind(device.device.as_str())
            .bind(micros(device.registered_at))
            .execute(&mut *tx)
            .await
            .ctx("recording a device key")?;
        tx.commit().await.ctx("committing a device")?;
        Ok(Registration::Created(DeviceRecord {
            rotated_at: None,
            revoked_at: None,
            ..device.clone()
        }))
    }

    async fn device(&self, device: &DeviceId) -> Result<Option<DeviceRecord>> {
        let row = sqlx::query("SELECT * FROM devices WHERE device = ?")
            .bind(device.as_str())
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a device")?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn devices(&self, filter: &DeviceFilter, limit: i64) -> Result<Vec<DeviceRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM devices \
             WHERE (?1 IS NULL OR contributor = ?1) AND (?2 IS NULL OR registered_by = ?2) \
             ORDER BY device LIMIT ?3",
        )
        .bind(&filter.contributor)
        .bind(filter.registered_by)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing devices")?;
        rows.iter().map(device_from_row).collect()
    }

    async fn rotate_device_key(
        &self,
        device: &DeviceId,
        from_key: &str,
        to_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Rotation> {
        let mut tx = self.write().await?;
        let current = sqlx::query("SELECT * FROM devices WHERE device = ?")
            .bind(device.as_str())
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a device")?
            .as_ref()
            .map(device_from_row)
            .transpose()?;
        let Some(current) = current.filter(|d| d.revoked_at.is_none() && d.public_key == from_key)
        else {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(Rotation::Superseded);
        };
        let key_used = sqlx::query("SELECT 1 FROM device_keys WHERE public_key = ?")
            .bind(to_key)
            .fetch_optional(&mut *tx)
            .await
            .ctx("looking a public key up")?;
        if key_used.is_some() {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(Rotation::KeyTaken);
        }
        sqlx::query("UPDATE device_keys SET retired_at = ? WHERE public_key = ?")
            .bind(micros(now))
            .bind(from_key)
            .execute(&mut *tx)
            .await
            .ctx("retiring a device key")?;
        sqlx::query("INSERT INTO device_keys (public_key, device, added_at) VALUES (?, ?, ?)")
            .bind(to_key)
            .bind(device.as_str())
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .ctx("recording a device key")?;
        sqlx::query("UPDATE devices SET public_key = ?, rotated_at = ? WHERE device = ?")
            .bind(to_key)
            .bind(micros(now))
            .bind(device.as_str())
            .execute(&mut *tx)
            .await
            .ctx("rotating a device key")?;
        tx.commit().await.ctx("committing a key rotation")?;
        Ok(Rotation::Rotated(DeviceRecord {
            public_key: to_key.to_owned(),
            rotated_at: Some(now),
            ..current
        }))
    }

    async fn revoke_device(&self, device: &DeviceId, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE devices SET revoked_at = ? WHERE device = ? AND revoked_at IS NULL",
        )
        .bind(micros(now))
        .bind(device.as_str())
        .execute(&mut *tx)
        .await
        .ctx("revoking a device")?;
        if done.rows_affected() == 0 {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE device_keys SET retired_at = ? WHERE device = ? AND retired_at IS NULL",
        )
        .bind(micros(now))
        .bind(device.as_str())
        .execute(&mut *tx)
        .await
        .ctx("retiring a device key")?;
        tx.commit().await.ctx("committing a revocation")?;
        Ok(true)
    }

    async fn claim_nonce(
        &self,
        device: &DeviceId,
        nonce: &str,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM request_nonces WHERE seen_at < ?")
            .bind(micros(forget_before))
            .execute(&mut *tx)
            .await
            .ctx("forgetting old nonces")?;
        let done = sqlx::query(
            "INSERT INTO request_nonces (device, nonce, seen_at) VALUES (?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(device.as_str())
        .bind(nonce)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .ctx("recording a nonce")?;
        tx.commit().await.ctx("committing a nonce")?;
        Ok(done.rows_affected() == 1)
    }

    async fn open_session(&self, session: &UploadSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO upload_sessions (id, device, kind, size_bytes, sha256, received_bytes, \
                 created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
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
        let row = sqlx::query("SELECT * FROM upload_sessions WHERE id = ?")
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
        let moved: Option<i64> = sqlx::query_scalar(
            "UPDATE upload_sessions SET received_bytes = received_bytes + ?3, updated_at = ?4 \
             WHERE id = ?1 AND received_bytes = ?2 AND received_bytes + ?3 <= size_bytes \
             RETURNING received_bytes",
        )
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
        sqlx::query(
            "INSERT INTO upload_session_parts (session_id, offset_bytes, size_bytes, blob_key) \
             VALUES (?, ?, ?, ?)",
        )
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
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT offset_bytes, size_bytes, blob_key FROM upload_session_parts \
             WHERE session_id = ? ORDER BY offset_bytes",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .ctx("reading upload parts")?;
        Ok(rows
            .into_iter()
            .map(|(offset, size, blob_key)| SessionPart {
                offset,
                size,
                blob_key,
            })
            .collect())
    }

    async fn delete_session(&self, id: &str) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM upload_session_parts WHERE session_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting upload parts")?;
        sqlx::query("DELETE FROM upload_sessions WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting an upload session")?;
        tx.commit().await.ctx("committing")?;
        Ok(())
    }

    async fn device_sessions(&self, device: &DeviceId) -> Result<Vec<UploadSession>> {
        let rows =
            sqlx::query("SELECT * FROM upload_sessions WHERE device = ? ORDER BY created_at")
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
        let rows = sqlx::query(
            "SELECT * FROM upload_sessions WHERE updated_at < ? ORDER BY updated_at LIMIT ?",
        )
        .bind(micros(before))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing stale upload sessions")?;
        rows.iter().map(session_from_row).collect()
    }

    async fn api_key_by_id(&self, id: i64) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading an API key")?;
        row.as_ref().map(key_from_row).transpose()
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
                placeholders(chunk.len())
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

    async fn originals_due(
        &self,
        received_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueOriginals>> {
        let due: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM uploads \
             WHERE blob_expired_at IS NULL \
                   AND (status = 'rejected' \
                        OR (kind = 'drive' AND status <> 'queued' AND received_at < ?)) \
             ORDER BY received_at, id LIMIT ?",
        )
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
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
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
        );
        let keys: Vec<(i64, String)> = sqlx::query_as(&sql)
            .fetch_all(&self.pool)
            .await
            .ctx("listing originals past retention")?;
        Ok(rows::group_due(&ids, keys))
    }

    async fn mark_originals_expired(&self, upload_id: i64, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write().await?;
        for sql in [
            "UPDATE uploads SET blob_expired_at = ?2 WHERE id = ?1 AND blob_expired_at IS NULL",
            "UPDATE frames SET original_expired_at = ?2 \
             WHERE upload_id = ?1 AND original_expired_at IS NULL",
            "UPDATE frame_rejections SET original_expired_at = ?2 \
             WHERE upload_id = ?1 AND original_expired_at IS NULL",
        ] {
            sqlx::query(sql)
                .bind(upload_id)
                .bind(micros(now))
                .execute(&mut *tx)
                .await
                .ctx("marking originals deleted")?;
        }
        tx.commit().await.ctx("committing")
    }

    async fn claim_epoch(
        &self,
        period: &EpochPeriod,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
    ) -> Result<EpochClaim> {
        self.claim_epoch_sqlite(period, worker, now, lease_for)
            .await
    }

    async fn abandon_epoch(&self, epoch: u64, token: &str) -> Result<()> {
        self.abandon_epoch_sqlite(epoch, token).await
    }

    async fn epoch_inputs(
        &self,
        period: &EpochPeriod,
        coverage_since: DateTime<Utc>,
    ) -> Result<EpochInputs> {
        self.epoch_inputs_sqlite(period, coverage_since).await
    }

    async fn finish_epoch(
        &self,
        token: &str,
        outcome: &EpochOutcome,
        policy: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.finish_epoch_sqlite(token, outcome, policy, now).await
    }

    async fn epochs(&self) -> Result<Vec<EpochRecord>> {
        self.epochs_sqlite().await
    }

    async fn closed_epoch(&self, epoch: u64) -> Result<Option<ClosedEpoch>> {
        self.closed_epoch_sqlite(epoch).await
    }

    async fn last_closed_epoch(&self) -> Result<Option<u64>> {
        self.last_closed_epoch_sqlite().await
    }

    async fn epoch_rewards(&self, epoch: u64) -> Result<Vec<ContributorReward>> {
        self.epoch_rewards_sqlite(epoch).await
    }

    async fn epoch_cells(&self, epoch: u64) -> Result<Vec<CellReward>> {
        self.epoch_cells_sqlite(epoch).await
    }

    async fn epoch_penalties(&self, epoch: u64) -> Result<Vec<Penalty>> {
        self.epoch_penalties_sqlite(epoch).await
    }

    async fn contributor_rewards(
        &self,
        contributor: &str,
    ) -> Result<Vec<(u64, ContributorReward)>> {
        self.contributor_rewards_sqlite(contributor).await
    }

    async fn create_demand_area(
        &self,
        area: &NewDemandArea,
        now: DateTime<Utc>,
    ) -> Result<DemandAreaRecord> {
        self.create_demand_area_sqlite(area, now).await
    }

    async fn radio_samples(
        &self,
        bbox: BoundingBox,
        limit: i64,
    ) -> Result<Vec<covermap_domain::rewards::RadioSample>> {
        self.radio_samples_sqlite(bbox, limit).await
    }

    async fn record_usage(&self, counts: &[(u64, Cell, u64)]) -> Result<()> {
        self.record_usage_sqlite(counts).await
    }

    async fn usage(&self, epoch: u64) -> Result<Vec<(Cell, u64)>> {
        self.usage_sqlite(epoch).await
    }

    async fn demand_areas(&self) -> Result<Vec<DemandAreaRecord>> {
        self.demand_areas_sqlite().await
    }

    async fn demand_cells(
        &self,
        bbox: BoundingBox,
        now: DateTime<Utc>,
        coverage_since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DemandCellState>> {
        self.demand_cells_sqlite(bbox, now, coverage_since, limit)
            .await
    }
}

/// `n` comma-separated `?` placeholders.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// A `road_segments` row (node ids and coordinates as JSON text).
fn road_segment(row: &SqliteRow) -> Result<RoadSegment> {
    let ctx = "reading a road segment";
    let node_ids: String = row.try_get("osm_node_ids").ctx(ctx)?;
    let coords: String = row.try_get("coords").ctx(ctx)?;
    Ok(RoadSegment {
        osm_way_id: row.try_get("osm_way_id").ctx(ctx)?,
        piece: row.try_get::<i64, _>("piece").ctx(ctx)? as u32,
        osm_node_ids: serde_json::from_str(&node_ids)
            .map_err(|e| StoreError::Corrupt(format!("road node ids: {e}")))?,
        highway: row.try_get("highway").ctx(ctx)?,
        name: row.try_get("name").ctx(ctx)?,
        oneway: row.try_get("oneway").ctx(ctx)?,
        length_m: row.try_get("length_m").ctx(ctx)?,
        points: rows::points_from_json(&coords)?,
    })
}
