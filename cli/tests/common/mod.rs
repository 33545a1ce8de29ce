//! What the end-to-end tests share: a fresh database per test (SQLite or PostGIS), the real
//! `covermap` binary started as a user starts it, and keys and a signing device for its API.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use covermap_ingest::access::DeviceSigner;
use serde_json::Value;
use sqlx::Connection;

pub const BIN: &str = env!("CARGO_BIN_EXE_covermap");

pub fn shared(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(rel);
    assert!(p.exists(), "test data {} is missing", p.display());
    p
}

/// A database for one test: a fresh SQLite data dir, or a fresh PostGIS database.
pub struct Db {
    pub dir: tempfile::TempDir,
    pub pg: Option<(String, String)>,
}

impl Db {
    pub fn sqlite() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            pg: None,
        }
    }

    pub async fn postgis() -> Self {
        let admin = std::env::var("COVERMAP_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("covermap_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("these tests need PostgreSQL at {admin} (COVERMAP_TEST_DATABASE_URL): {e}")
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&format!("/{name}"));
        Self {
            dir: tempfile::tempdir().unwrap(),
            pg: Some((admin, url.to_string())),
        }
    }

    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["--data-dir".into(), self.dir.path().display().to_string()];
        if let Some((_, url)) = &self.pg {
            a.extend(["--database".into(), url.clone()]);
        }
        a
    }

    /// Runs `covermap` on this database with `args` after the database flags.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all = self.args();
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run(&all.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    }

    /// Imports the roads of an OSM file of testdata.
    pub fn import_roads(&self, rel: &str) {
        let file = shared(rel).display().to_string();
        let out = self.run(&["roads", "import", &file]);
        assert!(out.status.success(), "{out:?}");
    }

    pub async fn store(&self) -> std::sync::Arc<dyn covermap_store::Store> {
        let url = self.pg.as_ref().map(|(_, u)| u.as_str());
        covermap_store::open(url, self.dir.path()).await.unwrap()
    }

    pub async fn finish(self) {
        if let Some((admin, url)) = self.pg {
            let name = url.rsplit('/').next().unwrap().to_owned();
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

/// A running `covermap` process, killed when dropped.
pub struct Running {
    pub child: Child,
    pub base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(db: &Db, extra: &[&str]) -> Running {
    serve_with_env(db, extra, &[])
}

pub fn serve_with_env(db: &Db, extra: &[&str], env: &[(&str, String)]) -> Running {
    let mut cmd = Command::new(BIN);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(db.args())
        .args(["--listen", "127.0.0.1:0", "--max-fix-age-days", "100000"])
        .args(extra)
        .arg("serve")
        .env("COVERMAP_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("covermap listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
        .trim_end_matches('/')
        .to_owned();
    Running { child, base }
}

pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("COVERMAP_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// GET a public endpoint.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let r = client.get(url).send().await.unwrap();
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.json().await.unwrap()
}

/// The Prometheus text of `{base}/metrics`, read with an admin key.
pub async fn metrics_text(client: &reqwest::Client, base: &str, admin: &str) -> String {
    let r = client
        .get(format!("{base}/metrics"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "GET {base}/metrics: {}",
        r.status()
    );
    r.text().await.unwrap()
}

/// GET an endpoint with a key.
pub async fn get_with(client: &reqwest::Client, url: &str, key: &str) -> Value {
    let r = client.get(url).bearer_auth(key).send().await.unwrap();
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r.json().await.unwrap()
}

pub async fn wait_for_status(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    id: i64,
    within: Duration,
) -> Value {
    let started = Instant::now();
    loop {
        let rec = get_with(client, &format!("{base}/api/v1/uploads/{id}"), key).await;
        if rec["status"] != "queued" {
            return rec;
        }
        assert!(
            started.elapsed() < within,
            "upload {id} still queued: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shipped policy with epochs of `seconds` and no grace (closed at once), written in `dir`;
/// its path, for `--policy`.
pub fn policy_with_epochs(dir: &Path, seconds: i64) -> String {
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        covermap_scoring::policy::DEFAULT_POLICY
            .replace(
                "length_seconds = 86400",
                &format!("length_seconds = {seconds}"),
            )
            .replace("grace_seconds = 3600", "grace_seconds = 0"),
    )
    .unwrap();
    policy.display().to_string()
}

/// Creates a key with `covermap keys create`, as an operator would.
pub fn create_key(db: &Db, role: &str, contributor: Option<&str>) -> String {
    let mut args: Vec<String> = db.args();
    args.extend(["keys".into(), "create".into(), "--role".into(), role.into()]);
    if let Some(c) = contributor {
        args.extend(["--contributor".into(), c.into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args, &[]);
    assert!(
        out.status.success(),
        "keys create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Keys of each role and a registered device, for one running server.
pub struct Access {
    pub admin: String,
    pub auditor: String,
    pub planner: String,
    /// A device key bound to contributor `alice`.
    pub device_key: String,
    /// A device registered with `device_key`.
    pub signer: DeviceSigner,
}

pub async fn access(db: &Db, server: &Running, client: &reqwest::Client) -> Access {
    let device_key = create_key(db, "device", Some("alice"));
    let signer = register(client, &server.base, &device_key, "cam-alice-1").await;
    Access {
        admin: create_key(db, "admin", None),
        auditor: create_key(db, "auditor", None),
        planner: create_key(db, "planner", None),
        device_key,
        signer,
    }
}

/// Registers a new device key pair under `key`; the signer signs for the contributor the
/// server bound the device to (the key's).
pub async fn register(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    device: &str,
) -> DeviceSigner {
    let signer = DeviceSigner::generate(device);
    let r = client
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(key)
        .json(&serde_json::json!({"device": device, "public_key": signer.public_key_hex()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let record: Value = r.json().await.unwrap();
    match record["contributor"].as_str() {
        Some(contributor) => signer.bound_to(contributor),
        None => signer,
    }
}

/// A request signed by `signer` over `body`.
pub fn signed(
    client: &reqwest::Client,
    signer: &DeviceSigner,
    method: reqwest::Method,
    base: &str,
    path: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let mut r = client.request(method.clone(), format!("{base}{path}"));
    for (name, value) in signer.headers(method.as_str(), path, &body, chrono::Utc::now()) {
        r = r.header(name, value);
    }
    r.body(body)
}

/// A signed POST of `body` to `path`, answered as (status, JSON).
pub async fn post_signed(
    client: &reqwest::Client,
    signer: &DeviceSigner,
    base: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let r = signed(client, signer, reqwest::Method::POST, base, path, body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The error code of a JSON error body, checking its shape on the way.
pub fn error_code(body: &Value) -> String {
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error body names the problem: {body}"
    );
    assert!(
        e.get("field").is_some(),
        "an error body has a field: {body}"
    );
    e["code"].as_str().unwrap_or_default().to_owned()
}

/// A zip of (name, bytes) entries, deflated: a camera drive as a device uploads it.
pub fn zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(
            *name,
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        std::io::Write::write_all(&mut w, bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A file of testdata/camera.
pub fn camera(rel: &str) -> Vec<u8> {
    std::fs::read(shared(&format!("camera/{rel}"))).unwrap()
}

/// A straight drive of `n` fixes a second apart, north from (lat, lon) at ~11 m/s.
pub fn gpx_track(lat: f64, lon: f64, start: chrono::DateTime<chrono::Utc>, n: usize) -> Vec<u8> {
    let mut s = String::from(r#"<gpx version="1.1" creator="test"><trk><trkseg>"#);
    for i in 0..n {
        // Every fifth fix half a metre to the side, as a receiver wobbles: a line without any
        // wobble is drawn, not driven, and the trust stage says so. The other fixes lie exactly
        // on the line, so tests can place frames on it to the micro-degree.
        let wobble_lon = if i % 5 == 2 { 6e-6 } else { 0.0 };
        s += &format!(
            r#"<trkpt lat="{:.7}" lon="{:.7}"><time>{}</time></trkpt>"#,
            lat + 0.0001 * i as f64,
            lon + wobble_lon,
            (start + chrono::Duration::seconds(i as i64)).to_rfc3339()
        );
    }
    s += "</trkseg></trk></gpx>";
    s.into_bytes()
}

/// A drive along the real roads of the OSM file `rel` (under testdata), from the road
/// nearest (`lat`, `lon`): `n` fixes a second apart at about 10 m/s, turning at junctions the
/// way the first road out goes (never against a oneway), with a receiver's wobble of a metre.
pub fn road_gpx(
    rel: &str,
    lat: f64,
    lon: f64,
    start: chrono::DateTime<chrono::Utc>,
    n: usize,
) -> Vec<u8> {
    gpx_of(&road_fixes(rel, lat, lon, start, n))
}

/// The fixes of [`road_gpx`]: (lat, lon, time).
pub fn road_fixes(
    rel: &str,
    lat: f64,
    lon: f64,
    start: chrono::DateTime<chrono::Utc>,
    n: usize,
) -> Vec<(f64, f64, chrono::DateTime<chrono::Utc>)> {
    use covermap_domain::LatLon;
    let network = covermap_roads::osm::read(&shared(rel)).unwrap();
    let departures = network.departures();
    let here = LatLon { lat, lon };
    let nearest = network
        .segments
        .iter()
        .enumerate()
        .min_by(|a, b| {
            let d = |s: &covermap_domain::RoadSegment| {
                s.points
                    .iter()
                    .map(|p| p.distance_m(here))
                    .fold(f64::INFINITY, f64::min)
            };
            d(a.1).total_cmp(&d(b.1))
        })
        .map(|(i, _)| i)
        .unwrap();
    let mut path: Vec<LatLon> = Vec::new();
    let (mut segment, mut forward) = (nearest, true);
    let mut used = std::collections::HashSet::new();
    while path.len() < 2
        || path.windows(2).map(|w| w[0].distance_m(w[1])).sum::<f64>() < 12.0 * n as f64
    {
        let s = &network.segments[segment];
        let mut points = s.points.clone();
        if !forward {
            points.reverse();
        }
        path.extend(points);
        used.insert(segment);
        let end = if forward {
            s.osm_node_ids.last()
        } else {
            s.osm_node_ids.first()
        };
        let Some(next) = end
            .and_then(|e| departures.get(e))
            .and_then(|d| d.iter().find(|(i, _)| !used.contains(i)).copied())
        else {
            break;
        };
        (segment, forward) = next;
    }
    let mut fixes = Vec::with_capacity(n);
    let (mut leg, mut along) = (0usize, 0.0f64);
    for i in 0..n {
        // A town pace: 8 to 12 m/s, slower every half minute.
        let mut step = if i % 30 < 5 {
            4.0
        } else {
            8.0 + (i % 7) as f64 * 0.6
        };
        while leg + 1 < path.len() {
            let len = path[leg].distance_m(path[leg + 1]);
            if along + step <= len {
                along += step;
                break;
            }
            step -= len - along;
            leg += 1;
            along = 0.0;
        }
        let (a, b) = (path[leg], path[(leg + 1).min(path.len() - 1)]);
        let f = along / a.distance_m(b).max(1e-9);
        let wobble_lat = ((i * 37 % 11) as f64 - 5.0) * 2e-6;
        let wobble_lon = ((i * 53 % 7) as f64 - 3.0) * 3e-6;
        fixes.push((
            a.lat + (b.lat - a.lat) * f + wobble_lat,
            a.lon + (b.lon - a.lon) * f + wobble_lon,
            start + chrono::Duration::seconds(i as i64),
        ));
    }
    fixes
}

/// A GPX 1.1 track of (lat, lon, time) fixes.
pub fn gpx_of(fixes: &[(f64, f64, chrono::DateTime<chrono::Utc>)]) -> Vec<u8> {
    let mut s = String::from(r#"<gpx version="1.1" creator="test"><trk><trkseg>"#);
    for (lat, lon, at) in fixes {
        s += &format!(
            r#"<trkpt lat="{lat:.7}" lon="{lon:.7}"><time>{}</time></trkpt>"#,
            at.to_rfc3339()
        );
    }
    s += "</trkseg></trk></gpx>";
    s.into_bytes()
}

/// Waits for upload `id` to leave the queue, and checks it was processed.
pub async fn processed(client: &reqwest::Client, base: &str, key: &str, id: i64) -> Value {
    let rec = wait_for_status(client, base, key, id, Duration::from_secs(120)).await;
    assert_eq!(rec["status"], "processed", "{rec}");
    rec
}

/// Ichnaea's geosubmit v2 example (an LTE cell and a Bluetooth beacon pass, the Wi-Fi group
/// addresses do not), sent by `key`; `variant` makes it another phone's reading of the same
/// place: a moment later, a few metres off, the LTE cell 3 dB and the beacon 2 dB apart per
/// variant (the same readings again would be a copy, and refused as one). Answers the upload's
/// id, not waiting for it to be processed.
pub async fn send_geosubmit(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    admin: &str,
    variant: u8,
) -> i64 {
    let v = i32::from(variant);
    let doc = std::fs::read_to_string(shared(
        "radio/geosubmit/ichnaea_geosubmit2_doc_example.json",
    ))
    .unwrap()
    .replace("1405602028568", &format!("140560202856{variant}"))
    .replace(
        "-22.7539192",
        &format!("{:.7}", -22.7539192 + 2e-5 * f64::from(v)),
    )
    .replace(
        "\"signalStrength\": -51",
        &format!("\"signalStrength\": {}", -51 - 3 * v),
    )
    .replace(
        "\"signalStrength\": -110",
        &format!("\"signalStrength\": {}", -110 + 2 * v),
    );
    let r = client
        .post(format!("{base}/v2/geosubmit?key={key}"))
        .header("content-type", "application/json")
        .body(doc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list = get_with(client, &format!("{base}/api/v1/uploads?limit=1"), admin).await;
    list["uploads"][0]["id"].as_i64().unwrap()
}

/// [`send_geosubmit`], then waits until the upload is processed.
pub async fn submit(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    admin: &str,
    variant: u8,
) -> i64 {
    let id = send_geosubmit(client, base, key, admin, variant).await;
    processed(client, base, admin, id).await;
    id
}

/// Two phones' readings of one place ([`send_geosubmit`] variants 1 and 2, sent with `keys`),
/// sent within one epoch (of `epoch_seconds` from `genesis`, with at least 2 s of it left: an
/// emitter counts once two contributors heard it in the epoch or before, so batches straddling a
/// boundary would leave the first uncounted), then both awaited. Answers their ids and the epoch.
pub async fn submit_pair(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    keys: [&str; 2],
    genesis: chrono::DateTime<chrono::Utc>,
    epoch_seconds: i64,
) -> ([i64; 2], i64) {
    let epoch_of = |t: chrono::DateTime<chrono::Utc>| (t - genesis).num_seconds() / epoch_seconds;
    let now = chrono::Utc::now();
    let next = genesis + chrono::Duration::seconds((epoch_of(now) + 1) * epoch_seconds);
    if next - now < chrono::Duration::seconds(2) {
        tokio::time::sleep((next - now).to_std().unwrap_or_default()).await;
    }
    let epoch = epoch_of(chrono::Utc::now());
    let ids = [
        send_geosubmit(client, base, keys[0], admin, 1).await,
        send_geosubmit(client, base, keys[1], admin, 2).await,
    ];
    assert_eq!(
        epoch_of(chrono::Utc::now()),
        epoch,
        "both batches were sent in one epoch"
    );
    for id in ids {
        processed(client, base, admin, id).await;
    }
    (ids, epoch)
}
