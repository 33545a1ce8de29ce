//! Radio observations per upload, per cell, and as samples for an epoch.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::rewards::RadioSample;
use covermap_domain::{BoundingBox, Cell, LatLon, RadioCellSummary};

use crate::dialect::time;
use crate::error::{Result, SqlContext};
use crate::reward_rows::{RadioSampleRow, radio_sample};
use crate::rows::FLAGGED_UPLOADS;
use crate::{PgStore, RadioRow, SqliteStore, rows};

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

#[async_trait]
impl Radio for PgStore {
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

    async fn radio_samples(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RadioSample>> {
        let rows: Vec<RadioSampleRow> = sqlx::query_as(
            "SELECT CASE WHEN u.rewardable THEN u.contributor END, r.upload_id, r.seq, r.cell, \
                    COALESCE(r.radio, r.emitter_kind), r.emitter, r.signal_dbm, r.observed_at, \
                    ST_Y(r.geom), ST_X(r.geom) \
             FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
             WHERE r.geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) AND u.trust <> 'flagged' \
               AND r.counted IS NOT FALSE \
             ORDER BY r.upload_id, r.seq LIMIT $5",
        )
        .bind(bbox.west)
        .bind(bbox.south)
        .bind(bbox.east)
        .bind(bbox.north)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .ctx("reading radio samples")?;
        rows.into_iter().map(radio_sample).collect()
    }
}

#[async_trait]
impl Radio for SqliteStore {
    async fn radio_observations(&self, upload_id: i64, limit: i64) -> Result<Vec<RadioRow>> {
        type R = (
            i64,
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
            "SELECT observed_at, emitter_kind, radio, emitter, signal_dbm, accuracy_m, cell, lat, \
                 lon FROM radio_observations WHERE upload_id = ? ORDER BY seq LIMIT ?",
        )
        .bind(upload_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading radio observations")?;
        rows.into_iter()
            .map(|(at, kind, radio, emitter, signal, acc, cell, lat, lon)| {
                Ok(RadioRow {
                    observed_at: time(at)?,
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
        type R = (i64, i64, i64, i64, i64, i64, Option<i32>, i64);
        let rows: Vec<R> = sqlx::query_as(&format!(
            "SELECT cell, COUNT(*), COUNT(DISTINCT emitter), \
                    COUNT(DISTINCT CASE WHEN emitter_kind = 'cell' THEN emitter END), \
                    COUNT(DISTINCT CASE WHEN emitter_kind = 'wifi' THEN emitter END), \
                    COUNT(DISTINCT CASE WHEN emitter_kind = 'bluetooth' THEN emitter END), \
                    MAX(signal_dbm), MAX(observed_at) \
             FROM radio_observations \
             WHERE lat BETWEEN ? AND ? AND lon BETWEEN ? AND ? \
               AND upload_id NOT IN {FLAGGED_UPLOADS} AND (counted IS NULL OR counted) \
             GROUP BY cell ORDER BY cell LIMIT ?",
        ))
        .bind(bbox.south)
        .bind(bbox.north)
        .bind(bbox.west)
        .bind(bbox.east)
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
                    last_seen: time(last)?,
                })
            })
            .collect()
    }

    async fn radio_samples(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RadioSample>> {
        type Row = (
            Option<String>,
            i64,
            i32,
            i64,
            String,
            String,
            Option<i32>,
            i64,
            f64,
            f64,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT CASE WHEN u.rewardable THEN u.contributor END, r.upload_id, r.seq, r.cell, \
                    COALESCE(r.radio, r.emitter_kind), r.emitter, r.signal_dbm, r.observed_at, \
                    r.lat, r.lon \
             FROM radio_observations r JOIN uploads u ON u.id = r.upload_id \
             WHERE r.lon BETWEEN ? AND ? AND r.lat BETWEEN ? AND ? AND u.trust <> 'flagged' \
               AND (r.counted IS NULL OR r.counted) \
             ORDER BY r.upload_id, r.seq LIMIT ?",
        )
        .bind(bbox.west)
        .bind(bbox.east)
        .bind(bbox.south)
        .bind(bbox.north)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading radio samples")?;
        rows.into_iter()
            .map(|(c, u, q, cell, tech, e, sig, t, lat, lon)| {
                radio_sample((c, u, q, cell, tech, e, sig, time(t)?, lat, lon))
            })
            .collect()
    }
}
