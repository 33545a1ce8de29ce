//! The plate backstop's vehicle detector on real frames, through the real model and ONNX Runtime
//! that `models/fetch` puts in place (the test command runs it first; a missing model fails here,
//! naming the fix — never skipped).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use covermap_vision::vehicles::{is_far, plate_zone};
use covermap_vision::{Detection, VehicleDetector, blurred_region, decode};
use image::RgbImage;

/// The models folder the test command set up (`COVERMAP_MODELS`, as the binary reads it), else
/// where `models/fetch` puts them.
fn models_dir() -> PathBuf {
    std::env::var_os("COVERMAP_MODELS")
        .map_or_else(covermap_vision::default_models_dir, PathBuf::from)
}

fn frame_bytes(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("test frame {} is missing: {e}", p.display()))
}

fn frame(rel: &str) -> RgbImage {
    decode(&frame_bytes(rel), 40_000_000).unwrap()
}

fn detector() -> VehicleDetector {
    VehicleDetector::load(&models_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// A plate labelled in testdata/labels/privacy.json, `[x, y, w, h]`.
fn plate(bbox: [f32; 4]) -> Detection {
    Detection::from_xywh(bbox, 1.0)
}

fn area(b: &Detection) -> f32 {
    (b.x2 - b.x1) * (b.y2 - b.y1)
}

/// The share of `plate` inside the region blurred for `zone` in a `width`×`height` frame.
fn share_blurred(plate: &Detection, zone: &Detection, width: u32, height: u32) -> f32 {
    let Some((x1, y1, x2, y2)) = blurred_region(zone, width, height) else {
        return 0.0;
    };
    let w = (plate.x2.min(x2 as f32) - plate.x1.max(x1 as f32)).max(0.0);
    let h = (plate.y2.min(y2 as f32) - plate.y1.max(y1 as f32)).max(0.0);
    w * h / area(plate)
}

/// Checks that a far vehicle is found around `labelled` and that its plate zone's blur covers the
/// plate; returns that vehicle's box.
fn far_vehicle_covers(image: &RgbImage, labelled: Detection) -> Detection {
    let mut vehicles = detector();
    let found = vehicles.detect(image).unwrap();
    let (cx, cy) = (
        (labelled.x1 + labelled.x2) / 2.0,
        (labelled.y1 + labelled.y2) / 2.0,
    );
    let around = found
        .iter()
        .map(|v| v.bbox)
        .filter(|b| b.x1 <= cx && cx <= b.x2 && b.y1 <= cy && cy <= b.y2)
        .min_by(|a, b| area(a).total_cmp(&area(b)))
        .unwrap_or_else(|| panic!("no vehicle around the plate {labelled:?}: {found:?}"));
    let (w, h) = image.dimensions();
    assert!(is_far(&around, w, h, vehicles.far), "{around:?}");
    let zones = vehicles.plate_zones(&found, w, h);
    let zone = plate_zone(&around);
    assert!(zones.contains(&zone), "{zones:?}");
    let covered = share_blurred(&labelled, &zone, w, h);
    assert!(covered >= 0.9, "{covered} of the plate blurred by {zone:?}");
    around
}

/// The 4K frame's van, parked 70 m ahead: its 14×10 px plate is found by no plate or text
/// detector, but the van is, and the lower three quarters of its box are blurred.
#[test]
fn the_far_van_of_the_4k_frame_is_found_and_its_plate_zone_covers_the_plate() {
    let street = frame("camera/mapillary_tools/DSC00001.JPG");
    let van = far_vehicle_covers(&street, plate([2244.0, 1449.0, 14.0, 10.0]));
    // About 106×134 px: a vehicle, not the frame.
    assert!((60.0..200.0).contains(&(van.x2 - van.x1)), "{van:?}");
    // At 1,920 px the 4K frame's far parked cars (40–80 px wide) are found too.
    let found = detector().detect(&street).unwrap();
    let far = found
        .iter()
        .filter(|v| is_far(&v.bbox, street.width(), street.height(), 0.1))
        .count();
    assert!(far >= 5, "{far} far vehicles: {found:?}");
}

/// coco02's black hatch behind the police officer: a 10×3 px front plate.
#[test]
fn the_far_hatch_of_coco02_is_found_and_its_plate_zone_covers_the_plate() {
    let road = frame("images/anonymizer/coco02.jpg");
    far_vehicle_covers(&road, plate([174.0, 166.0, 10.0, 3.0]));
}

/// Through the whole stage with the backstop on: the published frame has the van's plate
/// blurred (its pixels flattened), and the zones are reported as unsure boxes.
#[test]
fn the_stage_with_the_backstop_publishes_the_far_plates_blurred() {
    let dir = models_dir();
    let mut check =
        covermap_vision::FrameCheck::load_with(&dir, true).unwrap_or_else(|e| panic!("{e}"));
    assert!(check.vehicles.is_some());
    let bytes = frame_bytes("camera/mapillary_tools/DSC00001.JPG");
    let look = check.look(&bytes).unwrap();
    let van_plate = plate([2244.0, 1449.0, 14.0, 10.0]);
    assert!(
        look.unsure
            .iter()
            .any(|z| share_blurred(&van_plate, z, look.width, look.height) >= 0.9),
        "{:?}",
        look.unsure
    );
    // The plate's edges are gone from the published frame: the mean difference between
    // neighbouring pixels across it (green) falls to a fraction of the original's.
    let sharpness = |image: &RgbImage| {
        let steps: Vec<f32> = (1447..1461)
            .flat_map(|y| (2242..2260).map(move |x| (x, y)))
            .map(|(x, y)| {
                let g = |x, y| f32::from(image.get_pixel(x, y).0[1]);
                (g(x + 1, y) - g(x, y)).abs() + (g(x, y + 1) - g(x, y)).abs()
            })
            .collect();
        steps.iter().sum::<f32>() / steps.len() as f32
    };
    let original = decode(&bytes, 40_000_000).unwrap();
    let published = decode(&look.published, 40_000_000).unwrap();
    let (before, after) = (sharpness(&original), sharpness(&published));
    assert!(after * 3.0 < before, "published {after} against {before}");
    // Without the backstop no vehicle is looked for.
    let plain = covermap_vision::FrameCheck::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(plain.vehicles.is_none() && plain.text.is_none());
}

/// A models folder with ONNX Runtime but without the vehicle model: an error naming the fix.
#[test]
fn a_missing_vehicle_model_is_a_clear_error() {
    let dir = tempdir();
    let runtime = models_dir().join("libonnxruntime.so");
    assert!(
        runtime.is_file(),
        "{} is missing: run models/fetch",
        runtime.display()
    );
    std::os::unix::fs::symlink(&runtime, dir.join("libonnxruntime.so")).unwrap();
    let err = VehicleDetector::load(&dir).unwrap_err().to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        err.contains("yolov4_tiny.onnx") && err.contains("models/fetch"),
        "{err}"
    );
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("covermap-vehicles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
