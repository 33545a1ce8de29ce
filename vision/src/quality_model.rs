//! The trained frame-quality classifier: a small CNN trained here on synthetic degradations of
//! real frames (`models/quality/train.py`; held-out accuracy and limits in
//! `models/cards/quality.md`), compiled into the binary. It names what is wrong with a frame —
//! motion blur, defocus, dark, overexposed, obstructed — where the classic measures
//! ([`crate::quality`]) only see symptoms; they stay beside it so every verdict can be explained.

use std::path::Path;

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use crate::privacy::{init_runtime, model_error, planar};
use crate::{VisionError, resized};

/// The exported model (ONNX, opset 17): input `frame` f32 [1, 3, 216, 384] RGB in 0–1, output
/// `logits` f32 [1, 6] in [`QualityClass::ALL`]'s order.
const MODEL: &[u8] = include_bytes!("../../models/quality/quality_v1.onnx");
const WIDTH: u32 = 384;
const HEIGHT: u32 = 216;

/// What the model says a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityClass {
    Ok,
    MotionBlur,
    Defocus,
    Dark,
    Overexposed,
    Obstructed,
}

impl QualityClass {
    /// The model's output order.
    pub const ALL: [QualityClass; 6] = [
        QualityClass::Ok,
        QualityClass::MotionBlur,
        QualityClass::Defocus,
        QualityClass::Dark,
        QualityClass::Overexposed,
        QualityClass::Obstructed,
    ];
}

/// The model's class probabilities for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassScores {
    pub ok: f32,
    pub motion_blur: f32,
    pub defocus: f32,
    pub dark: f32,
    pub overexposed: f32,
    pub obstructed: f32,
}

impl ClassScores {
    fn from_probabilities(p: [f32; 6]) -> Self {
        Self {
            ok: p[0],
            motion_blur: p[1],
            defocus: p[2],
            dark: p[3],
            overexposed: p[4],
            obstructed: p[5],
        }
    }

    pub fn get(&self, class: QualityClass) -> f32 {
        match class {
            QualityClass::Ok => self.ok,
            QualityClass::MotionBlur => self.motion_blur,
            QualityClass::Defocus => self.defocus,
            QualityClass::Dark => self.dark,
            QualityClass::Overexposed => self.overexposed,
            QualityClass::Obstructed => self.obstructed,
        }
    }

    /// The most probable class and its probability.
    pub fn best(&self) -> (QualityClass, f32) {
        QualityClass::ALL.iter().map(|&c| (c, self.get(c))).fold(
            (QualityClass::Ok, f32::MIN),
            |a, b| if b.1 > a.1 { b } else { a },
        )
    }
}

/// The model, in an ONNX Runtime session of one thread.
#[derive(Debug)]
pub struct QualityModel {
    session: Session,
}

impl QualityModel {
    /// Starts the model on the ONNX Runtime in `dir` (see `models/fetch`).
    pub fn load(dir: &Path) -> Result<Self, VisionError> {
        init_runtime(dir)?;
        let session = Session::builder()
            .and_then(|b| b.with_log_level(ort::logging::LogLevel::Error))
            .and_then(|b| b.with_intra_threads(1))
            .and_then(|b| b.commit_from_memory(MODEL))
            .map_err(|e| model_error("loading the quality model", e))?;
        Ok(Self { session })
    }

    /// The class probabilities of a whole (oriented) frame.
    pub fn classify(&mut self, image: &RgbImage) -> Result<ClassScores, VisionError> {
        let small = resized(image, WIDTH, HEIGHT)?;
        let x = planar(&small, |p, c| f32::from(p[c]) / 255.0);
        let input = TensorRef::from_array_view(x.view()).map_err(|e| model_error("input", e))?;
        let out = self
            .session
            .run(ort::inputs!["frame" => input])
            .map_err(|e| model_error("running the quality model", e))?;
        let logits = out["logits"]
            .try_extract_array::<f32>()
            .map_err(|e| model_error("logits", e))?;
        let logits: Vec<f32> = logits.iter().copied().collect();
        if logits.len() != 6 || logits.iter().any(|v| !v.is_finite()) {
            return Err(VisionError::Model(format!(
                "the quality model gave {} logits, not 6 finite ones",
                logits.len()
            )));
        }
        let max = logits.iter().copied().fold(f32::MIN, f32::max);
        let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        let mut p = [0.0f32; 6];
        for (slot, e) in p.iter_mut().zip(&exp) {
            *slot = e / sum;
        }
        Ok(ClassScores::from_probabilities(p))
    }
}
