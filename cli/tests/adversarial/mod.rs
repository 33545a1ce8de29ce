//! Runs an adversarial scenario (`covermap-adversary`) through covermap's public interfaces, as
//! the held-out evaluation will: `covermap roads import` and `covermap keys create` on a fresh
//! database, `covermap serve` with an epoch covering the run, every device's key registered
//! (`POST /api/v1/devices`), every GPX signed by its device (`POST /api/v1/uploads/gpx`), every
//! geosubmit sent with its contributor's device key (`POST /v2/geosubmit?key=`), processing
//! awaited (`GET /api/v1/uploads/{id}`), the epoch closed with `covermap epoch close`, and the
//! rewards read back (`GET /api/v1/rewards/{contributor}`). Nothing here looks inside covermap.
//!
//! Shared by `cli/tests/fraud.rs` (small, asserting the targets) and `cli/benches/fraud.rs`.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, SubsecRound, Utc};
use covermap_adversary::{FileKind, FileOutcome, Label, Report, Scenario, ScenarioConfig, SetSize};
use covermap_ingest::access::DeviceSigner;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Connection;

/// Where the run keeps its data.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// The embedded default: a fresh data directory.
    Sqlite,
    /// A fresh database made on the PostgreSQL server this admin URL reaches.
    Postgis(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgis(_) => "postgis",
        }
    }

    /// PostGIS at `COVERMAP_TEST_DATABASE_URL`, or the local server.
    pub fn postgis_from_env() -> Self {
        Backend::Postgis(
            std::env::var("COVERMAP_TEST_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        )
    }
}

/// The real covermap binary, the OSM extract, and what to run.
#[derive(Debug, Clone)]
pub struct Run {
    pub bin: PathBuf,
    pub roads: PathBuf,
    pub backend: Backend,
    pub size: SetSize,
    pub seed: u64,
    pub workers: usize,
}

/// Wall-clock seconds of each phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub generate_s: f64,
    pub setup_s: f64,
    pub upload_s: f64,
    pub process_s: f64,
    pub epoch_wait_s: f64,
    pub close_s: f64,
    pub total_s: f64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub backend: &'static str,
    pub seed: u64,
    pub files: usize,
    pub bytes: usize,
    pub contributors: usize,
    pub report: Report,
    pub timings: Timings,
    /// The manifests `covermap epoch close` printed.
    pub epochs: Vec<Value>,
    pub outcomes: Vec<FileOutcome>,
}

/// A fresh database and data directory.
struct Db {
    dir: tempfile::TempDir,
    /// (admin URL, this run's database URL).
    pg: Option<(String, String)>,
}

impl Db {
    async fn new(backend: &Backend) -> anyhow::Result<Self> {
        let mut dir = tempfile::tempdir()?;
        // COVERMAP_FRAUD_KEEP=1 keeps the data directory (and the SQLite database in it) for a
        // look at the evidence after the run.
        if std::env::var_os("COVERMAP_FRAUD_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("fraud run data kept in {}", dir.path().display());
        }
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgis(admin) => {
                let name = format!("covermap_fraud_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(admin)
                    .await
                    .with_context(|| format!("the PostGIS run needs PostgreSQL at {admin}"))?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await?;
                let mut url = url::Url::parse(admin)?;
                url.set_path(&format!("/{name}"));
                Some((admin.clone(), url.to_string()))
            }
        };
        Ok(Self { dir, pg })
    }

    fn args(&self) -> Vec<String> {
        let mut a = vec!["--data-dir".into(), self.dir.path().display().to_string()];
        if let Some((_, url)) = &self.pg {
            a.extend(["--database".into(), url.clone()]);
        }
        a
    }

    async fn drop_database(&self) {
        if let Some((admin, url)) = &self.pg {
            let name = url.rsplit('/').next().unwrap_or_default().to_owned();
            if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

/// `covermap serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn covermap(bin: &Path, db: &Db, args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new(bin)
        .args(db.args())
        .args(args)
        .env("COVERMAP_LOG", "warn")
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "covermap {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// The shipped reward policy with epochs of `length_s` from `genesis` and no grace period.
fn policy_text(genesis: DateTime<Utc>, length_s: i64) -> anyhow::Result<String> {
    let text = covermap_scoring::policy::DEFAULT_POLICY;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("genesis = ") {
                format!("genesis = \"{}\"", genesis.to_rfc3339())
            } else if l.starts_with("length_seconds = ") {
                format!("length_seconds = {length_s}")
            } else if l.starts_with("grace_seconds = ") {
                "grace_seconds = 0".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    let out = lines.join("\n") + "\n";
    if out == text {
        bail!("the shipped policy has no epoch settings to change");
    }
    Ok(out)
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// What happened to one file at upload.
#[derive(Debug, Clone, Default)]
struct Sent {
    upload_id: Option<i64>,
    refused: Option<String>,
}

fn refusal(status: u16, body: &Value) -> String {
    format!(
        "{status} {}",
        body["error"]["code"].as_str().unwrap_or("unknown")
    )
}

impl Run {
    /// Generates the scenario, runs it through covermap, and measures what became of each file.
    pub async fn measure(&self) -> anyhow::Result<Measured> {
        let started = Instant::now();
        let mut timings = Timings::default();
        let network = covermap_roads::osm::read(&self.roads)?;
        let scenario = covermap_adversary::generate(
            &network,
            &ScenarioConfig::for_arrival(self.size, self.seed, Utc::now()),
        )?;
        timings.generate_s = started.elapsed().as_secs_f64();
        let db = Db::new(&self.backend).await?;
        let result = self.drive(&scenario, &db, &mut timings).await;
        db.drop_database().await;
        let (outcomes, epochs) = result?;
        let earned: BTreeMap<String, (Label, u64)> = scenario
            .contributors
            .iter()
            .map(|c| {
                let amount = outcomes
                    .iter()
                    .find(|o| o.contributor == c.name)
                    .map_or(0, |o| o.contributor_amount);
                (c.name.clone(), (c.label, amount))
            })
            .collect();
        let report = Report::from_outcomes(&outcomes, &earned);
        timings.total_s = started.elapsed().as_secs_f64();
        Ok(Measured {
            backend: self.backend.name(),
            seed: self.seed,
            files: scenario.files.len(),
            bytes: scenario.files.iter().map(|f| f.bytes.len()).sum(),
            contributors: scenario.contributors.len(),
            report,
            timings,
            epochs,
            outcomes,
        })
    }

    async fn drive(
        &self,
        scenario: &Scenario,
        db: &Db,
        timings: &mut Timings,
    ) -> anyhow::Result<(Vec<FileOutcome>, Vec<Value>)> {
        let t = Instant::now();
        let roads = self.roads.display().to_string();
        covermap(&self.bin, db, &["roads", "import", &roads])?;
        let admin = key(&self.bin, db, "admin", None)?;
        let mut keys: HashMap<String, String> = HashMap::new();
        for c in &scenario.contributors {
            keys.insert(c.name.clone(), key(&self.bin, db, "device", Some(&c.name))?);
        }
        // Old fixes are kept: the set is historical (the oldest honest file is about ten
        // days old); fixes years old still are not.
        let oldest = scenario
            .files
            .iter()
            .filter(|f| f.label == Label::Honest)
            .map(|f| f.first_ms)
            .min()
            .unwrap_or(0);
        let age_days = (Utc::now().timestamp_millis() - oldest) / 86_400_000 + 30;
        // One epoch from now, long enough for every upload to arrive in it (they are counted
        // in the epoch they arrive in); it is waited out and closed after processing.
        let files = scenario.files.len() as i64;
        let epoch_s = 20 + files / 10;
        let genesis = Utc::now().trunc_subsecs(0);
        let policy = db.dir.path().join("policy.toml");
        std::fs::write(&policy, policy_text(genesis, epoch_s)?)?;
        let policy = policy.display().to_string();
        let server = self.serve(db, &policy, age_days)?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        let base = server.base.clone();
        let mut signers: HashMap<String, DeviceSigner> = HashMap::new();
        for c in &scenario.contributors {
            for d in &c.devices {
                let signer = DeviceSigner::from_secret(d.id.clone(), d.secret).bound_to(&c.name);
                let (status, body) = json_of(
                    client
                        .post(format!("{base}/api/v1/devices"))
                        .bearer_auth(&keys[&c.name])
                        .json(&json!({"device": d.id, "public_key": signer.public_key_hex()}))
                        .send()
                        .await?,
                )
                .await;
                if !(200..300).contains(&status) {
                    bail!("registering {}: {status} {body}", d.id);
                }
                signers.insert(d.id.clone(), signer);
            }
        }
        timings.setup_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut sent: Vec<Sent> = Vec::with_capacity(scenario.files.len());
        for f in &scenario.files {
            let s = match f.kind {
                FileKind::Gpx => {
                    let signer = signers
                        .get(&f.device)
                        .with_context(|| format!("{}: no device {}", f.id, f.device))?;
                    let path = "/api/v1/uploads/gpx";
                    let mut r = client.post(format!("{base}{path}"));
                    for (name, value) in signer.headers("POST", path, &f.bytes, Utc::now()) {
                        r = r.header(name, value);
                    }
                    let (status, body) = json_of(r.body(f.bytes.clone()).send().await?).await;
                    match status {
                        200..=299 => Sent {
                            upload_id: body["upload_id"].as_i64(),
                            refused: None,
                        },
                        400..=499 => Sent {
                            upload_id: None,
                            refused: Some(refusal(status, &body)),
                        },
                        _ => bail!("{}: {status} {body}", f.id),
                    }
                }
                FileKind::Geosubmit => {
                    let (status, body) = json_of(
                        client
                            .post(format!("{base}/v2/geosubmit?key={}", keys[&f.contributor]))
                            .header("content-type", "application/json")
                            .body(f.bytes.clone())
                            .send()
                            .await?,
                    )
                    .await;
                    match status {
                        // Ichnaea answers `{}`: the upload is found by its sha256 below.
                        200..=299 => Sent::default(),
                        400..=499 => Sent {
                            upload_id: None,
                            refused: Some(refusal(status, &body)),
                        },
                        _ => bail!("{}: {status} {body}", f.id),
                    }
                }
            };
            sent.push(s);
        }
        let last_upload = Utc::now();
        timings.upload_s = t.elapsed().as_secs_f64();

        // Geosubmit uploads by the sha256 of their bytes, from each contributor's listing.
        let t = Instant::now();
        let mut by_sha: HashMap<String, i64> = HashMap::new();
        for c in &scenario.contributors {
            let (status, list) = json_of(
                client
                    .get(format!("{base}/api/v1/uploads?limit=1000"))
                    .bearer_auth(&keys[&c.name])
                    .send()
                    .await?,
            )
            .await;
            if status != 200 {
                bail!("listing {}'s uploads: {status} {list}", c.name);
            }
            for u in list["uploads"].as_array().into_iter().flatten() {
                if let (Some(sha), Some(id)) = (u["sha256"].as_str(), u["id"].as_i64()) {
                    by_sha.insert(sha.to_owned(), id);
                }
            }
        }
        for (f, s) in scenario.files.iter().zip(&mut sent) {
            if f.kind == FileKind::Geosubmit && s.refused.is_none() {
                let sha = hex::encode(Sha256::digest(&f.bytes));
                s.upload_id = Some(
                    *by_sha
                        .get(&sha)
                        .with_context(|| format!("{}: accepted but not listed", f.id))?,
                );
            }
        }
        self.processed(&client, &base, &admin, &sent).await?;
        timings.process_s = t.elapsed().as_secs_f64();

        // Uploads count in the epoch they arrived in: close every epoch that holds one.
        let t = Instant::now();
        let epoch_of = |at: DateTime<Utc>| ((at - genesis).num_seconds().max(0) / epoch_s) as u64;
        let last_epoch = epoch_of(last_upload);
        let end = genesis + chrono::Duration::seconds((last_epoch as i64 + 1) * epoch_s);
        while Utc::now() < end + chrono::Duration::milliseconds(500) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        timings.epoch_wait_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut manifests = Vec::new();
        for n in 0..=last_epoch {
            let out = covermap(
                &self.bin,
                db,
                &[
                    "--policy",
                    &policy,
                    "epoch",
                    "close",
                    "--epoch",
                    &n.to_string(),
                ],
            )?;
            let text = String::from_utf8_lossy(&out.stdout);
            manifests.push(serde_json::from_str(text.lines().next().unwrap_or("null"))?);
        }
        timings.close_s = t.elapsed().as_secs_f64();

        let mut earned: HashMap<String, (u64, bool)> = HashMap::new();
        for c in &scenario.contributors {
            let (status, r) = json_of(
                client
                    .get(format!("{base}/api/v1/rewards/{}", c.name))
                    .send()
                    .await?,
            )
            .await;
            let mut amount = 0;
            let mut flagged = false;
            if status == 200 {
                for e in r["epochs"].as_array().into_iter().flatten() {
                    amount += e["amount"].as_u64().unwrap_or(0);
                    flagged |= e["flagged"].as_bool().unwrap_or(false);
                }
            } else if status != 404 {
                bail!("rewards of {}: {status} {r}", c.name);
            }
            earned.insert(c.name.clone(), (amount, flagged));
        }
        // Each upload's record as it stands after the close: an epoch's verdict is the final one.
        let records = self.processed(&client, &base, &admin, &sent).await?;
        drop(server);

        let outcomes = scenario
            .files
            .iter()
            .zip(&sent)
            .map(|(f, s)| {
                let rec = s.upload_id.and_then(|id| records.get(&id));
                let (amount, flagged) = earned.get(&f.contributor).copied().unwrap_or_default();
                FileOutcome {
                    file: f.id.clone(),
                    contributor: f.contributor.clone(),
                    kind: f.kind,
                    label: f.label,
                    strength: f.strength.clone(),
                    refused: s.refused.clone(),
                    upload_id: s.upload_id,
                    status: rec.and_then(|r| r["status"].as_str()).map(str::to_owned),
                    trust_verdict: rec
                        .and_then(|r| r["trust"]["verdict"].as_str())
                        .map(str::to_owned),
                    cells: rec.and_then(|r| r["cells"].as_i64()),
                    contributor_amount: amount,
                    contributor_flagged: flagged,
                }
            })
            .collect();
        Ok((outcomes, manifests))
    }

    fn serve(&self, db: &Db, policy: &str, age_days: i64) -> anyhow::Result<Server> {
        let mut child = Command::new(&self.bin)
            .args(db.args())
            .args(["--listen", "127.0.0.1:0", "--policy", policy])
            .args(["--max-fix-age-days", &age_days.to_string()])
            .args(["--workers", &self.workers.to_string()])
            .args(["--close-epochs", "false"])
            .arg("serve")
            .env("COVERMAP_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("serve's stdout")?).read_line(&mut line)?;
        let base = line
            .trim()
            .strip_prefix("covermap listening on ")
            .with_context(|| format!("unexpected first line from serve: {line:?}"))?
            .trim_end_matches('/')
            .to_owned();
        Ok(Server { child, base })
    }

    /// Every accepted upload's record once it left the queue.
    async fn processed(
        &self,
        client: &reqwest::Client,
        base: &str,
        admin: &str,
        sent: &[Sent],
    ) -> anyhow::Result<HashMap<i64, Value>> {
        let mut waiting: Vec<i64> = sent.iter().filter_map(|s| s.upload_id).collect();
        waiting.sort_unstable();
        waiting.dedup();
        let mut done = HashMap::new();
        let started = Instant::now();
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for id in waiting {
                let (status, rec) = json_of(
                    client
                        .get(format!("{base}/api/v1/uploads/{id}"))
                        .bearer_auth(admin)
                        .send()
                        .await?,
                )
                .await;
                if status != 200 {
                    bail!("upload {id}: {status} {rec}");
                }
                if rec["status"] == "queued" {
                    still.push(id);
                } else {
                    done.insert(id, rec);
                }
            }
            waiting = still;
            if !waiting.is_empty() {
                if started.elapsed() > Duration::from_secs(1800) {
                    bail!("{} uploads still queued after 30 minutes", waiting.len());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Ok(done)
    }
}

fn key(bin: &Path, db: &Db, role: &str, contributor: Option<&str>) -> anyhow::Result<String> {
    let mut args = vec!["keys", "create", "--role", role];
    if let Some(c) = contributor {
        args.extend(["--contributor", c]);
    }
    let out = covermap(bin, db, &args)?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

impl Measured {
    /// The table and the run's figures, for a terminal and for BENCHMARKS.md.
    pub fn summary(&self) -> String {
        let t = &self.timings;
        format!(
            "Fraud: {} files ({} MB) from {} contributors, seed {}, on {}\n\n{}\n\
             Wall time {:.0} s: generate {:.1} s, setup {:.1} s, upload {:.1} s, \
             processing {:.1} s more, epoch wait {:.1} s, close {:.1} s.\n",
            self.files,
            self.bytes / 1_000_000,
            self.contributors,
            self.seed,
            self.backend,
            self.report.markdown(),
            t.total_s,
            t.generate_s,
            t.setup_s,
            t.upload_s,
            t.process_s,
            t.epoch_wait_s,
            t.close_s
        )
    }

    /// Writes the measurement as JSON to `path` (parents created).
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut v = serde_json::to_value(self)?;
        v["measured_at"] = json!(Utc::now());
        v["missed_targets"] = json!(self.report.missed_targets());
        std::fs::write(path, serde_json::to_string_pretty(&v)?)?;
        Ok(())
    }
}

/// The workspace's target directory (where cargo puts this build).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// `testdata/roads/monaco.osm.pbf`, from the project root.
pub fn monaco() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/roads/monaco.osm.pbf")
}
