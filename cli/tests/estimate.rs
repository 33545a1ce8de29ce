//! End to end, on each backend: the earnings estimate before driving. A GPX route over
//! testdata's Monaco roads is posted to `POST /api/v1/estimate`: its cells carry the weights the
//! demand map shows for them, its points add up, a planner's bounty pays its cells until it
//! expires; bad routes, GPX and times are refused naming the field; `covermap estimate` prints
//! the same figures.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;

use chrono::Utc;
use serde_json::{Value, json};

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_estimate_before_driving() {
    estimate_before_driving(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgis_estimate_before_driving() {
    estimate_before_driving(Db::postgis().await).await;
}

async fn post_estimate(client: &reqwest::Client, base: &str, body: &Value) -> (u16, Value) {
    let r = client
        .post(format!("{base}/api/v1/estimate"))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn estimate_before_driving(db: Db) {
    db.import_roads("roads/monaco.osm.pbf");
    let dir = tempfile::tempdir().unwrap();
    // A bounty over the old town for two days: 1,000,000 base units over its cells.
    let polygon = dir.path().join("area.geojson");
    let area = json!({"type": "Polygon", "coordinates": [[
        [7.415, 43.728], [7.430, 43.728], [7.430, 43.738], [7.415, 43.738], [7.415, 43.728]]]});
    std::fs::write(&polygon, area.to_string()).unwrap();
    let expires = (Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let out = db.run(&[
        "demand",
        "add",
        "--name",
        "old town",
        "--polygon",
        &polygon.display().to_string(),
        "--weight",
        "2",
        "--budget",
        "1000000",
        "--expires",
        &expires,
    ]);
    assert!(out.status.success(), "{out:?}");
    let server = serve(&db, &["--close-epochs", "false"]);
    let base = server.base.as_str();
    let client = reqwest::Client::new();
    let areas = get_json(&client, &format!("{base}/api/v1/demand")).await;
    let per_cell = 1_000_000 / areas["areas"][0]["cells"].as_u64().unwrap();

    let gpx = road_gpx("roads/monaco.osm.pbf", 43.7330, 7.4200, Utc::now(), 240);
    let gpx = String::from_utf8(gpx).unwrap();
    let (s, e) = post_estimate(&client, base, &json!({"gpx": gpx})).await;
    assert_eq!(s, 200, "{e}");
    let hexagons = e["hexagons"]["features"].as_array().unwrap();
    let n = e["cells"].as_u64().unwrap();
    assert!(n >= 5, "{e}");
    assert_eq!(hexagons.len() as u64, n);
    let sum = |k: &str| -> u64 {
        hexagons
            .iter()
            .map(|h| h["properties"][k].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("points"), e["points"].as_u64().unwrap(), "{e}");
    assert_eq!(sum("bounty"), e["bounty"].as_u64().unwrap(), "{e}");
    // No epoch has closed: no denominator, no base estimate, and it says so.
    assert_eq!(
        (e["base"].clone(), e["total"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(e["basis"]["trailing_epochs"], json!([]));

    // Each cell's weight is the demand map's for it (nothing was captured: staleness 1).
    let map = get_json(
        &client,
        &format!("{base}/api/v1/demand/map?bbox=7.40,43.72,7.45,43.75&limit=100000"),
    )
    .await;
    let on_map: HashMap<&str, &Value> = map["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["properties"]["cell"].as_str().unwrap(), &f["properties"]))
        .collect();
    let mut compared = 0;
    let mut in_bounty = 0;
    for h in hexagons {
        let p = &h["properties"];
        let Some(m) = on_map.get(p["cell"].as_str().unwrap()) else {
            continue;
        };
        compared += 1;
        for k in ["weight", "demand", "staleness", "coverage_gap"] {
            assert_eq!(p[k], m[k], "{k} of {p} vs the map's {m}");
        }
        let points = (p["weight"].as_f64().unwrap() * 1e6).round() as i64;
        assert!(
            (p["points"].as_i64().unwrap() - points).abs() <= 1000,
            "{p}"
        );
        if m["open_bounties"].as_i64().unwrap() > 0 {
            in_bounty += 1;
            assert_eq!(p["bounty"].as_u64().unwrap(), per_cell, "{p}");
        } else {
            assert_eq!(p["bounty"].as_u64().unwrap(), 0, "{p}");
        }
    }
    assert!(
        compared * 10 >= n * 8,
        "{compared} of {n} cells on the demand map"
    );
    assert!(in_bounty > 0, "the route crosses the bounty: {e}");

    // After the bounty expired: nothing from it, and its area's weight is gone.
    let later = (Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let (s, after) = post_estimate(&client, base, &json!({"gpx": gpx, "at": later})).await;
    assert_eq!(s, 200, "{after}");
    assert_eq!(after["bounty"], 0, "{after}");
    assert_eq!(after["cells"], e["cells"]);
    assert!(after["points"].as_u64() < e["points"].as_u64(), "{after}");

    // Refused, naming what is wrong.
    let far = (Utc::now() + chrono::Duration::days(40)).to_rfc3339();
    for (body, code, field) in [
        (json!({"gpx": "not a gpx file"}), "invalid_gpx", "gpx"),
        (
            json!({"route": {"type": "LineString", "coordinates": [[7.42, 95.0], [7.43, 43.7]]}}),
            "invalid_route",
            "route",
        ),
        (
            json!({"route": {"type": "LineString", "coordinates": [[7.42, 43.73], [2.35, 48.85]]}}),
            "route_too_long",
            "route",
        ),
        (json!({"gpx": gpx, "at": far}), "invalid_time", "at"),
        (json!({}), "invalid_route", "route"),
    ] {
        let (s, r) = post_estimate(&client, base, &body).await;
        assert_eq!((s, error_code(&r)), (400, code.to_owned()), "{r}");
        assert_eq!(r["error"]["field"], field, "{r}");
    }
    let (s, r) = post_estimate(&client, base, &json!({"gpx": gpx, "at": far})).await;
    assert!(
        s == 400 && r["error"]["message"].as_str().unwrap().contains("30 days"),
        "the limits are said: {r}"
    );

    // The command line prints the same estimate.
    let file = dir.path().join("route.gpx");
    std::fs::write(&file, &gpx).unwrap();
    let out = db.run(&["estimate", "--route", &file.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["cells"], e["cells"]);
    assert_eq!(printed["bounty"], e["bounty"]);
    let (a, b) = (
        printed["points"].as_f64().unwrap(),
        e["points"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 0.001 * b, "{a} vs {b}");
    drop(server);
    db.finish().await;
}
