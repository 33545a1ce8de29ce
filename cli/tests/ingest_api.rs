//! Ingest end to end: who may call what (the whole role × endpoint matrix), the real camera and
//! radio files through the real API, the limits, resumable drives, and uploads under a worker
//! that is killed mid-run — on the real binary over real HTTP.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

const WIGLE_16: &str = "WigleWifi-1.6,appRelease=2.70,model=Pixel 7,release=14,device=panther,display=x,board=x,brand=google,star=Sol,body=3,subBody=0\n\
MAC,SSID,AuthMode,FirstSeen,Channel,Frequency,RSSI,CurrentLatitude,CurrentLongitude,AltitudeMeters,AccuracyMeters,RCOIs,MfgrId,Type\n\
1c:b7:2c:aa:bb:01,\"Cafe, Monaco\",[WPA2-PSK-CCMP][ESS],2026-11-20 10:00:00,6,2437,-61,43.7384,7.4246,50,5,,,WIFI\n\
1c:b7:2c:aa:bb:02,home_nomap,[WPA2-PSK-CCMP][ESS],2026-11-20 10:00:01,11,2462,-70,43.7385,7.4247,50,5,,,WIFI\n\
20801_12345_67890,Orange F,LTE;fr,2026-11-20 10:00:02,6300,0,-95,43.7386,7.4248,50,5,,,LTE\n";

const OPENCELLID: &str = "mcc,mnc,lac,cellid,lon,lat,signal,measured_at,rating,speed,direction,act,ta,psc,tac,pci,sid,nid,bid\n\
208,1,4711,26140929,7.4246,43.7384,-85,2026-11-20 10:00:00.000+0000,8,12.5,90,LTE,,,,,,,\n\
208,1,4711,70000,7.4247,43.7385,-71,2026-11-20 10:00:05.000+0000,8,12.5,90,GSM,,,,,,,\n\
1000,1,4711,1234,7.4248,43.7386,-80,2026-11-20 10:00:10.000+0000,8,12.5,90,GSM,,,,,,,\n";

/// Every endpoint against every kind of caller: 2xx, 401 or 403 as the design says.
#[tokio::test]
async fn every_role_reaches_exactly_its_endpoints() {
    let db = Db::sqlite();
    let server = serve(&db, &[]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let keys = access(&db, &server, &client).await;
    // An upload of alice's for the read endpoints.
    let (status, receipt) = post_signed(
        &client,
        &keys.signer,
        base,
        "/api/v1/uploads/gpx",
        gpx_track(43.73, 7.42, Utc::now() - chrono::Duration::hours(1), 30),
    )
    .await;
    assert_eq!(status, 202, "{receipt}");
    let id = receipt["upload_id"].as_i64().unwrap();

    #[derive(Clone, Copy, Debug)]
    enum Who {
        Nobody,
        DeviceKey,
        Signed,
        Planner,
        Auditor,
        Admin,
    }
    use Who::*;
    const ALL: [Who; 6] = [Nobody, DeviceKey, Signed, Planner, Auditor, Admin];
    // (method, path, body maker, expected per caller in ALL's order: 2 = 2xx, 401, 403)
    let wigle = |i: usize| {
        WIGLE_16
            .replace("-61", &format!("-{}", 40 + i))
            .into_bytes()
    };
    let geo = |i: usize| {
        serde_json::to_vec(
            &json!({"items": [{"timestamp": Utc::now().timestamp_millis() - 1000 * i as i64,
            "position": {"latitude": 43.7384, "longitude": 7.4246, "accuracy": 10},
            "cellTowers": [{"radioType": "lte", "mobileCountryCode": 208, "mobileNetworkCode": 1,
                            "locationAreaCode": 4711, "cellId": 26140929 + i}]}]}),
        )
        .unwrap()
    };
    let n = std::cell::Cell::new(0usize);
    let fresh = || {
        n.set(n.get() + 1);
        n.get()
    };
    // One key for each caller to try to revoke (only the admin may).
    let mut revocable = Vec::new();
    for _ in ALL {
        create_key(&db, "planner", None);
        let list = get_with(&client, &format!("{base}/api/v1/keys"), &keys.admin).await;
        revocable.push(
            list["keys"].as_array().unwrap().last().unwrap()["id"]
                .as_i64()
                .unwrap(),
        );
    }
    type Body = Box<dyn Fn(usize) -> Vec<u8>>;
    /// Method, path, a body maker, and per caller (in ALL's order) 2 for any 2xx, or the
    /// status expected; 0 where the caller is not tried.
    type Row = (Method, String, Body, [u16; 6]);
    let mut matrix: Vec<Row> = vec![];
    let none = |_: usize| Vec::new();
    for path in [
        "/api/v1/coverage",
        "/api/v1/roads",
        "/api/v1/radio",
        "/api/v1/imagery",
        "/api/v1/stats",
        "/healthz",
        "/",
    ] {
        matrix.push((Method::GET, path.into(), Box::new(none), [2, 2, 2, 2, 2, 2]));
    }
    // Published frames are public (this upload has none); refused frames are the auditors'.
    matrix.push((
        Method::GET,
        format!("/api/v1/frames/{id}/0/image"),
        Box::new(none),
        [404, 404, 404, 404, 404, 404],
    ));
    matrix.push((
        Method::GET,
        "/api/v1/audit/frames".into(),
        Box::new(none),
        [401, 403, 403, 403, 2, 2],
    ));
    matrix.push((
        Method::GET,
        format!("/api/v1/audit/frames/{id}/0/image"),
        Box::new(none),
        [401, 403, 403, 403, 404, 404],
    ));
    // Decisions on refused frames are the auditors' too (an empty body then fails its checks).
    matrix.push((
        Method::POST,
        format!("/api/v1/audit/frames/{id}/0/decision"),
        Box::new(none),
        [401, 403, 403, 403, 400, 400],
    ));
    matrix.push((
        Method::GET,
        "/api/v1/audit/log".into(),
        Box::new(none),
        [401, 403, 403, 403, 2, 2],
    ));
    matrix.push((
        Method::GET,
        "/metrics".into(),
        Box::new(none),
        [401, 403, 403, 403, 403, 2],
    ));
    for path in [
        "/api/v1/uploads".to_owned(),
        format!("/api/v1/uploads/{id}"),
        format!("/api/v1/uploads/{id}/matched"),
        format!("/api/v1/uploads/{id}/rejections"),
        format!("/api/v1/uploads/{id}/radio"),
        format!("/api/v1/uploads/{id}/frames"),
    ] {
        matrix.push((Method::GET, path, Box::new(none), [401, 2, 2, 403, 2, 2]));
    }
    // Tracks and drives only from a signing device (an empty drive then fails its checks).
    matrix.push((
        Method::POST,
        "/api/v1/uploads/gpx".into(),
        Box::new(move |i| {
            gpx_track(
                43.73,
                7.43,
                Utc::now() - chrono::Duration::hours(2) + chrono::Duration::minutes(i as i64),
                20,
            )
        }),
        [401, 401, 2, 401, 401, 401],
    ));
    matrix.push((
        Method::POST,
        "/api/v1/drives".into(),
        Box::new(none),
        [401, 401, 422, 401, 401, 401],
    ));
    matrix.push((
        Method::POST,
        "/api/v1/drives/sessions".into(),
        Box::new(none),
        [401, 401, 400, 401, 401, 401],
    ));
    // Radio from a signing device or a device key.
    matrix.push((
        Method::POST,
        "/api/v1/uploads/wigle".into(),
        Box::new(wigle),
        [401, 2, 2, 403, 403, 2],
    ));
    matrix.push((
        Method::POST,
        "/v2/geosubmit".into(),
        Box::new(geo),
        [401, 2, 2, 403, 403, 2],
    ));
    // Devices are registered, listed and revoked with a device key (or an admin's); a device
    // replaces its own key, signed; keys are the admin's.
    matrix.push((
        Method::POST,
        "/api/v1/devices".into(),
        Box::new(none),
        [401, 400, 401, 403, 403, 400],
    ));
    matrix.push((
        Method::GET,
        "/api/v1/devices".into(),
        Box::new(none),
        [401, 2, 401, 403, 403, 2],
    ));
    matrix.push((
        Method::DELETE,
        "/api/v1/devices/cam-nobody".into(),
        Box::new(none),
        [401, 404, 401, 403, 403, 404],
    ));
    matrix.push((
        Method::POST,
        "/api/v1/devices/cam-alice-1/key".into(),
        Box::new(none),
        [401, 401, 400, 401, 401, 401],
    ));
    matrix.push((
        Method::GET,
        "/api/v1/keys".into(),
        Box::new(none),
        [401, 403, 401, 403, 403, 2],
    ));
    matrix.push((
        Method::POST,
        "/api/v1/keys".into(),
        Box::new(none),
        [401, 403, 401, 403, 403, 400],
    ));
    for (i, want) in [401, 403, 401, 403, 403, 2].into_iter().enumerate() {
        let mut expected = [0; 6];
        expected[i] = want;
        matrix.push((
            Method::DELETE,
            format!("/api/v1/keys/{}", revocable[i]),
            Box::new(none),
            expected,
        ));
    }
    // Demand, epochs and rewards (after the rows whose bodies depend on the request count).
    for path in [
        "/api/v1/radio/networks",
        "/api/v1/demand",
        "/api/v1/demand/map?bbox=7.41,43.72,7.43,43.74",
        "/api/v1/epochs",
        "/api/v1/rewards/alice",
    ] {
        matrix.push((Method::GET, path.into(), Box::new(none), [2, 2, 2, 2, 2, 2]));
    }
    // The ledger is public; no epoch is closed yet.
    matrix.push((
        Method::GET,
        "/api/v1/rewards/alice/proof".into(),
        Box::new(none),
        [404, 404, 404, 404, 404, 404],
    ));
    // Demand areas are the planners' (an empty body then fails its checks).
    matrix.push((
        Method::POST,
        "/api/v1/demand".into(),
        Box::new(none),
        [401, 403, 403, 400, 403, 400],
    ));
    let mut failures = Vec::new();
    for (method, path, body, expected) in &matrix {
        for (who, want) in ALL.iter().zip(expected) {
            if *want == 0 {
                continue;
            }
            let bytes = body(fresh());
            let url = format!("{base}{path}");
            let request = match who {
                Nobody => client.request(method.clone(), &url).body(bytes),
                Signed => signed(&client, &keys.signer, method.clone(), base, path, bytes),
                other => {
                    let key = match other {
                        DeviceKey => &keys.device_key,
                        Planner => &keys.planner,
                        Auditor => &keys.auditor,
                        _ => &keys.admin,
                    };
                    // Geosubmit clients send the key as Ichnaea's do: in the query.
                    if path.starts_with("/v2/geosubmit") {
                        client
                            .request(method.clone(), format!("{url}?key={key}"))
                            .body(bytes)
                    } else {
                        client
                            .request(method.clone(), &url)
                            .bearer_auth(key)
                            .body(bytes)
                    }
                }
            };
            let status = request.send().await.unwrap().status().as_u16();
            let got = if (200..300).contains(&status) {
                2
            } else {
                status
            };
            if got != *want {
                failures.push(format!(
                    "{who:?} {method} {path}: {status}, expected {want}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Keys made through the API work at once; a revoked key stops at once.
    let r: Value = client
        .post(format!("{base}/api/v1/keys"))
        .bearer_auth(&keys.admin)
        .json(&json!({"role": "auditor"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let auditor = r["key"].as_str().unwrap().to_owned();
    get_with(&client, &format!("{base}/api/v1/uploads/{id}"), &auditor).await;
    let revoke = client
        .delete(format!("{base}/api/v1/keys/{}", r["record"]["id"]))
        .bearer_auth(&keys.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    let r = client
        .get(format!("{base}/api/v1/uploads/{id}"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(error_code(&r.json().await.unwrap()), "revoked_key");
    // Another contributor's device sees neither alice's upload nor her list.
    let bob_key = create_key(&db, "device", Some("bob"));
    let bob = register(&client, base, &bob_key, "cam-bob-1").await;
    let r = signed(
        &client,
        &bob,
        Method::GET,
        base,
        &format!("/api/v1/uploads/{id}"),
        vec![],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    let list = get_with(&client, &format!("{base}/api/v1/uploads"), &bob_key).await;
    assert!(list["uploads"].as_array().unwrap().is_empty(), "{list}");
    // A device id cannot be taken over with another key, nor take the form of a key's id.
    let again = client
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(&bob_key)
        .json(&json!({"device": "cam-alice-1", "public_key": bob.public_key_hex()}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    assert_eq!(
        error_code(&again.json().await.unwrap()),
        "device_registered"
    );
    let reserved = client
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(&bob_key)
        .json(&json!({"device": "key-1", "public_key": bob.public_key_hex()}))
        .send()
        .await
        .unwrap();
    assert_eq!(reserved.status(), 400);
    // Revoking bob's device key revokes the device it registered.
    let keys_list = get_with(&client, &format!("{base}/api/v1/keys"), &keys.admin).await;
    let bob_id = keys_list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["contributor"] == "bob")
        .unwrap()["id"]
        .clone();
    let r = client
        .delete(format!("{base}/api/v1/keys/{bob_id}"))
        .bearer_auth(&keys.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, body) = post_signed(
        &client,
        &bob,
        base,
        "/api/v1/uploads/gpx",
        gpx_track(43.74, 7.42, Utc::now() - chrono::Duration::hours(1), 30),
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (401, "revoked_device")
    );
    drop(server);
    db.finish().await;
}

/// The real files of testdata through the real API: each valid one ingested with the
/// right positions and times, each malformed one refused with its reason.
async fn real_files_go_through_the_api(db: Db) {
    let server = serve(&db, &[]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let keys = access(&db, &server, &client).await;
    let admin = keys.admin.as_str();
    let post = |path: &'static str, body: Vec<u8>| {
        let signer = &keys.signer;
        let client = &client;
        async move { post_signed(client, signer, base, path, body).await }
    };

    // NMEA logs: multi-constellation and BlackVue's side-car form taken; no fix and an aircraft
    // refused with their reasons.
    let (s, r) = post(
        "/api/v1/uploads/nmea",
        camera("nmea/nmea_with_sat_info.log"),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    let rec = processed(&client, base, admin, r["upload_id"].as_i64().unwrap()).await;
    assert_eq!(rec["fixes_accepted"], 36, "{rec}");
    let (s, r) = post(
        "/api/v1/uploads/nmea",
        camera("blackvue/blackvue_gps_excerpt_from_mapillary_test.gps"),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    processed(&client, base, admin, r["upload_id"].as_i64().unwrap()).await;
    let (s, r) = post("/api/v1/uploads/nmea", camera("nmea/nmea2.log")).await;
    assert_eq!((s, error_code(&r).as_str()), (422, "no_gnss_fix"), "{r}");
    let (s, r) = post("/api/v1/uploads/nmea", camera("nmea/nmea1.log")).await;
    assert_eq!(
        (s, error_code(&r).as_str()),
        (422, "implausible_speed"),
        "{r}"
    );
    assert!(
        r["error"]["message"].as_str().unwrap().contains("km/h"),
        "{r}"
    );

    // GPX files from real writers; one that is not GPX and one without any track point refused,
    // and the one whose
    // fixes jump 500 m a second.
    for f in [
        "caltopo-export.gpx",
        "garmin_with_extensions.gpx",
        "wahoo_example.gpx",
        "wikipedia_example.gpx",
    ] {
        let (s, r) = post("/api/v1/uploads/gpx", camera(&format!("gpx/{f}"))).await;
        assert_eq!(s, 202, "{f}: {r}");
        processed(&client, base, admin, r["upload_id"].as_i64().unwrap()).await;
    }
    for (f, code) in [
        ("badcharacter.xml", "invalid_gpx"),
        ("empty_name_tag.gpx", "no_points"),
    ] {
        let (s, r) = post("/api/v1/uploads/gpx", camera(&format!("gpx/{f}"))).await;
        assert_eq!((s, error_code(&r).as_str()), (422, code), "{f}: {r}");
    }
    let (s, r) = post("/api/v1/uploads/gpx", camera("gpx/with_accuracy.gpx")).await;
    assert_eq!(
        (s, error_code(&r).as_str()),
        (422, "implausible_speed"),
        "{r}"
    );

    // A camera drive of frames that carry EXIF GPS, with the malformed ones of mapillary_tools'
    // tests: the good frames placed where their EXIF says, each other frame left out with why.
    let names = [
        "DSC00001.JPG",
        "DSC00497.JPG",
        "adobe_coords.jpg",
        "corrupt_exif_wrong_type.jpg",
        "empty_exif.jpg",
        "test_exif.jpg",
    ];
    let entries: Vec<(&str, Vec<u8>)> = names
        .iter()
        .map(|n| (*n, camera(&format!("mapillary_tools/{n}"))))
        .collect();
    let (s, r) = post("/api/v1/drives", zip_of(&entries)).await;
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["summary"]["frames"], 6, "{r}");
    let id = r["upload_id"].as_i64().unwrap();
    let rec = processed(&client, base, admin, id).await;
    let frames = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{id}/frames"),
        admin,
    )
    .await;
    let frames = frames["frames"].as_array().unwrap();
    let by_frame = |i: i64| frames.iter().find(|f| f["frame"] == i);
    // Frames are numbered in name order: DSC00001, DSC00497, adobe, corrupt, empty, test_exif.
    let dsc1 = by_frame(0).expect("DSC00001 placed");
    assert!(
        (dsc1["pos"]["lat"].as_f64().unwrap() - 45.5169031).abs() < 1e-6,
        "{dsc1}"
    );
    assert!(
        (dsc1["pos"]["lon"].as_f64().unwrap() + 122.572765).abs() < 1e-6,
        "{dsc1}"
    );
    assert_eq!(dsc1["captured_at"], "2018-06-08T20:24:11Z");
    assert_eq!(
        (dsc1["width"].as_i64(), dsc1["height"].as_i64()),
        (Some(3840), Some(2160))
    );
    let dsc497 = by_frame(1).expect("DSC00497 placed");
    assert_eq!(dsc497["captured_at"], "2018-06-08T20:32:28Z");
    assert_ne!(
        dsc1["sequence"], dsc497["sequence"],
        "8 minutes apart: two sequences"
    );
    // Published only as their blurred derivatives, with what the vision stage found.
    for f in [dsc1, dsc497] {
        let v = &f["vision"];
        assert!(
            v["published_key"].as_str().unwrap().starts_with("sha256/"),
            "{f}"
        );
        assert_ne!(
            v["published_key"], f["blob_key"],
            "the original is never what is published"
        );
        assert_eq!(v["phash"].as_str().unwrap().len(), 16);
    }
    assert_eq!(frames.len(), 2, "{frames:?}");
    let rejections = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{id}/rejections"),
        admin,
    )
    .await;
    let reasons: Vec<(i64, String)> = rejections["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["item"].as_i64().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (2, "no_capture_time".to_owned()),
            (3, "no_capture_time".to_owned()),
            (4, "no_capture_time".to_owned()),
            // test_exif.jpg (HTC, Malta) is placed, but it is a 16×16 thumbnail.
            (5, "too_small".to_owned()),
        ],
        "{rejections}"
    );
    assert_eq!(
        (
            rec["observations_accepted"].as_i64(),
            rec["observations_rejected"].as_i64()
        ),
        (Some(2), Some(4))
    );
    // The frames' bytes are kept, under their own hashes.
    let sha = hex::encode(Sha256::digest(&entries[0].1));
    assert_eq!(dsc1["sha256"], sha);

    // A drive with a track: the frame is placed by interpolating its capture time on the track
    // (DSC00001's GPS time is 20:24:11Z); a frame from outside the track's span is left out.
    let t0 = Utc.with_ymd_and_hms(2018, 6, 8, 20, 24, 1).unwrap();
    let track = gpx_track(45.5, -122.57, t0, 60);
    let (s, r) = post(
        "/api/v1/drives",
        zip_of(&[
            ("a.jpg", entries[0].1.clone()),
            ("b.jpg", entries[1].1.clone()),
            ("track.gpx", track),
        ]),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    let id = r["upload_id"].as_i64().unwrap();
    processed(&client, base, admin, id).await;
    let frames = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{id}/frames"),
        admin,
    )
    .await;
    let f = &frames["frames"][0];
    assert_eq!(f["frame"], 0);
    // 10 s after the track's start: 10 steps of 0.0001° north, heading north.
    assert!(
        (f["pos"]["lat"].as_f64().unwrap() - 45.501).abs() < 1e-6,
        "{f}"
    );
    assert!(f["heading_deg"].as_f64().unwrap().abs() < 1.0, "{f}");
    assert_eq!(frames["frames"].as_array().unwrap().len(), 1);
    let rejections = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{id}/rejections"),
        admin,
    )
    .await;
    assert_eq!(
        rejections["rejections"][0]["reason"], "outside_track",
        "{rejections}"
    );
    assert_eq!(rejections["rejections"][0]["item"], 1);

    // Geosubmit v2, gzip-encoded and sent with the key in the query as NeoStumbler does:
    // `200 {}`, then stored and mapped; Ichnaea's example Wi-Fi MACs are group addresses.
    let doc = std::fs::read(shared(
        "radio/geosubmit/ichnaea_geosubmit2_doc_example.json",
    ))
    .unwrap();
    let r = client
        .post(format!("{base}/v2/geosubmit?key={}", keys.device_key))
        .header("content-encoding", "gzip")
        .header("content-type", "application/json")
        .body(gzip(&doc))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({}));
    let list = get_with(&client, &format!("{base}/api/v1/uploads?limit=1"), admin).await;
    let id = list["uploads"][0]["id"].as_i64().unwrap();
    assert_eq!(list["uploads"][0]["kind"], "geosubmit_v2");
    assert_eq!(list["uploads"][0]["contributor"], "alice");
    let rec = processed(&client, base, admin, id).await;
    assert_eq!(
        (
            rec["observations_accepted"].as_i64(),
            rec["observations_rejected"].as_i64()
        ),
        (Some(2), Some(2)),
        "{rec}"
    );
    let radio = get_with(&client, &format!("{base}/api/v1/uploads/{id}/radio"), admin).await;
    let emitters: Vec<&str> = radio["observations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["emitter"].as_str().unwrap())
        .collect();
    assert!(
        emitters.iter().any(|e| e.starts_with("wcdma:208:")
            || e.starts_with("gsm:208:")
            || e.starts_with("lte:208:")),
        "{radio}"
    );
    let rej = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{id}/rejections"),
        admin,
    )
    .await;
    assert!(
        rej["rejections"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["reason"] == "bad_mac" && r["stage"] == "radio"),
        "{rej}"
    );
    // The same submission again: recognised, not counted twice.
    let r = client
        .post(format!("{base}/v2/geosubmit?key={}", keys.device_key))
        .body(doc.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list = get_with(&client, &format!("{base}/api/v1/uploads?limit=1"), admin).await;
    assert_eq!(list["uploads"][0]["id"], id);
    let v1 = std::fs::read(shared(
        "radio/geosubmit/ichnaea_geosubmit1_doc_example.json",
    ))
    .unwrap();
    let r = client
        .post(format!("{base}/v1/geosubmit?key={}", keys.device_key))
        .body(v1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let coverage = get_json(&client, &format!("{base}/api/v1/radio")).await;
    assert!(!coverage["features"].as_array().unwrap().is_empty());

    // WiGLE and OpenCelliD files: kept, and the `_nomap` network and the bad MCC refused.
    let (s, r) = post("/api/v1/uploads/wigle", WIGLE_16.as_bytes().to_vec()).await;
    assert_eq!(s, 202, "{r}");
    let id = r["upload_id"].as_i64().unwrap();
    let rec = processed(&client, base, admin, id).await;
    assert_eq!(
        (
            rec["observations_accepted"].as_i64(),
            rec["observations_rejected"].as_i64()
        ),
        (Some(2), Some(1)),
        "{rec}"
    );
    let rej = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{id}/rejections"),
        admin,
    )
    .await;
    assert_eq!(rej["rejections"][0]["reason"], "nomap_ssid", "{rej}");
    let (s, r) = post("/api/v1/uploads/opencellid", OPENCELLID.as_bytes().to_vec()).await;
    assert_eq!(s, 202, "{r}");
    let id = r["upload_id"].as_i64().unwrap();
    let rec = processed(&client, base, admin, id).await;
    assert_eq!(
        (
            rec["observations_accepted"].as_i64(),
            rec["observations_rejected"].as_i64()
        ),
        (Some(2), Some(1)),
        "{rec}"
    );
    let rej = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{id}/rejections"),
        admin,
    )
    .await;
    assert_eq!(rej["rejections"][0]["reason"], "bad_mcc", "{rej}");
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_real_files_go_through_the_api() {
    real_files_go_through_the_api(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_real_files_go_through_the_api() {
    real_files_go_through_the_api(Db::postgis().await).await;
}

/// A JPEG header declaring a size, with no pixels behind it.
fn jpeg_header(width: u16, height: u16) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    j.extend_from_slice(&height.to_be_bytes());
    j.extend_from_slice(&width.to_be_bytes());
    j.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xD9]);
    j
}

/// Limits refuse with a clear error and keep nothing; large drives go up in resumable parts.
#[tokio::test]
async fn limits_hold_and_large_drives_resume() {
    let db = Db::sqlite();
    let server = serve(
        &db,
        &[
            "--max-upload-bytes",
            "1000000",
            "--max-drive-bytes",
            "8000000",
        ],
    );
    let client = reqwest::Client::new();
    let base = &server.base;
    let keys = access(&db, &server, &client).await;
    let track = gpx_track(43.73, 7.42, Utc::now() - chrono::Duration::hours(1), 30);

    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/api/v1/drives",
            zip_of(&[
                ("bomb.jpg", jpeg_header(60_000, 60_000)),
                ("t.gpx", track.clone()),
            ]),
            None,
            422,
            "too_many_pixels",
        ),
        (
            "/api/v1/drives",
            zip_of(&[
                ("a.jpg", jpeg_header(64, 64)),
                ("t.gpx", vec![b' '; 50_000_000]),
            ]),
            None,
            422,
            "compression_ratio",
        ),
        (
            "/api/v1/drives",
            b"PK\x03\x04 not really".to_vec(),
            None,
            422,
            "invalid_drive",
        ),
        (
            "/api/v1/drives",
            zip_of(&[("a.jpg", jpeg_header(64, 64))]),
            None,
            422,
            "invalid_drive",
        ),
        (
            "/v2/geosubmit",
            gzip(&vec![b' '; 50_000_000]),
            Some("gzip"),
            413,
            "too_large",
        ),
        (
            "/v2/geosubmit",
            b"{\"items\": 5}".to_vec(),
            None,
            422,
            "invalid_geosubmit",
        ),
        ("/v2/geosubmit", b"not json".to_vec(), None, 422, "not_json"),
        (
            "/v2/geosubmit",
            serde_json::to_vec(&json!({"items": vec![json!({}); 10_001]})).unwrap(),
            None,
            422,
            "too_many_items",
        ),
        (
            "/api/v1/uploads/wigle",
            b"MAC,SSID\n".to_vec(),
            None,
            422,
            "invalid_header",
        ),
    ];
    for (path, body, encoding, status, code) in cases {
        let mut r = signed(&client, &keys.signer, Method::POST, base, path, body);
        if let Some(e) = encoding {
            r = r.header("content-encoding", e);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path} {code}");
        assert_eq!(error_code(&r.json().await.unwrap()), code, "{path}");
    }
    let stats = get_json(&client, &format!("{base}/api/v1/stats")).await;
    assert_eq!(
        stats["stats"]["jobs_queued"], 0,
        "nothing refused was queued: {stats}"
    );

    // A drive larger than one request: opened, sent in parts, resumed after a wrong offset.
    let frames: Vec<(&str, Vec<u8>)> = vec![
        ("DSC00001.JPG", camera("mapillary_tools/DSC00001.JPG")),
        ("DSC00497.JPG", camera("mapillary_tools/DSC00497.JPG")),
    ];
    let drive = zip_of(&frames);
    assert!(drive.len() > 1_000_000);
    // (A body just over the limit: a far larger one may be cut off before the 413 is read.)
    let (s, r) = post_signed(
        &client,
        &keys.signer,
        base,
        "/api/v1/drives",
        vec![0; 1_000_100],
    )
    .await;
    assert_eq!((s, error_code(&r).as_str()), (413, "too_large"));
    let open = serde_json::to_vec(
        &json!({"size_bytes": drive.len(), "sha256": hex::encode(Sha256::digest(&drive))}),
    )
    .unwrap();
    let (s, session) =
        post_signed(&client, &keys.signer, base, "/api/v1/drives/sessions", open).await;
    assert_eq!(s, 201, "{session}");
    let path = format!(
        "/api/v1/drives/sessions/{}",
        session["session"].as_str().unwrap()
    );
    let put = |offset: usize, part: Vec<u8>| {
        signed(&client, &keys.signer, Method::PUT, base, &path, part)
            .header("upload-offset", offset.to_string())
            .send()
    };
    let chunk = 900_000;
    let r = put(0, drive[..chunk].to_vec()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["offset"], chunk);
    // A part sent again after a lost answer: refused with where the session stands.
    let r = put(0, drive[..chunk].to_vec()).await.unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (error_code(&body).as_str(), &body["error"]["offset"]),
        ("offset_mismatch", &json!(chunk))
    );
    // Another device cannot see or add to it.
    let bob_key = create_key(&db, "device", Some("bob"));
    let bob = register(&client, base, &bob_key, "cam-bob").await;
    let r = signed(&client, &bob, Method::GET, base, &path, vec![])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = signed(&client, &keys.signer, Method::GET, base, &path, vec![])
        .send()
        .await
        .unwrap();
    let offset = r.json::<Value>().await.unwrap()["offset"].as_u64().unwrap() as usize;
    let mut at = offset;
    let mut last = Value::Null;
    while at < drive.len() {
        let end = (at + chunk).min(drive.len());
        let r = put(at, drive[at..end].to_vec()).await.unwrap();
        let status = r.status().as_u16();
        last = r.json().await.unwrap();
        assert!(
            status == 200 || (end == drive.len() && status == 202),
            "{status} {last}"
        );
        at = end;
    }
    let id = last["upload_id"]
        .as_i64()
        .expect("the last part answers with the upload");
    let rec = processed(&client, base, &keys.admin, id).await;
    assert_eq!(rec["observations_accepted"], 2, "{rec}");
    assert_eq!(rec["sha256"], hex::encode(Sha256::digest(&drive)));

    // A session that has all its bytes but was never assembled (the server stopped just after
    // storing the last part) is finished by the next PUT.
    let small = zip_of(&frames[..1]);
    let open = serde_json::to_vec(
        &json!({"size_bytes": small.len(), "sha256": hex::encode(Sha256::digest(&small))}),
    )
    .unwrap();
    let (_, session) =
        post_signed(&client, &keys.signer, base, "/api/v1/drives/sessions", open).await;
    let sid = session["session"].as_str().unwrap().to_owned();
    let blobs = covermap_store::Blobs::open(&format!("file://{}/blobs", db.dir.path().display()))
        .await
        .unwrap();
    let staged = blobs
        .put_staged(&sid, 0, "crash".into(), small.clone().into())
        .await
        .unwrap();
    let store = db.store().await;
    let part = covermap_store::SessionPart {
        offset: 0,
        size: small.len() as i64,
        blob_key: staged,
    };
    store
        .add_session_part(&sid, &part, Utc::now())
        .await
        .unwrap();
    let path = format!("/api/v1/drives/sessions/{sid}");
    let r = signed(&client, &keys.signer, Method::PUT, base, &path, vec![])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_i64()
        .unwrap();
    processed(&client, base, &keys.admin, id).await;
    assert!(
        store.session(&sid).await.unwrap().is_none(),
        "the session is closed"
    );
    let staging = db.dir.path().join("blobs/staging");
    let left: Vec<_> = walkdir_files(&staging);
    assert!(left.is_empty(), "no staged part is left behind: {left:?}");

    // A session whose parts do not add up to the declared hash is closed, keeping nothing.
    let open = serde_json::to_vec(&json!({"size_bytes": 10, "sha256": "00".repeat(32)})).unwrap();
    let (_, session) =
        post_signed(&client, &keys.signer, base, "/api/v1/drives/sessions", open).await;
    let path = format!(
        "/api/v1/drives/sessions/{}",
        session["session"].as_str().unwrap()
    );
    let r = signed(
        &client,
        &keys.signer,
        Method::PUT,
        base,
        &path,
        b"0123456789".to_vec(),
    )
    .header("upload-offset", "0")
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.json().await.unwrap()), "checksum_mismatch");
    let r = signed(&client, &keys.signer, Method::GET, base, &path, vec![])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        walkdir_files(&staging).is_empty(),
        "the refused parts are deleted"
    );

    // A session its device abandoned (last touched 25 h ago): swept with its staged part by the
    // server itself (at start, then hourly), though the device never opens another.
    let open = serde_json::to_vec(
        &json!({"size_bytes": drive.len(), "sha256": hex::encode(Sha256::digest(&drive))}),
    )
    .unwrap();
    let (s, session) =
        post_signed(&client, &keys.signer, base, "/api/v1/drives/sessions", open).await;
    assert_eq!(s, 201, "{session}");
    let sid = session["session"].as_str().unwrap().to_owned();
    let staged = blobs
        .put_staged(&sid, 0, "abandoned".into(), drive[..1000].to_vec().into())
        .await
        .unwrap();
    let part = covermap_store::SessionPart {
        offset: 0,
        size: 1000,
        blob_key: staged,
    };
    store
        .add_session_part(&sid, &part, Utc::now() - chrono::Duration::hours(25))
        .await
        .unwrap();
    assert_eq!(walkdir_files(&staging).len(), 1);
    drop(server);
    let server = serve(
        &db,
        &[
            "--max-upload-bytes",
            "1000000",
            "--max-drive-bytes",
            "8000000",
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.session(&sid).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned session was not swept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        walkdir_files(&staging).is_empty(),
        "the abandoned session's part is deleted"
    );
    let path = format!("/api/v1/drives/sessions/{sid}");
    let r = signed(
        &client,
        &keys.signer,
        Method::GET,
        &server.base,
        &path,
        vec![],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    drop(server);
    db.finish().await;
}

/// Many devices upload at once while the worker processing them is killed: every acknowledged
/// upload is processed exactly once.
async fn uploads_survive_a_killed_worker(db: Db) {
    let server = serve(&db, &["--workers", "0", "--lease-seconds", "2"]);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let keys = access(&db, &server, &client).await;
    let worker = || {
        Command::new(BIN)
            .args(db.args())
            .args([
                "--max-fix-age-days",
                "100000",
                "--workers",
                "2",
                "--lease-seconds",
                "2",
                "worker",
            ])
            .env("COVERMAP_LOG", "off")
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = worker();
    let n = 40;
    let start = Utc::now() - chrono::Duration::hours(3);
    let uploads = futures::future::join_all((0..n).map(|i| {
        let (client, signer, base) = (client.clone(), keys.signer.clone(), base.clone());
        async move {
            // One device, one drive after another (a device is in one place at a time).
            let gpx = gpx_track(
                43.70 + 0.013 * i as f64,
                7.41,
                start + chrono::Duration::minutes(3 * i),
                120,
            );
            post_signed(&client, &signer, &base, "/api/v1/uploads/gpx", gpx).await
        }
    }));
    // Kill the worker while the uploads are still coming in and being processed.
    let killer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.kill().unwrap();
        first.wait().unwrap();
    };
    let (results, ()) = tokio::join!(uploads, killer);
    let mut ids = Vec::new();
    for (status, receipt) in results {
        assert_eq!(status, 202, "{receipt}");
        ids.push(receipt["upload_id"].as_i64().unwrap());
    }
    let mut second = worker();
    let mut fixes = 0;
    for id in &ids {
        let rec = processed(&client, &base, &keys.admin, *id).await;
        fixes += rec["fixes_accepted"].as_i64().unwrap();
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let stats = get_json(&client, &format!("{base}/api/v1/stats")).await;
    assert_eq!(stats["stats"]["uploads_processed"], n, "{stats}");
    assert_eq!(stats["stats"]["jobs_done"], n, "{stats}");
    let cov = get_json(&client, &format!("{base}/api/v1/coverage")).await;
    let counted: i64 = cov["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["fixes"].as_i64().unwrap())
        .sum();
    assert_eq!(counted, fixes, "every fix counted exactly once");
    assert_eq!(fixes, 120 * n);
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_uploads_survive_a_killed_worker() {
    uploads_survive_a_killed_worker(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_uploads_survive_a_killed_worker() {
    uploads_survive_a_killed_worker(Db::postgis().await).await;
}

/// `covermap ingest` imports a folder through the same checks.
#[tokio::test]
async fn ingest_command_imports_a_folder() {
    let db = Db::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let drive = dir.path().join("drive-1");
    std::fs::create_dir(&drive).unwrap();
    std::fs::write(
        drive.join("DSC00001.JPG"),
        camera("mapillary_tools/DSC00001.JPG"),
    )
    .unwrap();
    std::fs::write(dir.path().join("radio.csv"), OPENCELLID).unwrap();
    std::fs::write(dir.path().join("wigle.csv"), WIGLE_16).unwrap();
    std::fs::write(
        dir.path().join("track.gpx"),
        gpx_track(43.73, 7.42, Utc::now() - chrono::Duration::hours(1), 30),
    )
    .unwrap();
    std::fs::write(dir.path().join("nofix.nmea"), camera("nmea/nmea2.log")).unwrap();
    let mut args = db.args();
    args.extend([
        "--max-fix-age-days".into(),
        "100000".into(),
        "ingest".into(),
        "--contributor".into(),
        "carol".into(),
    ]);
    args.push(dir.path().display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "one file is refused: {stdout}");
    assert!(
        stdout.contains("nofix.nmea: refused (no_gnss_fix)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("5 uploads: 4 queued, 0 already stored, 1 refused"),
        "{stdout}"
    );
    let store = db.store().await;
    let uploads = store.recent_uploads(10, &Default::default()).await.unwrap();
    let mut kinds: Vec<&str> = uploads.iter().map(|u| u.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["drive", "gpx", "opencellid", "wigle"]);
    assert!(
        uploads
            .iter()
            .all(|u| u.contributor.as_deref() == Some("carol") && u.rewardable)
    );
    db.finish().await;
}

/// `covermap ingest` never merges frames of two cameras (or of two years) into one drive, refuses
/// a folder of frames older than `--max-fix-age-days` before storing anything, as it refuses an
/// old GPX file, and lists each file it skipped with why.
#[tokio::test]
async fn ingest_command_splits_cameras_refuses_old_frames_and_lists_skipped_files() {
    let db = Db::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let mixed = dir.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    // Two frames of a Sony action camera (2018) and one of a Samsung phone (2019).
    for f in ["DSC00001.JPG", "DSC00497.JPG", "adobe_coords.jpg"] {
        std::fs::write(mixed.join(f), camera(&format!("mapillary_tools/{f}"))).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "driven on Sunday").unwrap();
    std::fs::write(mixed.join("thumbs.db"), "not a frame").unwrap();
    // A frame named on its own, apart from any folder of frames.
    let elsewhere = tempfile::tempdir().unwrap();
    let lone = elsewhere.path().join("lone.jpg");
    std::fs::write(&lone, camera("mapillary_tools/DSC00001.JPG")).unwrap();
    let ingest = |extra: &[&str]| {
        let mut args = db.args();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args.extend([
            "ingest".into(),
            dir.path().display().to_string(),
            lone.display().to_string(),
        ]);
        run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    };

    // Within the default 30 days' window nothing of 2018 or 2019 is news: both refused at once.
    let out = ingest(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("mixed (SONY HDR-AS300, 2018): refused (frames_too_old): every frame was taken 2018-06-08"),
        "{stdout}"
    );
    assert!(
        stdout.contains("notes.txt: skipped: not a drive or radio file"),
        "{stdout}"
    );
    assert!(
        stdout.contains("lone.jpg: skipped: a frame on its own"),
        "{stdout}"
    );
    assert!(
        stdout.contains("thumbs.db: skipped: not a drive or radio file"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 uploads: 0 queued, 0 already stored, 2 refused; 3 files skipped"),
        "{stdout}"
    );
    let store = db.store().await;
    assert!(
        store
            .recent_uploads(10, &Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    // With the window open to the past, the Sony's two frames are one drive, and the Samsung's
    // frame (no GPS, no track) is refused on its own: never merged.
    let out = ingest(&["--max-fix-age-days", "100000"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("mixed (SAMSUNG SM-C200, 2019): refused (invalid_drive)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 uploads: 1 queued, 0 already stored, 1 refused"),
        "{stdout}"
    );
    let uploads = store.recent_uploads(10, &Default::default()).await.unwrap();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    // The stored zip holds both Sony frames (stored, not compressed) and nothing of the Samsung's.
    let sony =
        camera("mapillary_tools/DSC00001.JPG").len() + camera("mapillary_tools/DSC00497.JPG").len();
    let samsung = camera("mapillary_tools/adobe_coords.jpg").len();
    let size = uploads[0].size_bytes as usize;
    assert!(
        size > sony && size < sony + samsung,
        "{size} bytes: {uploads:?}"
    );
    db.finish().await;
}

/// Every file under `dir` (none if it does not exist).
fn walkdir_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}
