//! Classic, explainable measures of a frame's quality — exposure from grey-level percentiles,
//! sharpness from edge strength, motion from how one-sided the edges are — the verdict they give
//! with reason codes, and how that verdict joins the trained model's ([`with_model`]).

use image::GrayImage;
use serde::Serialize;

use crate::quality_model::{ClassScores, QualityClass};

/// Why a frame is not good enough to publish or pay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityReason {
    /// Smaller than a usable street frame (a thumbnail): nothing to map.
    TooSmall,
    Dark,
    Overexposed,
    Defocus,
    MotionBlur,
    /// Something covers much of the view (a wiper, the dashboard, a hand, dirt): the model's.
    Obstructed,
}

impl QualityReason {
    pub fn as_str(self) -> &'static str {
        match self {
            QualityReason::TooSmall => "too_small",
            QualityReason::Dark => "dark",
            QualityReason::Overexposed => "overexposed",
            QualityReason::Defocus => "defocus",
            QualityReason::MotionBlur => "motion_blur",
            QualityReason::Obstructed => "obstructed",
        }
    }
}

/// The thresholds; defaults from the real frames in testdata/images and their synthetic
/// degradations (models/README.md has the figures).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QualityPolicy {
    /// Frames narrower or lower than this (in pixels) are thumbnails, not street imagery.
    pub min_width: u32,
    pub min_height: u32,
    /// A median grey below this is dark (real frames: 99–143; dimmed to 20 %: 22–28).
    pub dark_median: f64,
    /// More than this share of pixels at 250 or above is overexposed (sky alone: up to 25 %).
    pub overexposed_share: f64,
    /// Edge energy kept after a light blur, as a ratio: sharp frames lose most of it (ratio
    /// ≥ 19 on real frames), defocused ones little (≤ 3.5 after a σ 2 blur).
    pub min_sharpness: f64,
    /// Horizontal over vertical edge energy, or the reverse, beyond this is motion blur along
    /// the weaker direction. The real frames here measure 1.1–3.0 and a 15 px horizontal blur of
    /// them 4.1–7.0: a thin margin that a single frame's statistics cannot widen (a scene of
    /// vertical poles is anisotropic by itself); the trained model is what settles motion blur.
    pub max_anisotropy: f64,
    /// The trained model's class is a reason when its probability reaches this.
    pub model_confidence: f32,
}

impl Default for QualityPolicy {
    fn default() -> Self {
        Self {
            min_width: 320,
            min_height: 180,
            dark_median: 45.0,
            overexposed_share: 0.45,
            min_sharpness: 8.0,
            max_anisotropy: 3.5,
            model_confidence: 0.5,
        }
    }
}

/// What the measures found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// Grey-level percentiles 5, 50, 95 (0–255).
    pub brightness: [u8; 3],
    /// Share of pixels at 250 or above.
    pub clipped: f64,
    /// Laplacian variance of the frame over that of a lightly blurred copy.
    pub sharpness: f64,
    /// The larger of x/y and y/x gradient energy.
    pub anisotropy: f64,
    /// The trained model's class probabilities, where it ran.
    pub model: Option<ClassScores>,
    /// Empty: the frame passes.
    pub reasons: Vec<QualityReason>,
}

/// Joins the trained model's verdict to the classic one. The classic exposure and focus checks
/// stand (their margins on real frames are wide); the classic motion check, whose margin is thin
/// (see [`QualityPolicy::max_anisotropy`]), gives way to the model, which also adds what no
/// classic measure sees (obstruction). A thumbnail stays `too_small` alone.
pub fn with_model(mut quality: Quality, scores: ClassScores, policy: &QualityPolicy) -> Quality {
    quality.model = Some(scores);
    if quality.reasons == [QualityReason::TooSmall] {
        return quality;
    }
    quality.reasons.retain(|r| *r != QualityReason::MotionBlur);
    let (class, p) = scores.best();
    let reason = match class {
        QualityClass::Ok => None,
        QualityClass::MotionBlur => Some(QualityReason::MotionBlur),
        QualityClass::Defocus => Some(QualityReason::Defocus),
        QualityClass::Dark => Some(QualityReason::Dark),
        QualityClass::Overexposed => Some(QualityReason::Overexposed),
        QualityClass::Obstructed => Some(QualityReason::Obstructed),
    };
    if let Some(reason) = reason.filter(|_| p >= policy.model_confidence) {
        // The model's reason first: it names the cause; the classic ones agree or add to it.
        quality.reasons.retain(|r| *r != reason);
        quality.reasons.insert(0, reason);
    }
    quality
}

/// Measures a grey frame (≈ 640 px wide; see `frame::grey`) and judges it; `width`×`height` is
/// the frame's own size.
pub fn assess_frame(grey: &GrayImage, width: u32, height: u32, policy: &QualityPolicy) -> Quality {
    let mut q = assess(grey, policy);
    if width < policy.min_width || height < policy.min_height {
        q.reasons = vec![QualityReason::TooSmall];
    }
    q
}

/// Measures a grey frame (≈ 640 px wide; see `frame::grey`) and judges it.
pub fn assess(grey: &GrayImage, policy: &QualityPolicy) -> Quality {
    let mut histogram = [0u64; 256];
    for p in grey.pixels() {
        histogram[usize::from(p.0[0])] += 1;
    }
    let n = grey.pixels().len().max(1) as u64;
    let percentile = |q: f64| -> u8 {
        let target = (q * n as f64).ceil() as u64;
        let mut seen = 0;
        for (v, count) in histogram.iter().enumerate() {
            seen += count;
            if seen >= target.max(1) {
                return v as u8;
            }
        }
        255
    };
    let brightness = [percentile(0.05), percentile(0.5), percentile(0.95)];
    let clipped = histogram[250..].iter().sum::<u64>() as f64 / n as f64;
    let soft = image::imageops::blur(grey, 1.5);
    let sharpness = laplacian_variance(grey) / laplacian_variance(&soft).max(1e-6);
    let (gx, gy) = gradient_energy(grey);
    let anisotropy = (gx / gy.max(1e-6)).max(gy / gx.max(1e-6));
    let mut reasons = Vec::new();
    if f64::from(brightness[1]) < policy.dark_median {
        reasons.push(QualityReason::Dark);
    }
    if clipped > policy.overexposed_share {
        reasons.push(QualityReason::Overexposed);
    }
    // A dark or washed-out frame has no edges to judge focus by.
    if reasons.is_empty() {
        if anisotropy > policy.max_anisotropy {
            reasons.push(QualityReason::MotionBlur);
        } else if sharpness < policy.min_sharpness {
            reasons.push(QualityReason::Defocus);
        }
    }
    Quality {
        brightness,
        clipped,
        sharpness,
        anisotropy,
        model: None,
        reasons,
    }
}

fn laplacian_variance(g: &GrayImage) -> f64 {
    let (w, h) = g.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    let px = |x: u32, y: u32| f64::from(g.get_pixel(x, y).0[0]);
    let (mut sum, mut sum2, mut n) = (0.0, 0.0, 0.0);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let l = px(x - 1, y) + px(x + 1, y) + px(x, y - 1) + px(x, y + 1) - 4.0 * px(x, y);
            sum += l;
            sum2 += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    sum2 / n - mean * mean
}

/// Energy of horizontal and vertical Sobel gradients.
fn gradient_energy(g: &GrayImage) -> (f64, f64) {
    let (w, h) = g.dimensions();
    if w < 3 || h < 3 {
        return (0.0, 0.0);
    }
    let px = |x: u32, y: u32| f64::from(g.get_pixel(x, y).0[0]);
    let (mut ex, mut ey) = (0.0, 0.0);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let gx = px(x + 1, y - 1) + 2.0 * px(x + 1, y) + px(x + 1, y + 1)
                - px(x - 1, y - 1)
                - 2.0 * px(x - 1, y)
                - px(x - 1, y + 1);
            let gy = px(x - 1, y + 1) + 2.0 * px(x, y + 1) + px(x + 1, y + 1)
                - px(x - 1, y - 1)
                - 2.0 * px(x, y - 1)
                - px(x + 1, y - 1);
            ex += gx * gx;
            ey += gy * gy;
        }
    }
    (ex, ey)
}
