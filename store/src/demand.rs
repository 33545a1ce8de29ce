//! Planners' demand areas, map consumers' usage, and the cells' reward-weight inputs.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{BoundingBox, Cell};

use crate::dialect::Columns;
use crate::dialect::micros;
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

    /// The bounties live at `at` (posted by then, not expired, not refunded) holding a cell whose
    /// centre lies in `bbox` that it has not been claimed from: one row per (cell, area), by
    /// cell then area, at most `limit`.
    async fn open_bounty_cells(
        &self,
        bbox: BoundingBox,
        at: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<CellBounty>>;
}

/// A bounty a cell has not been claimed from (see [`Demand::open_bounty_cells`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CellBounty {
    pub cell: Cell,
    pub area: i64,
    pub budget: u64,
    /// Its area's cells: a claim takes `budget / cells`.
    pub cells: u64,
    /// Paid to claimants in closed epochs.
    pub paid: u64,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Unclaimed cells of live bounties in a box (`$1..$4`) at `$5`, at most `$6`: the same SQL on
/// both backends (times bind as each stores them).
const OPEN_BOUNTY_CELLS: &str = "SELECT d.cell AS cell, a.id AS area, a.budget AS budget, \
         a.created_at AS created_at, a.expires_at AS expires_at, \
         (SELECT COUNT(*) FROM demand_cells x WHERE x.area_id = a.id) AS cells, \
         (SELECT CAST(COALESCE(SUM(b.paid), 0) AS bigint) FROM bounty_claims b \
             WHERE b.area_id = a.id) AS paid \
     FROM demand_cells d JOIN demand_areas a ON a.id = d.area_id \
     WHERE a.budget IS NOT NULL AND a.refunded IS NULL \
       AND a.created_at <= $5 AND (a.expires_at IS NULL OR a.expires_at > $5) \
       AND d.lat BETWEEN $2 AND $4 AND d.lon BETWEEN $1 AND $3 \
       AND NOT EXISTS (SELECT 1 FROM bounty_claims b \
           WHERE b.area_id = d.area_id AND b.cell = d.cell) \
     ORDER BY d.cell, a.id LIMIT $6";

/// A row of [`OPEN_BOUNTY_CELLS`].
fn cell_bounty(r: &impl Columns) -> Result<CellBounty> {
    Ok(CellBounty {
        cell: Cell::from_i64(r.col("cell")?)?,
        area: r.col("area")?,
        budget: to_u64(r.col("budget")?, "budget")?,
        cells: to_u64(r.col("cells")?, "cells")?,
        paid: to_u64(r.col("paid")?, "paid")?,
        created_at: r.time("created_at")?,
        expires_at: r.opt_time("expires_at")?,
    })
}

/// Creates a demand area; its id comes back.
const INSERT_DEMAND_AREA: &str = "INSERT INTO demand_areas (name, weight, polygon, created_by, \
     created_at, expires_at, budget) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";

// An area's cells: PostgreSQL writes them all in one UNNEST of arrays, SQLite one row at a time.
const PG_INSERT_DEMAND_CELLS: &str = "INSERT INTO demand_cells (area_id, cell, lat, lon) \
     SELECT $1, c, lat, lon FROM UNNEST($2::bigint[], $3::float8[], $4::float8[]) \
         AS x(c, lat, lon) ON CONFLICT DO NOTHING";
const SQLITE_INSERT_DEMAND_CELL: &str = "INSERT INTO demand_cells (area_id, cell, lat, lon) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";

// Usage counts: PostgreSQL adds them all in one UNNEST of arrays, SQLite one row at a time.
const PG_RECORD_USAGE: &str = "INSERT INTO usage_counts (epoch, area, requests) \
     SELECT e, a, r FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) AS x(e, a, r) \
     ON CONFLICT (epoch, area) DO UPDATE \
         SET requests = usage_counts.requests + EXCLUDED.requests";
const SQLITE_RECORD_USAGE: &str = "INSERT INTO usage_counts (epoch, area, requests) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (epoch, area) DO UPDATE \
         SET requests = usage_counts.requests + excluded.requests";

/// Requests per area in an epoch.
const USAGE: &str = "SELECT area, requests FROM usage_counts WHERE epoch = $1 ORDER BY area";

// The demand map: PostGIS finds road cells in the box by their geometry (GiST index), SQLite by
// their centres, and each writes its float casts its own way.
const PG_DEMAND_CELLS: &str = "WITH live AS ( \
         SELECT id, weight, budget FROM demand_areas \
         WHERE created_at <= $5 AND (expires_at IS NULL OR expires_at > $5)), \
     cells AS ( \
         SELECT cell FROM road_cells \
         WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) \
         UNION SELECT d.cell FROM demand_cells d JOIN live ON live.id = d.area_id \
         WHERE d.lat BETWEEN $2 AND $4 AND d.lon BETWEEN $1 AND $3), \
     picked AS (SELECT cell FROM cells ORDER BY cell LIMIT $7) \
     SELECT p.cell AS cell, \
         COALESCE((SELECT SUM(live.weight) FROM demand_cells d \
             JOIN live ON live.id = d.area_id WHERE d.cell = p.cell), 0)::float8 \
             AS demand_weight, \
         (SELECT COUNT(*) FROM demand_cells d JOIN live ON live.id = d.area_id \
             WHERE d.cell = p.cell AND live.budget IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM bounty_claims b WHERE b.area_id = d.area_id \
                 AND b.cell = d.cell)) AS open_bounties, \
         COALESCE((SELECT road_length_m FROM road_cells rc WHERE rc.cell = p.cell), 0) \
             AS road_length_m, \
         COALESCE((SELECT SUM(l) FROM (SELECT MAX(ms.length_m) AS l \
             FROM matched_stretches ms JOIN uploads u ON u.id = ms.upload_id \
             WHERE ms.cell = p.cell AND u.received_at >= $6 AND u.trust <> 'flagged' \
               AND u.erased_at IS NULL \
             GROUP BY ms.osm_way_id, ms.way_piece) s), 0)::float8 AS observed_m, \
         (SELECT MAX(f.captured_at) FROM frames f JOIN uploads u ON u.id = f.upload_id \
             WHERE f.cell = p.cell AND f.status = 'published' \
               AND u.trust <> 'flagged' AND u.erased_at IS NULL) AS last_seen \
     FROM picked p ORDER BY p.cell";
const SQLITE_DEMAND_CELLS: &str = "WITH live AS ( \
         SELECT id, weight, budget FROM demand_areas \
         WHERE created_at <= $5 AND (expires_at IS NULL OR expires_at > $5)), \
     cells AS ( \
         SELECT cell FROM road_cells \
         WHERE lat BETWEEN $2 AND $4 AND lon BETWEEN $1 AND $3 \
         UNION SELECT d.cell FROM demand_cells d JOIN live ON live.id = d.area_id \
         WHERE d.lat BETWEEN $2 AND $4 AND d.lon BETWEEN $1 AND $3), \
     picked AS (SELECT cell FROM cells ORDER BY cell LIMIT $7) \
     SELECT p.cell AS cell, \
         CAST(COALESCE((SELECT SUM(live.weight) FROM demand_cells d \
             JOIN live ON live.id = d.area_id WHERE d.cell = p.cell), 0) AS REAL) \
             AS demand_weight, \
         (SELECT COUNT(*) FROM demand_cells d JOIN live ON live.id = d.area_id \
             WHERE d.cell = p.cell AND live.budget IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM bounty_claims b WHERE b.area_id = d.area_id \
                 AND b.cell = d.cell)) AS open_bounties, \
         CAST(COALESCE((SELECT road_length_m FROM road_cells rc WHERE rc.cell = p.cell), 0) \
             AS REAL) AS road_length_m, \
         CAST(COALESCE((SELECT SUM(l) FROM (SELECT MAX(ms.length_m) AS l \
             FROM matched_stretches ms JOIN uploads u ON u.id = ms.upload_id \
             WHERE ms.cell = p.cell AND u.received_at >= $6 AND u.trust <> 'flagged' \
               AND u.erased_at IS NULL \
             GROUP BY ms.osm_way_id, ms.way_piece) s), 0) AS REAL) AS observed_m, \
         (SELECT MAX(f.captured_at) FROM frames f JOIN uploads u ON u.id = f.upload_id \
             WHERE f.cell = p.cell AND f.status = 'published' \
               AND u.trust <> 'flagged' AND u.erased_at IS NULL) AS last_seen \
     FROM picked p ORDER BY p.cell";

/// One demand area, by id (`$1`).
fn demand_area_by_id() -> String {
    format!("{AREA_QUERY} WHERE a.id = $1")
}

/// Every demand area, newest first.
fn all_demand_areas() -> String {
    format!("{AREA_QUERY} ORDER BY a.id DESC")
}

/// A row of [`USAGE`]: an area and its requests.
fn usage_count(r: &impl Columns) -> Result<(Cell, u64)> {
    Ok((
        Cell::from_i64(r.col("area")?)?,
        to_u64(r.col("requests")?, "requests")?,
    ))
}

/// A row of the demand map.
fn demand_cell(r: &impl Columns) -> Result<DemandCellState> {
    Ok(DemandCellState {
        cell: Cell::from_i64(r.col("cell")?)?,
        demand_weight: r.col("demand_weight")?,
        open_bounties: r.col("open_bounties")?,
        road_length_m: r.col("road_length_m")?,
        observed_m: r.col("observed_m")?,
        last_seen: r.opt_time("last_seen")?,
    })
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

#[async_trait]
impl Demand for PgStore {
    async fn create_demand_area(
        &self,
        area: &NewDemandArea,
        now: DateTime<Utc>,
    ) -> Result<DemandAreaRecord> {
        let mut tx = self.pool().begin().await.ctx("starting a transaction")?;
        let (id,): (i64,) = sqlx::query_as(INSERT_DEMAND_AREA)
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
        sqlx::query(PG_INSERT_DEMAND_CELLS)
            .bind(id)
            .bind(area.cells.iter().map(|c| c.as_i64()).collect::<Vec<_>>())
            .bind(centers.iter().map(|p| p.lat).collect::<Vec<_>>())
            .bind(centers.iter().map(|p| p.lon).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .ctx("writing demand cells")?;
        let row = sqlx::query(&demand_area_by_id())
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
        sqlx::query(PG_RECORD_USAGE)
            .bind(epochs)
            .bind(counts.iter().map(|c| c.1.as_i64()).collect::<Vec<_>>())
            .bind(requests)
            .execute(self.pool())
            .await
            .ctx("recording usage")?;
        Ok(())
    }

    async fn usage(&self, epoch: u64) -> Result<Vec<(Cell, u64)>> {
        let rows = sqlx::query(USAGE)
            .bind(to_i64(epoch, "epoch")?)
            .fetch_all(self.pool())
            .await
            .ctx("reading usage")?;
        rows.iter().map(usage_count).collect()
    }

    async fn demand_areas(&self) -> Result<Vec<DemandAreaRecord>> {
        let rows = sqlx::query(&all_demand_areas())
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
        let rows = sqlx::query(PG_DEMAND_CELLS)
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
        rows.iter().map(demand_cell).collect()
    }

    async fn open_bounty_cells(
        &self,
        bbox: BoundingBox,
        at: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<CellBounty>> {
        let rows = sqlx::query(OPEN_BOUNTY_CELLS)
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(at)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .ctx("reading open bounties")?;
        rows.iter().map(cell_bounty).collect()
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
        let (id,): (i64,) = sqlx::query_as(INSERT_DEMAND_AREA)
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
            sqlx::query(SQLITE_INSERT_DEMAND_CELL)
                .bind(id)
                .bind(c.as_i64())
                .bind(p.lat)
                .bind(p.lon)
                .execute(&mut *tx)
                .await
                .ctx("writing demand cells")?;
        }
        let row = sqlx::query(&demand_area_by_id())
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
            sqlx::query(SQLITE_RECORD_USAGE)
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
        let rows = sqlx::query(USAGE)
            .bind(to_i64(epoch, "epoch")?)
            .fetch_all(&self.pool)
            .await
            .ctx("reading usage")?;
        rows.iter().map(usage_count).collect()
    }

    async fn demand_areas(&self) -> Result<Vec<DemandAreaRecord>> {
        let rows = sqlx::query(&all_demand_areas())
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
        let rows = sqlx::query(SQLITE_DEMAND_CELLS)
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
        rows.iter().map(demand_cell).collect()
    }

    async fn open_bounty_cells(
        &self,
        bbox: BoundingBox,
        at: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<CellBounty>> {
        let rows = sqlx::query(OPEN_BOUNTY_CELLS)
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(micros(at))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading open bounties")?;
        rows.iter().map(cell_bounty).collect()
    }
}
