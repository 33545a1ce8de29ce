//! A contributor's uploads erased at their request, end to end on the real binary, on each
//! backend: a camera drive uploaded, processed and published, counted in a closed epoch; its
//! contributor's device asks for it to be deleted: its bytes, its frame's original and its
//! published derivative leave the object store, its frame is no longer served, the epoch still
//! verifies, asking again answers the same record, and nobody else can erase it (or learn it
//! exists). Then all of the contributor's uploads at once (one counted, one not: the later epoch
//! counts nothing of it), an admin erasing another contributor's on their behalf, and the
//! operator's `covermap uploads erase`.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::*;
use serde_json::{Value, json};

/// One residential street along the test track (north from 45.5, -122.57), as OSM XML.
const STREET: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="covermap test">
  <node id="1" lat="45.4990" lon="-122.5700"/>
  <node id="2" lat="45.5080" lon="-122.5700"/>
  <way id="1001"><nd ref="1"/><nd ref="2"/><tag k="highway" v="residential"/></way>
</osm>
"#;

const EPOCH_SECONDS: i64 = 4;

fn genesis() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn epoch_now() -> i64 {
    (Utc::now() - genesis()).num_seconds() / EPOCH_SECONDS
}

async fn wait_for_end_of(epoch: i64) {
    let end = genesis() + chrono::Duration::seconds((epoch + 1) * EPOCH_SECONDS);
    while Utc::now() < end + chrono::Duration::milliseconds(200) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `covermap` on the test's database under `policy`: (success, stdout's JSON lines,
/// stderr).
fn cli(db: &Db, policy: &str, args: &[&str]) -> (bool, Vec<Value>, String) {
    let mut all = vec!["--policy", policy];
    all.extend_from_slice(args);
    let out = db.run(&all);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Closes every epoch from `first` to `last`, in order.
fn close_epochs(db: &Db, policy: &str, first: i64, last: i64) -> Vec<Value> {
    (first..=last)
        .map(|n| {
            let (ok, lines, err) = cli(db, policy, &["epoch", "close", "--epoch", &n.to_string()]);
            assert!(ok, "epoch close {n}: {err}");
            lines[0].clone()
        })
        .collect()
}

/// `covermap epoch verify` of every epoch from `first` to `last` matches.
fn all_verify(db: &Db, policy: &str, first: i64, last: i64) {
    for n in first..=last {
        let (ok, lines, err) = cli(db, policy, &["epoch", "verify", "--epoch", &n.to_string()]);
        assert!(ok, "epoch verify {n}: {err}");
        assert_eq!(lines[0]["matches"], true, "epoch {n}: {}", lines[0]);
        assert_eq!(
            lines[0]["changed_inputs"],
            json!([]),
            "epoch {n}: {}",
            lines[0]
        );
    }
}

/// The blob file behind `key` in the test's local object store.
fn blob_path(db: &Db, key: &str) -> std::path::PathBuf {
    db.dir.path().join("blobs").join(key)
}

/// The object store's key of bytes with this sha256.
fn key_of(sha256: &str) -> String {
    format!("sha256/{}/{sha256}", &sha256[..2])
}

/// A request to `path` with `key` (or none): (status, JSON).
async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = client.request(method, url);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A signed request of `signer` with no body: (status, JSON).
async fn signed_call(
    client: &reqwest::Client,
    signer: &covermap_ingest::access::DeviceSigner,
    method: reqwest::Method,
    base: &str,
    path: &str,
) -> (u16, Value) {
    let r = signed(client, signer, method, base, path, Vec::new())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn uploads_are_erased_at_their_contributors_request(db: Db) {
    let osm = db.dir.path().join("street.osm");
    std::fs::write(&osm, STREET).unwrap();
    let out = db.run(&["roads", "import", &osm.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    let policy = policy_with_epochs(db.dir.path(), EPOCH_SECONDS);
    let server = serve(&db, &["--policy", &policy, "--close-epochs", "false"]);
    let client = reqwest::Client::new();
    let base = server.base.as_str();
    let keys = access(&db, &server, &client).await;
    let admin = keys.admin.as_str();
    let bob_key = create_key(&db, "device", Some("bob"));
    let bob = register(&client, base, &bob_key, "cam-bob-1").await;
    use reqwest::Method;

    // alice's camera drive: a real 4K frame on the street, published as its blurred derivative;
    // and a GPS drive of hers. Both counted in closed epochs.
    let first = epoch_now();
    let t0 = Utc.with_ymd_and_hms(2018, 6, 8, 20, 24, 1).unwrap();
    let drive = zip_of(&[
        ("a.jpg", camera("mapillary_tools/DSC00001.JPG")),
        ("track.gpx", gpx_track(45.5, -122.57, t0, 60)),
    ]);
    let (s, receipt) = post_signed(&client, &keys.signer, base, "/api/v1/drives", drive).await;
    assert_eq!(s, 202, "{receipt}");
    let a = receipt["upload_id"].as_i64().unwrap();
    processed(&client, base, admin, a).await;
    let frames = get_with(&client, &format!("{base}/api/v1/uploads/{a}/frames"), admin).await;
    let frame = &frames["frames"][0];
    let blobs: Vec<String> = vec![
        key_of(receipt["sha256"].as_str().unwrap()),
        frame["blob_key"].as_str().unwrap().to_owned(),
        frame["vision"]["published_key"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    for key in &blobs {
        assert!(blob_path(&db, key).exists(), "{key} is stored");
    }
    let image = format!("{base}/api/v1/frames/{a}/0/image");
    assert_eq!(client.get(&image).send().await.unwrap().status(), 200);
    let t1 = Utc::now() - chrono::Duration::minutes(30);
    let (s, r) = post_signed(
        &client,
        &keys.signer,
        base,
        "/api/v1/uploads/gpx",
        gpx_track(45.5005, -122.5702, t1, 60),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    let b = r["upload_id"].as_i64().unwrap();
    processed(&client, base, admin, b).await;
    let last = epoch_now();
    wait_for_end_of(last).await;
    close_epochs(&db, &policy, first, last);
    all_verify(&db, &policy, first, last);
    // A later drive of hers, no epoch counted yet, and one of bob's.
    let (s, r) = post_signed(
        &client,
        &keys.signer,
        base,
        "/api/v1/uploads/gpx",
        gpx_track(45.501, -122.5704, t1 + chrono::Duration::minutes(5), 60),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    let c = r["upload_id"].as_i64().unwrap();
    processed(&client, base, admin, c).await;
    let (s, r) = post_signed(
        &client,
        &bob,
        base,
        "/api/v1/uploads/gpx",
        gpx_track(45.502, -122.5706, t1 + chrono::Duration::minutes(10), 60),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    let d = r["upload_id"].as_i64().unwrap();
    processed(&client, base, admin, d).await;

    // Nobody else erases it, or learns it exists: another contributor's device or key is told
    // there is no such upload, as for an unknown id; auditors and planners erase nothing.
    let path = format!("/api/v1/uploads/{a}");
    let url = format!("{base}{path}");
    let (s, r) = signed_call(&client, &bob, Method::DELETE, base, &path).await;
    assert_eq!((s, error_code(&r)), (404, "not_found".into()), "{r}");
    let (s, r) = call(&client, Method::DELETE, &url, Some(&bob_key), None).await;
    assert_eq!((s, error_code(&r)), (404, "not_found".into()), "{r}");
    let unknown = format!("{base}/api/v1/uploads/999999");
    let (s, r) = call(&client, Method::DELETE, &unknown, Some(&bob_key), None).await;
    assert_eq!((s, error_code(&r)), (404, "not_found".into()), "{r}");
    for key in [&keys.auditor, &keys.planner] {
        let (s, r) = call(&client, Method::DELETE, &url, Some(key), None).await;
        assert_eq!((s, error_code(&r)), (403, "forbidden".into()), "{r}");
    }
    let (s, _) = call(&client, Method::DELETE, &url, None, None).await;
    assert_eq!(s, 401);
    let (s, r) = call(
        &client,
        Method::DELETE,
        &format!("{base}/api/v1/uploads/x"),
        Some(&keys.device_key),
        None,
    )
    .await;
    assert_eq!((s, error_code(&r)), (400, "invalid_id".into()), "{r}");
    assert!(blob_path(&db, &blobs[2]).exists(), "nothing changed");

    // Her device asks: the bytes, the frame's original and its derivative are deleted, the
    // frame is not served, and the epoch that counted it still verifies.
    let (s, erased) = signed_call(&client, &keys.signer, Method::DELETE, base, &path).await;
    assert_eq!(s, 200, "{erased}");
    assert_eq!(erased["upload_id"], a);
    assert_eq!(erased["requested_by"], "cam-alice-1");
    assert_eq!(erased["contributor"], "alice");
    assert!(erased["completed_at"].is_string(), "{erased}");
    let counted_in = erased["counted_in_epoch"].as_i64().unwrap();
    assert!((first..=last).contains(&counted_in), "{erased}");
    assert!(erased["erased"]["blobs"].as_u64().unwrap() >= 3, "{erased}");
    for key in &blobs {
        assert!(!blob_path(&db, key).exists(), "{key} is deleted");
    }
    assert_eq!(client.get(&image).send().await.unwrap().status(), 404);
    let imagery = get_json(&client, &format!("{base}/api/v1/imagery")).await;
    assert_eq!(imagery["features"], json!([]), "{imagery}");
    for what in ["", "/frames", "/matched", "/rejections"] {
        let u = format!("{url}{what}");
        let (s, r) = call(&client, Method::GET, &u, Some(&keys.device_key), None).await;
        assert_eq!((s, error_code(&r)), (410, "erased".into()), "{what}: {r}");
        let (s, _) = call(&client, Method::GET, &u, Some(&bob_key), None).await;
        assert_eq!(s, 404, "{what}");
    }
    all_verify(&db, &policy, first, last);
    // Asking again, with her device key this time, is harmless: the same record.
    let (s, again) = call(&client, Method::DELETE, &url, Some(&keys.device_key), None).await;
    assert_eq!((s, &again), (200, &erased));

    // All of hers at once: the counted GPS drive and the one no epoch counted yet. Bob's stays.
    let erasures = format!("{base}/api/v1/erasures");
    let (s, r) = call(
        &client,
        Method::POST,
        &erasures,
        Some(&keys.device_key),
        Some(json!({"contributor": "bob"})),
    )
    .await;
    assert_eq!((s, error_code(&r)), (403, "forbidden".into()), "{r}");
    let (s, all) = signed_call(
        &client,
        &keys.signer,
        Method::POST,
        base,
        "/api/v1/erasures",
    )
    .await;
    assert_eq!(s, 200, "{all}");
    assert_eq!(all["subject"], json!({"contributor": "alice"}));
    let done = all["erasures"].as_array().unwrap();
    let ids: Vec<i64> = done
        .iter()
        .map(|e| e["upload_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![b, c], "{all}");
    assert!(done[0]["counted_in_epoch"].is_i64(), "{all}");
    assert_eq!(done[1]["counted_in_epoch"], Value::Null, "{all}");
    // Only bob's cells are left on the coverage map.
    let coverage = get_json(&client, &format!("{base}/api/v1/coverage")).await;
    let cells = coverage["features"].as_array().unwrap();
    let bobs = get_with(&client, &format!("{base}/api/v1/uploads/{d}"), admin).await;
    assert_eq!(
        cells.len() as i64,
        bobs["cells"].as_i64().unwrap(),
        "{coverage}"
    );
    assert!(
        cells.iter().all(|c| c["properties"]["uploads"] == 1),
        "{coverage}"
    );
    let mine = get_with(&client, &erasures, &keys.device_key).await;
    assert_eq!(mine["erasures"].as_array().unwrap().len(), 3, "{mine}");
    let listed = get_with(&client, &format!("{base}/api/v1/uploads"), &keys.device_key).await;
    assert_eq!(listed["uploads"], json!([]), "{listed}");
    // The epoch her later drive fell in counts nothing of it; the closed ones still verify.
    let now = epoch_now();
    wait_for_end_of(now).await;
    close_epochs(&db, &policy, last + 1, now);
    let rewards = get_json(&client, &format!("{base}/api/v1/rewards/alice")).await;
    let later: Vec<&Value> = rewards["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["epoch"].as_i64().unwrap() > last)
        .collect();
    assert!(
        later.iter().all(|e| e["amount"] == 0),
        "the ledger keeps her history, and adds nothing after: {rewards}"
    );
    all_verify(&db, &policy, first, now);

    // An admin erases bob's on his behalf, naming him; without a name it is refused.
    let (s, r) = call(&client, Method::POST, &erasures, Some(admin), None).await;
    assert_eq!((s, error_code(&r)), (400, "invalid_subject".into()), "{r}");
    let (s, r) = call(
        &client,
        Method::POST,
        &erasures,
        Some(admin),
        Some(json!({"contributor": "bob"})),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["erasures"][0]["upload_id"], d, "{r}");
    assert!(
        r["erasures"][0]["requested_by"]
            .as_str()
            .unwrap()
            .starts_with("key:"),
        "{r}"
    );
    let every = get_with(&client, &erasures, admin).await;
    assert_eq!(every["erasures"].as_array().unwrap().len(), 4, "{every}");

    // The operator's command line: a later drive of bob's erased with `covermap uploads erase`;
    // asking again prints the same record.
    let (s, r) = post_signed(
        &client,
        &bob,
        base,
        "/api/v1/uploads/gpx",
        gpx_track(45.503, -122.5708, t1 + chrono::Duration::minutes(15), 60),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    let e = r["upload_id"].as_i64().unwrap();
    processed(&client, base, admin, e).await;
    let id = e.to_string();
    let (ok, lines, err) = cli(&db, &policy, &["uploads", "erase", &id]);
    assert!(ok, "{err}");
    assert_eq!(
        (&lines[0]["upload_id"], &lines[0]["requested_by"]),
        (&json!(e), &json!("operator")),
        "{lines:?}"
    );
    let (ok, again, err) = cli(
        &db,
        &policy,
        &["uploads", "erase", &id, "--requested-by", "someone"],
    );
    assert!(ok, "{err}");
    assert_eq!(again, lines);
    let (s, r) = call(
        &client,
        Method::GET,
        &format!("{base}/api/v1/uploads/{e}"),
        Some(&bob_key),
        None,
    )
    .await;
    assert_eq!((s, error_code(&r)), (410, "erased".into()), "{r}");
    let (ok, _, err) = cli(&db, &policy, &["uploads", "erase", "999999"]);
    assert!(!ok && err.contains("no upload 999999"), "{err}");
    drop(server);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_uploads_are_erased_at_their_contributors_request() {
    uploads_are_erased_at_their_contributors_request(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgis_uploads_are_erased_at_their_contributors_request() {
    uploads_are_erased_at_their_contributors_request(Db::postgis().await).await;
}
