//! `covermap demo`: simulated contributors drive the road network and upload their drives
//! through the real HTTP API, so a newcomer watches coverage appear on the map.

mod camera;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use covermap_domain::{LatLon, RoadSegment, Role};
use covermap_ingest::access::DeviceSigner;
use covermap_roads::RoadNetwork;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::Server;
use crate::config::Settings;

/// The contributors the demo's drivers upload for, in turn: each has its own device key and
/// its own signed devices, so rewards, proofs and radio corroboration have several people in
/// them.
const CONTRIBUTORS: [&str; 4] = ["alice", "bob", "chiara", "dmitri"];

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Road network to drive (.osm.pbf or OSM XML); without one, a generated town.
    #[arg(long, value_name = "FILE.osm.pbf")]
    pub roads: Option<PathBuf>,
    /// Simulated drivers, taking turns among the four contributors.
    #[arg(long, default_value_t = 8)]
    pub drivers: usize,
    /// GPS drives each driver uploads (from the last two weeks), each with its phone's radio.
    #[arg(long, default_value_t = 3)]
    pub drives: usize,
    /// Seconds of driving in each drive (1 fix a second).
    #[arg(long, default_value_t = 240)]
    pub drive_seconds: u32,
    /// Length of the demo's reward epochs, in seconds: the policy the demo writes to
    /// DATA_DIR/demo-policy.toml on its first run (the shipped policy with epochs this long from
    /// that run's start), so an epoch closes with rewards and proofs while you watch. With
    /// --policy, that policy is used instead.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(10..=3600))]
    pub epoch_seconds: u32,
    /// Seed of the simulation, for a repeatable run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop once every drive is processed and an epoch holding them has closed, instead of
    /// serving until Ctrl-C.
    #[arg(long)]
    pub exit_when_done: bool,
}

/// Where the generated town stands when no --roads is given.
const TOWN_CENTER: (f64, f64) = (48.1372, 11.5756);

/// Seconds of each contributor's dashcam drive, driven while the demo runs (after the planner
/// posted a bounty, so its frames can claim it).
const CAMERA_SECONDS: u32 = 40;

pub async fn run(args: DemoArgs, mut settings: Settings) -> anyhow::Result<()> {
    if args.drivers == 0 || args.drives == 0 || args.drive_seconds < 10 {
        bail!("the demo needs at least one driver, one drive and 10 seconds of driving");
    }
    if settings.policy.is_none() {
        settings.policy = Some(demo_policy(&settings.data_dir, args.epoch_seconds)?);
    }
    settings.close_epochs = true;
    let (store, blobs) = crate::open_storage(&settings).await?;
    let policy = crate::policy_cmd::open_book(&settings, store.as_ref())
        .await?
        .now();
    let network = match &args.roads {
        Some(path) => covermap_roads::osm::read(path)?,
        None => {
            let center = LatLon::new(TOWN_CENTER.0, TOWN_CENTER.1)?;
            covermap_roads::town::generate(center, 10, 130.0)
        }
    };
    store
        .replace_roads(
            &network.segments,
            &covermap_roads::road_length_per_cell(&network.segments, settings.resolution()),
        )
        .await?;
    let server = Server::start(&settings, store, blobs).await?;
    let base = format!("http://{}", server.addr);
    println!(
        "covermap demo on the {} store: {} road segments ({:.1} km) from {}",
        if settings.database.is_some() {
            "PostGIS"
        } else {
            "embedded"
        },
        network.segments.len(),
        network.total_length_m() / 1000.0,
        args.roads
            .as_ref()
            .map_or_else(|| "a generated town".into(), |p| p.display().to_string())
    );
    if let Some(p) = &settings.policy {
        println!(
            "reward epochs of {} s (policy {})",
            policy.epoch_length().num_seconds(),
            p.display()
        );
    }
    if !server.vision_loaded {
        println!(
            "the vision models are missing: camera frames stay unpublished and earn nothing \
             (run models/fetch, then the demo again)"
        );
    }
    println!("map: {base}/");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    // Keys as an operator would issue them with `covermap keys create`: one per contributor
    // (its devices register with it, its phone submits radio with it, its driver page opens
    // with it), one for an auditor, one for a planner, one admin key.
    let mut contributor_keys = Vec::new();
    for c in CONTRIBUTORS {
        contributor_keys.push(issue(&server, Role::Device, Some(c)).await?);
    }
    let auditor_key = issue(&server, Role::Auditor, None).await?;
    let planner_key = issue(&server, Role::Planner, None).await?;
    let admin_key = issue(&server, Role::Admin, None).await?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let departures = network.departures();

    // The dashcam drives happen now, while the demo runs: planned first, so the planner can post
    // a bounty on the streets the first of them is about to drive.
    let drive_start = Utc::now() + chrono::Duration::seconds(2);
    let cameras = CONTRIBUTORS.len().min(args.drivers);
    let camera_tracks: Vec<_> = (0..cameras)
        .map(|_| simulate_drive(&network, &departures, &mut rng, drive_start, CAMERA_SECONDS))
        .collect();
    let bounty = post_bounty(&client, &base, &planner_key, &camera_tracks[0], &policy).await?;

    let mut uploads = Vec::new();
    let mut signers = Vec::new();
    let now = Utc::now();
    for d in 0..args.drivers {
        let contributor = CONTRIBUTORS[d % CONTRIBUTORS.len()];
        let device_key = &contributor_keys[d % CONTRIBUTORS.len()];
        // Registered with the contributor's key, the device is bound to it, and signs so.
        let signer =
            DeviceSigner::generate(format!("{contributor}-car-{}", d / CONTRIBUTORS.len() + 1))
                .bound_to(contributor);
        let registered = client
            .post(format!("{base}/api/v1/devices"))
            .bearer_auth(device_key)
            .json(&serde_json::json!({"device": signer.device, "public_key": signer.public_key_hex()}))
            .send()
            .await
            .context("registering a demo device")?;
        if !registered.status().is_success() {
            bail!("the server refused a device: {}", registered.text().await?);
        }
        for _ in 0..args.drives {
            // Drives from the last two weeks, so the map shows fresh and ageing cells.
            let ago = rng.random_range(0..14 * 24 * 3600) + i64::from(args.drive_seconds);
            let start = now - chrono::Duration::seconds(ago);
            let fixes = simulate_drive(&network, &departures, &mut rng, start, args.drive_seconds);
            let gpx = to_gpx(&fixes).into_bytes();
            let path = "/api/v1/uploads/gpx";
            let headers = signer.headers("POST", path, &gpx, Utc::now());
            let (status, body) =
                send_signed(&client, &base, path, "application/gpx+xml", &gpx, &headers).await?;
            if !status.is_success() {
                bail!("the server refused a simulated drive: {status} {body}");
            }
            uploads.push(body["upload_id"].as_i64().unwrap_or_default());
            if uploads.len() == 1 {
                // The same signed request again, as an eavesdropper would replay it: refused.
                let (replay, _) =
                    send_signed(&client, &base, path, "application/gpx+xml", &gpx, &headers)
                        .await?;
                println!("a replayed signed request was answered {replay}");
                // The same bytes freshly signed, as a flaky uplink would resend: not counted twice.
                let fresh = signer.headers("POST", path, &gpx, Utc::now());
                let (_, again) =
                    send_signed(&client, &base, path, "application/gpx+xml", &gpx, &fresh).await?;
                println!(
                    "a resent drive came back as upload {} with duplicate={}",
                    again["upload_id"], again["duplicate"]
                );
            }
            // What the driver's phone heard on the way, as NeoStumbler would submit it.
            let radio = geosubmit_of(&fixes, d);
            let response = client
                .post(format!("{base}/v2/geosubmit?key={device_key}"))
                .json(&radio)
                .send()
                .await
                .context("submitting simulated radio observations")?;
            if !response.status().is_success() {
                bail!("the server refused a geosubmit: {}", response.text().await?);
            }
        }
        println!("{} uploaded {} drives", signer.device, args.drives);
        signers.push(signer);
    }

    // The dashcams upload once their drives have ended.
    let ended = drive_start + chrono::Duration::seconds(i64::from(CAMERA_SECONDS) + 1);
    if let Ok(wait) = (ended - Utc::now()).to_std() {
        println!(
            "the dashcams are driving; they upload in {} s",
            wait.as_secs() + 1
        );
        tokio::time::sleep(wait).await;
    }
    let mut camera_uploads = Vec::new();
    for (c, fixes) in camera_tracks.iter().enumerate() {
        let plan = &CAMERA_DRIVES[c];
        let zip = plan.pack(fixes)?;
        let path = "/api/v1/drives";
        let headers = signers[c].headers("POST", path, &zip, Utc::now());
        let (status, body) =
            send_signed(&client, &base, path, "application/zip", &zip, &headers).await?;
        if !status.is_success() {
            bail!("the server refused a camera drive: {status} {body}");
        }
        let id = body["upload_id"].as_i64().unwrap_or_default();
        println!(
            "{} uploaded a dashcam drive of {} frames ({})",
            signers[c].device,
            plan.shots.len(),
            plan.track.describe()
        );
        camera_uploads.push(id);
        uploads.push(id);
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let (mut processed, mut rejected) = (0, 0);
    let mut last_received = Utc::now();
    for id in &uploads {
        loop {
            let rec: serde_json::Value = client
                .get(format!("{base}/api/v1/uploads/{id}"))
                .bearer_auth(&admin_key)
                .send()
                .await?
                .json()
                .await?;
            match rec["status"].as_str() {
                Some("processed") => processed += 1,
                Some("rejected") => rejected += 1,
                _ if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                _ => bail!("upload {id} was not processed within three minutes"),
            }
            if let Some(t) = rec["received_at"]
                .as_str()
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
            {
                last_received = last_received.max(t);
            }
            break;
        }
    }
    let coverage: serde_json::Value = client
        .get(format!("{base}/api/v1/coverage"))
        .send()
        .await?
        .json()
        .await?;
    let cells = coverage["features"].as_array().map_or(0, Vec::len);
    println!(
        "{processed} drives processed, {rejected} rejected; {cells} H3 cells covered — see {base}/"
    );
    if cells == 0 {
        bail!("no coverage appeared");
    }
    let refused = report_frames(&client, &base, &admin_key, &camera_uploads).await?;

    // Rewards: wait for the epoch holding the last upload to close, then check every
    // contributor's proof as a driver would, and replay the epoch under another policy.
    let epoch = match policy.epoch_at(last_received) {
        Some(n) => {
            let closes = policy
                .period(n)
                .map_or(last_received, |p| p.end + policy.grace());
            wait_for_epoch(&client, &base, n, closes).await?;
            report_rewards(
                &client,
                &base,
                n,
                &contributor_keys,
                &planner_key,
                &settings,
            )
            .await?;
            Some(n)
        }
        None => None,
    };

    // One link per role, already signed in: the key rides in the fragment, which browsers never
    // send, so it stays out of every access log; the page stores it and takes it out of the
    // address.
    println!("\nopen, one per role (each link signs its page in):");
    println!("  map (anyone)      {base}/");
    println!(
        "      coverage, radio and demand hexagons over the named roads; click one for its figures, \
         then switch layers: the popup follows"
    );
    println!(
        "  driver ({})    {base}/driver#key={}",
        CONTRIBUTORS[0], contributor_keys[0]
    );
    println!(
        "      {}'s drives: “details” opens a map of the roads each was matched to, its frames \
         (blurred) with their verdicts, what was left out and why; rewards per epoch, each with \
         its Merkle proof checked in the browser",
        CONTRIBUTORS[0]
    );
    println!("  planner           {base}/planner#key={planner_key}");
    println!(
        "      the bounty “{}”; draw a demand area or a bounty and read its preview before \
         creating it; try a proposed policy on epoch {}",
        bounty,
        epoch.map_or_else(|| "a closed epoch".to_owned(), |n| n.to_string())
    );
    println!("  auditor           {base}/auditor#key={auditor_key}");
    println!(
        "      {refused} frames the vision stage refused, each with the measures behind it, to \
         approve or reject (keys a, r, n, p); every flagged upload's evidence"
    );
    println!(
        "  admin (API)       curl -H 'Authorization: Bearer {admin_key}' {base}/api/v1/uploads"
    );
    for (c, k) in CONTRIBUTORS.iter().zip(&contributor_keys).skip(1) {
        println!("  driver ({c})  {base}/driver#key={k}");
    }
    if args.exit_when_done {
        server.stop().await
    } else {
        println!("serving until Ctrl-C");
        server.run_until_signal().await
    }
}

/// The demo's policy: the shipped one with epochs `seconds` long from the first demo run on this
/// data (kept in DATA_DIR/demo-policy.toml, so a second run goes on with the same epochs).
fn demo_policy(data_dir: &Path, seconds: u32) -> anyhow::Result<PathBuf> {
    let path = data_dir.join("demo-policy.toml");
    if path.exists() {
        return Ok(path);
    }
    let start = Utc::now();
    let genesis = start - chrono::Duration::seconds(start.timestamp() % 60);
    let text = with_epochs(
        covermap_scoring::policy::DEFAULT_POLICY,
        genesis,
        seconds,
        seconds.div_ceil(6).clamp(5, 600),
    )?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `policy` (TOML text) with its `[epoch]` genesis, length and grace replaced, comments kept.
fn with_epochs(
    policy: &str,
    genesis: DateTime<Utc>,
    length: u32,
    grace: u32,
) -> anyhow::Result<String> {
    let genesis = genesis.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = set_in_section(policy, "epoch", "genesis", &format!("\"{genesis}\""))?;
    let text = set_in_section(&text, "epoch", "length_seconds", &length.to_string())?;
    let text = set_in_section(&text, "epoch", "grace_seconds", &grace.to_string())?;
    covermap_scoring::RewardPolicy::parse(&text).context("the demo's policy")?;
    Ok(text)
}

/// `policy` with `key` of `[section]` set to `value` (a TOML literal), every comment kept.
fn set_in_section(policy: &str, section: &str, key: &str, value: &str) -> anyhow::Result<String> {
    let header = format!("[{section}]");
    let (mut inside, mut found) = (false, false);
    let lines: Vec<String> = policy
        .lines()
        .map(|line| {
            if line.starts_with('[') {
                inside = line.trim() == header;
            }
            if inside && !found && line.split('=').next().is_some_and(|k| k.trim() == key) {
                found = true;
                format!("{key} = {value}")
            } else {
                line.to_owned()
            }
        })
        .collect();
    if !found {
        bail!("the policy has no {key} in {header}");
    }
    Ok(lines.join("\n") + "\n")
}

async fn send_signed(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    headers: &[(&'static str, String)],
) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
    let mut request = client
        .post(format!("{base}{path}"))
        .header("content-type", content_type)
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.context("uploading")?;
    let status = response.status();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, body))
}

/// The planner's bounty on the streets around `track`: a tenth of an epoch's emission for the
/// first capture of each of its cells, for a day. Returns its name.
async fn post_bounty(
    client: &reqwest::Client,
    base: &str,
    planner_key: &str,
    track: &[(LatLon, DateTime<Utc>)],
    policy: &covermap_scoring::RewardPolicy,
) -> anyhow::Result<String> {
    let (mut w, mut s, mut e, mut n) = (180.0f64, 90.0f64, -180.0f64, -90.0f64);
    for (p, _) in track {
        (w, s, e, n) = (w.min(p.lon), s.min(p.lat), e.max(p.lon), n.max(p.lat));
    }
    let pad = 0.0004;
    let (w, s, e, n) = (w - pad, s - pad, e + pad, n + pad);
    let name = "fresh imagery around the market";
    let budget = policy.rules.epoch.emission / 10;
    let response = client
        .post(format!("{base}/api/v1/demand"))
        .bearer_auth(planner_key)
        .json(&serde_json::json!({
            "name": name,
            "polygon": {"type": "Polygon",
                        "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
            "weight": 2.0,
            "budget": budget,
            "expires_at": Utc::now() + chrono::Duration::days(1),
        }))
        .send()
        .await
        .context("posting the planner's bounty")?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the server refused the planner's bounty: {status} {body}");
    }
    println!(
        "the planner posted a bounty “{name}”: {} base units over {} cells, demand weight 2",
        budget, body["cells"]
    );
    Ok(name.to_owned())
}

/// What the vision stage made of the dashcam frames; returns how many it refused.
async fn report_frames(
    client: &reqwest::Client,
    base: &str,
    admin_key: &str,
    uploads: &[i64],
) -> anyhow::Result<usize> {
    let (mut published, mut refused, mut faces, mut plates) = (0, 0, 0u64, 0u64);
    let mut reasons: Vec<String> = Vec::new();
    for id in uploads {
        let get = |what: &'static str| {
            client
                .get(format!("{base}/api/v1/uploads/{id}/{what}"))
                .bearer_auth(admin_key)
                .send()
        };
        let frames: serde_json::Value = get("frames").await?.json().await?;
        let done = frames["frames"].as_array().into_iter().flatten();
        for f in done.filter(|f| f["vision"].is_object()) {
            published += 1;
            faces += f["vision"]["faces"].as_u64().unwrap_or(0);
            plates += f["vision"]["plates"].as_u64().unwrap_or(0);
        }
        let rejections: serde_json::Value = get("rejections").await?.json().await?;
        for r in rejections["rejections"].as_array().into_iter().flatten() {
            if r["stage"] == "frame" {
                refused += 1;
                reasons.push(r["reason"].as_str().unwrap_or("?").to_owned());
            }
        }
    }
    reasons.sort();
    println!(
        "dashcam frames: {published} published ({faces} faces and {plates} plates blurred), \
         {refused} refused ({}) — in the auditors' queue",
        reasons.join(", ")
    );
    Ok(refused)
}

/// Waits until epoch `n` is closed (due at `closes`).
async fn wait_for_epoch(
    client: &reqwest::Client,
    base: &str,
    n: u64,
    closes: DateTime<Utc>,
) -> anyhow::Result<()> {
    if let Ok(wait) = (closes - Utc::now()).to_std() {
        println!(
            "epoch {n} holds the last uploads; it closes in {} s",
            wait.as_secs() + 1
        );
    }
    let deadline = tokio::time::Instant::now()
        + (closes - Utc::now()).to_std().unwrap_or_default()
        + Duration::from_secs(120);
    loop {
        let r = client
            .get(format!("{base}/api/v1/epochs/{n}"))
            .send()
            .await?;
        if r.status().is_success() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("epoch {n} did not close within two minutes of its end");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Each contributor's reward in epoch `n` and its Merkle proof, checked here against the
/// epoch's root as a driver's wallet would; then the epoch replayed under a proposed policy.
async fn report_rewards(
    client: &reqwest::Client,
    base: &str,
    n: u64,
    contributor_keys: &[String],
    planner_key: &str,
    settings: &Settings,
) -> anyhow::Result<()> {
    let epoch: serde_json::Value = client
        .get(format!("{base}/api/v1/epochs/{n}"))
        .send()
        .await?
        .json()
        .await?;
    let m = &epoch["manifest"];
    println!(
        "epoch {n} closed: {} of {} base units paid ({} to bounties), Merkle root {}",
        m["distributed"], m["emission"], m["bounty_paid"], m["root"]
    );
    let root = m["root"].as_str().unwrap_or_default().to_owned();
    for (c, key) in CONTRIBUTORS.iter().zip(contributor_keys) {
        let r = client
            .get(format!("{base}/api/v1/rewards/{c}/proof?epoch={n}"))
            .bearer_auth(key)
            .send()
            .await?;
        if !r.status().is_success() {
            println!("  {c}: nothing in the ledger yet");
            continue;
        }
        let p: serde_json::Value = r.json().await?;
        let leaf = covermap_scoring::ledger::LedgerLeaf {
            epoch: n,
            distributor: p["distributor"].as_str().unwrap_or_default().to_owned(),
            contributor: (*c).to_owned(),
            cumulative: p["cumulative"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_default(),
        };
        let proof: Vec<[u8; 32]> = p["proof"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| hex32(h.as_str()?))
            .collect();
        let verified =
            hex32(&root).is_some_and(|r| covermap_scoring::ledger::verify(&leaf, &proof, &r));
        if !verified {
            bail!("{c}'s proof in epoch {n} does not verify against the root {root}");
        }
        println!(
            "  {c}: {} base units so far, Merkle proof ({} siblings) verifies against the root",
            leaf.cumulative,
            proof.len()
        );
    }
    // The what-if: the same epoch without demand weighting.
    let proposed = without_demand_weighting(settings)?;
    let r = client
        .post(format!("{base}/api/v1/policy/simulate?epoch={n}"))
        .bearer_auth(planner_key)
        .header("content-type", "application/toml")
        .body(proposed)
        .send()
        .await?;
    let status = r.status();
    let sim: serde_json::Value = r.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the what-if on epoch {n} failed: {status} {sim}");
    }
    let total = sim["recorded"]["distributed"]
        .as_f64()
        .unwrap_or(0.0)
        .max(1.0);
    let share = |v: &serde_json::Value| 100.0 * v.as_f64().unwrap_or(0.0) / total;
    let moved: Vec<String> = sim["contributors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {:.1}% → {:.1}%",
                c["contributor"].as_str().unwrap_or("?"),
                share(&c["received"]),
                share(&c["simulated"])
            )
        })
        .collect();
    println!(
        "what-if on epoch {n} without demand weighting (the bounty and demand areas): {}",
        moved.join(", ")
    );
    Ok(())
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// The planner's proposal for the what-if: the demo's policy without demand weighting (every
/// cell's multiplier capped at 1), so the bounty's and demand areas' effect shows as what each
/// contributor would have received without them.
fn without_demand_weighting(settings: &Settings) -> anyhow::Result<String> {
    let text = match &settings.policy {
        Some(p) => std::fs::read_to_string(p)?,
        None => covermap_scoring::policy::DEFAULT_POLICY.to_owned(),
    };
    set_in_section(&text, "demand", "max_multiplier", "1.0")
}

/// How a contributor's dashcam tells where its frames were taken.
#[derive(Debug, Clone, Copy)]
enum CameraTrack {
    Gpx,
    Nmea,
    /// No track file: each frame carries its own EXIF GPS.
    ExifGps,
}

impl CameraTrack {
    fn describe(self) -> &'static str {
        match self {
            CameraTrack::Gpx => "with a GPX track",
            CameraTrack::Nmea => "with an NMEA log",
            CameraTrack::ExifGps => "each frame with its own EXIF GPS",
        }
    }
}

/// One contributor's dashcam drive: its camera, its track, its frames.
struct CameraDrive {
    camera: camera::Camera,
    track: CameraTrack,
    shots: [camera::Shot; 4],
}

/// The four contributors' dashcam drives: real street frames, among them a crossing full of
/// faces and cars with plates (published blurred), a frame taken at dusk, a thumbnail and one
/// through a fogged windscreen (refused, for the auditors).
const CAMERA_DRIVES: [CameraDrive; 4] = {
    use camera::{Look::*, *};
    [
        CameraDrive {
            camera: Camera {
                make: "Viofo",
                model: "A129 Plus",
            },
            track: CameraTrack::Gpx,
            shots: [
                Shot::new(WHITE_CURVE, AsTaken),
                Shot::new(FACES, AsTaken),
                Shot::new(WHITE_RIGHT, AsTaken),
                Shot::new(YELLOW_LEFT, Dusk),
            ],
        },
        CameraDrive {
            camera: Camera {
                make: "BlackVue",
                model: "DR900X",
            },
            track: CameraTrack::Nmea,
            shots: [
                Shot::new(YELLOW_CURVE, AsTaken),
                Shot::new(PLATES, AsTaken),
                Shot::new(YELLOW_LEFT, AsTaken),
                Shot::new(THUMBNAIL, AsTaken),
            ],
        },
        CameraDrive {
            camera: Camera {
                make: "GoPro",
                model: "HERO11 Black",
            },
            track: CameraTrack::ExifGps,
            shots: [
                Shot::new(WHITE_CURVE, Mirrored),
                Shot::new(FACES, Mirrored),
                Shot::new(WHITE_RIGHT, Fogged),
                Shot::new(YELLOW_LEFT, Mirrored),
            ],
        },
        CameraDrive {
            camera: Camera {
                make: "Viofo",
                model: "A229 Pro",
            },
            track: CameraTrack::Gpx,
            shots: [
                Shot::new(YELLOW_CURVE, Mirrored),
                Shot::new(PLATES, Mirrored),
                Shot::new(WHITE_RIGHT, Mirrored),
                Shot::new(WHITE_CURVE, Dusk),
            ],
        },
    ]
};

impl CameraDrive {
    /// The drive's zip: its frames, spread evenly over `fixes` and stamped with their times (and
    /// places, for a camera with its own GNSS), and its track file.
    fn pack(&self, fixes: &[(LatLon, DateTime<Utc>)]) -> anyhow::Result<Vec<u8>> {
        if fixes.len() < self.shots.len() + 1 {
            bail!("a dashcam drive too short for its frames");
        }
        let step = fixes.len() / (self.shots.len() + 1);
        let mut entries = Vec::new();
        for (i, shot) in self.shots.iter().enumerate() {
            let (pos, at) = fixes[step * (i + 1)];
            // Half a second after the fix, as a camera's frames fall between a receiver's fixes.
            let at = at + chrono::Duration::milliseconds(500);
            let place = matches!(self.track, CameraTrack::ExifGps).then_some(pos);
            let jpeg = camera::stamp(&shot.render()?, self.camera, at, place)?;
            entries.push((format!("FRAME{:04}.JPG", i + 1), jpeg));
        }
        match self.track {
            CameraTrack::Gpx => entries.push(("track.gpx".into(), to_gpx(fixes).into_bytes())),
            CameraTrack::Nmea => {
                entries.push(("track.nmea".into(), camera::nmea(fixes).into_bytes()));
            }
            CameraTrack::ExifGps => {}
        }
        camera::zip(&entries)
    }
}

/// Issues an API key straight into the store, as `covermap keys create` does.
async fn issue(server: &Server, role: Role, contributor: Option<&str>) -> anyhow::Result<String> {
    let issued = covermap_ingest::access::issue_key(role, contributor.map(str::to_owned));
    server
        .store
        .create_api_key(&issued.record, Utc::now())
        .await?;
    Ok(issued.key)
}

/// A geosubmit v2 body of what a phone on this drive heard every 10 s: the serving LTE cell of
/// the area it is in and a Wi-Fi access point near it (identities made up per ~500 m square).
fn geosubmit_of(fixes: &[(LatLon, DateTime<Utc>)], driver: usize) -> serde_json::Value {
    let items: Vec<serde_json::Value> = fixes
        .iter()
        .step_by(10)
        .map(|(pos, at)| {
            let (gx, gy) = (
                (pos.lon * 200.0).floor() as i64,
                (pos.lat * 200.0).floor() as i64,
            );
            let cid = 10_000 + (gx.rem_euclid(300) * 300 + gy.rem_euclid(300)) as u64;
            let mac = format!("1c{:010x}", (cid << 8) | (driver % 4) as u64);
            serde_json::json!({
                "timestamp": at.timestamp_millis(),
                "position": {"latitude": pos.lat, "longitude": pos.lon, "accuracy": 8.0,
                             "source": "gps"},
                "cellTowers": [{"radioType": "lte", "mobileCountryCode": 262,
                                "mobileNetworkCode": 1, "locationAreaCode": 4711,
                                "cellId": cid, "signalStrength": -70 - (cid % 30) as i64,
                                "serving": 1}],
                "wifiAccessPoints": [{"macAddress": mac, "signalStrength": -60, "ssid": "demo"}]
            })
        })
        .collect();
    serde_json::json!({ "items": items })
}

/// A drive along the network: a random walk that turns at junctions (never back the way it came
/// unless the road ends, never against a oneway), sampled once a second at a town speed, with
/// GNSS noise of a few metres.
fn simulate_drive(
    network: &RoadNetwork,
    departures: &HashMap<i64, Vec<(usize, bool)>>,
    rng: &mut StdRng,
    start: DateTime<Utc>,
    seconds: u32,
) -> Vec<(LatLon, DateTime<Utc>)> {
    let segments = &network.segments;
    let noise = Normal::new(0.0, 4.0).unwrap_or_else(|_| unreachable_normal());
    let speed: f64 = rng.random_range(7.0..14.0);
    let mut current = rng.random_range(0..segments.len());
    let mut forward = segments[current].oneway || rng.random_bool(0.5);
    let mut path: Vec<LatLon> = oriented(&segments[current], forward);
    let mut fixes = Vec::new();
    let (mut leg, mut along) = (0usize, 0.0f64);
    for t in 0..seconds {
        let mut step = speed;
        loop {
            if leg + 1 >= path.len() {
                let end = if forward {
                    segments[current].osm_node_ids.last()
                } else {
                    segments[current].osm_node_ids.first()
                };
                let options: Vec<(usize, bool)> = end
                    .and_then(|n| departures.get(n))
                    .map(|d| d.iter().copied().filter(|(s, _)| *s != current).collect())
                    .unwrap_or_default();
                let (next, fwd) = if options.is_empty() {
                    (current, !forward)
                } else {
                    options[rng.random_range(0..options.len())]
                };
                if next == current && segments[current].oneway {
                    // A oneway dead end: the drive ends here.
                    return fixes;
                }
                current = next;
                forward = fwd;
                path = oriented(&segments[current], forward);
                leg = 0;
                along = 0.0;
                continue;
            }
            let len = path[leg].distance_m(path[leg + 1]);
            if along + step <= len {
                along += step;
                break;
            }
            step -= len - along;
            leg += 1;
            along = 0.0;
        }
        let (a, b) = (path[leg], path[leg + 1]);
        let len = a.distance_m(b).max(1e-9);
        let f = along / len;
        let lat = a.lat + (b.lat - a.lat) * f + noise.sample(rng) / 111_320.0;
        let lon = a.lon
            + (b.lon - a.lon) * f
            + noise.sample(rng) / (111_320.0 * a.lat.to_radians().cos());
        if let Ok(p) = LatLon::new(lat, lon) {
            fixes.push((p, start + chrono::Duration::seconds(i64::from(t))));
        }
    }
    fixes
}

fn unreachable_normal() -> Normal<f64> {
    // Normal::new only fails for a negative or NaN deviation; 1.0 is neither.
    Normal::new(0.0, 1.0).unwrap_or_else(|_| unreachable_normal())
}

fn oriented(segment: &RoadSegment, forward: bool) -> Vec<LatLon> {
    let mut points = segment.points.clone();
    if !forward {
        points.reverse();
    }
    points
}

/// A GPX 1.1 document of one track, as a dashcam app writes it.
fn to_gpx(fixes: &[(LatLon, DateTime<Utc>)]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<gpx version=\"1.1\" creator=\"covermap demo\" \
         xmlns=\"http://www.topografix.com/GPX/1/1\">\n<trk><name>demo drive</name><trkseg>\n",
    );
    for (p, t) in fixes {
        out.push_str(&format!(
            "<trkpt lat=\"{:.7}\" lon=\"{:.7}\"><time>{}</time></trkpt>\n",
            p.lat,
            p.lon,
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    out.push_str("</trkseg></trk>\n</gpx>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_policy_has_short_epochs_from_its_start() {
        let genesis: DateTime<Utc> = "2026-12-06T12:11:00Z".parse().unwrap();
        let text = with_epochs(covermap_scoring::policy::DEFAULT_POLICY, genesis, 60, 10).unwrap();
        let policy = covermap_scoring::RewardPolicy::parse(&text).unwrap();
        assert_eq!(policy.rules.epoch.genesis, genesis);
        assert_eq!(policy.rules.epoch.length_seconds, 60);
        assert_eq!(policy.rules.epoch.grace_seconds, 10);
        // Comments and every other constant stay as shipped.
        let shipped =
            covermap_scoring::RewardPolicy::parse(covermap_scoring::policy::DEFAULT_POLICY)
                .unwrap();
        assert_eq!(policy.rules.imagery, shipped.rules.imagery);
        assert_eq!(
            text.lines().filter(|l| l.starts_with('#')).count(),
            covermap_scoring::policy::DEFAULT_POLICY
                .lines()
                .filter(|l| l.starts_with('#'))
                .count()
        );
    }

    #[test]
    fn the_what_if_caps_demand_and_nothing_else() {
        let settings = Settings::resolve(&crate::config::Overrides::default()).unwrap();
        let text = without_demand_weighting(&settings).unwrap();
        let proposed = covermap_scoring::RewardPolicy::parse(&text).unwrap();
        let shipped =
            covermap_scoring::RewardPolicy::parse(covermap_scoring::policy::DEFAULT_POLICY)
                .unwrap();
        assert_eq!(proposed.rules.demand.max_multiplier, 1.0);
        assert_ne!(shipped.rules.demand.max_multiplier, 1.0);
        let mut same = proposed.rules.clone();
        same.demand.max_multiplier = shipped.rules.demand.max_multiplier;
        assert_eq!(same, shipped.rules);
        assert!(set_in_section(&text, "demand", "no_such_key", "1").is_err());
    }

    #[test]
    fn a_simulated_drive_stays_on_the_town_and_parses_back() {
        let net = covermap_roads::town::generate(LatLon::new(48.0, 11.0).unwrap(), 6, 120.0);
        let mut rng = StdRng::seed_from_u64(7);
        let start = Utc::now() - chrono::Duration::hours(1);
        let fixes = simulate_drive(&net, &net.departures(), &mut rng, start, 300);
        assert!(fixes.len() >= 100, "{}", fixes.len());
        // Every fix is within noise of the town's box (6 blocks of 120 m around the centre).
        for (p, _) in &fixes {
            assert!(
                (p.lat - 48.0).abs() < 0.0065 && (p.lon - 11.0).abs() < 0.0095,
                "{p:?}"
            );
        }
        // Consecutive fixes are about a second's drive apart, never a jump.
        assert!(fixes.windows(2).all(|w| w[0].0.distance_m(w[1].0) < 45.0));
        let track = covermap_ingest::parse_gpx(
            to_gpx(&fixes).as_bytes(),
            Utc::now(),
            &covermap_ingest::IngestPolicy::default(),
        )
        .unwrap();
        assert_eq!(track.fixes.len(), fixes.len());
    }
}
