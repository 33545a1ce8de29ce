//! The web UI in a real headless Chromium (Debian's `chromium`, driven by playwright-core from
//! `web/node_modules`, both installed by the test command) against the real binary on PostGIS:
//! the map renders coverage hexagons from the vector tiles after an upload, an auditor approves a
//! refused frame and the decision is stored, a planner draws a demand area on the map, a driver
//! sees its uploads. Screenshots of each page are kept in `target/tmp/web-ui/`.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use chrono::Utc;
use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn web_ui_in_headless_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "this test needs Chromium at {chromium} (scripts/test installs Debian's chromium)"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/e2e/ui.mjs");
    let playwright =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/node_modules/playwright-core");
    assert!(
        playwright.exists(),
        "this test needs {} (npm ci --prefix web; scripts/test runs it)",
        playwright.display()
    );

    let db = Db::postgis().await;
    db.import_roads("roads/monaco.osm.pbf");
    let server = serve(&db, &[]);
    let client = reqwest::Client::new();
    let base = server.base.as_str();
    let keys = access(&db, &server, &client).await;

    // A drive through Monaco, and a drive whose only frame the vision stage refuses.
    let t0 = Utc::now() - chrono::Duration::minutes(20);
    let (s, r) = post_signed(
        &client,
        &keys.signer,
        base,
        "/api/v1/uploads/gpx",
        road_gpx("roads/monaco.osm.pbf", 43.7330, 7.4200, t0, 60),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    let drive = processed(&client, base, &keys.admin, r["upload_id"].as_i64().unwrap()).await;
    // A drive on Monaco's roads: believed, so on the map the browser is about to draw.
    assert_eq!(drive["trust"]["verdict"], "trusted", "{drive}");
    let thumbnail = zip_of(&[("b.jpg", camera("mapillary_tools/test_exif.jpg"))]);
    let (s, r) = post_signed(&client, &keys.signer, base, "/api/v1/drives", thumbnail).await;
    assert_eq!(s, 202, "{r}");
    let refused = r["upload_id"].as_i64().unwrap();
    processed(&client, base, &keys.admin, refused).await;

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-ui");
    let _ = std::fs::remove_dir_all(&shots);
    let out = Command::new("node")
        .arg(&script)
        .env("BASE_URL", base)
        .env("OUT", &shots)
        .env("AUDITOR_KEY", &keys.auditor)
        .env("PLANNER_KEY", &keys.planner)
        .env("DEVICE_KEY", &keys.device_key)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser run failed:\n{stderr}\n{stdout}"
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no result line ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(result["ok"], true, "{result}");
    assert!(result["hexes"].as_u64().unwrap() > 0, "{result}");

    // The approval the auditor clicked is stored, in the audit log and on the frame.
    let approved = result["approved"].as_str().unwrap();
    assert_eq!(approved, format!("{refused}/0"), "{result}");
    let log = get_with(&client, &format!("{base}/api/v1/audit/log"), &keys.auditor).await;
    let d = &log["decisions"][0];
    assert_eq!(
        (
            d["upload_id"].as_i64(),
            d["frame"].as_i64(),
            d["decision"].as_str()
        ),
        (Some(refused), Some(0), Some("approve")),
        "{log}"
    );
    // Approved, the frame is published.
    let r = client
        .get(format!("{base}/api/v1/frames/{refused}/0/image"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let record = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{refused}"),
        &keys.admin,
    )
    .await;
    assert_eq!(status, 200, "{record}");

    // The planner's area is stored with the name the browser typed.
    let areas = get_json(&client, &format!("{base}/api/v1/demand")).await;
    let name = result["demand_area"].as_str().unwrap();
    assert!(
        areas["areas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == name),
        "{areas}"
    );

    for page in ["map", "auditor", "planner", "driver"] {
        let png = std::fs::read(shots.join(format!("{page}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{page}.png"
        );
    }
    drop(server);
    db.finish().await;
}
