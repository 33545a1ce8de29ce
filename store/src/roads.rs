//! The road network, matched stretches, and coverage per cell.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{
    BoundingBox, Cell, CellCoverage, MatchedStretch, RoadCell, RoadSegment, SegmentRef,
};

use crate::dialect::Columns;
use crate::dialect::{micros, time};
use crate::error::{Result, SqlContext, StoreError};
use crate::rows::FLAGGED_UPLOADS;
use crate::{PgStore, SegmentSeen, SqliteStore, rows};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

/// The road network, matched stretches, and coverage per cell.
#[async_trait]
pub trait Roads: Send + Sync {
    /// Replaces the whole road network, and each cell's road length, in one transaction.
    async fn replace_roads(&self, segments: &[RoadSegment], cells: &[RoadCell]) -> Result<u64>;

    /// Where the data is: the box around the road network's cells, or, with no roads loaded,
    /// around the cells that coverage and radio observations were made in; `None` when the
    /// store holds neither. Maps open on it.
    async fn extent(&self) -> Result<Option<BoundingBox>>;

    /// Road length of the cells whose centres lie in `bbox`, at most `limit`, by cell id.
    async fn road_cells(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadCell>>;

    /// The stretches of road an upload was matched to, in driving order.
    async fn matched_stretches(&self, upload_id: i64) -> Result<Vec<MatchedStretch>>;

    /// Road segments that intersect `bbox`, at most `limit`.
    async fn roads(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadSegment>>;

    /// The road segments `refs` name (by OSM way and piece), in way and piece order; a ref to no
    /// stored segment is left out.
    async fn road_segments(&self, refs: &[SegmentRef]) -> Result<Vec<RoadSegment>>;

    /// When a contributor last drove each road segment that intersects `bbox` (matched GPS and
    /// frames taken on it), at most `limit` segments; segments never driven are left out.
    async fn roads_last_seen(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<SegmentSeen>>;

    /// Coverage of the cells whose centres lie in `bbox`, at most `limit` of them, by cell id.
    async fn coverage(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<CellCoverage>>;

    /// Cells whose coverage, radio or imagery changed through uploads processed, or frames an
    /// auditor decided on, after `since`,
    /// at most `limit`: what the tile cache drops.
    async fn changed_cells(&self, since: DateTime<Utc>, limit: i64) -> Result<Vec<Cell>>;
}

#[async_trait]
impl Roads for PgStore {
    async fn replace_roads(&self, segments: &[RoadSegment], cells: &[RoadCell]) -> Result<u64> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        sqlx::query("DELETE FROM road_segments")
            .execute(&mut *tx)
            .await
            .ctx("clearing the road network")?;
        sqlx::query("DELETE FROM road_cells")
            .execute(&mut *tx)
            .await
            .ctx("clearing road cells")?;
        for chunk in cells.chunks(20_000) {
            let centers: Vec<_> = chunk.iter().map(|c| c.cell.center()).collect();
            sqlx::query(
                "INSERT INTO road_cells (cell, road_length_m, geom) \
                 SELECT c, l, ST_SetSRID(ST_MakePoint(lon, lat), 4326) \
                 FROM UNNEST($1::bigint[], $2::float8[], $3::float8[], $4::float8[]) \
                      AS t(c, l, lat, lon)",
            )
            .bind(chunk.iter().map(|c| c.cell.as_i64()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|c| c.road_length_m).collect::<Vec<_>>())
            .bind(centers.iter().map(|p| p.lat).collect::<Vec<_>>())
            .bind(centers.iter().map(|p| p.lon).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .ctx("writing road cells")?;
        }
        for chunk in segments.chunks(5000) {
            sqlx::query(
                "INSERT INTO road_segments \
                     (osm_way_id, piece, osm_node_ids, highway, name, oneway, length_m, geom) \
                 SELECT w, p, ARRAY(SELECT jsonb_array_elements_text(n::jsonb)::bigint), h, nm, o, \
                        l, ST_GeomFromText(g, 4326) \
                 FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], \
                             $6::bool[], $7::float8[], $8::text[]) AS t(w, p, n, h, nm, o, l, g)",
            )
            .bind(chunk.iter().map(|s| s.osm_way_id).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.piece as i32).collect::<Vec<_>>())
            .bind(chunk.iter().map(rows::node_ids_json).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.highway.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.oneway).collect::<Vec<_>>())
            .bind(chunk.iter().map(|s| s.length_m).collect::<Vec<_>>())
            .bind(chunk.iter().map(rows::wkt_linestring).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .ctx("writing road segments")?;
        }
        tx.commit().await.ctx("committing the road network")?;
        Ok(segments.len() as u64)
    }

    async fn extent(&self) -> Result<Option<BoundingBox>> {
        let row: (Option<f64>, Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
            "WITH roads AS (SELECT ST_Extent(geom) AS e FROM road_cells), \
                  seen AS (SELECT ST_Extent(geom) AS e FROM \
                           (SELECT geom FROM cell_observations \
                            UNION ALL SELECT geom FROM radio_observations) g) \
             SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) \
             FROM (SELECT COALESCE((SELECT e FROM roads), (SELECT e FROM seen)) AS e) x",
        )
        .fetch_one(&self.pool)
        .await
        .ctx("reading the data's extent")?;
        Ok(rows::extent(row))
    }

    async fn road_cells(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadCell>> {
        let rows: Vec<(i64, f64)> = sqlx::query_as(
            "SELECT cell, road_length_m FROM road_cells \
             WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) ORDER BY cell LIMIT $5",
        )
        .bind(bbox.west)
        .bind(bbox.south)
        .bind(bbox.east)
        .bind(bbox.north)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading road cells")?;
        rows::road_cells(rows)
    }

    async fn matched_stretches(&self, upload_id: i64) -> Result<Vec<MatchedStretch>> {
        let rows: Vec<(i32, i64, i64, i32, f64)> = sqlx::query_as(
            "SELECT match_piece, cell, osm_way_id, way_piece, length_m FROM matched_stretches \
             WHERE upload_id = $1 ORDER BY seq",
        )
        .bind(upload_id)
        .fetch_all(&self.pool)
        .await
        .ctx("reading matched stretches")?;
        rows.into_iter()
            .map(|(mp, c, w, wp, l)| rows::stretch(i64::from(mp), c, w, i64::from(wp), l))
            .collect()
    }

    async fn roads(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadSegment>> {
        let rows = sqlx::query(
            "SELECT osm_way_id, piece, osm_node_ids, highway, name, oneway, length_m, \
                    ST_AsGeoJSON(geom) AS geojson \
             FROM road_segments WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) \
             ORDER BY osm_way_id, piece LIMIT $5",
        )
        .bind(bbox.west)
        .bind(bbox.south)
        .bind(bbox.east)
        .bind(bbox.north)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading road segments")?;
        rows.iter().map(pg_segment).collect()
    }

    async fn road_segments(
        &self,
        refs: &[covermap_domain::SegmentRef],
    ) -> Result<Vec<RoadSegment>> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT osm_way_id, piece, osm_node_ids, highway, name, oneway, length_m, \
                    ST_AsGeoJSON(geom) AS geojson \
             FROM road_segments \
             WHERE (osm_way_id, piece) IN (SELECT * FROM UNNEST($1::bigint[], $2::int[])) \
             ORDER BY osm_way_id, piece",
        )
        .bind(refs.iter().map(|r| r.osm_way_id).collect::<Vec<_>>())
        .bind(refs.iter().map(|r| r.way_piece as i32).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
        .ctx("reading road segments by reference")?;
        rows.iter().map(pg_segment).collect()
    }

    async fn roads_last_seen(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<SegmentSeen>> {
        let rows: Vec<(i64, i32, DateTime<Utc>)> = sqlx::query_as(&format!(
            "WITH s AS (SELECT osm_way_id, piece FROM road_segments \
                        WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326)), \
                  seen AS ( \
                    SELECT m.osm_way_id, m.way_piece AS piece, co.last_seen AS t \
                    FROM s JOIN matched_stretches m \
                      ON m.osm_way_id = s.osm_way_id AND m.way_piece = s.piece \
                    JOIN cell_observations co ON co.upload_id = m.upload_id AND co.cell = m.cell \
                    WHERE m.upload_id NOT IN {FLAGGED_UPLOADS} \
                    UNION ALL \
                    SELECT f.osm_way_id, f.way_piece, f.captured_at \
                    FROM s JOIN frames f ON f.osm_way_id = s.osm_way_id AND f.way_piece = s.piece \
                    WHERE f.upload_id NOT IN {FLAGGED_UPLOADS}) \
             SELECT osm_way_id, piece, MAX(t) FROM seen GROUP BY osm_way_id, piece \
             ORDER BY osm_way_id, piece LIMIT $5",
        ))
        .bind(bbox.west)
        .bind(bbox.south)
        .bind(bbox.east)
        .bind(bbox.north)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading when roads were last driven")?;
        Ok(rows
            .into_iter()
            .map(|(osm_way_id, piece, last_seen)| SegmentSeen {
                osm_way_id,
                piece: piece.unsigned_abs(),
                last_seen,
            })
            .collect())
    }

    async fn coverage(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<CellCoverage>> {
        let rows: Vec<(i64, i64, i64, i64, DateTime<Utc>, DateTime<Utc>)> =
            sqlx::query_as(&format!(
                "SELECT cell, SUM(fixes)::BIGINT, COUNT(*), COUNT(DISTINCT device), \
                    MIN(first_seen), MAX(last_seen) \
             FROM cell_observations WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) \
               AND upload_id NOT IN {FLAGGED_UPLOADS} \
             GROUP BY cell ORDER BY cell LIMIT $5",
            ))
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading coverage")?;
        rows.into_iter()
            .map(|(cell, fixes, uploads, devices, first_seen, last_seen)| {
                Ok(CellCoverage {
                    cell: Cell::from_i64(cell)?,
                    fixes,
                    uploads,
                    devices,
                    first_seen,
                    last_seen,
                })
            })
            .collect()
    }

    async fn changed_cells(&self, since: DateTime<Utc>, limit: i64) -> Result<Vec<Cell>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "WITH u AS (SELECT id FROM uploads WHERE processed_at > $1 \
                        UNION SELECT id FROM uploads WHERE trust_changed_at > $1) \
             SELECT cell FROM cell_observations WHERE upload_id IN (SELECT id FROM u) \
             UNION SELECT cell FROM radio_observations WHERE upload_id IN (SELECT id FROM u) \
             UNION SELECT cell FROM frames WHERE upload_id IN (SELECT id FROM u) \
             UNION SELECT r.cell FROM frame_decisions d JOIN frame_rejections r \
                 ON r.upload_id = d.upload_id AND r.frame = d.frame WHERE d.decided_at > $1 \
             LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading changed cells")?;
        rows.into_iter()
            .map(|(c,)| Ok(Cell::from_i64(c)?))
            .collect()
    }
}

#[async_trait]
impl Roads for SqliteStore {
    async fn replace_roads(&self, segments: &[RoadSegment], cells: &[RoadCell]) -> Result<u64> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM road_segments")
            .execute(&mut *tx)
            .await
            .ctx("clearing the road network")?;
        sqlx::query("DELETE FROM road_cells")
            .execute(&mut *tx)
            .await
            .ctx("clearing road cells")?;
        for c in cells {
            let center = c.cell.center();
            sqlx::query(
                "INSERT INTO road_cells (cell, road_length_m, lat, lon) VALUES (?, ?, ?, ?)",
            )
            .bind(c.cell.as_i64())
            .bind(c.road_length_m)
            .bind(center.lat)
            .bind(center.lon)
            .execute(&mut *tx)
            .await
            .ctx("writing road cells")?;
        }
        for s in segments {
            let (mut w, mut so, mut e, mut n) = (180.0f64, 90.0f64, -180.0f64, -90.0f64);
            for p in &s.points {
                w = w.min(p.lon);
                e = e.max(p.lon);
                so = so.min(p.lat);
                n = n.max(p.lat);
            }
            sqlx::query(
                "INSERT INTO road_segments (osm_way_id, piece, osm_node_ids, highway, name, oneway, \
                     length_m, coords, min_lon, min_lat, max_lon, max_lat) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(s.osm_way_id)
            .bind(i64::from(s.piece))
            .bind(rows::node_ids_json(s))
            .bind(&s.highway)
            .bind(&s.name)
            .bind(s.oneway)
            .bind(s.length_m)
            .bind(rows::coords_json(s))
            .bind(w)
            .bind(so)
            .bind(e)
            .bind(n)
            .execute(&mut *tx)
            .await
            .ctx("writing road segments")?;
        }
        tx.commit().await.ctx("committing the road network")?;
        Ok(segments.len() as u64)
    }

    async fn extent(&self) -> Result<Option<BoundingBox>> {
        let roads: (Option<f64>, Option<f64>, Option<f64>, Option<f64>) =
            sqlx::query_as("SELECT min(lon), min(lat), max(lon), max(lat) FROM road_cells")
                .fetch_one(&self.pool)
                .await
                .ctx("reading the road network's extent")?;
        if roads.0.is_some() {
            return Ok(rows::extent(roads));
        }
        let seen = sqlx::query_as(
            "SELECT min(lon), min(lat), max(lon), max(lat) FROM \
             (SELECT lat, lon FROM cell_observations UNION ALL \
              SELECT lat, lon FROM radio_observations)",
        )
        .fetch_one(&self.pool)
        .await
        .ctx("reading the observations' extent")?;
        Ok(rows::extent(seen))
    }

    async fn road_cells(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadCell>> {
        let rows: Vec<(i64, f64)> = sqlx::query_as(
            "SELECT cell, road_length_m FROM road_cells \
             WHERE lat BETWEEN ? AND ? AND lon BETWEEN ? AND ? ORDER BY cell LIMIT ?",
        )
        .bind(bbox.south)
        .bind(bbox.north)
        .bind(bbox.west)
        .bind(bbox.east)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading road cells")?;
        rows::road_cells(rows)
    }

    async fn matched_stretches(&self, upload_id: i64) -> Result<Vec<MatchedStretch>> {
        let rows: Vec<(i64, i64, i64, i64, f64)> = sqlx::query_as(
            "SELECT match_piece, cell, osm_way_id, way_piece, length_m FROM matched_stretches \
             WHERE upload_id = ? ORDER BY seq",
        )
        .bind(upload_id)
        .fetch_all(&self.pool)
        .await
        .ctx("reading matched stretches")?;
        rows.into_iter()
            .map(|(mp, c, w, wp, l)| rows::stretch(mp, c, w, wp, l))
            .collect()
    }

    async fn roads(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadSegment>> {
        let rows = sqlx::query(
            "SELECT osm_way_id, piece, osm_node_ids, highway, name, oneway, length_m, coords \
             FROM road_segments \
             WHERE min_lon <= ? AND max_lon >= ? AND min_lat <= ? AND max_lat >= ? \
             ORDER BY osm_way_id, piece LIMIT ?",
        )
        .bind(bbox.east)
        .bind(bbox.west)
        .bind(bbox.north)
        .bind(bbox.south)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading road segments")?;
        rows.iter().map(sqlite_segment).collect()
    }

    async fn road_segments(
        &self,
        refs: &[covermap_domain::SegmentRef],
    ) -> Result<Vec<RoadSegment>> {
        let mut out = Vec::with_capacity(refs.len());
        // Two variables a reference, well under SQLite's 32,766.
        for chunk in refs.chunks(10_000) {
            let pairs = vec!["(?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT osm_way_id, piece, osm_node_ids, highway, name, oneway, length_m, coords \
                 FROM road_segments WHERE (osm_way_id, piece) IN (VALUES {pairs})"
            );
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query.bind(r.osm_way_id).bind(i64::from(r.way_piece));
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .ctx("reading road segments by reference")?;
            for row in &rows {
                out.push(sqlite_segment(row)?);
            }
        }
        out.sort_by_key(|s| (s.osm_way_id, s.piece));
        out.dedup_by_key(|s| (s.osm_way_id, s.piece));
        Ok(out)
    }

    async fn roads_last_seen(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<SegmentSeen>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(&format!(
            "WITH s AS (SELECT osm_way_id, piece FROM road_segments \
                        WHERE min_lon <= ? AND max_lon >= ? AND min_lat <= ? AND max_lat >= ?), \
                  seen AS ( \
                    SELECT m.osm_way_id, m.way_piece AS piece, co.last_seen AS t \
                    FROM s JOIN matched_stretches m \
                      ON m.osm_way_id = s.osm_way_id AND m.way_piece = s.piece \
                    JOIN cell_observations co ON co.upload_id = m.upload_id AND co.cell = m.cell \
                    WHERE m.upload_id NOT IN {FLAGGED_UPLOADS} \
                    UNION ALL \
                    SELECT f.osm_way_id, f.way_piece, f.captured_at \
                    FROM s JOIN frames f ON f.osm_way_id = s.osm_way_id AND f.way_piece = s.piece \
                    WHERE f.upload_id NOT IN {FLAGGED_UPLOADS}) \
             SELECT osm_way_id, piece, MAX(t) FROM seen GROUP BY osm_way_id, piece \
             ORDER BY osm_way_id, piece LIMIT ?",
        ))
        .bind(bbox.east)
        .bind(bbox.west)
        .bind(bbox.north)
        .bind(bbox.south)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading when roads were last driven")?;
        rows.into_iter()
            .map(|(osm_way_id, piece, t)| {
                Ok(SegmentSeen {
                    osm_way_id,
                    piece: u32::try_from(piece)
                        .map_err(|_| StoreError::Corrupt(format!("road piece {piece}")))?,
                    last_seen: time(t)?,
                })
            })
            .collect()
    }

    async fn coverage(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<CellCoverage>> {
        let rows: Vec<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(&format!(
            "SELECT cell, SUM(fixes), COUNT(*), COUNT(DISTINCT device), MIN(first_seen), \
                    MAX(last_seen) \
             FROM cell_observations \
             WHERE lat BETWEEN ? AND ? AND lon BETWEEN ? AND ? \
               AND upload_id NOT IN {FLAGGED_UPLOADS} \
             GROUP BY cell ORDER BY cell LIMIT ?",
        ))
        .bind(bbox.south)
        .bind(bbox.north)
        .bind(bbox.west)
        .bind(bbox.east)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading coverage")?;
        rows.into_iter()
            .map(|(cell, fixes, uploads, devices, first_seen, last_seen)| {
                Ok(CellCoverage {
                    cell: Cell::from_i64(cell)?,
                    fixes,
                    uploads,
                    devices,
                    first_seen: time(first_seen)?,
                    last_seen: time(last_seen)?,
                })
            })
            .collect()
    }

    async fn changed_cells(&self, since: DateTime<Utc>, limit: i64) -> Result<Vec<Cell>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "WITH u AS (SELECT id FROM uploads WHERE processed_at > ?1 \
                        UNION SELECT id FROM uploads WHERE trust_changed_at > ?1) \
             SELECT cell FROM cell_observations WHERE upload_id IN (SELECT id FROM u) \
             UNION SELECT cell FROM radio_observations WHERE upload_id IN (SELECT id FROM u) \
             UNION SELECT cell FROM frames WHERE upload_id IN (SELECT id FROM u) \
             UNION SELECT r.cell FROM frame_decisions d JOIN frame_rejections r \
                 ON r.upload_id = d.upload_id AND r.frame = d.frame WHERE d.decided_at > ?1 \
             LIMIT ?2",
        )
        .bind(micros(since))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("reading changed cells")?;
        rows.into_iter()
            .map(|(c,)| Ok(Cell::from_i64(c)?))
            .collect()
    }
}

/// A `road_segments` row as PostGIS returns it: node ids as an array, the line as GeoJSON
/// (`geojson`).
pub(crate) fn pg_segment(row: &PgRow) -> Result<RoadSegment> {
    let geojson: String = row.col("geojson")?;
    Ok(RoadSegment {
        osm_way_id: row.col("osm_way_id")?,
        piece: piece(row.col("piece")?)?,
        osm_node_ids: row.try_get("osm_node_ids").ctx("reading a road segment")?,
        highway: row.col("highway")?,
        name: row.col("name")?,
        oneway: row.col("oneway")?,
        length_m: row.col("length_m")?,
        points: rows::points_from_geojson(&geojson)?,
    })
}

/// A `road_segments` row as SQLite keeps it: node ids and coordinates as JSON text.
pub(crate) fn sqlite_segment(row: &SqliteRow) -> Result<RoadSegment> {
    let node_ids: String = row.col("osm_node_ids")?;
    let coords: String = row.col("coords")?;
    Ok(RoadSegment {
        osm_way_id: row.col("osm_way_id")?,
        piece: piece(row.col("piece")?)?,
        osm_node_ids: serde_json::from_str(&node_ids)
            .map_err(|e| StoreError::Corrupt(format!("road node ids: {e}")))?,
        highway: row.col("highway")?,
        name: row.col("name")?,
        oneway: row.col("oneway")?,
        length_m: row.col("length_m")?,
        points: rows::points_from_json(&coords)?,
    })
}

fn piece(stored: i32) -> Result<u32> {
    u32::try_from(stored).map_err(|_| StoreError::Corrupt(format!("road piece {stored}")))
}
