#!/usr/bin/env python3
"""Train covermap's frame-quality classifier and export it to ONNX.

Six classes, in this order: ok, motion_blur, defocus, dark, overexposed, obstructed.

The data set is synthetic degradations of the few real frames in ../shared/data (read in place,
never copied): random crops / rescales / flips of each source, degraded at the size of that
"virtual camera frame" (blur sizes are fractions of its width), JPEG-encoded, then resized to the
model input exactly as the Rust side does. Held-out samples come from source images / video
segments that never appear in training. See ../cards/quality.md for the contract and the figures.

    /tmp/tv/bin/python models/quality/train.py            # from the repository root
    python train.py --out DIR --seed 1 --epochs 10 --data /path/to/shared/data

Uses one CPU thread (torch, OpenCV, BLAS) unless --threads says otherwise.
"""

import os
import sys


def _early_threads(argv):
    n = "1"
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = argv[i + 1]
        elif a.startswith("--threads="):
            n = a.split("=", 1)[1]
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = n


_early_threads(sys.argv)  # before numpy / torch / cv2 are imported

import argparse  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

CLASSES = ["ok", "motion_blur", "defocus", "dark", "overexposed", "obstructed"]
IN_W, IN_H = 384, 216
# Bump when the rendering changes, so that a cached data set is never reused by mistake.
RENDER_VERSION = 3

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# ---------------------------------------------------------------------------------------------
# Sources. Split by source image / video segment: nothing in "heldout" is ever seen in training.
# Families are sampled uniformly so that the 27 video frames do not swamp the 5 stills.
# ---------------------------------------------------------------------------------------------
STILLS = [
    # (id, path under the data root, family, split)
    ("udacity/solidWhiteCurve", "images/udacity_lanelines/solidWhiteCurve.jpg", "udacity", "train"),
    ("udacity/solidWhiteRight", "images/udacity_lanelines/solidWhiteRight.jpg", "udacity", "train"),
    ("udacity/solidYellowCurve", "images/udacity_lanelines/solidYellowCurve.jpg", "udacity", "train"),
    ("udacity/solidYellowLeft", "images/udacity_lanelines/solidYellowLeft.jpg", "udacity", "heldout"),
    ("mapillary/DSC00001", "images/mapillary_tools/DSC00001.JPG", "mapillary", "train"),
    ("mapillary/DSC00497", "images/mapillary_tools/DSC00497.JPG", "mapillary", "heldout"),
    ("deface/city", "images/deface/city.jpg", "city", "train"),
    ("anonymizer/coco02", "images/anonymizer/coco02.jpg", "coco02", "heldout"),
]
VIDEO = "camera/gopro_gpmf/max-heromode.mp4"
# 315 frames at 29.97 fps. Segments [start, stop) with gaps between them, every 10th frame taken.
# Frames >= 290 are left out: the camera pans fast there (possibly real motion blur).
VIDEO_SEGMENTS = [
    ("gopro/A", 0, 90, "train"),
    ("gopro/B", 100, 190, "train"),
    ("gopro/C", 200, 290, "heldout"),
]
VIDEO_STEP = 10
# The frames (and degradations) the Rust tests use: vision/tests/frames.rs DASHCAM.
RUST_TEST_FRAMES = [
    "udacity/solidWhiteCurve", "udacity/solidWhiteRight", "udacity/solidYellowCurve",
    "udacity/solidYellowLeft", "mapillary/DSC00001", "mapillary/DSC00497",
]


def sha256_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_root(arg):
    if arg:
        return Path(arg)
    env = os.environ.get("COVERMAP_SHARED_DATA")
    if env:
        return Path(env)
    return (REPO / ".." / "shared" / "data").resolve()


def require(path):
    if not path.is_file():
        sys.exit(f"train.py: missing source file: {path} (set --data or $COVERMAP_SHARED_DATA)")
    return path


def load_still(path):
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB")).copy()


def load_video_frames(path, wanted):
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        sys.exit(f"train.py: OpenCV cannot open the video {path}")
    frames, i = {}, 0
    wanted = set(wanted)
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if i in wanted:
            frames[i] = f[:, :, ::-1].copy()  # BGR -> RGB
        i += 1
    cap.release()
    missing = sorted(wanted - set(frames))
    if missing:
        sys.exit(f"train.py: {path} decoded to {i} frames; frames {missing[:5]}... are missing")
    return frames, i


def load_sources(root):
    """Returns {split: {family: [(id, rgb uint8)]}} and a description of every source."""
    out = {"train": {}, "heldout": {}}
    desc = []
    for sid, rel, fam, split in STILLS:
        p = require(root / rel)
        img = load_still(p)
        out[split].setdefault(fam, []).append((sid, img))
        desc.append({"id": sid, "path": rel, "family": fam, "split": split,
                     "size": [int(img.shape[1]), int(img.shape[0])], "sha256": sha256_file(p)})
    vp = require(root / VIDEO)
    wanted = [i for _, a, b, _ in VIDEO_SEGMENTS for i in range(a, b, VIDEO_STEP)]
    frames, total = load_video_frames(vp, wanted)
    vsha = sha256_file(vp)
    for seg, a, b, split in VIDEO_SEGMENTS:
        idx = list(range(a, b, VIDEO_STEP))
        for i in idx:
            out[split].setdefault("gopro", []).append((f"{seg}/frame{i:03d}", frames[i]))
        h, w = frames[idx[0]].shape[:2]
        desc.append({"id": seg, "path": VIDEO, "family": "gopro", "split": split,
                     "frames": idx, "video_frames_total": total, "size": [int(w), int(h)],
                     "sha256": vsha})
    return out, desc


# ---------------------------------------------------------------------------------------------
# RENDER BEGIN (the cache key hashes the code from here to RENDER END)
# Image operations. Images are float32 RGB in [0, 1] (sRGB-encoded) at the virtual frame size.
# ---------------------------------------------------------------------------------------------
def to_u8(x):
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def jpeg(x_u8, q):
    ok, buf = cv2.imencode(".jpg", x_u8[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(q)])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]


def to_model_size(x_u8):
    """The contract's preprocessing: whole frame -> 384x216, antialiased bilinear, aspect ignored."""
    return np.asarray(Image.fromarray(x_u8).resize((IN_W, IN_H), Image.BILINEAR))


def loguniform(rng, a, b):
    return float(np.exp(rng.uniform(np.log(a), np.log(b))))


def line_kernel(length, angle_deg, weights=None):
    """A linear motion kernel covering `length` pixels (a box of that length when horizontal)."""
    length = max(float(length), 1.0)
    half = (length - 1.0) / 2.0
    r = int(np.ceil(half)) + 1
    ks = 2 * r + 1
    k = np.zeros((ks, ks), np.float64)
    n = int(np.ceil(length * 4)) + 1
    t = np.linspace(-half, half, n)
    w = np.ones(n) if weights is None else weights(n)
    a = np.deg2rad(angle_deg)
    xs, ys = r + t * np.cos(a), r - t * np.sin(a)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, ww in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                       (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (y0 + dy, x0 + dx), w * ww)
    return (k / k.sum()).astype(np.float32)


def disk_kernel(radius):
    radius = max(float(radius), 0.5)
    r = int(np.ceil(radius))
    ks = 2 * r + 1
    ss = 5
    g = (np.arange(ks * ss) + 0.5) / ss - (ks / 2.0)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    inside = (xx * xx + yy * yy <= radius * radius).astype(np.float64)
    k = inside.reshape(ks, ss, ks, ss).mean(axis=(1, 3))
    return (k / k.sum()).astype(np.float32)


def filt(x, k):
    return cv2.filter2D(x, -1, k, borderType=cv2.BORDER_REFLECT)


def gauss(x, sigma):
    if sigma <= 0.05:
        return x
    if sigma > 12:  # heavy blur: on a reduced copy (same result to the eye, much cheaper)
        h, w = x.shape[:2]
        f = sigma / 6.0
        small = cv2.resize(x, (max(8, int(w / f)), max(8, int(h / f))), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), 6.0, borderType=cv2.BORDER_REFLECT)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def in_linear(x, fn, rng, p=0.5):
    """Blur happens in linear light in a camera; half the time do it there."""
    if rng.random() < p:
        return np.power(np.clip(fn(np.power(x, 2.2)), 0, 1), 1 / 2.2).astype(np.float32)
    return fn(x)


def smooth_field(rng, h, w, cells):
    gh, gw = max(2, int(round(cells * h / w))), cells
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def mask_by_quantile(field, coverage):
    t = np.quantile(field, 1.0 - coverage)
    return (field > t).astype(np.float32)


def soften(mask, sigma):
    return np.clip(gauss(mask, sigma), 0, 1) if sigma > 0.3 else mask


def shade(rng, h, w, colour, amount):
    """A colour layer with a soft brightness gradient and low-frequency texture."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(a) * xx / w + np.sin(a) * yy / h)
    grad = grad - grad.mean()
    tex = smooth_field(rng, h, w, int(rng.integers(6, 20))) * 0.12
    m = 1.0 + amount * (grad + tex)
    return np.clip(np.asarray(colour, np.float32)[None, None, :] * m[:, :, None], 0, 1)


def dist_field(h, w, cx, cy, sx, sy, angle):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = (xx - cx) / w, (yy - cy) / w
    c, s = np.cos(angle), np.sin(angle)
    u, v = (c * dx + s * dy) / sx, (-s * dx + c * dy) / sy
    return np.sqrt(u * u + v * v)


# ----- obstructions: each returns (colour layer, alpha) for a coverage fraction of the view -----
def occ_blob(rng, x, cov):
    h, w = x.shape[:2]
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    field = -dist_field(h, w, cx, cy, rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(0, np.pi))
    field = field + 0.25 * smooth_field(rng, h, w, int(rng.integers(3, 8)))
    alpha = soften(mask_by_quantile(field, cov), rng.uniform(0.004, 0.03) * w)
    g = rng.uniform(0.02, 0.4)
    colour = np.clip(g * (1 + rng.uniform(-0.15, 0.15, 3)), 0, 1)
    return shade(rng, h, w, colour, 0.6), alpha


def occ_wiper(rng, x, cov):
    h, w = x.shape[:2]
    px, py = rng.uniform(0.0, 1.0) * w, h * rng.uniform(1.0, 1.3)  # pivot below the frame
    a = rng.uniform(np.deg2rad(25), np.deg2rad(155))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.abs((xx - px) * np.sin(a) + (yy - py) * np.cos(a)) / w
    field = -d + 0.02 * smooth_field(rng, h, w, 6)
    alpha = soften(mask_by_quantile(field, cov), rng.uniform(0.005, 0.03) * w)
    colour = np.full(3, rng.uniform(0.02, 0.2))
    return shade(rng, h, w, colour, 0.5), alpha


def occ_hood(rng, x, cov):
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    curve = rng.uniform(-0.25, 0.25) * ((xx / w - rng.uniform(0.3, 0.7)) ** 2)
    slant = rng.uniform(-0.15, 0.15) * (xx / w)
    field = yy / h + curve + slant
    alpha = soften(mask_by_quantile(field, cov), rng.uniform(0.0, 0.006) * w)
    if rng.random() < 0.6:  # dashboard / black hood
        colour = np.full(3, rng.uniform(0.02, 0.3)) * (1 + rng.uniform(-0.1, 0.1, 3))
    else:  # painted hood
        colour = rng.uniform(0.05, 0.9, 3)
    layer = shade(rng, h, w, np.clip(colour, 0, 1), 0.5)
    refl = rng.uniform(0.0, 0.35)  # a dim, blurred reflection of the scene
    if refl > 0.05:
        mirrored = gauss(x[::-1], rng.uniform(0.005, 0.02) * w)
        layer = np.clip(layer * (1 - refl) + refl * mirrored, 0, 1)
    return layer, alpha


SKIN = [(0.95, 0.76, 0.65), (0.87, 0.63, 0.50), (0.70, 0.49, 0.36), (0.48, 0.33, 0.24),
        (0.33, 0.22, 0.16), (0.98, 0.70, 0.55)]


def occ_finger(rng, x, cov):
    h, w = x.shape[:2]
    corner = int(rng.integers(0, 4))
    cx = (0.0 if corner % 2 == 0 else 1.0) * w + rng.uniform(-0.1, 0.1) * w
    cy = (0.0 if corner < 2 else 1.0) * h + rng.uniform(-0.1, 0.1) * h
    toward = np.arctan2(h / 2 - cy, w / 2 - cx) + rng.uniform(-0.5, 0.5)
    field = -dist_field(h, w, cx, cy, rng.uniform(0.8, 1.6), rng.uniform(0.35, 0.7), toward)
    field = field + 0.05 * smooth_field(rng, h, w, 4)
    alpha = soften(mask_by_quantile(field, cov), rng.uniform(0.02, 0.07) * w) * rng.uniform(0.9, 1.0)
    tone = np.asarray(SKIN[int(rng.integers(0, len(SKIN)))]) * rng.uniform(0.6, 1.15)
    if rng.random() < 0.4:  # backlit finger glowing orange/red
        tone = tone * np.array([1.1, 0.7, 0.5])
    return shade(rng, h, w, np.clip(tone, 0, 1), 0.5), alpha


def occ_mud(rng, x, cov):
    h, w = x.shape[:2]
    field = smooth_field(rng, h, w, int(rng.integers(8, 28)))
    field = field + 0.8 * smooth_field(rng, h, w, 3)  # splats cluster
    alpha = soften(mask_by_quantile(field, cov), rng.uniform(0.001, 0.006) * w)
    alpha = alpha * np.clip(rng.uniform(0.75, 1.0) + 0.15 * smooth_field(rng, h, w, 30), 0, 1)
    colour = np.array([0.36, 0.27, 0.18]) * rng.uniform(0.35, 1.5) * (1 + rng.uniform(-0.15, 0.15, 3))
    return shade(rng, h, w, np.clip(colour, 0, 1), 0.7), alpha


def occ_paper(rng, x, cov):
    h, w = x.shape[:2]
    cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
    a = rng.uniform(-0.4, 0.4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = ((xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)) / w
    v = (-(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)) / w
    asp = rng.uniform(0.5, 2.0)
    field = -np.maximum(np.abs(u) / asp, np.abs(v))
    alpha = soften(mask_by_quantile(field, cov), rng.uniform(0.0, 0.015) * w)
    colour = rng.choice([np.array([0.92, 0.92, 0.9]), np.array([0.95, 0.9, 0.45]),
                         np.array([0.7, 0.7, 0.72]), rng.uniform(0.3, 0.95, 3)])
    colour = np.clip(colour * rng.uniform(0.55, 1.0), 0, 1)
    return shade(rng, h, w, colour, 0.35), alpha


def occ_condensation(rng, x, cov):
    h, w = x.shape[:2]
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    field = -dist_field(h, w, cx, cy, rng.uniform(0.7, 1.5), rng.uniform(0.7, 1.5), rng.uniform(0, np.pi))
    field = field + 0.3 * smooth_field(rng, h, w, int(rng.integers(3, 7)))
    alpha = soften(mask_by_quantile(field, cov), rng.uniform(0.02, 0.06) * w)
    fog = rng.uniform(0.15, 0.55)
    blurred = gauss(x, rng.uniform(0.02, 0.05) * w)
    return np.clip(blurred * (1 - fog) + fog * rng.uniform(0.7, 0.95), 0, 1), alpha


OCCLUDERS = [occ_blob, occ_wiper, occ_hood, occ_finger, occ_mud, occ_paper, occ_condensation]


def composite(x, layer, alpha):
    a = alpha[:, :, None]
    return x * (1 - a) + layer * a


# ----- the generator --------------------------------------------------------------------------
def virtual_frame(rng, src, full=False):
    """A random crop / rescale / flip of a source: what some camera might have seen."""
    H, W = src.shape[:2]
    if full or rng.random() < 0.25:
        x0, y0, cw, ch = 0, 0, W, H
    else:
        min_w = min(W, max(400, int(0.55 * W)))
        cw = int(rng.integers(min_w, W + 1))
        ch = min(H, int(round(cw / rng.uniform(1.5, 1.95))))
        x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
    crop = src[y0:y0 + ch, x0:x0 + cw]
    if not full and rng.random() < 0.5:
        crop = crop[:, ::-1]
    if cw > 1280:
        vw = int(round(loguniform(rng, 640, 1280)))
    elif not full and rng.random() < 0.3 and cw > 420:
        vw = int(rng.integers(max(400, int(0.7 * cw)), cw + 1))
    else:
        vw = cw
    if vw != cw:
        vh = max(1, int(round(ch * vw / cw)))
        crop = cv2.resize(np.ascontiguousarray(crop), (vw, vh), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop).astype(np.float32) / 255.0


def mild_blur(rng, x):
    """What a fine frame may have: a trace of blur, or the camera's own sharpening."""
    w = x.shape[1]
    r = rng.random()
    if r < 0.3:
        return gauss(x, rng.uniform(0.0, 0.001) * w)
    if r < 0.5:
        k = line_kernel(max(1.0, rng.uniform(0.0, 0.0025) * w), rng.uniform(0, 180))
        return filt(x, k)
    if r < 0.7:  # unsharp mask
        amount = rng.uniform(0.3, 1.0)
        return np.clip(x + amount * (x - gauss(x, rng.uniform(0.001, 0.002) * w)), 0, 1)
    return x


def motion_blur(rng, x):
    w = x.shape[1]
    length = loguniform(rng, 0.009, 0.045) * w
    if rng.random() < 0.65:
        angle = float(np.clip(rng.normal(0, 8), -25, 25))
    else:
        angle = rng.uniform(0, 180)
    weights = None
    if rng.random() < 0.3:  # uneven speed during the exposure
        ramp = rng.uniform(0.2, 1.0)
        weights = lambda n: np.linspace(ramp, 1.0, n)[:: (1 if rng.random() < 0.5 else -1)]  # noqa: E731
    k = line_kernel(length, angle, weights)
    return in_linear(x, lambda im: filt(im, k), rng), {"length_frac": length / w, "angle": angle}


def defocus(rng, x):
    w = x.shape[1]
    if rng.random() < 0.55:
        r = loguniform(rng, 0.004, 0.02) * w
        k = disk_kernel(r)
        return in_linear(x, lambda im: filt(im, k), rng), {"disk_radius_frac": r / w}
    s = loguniform(rng, 0.002, 0.01) * w
    return in_linear(x, lambda im: gauss(im, s), rng), {"gauss_sigma_frac": s / w}


def mild_exposure(rng, x, gain=True):
    g = loguniform(rng, 0.6, 1.35) if gain else 1.0
    gamma = loguniform(rng, 0.85, 1.18)
    x = np.power(np.clip(x * g, 0, 1), gamma)
    c = rng.uniform(0.85, 1.15)
    m = float(x.mean())
    x = (x - m) * c + m
    cast = rng.uniform(0.94, 1.06, 3).astype(np.float32)
    return np.clip(x * cast[None, None, :], 0, 1)


def add_noise(rng, x, read_sigma, shot_k):
    n = rng.standard_normal(x.shape).astype(np.float32)
    var = read_sigma ** 2 + shot_k * np.clip(x, 0, 1)
    return np.clip(x + n * np.sqrt(var), 0, 1)


def render(rng, src, label, full=False):
    """One sample: returns the 384x216 uint8 RGB image and the drawn parameters."""
    x = virtual_frame(rng, src, full=full)
    h, w = x.shape[:2]
    info = {"w": w, "h": h}
    cls = CLASSES[label]
    if cls == "motion_blur":
        x, p = motion_blur(rng, x)
        info.update(p)
    elif cls == "defocus":
        x, p = defocus(rng, x)
        info.update(p)
    else:
        x = mild_blur(rng, x)

    if cls == "obstructed":
        occ = OCCLUDERS[int(rng.integers(0, len(OCCLUDERS)))]
        cov = rng.uniform(0.38, 0.8)
        for _ in range(4):  # soft edges and partial opacity eat into the coverage: >= 35 % it is
            layer, alpha = occ(rng, x, cov)
            if float(alpha.mean()) >= 0.35:
                break
            cov = min(0.9, cov * 0.4 / max(float(alpha.mean()), 0.05))
        x = composite(x, layer, alpha)
        info.update({"occluder": occ.__name__, "coverage": float(alpha.mean())})
    elif cls == "ok" and rng.random() < 0.15:  # small, harmless obstruction (hood edge, a spot)
        occ = [occ_hood, occ_mud, occ_blob][int(rng.integers(0, 3))]
        cov = rng.uniform(0.01, 0.08)
        layer, alpha = occ(rng, x, cov)
        x = composite(x, layer, alpha)

    # dark and overexposed get their own gain, so the class ranges are the effective ones
    x = mild_exposure(rng, x, gain=cls not in ("dark", "overexposed"))
    read, shot = rng.uniform(0, 2.5) / 255, rng.uniform(0, 2e-4)
    if cls == "dark":
        g = loguniform(rng, 0.04, 0.3)
        if rng.random() < 0.4:
            x = np.power(x, rng.uniform(1.0, 1.5))
        x = x * g
        if rng.random() < 0.3:
            x = x + rng.uniform(0, 0.02)  # lifted black level
        read, shot = rng.uniform(0.5, 5) / 255, rng.uniform(0, 3e-4)
        info["gain"] = g
    elif cls == "overexposed":
        r = rng.random()
        if r < 0.55:
            g = loguniform(rng, 2.5, 6.0)
            x = x * g
            info.update({"kind": "gain", "gain": g})
        elif r < 0.8:
            g, veil = rng.uniform(1.6, 3.0), rng.uniform(0.35, 0.7)
            x = np.clip(x * g, 0, 1)
            x = x + veil * (1 - x)
            info.update({"kind": "washed_out", "gain": g, "veil": veil})
        else:
            g = rng.uniform(2.0, 4.0)
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            cx, cy, R = rng.uniform(0, w), rng.uniform(0, 0.7 * h), rng.uniform(0.3, 0.7) * w
            glare = rng.uniform(0.5, 1.5) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * R * R))
            x = x * g + glare[:, :, None]
            info.update({"kind": "glare", "gain": g})
        x = np.clip(x, 0, 1)
    x = add_noise(rng, x, read, shot)
    q = int(rng.integers(60, 96))
    out = to_model_size(jpeg(to_u8(x), q))
    info["jpeg_q"] = q
    return out, info


def build_split(sources, split, per_class, seed):
    fams = sorted(sources[split])
    n = per_class * len(CLASSES)
    X = np.empty((n, IN_H, IN_W, 3), np.uint8)
    y = np.empty(n, np.int64)
    split_id = 0 if split == "train" else 1
    for i in range(n):
        rng = np.random.default_rng([seed, split_id, i])
        label = i % len(CLASSES)
        fam = fams[int(rng.integers(0, len(fams)))]
        frames = sources[split][fam]
        _, src = frames[int(rng.integers(0, len(frames)))]
        X[i], _ = render(rng, src, label)
        y[i] = label
        if (i + 1) % 600 == 0:
            print(f"  {split}: {i + 1}/{n}", flush=True)
    return X, y


def render_code_hash():
    text = Path(__file__).read_text()
    a, b = text.index("# RENDER BEGIN"), text.rindex("# RENDER END")
    return hashlib.sha256(text[a:b].encode()).hexdigest()


def cached_split(cache, sources, desc, split, per_class, seed):
    key = hashlib.sha256(json.dumps(
        {"v": RENDER_VERSION, "split": split, "per_class": per_class, "seed": seed,
         "sources": [d for d in desc if d["split"] == split],
         "code": render_code_hash()},
        sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{split}-{key}.npz"
    if path.is_file():
        d = np.load(path)
        print(f"{split}: {len(d['y'])} samples from the cache {path}")
        return d["X"], d["y"], str(path)
    t = time.time()
    X, y = build_split(sources, split, per_class, seed)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, X=X, y=y)
    tmp.rename(path)
    print(f"{split}: rendered {len(y)} samples in {time.time() - t:.0f} s -> {path}")
    return X, y, str(path)


# RENDER END
# ---------------------------------------------------------------------------------------------
# The network: ~177k parameters, normalisation inside, global average + max pooling.
# ---------------------------------------------------------------------------------------------
def cbr(i, o, s):
    return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class QualityNet(nn.Module):
    SPEC = [(16, 2), (24, 2), (48, 2), (48, 1), (64, 2), (64, 1), (128, 2)]

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.45))
        self.register_buffer("inv_std", torch.full((1, 3, 1, 1), 1 / 0.25))
        layers, c = [], 3
        for o, s in self.SPEC:
            layers.append(cbr(c, o, s))
            c = o
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(2 * c, len(CLASSES))

    def forward(self, frame):
        f = self.features((frame - self.mean) * self.inv_std)
        f = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.fc(self.dropout(f))


def batch_tensor(X_u8, idx, flip=None):
    x = torch.from_numpy(X_u8[idx]).permute(0, 3, 1, 2).float().div_(255.0)
    if flip is not None:
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x.contiguous(memory_format=torch.channels_last)


def predict(model, X, bs=64):
    model.eval()
    out = []
    with torch.no_grad():
        for a in range(0, len(X), bs):
            out.append(model(batch_tensor(X, np.arange(a, min(a + bs, len(X))))))
    return torch.cat(out).numpy()


def train(model, X, y, epochs, seed, bs=32, lr=3e-3):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(X) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    yt = torch.from_numpy(y)
    log = []
    for ep in range(epochs):
        model.train()
        t = time.time()
        perm = torch.randperm(len(X), generator=g).numpy()
        tot, correct, n = 0.0, 0, 0
        for b in range(len(X) // bs):
            idx = np.sort(perm[b * bs:(b + 1) * bs])
            flip = torch.rand(len(idx), generator=g) < 0.5
            xb, yb = batch_tensor(X, idx, flip), yt[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            n += len(idx)
        log.append({"epoch": ep + 1, "loss": tot / n, "train_acc": correct / n, "s": time.time() - t})
        print(f"epoch {ep + 1}/{epochs}: loss {tot / n:.4f} train acc {correct / n:.4f} "
              f"({time.time() - t:.0f} s)", flush=True)
    return log


def report(y, pred):
    k = len(CLASSES)
    cm = np.zeros((k, k), np.int64)
    for t, p in zip(y, pred):
        cm[t, p] += 1
    per = {}
    for i, c in enumerate(CLASSES):
        tp = cm[i, i]
        prec = tp / max(1, cm[:, i].sum())
        rec = tp / max(1, cm[i].sum())
        per[c] = {"precision": round(float(prec), 4), "recall": round(float(rec), 4),
                  "f1": round(float(2 * prec * rec / max(1e-12, prec + rec)), 4),
                  "support": int(cm[i].sum())}
    return float(np.trace(cm) / cm.sum()), per, cm


def print_report(acc, per, cm):
    print(f"held-out accuracy {acc:.4f}")
    print(f"{'class':12s} {'prec':>6s} {'recall':>6s} {'n':>5s}")
    for c in CLASSES:
        print(f"{c:12s} {per[c]['precision']:6.3f} {per[c]['recall']:6.3f} {per[c]['support']:5d}")
    print("confusion (rows true, columns predicted): " + " ".join(c[:6] for c in CLASSES))
    for i, c in enumerate(CLASSES):
        print(f"{c:12s} " + " ".join(f"{v:6d}" for v in cm[i]))


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# Export and checks
# ---------------------------------------------------------------------------------------------
def fused_copy(model):
    """Conv+BN folded (eval mode), so the graph is Conv/Relu only."""
    import copy
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    m = copy.deepcopy(model).eval()
    for blk in m.features:
        blk[0] = fuse_conv_bn_eval(blk[0], blk[1])
        blk[1] = nn.Identity()
    return m


def export_onnx(model, path):
    import onnx
    m = fused_copy(model)
    dummy = torch.rand(1, 3, IN_H, IN_W)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(m, (dummy,), str(tmp), input_names=["frame"], output_names=["logits"],
                      opset_version=17, dynamo=False, do_constant_folding=True,
                      dynamic_axes={"frame": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(tmp))
    onnx.checker.check_model(proto)
    proto.producer_name = "covermap models/quality/train.py"
    proto.doc_string = ("covermap frame quality v1. input frame: float32 [N,3,216,384] RGB, pixel/255, "
                        "whole frame resized to 384x216 (bilinear, antialiased, aspect ignored). "
                        "output logits: float32 [N,6] = " + ",".join(CLASSES) + " (apply softmax).")
    onnx.save(proto, str(path))
    tmp.unlink()
    return m


def ort_session(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def check_export(model, sess, X):
    model.eval()
    worst = 0.0
    with torch.no_grad():
        for i in range(len(X)):
            x = batch_tensor(X, np.array([i]))
            a = model(x).numpy()
            b = sess.run(["logits"], {"frame": x.contiguous().numpy()})[0]
            worst = max(worst, float(np.abs(a - b).max()))
    if worst > 1e-4:
        sys.exit(f"train.py: ONNX export differs from torch by {worst:g} (> 1e-4)")
    return worst


def time_ort(sess, runs=200):
    x = np.random.default_rng(0).random((1, 3, IN_H, IN_W), dtype=np.float32)
    for _ in range(20):
        sess.run(["logits"], {"frame": x})
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(["logits"], {"frame": x})
        ts.append((time.perf_counter() - t) * 1000)
    ts = np.array(ts)
    return {"runs": runs, "median_ms": round(float(np.median(ts)), 3),
            "p90_ms": round(float(np.percentile(ts, 90)), 3), "min_ms": round(float(ts.min()), 3)}


def frame_input(rgb_u8):
    x = to_model_size(rgb_u8).astype(np.float32) / 255.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def pil_resize(rgb_u8, w, h):
    return np.asarray(Image.fromarray(rgb_u8).resize((w, h), Image.BILINEAR))


# The degradations of vision/tests/frames.rs, on the frame reduced to at most 960 wide.
def rust_scaled(img, f):
    return np.minimum(np.floor(img.astype(np.float32) * f), 255).astype(np.uint8)


def rust_motion(img, n=15):
    h, w = img.shape[:2]
    x = np.arange(w)
    acc = np.zeros(img.shape, np.uint32)
    for k in range(n):
        cols = np.minimum(np.maximum(x + k - n // 2, 0), w - 1)
        acc += img[:, cols].astype(np.uint32)
    return (acc // n).astype(np.uint8)


def rust_blur(img, sigma=3.0):
    return to_u8(cv2.GaussianBlur(img.astype(np.float32) / 255.0, (0, 0), sigma,
                                  borderType=cv2.BORDER_REPLICATE))


RUST_CASES = [("dark", lambda im: rust_scaled(im, 0.2), "dark"),
              ("overexposed", lambda im: rust_scaled(im, 3.0), "overexposed"),
              ("defocus", rust_blur, "defocus"),
              ("motion_blur", rust_motion, "motion_blur")]


def run_sess(sess, x):
    z = sess.run(["logits"], {"frame": x})[0][0]
    p = softmax(z)
    return z, p


def sanity_checks(sess, sources, desc):
    stills = {sid: img for split in sources.values() for fam in split.values() for sid, img in fam}
    split_of = {}
    for d in desc:
        split_of[d["id"]] = d["split"]
    out = {"classes": CLASSES, "frames": [], "video_frames": [], "rust_test_degradations": []}
    for sid, rel, _, split in STILLS:
        x = frame_input(stills[sid])
        z, p = run_sess(sess, x)
        out["frames"].append({
            "id": sid, "path": rel, "split": split,
            "size": [int(stills[sid].shape[1]), int(stills[sid].shape[0])],
            "input_mean_rgb": [round(float(v), 5) for v in x[0].mean(axis=(1, 2))],
            "predicted": CLASSES[int(p.argmax())],
            "softmax": [round(float(v), 5) for v in p],
            "logits": [round(float(v), 4) for v in z]})
    for split in ("train", "heldout"):
        for sid, img in sources[split].get("gopro", []):
            z, p = run_sess(sess, frame_input(img))
            out["video_frames"].append({
                "id": sid, "path": VIDEO, "split": split, "predicted": CLASSES[int(p.argmax())],
                "softmax": [round(float(v), 5) for v in p]})
    for sid in RUST_TEST_FRAMES:
        img = stills[sid]
        h, w = img.shape[:2]
        if w > 960:
            img = pil_resize(img, 960, h * 960 // w)
        for name, fn, want in RUST_CASES:
            z, p = run_sess(sess, frame_input(fn(img)))
            out["rust_test_degradations"].append({
                "id": sid, "split": split_of[sid], "degradation": name, "expected": want,
                "predicted": CLASSES[int(p.argmax())], "softmax": [round(float(v), 5) for v in p]})
    return out


SWEEPS = [
    ("box_motion_px_at_960", lambda im, v: rust_motion(im, int(v)), [3, 5, 7, 9, 11, 13, 15, 20, 30]),
    ("gauss_sigma_px_at_960", lambda im, v: rust_blur(im, v), [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0]),
    ("dim_factor", lambda im, v: rust_scaled(im, v), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]),
    ("gain_factor", lambda im, v: rust_scaled(im, v), [1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 4.0]),
    ("jpeg_quality", lambda im, v: jpeg(im, v), [10, 20, 30, 50, 70]),
]


def boundary_sweeps(sess, sources):
    """Where the decisions flip: the Rust-test degradations at other strengths, on the Rust-test
    frames plus city and coco02, each reduced to <= 960 wide first (as the Rust test does)."""
    stills = {sid: img for split in sources.values() for fam in split.values() for sid, img in fam}
    ids = RUST_TEST_FRAMES + ["deface/city", "anonymizer/coco02"]
    frames = []
    for sid in ids:
        img = stills[sid]
        h, w = img.shape[:2]
        frames.append(pil_resize(img, 960, h * 960 // w) if w > 960 else img)
    out = {"frames": ids}
    for name, fn, values in SWEEPS:
        rows = []
        for v in values:
            preds = [CLASSES[int(run_sess(sess, frame_input(fn(img, v)))[1].argmax())] for img in frames]
            rows.append({"value": v, "predicted": preds})
            print(f"  {name:22s} {v:>5}: " + " ".join(p[:5] for p in preds))
        out[name] = rows
    return out


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions():
    import onnx
    import onnxruntime
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "opencv": cv2.__version__, "pillow": PIL.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="where quality_v1.onnx, metrics.json, "
                    "sanity.json go (default: this folder)")
    ap.add_argument("--data", default=None, help="the shared data root (default: $COVERMAP_SHARED_DATA, "
                    "else ../shared/data from the repository root)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--train-per-class", type=int, default=1000)
    ap.add_argument("--heldout-per-class", type=int, default=200)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/quality_data"),
                    help="where the rendered samples are kept (default /tmp/quality_data)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--render-only", action="store_true", help="render the data set and stop")
    args = ap.parse_args()

    t0 = time.time()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)

    root = data_root(args.data)
    print(f"data root {root}")
    sources, desc = load_sources(root)
    Xtr, ytr, ptr = cached_split(args.cache, sources, desc, "train", args.train_per_class, args.seed)
    Xte, yte, pte = cached_split(args.cache, sources, desc, "heldout", args.heldout_per_class, args.seed)
    t_render = time.time() - t0
    if args.render_only:
        return

    model = QualityNet().to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"QualityNet: {n_params} parameters; training on {len(ytr)} samples, {args.epochs} epochs")
    t1 = time.time()
    log = train(model, Xtr, ytr, args.epochs, args.seed)
    t_train = time.time() - t1

    logits = predict(model, Xte)
    acc, per, cm = report(yte, logits.argmax(1))
    print_report(acc, per, cm)
    train_acc = float((predict(model, Xtr[::5]).argmax(1) == ytr[::5]).mean())

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "quality_v1.onnx"
    fused = export_onnx(model.eval(), onnx_path)
    sess = ort_session(onnx_path)
    check_idx = np.arange(0, len(yte), max(1, len(yte) // 12))[:12]
    worst = check_export(model, sess, Xte[check_idx])
    worst_fused = check_export(fused, sess, Xte[check_idx])
    onnx_logits = np.concatenate([sess.run(["logits"], {"frame": batch_tensor(Xte, np.array([i]))
                                                        .contiguous().numpy()})[0] for i in range(len(yte))])
    onnx_acc = float((onnx_logits.argmax(1) == yte).mean())
    timing = time_ort(sess)
    print(f"ONNX: max |torch - ort| {worst:.2e}; held-out accuracy through ORT {onnx_acc:.4f}; "
          f"{timing['median_ms']} ms/frame median on 1 thread")

    sanity = sanity_checks(sess, sources, desc)
    sanity["onnx_sha256"] = sha256_file(onnx_path)
    sanity["preprocessing"] = ("PIL Image.resize((384, 216), Image.BILINEAR) of the whole decoded RGB "
                               "frame, /255, NCHW; rust_test_degradations: frames reduced to <= 960 "
                               "wide (PIL bilinear) then degraded as vision/tests/frames.rs does")
    (args.out / "sanity.json").write_text(json.dumps(sanity, indent=1) + "\n")
    for f in sanity["frames"]:
        print(f"  {f['id']:26s} {f['split']:8s} -> {f['predicted']:12s} p(ok)={f['softmax'][0]:.4f}")
    bad = [f for f in sanity["frames"] + sanity["video_frames"] if f["predicted"] != "ok"]
    rbad = [r for r in sanity["rust_test_degradations"] if r["predicted"] != r["expected"]]
    for r in sanity["rust_test_degradations"]:
        print(f"  {r['id']:26s} {r['degradation']:12s} -> {r['predicted']:12s} "
              f"p={max(r['softmax']):.4f}")
    print(f"clean frames not ok: {len(bad)}; rust-test degradations misclassified: {len(rbad)}")
    print("decision sweeps (frames: " + ", ".join(RUST_TEST_FRAMES) + ", city, coco02)")
    sweeps = boundary_sweeps(sess, sources)

    metrics = {
        "model": "quality_v1", "classes": CLASSES,
        "input": {"name": "frame", "shape": [1, 3, IN_H, IN_W], "dtype": "float32",
                  "layout": "NCHW RGB", "scale": "pixel/255", "batch": "dynamic"},
        "output": {"name": "logits", "shape": [1, len(CLASSES)], "dtype": "float32"},
        "heldout": {"accuracy": round(acc, 4), "accuracy_onnxruntime": round(onnx_acc, 4),
                    "per_class": per, "confusion_matrix": cm.tolist(),
                    "confusion_matrix_rows": "true class", "confusion_matrix_columns": "predicted class"},
        "train_accuracy_eval_mode_every_5th": round(train_acc, 4),
        "samples": {"train": int(len(ytr)), "heldout": int(len(yte)),
                    "train_per_class": args.train_per_class, "heldout_per_class": args.heldout_per_class},
        "split": desc,
        "seed": args.seed, "epochs": args.epochs, "parameters": int(n_params),
        "training_log": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in e.items()}
                         for e in log],
        "time_s": {"render_or_load": round(t_render, 1), "train": round(t_train, 1),
                   "total": round(time.time() - t0, 1)},
        "threads": args.threads,
        "export": {"opset": 17, "max_abs_diff_torch_vs_ort": worst,
                   "max_abs_diff_fused_torch_vs_ort": worst_fused, "checked_samples": int(len(check_idx))},
        "inference_onnxruntime_1_thread": timing,
        "cpu": cpu_name(),
        "sanity": {"clean_frames_not_ok": [f["id"] for f in bad],
                   "rust_test_degradations_wrong": [(r["id"], r["degradation"], r["predicted"]) for r in rbad]},
        "sweeps": sweeps,
        "versions": versions(),
        "render_version": RENDER_VERSION,
        "onnx_bytes": onnx_path.stat().st_size,
        "onnx_sha256": sha256_file(onnx_path),
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(f"wrote {onnx_path} ({metrics['onnx_bytes']} B, sha256 {metrics['onnx_sha256']}), "
          f"metrics.json, sanity.json in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
