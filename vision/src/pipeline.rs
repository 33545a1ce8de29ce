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
        let mut image = decode(jpeg, self.max_pixels)?;
        let quality = assess_frame(
            &grey(&image, 640)?,
            image.width(),
            image.height(),
            &self.policy,
        );
        let faces = self.faces.detect(&image)?;
        let plates = self.plates.detect(&image)?;
        let hash = phash(&image)?;
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
        Ok(Look {
            width: image.width(),
            height: image.height(),
            quality,
            faces,
            plates,
            phash: hash,
            published,
        })
    }
}
