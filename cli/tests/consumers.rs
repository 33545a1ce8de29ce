//! Map consumers end to end, on the real binary over HTTP, on both backends: consumer keys with
//! a daily quota (429 past it, 401 for a wrong or revoked key), their usage per day and area
//! surviving a restart, usage demand counting one key once however often it refreshes, and the
//! client address read behind trusted proxies only.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const MONACO_BOX: &str = "7.41,43.72,7.43,43.74";

/// `covermap keys create` with extra arguments; its output, successful or not.
fn keys_create(db: &Db, args: &[&str]) -> std::process::Output {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    db.run(&all)
}

fn consumer_key(db: &Db, quota: &str) -> String {
    let out = keys_create(db, &["--role", "consumer", "--quota", quota]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn coverage(client: &reqwest::Client, base: &str, key: &str) -> reqwest::Response {
    client
        .get(format!("{base}/api/v1/coverage?bbox={MONACO_BOX}"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
}

/// Stops the server as an operator does (SIGTERM), so it finishes what it was doing.
fn stop(mut server: Running) {
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
}

async fn usage(client: &reqwest::Client, base: &str, key: &str, query: &str) -> Value {
    get_with(
        client,
        &format!("{base}/api/v1/consumers/usage{query}"),
        key,
    )
    .await
}

async fn consumers_end_to_end(db: Db) {
    // Keys: a consumer key needs a quota, and only consumer keys have one.
    let refused = keys_create(&db, &["--role", "consumer"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("quota"));
    assert!(
        !keys_create(&db, &["--role", "planner", "--quota", "5"])
            .status
            .success()
    );
    let admin = create_key(&db, "admin", None);
    let small = consumer_key(&db, "5");
    let listed = db.run(&["keys", "list"]);
    assert!(listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.contains("\tconsumer\t") && l.contains("\t5/day\t")),
        "{listed}"
    );
    let server = serve(&db, &[]);
    let client = reqwest::Client::new();
    let base = server.base.clone();

    // A wrong key on a public endpoint is 401, not anonymous.
    let r = coverage(&client, &base, "cm_not_a_key").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Five requests pass, each way a key is sent; the sixth is past the quota.
    assert_eq!(
        coverage(&client, &base, &small).await.status(),
        StatusCode::OK
    );
    for url in [
        format!("{base}/api/v1/coverage?bbox={MONACO_BOX}&key={small}"),
        format!("{base}/api/v1/stats?key={small}"),
    ] {
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    for _ in 0..2 {
        let r = client
            .get(format!("{base}/api/v1/coverage?bbox={MONACO_BOX}"))
            .bearer_auth(&small)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = coverage(&client, &base, &small).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_code(&body), "quota_exceeded");
    assert_eq!(body["error"]["quota_per_day"], 5);
    let resets: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(body["error"]["resets_at"].clone()).unwrap();
    assert_eq!(resets, {
        let tomorrow = chrono::Utc::now().date_naive().succ_opt().unwrap();
        tomorrow.and_hms_opt(0, 0, 0).unwrap().and_utc()
    });
    // Tiles are counted against the same quota.
    let r = client
        .get(format!("{base}/tiles/coverage.json"))
        .bearer_auth(&small)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Anonymous callers are not affected.
    get_json(&client, &format!("{base}/api/v1/stats")).await;

    // Admins create consumer keys over the API too, with a quota.
    let create = |body: Value| {
        client
            .post(format!("{base}/api/v1/keys"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let r = create(json!({"role": "consumer"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&r.json().await.unwrap()), "invalid_quota");
    let r = create(json!({"role": "consumer", "quota_per_day": 10_000}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["record"]["quota_per_day"], 10_000);
    let big = created["key"].as_str().unwrap().to_owned();
    let big_id = created["record"]["id"].as_i64().unwrap();

    // A hundred refreshes of one area by one key count once towards its demand.
    for _ in 0..100 {
        assert_eq!(
            coverage(&client, &base, &big).await.status(),
            StatusCode::OK
        );
    }
    let mine = usage(&client, &base, &big, "").await;
    let days = mine["usage"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{mine}");
    assert_eq!(days[0]["key_id"], big_id);
    assert_eq!(days[0]["requests"], 100);
    assert_eq!(days[0]["areas"].as_array().unwrap().len(), 1);
    assert_eq!(days[0]["areas"][0]["requests"], 100);
    // A consumer reads its own usage only; an admin reads everyone's.
    let r = client
        .get(format!("{base}/api/v1/consumers/usage?key_id=1"))
        .bearer_auth(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let all = usage(&client, &base, &admin, "?days=2").await;
    assert_eq!(all["usage"].as_array().unwrap().len(), 2, "{all}");
    let policy = covermap_scoring::RewardPolicy::shipped();
    let epoch = policy.epoch_at(chrono::Utc::now()).unwrap();
    let store = db.store().await;
    let demand = store.usage(epoch).await.unwrap();
    // Two keys looked at Monaco: two lookers, whatever their 104 requests.
    assert_eq!(demand.len(), 1, "{demand:?}");
    assert_eq!(demand[0].1, 2);

    // A revoked key is 401 at once.
    let r = client
        .delete(format!("{base}/api/v1/keys/{big_id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        coverage(&client, &base, &big).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // A restart gives no quota back: the count was written at shutdown and is read again.
    stop(server);
    let server = serve(&db, &[]);
    let r = coverage(&client, &server.base, &small).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let out = db.run(&["keys", "usage"]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let requests: Vec<i64> = lines
        .iter()
        .map(|l| l["requests"].as_i64().unwrap())
        .collect();
    assert_eq!(requests, [5, 100], "{lines:?}");
    assert_eq!(store.usage(epoch).await.unwrap(), demand);
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_consumers_end_to_end() {
    consumers_end_to_end(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_consumers_end_to_end() {
    consumers_end_to_end(Db::postgis().await).await;
}

async fn stats_from(client: &reqwest::Client, base: &str, forwarded_for: &str) -> StatusCode {
    client
        .get(format!("{base}/api/v1/stats"))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
}

/// One request a client address, then 429: `--public-rate 0.2` is a bucket of one.
#[tokio::test]
async fn the_client_address_is_read_behind_trusted_proxies_only() {
    let db = Db::sqlite();
    let client = reqwest::Client::new();
    let behind = serve(
        &db,
        &["--public-rate", "0.2", "--trusted-proxies", "127.0.0.1"],
    );
    let base = behind.base.clone();
    assert_eq!(
        stats_from(&client, &base, "198.51.100.1").await,
        StatusCode::OK
    );
    assert_eq!(
        stats_from(&client, &base, "198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy has a bucket of its own; a forged hop left of the
    // proxy's does not make a third.
    assert_eq!(
        stats_from(&client, &base, "6.6.6.6, 198.51.100.2").await,
        StatusCode::OK
    );
    assert_eq!(
        stats_from(&client, &base, "7.7.7.7, 198.51.100.2").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    drop(behind);
    // Without trusted proxies the header is the client's word: ignored.
    let direct = serve(&db, &["--public-rate", "0.2"]);
    let base = direct.base.clone();
    assert_eq!(
        stats_from(&client, &base, "198.51.100.3").await,
        StatusCode::OK
    );
    assert_eq!(
        stats_from(&client, &base, "198.51.100.4").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let r = client
        .get(format!("{base}/api/v1/stats"))
        .header("forwarded", "for=198.51.100.5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}
