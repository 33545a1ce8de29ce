//! What the trust stage reads and amends: an upload's neighbours in time, the uploads it shares cells with, track prints.

use crate::dialect::{Columns, micros};
use crate::error::{Result, SqlContext, StoreError};
use crate::{Neighbour, PgStore, SqliteStore, UploadExtent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{Cell, DeviceId, LatLon};

/// What the trust stage reads and amends: an upload's neighbours in time, the uploads it shares cells with, track prints.
#[async_trait]
pub trait Trust: Send + Sync {
    /// Processed uploads other than `upload_id` of `device`, or of `contributor`, whose time
    /// spans meet `[from, to]`, at most `limit`: the neighbours a teleport between uploads, or a
    /// farm of parked batches, is looked for among.
    async fn neighbours(
        &self,
        upload_id: i64,
        device: &DeviceId,
        contributor: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Neighbour>>;

    /// Processed uploads other than `upload_id` that touched any of `cells` — radio batches
    /// through their radio cells (`radio`), else tracks and drives through their cells — with
    /// how many of them each shares, most first, at most `limit`: where a replay or a copy is
    /// looked for (an upload received later but processed first is among them). Only the
    /// `per_cell` newest uploads of each cell are read, so a busy place costs no more than a
    /// quiet one.
    async fn shared_cells(
        &self,
        upload_id: i64,
        radio: bool,
        cells: &[Cell],
        per_cell: i64,
        limit: i64,
    ) -> Result<Vec<(i64, i64)>>;

    /// Sets a processed upload's evidence and provisional verdict anew — a copy of an upload
    /// that arrived before it, found only once that one was processed — and drops its cells
    /// from the maps if it is now flagged; `false`, and nothing changed, once an epoch's close
    /// made its verdict final or the upload was erased.
    async fn amend_trust(
        &self,
        upload_id: i64,
        evidence: &str,
        verdict: &str,
        findings: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// The prints of these tracks, where kept.
    async fn track_prints(&self, upload_ids: &[i64]) -> Result<Vec<(i64, String)>>;
}

// The queries: one where both backends run the same, two side by side where they differ.

const NEIGHBOURS: &str = "SELECT * FROM ( \
         SELECT upload_id, device, contributor, radio, first_at, last_at, first_lat, \
                first_lon, last_lat, last_lon, centre_lat, centre_lon, radius_m \
         FROM upload_extents \
         WHERE upload_id <> $1 AND (device = $2 OR contributor = $3) \
           AND last_at >= $4 AND first_at <= $5 \
         UNION ALL \
         SELECT -id, device, contributor, FALSE, first_at, last_at, first_lat, \
                first_lon, last_lat, last_lon, first_lat, first_lon, 0.0 \
         FROM upload_refusals \
         WHERE first_at IS NOT NULL AND (device = $2 OR contributor = $3) \
           AND last_at >= $4 AND first_at <= $5) n \
     ORDER BY first_at, upload_id LIMIT $6";

const AMEND_TRUST: &str = "UPDATE uploads SET evidence = $2, trust_findings = $4, \
         trust_changed_at = CASE WHEN trust <> $3 THEN $5 ELSE trust_changed_at END, \
         trust = $3, \
         cells = CASE WHEN $3 = 'flagged' THEN 0 ELSE COALESCE(cells_seen, cells) END \
     WHERE id = $1 AND status = 'processed' AND trust_epoch IS NULL AND erased_at IS NULL";

/// A flagged radio batch leaves the cells its twins are looked for in (a flood of flagged copies
/// must not push an original out of a cell's newest), and comes back if cleared: after upload
/// `$1`'s verdict became `$2`.
const FLAGGED_LEAVE_RADIO_CELLS: &str =
    "DELETE FROM radio_cells WHERE upload_id = $1 AND $2 = 'flagged'";
const CLEARED_RETURN_TO_RADIO_CELLS: &str = "INSERT INTO radio_cells (cell, upload_id, samples) \
     SELECT cell, upload_id, COUNT(*) FROM radio_observations \
     WHERE upload_id = $1 AND $2 <> 'flagged' \
       AND NOT EXISTS (SELECT 1 FROM radio_cells WHERE upload_id = $1) \
     GROUP BY cell, upload_id";

/// Uploads other than `$1` that touched cells of the list `$2`, the `$3` newest of each cell, with
/// how many of those cells, most first, at most `$4`; `table` is `radio_cells` or
/// `cell_observations`, both keyed by (cell, upload_id). PostgreSQL binds an array and reads each
/// cell's newest through its index (LATERAL, LIMIT); SQLite a JSON list, numbering each cell's
/// uploads newest first.
fn pg_shared_cells(table: &str) -> String {
    format!(
        "SELECT o.upload_id, COUNT(*) FROM UNNEST($2::bigint[]) AS c(cell) \
         CROSS JOIN LATERAL (SELECT upload_id FROM {table} \
             WHERE cell = c.cell AND upload_id <> $1 ORDER BY upload_id DESC LIMIT $3) o \
         GROUP BY o.upload_id ORDER BY COUNT(*) DESC, o.upload_id LIMIT $4"
    )
}
fn sqlite_shared_cells(table: &str) -> String {
    format!(
        "SELECT upload_id, COUNT(*) FROM ( \
             SELECT upload_id, row_number() OVER (PARTITION BY cell ORDER BY upload_id DESC) AS n \
             FROM (SELECT DISTINCT cell, upload_id FROM {table} \
                   WHERE cell IN (SELECT value FROM json_each($2)) AND upload_id <> $1)) \
         WHERE n <= $3 \
         GROUP BY upload_id ORDER BY COUNT(*) DESC, upload_id LIMIT $4"
    )
}

/// Where an upload's cells are kept for its twins to be found.
fn shared_cells_table(radio: bool) -> &'static str {
    if radio {
        "radio_cells"
    } else {
        "cell_observations"
    }
}

// Prints of the uploads in the list bound as `$1`: PostgreSQL binds an array, SQLite a JSON list.
const PG_TRACK_PRINTS: &str =
    "SELECT upload_id, points FROM track_prints WHERE upload_id = ANY($1) ORDER BY upload_id";
const SQLITE_TRACK_PRINTS: &str = "SELECT upload_id, points FROM track_prints \
     WHERE upload_id IN (SELECT value FROM json_each($1)) ORDER BY upload_id";

// How the rows of both backends are read.

fn neighbour(r: &impl Columns) -> Result<Neighbour> {
    let at = |lat, lon| -> Result<LatLon> { Ok(LatLon::new(r.col(lat)?, r.col(lon)?)?) };
    Ok(Neighbour {
        upload_id: r.col("upload_id")?,
        device: r.word("device")?,
        contributor: r.col("contributor")?,
        extent: UploadExtent {
            radio: r.col("radio")?,
            first_at: r.time("first_at")?,
            last_at: r.time("last_at")?,
            first: at("first_lat", "first_lon")?,
            last: at("last_lat", "last_lon")?,
            centre: at("centre_lat", "centre_lon")?,
            radius_m: r.col("radius_m")?,
        },
    })
}

#[async_trait]
impl Trust for PgStore {
    async fn neighbours(
        &self,
        upload_id: i64,
        device: &DeviceId,
        contributor: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Neighbour>> {
        let rows = sqlx::query(NEIGHBOURS)
            .bind(upload_id)
            .bind(device.as_str())
            .bind(contributor)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading neighbouring uploads")?;
        rows.iter().map(neighbour).collect()
    }

    async fn shared_cells(
        &self,
        upload_id: i64,
        radio: bool,
        cells: &[Cell],
        per_cell: i64,
        limit: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(&pg_shared_cells(shared_cells_table(radio)))
            .bind(upload_id)
            .bind(cells.iter().map(|c| c.as_i64()).collect::<Vec<_>>())
            .bind(per_cell)
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
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        let done = sqlx::query(AMEND_TRUST)
            .bind(upload_id)
            .bind(evidence)
            .bind(verdict)
            .bind(findings)
            .bind(now)
            .execute(&mut *tx)
            .await
            .ctx("amending an upload's verdict")?;
        if done.rows_affected() == 1 {
            for sql in [FLAGGED_LEAVE_RADIO_CELLS, CLEARED_RETURN_TO_RADIO_CELLS] {
                sqlx::query(sql)
                    .bind(upload_id)
                    .bind(verdict)
                    .execute(&mut *tx)
                    .await
                    .ctx("moving a batch's radio cells with its verdict")?;
            }
        }
        tx.commit().await.ctx("committing an amended verdict")?;
        Ok(done.rows_affected() == 1)
    }

    async fn track_prints(&self, upload_ids: &[i64]) -> Result<Vec<(i64, String)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(PG_TRACK_PRINTS)
            .bind(upload_ids)
            .fetch_all(&self.pool)
            .await
            .ctx("reading track prints")?;
        Ok(rows)
    }
}

#[async_trait]
impl Trust for SqliteStore {
    async fn neighbours(
        &self,
        upload_id: i64,
        device: &DeviceId,
        contributor: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Neighbour>> {
        let rows = sqlx::query(NEIGHBOURS)
            .bind(upload_id)
            .bind(device.as_str())
            .bind(contributor)
            .bind(micros(from))
            .bind(micros(to))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading neighbouring uploads")?;
        rows.iter().map(neighbour).collect()
    }

    async fn shared_cells(
        &self,
        upload_id: i64,
        radio: bool,
        cells: &[Cell],
        per_cell: i64,
        limit: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let list = serde_json::to_string(&cells.iter().map(|c| c.as_i64()).collect::<Vec<_>>())
            .map_err(|e| StoreError::Corrupt(format!("cell list: {e}")))?;
        let rows: Vec<(i64, i64)> = sqlx::query_as(&sqlite_shared_cells(shared_cells_table(radio)))
            .bind(upload_id)
            .bind(list)
            .bind(per_cell)
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
        let mut tx = self.write().await?;
        let done = sqlx::query(AMEND_TRUST)
            .bind(upload_id)
            .bind(evidence)
            .bind(verdict)
            .bind(findings)
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .ctx("amending an upload's verdict")?;
        if done.rows_affected() == 1 {
            for sql in [FLAGGED_LEAVE_RADIO_CELLS, CLEARED_RETURN_TO_RADIO_CELLS] {
                sqlx::query(sql)
                    .bind(upload_id)
                    .bind(verdict)
                    .execute(&mut *tx)
                    .await
                    .ctx("moving a batch's radio cells with its verdict")?;
            }
        }
        tx.commit().await.ctx("committing an amended verdict")?;
        Ok(done.rows_affected() == 1)
    }

    async fn track_prints(&self, upload_ids: &[i64]) -> Result<Vec<(i64, String)>> {
        let list = serde_json::to_string(upload_ids)
            .map_err(|e| StoreError::Corrupt(format!("upload list: {e}")))?;
        let rows: Vec<(i64, String)> = sqlx::query_as(SQLITE_TRACK_PRINTS)
            .bind(list)
            .fetch_all(&self.pool)
            .await
            .ctx("reading track prints")?;
        Ok(rows)
    }
}
