//! The one configuration loader: defaults, then a TOML file, then environment variables, then
//! flags — each later source wins over the earlier ones.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

/// Settings every command understands. Each flag has an environment variable of its own; the
/// file named by `--config` supplies the rest.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
#[command(next_help_heading = "Settings of every command (flag, environment or --config file)")]
pub struct Overrides {
    /// TOML file with any of these settings (flags and environment win over it).
    #[arg(long, env = "COVERMAP_CONFIG", global = true, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address the HTTP server listens on [default: 127.0.0.1:8080].
    #[arg(long, env = "COVERMAP_LISTEN", global = true, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// `covermap worker` only: address to serve its `/metrics` (admin key) and `/healthz` on
    /// [default: none, no HTTP].
    #[arg(
        long,
        env = "COVERMAP_METRICS_LISTEN",
        global = true,
        value_name = "ADDR"
    )]
    pub metrics_listen: Option<SocketAddr>,
    /// Directory of the embedded database and of local blobs [default: ./covermap-data].
    #[arg(long, env = "COVERMAP_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A postgres:// URL selects PostGIS; without one, the embedded SQLite store in --data-dir.
    #[arg(long, env = "COVERMAP_DATABASE", global = true, value_name = "URL")]
    pub database: Option<String>,
    /// Object store for blobs: file:///dir, s3://bucket/prefix, gs://…, az://… or memory://
    /// [default: file://DATA_DIR/blobs].
    #[arg(long, env = "COVERMAP_OBJECTS", global = true, value_name = "URL")]
    pub objects: Option<String>,
    /// Worker tasks inside `serve` and `demo`, or in one `worker` process [default: 2].
    #[arg(long, env = "COVERMAP_WORKERS", global = true, value_name = "N")]
    pub workers: Option<usize>,
    /// How long a job stays a worker's without a renewal; a working worker renews it every third
    /// of this, and a dead one's job is taken over after it [default: 60].
    #[arg(long, env = "COVERMAP_LEASE_SECONDS", global = true, value_name = "S")]
    pub lease_seconds: Option<u64>,
    /// Largest accepted upload body, in bytes [default: 33554432 (32 MiB)].
    #[arg(
        long,
        env = "COVERMAP_MAX_UPLOAD_BYTES",
        global = true,
        value_name = "BYTES"
    )]
    pub max_upload_bytes: Option<usize>,
    /// Memory for rendered vector tiles, in MiB; 0 keeps none, so every tile is drawn anew
    /// (the coverage map in memory still serves `coverage` without a query) [default: 256].
    #[arg(
        long,
        env = "COVERMAP_TILE_CACHE_MB",
        global = true,
        value_name = "MIB"
    )]
    pub tile_cache_mb: Option<usize>,
    /// Fixes recorded longer ago than this are left out [default: 30].
    #[arg(
        long,
        env = "COVERMAP_MAX_FIX_AGE_DAYS",
        global = true,
        value_name = "DAYS"
    )]
    pub max_fix_age_days: Option<u64>,
    /// Largest camera drive assembled from resumable parts, in bytes [default: 1073741824 (1 GiB)].
    #[arg(
        long,
        env = "COVERMAP_MAX_DRIVE_BYTES",
        global = true,
        value_name = "BYTES"
    )]
    pub max_drive_bytes: Option<u64>,
    /// Seconds added to every frame's capture time: the camera clock's error against GPS time
    /// (negative if the camera runs ahead) [default: 0].
    #[arg(
        long,
        env = "COVERMAP_CAMERA_OFFSET_SECONDS",
        global = true,
        value_name = "S",
        allow_hyphen_values = true
    )]
    pub camera_offset_seconds: Option<f64>,
    /// Requests per second one client address may make to the public map endpoints; bursts of
    /// five times as many pass [default: 20].
    #[arg(
        long,
        env = "COVERMAP_PUBLIC_RATE",
        global = true,
        value_name = "PER_S"
    )]
    pub public_rate: Option<f64>,
    /// Reverse proxies (addresses or CIDR networks, comma-separated) whose `X-Forwarded-For` or
    /// `Forwarded: for=` name the client: from one of them, the first address from the right
    /// that is not a trusted proxy is the client; from any other peer those headers are
    /// ignored [default: none].
    #[arg(
        long,
        env = "COVERMAP_TRUSTED_PROXIES",
        global = true,
        value_name = "CIDR,...",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// H3 resolution that coverage is counted at, 0 to 15 [default: 11, cells of ~28 m edge].
    #[arg(
        long,
        env = "COVERMAP_H3_RESOLUTION",
        global = true,
        value_name = "RES"
    )]
    pub h3_resolution: Option<u8>,
    /// Frames the vision stage looks at in parallel, one ONNX Runtime thread each [default:
    /// the number of cores].
    #[arg(long, env = "COVERMAP_VISION_THREADS", global = true, value_name = "N")]
    pub vision_threads: Option<usize>,
    /// Days a drive's private originals (its uploaded bytes and unblurred frames) are kept
    /// after it arrived; then only the blurred derivatives remain. 0 deletes them as soon as
    /// the drive is processed [default: 30].
    #[arg(
        long,
        env = "COVERMAP_ORIGINAL_RETENTION_DAYS",
        global = true,
        value_name = "DAYS"
    )]
    pub original_retention_days: Option<u64>,
    /// Folder of ONNX Runtime and the vision models [default: ~/.cache/covermap/models/v1, where
    /// models/fetch puts them].
    #[arg(long, env = "COVERMAP_MODELS", global = true, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// MapLibre GL JS's `dist` folder, served to the web pages [default: web/node_modules's,
    /// where `npm ci --prefix web` puts it, in the checkout the binary was built from].
    #[arg(long, env = "COVERMAP_WEB_VENDOR", global = true, value_name = "DIR")]
    pub web_vendor: Option<PathBuf>,
    /// The genesis reward policy, a TOML file (see scoring/policy/v1.toml) [default: the shipped
    /// one]. It seeds an empty database; from then on the database's policy is in force and
    /// changes by vote (`covermap policy`), and a file that was never in force is refused.
    #[arg(long, env = "COVERMAP_POLICY", global = true, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Close ended epochs on schedule inside `serve` and `worker` (one closer wins each epoch,
    /// whatever the number of processes) [default: true].
    #[arg(
        long,
        env = "COVERMAP_CLOSE_EPOCHS",
        global = true,
        value_name = "BOOL"
    )]
    pub close_epochs: Option<bool>,
    /// Run the plate backstop on every frame too (`--text-backstop` alone means true): the text
    /// detector, whose boxes are blurred, and the vehicle detector, whose far vehicles' plate
    /// zones are blurred. It covers the small plates the plate model misses, at 2–2.5 s a frame
    /// on one CPU core (BENCHMARKS.md, "Far plates: the vehicles' plate zones") [default: false].
    #[arg(
        long,
        env = "COVERMAP_TEXT_BACKSTOP",
        global = true,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub text_backstop: Option<bool>,
    /// Log format on stderr [default: text].
    #[arg(
        long,
        env = "COVERMAP_LOG_FORMAT",
        global = true,
        value_name = "FORMAT"
    )]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// The settings in force, every one decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub database: Option<String>,
    pub objects: String,
    pub workers: usize,
    pub lease_seconds: u64,
    pub max_upload_bytes: usize,
    pub tile_cache_mb: usize,
    pub max_fix_age_days: u64,
    pub max_drive_bytes: u64,
    pub camera_offset_seconds: f64,
    pub public_rate: f64,
    pub trusted_proxies: Vec<String>,
    pub h3_resolution: u8,
    pub vision_threads: usize,
    pub text_backstop: bool,
    pub original_retention_days: u64,
    pub models: PathBuf,
    pub web_vendor: PathBuf,
    pub policy: Option<PathBuf>,
    pub close_epochs: bool,
    pub log_format: LogFormat,
}

impl Settings {
    /// Resolves `cli` (flags and environment, as clap read them) over the config file it names.
    pub fn resolve(cli: &Overrides) -> anyhow::Result<Self> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => Overrides::default(),
        };
        let data_dir: PathBuf =
            pick(&cli.data_dir, &file.data_dir).unwrap_or_else(|| PathBuf::from("covermap-data"));
        let objects = pick(&cli.objects, &file.objects)
            .unwrap_or_else(|| format!("file://{}", absolute(&data_dir.join("blobs")).display()));
        let settings = Settings {
            listen: pick(&cli.listen, &file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            metrics_listen: pick(&cli.metrics_listen, &file.metrics_listen),
            database: pick(&cli.database, &file.database),
            objects,
            data_dir,
            workers: pick(&cli.workers, &file.workers).unwrap_or(2),
            lease_seconds: pick(&cli.lease_seconds, &file.lease_seconds).unwrap_or(60),
            max_upload_bytes: pick(&cli.max_upload_bytes, &file.max_upload_bytes)
                .unwrap_or(32 * 1024 * 1024),
            tile_cache_mb: pick(&cli.tile_cache_mb, &file.tile_cache_mb).unwrap_or(256),
            max_fix_age_days: pick(&cli.max_fix_age_days, &file.max_fix_age_days).unwrap_or(30),
            max_drive_bytes: pick(&cli.max_drive_bytes, &file.max_drive_bytes)
                .unwrap_or(1024 * 1024 * 1024),
            camera_offset_seconds: pick(&cli.camera_offset_seconds, &file.camera_offset_seconds)
                .unwrap_or(0.0),
            public_rate: pick(&cli.public_rate, &file.public_rate).unwrap_or(20.0),
            trusted_proxies: pick(&cli.trusted_proxies, &file.trusted_proxies).unwrap_or_default(),
            h3_resolution: pick(&cli.h3_resolution, &file.h3_resolution).unwrap_or(11),
            vision_threads: pick(&cli.vision_threads, &file.vision_threads).unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            }),
            text_backstop: pick(&cli.text_backstop, &file.text_backstop).unwrap_or(false),
            original_retention_days: pick(
                &cli.original_retention_days,
                &file.original_retention_days,
            )
            .unwrap_or(30),
            models: pick(&cli.models, &file.models)
                .unwrap_or_else(covermap_vision::default_models_dir),
            web_vendor: pick(&cli.web_vendor, &file.web_vendor)
                .unwrap_or_else(covermap_web::bundled_vendor_dir),
            policy: pick(&cli.policy, &file.policy),
            close_epochs: pick(&cli.close_epochs, &file.close_epochs).unwrap_or(true),
            log_format: pick(&cli.log_format, &file.log_format).unwrap_or(LogFormat::Text),
        };
        if settings.vision_threads == 0 || settings.vision_threads > 256 {
            bail!("vision_threads must be 1 to 256");
        }
        if settings.tile_cache_mb > 1 << 20 {
            bail!("tile_cache_mb must be at most 1048576 (1 TiB)");
        }
        if settings.original_retention_days > 36_500 {
            bail!("original_retention_days must be at most 36500 (100 years)");
        }
        if settings.h3_resolution > 15 {
            bail!(
                "h3_resolution must be 0 to 15, not {}",
                settings.h3_resolution
            );
        }
        if settings.lease_seconds == 0 {
            bail!("lease_seconds must be at least 1");
        }
        if settings.max_upload_bytes == 0 {
            bail!("max_upload_bytes must be at least 1");
        }
        if !settings.camera_offset_seconds.is_finite()
            || settings.camera_offset_seconds.abs() > 366.0 * 86_400.0
        {
            bail!("camera_offset_seconds must be a number of seconds within a year");
        }
        if !(settings.public_rate.is_finite() && settings.public_rate > 0.0) {
            bail!("public_rate must be a positive number of requests per second");
        }
        settings.trusted_proxies()?;
        Ok(settings)
    }

    /// The reward policy the settings name, read and checked.
    pub fn reward_policy(&self) -> anyhow::Result<covermap_scoring::RewardPolicy> {
        match &self.policy {
            None => Ok(covermap_scoring::RewardPolicy::shipped()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the reward policy {}", path.display()))?;
                covermap_scoring::RewardPolicy::parse(&text)
                    .with_context(|| format!("in {}", path.display()))
            }
        }
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds)
    }

    pub fn resolution(&self) -> h3o::Resolution {
        h3o::Resolution::try_from(self.h3_resolution).unwrap_or(covermap_roads::DEFAULT_RESOLUTION)
    }

    pub fn ingest_rules(&self) -> covermap_ingest::IngestRules {
        let max_age = Duration::from_secs(self.max_fix_age_days.saturating_mul(86_400));
        covermap_ingest::IngestRules {
            track: covermap_ingest::IngestPolicy {
                max_age,
                ..Default::default()
            },
            radio: covermap_ingest::radio::RadioPolicy {
                max_age,
                ..Default::default()
            },
            drive: covermap_ingest::DriveLimits::default(),
        }
    }

    pub fn original_retention(&self) -> chrono::Duration {
        chrono::Duration::days(self.original_retention_days as i64)
    }

    pub fn camera_offset(&self) -> chrono::Duration {
        chrono::Duration::milliseconds((self.camera_offset_seconds * 1000.0).round() as i64)
    }

    /// The reverse proxies whose forwarding headers are believed.
    pub fn trusted_proxies(&self) -> anyhow::Result<covermap_web::TrustedProxies> {
        Ok(covermap_web::TrustedProxies::parse(&self.trusted_proxies)?)
    }

    pub fn public_rate(&self) -> covermap_web::RateLimit {
        covermap_web::RateLimit {
            per_second: self.public_rate,
            burst: (self.public_rate * 5.0).max(1.0),
        }
    }
}

/// The first of two sources that says something.
fn pick<T: Clone>(first: &Option<T>, second: &Option<T>) -> Option<T> {
    first.clone().or_else(|| second.clone())
}

fn read_file(path: &Path) -> anyhow::Result<Overrides> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        o: Overrides,
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn defaults_when_nothing_is_said() {
        let s = Settings::resolve(&Overrides::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database, None);
        assert!(s.objects.starts_with("file:///") && s.objects.ends_with("covermap-data/blobs"));
        assert_eq!((s.workers, s.lease_seconds), (2, 60));
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = write("listen = \"127.0.0.1:9000\"\nworkers = 7\ndatabase = \"postgres://db/x\"\n");
        let cli = TestCli::try_parse_from([
            "t",
            "--config",
            f.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:9100",
        ])
        .unwrap();
        let s = Settings::resolve(&cli.o).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(s.workers, 7);
        assert_eq!(s.database.as_deref(), Some("postgres://db/x"));
    }

    #[test]
    fn h3_resolution_is_checked() {
        let f = write("h3_resolution = 16\n");
        let o = Overrides {
            config: Some(f.path().to_owned()),
            ..Default::default()
        };
        let err = Settings::resolve(&o).unwrap_err().to_string();
        assert!(err.contains("h3_resolution must be 0 to 15"), "{err}");
        let f = write("h3_resolution = 9\n");
        let o = Overrides {
            config: Some(f.path().to_owned()),
            ..Default::default()
        };
        assert_eq!(
            Settings::resolve(&o).unwrap().resolution(),
            h3o::Resolution::Nine
        );
    }

    #[test]
    fn trusted_proxies_come_from_the_file_or_a_flag_and_are_checked() {
        let f = write("trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n");
        let path = f.path().to_str().unwrap();
        let cli = TestCli::try_parse_from(["t", "--config", path]).unwrap();
        let s = Settings::resolve(&cli.o).unwrap();
        assert_eq!(s.trusted_proxies, ["10.0.0.0/8", "::1"]);
        let cli = TestCli::try_parse_from([
            "t",
            "--config",
            path,
            "--trusted-proxies",
            "127.0.0.1,192.168.0.0/16",
        ])
        .unwrap();
        let s = Settings::resolve(&cli.o).unwrap();
        assert_eq!(s.trusted_proxies, ["127.0.0.1", "192.168.0.0/16"]);
        let cli = TestCli::try_parse_from(["t", "--trusted-proxies", "10.0.0.0/40"]).unwrap();
        let err = Settings::resolve(&cli.o).unwrap_err().to_string();
        assert!(err.contains("10.0.0.0/40"), "{err}");
    }

    #[test]
    fn a_bad_file_is_named_in_the_error() {
        let f = write("listne = \"x\"\n");
        let o = Overrides {
            config: Some(f.path().to_owned()),
            ..Default::default()
        };
        let err = format!("{:#}", Settings::resolve(&o).unwrap_err());
        assert!(
            err.contains(&f.path().display().to_string()) && err.contains("listne"),
            "{err}"
        );
        let missing = Overrides {
            config: Some("/nonexistent/covermap.toml".into()),
            ..Default::default()
        };
        let err = format!("{:#}", Settings::resolve(&missing).unwrap_err());
        assert!(err.contains("/nonexistent/covermap.toml"), "{err}");
    }
}
