//! Planners' demand areas, map consumers' usage, and the cells' reward-weight inputs.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{BoundingBox, Cell};

use crate::dialect::Columns;
use crate::dialect::{micros, time};
use crate::error::StoreError;
use crate::error::{Result, SqlContext};
use crate::reward_rows::{to_i64, to_u64};
use crate::rows::AREA_QUERY;
use crate::{DemandAreaRecord, DemandCellState, NewDemandArea, PgStore, SqliteStore};

/// Planners' demand areas, map consumers' usage, and the cells' reward-weight inputs.
#[async_trait]
pub trait Demand: Send + Sync {
    async fn create_demand_area(
        &self,
        area: &NewDemandArea,
        now: DateTime<Utc>,
    ) -> Result<DemandAreaRecord>;

    /// Adds map consumers' requests: (epoch, area, requests).
    async fn record_usage(&self, counts: &[(u64, Cell, u64)]) -> Result<()>;

    /// Requests per area in an epoch.
    async fn usage(&self, epoch: u64) -> Result<Vec<(Cell, u64)>>;

    /// Every demand area, newest first.
    async fn demand_areas(&self) -> Result<Vec<DemandAreaRecord>>;

    /// The cells with roads or demand whose centres lie in `bbox`, at most `limit`, with what
    /// their reward weight at `now` depends on.
    async fn demand_cells(
        &self,
        bbox: BoundingBox,
        now: DateTime<Utc>,
        coverage_since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DemandCellState>>;
}

#[async_trait]
impl Demand for PgStore {
    async fn create_demand_area(
        &self,
        area: &NewDemandArea,
        now: DateTime<Utc>,
    ) -> Result<DemandAreaRecord> {
        let mut tx = self.pool().begin().await.ctx("starting a transaction")?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO demand_areas (name, weight, polygon, created_by, created_at, expires_at, \
                 budget) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&area.name)
        .bind(area.weight)
        .bind(&area.polygon)
        .bind(area.created_by)
        .bind(now)
        .bind(area.expires_at)
        .bind(area.budget.map(|b| to_i64(b, "budget")).transpose()?)
        .fetch_one(&mut *tx)
        .await
        .ctx("creating a demand area")?;
        let centers: Vec<_> = area.cells.iter().map(|c| c.center()).collect();
        sqlx::query(
            "INSERT INTO demand_cells (area_id, cell, lat, lon) \
             SELECT $1, c, lat, lon FROM UNNEST($2::bigint[], $3::float8[], $4::float8[]) \
                 AS x(c, lat, lon) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(area.cells.iter().map(|c| c.as_i64()).collect::<Vec<_>>())
        .bind(centers.iter().map(|p| p.lat).collect::<Vec<_>>())
        .bind(centers.iter().map(|p| p.lon).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .ctx("writing demand cells")?;
        let row = sqlx::query(&format!("{AREA_QUERY} WHERE a.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .ctx("reading a demand area")?;
        let record = area_record(&row)?;
        tx.commit().await.ctx("committing a demand area")?;
        Ok(record)
    }

    async fn record_usage(&self, counts: &[(u64, Cell, u64)]) -> Result<()> {
        let epochs = counts
            .iter()
            .map(|c| to_i64(c.0, "epoch"))
            .collect::<Result<Vec<_>>>()?;
        let requests = counts
            .iter()
            .map(|c| to_i64(c.2, "requests"))
            .collect::<Result<Vec<_>>>()?;
        sqlx::query(
            "INSERT INTO usage_counts (epoch, area, requests) \
             SELECT e, a, r FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) AS x(e, a, r) \
             ON CONFLICT (epoch, area) DO UPDATE \
                 SET requests = usage_counts.requests + EXCLUDED.requests",
        )
        .bind(epochs)
        .bind(counts.iter().map(|c| c.1.as_i64()).collect::<Vec<_>>())
        .bind(requests)
        .execute(self.pool())
        .await
        .ctx("recording usage")?;
        Ok(())
    }

    async fn usage(&self, epoch: u64) -> Result<Vec<(Cell, u64)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT area, requests FROM usage_counts WHERE epoch = $1 ORDER BY area",
        )
        .bind(to_i64(epoch, "epoch")?)
        .fetch_all(self.pool())
        .await
        .ctx("reading usage")?;
        rows.into_iter()
            .map(|(a, n)| Ok((Cell::from_i64(a)?, to_u64(n, "requests")?)))
            .collect()
    }

    async fn demand_areas(&self) -> Result<Vec<DemandAreaRecord>> {
        let rows = sqlx::query(&format!("{AREA_QUERY} ORDER BY a.id DESC"))
            .fetch_all(self.pool())
            .await
            .ctx("listing demand areas")?;
        rows.iter().map(area_record).collect()
    }

    async fn demand_cells(
        &self,
        bbox: BoundingBox,
        now: DateTime<Utc>,
        coverage_since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DemandCellState>> {
        type R = (i64, f64, i64, f64, f64, Option<DateTime<Utc>>);
        let rows: Vec<R> = sqlx::query_as(
            "WITH live AS ( \
                 SELECT id, weight, budget FROM demand_areas \
                 WHERE created_at <= $5 AND (expires_at IS NULL OR expires_at > $5)), \
             cells AS ( \
                 SELECT cell FROM road_cells \
                 WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) \
                 UNION SELECT d.cell FROM demand_cells d JOIN live ON live.id = d.area_id \
                 WHERE d.lat BETWEEN $2 AND $4 AND d.lon BETWEEN $1 AND $3), \
             picked AS (SELECT cell FROM cells ORDER BY cell LIMIT $7) \
             SELECT p.cell, \
                 COALESCE((SELECT SUM(live.weight) FROM demand_cells d \
                     JOIN live ON live.id = d.area_id WHERE d.cell = p.cell), 0)::float8, \
                 (SELECT COUNT(*) FROM demand_cells d JOIN live ON live.id = d.area_id \
                     WHERE d.cell = p.cell AND live.budget IS NOT NULL AND NOT EXISTS \
                     (SELECT 1 FROM bounty_claims b WHERE b.area_id = d.area_id \
                         AND b.cell = d.cell)), \
                 COALESCE((SELECT road_length_m FROM road_cells rc WHERE rc.cell = p.cell), 0), \
                 COALESCE((SELECT SUM(l) FROM (SELECT MAX(ms.length_m) AS l \
                     FROM matched_stretches ms JOIN uploads u ON u.id = ms.upload_id \
                     WHERE ms.cell = p.cell AND u.received_at >= $6 AND u.trust <> 'flagged' \
                     GROUP BY ms.osm_way_id, ms.way_piece) s), 0)::float8, \
                 (SELECT MAX(f.captured_at) FROM frames f JOIN uploads u ON u.id = f.upload_id \
                     WHERE f.cell = p.cell AND f.status = 'published' \
                       AND u.trust <> 'flagged') \
             FROM picked p ORDER BY p.cell",
        )
        .bind(bbox.west)
        .bind(bbox.south)
        .bind(bbox.east)
        .bind(bbox.north)
        .bind(now)
        .bind(coverage_since)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .ctx("reading the demand map")?;
        rows.into_iter()
            .map(|(cell, w, open, len, observed, last)| {
                Ok(DemandCellState {
                    cell: Cell::from_i64(cell)?,
                    demand_weight: w,
                    open_bounties: open,
                    road_length_m: len,
                    observed_m: observed,
                    last_seen: last,
                })
            })
            .collect()
    }
}

#[async_trait]
impl Demand for SqliteStore {
    async fn create_demand_area(
        &self,
        area: &NewDemandArea,
        now: DateTime<Utc>,
    ) -> Result<DemandAreaRecord> {
        let mut tx = self.write().await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO demand_areas (name, weight, polygon, created_by, created_at, expires_at, \
                 budget) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&area.name)
        .bind(area.weight)
        .bind(area.polygon.to_string())
        .bind(area.created_by)
        .bind(micros(now))
        .bind(area.expires_at.map(micros))
        .bind(area.budget.map(|b| to_i64(b, "budget")).transpose()?)
        .fetch_one(&mut *tx)
        .await
        .ctx("creating a demand area")?;
        for c in &area.cells {
            let p = c.center();
            sqlx::query(
                "INSERT INTO demand_cells (area_id, cell, lat, lon) VALUES (?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(c.as_i64())
            .bind(p.lat)
            .bind(p.lon)
            .execute(&mut *tx)
            .await
            .ctx("writing demand cells")?;
        }
        let row = sqlx::query(&format!("{AREA_QUERY} WHERE a.id = ?"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .ctx("reading a demand area")?;
        let record = area_record(&row)?;
        tx.commit().await.ctx("committing a demand area")?;
        Ok(record)
    }

    async fn record_usage(&self, counts: &[(u64, Cell, u64)]) -> Result<()> {
        let mut tx = self.write().await?;
        for (epoch, area, n) in counts {
            sqlx::query(
                "INSERT INTO usage_counts (epoch, area, requests) VALUES (?, ?, ?) \
                 ON CONFLICT (epoch, area) DO UPDATE \
                     SET requests = usage_counts.requests + excluded.requests",
            )
            .bind(to_i64(*epoch, "epoch")?)
            .bind(area.as_i64())
            .bind(to_i64(*n, "requests")?)
            .execute(&mut *tx)
            .await
            .ctx("recording usage")?;
        }
        tx.commit().await.ctx("recording usage")?;
        Ok(())
    }

    async fn usage(&self, epoch: u64) -> Result<Vec<(Cell, u64)>> {
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT area, requests FROM usage_counts WHERE epoch = ? ORDER BY area")
                .bind(to_i64(epoch, "epoch")?)
                .fetch_all(&self.pool)
                .await
                .ctx("reading usage")?;
        rows.into_iter()
            .map(|(a, n)| Ok((Cell::from_i64(a)?, to_u64(n, "requests")?)))
            .collect()
    }

    async fn demand_areas(&self) -> Result<Vec<DemandAreaRecord>> {
        let rows = sqlx::query(&format!("{AREA_QUERY} ORDER BY a.id DESC"))
            .fetch_all(&self.pool)
            .await
            .ctx("listing demand areas")?;
        rows.iter().map(area_record).collect()
    }

    async fn demand_cells(
        &self,
        bbox: BoundingBox,
        now: DateTime<Utc>,
        coverage_since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DemandCellState>> {
        type R = (i64, f64, i64, f64, f64, Option<i64>);
        let rows: Vec<R> = sqlx::query_as(
            "WITH live AS ( \
                 SELECT id, weight, budget FROM demand_areas \
                 WHERE created_at <= ?5 AND (expires_at IS NULL OR expires_at > ?5)), \
             cells AS ( \
                 SELECT cell FROM road_cells \
                 WHERE lat BETWEEN ?2 AND ?4 AND lon BETWEEN ?1 AND ?3 \
                 UNION SELECT d.cell FROM demand_cells d JOIN live ON live.id = d.area_id \
                 WHERE d.lat BETWEEN ?2 AND ?4 AND d.lon BETWEEN ?1 AND ?3), \
             picked AS (SELECT cell FROM cells ORDER BY cell LIMIT ?7) \
             SELECT p.cell, \
                 CAST(COALESCE((SELECT SUM(live.weight) FROM demand_cells d \
                     JOIN live ON live.id = d.area_id WHERE d.cell = p.cell), 0) AS REAL), \
                 (SELECT COUNT(*) FROM demand_cells d JOIN live ON live.id = d.area_id \
                     WHERE d.cell = p.cell AND live.budget IS NOT NULL AND NOT EXISTS \
                     (SELECT 1 FROM bounty_claims b WHERE b.area_id = d.area_id \
                         AND b.cell = d.cell)), \
                 CAST(COALESCE((SELECT road_length_m FROM road_cells rc WHERE rc.cell = p.cell), 0) \
                     AS REAL), \
                 CAST(COALESCE((SELECT SUM(l) FROM (SELECT MAX(ms.length_m) AS l \
                     FROM matched_stretches ms JOIN uploads u ON u.id = ms.upload_id \
                     WHERE ms.cell = p.cell AND u.received_at >= ?6 AND u.trust <> 'flagged' \
                     GROUP BY ms.osm_way_id, ms.way_piece) s), 0) AS REAL), \
                 (SELECT MAX(f.captured_at) FROM frames f JOIN uploads u ON u.id = f.upload_id \
                     WHERE f.cell = p.cell AND f.status = 'published' \
                       AND u.trust <> 'flagged') \
             FROM picked p ORDER BY p.cell",
        )
        .bind(bbox.west)
        .bind(bbox.south)
        .bind(bbox.east)
        .bind(bbox.north)
        .bind(micros(now))
        .bind(micros(coverage_since))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading the demand map")?;
        rows.into_iter()
            .map(|(cell, w, open, len, observed, last)| {
                Ok(DemandCellState {
                    cell: Cell::from_i64(cell)?,
                    demand_weight: w,
                    open_bounties: open,
                    road_length_m: len,
                    observed_m: observed,
                    last_seen: last.map(time).transpose()?,
                })
            })
            .collect()
    }
}

/// A demand area's row, read from [`AREA_QUERY`].
pub(crate) fn area_record(r: &impl Columns) -> Result<DemandAreaRecord> {
    let opt = |name: &'static str| -> Result<Option<u64>> {
        r.col::<Option<i64>>(name)?
            .map(|v| to_u64(v, name))
            .transpose()
    };
    Ok(DemandAreaRecord {
        id: r.col("id")?,
        name: r.col("name")?,
        weight: r.col("weight")?,
        polygon: serde_json::from_str(&r.col::<String>("polygon")?)
            .map_err(|e| StoreError::Corrupt(format!("demand area polygon: {e}")))?,
        cells: r.col("cells")?,
        created_by: r.col("created_by")?,
        created_at: r.time("created_at")?,
        expires_at: r.opt_time("expires_at")?,
        budget: opt("budget")?,
        paid: to_u64(r.col("paid")?, "paid")?,
        claimed_cells: r.col("claimed")?,
        refunded: opt("refunded")?,
        refunded_epoch: opt("refunded_epoch")?,
    })
}
