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
    /// in them is still to be counted: an upload queued or not yet in a closed epoch, a frame
    /// pending judgement, or a frame judged late for an epoch not yet closed.
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

/// The earliest `received_at` a row still to be counted has: an upload queued or not in a
/// closed epoch (`$1` is the last closed, -1 before any), a frame pending judgement or judged
/// late for a later epoch, a refused frame approved for one.
const STILL_COUNTED_FROM: &str = "SELECT LEAST( \
        (SELECT min(received_at) FROM uploads \
            WHERE status = 'queued' OR reward_epoch IS NULL OR reward_epoch > $1), \
        (SELECT min(received_at) FROM frames WHERE status = 'pending' OR reward_epoch > $1), \
        (SELECT min(received_at) FROM frame_rejections WHERE reward_epoch > $1))";

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
                 judgement, or in an epoch not yet closed); detach only months before that",
                needed.to_rfc3339()
            )));
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
