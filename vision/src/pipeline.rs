//! One frame through the whole stage: decode, quality, faces, plates, hash, and the published
//! derivative (every box blurred, re-encoded as JPEG).

use std::path::Path;

use image::ImageEncoder;
use serde::Serialize;

use crate::privacy::{Detection, FaceDetector, PlateDetector, blur_boxes};
use crate::quality::{Quality, QualityPolicy, assess_frame};
use crate::{VisionError, decode, grey, phash};

/// The detectors and rules a frame is judged by. Sessions run one frame at a time (`&mut`).
#[derive(Debug)]
pub struct FrameCheck {
    pub faces: FaceDetector,
    pub plates: PlateDetector,
    pub policy: QualityPolicy,
    pub max_pixels: u64,
}

/// What the stage found in a frame.
#[derive(Debug, Clone, Serialize)]
pub struct Look {
    pub width: u32,
    pub height: u32,
    pub quality: Quality,
    pub faces: Vec<Detection>,
    pub plates: Vec<Detection>,
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
            policy: QualityPolicy::default(),
            max_pixels: 40_000_000,
        })
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
        let small = grey(&image, 640)?;
        lap(&mut times.resize);
        let quality = assess_frame(&small, image.width(), image.height(), &self.policy);
        let hash = phash(&image)?;
        lap(&mut times.quality);
        let faces = self.faces.detect(&image)?;
        lap(&mut times.faces);
        let plates = self.plates.detect(&image)?;
        lap(&mut times.plates);
        let mut boxes = faces.clone();
        boxes.extend(plates.iter().copied());
        blur_boxes(&mut image, &boxes);
        let mut published = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut published, 90)
            .write_image(
                image.as_raw(),
                image.width(),
                image.height(),
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|e| VisionError::Undecodable(format!("encoding: {e}")))?;
        lap(&mut times.blur_encode);
        let look = Look {
            width: image.width(),
            height: image.height(),
            quality,
            faces,
            plates,
            phash: hash,
            published,
        };
        Ok((look, times))
    }
}

/// Milliseconds per stage of one frame (faces and plates include their resizing and tensors).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimes {
    pub decode: f64,
    pub resize: f64,
    pub quality: f64,
    pub faces: f64,
    pub plates: f64,
    pub blur_encode: f64,
}
