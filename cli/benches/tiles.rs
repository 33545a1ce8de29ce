//! Vector tiles side by side: the same cells served as `coverage` tiles by covermap over HTTP
//! (uncached, then cached) and by PostGIS `ST_AsMVT` (one query per tile, no HTTP in front, on
//! precomputed hexagons in EPSG:3857 with a GiST index — its best case), with the same load
//! generator and concurrency; then upload-to-visible-tile latency: a radio upload through the
//! API, timed until its hexagon is in the (already cached) tile.
//!
//! `cargo bench -p covermap --bench tiles [-- postgres://postgres@127.0.0.1:5432/postgres]`.
//! It makes a fresh database there, fills 150,000 H3 cells (resolution 11) over 30 × 30 km from
//! 1,000 uploads, and starts the real `covermap` binary on it. Under `cargo test` (no
//! `--bench`) it checks itself at a hundredth of the size.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use h3o::{LatLng, Resolution};
use sqlx::Connection;

const CONCURRENCY: usize = 4;
/// South-west corner of the area and its size in degrees (about 30 × 30 km at 43.7° N).
const SW: (f64, f64) = (43.60, 7.20);
const SPAN: (f64, f64) = (0.27, 0.375);

/// The tile at zoom `z` holding (lat, lon).
fn tile_at(lat: f64, lon: f64, z: u8) -> (u8, u32, u32) {
    let t = covermap_tiles::tile::tiles_covering([lon, lat, lon, lat], z)[0];
    (t.z, t.x, t.y)
}

/// Latency percentiles (ms) and throughput of one run.
struct Run {
    n: usize,
    wall: Duration,
    lat_ms: Vec<f64>,
    bytes: usize,
}

impl Run {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.lat_ms.clone();
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }

    fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} |",
            self.n,
            self.n as f64 / self.wall.as_secs_f64(),
            self.pct(0.5),
            self.pct(0.99),
            self.pct(1.0),
            self.bytes as f64 / self.n as f64
        )
    }
}

async fn load<F, Fut>(tiles: &[(u8, u32, u32)], fetch: F) -> Run
where
    F: Fn((u8, u32, u32)) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let started = Instant::now();
    let results: Vec<(f64, usize)> = futures::stream::iter(tiles.iter().copied())
        .map(|t| {
            let f = fetch(t);
            async move {
                let s = Instant::now();
                let bytes = f.await;
                (s.elapsed().as_secs_f64() * 1000.0, bytes)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    Run {
        n: results.len(),
        wall: started.elapsed(),
        lat_ms: results.iter().map(|r| r.0).collect(),
        bytes: results.iter().map(|r| r.1).sum(),
    }
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let admin = std::env::args()
        .skip(1)
        .find(|a| a.starts_with("postgres"))
        .or_else(|| std::env::var("COVERMAP_TEST_DATABASE_URL").ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (cells_wanted, uploads) = if full { (150_000, 1_000) } else { (1_500, 10) };
    let span = if full {
        SPAN
    } else {
        (SPAN.0 / 10.0, SPAN.1 / 10.0)
    };

    let name = format!("covermap_bench_tiles_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("the tiles bench needs PostgreSQL at {admin}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&format!("/{name}"));
    let db = url.to_string();
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_covermap");
    let data_dir = dir.path().display().to_string();
    let migrate = Command::new(bin)
        .args(["--data-dir", &data_dir, "--database", &db, "migrate"])
        .output()
        .unwrap();
    assert!(migrate.status.success(), "{migrate:?}");

    // The cells: random points in the area, as resolution-11 cells, each seen by 1–3 uploads.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut cells = std::collections::BTreeSet::new();
    while cells.len() < cells_wanted {
        let ll = LatLng::new(SW.0 + rand() * span.0, SW.1 + rand() * span.1).unwrap();
        cells.insert(ll.to_cell(Resolution::Eleven));
    }
    let cells: Vec<h3o::CellIndex> = cells.into_iter().collect();
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let now = Utc::now();
    let t_load = Instant::now();
    let ids: Vec<i64> = (0..uploads).collect();
    sqlx::query(
        "INSERT INTO uploads (id, device, kind, sha256, size_bytes, blob_key, received_at, status, \
                              processed_at) \
         SELECT i, 'bench-' || i, 'gpx', md5(i::text) || md5((i + 1)::text), 1000, 'b/' || i, \
                $2, 'processed', $2 FROM UNNEST($1::bigint[]) AS i",
    )
    .bind(&ids)
    .bind(now - chrono::Duration::hours(2))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("SELECT setval('uploads_id_seq', $1)")
        .bind(uploads + 1)
        .execute(&pool)
        .await
        .unwrap();
    for chunk in cells.chunks(10_000) {
        let (mut up, mut cell, mut dev, mut fixes, mut lat, mut lon, mut wkt, mut seen) = (
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
        );
        for c in chunk {
            let centre = LatLng::from(*c);
            let visits = 1 + (rand() * 3.0) as i64;
            let mut last = now;
            for v in 0..visits {
                let u = ((rand() * uploads as f64) as i64 + v) % uploads;
                up.push(u);
                cell.push(u64::from(*c) as i64);
                dev.push(format!("bench-{u}"));
                fixes.push(1 + (rand() * 5.0) as i64);
                lat.push(centre.lat());
                lon.push(centre.lng());
                last = now - chrono::Duration::seconds((rand() * 30.0 * 86_400.0) as i64);
                seen.push(last);
            }
            let ring: Vec<String> = c
                .boundary()
                .iter()
                .chain(c.boundary().iter().take(1))
                .map(|ll| format!("{} {}", ll.lng(), ll.lat()))
                .collect();
            wkt.push(format!("POLYGON(({}))", ring.join(",")));
            let _ = last;
        }
        sqlx::query(
            "INSERT INTO cell_observations (upload_id, cell, device, fixes, first_seen, last_seen, geom, \
                                            received_at) \
             SELECT u, c, d, f, s, s, ST_SetSRID(ST_MakePoint(lon, lat), 4326), $8 \
             FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::timestamptz[], \
                         $6::float8[], $7::float8[]) AS t(u, c, d, f, s, lat, lon) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&up)
        .bind(&cell)
        .bind(&dev)
        .bind(&fixes)
        .bind(&seen)
        .bind(&lat)
        .bind(&lon)
        .bind(now - chrono::Duration::hours(2))
        .execute(&pool)
        .await
        .unwrap();
        let ids: Vec<i64> = chunk.iter().map(|c| u64::from(*c) as i64).collect();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_hex (cell BIGINT PRIMARY KEY, wkt TEXT, \
                                                   geom geometry(Polygon, 3857))",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO bench_hex (cell, wkt) SELECT * FROM UNNEST($1::bigint[], $2::text[])",
        )
        .bind(&ids)
        .bind(&wkt)
        .execute(&pool)
        .await
        .unwrap();
    }
    // PostGIS gets each cell's figures and hexagon precomputed, projected and indexed.
    for sql in [
        "ALTER TABLE bench_hex ADD COLUMN cell_id TEXT, ADD COLUMN observations BIGINT, \
            ADD COLUMN uploads BIGINT, ADD COLUMN contributors BIGINT, ADD COLUMN last_seen BIGINT",
        "UPDATE bench_hex SET geom = ST_Transform(ST_GeomFromText(wkt, 4326), 3857), \
            cell_id = to_hex(cell)",
        "UPDATE bench_hex h SET observations = a.f, uploads = a.u, contributors = a.d, \
            last_seen = a.t FROM (SELECT cell, SUM(fixes)::bigint AS f, COUNT(*) AS u, \
            COUNT(DISTINCT device) AS d, EXTRACT(EPOCH FROM MAX(last_seen))::bigint AS t \
            FROM cell_observations GROUP BY cell) a WHERE a.cell = h.cell",
        "CREATE INDEX bench_hex_geom ON bench_hex USING GIST (geom)",
        "ANALYZE",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    eprintln!(
        "loaded {} cells from {uploads} uploads in {:.1} s",
        cells.len(),
        t_load.elapsed().as_secs_f64()
    );

    // The tiles: every tile of zooms 14 to 16 over the area, in a shuffled order.
    let mut tiles = Vec::new();
    for z in 14..=16u8 {
        let (_, x0, y1) = tile_at(SW.0, SW.1, z);
        let (_, x1, y0) = tile_at(SW.0 + span.0, SW.1 + span.1, z);
        for x in x0..=x1 {
            for y in y0..=y1 {
                tiles.push((z, x, y));
            }
        }
    }
    for i in (1..tiles.len()).rev() {
        let j = (rand() * (i + 1) as f64) as usize;
        tiles.swap(i, j);
    }

    // covermap, started as a user starts it.
    let mut child = Command::new(bin)
        .args(["--data-dir", &data_dir, "--database", &db])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--public-rate",
            "1000000",
            "--workers",
            "1",
        ])
        .arg("serve")
        .env("COVERMAP_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("covermap listening on ")
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let fetch = |(z, x, y): (u8, u32, u32)| {
        let client = client.clone();
        let url = format!("{base}/tiles/coverage/{z}/{x}/{y}");
        async move {
            let r = client
                .get(url)
                .header("accept-encoding", "gzip")
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.bytes().await.unwrap().len()
        }
    };
    let uncached = load(&tiles, fetch).await;
    let cached = load(&tiles, fetch).await;
    // The second pass was served from the cache: spot-check it.
    for (z, x, y) in tiles.iter().take(50) {
        let r = client
            .get(format!("{base}/tiles/coverage/{z}/{x}/{y}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-tile-cache"], "hit", "{z}/{x}/{y}");
    }

    // PostGIS: one ST_AsMVT query per tile, over a pool as wide as the load.
    let pg = Arc::new(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(CONCURRENCY as u32)
            .connect(&db)
            .await
            .unwrap(),
    );
    let query = |(z, x, y): (u8, u32, u32)| {
        let pg = pg.clone();
        async move {
            let (mvt,): (Option<Vec<u8>>,) = sqlx::query_as(
                "SELECT ST_AsMVT(t, 'coverage', 4096, 'geom') FROM ( \
                   SELECT cell_id AS cell, observations, uploads, contributors, last_seen, \
                          ST_AsMVTGeom(geom, ST_TileEnvelope($1, $2, $3), 4096, 64, true) AS geom \
                   FROM bench_hex \
                   WHERE geom && ST_TileEnvelope($1, $2, $3, margin => (64.0 / 4096))) t",
            )
            .bind(i32::from(z))
            .bind(x as i32)
            .bind(y as i32)
            .fetch_one(pg.as_ref())
            .await
            .unwrap();
            mvt.map_or(0, |m| m.len())
        }
    };
    let _warm = load(&tiles, query).await;
    let postgis = load(&tiles, query).await;

    // Upload to visible: a geosubmit at a fresh spot, its radio tile cached empty beforehand.
    let key_out = Command::new(bin)
        .args(["--data-dir", &data_dir, "--database", &db])
        .args([
            "keys",
            "create",
            "--role",
            "device",
            "--contributor",
            "bench",
        ])
        .env("COVERMAP_LOG", "warn")
        .output()
        .unwrap();
    assert!(key_out.status.success(), "{key_out:?}");
    let key = String::from_utf8(key_out.stdout).unwrap().trim().to_owned();
    let mut visible_ms = Vec::new();
    let tries = if full { 10 } else { 2 };
    for i in 0..tries {
        let (lat, lon) = (SW.0 + 0.01 + 0.02 * f64::from(i), SW.1 + 0.01);
        let t = tile_at(lat, lon, 16);
        let url = format!("{base}/tiles/radio/{}/{}/{}", t.0, t.1, t.2);
        assert_eq!(client.get(&url).send().await.unwrap().status(), 204);
        // One device drives from spot to spot: ten minutes apart, as a car could (2 km in one
        // second would be a teleport, and the trust stage keeps it off the map).
        let at = Utc::now() - chrono::Duration::minutes(10 * i64::from(tries - i));
        let body = serde_json::json!({"items": [{
            "timestamp": at.timestamp_millis(),
            "position": {"latitude": lat, "longitude": lon, "accuracy": 10.0},
            "wifiAccessPoints": [{"macAddress": format!("02:00:00:00:00:{i:02x}"), "signalStrength": -60}],
        }]});
        let started = Instant::now();
        let r = client
            .post(format!("{base}/v2/geosubmit?key={key}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        loop {
            if client.get(&url).send().await.unwrap().status() == 200 {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let rows: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
                    "SELECT id, status, trust, trust_findings FROM uploads \
                     WHERE contributor = 'bench' ORDER BY id",
                )
                .fetch_all(pg.as_ref())
                .await
                .unwrap_or_default();
                panic!("a geosubmit never became visible on {url}: its uploads {rows:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        visible_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    visible_ms.sort_by(f64::total_cmp);

    println!(
        "{} cells (H3 res 11) from {uploads} uploads; {} tiles (z14–16); concurrency {CONCURRENCY}\n",
        cells.len(),
        tiles.len()
    );
    println!("| server | tiles | tiles/s | p50 ms | p99 ms | max ms | bytes/tile |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "{}",
        uncached.row("covermap, uncached (HTTP, gzip; bytes gzipped)")
    );
    println!(
        "{}",
        cached.row("covermap, cached (HTTP, gzip; bytes gzipped)")
    );
    println!(
        "{}",
        postgis.row("PostGIS ST_AsMVT (query only; bytes raw)")
    );
    println!(
        "\nuncached covermap / PostGIS: {:.1}× tiles per second",
        (uncached.n as f64 / uncached.wall.as_secs_f64())
            / (postgis.n as f64 / postgis.wall.as_secs_f64())
    );
    println!(
        "upload to visible tile: {} tries, median {:.0} ms, max {:.0} ms",
        visible_ms.len(),
        visible_ms[visible_ms.len() / 2],
        visible_ms[visible_ms.len() - 1]
    );

    let _ = child.kill();
    let _ = child.wait();
    pool.close().await;
    pg.close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}
