//! End to end: the policy in force is the database's, not each process's file; a proposal is
//! made over HTTP, simulated on the closed epoch, voted on by the contributors who earned in it
//! with ballots their devices signed, decided when its vote closes, checked by a third party from
//! the published ballots alone, and put in force at the next epoch boundary — the epoch before it
//! closes under the old policy, the epoch from it under the new, in every process.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

mod common;

use common::*;

const EPOCH_SECONDS: i64 = 4;

fn genesis() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// The shipped policy with 4-second epochs, no grace, votes of `voting` seconds decided by half
/// the electorate, in force at the next boundary; `version` and radio points as given.
fn policy_text(version: u32, radio_points: &str, voting: u64) -> String {
    let shipped = covermap_scoring::RewardPolicy::shipped();
    covermap_scoring::policy::DEFAULT_POLICY
        .replace(
            &format!("version = {}", shipped.rules.version),
            &format!("version = {version}"),
        )
        .replace(
            "length_seconds = 86400",
            &format!("length_seconds = {EPOCH_SECONDS}"),
        )
        .replace("grace_seconds = 3600", "grace_seconds = 0")
        .replace("emission = 1000000000000", "emission = 1000")
        .replace("points = 0.25", &format!("points = {radio_points}"))
        .replace("quorum = 0.2", "quorum = 0.5")
        .replace(
            "voting_seconds = 604800",
            &format!("voting_seconds = {voting}"),
        )
        .replace(
            "activation_delay_seconds = 86400",
            "activation_delay_seconds = 0",
        )
}

fn sha256(text: &str) -> String {
    covermap_scoring::RewardPolicy::parse(text).unwrap().hash
}

/// Waits for epoch `n` to be closed by the server's closer; its manifest.
async fn closed(client: &reqwest::Client, base: &str, n: u64) -> Value {
    for _ in 0..300 {
        let r = client
            .get(format!("{base}/api/v1/epochs/{n}"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            return r.json::<Value>().await.unwrap()["manifest"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("epoch {n} was not closed");
}

async fn propose(client: &reqwest::Client, base: &str, key: &str, body: Value) -> (u16, Value) {
    let r = client
        .post(format!("{base}/api/v1/policy/proposals"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn ballot(choice: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "choice": choice })).unwrap()
}

async fn policy_hash_of(client: &reqwest::Client, base: &str) -> String {
    get_json(client, &format!("{base}/api/v1/policy")).await["hash"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn a_passed_proposal_is_in_force_from_the_next_boundary_everywhere(db: Db) {
    let genesis_text = policy_text(10, "0.25", 8);
    let proposed_text = policy_text(11, "0.5", 8);
    let genesis_file = db.dir.path().join("policy.toml");
    std::fs::write(&genesis_file, &genesis_text).unwrap();
    let g = genesis_file.display().to_string();
    let server = serve(&db, &["--policy", &g]);
    // A second process on the same database, started without a policy file: the store's is in
    // force there too.
    let other = serve(&db, &[]);
    let client = reqwest::Client::new();
    let base = &server.base;
    assert_eq!(policy_hash_of(&client, base).await, sha256(&genesis_text));
    assert_eq!(
        policy_hash_of(&client, &other.base).await,
        sha256(&genesis_text)
    );
    // A process started with another file is refused: rules change by vote.
    let rogue = db.dir.path().join("rogue.toml");
    std::fs::write(&rogue, policy_text(10, "9.0", 8)).unwrap();
    let mut args = db.args();
    args.extend([
        "--policy".into(),
        rogue.display().to_string(),
        "epoch".into(),
        "list".into(),
    ]);
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("covermap policy propose"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Alice and Bob earn in one epoch; Mallory has a device but earned nothing.
    let keys = access(&db, &server, &client).await;
    let bob_key = create_key(&db, "device", Some("bob"));
    let bob = register(&client, base, &bob_key, "cam-bob-1").await;
    let mallory_key = create_key(&db, "device", Some("mallory"));
    let mallory = register(&client, base, &mallory_key, "cam-mallory-1").await;
    let (_, earned) = submit_pair(
        &client,
        base,
        &keys.admin,
        [&keys.device_key, &bob_key],
        genesis(),
        EPOCH_SECONDS,
    )
    .await;
    let earned = earned as u64;
    let m = closed(&client, base, earned).await;
    assert_eq!(m["policy_hash"], sha256(&genesis_text));

    // Bad proposals are refused with what is wrong.
    let (status, body) = propose(
        &client,
        base,
        &keys.planner,
        json!({"title": "Same", "policy": genesis_text}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "invalid_proposal"),
        "{body}"
    );
    let clock = proposed_text.replace(
        &format!("length_seconds = {EPOCH_SECONDS}"),
        "length_seconds = 60",
    );
    let (status, body) = propose(
        &client,
        base,
        &keys.planner,
        json!({"title": "Clock", "policy": clock}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("epoch.length_seconds")
    );
    let (status, body) = propose(
        &client,
        base,
        &keys.planner,
        json!({"title": "Bad", "policy": "version = "}),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "invalid_policy"),
        "{body}"
    );
    let r = client
        .post(format!("{base}/api/v1/policy/proposals"))
        .json(&json!({"title": "Anonymous", "policy": proposed_text}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A planner proposes twice the radio points; the proposal carries its simulated effect.
    let (status, view) = propose(
        &client,
        base,
        &keys.planner,
        json!({"title": "Twice the radio points", "rationale": "Radio is scarce here.", "policy": proposed_text}),
    )
    .await;
    assert_eq!(status, 201, "{view}");
    let id = view["id"].as_i64().unwrap();
    assert_eq!(view["open"], true);
    assert_eq!(view["policy_hash"], sha256(&proposed_text));
    assert_eq!(view["base_hash"], sha256(&genesis_text));
    let electorate: Vec<&str> = view["electorate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["contributor"].as_str().unwrap())
        .collect();
    assert_eq!(electorate, ["alice", "bob"]);
    let sims = view["simulation"].as_array().unwrap();
    assert!(sims.iter().any(|s| s["epoch"] == earned), "{view}");
    assert!(
        sims[0]["contributors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["contributor"] == "alice"),
        "the simulation names each contributor's delta: {view}"
    );

    // Ballots: signed by the contributors' devices; a replay, an outsider, a bearer key and a
    // nonsense choice are refused; Bob changes his mind and his last ballot counts.
    let path = format!("/api/v1/policy/proposals/{id}/votes");
    let alice_yes = signed(
        &client,
        &keys.signer,
        reqwest::Method::POST,
        base,
        &path,
        ballot("yes"),
    );
    let replay = alice_yes.try_clone().unwrap();
    assert_eq!(alice_yes.send().await.unwrap().status(), 201);
    assert_eq!(
        replay.send().await.unwrap().status(),
        401,
        "a replayed ballot is refused"
    );
    let (status, body) = post_signed(&client, &mallory, base, &path, ballot("no")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (409, "not_eligible"),
        "{body}"
    );
    let r = client
        .post(format!("{base}{path}"))
        .bearer_auth(&keys.device_key)
        .json(&json!({"choice": "no"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a bearer key's ballot proves nothing to anyone else"
    );
    let (status, body) = post_signed(&client, &bob, base, &path, ballot("maybe")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "invalid_ballot"),
        "{body}"
    );
    let (status, _) = post_signed(&client, &bob, base, &path, ballot("no")).await;
    assert_eq!(status, 201);
    let (status, _) = post_signed(&client, &bob, base, &path, ballot("yes")).await;
    assert_eq!(status, 201);
    let so_far = get_json(&client, &format!("{base}/api/v1/policy/proposals/{id}")).await;
    assert_eq!(so_far["tally"]["yes"], 2, "{so_far}");
    assert_eq!(so_far["votes"].as_array().unwrap().len(), 3);
    assert!(
        so_far["votes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["signature_valid"] == true)
    );

    // The vote closes; the proposal passed and is in force from the next boundary.
    let ends: DateTime<Utc> = serde_json::from_value(view["voting_ends_at"].clone()).unwrap();
    while Utc::now() < ends + chrono::Duration::milliseconds(300) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = post_signed(&client, &keys.signer, base, &path, ballot("no")).await;
    assert_eq!(status, 409, "a ballot after the close: {body}");
    let decided = get_json(&client, &format!("{base}/api/v1/policy/proposals/{id}")).await;
    assert_eq!(decided["outcome"], "passed", "{decided}");
    let activates = decided["activates_epoch"].as_u64().unwrap();
    let boundary = genesis() + chrono::Duration::seconds(activates as i64 * EPOCH_SECONDS);
    assert!(boundary >= ends && boundary - ends < chrono::Duration::seconds(EPOCH_SECONDS));

    // Anyone can check the count from the published ballots.
    let mut args = db.args();
    args.extend(["policy", "show", &id.to_string(), "--from", base].map(str::to_owned));
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check["server_count_agrees"], true, "{check}");
    assert_eq!(check["policy_hash_agrees"], true, "{check}");
    assert_eq!(check["electors_with_wrong_weights"], json!([]), "{check}");
    assert_eq!(check["ballots_not_counted"], json!([]), "{check}");
    assert_eq!(check["recounted"]["yes"], 2);

    // The epoch before the boundary closes under the old policy, the one from it under the
    // new, and both servers serve the new one.
    let before = closed(&client, base, activates - 1).await;
    assert_eq!(before["policy_hash"], sha256(&genesis_text));
    let after = closed(&client, base, activates).await;
    assert_eq!(after["policy_hash"], sha256(&proposed_text));
    for b in [base, &other.base] {
        let mut served = String::new();
        for _ in 0..100 {
            served = policy_hash_of(&client, b).await;
            if served == sha256(&proposed_text) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(served, sha256(&proposed_text), "{b}");
    }
    let policy = get_json(&client, &format!("{base}/api/v1/policy")).await;
    let in_force = policy["in_force"].as_array().unwrap();
    assert_eq!(in_force.len(), 2, "{policy}");
    assert_eq!(in_force[1]["from_epoch"], activates);
    assert_eq!(in_force[1]["proposal"], id);
    // The file the network started with still starts a process: it was in force once.
    let mut args = db.args();
    args.extend(["--policy".into(), g, "policy".into(), "list".into()]);
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(other);
    drop(server);
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_passed_proposal_is_in_force_from_the_next_boundary_everywhere() {
    a_passed_proposal_is_in_force_from_the_next_boundary_everywhere(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgis_a_passed_proposal_is_in_force_from_the_next_boundary_everywhere() {
    a_passed_proposal_is_in_force_from_the_next_boundary_everywhere(Db::postgis().await).await;
}
