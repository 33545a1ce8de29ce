//! One frame through the whole stage: decode, quality, faces, plates, hash, and the published
//! derivative (every box blurred, re-encoded as JPEG).

use std::borrow::Cow;
use std::path::Path;

use image::RgbImage;

use serde::Serialize;

use crate::frame::{reduced, stored_upright, strip_metadata};
use crate::privacy::{Detection, FaceDetector, PlateDetector, blur_boxes};
use crate::quality::{Quality, QualityPolicy, QualityReason, assess_frame, with_model};
use crate::quality_model::QualityModel;
use crate::text::TextDetector;
use crate::vehicles::VehicleDetector;
use crate::{VisionError, decode, encode_jpeg, grey, phash};

/// The detectors and rules a frame is judged by. Sessions run one frame at a time (`&mut`).
#[derive(Debug)]
pub struct FrameCheck {
    pub faces: FaceDetector,
    pub plates: PlateDetector,
    pub quality: QualityModel,
    /// The text detector as a backstop for plates (off unless asked for: see [`TextDetector`]);
    /// its boxes are blurred as unsure ones.
    pub text: Option<TextDetector>,
    /// The other half of the plate backstop, on with the text detector: the plate zone of every
    /// far vehicle is blurred as an unsure box (see [`crate::vehicles`]).
    pub vehicles: Option<VehicleDetector>,
    pub policy: QualityPolicy,
    pub max_pixels: u64,
}

/// What the stage found in a frame.
#[derive(Debug, Clone, Serialize)]
pub struct Look {
    pub width: u32,
    pub height: u32,
    pub quality: Quality,
    /// The thresholds the quality was judged by, so a verdict can be read against them.
    pub limits: QualityPolicy,
    pub faces: Vec<Detection>,
    pub plates: Vec<Detection>,
    /// Boxes a detector scored too low to take as a face or plate but too high to leave: blurred
    /// in the published frame all the same, not counted.
    pub unsure: Vec<Detection>,
    pub phash: String,
    /// The frame with every face and plate blurred, as JPEG: the only form ever published.
    #[serde(skip)]
    pub published: Vec<u8>,
}

impl FrameCheck {
    /// Loads the models from `dir` (see `models/fetch`).
    pub fn load(dir: &Path) -> Result<Self, VisionError> {
        Ok(Self {
            faces: FaceDetector::load(dir)?,
            plates: PlateDetector::load(dir)?,
            quality: QualityModel::load(dir)?,
            text: None,
            vehicles: None,
            policy: QualityPolicy::default(),
            max_pixels: 40_000_000,
        })
    }

    /// [`FrameCheck::load`], with the text backstop too if `text_backstop`
    /// ([`FrameCheck::with_text_backstop`]).
    pub fn load_with(dir: &Path, text_backstop: bool) -> Result<Self, VisionError> {
        let check = Self::load(dir)?;
        if text_backstop {
            check.with_text_backstop(dir)
        } else {
            Ok(check)
        }
    }

    /// Runs the plate backstop from `dir` on every frame too, blurring what it finds: the text
    /// detector (see [`TextDetector`]: it covers the dashcams' small plates, at 1.5–3 s a frame
    /// on one core) and the vehicle detector, whose far vehicles' plate zones are blurred (see
    /// [`VehicleDetector`]: it covers plates too small for any plate or text detector).
    pub fn with_text_backstop(mut self, dir: &Path) -> Result<Self, VisionError> {
        self.text = Some(TextDetector::load(dir)?);
        self.vehicles = Some(VehicleDetector::load(dir)?);
        Ok(self)
    }

    /// The scores above which a face and a plate are taken (and blurred); for measuring the
    /// recall curve (`covermap vision eval --face-threshold --plate-threshold`).
    pub fn set_thresholds(&mut self, face: Option<f32>, plate: Option<f32>) {
        if let Some(t) = face {
            self.faces.threshold = t;
        }
        if let Some(t) = plate {
            self.plates.threshold = t;
        }
    }

    pub fn look(&mut self, jpeg: &[u8]) -> Result<Look, VisionError> {
        self.look_timed(jpeg).map(|(look, _)| look)
    }

    /// [`FrameCheck::look`], with the milliseconds each stage took (for `covermap vision bench`).
    pub fn look_timed(&mut self, jpeg: &[u8]) -> Result<(Look, StageTimes), VisionError> {
        let mut times = StageTimes::default();
        let mut clock = std::time::Instant::now();
        let mut lap = |slot: &mut f64| {
            *slot += clock.elapsed().as_secs_f64() * 1000.0;
            clock = std::time::Instant::now();
        };
        let mut image = decode(jpeg, self.max_pixels)?;
        lap(&mut times.decode);
        // Every measure and model reads one reduced copy (made once), never the full frame.
        let work = working_copy(&image)?;
        let small = grey(&work, 640)?;
        lap(&mut times.resize);
        let mut quality = assess_frame(&small, image.width(), image.height(), &self.policy);
        if quality.reasons != [QualityReason::TooSmall] {
            let scores = self.quality.classify(&work)?;
            quality = with_model(quality, scores, &self.policy);
        }
        let hash = phash(&work)?;
        lap(&mut times.quality);
        let to_frame = image.width() as f32 / work.width() as f32;
        let (faces, unsure_faces) = self.faces.detect_all(&work)?;
        lap(&mut times.faces);
        let (plates, unsure_plates) = self.plates.detect_all(&work)?;
        let text = match &mut self.text {
            Some(text) => text.detect(&image)?,
            None => Vec::new(),
        };
        let plate_zones = match &mut self.vehicles {
            Some(vehicles) => {
                // Read from the frame itself: its far vehicles are found at up to 1,920 px,
                // twice the working copy's side.
                let found = vehicles.detect(&image)?;
                vehicles.plate_zones(&found, image.width(), image.height())
            }
            None => Vec::new(),
        };
        lap(&mut times.plates);
        drop(work);
        let faces = in_frame(faces, to_frame, &image);
        let plates = in_frame(plates, to_frame, &image);
        let mut unsure = in_frame(unsure_faces, to_frame, &image);
        unsure.extend(in_frame(unsure_plates, to_frame, &image));
        unsure.extend(text);
        unsure.extend(plate_zones);
        let mut boxes = faces.clone();
        boxes.extend(plates.iter().chain(&unsure).copied());
        // Nothing to blur in a frame stored upright: its own scans, metadata removed, are the
        // published frame (no re-encoding, no loss). Otherwise blur and encode.
        let lossless = if boxes.is_empty() && stored_upright(jpeg) {
            strip_metadata(jpeg)
        } else {
            None
        };
        let published = match lossless {
            Some(bytes) => bytes,
            None => {
                blur_boxes(&mut image, &boxes);
                encode_jpeg(&image, 90)?
            }
        };
        lap(&mut times.blur_encode);
        let look = Look {
            width: image.width(),
            height: image.height(),
            quality,
            limits: self.policy,
            faces,
            plates,
            unsure,
            phash: hash,
            published,
        };
        Ok((look, times))
    }
}

/// The longest side any measure or model of the stage reads: the largest detector input
/// ([`PlateDetector`]'s 960 px). A larger frame is reduced to this once, and every model's input
/// is made from that copy rather than from the full frame (at 4K, a sixteenth of the pixels).
pub const WORKING_SIDE: u32 = 960;

/// `image` reduced so its longer side is at most [`WORKING_SIDE`] (borrowed as it is if it is
/// no larger).
fn working_copy(image: &RgbImage) -> Result<Cow<'_, RgbImage>, VisionError> {
    let (w, h) = image.dimensions();
    if w.max(h) <= WORKING_SIDE {
        return Ok(Cow::Borrowed(image));
    }
    let s = f64::from(WORKING_SIDE) / f64::from(w.max(h));
    let (ww, wh) = (
        ((f64::from(w) * s).round() as u32).max(1),
        ((f64::from(h) * s).round() as u32).max(1),
    );
    reduced(image, ww, wh).map(Cow::Owned)
}

/// Boxes found on the working copy, in the frame's pixels (`scale` = frame width / copy width).
fn in_frame(mut boxes: Vec<Detection>, scale: f32, frame: &RgbImage) -> Vec<Detection> {
    if scale != 1.0 {
        let (w, h) = (frame.width() as f32, frame.height() as f32);
        for b in &mut boxes {
            b.x1 = (b.x1 * scale).clamp(0.0, w);
            b.y1 = (b.y1 * scale).clamp(0.0, h);
            b.x2 = (b.x2 * scale).clamp(0.0, w);
            b.y2 = (b.y2 * scale).clamp(0.0, h);
        }
    }
    boxes
}

/// Milliseconds per stage of one frame (faces and plates include their resizing and tensors;
/// plates include the backstop's text and vehicle detectors when it is on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimes {
    pub decode: f64,
    pub resize: f64,
    pub quality: f64,
    pub faces: f64,
    pub plates: f64,
    pub blur_encode: f64,
}

/// Several [`FrameCheck`]s (one per core by default) so a drive's frames are looked at in
/// parallel: each thread takes an idle check, runs one frame, and puts it back. ONNX Runtime
/// runs each session on one thread, so `size` checks keep `size` cores busy.
#[derive(Debug)]
pub struct FramePool {
    idle: std::sync::Mutex<Vec<FrameCheck>>,
    returned: std::sync::Condvar,
    size: usize,
}

impl FramePool {
    /// Loads `size` (at least one) checks from the models in `dir`.
    pub fn load(dir: &Path, size: usize) -> Result<Self, VisionError> {
        Self::load_with(dir, size, false)
    }

    /// [`FramePool::load`], each check also running the text backstop if `text_backstop`
    /// ([`FrameCheck::with_text_backstop`]).
    pub fn load_with(dir: &Path, size: usize, text_backstop: bool) -> Result<Self, VisionError> {
        let checks = (0..size.max(1))
            .map(|_| FrameCheck::load_with(dir, text_backstop))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(checks))
    }

    pub fn new(checks: Vec<FrameCheck>) -> Self {
        Self {
            size: checks.len(),
            idle: std::sync::Mutex::new(checks),
            returned: std::sync::Condvar::new(),
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Runs `f` with an idle check, waiting for one if all are busy.
    pub fn with<R>(&self, f: impl FnOnce(&mut FrameCheck) -> R) -> R {
        let check = {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                if let Some(check) = idle.pop() {
                    break check;
                }
                idle = self
                    .returned
                    .wait(idle)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        // The check goes back to the pool when `held` drops, so a panic inside `f` does not
        // lose it (a pool short of a check would leave later callers waiting for ever).
        let mut held = Held {
            pool: self,
            check: Some(check),
        };
        f(held.check.as_mut().expect("held until dropped"))
    }

    /// Looks at every frame, up to `size` at a time; results in the order of `frames`.
    pub fn look_all(&self, frames: &[&[u8]]) -> Vec<Result<Look, VisionError>> {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let threads = self.size.min(frames.len());
        let mut results: Vec<Option<Result<Look, VisionError>>> =
            (0..frames.len()).map(|_| None).collect();
        let slots = std::sync::Mutex::new(&mut results);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(jpeg) = frames.get(i) else { break };
                        let look = self.with(|check| check.look(jpeg));
                        slots
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(look);
                    }
                });
            }
        });
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(VisionError::Model("a vision thread failed".into()))))
            .collect()
    }
}

/// A check taken from a [`FramePool`], given back when dropped.
struct Held<'a> {
    pool: &'a FramePool,
    check: Option<FrameCheck>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(check) = self.check.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(check);
            self.pool.returned.notify_one();
        }
    }
}
