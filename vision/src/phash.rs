//! A 64-bit perceptual hash (DCT of a 32×32 grey thumbnail; bits are the 8×8 lowest frequencies
//! against their median), so the same scene sent twice — re-encoded, resized, by another driver —
//! is found by a small Hamming distance.

use image::{DynamicImage, RgbImage};

use crate::VisionError;
use crate::frame::resized;

/// The hash of `image`, as 16 hex digits.
pub fn phash(image: &RgbImage) -> Result<String, VisionError> {
    let small = DynamicImage::ImageRgb8(resized(image, 32, 32)?).into_luma8();
    let px: Vec<f64> = small.pixels().map(|p| f64::from(p.0[0])).collect();
    let cos: Vec<f64> = (0..8)
        .flat_map(|u| {
            (0..32).map(move |x| {
                (std::f64::consts::PI / 32.0 * (f64::from(x) + 0.5) * f64::from(u)).cos()
            })
        })
        .collect();
    let mut coefficients = Vec::with_capacity(64);
    for v in 0..8 {
        for u in 0..8 {
            let mut sum = 0.0;
            for y in 0..32 {
                let cy = cos[v * 32 + y];
                for x in 0..32 {
                    sum += px[y * 32 + x] * cos[u * 32 + x] * cy;
                }
            }
            coefficients.push(sum);
        }
    }
    // The DC term says only how bright the frame is; the median is over the other 63.
    let mut rest = coefficients[1..].to_vec();
    rest.sort_by(f64::total_cmp);
    let median = rest[rest.len() / 2];
    let bits = coefficients
        .iter()
        .enumerate()
        .skip(1)
        .fold(
            0u64,
            |acc, (i, c)| if *c > median { acc | (1 << i) } else { acc },
        );
    Ok(format!("{bits:016x}"))
}

/// How many of two hashes' 64 bits differ; `None` if either is not a hash.
pub fn distance(a: &str, b: &str) -> Option<u32> {
    let a = u64::from_str_radix(a, 16).ok()?;
    let b = u64::from_str_radix(b, 16).ok()?;
    Some((a ^ b).count_ones())
}
