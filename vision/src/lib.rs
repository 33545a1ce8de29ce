//! covermap vision: what is in a camera frame, and what must never be published of it.
//!
//! It owns decoding frames (pixel limit before decoding, EXIF orientation), resizing them with
//! SIMD (`fast_image_resize`), the frame-quality verdict (classic measures and a trained CNN,
//! with reason codes), perceptual hashes, the ONNX privacy models (faces, licence plates, and
//! the opt-in plate backstop: text and vehicles), the blur they drive and the published JPEG;
//! [`FramePool`] runs frames in parallel; [`eval`] measures what the blur misses against boxes
//! labelled by hand.
//! No HTTP and no SQL: frames in, verdicts and blurred frames out.

pub mod eval;
pub mod frame;
pub mod phash;
pub mod pipeline;
pub mod privacy;
pub mod quality;
pub mod quality_model;
pub mod text;
pub mod vehicles;

pub use frame::{decode, encode_jpeg, grey, resized, stored_upright, strip_metadata};
pub use phash::phash;
pub use pipeline::{FrameCheck, FramePool, Look, StageTimes};
pub use privacy::{
    BLUR_MARGIN, Detection, FaceDetector, PlateDetector, blur_boxes, blurred_region,
    default_models_dir, grown_region,
};
pub use quality::{Quality, QualityPolicy, QualityReason, assess, assess_frame, with_model};
pub use quality_model::{ClassScores, QualityClass, QualityModel};
pub use text::TextDetector;
pub use vehicles::{Vehicle, VehicleClass, VehicleDetector};

/// Why a frame could not be looked at.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("the frame is empty")]
    Empty,
    #[error("the frame cannot be decoded: {0}")]
    Undecodable(String),
    #[error("{0}")]
    Model(String),
    #[error("the frame is {width}×{height}; at most {max_pixels} pixels are decoded")]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
}

impl VisionError {
    pub fn code(&self) -> &'static str {
        match self {
            VisionError::Empty => "empty_frame",
            VisionError::Undecodable(_) => "undecodable",
            VisionError::TooManyPixels { .. } => "too_many_pixels",
            VisionError::Model(_) => "model_unavailable",
        }
    }
}
