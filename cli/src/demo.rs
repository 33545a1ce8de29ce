//! `covermap demo`: simulated contributors drive the road network and upload their drives
//! through the real HTTP API, so a newcomer watches coverage appear on the map.

use std::collections::HashMap;
use std::path::PathBuf;
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
    /// Simulated contributors.
    #[arg(long, default_value_t = 8)]
    pub drivers: usize,
    /// Drives each contributor uploads.
    #[arg(long, default_value_t = 3)]
    pub drives: usize,
    /// Seconds of driving in each drive (1 fix a second).
    #[arg(long, default_value_t = 240)]
    pub drive_seconds: u32,
    /// Seed of the simulation, for a repeatable run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop once every drive is processed, instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit_when_done: bool,
}

/// Where the generated town stands when no --roads is given.
const TOWN_CENTER: (f64, f64) = (48.1372, 11.5756);

pub async fn run(args: DemoArgs, settings: Settings) -> anyhow::Result<()> {
    if args.drivers == 0 || args.drives == 0 || args.drive_seconds < 10 {
        bail!("the demo needs at least one driver, one drive and 10 seconds of driving");
    }
    let (store, blobs) = crate::open_storage(&settings).await?;
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
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "a generated town".into())
    );
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
    let mut uploads = Vec::new();
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
            let gpx = to_gpx(&fixes);
            let path = "/api/v1/uploads/gpx";
            let headers = signer.headers("POST", path, gpx.as_bytes(), Utc::now());
            let send = |headers: &[(&'static str, String)]| {
                let mut request = client
                    .post(format!("{base}{path}"))
                    .header("content-type", "application/gpx+xml")
                    .body(gpx.clone());
                for (name, value) in headers {
                    request = request.header(*name, value);
                }
                request.send()
            };
            let response = send(&headers)
                .await
                .context("uploading a simulated drive")?;
            let status = response.status();
            let body: serde_json::Value = response.json().await?;
            if !status.is_success() {
                bail!("the server refused a simulated drive: {status} {body}");
            }
            uploads.push(body["upload_id"].as_i64().unwrap_or_default());
            if uploads.len() == 1 {
                // The same signed request again, as an eavesdropper would replay it: refused.
                let replay = send(&headers).await?;
                println!("a replayed signed request was answered {}", replay.status());
                // The same bytes freshly signed, as a flaky uplink would resend: not counted twice.
                let fresh = signer.headers("POST", path, gpx.as_bytes(), Utc::now());
                let again: serde_json::Value = send(&fresh).await?.json().await?;
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
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (mut processed, mut rejected) = (0, 0);
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
                _ => bail!("upload {id} was not processed within two minutes"),
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
    // One link per role, already signed in: the key rides in the fragment, which browsers never
    // send, so it stays out of every access log; the page stores it and takes it out of the
    // address.
    println!("\nopen, one per role (each link signs its page in):");
    println!("  map (anyone)      {base}/");
    println!("      coverage, radio and demand hexagons over the roads; click one for its figures");
    println!(
        "  driver ({})    {base}/driver#key={}",
        CONTRIBUTORS[0], contributor_keys[0]
    );
    println!(
        "      {}'s devices, drives and what each credited; rewards and proofs once an epoch closes",
        CONTRIBUTORS[0]
    );
    println!("  planner           {base}/planner#key={planner_key}");
    println!("      draw a demand area or a bounty; try a proposed policy on a closed epoch");
    println!("  auditor           {base}/auditor#key={auditor_key}");
    println!(
        "      frames the vision stage refused, to approve or reject; every upload's evidence"
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
