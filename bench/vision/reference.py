"""The vision stage's steps in Python with OpenCV and onnxruntime, on the same models and sizes
as covermap's (vision/src), for bench/vision/run.sh: one JSON line per image with the mean
milliseconds of each stage, one thread.

Usage: reference.py MODELS_DIR REPEAT IMAGE...
"""

import json
from pathlib import Path
import math
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort

cv2.setNumThreads(1)


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.log_severity_level = 3
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def round32(v):
    return max(1, round(v / 32)) * 32


def nms(boxes, iou):
    boxes = sorted(boxes, key=lambda b: -b[4])
    kept = []
    for b in boxes:
        ok = True
        for k in kept:
            w = max(0.0, min(b[2], k[2]) - max(b[0], k[0]))
            h = max(0.0, min(b[3], k[3]) - max(b[1], k[1]))
            inter = w * h
            union = (b[2] - b[0]) * (b[3] - b[1]) + (k[2] - k[0]) * (k[3] - k[1]) - inter
            if inter / max(union, 1e-6) >= iou:
                ok = False
                break
        if ok:
            kept.append(b)
    return kept


def faces(sess, rgb):
    h, w = rgb.shape[:2]
    s = min(1024.0 / max(w, h), 2.0)
    iw, ih = round32(w * s), round32(h * s)
    x = cv2.resize(rgb, (iw, ih), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    x = x.transpose(2, 0, 1)[None]
    heat, scale, off, _ = sess.run(["537", "538", "539", "540"], {"input.1": x})
    sx, sy = w / iw, h / ih
    boxes = []
    for r, c in zip(*np.where(heat[0, 0] >= 0.35)):
        s0, s1 = math.exp(scale[0, 0, r, c]) * 4, math.exp(scale[0, 1, r, c]) * 4
        x1 = (c + off[0, 1, r, c] + 0.5) * 4 - s1 / 2
        y1 = (r + off[0, 0, r, c] + 0.5) * 4 - s0 / 2
        boxes.append([x1 * sx, y1 * sy, (x1 + s1) * sx, (y1 + s0) * sy, float(heat[0, 0, r, c])])
    return nms(boxes, 0.3)


def priors(w, h):
    out = []
    for step, sizes in ((8, (24, 48)), (16, (96, 192)), (32, (384, 768))):
        for r in range(math.ceil(h / step)):
            for c in range(math.ceil(w / step)):
                for s in sizes:
                    out.append(((c + 0.5) * step / w, (r + 0.5) * step / h, s / w, s / h))
    return np.array(out, dtype=np.float32)


def plates(sess, rgb, prior_cache={}):
    h, w = rgb.shape[:2]
    s = min(max(min(720.0 / min(w, h), 2.0), 1.0), 1920.0 / max(w, h))
    iw, ih = round32(w * s), round32(h * s)
    x = cv2.resize(rgb[:, :, ::-1], (iw, ih), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    x -= np.array([104, 117, 123], dtype=np.float32)
    loc, conf, _ = sess.run(None, {"image": x.transpose(2, 0, 1)[None]})
    if (iw, ih) not in prior_cache:
        prior_cache[(iw, ih)] = priors(iw, ih)
    p = prior_cache[(iw, ih)]
    keep = conf[0, :, 1] >= 0.6
    l, pr = loc[0][keep], p[keep]
    cx = pr[:, 0] + l[:, 0] * 0.1 * pr[:, 2]
    cy = pr[:, 1] + l[:, 1] * 0.1 * pr[:, 3]
    bw = pr[:, 2] * np.exp(l[:, 2] * 0.2)
    bh = pr[:, 3] * np.exp(l[:, 3] * 0.2)
    boxes = [[(a - c / 2) * w, (b - d / 2) * h, (a + c / 2) * w, (b + d / 2) * h, float(sc)]
             for a, b, c, d, sc in zip(cx, cy, bw, bh, conf[0, keep, 1])]
    return nms(boxes, 0.4)


def quality_model(sess, rgb):
    """The trained quality model (models/quality): the whole frame at 384×216, RGB in 0–1."""
    x = cv2.resize(rgb, (384, 216), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    logits = sess.run(None, {"frame": np.ascontiguousarray(x.transpose(2, 0, 1)[None])})[0][0]
    e = np.exp(logits - logits.max())
    return e / e.sum()


def quality(rgb):
    h, w = rgb.shape[:2]
    g = cv2.cvtColor(cv2.resize(rgb, (640, h * 640 // w)) if w > 640 else rgb, cv2.COLOR_RGB2GRAY)
    p5, p50, p95 = np.percentile(g, (5, 50, 95))
    clipped = float((g >= 250).mean())
    lap = cv2.Laplacian(g, cv2.CV_64F).var()
    soft = cv2.Laplacian(cv2.GaussianBlur(g, (0, 0), 1.5), cv2.CV_64F).var()
    gx = cv2.Sobel(g, cv2.CV_64F, 1, 0)
    gy = cv2.Sobel(g, cv2.CV_64F, 0, 1)
    ex, ey = float((gx * gx).sum()), float((gy * gy).sum())
    small = cv2.cvtColor(cv2.resize(rgb, (32, 32)), cv2.COLOR_RGB2GRAY).astype(np.float64)
    dct = cv2.dct(small)[:8, :8].flatten()
    phash = int("".join("1" if v > np.median(dct[1:]) else "0" for v in dct), 2)
    return p50, clipped, lap / max(soft, 1e-6), max(ex / max(ey, 1e-6), ey / max(ex, 1e-6)), phash


def blur(rgb, boxes):
    h, w = rgb.shape[:2]
    for x1, y1, x2, y2, _ in boxes:
        bw, bh = x2 - x1, y2 - y1
        a, b = int(max(0, x1 - bw * 0.2)), int(max(0, y1 - bh * 0.2))
        c, d = int(min(w, math.ceil(x2 + bw * 0.2))), int(min(h, math.ceil(y2 + bh * 0.2)))
        if c > a and d > b:
            sigma = max(max(c - a, d - b) / 6.0, 2.0)
            rgb[b:d, a:c] = cv2.GaussianBlur(rgb[b:d, a:c], (0, 0), sigma)
    return rgb


def main():
    models, repeat, images = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    fs, ps = session(f"{models}/centerface.onnx"), session(f"{models}/clp_det.onnx")
    qs = session(str(Path(__file__).resolve().parents[2] / "models/quality/quality_v1.onnx"))
    for path in images:
        data = np.fromfile(path, dtype=np.uint8)
        totals = dict.fromkeys(("decode", "resize", "quality", "faces", "plates", "blur_encode"), 0.0)
        for i in range(repeat + 1):
            t = time.perf_counter()
            lap = {}

            def mark(name):
                nonlocal t
                now = time.perf_counter()
                lap[name] = (now - t) * 1000
                t = now

            rgb = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            mark("decode")
            h, w = rgb.shape[:2]
            g = cv2.resize(rgb, (640, h * 640 // w), interpolation=cv2.INTER_LINEAR)
            mark("resize")
            quality(rgb)
            quality_model(qs, rgb)
            mark("quality")
            f = faces(fs, rgb)
            mark("faces")
            p = plates(ps, rgb)
            mark("plates")
            out = blur(rgb, f + p)
            cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            mark("blur_encode")
            if i > 0:  # the first run warms up
                for k in totals:
                    totals[k] += lap[k]
        ms = {k: round(v / repeat, 2) for k, v in totals.items()}
        total = sum(ms.values())
        print(json.dumps({"impl": "python-opencv-onnxruntime", "path": path, "width": w, "height": h,
                          "ms": ms, "total_ms": round(total, 2), "fps": round(1000 / total, 2)}))


if __name__ == "__main__":
    main()
