//! The job queue: leasing, renewing, completing and failing the jobs that process uploads.

use std::time::Duration;

use crate::dialect::{Columns, micros};
use crate::error::{Result, SqlContext, StoreError};
use crate::{JobFailure, JobOutcome, Lease, PgStore, QueuePolicy, SqliteStore, rows};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::RadioType;

/// The job queue: leasing, renewing, completing and failing the jobs that process uploads.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Leases the oldest job that is ready: queued and due, or leased by a worker whose lease ran
    /// out. Jobs that ran out of attempts are failed instead of leased.
    async fn lease_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
        policy: QueuePolicy,
    ) -> Result<Option<Lease>>;

    /// Extends a held lease to `until`, so a long job is not taken over while its worker still
    /// works on it; [`StoreError::LeaseLost`] if the lease is no longer held (it ran out and
    /// another worker took the job, or the job ended).
    async fn renew_lease(&self, lease: &Lease, until: DateTime<Utc>) -> Result<()>;

    /// Writes a track's observations, its upload's summary and the job's "done" mark in one
    /// transaction — or nothing, with [`StoreError::LeaseLost`], if the lease is no longer held,
    /// or with [`StoreError::Erased`] (the job ended) if the upload was erased meanwhile.
    async fn complete_job(
        &self,
        lease: &Lease,
        outcome: &JobOutcome,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Ends or postpones a job that failed, under the same lease and erasure rules.
    async fn fail_job(
        &self,
        lease: &Lease,
        failure: &JobFailure,
        now: DateTime<Utc>,
        policy: QueuePolicy,
    ) -> Result<()>;
}

// Failing jobs whose every lease ran out: PostgreSQL picks them FOR UPDATE SKIP LOCKED, so
// workers never wait on each other; SQLite's single writer needs no row locks.
const FAIL_EXHAUSTED_JOBS_PG: &str = "UPDATE jobs SET status = 'failed', finished_at = $1, \
         lease_token = NULL, \
         last_error = 'lease ran out ' || attempts || ' times without the job finishing' \
     WHERE id IN (SELECT id FROM jobs WHERE status = 'leased' AND leased_until < $1 \
                  AND attempts >= $2 FOR UPDATE SKIP LOCKED) \
     RETURNING upload_id, attempts";
const FAIL_EXHAUSTED_JOBS_SQLITE: &str = "UPDATE jobs SET status = 'failed', finished_at = $1, \
         lease_token = NULL, \
         last_error = 'lease ran out ' || attempts || ' times without the job finishing' \
     WHERE status = 'leased' AND leased_until < $1 AND attempts >= $2 \
     RETURNING upload_id, attempts";

// Leasing the oldest ready job: PostgreSQL picks it FOR UPDATE SKIP LOCKED and returns its
// upload's columns from the same UPDATE; SQLite's single writer reads them after
// ([`LEASED_UPLOAD`]).
const LEASE_JOB_PG: &str = "UPDATE jobs j SET status = 'leased', attempts = j.attempts + 1, \
         lease_token = $3, leased_by = $4, leased_until = $5 \
     FROM (SELECT id FROM jobs \
           WHERE (status = 'queued' AND available_at <= $1) \
              OR (status = 'leased' AND leased_until < $1 AND attempts < $2) \
           ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) c, uploads u \
     WHERE j.id = c.id AND u.id = j.upload_id \
     RETURNING j.id, j.upload_id, j.attempts, u.device, u.kind, u.blob_key, u.received_at";
const LEASE_JOB_SQLITE: &str = "UPDATE jobs SET status = 'leased', attempts = attempts + 1, \
         lease_token = $3, leased_by = $4, leased_until = $5 \
     WHERE id = (SELECT id FROM jobs \
                 WHERE (status = 'queued' AND available_at <= $1) \
                    OR (status = 'leased' AND leased_until < $1 AND attempts < $2) \
                 ORDER BY id LIMIT 1) \
     RETURNING id, upload_id, attempts";

/// The leased job's upload, on SQLite.
const LEASED_UPLOAD: &str = "SELECT device, kind, blob_key, received_at FROM uploads WHERE id = $1";

/// Moves job `$2`'s lease on to `$1`, if token `$3` still holds it.
const RENEW_LEASE: &str = "UPDATE jobs SET leased_until = $1 \
     WHERE id = $2 AND status = 'leased' AND lease_token = $3";

// A track's cells: PostgreSQL inserts them all at once from arrays (UNNEST) with PostGIS points;
// SQLite inserts them one by one, keeping the centre's lat and lon as numbers. On PostgreSQL every
// row of an upload also carries the upload's `received_at`, the month partitions' key (migration
// 0020), read once per statement.
const INSERT_CELL_OBSERVATIONS_PG: &str = "INSERT INTO cell_observations \
         (upload_id, cell, device, fixes, first_seen, last_seen, geom, received_at) \
     SELECT $1, c, $2, f, fs, ls, ST_SetSRID(ST_MakePoint(lon, lat), 4326), \
            (SELECT received_at FROM uploads WHERE id = $1) \
     FROM UNNEST($3::bigint[], $4::bigint[], $5::timestamptz[], $6::timestamptz[], \
                 $7::float8[], $8::float8[]) AS t(c, f, fs, ls, lat, lon)";
const INSERT_CELL_OBSERVATION_SQLITE: &str = "INSERT INTO cell_observations \
         (upload_id, cell, device, fixes, first_seen, last_seen, lat, lon) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

// A track's matched stretches: PostgreSQL inserts them all at once from arrays (UNNEST); SQLite
// one by one.
const INSERT_MATCHED_STRETCHES_PG: &str = "INSERT INTO matched_stretches \
         (upload_id, seq, match_piece, cell, osm_way_id, way_piece, length_m, received_at) \
     SELECT $1, seq, mp, c, w, wp, l, (SELECT received_at FROM uploads WHERE id = $1) \
     FROM UNNEST($2::int[], $3::int[], $4::bigint[], $5::bigint[], $6::int[], \
                 $7::float8[]) AS t(seq, mp, c, w, wp, l)";
const INSERT_MATCHED_STRETCH_SQLITE: &str = "INSERT INTO matched_stretches \
         (upload_id, seq, match_piece, cell, osm_way_id, way_piece, length_m) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

// A track's radio observations: PostgreSQL inserts them all at once from arrays (UNNEST) with
// PostGIS points; SQLite one by one, keeping lat and lon as numbers.
const INSERT_RADIO_OBSERVATIONS_PG: &str = "INSERT INTO radio_observations (upload_id, seq, \
         observed_at, emitter_kind, radio, emitter, signal_dbm, accuracy_m, cell, geom, \
         received_at) \
     SELECT $1, seq, t, k, r, e, s, a, c, ST_SetSRID(ST_MakePoint(lon, lat), 4326), \
            (SELECT received_at FROM uploads WHERE id = $1) \
     FROM UNNEST($2::int[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], \
                 $7::int[], $8::float8[], $9::bigint[], $10::float8[], $11::float8[]) \
          AS x(seq, t, k, r, e, s, a, c, lat, lon)";
const INSERT_RADIO_OBSERVATION_SQLITE: &str = "INSERT INTO radio_observations (upload_id, seq, \
         observed_at, emitter_kind, radio, emitter, signal_dbm, accuracy_m, cell, lat, lon) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Whether the trust stage flagged the upload: a flagged radio batch is kept out of the cells
/// twins are looked for in (see `Trust::amend_trust`).
fn flagged(outcome: &JobOutcome) -> bool {
    outcome
        .trust
        .as_ref()
        .is_some_and(|t| t.verdict == "flagged")
}

/// Upload `$1`'s radio cells, once each with its samples, from the samples just written: where
/// later uploads look for its twins (migration 0021).
const INSERT_RADIO_CELLS: &str = "INSERT INTO radio_cells (cell, upload_id, samples) \
     SELECT cell, upload_id, COUNT(*) FROM radio_observations WHERE upload_id = $1 \
     GROUP BY cell, upload_id";

// A track's frames: PostgreSQL inserts them all at once from arrays (UNNEST) with PostGIS points,
// deriving the status and JSONB quality in SQL; SQLite one by one, status bound by the caller.
const INSERT_FRAMES_PG: &str = "INSERT INTO frames (upload_id, frame, sequence, sha256, \
         blob_key, captured_at, heading_deg, width, height, cell, geom, status, published_key, \
         phash, faces, plates, quality, osm_way_id, way_piece, received_at) \
     SELECT $1, fr, sq, h, k, t, hd, w, ht, c, ST_SetSRID(ST_MakePoint(lon, lat), 4326), \
            CASE WHEN pk IS NULL THEN 'pending' ELSE 'published' END, pk, ph, fa, pl, \
            q::jsonb, wy, wp, (SELECT received_at FROM uploads WHERE id = $1) \
     FROM UNNEST($2::int[], $3::int[], $4::text[], $5::text[], $6::timestamptz[], \
                 $7::float8[], $8::int[], $9::int[], $10::bigint[], $11::float8[], \
                 $12::float8[], $13::text[], $14::text[], $15::int[], $16::int[], \
                 $17::text[], $18::bigint[], $19::int[]) \
          AS x(fr, sq, h, k, t, hd, w, ht, c, lat, lon, pk, ph, fa, pl, q, wy, wp)";
const INSERT_FRAME_SQLITE: &str = "INSERT INTO frames (upload_id, frame, sequence, sha256, \
         blob_key, captured_at, heading_deg, width, height, cell, lat, lon, status, \
         published_key, phash, faces, plates, quality, osm_way_id, way_piece) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20)";

// A track's refused frames: PostgreSQL inserts them all at once from arrays (UNNEST) with
// PostGIS points and JSONB scores; SQLite one by one.
const INSERT_FRAME_REJECTIONS_PG: &str = "INSERT INTO frame_rejections (upload_id, frame, \
         reason, scores, sha256, blob_key, review_key, phash, duplicate_of_upload, \
         duplicate_of_frame, captured_at, cell, geom, sequence, heading_deg, width, height, \
         osm_way_id, way_piece, received_at) \
     SELECT $1, fr, r, sc::jsonb, h, k, rk, ph, du, df, t, c, \
            ST_SetSRID(ST_MakePoint(lon, lat), 4326), sq, hd, w, ht, wy, wp, \
            (SELECT received_at FROM uploads WHERE id = $1) \
     FROM UNNEST($2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $8::text[], $9::bigint[], $10::int[], $11::timestamptz[], $12::bigint[], \
                 $13::float8[], $14::float8[], $15::int[], $16::float8[], $17::int[], \
                 $18::int[], $19::bigint[], $20::int[]) \
          AS x(fr, r, sc, h, k, rk, ph, du, df, t, c, lat, lon, sq, hd, w, ht, wy, wp)";
const INSERT_FRAME_REJECTION_SQLITE: &str = "INSERT INTO frame_rejections (upload_id, frame, \
         reason, scores, sha256, blob_key, review_key, phash, duplicate_of_upload, \
         duplicate_of_frame, captured_at, cell, lat, lon, sequence, heading_deg, width, height, \
         osm_way_id, way_piece) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20)";

// What a track's processing left out: PostgreSQL inserts it all at once from arrays (UNNEST);
// SQLite one by one.
const INSERT_REJECTED_OBSERVATIONS_PG: &str = "INSERT INTO rejected_observations \
         (upload_id, seq, stage, item, reason, detail, received_at) \
     SELECT $1, seq, st, it, r, d, (SELECT received_at FROM uploads WHERE id = $1) \
     FROM UNNEST($2::int[], $3::text[], $4::bigint[], $5::text[], $6::text[]) \
          AS x(seq, st, it, r, d)";
const INSERT_REJECTED_OBSERVATION_SQLITE: &str = "INSERT INTO rejected_observations \
         (upload_id, seq, stage, item, reason, detail) VALUES ($1, $2, $3, $4, $5, $6)";

/// Upload `$1`'s summary, processed at `$5`.
const SUMMARISE_UPLOAD: &str = "UPDATE uploads SET status = 'processed', reason = NULL, \
         fixes_accepted = $2, fixes_rejected = $3, cells = $4, processed_at = $5, \
         matched_m = $6, observations_accepted = $7, observations_rejected = $8, \
         cells_seen = $9, trust = $10, trust_findings = $11, evidence = $12, \
         trust_changed_at = $5 \
     WHERE id = $1";

/// Upload `$1`'s extent, with its device and contributor.
const INSERT_UPLOAD_EXTENT: &str = "INSERT INTO upload_extents (upload_id, device, contributor, \
         radio, first_at, last_at, first_lat, first_lon, last_lat, last_lon, centre_lat, \
         centre_lon, radius_m) \
     SELECT $1, device, contributor, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
     FROM uploads WHERE id = $1";

const INSERT_TRACK_PRINT: &str = "INSERT INTO track_prints (upload_id, points) VALUES ($1, $2)";

/// Job `$1` done at `$2`.
const MARK_JOB_DONE: &str =
    "UPDATE jobs SET status = 'done', finished_at = $2, lease_token = NULL WHERE id = $1";

/// Job `$1` queued again, due at `$2`, after error `$3`.
const POSTPONE_JOB: &str = "UPDATE jobs SET status = 'queued', lease_token = NULL, \
         leased_until = NULL, available_at = $2, last_error = $3 WHERE id = $1";

/// Job `$1` failed for good at `$2`, for reason `$3`.
const FAIL_JOB: &str = "UPDATE jobs SET status = 'failed', lease_token = NULL, finished_at = $2, \
         last_error = $3 WHERE id = $1";

/// Whether upload `$1` was erased; locked on PostgreSQL where `FOR UPDATE` is appended (an
/// erasure locks it too, so one of the two goes first).
const UPLOAD_ERASED: &str = "SELECT erased_at IS NOT NULL FROM uploads WHERE id = $1";

/// Why the job of an upload erased while it ran ended.
const ERASED_JOB: &str = "erased: the upload was deleted at its contributor's request";

impl PgStore {
    /// Whether the upload `lease` is for was erased; if it was, the job is failed in `tx` (for
    /// the caller to commit and answer [`StoreError::Erased`]): its results never land, and it
    /// is not run again.
    async fn ended_if_erased(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (erased,): (bool,) = sqlx::query_as(&format!("{UPLOAD_ERASED} FOR UPDATE"))
            .bind(lease.upload_id)
            .fetch_one(&mut **tx)
            .await
            .ctx("checking an upload is not erased")?;
        if erased {
            sqlx::query(FAIL_JOB)
                .bind(lease.job_id)
                .bind(now)
                .bind(ERASED_JOB)
                .execute(&mut **tx)
                .await
                .ctx("ending an erased upload's job")?;
        }
        Ok(erased)
    }
}

impl SqliteStore {
    /// As [`PgStore::ended_if_erased`]; SQLite's writer holds the database already.
    async fn ended_if_erased(
        tx: &mut sqlx::SqliteConnection,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (erased,): (bool,) = sqlx::query_as(UPLOAD_ERASED)
            .bind(lease.upload_id)
            .fetch_one(&mut *tx)
            .await
            .ctx("checking an upload is not erased")?;
        if erased {
            sqlx::query(FAIL_JOB)
                .bind(lease.job_id)
                .bind(micros(now))
                .bind(ERASED_JOB)
                .execute(&mut *tx)
                .await
                .ctx("ending an erased upload's job")?;
        }
        Ok(erased)
    }
}

/// A lease from its job's row (`id`, `upload_id`, `attempts`) and its upload's (`device`,
/// `kind`, `blob_key`, `received_at`): one row on PostgreSQL, two on SQLite.
fn lease_from_rows(
    job: &impl Columns,
    upload: &impl Columns,
    token: String,
    until: DateTime<Utc>,
) -> Result<Lease> {
    Ok(Lease {
        job_id: job.col("id")?,
        upload_id: job.col("upload_id")?,
        device: upload.word("device")?,
        kind: upload.word("kind")?,
        blob_key: upload.col("blob_key")?,
        received_at: upload.time("received_at")?,
        attempt: job.col("attempts")?,
        token,
        until,
    })
}

#[async_trait]
impl Queue for PgStore {
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
        let exhausted: Vec<(i64, i32)> = sqlx::query_as(FAIL_EXHAUSTED_JOBS_PG)
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
        let row = sqlx::query(LEASE_JOB_PG)
            .bind(now)
            .bind(policy.max_attempts)
            .bind(&token)
            .bind(worker)
            .bind(until)
            .fetch_optional(&mut *tx)
            .await
            .ctx("leasing a job")?;
        tx.commit().await.ctx("committing a lease")?;
        row.map(|row| lease_from_rows(&row, &row, token, until))
            .transpose()
    }

    async fn renew_lease(&self, lease: &Lease, until: DateTime<Utc>) -> Result<()> {
        let renewed = sqlx::query(RENEW_LEASE)
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
        if Self::ended_if_erased(&mut tx, lease, now).await? {
            tx.commit().await.ctx("committing an erased upload's job")?;
            return Err(StoreError::Erased {
                upload_id: lease.upload_id,
            });
        }
        let v = &outcome.visits;
        let centers: Vec<_> = v.iter().map(|x| x.cell.center()).collect();
        sqlx::query(INSERT_CELL_OBSERVATIONS_PG)
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
        sqlx::query(INSERT_MATCHED_STRETCHES_PG)
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
        sqlx::query(INSERT_RADIO_OBSERVATIONS_PG)
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
        if !outcome.radio.is_empty() && !flagged(outcome) {
            sqlx::query(INSERT_RADIO_CELLS)
                .bind(lease.upload_id)
                .execute(&mut *tx)
                .await
                .ctx("writing radio cells")?;
        }
        let f = &outcome.frames;
        sqlx::query(INSERT_FRAMES_PG)
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
        sqlx::query(INSERT_FRAME_REJECTIONS_PG)
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
        sqlx::query(INSERT_REJECTED_OBSERVATIONS_PG)
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
        sqlx::query(SUMMARISE_UPLOAD)
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
                sqlx::query(INSERT_UPLOAD_EXTENT)
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
                sqlx::query(INSERT_TRACK_PRINT)
                    .bind(lease.upload_id)
                    .bind(print)
                    .execute(&mut *tx)
                    .await
                    .ctx("writing a track's print")?;
            }
        }
        sqlx::query(MARK_JOB_DONE)
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
        if Self::ended_if_erased(&mut tx, lease, now).await? {
            tx.commit().await.ctx("committing an erased upload's job")?;
            return Err(StoreError::Erased {
                upload_id: lease.upload_id,
            });
        }
        match rows::next_step(lease, failure, policy) {
            rows::NextStep::Retry { error } => {
                sqlx::query(POSTPONE_JOB)
                    .bind(lease.job_id)
                    .bind(now + policy.retry_after)
                    .bind(error)
                    .execute(&mut *tx)
                    .await
                    .ctx("postponing a job")?;
            }
            rows::NextStep::GiveUp { reason } => {
                sqlx::query(FAIL_JOB)
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
}

#[async_trait]
impl Queue for SqliteStore {
    async fn lease_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_for: Duration,
        policy: QueuePolicy,
    ) -> Result<Option<Lease>> {
        let mut tx = self.write().await?;
        let now_us = micros(now);
        let exhausted: Vec<(i64, i32)> = sqlx::query_as(FAIL_EXHAUSTED_JOBS_SQLITE)
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
        let leased = sqlx::query(LEASE_JOB_SQLITE)
            .bind(now_us)
            .bind(policy.max_attempts)
            .bind(&token)
            .bind(worker)
            .bind(micros(until))
            .fetch_optional(&mut *tx)
            .await
            .ctx("leasing a job")?;
        let Some(job) = leased else {
            tx.commit().await.ctx("committing")?;
            return Ok(None);
        };
        let upload = sqlx::query(LEASED_UPLOAD)
            .bind(job.col::<i64>("upload_id")?)
            .fetch_one(&mut *tx)
            .await
            .ctx("reading a leased upload")?;
        tx.commit().await.ctx("committing a lease")?;
        lease_from_rows(&job, &upload, token, until).map(Some)
    }

    async fn renew_lease(&self, lease: &Lease, until: DateTime<Utc>) -> Result<()> {
        let mut tx = self.write().await?;
        let renewed = sqlx::query(RENEW_LEASE)
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
        if Self::ended_if_erased(&mut tx, lease, now).await? {
            tx.commit().await.ctx("committing an erased upload's job")?;
            return Err(StoreError::Erased {
                upload_id: lease.upload_id,
            });
        }
        for visit in &outcome.visits {
            let center = visit.cell.center();
            sqlx::query(INSERT_CELL_OBSERVATION_SQLITE)
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
            sqlx::query(INSERT_MATCHED_STRETCH_SQLITE)
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
            sqlx::query(INSERT_RADIO_OBSERVATION_SQLITE)
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
        if !outcome.radio.is_empty() && !flagged(outcome) {
            sqlx::query(INSERT_RADIO_CELLS)
                .bind(lease.upload_id)
                .execute(&mut *tx)
                .await
                .ctx("writing radio cells")?;
        }
        for f in &outcome.frames {
            sqlx::query(INSERT_FRAME_SQLITE)
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
            sqlx::query(INSERT_FRAME_REJECTION_SQLITE)
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
            sqlx::query(INSERT_REJECTED_OBSERVATION_SQLITE)
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
        sqlx::query(SUMMARISE_UPLOAD)
            .bind(lease.upload_id)
            .bind(i64::from(outcome.fixes_accepted))
            .bind(i64::from(outcome.fixes_rejected))
            .bind(trust.cells)
            .bind(micros(now))
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
                sqlx::query(INSERT_UPLOAD_EXTENT)
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
                sqlx::query(INSERT_TRACK_PRINT)
                    .bind(lease.upload_id)
                    .bind(print)
                    .execute(&mut *tx)
                    .await
                    .ctx("writing a track's print")?;
            }
        }
        sqlx::query(MARK_JOB_DONE)
            .bind(lease.job_id)
            .bind(micros(now))
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
        if Self::ended_if_erased(&mut tx, lease, now).await? {
            tx.commit().await.ctx("committing an erased upload's job")?;
            return Err(StoreError::Erased {
                upload_id: lease.upload_id,
            });
        }
        match rows::next_step(lease, failure, policy) {
            rows::NextStep::Retry { error } => {
                sqlx::query(POSTPONE_JOB)
                    .bind(lease.job_id)
                    .bind(micros(now + policy.retry_after))
                    .bind(error)
                    .execute(&mut *tx)
                    .await
                    .ctx("postponing a job")?;
            }
            rows::NextStep::GiveUp { reason } => {
                sqlx::query(FAIL_JOB)
                    .bind(lease.job_id)
                    .bind(micros(now))
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
}
