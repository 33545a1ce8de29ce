//! Text anywhere in a frame, as a backstop for the plates clp_det cannot see: PP-OCRv6's text
//! detector (`ppocr_det.onnx`, from `models/fetch`) with DB post-processing as rapidocr does it —
//! the probability map thresholded, its connected regions scored by their mean probability, and
//! each region's box grown by area × 1.6 / perimeter.
//!
//! Costly (it needs twice a small frame's resolution to see a dashcam's 5–14 px plates: 1.5–3 s a
//! frame on one CPU core), so the stage runs it only when asked (`--text-backstop`, for workers and
//! `covermap vision …` alike); see BENCHMARKS.md, "Privacy at twice the speed".

use std::path::Path;

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use crate::VisionError;
use crate::frame::resized;
use crate::privacy::{Detection, model_error, planar, round32, session};

/// PP-OCRv6 det small, run on the frame scaled to [`TextDetector::side`].
#[derive(Debug)]
pub struct TextDetector {
    session: Session,
    /// The longer side the frame is run at (at most 2× its own).
    pub side: f32,
    /// A pixel is text where the map's probability exceeds this.
    pub pixel_threshold: f32,
    /// A region is kept where its mean probability is at least this.
    pub box_threshold: f32,
}

impl TextDetector {
    pub fn load(dir: &Path) -> Result<Self, VisionError> {
        Ok(Self {
            session: session(dir, "ppocr_det.onnx", 1)?,
            side: 1920.0,
            pixel_threshold: 0.3,
            box_threshold: 0.5,
        })
    }

    /// Boxes of text in `image`, in its pixels.
    pub fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, VisionError> {
        let (w, h) = (image.width() as f32, image.height() as f32);
        let s = (self.side / w.max(h)).min(2.0);
        let (iw, ih) = (round32(w * s), round32(h * s));
        let scaled = resized(image, iw as u32, ih as u32)?;
        // BGR, (x / 255 − 0.5) / 0.5.
        let x = planar(&scaled, |p, c| f32::from(p[2 - c]) / 127.5 - 1.0);
        let input = TensorRef::from_array_view(x.view()).map_err(|e| model_error("input", e))?;
        let out = self
            .session
            .run(ort::inputs![input])
            .map_err(|e| model_error("running the text detector", e))?;
        let map = out[0]
            .try_extract_array::<f32>()
            .map_err(|e| model_error("text probability map", e))?;
        let (mh, mw) = (map.shape()[2], map.shape()[3]);
        let prob: Vec<f32> = map.iter().copied().collect();
        let regions = regions(&prob, mw, mh, self.pixel_threshold);
        let (sx, sy) = (w / mw as f32, h / mh as f32);
        Ok(regions
            .into_iter()
            .filter(|r| r.pixels >= 3 && r.mean() >= self.box_threshold)
            .map(|r| {
                let (bw, bh) = ((r.x2 - r.x1) as f32, (r.y2 - r.y1) as f32);
                let grow = bw * bh * 1.6 / (2.0 * (bw + bh));
                Detection {
                    x1: ((r.x1 as f32 - grow) * sx).max(0.0),
                    y1: ((r.y1 as f32 - grow) * sy).max(0.0),
                    x2: ((r.x2 as f32 + grow) * sx).min(w),
                    y2: ((r.y2 as f32 + grow) * sy).min(h),
                    score: r.mean(),
                }
            })
            .collect())
    }
}

/// A 4-connected region of the thresholded map: its bounding box (end exclusive), pixel count and
/// summed probability.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Region {
    x1: usize,
    y1: usize,
    x2: usize,
    y2: usize,
    pixels: usize,
    sum: f32,
}

impl Region {
    fn mean(&self) -> f32 {
        self.sum / self.pixels.max(1) as f32
    }
}

/// The 4-connected regions of `prob` (row-major, `w`×`h`) above `threshold`.
fn regions(prob: &[f32], w: usize, h: usize, threshold: f32) -> Vec<Region> {
    let mut seen = vec![false; w * h];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    for start in 0..w * h {
        if seen[start] || prob[start] <= threshold {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut r = Region {
            x1: start % w,
            y1: start / w,
            x2: start % w + 1,
            y2: start / w + 1,
            pixels: 0,
            sum: 0.0,
        };
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            r.x1 = r.x1.min(x);
            r.y1 = r.y1.min(y);
            r.x2 = r.x2.max(x + 1);
            r.y2 = r.y2.max(y + 1);
            r.pixels += 1;
            r.sum += prob[i];
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < w).then(|| i + 1),
                (y > 0).then(|| i - w),
                (y + 1 < h).then(|| i + w),
            ];
            for n in neighbours.into_iter().flatten() {
                if !seen[n] && prob[n] > threshold {
                    seen[n] = true;
                    stack.push(n);
                }
            }
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_4_connected_with_their_mean() {
        #[rustfmt::skip]
        let prob = [
            0.9, 0.9, 0.0, 0.0,
            0.0, 0.7, 0.0, 0.8,
            0.0, 0.0, 0.8, 0.0,
        ];
        let r = regions(&prob, 4, 3, 0.3);
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(
            (r[0].x1, r[0].y1, r[0].x2, r[0].y2, r[0].pixels),
            (0, 0, 2, 2, 3)
        );
        assert!((r[0].mean() - 2.5 / 3.0).abs() < 1e-6);
        // Diagonal neighbours are separate regions.
        assert_eq!((r[1].x1, r[1].y1, r[1].pixels), (3, 1, 1));
        assert_eq!((r[2].x1, r[2].y1, r[2].pixels), (2, 2, 1));
    }
}
