//! A frame's pixels: decoded only after its header has been checked against a pixel limit, and
//! turned upright as its EXIF orientation says.

use std::io::Cursor;

use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, RgbImage};

use crate::VisionError;

/// Decodes a JPEG frame of at most `max_pixels`, upright, as 8-bit RGB.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, VisionError> {
    if bytes.is_empty() {
        return Err(VisionError::Empty);
    }
    // A JPEG ends with its end-of-image marker; a truncated upload does not, and the decoder
    // would fill the missing rows with grey rather than say so.
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    if bytes.starts_with(&[0xFF, 0xD8]) && !bytes[..end].ends_with(&[0xFF, 0xD9]) {
        return Err(VisionError::Undecodable(
            "truncated: the JPEG has no end-of-image marker".into(),
        ));
    }
    // The size the frame declares, from its SOF marker, before any decoder runs.
    if let Some((width, height)) = jpeg_size(bytes)
        && u64::from(width) * u64::from(height) > max_pixels
    {
        return Err(VisionError::TooManyPixels {
            width,
            height,
            max_pixels,
        });
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| VisionError::Undecodable(e.to_string()))?;
    if reader.format() != Some(image::ImageFormat::Jpeg) {
        return Err(VisionError::Undecodable(format!(
            "not a JPEG ({})",
            reader
                .format()
                .map_or("unknown signature".to_owned(), |f| format!("{f:?}"))
        )));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| VisionError::Undecodable(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels || width == 0 || height == 0 {
        return Err(VisionError::TooManyPixels {
            width,
            height,
            max_pixels,
        });
    }
    let orientation = decoder.orientation().ok();
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| VisionError::Undecodable(e.to_string()))?;
    if let Some(o) = orientation {
        image.apply_orientation(o);
    }
    Ok(image.into_rgb8())
}

/// Width and height from a JPEG's start-of-frame marker, walking the segments from the start.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        let is_sof = (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let h = bytes.get(i + 5..i + 7)?;
            let w = bytes.get(i + 7..i + 9)?;
            return Some((
                u32::from(u16::from_be_bytes([w[0], w[1]])),
                u32::from(u16::from_be_bytes([h[0], h[1]])),
            ));
        }
        if marker == 0xDA || len < 2 {
            return None; // image data before any frame header
        }
        i += 2 + len;
    }
    None
}

/// `image` resized to `width`×`height` with a SIMD convolution (bilinear).
pub fn resized(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage, VisionError> {
    resized_with(image, width, height, FilterType::Bilinear)
}

/// `image` reduced to `width`×`height` by averaging the pixels each output pixel covers (a box
/// filter, as OpenCV's INTER_AREA): for large reductions, where it is exact and costs half a
/// bilinear convolution's reads.
pub fn reduced(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage, VisionError> {
    resized_with(image, width, height, FilterType::Box)
}

fn resized_with(
    image: &RgbImage,
    width: u32,
    height: u32,
    filter: FilterType,
) -> Result<RgbImage, VisionError> {
    let src = fast_image_resize::images::ImageRef::new(
        image.width(),
        image.height(),
        image.as_raw(),
        PixelType::U8x3,
    )
    .map_err(|e| VisionError::Undecodable(format!("resizing: {e}")))?;
    let mut dst = fast_image_resize::images::Image::new(width, height, PixelType::U8x3);
    Resizer::new()
        .resize(
            &src,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter)),
        )
        .map_err(|e| VisionError::Undecodable(format!("resizing: {e}")))?;
    RgbImage::from_raw(width, height, dst.into_vec())
        .ok_or_else(|| VisionError::Undecodable("resizing gave a buffer of the wrong size".into()))
}

/// A grey copy of `image` no wider than `max_width`, for the measures that need no colour.
pub fn grey(image: &RgbImage, max_width: u32) -> Result<GrayImage, VisionError> {
    let small = if image.width() > max_width {
        let h = ((u64::from(image.height()) * u64::from(max_width)) / u64::from(image.width()))
            .max(1) as u32;
        resized(image, max_width, h)?
    } else {
        image.clone()
    };
    Ok(DynamicImage::ImageRgb8(small).into_luma8())
}

/// Encodes `image` as a baseline JPEG at `quality` with 4:2:0 chroma, no metadata (nothing of
/// the original's EXIF — camera serials, GPS — is carried into what is published). AVX2 is used
/// where the CPU has it (`jpeg-encoder`'s `simd` feature detects it at run time).
pub fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, VisionError> {
    let (w, h) = image.dimensions();
    let (Ok(w16), Ok(h16)) = (u16::try_from(w), u16::try_from(h)) else {
        return Err(VisionError::Undecodable(format!(
            "a {w}×{h} frame is beyond JPEG's 65535 px sides"
        )));
    };
    let mut out = Vec::with_capacity(image.as_raw().len() / 8);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder
        .encode(image.as_raw(), w16, h16, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| VisionError::Undecodable(format!("encoding: {e}")))?;
    Ok(out)
}

/// The frame as it was compressed, with nothing but what draws it: the quantisation and Huffman
/// tables, the frame and scan headers, the scans, and the end marker. Every APPn segment (EXIF
/// with its GPS and camera serial, XMP, IPTC, ICC, maker data such as GoPro's), every comment
/// and anything after the end marker is left out. `None` where the frame is not a plain
/// Huffman-coded baseline, extended or progressive JPEG of 1 or 3 components, or its segments do
/// not parse: then it must be re-encoded. Pixels are unchanged, so publishing this instead of a
/// re-encoded copy of a frame that needs no blurring costs nothing and loses nothing.
pub fn strip_metadata(bytes: &[u8]) -> Option<Vec<u8>> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut i = 2;
    let mut frame_seen = false;
    loop {
        if *bytes.get(i)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(i + 1)?;
        match marker {
            0xFF => {
                i += 1; // fill byte
                continue;
            }
            0xD9 => {
                out.extend_from_slice(&[0xFF, 0xD9]);
                return frame_seen.then_some(out);
            }
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([*bytes.get(i + 2)?, *bytes.get(i + 3)?]));
        if len < 2 {
            return None;
        }
        let segment = bytes.get(i..i + 2 + len)?;
        match marker {
            // Application data and comments: dropped.
            0xE0..=0xEF | 0xFE => {}
            // Tables and restart interval: kept.
            0xDB | 0xC4 | 0xDD => out.extend_from_slice(segment),
            // Baseline, extended and progressive Huffman frames with 1 or 3 components.
            0xC0..=0xC2 => {
                if !matches!(segment.get(9), Some(1 | 3)) {
                    return None;
                }
                frame_seen = true;
                out.extend_from_slice(segment);
            }
            0xDA => {
                if !frame_seen {
                    return None;
                }
                out.extend_from_slice(segment);
                // The entropy-coded data runs to the next marker that is neither a stuffed
                // 0xFF00 nor a restart marker.
                let start = i + 2 + len;
                let mut j = start;
                loop {
                    let b = *bytes.get(j)?;
                    if b == 0xFF {
                        let next = *bytes.get(j + 1)?;
                        if next != 0x00 && !(0xD0..=0xD7).contains(&next) {
                            break;
                        }
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                out.extend_from_slice(&bytes[start..j]);
                i = j;
                continue;
            }
            // Anything else (arithmetic coding, lossless, hierarchical, DNL, ...): re-encode.
            _ => return None,
        }
        i += 2 + len;
    }
}

/// Whether the frame's EXIF orientation (if any) leaves it as stored.
pub fn stored_upright(bytes: &[u8]) -> bool {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_decoder().ok())
        .and_then(|mut d| d.orientation().ok())
        .is_some_and(|o| o == image::metadata::Orientation::NoTransforms)
}
