//! PostGIS backend: the system of record. Geometry in `geometry(…, 4326)` columns with GiST
//! indexes; the queue leases with `FOR UPDATE SKIP LOCKED`, so any number of workers can share it.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{
    BoundingBox, Cell, CellCoverage, DeviceId, ImageryCellSummary, LatLon, MatchedStretch,
    RadioCellSummary, RadioType, RoadCell, RoadSegment, UploadStatus,
};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use covermap_domain::rewards::{CellReward, ContributorReward, EpochOutcome, Penalty};
use covermap_domain::rewards::{EpochInputs, EpochPeriod};

use crate::error::{Result, SqlContext, StoreError, redact};
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
pub struct PgStore {
    pool: PgPool,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first half of the advisory lock key uploads of the same bytes take turns under (the
/// second is a hash of the bytes' sha256): "cm" in ASCII, apart from any other lock.
const SAME_BYTES_LOCK: i32 = 0x636d;

const UPLOAD_COLUMNS: &str = "id, device, kind, sha256, size_bytes, received_at, status, reason, \
     fixes_accepted, fixes_rejected, cells, matched_m, processed_at, observations_accepted, \
     observations_rejected, contributor, rewardable, cells_seen, trust, trust_findings, \
     trust_epoch, evidence, copy_of";

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let fail = |source| StoreError::Connect {
            url: redact(url),
            source,
        };
        let options: PgConnectOptions = url.parse().map_err(fail)?;
        // One plain connection first: a pool would retry until its timeout and then report only
        // "timed out", hiding the reason (refused, no such database, bad password) a user needs.
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => drop(conn),
            Ok(Err(e)) => return Err(fail(e)),
            Err(_) => return Err(fail(sqlx::Error::PoolTimedOut)),
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(fail)?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn holding(tx: &mut Transaction<'_, Postgres>, lease: &Lease) -> Result<()> {
        let held = sqlx::query(
            "SELECT 1 FROM jobs WHERE id = $1 AND status = 'leased' AND lease_token = $2 FOR UPDATE",
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
        tx: &mut Transaction<'_, Postgres>,
        upload_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE uploads SET status = 'rejected', reason = $2, processed_at = $3 WHERE id = $1",
        )
        .bind(upload_id)
        .bind(reason)
        .bind(now)
        .execute(&mut **tx)
        .await
        .ctx("rejecting an upload")?;
        Ok(())
    }
}

fn upload_from_row(row: &PgRow) -> Result<UploadRecord> {
    Ok(UploadRecord {
        id: row.try_get("id").ctx("reading an upload")?,
        device: row
            .try_get::<String, _>("device")
            .ctx("reading an upload")?
            .parse()?,
        kind: row
            .try_get::<String, _>("kind")
            .ctx("reading an upload")?
            .parse()?,
        sha256: row.try_get("sha256").ctx("reading an upload")?,
        size_bytes: row.try_get("size_bytes").ctx("reading an upload")?,
        received_at: row.try_get("received_at").ctx("reading an upload")?,
        status: row
            .try_get::<String, _>("status")
            .ctx("reading an upload")?
            .parse()?,
        reason: row.try_get("reason").ctx("reading an upload")?,
        fixes_accepted: row.try_get("fixes_accepted").ctx("reading an upload")?,
        fixes_rejected: row.try_get("fixes_rejected").ctx("reading an upload")?,
        cells: row.try_get("cells").ctx("reading an upload")?,
        matched_m: row.try_get("matched_m").ctx("reading an upload")?,
        processed_at: row.try_get("processed_at").ctx("reading an upload")?,
        observations_accepted: row
            .try_get("observations_accepted")
            .ctx("reading an upload")?,
        observations_rejected: row
            .try_get("observations_rejected")
            .ctx("reading an upload")?,
        contributor: row.try_get("contributor").ctx("reading an upload")?,
        rewardable: row.try_get("rewardable").ctx("reading an upload")?,
        cells_seen: row.try_get("cells_seen").ctx("reading an upload")?,
        trust: UploadTrust::from_columns(
            row.try_get("trust").ctx("reading an upload")?,
            row.try_get("trust_findings").ctx("reading an upload")?,
            row.try_get("trust_epoch").ctx("reading an upload")?,
        ),
        evidence: row.try_get("evidence").ctx("reading an upload")?,
        copy_of: row.try_get("copy_of").ctx("reading an upload")?,
    })
}

fn key_from_row(row: &PgRow) -> Result<ApiKeyRecord> {
    let ctx = "reading an API key";
    Ok(ApiKeyRecord {
        id: row.try_get("id").ctx(ctx)?,
        prefix: row.try_get("prefix").ctx(ctx)?,
        role: row.try_get::<String, _>("role").ctx(ctx)?.parse()?,
        contributor: row.try_get("contributor").ctx(ctx)?,
        created_at: row.try_get("created_at").ctx(ctx)?,
        revoked_at: row.try_get("revoked_at").ctx(ctx)?,
    })
}

fn device_from_row(row: &PgRow) -> Result<DeviceRecord> {
    let ctx = "reading a device";
    Ok(DeviceRecord {
        device: row.try_get::<String, _>("device").ctx(ctx)?.parse()?,
        public_key: row.try_get("public_key").ctx(ctx)?,
        contributor: row.try_get("contributor").ctx(ctx)?,
        registered_by: row.try_get("registered_by").ctx(ctx)?,
        registered_at: row.try_get("registered_at").ctx(ctx)?,
        rotated_at: row.try_get("rotated_at").ctx(ctx)?,
        revoked_at: row.try_get("revoked_at").ctx(ctx)?,
    })
}

fn decision_from_row(row: &PgRow) -> Result<FrameDecision> {
    let ctx = "reading a frame decision";
    Ok(FrameDecision {
        id: row.try_get("id").ctx(ctx)?,
        upload_id: row.try_get("upload_id").ctx(ctx)?,
        frame: row.try_get("frame").ctx(ctx)?,
        decision: row.try_get::<String, _>("decision").ctx(ctx)?.parse()?,
        note: row.try_get("note").ctx(ctx)?,
        auditor: row.try_get("auditor").ctx(ctx)?,
        auditor_key_id: row.try_get("auditor_key_id").ctx(ctx)?,
        decided_at: row.try_get("decided_at").ctx(ctx)?,
    })
}

fn session_from_row(row: &PgRow) -> Result<UploadSession> {
    let ctx = "reading an upload session";
    Ok(UploadSession {
        id: row.try_get("id").ctx(ctx)?,
        device: row.try_get::<String, _>("device").ctx(ctx)?.parse()?,
        kind: row.try_get::<String, _>("kind").ctx(ctx)?.parse()?,
        size_bytes: row.try_get("size_bytes").ctx(ctx)?,
        sha256: row.try_get("sha256").ctx(ctx)?,
        received_bytes: row.try_get("received_bytes").ctx(ctx)?,
        created_at: row.try_get("created_at").ctx(ctx)?,
        updated_at: row.try_get("updated_at").ctx(ctx)?,
    })
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgis"
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../migrations/postgres")
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
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        // Uploads of the same bytes take turns, so that of two devices sending them at once the
        // second sees the first's committed row and records itself as its copy.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(SAME_BYTES_LOCK)
            .bind(&upload.blob.sha256)
            .execute(&mut *tx)
            .await
            .ctx("waiting for uploads of the same bytes")?;
        let inserted: Option<(i64, Option<i64>)> = sqlx::query_as(
            "INSERT INTO uploads (device, kind, sha256, size_bytes, blob_key, received_at, \
                 contributor, rewardable, copy_of) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 (SELECT min(id) FROM uploads WHERE sha256 = $3 AND device <> $1)) \
             ON CONFLICT (device, sha256) DO NOTHING RETURNING id, copy_of",
        )
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
            let (id, status, copy_of): (i64, String, Option<i64>) = sqlx::query_as(
                "SELECT id, status, copy_of FROM uploads WHERE device = $1 AND sha256 = $2",
            )
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
        let job_id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (kind, upload_id, available_at, created_at) \
             VALUES ('process_upload', $1, $2, $2) RETURNING id",
        )
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
        let row = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1"
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
             WHERE ($2::text IS NULL OR contributor = $2) AND ($3::text IS NULL OR device = $3) \
               AND ($4::text IS NULL OR trust = $4) \
             ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .bind(&filter.contributor)
        .bind(
            filter
                .device
                .as_ref()
                .map(covermap_domain::DeviceId::as_str),
        )
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
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        // A job whose every lease ran out without finishing (a poison upload that kills workers)
        // is given up rather than leased forever.
        let exhausted: Vec<(i64, i32)> = sqlx::query_as(
            "UPDATE jobs SET status = 'failed', finished_at = $1, lease_token = NULL, \
                 last_error = 'lease ran out ' || attempts || ' times without the job finishing' \
             WHERE id IN (SELECT id FROM jobs WHERE status = 'leased' AND leased_until < $1 \
                          AND attempts >= $2 FOR UPDATE SKIP LOCKED) \
             RETURNING upload_id, attempts",
        )
        .bind(now)
        .bind(policy.max_attempts)
        .fetch_all(&mut *tx)
        .await
        .ctx("failing exhausted jobs")?;
        for (upload_id, attempts) in exhausted {
            Self::reject_upload(&mut tx, upload_id, &rows::gave_up(attempts), now).await?;
        }
        let token = uuid::Uuid::new_v4().to_string();
        let until = now + lease_for;
        let row = sqlx::query(
            "UPDATE jobs j SET status = 'leased', attempts = j.attempts + 1, lease_token = $3, \
                 leased_by = $4, leased_until = $5 \
             FROM (SELECT id FROM jobs \
                   WHERE (status = 'queued' AND available_at <= $1) \
                      OR (status = 'leased' AND leased_until < $1 AND attempts < $2) \
                   ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) c, uploads u \
             WHERE j.id = c.id AND u.id = j.upload_id \
             RETURNING j.id, j.upload_id, j.attempts, u.device, u.kind, u.blob_key, u.received_at",
        )
        .bind(now)
        .bind(policy.max_attempts)
        .bind(&token)
        .bind(worker)
        .bind(until)
        .fetch_optional(&mut *tx)
        .await
        .ctx("leasing a job")?;
        tx.commit().await.ctx("committing a lease")?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Lease {
            job_id: row.try_get("id").ctx("reading a lease")?,
            upload_id: row.try_get("upload_id").ctx("reading a lease")?,
            device: row
                .try_get::<String, _>("device")
                .ctx("reading a lease")?
                .parse()?,
            kind: row
                .try_get::<String, _>("kind")
                .ctx("reading a lease")?
                .parse()?,
            blob_key: row.try_get("blob_key").ctx("reading a lease")?,
            received_at: row.try_get("received_at").ctx("reading a lease")?,
            attempt: row.try_get("attempts").ctx("reading a lease")?,
            token,
            until,
        }))
    }

    async fn renew_lease(&self, lease: &Lease, until: DateTime<Utc>) -> Result<()> {
        let renewed = sqlx::query(
            "UPDATE jobs SET leased_until = $1 \
             WHERE id = $2 AND status = 'leased' AND lease_token = $3",
        )
        .bind(until)
        .bind(lease.job_id)
        .bind(&lease.token)
        .execute(&self.pool)
        .await
        .ctx("renewing a lease")?
        .rows_affected();
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
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        Self::holding(&mut tx, lease).await?;
        let v = &outcome.visits;
        let centers: Vec<_> = v.iter().map(|x| x.cell.center()).collect();
        sqlx::query(
            "INSERT INTO cell_observations (upload_id, cell, device, fixes, first_seen, last_seen, geom) \
             SELECT $1, c, $2, f, fs, ls, ST_SetSRID(ST_MakePoint(lon, lat), 4326) \
             FROM UNNEST($3::bigint[], $4::bigint[], $5::timestamptz[], $6::timestamptz[], \
                         $7::float8[], $8::float8[]) AS t(c, f, fs, ls, lat, lon)",
        )
        .bind(lease.upload_id)
        .bind(lease.device.as_str())
        .bind(v.iter().map(|x| x.cell.as_i64()).collect::<Vec<_>>())
        .bind(v.iter().map(|x| i64::from(x.fixes)).collect::<Vec<_>>())
        .bind(v.iter().map(|x| x.first_seen).collect::<Vec<_>>())
        .bind(v.iter().map(|x| x.last_seen).collect::<Vec<_>>())
        .bind(centers.iter().map(|p| p.lat).collect::<Vec<_>>())
        .bind(centers.iter().map(|p| p.lon).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .ctx("writing cell observations")?;
        let st = &outcome.stretches;
        sqlx::query(
            "INSERT INTO matched_stretches \
                 (upload_id, seq, match_piece, cell, osm_way_id, way_piece, length_m) \
             SELECT $1, seq, mp, c, w, wp, l \
             FROM UNNEST($2::int[], $3::int[], $4::bigint[], $5::bigint[], $6::int[], \
                         $7::float8[]) AS t(seq, mp, c, w, wp, l)",
        )
        .bind(lease.upload_id)
        .bind((0..st.len() as i32).collect::<Vec<_>>())
        .bind(st.iter().map(|x| x.match_piece as i32).collect::<Vec<_>>())
        .bind(st.iter().map(|x| x.cell.as_i64()).collect::<Vec<_>>())
        .bind(st.iter().map(|x| x.osm_way_id).collect::<Vec<_>>())
        .bind(st.iter().map(|x| x.way_piece as i32).collect::<Vec<_>>())
        .bind(st.iter().map(|x| x.length_m).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .ctx("writing matched stretches")?;
        let r = &outcome.radio;
        sqlx::query(
            "INSERT INTO radio_observations (upload_id, seq, observed_at, emitter_kind, radio, \
                 emitter, signal_dbm, accuracy_m, cell, geom) \
             SELECT $1, seq, t, k, r, e, s, a, c, ST_SetSRID(ST_MakePoint(lon, lat), 4326) \
             FROM UNNEST($2::int[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], \
                         $7::int[], $8::float8[], $9::bigint[], $10::float8[], $11::float8[]) \
                  AS x(seq, t, k, r, e, s, a, c, lat, lon)",
        )
        .bind(lease.upload_id)
        .bind((0..r.len() as i32).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.observed_at).collect::<Vec<_>>())
        .bind(
            r.iter()
                .map(|x| x.emitter_kind.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            r.iter()
                .map(|x| x.radio.map(RadioType::as_str))
                .collect::<Vec<_>>(),
        )
        .bind(r.iter().map(|x| x.emitter.as_str()).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.signal_dbm).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.accuracy_m).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.cell.as_i64()).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.pos.lat).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.pos.lon).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .ctx("writing radio observations")?;
        let f = &outcome.frames;
        sqlx::query(
            "INSERT INTO frames (upload_id, frame, sequence, sha256, blob_key, captured_at, \
                 heading_deg, width, height, cell, geom, status, published_key, phash, faces, \
                 plates, quality, osm_way_id, way_piece) \
             SELECT $1, fr, sq, h, k, t, hd, w, ht, c, ST_SetSRID(ST_MakePoint(lon, lat), 4326), \
                    CASE WHEN pk IS NULL THEN 'pending' ELSE 'published' END, pk, ph, fa, pl, \
                    q::jsonb, wy, wp \
             FROM UNNEST($2::int[], $3::int[], $4::text[], $5::text[], $6::timestamptz[], \
                         $7::float8[], $8::int[], $9::int[], $10::bigint[], $11::float8[], \
                         $12::float8[], $13::text[], $14::text[], $15::int[], $16::int[], \
                         $17::text[], $18::bigint[], $19::int[]) \
                  AS x(fr, sq, h, k, t, hd, w, ht, c, lat, lon, pk, ph, fa, pl, q, wy, wp)",
        )
        .bind(lease.upload_id)
        .bind(f.iter().map(|x| x.frame).collect::<Vec<_>>())
        .bind(f.iter().map(|x| x.sequence).collect::<Vec<_>>())
        .bind(f.iter().map(|x| x.sha256.as_str()).collect::<Vec<_>>())
        .bind(f.iter().map(|x| x.blob_key.as_str()).collect::<Vec<_>>())
        .bind(f.iter().map(|x| x.captured_at).collect::<Vec<_>>())
        .bind(f.iter().map(|x| x.heading_deg).collect::<Vec<_>>())
        .bind(f.iter().map(|x| x.width).collect::<Vec<_>>())
        .bind(f.iter().map(|x| x.height).collect::<Vec<_>>())
        .bind(f.iter().map(|x| x.cell.as_i64()).collect::<Vec<_>>())
        .bind(f.iter().map(|x| x.pos.lat).collect::<Vec<_>>())
        .bind(f.iter().map(|x| x.pos.lon).collect::<Vec<_>>())
        .bind(
            f.iter()
                .map(|x| x.vision.as_ref().map(|v| v.published_key.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            f.iter()
                .map(|x| x.vision.as_ref().map(|v| v.phash.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            f.iter()
                .map(|x| x.vision.as_ref().map(|v| v.faces))
                .collect::<Vec<_>>(),
        )
        .bind(
            f.iter()
                .map(|x| x.vision.as_ref().map(|v| v.plates))
                .collect::<Vec<_>>(),
        )
        .bind(
            f.iter()
                .map(|x| x.vision.as_ref().map(|v| v.quality.to_string()))
                .collect::<Vec<_>>(),
        )
        .bind(
            f.iter()
                .map(|x| x.segment.map(|s| s.osm_way_id))
                .collect::<Vec<_>>(),
        )
        .bind(
            f.iter()
                .map(|x| x.segment.map(|s| s.way_piece as i32))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await
        .ctx("writing frames")?;
        let fr = &outcome.frame_rejections;
        sqlx::query(
            "INSERT INTO frame_rejections (upload_id, frame, reason, scores, sha256, blob_key, \
                 review_key, phash, duplicate_of_upload, duplicate_of_frame, captured_at, cell, \
                 geom, sequence, heading_deg, width, height, osm_way_id, way_piece) \
             SELECT $1, fr, r, sc::jsonb, h, k, rk, ph, du, df, t, c, \
                    ST_SetSRID(ST_MakePoint(lon, lat), 4326), sq, hd, w, ht, wy, wp \
             FROM UNNEST($2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                         $8::text[], $9::bigint[], $10::int[], $11::timestamptz[], $12::bigint[], \
                         $13::float8[], $14::float8[], $15::int[], $16::float8[], $17::int[], \
                         $18::int[], $19::bigint[], $20::int[]) \
                  AS x(fr, r, sc, h, k, rk, ph, du, df, t, c, lat, lon, sq, hd, w, ht, wy, wp)",
        )
        .bind(lease.upload_id)
        .bind(fr.iter().map(|x| x.frame).collect::<Vec<_>>())
        .bind(fr.iter().map(|x| x.reason.as_str()).collect::<Vec<_>>())
        .bind(fr.iter().map(|x| x.scores.to_string()).collect::<Vec<_>>())
        .bind(fr.iter().map(|x| x.sha256.as_str()).collect::<Vec<_>>())
        .bind(fr.iter().map(|x| x.blob_key.as_str()).collect::<Vec<_>>())
        .bind(
            fr.iter()
                .map(|x| x.review_key.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(fr.iter().map(|x| x.phash.as_deref()).collect::<Vec<_>>())
        .bind(
            fr.iter()
                .map(|x| x.duplicate_of.map(|d| d.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            fr.iter()
                .map(|x| x.duplicate_of.map(|d| d.1))
                .collect::<Vec<_>>(),
        )
        .bind(fr.iter().map(|x| x.captured_at).collect::<Vec<_>>())
        .bind(fr.iter().map(|x| x.cell.as_i64()).collect::<Vec<_>>())
        .bind(fr.iter().map(|x| x.pos.lat).collect::<Vec<_>>())
        .bind(fr.iter().map(|x| x.pos.lon).collect::<Vec<_>>())
        .bind(
            fr.iter()
                .map(|x| x.placement.map(|p| p.sequence))
                .collect::<Vec<_>>(),
        )
        .bind(
            fr.iter()
                .map(|x| x.placement.map(|p| p.heading_deg))
                .collect::<Vec<_>>(),
        )
        .bind(
            fr.iter()
                .map(|x| x.placement.map(|p| p.width))
                .collect::<Vec<_>>(),
        )
        .bind(
            fr.iter()
                .map(|x| x.placement.map(|p| p.height))
                .collect::<Vec<_>>(),
        )
        .bind(
            fr.iter()
                .map(|x| x.placement.and_then(|p| p.segment).map(|s| s.osm_way_id))
                .collect::<Vec<_>>(),
        )
        .bind(
            fr.iter()
                .map(|x| {
                    x.placement
                        .and_then(|p| p.segment)
                        .map(|s| s.way_piece as i32)
                })
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await
        .ctx("writing refused frames")?;
        let rj = &outcome.rejections;
        sqlx::query(
            "INSERT INTO rejected_observations (upload_id, seq, stage, item, reason, detail) \
             SELECT $1, seq, st, it, r, d \
             FROM UNNEST($2::int[], $3::text[], $4::bigint[], $5::text[], $6::text[]) \
                  AS x(seq, st, it, r, d)",
        )
        .bind(lease.upload_id)
        .bind((0..rj.len() as i32).collect::<Vec<_>>())
        .bind(rj.iter().map(|x| x.stage.as_str()).collect::<Vec<_>>())
        .bind(rj.iter().map(|x| x.item).collect::<Vec<_>>())
        .bind(rj.iter().map(|x| x.reason.as_str()).collect::<Vec<_>>())
        .bind(rj.iter().map(|x| x.detail.as_deref()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .ctx("writing rejected observations")?;
        let (kept, refused) = outcome.observation_counts();
        let trust = rows::trust_columns(outcome);
        sqlx::query(
            "UPDATE uploads SET status = 'processed', reason = NULL, fixes_accepted = $2, \
                 fixes_rejected = $3, cells = $4, processed_at = $5, matched_m = $6, \
                 observations_accepted = $7, observations_rejected = $8, cells_seen = $9, \
                 trust = $10, trust_findings = $11, evidence = $12, trust_changed_at = $5 \
             WHERE id = $1",
        )
        .bind(lease.upload_id)
        .bind(i64::from(outcome.fixes_accepted))
        .bind(i64::from(outcome.fixes_rejected))
        .bind(trust.cells)
        .bind(now)
        .bind(rows::matched_m(outcome))
        .bind(kept)
        .bind(refused)
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
                     SELECT $1, device, contributor, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
                     FROM uploads WHERE id = $1",
                )
                .bind(lease.upload_id)
                .bind(e.radio)
                .bind(e.first_at)
                .bind(e.last_at)
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
                sqlx::query("INSERT INTO track_prints (upload_id, points) VALUES ($1, $2)")
                    .bind(lease.upload_id)
                    .bind(print)
                    .execute(&mut *tx)
                    .await
                    .ctx("writing a track's print")?;
            }
        }
        sqlx::query(
            "UPDATE jobs SET status = 'done', finished_at = $2, lease_token = NULL WHERE id = $1",
        )
        .bind(lease.job_id)
        .bind(now)
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
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        Self::holding(&mut tx, lease).await?;
        match rows::next_step(lease, failure, policy) {
            rows::NextStep::Retry { error } => {
                sqlx::query(
                    "UPDATE jobs SET status = 'queued', lease_token = NULL, leased_until = NULL, \
                         available_at = $2, last_error = $3 WHERE id = $1",
                )
                .bind(lease.job_id)
                .bind(now + policy.retry_after)
                .bind(error)
                .execute(&mut *tx)
                .await
                .ctx("postponing a job")?;
            }
            rows::NextStep::GiveUp { reason } => {
                sqlx::query(
                    "UPDATE jobs SET status = 'failed', lease_token = NULL, finished_at = $2, \
                         last_error = $3 WHERE id = $1",
                )
                .bind(lease.job_id)
                .bind(now)
                .bind(&reason)
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
        let rows: Vec<(i64, i64, i64, i64, DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as(&format!(
                "SELECT cell, SUM(fixes)::BIGINT, COUNT(*), COUNT(DISTINCT device), \
                    MIN(first_seen), MAX(last_seen) \
             FROM cell_observations WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) \
               AND upload_id NOT IN {FLAGGED_UPLOADS} \
             GROUP BY cell ORDER BY cell LIMIT $5",
            ))
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
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
                    first_seen,
                    last_seen,
                })
            })
            .collect()
    }

    async fn replace_roads(&self, segments: &[RoadSegment], cells: &[RoadCell]) -> Result<u64> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        sqlx::query("DELETE FROM road_segments")
            .execute(&mut *tx)
            .await
            .ctx("clearing the road network")?;
        sqlx::query("DELETE FROM road_cells")
            .execute(&mut *tx)
            .await
            .ctx("clearing road cells")?;
        for chunk in cells.chunks(20_000) {
            let centers: Vec<_> = chunk.iter().map(|c| c.cell.center()).collect();
            sqlx::query(
                "INSERT INTO road_cells (cell, road_length_m, geom) \
                 SELECT c, l, ST_SetSRID(ST_MakePoint(lon, lat), 4326) \
                 FROM UNNEST($1::bigint[], $2::float8[], $3::float8[], $4::float8[]) \
                      AS t(c, l, lat, lon)",
            )
            .bind(chunk.iter().map(|c| c.cell.as_i64()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|c| c.road_length_m).collect::<Vec<_>>())
            .bind(centers.iter().map(|p| p.lat).collect::<Vec<_>>())
            .bind(centers.iter().map(|p| p.lon).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .ctx("writing road cells")?;
        }
        for chunk in segments.chunks(5000) {
            sqlx::query(
                "INSERT INTO road_segments \
                     (osm_way_id, piece, osm_node_ids, highway, name, oneway, length_m, geom) \
                 SELECT w, p, ARRAY(SELECT jsonb_array_elements_text(n::jsonb)::bigint), h, nm, o, \
                        l, ST_GeomFromText(g, 4326) \
                 FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], \
                             $6::bool[], $7::float8[], $8::text[]) AS t(w, p, n, h, nm, o, l, g)",
            )
            .bind(chunk.iter().map(|s| s.osm_way_id).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.piece as i32).collect::<Vec<_>>())
            .bind(chunk.iter().map(rows::node_ids_json).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.highway.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.oneway).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.length_m).collect::<Vec<_>>())
            .bind(chunk.iter().map(rows::wkt_linestring).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .ctx("writing road segments")?;
        }
        tx.commit().await.ctx("committing the road network")?;
        Ok(segments.len() as u64)
    }

    async fn roads(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadSegment>> {
        let rows = sqlx::query(
            "SELECT osm_way_id, piece, osm_node_ids, highway, name, oneway, length_m, \
                    ST_AsGeoJSON(geom) AS geojson \
             FROM road_segments WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) \
             ORDER BY osm_way_id, piece LIMIT $5",
        )
        .bind(bbox.west)
        .bind(bbox.south)
        .bind(bbox.east)
        .bind(bbox.north)
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
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT osm_way_id, piece, osm_node_ids, highway, name, oneway, length_m, \
                    ST_AsGeoJSON(geom) AS geojson \
             FROM road_segments \
             WHERE (osm_way_id, piece) IN (SELECT * FROM UNNEST($1::bigint[], $2::int[])) \
             ORDER BY osm_way_id, piece",
        )
        .bind(refs.iter().map(|r| r.osm_way_id).collect::<Vec<_>>())
        .bind(refs.iter().map(|r| r.way_piece as i32).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
        .ctx("reading road segments by reference")?;
        rows.iter().map(road_segment).collect()
    }

    async fn roads_last_seen(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<SegmentSeen>> {
        let rows: Vec<(i64, i32, DateTime<Utc>)> = sqlx::query_as(&format!(
            "WITH s AS (SELECT osm_way_id, piece FROM road_segments \
                        WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326)), \
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
             ORDER BY osm_way_id, piece LIMIT $5",
        ))
        .bind(bbox.west)
        .bind(bbox.south)
        .bind(bbox.east)
        .bind(bbox.north)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading when roads were last driven")?;
        Ok(rows
            .into_iter()
            .map(|(osm_way_id, piece, last_seen)| SegmentSeen {
                osm_way_id,
                piece: piece.unsigned_abs(),
                last_seen,
            })
            .collect())
    }

    async fn changed_cells(&self, since: DateTime<Utc>, limit: i64) -> Result<Vec<Cell>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "WITH u AS (SELECT id FROM uploads WHERE processed_at > $1 \
                        UNION SELECT id FROM uploads WHERE trust_changed_at > $1) \
             SELECT cell FROM cell_observations WHERE upload_id IN (SELECT id FROM u) \
             UNION SELECT cell FROM radio_observations WHERE upload_id IN (SELECT id FROM u) \
             UNION SELECT cell FROM frames WHERE upload_id IN (SELECT id FROM u) \
             UNION SELECT r.cell FROM frame_decisions d JOIN frame_rejections r \
                 ON r.upload_id = d.upload_id AND r.frame = d.frame WHERE d.decided_at > $1 \
             LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading changed cells")?;
        rows.into_iter()
            .map(|(c,)| Ok(Cell::from_i64(c)?))
            .collect()
    }

    async fn extent(&self) -> Result<Option<BoundingBox>> {
        let row: (Option<f64>, Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
            "WITH roads AS (SELECT ST_Extent(geom) AS e FROM road_cells), \
                  seen AS (SELECT ST_Extent(geom) AS e FROM \
                           (SELECT geom FROM cell_observations \
                            UNION ALL SELECT geom FROM radio_observations) g) \
             SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) \
             FROM (SELECT COALESCE((SELECT e FROM roads), (SELECT e FROM seen)) AS e) x",
        )
        .fetch_one(&self.pool)
        .await
        .ctx("reading the data's extent")?;
        Ok(rows::extent(row))
    }

    async fn road_cells(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadCell>> {
        let rows: Vec<(i64, f64)> = sqlx::query_as(
            "SELECT cell, road_length_m FROM road_cells \
             WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) ORDER BY cell LIMIT $5",
        )
        .bind(bbox.west)
        .bind(bbox.south)
        .bind(bbox.east)
        .bind(bbox.north)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading road cells")?;
        rows::road_cells(rows)
    }

    async fn matched_stretches(&self, upload_id: i64) -> Result<Vec<MatchedStretch>> {
        let rows: Vec<(i32, i64, i64, i32, f64)> = sqlx::query_as(
            "SELECT match_piece, cell, osm_way_id, way_piece, length_m FROM matched_stretches \
             WHERE upload_id = $1 ORDER BY seq",
        )
        .bind(upload_id)
        .fetch_all(&self.pool)
        .await
        .ctx("reading matched stretches")?;
        rows.into_iter()
            .map(|(mp, c, w, wp, l)| rows::stretch(i64::from(mp), c, w, i64::from(wp), l))
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
             WHERE upload_id = $1 ORDER BY seq LIMIT $2",
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
            DateTime<Utc>,
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
            "SELECT observed_at, emitter_kind, radio, emitter, signal_dbm, accuracy_m, cell, \
                 ST_Y(geom), ST_X(geom) FROM radio_observations WHERE upload_id = $1 \
             ORDER BY seq LIMIT $2",
        )
        .bind(upload_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading radio observations")?;
        rows.into_iter()
            .map(|(at, kind, radio, emitter, signal, acc, cell, lat, lon)| {
                Ok(RadioRow {
                    observed_at: at,
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
        type R = (i64, i64, i64, i64, i64, i64, Option<i32>, DateTime<Utc>);
        let rows: Vec<R> = sqlx::query_as(&format!(
            "SELECT cell, COUNT(*), COUNT(DISTINCT emitter), \
                    COUNT(DISTINCT emitter) FILTER (WHERE emitter_kind = 'cell'), \
                    COUNT(DISTINCT emitter) FILTER (WHERE emitter_kind = 'wifi'), \
                    COUNT(DISTINCT emitter) FILTER (WHERE emitter_kind = 'bluetooth'), \
                    MAX(signal_dbm), MAX(observed_at) \
             FROM radio_observations \
             WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) \
               AND upload_id NOT IN {FLAGGED_UPLOADS} AND counted IS NOT FALSE \
             GROUP BY cell ORDER BY cell LIMIT $5",
        ))
        .bind(bbox.west)
        .bind(bbox.south)
        .bind(bbox.east)
        .bind(bbox.north)
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
                    last_seen: last,
                })
            })
            .collect()
    }

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
                 WHERE upload_id <> $1 AND (device = $2 OR contributor = $3) \
                   AND last_at >= $4 AND first_at <= $5 \
                 UNION ALL \
                 SELECT -id, device, contributor, FALSE, first_at, last_at, first_lat, \
                        first_lon, last_lat, last_lon, first_lat, first_lon, 0 \
                 FROM upload_refusals \
                 WHERE first_at IS NOT NULL AND (device = $2 OR contributor = $3) \
                   AND last_at >= $4 AND first_at <= $5) n \
             ORDER BY first_at, upload_id LIMIT $6",
        )
        .bind(upload_id)
        .bind(device.as_str())
        .bind(contributor)
        .bind(from)
        .bind(to)
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
                        first_at: r.try_get("first_at").ctx(ctx)?,
                        last_at: r.try_get("last_at").ctx(ctx)?,
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
            "(SELECT DISTINCT upload_id, cell FROM radio_observations WHERE cell = ANY($2))"
        } else {
            "(SELECT upload_id, cell FROM cell_observations WHERE cell = ANY($2))"
        };
        let rows: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT o.upload_id, COUNT(*) FROM {table} o \
             WHERE o.upload_id <> $1 \
             GROUP BY o.upload_id ORDER BY COUNT(*) DESC, o.upload_id LIMIT $3"
        ))
        .bind(upload_id)
        .bind(cells.iter().map(|c| c.as_i64()).collect::<Vec<_>>())
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
            "UPDATE uploads SET evidence = $2, trust_findings = $4, \
                 trust_changed_at = CASE WHEN trust <> $3 THEN $5 ELSE trust_changed_at END, \
                 trust = $3, \
                 cells = CASE WHEN $3 = 'flagged' THEN 0 ELSE COALESCE(cells_seen, cells) END \
             WHERE id = $1 AND status = 'processed' AND trust_epoch IS NULL",
        )
        .bind(upload_id)
        .bind(evidence)
        .bind(verdict)
        .bind(findings)
        .bind(now)
        .execute(&self.pool)
        .await
        .ctx("amending an upload's verdict")?;
        Ok(done.rows_affected() == 1)
    }

    async fn track_prints(&self, upload_ids: &[i64]) -> Result<Vec<(i64, String)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT upload_id, points FROM track_prints WHERE upload_id = ANY($1) \
             ORDER BY upload_id",
        )
        .bind(upload_ids)
        .fetch_all(&self.pool)
        .await
        .ctx("reading track prints")?;
        Ok(rows)
    }

    async fn record_refusal(&self, r: &NewRefusal) -> Result<()> {
        sqlx::query(
            "INSERT INTO upload_refusals (device, contributor, kind, sha256, reason, detail, \
                 received_at, first_at, last_at, first_lat, first_lon, last_lat, last_lon) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
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

    async fn create_api_key(&self, key: &NewApiKey, now: DateTime<Utc>) -> Result<ApiKeyRecord> {
        let row = sqlx::query(
            "INSERT INTO api_keys (key_hash, prefix, role, contributor, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING *",
        )
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(key.role.as_str())
        .bind(&key.contributor)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .ctx("creating an API key")?;
        key_from_row(&row)
    }

    async fn api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1")
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
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await
                .ctx("revoking an API key")?;
        Ok(done.rows_affected() == 1)
    }

    async fn register_device(&self, device: &DeviceRecord) -> Result<Registration> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let inserted = sqlx::query(
            "INSERT INTO devices (device, public_key, contributor, registered_by, registered_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (device) DO NOTHING",
        )
        .bind(device.device.as_str())
        .bind(&device.public_key)
        .bind(&device.contributor)
        .bind(device.registered_by)
        .bind(device.registered_at)
        .execute(&mut *tx)
        .await
        .ctx("registering a device")?;
        if inserted.rows_affected() == 0 {
            let stored = sqlx::query("SELECT * FROM devices WHERE device = $1")
                .bind(device.device.as_str())
                .fetch_optional(&mut *tx)
                .await
                .ctx("reading a device")?
                .as_ref()
                .map(device_from_row)
                .transpose()?;
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(match stored {
                Some(stored) if stored.is_registered_again_as(device) => {
                    Registration::Existing(stored)
                }
                _ => Registration::DeviceTaken,
            });
        }
        let key = sqlx::query(
            "INSERT INTO device_keys (public_key, device, added_at) VALUES ($1, $2, $3) \
             ON CONFLICT (public_key) DO NOTHING",
        )
        .bind(&device.public_key)
        .bind(device.device.as_str())
        .bind(device.registered_at)
        .execute(&mut *tx)
        .await
        .ctx("recording a device key")?;
        if key.rows_affected() == 0 {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(Registration::KeyTaken);
        }
        tx.commit().await.ctx("committing a device")?;
        Ok(Registration::Created(DeviceRecord {
            rotated_at: None,
            revoked_at: None,
            ..device.clone()
        }))
    }

    async fn device(&self, device: &DeviceId) -> Result<Option<DeviceRecord>> {
        let row = sqlx::query("SELECT * FROM devices WHERE device = $1")
            .bind(device.as_str())
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a device")?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn devices(&self, filter: &DeviceFilter, limit: i64) -> Result<Vec<DeviceRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM devices \
             WHERE ($1::text IS NULL OR contributor = $1) \
               AND ($2::bigint IS NULL OR registered_by = $2) \
             ORDER BY device LIMIT $3",
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
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        // Compare and swap: of two rotations signed with the same old key, one wins.
        let rotated = sqlx::query(
            "UPDATE devices SET public_key = $3, rotated_at = $4 \
             WHERE device = $1 AND public_key = $2 AND revoked_at IS NULL RETURNING *",
        )
        .bind(device.as_str())
        .bind(from_key)
        .bind(to_key)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .ctx("rotating a device key")?;
        let Some(row) = rotated else {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(Rotation::Superseded);
        };
        let record = device_from_row(&row)?;
        let added = sqlx::query(
            "INSERT INTO device_keys (public_key, device, added_at) VALUES ($1, $2, $3) \
             ON CONFLICT (public_key) DO NOTHING",
        )
        .bind(to_key)
        .bind(device.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .ctx("recording a device key")?;
        if added.rows_affected() == 0 {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(Rotation::KeyTaken);
        }
        sqlx::query("UPDATE device_keys SET retired_at = $2 WHERE public_key = $1")
            .bind(from_key)
            .bind(now)
            .execute(&mut *tx)
            .await
            .ctx("retiring a device key")?;
        tx.commit().await.ctx("committing a key rotation")?;
        Ok(Rotation::Rotated(record))
    }

    async fn revoke_device(&self, device: &DeviceId, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let done = sqlx::query(
            "UPDATE devices SET revoked_at = $2 WHERE device = $1 AND revoked_at IS NULL",
        )
        .bind(device.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .ctx("revoking a device")?;
        if done.rows_affected() == 0 {
            tx.rollback().await.ctx("ending a transaction")?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE device_keys SET retired_at = $2 WHERE device = $1 AND retired_at IS NULL",
        )
        .bind(device.as_str())
        .bind(now)
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
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        sqlx::query("DELETE FROM request_nonces WHERE seen_at < $1")
            .bind(forget_before)
            .execute(&mut *tx)
            .await
            .ctx("forgetting old nonces")?;
        let done = sqlx::query(
            "INSERT INTO request_nonces (device, nonce, seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(device.as_str())
        .bind(nonce)
        .bind(now)
        .execute(&mut *tx)
        .await
        .ctx("recording a nonce")?;
        tx.commit().await.ctx("committing a nonce")?;
        Ok(done.rows_affected() == 1)
    }

    async fn open_session(&self, session: &UploadSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO upload_sessions (id, device, kind, size_bytes, sha256, received_bytes, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
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
        let row = sqlx::query("SELECT * FROM upload_sessions WHERE id = $1")
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
        let moved: Option<i64> = sqlx::query_scalar(
            "UPDATE upload_sessions SET received_bytes = received_bytes + $3, updated_at = $4 \
             WHERE id = $1 AND received_bytes = $2 AND received_bytes + $3 <= size_bytes \
             RETURNING received_bytes",
        )
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
        sqlx::query(
            "INSERT INTO upload_session_parts (session_id, offset_bytes, size_bytes, blob_key) \
             VALUES ($1, $2, $3, $4)",
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
             WHERE session_id = $1 ORDER BY offset_bytes",
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
        sqlx::query("DELETE FROM upload_sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .ctx("deleting an upload session")?;
        Ok(())
    }

    async fn device_sessions(&self, device: &DeviceId) -> Result<Vec<UploadSession>> {
        let rows =
            sqlx::query("SELECT * FROM upload_sessions WHERE device = $1 ORDER BY created_at")
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
            "SELECT * FROM upload_sessions WHERE updated_at < $1 ORDER BY updated_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("listing stale upload sessions")?;
        rows.iter().map(session_from_row).collect()
    }

    async fn api_key_by_id(&self, id: i64) -> Result<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
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

    async fn originals_due(
        &self,
        received_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueOriginals>> {
        let due: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM uploads \
             WHERE blob_expired_at IS NULL \
                   AND (status = 'rejected' \
                        OR (kind = 'drive' AND status <> 'queued' AND received_at < $1)) \
             ORDER BY received_at, id LIMIT $2",
        )
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
        let keys: Vec<(i64, String)> = sqlx::query_as(
            "WITH k AS ( \
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
             ORDER BY upload_id, key",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .ctx("listing originals past retention")?;
        Ok(rows::group_due(&ids, keys))
    }

    async fn mark_originals_expired(&self, upload_id: i64, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        for sql in [
            "UPDATE uploads SET blob_expired_at = $2 WHERE id = $1 AND blob_expired_at IS NULL",
            "UPDATE frames SET original_expired_at = $2 \
             WHERE upload_id = $1 AND original_expired_at IS NULL",
            "UPDATE frame_rejections SET original_expired_at = $2 \
             WHERE upload_id = $1 AND original_expired_at IS NULL",
        ] {
            sqlx::query(sql)
                .bind(upload_id)
                .bind(now)
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
        self.claim_epoch_pg(period, worker, now, lease_for).await
    }

    async fn abandon_epoch(&self, epoch: u64, token: &str) -> Result<()> {
        self.abandon_epoch_pg(epoch, token).await
    }

    async fn epoch_inputs(
        &self,
        period: &EpochPeriod,
        coverage_since: DateTime<Utc>,
    ) -> Result<EpochInputs> {
        self.epoch_inputs_pg(period, coverage_since).await
    }

    async fn finish_epoch(
        &self,
        token: &str,
        outcome: &EpochOutcome,
        policy: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.finish_epoch_pg(token, outcome, policy, now).await
    }

    async fn epochs(&self) -> Result<Vec<EpochRecord>> {
        self.epochs_pg().await
    }

    async fn closed_epoch(&self, epoch: u64) -> Result<Option<ClosedEpoch>> {
        self.closed_epoch_pg(epoch).await
    }

    async fn last_closed_epoch(&self) -> Result<Option<u64>> {
        self.last_closed_epoch_pg().await
    }

    async fn epoch_rewards(&self, epoch: u64) -> Result<Vec<ContributorReward>> {
        self.epoch_rewards_pg(epoch).await
    }

    async fn epoch_cells(&self, epoch: u64) -> Result<Vec<CellReward>> {
        self.epoch_cells_pg(epoch).await
    }

    async fn epoch_penalties(&self, epoch: u64) -> Result<Vec<Penalty>> {
        self.epoch_penalties_pg(epoch).await
    }

    async fn contributor_rewards(
        &self,
        contributor: &str,
    ) -> Result<Vec<(u64, ContributorReward)>> {
        self.contributor_rewards_pg(contributor).await
    }

    async fn create_demand_area(
        &self,
        area: &NewDemandArea,
        now: DateTime<Utc>,
    ) -> Result<DemandAreaRecord> {
        self.create_demand_area_pg(area, now).await
    }

    async fn radio_samples(
        &self,
        bbox: BoundingBox,
        limit: i64,
    ) -> Result<Vec<covermap_domain::rewards::RadioSample>> {
        self.radio_samples_pg(bbox, limit).await
    }

    async fn record_usage(&self, counts: &[(u64, Cell, u64)]) -> Result<()> {
        self.record_usage_pg(counts).await
    }

    async fn usage(&self, epoch: u64) -> Result<Vec<(Cell, u64)>> {
        self.usage_pg(epoch).await
    }

    async fn demand_areas(&self) -> Result<Vec<DemandAreaRecord>> {
        self.demand_areas_pg().await
    }

    async fn demand_cells(
        &self,
        bbox: BoundingBox,
        now: DateTime<Utc>,
        coverage_since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DemandCellState>> {
        self.demand_cells_pg(bbox, now, coverage_since, limit).await
    }
}

/// A `road_segments` row with its geometry as GeoJSON (`geojson`).
fn road_segment(row: &PgRow) -> Result<RoadSegment> {
    let ctx = "reading a road segment";
    let geojson: String = row.try_get("geojson").ctx(ctx)?;
    Ok(RoadSegment {
        osm_way_id: row.try_get("osm_way_id").ctx(ctx)?,
        piece: row.try_get::<i32, _>("piece").ctx(ctx)? as u32,
        osm_node_ids: row.try_get("osm_node_ids").ctx(ctx)?,
        highway: row.try_get("highway").ctx(ctx)?,
        name: row.try_get("name").ctx(ctx)?,
        oneway: row.try_get("oneway").ctx(ctx)?,
        length_m: row.try_get("length_m").ctx(ctx)?,
        points: rows::points_from_geojson(&geojson)?,
    })
}
