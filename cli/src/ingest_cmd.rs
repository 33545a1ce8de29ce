//! `covermap ingest PATH...`: imports files and folders of drives and radio measurements through
//! the same checks and the same storage path as the HTTP API, with a progress bar.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::{Datelike, Utc};
use clap::Args;
use covermap_domain::{DeviceId, UploadKind};
use covermap_ingest::Uploader;
use covermap_pipeline::AcceptError;
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
    /// Frames found in a folder are zipped into one drive per camera and year (with the
    /// folder's track); everything else is read as it is.
    frames: Vec<PathBuf>,
    /// What the bar and the report call it: the path, and for a folder split in several drives
    /// the camera and year of this one.
    label: String,
}

/// What was found under the paths: the uploads, and the files left aside with why.
#[derive(Debug, Default)]
struct Found {
    items: Vec<Item>,
    skipped: Vec<(PathBuf, &'static str)>,
}

pub async fn run(args: IngestArgs, settings: Settings) -> anyhow::Result<()> {
    let device: DeviceId = args.device.parse()?;
    let Found { items, skipped } = collect(&args.paths)?;
    for (path, why) in &skipped {
        println!("{}: skipped: {why}", path.display());
    }
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
    // Log lines (a worker's, the store's) are printed above the bar, not through it.
    *crate::PROGRESS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bar.clone());
    let outcome = send_all(&items, &bar, store.as_ref(), &blobs, &uploader, &rules).await;
    crate::PROGRESS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    bar.finish_and_clear();
    let (accepted, duplicates, refused) = outcome?;
    let mut out = std::io::stdout().lock();
    for line in &refused {
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{} uploads: {accepted} queued, {duplicates} already stored, {} refused{}",
        items.len(),
        refused.len(),
        if skipped.is_empty() {
            String::new()
        } else {
            let n = skipped.len();
            format!("; {n} file{} skipped", if n == 1 { "" } else { "s" })
        }
    )?;
    if !refused.is_empty() {
        bail!("{} of {} uploads were refused", refused.len(), items.len());
    }
    Ok(())
}

/// Sends each item through the upload checks into storage, the bar naming the one under way:
/// how many were queued, how many were already stored, and each refusal with its reason.
async fn send_all(
    items: &[Item],
    bar: &ProgressBar,
    store: &dyn covermap_store::Store,
    blobs: &covermap_store::Blobs,
    uploader: &Uploader,
    rules: &covermap_ingest::IngestRules,
) -> anyhow::Result<(usize, usize, Vec<String>)> {
    let (mut accepted, mut duplicates, mut refused) = (0, 0, Vec::new());
    for item in items {
        bar.set_message(item.label.clone());
        let bytes = read(item).with_context(|| format!("reading {}", item.path.display()))?;
        match covermap_pipeline::accept_upload(
            store,
            blobs,
            uploader.clone(),
            item.kind,
            bytes,
            Utc::now(),
            rules,
        )
        .await
        {
            Ok(a) if a.receipt.duplicate => duplicates += 1,
            Ok(_) => accepted += 1,
            // Storage failing is not the file's fault: stop, nothing half-written.
            Err(AcceptError::Store(e)) => return Err(e.into()),
            Err(AcceptError::Refused(e)) => {
                refused.push(format!("{}: refused ({}): {e}", item.label, e.code()));
            }
        }
        bar.inc(1);
    }
    Ok((accepted, duplicates, refused))
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

/// Every upload under `paths`, in path order, and the files left aside. A folder with frames
/// holds one drive per camera and year of capture (frames of two cameras, or of one camera a year
/// apart, are two drives, never one); the folder's track file goes with each.
fn collect(paths: &[PathBuf]) -> anyhow::Result<Found> {
    let mut found = Found::default();
    for root in paths {
        if !root.exists() {
            bail!("{} does not exist", root.display());
        }
        if root.is_file() && is_frame(root) {
            found.skipped.push((
                root.clone(),
                "a frame on its own: name the folder that holds a drive's frames",
            ));
            continue;
        }
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type().is_dir() {
                found.items.extend(drives_in(path)?);
                continue;
            }
            let parent = path.parent();
            let in_drive = parent.is_some_and(|dir| {
                found
                    .items
                    .iter()
                    .any(|i| i.path == dir && !i.frames.is_empty())
            });
            // A drive's track files travel with its frames; anything else in its folder is
            // taken by kind or listed as skipped, never dropped unsaid.
            if is_frame(path) || (in_drive && is_track(path)) {
                continue;
            }
            match kind_of(path)? {
                Some(kind) => found.items.push(Item {
                    path: path.to_owned(),
                    kind,
                    frames: Vec::new(),
                    label: path.display().to_string(),
                }),
                None => found.skipped.push((
                    path.to_owned(),
                    "not a drive or radio file (.jpg in a folder, .gpx, .nmea/.log/.gps, .zip, .json, .csv)",
                )),
            }
        }
    }
    Ok(found)
}

/// A GPS track file, which travels with the frames of its folder.
fn is_track(path: &Path) -> bool {
    matches!(ext(path).as_str(), "gpx" | "nmea" | "log" | "gps")
}

/// The drives in one folder: its frames grouped by the camera that took them and the year, each
/// group with the folder's track files.
fn drives_in(dir: &Path) -> anyhow::Result<Vec<Item>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let tracks: Vec<PathBuf> = files.iter().filter(|p| is_track(p)).cloned().collect();
    let mut groups: std::collections::BTreeMap<(String, String), Vec<PathBuf>> =
        std::collections::BTreeMap::new();
    for frame in files.iter().filter(|p| is_frame(p)) {
        let jpeg = std::fs::read(frame).with_context(|| format!("reading {}", frame.display()))?;
        groups
            .entry(camera_and_year(&jpeg))
            .or_default()
            .push(frame.clone());
    }
    let split = groups.len() > 1;
    Ok(groups
        .into_iter()
        .map(|((camera, year), mut frames)| {
            let label = if split {
                format!("{} ({camera}, {year})", dir.display())
            } else {
                dir.display().to_string()
            };
            frames.extend(tracks.iter().cloned());
            Item {
                path: dir.to_owned(),
                kind: UploadKind::Drive,
                frames,
                label,
            }
        })
        .collect())
}

/// Which camera took a frame and in which year, as its EXIF says ("unknown camera" and
/// "undated" where it says nothing: such frames are refused one by one with their reason later).
fn camera_and_year(jpeg: &[u8]) -> (String, String) {
    let camera = covermap_ingest::camera_of(jpeg).unwrap_or_else(|| "unknown camera".into());
    let year = covermap_ingest::read_frame_meta(jpeg)
        .ok()
        .and_then(|m| {
            m.gps_time
                .or(m.taken_at)
                .map(|t| t.year())
                .or(m.taken_local.map(|t| t.year()))
        })
        .map_or_else(|| "undated".into(), |y| y.to_string());
    (camera, year)
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
