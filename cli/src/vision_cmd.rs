//! `covermap vision check IMAGE...`, `bench`, `eval LABELS` and `blur IN OUT`: the vision stage on
//! files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use covermap_vision::{FrameCheck, VisionError};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum VisionCommand {
    /// Judge images: one JSON line each with the verdict, reasons, quality measures, faces,
    /// plates, perceptual hash and milliseconds taken.
    Check {
        /// JPEG frames to judge.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Time the stage on images, one thread: per image, the mean milliseconds of each stage over
    /// --repeat runs (after one warm-up) and frames per second, as one JSON line. With
    /// --threads N, also the frames per second of N frames judged in parallel (as the worker
    /// does), over N × --repeat frames.
    Bench {
        /// JPEG frames to time.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Timed runs per image, after one warm-up.
        #[arg(long, default_value_t = 5)]
        repeat: u32,
        /// Also judge this many frames in parallel, as the worker does.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Measure privacy against a labelled set (COCO JSON: faces and plates boxed by hand, e.g.
    /// testdata/labels/privacy.json): per class and box size, recall and precision at IoU ≥ 0.3
    /// and the share of labelled boxes ≥ 90 % inside the published frame's blurred regions;
    /// and the mean share of a frame's pixels blurred.
    Eval {
        /// The label set.
        labels: PathBuf,
        /// The folder its file names are relative to (default: the label file's grandparent,
        /// e.g. testdata/ for testdata/labels/privacy.json).
        #[arg(long)]
        root: Option<PathBuf>,
        /// Print the report as JSON instead of a Markdown table.
        #[arg(long)]
        json: bool,
        /// Take faces scoring at least this (default: the stage's own threshold).
        #[arg(long)]
        face_threshold: Option<f32>,
        /// Take plates scoring at least this (default: the stage's own threshold).
        #[arg(long)]
        plate_threshold: Option<f32>,
        /// Measure another pipeline's boxes instead of running the stage: JSON lines as
        /// bench/vision/reference.py writes them (`path`, `size`, `faces.boxes`, `plates.boxes`
        /// as [x1, y1, x2, y2, score] in frame pixels), one per labelled image.
        #[arg(long)]
        detections: Option<PathBuf>,
        /// With --detections: how much of a box's size that pipeline's blur adds on every side
        /// (the reference grows boxes 1.3× about their centre: 0.15).
        #[arg(long, default_value_t = 0.15, requires = "detections")]
        margin: f32,
    },
    /// Write the anonymised frame: every face and plate blurred, re-encoded as JPEG.
    Blur {
        /// The JPEG frame to read.
        input: PathBuf,
        /// Where to write the blurred JPEG.
        output: PathBuf,
    },
}

/// The vision stage with the models in `models` (the `--models` setting).
fn stage(models: &Path, text_backstop: bool) -> anyhow::Result<FrameCheck> {
    Ok(FrameCheck::load_with(models, text_backstop)?)
}

/// The label set at `path` (COCO JSON).
fn read_labels(path: &Path) -> anyhow::Result<covermap_vision::eval::LabelSet> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
}

/// Runs `command` with the models in `models`; `text_backstop` is the global setting.
pub fn run(command: VisionCommand, models: &Path, text_backstop: bool) -> anyhow::Result<()> {
    match command {
        VisionCommand::Check { images } => {
            let mut check_frames = stage(models, text_backstop)?;
            let mut out = std::io::stdout().lock();
            let mut failed = 0;
            for path in &images {
                let line = match check(path, &mut check_frames) {
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
            threads,
        } => {
            let mut check = stage(models, text_backstop)?;
            let pool = (threads > 1)
                .then(|| covermap_vision::FramePool::load_with(models, threads, text_backstop))
                .transpose()?;
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
                let parallel = match &pool {
                    None => serde_json::Value::Null,
                    Some(pool) => {
                        let frames = vec![bytes.as_slice(); threads * repeat.max(1) as usize];
                        pool.look_all(&frames[..threads]);
                        let started = Instant::now();
                        for look in pool.look_all(&frames) {
                            look?;
                        }
                        let fps = frames.len() as f64 / started.elapsed().as_secs_f64();
                        json!({"threads": threads, "fps": (fps * 100.0).round() / 100.0})
                    }
                };
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
                           "fps": (1000.0 / total * 100.0).round() / 100.0,
                           "parallel": parallel})
                )?;
            }
            Ok(())
        }
        VisionCommand::Eval {
            labels,
            root,
            json,
            face_threshold,
            plate_threshold,
            detections,
            margin,
        } => {
            let report = match detections {
                Some(file) => eval_detections(&labels, &file, margin)?,
                None => {
                    let mut check = stage(models, text_backstop)?;
                    check.set_thresholds(face_threshold, plate_threshold);
                    eval(&labels, root.as_deref(), &mut check)?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
                println!(
                    "\n{} images; {} uncertain labels left out; {:.1} % of a frame blurred (mean)",
                    report.images,
                    report.uncertain,
                    report.blurred_share * 100.0
                );
            }
            Ok(())
        }
        VisionCommand::Blur { input, output } => {
            let bytes =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let look = stage(models, text_backstop)?.look(&bytes)?;
            write_atomically(&output, &look.published)?;
            println!(
                "{} boxes blurred into {}",
                look.faces.len() + look.plates.len() + look.unsure.len(),
                output.display()
            );
            Ok(())
        }
    }
}

/// Runs the vision stage over every image of the label set at `path` and measures it.
fn eval(
    path: &Path,
    root: Option<&Path>,
    check: &mut FrameCheck,
) -> anyhow::Result<covermap_vision::eval::Report> {
    use covermap_vision::eval::{Found, evaluate};
    let labels = read_labels(path)?;
    let root = match root {
        Some(r) => r.to_owned(),
        None => path
            .parent()
            .and_then(Path::parent)
            .map(Path::to_owned)
            .unwrap_or_default(),
    };
    let mut found = std::collections::BTreeMap::new();
    for image in &labels.images {
        let file = root.join(&image.file_name);
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let f =
            Found::by(check, &bytes).with_context(|| format!("looking at {}", file.display()))?;
        anyhow::ensure!(
            (f.width, f.height) == (image.width, image.height),
            "{} is {}×{}, labelled as {}×{}",
            file.display(),
            f.width,
            f.height,
            image.width,
            image.height
        );
        found.insert(image.id, f);
    }
    Ok(evaluate(&labels, &found)?)
}

/// Measures boxes another pipeline wrote (`--detections`) against the label set at `path`.
fn eval_detections(
    path: &Path,
    detections: &Path,
    margin: f32,
) -> anyhow::Result<covermap_vision::eval::Report> {
    use covermap_vision::eval::{Found, evaluate};
    #[derive(serde::Deserialize)]
    struct Boxes {
        boxes: Vec<[f32; 5]>,
    }
    #[derive(serde::Deserialize)]
    struct Line {
        path: String,
        size: [u32; 2],
        faces: Boxes,
        plates: Boxes,
    }
    let labels = read_labels(path)?;
    let text = std::fs::read_to_string(detections)
        .with_context(|| format!("reading {}", detections.display()))?;
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str::<Line>(l)
                .with_context(|| format!("{} line {}", detections.display(), i + 1))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let detection = |b: &[f32; 5]| covermap_vision::Detection {
        x1: b[0],
        y1: b[1],
        x2: b[2],
        y2: b[3],
        score: b[4],
    };
    let mut found = std::collections::BTreeMap::new();
    for image in &labels.images {
        let line = lines
            .iter()
            .find(|l| Path::new(&l.path).ends_with(&image.file_name))
            .with_context(|| {
                format!(
                    "{} has no line for {}",
                    detections.display(),
                    image.file_name
                )
            })?;
        anyhow::ensure!(
            line.size == [image.width, image.height],
            "{} is {}×{} in {}, labelled as {}×{}",
            image.file_name,
            line.size[0],
            line.size[1],
            detections.display(),
            image.width,
            image.height
        );
        found.insert(
            image.id,
            Found {
                width: image.width,
                height: image.height,
                faces: line.faces.boxes.iter().map(detection).collect(),
                plates: line.plates.boxes.iter().map(detection).collect(),
                unsure: Vec::new(),
                margin,
            },
        );
    }
    Ok(evaluate(&labels, &found)?)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp-covermap");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn check(path: &Path, stage: &mut FrameCheck) -> Result<serde_json::Value, VisionError> {
    let started = Instant::now();
    let bytes = std::fs::read(path).map_err(|e| VisionError::Undecodable(e.to_string()))?;
    let look = stage.look(&bytes)?;
    let quality = &look.quality;
    let reasons: Vec<&str> = quality.reasons.iter().map(|r| r.as_str()).collect();
    Ok(json!({
        "path": path,
        "verdict": if reasons.is_empty() { "accept" } else { "reject" },
        "reasons": reasons,
        "quality": {
            "class": quality.model.map(|m| m.best().0),
            "scores": quality.model,
            "brightness": quality.brightness,
            "clipped": quality.clipped,
            "sharpness": quality.sharpness,
            "anisotropy": quality.anisotropy,
        },
        "width": look.width,
        "height": look.height,
        "faces": {"count": look.faces.len(), "boxes": look.faces},
        "plates": {"count": look.plates.len(), "boxes": look.plates},
        "unsure": {"count": look.unsure.len(), "boxes": look.unsure},
        "phash": look.phash,
        "ms": started.elapsed().as_secs_f64() * 1000.0,
    }))
}
