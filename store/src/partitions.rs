//! Time partitions of the high-volume tables on PostgreSQL (migration 0020): a table a UTC month
//! of received uploads for each of observations, radio, frames, refused frames, matched stretches
//! and rejections, made ahead, listed, and detached when old. The embedded store keeps one table
//! each and has none.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Result, SqlContext, StoreError};
use crate::{PgStore, SqliteStore};

/// One partition of a partitioned table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionInfo {
    /// The partitioned table, e.g. `radio_observations`.
    pub table: String,
    /// The partition, e.g. `radio_observations_p202612`, or `radio_observations_default`.
    pub partition: String,
    /// The uploads it holds were received from `from` (inclusive) to `to` (exclusive); both
    /// `None` for the default partition, which holds what no month was made for.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// PostgreSQL's estimate of its rows (from the last ANALYZE; 0 before any).
    pub rows_estimate: i64,
    /// Its size on disk with its indexes.
    pub bytes: i64,
}

/// The month partitions of the high-volume tables.
#[async_trait]
pub trait Partitions: Send + Sync {
    /// Makes the month of `now` and the `months_ahead` after it for every partitioned table,
    /// moving rows of those months out of the default partition; answers how many it made.
    /// Safe to run from any number of processes at once. The embedded store makes none.
    async fn ensure_partitions(&self, now: DateTime<Utc>, months_ahead: u32) -> Result<u32>;

    /// Every partition of every partitioned table, oldest month first, the default last.
    async fn partitions(&self) -> Result<Vec<PartitionInfo>>;

    /// Detaches every month partition that ends at or before `before`: each becomes a table of
    /// its own, outside covermap (to archive or drop), in one transaction. Refused while a row
    /// in them is still to be counted (an upload queued or in no closed epoch, a frame pending
    /// judgement, or published late or approved and not yet counted) or names an original not
    /// yet past its retention. The months' published and review derivatives are kept in
    /// `detached_blobs`, so an erasure still deletes them.
    async fn detach_partitions(&self, before: DateTime<Utc>) -> Result<Vec<PartitionInfo>>;
}

/// How many months ahead every process makes when it opens the database and every minute after.
pub const MONTHS_AHEAD: u32 = 3;

const LIST: &str = "SELECT p.relname::text, c.relname::text, \
        (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']*)''\\)'))[1]::timestamptz, \
        (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']*)''\\)'))[1]::timestamptz, \
        GREATEST(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid) \
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
     WHERE p.relname = ANY (covermap_partitioned_tables()) \
     ORDER BY p.relname, 3 NULLS LAST";

/// The earliest `received_at` before `$2` of a row still to be counted (`$1` is the last closed
/// epoch, -1 before any): an upload not erased that is queued or in no closed epoch; a frame
/// pending judgement, or published late or approved and not yet counted, or counted in a later
/// epoch; and a frame whose private original is not yet deleted (the retention sweep finds
/// originals through these rows). `received_at < $2` keeps the look to the old months.
const STILL_COUNTED_FROM: &str = "SELECT LEAST( \
        (SELECT min(received_at) FROM uploads WHERE received_at < $2 AND erased_at IS NULL \
            AND (status = 'queued' OR reward_epoch IS NULL OR reward_epoch > $1)), \
        (SELECT min(received_at) FROM frames WHERE received_at < $2 \
            AND (status = 'pending' OR reward_epoch > $1 OR original_expired_at IS NULL \
                 OR (reward_epoch IS NULL AND judged_at IS NOT NULL AND status = 'published'))), \
        (SELECT min(r.received_at) FROM frame_rejections r WHERE r.received_at < $2 \
            AND (r.reward_epoch > $1 OR r.original_expired_at IS NULL \
                 OR (r.reward_epoch IS NULL AND EXISTS (SELECT 1 FROM frame_decisions d \
                     WHERE d.upload_id = r.upload_id AND d.frame = r.frame \
                       AND d.decision = 'approve')))))";

/// The derivatives a month's frames name (published, shown to auditors), kept past its detach
/// so an erasure still finds and deletes them; `{frames}` and `{refused}` are its partitions.
fn keep_derivatives(frames: &str, refused: &str) -> String {
    format!(
        "INSERT INTO detached_blobs (upload_id, key) \
         SELECT upload_id, published_key FROM {frames} \
             WHERE published_key IS NOT NULL AND published_key <> '' \
         UNION SELECT upload_id, review_key FROM {refused} \
             WHERE review_key IS NOT NULL AND review_key <> '' \
         ON CONFLICT DO NOTHING"
    )
}

type PartitionRow = (
    String,
    String,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    i64,
    i64,
);

fn partition_from_row(r: PartitionRow) -> PartitionInfo {
    PartitionInfo {
        table: r.0,
        partition: r.1,
        from: r.2,
        to: r.3,
        rows_estimate: r.4,
        bytes: r.5,
    }
}

#[async_trait]
impl Partitions for PgStore {
    async fn ensure_partitions(&self, now: DateTime<Utc>, months_ahead: u32) -> Result<u32> {
        let months = i32::try_from(months_ahead)
            .map_err(|_| StoreError::Config(format!("{months_ahead} months ahead is too many")))?;
        let (made,): (i32,) = sqlx::query_as("SELECT covermap_ensure_partitions($1, $2)")
            .bind(now)
            .bind(months)
            .fetch_one(self.pool())
            .await
            .ctx("making month partitions")?;
        Ok(u32::try_from(made).unwrap_or(0))
    }

    async fn partitions(&self) -> Result<Vec<PartitionInfo>> {
        let rows: Vec<PartitionRow> = sqlx::query_as(LIST)
            .fetch_all(self.pool())
            .await
            .ctx("listing partitions")?;
        Ok(rows.into_iter().map(partition_from_row).collect())
    }

    async fn detach_partitions(&self, before: DateTime<Utc>) -> Result<Vec<PartitionInfo>> {
        let mut tx = self.pool().begin().await.ctx("starting a transaction")?;
        // The lock ensure_partitions takes: no month is made while these go.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('covermap_ensure_partitions'))")
            .execute(&mut *tx)
            .await
            .ctx("locking the partitions")?;
        let (closed,): (Option<i64>,) =
            sqlx::query_as("SELECT max(epoch) FROM epochs WHERE status = 'closed'")
                .fetch_one(&mut *tx)
                .await
                .ctx("reading the last closed epoch")?;
        let (needed,): (Option<DateTime<Utc>>,) = sqlx::query_as(STILL_COUNTED_FROM)
            .bind(closed.unwrap_or(-1))
            .bind(before)
            .fetch_one(&mut *tx)
            .await
            .ctx("reading what is still to be counted")?;
        let rows: Vec<PartitionRow> = sqlx::query_as(LIST)
            .fetch_all(&mut *tx)
            .await
            .ctx("listing partitions")?;
        let old: Vec<PartitionInfo> = rows
            .into_iter()
            .map(partition_from_row)
            .filter(|p| p.to.is_some_and(|to| to <= before))
            .collect();
        if let (Some(needed), Some(last)) = (needed, old.iter().filter_map(|p| p.to).max())
            && needed < last
        {
            return Err(StoreError::Conflict(format!(
                "uploads received from {} on are still to be counted (queued, pending \
                 judgement, in an epoch not yet closed) or hold originals not yet past their \
                 retention; detach only months before that",
                needed.to_rfc3339()
            )));
        }
        // Each month's derivatives, kept for erasures, before its frames leave.
        let month = |p: &PartitionInfo| p.partition.rsplit('_').next().map(str::to_owned);
        for p in old.iter().filter(|p| p.table == "frames") {
            let Some(m) = month(p) else { continue };
            let refused = format!("frame_rejections_{m}");
            if old.iter().any(|q| q.partition == refused) {
                sqlx::query(&keep_derivatives(
                    &quote_ident(&p.partition),
                    &quote_ident(&refused),
                ))
                .execute(&mut *tx)
                .await
                .ctx("keeping a month's derivatives for erasures")?;
            }
        }
        for p in &old {
            sqlx::query(&format!(
                "ALTER TABLE {} DETACH PARTITION {}",
                quote_ident(&p.table),
                quote_ident(&p.partition)
            ))
            .execute(&mut *tx)
            .await
            .ctx("detaching a partition")?;
        }
        tx.commit().await.ctx("committing the detach")?;
        Ok(old)
    }
}

/// `name` as an SQL identifier (the names come from the catalogue, quoted all the same).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[async_trait]
impl Partitions for SqliteStore {
    async fn ensure_partitions(&self, _now: DateTime<Utc>, _months_ahead: u32) -> Result<u32> {
        Ok(0)
    }

    async fn partitions(&self) -> Result<Vec<PartitionInfo>> {
        Ok(Vec::new())
    }

    async fn detach_partitions(&self, _before: DateTime<Utc>) -> Result<Vec<PartitionInfo>> {
        Err(StoreError::Config(
            "the embedded store is not partitioned: detaching months needs PostGIS".into(),
        ))
    }
}
