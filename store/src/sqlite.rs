//! Embedded backend: one SQLite file in WAL mode, so `covermap serve` needs no database server.
//! Every writing transaction starts with `BEGIN IMMEDIATE`: SQLite has one writer at a time, and
//! taking the write lock up front is what makes the queue's lease safe across processes.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{
    BoundingBox, Cell, CellCoverage, MatchedStretch, RoadCell, RoadSegment, UploadStatus,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::error::{Result, SqlContext, StoreError};
use crate::{
    JobFailure, Lease, NewUpload, QueuePolicy, Store, StoreStats, TrackOutcome, UploadReceipt,
    UploadRecord, rows,
};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const UPLOAD_COLUMNS: &str = "id, device, kind, sha256, size_bytes, received_at, status, reason, \
     fixes_accepted, fixes_rejected, cells, matched_m, processed_at";

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(us: i64) -> Result<DateTime<Utc>> {
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
            .synchronous(SqliteSynchronous::Normal)
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
        Ok(Self { pool })
    }

    async fn write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .ctx("starting a write transaction")
    }

    async fn holding(tx: &mut Transaction<'_, Sqlite>, lease: &Lease) -> Result<()> {
        let held = sqlx::query(
            "SELECT 1 FROM jobs WHERE id = ? AND status = 'leased' AND lease_token = ?",
        )
        .bind(lease.job_id)
        .bind(&lease.token)
        .fetch_optional(&mut **tx)
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
        tx: &mut Transaction<'_, Sqlite>,
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
        .execute(&mut **tx)
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
        let existing: Option<(i64, String)> =
            sqlx::query_as("SELECT id, status FROM uploads WHERE sha256 = ?")
                .bind(&upload.blob.sha256)
                .fetch_optional(&mut *tx)
                .await
                .ctx("finding a duplicate upload")?;
        if let Some((id, status)) = existing {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(UploadReceipt {
                upload_id: id,
                job_id: None,
                duplicate: true,
                status: status.parse()?,
            });
        }
        let received = micros(upload.received_at);
        let upload_id: i64 = sqlx::query_scalar(
            "INSERT INTO uploads (device, kind, sha256, size_bytes, blob_key, received_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(upload.device.as_str())
        .bind(upload.kind.as_str())
        .bind(&upload.blob.sha256)
        .bind(upload.blob.size as i64)
        .bind(&upload.blob.key)
        .bind(received)
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

    async fn recent_uploads(&self, limit: i64) -> Result<Vec<UploadRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads ORDER BY id DESC LIMIT ?"
        ))
        .bind(limit)
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

    async fn complete_track_job(
        &self,
        lease: &Lease,
        outcome: &TrackOutcome,
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
        sqlx::query(
            "UPDATE uploads SET status = 'processed', reason = NULL, fixes_accepted = ?, \
                 fixes_rejected = ?, cells = ?, processed_at = ?, matched_m = ? WHERE id = ?",
        )
        .bind(i64::from(outcome.fixes_accepted))
        .bind(i64::from(outcome.fixes_rejected))
        .bind(outcome.visits.len() as i64)
        .bind(micros(now))
        .bind(rows::matched_m(outcome))
        .bind(lease.upload_id)
        .execute(&mut *tx)
        .await
        .ctx("summarising an upload")?;
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
        let rows: Vec<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT cell, SUM(fixes), COUNT(*), COUNT(DISTINCT device), MIN(first_seen), \
                    MAX(last_seen) \
             FROM cell_observations \
             WHERE lat BETWEEN ? AND ? AND lon BETWEEN ? AND ? \
             GROUP BY cell ORDER BY cell LIMIT ?",
        )
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
            .bind(s.piece as i64)
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
        rows.iter()
            .map(|row| {
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
            })
            .collect()
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
}
