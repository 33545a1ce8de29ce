//! `covermap`: the one binary. It reads the configuration (in one place, [`config`]), opens
//! storage and wires the commands below to `covermap_pipeline`'s use cases and `covermap_web`'s
//! router; the stages and the use cases themselves live in their crates.

mod adversary_cmd;
mod config;
mod demo;
mod estimate_cmd;
mod ingest_cmd;
mod matching;
mod policy_cmd;
mod rewards;
mod tiles_cmd;
mod vision_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use covermap_store::{Blobs, Store};
use covermap_web::AppState;
use tokio::sync::{Notify, watch};

use crate::config::{LogFormat, Overrides, Settings};
use covermap_pipeline::WorkerConfig;

/// covermap: coverage mapping for community-run infrastructure networks.
///
/// Drivers upload what their devices captured; covermap checks it, queues it, turns it into
/// coverage per road and H3 cell, and serves it as an API and a map. With no --database it runs
/// on an embedded SQLite store in --data-dir: nothing to install.
#[derive(Debug, Parser)]
#[command(name = "covermap", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API, the web UI and the workers on one address.
    Serve,
    /// Run workers only, sharing the queue with other processes on the same database.
    Worker,
    /// Bring the database schema up to date and exit.
    Migrate,
    /// The whole pipeline on the embedded default: load roads, start the server, and let
    /// simulated drivers upload drives through the HTTP API until coverage appears on the map.
    Demo(demo::DemoArgs),
    /// Map-match a GPX track (prints a GeoJSON Feature) or a CSV batch of traces.
    Match(matching::MatchArgs),
    /// Road network commands.
    #[command(subcommand)]
    Roads(RoadsCommand),
    /// Import files and folders of drives and radio measurements, as the upload API would.
    Ingest(ingest_cmd::IngestArgs),
    /// The vision stage on image files: quality verdict, faces, plates, blur.
    #[command(subcommand)]
    Vision(vision_cmd::VisionCommand),
    /// Reward epochs: close, list, verify.
    #[command(subcommand)]
    Epoch(rewards::EpochCommand),
    /// Rewards under a proposed policy.
    #[command(subcommand)]
    Rewards(rewards::RewardsCommand),
    /// The policy in force and its governance: proposals, votes, counts anyone can check.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Planners' demand areas and bounties.
    #[command(subcommand)]
    Demand(rewards::DemandCommand),
    /// What a planned route would earn (as POST /api/v1/estimate answers); `estimate backtest`
    /// measures that estimate against closed epochs.
    Estimate(estimate_cmd::EstimateArgs),
    /// API keys: create, list, revoke.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Uploads: erase them at their contributor's request.
    #[command(subcommand)]
    Uploads(UploadsCommand),
    /// The month partitions of the high-volume tables (PostGIS): list them, detach old ones.
    #[command(subcommand)]
    Partitions(PartitionsCommand),
    /// Vector tiles: export a layer as a PMTiles archive.
    #[command(subcommand)]
    Tiles(tiles_cmd::TilesCommand),
    /// Print the configuration in force (after file, environment and flags) as TOML.
    Config,
    /// Our own adversarial set: honest and fraudulent uploads, labelled.
    #[command(subcommand)]
    Adversary(adversary_cmd::AdversaryCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create an API key and print it (it is shown this once; only its hash is stored).
    Create {
        /// device, auditor, planner, admin or consumer.
        #[arg(long)]
        role: String,
        /// A consumer key's quota: requests a UTC day to the public map endpoints (required for
        /// consumer keys, refused for others).
        #[arg(long, value_name = "REQUESTS_PER_DAY")]
        quota: Option<u64>,
        /// The contributor uploads made with the key (or by devices it registers) are
        /// credited to; without one they are stored and mapped but not rewarded.
        #[arg(long)]
        contributor: Option<String>,
    },
    /// List keys (never the keys themselves).
    List,
    /// Consumer keys' requests per UTC day, and per area looked at, as JSON lines (as
    /// `GET /api/v1/consumers/usage` answers).
    Usage {
        /// One key's only, by id.
        #[arg(long, value_name = "ID")]
        key: Option<i64>,
        /// Days back from today (UTC), today included.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Revoke a key at once, by its id.
    Revoke {
        /// The key's id, as `keys list` and `keys create` show it.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum UploadsCommand {
    /// Erase uploads at their contributor's request, as `DELETE /api/v1/uploads/{id}` and
    /// `POST /api/v1/erasures` do: their bytes and frames leave the object store, the rows that
    /// say where they drove go, and the reward ledger keeps its history. Asking again is
    /// harmless. Prints each erasure as a JSON line.
    Erase {
        /// The uploads, by id.
        #[arg(required_unless_present_any = ["contributor", "device"])]
        ids: Vec<i64>,
        /// Every upload of this contributor instead.
        #[arg(long, conflicts_with_all = ["ids", "device"])]
        contributor: Option<String>,
        /// Every upload of this device instead.
        #[arg(long, conflicts_with = "ids")]
        device: Option<String>,
        /// Who asked, for the erasure's record.
        #[arg(long, default_value = "operator")]
        requested_by: String,
    },
}

#[derive(Debug, Subcommand)]
enum PartitionsCommand {
    /// One JSON line per partition: table, partition, months it holds (received from, to),
    /// estimated rows and bytes. Makes this month's and the next ones first.
    List,
    /// Detach every month that ends at or before --before: each becomes a table of its own
    /// (archive it with `pg_dump -t`, then drop it). Refused while anything in those months is
    /// still to be counted: a queued upload, a frame pending judgement, an epoch not closed, or
    /// the next epoch's coverage window. A detached month is outside covermap: its maps, audits
    /// and erasures no longer reach it. Prints each detached partition as a JSON line.
    Detach {
        /// The first day kept (RFC 3339 or YYYY-MM-DD, UTC), e.g. 2026-07-01.
        #[arg(long, value_parser = parse_day_or_time)]
        before: chrono::DateTime<chrono::Utc>,
    },
}

/// A UTC day (YYYY-MM-DD, its start) or an RFC 3339 time.
fn parse_day_or_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("neither YYYY-MM-DD nor RFC 3339: {e}"))
}

#[derive(Debug, Subcommand)]
enum RoadsCommand {
    /// Import the drivable roads of OSM extracts, replacing the stored network. Several files
    /// (two regions, say) make one network; a way in more than one of them is kept once.
    Import {
        /// .osm.pbf, .osm, .osm.gz or .osm.bz2 files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// mimalloc, not the system's malloc: a tile of a few hundred kilobytes is drawn into fresh
/// buffers hundreds of times a second, and glibc hands such buffers back to the kernel and
/// faults them in again (BENCHMARKS.md, "Uncached tiles beside martin").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::resolve(&cli.overrides) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    init_logging(settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into()),
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// One line on stderr: the error and its causes, each said once.
fn fail(e: &anyhow::Error) -> ExitCode {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    // Causes may carry a server's multi-line answer (an S3 XML error, say): keep it one line.
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("covermap: error: {line}");
    ExitCode::FAILURE
}

/// The progress bar being drawn, if any: log lines are written around it, never through it.
pub(crate) static PROGRESS: std::sync::Mutex<Option<indicatif::ProgressBar>> =
    std::sync::Mutex::new(None);

/// One log line on its way to stderr, written out whole when dropped (the bar hidden meanwhile).
struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        use std::io::Write as _;
        let bar = PROGRESS.lock().ok().and_then(|b| b.clone());
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.0);
        };
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COVERMAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogLine(Vec::new()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Config => {
            print!("{}", toml::to_string(&settings)?);
            Ok(())
        }
        Command::Migrate => {
            let store = open_store(&settings).await?;
            println!("schema of the {} store is up to date", store.backend());
            Ok(())
        }
        Command::Serve => {
            let (store, blobs) = open_storage(&settings).await?;
            let server = Server::start(&settings, store, blobs).await?;
            println!("covermap listening on http://{}/", server.addr);
            server.run_until_signal().await
        }
        Command::Worker => {
            let (store, blobs) = open_storage(&settings).await?;
            let book = policy_cmd::open_book(&settings, store.as_ref()).await?;
            let (tx, rx) = watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = tx.send(true);
            });
            tracing::info!(
                workers = settings.workers,
                backend = store.backend(),
                "workers running"
            );
            let metrics = match settings.metrics_listen {
                Some(addr) => {
                    let state =
                        app_state(&settings, store.clone(), blobs.clone(), book.clone(), 0)?;
                    Some(serve_worker_metrics(addr, state, rx.clone()).await?)
                }
                None => None,
            };
            tokio::spawn(covermap_pipeline::governance::run_refresher(
                book.clone(),
                store.clone(),
                Duration::from_secs(5),
                rx.clone(),
            ));
            let closer = settings.close_epochs.then(|| {
                tokio::spawn(covermap_pipeline::epochs::run_closer(
                    store.clone(),
                    blobs.clone(),
                    book.clone(),
                    format!("worker-{}", std::process::id()),
                    rx.clone(),
                ))
            });
            covermap_pipeline::run_pool(
                settings.workers.max(1),
                store,
                blobs,
                worker_config(&settings, &book),
                Arc::new(Notify::new()),
                rx,
            )
            .await;
            if let Some(c) = closer {
                c.await?;
            }
            if let Some(m) = metrics {
                m.await??;
            }
            Ok(())
        }
        Command::Roads(RoadsCommand::Import { files }) => {
            let store = open_store(&settings).await?;
            let mut network = covermap_roads::RoadNetwork {
                segments: Vec::new(),
            };
            let mut seen = std::collections::HashSet::new();
            for file in &files {
                for s in covermap_roads::osm::read(file)?.segments {
                    if seen.insert((s.osm_way_id, s.piece)) {
                        network.segments.push(s);
                    }
                }
            }
            let n = store
                .replace_roads(
                    &network.segments,
                    &covermap_roads::road_length_per_cell(&network.segments, settings.resolution()),
                )
                .await?;
            println!(
                "imported {n} road segments ({:.1} km) from {}",
                network.total_length_m() / 1000.0,
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Command::Demo(args) => demo::run(args, settings).await,
        Command::Ingest(args) => ingest_cmd::run(args, settings).await,
        Command::Keys(command) => keys(command, &settings).await,
        Command::Uploads(command) => uploads(command, &settings).await,
        Command::Partitions(command) => partitions(command, &settings).await,
        Command::Epoch(command) => rewards::epoch(command, &settings).await,
        Command::Rewards(command) => rewards::rewards(command, &settings).await,
        Command::Policy(command) => policy_cmd::run(command, &settings).await,
        Command::Demand(command) => rewards::demand(command, &settings).await,
        Command::Estimate(args) => estimate_cmd::run(args, &settings).await,
        Command::Tiles(command) => tiles_cmd::run(command, &settings).await,
        Command::Vision(command) => {
            tokio::task::spawn_blocking(move || {
                vision_cmd::run(command, &settings.models, settings.text_backstop)
            })
            .await?
        }
        Command::Adversary(command) => {
            tokio::task::spawn_blocking(move || adversary_cmd::run(command)).await?
        }
        Command::Match(args) => {
            let resolution = settings.resolution();
            tokio::task::spawn_blocking(move || matching::run(&args, resolution)).await?
        }
    }
}

async fn keys(command: KeysCommand, settings: &Settings) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    match command {
        KeysCommand::Create {
            role,
            contributor,
            quota,
        } => {
            let role: covermap_domain::Role = role.parse()?;
            let contributor = covermap_web::checked_contributor(contributor)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let quota = covermap_ingest::access::checked_quota(role, quota)
                .map_err(|e| anyhow::anyhow!("--quota: {e}"))?;
            let mut issued = covermap_ingest::access::issue_key(role, contributor);
            issued.record.quota_per_day = quota;
            let record = store
                .create_api_key(&issued.record, chrono::Utc::now())
                .await?;
            eprintln!(
                "created {} key {} (id {}){}; it is shown only now",
                record.role,
                record.prefix,
                record.id,
                record
                    .contributor
                    .as_ref()
                    .map(|c| format!(" for contributor {c}"))
                    .unwrap_or_default()
            );
            println!("{}", issued.key);
        }
        KeysCommand::List => {
            for k in store.api_keys().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.prefix,
                    k.role,
                    k.contributor.as_deref().unwrap_or("-"),
                    k.quota_per_day
                        .map_or("-".to_owned(), |q| format!("{q}/day")),
                    if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        KeysCommand::Usage { key, days } => {
            let since = chrono::Utc::now().date_naive()
                - chrono::TimeDelta::days(i64::from(days.max(1)) - 1);
            for day in store.consumer_usage(key, since).await? {
                println!("{}", serde_json::to_string(&day)?);
            }
        }
        KeysCommand::Revoke { id } => {
            if !store.revoke_api_key(id, chrono::Utc::now()).await? {
                anyhow::bail!("no active key {id}");
            }
            println!("key {id} revoked");
        }
    }
    Ok(())
}

async fn partitions(command: PartitionsCommand, settings: &Settings) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    if store.backend() != "postgis" {
        anyhow::bail!(
            "the embedded store is not partitioned: partitions need --database postgres://…"
        );
    }
    let shown = match command {
        PartitionsCommand::List => {
            store
                .ensure_partitions(chrono::Utc::now(), covermap_store::MONTHS_AHEAD)
                .await?;
            store.partitions().await?
        }
        PartitionsCommand::Detach { before } => {
            let book = policy_cmd::open_book(settings, store.as_ref()).await?;
            covermap_pipeline::epochs::detach_months(store.as_ref(), &book, before).await?
        }
    };
    for p in shown {
        println!("{}", serde_json::to_string(&p)?);
    }
    Ok(())
}

async fn uploads(command: UploadsCommand, settings: &Settings) -> anyhow::Result<()> {
    let UploadsCommand::Erase {
        ids,
        contributor,
        device,
        requested_by,
    } = command;
    let (store, blobs) = open_storage(settings).await?;
    let now = chrono::Utc::now();
    let subject = match (contributor, device) {
        (Some(c), _) => Some(covermap_pipeline::erasure::Subject::Contributor(c)),
        (None, Some(d)) => Some(covermap_pipeline::erasure::Subject::Device(
            d.parse().map_err(|e| anyhow::anyhow!("--device: {e}"))?,
        )),
        (None, None) => None,
    };
    let erasures = match subject {
        Some(subject) => {
            covermap_pipeline::erasure::erase_all(
                store.as_ref(),
                &blobs,
                &subject,
                &requested_by,
                now,
            )
            .await?
        }
        None => {
            let mut done = Vec::new();
            for id in ids {
                let erasure = covermap_pipeline::erasure::erase_upload(
                    store.as_ref(),
                    &blobs,
                    id,
                    &requested_by,
                    now,
                )
                .await
                .with_context(|| format!("erasing upload {id}"))?;
                done.push(erasure);
            }
            done
        }
    };
    for erasure in &erasures {
        println!("{}", serde_json::to_string(erasure)?);
    }
    let unfinished = erasures.iter().filter(|e| e.completed_at.is_none()).count();
    if unfinished > 0 {
        anyhow::bail!(
            "{unfinished} erasure(s) still have blobs to delete (the object store failed); run it again"
        );
    }
    Ok(())
}

/// Opens the database the settings name and brings its schema up to date.
pub(crate) async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let store = covermap_store::open(settings.database.as_deref(), &settings.data_dir).await?;
    store
        .migrate()
        .await
        .with_context(|| format!("cannot prepare the {} database", store.backend()))?;
    Ok(store)
}

pub(crate) async fn open_storage(settings: &Settings) -> anyhow::Result<(Arc<dyn Store>, Blobs)> {
    let store = open_store(settings).await?;
    let blobs = Blobs::open(&settings.objects).await?;
    Ok((store, blobs))
}

pub(crate) fn worker_config(
    settings: &Settings,
    book: &covermap_pipeline::governance::PolicyBook,
) -> WorkerConfig {
    WorkerConfig {
        policy: Some(book.clone()),
        lease: settings.lease(),
        camera_offset: settings.camera_offset(),
        vision: load_vision(
            &settings.models,
            settings.vision_threads,
            settings.text_backstop,
        ),
        original_retention: settings.original_retention(),
        ..WorkerConfig::new(&book.now(), settings.ingest_rules(), settings.resolution())
    }
}

/// The vision stage's models from `dir` (where `models/fetch` put them), loaded `threads` times
/// (frames are looked at in parallel); without them frames stay pending.
fn load_vision(
    dir: &std::path::Path,
    threads: usize,
    text_backstop: bool,
) -> Option<Arc<covermap_vision::FramePool>> {
    match covermap_vision::FramePool::load_with(dir, threads, text_backstop) {
        Ok(pool) => {
            if !text_backstop {
                tracing::info!(
                    "the plate backstop is off: on the labelled set 3 of 11 small plates are \
                     covered, 10 of 11 with --text-backstop (about 2 s a frame; BENCHMARKS.md)"
                );
            }
            Some(Arc::new(pool))
        }
        Err(e) => {
            tracing::warn!(error = %e, "vision models not loaded: camera frames are kept unpublished until they are");
            None
        }
    }
}

/// The HTTP server and its in-process workers, started.
pub(crate) struct Server {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    /// Whether the vision stage's models loaded (without them frames stay unpublished).
    pub vision_loaded: bool,
    shutdown: watch::Sender<bool>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    workers: tokio::task::JoinHandle<()>,
    /// Counted map usage and consumers' requests, written once more after the last request.
    usage: Arc<covermap_web::usage::UsageMeter>,
}

/// What the HTTP handlers share, with the metrics recorder installed; `tile_cache_bytes` bounds
/// the rendered tiles kept.
fn app_state(
    settings: &Settings,
    store: Arc<dyn Store>,
    blobs: Blobs,
    policy: covermap_pipeline::governance::PolicyBook,
    tile_cache_bytes: usize,
) -> anyhow::Result<AppState> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    Ok(AppState::new(covermap_web::Shared {
        store,
        blobs,
        rules: settings.ingest_rules(),
        policy,
        usage: Arc::new(covermap_web::usage::UsageMeter::default()),
        resolution: settings.resolution(),
        tiles: Arc::new(covermap_web::maptiles::TileCache::new(tile_cache_bytes)),
        max_upload_bytes: settings.max_upload_bytes,
        max_drive_bytes: settings.max_drive_bytes,
        public_rate: settings.public_rate(),
        trusted_proxies: settings.trusted_proxies()?,
        metrics: Some(metrics),
        jobs_waiting: Arc::new(Notify::new()),
        drive_slots: Arc::new(tokio::sync::Semaphore::new(2)),
        web_vendor: settings.web_vendor.clone(),
    }))
}

/// `covermap worker --metrics-listen ADDR`: `/metrics` and `/healthz` on ADDR, until `stop`.
/// Says the address it took on stdout (`covermap worker metrics on http://ADDR`).
async fn serve_worker_metrics(
    addr: SocketAddr,
    state: AppState,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    println!(
        "covermap worker metrics on http://{}",
        listener.local_addr()?
    );
    let app = covermap_web::metrics_router(state);
    Ok(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    }))
}

impl Server {
    pub async fn start(
        settings: &Settings,
        store: Arc<dyn Store>,
        blobs: Blobs,
    ) -> anyhow::Result<Self> {
        let book = policy_cmd::open_book(settings, store.as_ref()).await?;
        let state = app_state(
            settings,
            store.clone(),
            blobs.clone(),
            book,
            settings.tile_cache_mb << 20,
        )?;
        let (policy, usage, wake, tiles) = (
            state.policy.clone(),
            state.usage.clone(),
            state.jobs_waiting.clone(),
            state.tiles.clone(),
        );
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let mut http_rx = rx.clone();
        let state_for_sweeper = state.clone();
        let app = covermap_web::router(state);
        let http = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = http_rx.wait_for(|stop| *stop).await;
            })
            .await
        });
        // Upload sessions abandoned for a day go, with their staged parts: now and hourly.
        tokio::spawn(covermap_web::uploads::run_session_sweeper(
            state_for_sweeper,
            Duration::from_secs(3600),
            rx.clone(),
        ));
        tokio::spawn(covermap_web::usage::run_flusher(
            usage.clone(),
            store.clone(),
            Duration::from_secs(5),
            rx.clone(),
        ));
        tokio::spawn(covermap_web::maptiles::run_invalidator(
            tiles,
            store.clone(),
            policy.clone(),
            settings.resolution(),
            Duration::from_secs(1),
            rx.clone(),
        ));
        tokio::spawn(covermap_pipeline::governance::run_refresher(
            policy.clone(),
            store.clone(),
            Duration::from_secs(5),
            rx.clone(),
        ));
        if settings.close_epochs {
            tokio::spawn(covermap_pipeline::epochs::run_closer(
                store.clone(),
                blobs.clone(),
                policy.clone(),
                format!("serve-{}", std::process::id()),
                rx.clone(),
            ));
        }
        let config = worker_config(settings, &policy);
        let vision_loaded = config.vision.is_some();
        let workers = tokio::spawn(covermap_pipeline::run_pool(
            settings.workers,
            store.clone(),
            blobs,
            config,
            wake,
            rx,
        ));
        tracing::info!(%addr, backend = store.backend(), objects = %settings.objects,
            workers = settings.workers, "covermap is serving on http://{addr}/");
        Ok(Self {
            addr,
            store,
            vision_loaded,
            shutdown,
            http,
            workers,
            usage,
        })
    }

    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing jobs in hand");
        self.stop().await
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.workers.await.context("worker pool")?;
        self.http.await.context("HTTP server")??;
        // Requests answered while the server drained count too (a restart gives no quota back).
        self.usage
            .flush(self.store.as_ref(), chrono::Utc::now())
            .await;
        Ok(())
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every command says what it is for in `--help`.
    #[test]
    fn every_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (the command itself)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "covermap", &mut missing);
        assert!(
            missing.is_empty(),
            "arguments without a description: {missing:#?}"
        );
    }
}
