//! How often a face or a plate would be published: what the stage found on real frames,
//! against boxes labelled by hand (COCO-style JSON, `testdata/labels/privacy.json`).
//!
//! Per class (faces, plates), overall and by the labelled box's height (small < 24 px, medium
//! 24–96 px, large ≥ 96 px):
//! - **recall**: labelled boxes a detection of the same class overlaps with IoU ≥ 0.3 (each
//!   detection matched once, best overlaps first);
//! - **precision**: detections that matched a labelled box;
//! - **covered**: labelled boxes whose area is at least 90 % inside what the stage blurs in the
//!   published frame ([`crate::blurred_region`] of every detection, faces and plates alike) — what
//!   matters for privacy, whatever the detector's box looked like.
//!
//! And how much of the frames is blurred: the mean share of an image's pixels inside the
//! blurred regions (what the stage costs the published frames, unsure boxes included).
//!
//! Labels marked `"uncertain": true` in their `attributes` are neither counted nor held against
//! a detection that overlaps them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::privacy::{BLUR_MARGIN, Detection, grown_region};

/// A labelled set: images, categories (`face`, `plate`) and boxes.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelSet {
    pub images: Vec<LabelledImage>,
    pub categories: Vec<Category>,
    pub annotations: Vec<Annotation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LabelledImage {
    pub id: u64,
    /// Relative to the set's root folder.
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Category {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Annotation {
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]` in the image's pixels.
    pub bbox: [f32; 4],
    #[serde(default)]
    pub attributes: Attributes,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Attributes {
    /// The labeller could not be sure the box is a face or a plate, or where exactly it is.
    #[serde(default)]
    pub uncertain: bool,
}

/// What is blurred: a face or a licence plate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Face,
    Plate,
}

/// A labelled box's size, by its height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Size {
    /// Under 24 px high.
    Small,
    /// 24 to 96 px high.
    Medium,
    /// 96 px high or more.
    Large,
}

impl Size {
    pub fn of(height: f32) -> Self {
        if height < 24.0 {
            Size::Small
        } else if height < 96.0 {
            Size::Medium
        } else {
            Size::Large
        }
    }
}

/// What the stage found in one image.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub width: u32,
    pub height: u32,
    pub faces: Vec<Detection>,
    pub plates: Vec<Detection>,
    /// Boxes blurred but not taken as either (the stage's unsure ones): they count towards
    /// "covered", not recall or precision.
    pub unsure: Vec<Detection>,
    /// How much of a box's size the blur adds on every side of it (covermap's is
    /// [`BLUR_MARGIN`]; a pipeline that grows boxes 1.3× about their centre adds 0.15).
    pub margin: f32,
}

impl Found {
    /// What `check` finds in `frame`, as the published frame is made of it. The stage takes
    /// JPEG only (as uploads are); a labelled frame stored in another format (a PNG a package
    /// ships) is encoded as JPEG at quality 95 first, in memory.
    pub fn by(check: &mut crate::FrameCheck, frame: &[u8]) -> Result<Self, crate::VisionError> {
        let jpeg = as_jpeg(frame)?;
        let look = check.look(&jpeg)?;
        Ok(Self {
            width: look.width,
            height: look.height,
            faces: look.faces,
            plates: look.plates,
            unsure: look.unsure,
            margin: BLUR_MARGIN,
        })
    }
}

/// `frame` as JPEG: itself if it is one, else decoded (any format the `image` crate reads) and
/// encoded at quality 95.
fn as_jpeg(frame: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, crate::VisionError> {
    if frame.starts_with(&[0xFF, 0xD8]) {
        return Ok(std::borrow::Cow::Borrowed(frame));
    }
    let image = image::load_from_memory(frame)
        .map_err(|e| crate::VisionError::Undecodable(e.to_string()))?
        .into_rgb8();
    crate::encode_jpeg(&image, 95).map(std::borrow::Cow::Owned)
}

/// Counts for one class, overall (`size: None`) or for one size of labelled box.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    pub labelled: u32,
    /// Labelled boxes a detection matched (IoU ≥ 0.3).
    pub found: u32,
    /// Labelled boxes at least 90 % inside the blurred regions.
    pub covered: u32,
    /// Detections of the class (overall rows only).
    pub detections: u32,
    /// Of those, the ones that matched a labelled box (or an uncertain one).
    pub true_detections: u32,
}

impl Tally {
    pub fn recall(&self) -> Option<f64> {
        ratio(self.found, self.labelled)
    }

    pub fn covered_share(&self) -> Option<f64> {
        ratio(self.covered, self.labelled)
    }

    pub fn precision(&self) -> Option<f64> {
        ratio(self.true_detections, self.detections)
    }
}

fn ratio(a: u32, b: u32) -> Option<f64> {
    (b > 0).then(|| f64::from(a) / f64::from(b))
}

/// The whole evaluation: a [`Tally`] per class, overall and per size, and the uncertain labels
/// left out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
    pub uncertain: u32,
    pub images: u32,
    /// The mean, over the images, of the share of each image's pixels that is blurred.
    pub blurred_share: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Row {
    pub class: Class,
    pub size: Option<Size>,
    #[serde(flatten)]
    pub tally: Tally,
    pub recall: Option<f64>,
    pub precision: Option<f64>,
    /// `covered / labelled`.
    pub covered_share: Option<f64>,
}

impl Report {
    /// The row of `class` and `size` (`None`: all sizes).
    pub fn row(&self, class: Class, size: Option<Size>) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.class == class && r.size == size)
    }

    /// The report as a Markdown table.
    pub fn table(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{:.2}", v));
        let mut out = String::from(
            "| class | size | labelled | found | recall | covered | covered share | detections | precision |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let size = match r.size {
                None => "all",
                Some(Size::Small) => "small (< 24 px)",
                Some(Size::Medium) => "medium (24–96 px)",
                Some(Size::Large) => "large (≥ 96 px)",
            };
            let class = match r.class {
                Class::Face => "face",
                Class::Plate => "plate",
            };
            let (dets, precision) = if r.size.is_none() {
                (r.tally.detections.to_string(), pct(r.precision))
            } else {
                (String::new(), String::new())
            };
            out.push_str(&format!(
                "| {class} | {size} | {} | {} | {} | {} | {} | {dets} | {precision} |\n",
                r.tally.labelled,
                r.tally.found,
                pct(r.recall),
                r.tally.covered,
                pct(r.covered_share),
            ));
        }
        out
    }
}

/// Why a label set cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("the label set names no category {0:?}")]
    Category(&'static str),
    #[error("image {0} of the label set was not looked at")]
    Missing(String),
}

/// Evaluates `found` (by image id) against `labels`.
pub fn evaluate(labels: &LabelSet, found: &BTreeMap<u64, Found>) -> Result<Report, EvalError> {
    let category = |name: &'static str| {
        labels
            .categories
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.id)
            .ok_or(EvalError::Category(name))
    };
    let (face_id, plate_id) = (category("face")?, category("plate")?);
    let mut tallies: BTreeMap<(Class, Option<Size>), Tally> = BTreeMap::new();
    let mut report = Report::default();
    let mut blurred = 0.0;
    for image in &labels.images {
        let f = found
            .get(&image.id)
            .ok_or_else(|| EvalError::Missing(image.file_name.clone()))?;
        report.images += 1;
        let mask = BlurMask::of(f);
        blurred += mask.blurred_share();
        for (class, id, detections) in [
            (Class::Face, face_id, &f.faces),
            (Class::Plate, plate_id, &f.plates),
        ] {
            let boxes: Vec<(&Annotation, Detection)> = labels
                .annotations
                .iter()
                .filter(|a| a.image_id == image.id && a.category_id == id)
                .map(|a| (a, labelled_box(a)))
                .collect();
            let matched = match_boxes(detections, &boxes);
            let all = tallies.entry((class, None)).or_default();
            all.detections += detections.len() as u32;
            all.true_detections += matched.detections;
            for (i, (a, b)) in boxes.iter().enumerate() {
                if a.attributes.uncertain {
                    report.uncertain += 1;
                    continue;
                }
                let covered = mask.share_inside(b) >= 0.9;
                for size in [None, Some(Size::of(b.y2 - b.y1))] {
                    let t = tallies.entry((class, size)).or_default();
                    t.labelled += 1;
                    t.found += u32::from(matched.labels[i]);
                    t.covered += u32::from(covered);
                }
            }
        }
    }
    report.blurred_share = blurred / f64::from(report.images.max(1));
    report.rows = tallies
        .into_iter()
        .map(|((class, size), tally)| Row {
            class,
            size,
            tally,
            recall: tally.recall(),
            precision: tally.precision(),
            covered_share: tally.covered_share(),
        })
        .collect();
    Ok(report)
}

fn labelled_box(a: &Annotation) -> Detection {
    Detection::from_xywh(a.bbox, 1.0)
}

struct Matched {
    /// Per labelled box, whether a detection matched it.
    labels: Vec<bool>,
    /// Detections that matched a labelled box, certain or not.
    detections: u32,
}

/// Greedy matching, best overlap first, each detection and each label at most once.
fn match_boxes(detections: &[Detection], labels: &[(&Annotation, Detection)]) -> Matched {
    let mut pairs: Vec<(f32, usize, usize)> = detections
        .iter()
        .enumerate()
        .flat_map(|(d, det)| {
            labels
                .iter()
                .enumerate()
                .map(move |(l, (_, lab))| (det.iou(lab), d, l))
        })
        .filter(|(iou, _, _)| *iou >= 0.3)
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut used = vec![false; detections.len()];
    let mut labels_hit = vec![false; labels.len()];
    let mut n = 0;
    for (_, d, l) in pairs {
        if !used[d] && !labels_hit[l] {
            used[d] = true;
            labels_hit[l] = true;
            n += 1;
        }
    }
    Matched {
        labels: labels_hit,
        detections: n,
    }
}

/// The pixels the published frame has blurred.
struct BlurMask {
    width: u32,
    blurred: Vec<bool>,
}

impl BlurMask {
    fn of(f: &Found) -> Self {
        let mut blurred = vec![false; f.width as usize * f.height as usize];
        for d in f.faces.iter().chain(&f.plates).chain(&f.unsure) {
            if let Some((x1, y1, x2, y2)) = grown_region(d, f.margin, f.width, f.height) {
                for y in y1..y2 {
                    let row = y as usize * f.width as usize;
                    blurred[row + x1 as usize..row + x2 as usize].fill(true);
                }
            }
        }
        Self {
            width: f.width,
            blurred,
        }
    }

    /// The share of the frame's pixels that are blurred.
    fn blurred_share(&self) -> f64 {
        let n = self.blurred.iter().filter(|&&b| b).count();
        n as f64 / self.blurred.len().max(1) as f64
    }

    /// The share of `b`'s pixels (those inside the frame) that are blurred.
    fn share_inside(&self, b: &Detection) -> f64 {
        let height = (self.blurred.len() / self.width.max(1) as usize) as u32;
        let clamp = |v: f32, max: u32| (v.max(0.0) as u32).min(max);
        let (x1, x2) = (clamp(b.x1, self.width), clamp(b.x2.ceil(), self.width));
        let (y1, y2) = (clamp(b.y1, height), clamp(b.y2.ceil(), height));
        let total = u64::from(x2.saturating_sub(x1)) * u64::from(y2.saturating_sub(y1));
        if total == 0 {
            return 0.0;
        }
        let inside: u64 = (y1..y2)
            .map(|y| {
                let row = y as usize * self.width as usize;
                self.blurred[row + x1 as usize..row + x2 as usize]
                    .iter()
                    .filter(|&&b| b)
                    .count() as u64
            })
            .sum();
        inside as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
        Detection {
            x1,
            y1,
            x2,
            y2,
            score: 0.9,
        }
    }

    fn set(boxes: &[(u64, [f32; 4], bool)]) -> LabelSet {
        LabelSet {
            images: vec![LabelledImage {
                id: 1,
                file_name: "a.jpg".into(),
                width: 200,
                height: 100,
            }],
            categories: vec![
                Category {
                    id: 1,
                    name: "face".into(),
                },
                Category {
                    id: 2,
                    name: "plate".into(),
                },
            ],
            annotations: boxes
                .iter()
                .map(|&(category_id, bbox, uncertain)| Annotation {
                    image_id: 1,
                    category_id,
                    bbox,
                    attributes: Attributes { uncertain },
                })
                .collect(),
        }
    }

    #[test]
    fn recall_precision_and_cover_by_class_and_size() {
        let labels = set(&[
            // A face found; a small face missed but covered by the blur around a plate; a
            // plate missed; an uncertain plate a detection overlaps.
            (1, [10.0, 10.0, 30.0, 40.0], false),
            (1, [150.0, 70.0, 8.0, 10.0], false),
            (2, [60.0, 60.0, 20.0, 6.0], false),
            (2, [100.0, 10.0, 20.0, 6.0], true),
        ]);
        let found = Found {
            width: 200,
            height: 100,
            faces: vec![det(11.0, 11.0, 41.0, 51.0), det(100.0, 80.0, 110.0, 90.0)],
            plates: vec![det(148.0, 68.0, 160.0, 82.0), det(100.0, 10.0, 120.0, 16.0)],
            unsure: Vec::new(),
            margin: BLUR_MARGIN,
        };
        let report = evaluate(&labels, &BTreeMap::from([(1, found)])).unwrap();
        let faces = report.row(Class::Face, None).unwrap();
        assert_eq!((faces.tally.labelled, faces.tally.found), (2, 1));
        assert_eq!(
            faces.tally.covered, 2,
            "the small face lies in the plate's blur"
        );
        assert_eq!(faces.precision, Some(0.5));
        let small = report.row(Class::Face, Some(Size::Small)).unwrap();
        assert_eq!((small.tally.labelled, small.tally.found), (1, 0));
        assert_eq!(
            report.row(Class::Face, Some(Size::Medium)).unwrap().recall,
            Some(1.0)
        );
        let plates = report.row(Class::Plate, None).unwrap();
        assert_eq!((plates.tally.labelled, plates.tally.covered), (1, 0));
        // The plate detection on the uncertain label is not held against the detector.
        assert_eq!(plates.precision, Some(0.5));
        assert_eq!(report.uncertain, 1);
    }

    #[test]
    fn blurred_share_is_the_blurred_pixels_of_the_frame() {
        let labels = set(&[]);
        // Two 20×10 unsure boxes overlapping by 10×10, no margin: 300 of 20,000 pixels. Then one
        // about the frame's corner, grown by a margin of 0.5 to 40×20: 20×10 of it inside.
        let mut found = Found {
            width: 200,
            height: 100,
            unsure: vec![det(0.0, 0.0, 20.0, 10.0), det(10.0, 0.0, 30.0, 10.0)],
            margin: 0.0,
            ..Found::default()
        };
        let report = evaluate(&labels, &BTreeMap::from([(1, found.clone())])).unwrap();
        assert!((report.blurred_share - 300.0 / 20_000.0).abs() < 1e-12);
        found.unsure = vec![det(190.0, 95.0, 210.0, 105.0)];
        found.margin = 0.5;
        let report = evaluate(&labels, &BTreeMap::from([(1, found)])).unwrap();
        assert!((report.blurred_share - 20.0 * 10.0 / 20_000.0).abs() < 1e-12);
    }

    #[test]
    fn an_image_not_looked_at_is_an_error() {
        let labels = set(&[]);
        assert!(matches!(
            evaluate(&labels, &BTreeMap::new()),
            Err(EvalError::Missing(_))
        ));
    }
}
