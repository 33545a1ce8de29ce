//! The Web Mercator tile grid (XYZ scheme, y down from the north): which tiles exist, what they
//! cover, how a lon/lat lands inside one, and which H3 resolution a zoom draws.
//!
//! Owns the geometry of tiles only; what is drawn in them is [`crate::mvt`]'s and
//! [`crate::layers`]'s business.

use std::f64::consts::PI;

/// Side of a tile in MVT coordinates.
pub const EXTENT: u32 = 4096;
/// How far, in tile units, geometry is kept beyond each edge of a tile, so that strokes and
/// fills meet seamlessly across tile edges.
pub const BUFFER: u32 = 64;
/// The deepest zoom served.
pub const MAX_ZOOM: u8 = 22;
/// The latitude where Web Mercator's square world ends (atan(sinh(π)) in degrees).
pub const MAX_LATITUDE: f64 = 85.051_128_779_806_59;

/// A tile `z/x/y` of the Web Mercator grid: `x` from the antimeridian eastwards, `y` from the
/// north southwards, both in `0..2^z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

/// A tile coordinate that names no tile.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TileError {
    #[error("zoom {z} is above the deepest zoom {MAX_ZOOM}")]
    ZoomTooDeep { z: u8 },
    #[error("column x={x} does not exist at zoom {z} (x < {})", 1u64 << z)]
    ColumnOutOfRange { z: u8, x: u32 },
    #[error("row y={y} does not exist at zoom {z} (y < {})", 1u64 << z)]
    RowOutOfRange { z: u8, y: u32 },
}

impl TileId {
    /// The tile `z/x/y`, if the grid has it.
    pub fn new(z: u8, x: u32, y: u32) -> Result<Self, TileError> {
        if z > MAX_ZOOM {
            return Err(TileError::ZoomTooDeep { z });
        }
        let n = 1u32 << z;
        if x >= n {
            return Err(TileError::ColumnOutOfRange { z, x });
        }
        if y >= n {
            return Err(TileError::RowOutOfRange { z, y });
        }
        Ok(Self { z, x, y })
    }

    /// West, south, east, north in degrees (WGS84 lon/lat).
    pub fn bounds(&self) -> [f64; 4] {
        let n = tiles_across(self.z);
        let (x, y) = (f64::from(self.x), f64::from(self.y));
        [
            lon_of(x, n),
            lat_of(y + 1.0, n),
            lon_of(x + 1.0, n),
            lat_of(y, n),
        ]
    }

    /// The same bounds grown by [`BUFFER`] tile units on each side (still degrees), for
    /// selecting what may reach into the tile. Longitudes stop at ±180 (no wrapping); at the
    /// grid's top and bottom rows the box reaches a little past [`MAX_LATITUDE`].
    pub fn buffered_bounds(&self) -> [f64; 4] {
        let n = tiles_across(self.z);
        let b = f64::from(BUFFER) / f64::from(EXTENT);
        let (x, y) = (f64::from(self.x), f64::from(self.y));
        [
            lon_of(x - b, n).max(-180.0),
            lat_of(y + 1.0 + b, n),
            lon_of(x + 1.0 + b, n).min(180.0),
            lat_of(y - b, n),
        ]
    }

    /// Where lon/lat lands in this tile's coordinates: `0..EXTENT` inside the tile, y down.
    /// Unclipped; latitudes beyond ±[`MAX_LATITUDE`] are held at it, so the result is finite
    /// for any finite input.
    pub fn project(&self, lon: f64, lat: f64) -> (f64, f64) {
        Projection::new(*self).project(lon, lat)
    }
}

impl std::fmt::Display for TileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.z, self.x, self.y)
    }
}

/// lon/lat → one tile's coordinates, with the per-tile constants worked out once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Projection {
    /// Tile units per world width (2^z · EXTENT).
    scale: f64,
    /// The tile's north-west corner in world tile units.
    origin_x: f64,
    origin_y: f64,
}

impl Projection {
    pub(crate) fn new(tile: TileId) -> Self {
        let extent = f64::from(EXTENT);
        Self {
            scale: tiles_across(tile.z) * extent,
            origin_x: f64::from(tile.x) * extent,
            origin_y: f64::from(tile.y) * extent,
        }
    }

    pub(crate) fn project(&self, lon: f64, lat: f64) -> (f64, f64) {
        let x = (lon + 180.0) / 360.0 * self.scale - self.origin_x;
        let y = mercator_y(lat) * self.scale - self.origin_y;
        (x, y)
    }
}

/// Web Mercator y of a latitude as a fraction of the world, 0 at the north edge, 1 at the south.
fn mercator_y(lat: f64) -> f64 {
    let phi = lat.clamp(-MAX_LATITUDE, MAX_LATITUDE).to_radians();
    (1.0 - (phi.tan() + 1.0 / phi.cos()).ln() / PI) / 2.0
}

fn tiles_across(z: u8) -> f64 {
    f64::from(1u32 << z.min(31))
}

fn lon_of(x: f64, n: f64) -> f64 {
    x / n * 360.0 - 180.0
}

fn lat_of(y: f64, n: f64) -> f64 {
    (PI * (1.0 - 2.0 * y / n)).sinh().atan().to_degrees()
}

/// The box `[west, south, east, north]` around `(lon, lat)` points (inverted, west > east, when
/// there are none).
pub fn bounds_of(points: impl IntoIterator<Item = (f64, f64)>) -> [f64; 4] {
    points
        .into_iter()
        .fold([180.0, 90.0, -180.0, -90.0], |b, (lon, lat)| {
            [b[0].min(lon), b[1].min(lat), b[2].max(lon), b[3].max(lat)]
        })
}

/// Tiles at zoom `z` that draw something of the box `bbox`: those it intersects, and those whose
/// buffer (BUFFER/EXTENT of a tile beyond each edge) reaches it.
pub fn tiles_drawing(bbox: [f64; 4], z: u8) -> Vec<TileId> {
    let pad = 360.0 / tiles_across(z.min(MAX_ZOOM)) * f64::from(BUFFER) / f64::from(EXTENT);
    tiles_covering(
        [bbox[0] - pad, bbox[1] - pad, bbox[2] + pad, bbox[3] + pad],
        z,
    )
}

/// Tiles at zoom `z` that intersect the box `[west, south, east, north]` (degrees; latitudes
/// clamped to ±[`MAX_LATITUDE`]), row by row from the north, west to east within a row.
///
/// A box edge lying exactly on a tile edge does not pull in the tile beyond it. A box with
/// `west > east` crosses the antimeridian and takes both sides. Nothing for a zoom above
/// [`MAX_ZOOM`] or a box with NaN in it.
pub fn tiles_covering(bbox: [f64; 4], z: u8) -> Vec<TileId> {
    let [west, south, east, north] = bbox;
    if z > MAX_ZOOM || bbox.iter().any(|v| v.is_nan()) {
        return Vec::new();
    }
    let n = tiles_across(z);
    let last = (1u32 << z) - 1;
    let to_index = |v: f64| -> u32 { v.clamp(0.0, f64::from(last)) as u32 };
    let span = |lo: f64, hi: f64| -> (u32, u32) {
        let first = to_index(lo.floor());
        let end = to_index(hi.ceil() - 1.0).max(first);
        (first, end)
    };
    let column = |lon: f64| (lon.clamp(-180.0, 180.0) + 180.0) / 360.0 * n;
    let (north, south) = (north.max(south), south.min(north));
    let (row_first, row_last) = span(mercator_y(north) * n, mercator_y(south) * n);

    let mut columns: Vec<(u32, u32)> = Vec::with_capacity(2);
    if west <= east {
        columns.push(span(column(west), column(east)));
    } else {
        columns.push(span(column(west), n));
        columns.push(span(0.0, column(east)));
    }
    let width: usize = columns.iter().map(|(a, b)| (b - a + 1) as usize).sum();
    let mut tiles = Vec::with_capacity(width * (row_last - row_first + 1) as usize);
    for y in row_first..=row_last {
        for &(first, end) in &columns {
            tiles.extend((first..=end).map(|x| TileId { z, x, y }));
        }
    }
    tiles
}

/// The H3 resolution drawn at zoom `z`: `min(finest, (3z + 4) / 4)`, which keeps hexagons
/// roughly 10–20 px across on screen.
pub fn resolution_for_zoom(z: u8, finest: h3o::Resolution) -> h3o::Resolution {
    let wanted = (3 * u16::from(z) + 4) / 4;
    let finest_u8 = u8::from(finest);
    match u8::try_from(wanted) {
        Ok(r) if r < finest_u8 => h3o::Resolution::try_from(r).unwrap_or(finest),
        _ => finest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use h3o::Resolution;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn zero_zero_zero_is_the_whole_mercator_world() {
        let b = TileId::new(0, 0, 0).unwrap().bounds();
        assert!(close(b[0], -180.0) && close(b[2], 180.0));
        assert!(close(b[1], -MAX_LATITUDE) && close(b[3], MAX_LATITUDE));
    }

    #[test]
    fn one_one_zero_is_the_north_east_quarter() {
        let b = TileId::new(1, 1, 0).unwrap().bounds();
        assert!(close(b[0], 0.0) && close(b[1], 0.0));
        assert!(close(b[2], 180.0) && close(b[3], MAX_LATITUDE));
    }

    #[test]
    fn a_city_tile_has_the_bounds_other_tools_give() {
        // Monaco at z14: 14/8529/5974 (edges worked out from the Web Mercator formulas).
        let b = TileId::new(14, 8529, 5974).unwrap().bounds();
        assert!((b[0] - 7.404_785_156_25).abs() < 1e-9);
        assert!((b[2] - 7.426_757_812_5).abs() < 1e-9);
        assert!((b[1] - 43.723_474_896_114_81).abs() < 1e-9);
        assert!(b[1] < 43.7384 && 43.7384 < b[3]);
    }

    #[test]
    fn tiles_off_the_grid_are_refused_and_say_why() {
        assert_eq!(TileId::new(23, 0, 0), Err(TileError::ZoomTooDeep { z: 23 }));
        assert_eq!(
            TileId::new(1, 2, 0),
            Err(TileError::ColumnOutOfRange { z: 1, x: 2 })
        );
        let err = TileId::new(2, 0, 4).unwrap_err();
        assert_eq!(err, TileError::RowOutOfRange { z: 2, y: 4 });
        assert!(err.to_string().contains("y=4"), "{err}");
        assert!(TileId::new(22, (1 << 22) - 1, (1 << 22) - 1).is_ok());
    }

    #[test]
    fn a_tile_displays_as_z_x_y() {
        assert_eq!(TileId::new(3, 4, 5).unwrap().to_string(), "3/4/5");
    }

    #[test]
    fn corners_project_to_the_tile_corners() {
        let t = TileId::new(14, 8529, 5974).unwrap();
        let [w, s, e, n] = t.bounds();
        let (x0, y0) = t.project(w, n);
        let (x1, y1) = t.project(e, s);
        assert!(x0.abs() < 1e-6 && y0.abs() < 1e-6, "{x0} {y0}");
        assert!((x1 - 4096.0).abs() < 1e-6 && (y1 - 4096.0).abs() < 1e-6);
        let (_, y_pole) = t.project(0.0, 90.0);
        assert!(y_pole.is_finite());
    }

    #[test]
    fn buffered_bounds_reach_buffer_units_beyond_each_edge() {
        let t = TileId::new(10, 530, 370).unwrap();
        let [w, s, e, n] = t.buffered_bounds();
        let (x0, y0) = t.project(w, n);
        let (x1, y1) = t.project(e, s);
        let b = f64::from(BUFFER);
        assert!((x0 + b).abs() < 1e-6 && (y0 + b).abs() < 1e-6);
        assert!((x1 - 4096.0 - b).abs() < 1e-6 && (y1 - 4096.0 - b).abs() < 1e-6);
        let world = TileId::new(0, 0, 0).unwrap().buffered_bounds();
        assert_eq!((world[0], world[2]), (-180.0, 180.0));
    }

    #[test]
    fn covering_a_box_lists_its_tiles_row_by_row() {
        assert_eq!(
            tiles_covering([-180.0, -90.0, 180.0, 90.0], 1),
            vec![
                TileId { z: 1, x: 0, y: 0 },
                TileId { z: 1, x: 1, y: 0 },
                TileId { z: 1, x: 0, y: 1 },
                TileId { z: 1, x: 1, y: 1 },
            ]
        );
        // Touching the prime meridian and the equator does not pull in the neighbours.
        assert_eq!(
            tiles_covering([0.0, 0.0, 180.0, 85.0], 1),
            vec![TileId { z: 1, x: 1, y: 0 }]
        );
        let t = TileId::new(14, 8529, 5974).unwrap();
        assert_eq!(tiles_covering(t.bounds(), 14), vec![t]);
        assert_eq!(
            tiles_covering([7.4246, 43.7384, 7.4246, 43.7384], 14),
            vec![t]
        );
        assert_eq!(tiles_covering([7.41, 43.72, 7.44, 43.76], 14).len(), 2 * 4);
    }

    #[test]
    fn a_box_across_the_antimeridian_takes_both_sides() {
        let tiles = tiles_covering([170.0, -10.0, -170.0, 10.0], 2);
        let columns: Vec<u32> = tiles.iter().map(|t| t.x).collect();
        assert_eq!(columns, vec![3, 0, 3, 0]);
    }

    #[test]
    fn nothing_covers_a_nan_box_or_a_zoom_too_deep() {
        assert!(tiles_covering([f64::NAN, 0.0, 1.0, 1.0], 3).is_empty());
        assert!(tiles_covering([0.0, 0.0, 1.0, 1.0], 23).is_empty());
    }

    #[test]
    fn resolution_follows_zoom_until_the_finest() {
        let table: Vec<u8> = (0..=22)
            .map(|z| u8::from(resolution_for_zoom(z, Resolution::Fifteen)))
            .collect();
        assert_eq!(
            table,
            vec![
                1, 1, 2, 3, 4, 4, 5, 6, 7, 7, 8, 9, 10, 10, 11, 12, 13, 13, 14, 15, 15, 15, 15
            ]
        );
        assert_eq!(
            resolution_for_zoom(16, Resolution::Eleven),
            Resolution::Eleven
        );
        assert_eq!(resolution_for_zoom(0, Resolution::Zero), Resolution::Zero);
        assert_eq!(resolution_for_zoom(12, Resolution::Eleven), Resolution::Ten);
    }
}
