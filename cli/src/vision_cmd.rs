//! `covermap vision check IMAGE...` and `covermap vision blur IN OUT`: the vision stage on files,
//! one JSON line per image.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use covermap_vision::{
    FaceDetector, PlateDetector, QualityPolicy, VisionError, assess_frame, blur_boxes, decode,
    grey, phash,
};
use image::ImageEncoder;
use serde_json::json;

/// The largest frame decoded (8K is 33 Mpx), as the ingest limit.
const MAX_PIXELS: u64 = 40_000_000;

#[derive(Debug, Subcommand)]
pub enum VisionCommand {
    /// Judge images: one JSON line each with the verdict, reasons, quality measures, faces,
    /// plates, perceptual hash and milliseconds taken.
    Check {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Folder of ONNX Runtime and the models [default: $COVERMAP_MODELS or
        /// ~/.cache/covermap/models/v1, where models/fetch puts them].
        #[arg(long)]
        models: Option<PathBuf>,
    },
    /// Time the stage on images, one thread: per image, the mean milliseconds of each stage over
    /// --repeat runs (after one warm-up) and frames per second, as one JSON line.
    Bench {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long, default_value_t = 5)]
        repeat: u32,
        #[arg(long)]
        models: Option<PathBuf>,
    },
    /// Write the anonymised frame: every face and plate blurred, re-encoded as JPEG.
    Blur {
        input: PathBuf,
        output: PathBuf,
        #[arg(long)]
        models: Option<PathBuf>,
    },
}

struct Detectors {
    faces: FaceDetector,
    plates: PlateDetector,
}

impl Detectors {
    fn load(models: Option<PathBuf>) -> anyhow::Result<Self> {
        let dir = models.unwrap_or_else(covermap_vision::default_models_dir);
        Ok(Self {
            faces: FaceDetector::load(&dir)?,
            plates: PlateDetector::load(&dir)?,
        })
    }
}

pub fn run(command: VisionCommand) -> anyhow::Result<()> {
    match command {
        VisionCommand::Check { images, models } => {
            let mut detectors = Detectors::load(models)?;
            let mut out = std::io::stdout().lock();
            let mut failed = 0;
            for path in &images {
                let line = match check(path, &mut detectors) {
                    Ok(line) => line,
                    Err(e) => {
                        failed += 1;
                        json!({"path": path, "verdict": "error", "error": {
                            "code": e.code(), "message": e.to_string()}})
                    }
                };
                writeln!(out, "{line}")?;
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} images could not be read", images.len());
            }
            Ok(())
        }
        VisionCommand::Bench {
            images,
            repeat,
            models,
        } => {
            let dir = models.unwrap_or_else(covermap_vision::default_models_dir);
            let mut check = covermap_vision::FrameCheck::load(&dir)?;
            let mut out = std::io::stdout().lock();
            for path in &images {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let (look, _) = check.look_timed(&bytes)?;
                let mut sum = covermap_vision::StageTimes::default();
                for _ in 0..repeat.max(1) {
                    let (_, t) = check.look_timed(&bytes)?;
                    sum.decode += t.decode;
                    sum.resize += t.resize;
                    sum.quality += t.quality;
                    sum.faces += t.faces;
                    sum.plates += t.plates;
                    sum.blur_encode += t.blur_encode;
                }
                let n = f64::from(repeat.max(1));
                let stages = [
                    ("decode", sum.decode / n),
                    ("resize", sum.resize / n),
                    ("quality", sum.quality / n),
                    ("faces", sum.faces / n),
                    ("plates", sum.plates / n),
                    ("blur_encode", sum.blur_encode / n),
                ];
                let total: f64 = stages.iter().map(|s| s.1).sum();
                let ms: serde_json::Map<String, serde_json::Value> = stages
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), json!((v * 100.0).round() / 100.0)))
                    .collect();
                writeln!(
                    out,
                    "{}",
                    json!({"impl": "covermap", "path": path, "width": look.width,
                           "height": look.height, "ms": ms,
                           "total_ms": (total * 100.0).round() / 100.0,
                           "fps": (1000.0 / total * 100.0).round() / 100.0})
                )?;
            }
            Ok(())
        }
        VisionCommand::Blur {
            input,
            output,
            models,
        } => {
            let mut detectors = Detectors::load(models)?;
            let bytes =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let mut image = decode(&bytes, MAX_PIXELS)?;
            let mut boxes = detectors.faces.detect(&image)?;
            boxes.extend(detectors.plates.detect(&image)?);
            blur_boxes(&mut image, &boxes);
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).write_image(
                image.as_raw(),
                image.width(),
                image.height(),
                image::ExtendedColorType::Rgb8,
            )?;
            write_atomically(&output, &jpeg)?;
            println!("{} boxes blurred into {}", boxes.len(), output.display());
            Ok(())
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp-covermap");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn check(path: &Path, d: &mut Detectors) -> Result<serde_json::Value, VisionError> {
    let started = Instant::now();
    let bytes = std::fs::read(path).map_err(|e| VisionError::Undecodable(e.to_string()))?;
    let image = decode(&bytes, MAX_PIXELS)?;
    let quality = assess_frame(
        &grey(&image, 640)?,
        image.width(),
        image.height(),
        &QualityPolicy::default(),
    );
    let faces = d.faces.detect(&image)?;
    let plates = d.plates.detect(&image)?;
    let hash = phash(&image)?;
    let reasons: Vec<&str> = quality.reasons.iter().map(|r| r.as_str()).collect();
    Ok(json!({
        "path": path,
        "verdict": if reasons.is_empty() { "accept" } else { "reject" },
        "reasons": reasons,
        "quality": {
            "brightness": quality.brightness,
            "clipped": quality.clipped,
            "sharpness": quality.sharpness,
            "anisotropy": quality.anisotropy,
        },
        "width": image.width(),
        "height": image.height(),
        "faces": {"count": faces.len(), "boxes": faces},
        "plates": {"count": plates.len(), "boxes": plates},
        "phash": hash,
        "ms": started.elapsed().as_secs_f64() * 1000.0,
    }))
}
