//! The road network, matched stretches, and coverage per cell.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use covermap_domain::{
    BoundingBox, Cell, CellCoverage, CellObserved, MapCellState, MatchedStretch, RoadCell,
    RoadSegment, SegmentRef,
};

use crate::dialect::Columns;
use crate::dialect::micros;
use crate::error::{Result, SqlContext, StoreError};
use crate::rows::OFF_MAP_UPLOADS;
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

    /// What the coverage map shows of `cells` (every cell with observations or road when
    /// `None`), with the road driven in the `window` before `now`; a cell with neither is left
    /// out.
    /// The map's in-process index reads this at start and again for each cell the change feed
    /// reports.
    async fn map_cells(
        &self,
        cells: Option<&[Cell]>,
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<Vec<MapCellState>>;
}

/// Empties the road network.
const CLEAR_ROAD_SEGMENTS: &str = "DELETE FROM road_segments";

/// Empties the road length per cell.
const CLEAR_ROAD_CELLS: &str = "DELETE FROM road_cells";

// Road cells: PostgreSQL writes a chunk of them in one UNNEST of arrays, with the centre as
// `geom`; SQLite writes one row at a time, with the centre as `lat`, `lon`.
const PG_INSERT_ROAD_CELLS: &str = "INSERT INTO road_cells (cell, road_length_m, geom) \
     SELECT c, l, ST_SetSRID(ST_MakePoint(lon, lat), 4326) \
     FROM UNNEST($1::bigint[], $2::float8[], $3::float8[], $4::float8[]) AS t(c, l, lat, lon)";
const SQLITE_INSERT_ROAD_CELL: &str =
    "INSERT INTO road_cells (cell, road_length_m, lat, lon) VALUES ($1, $2, $3, $4)";

// Road segments: PostgreSQL writes a chunk of them in one UNNEST of arrays, node ids as an
// array and the line as geometry (from WKT); SQLite writes one row at a time, node ids and
// coordinates as JSON text, with the line's bounds.
const PG_INSERT_ROAD_SEGMENTS: &str = "INSERT INTO road_segments \
         (osm_way_id, piece, osm_node_ids, highway, name, oneway, length_m, geom) \
     SELECT w, p, ARRAY(SELECT jsonb_array_elements_text(n::jsonb)::bigint), h, nm, o, \
            l, ST_GeomFromText(g, 4326) \
     FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], \
                 $6::bool[], $7::float8[], $8::text[]) AS t(w, p, n, h, nm, o, l, g)";
const SQLITE_INSERT_ROAD_SEGMENT: &str = "INSERT INTO road_segments (osm_way_id, piece, \
         osm_node_ids, highway, name, oneway, length_m, coords, min_lon, min_lat, max_lon, \
         max_lat) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

// The data's extent: PostGIS takes `ST_Extent` of the geometries, of road cells or else of
// observations, in one query; SQLite takes min and max of `lat`, `lon`, in two.
const PG_EXTENT: &str = "WITH roads AS (SELECT ST_Extent(geom) AS e FROM road_cells), \
          seen AS (SELECT ST_Extent(geom) AS e FROM \
                   (SELECT geom FROM cell_observations \
                    UNION ALL SELECT geom FROM radio_observations) g) \
     SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) \
     FROM (SELECT COALESCE((SELECT e FROM roads), (SELECT e FROM seen)) AS e) x";
const SQLITE_ROADS_EXTENT: &str = "SELECT min(lon), min(lat), max(lon), max(lat) FROM road_cells";
const SQLITE_SEEN_EXTENT: &str = "SELECT min(lon), min(lat), max(lon), max(lat) FROM \
     (SELECT lat, lon FROM cell_observations UNION ALL \
      SELECT lat, lon FROM radio_observations)";

// Whether a point lies in the box (west $1, south $2, east $3, north $4): PostGIS tests `geom`
// against it (`&&`, its GiST index), SQLite the `lat`, `lon` columns (their index).
const PG_POINT_IN_BOX: &str = "geom && ST_MakeEnvelope($1, $2, $3, $4, 4326)";
const SQLITE_POINT_IN_BOX: &str = "lat BETWEEN $2 AND $4 AND lon BETWEEN $1 AND $3";

// Whether a road segment meets the box (west $1, south $2, east $3, north $4): PostGIS tests
// `geom` against it (`&&`, its GiST index), SQLite the segment's kept bounds (their index).
const PG_SEGMENT_IN_BOX: &str = "geom && ST_MakeEnvelope($1, $2, $3, $4, 4326)";
const SQLITE_SEGMENT_IN_BOX: &str =
    "min_lon <= $3 AND max_lon >= $1 AND min_lat <= $4 AND max_lat >= $2";

/// Road length of the cells in the box (`in_box`, one of the `…_POINT_IN_BOX`), at most `$5`.
fn road_cells_sql(in_box: &str) -> String {
    format!("SELECT cell, road_length_m FROM road_cells WHERE {in_box} ORDER BY cell LIMIT $5")
}

/// The stretches an upload (`$1`) was matched to, in driving order.
const MATCHED_STRETCHES: &str = "SELECT match_piece, cell, osm_way_id, way_piece, length_m \
     FROM matched_stretches WHERE upload_id = $1 ORDER BY seq";

// Road segments in the box: PostGIS returns the line as GeoJSON from `geom`, SQLite its kept
// `coords` (each read by its own decoder, `pg_segment` and `sqlite_segment`).
const PG_ROADS: &str = "SELECT osm_way_id, piece, osm_node_ids, highway, name, oneway, \
         length_m, ST_AsGeoJSON(geom) AS geojson \
     FROM road_segments WHERE geom && ST_MakeEnvelope($1, $2, $3, $4, 4326) \
     ORDER BY osm_way_id, piece LIMIT $5";
const SQLITE_ROADS: &str = "SELECT osm_way_id, piece, osm_node_ids, highway, name, oneway, \
         length_m, coords \
     FROM road_segments \
     WHERE min_lon <= $3 AND max_lon >= $1 AND min_lat <= $4 AND max_lat >= $2 \
     ORDER BY osm_way_id, piece LIMIT $5";

// Road segments by reference: PostgreSQL binds the references as two arrays (UNNEST) and
// returns the line as GeoJSON; SQLite lists them as `(?, ?)` pairs, a chunk at a time, and
// returns its kept `coords`.
const PG_ROAD_SEGMENTS: &str = "SELECT osm_way_id, piece, osm_node_ids, highway, name, oneway, \
         length_m, ST_AsGeoJSON(geom) AS geojson \
     FROM road_segments \
     WHERE (osm_way_id, piece) IN (SELECT * FROM UNNEST($1::bigint[], $2::int[])) \
     ORDER BY osm_way_id, piece";
fn sqlite_road_segments(refs: usize) -> String {
    let pairs = vec!["(?, ?)"; refs].join(", ");
    format!(
        "SELECT osm_way_id, piece, osm_node_ids, highway, name, oneway, length_m, coords \
         FROM road_segments WHERE (osm_way_id, piece) IN (VALUES {pairs})"
    )
}

/// When each road segment in the box (`in_box`, one of the `…_SEGMENT_IN_BOX`) was last
/// driven, by matched GPS or frames taken on it, unless by a flagged or erased upload; at most
/// `$5`.
fn roads_last_seen_sql(in_box: &str) -> String {
    format!(
        "WITH s AS (SELECT osm_way_id, piece FROM road_segments WHERE {in_box}), \
              seen AS ( \
                SELECT m.osm_way_id, m.way_piece AS piece, co.last_seen AS t \
                FROM s JOIN matched_stretches m \
                  ON m.osm_way_id = s.osm_way_id AND m.way_piece = s.piece \
                JOIN cell_observations co ON co.upload_id = m.upload_id AND co.cell = m.cell \
                WHERE m.upload_id NOT IN {OFF_MAP_UPLOADS} \
                UNION ALL \
                SELECT f.osm_way_id, f.way_piece, f.captured_at \
                FROM s JOIN frames f ON f.osm_way_id = s.osm_way_id AND f.way_piece = s.piece \
                WHERE f.upload_id NOT IN {OFF_MAP_UPLOADS}) \
         SELECT osm_way_id, piece, MAX(t) AS last_seen FROM seen GROUP BY osm_way_id, piece \
         ORDER BY osm_way_id, piece LIMIT $5"
    )
}

/// Coverage of the cells in the box (`in_box`, one of the `…_POINT_IN_BOX`), unless by a
/// flagged or erased upload; at most `$5` cells.
fn coverage_sql(in_box: &str) -> String {
    format!(
        "SELECT cell, CAST(SUM(fixes) AS bigint) AS fixes, COUNT(*) AS uploads, \
                COUNT(DISTINCT device) AS devices, MIN(first_seen) AS first_seen, \
                MAX(last_seen) AS last_seen \
         FROM cell_observations WHERE {in_box} AND upload_id NOT IN {OFF_MAP_UPLOADS} \
         GROUP BY cell ORDER BY cell LIMIT $5"
    )
}

/// The map's figures of the picked cells (`pick`: a condition on `cell`, `$1` the cells when it
/// names them), the road driven by uploads received since `$2`: observations unless by a flagged
/// or erased upload, road length, and per road segment the longest stretch driven, with the
/// oldest such upload (the figure changes when it leaves the window).
fn map_cells_sql(pick: &str, real: &str) -> String {
    format!(
        "WITH picked AS (SELECT cell FROM cell_observations WHERE {pick} \
             UNION SELECT cell FROM road_cells WHERE {pick}), \
         obs AS (SELECT o.cell, CAST(SUM(o.fixes) AS bigint) AS fixes, COUNT(*) AS uploads, \
                COUNT(DISTINCT o.device) AS devices, MAX(o.last_seen) AS last_seen \
             FROM cell_observations o JOIN picked p ON p.cell = o.cell \
             WHERE o.upload_id NOT IN {OFF_MAP_UPLOADS} GROUP BY o.cell), \
         seg AS (SELECT ms.cell, MAX(ms.length_m) AS l, MIN(u.received_at) AS t \
             FROM matched_stretches ms JOIN picked p ON p.cell = ms.cell \
             JOIN uploads u ON u.id = ms.upload_id \
             WHERE u.received_at >= $2 AND u.trust <> 'flagged' AND u.erased_at IS NULL \
             GROUP BY ms.cell, ms.osm_way_id, ms.way_piece), \
         driven AS (SELECT cell, SUM(l) AS driven_m, MIN(t) AS oldest FROM seg GROUP BY cell) \
         SELECT p.cell AS cell, obs.fixes AS fixes, obs.uploads AS uploads, \
             obs.devices AS devices, obs.last_seen AS last_seen, \
             CAST(COALESCE(r.road_length_m, 0) AS {real}) AS road_length_m, \
             CAST(COALESCE(d.driven_m, 0) AS {real}) AS driven_m, d.oldest AS oldest \
         FROM picked p LEFT JOIN obs ON obs.cell = p.cell \
         LEFT JOIN road_cells r ON r.cell = p.cell LEFT JOIN driven d ON d.cell = p.cell"
    )
}

/// The rows of [`map_cells_sql`] with something to show.
fn map_cells_from_rows(
    rows: &[impl Columns],
    window: chrono::Duration,
) -> Result<Vec<MapCellState>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.extend(map_cell_from_row(r, window)?);
    }
    Ok(out)
}

/// A row of [`map_cells_sql`], its drives counted over `window`; `None` for a cell with
/// nothing left to show.
fn map_cell_from_row(r: &impl Columns, window: chrono::Duration) -> Result<Option<MapCellState>> {
    let observed = match r.opt_time("last_seen")? {
        Some(last_seen) => Some(CellObserved {
            fixes: r.col::<Option<i64>>("fixes")?.unwrap_or(0),
            uploads: r.col::<Option<i64>>("uploads")?.unwrap_or(0),
            devices: r.col::<Option<i64>>("devices")?.unwrap_or(0),
            last_seen,
        }),
        None => None,
    };
    let road_length_m: f64 = r.col("road_length_m")?;
    let driven_m: f64 = r.col("driven_m")?;
    if observed.is_none() && road_length_m <= 0.0 && driven_m <= 0.0 {
        return Ok(None);
    }
    Ok(Some(MapCellState {
        cell: Cell::from_i64(r.col("cell")?)?,
        observed,
        road_length_m,
        driven_m,
        driven_until: r.opt_time("oldest")?.map(|t| t + window),
    }))
}

/// A `matched_stretches` row.
fn stretch_from_row(r: &impl Columns) -> Result<MatchedStretch> {
    rows::stretch(
        i64::from(r.col::<i32>("match_piece")?),
        r.col("cell")?,
        r.col("osm_way_id")?,
        i64::from(r.col::<i32>("way_piece")?),
        r.col("length_m")?,
    )
}

/// When a road segment was last driven: `osm_way_id`, `piece`, `last_seen`.
fn segment_seen_from_row(r: &impl Columns) -> Result<SegmentSeen> {
    Ok(SegmentSeen {
        osm_way_id: r.col("osm_way_id")?,
        piece: piece(r.col("piece")?)?,
        last_seen: r.time("last_seen")?,
    })
}

/// A cell's coverage: `cell`, `fixes`, `uploads`, `devices`, `first_seen`, `last_seen`.
fn coverage_from_row(r: &impl Columns) -> Result<CellCoverage> {
    Ok(CellCoverage {
        cell: Cell::from_i64(r.col("cell")?)?,
        fixes: r.col("fixes")?,
        uploads: r.col("uploads")?,
        devices: r.col("devices")?,
        first_seen: r.time("first_seen")?,
        last_seen: r.time("last_seen")?,
    })
}

#[async_trait]
impl Roads for PgStore {
    async fn replace_roads(&self, segments: &[RoadSegment], cells: &[RoadCell]) -> Result<u64> {
        let mut tx = self.pool.begin().await.ctx("starting a transaction")?;
        sqlx::query(CLEAR_ROAD_SEGMENTS)
            .execute(&mut *tx)
            .await
            .ctx("clearing the road network")?;
        sqlx::query(CLEAR_ROAD_CELLS)
            .execute(&mut *tx)
            .await
            .ctx("clearing road cells")?;
        for chunk in cells.chunks(20_000) {
            let centers: Vec<_> = chunk.iter().map(|c| c.cell.center()).collect();
            sqlx::query(PG_INSERT_ROAD_CELLS)
                .bind(chunk.iter().map(|c| c.cell.as_i64()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|c| c.road_length_m).collect::<Vec<_>>())
                .bind(centers.iter().map(|p| p.lat).collect::<Vec<_>>())
                .bind(centers.iter().map(|p| p.lon).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .ctx("writing road cells")?;
        }
        for chunk in segments.chunks(5000) {
            sqlx::query(PG_INSERT_ROAD_SEGMENTS)
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
        let row: (Option<f64>, Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(PG_EXTENT)
            .fetch_one(&self.pool)
            .await
            .ctx("reading the data's extent")?;
        Ok(rows::extent(row))
    }

    async fn road_cells(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadCell>> {
        let rows: Vec<(i64, f64)> = sqlx::query_as(&road_cells_sql(PG_POINT_IN_BOX))
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
        let rows = sqlx::query(MATCHED_STRETCHES)
            .bind(upload_id)
            .fetch_all(&self.pool)
            .await
            .ctx("reading matched stretches")?;
        rows.iter().map(stretch_from_row).collect()
    }

    async fn roads(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadSegment>> {
        let rows = sqlx::query(PG_ROADS)
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
        let rows = sqlx::query(PG_ROAD_SEGMENTS)
            .bind(refs.iter().map(|r| r.osm_way_id).collect::<Vec<_>>())
            .bind(refs.iter().map(|r| r.way_piece as i32).collect::<Vec<_>>())
            .fetch_all(&self.pool)
            .await
            .ctx("reading road segments by reference")?;
        rows.iter().map(pg_segment).collect()
    }

    async fn roads_last_seen(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<SegmentSeen>> {
        let rows = sqlx::query(&roads_last_seen_sql(PG_SEGMENT_IN_BOX))
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading when roads were last driven")?;
        rows.iter().map(segment_seen_from_row).collect()
    }

    async fn coverage(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<CellCoverage>> {
        let rows = sqlx::query(&coverage_sql(PG_POINT_IN_BOX))
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading coverage")?;
        rows.iter().map(coverage_from_row).collect()
    }

    async fn map_cells(
        &self,
        cells: Option<&[Cell]>,
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<Vec<MapCellState>> {
        let coverage_since = now - window;
        let ids: Option<Vec<i64>> = cells.map(|c| c.iter().map(|c| c.as_i64()).collect());
        let pick = if ids.is_some() {
            "cell = ANY($1::bigint[])"
        } else {
            "$1::bigint[] IS NULL"
        };
        let rows = sqlx::query(&map_cells_sql(pick, "float8"))
            .bind(ids)
            .bind(coverage_since)
            .fetch_all(&self.pool)
            .await
            .ctx("reading the map's cells")?;
        map_cells_from_rows(&rows, window)
    }
}

#[async_trait]
impl Roads for SqliteStore {
    async fn replace_roads(&self, segments: &[RoadSegment], cells: &[RoadCell]) -> Result<u64> {
        let mut tx = self.write().await?;
        sqlx::query(CLEAR_ROAD_SEGMENTS)
            .execute(&mut *tx)
            .await
            .ctx("clearing the road network")?;
        sqlx::query(CLEAR_ROAD_CELLS)
            .execute(&mut *tx)
            .await
            .ctx("clearing road cells")?;
        for c in cells {
            let center = c.cell.center();
            sqlx::query(SQLITE_INSERT_ROAD_CELL)
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
            sqlx::query(SQLITE_INSERT_ROAD_SEGMENT)
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
            sqlx::query_as(SQLITE_ROADS_EXTENT)
                .fetch_one(&self.pool)
                .await
                .ctx("reading the road network's extent")?;
        if roads.0.is_some() {
            return Ok(rows::extent(roads));
        }
        let seen = sqlx::query_as(SQLITE_SEEN_EXTENT)
            .fetch_one(&self.pool)
            .await
            .ctx("reading the observations' extent")?;
        Ok(rows::extent(seen))
    }

    async fn road_cells(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadCell>> {
        let rows: Vec<(i64, f64)> = sqlx::query_as(&road_cells_sql(SQLITE_POINT_IN_BOX))
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
        let rows = sqlx::query(MATCHED_STRETCHES)
            .bind(upload_id)
            .fetch_all(&self.pool)
            .await
            .ctx("reading matched stretches")?;
        rows.iter().map(stretch_from_row).collect()
    }

    async fn roads(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<RoadSegment>> {
        let rows = sqlx::query(SQLITE_ROADS)
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
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
            let sql = sqlite_road_segments(chunk.len());
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
        let rows = sqlx::query(&roads_last_seen_sql(SQLITE_SEGMENT_IN_BOX))
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading when roads were last driven")?;
        rows.iter().map(segment_seen_from_row).collect()
    }

    async fn coverage(&self, bbox: BoundingBox, limit: i64) -> Result<Vec<CellCoverage>> {
        let rows = sqlx::query(&coverage_sql(SQLITE_POINT_IN_BOX))
            .bind(bbox.west)
            .bind(bbox.south)
            .bind(bbox.east)
            .bind(bbox.north)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("reading coverage")?;
        rows.iter().map(coverage_from_row).collect()
    }

    async fn map_cells(
        &self,
        cells: Option<&[Cell]>,
        now: DateTime<Utc>,
        window: chrono::Duration,
    ) -> Result<Vec<MapCellState>> {
        let coverage_since = now - window;
        let ids: Option<String> = cells.map(|c| {
            serde_json::Value::from(c.iter().map(|c| c.as_i64()).collect::<Vec<_>>()).to_string()
        });
        let pick = if ids.is_some() {
            "cell IN (SELECT value FROM json_each($1))"
        } else {
            "$1 IS NULL"
        };
        let rows = sqlx::query(&map_cells_sql(pick, "REAL"))
            .bind(ids)
            .bind(micros(coverage_since))
            .fetch_all(&self.pool)
            .await
            .ctx("reading the map's cells")?;
        map_cells_from_rows(&rows, window)
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
