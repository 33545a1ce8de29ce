//! The web UI in a real headless Chromium (Debian's `chromium`, driven by playwright-core from
//! `web/node_modules`, both installed by the test command) against the real binary, on each
//! backend: the map renders coverage hexagons from the vector tiles after an upload, its popup
//! follows the layer switch and road names are drawn with the glyphs covermap serves, an auditor
//! reads a refused frame's measures and approves it from the keyboard and the decision is stored
//! (then keeps a report of it, and blurs it further by dragging a box over it), a
//! planner draws a demand area on the map and replays a closed epoch in the what-if, a driver
//! sees its uploads, checks its reward's Merkle proof in the browser, estimates a planned route
//! (the same cells and points as the API's) and erases its GPS drive
//! (gone to the API afterwards, listed among the erasures). Screenshots of each page
//! are kept in `target/tmp/web-ui/<backend>/`.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::{Value, json};

/// Epochs of this many seconds from the start of 2026 (and closed at once, no grace), so the test
/// has a closed epoch with rewards within seconds.
const EPOCH_SECONDS: i64 = 10;

fn genesis() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn epoch_now() -> i64 {
    (Utc::now() - genesis()).num_seconds() / EPOCH_SECONDS
}

/// What a phone riding along heard every 10 s of the drive: one LTE cell, a little weaker as the
/// drive goes on. `phone` makes it another phone's reading of the same drive (a moment later, a
/// few metres off, a few dB apart): two contributors hearing one cell is what makes it count.
fn phone_along(fixes: &[(f64, f64, DateTime<Utc>)], phone: u8) -> Value {
    let p = i64::from(phone);
    let items: Vec<Value> = fixes
        .iter()
        .step_by(10)
        .enumerate()
        .map(|(i, (lat, lon, at))| {
            json!({
                "timestamp": at.timestamp_millis() + 1500 * p,
                "position": {"latitude": lat + 2e-5 * p as f64, "longitude": lon, "accuracy": 6.0,
                             "source": "gps"},
                "cellTowers": [{"radioType": "lte", "mobileCountryCode": 212, "mobileNetworkCode": 10,
                                "locationAreaCode": 4, "cellId": 88_001, "serving": 1,
                                "signalStrength": -78 - 2 * i as i64 - 3 * p}],
            })
        })
        .collect();
    json!({ "items": items })
}

/// A thumbnail the vision stage refuses as too small, with something in it for a blur to change
/// (stripes and gradients), carrying the EXIF of `test_exif.jpg` (whose GPS places it).
fn striped_thumbnail() -> Vec<u8> {
    let picture = image::RgbImage::from_fn(64, 40, |x, y| {
        let stripe = if (x / 4 + y / 4) % 2 == 0 { 230 } else { 20 };
        image::Rgb([(x * 4) as u8, stripe, (y * 6) as u8])
    });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&picture)
        .unwrap();
    // The donor's APP1 (EXIF) segment, after its start marker, goes after ours.
    let donor = camera("mapillary_tools/test_exif.jpg");
    let mut at = 2;
    let exif = loop {
        assert_eq!(
            donor[at], 0xFF,
            "test_exif.jpg has no EXIF segment before its scan"
        );
        let length = usize::from(u16::from_be_bytes([donor[at + 2], donor[at + 3]]));
        if donor[at + 1] == 0xE1 {
            break &donor[at..at + 2 + length];
        }
        at += 2 + length;
    };
    let mut out = vec![0xFF, 0xD8];
    out.extend_from_slice(exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_web_ui_in_headless_chromium() {
    web_ui_in_headless_chromium(Db::sqlite(), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgis_web_ui_in_headless_chromium() {
    web_ui_in_headless_chromium(Db::postgis().await, "postgis").await;
}

async fn web_ui_in_headless_chromium(db: Db, backend: &str) {
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

    db.import_roads("roads/monaco.osm.pbf");
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_with_epochs(dir.path(), EPOCH_SECONDS);
    let server = serve(&db, &["--policy", &policy, "--close-epochs", "false"]);
    let client = reqwest::Client::new();
    let base = server.base.as_str();
    let keys = access(&db, &server, &client).await;

    // A drive through Monaco with a phone riding along, and a drive whose only frame (a
    // thumbnail) the vision stage refuses.
    let first_epoch = epoch_now();
    let t0 = Utc::now() - chrono::Duration::minutes(20);
    let fixes = road_fixes("roads/monaco.osm.pbf", 43.7330, 7.4200, t0, 60);
    // One fix a receiver threw 150 m off for half a second: left out, and shown where it was.
    let mut sent = fixes.clone();
    let (lat, lon, at) = sent[30];
    sent.insert(
        31,
        (lat + 0.00135, lon, at + chrono::Duration::milliseconds(500)),
    );
    let (s, r) = post_signed(
        &client,
        &keys.signer,
        base,
        "/api/v1/uploads/gpx",
        gpx_of(&sent),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    let drive_id = r["upload_id"].as_i64().unwrap();
    let drive = processed(&client, base, &keys.admin, drive_id).await;
    // A drive on Monaco's roads: believed, so on the map the browser is about to draw.
    assert_eq!(drive["trust"]["verdict"], "trusted", "{drive}");
    let left = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{drive_id}/rejections"),
        &keys.device_key,
    )
    .await;
    assert_eq!(
        left["rejections"][0]["reason"], "implausible_jump",
        "{left}"
    );
    assert_eq!(
        left["rejections"][0]["detail"],
        format!("at {:.7}, {:.7}", lat + 0.00135, lon),
        "{left}"
    );
    // The roads it was matched to, as lines to draw, with what was driven on each.
    let matched = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{drive_id}/matched"),
        &keys.device_key,
    )
    .await;
    let stretched: f64 = matched["stretches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["length_m"].as_f64().unwrap())
        .sum();
    let roads = matched["roads"]["features"].as_array().unwrap();
    assert!(!roads.is_empty(), "{matched}");
    let drawn: f64 = roads
        .iter()
        .map(|f| {
            assert_eq!(f["geometry"]["type"], "LineString", "{f}");
            f["properties"]["driven_m"].as_f64().unwrap()
        })
        .sum();
    assert!(
        stretched > 100.0 && (drawn - stretched).abs() < 1.0,
        "{drawn} m drawn, {stretched} m matched: {matched}"
    );
    // alice's phone and bob's heard the same LTE cell along the way. An emitter counts once two
    // contributors heard it in the epoch or before, so both batches are sent within one epoch
    // (under load, one processed before the other was sent could fall in the next, and alice's
    // would earn nothing): with at least 5 s of the epoch left, both sent, then both awaited.
    let bob = create_key(&db, "device", Some("bob"));
    let next = genesis() + chrono::Duration::seconds((epoch_now() + 1) * EPOCH_SECONDS);
    if next - Utc::now() < chrono::Duration::seconds(5) {
        tokio::time::sleep((next - Utc::now()).to_std().unwrap_or_default()).await;
    }
    let mut batches = Vec::new();
    for (phone, key) in [(0, &keys.device_key), (1, &bob)] {
        let r = client
            .post(format!("{base}/v2/geosubmit?key={key}"))
            .json(&phone_along(&fixes, phone))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let list = get_with(
            &client,
            &format!("{base}/api/v1/uploads?limit=1"),
            &keys.admin,
        )
        .await;
        batches.push(list["uploads"][0]["id"].as_i64().unwrap());
    }
    for id in batches {
        processed(&client, base, &keys.admin, id).await;
    }
    let thumbnail = zip_of(&[("b.jpg", striped_thumbnail())]);
    let (s, r) = post_signed(&client, &keys.signer, base, "/api/v1/drives", thumbnail).await;
    assert_eq!(s, 202, "{r}");
    let refused = r["upload_id"].as_i64().unwrap();
    processed(&client, base, &keys.admin, refused).await;

    // Every epoch the uploads fell in, closed; the driver's proof and the planner's what-if read
    // the last one where alice earned.
    let last_epoch = epoch_now();
    while epoch_now() <= last_epoch {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for epoch in first_epoch..=last_epoch {
        let mut args = db.args();
        args.extend(["--policy".into(), policy.clone()]);
        args.extend(["epoch".into(), "close".into(), "--epoch".into()]);
        args.push(epoch.to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, &[]);
        assert!(
            out.status.success(),
            "epoch close {epoch}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let earned = get_json(&client, &format!("{base}/api/v1/rewards/alice")).await;
    let epoch = earned["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["amount"].as_u64().is_some_and(|a| a > 0))
        .filter_map(|e| e["epoch"].as_i64())
        .max()
        .unwrap_or_else(|| {
            panic!("alice earned nothing in epochs {first_epoch}..={last_epoch}: {earned}")
        });

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("web-ui")
        .join(backend);
    let _ = std::fs::remove_dir_all(&shots);
    // The route the driver estimates before driving: the drive's own, as a GPX file.
    let route = dir.path().join("route.gpx");
    std::fs::write(&route, gpx_of(&fixes)).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .env("ROUTE_GPX", &route)
        .env("BASE_URL", base)
        .env("OUT", &shots)
        .env("AUDITOR_KEY", &keys.auditor)
        .env("PLANNER_KEY", &keys.planner)
        .env("DEVICE_KEY", &keys.device_key)
        .env("CONTRIBUTOR", "alice")
        .env("EPOCH", epoch.to_string())
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
    assert_eq!(result["ballot_counted"], true, "{result}");
    // The browser's ballot is alice's, signed by the device it registered, and it holds.
    let listed = get_json(&client, &format!("{base}/api/v1/policy/proposals")).await;
    let id = listed["proposals"][0]["id"].as_i64().unwrap();
    let proposal = get_json(&client, &format!("{base}/api/v1/policy/proposals/{id}")).await;
    let ballot = &proposal["votes"][0];
    assert_eq!(
        (
            &ballot["contributor"],
            &ballot["choice"],
            &ballot["signature_valid"]
        ),
        (&json!("alice"), &json!("yes"), &json!(true)),
        "{proposal}"
    );
    assert!(
        ballot["device"].as_str().unwrap().starts_with("browser-"),
        "{ballot}"
    );
    assert_eq!(result["popup_followed"], "radio", "{result}");
    assert!(result["road_labels"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(result["simulated"], epoch, "{result}");
    assert_eq!(result["proof_verified"], epoch, "{result}");

    // The estimate the browser showed is the API's for the same route: the same cells. Its
    // points were made while the drive covered the route's roads; the browser erased the drive
    // since, so its roads count as not driven again and the same route is worth more now.
    let r = client
        .post(format!("{base}/api/v1/estimate"))
        .json(&json!({"gpx": String::from_utf8(gpx_of(&fixes)).unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let api: Value = r.json().await.unwrap();
    assert_eq!(result["estimate_cells"], api["cells"], "{result} {api}");
    let (shown, now) = (
        result["estimate_points"].as_f64().unwrap(),
        api["points"].as_f64().unwrap(),
    );
    assert!(
        shown > 0.0 && shown < now,
        "{shown} then, {now} after the erasure"
    );

    // The drive the browser erased is gone to the API too, and listed among the erasures.
    assert_eq!(result["erased"], drive_id, "{result}");
    let r = client
        .get(format!("{base}/api/v1/uploads/{drive_id}"))
        .bearer_auth(&keys.device_key)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (status.as_u16(), error_code(&body)),
        (410, "erased".into()),
        "{body}"
    );
    let erasures = get_with(
        &client,
        &format!("{base}/api/v1/erasures"),
        &keys.device_key,
    )
    .await;
    assert_eq!(erasures["erasures"][0]["upload_id"], drive_id, "{erasures}");

    // The approval the auditor clicked is stored, in the audit log and on the frame.
    let approved = result["approved"].as_str().unwrap();
    assert_eq!(approved, format!("{refused}/0"), "{result}");
    // Reported, then kept by the auditor in the browser: the report is closed as kept; reported
    // again, then blurred further where the auditor dragged a box: closed as blurred, with it.
    assert_eq!(result["report_kept"], approved, "{result}");
    assert_eq!(result["report_blurred"], approved, "{result}");
    let reports = get_with(
        &client,
        &format!("{base}/api/v1/audit/reports"),
        &keys.auditor,
    )
    .await;
    let (blurred, kept) = (&reports["reports"][0], &reports["reports"][1]);
    assert_eq!(
        (kept["reason"].as_str(), kept["decision"].as_str()),
        (Some("face"), Some("keep")),
        "{reports}"
    );
    assert_eq!(
        (blurred["reason"].as_str(), blurred["decision"].as_str()),
        (Some("plate"), Some("blur")),
        "{reports}"
    );
    let boxes = blurred["boxes"].as_array().unwrap();
    assert_eq!(boxes.len(), 1, "{reports}");
    assert!(
        boxes[0]["x2"].as_f64().unwrap() > boxes[0]["x1"].as_f64().unwrap(),
        "{reports}"
    );
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

    // The planner's area is stored with the name the browser typed, with the cells its preview
    // announced.
    let areas = get_json(&client, &format!("{base}/api/v1/demand")).await;
    let name = result["demand_area"].as_str().unwrap();
    let area = areas["areas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{areas}"));
    assert_eq!(area["cells"], result["preview_cells"], "{area} {result}");

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
