//! The change feed: the cells whose map figures changed, as the database's triggers record them
//! in the transaction that changed them (migration 0017). A reader keeps a [`FeedPosition`] and
//! asks what changed since: on PostgreSQL the position is a transaction snapshot and the answer
//! the cells of the transactions that committed since it; on SQLite (one writer, commits in
//! order) a sequence number. No clocks: processes on different machines agree on what changed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::Cell;

use crate::error::{Result, SqlContext, StoreError};
use crate::{PgStore, SqliteStore};

/// A place in the change feed. Opaque: a `pg_snapshot` on PostgreSQL, a sequence number on
/// SQLite; only the store that gave it reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPosition(String);

/// What changed since a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedChanges {
    /// The cells, each once; all of them unless `truncated`.
    pub cells: Vec<Cell>,
    /// More than the limit changed: treat everything as changed.
    pub truncated: bool,
    /// Where to read from next time.
    pub position: FeedPosition,
}

/// The change feed of map cells.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// The position now: what changed before it is not reported.
    async fn feed_position(&self) -> Result<FeedPosition>;

    /// The cells changed after `since` (at most `limit`), and the position to read from next.
    async fn changes_since(&self, since: &FeedPosition, limit: i64) -> Result<FeedChanges>;

    /// Forgets the changes recorded before `before` (PostgreSQL; SQLite keeps one row per cell
    /// and needs none). Answers the rows removed.
    async fn prune_feed(&self, before: DateTime<Utc>) -> Result<u64>;
}

/// The snapshot and, in it, the cells of the transactions `$1` did not see, at most `$2` (one
/// statement, so the cells and the position come from the same snapshot).
const PG_CHANGES: &str = "WITH s AS (SELECT pg_current_snapshot() AS snap), \
     changed AS (SELECT DISTINCT c.cell FROM cell_changes c, s \
         WHERE c.xid >= pg_snapshot_xmin($1::pg_snapshot) \
           AND pg_visible_in_snapshot(c.xid, s.snap) \
           AND NOT pg_visible_in_snapshot(c.xid, $1::pg_snapshot) \
         LIMIT $2) \
     SELECT (SELECT snap::text FROM s) AS position, \
            COALESCE((SELECT array_agg(cell) FROM changed), '{}') AS cells";

const SQLITE_CHANGES: &str =
    "SELECT seq, cell FROM cell_changes WHERE seq > $1 ORDER BY seq LIMIT $2";

fn cells_of(raw: Vec<i64>) -> Result<Vec<Cell>> {
    raw.into_iter()
        .map(|c| Cell::from_i64(c).map_err(StoreError::from))
        .collect()
}

#[async_trait]
impl ChangeFeed for PgStore {
    async fn feed_position(&self) -> Result<FeedPosition> {
        let (p,): (String,) = sqlx::query_as("SELECT pg_current_snapshot()::text")
            .fetch_one(self.pool())
            .await
            .ctx("reading the change feed's position")?;
        Ok(FeedPosition(p))
    }

    async fn changes_since(&self, since: &FeedPosition, limit: i64) -> Result<FeedChanges> {
        let (position, cells): (String, Vec<i64>) = sqlx::query_as(PG_CHANGES)
            .bind(&since.0)
            .bind(limit.saturating_add(1))
            .fetch_one(self.pool())
            .await
            .ctx("reading the change feed")?;
        let truncated = cells.len() as i64 > limit;
        Ok(FeedChanges {
            cells: if truncated {
                Vec::new()
            } else {
                cells_of(cells)?
            },
            truncated,
            position: FeedPosition(position),
        })
    }

    async fn prune_feed(&self, before: DateTime<Utc>) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM cell_changes WHERE at < $1")
            .bind(before)
            .execute(self.pool())
            .await
            .ctx("pruning the change feed")?
            .rows_affected())
    }
}

#[async_trait]
impl ChangeFeed for SqliteStore {
    async fn feed_position(&self) -> Result<FeedPosition> {
        let (seq,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM cell_changes")
            .fetch_one(&self.pool)
            .await
            .ctx("reading the change feed's position")?;
        Ok(FeedPosition(seq.to_string()))
    }

    async fn changes_since(&self, since: &FeedPosition, limit: i64) -> Result<FeedChanges> {
        let after: i64 = since
            .0
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("change feed position {:?}", since.0)))?;
        let rows: Vec<(i64, i64)> = sqlx::query_as(SQLITE_CHANGES)
            .bind(after)
            .bind(limit.saturating_add(1))
            .fetch_all(&self.pool)
            .await
            .ctx("reading the change feed")?;
        if rows.len() as i64 > limit {
            return Ok(FeedChanges {
                cells: Vec::new(),
                truncated: true,
                position: self.feed_position().await?,
            });
        }
        let last = rows.last().map_or(after, |r| r.0);
        Ok(FeedChanges {
            cells: cells_of(rows.into_iter().map(|r| r.1).collect())?,
            truncated: false,
            position: FeedPosition(last.to_string()),
        })
    }

    async fn prune_feed(&self, _before: DateTime<Utc>) -> Result<u64> {
        Ok(0)
    }
}
