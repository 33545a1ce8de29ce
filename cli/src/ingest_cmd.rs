//! `covermap ingest PATH...`: imports files and folders of drives and radio measurements through
//! the same checks and the same storage path as the HTTP API, with a progress bar.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::Utc;
use clap::Args;
use covermap_domain::{DeviceId, UploadKind};
use covermap_ingest::{IngestError, Uploader};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Settings;

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files or folders. A folder holding JPEG frames is one camera drive (with the .gpx or NMEA
    /// file beside them, or frames with EXIF GPS); other files are taken by their kind: .gpx,
    /// .nmea/.log/.gps (NMEA), .zip (a drive), .json (geosubmit), .csv (WiGLE or OpenCelliD).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The device the uploads are recorded under.
    #[arg(long, default_value = "local-import")]
    pub device: String,
    /// The contributor they are credited to (none: stored and mapped, not rewarded).
    #[arg(long)]
    pub contributor: Option<String>,
}

/// One upload found under the paths, and what it is.
#[derive(Debug)]
struct Item {
    path: PathBuf,
    kind: UploadKind,
    /// Frames found in a folder are zipped into one drive; everything else is read as it is.
    frames: Vec<PathBuf>,
}

pub async fn run(args: IngestArgs, settings: Settings) -> anyhow::Result<()> {
    let device: DeviceId = args.device.parse()?;
    let items = collect(&args.paths)?;
    if items.is_empty() {
        bail!("no drives or radio files found under the given paths");
    }
    let (store, blobs) = crate::open_storage(&settings).await?;
    let rules = settings.ingest_rules();
    let uploader = Uploader {
        device,
        rewardable: args.contributor.is_some(),
        contributor: args.contributor.clone(),
    };
    let bar = ProgressBar::new(items.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut accepted, mut duplicates, mut refused) = (0, 0, Vec::new());
    for item in &items {
        bar.set_message(item.path.display().to_string());
        let bytes = read(item).with_context(|| format!("reading {}", item.path.display()))?;
        match covermap_ingest::accept_upload(
            store.as_ref(),
            &blobs,
            uploader.clone(),
            item.kind,
            bytes,
            Utc::now(),
            &rules,
        )
        .await
        {
            Ok(a) if a.receipt.duplicate => duplicates += 1,
            Ok(_) => accepted += 1,
            // Storage failing is not the file's fault: stop, nothing half-written.
            Err(IngestError::Store(e)) => return Err(e.into()),
            Err(e) => refused.push(format!(
                "{}: refused ({}): {e}",
                item.path.display(),
                e.code()
            )),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    for line in &refused {
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{} uploads: {accepted} queued, {duplicates} already stored, {} refused",
        items.len(),
        refused.len()
    )?;
    if !refused.is_empty() {
        bail!("{} of {} uploads were refused", refused.len(), items.len());
    }
    Ok(())
}

fn is_frame(p: &Path) -> bool {
    matches!(ext(p).as_str(), "jpg" | "jpeg")
}

fn ext(p: &Path) -> String {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// What a file is by its name (and, for CSV, its first line).
fn kind_of(path: &Path) -> anyhow::Result<Option<UploadKind>> {
    Ok(match ext(path).as_str() {
        "gpx" => Some(UploadKind::Gpx),
        "nmea" | "log" | "gps" => Some(UploadKind::Nmea),
        "zip" => Some(UploadKind::Drive),
        "json" => {
            // v1 items carry lat/lon at their top; v2 items a `position` object.
            let text = std::fs::read_to_string(path)?;
            Some(if text.contains("\"position\"") {
                UploadKind::GeosubmitV2
            } else {
                UploadKind::GeosubmitV1
            })
        }
        "csv" => {
            let text = std::fs::read(path)?;
            Some(if text.starts_with(b"WigleWifi") {
                UploadKind::Wigle
            } else {
                UploadKind::Opencellid
            })
        }
        _ => None,
    })
}

/// Every upload under `paths`, in path order. A folder with frames is one drive; its track file
/// goes with them.
fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<Item>> {
    let mut items = Vec::new();
    for root in paths {
        if !root.exists() {
            bail!("{} does not exist", root.display());
        }
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type().is_dir() {
                let mut frames: Vec<PathBuf> = std::fs::read_dir(path)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && is_frame(p))
                    .collect();
                if !frames.is_empty() {
                    frames.sort();
                    // The folder's track (if any) goes into the drive, not on its own.
                    let tracks: Vec<PathBuf> = std::fs::read_dir(path)?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| matches!(ext(p).as_str(), "gpx" | "nmea" | "log" | "gps"))
                        .collect();
                    frames.extend(tracks);
                    items.push(Item {
                        path: path.to_owned(),
                        kind: UploadKind::Drive,
                        frames,
                    });
                }
                continue;
            }
            let in_drive = path
                .parent()
                .is_some_and(|dir| items.iter().any(|i| i.path == dir && !i.frames.is_empty()));
            if in_drive || is_frame(path) {
                continue;
            }
            if let Some(kind) = kind_of(path)? {
                items.push(Item {
                    path: path.to_owned(),
                    kind,
                    frames: Vec::new(),
                });
            }
        }
    }
    Ok(items)
}

fn read(item: &Item) -> anyhow::Result<Bytes> {
    if item.frames.is_empty() {
        return Ok(Bytes::from(std::fs::read(&item.path)?));
    }
    // A folder of frames travels as the zip a camera app would upload; JPEGs are stored as they
    // are (they do not compress).
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for f in &item.frames {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        zip.start_file(name, options)?;
        zip.write_all(&std::fs::read(f)?)?;
    }
    Ok(Bytes::from(zip.finish()?.into_inner()))
}
