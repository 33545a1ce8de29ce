//! End to end: real radio uploads from two contributors, an epoch closed by two closers at once
//! (exactly once), listed, verified against its stored inputs, proved over HTTP, re-run under a
//! proposed policy; the schedule inside `serve`; planners' demand areas.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use covermap_scoring::ledger::{self, LedgerLeaf};
use serde_json::{Value, json};

mod common;

use common::*;

const EPOCH_SECONDS: i64 = 4;

fn genesis() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// The shipped policy with 4-second epochs, no grace and an emission of 1000 base units.
fn short_policy(dir: &std::path::Path, name: &str, radio_points: &str) -> std::path::PathBuf {
    let text = covermap_scoring::policy::DEFAULT_POLICY
        .replace(
            "length_seconds = 86400",
            &format!("length_seconds = {EPOCH_SECONDS}"),
        )
        .replace("grace_seconds = 3600", "grace_seconds = 0")
        .replace("emission = 1000000000000", "emission = 1000")
        .replace("points = 0.25", &format!("points = {radio_points}"));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn wait_for_end_of(epoch: u64) {
    let end = genesis() + chrono::Duration::seconds((epoch as i64 + 1) * EPOCH_SECONDS);
    while Utc::now() < end + chrono::Duration::milliseconds(200) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cli(db: &Db, policy: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut all = db.args();
    all.extend(["--policy".into(), policy.display().to_string()]);
    all.extend(args.iter().map(|s| (*s).to_owned()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    run(&all, &[])
}

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn an_epoch_closes_once_verifies_and_proves(db: Db) {
    let policy = short_policy(db.dir.path(), "policy.toml", "0.25");
    let p = policy.display().to_string();
    let server = serve(&db, &["--policy", &p, "--close-epochs", "false"]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let keys = access(&db, &server, &client).await;
    let bob_key = create_key(&db, "device", Some("bob"));
    let (_, n) = submit_pair(
        &client,
        base,
        &keys.admin,
        [&keys.device_key, &bob_key],
        genesis(),
        EPOCH_SECONDS,
    )
    .await;
    let n = n as u64;
    // Per network in the cell: both measured the same LTE cell, so it is corroborated.
    let nets = get_json(
        &client,
        &format!("{base}/api/v1/radio/networks?bbox=-43.5,-22.8,-43.4,-22.7"),
    )
    .await;
    let lte = nets["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["technology"] == "lte")
        .unwrap_or_else(|| panic!("{nets}"));
    assert_eq!(lte["operator"], "208-1");
    assert_eq!(
        (lte["samples"].as_u64(), lte["contributors"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (lte["best_dbm"].as_i64(), lte["median_dbm"].as_i64()),
        (Some(-54), Some(-57))
    );
    assert_eq!(lte["corroborated"], true);
    wait_for_end_of(n).await;

    // Two closers at once: one closes it, the other finds it closed or being closed.
    let epoch = n.to_string();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| cli(&db, &policy, &["epoch", "close", "--epoch", &epoch]));
        let b = s.spawn(|| cli(&db, &policy, &["epoch", "close", "--epoch", &epoch]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let ok: Vec<_> = [&a, &b]
        .into_iter()
        .filter(|o| o.status.success())
        .collect();
    assert!(
        !ok.is_empty(),
        "{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    for o in [&a, &b].into_iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("is being closed by"), "{err}");
    }
    let manifest = &json_lines(ok[0])[0];
    for o in &ok {
        assert_eq!(json_lines(o)[0]["root"], manifest["root"]);
    }
    // Alice and Bob each measured the same LTE cell and beacon: corroborated, equal shares.
    assert_eq!(manifest["emission"], 1000);
    assert_eq!(manifest["distributed"], 1000, "{manifest}");
    assert_eq!(manifest["unallocated"], 0);
    assert_eq!(manifest["contributors"], 2);
    assert_eq!(manifest["radio_samples"], 4);

    // Closing it again changes nothing.
    let again = cli(&db, &policy, &["epoch", "close", "--epoch", &epoch]);
    assert!(again.status.success());
    assert_eq!(json_lines(&again)[0]["root"], manifest["root"]);
    // Epochs close in order: the one before cannot be closed any more, nor one ahead.
    let before = cli(
        &db,
        &policy,
        &["epoch", "close", "--epoch", &(n - 1).to_string()],
    );
    assert!(!before.status.success());
    assert!(String::from_utf8_lossy(&before.stderr).contains("cannot be closed now"));
    let ahead = cli(
        &db,
        &policy,
        &["epoch", "close", "--epoch", &(n + 100).to_string()],
    );
    assert!(!ahead.status.success());

    let list = json_lines(&cli(&db, &policy, &["epoch", "list"]));
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["epoch"], n);
    assert_eq!(list[0]["status"], "closed");
    assert_eq!(list[0]["root"], manifest["root"]);
    assert_eq!(list[0]["emitted"], 1000);
    assert_eq!(list[0]["unallocated"], 0);

    let verify = cli(&db, &policy, &["epoch", "verify", "--epoch", &epoch]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let v = &json_lines(&verify)[0];
    assert_eq!(v["stored_root"], v["recomputed_root"]);
    assert_eq!(v["matches"], true);

    // Anyone can check the root from the published files alone, fetched over HTTP: the
    // database named here does not even exist.
    let published = format!("{base}/published");
    let root = manifest["root"].as_str().unwrap();
    let nowhere = ["--database", "postgres://nobody@127.0.0.1:9/none"];
    let public = run(
        &[
            &nowhere[..],
            &[
                "epoch", "verify", "--epoch", &epoch, "--from", &published, "--root", root,
            ],
        ]
        .concat(),
        &[],
    );
    assert!(
        public.status.success(),
        "{}",
        String::from_utf8_lossy(&public.stderr)
    );
    let v = &json_lines(&public)[0];
    assert_eq!(
        (&v["recomputed_root"], &v["matches"]),
        (&manifest["root"], &json!(true))
    );
    let other = "0".repeat(64);
    let wrong = run(
        &[
            &nowhere[..],
            &[
                "epoch", "verify", "--epoch", &epoch, "--from", &published, "--root", &other,
            ],
        ]
        .concat(),
        &[],
    );
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not the 000"));
    let m = get_json(&client, &format!("{published}/epochs/{n}/manifest.json")).await;
    assert_eq!(m["root"], manifest["root"]);
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len(), 12, "{m}");
    let radio = files.iter().find(|f| f["name"] == "radio.parquet").unwrap();
    assert_eq!(radio["rows"], 4);
    let r = client
        .get(format!(
            "{published}/epochs/{n}/{}/radio.parquet",
            radio["sha256"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.apache.parquet"
    );
    let bytes = r.bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
    assert_eq!(bytes.len() as u64, radio["bytes"].as_u64().unwrap());
    // Nothing but published epochs' files: not the uploads' blobs, not a path out.
    for path in [
        "sha256/ab/abcd",
        "epochs/1/../../sha256/ab/abcd",
        "epochs/999999/manifest.json",
    ] {
        let r = client
            .get(format!("{published}/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(error_code(&r.json().await.unwrap()), "not_found", "{path}");
    }

    // Each contributor proves its cumulative total against the root, over HTTP.
    for who in ["alice", "bob"] {
        let proof = get_json(&client, &format!("{base}/api/v1/rewards/{who}/proof")).await;
        assert_eq!(proof["cumulative"], "500", "{proof}");
        assert_eq!(proof["root"], manifest["root"]);
        let leaf = LedgerLeaf {
            epoch: n,
            distributor: proof["distributor"].as_str().unwrap().into(),
            contributor: who.into(),
            cumulative: 500,
        };
        let path: Vec<ledger::Hash> = proof["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        let root: ledger::Hash = hex::decode(proof["root"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        assert!(ledger::verify(&leaf, &path, &root));
        assert!(!ledger::verify(
            &LedgerLeaf {
                cumulative: 501,
                ..leaf
            },
            &path,
            &root
        ));
        let history = get_json(&client, &format!("{base}/api/v1/rewards/{who}")).await;
        assert_eq!(history["epochs"][0]["amount"], 500);
    }
    let r = client
        .get(format!("{base}/api/v1/rewards/mallory/proof"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(&r.json().await.unwrap()), "not_found");
    let e = get_json(&client, &format!("{base}/api/v1/epochs/{n}")).await;
    assert_eq!(e["manifest"]["root"], manifest["root"]);
    assert!(e["policy"].as_str().unwrap().contains("length_seconds = 4"));

    // The same epoch under a proposed policy: the split is the same (both equal), the
    // proposed hash is named, and each contributor's line says what it received.
    let proposed = short_policy(db.dir.path(), "proposed.toml", "0.5");
    let sim = cli(
        &db,
        &policy,
        &[
            "rewards",
            "simulate",
            "--policy",
            &proposed.display().to_string(),
            "--epoch",
            &epoch,
        ],
    );
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let lines = json_lines(&sim);
    assert_ne!(lines[0]["proposed_policy_hash"], lines[0]["policy_hash"]);
    let alice = lines.iter().find(|l| l["contributor"] == "alice").unwrap();
    assert_eq!(
        (alice["received"].as_u64(), alice["simulated"].as_u64()),
        (Some(500), Some(500))
    );
    assert!(lines.iter().any(|l| l.get("cell").is_some()));

    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_an_epoch_closes_once_verifies_and_proves() {
    an_epoch_closes_once_verifies_and_proves(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_an_epoch_closes_once_verifies_and_proves() {
    an_epoch_closes_once_verifies_and_proves(Db::postgis().await).await;
}

/// `epoch verify` notices an input changed after the close, names it, and exits non-zero.
#[tokio::test]
async fn verify_fails_when_an_input_changed() {
    use sqlx::Connection;
    let db = Db::sqlite();
    let policy = short_policy(db.dir.path(), "policy.toml", "0.25");
    let p = policy.display().to_string();
    let server = serve(&db, &["--policy", &p, "--close-epochs", "false"]);
    let client = reqwest::Client::new();
    let keys = access(&db, &server, &client).await;
    let bob_key = create_key(&db, "device", Some("bob"));
    let ([_, bob], n) = submit_pair(
        &client,
        &server.base,
        &keys.admin,
        [&keys.device_key, &bob_key],
        genesis(),
        EPOCH_SECONDS,
    )
    .await;
    let n = n as u64;
    wait_for_end_of(n).await;
    let epoch = n.to_string();
    assert!(
        cli(&db, &policy, &["epoch", "close", "--epoch", &epoch])
            .status
            .success()
    );
    drop(server);
    let url = format!(
        "sqlite://{}",
        db.dir.path().join("covermap.sqlite3").display()
    );
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    // Without Bob's sightings nobody else heard Alice's emitters: the epoch would pay nothing.
    sqlx::query("DELETE FROM radio_observations WHERE upload_id = ?")
        .bind(bob)
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let out = cli(&db, &policy, &["epoch", "verify", "--epoch", &epoch]);
    assert!(!out.status.success());
    let v = &json_lines(&out)[0];
    assert_ne!(v["stored_root"], v["recomputed_root"]);
    assert_eq!(v["changed_inputs"], json!(["radio"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not verify"));
}

/// `serve` closes ended epochs by itself, after the grace period.
#[tokio::test]
async fn serve_closes_epochs_on_schedule() {
    let db = Db::sqlite();
    let policy = short_policy(db.dir.path(), "policy.toml", "0.25");
    let p = policy.display().to_string();
    let server = serve(&db, &["--policy", &p]);
    let client = reqwest::Client::new();
    let keys = access(&db, &server, &client).await;
    // Two contributors heard the same emitters: they count (one alone would not).
    let bob_key = create_key(&db, "device", Some("bob"));
    submit_pair(
        &client,
        &server.base,
        &keys.admin,
        [&keys.device_key, &bob_key],
        genesis(),
        EPOCH_SECONDS,
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let epochs = get_json(&client, &format!("{}/api/v1/epochs", server.base)).await;
        let paid = epochs["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["status"] == "closed" && e["distributed"] == 1000);
        if paid {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no epoch closed: {epochs}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let proof = get_json(
        &client,
        &format!("{}/api/v1/rewards/alice/proof", server.base),
    )
    .await;
    let cumulative: u64 = proof["cumulative"].as_str().unwrap().parse().unwrap();
    assert!(cumulative >= 500, "{proof}");
}

/// Planners draw demand areas and bounties; the demand map weighs cells by them.
#[tokio::test]
async fn planners_draw_demand_and_the_map_shows_it() {
    let db = Db::sqlite();
    let server = serve(&db, &[]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let keys = access(&db, &server, &client).await;
    let square = json!({"type": "Polygon", "coordinates": [[
        [7.420, 43.730], [7.424, 43.730], [7.424, 43.7336], [7.420, 43.7336], [7.420, 43.730]
    ]]});
    let expires = (Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    let body = json!({"name": "Port Hercule", "polygon": square, "weight": 2.0,
                      "budget": 6000, "expires_at": expires});
    let post = |key: &str, body: &Value| {
        client
            .post(format!("{base}/api/v1/demand"))
            .bearer_auth(key)
            .json(body)
            .send()
    };
    // First a preview: what the area would do, with nothing written. Never captured (staleness
    // 1) and no roads (gap 1): weight 1 now, 1 + 2 with the area; the bounty split evenly.
    let preview = |key: &str, body: &Value| {
        client
            .post(format!("{base}/api/v1/demand/preview"))
            .bearer_auth(key)
            .json(body)
            .send()
    };
    let r = preview(&keys.planner, &body).await.unwrap();
    assert_eq!(r.status(), 200);
    let before: Value = r.json().await.unwrap();
    assert_eq!(before["weight_now"]["mean"], 1.0, "{before}");
    assert_eq!(before["weight_with_area"]["max"], 3.0, "{before}");
    assert_eq!(before["cells_never_captured"], before["cells"], "{before}");
    assert_eq!(before["road_length_m"], 0.0, "{before}");
    assert!(before["uncovered_share"].is_null(), "{before}");
    let n = before["cells"].as_u64().unwrap();
    assert_eq!(before["bounty"]["per_cell"], 6000 / n, "{before}");
    assert!(
        get_json(&client, &format!("{base}/api/v1/demand")).await["areas"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Only planners preview, and a bad polygon is refused as a creation would be.
    let r = preview(&keys.device_key, &body).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = preview(
        &keys.planner,
        &json!({"polygon": {"type": "Polygon", "coordinates": [[[7.42, 43.73], [7.43, 43.73]]]}}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["field"],
        "polygon"
    );

    let r = post(&keys.planner, &body).await.unwrap();
    assert_eq!(r.status(), 201);
    let area: Value = r.json().await.unwrap();
    let cells = area["cells"].as_i64().unwrap();
    assert!((45..=80).contains(&cells), "{area}");
    assert_eq!(cells as u64, n, "the preview had the area's cells");
    assert_eq!(area["budget"], 6000);
    // With the area in force, a second one like it would add to it.
    let again: Value = preview(&keys.planner, &body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["weight_now"]["mean"], 3.0, "{again}");
    assert_eq!(again["weight_with_area"]["mean"], 5.0, "{again}");
    // Devices may not; bad polygons and bounties without expiry are refused, naming the field.
    let r = post(&keys.device_key, &body).await.unwrap();
    assert_eq!(r.status(), 403);
    let open = json!({"name": "x", "polygon": {"type": "Polygon",
        "coordinates": [[[7.42, 43.73], [7.43, 43.73], [7.43, 43.74]]]}});
    let r = post(&keys.planner, &open).await.unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["field"], "polygon", "{e}");
    let r = post(
        &keys.planner,
        &json!({"name": "x", "polygon": square, "budget": 5}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "missing_expiry"
    );
    let r = post(
        &keys.planner,
        &json!({"name": "x", "polygon": square, "weight": f64::MAX}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);

    let list = get_json(&client, &format!("{base}/api/v1/demand")).await;
    assert_eq!(list["areas"].as_array().unwrap().len(), 1);
    let map = get_json(
        &client,
        &format!("{base}/api/v1/demand/map?bbox=7.419,43.729,7.425,43.734"),
    )
    .await;
    let f = map["features"].as_array().unwrap();
    assert_eq!(
        f.len() as i64,
        cells,
        "no roads here: exactly the area's cells"
    );
    // Never captured (staleness 1), no roads (gap 1), demand 1 + 2: weight 3, one open bounty.
    for h in f {
        assert_eq!(h["properties"]["weight"], 3.0, "{h}");
        assert_eq!(h["properties"]["open_bounties"], 1);
        assert!(h["properties"]["cell"].is_string());
    }
    // That look at the harbour was a map consumer's: counted for its area, for the next epoch.
    let policy = covermap_scoring::RewardPolicy::shipped();
    let epoch = policy.epoch_at(Utc::now()).unwrap();
    let area = covermap_domain::Cell(
        h3o::LatLng::new(43.7315, 7.422)
            .unwrap()
            .to_cell(h3o::Resolution::Seven),
    );
    let store = db.store().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let usage = store.usage(epoch).await.unwrap();
        if usage.iter().any(|(a, n)| *a == area && *n >= 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "usage not recorded: {usage:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
