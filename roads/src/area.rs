//! Areas drawn on the map (a planner's demand area): a GeoJSON Polygon or MultiPolygon, checked,
//! and the H3 cells whose centres it holds.

use std::collections::BTreeSet;

use covermap_domain::Cell;
use h3o::{LatLng, Resolution};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum AreaError {
    #[error("the area must be a GeoJSON Polygon or MultiPolygon geometry: {0}")]
    Shape(String),
    #[error("the area's coordinates are invalid: {0}")]
    Coordinates(String),
    #[error("the area holds more than {max} cells; draw a smaller one")]
    TooLarge { max: usize },
    #[error("the area holds no cell centre; draw a larger one")]
    Empty,
}

/// One polygon: its outer ring, then holes; each ring closed, (lon, lat) pairs.
type Rings = Vec<Vec<(f64, f64)>>;

/// A checked area.
#[derive(Debug, Clone, PartialEq)]
pub struct Area {
    polygons: Vec<Rings>,
}

impl Area {
    /// Reads a GeoJSON geometry object (a Feature's `geometry`, not the Feature).
    pub fn from_geojson(v: &serde_json::Value) -> Result<Self, AreaError> {
        let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let coords = v
            .get("coordinates")
            .ok_or_else(|| AreaError::Shape("no \"coordinates\"".into()))?;
        let polygons = match kind {
            "Polygon" => vec![rings(coords)?],
            "MultiPolygon" => coords
                .as_array()
                .ok_or_else(|| AreaError::Shape("MultiPolygon coordinates are not a list".into()))?
                .iter()
                .map(rings)
                .collect::<Result<_, _>>()?,
            other => {
                return Err(AreaError::Shape(format!("type {other:?}")));
            }
        };
        if polygons.is_empty() {
            return Err(AreaError::Shape("no polygon".into()));
        }
        Ok(Self { polygons })
    }

    /// Whether (lon, lat) lies inside: in some polygon's outer ring and none of its holes
    /// (even–odd rule on each ring).
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        self.polygons.iter().any(|p| {
            ring_contains(&p[0], lon, lat) && !p[1..].iter().any(|h| ring_contains(h, lon, lat))
        })
    }

    /// The cells at `resolution` whose centres lie inside, in order; at most `max`.
    ///
    /// The bounding box is sampled every half edge length: a hexagon's inscribed circle
    /// (radius √3/2 of its edge) always holds a sample, so no cell with its centre in the box is
    /// missed.
    pub fn cells(&self, resolution: Resolution, max: usize) -> Result<Vec<Cell>, AreaError> {
        let (mut west, mut south, mut east, mut north) = (180.0f64, 90.0f64, -180.0f64, -90.0f64);
        for (lon, lat) in self.polygons.iter().flat_map(|p| p[0].iter()) {
            west = west.min(*lon);
            east = east.max(*lon);
            south = south.min(*lat);
            north = north.max(*lat);
        }
        let step_m = resolution.edge_length_m() / 2.0;
        let dlat = step_m / 111_195.0;
        let coslat = south.abs().max(north.abs()).to_radians().cos().max(0.01);
        let dlon = dlat / coslat;
        let rows = ((north - south) / dlat).ceil() as usize + 3;
        let cols = ((east - west) / dlon).ceil() as usize + 3;
        // A box this big holds far more than `max` cells whatever its shape.
        if rows.saturating_mul(cols) > max.saturating_mul(64).max(10_000) {
            return Err(AreaError::TooLarge { max });
        }
        let mut seen = BTreeSet::new();
        for r in 0..rows {
            let lat = (south - dlat + r as f64 * dlat).clamp(-90.0, 90.0);
            for c in 0..cols {
                let lon = (west - dlon + c as f64 * dlon).clamp(-180.0, 180.0);
                if let Ok(ll) = LatLng::new(lat, lon) {
                    seen.insert(ll.to_cell(resolution));
                }
            }
        }
        let mut out = Vec::new();
        for cell in seen {
            let center = LatLng::from(cell);
            if self.contains(center.lng(), center.lat()) {
                out.push(Cell(cell));
                if out.len() > max {
                    return Err(AreaError::TooLarge { max });
                }
            }
        }
        if out.is_empty() {
            return Err(AreaError::Empty);
        }
        Ok(out)
    }
}

fn rings(v: &serde_json::Value) -> Result<Rings, AreaError> {
    let list = v
        .as_array()
        .ok_or_else(|| AreaError::Shape("Polygon coordinates are not a list of rings".into()))?;
    if list.is_empty() {
        return Err(AreaError::Shape("a polygon has no ring".into()));
    }
    list.iter().map(ring).collect()
}

fn ring(v: &serde_json::Value) -> Result<Vec<(f64, f64)>, AreaError> {
    let points = v
        .as_array()
        .ok_or_else(|| AreaError::Shape("a ring is not a list of positions".into()))?;
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        let pair = p.as_array().filter(|a| a.len() >= 2).ok_or_else(|| {
            AreaError::Coordinates("a position is not a [longitude, latitude] pair".into())
        })?;
        let (Some(lon), Some(lat)) = (pair[0].as_f64(), pair[1].as_f64()) else {
            return Err(AreaError::Coordinates(
                "a position holds something other than numbers".into(),
            ));
        };
        let valid = lon.is_finite()
            && lat.is_finite()
            && (-180.0..=180.0).contains(&lon)
            && (-90.0..=90.0).contains(&lat);
        if !valid {
            return Err(AreaError::Coordinates(format!(
                "[{lon}, {lat}] is not a longitude, latitude pair"
            )));
        }
        out.push((lon, lat));
    }
    if out.first() != out.last() {
        return Err(AreaError::Coordinates(
            "a ring must end where it starts (RFC 7946)".into(),
        ));
    }
    if out.len() < 4 {
        return Err(AreaError::Coordinates(
            "a ring needs at least four positions".into(),
        ));
    }
    Ok(out)
}

fn ring_contains(ring: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inside = false;
    for w in ring.windows(2) {
        let ((x1, y1), (x2, y2)) = (w[0], w[1]);
        if (y1 > y) != (y2 > y) && x < (x2 - x1) * (y - y1) / (y2 - y1) + x1 {
            inside = !inside;
        }
    }
    inside
}

/// A cell's centre, for callers that place cells.
pub fn center(cell: Cell) -> (f64, f64) {
    let ll = LatLng::from(cell.0);
    (ll.lng(), ll.lat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn square(w: f64, s: f64, e: f64, n: f64) -> serde_json::Value {
        json!({"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]})
    }

    #[test]
    fn a_block_of_monaco_holds_the_cells_its_area_says() {
        // About 330 m × 400 m: 0.13 km² over res-11 cells of ~2,150 m² → about 60 cells.
        let area = Area::from_geojson(&square(7.420, 43.730, 7.424, 43.7336)).unwrap();
        let cells = area.cells(Resolution::Eleven, 10_000).unwrap();
        assert!((45..=80).contains(&cells.len()), "{}", cells.len());
        for c in &cells {
            let (lon, lat) = center(*c);
            assert!(area.contains(lon, lat));
        }
        // Every cell whose centre is inside is there: compare with a fine scan of the box.
        let mut fine = BTreeSet::new();
        for i in 0..200 {
            for j in 0..200 {
                let ll = LatLng::new(
                    43.730 + 0.0036 * f64::from(i) / 199.0,
                    7.420 + 0.004 * f64::from(j) / 199.0,
                )
                .unwrap();
                let c = ll.to_cell(Resolution::Eleven);
                let centre = LatLng::from(c);
                if area.contains(centre.lng(), centre.lat()) {
                    fine.insert(Cell(c));
                }
            }
        }
        assert_eq!(cells.iter().copied().collect::<BTreeSet<_>>(), fine);
    }

    #[test]
    fn holes_are_left_out() {
        let with_hole = json!({"type": "Polygon", "coordinates": [
            [[7.40, 43.72], [7.44, 43.72], [7.44, 43.75], [7.40, 43.75], [7.40, 43.72]],
            [[7.41, 43.73], [7.43, 43.73], [7.43, 43.74], [7.41, 43.74], [7.41, 43.73]]
        ]});
        let a = Area::from_geojson(&with_hole).unwrap();
        assert!(a.contains(7.405, 43.725));
        assert!(!a.contains(7.42, 43.735));
    }

    #[test]
    fn bad_areas_are_refused_with_the_reason() {
        let e = |v| Area::from_geojson(&v).unwrap_err();
        assert!(matches!(
            e(json!({"type": "Point", "coordinates": [1, 2]})),
            AreaError::Shape(_)
        ));
        assert!(matches!(
            e(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]})),
            AreaError::Coordinates(_)
        ));
        assert!(matches!(
            e(json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 95], [0, 0]]]})),
            AreaError::Coordinates(_)
        ));
        let huge = Area::from_geojson(&square(0.0, 0.0, 10.0, 10.0)).unwrap();
        assert_eq!(
            huge.cells(Resolution::Eleven, 100_000),
            Err(AreaError::TooLarge { max: 100_000 })
        );
        let tiny = Area::from_geojson(&square(7.42, 43.73, 7.42001, 43.73001)).unwrap();
        assert_eq!(tiny.cells(Resolution::Eleven, 100), Err(AreaError::Empty));
    }
}
