//! The trust stage end to end, on the real binary over HTTP with Monaco's real roads: honest
//! drives are trusted; a replay, a splice of two drives, a line drawn between two places and a
//! parked device are flagged with their reason codes, credit no cells, are listed for auditors
//! with their evidence, and an epoch's close makes every verdict final.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::Value;

const MONACO: &str = "roads/monaco.osm.pbf";
const EPOCH_SECONDS: i64 = 4;

type Fixes = Vec<(f64, f64, DateTime<Utc>)>;

/// The shipped policy with 4-second epochs and no grace, so a test can close one.
fn short_policy(dir: &std::path::Path) -> std::path::PathBuf {
    let text = covermap_scoring::policy::DEFAULT_POLICY
        .replace(
            "length_seconds = 86400",
            &format!("length_seconds = {EPOCH_SECONDS}"),
        )
        .replace("grace_seconds = 3600", "grace_seconds = 0");
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn upload(
    client: &reqwest::Client,
    base: &str,
    signer: &covermap_ingest::access::DeviceSigner,
    fixes: &Fixes,
) -> (u16, Value) {
    post_signed(client, signer, base, "/api/v1/uploads/gpx", gpx_of(fixes)).await
}

async fn verdict(client: &reqwest::Client, base: &str, admin: &str, id: i64) -> Value {
    processed(client, base, admin, id).await
}

fn codes(rec: &Value) -> Vec<String> {
    rec["trust"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

async fn trust_end_to_end(db: Db) {
    db.import_roads(MONACO);
    let policy = short_policy(db.dir.path());
    let p = policy.display().to_string();
    let server = serve(&db, &["--policy", &p, "--close-epochs", "false"]);
    let client = reqwest::Client::new();
    let base = server.base.as_str();
    let keys = access(&db, &server, &client).await;
    let admin = keys.admin.as_str();
    let t0 = Utc::now() - chrono::Duration::days(10);

    // Two honest drives, near the palace and near the port, by two contributors.
    let alice = road_fixes(MONACO, 43.7384, 7.4246, t0, 120);
    let bob_key = create_key(&db, "device", Some("bob"));
    let bob_signer = register(&client, base, &bob_key, "cam-bob").await;
    let bob = road_fixes(
        MONACO,
        43.7311,
        7.4197,
        t0 + chrono::Duration::minutes(10),
        120,
    );
    let (s, r) = upload(&client, base, &keys.signer, &alice).await;
    assert_eq!(s, 202, "{r}");
    let a = verdict(&client, base, admin, r["upload_id"].as_i64().unwrap()).await;
    let (s, r) = upload(&client, base, &bob_signer, &bob).await;
    assert_eq!(s, 202, "{r}");
    let b = verdict(&client, base, admin, r["upload_id"].as_i64().unwrap()).await;
    for rec in [&a, &b] {
        assert_eq!(rec["trust"]["verdict"], "trusted", "{rec}");
        assert!(rec["cells"].as_i64().unwrap() > 0, "{rec}");
    }

    // Mallory's device sends Alice's drive again a day later, three metres to the side.
    let mallory_key = create_key(&db, "device", Some("mallory"));
    let mallory = register(&client, base, &mallory_key, "cam-mallory").await;
    let replay: Fixes = alice
        .iter()
        .map(|(lat, lon, at)| (*lat + 2.7e-5, *lon, *at + chrono::Duration::days(1)))
        .collect();
    let (s, r) = upload(&client, base, &mallory, &replay).await;
    assert_eq!(s, 202, "{r}");
    let replayed = verdict(&client, base, admin, r["upload_id"].as_i64().unwrap()).await;
    assert_eq!(replayed["trust"]["verdict"], "flagged", "{replayed}");
    assert!(
        codes(&replayed).contains(&"replay".to_owned()),
        "{replayed}"
    );

    // Trudy splices the first minute of Alice's drive onto the second minute of Bob's.
    let trudy_key = create_key(&db, "device", Some("trudy"));
    let trudy = register(&client, base, &trudy_key, "cam-trudy").await;
    let t1 = t0 + chrono::Duration::days(2);
    let spliced: Fixes = alice[..60]
        .iter()
        .chain(&bob[60..])
        .enumerate()
        .map(|(i, (lat, lon, _))| (*lat, *lon, t1 + chrono::Duration::seconds(i as i64)))
        .collect();
    let (s, r) = upload(&client, base, &trudy, &spliced).await;
    let splice_id = if s == 202 {
        let rec = verdict(&client, base, admin, r["upload_id"].as_i64().unwrap()).await;
        assert_eq!(rec["trust"]["verdict"], "flagged", "{rec}");
        assert!(codes(&rec).contains(&"teleport".to_owned()), "{rec}");
        Some(rec["id"].as_i64().unwrap())
    } else {
        // Mostly jumps: refused outright, which counts against Trudy just the same.
        assert_eq!(s, 422, "{r}");
        None
    };

    // Eve draws a straight line from the palace to the port, evenly, without any noise.
    let eve_key = create_key(&db, "device", Some("eve"));
    let eve = register(&client, base, &eve_key, "cam-eve").await;
    let (from, to) = ((43.7384, 7.4246), (43.7311, 7.4197));
    let line: Fixes = (0..100)
        .map(|i| {
            let f = f64::from(i) / 99.0;
            (
                from.0 + (to.0 - from.0) * f,
                from.1 + (to.1 - from.1) * f,
                t0 + chrono::Duration::days(3) + chrono::Duration::seconds(i64::from(i)),
            )
        })
        .collect();
    let (s, r) = upload(&client, base, &eve, &line).await;
    assert_eq!(s, 202, "{r}");
    let drawn = verdict(&client, base, admin, r["upload_id"].as_i64().unwrap()).await;
    assert_eq!(drawn["trust"]["verdict"], "flagged", "{drawn}");
    assert!(
        codes(&drawn)
            .iter()
            .any(|c| c == "synthetic_track" || c == "off_network"),
        "{drawn}"
    );

    // Carol's parked phone logs ten minutes in one spot.
    let carol_key = create_key(&db, "device", Some("carol"));
    let carol = register(&client, base, &carol_key, "cam-carol").await;
    let parked: Fixes = (0..600)
        .map(|i| {
            (
                43.7384 + f64::from(i % 5) * 3e-6,
                7.4246 + f64::from(i % 3) * 3e-6,
                t0 + chrono::Duration::days(4) + chrono::Duration::seconds(i64::from(i)),
            )
        })
        .collect();
    let (s, r) = upload(&client, base, &carol, &parked).await;
    assert_eq!(s, 202, "{r}");
    let stationary = verdict(&client, base, admin, r["upload_id"].as_i64().unwrap()).await;
    assert_eq!(stationary["trust"]["verdict"], "flagged", "{stationary}");
    assert!(codes(&stationary).contains(&"stationary".to_owned()));

    // Flagged uploads credit no cells: the map is Alice's and Bob's alone.
    for rec in [&replayed, &drawn, &stationary] {
        assert_eq!(rec["cells"], 0, "{rec}");
        assert!(rec["cells_seen"].as_i64().unwrap() > 0, "{rec}");
    }
    let coverage = get_json(&client, &format!("{base}/api/v1/coverage")).await;
    let features = coverage["features"].as_array().unwrap();
    let honest_cells = a["cells"].as_i64().unwrap() + b["cells"].as_i64().unwrap();
    assert!(!features.is_empty());
    assert!(features.len() as i64 <= honest_cells, "{coverage}");
    assert!(
        features
            .iter()
            .all(|f| f["properties"]["uploads"].as_i64().unwrap() <= 2)
    );

    // Auditors list them and read what was measured; devices may not.
    let flagged = get_with(
        &client,
        &format!("{base}/api/v1/uploads?trust=flagged"),
        &keys.auditor,
    )
    .await;
    let mut listed: Vec<i64> = flagged["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    listed.sort_unstable();
    let mut expected: Vec<i64> = [&replayed, &drawn, &stationary]
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .chain(splice_id)
        .collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);
    let id = replayed["id"].as_i64().unwrap();
    let ev = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{id}/evidence"),
        &keys.auditor,
    )
    .await;
    assert_eq!(ev["evidence"]["twin"]["upload"], a["id"], "{ev}");
    assert!(ev["evidence"]["track"]["fixes"].as_i64().unwrap() > 100);
    let r = client
        .get(format!("{base}/api/v1/uploads/{id}/evidence"))
        .bearer_auth(&keys.device_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client
        .get(format!("{base}/api/v1/uploads?trust=maybe"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // An epoch's close makes every verdict final and pays none of the flagged drives' senders.
    let genesis: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let n = (Utc::now() - genesis).num_seconds() / EPOCH_SECONDS;
    let end = genesis + chrono::Duration::seconds((n + 1) * EPOCH_SECONDS);
    while Utc::now() < end + chrono::Duration::milliseconds(200) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut args = db.args();
    args.extend([
        "--policy".into(),
        p.clone(),
        "epoch".into(),
        "close".into(),
        "--epoch".into(),
        n.to_string(),
    ]);
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(out.status.success(), "{out:?}");
    let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        manifest["flagged_uploads"].as_u64().unwrap() >= 3,
        "{manifest}"
    );
    for rec in [&a, &b, &replayed, &drawn, &stationary] {
        let now = get_with(
            &client,
            &format!("{base}/api/v1/uploads/{}", rec["id"]),
            admin,
        )
        .await;
        assert_eq!(now["trust"]["epoch"], n, "{now}");
        assert_eq!(now["trust"]["verdict"], rec["trust"]["verdict"], "{now}");
    }
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_trust_end_to_end() {
    trust_end_to_end(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_trust_end_to_end() {
    trust_end_to_end(Db::postgis().await).await;
}
