//! Radio observations per upload, per cell, and as samples for an epoch.

use async_trait::async_trait;
use covermap_domain::rewards::RadioSample;
use covermap_domain::{BoundingBox, Cell, LatLon, RadioCellSummary};

use crate::dialect::Columns;
use crate::error::{Result, SqlContext};
use crate::reward_rows::radio_sample;
use crate::rows::OFF_MAP_UPLOADS;
use crate::{PgStore, RadioRow, SqliteStore};

/// Radio observations per upload, per cell, and as samples for an epoch.
#[async_trait]
pub trait Radio: Send + Sync {
    /// The radio observations an upload produced, at most `limit`.
    async fn radio_observations(&self, upload_id: i64, limit: i64) -> Result<Vec<RadioRow>>;

    /// Radio observations summed per cell, for cells whose centres lie in `bbox`.
    async fn radio_coverage(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RadioCellSummary>>;

    /// Radio samples taken in `bbox`, at most `limit`, with who took them (rewardable uploads).
    async fn radio_samples(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RadioSample>>;
}

// The queries. PostGIS keeps an observation's position as `geom`, with a GiST index, SQLite as
// `lat` and `lon`, with an index on them: the SQL that reads or tests it is each backend's own.

// An upload's observations: PostGIS reads the position out of `geom`, SQLite has it as columns.
const PG_RADIO_OBSERVATIONS: &str = "SELECT observed_at, emitter_kind, radio, emitter, \
         signal_dbm, accuracy_m, cell, ST_Y(geom) AS lat, ST_X(geom) AS lon \
     FROM radio_observations WHERE upload_id = $1 ORDER BY seq LIMIT $2";
const SQLITE_RADIO_OBSERVATIONS: &str = "SELECT observed_at, emitter_kind, radio, emitter, \
         signal_dbm, accuracy_m, cell, lat, lon \
     FROM radio_observations WHERE upload_id = $1 ORDER BY seq LIMIT $2";

// Whether an observation lies in the box `$1` west, `$2` south, `$3` east, `$4` north: PostGIS
// asks its index on `geom`, SQLite its index on `lat` and `lon`.
const PG_IN_BOX: &str = "geom && ST_MakeEnvelope($1, $2, $3, $4, 4326)";
const SQLITE_IN_BOX: &str = "lat BETWEEN $2 AND $4 AND lon BETWEEN $1 AND $3";

/// Counted observations of uploads neither flagged nor erased, summed per cell, for cells whose observations
/// `in_box` admits, at most `$5`.
fn radio_coverage_query(in_box: &str) -> String {
    format!(
        "SELECT cell, COUNT(*) AS observations, COUNT(DISTINCT emitter) AS emitters, \
                COUNT(DISTINCT emitter) FILTER (WHERE emitter_kind = 'cell') AS cells_seen, \
                COUNT(DISTINCT emitter) FILTER (WHERE emitter_kind = 'wifi') AS wifi_seen, \
                COUNT(DISTINCT emitter) FILTER (WHERE emitter_kind = 'bluetooth') \
                    AS bluetooth_seen, \
                MAX(signal_dbm) AS best_signal_dbm, MAX(observed_at) AS last_seen \
         FROM radio_observations \
         WHERE {in_box} \
           AND upload_id NOT IN {OFF_MAP_UPLOADS} AND counted IS NOT FALSE \
         GROUP BY cell ORDER BY cell LIMIT $5"
    )
}

// Samples in the box `$1` west, `$2` south, `$3` east, `$4` north: PostGIS reads and tests the
// position through `geom`, SQLite through `lat` and `lon`.
const PG_RADIO_SAMPLES: &str = "SELECT CASE WHEN u.rewardable THEN u.contributor END \
             AS contributor, r.upload_id, r.seq, r.cell, \
         COALESCE(r.radio, r.emitter_kind) AS technology, r.emitter, r.signal_dbm, \
         r.observed_at, ST_Y(r.geom) AS lat, ST_X(r.geom) AS lon \
     FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
     WHERE r.geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) AND u.trust <> 'flagged' \
       AND u.erased_at IS NULL AND r.counted IS NOT FALSE \
     ORDER BY r.upload_id, r.seq LIMIT $5";
const SQLITE_RADIO_SAMPLES: &str = "SELECT CASE WHEN u.rewardable THEN u.contributor END \
             AS contributor, r.upload_id, r.seq, r.cell, \
         COALESCE(r.radio, r.emitter_kind) AS technology, r.emitter, r.signal_dbm, \
         r.observed_at, r.lat, r.lon \
     FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
     WHERE r.lon BETWEEN $1 AND $3 AND r.lat BETWEEN $2 AND $4 AND u.trust <> 'flagged' \
       AND u.erased_at IS NULL AND r.counted IS NOT FALSE \
     ORDER BY r.upload_id, r.seq LIMIT $5";

// How the rows of both backends are read.

fn radio_row(r: &impl Columns) -> Result<RadioRow> {
    Ok(RadioRow {
        observed_at: r.time("observed_at")?,
        emitter_kind: r.word("emitter_kind")?,
        radio: r.opt_word("radio")?,
        emitter: r.col("emitter")?,
        signal_dbm: r.col("signal_dbm")?,
        accuracy_m: r.col("accuracy_m")?,
        pos: LatLon::new(r.col("lat")?, r.col("lon")?)?,
        cell: Cell::from_i64(r.col("cell")?)?,
    })
}

fn radio_cell(r: &impl Columns) -> Result<RadioCellSummary> {
    Ok(RadioCellSummary {
        cell: Cell::from_i64(r.col("cell")?)?,
        observations: r.col("observations")?,
        emitters: r.col("emitters")?,
        cells_seen: r.col("cells_seen")?,
        wifi_seen: r.col("wifi_seen")?,
        bluetooth_seen: r.col("bluetooth_seen")?,
        best_signal_dbm: r.col("best_signal_dbm")?,
        last_seen: r.time("last_seen")?,
    })
}

fn sample(r: &impl Columns) -> Result<RadioSample> {
    radio_sample((
        r.col("contributor")?,
        r.col("upload_id")?,
        r.col("seq")?,
        r.col("cell")?,
        r.col("technology")?,
        r.col("emitter")?,
        r.col("signal_dbm")?,
        r.time("observed_at")?,
        r.col("lat")?,
        r.col("lon")?,
    ))
}

#[async_trait]
impl Radio for PgStore {
    async fn radio_observations(&self, upload_id: i64, limit: i64) -> Result<Vec<RadioRow>> {
        let rows = sqlx::query(PG_RADIO_OBSERVATIONS)
            .bind(upload_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading radio observations")?;
        rows.iter().map(radio_row).collect()
    }

    async fn radio_coverage(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RadioCellSummary>> {
        let rows = sqlx::query(&radio_coverage_query(PG_IN_BOX))
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading radio coverage")?;
        rows.iter().map(radio_cell).collect()
    }

    async fn radio_samples(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RadioSample>> {
        let rows = sqlx::query(PG_RADIO_SAMPLES)
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(limit)
            .fetch_all(self.pool())
            .await
            .ctx("reading radio samples")?;
        rows.iter().map(sample).collect()
    }
}

#[async_trait]
impl Radio for SqliteStore {
    async fn radio_observations(&self, upload_id: i64, limit: i64) -> Result<Vec<RadioRow>> {
        let rows = sqlx::query(SQLITE_RADIO_OBSERVATIONS)
            .bind(upload_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading radio observations")?;
        rows.iter().map(radio_row).collect()
    }

    async fn radio_coverage(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RadioCellSummary>> {
        let rows = sqlx::query(&radio_coverage_query(SQLITE_IN_BOX))
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading radio coverage")?;
        rows.iter().map(radio_cell).collect()
    }

    async fn radio_samples(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RadioSample>> {
        let rows = sqlx::query(SQLITE_RADIO_SAMPLES)
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading radio samples")?;
        rows.iter().map(sample).collect()
    }
}
