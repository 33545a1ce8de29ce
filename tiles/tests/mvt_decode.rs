//! Tiles from `covermap_tiles::mvt`, read back by an independent decoder (`mvt-reader`): what a
//! map client sees is what was put in, inside the buffer, wound as the spec wants.

#![allow(clippy::unwrap_used, clippy::panic)]

use covermap_tiles::mvt::{Layer, Value, encode};
use covermap_tiles::tile::{BUFFER, EXTENT, TileId, tiles_covering};
use geo_types::{Geometry, LineString, MultiPolygon};
use h3o::{CellIndex, LatLng, Resolution};
use mvt_reader::Reader;
use mvt_reader::feature::{Feature, Value as Decoded};

const MONACO: (f64, f64) = (7.4246, 43.7384);

fn monaco_tile(z: u8) -> TileId {
    tiles_covering([MONACO.0, MONACO.1, MONACO.0, MONACO.1], z)[0]
}

fn cell_at(lon: f64, lat: f64, res: Resolution) -> CellIndex {
    LatLng::new(lat, lon).unwrap().to_cell(res)
}

/// A cell's boundary as (lon, lat), counter-clockwise as H3 gives it, not closed.
fn ring(cell: CellIndex) -> Vec<(f64, f64)> {
    cell.boundary()
        .iter()
        .map(|ll| (ll.lng(), ll.lat()))
        .collect()
}

fn decode(bytes: &[u8]) -> (Vec<mvt_reader::layer::Layer>, Vec<Vec<Feature>>) {
    let reader = Reader::new(bytes.to_vec()).expect("a valid tile");
    let layers = reader.get_layer_metadata().expect("layers");
    let features = (0..layers.len())
        .map(|i| reader.get_features(i).expect("features"))
        .collect();
    (layers, features)
}

fn polygons(feature: &Feature) -> MultiPolygon<f32> {
    match &feature.geometry {
        Geometry::Polygon(p) => MultiPolygon(vec![p.clone()]),
        Geometry::MultiPolygon(mp) => mp.clone(),
        other => panic!("expected a polygon, got {other:?}"),
    }
}

fn points(line: &LineString<f32>) -> Vec<(i64, i64)> {
    line.0.iter().map(|c| (c.x as i64, c.y as i64)).collect()
}

/// Twice the area by the spec's surveyor's formula, over a closed ring as decoded.
fn surveyor_area(ring: &[(i64, i64)]) -> i64 {
    ring.windows(2)
        .map(|w| w[0].0 * w[1].1 - w[1].0 * w[0].1)
        .sum()
}

fn all_coordinates(feature: &Feature) -> Vec<(i64, i64)> {
    match &feature.geometry {
        Geometry::LineString(l) => points(l),
        Geometry::MultiLineString(ml) => ml.0.iter().flat_map(points).collect(),
        Geometry::Polygon(_) | Geometry::MultiPolygon(_) => polygons(feature)
            .0
            .iter()
            .flat_map(|p| {
                let mut c = points(p.exterior());
                c.extend(p.interiors().iter().flat_map(points));
                c
            })
            .collect(),
        other => panic!("unexpected geometry {other:?}"),
    }
}

fn assert_within_buffer(feature: &Feature) {
    let (lo, hi) = (-i64::from(BUFFER), i64::from(EXTENT + BUFFER));
    for (x, y) in all_coordinates(feature) {
        assert!(
            (lo..=hi).contains(&x) && (lo..=hi).contains(&y),
            "({x}, {y}) outside [{lo}, {hi}]"
        );
    }
}

#[test]
fn layers_features_and_properties_come_back_as_written() {
    let tile = monaco_tile(14);
    let cell = cell_at(MONACO.0, MONACO.1, Resolution::Eleven);
    let mut coverage = Layer::new("coverage", tile);
    let cell_id = cell.to_string();
    assert!(coverage.add_polygon(
        Some(u64::from(cell)),
        &[ring(cell)],
        &[
            ("cell", Value::from(cell_id.as_str())),
            ("res", Value::UInt(11)),
            ("freshness", Value::Double(0.5)),
            ("last_seen", Value::Int(-1_700_000_000)),
            ("stale", Value::Bool(false)),
            ("skipped", Value::Double(f64::NAN)),
        ],
    ));
    let neighbour = cell_at(MONACO.0 + 0.001, MONACO.1, Resolution::Eleven);
    let neighbour_id = neighbour.to_string();
    assert!(coverage.add_polygon(
        None,
        &[ring(neighbour)],
        &[
            ("cell", neighbour_id.clone().into()),
            ("res", Value::UInt(11))
        ],
    ));
    let mut roads = Layer::new("roads", tile);
    let road = [
        (MONACO.0 - 0.002, MONACO.1),
        (MONACO.0, MONACO.1 + 0.001),
        (MONACO.0 + 0.002, MONACO.1),
    ];
    assert!(roads.add_line(Some(42), &road, &[("highway", "primary".into())]));
    let empty = Layer::new("demand", tile);

    let (layers, features) = decode(&encode(&[coverage, empty, roads]));

    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["coverage", "roads"], "the empty layer is left out");
    assert!(layers.iter().all(|l| l.extent == EXTENT && l.version == 2));
    assert_eq!(features[0].len(), 2);
    assert_eq!(features[1].len(), 1);

    let hexagon = &features[0][0];
    assert_eq!(hexagon.id, Some(u64::from(cell)));
    let props = hexagon.properties.as_ref().expect("properties");
    assert_eq!(props.len(), 5, "NaN is left out: {props:?}");
    assert_eq!(props["cell"], Decoded::String(cell_id.clone()));
    assert_eq!(
        props["cell"],
        Decoded::String(cell.to_string()),
        "the cell id round-trips exactly"
    );
    assert_eq!(props["res"], Decoded::UInt(11));
    assert_eq!(props["freshness"], Decoded::Double(0.5));
    assert_eq!(props["last_seen"], Decoded::SInt(-1_700_000_000));
    assert_eq!(props["stale"], Decoded::Bool(false));
    let second = features[0][1].properties.as_ref().expect("properties");
    assert_eq!(features[0][1].id, None);
    assert_eq!(second["cell"], Decoded::String(neighbour_id));
    assert_eq!(second["res"], Decoded::UInt(11));

    let road = &features[1][0];
    assert_eq!(road.id, Some(42));
    assert!(matches!(road.geometry, Geometry::LineString(_)));
    let road_props = road.properties.as_ref().expect("properties");
    assert_eq!(road_props["highway"], Decoded::String("primary".into()));
}

#[test]
fn a_real_hexagon_lands_where_its_corners_project_and_winds_clockwise() {
    let tile = monaco_tile(16);
    let cell = cell_at(MONACO.0, MONACO.1, Resolution::Eleven);
    let mut layer = Layer::new("coverage", tile);
    assert!(layer.add_polygon(None, &[ring(cell)], &[]));
    let (_, features) = decode(&encode(&[layer]));
    let polygon = polygons(&features[0][0]);
    assert_eq!(polygon.0.len(), 1);
    let exterior = points(polygon.0[0].exterior());
    assert_eq!(exterior.len(), 7, "six corners and the closing one");
    assert_eq!(exterior.first(), exterior.last());
    assert!(
        surveyor_area(&exterior) > 0,
        "exterior ring must be positive by the spec's formula"
    );

    let projected: Vec<(f64, f64)> = ring(cell)
        .iter()
        .map(|&(lon, lat)| tile.project(lon, lat))
        .collect();
    for &(x, y) in &exterior[..6] {
        let nearest = projected
            .iter()
            .map(|&(px, py)| ((px - x as f64).powi(2) + (py - y as f64).powi(2)).sqrt())
            .fold(f64::INFINITY, f64::min);
        assert!(nearest <= 0.75, "({x}, {y}) is {nearest} from any corner");
    }
    // And every projected corner is there, so the hexagon is whole.
    for &(px, py) in &projected {
        let found = exterior[..6]
            .iter()
            .any(|&(x, y)| (px - x as f64).abs() <= 0.5 && (py - y as f64).abs() <= 0.5);
        assert!(found, "corner ({px}, {py}) missing");
    }
}

#[test]
fn a_hole_comes_back_negative_and_the_exterior_positive() {
    let tile = monaco_tile(14);
    let [w, s, e, n] = tile.bounds();
    let (dx, dy) = ((e - w) / 10.0, (n - s) / 10.0);
    // Both rings given the "wrong" way round for y-down tile space.
    let exterior = vec![
        (w + dx, s + dy),
        (e - dx, s + dy),
        (e - dx, n - dy),
        (w + dx, n - dy),
        (w + dx, s + dy),
    ];
    let hole = vec![
        (w + 3.0 * dx, s + 3.0 * dy),
        (w + 3.0 * dx, n - 3.0 * dy),
        (e - 3.0 * dx, n - 3.0 * dy),
        (e - 3.0 * dx, s + 3.0 * dy),
    ];
    let mut layer = Layer::new("parks", tile);
    assert!(layer.add_polygon(Some(1), &[exterior, hole], &[]));
    let (_, features) = decode(&encode(&[layer]));
    let polygon = polygons(&features[0][0]);
    assert_eq!(polygon.0.len(), 1, "one polygon with a hole, not two");
    assert!(surveyor_area(&points(polygon.0[0].exterior())) > 0);
    assert_eq!(polygon.0[0].interiors().len(), 1);
    assert!(surveyor_area(&points(&polygon.0[0].interiors()[0])) < 0);
}

#[test]
fn a_hexagon_across_the_tile_edge_is_clipped_to_the_buffer() {
    let tile = monaco_tile(14);
    let [_, s, e, n] = tile.bounds();
    // A res-8 cell (~500 m across) centred on the tile's east edge: far wider than the buffer.
    let cell = cell_at(e, (s + n) / 2.0, Resolution::Eight);
    let unclipped_max_x = ring(cell)
        .iter()
        .map(|&(lon, lat)| tile.project(lon, lat).0)
        .fold(f64::MIN, f64::max);
    assert!(unclipped_max_x > f64::from(EXTENT + BUFFER) + 10.0);

    let mut layer = Layer::new("coverage", tile);
    assert!(layer.add_polygon(None, &[ring(cell)], &[]));
    let (_, features) = decode(&encode(&[layer]));
    let feature = &features[0][0];
    assert_within_buffer(feature);
    let exterior = points(polygons(feature).0[0].exterior());
    let xs: Vec<i64> = exterior.iter().map(|p| p.0).collect();
    assert_eq!(
        xs.iter().max(),
        Some(&i64::from(EXTENT + BUFFER)),
        "cut at the buffer"
    );
    assert!(*xs.iter().min().expect("points") < i64::from(EXTENT) - 100);
    assert!(surveyor_area(&exterior) > 0);
}

#[test]
fn every_coordinate_stays_within_the_buffer() {
    let tile = monaco_tile(15);
    let [w, s, e, n] = tile.bounds();
    let centre = cell_at((w + e) / 2.0, (s + n) / 2.0, Resolution::Ten);
    let mut layer = Layer::new("coverage", tile);
    let mut added = 0;
    let disk = centre.grid_disk::<Vec<_>>(12);
    for &cell in &disk {
        if layer.add_polygon(
            Some(u64::from(cell)),
            &[ring(cell)],
            &[("cell", cell.to_string().into())],
        ) {
            added += 1;
        }
    }
    // The disk reaches well beyond the tile: some cells are drawn, some dropped.
    assert!(
        added > 40 && added < disk.len(),
        "{added} of {}",
        disk.len()
    );
    let line: Vec<(f64, f64)> = (0..50)
        .map(|i| {
            let t = f64::from(i) / 49.0;
            (
                w - 0.5 * (e - w) + t * 2.0 * (e - w),
                s + (n - s) * (0.5 + 0.6 * (t * 9.0).sin()),
            )
        })
        .collect();
    let mut roads = Layer::new("roads", tile);
    assert!(roads.add_line(None, &line, &[]));

    let (layers, features) = decode(&encode(&[layer, roads]));
    assert_eq!(layers[0].feature_count, added);
    for feature in features.iter().flatten() {
        assert_within_buffer(feature);
    }
    for feature in &features[0] {
        for p in &polygons(feature).0 {
            assert!(surveyor_area(&points(p.exterior())) > 0);
        }
    }
    // The wavy line leaves through the top and bottom and comes back: several pieces.
    assert!(
        matches!(&features[1][0].geometry, Geometry::MultiLineString(ml) if ml.0.len() > 1),
        "{:?}",
        features[1][0].geometry
    );
}

#[test]
fn a_cell_far_away_is_dropped() {
    let tile = monaco_tile(14);
    let paris = cell_at(2.3522, 48.8566, Resolution::Eleven);
    let mut layer = Layer::new("coverage", tile);
    assert!(!layer.add_polygon(None, &[ring(paris)], &[("cell", paris.to_string().into())]));
    assert!(!layer.add_line(None, &[(2.35, 48.85), (2.36, 48.86)], &[]));
    assert!(layer.is_empty());
    assert_eq!(layer.len(), 0);
    assert!(encode(&[layer]).is_empty());
}
