//! Camera frames after the vision stage, end to end on the real binary: published frames filed
//! under their road segment and served only as blurred derivatives; refused frames in the
//! auditors' queue with reasons, scores and a blurred copy; the same picture uploaded again by
//! another device refused as a duplicate; private originals deleted after their retention;
//! auditors approving a refused frame (published from its blurred copy) and rejecting it again,
//! every decision in the log.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::*;
use serde_json::{Value, json};

/// One residential street along the test track (north from 45.5, -122.57), as OSM XML.
const STREET: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="covermap test">
  <node id="1" lat="45.4990" lon="-122.5700"/>
  <node id="2" lat="45.5080" lon="-122.5700"/>
  <node id="3" lat="45.5010" lon="-122.5730"/>
  <node id="4" lat="45.5010" lon="-122.5760"/>
  <way id="1001"><nd ref="1"/><nd ref="2"/><tag k="highway" v="residential"/></way>
  <way id="1002"><nd ref="3"/><nd ref="4"/><tag k="highway" v="residential"/></way>
</osm>
"#;

/// `jpeg` with a comment segment after its start marker: other bytes, the same picture.
fn with_comment(jpeg: &[u8], comment: &str) -> Vec<u8> {
    assert_eq!(&jpeg[..2], [0xFF, 0xD8]);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xFE];
    out.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(comment.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

async fn get(client: &reqwest::Client, url: &str, key: Option<&str>) -> reqwest::Response {
    let r = client.get(url);
    match key {
        Some(k) => r.bearer_auth(k),
        None => r,
    }
    .send()
    .await
    .unwrap()
}

/// The blob file behind `key` in the test's local object store.
fn blob_path(db: &Db, key: &str) -> std::path::PathBuf {
    db.dir.path().join("blobs").join(key)
}

async fn frames_through_the_vision_stage(db: Db) {
    let osm = db.dir.path().join("street.osm");
    std::fs::write(&osm, STREET).unwrap();
    let mut import = db.args();
    import.extend(["roads".into(), "import".into(), osm.display().to_string()]);
    let out = run(&import.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(out.status.success(), "{out:?}");
    // Originals are deleted as soon as a drive is processed.
    let server = serve(&db, &["--original-retention-days", "0"]);
    let client = reqwest::Client::new();
    let base = server.base.as_str();
    let keys = access(&db, &server, &client).await;
    let admin = keys.admin.as_str();

    // A drive on the street: a real 4K frame placed on the track by its capture time.
    let dsc1 = camera("mapillary_tools/DSC00001.JPG");
    let t0 = Utc.with_ymd_and_hms(2018, 6, 8, 20, 24, 1).unwrap();
    let drive = zip_of(&[
        ("a.jpg", dsc1.clone()),
        ("track.gpx", gpx_track(45.5, -122.57, t0, 60)),
    ]);
    let (s, r) = post_signed(&client, &keys.signer, base, "/api/v1/drives", drive).await;
    assert_eq!(s, 202, "{r}");
    let a = r["upload_id"].as_i64().unwrap();
    processed(&client, base, admin, a).await;
    let frames = get_with(&client, &format!("{base}/api/v1/uploads/{a}/frames"), admin).await;
    let frames = frames["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 1, "{frames:?}");
    let f = &frames[0];
    // Filed under the street it was taken on (way 1001), not the cross street 230 m away.
    assert_eq!(f["segment"]["osm_way_id"], 1001, "{f}");
    let vision = &f["vision"];
    assert_eq!(
        vision["quality"]["quality"]["reasons"],
        Value::Array(vec![]),
        "{f}"
    );

    // The published frame: the blurred derivative, full size, without the original's EXIF.
    let r = get(&client, &format!("{base}/api/v1/frames/{a}/0/image"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let published = r.bytes().await.unwrap();
    assert_ne!(published.as_ref(), dsc1.as_slice());
    assert!(
        !published.windows(6).any(|w| w == b"Exif\0\0"),
        "no EXIF (GPS, camera serial) is published"
    );
    let img = image::load_from_memory(&published).unwrap();
    assert_eq!((img.width(), img.height()), (3840, 2160));

    // Imagery per cell, for the map.
    let imagery = get_json(&client, &format!("{base}/api/v1/imagery")).await;
    let cells = imagery["features"].as_array().unwrap();
    assert_eq!(cells.len(), 1, "{imagery}");
    let p = &cells[0]["properties"];
    assert_eq!(
        (p["frames"].as_i64(), p["segments"].as_i64()),
        (Some(1), Some(1)),
        "{p}"
    );

    // A drive of one frame placed by its own EXIF GPS, a thumbnail the vision stage refuses: in
    // the auditors' queue with its reason, scores and a blurred copy to look at, never published.
    let thumbnail = zip_of(&[("b.jpg", camera("mapillary_tools/test_exif.jpg"))]);
    let (s, r) = post_signed(&client, &keys.signer, base, "/api/v1/drives", thumbnail).await;
    assert_eq!(s, 202, "{r}");
    let c = r["upload_id"].as_i64().unwrap();
    processed(&client, base, admin, c).await;
    let r = get(&client, &format!("{base}/api/v1/frames/{c}/0/image"), None).await;
    assert_eq!(r.status(), 404, "a refused frame is never published");
    let queue = get_with(
        &client,
        &format!("{base}/api/v1/audit/frames"),
        &keys.auditor,
    )
    .await;
    let items = queue["frames"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{queue}");
    let q = &items[0];
    assert_eq!(
        (q["upload_id"].as_i64(), q["frame"].as_i64()),
        (Some(c), Some(0))
    );
    assert_eq!(q["reason"], "too_small");
    assert!(q["scores"]["quality"]["brightness"].is_array(), "{q}");
    assert_eq!(q["contributor"], "alice");
    let r = get(
        &client,
        &format!("{base}{}", q["image"].as_str().unwrap()),
        Some(&keys.auditor),
    )
    .await;
    assert_eq!(r.status(), 200);
    image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    let r = get(
        &client,
        &format!("{base}{}", q["image"].as_str().unwrap()),
        Some(&keys.planner),
    )
    .await;
    assert_eq!(r.status(), 403, "only auditors see refused frames");
    let r = get(
        &client,
        &format!("{base}/api/v1/audit/frames?after=x"),
        Some(&keys.auditor),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(&r.json().await.unwrap()), "invalid_cursor");

    // Another device uploads the same picture (other bytes: a comment added) on the same track:
    // refused as a duplicate of the published frame, and queued for the auditors as such.
    let bob_key = create_key(&db, "device", Some("bob"));
    let bob = register(&client, base, &bob_key, "cam-bob-1").await;
    let again = zip_of(&[
        ("copy.jpg", with_comment(&dsc1, "re-uploaded")),
        ("track.gpx", gpx_track(45.5, -122.57, t0, 60)),
    ]);
    let (s, r) = post_signed(&client, &bob, base, "/api/v1/drives", again).await;
    assert_eq!(s, 202, "{r}");
    let b = r["upload_id"].as_i64().unwrap();
    let rec = processed(&client, base, admin, b).await;
    assert_eq!(
        (
            rec["observations_accepted"].as_i64(),
            rec["observations_rejected"].as_i64()
        ),
        (Some(0), Some(1)),
        "{rec}"
    );
    let rejections = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{b}/rejections"),
        admin,
    )
    .await;
    let r0 = &rejections["rejections"][0];
    assert_eq!(r0["reason"], "duplicate", "{rejections}");
    assert!(
        r0["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("upload {a}")),
        "{r0}"
    );
    let queue = get_with(
        &client,
        &format!("{base}/api/v1/audit/frames?reason=duplicate"),
        &keys.auditor,
    )
    .await;
    let d = &queue["frames"][0];
    assert_eq!(d["upload_id"], b, "{queue}");
    assert_eq!(d["duplicate_of"]["upload_id"], a);
    assert_eq!(d["duplicate_of"]["frame"], 0);
    assert_eq!(d["contributor"], "bob");

    // Retention: the originals (drive zips, unblurred frames) go; the derivatives stay.
    let original = blob_path(&db, f["blob_key"].as_str().unwrap());
    let derivative = blob_path(&db, vision["published_key"].as_str().unwrap());
    let started = Instant::now();
    while original.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} is still kept",
            original.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(derivative.exists());
    let r = get(&client, &format!("{base}/api/v1/frames/{a}/0/image"), None).await;
    assert_eq!(r.status(), 200, "published frames outlive the originals");
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_frames_through_the_vision_stage() {
    frames_through_the_vision_stage(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_frames_through_the_vision_stage() {
    frames_through_the_vision_stage(Db::postgis().await).await;
}

/// A decision on refused frame `frame` of `upload`, sent with `key`: (status, JSON).
async fn post_decision(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    (upload, frame): (i64, i64),
    body: &Value,
) -> (u16, Value) {
    let r = client
        .post(format!(
            "{base}/api/v1/audit/frames/{upload}/{frame}/decision"
        ))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Runs one SQL statement on the test's database, as an operator's psql or sqlite3 would.
async fn sql(db: &Db, statement: &str) {
    use sqlx::Connection;
    match &db.pg {
        Some((_, url)) => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(statement).execute(&mut c).await.unwrap();
        }
        None => {
            let path = db.dir.path().join("covermap.sqlite3");
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query(statement).execute(&mut c).await.unwrap();
        }
    }
}

async fn auditors_approve_and_reject_refused_frames(db: Db) {
    let server = serve(&db, &[]);
    let client = reqwest::Client::new();
    let base = server.base.as_str();
    let keys = access(&db, &server, &client).await;
    let (admin, auditor) = (keys.admin.as_str(), keys.auditor.as_str());

    // Two drives of a thumbnail placed by its own EXIF GPS (other bytes, the same picture): the
    // vision stage refuses both as too small, each with a blurred copy for the auditors.
    let thumbnail = camera("mapillary_tools/test_exif.jpg");
    let mut drives = Vec::new();
    for jpeg in [thumbnail.clone(), with_comment(&thumbnail, "again")] {
        let zip = zip_of(&[("b.jpg", jpeg)]);
        let (s, r) = post_signed(&client, &keys.signer, base, "/api/v1/drives", zip).await;
        assert_eq!(s, 202, "{r}");
        let id = r["upload_id"].as_i64().unwrap();
        processed(&client, base, admin, id).await;
        drives.push(id);
    }
    let (c, d) = (drives[0], drives[1]);
    let queue = |q: &'static str| {
        let client = client.clone();
        let url = format!("{base}/api/v1/audit/frames{q}");
        let key = keys.auditor.clone();
        async move { get_with(&client, &url, &key).await["frames"].clone() }
    };
    let undecided = queue("?undecided=true").await;
    assert_eq!(undecided.as_array().unwrap().len(), 2, "{undecided}");
    assert!(undecided[0]["decision"].is_null(), "{undecided}");
    let public_image = |upload: i64| {
        let client = client.clone();
        let url = format!("{base}/api/v1/frames/{upload}/0/image");
        async move { get(&client, &url, None).await }
    };
    assert_eq!(public_image(c).await.status(), 404);

    // Only auditors and admins decide, on frames that were refused, with a decision they know.
    let approve = json!({"decision": "approve", "note": "small, but a fine picture"});
    let (s, r) = post_decision(&client, base, &keys.device_key, (c, 0), &approve).await;
    assert_eq!((s, error_code(&r)), (403, "forbidden".into()), "{r}");
    let (s, r) = post_decision(&client, base, &keys.planner, (c, 0), &approve).await;
    assert_eq!(s, 403, "{r}");
    for (body, field) in [
        (json!({"decision": "maybe"}), "decision"),
        (json!({"note": "no decision"}), "decision"),
        (
            json!({"decision": "approve", "note": "x".repeat(1001)}),
            "note",
        ),
    ] {
        let (s, r) = post_decision(&client, base, auditor, (c, 0), &body).await;
        assert_eq!(s, 400, "{body}: {r}");
        assert_eq!(r["error"]["field"], field, "{r}");
        error_code(&r);
    }
    let extra = json!({"decision": "approve", "by": "me"});
    let (s, r) = post_decision(&client, base, auditor, (c, 0), &extra).await;
    assert_eq!((s, error_code(&r)), (400, "invalid_json".into()), "{r}");
    let (s, r) = post_decision(&client, base, auditor, (c, 7), &approve).await;
    assert_eq!((s, error_code(&r)), (404, "not_found".into()), "{r}");
    // A refused frame without a blurred copy (the pipeline always makes one; an operator may
    // have deleted it) cannot be approved: nothing would be published.
    sql(
        &db,
        &format!("UPDATE frame_rejections SET review_key = NULL WHERE upload_id = {d}"),
    )
    .await;
    let (s, r) = post_decision(&client, base, auditor, (d, 0), &approve).await;
    assert_eq!((s, error_code(&r)), (409, "conflict".into()), "{r}");
    let log = get_with(&client, &format!("{base}/api/v1/audit/log"), auditor).await;
    assert_eq!(log["decisions"], json!([]), "nothing is recorded on error");

    // Approved: the frame is published from its blurred copy, at once, and in the log.
    let (s, approved) = post_decision(&client, base, auditor, (c, 0), &approve).await;
    assert_eq!(s, 200, "{approved}");
    let mut fields: Vec<_> = approved.as_object().unwrap().keys().cloned().collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "auditor",
            "decided_at",
            "decision",
            "frame",
            "id",
            "note",
            "upload_id"
        ]
    );
    assert_eq!(
        (
            &approved["upload_id"],
            &approved["frame"],
            &approved["decision"]
        ),
        (&json!(c), &json!(0), &json!("approve"))
    );
    assert_eq!(approved["note"], "small, but a fine picture");
    assert!(
        approved["auditor"].as_str().unwrap().starts_with("key:"),
        "an auditor key without a contributor is named by its id: {approved}"
    );
    let r = public_image(c).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let published = r.bytes().await.unwrap();
    let review = get(
        &client,
        &format!("{base}/api/v1/audit/frames/{c}/0/image"),
        Some(auditor),
    )
    .await
    .bytes()
    .await
    .unwrap();
    assert_eq!(published, review, "the published copy is the blurred one");
    assert_ne!(published.as_ref(), thumbnail.as_slice());
    let imagery = get_json(&client, &format!("{base}/api/v1/imagery")).await;
    let cells = imagery["features"].as_array().unwrap();
    assert_eq!(cells.len(), 1, "{imagery}");
    assert_eq!(cells[0]["properties"]["frames"], 1, "{imagery}");
    let frames = get_with(&client, &format!("{base}/api/v1/uploads/{c}/frames"), admin).await;
    assert!(
        frames["frames"][0]["vision"]["published_key"].is_string(),
        "{frames}"
    );
    let items = queue("").await;
    assert_eq!(items[0]["decision"], approved, "{items}");
    let undecided = queue("?undecided=true").await;
    assert_eq!(undecided.as_array().unwrap().len(), 1, "{undecided}");
    assert_eq!(undecided[0]["upload_id"], d);
    let log = get_with(&client, &format!("{base}/api/v1/audit/log"), auditor).await;
    assert_eq!(log["decisions"], json!([approved.clone()]), "{log}");
    let r = get(
        &client,
        &format!("{base}/api/v1/audit/log"),
        Some(&keys.device_key),
    )
    .await;
    assert_eq!(r.status(), 403);

    // Rejected after all (by an admin): taken down again; both decisions stay in the log.
    let reject = json!({"decision": "reject"});
    let (s, rejected) = post_decision(&client, base, admin, (c, 0), &reject).await;
    assert_eq!(s, 200, "{rejected}");
    assert_eq!(rejected["note"], Value::Null);
    assert_eq!(public_image(c).await.status(), 404);
    let imagery = get_json(&client, &format!("{base}/api/v1/imagery")).await;
    assert_eq!(imagery["features"], json!([]), "{imagery}");
    let log = get_with(&client, &format!("{base}/api/v1/audit/log"), auditor).await;
    assert_eq!(
        log["decisions"],
        json!([rejected.clone(), approved.clone()]),
        "newest first: {log}"
    );
    let page = get_with(
        &client,
        &format!("{base}/api/v1/audit/log?limit=1"),
        auditor,
    )
    .await;
    assert_eq!(page["decisions"], json!([rejected.clone()]));
    let next = page["next"].as_i64().unwrap();
    let page = get_with(
        &client,
        &format!("{base}/api/v1/audit/log?limit=1&before={next}"),
        auditor,
    )
    .await;
    assert_eq!(page["decisions"], json!([approved]));
    assert_eq!(queue("").await[0]["decision"], rejected);
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_auditors_approve_and_reject_refused_frames() {
    auditors_approve_and_reject_refused_frames(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_auditors_approve_and_reject_refused_frames() {
    auditors_approve_and_reject_refused_frames(Db::postgis().await).await;
}

/// `jpeg` (which has no EXIF block of its own) with an EXIF block saying it was taken at `at`
/// (UTC).
fn taken_at(jpeg: &[u8], at: chrono::DateTime<Utc>) -> Vec<u8> {
    let ascii = |tag, s: String| exif::Field {
        tag,
        ifd_num: exif::In::PRIMARY,
        value: exif::Value::Ascii(vec![s.into_bytes()]),
    };
    let fields = [
        ascii(
            exif::Tag::DateTimeOriginal,
            at.format("%Y:%m:%d %H:%M:%S").to_string(),
        ),
        // In UTC, as a dashcam that knows its offset says.
        ascii(exif::Tag::OffsetTimeOriginal, "+00:00".into()),
    ];
    let mut writer = exif::experimental::Writer::new();
    for f in &fields {
        writer.push_field(f);
    }
    let mut tiff = std::io::Cursor::new(Vec::new());
    writer.write(&mut tiff, false).unwrap();
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff.into_inner());
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend(u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

/// A drive that takes its worker longer than the lease (twelve 4K frames through the vision
/// stage, with one-second leases) is processed once: the worker renews its lease while it works,
/// so the idle second worker never takes the job over and no result is thrown away.
#[tokio::test(flavor = "multi_thread")]
async fn a_drive_longer_than_the_lease_is_processed_once() {
    let db = Db::sqlite();
    let server = serve(&db, &["--lease-seconds", "1", "--workers", "2"]);
    let client = reqwest::Client::new();
    let base = server.base.as_str();
    let keys = access(&db, &server, &client).await;
    let t0 = Utc.with_ymd_and_hms(2018, 6, 8, 20, 24, 1).unwrap();
    let street = image::load_from_memory(&camera("mapillary_tools/DSC00001.JPG")).unwrap();
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
        .encode_image(&street)
        .unwrap();
    let mut entries: Vec<(String, Vec<u8>)> =
        vec![("track.gpx".into(), gpx_track(45.5, -122.57, t0, 60))];
    for i in 0..12 {
        let at = t0 + chrono::Duration::seconds(2 * i);
        entries.push((format!("f{i:02}.jpg"), taken_at(&plain, at)));
    }
    let entries: Vec<(&str, Vec<u8>)> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    let started = Instant::now();
    let (s, r) = post_signed(
        &client,
        &keys.signer,
        base,
        "/api/v1/drives",
        zip_of(&entries),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    let id = r["upload_id"].as_i64().unwrap();
    let rec = processed(&client, base, &keys.admin, id).await;
    let took = started.elapsed();
    let left = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{id}/rejections"),
        &keys.admin,
    )
    .await;
    assert!(
        took > Duration::from_millis(1500),
        "the drive took {took:?}, not longer than the 1-s lease: the test proves nothing: {rec} {left}"
    );
    // All twelve frames were looked at (one published, the others refused as its repeats).
    assert_eq!(
        rec["observations_accepted"].as_i64().unwrap()
            + rec["observations_rejected"].as_i64().unwrap(),
        12,
        "{rec}"
    );
    let metrics = metrics_text(&client, base, &keys.admin).await;
    let count = |outcome: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("covermap_jobs_total{{outcome=\"{outcome}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(count("done"), 1, "{metrics}");
    assert_eq!(count("lease_lost"), 0, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("covermap_lease_renewals_total ")),
        "{metrics}"
    );
}

/// A drive processed while the vision models are missing keeps its frames unpublished; once the
/// server starts again with the models in place, its workers judge them and the frame is served
/// as its blurred derivative, counted in the metrics.
#[tokio::test(flavor = "multi_thread")]
async fn frames_kept_pending_without_models_are_published_once_the_models_are_in_place() {
    let db = Db::sqlite();
    let missing = db.dir.path().join("no-models-here");
    let server = serve(&db, &["--models", &missing.display().to_string()]);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let keys = access(&db, &server, &client).await;
    let t0 = Utc.with_ymd_and_hms(2018, 6, 8, 20, 24, 1).unwrap();
    let drive = zip_of(&[
        ("a.jpg", camera("mapillary_tools/DSC00001.JPG")),
        ("track.gpx", gpx_track(45.5, -122.57, t0, 60)),
    ]);
    let (s, r) = post_signed(&client, &keys.signer, &base, "/api/v1/drives", drive).await;
    assert_eq!(s, 202, "{r}");
    let a = r["upload_id"].as_i64().unwrap();
    processed(&client, &base, &keys.admin, a).await;
    let frames = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{a}/frames"),
        &keys.admin,
    )
    .await;
    assert_eq!(frames["frames"][0]["vision"], Value::Null, "{frames}");
    let image = format!("/api/v1/frames/{a}/0/image");
    assert_eq!(
        get(&client, &format!("{base}{image}"), None).await.status(),
        404,
        "nothing of a frame is published before the vision stage looked at it"
    );
    drop(server);

    // The models are in place (the test command's COVERMAP_MODELS): the workers judge the
    // frame as they start.
    let server = serve(&db, &[]);
    let base = server.base.as_str();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = get(&client, &format!("{base}{image}"), None).await;
        if r.status() == 200 {
            let published = r.bytes().await.unwrap();
            assert!(!published.windows(6).any(|w| w == b"Exif\0\0"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pending frame was not published within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let frames = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{a}/frames"),
        &keys.admin,
    )
    .await;
    assert_eq!(
        frames["frames"][0]["vision"]["quality"]["quality"]["reasons"],
        Value::Array(vec![]),
        "{frames}"
    );
    let metrics = metrics_text(&client, base, &keys.admin).await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "covermap_frames_judged_late_total{verdict=\"published\"} 1"),
        "{metrics}"
    );
    drop(server);
    db.finish().await;
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let r = client.post(url).json(body);
    let r = match key {
        Some(k) => r.bearer_auth(k),
        None => r,
    };
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Anyone reports a published frame: it is hidden at once (not served, off the imagery map)
/// until an auditor keeps it (served again), blurs it further where they mark it (served again
/// as a new copy, the old one deleted) or removes it (taken down for good, its blurred
/// derivative deleted from the object store). Bad reports and bad boxes are refused with the
/// field named.
async fn reported_frames_are_hidden_until_an_auditor_decides(db: Db) {
    let osm = db.dir.path().join("street.osm");
    std::fs::write(&osm, STREET).unwrap();
    let mut import = db.args();
    import.extend(["roads".into(), "import".into(), osm.display().to_string()]);
    let out = run(&import.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(out.status.success(), "{out:?}");
    let server = serve(&db, &[]);
    let client = reqwest::Client::new();
    let base = server.base.as_str();
    let keys = access(&db, &server, &client).await;
    let t0 = Utc.with_ymd_and_hms(2018, 6, 8, 20, 24, 1).unwrap();
    let drive = zip_of(&[
        ("a.jpg", camera("mapillary_tools/DSC00001.JPG")),
        ("track.gpx", gpx_track(45.5, -122.57, t0, 60)),
    ]);
    let (s, r) = post_signed(&client, &keys.signer, base, "/api/v1/drives", drive).await;
    assert_eq!(s, 202, "{r}");
    let a = r["upload_id"].as_i64().unwrap();
    processed(&client, base, &keys.admin, a).await;
    let image = format!("{base}/api/v1/frames/{a}/0/image");
    let report_url = format!("{base}/api/v1/frames/{a}/0/report");
    let frames_on_map = |client: reqwest::Client| async move {
        let imagery = get_json(&client, &format!("{base}/api/v1/imagery")).await;
        imagery["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["properties"]["frames"].as_i64().unwrap())
            .sum::<i64>()
    };
    let r = get(&client, &image, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    assert_eq!(frames_on_map(client.clone()).await, 1);

    // Refused with the problem named: no reason, an unknown reason, a frame not published.
    for (body, field) in [
        (json!({}), "reason"),
        (json!({"reason": "ugly"}), "reason"),
        (json!({"reason": "face", "note": "x".repeat(5000)}), "note"),
    ] {
        let (s, r) = post_json(&client, &report_url, None, &body).await;
        assert_eq!(s, 400, "{r}");
        assert_eq!(r["error"]["field"], field, "{r}");
        error_code(&r);
    }
    let (s, r) = post_json(
        &client,
        &format!("{base}/api/v1/frames/{a}/7/report"),
        None,
        &json!({"reason": "face"}),
    )
    .await;
    assert_eq!(s, 404, "{r}");

    // An anonymous report hides the frame at once.
    let (s, r) = post_json(
        &client,
        &report_url,
        None,
        &json!({"reason": "face", "note": "a face in the van's window"}),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    assert_eq!(
        (r["reason"].as_str(), r["reporter"].as_str()),
        (Some("face"), Some("anonymous"))
    );
    let first = r["id"].as_i64().unwrap();
    assert_eq!(get(&client, &image, None).await.status(), 404);
    // Auditors still see it, to decide; nobody else does.
    let hidden = format!("{base}/api/v1/audit/frames/{a}/0/published");
    assert_eq!(get(&client, &hidden, None).await.status(), 401);
    assert_eq!(
        get(&client, &hidden, Some(&keys.auditor)).await.status(),
        200
    );
    assert_eq!(frames_on_map(client.clone()).await, 0);

    // Auditors see the open reports; nobody else does.
    let reports = format!("{base}/api/v1/audit/reports?open=true");
    assert_eq!(get(&client, &reports, None).await.status(), 401);
    let open = get_with(&client, &reports, &keys.auditor).await;
    assert_eq!(open["reports"][0]["id"], first, "{open}");
    let decide = |id: i64| format!("{base}/api/v1/audit/reports/{id}/decision");
    let (s, r) = post_json(&client, &decide(first), None, &json!({"decision": "keep"})).await;
    assert_eq!(s, 401, "{r}");
    let (s, r) = post_json(
        &client,
        &decide(first),
        Some(&keys.auditor),
        &json!({"decision": "hide"}),
    )
    .await;
    assert_eq!(
        (s, r["error"]["field"].as_str()),
        (400, Some("decision")),
        "{r}"
    );

    // Kept: served again.
    let (s, r) = post_json(
        &client,
        &decide(first),
        Some(&keys.auditor),
        &json!({"decision": "keep"}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["decision"], "keep");
    assert_eq!(get(&client, &image, None).await.status(), 200);
    let (s, _) = post_json(
        &client,
        &decide(first),
        Some(&keys.auditor),
        &json!({"decision": "remove"}),
    )
    .await;
    assert_eq!(s, 409, "a report is decided once");

    // Reported again and blurred further where the auditor marked it: shown again, as a new
    // copy under a key of its own; the old derivative is deleted. Bad boxes are refused with
    // the problem named, and change nothing.
    let admin = keys.admin.as_str();
    let published_key = |client: reqwest::Client| async move {
        get_with(&client, &format!("{base}/api/v1/uploads/{a}/frames"), admin)
        .await["frames"][0]["vision"]["published_key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before_blur = published_key(client.clone()).await;
    let kept_bytes = get(&client, &image, None).await.bytes().await.unwrap();
    let (s, r) = post_json(&client, &report_url, None, &json!({"reason": "face"})).await;
    assert_eq!(s, 202, "{r}");
    let third = r["id"].as_i64().unwrap();
    let a_box = json!({"x1": 100, "y1": 120, "x2": 700, "y2": 520});
    let many: Vec<Value> = (0..33).map(|_| a_box.clone()).collect();
    for body in [
        json!({"decision": "blur"}),
        json!({"decision": "blur", "boxes": []}),
        json!({"decision": "blur", "boxes": "all of it"}),
        json!({"decision": "blur", "boxes": [{"x1": 10, "y1": 10, "x2": 5, "y2": 20}]}),
        json!({"decision": "blur", "boxes": [{"x1": -1, "y1": 10, "x2": 5, "y2": 20}]}),
        json!({"decision": "blur", "boxes": [{"x1": 1, "y1": 10, "x2": 5}]}),
        json!({"decision": "blur", "boxes": many}),
        // Past the 3840×2160 frame.
        json!({"decision": "blur", "boxes": [a_box, {"x1": 3000, "y1": 10, "x2": 3841, "y2": 20}]}),
        json!({"decision": "keep", "boxes": [a_box]}),
    ] {
        let (s, r) = post_json(&client, &decide(third), Some(&keys.auditor), &body).await;
        assert_eq!(s, 400, "{body}: {r}");
        assert_eq!(
            (error_code(&r).as_str(), r["error"]["field"].as_str()),
            ("invalid_boxes", Some("boxes")),
            "{body}: {r}"
        );
    }
    let open = get_with(&client, &reports, &keys.auditor).await;
    assert_eq!(open["reports"][0]["id"], third, "still open: {open}");
    assert_eq!(
        get(&client, &image, None).await.status(),
        404,
        "still hidden"
    );
    assert_eq!(published_key(client.clone()).await, before_blur);
    let (s, r) = post_json(
        &client,
        &decide(third),
        Some(&keys.planner),
        &json!({"decision": "blur", "boxes": [a_box]}),
    )
    .await;
    assert_eq!(s, 403, "only auditors decide: {r}");
    let (s, r) = post_json(
        &client,
        &decide(third),
        Some(&keys.auditor),
        &json!({"decision": "blur", "boxes": [a_box, {"x1": 3000.5, "y1": 0, "x2": 3840, "y2": 90.25}]}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["decision"], "blur", "{r}");
    assert_eq!(r["boxes"][1]["x1"], 3000.5, "{r}");
    let served = get(&client, &image, None).await;
    assert_eq!(served.status(), 200, "shown again, blurred");
    let blurred_bytes = served.bytes().await.unwrap();
    assert_ne!(blurred_bytes, kept_bytes);
    let blurred = image::load_from_memory(&blurred_bytes).unwrap();
    assert_eq!((blurred.width(), blurred.height()), (3840, 2160));
    let after_blur = published_key(client.clone()).await;
    assert_ne!(
        after_blur, before_blur,
        "a new key, never the old one overwritten"
    );
    assert!(blob_path(&db, &after_blur).exists());
    assert!(
        !blob_path(&db, &before_blur).exists(),
        "the derivative blurred further is deleted"
    );
    assert_eq!(frames_on_map(client.clone()).await, 1);
    let (s, _) = post_json(
        &client,
        &decide(third),
        Some(&keys.auditor),
        &json!({"decision": "blur", "boxes": [a_box]}),
    )
    .await;
    assert_eq!(s, 409, "a report is decided once");

    // Reported again and removed: taken down for good, its derivative deleted.
    let key = get_with(
        &client,
        &format!("{base}/api/v1/uploads/{a}/frames"),
        &keys.admin,
    )
    .await["frames"][0]["vision"]["published_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(blob_path(&db, &key).exists());
    let (s, r) = post_json(
        &client,
        &report_url,
        Some(&keys.planner),
        &json!({"reason": "plate"}),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    assert!(r["reporter"].as_str().unwrap().starts_with("key:"), "{r}");
    let second = r["id"].as_i64().unwrap();
    let (s, r) = post_json(
        &client,
        &decide(second),
        Some(&keys.auditor),
        &json!({"decision": "remove"}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(get(&client, &image, None).await.status(), 404);
    assert_eq!(frames_on_map(client.clone()).await, 0);
    assert!(
        !blob_path(&db, &key).exists(),
        "the removed frame's derivative is deleted"
    );
    let (s, _) = post_json(&client, &report_url, None, &json!({"reason": "face"})).await;
    assert_eq!(s, 404, "a frame taken down cannot be reported again");
    drop(server);
    db.finish().await;
}

#[tokio::test]
async fn sqlite_reported_frames_are_hidden_until_an_auditor_decides() {
    reported_frames_are_hidden_until_an_auditor_decides(Db::sqlite()).await;
}

#[tokio::test]
async fn postgis_reported_frames_are_hidden_until_an_auditor_decides() {
    reported_frames_are_hidden_until_an_auditor_decides(Db::postgis().await).await;
}
