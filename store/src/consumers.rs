//! Map consumers: the requests each consumer key made per UTC day (what its quota is checked
//! against, across restarts) and per area, and the lookers usage demand counts once each.

use async_trait::async_trait;
use chrono::NaiveDate;
use covermap_domain::Cell;
use serde::Serialize;

use crate::dialect::Columns;
use crate::error::{Result, SqlContext};
use crate::reward_rows::{to_i64, to_u64};
use crate::{PgStore, SqliteStore};

/// Requests one consumer key made on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConsumerRequests {
    pub key_id: i64,
    pub day: NaiveDate,
    pub requests: u64,
}

/// Requests one consumer key made on one UTC day that looked at one area (an H3 cell at the
/// policy's usage resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConsumerAreaRequests {
    pub key_id: i64,
    pub day: NaiveDate,
    pub area: Cell,
    pub requests: u64,
}

/// A consumer key's use of one day: its requests, and those of them that looked at an area,
/// by area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerUsage {
    pub key_id: i64,
    pub day: NaiveDate,
    pub requests: u64,
    pub areas: Vec<AreaRequests>,
}

/// Requests that looked at one area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AreaRequests {
    pub area: Cell,
    pub requests: u64,
}

/// Someone looked at an area in an epoch: a consumer key, or an anonymous client network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Look {
    pub epoch: u64,
    pub area: Cell,
    /// Who: `key:ID`, or `addr:` and a hash of the client's network.
    pub looker: String,
    pub anonymous: bool,
}

/// Map consumers' requests per day and area, and the lookers usage demand counts.
#[async_trait]
pub trait Consumers: Send + Sync {
    /// Adds requests per key and day, and per key, day and area; answers each (key, day) of
    /// `requests` with its stored total after the addition (other processes' included).
    async fn record_consumer_requests(
        &self,
        requests: &[ConsumerRequests],
        areas: &[ConsumerAreaRequests],
    ) -> Result<Vec<ConsumerRequests>>;

    /// The requests a key made on a day, as stored.
    async fn consumer_requests(&self, key_id: i64, day: NaiveDate) -> Result<u64>;

    /// Use per key (one key, or every key) and day from `since` on, by key and day.
    async fn consumer_usage(
        &self,
        key_id: Option<i64>,
        since: NaiveDate,
    ) -> Result<Vec<ConsumerUsage>>;

    /// Records lookers, each once per epoch and area whatever how often it is sent, and sets
    /// each touched area's usage count (`Demand::usage`) to its consumer keys plus its
    /// anonymous lookers up to `anonymous_cap`. Answers how many lookers were new.
    async fn record_looks(&self, looks: &[Look], anonymous_cap: u64) -> Result<u64>;
}

// PostgreSQL adds a flush's requests in one UNNEST each, SQLite one row at a time.
const PG_ADD_REQUESTS: &str = "INSERT INTO consumer_usage (key_id, day, requests) \
     SELECT k, d, r FROM UNNEST($1::bigint[], $2::date[], $3::bigint[]) AS x(k, d, r) \
     ON CONFLICT (key_id, day) DO UPDATE \
         SET requests = consumer_usage.requests + EXCLUDED.requests \
     RETURNING key_id, day, requests";
const PG_ADD_AREA_REQUESTS: &str = "INSERT INTO consumer_area_usage (key_id, day, area, requests) \
     SELECT k, d, a, r FROM UNNEST($1::bigint[], $2::date[], $3::bigint[], $4::bigint[]) \
         AS x(k, d, a, r) \
     ON CONFLICT (key_id, day, area) DO UPDATE \
         SET requests = consumer_area_usage.requests + EXCLUDED.requests";
const SQLITE_ADD_REQUESTS: &str = "INSERT INTO consumer_usage (key_id, day, requests) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (key_id, day) DO UPDATE \
         SET requests = consumer_usage.requests + excluded.requests \
     RETURNING key_id, day, requests";
const SQLITE_ADD_AREA_REQUESTS: &str = "INSERT INTO consumer_area_usage \
     (key_id, day, area, requests) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (key_id, day, area) DO UPDATE \
         SET requests = consumer_area_usage.requests + excluded.requests";

const REQUESTS_OF_DAY: &str = "SELECT requests FROM consumer_usage WHERE key_id = $1 AND day = $2";

const USAGE_DAYS: &str = "SELECT key_id, day, requests FROM consumer_usage \
     WHERE (CAST($1 AS bigint) IS NULL OR key_id = $1) AND day >= $2 ORDER BY key_id, day";
const USAGE_AREAS: &str = "SELECT key_id, day, area, requests FROM consumer_area_usage \
     WHERE (CAST($1 AS bigint) IS NULL OR key_id = $1) AND day >= $2 \
     ORDER BY key_id, day, area";

const ADD_LOOKER: &str = "INSERT INTO usage_lookers (epoch, area, looker, anonymous) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";

// An area's count from its lookers. PostgreSQL first takes the count's row lock (so lookers of
// one area are counted one transaction at a time, never both reading the count before the
// other's looker); SQLite has one writer anyway. They write "the smaller of" differently.
const PG_LOCK_USAGE: &str = "INSERT INTO usage_counts (epoch, area, requests) \
     VALUES ($1, $2, 0) ON CONFLICT (epoch, area) DO UPDATE SET requests = usage_counts.requests";
const PG_COUNT_LOOKERS: &str = "UPDATE usage_counts SET requests = ( \
         SELECT CAST(SUM(CASE WHEN anonymous THEN 0 ELSE 1 END) AS bigint) \
             + LEAST(CAST(SUM(CASE WHEN anonymous THEN 1 ELSE 0 END) AS bigint), $3) \
         FROM usage_lookers WHERE epoch = $1 AND area = $2) \
     WHERE epoch = $1 AND area = $2";
const SQLITE_COUNT_LOOKERS: &str = "INSERT INTO usage_counts (epoch, area, requests) \
     SELECT $1, $2, SUM(CASE WHEN anonymous THEN 0 ELSE 1 END) \
         + MIN(SUM(CASE WHEN anonymous THEN 1 ELSE 0 END), $3) \
     FROM usage_lookers WHERE epoch = $1 AND area = $2 \
     ON CONFLICT (epoch, area) DO UPDATE SET requests = excluded.requests";

fn requests_row(r: &impl Columns) -> Result<ConsumerRequests> {
    Ok(ConsumerRequests {
        key_id: r.col("key_id")?,
        day: r.col("day")?,
        requests: to_u64(r.col("requests")?, "requests")?,
    })
}

fn area_row(r: &impl Columns) -> Result<ConsumerAreaRequests> {
    Ok(ConsumerAreaRequests {
        key_id: r.col("key_id")?,
        day: r.col("day")?,
        area: Cell::from_i64(r.col("area")?)?,
        requests: to_u64(r.col("requests")?, "requests")?,
    })
}

/// Each day's requests with its areas' (both lists ordered by key and day).
fn usage_of(days: Vec<ConsumerRequests>, areas: Vec<ConsumerAreaRequests>) -> Vec<ConsumerUsage> {
    let mut areas = areas.into_iter().peekable();
    days.into_iter()
        .map(|d| {
            let mut of_day = Vec::new();
            while let Some(a) = areas.next_if(|a| (a.key_id, a.day) <= (d.key_id, d.day)) {
                if (a.key_id, a.day) == (d.key_id, d.day) {
                    of_day.push(AreaRequests {
                        area: a.area,
                        requests: a.requests,
                    });
                }
            }
            ConsumerUsage {
                key_id: d.key_id,
                day: d.day,
                requests: d.requests,
                areas: of_day,
            }
        })
        .collect()
}

/// Looks in the order their areas' counts are locked in (no two flushes wait on each other).
fn in_lock_order(looks: &[Look]) -> Vec<&Look> {
    let mut sorted: Vec<&Look> = looks.iter().collect();
    sorted.sort();
    sorted
}

#[async_trait]
impl Consumers for PgStore {
    async fn record_consumer_requests(
        &self,
        requests: &[ConsumerRequests],
        areas: &[ConsumerAreaRequests],
    ) -> Result<Vec<ConsumerRequests>> {
        let counts = |n: &mut dyn Iterator<Item = u64>| -> Result<Vec<i64>> {
            n.map(|v| to_i64(v, "requests")).collect()
        };
        let mut tx = self.pool().begin().await.ctx("starting a transaction")?;
        let rows = sqlx::query(PG_ADD_REQUESTS)
            .bind(requests.iter().map(|r| r.key_id).collect::<Vec<_>>())
            .bind(requests.iter().map(|r| r.day).collect::<Vec<_>>())
            .bind(counts(&mut requests.iter().map(|r| r.requests))?)
            .fetch_all(&mut *tx)
            .await
            .ctx("recording consumers' requests")?;
        sqlx::query(PG_ADD_AREA_REQUESTS)
            .bind(areas.iter().map(|r| r.key_id).collect::<Vec<_>>())
            .bind(areas.iter().map(|r| r.day).collect::<Vec<_>>())
            .bind(areas.iter().map(|r| r.area.as_i64()).collect::<Vec<_>>())
            .bind(counts(&mut areas.iter().map(|r| r.requests))?)
            .execute(&mut *tx)
            .await
            .ctx("recording consumers' requests per area")?;
        tx.commit().await.ctx("committing consumers' requests")?;
        rows.iter().map(requests_row).collect()
    }

    async fn consumer_requests(&self, key_id: i64, day: NaiveDate) -> Result<u64> {
        let n: Option<i64> = sqlx::query_scalar(REQUESTS_OF_DAY)
            .bind(key_id)
            .bind(day)
            .fetch_optional(self.pool())
            .await
            .ctx("reading a consumer's requests")?;
        to_u64(n.unwrap_or(0), "requests")
    }

    async fn consumer_usage(
        &self,
        key_id: Option<i64>,
        since: NaiveDate,
    ) -> Result<Vec<ConsumerUsage>> {
        let days = sqlx::query(USAGE_DAYS)
            .bind(key_id)
            .bind(since)
            .fetch_all(self.pool())
            .await
            .ctx("reading consumers' usage")?;
        let areas = sqlx::query(USAGE_AREAS)
            .bind(key_id)
            .bind(since)
            .fetch_all(self.pool())
            .await
            .ctx("reading consumers' usage per area")?;
        Ok(usage_of(
            days.iter().map(requests_row).collect::<Result<_>>()?,
            areas.iter().map(area_row).collect::<Result<_>>()?,
        ))
    }

    async fn record_looks(&self, looks: &[Look], anonymous_cap: u64) -> Result<u64> {
        let cap = to_i64(anonymous_cap, "anonymous cap")?;
        let mut tx = self.pool().begin().await.ctx("starting a transaction")?;
        let mut new = 0;
        for look in in_lock_order(looks) {
            let epoch = to_i64(look.epoch, "epoch")?;
            sqlx::query(PG_LOCK_USAGE)
                .bind(epoch)
                .bind(look.area.as_i64())
                .execute(&mut *tx)
                .await
                .ctx("locking an area's usage")?;
            let added = sqlx::query(ADD_LOOKER)
                .bind(epoch)
                .bind(look.area.as_i64())
                .bind(&look.looker)
                .bind(look.anonymous)
                .execute(&mut *tx)
                .await
                .ctx("recording a looker")?;
            if added.rows_affected() == 1 {
                new += 1;
                sqlx::query(PG_COUNT_LOOKERS)
                    .bind(epoch)
                    .bind(look.area.as_i64())
                    .bind(cap)
                    .execute(&mut *tx)
                    .await
                    .ctx("counting an area's lookers")?;
            }
        }
        tx.commit().await.ctx("committing lookers")?;
        Ok(new)
    }
}

#[async_trait]
impl Consumers for SqliteStore {
    async fn record_consumer_requests(
        &self,
        requests: &[ConsumerRequests],
        areas: &[ConsumerAreaRequests],
    ) -> Result<Vec<ConsumerRequests>> {
        let mut tx = self.write().await?;
        let mut totals = Vec::with_capacity(requests.len());
        for r in requests {
            let row = sqlx::query(SQLITE_ADD_REQUESTS)
                .bind(r.key_id)
                .bind(r.day)
                .bind(to_i64(r.requests, "requests")?)
                .fetch_one(&mut *tx)
                .await
                .ctx("recording consumers' requests")?;
            totals.push(requests_row(&row)?);
        }
        for a in areas {
            sqlx::query(SQLITE_ADD_AREA_REQUESTS)
                .bind(a.key_id)
                .bind(a.day)
                .bind(a.area.as_i64())
                .bind(to_i64(a.requests, "requests")?)
                .execute(&mut *tx)
                .await
                .ctx("recording consumers' requests per area")?;
        }
        tx.commit().await.ctx("committing consumers' requests")?;
        Ok(totals)
    }

    async fn consumer_requests(&self, key_id: i64, day: NaiveDate) -> Result<u64> {
        let n: Option<i64> = sqlx::query_scalar(REQUESTS_OF_DAY)
            .bind(key_id)
            .bind(day)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a consumer's requests")?;
        to_u64(n.unwrap_or(0), "requests")
    }

    async fn consumer_usage(
        &self,
        key_id: Option<i64>,
        since: NaiveDate,
    ) -> Result<Vec<ConsumerUsage>> {
        let days = sqlx::query(USAGE_DAYS)
            .bind(key_id)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .ctx("reading consumers' usage")?;
        let areas = sqlx::query(USAGE_AREAS)
            .bind(key_id)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .ctx("reading consumers' usage per area")?;
        Ok(usage_of(
            days.iter().map(requests_row).collect::<Result<_>>()?,
            areas.iter().map(area_row).collect::<Result<_>>()?,
        ))
    }

    async fn record_looks(&self, looks: &[Look], anonymous_cap: u64) -> Result<u64> {
        let cap = to_i64(anonymous_cap, "anonymous cap")?;
        let mut tx = self.write().await?;
        let mut new = 0;
        for look in looks {
            let epoch = to_i64(look.epoch, "epoch")?;
            let added = sqlx::query(ADD_LOOKER)
                .bind(epoch)
                .bind(look.area.as_i64())
                .bind(&look.looker)
                .bind(look.anonymous)
                .execute(&mut *tx)
                .await
                .ctx("recording a looker")?;
            if added.rows_affected() == 1 {
                new += 1;
                sqlx::query(SQLITE_COUNT_LOOKERS)
                    .bind(epoch)
                    .bind(look.area.as_i64())
                    .bind(cap)
                    .execute(&mut *tx)
                    .await
                    .ctx("counting an area's lookers")?;
            }
        }
        tx.commit().await.ctx("committing lookers")?;
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_day_gets_its_own_areas() {
        let day = |d| NaiveDate::from_ymd_opt(2026, 1, d).unwrap();
        let cell = Cell::from_i64(0x872830828ffffff).unwrap();
        let days = vec![
            ConsumerRequests {
                key_id: 1,
                day: day(1),
                requests: 5,
            },
            ConsumerRequests {
                key_id: 1,
                day: day(2),
                requests: 1,
            },
            ConsumerRequests {
                key_id: 2,
                day: day(1),
                requests: 3,
            },
        ];
        let areas = vec![
            ConsumerAreaRequests {
                key_id: 1,
                day: day(1),
                area: cell,
                requests: 4,
            },
            ConsumerAreaRequests {
                key_id: 2,
                day: day(1),
                area: cell,
                requests: 2,
            },
        ];
        let usage = usage_of(days, areas);
        assert_eq!(usage.len(), 3);
        assert_eq!(usage[0].areas.len(), 1);
        assert!(usage[1].areas.is_empty());
        assert_eq!(usage[2].areas[0].requests, 2);
    }
}
