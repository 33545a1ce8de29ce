//! Vector tiles end to end on the real binary, on both storage backends: Monaco's real roads as
//! the roads layer, an upload that shows as coverage hexagons within seconds (the cache drops the
//! tiles under the cells it changed), radio from a real geosubmit, a planner's demand area in the
//! demand layer, TileJSON, gzip, entity tags, bad tile paths, and `covermap tiles export` read
//! back as a PMTiles archive. Tiles are decoded by an independent MVT decoder (mvt-reader).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::*;
use mvt_reader::feature::Value as MvtValue;
use serde_json::{Value, json};

const EXTENT: f32 = 4096.0;
const BUFFER: f32 = 64.0;

/// The tile at zoom `z` holding (lat, lon).
fn tile_at(lat: f64, lon: f64, z: u8) -> (u8, u32, u32) {
    let t = covermap_tiles::tile::tiles_covering([lon, lat, lon, lat], z)[0];
    (t.z, t.x, t.y)
}

struct Decoded {
    layer: String,
    features: Vec<mvt_reader::feature::Feature>,
}

fn decode(bytes: &[u8]) -> Vec<Decoded> {
    let reader = mvt_reader::Reader::new(bytes.to_vec()).unwrap();
    let names = reader.get_layer_names().unwrap();
    names
        .into_iter()
        .enumerate()
        .map(|(i, layer)| Decoded {
            layer,
            features: reader.get_features(i).unwrap(),
        })
        .collect()
}

fn prop<'a>(f: &'a mvt_reader::feature::Feature, key: &str) -> Option<&'a MvtValue> {
    f.properties.as_ref().and_then(|p| p.get(key))
}

fn prop_str(f: &mvt_reader::feature::Feature, key: &str) -> Option<String> {
    match prop(f, key) {
        Some(MvtValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Twice the signed area of a ring by the MVT spec's surveyor's formula (tile coordinates).
fn area2(ring: &geo_types::LineString<f32>) -> f64 {
    ring.0
        .windows(2)
        .map(|w| f64::from(w[0].x) * f64::from(w[1].y) - f64::from(w[1].x) * f64::from(w[0].y))
        .sum()
}

/// Checks every hexagon of a decoded tile: in the buffered extent, exterior ring wound as the
/// spec wants, its cell id a string that parses as an H3 cell at `res`. Returns the cell ids.
fn check_hexagons(layers: &[Decoded], name: &str, res: u8) -> Vec<String> {
    let layer = layers
        .iter()
        .find(|l| l.layer == name)
        .unwrap_or_else(|| panic!("no layer {name} in the tile"));
    let mut cells = Vec::new();
    for f in &layer.features {
        let polys: Vec<&geo_types::Polygon<f32>> = match &f.geometry {
            geo_types::Geometry::Polygon(p) => vec![p],
            geo_types::Geometry::MultiPolygon(mp) => mp.0.iter().collect(),
            g => panic!("a hexagon is a polygon, not {g:?}"),
        };
        for p in polys {
            for c in &p.exterior().0 {
                assert!(
                    (-BUFFER..=EXTENT + BUFFER).contains(&c.x)
                        && (-BUFFER..=EXTENT + BUFFER).contains(&c.y),
                    "vertex {c:?} outside the buffered tile"
                );
            }
            assert!(
                area2(p.exterior()) > 0.0,
                "exterior ring wound clockwise in tile space (positive area), got {}",
                area2(p.exterior())
            );
        }
        let id = prop_str(f, "cell").expect("every hexagon names its cell as a string");
        let cell: h3o::CellIndex = id.parse().unwrap();
        assert_eq!(
            u8::from(cell.resolution()),
            res,
            "cell {id} at the zoom's resolution"
        );
        assert_eq!(
            f.id, None,
            "no numeric id (JavaScript would round it): the cell property is the id"
        );
        cells.push(id);
    }
    cells
}

async fn get_tile(
    client: &reqwest::Client,
    base: &str,
    layer: &str,
    (z, x, y): (u8, u32, u32),
) -> (u16, Vec<u8>, reqwest::header::HeaderMap) {
    let r = client
        .get(format!("{base}/tiles/{layer}/{z}/{x}/{y}"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.unwrap().to_vec();
    let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body
    };
    (status, body, headers)
}

async fn tiles_end_to_end(db: Db) {
    db.import_roads("roads/monaco.osm.pbf");
    let server = serve(&db, &[]);
    let client = reqwest::Client::builder().no_gzip().build().unwrap();
    let base = server.base.as_str();
    let keys = access(&db, &server, &client).await;

    // TileJSON 3.0 for each layer, its template pointing back at this server.
    for layer in ["coverage", "radio", "demand", "roads"] {
        let tj = get_json(&client, &format!("{base}/tiles/{layer}.json")).await;
        assert_eq!(tj["tilejson"], "3.0.0");
        assert_eq!(
            tj["tiles"][0],
            format!("{base}/tiles/{layer}/{{z}}/{{x}}/{{y}}")
        );
        assert_eq!(tj["vector_layers"][0]["id"], layer);
        assert!(tj["vector_layers"][0]["fields"].as_object().unwrap().len() >= 4);
    }

    // Roads: Monaco's real network, as lines with their class.
    let (lat, lon) = (43.7384, 7.4246);
    let z14 = tile_at(lat, lon, 14);
    let (s, body, headers) = get_tile(&client, base, "roads", z14).await;
    assert_eq!(s, 200);
    assert_eq!(
        headers["content-type"],
        "application/vnd.mapbox-vector-tile"
    );
    assert_eq!(headers["content-encoding"], "gzip");
    let layers = decode(&body);
    assert_eq!(layers.len(), 1);
    let roads = &layers[0];
    assert_eq!(roads.layer, "roads");
    assert!(roads.features.len() > 50, "{} roads", roads.features.len());
    assert!(roads.features.iter().all(|f| matches!(
        f.geometry,
        geo_types::Geometry::LineString(_) | geo_types::Geometry::MultiLineString(_)
    )));
    assert!(
        roads
            .features
            .iter()
            .all(|f| prop_str(f, "highway").is_some())
    );
    assert!(
        roads
            .features
            .iter()
            .all(|f| prop(f, "last_seen").is_none()),
        "nobody has driven yet"
    );

    // Without Accept-Encoding the same tile comes raw; with its tag, 304.
    let r = client
        .get(format!("{base}/tiles/roads/{}/{}/{}", z14.0, z14.1, z14.2))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    let etag = r.headers()["etag"].clone();
    let etag_raw = etag.clone();
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    let r = client
        .get(format!("{base}/tiles/roads/{}/{}/{}", z14.0, z14.1, z14.2))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // The gzip body is another representation, with its own tag.
    let gz_tag = headers["etag"].clone();
    assert_ne!(gz_tag, etag_raw);
    let r = client
        .get(format!("{base}/tiles/roads/{}/{}/{}", z14.0, z14.1, z14.2))
        .header("accept-encoding", "gzip")
        .header(
            "if-none-match",
            format!("\"other\", {}", gz_tag.to_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // Coverage before any upload: nothing; the empty tile is cached.
    let z16 = tile_at(lat, lon, 16);
    let (s, _, h) = get_tile(&client, base, "coverage", z16).await;
    assert_eq!(s, 204);
    let (_, _, h2) = get_tile(&client, base, "coverage", z16).await;
    // So is a parent zoom's: a change must drop the tiles of every zoom over it.
    let z12 = tile_at(lat, lon, 12);
    assert_eq!(get_tile(&client, base, "coverage", z12).await.0, 204);
    assert_eq!(
        (
            h["x-tile-cache"].to_str().unwrap(),
            h2["x-tile-cache"].to_str().unwrap()
        ),
        ("miss", "hit")
    );

    // A drive along Monaco's streets: its hexagons show within seconds, though the empty tile
    // was cached (the cache lasts a minute otherwise).
    let t0 = Utc::now() - chrono::Duration::minutes(30);
    let (s, r) = post_signed(
        &client,
        &keys.signer,
        base,
        "/api/v1/uploads/gpx",
        road_gpx("roads/monaco.osm.pbf", lat, lon, t0, 40),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    let id = r["upload_id"].as_i64().unwrap();
    processed(&client, base, &keys.admin, id).await;
    let started = Instant::now();
    let cells = loop {
        let (s, body, _) = get_tile(&client, base, "coverage", z16).await;
        if s == 200 {
            break check_hexagons(&decode(&body), "coverage", 11);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the upload's cells never reached the cached tile"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!cells.is_empty());
    let coverage = get_json(&client, &format!("{base}/api/v1/coverage")).await;
    let stored: Vec<&str> = coverage["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["cell"].as_str().unwrap())
        .collect();
    assert!(
        cells.iter().all(|c| stored.contains(&c.as_str())),
        "every hexagon is a covered cell"
    );
    let (_, body, _) = get_tile(&client, base, "coverage", z16).await;
    let layers = decode(&body);
    let f = &layers[0].features[0];
    for key in [
        "last_seen",
        "freshness",
        "observations",
        "uploads",
        "contributors",
    ] {
        assert!(prop(f, key).is_some(), "coverage hexagons carry {key}");
    }
    match prop(f, "freshness") {
        Some(MvtValue::Float(v)) => assert!(*v > 0.9, "30 minutes old is fresh: {v}"),
        v => panic!("freshness {v:?}"),
    }

    // At zoom 12 the same cells are summed into parents at resolution 10 (that tile was cached
    // empty before the upload).
    let (s, body, _) = get_tile(&client, base, "coverage", z12).await;
    assert_eq!(s, 200);
    let parents = check_hexagons(&decode(&body), "coverage", 10);
    assert!(parents.len() <= cells.len() && !parents.is_empty());

    // The drive was matched to roads: some road in the tile now has a last-seen time.
    let seen_by = Instant::now();
    loop {
        let (_, body, _) = get_tile(&client, base, "roads", z14).await;
        let layers = decode(&body);
        if layers[0]
            .features
            .iter()
            .any(|f| prop(f, "last_seen").is_some())
        {
            break;
        }
        assert!(
            seen_by.elapsed() < Duration::from_secs(30),
            "no road shows as driven"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Radio: the Ichnaea documentation's real geosubmit, where it was measured.
    let geosubmit = std::fs::read(shared(
        "radio/geosubmit/ichnaea_geosubmit2_doc_example.json",
    ))
    .unwrap();
    let doc: Value = serde_json::from_slice(&geosubmit).unwrap();
    let pos = &doc["items"][0]["position"];
    let (rlat, rlon) = (
        pos["latitude"].as_f64().unwrap(),
        pos["longitude"].as_f64().unwrap(),
    );
    let r = client
        .post(format!("{base}/v2/geosubmit?key={}", keys.device_key))
        .body(geosubmit)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let rz = tile_at(rlat, rlon, 15);
    let radio_by = Instant::now();
    let radio = loop {
        let (s, body, _) = get_tile(&client, base, "radio", rz).await;
        if s == 200 {
            break decode(&body);
        }
        assert!(
            radio_by.elapsed() < Duration::from_secs(60),
            "no radio hexagon"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    check_hexagons(&radio, "radio", 11);
    let f = &radio[0].features[0];
    assert!(prop(f, "observations").is_some());
    let techs: Vec<&String> = f
        .properties
        .as_ref()
        .unwrap()
        .keys()
        .filter(|k| k.ends_with("_samples"))
        .collect();
    assert!(
        !techs.is_empty(),
        "per-technology statistics: {:?}",
        f.properties
    );

    // Demand: a planner's bounty over the drive shows in the demand layer at once — in this
    // server, and in a second one on the same database that cached the tile before (it reads the
    // database's change feed, not its own clock, so it drops the tile within a second or two,
    // not at the minute's TTL).
    let other = serve(&db, &[]);
    let (_, theirs_before, _) = get_tile(&client, &other.base, "demand", z16).await;
    let (_, _, h) = get_tile(&client, &other.base, "demand", z16).await;
    assert_eq!(h["x-tile-cache"], "hit");
    let ring = json!([[
        [lon - 0.003, lat - 0.003],
        [lon + 0.003, lat - 0.003],
        [lon + 0.003, lat + 0.003],
        [lon - 0.003, lat + 0.003],
        [lon - 0.003, lat - 0.003]
    ]]);
    let (_, before, _) = get_tile(&client, base, "demand", z16).await;
    let r = client
        .post(format!("{base}/api/v1/demand"))
        .bearer_auth(&keys.planner)
        .json(
            &json!({"name": "casino", "polygon": {"type": "Polygon", "coordinates": ring},
                      "weight": 3.0, "budget": 1000,
                      "expires_at": Utc::now() + chrono::Duration::days(7)}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (s, body, _) = get_tile(&client, base, "demand", z16).await;
    assert_eq!(s, 200);
    assert_ne!(body, before, "the demand tile was rendered again");
    let demand = decode(&body);
    check_hexagons(&demand, "demand", 11);
    let weights: Vec<f64> = demand[0]
        .features
        .iter()
        .filter_map(|f| match prop(f, "weight") {
            Some(MvtValue::Double(w)) => Some(*w),
            _ => None,
        })
        .collect();
    assert!(weights.iter().any(|w| *w > 1.0), "{weights:?}");
    assert!(demand[0].features.iter().any(
        |f| matches!(prop(f, "open_bounties"), Some(MvtValue::SInt(n) | MvtValue::Int(n)) if *n > 0)
    ));
    let asked = std::time::Instant::now();
    let theirs = loop {
        let (_, body, h) = get_tile(&client, &other.base, "demand", z16).await;
        if h["x-tile-cache"] == "miss" {
            break body;
        }
        assert!(
            asked.elapsed() < std::time::Duration::from_secs(10),
            "the other server still serves its cached demand tile"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_ne!(theirs, theirs_before);
    assert_eq!(decode(&theirs).len(), demand.len());
    drop(other);

    // Bad tile paths: a JSON error naming the problem, never a crash.
    for (path, status) in [
        ("/tiles/nope/1/0/0", 404),
        ("/tiles/coverage/1/2/0", 400),
        ("/tiles/coverage/23/0/0", 400),
        ("/tiles/coverage/x/0/0", 400),
        ("/tiles/coverage/99999999999/0/0", 400),
        ("/tiles/nope.json", 404),
        ("/tiles/coverage/5/16/11", 404),
    ] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let body: Value = r.json().await.unwrap();
        error_code(&body);
    }

    // `covermap tiles export`: the coverage layer as a PMTiles archive, read back tile by tile
    // by an independent reader, equal to what the server serves.
    let archive = db.dir.path().join("coverage.pmtiles");
    let out = db.run(&[
        "tiles",
        "export",
        "--layer",
        "coverage",
        "--out",
        &archive.display().to_string(),
        "--minzoom",
        "10",
        "--maxzoom",
        "16",
    ]);
    assert!(out.status.success(), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["rendered"].as_u64().unwrap() >= 7, "{summary}");
    let reader = pmtiles::AsyncPmTilesReader::new_with_path(&archive)
        .await
        .unwrap();
    let header = reader.get_header();
    assert_eq!((header.min_zoom, header.max_zoom), (10, 16));
    assert_eq!(header.tile_type, pmtiles::TileType::Mvt);
    let meta: Value = serde_json::from_str(&reader.get_metadata().await.unwrap()).unwrap();
    assert_eq!(meta["vector_layers"][0]["id"], "coverage");
    for z in 10..=16u8 {
        let (z, x, y) = tile_at(lat, lon, z);
        let coord = pmtiles::TileCoord::new(z, x, y).unwrap();
        let from_archive = reader
            .get_tile_decompressed(coord)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no tile {z}/{x}/{y} in the archive"));
        let (s, served, _) = get_tile(&client, base, "coverage", (z, x, y)).await;
        assert_eq!(s, 200);
        let res = [8, 9, 10, 10, 11, 11, 11][usize::from(z - 10)];
        assert_eq!(
            check_hexagons(&decode(&from_archive), "coverage", res),
            check_hexagons(&decode(&served), "coverage", res),
            "the archive holds what the server serves at zoom {z}"
        );
    }

    // A bad export is refused with a message.
    let out = db.run(&[
        "tiles",
        "export",
        "--layer",
        "nope",
        "--out",
        "/tmp/x.pmtiles",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));

    // The glyphs the map draws road names with, served from the font compiled in; a font it
    // does not have and a range that is not one are refused with a JSON error.
    let r = client
        .get(format!("{base}/fonts/DejaVu%20Sans/0-255.pbf"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let pbf = r.bytes().await.unwrap();
    assert!(pbf.len() > 50_000, "{} bytes", pbf.len());
    // A fontstack message naming the stack and the range.
    assert!(pbf.windows(11).any(|w| w == b"DejaVu Sans"));
    assert!(pbf.windows(5).any(|w| w == b"0-255"));
    // Gzipped for a browser that takes it: the same bytes, about half as many.
    let r = client
        .get(format!("{base}/fonts/DejaVu%20Sans/0-255.pbf"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let zipped = r.bytes().await.unwrap();
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, pbf.to_vec());
    assert!(
        zipped.len() < pbf.len() * 3 / 4,
        "{} of {}",
        zipped.len(),
        pbf.len()
    );
    for (path, status, code) in [
        ("/fonts/Arial/0-255.pbf", 404, "not_found"),
        ("/fonts/DejaVu%20Sans/1-256.pbf", 400, "bad_glyph_range"),
        (
            "/fonts/DejaVu%20Sans/65536-65791.pbf",
            400,
            "bad_glyph_range",
        ),
    ] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), code, "{path}: {body}");
    }

    drop(server);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_tiles_end_to_end() {
    tiles_end_to_end(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgis_tiles_end_to_end() {
    tiles_end_to_end(Db::postgis().await).await;
}
