//! Identity and signatures end to end (issue 14, section 1), on the real binary over real HTTP,
//! on both backends: the attacks that worked before — a public key cloned onto another device,
//! another contributor's device id registered again, a signed request moved to another device,
//! a timestamp that overflowed the clock check, the same bytes credited to the wrong device —
//! each refused; key rotation, revocation and listing; deprecated v1 signatures; and a JSON
//! `413` from every route that takes a body.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use chrono::Utc;
use common::*;
use covermap_ingest::access::{DEVICE_HEADER, DeviceSigner};
use reqwest::Method;
use serde_json::{Value, json};

const GPX: &str = "/api/v1/uploads/gpx";

/// `POST /api/v1/devices` with `key`: (status, body as text).
async fn register_raw(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    device: &str,
    public_key: &str,
) -> (u16, String) {
    let r = client
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(key)
        .json(&json!({"device": device, "public_key": public_key}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A `409` that says what is taken and nothing about whose it is: no record, no contributor,
/// no key id — only the error, echoing at most the device id the caller sent.
fn assert_taken_and_nothing_leaked(status: u16, body: &str, code: &str, asked_device: &str) {
    assert_eq!(status, 409, "{body}");
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(error_code(&v), code);
    assert_eq!(v.as_object().unwrap().len(), 1, "only the error: {body}");
    let mut members: Vec<&String> = v["error"].as_object().unwrap().keys().collect();
    members.sort();
    assert_eq!(members, ["code", "field", "message"], "{body}");
    let scrubbed = body.replace(asked_device, "");
    for secret in ["alice", "bob", "registered_", "contributor", "key-"] {
        assert!(!scrubbed.contains(secret), "{secret} leaked: {body}");
    }
}

/// Sends `headers` (a signature) with `body` to `path`, with the device header replaced when
/// `as_device` is given: (status, JSON).
async fn send_signed_as(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    headers: &[(&'static str, String)],
    as_device: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut r = client.post(format!("{base}{path}"));
    for (name, value) in headers {
        let value = match as_device {
            Some(d) if *name == DEVICE_HEADER => d.to_owned(),
            _ => value.clone(),
        };
        r = r.header(*name, value);
    }
    let r = r.body(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn track(minutes_ago: i64) -> Vec<u8> {
    gpx_track(
        43.7384,
        7.4246,
        Utc::now() - chrono::Duration::minutes(minutes_ago),
        30,
    )
}

/// Bob, holding only what alice's device sends in the clear (her public key, her signed
/// requests), gets nothing of hers: not her key on a device of his, not her device id, not her
/// requests under his device, not her upload. A timestamp at the ends of `i64` is stale.
async fn stolen_keys_ids_and_requests_are_refused(db: Db) {
    let server = serve(&db, &[]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let keys = access(&db, &server, &client).await;
    let alice = &keys.signer;
    let bob_key = create_key(&db, "device", Some("bob"));

    // Alice's public key on a device of bob's: refused, whether the id is new or hers.
    let (s, body) = register_raw(
        &client,
        base,
        &bob_key,
        "cam-bob-clone",
        &alice.public_key_hex(),
    )
    .await;
    assert_taken_and_nothing_leaked(s, &body, "public_key_taken", "cam-bob-clone");
    let (s, body) = register_raw(
        &client,
        base,
        &bob_key,
        "cam-alice-1",
        &alice.public_key_hex(),
    )
    .await;
    assert_taken_and_nothing_leaked(s, &body, "device_registered", "cam-alice-1");
    // Nor with a key of his own.
    let bobs_own = DeviceSigner::generate("x").public_key_hex();
    let (s, body) = register_raw(&client, base, &bob_key, "cam-alice-1", &bobs_own).await;
    assert_taken_and_nothing_leaked(s, &body, "device_registered", "cam-alice-1");
    // Alice's device key sending her registration again: her record, as a retry gets it.
    let (s, body) = register_raw(
        &client,
        base,
        &keys.device_key,
        "cam-alice-1",
        &alice.public_key_hex(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let record: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&record["device"], &record["contributor"]),
        (&json!("cam-alice-1"), &json!("alice"))
    );

    // Alice's signed upload, re-sent by bob with only the device header changed — to the
    // clone he could not register, and to his own registered device: refused, v2 and v1 alike.
    let bob = register(&client, base, &bob_key, "cam-bob-1").await;
    let gpx = track(60);
    let now = Utc::now();
    for headers in [
        alice.headers("POST", GPX, &gpx, now),
        alice.headers_v1("POST", GPX, &gpx, now),
    ] {
        for (device, code) in [
            ("cam-bob-clone", "unknown_device"),
            (bob.device.as_str(), "bad_signature"),
        ] {
            let (s, body) =
                send_signed_as(&client, base, GPX, &headers, Some(device), gpx.clone()).await;
            assert_eq!((s, error_code(&body).as_str()), (401, code), "{device}");
        }
    }
    let list = get_with(&client, &format!("{base}/api/v1/uploads"), &bob_key).await;
    assert_eq!(list["uploads"], json!([]), "nothing stored as bob's");
    // The very request alice signed is then hers, new, not anyone's duplicate.
    let headers = alice.headers("POST", GPX, &gpx, now);
    let (s, receipt) = send_signed_as(&client, base, GPX, &headers, None, gpx.clone()).await;
    assert_eq!(s, 202, "{receipt}");
    assert_eq!(
        (&receipt["duplicate"], &receipt["copy_of"]),
        (&json!(false), &Value::Null)
    );
    let id = receipt["upload_id"].as_i64().unwrap();
    let rec = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{id}"),
        &keys.device_key,
    )
    .await;
    assert_eq!(
        (&rec["device"], &rec["contributor"]),
        (&json!("cam-alice-1"), &json!("alice"))
    );

    // Timestamps whose distance from now overflowed i64 (in release builds `now + i64::MIN`
    // wrapped to a small skew and passed): stale, whatever second the server's clock is at.
    let t = Utc::now().timestamp();
    let mut stamps = vec![i64::MIN, i64::MAX, i64::MIN + 1];
    stamps.extend((-2..=2).map(|d| (t + d).wrapping_add(i64::MIN)));
    for stamp in stamps {
        let headers = alice.headers_at("POST", GPX, &gpx, stamp);
        let (s, body) = send_signed_as(&client, base, GPX, &headers, None, gpx.clone()).await;
        assert_eq!(
            (s, error_code(&body).as_str()),
            (401, "stale_request"),
            "{stamp}"
        );
    }
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_stolen_keys_ids_and_requests_are_refused() {
    stolen_keys_ids_and_requests_are_refused(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_stolen_keys_ids_and_requests_are_refused() {
    stolen_keys_ids_and_requests_are_refused(Db::postgis().await).await;
}

/// The same bytes from the same device are its retry; from another device they are that
/// device's own upload, queued and processed, marked as a copy of the first — never credited
/// to the first device, nor the first device's upload handed to the second.
async fn the_same_bytes_from_another_device_are_a_copy(db: Db) {
    let server = serve(&db, &[]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let keys = access(&db, &server, &client).await;
    let alice = &keys.signer;
    let bob_key = create_key(&db, "device", Some("bob"));
    let bob = register(&client, base, &bob_key, "cam-bob-1").await;
    let gpx = track(90);
    let (s, first) = post_signed(&client, alice, base, GPX, gpx.clone()).await;
    assert_eq!(s, 202, "{first}");
    let first_id = first["upload_id"].as_i64().unwrap();
    // Bob sends the same bytes first after alice: his own upload, a copy of hers.
    let (s, copy) = post_signed(&client, &bob, base, GPX, gpx.clone()).await;
    assert_eq!(s, 202, "{copy}");
    let copy_id = copy["upload_id"].as_i64().unwrap();
    assert_ne!(copy_id, first_id);
    assert_eq!(
        (&copy["duplicate"], &copy["copy_of"]),
        (&json!(false), &json!(first_id))
    );
    let rec = processed(&client, base, &bob_key, copy_id).await;
    assert_eq!(
        (&rec["device"], &rec["contributor"], &rec["copy_of"]),
        (&json!("cam-bob-1"), &json!("bob"), &json!(first_id))
    );
    // The copy is a suspicious event of its own: flagged, crediting nothing.
    assert_eq!(rec["trust"]["verdict"], "flagged", "{rec}");
    assert_eq!(
        rec["trust"]["findings"][0]["code"], "copied_upload",
        "{rec}"
    );
    assert_eq!(rec["cells"], 0, "{rec}");
    // Bob's retry is his duplicate; alice's is hers, still not bob's.
    let (s, again) = post_signed(&client, &bob, base, GPX, gpx.clone()).await;
    assert_eq!((s, &again["upload_id"]), (200, &json!(copy_id)), "{again}");
    let (s, again) = post_signed(&client, alice, base, GPX, gpx.clone()).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(
        (&again["duplicate"], &again["upload_id"], &again["copy_of"]),
        (&json!(true), &json!(first_id), &Value::Null)
    );
    let rec = processed(&client, base, &keys.device_key, first_id).await;
    assert_eq!(
        (&rec["device"], &rec["copy_of"]),
        (&json!("cam-alice-1"), &Value::Null)
    );
    // Bytes bob got hold of and sent before alice: hers is still hers (the copy, by time).
    let gpx = track(95);
    let (s, bobs) = post_signed(&client, &bob, base, GPX, gpx.clone()).await;
    assert_eq!(s, 202, "{bobs}");
    let (s, hers) = post_signed(&client, alice, base, GPX, gpx.clone()).await;
    assert_eq!(s, 202, "{hers}");
    assert_eq!(
        (&hers["duplicate"], &hers["copy_of"]),
        (&json!(false), &bobs["upload_id"])
    );
    let hers_id = hers["upload_id"].as_i64().unwrap();
    let rec = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{hers_id}"),
        &keys.device_key,
    )
    .await;
    assert_eq!(
        (&rec["device"], &rec["contributor"]),
        (&json!("cam-alice-1"), &json!("alice"))
    );
    // Each reads only its own.
    let r = signed(
        &client,
        &bob,
        Method::GET,
        base,
        &format!("/api/v1/uploads/{first_id}"),
        vec![],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_the_same_bytes_from_another_device_are_a_copy() {
    the_same_bytes_from_another_device_are_a_copy(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_the_same_bytes_from_another_device_are_a_copy() {
    the_same_bytes_from_another_device_are_a_copy(Db::postgis().await).await;
}

/// A device replaces its key with a request signed by the old one; the old key is dead at once
/// and can never be registered again. A contributor lists its devices and revokes them.
async fn devices_rotate_keys_and_are_revoked(db: Db) {
    let server = serve(&db, &[]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let keys = access(&db, &server, &client).await;
    let old = keys.signer.clone();
    let alice_2 = register(&client, base, &keys.device_key, "cam-alice-2").await;
    let bob_key = create_key(&db, "device", Some("bob"));
    let bob = register(&client, base, &bob_key, "cam-bob-1").await;

    // v2 answers carry no deprecation; v1 answers do, and still work.
    let r = signed(&client, &old, Method::POST, base, GPX, track(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers().get("deprecation").is_none());
    let gpx = track(20);
    let mut v1 = client.post(format!("{base}{GPX}"));
    for (name, value) in old.headers_v1("POST", GPX, &gpx, Utc::now()) {
        v1 = v1.header(name, value);
    }
    let r = v1.body(gpx).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["deprecation"], "true");

    let rotate = |signer: &DeviceSigner, device: &str, public_key: String| {
        let body = serde_json::to_vec(&json!({ "public_key": public_key })).unwrap();
        let path = format!("/api/v1/devices/{device}/key");
        signed(&client, signer, Method::POST, base, &path, body).send()
    };
    let new = DeviceSigner::generate("cam-alice-1").bound_to("alice");
    // To a key another device holds, or for another device: refused.
    let r = rotate(&old, "cam-alice-1", bob.public_key_hex())
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(error_code(&r.json().await.unwrap()), "public_key_taken");
    let r = rotate(&alice_2, "cam-alice-1", new.public_key_hex())
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = rotate(&old, "cam-alice-1", new.public_key_hex())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let record: Value = r.json().await.unwrap();
    assert_eq!(record["public_key"], new.public_key_hex());
    assert!(record["rotated_at"].is_string(), "{record}");
    // The old key signs nothing any more; the new one does.
    let (s, body) = post_signed(&client, &old, base, GPX, track(30)).await;
    assert_eq!((s, error_code(&body).as_str()), (401, "bad_signature"));
    let (s, body) = post_signed(&client, &new, base, GPX, track(30)).await;
    assert_eq!(s, 202, "{body}");
    // A retired key is never anyone's again: not this device's, not a new device's.
    let r = rotate(&new, "cam-alice-1", old.public_key_hex())
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(error_code(&r.json().await.unwrap()), "public_key_taken");
    let (s, body) = register_raw(
        &client,
        base,
        &keys.device_key,
        "cam-alice-3",
        &old.public_key_hex(),
    )
    .await;
    assert_taken_and_nothing_leaked(s, &body, "public_key_taken", "cam-alice-3");

    // Lists: a device key sees its contributor's devices, an admin all, others nothing.
    let names = |list: &Value| -> Vec<String> {
        list["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["device"].as_str().unwrap().to_owned())
            .collect()
    };
    let url = format!("{base}/api/v1/devices");
    let mine = get_with(&client, &url, &keys.device_key).await;
    assert_eq!(names(&mine), ["cam-alice-1", "cam-alice-2"]);
    assert_eq!(mine["devices"][0]["public_key"], new.public_key_hex());
    assert!(mine["devices"][0]["registered_at"].is_string());
    assert!(mine["devices"][1]["revoked_at"].is_null());
    assert_eq!(
        names(&get_with(&client, &url, &bob_key).await),
        ["cam-bob-1"]
    );
    assert_eq!(
        names(&get_with(&client, &url, &keys.admin).await),
        ["cam-alice-1", "cam-alice-2", "cam-bob-1"]
    );
    let r = client
        .get(&url)
        .bearer_auth(&keys.auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Revoking: not another contributor's device (as if it did not exist); one's own, once.
    let revoke = |key: &str, device: &str| {
        client
            .delete(format!("{base}/api/v1/devices/{device}"))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(revoke(&bob_key, "cam-alice-2").await.unwrap().status(), 404);
    assert_eq!(
        revoke(&keys.device_key, "cam-alice-2")
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        revoke(&keys.device_key, "cam-alice-2")
            .await
            .unwrap()
            .status(),
        404
    );
    let (s, body) = post_signed(&client, &alice_2, base, GPX, track(40)).await;
    assert_eq!((s, error_code(&body).as_str()), (401, "revoked_device"));
    let mine = get_with(&client, &url, &keys.device_key).await;
    assert!(mine["devices"][1]["revoked_at"].is_string(), "{mine}");
    // A revoked device's id and key stay taken.
    let (s, body) = register_raw(
        &client,
        base,
        &keys.device_key,
        "cam-alice-2",
        &DeviceSigner::generate("x").public_key_hex(),
    )
    .await;
    assert_taken_and_nothing_leaked(s, &body, "device_registered", "cam-alice-2");
    let (s, body) = register_raw(
        &client,
        base,
        &keys.device_key,
        "cam-alice-4",
        &alice_2.public_key_hex(),
    )
    .await;
    assert_taken_and_nothing_leaked(s, &body, "public_key_taken", "cam-alice-4");
    // An admin revokes anyone's.
    assert_eq!(
        revoke(&keys.admin, "cam-bob-1").await.unwrap().status(),
        204
    );
    let (s, body) = post_signed(&client, &bob, base, GPX, track(50)).await;
    assert_eq!((s, error_code(&body).as_str()), (401, "revoked_device"));
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_devices_rotate_keys_and_are_revoked() {
    devices_rotate_keys_and_are_revoked(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_devices_rotate_keys_and_are_revoked() {
    devices_rotate_keys_and_are_revoked(Db::postgis().await).await;
}

/// Every route that takes a body answers one over its limit with `413 too_large` and the JSON
/// error body (axum's own 413 was plain text; JSON routes answered 400). Bodies are just over
/// the limit: a far larger one may be cut off before the answer is read.
#[tokio::test]
async fn bodies_over_their_limit_are_json_413_on_every_route() {
    let db = Db::sqlite();
    let upload_limit = 4096;
    let server = serve(&db, &["--max-upload-bytes", &upload_limit.to_string()]);
    // A connection whose body the server left unread is closed after the 413: no reuse.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let base = &server.base;
    let keys = access(&db, &server, &client).await;
    const JSON_LIMIT: usize = 2 * 1024 * 1024;
    const POLICY_LIMIT: usize = 64 * 1024;
    let over = |limit: usize| vec![b' '; limit + 100];
    enum By<'a> {
        Key(&'a str),
        Signed,
    }
    let cases: Vec<(Method, String, By, Vec<u8>)> = vec![
        (
            Method::POST,
            "/api/v1/keys".into(),
            By::Key(&keys.admin),
            over(JSON_LIMIT),
        ),
        (
            Method::POST,
            "/api/v1/devices".into(),
            By::Key(&keys.device_key),
            over(JSON_LIMIT),
        ),
        (
            Method::POST,
            "/api/v1/devices/cam-alice-1/key".into(),
            By::Signed,
            over(JSON_LIMIT),
        ),
        (
            Method::POST,
            "/api/v1/audit/frames/1/0/decision".into(),
            By::Key(&keys.auditor),
            over(JSON_LIMIT),
        ),
        (
            Method::POST,
            "/api/v1/demand".into(),
            By::Key(&keys.planner),
            over(JSON_LIMIT),
        ),
        (
            Method::POST,
            "/api/v1/demand/preview".into(),
            By::Key(&keys.planner),
            over(JSON_LIMIT),
        ),
        (
            Method::POST,
            "/api/v1/policy/simulate?epoch=0".into(),
            By::Key(&keys.planner),
            over(POLICY_LIMIT),
        ),
        (
            Method::POST,
            "/api/v1/policy/simulate?epoch=0".into(),
            By::Key(&keys.planner),
            over(JSON_LIMIT),
        ),
        (Method::POST, GPX.into(), By::Signed, over(upload_limit)),
        (
            Method::POST,
            "/api/v1/uploads/wigle".into(),
            By::Key(&keys.device_key),
            over(upload_limit),
        ),
        (
            Method::POST,
            "/api/v1/drives".into(),
            By::Signed,
            over(upload_limit),
        ),
        (
            Method::POST,
            "/api/v1/drives/sessions".into(),
            By::Signed,
            over(upload_limit),
        ),
        (
            Method::PUT,
            "/api/v1/drives/sessions/s1".into(),
            By::Signed,
            over(upload_limit),
        ),
        (
            Method::POST,
            "/v2/geosubmit".into(),
            By::Key(&keys.device_key),
            over(upload_limit),
        ),
        (
            Method::POST,
            "/v1/geosubmit".into(),
            By::Key(&keys.device_key),
            over(upload_limit),
        ),
    ];
    for (method, path, by, body) in cases {
        // The server answers 413 as soon as it reads Content-Length and closes the connection;
        // a client still writing the body may hit a broken pipe before it reads that answer
        // (hyper's client does not read early answers), so such a send is tried again.
        let mut tries = 0;
        let r = loop {
            let request = match &by {
                By::Key(key) => client
                    .request(method.clone(), format!("{base}{path}"))
                    .bearer_auth(key)
                    .body(body.clone()),
                By::Signed => signed(
                    &client,
                    &keys.signer,
                    method.clone(),
                    base,
                    &path,
                    body.clone(),
                ),
            };
            match request.send().await {
                Ok(r) => break r,
                Err(e) if e.is_request() && tries < 5 => tries += 1,
                Err(e) => panic!("{method} {path}: {e}"),
            }
        };
        assert_eq!(r.status(), 413, "{method} {path}");
        assert_eq!(
            r.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), "too_large", "{method} {path}");
    }
    // Just under the limits the same routes read the body (and judge what is in it).
    let r = client
        .post(format!("{base}/api/v1/demand"))
        .bearer_auth(&keys.planner)
        .body(vec![b' '; JSON_LIMIT - 100])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .post(format!("{base}/api/v1/policy/simulate?epoch=0"))
        .bearer_auth(&keys.planner)
        .body(vec![b'#'; POLICY_LIMIT - 100])
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 413);
    drop(server);
    db.finish().await;
}
