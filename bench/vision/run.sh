#!/usr/bin/env bash
# The vision benchmark (BENCHMARKS.md, "Privacy at twice the speed"): covermap's frame stage
# beside the Python reference a user would write (bench/vision/reference.py: OpenCV +
# onnxruntime, CenterFace at 640 px, PP-OCRv6 det small at 960 px, blur, JPEG q90), on the same
# frames, each pinned to one core, in one run; then both measured on the labelled privacy set
# (testdata/labels/privacy.json) with `covermap vision eval`, so speed is compared at known recall.
#
# reference.py and fetch_models.sh are copies of the shared harness (../shared/bench/vision,
# 2026-11-24); its README there says what each stage does and which versions it pins.
#
#   bench/vision/run.sh [REPEAT]     (default 5 passes over each set, after one warm-up)
#   COVERMAP_BIN=path/to/covermap bench/vision/run.sh    (time that binary, e.g. an older commit's)
#
# Makes, in ~/.cache/covermap-bench/vision (BENCH_CACHE overrides the root): the reference's venv
# and models, set1080/ (the two 4K street frames scaled down, the four 960x540 dashcam frames scaled
# up, JPEG q90), set4k/ (the 4K frames re-saved q90), and the run's JSON lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEAT=${1:-${REPEAT:-5}}
C=${BENCH_CACHE:-$HOME/.cache/covermap-bench}/vision
mkdir -p "$C"
PINS="opencv-python-headless==5.0.0.93 onnxruntime==1.32.0 numpy==2.4.6 onnx==1.23.2"
V=$C/venv
if [ ! -x "$V/bin/python" ] || ! "$V/bin/python" - "$PINS" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for p in sys.argv[1].split():
    n, v = p.split("==")
    assert version(n) == v, (n, version(n), v)
PY
then
  rm -rf "$V"; "${PYTHON:-python3}" -m venv "$V"
  "$V/bin/pip" install -q --disable-pip-version-check $PINS
fi
PY=$V/bin/python
PY=$PY bench/vision/fetch_models.sh "$C/models" > "$C/models.log"
models=$(models/fetch | tail -1 | sed -n 's/^models ready in //p')
# COVERMAP_BIN names a covermap binary to time instead of building this checkout's.
cm=${COVERMAP_BIN:-}
if [ -z "$cm" ]; then cargo build --release -q -p covermap; cm=target/release/covermap; fi

mkdir -p "$C/set1080" "$C/set4k"
"$PY" - testdata "$C" <<'PY'
import glob, os, sys
import cv2
src, c = sys.argv[1], sys.argv[2]
q = [cv2.IMWRITE_JPEG_QUALITY, 90]
for p in sorted(glob.glob(os.path.join(src, "camera", "mapillary_tools", "DSC*.JPG"))):
    im = cv2.imread(p); n = os.path.splitext(os.path.basename(p))[0]
    assert im.shape[:2] == (2160, 3840), (p, im.shape)
    cv2.imwrite(os.path.join(c, "set4k", n + ".jpg"), im, q)
    cv2.imwrite(os.path.join(c, "set1080", n + ".jpg"), cv2.resize(im, (1920, 1080), interpolation=cv2.INTER_AREA), q)
for p in sorted(glob.glob(os.path.join(src, "images", "udacity_lanelines", "*.jpg"))):
    im = cv2.imread(p); n = os.path.splitext(os.path.basename(p))[0]
    cv2.imwrite(os.path.join(c, "set1080", n + ".jpg"), cv2.resize(im, (1920, 1080), interpolation=cv2.INTER_CUBIC), q)
PY
[ "$(ls "$C"/set1080/*.jpg | wc -l)" = 6 ] && [ "$(ls "$C"/set4k/*.jpg | wc -l)" = 2 ] \
  || { echo "run.sh: the frames in testdata/ are missing (see testdata/README.md)" >&2; exit 1; }

echo "== $(nproc) cores; each pipeline on one (taskset -c 0); $REPEAT passes per set after a warm-up"
: > "$C/covermap.jsonl"; : > "$C/reference.jsonl"
for S in set1080 set4k; do
  taskset -c 0 "$cm" --models "$models" vision bench --repeat "$REPEAT" "$C/$S"/*.jpg \
    | sed "s/^{/{\"set\":\"$S\",/" >> "$C/covermap.jsonl"
  OMP_NUM_THREADS=1 taskset -c 0 "$PY" bench/vision/reference.py --models "$C/models" --bench \
    --repeat "$REPEAT" --label "$S" "$C/$S"/*.jpg >> "$C/reference.jsonl"
done

# Recall of both on the labelled set: covermap's stage as it runs, and the reference's boxes.
labelled=$("$PY" -c "import json; print('\n'.join('testdata/' + i['file_name'] for i in json.load(open('testdata/labels/privacy.json'))['images']))")
"$PY" bench/vision/reference.py --models "$C/models" $labelled > "$C/reference-labelled.jsonl"
"$cm" --models "$models" vision eval testdata/labels/privacy.json --json > "$C/eval-covermap.json"
"$cm" vision eval testdata/labels/privacy.json --json --detections "$C/reference-labelled.jsonl" \
  --margin 0.15 > "$C/eval-reference.json"

"$PY" - "$C" <<'PY'
import json, sys
c = sys.argv[1]
cm = [json.loads(l) for l in open(f"{c}/covermap.jsonl")]
ref = {r["label"]: r for r in map(json.loads, open(f"{c}/reference.jsonl"))}
stages = ["decode", "resize", "quality", "faces", "plates", "blur_encode"]
print("| set | pipeline | " + " | ".join(stages) + " | total ms | frames/s (1 core) |")
print("|---" * (len(stages) + 4) + "|")
for s, name in (("set1080", "1080p"), ("set4k", "4K")):
    rows = [r for r in cm if r["set"] == s]
    mean = {k: sum(r["ms"][k] for r in rows) / len(rows) for k in stages}
    total = sum(r["total_ms"] for r in rows) / len(rows)
    fps = 1000.0 / total
    p = ref[s]; m = p["median_ms"]
    print(f"| {name} | covermap (mean) | " + " | ".join(f"{mean[k]:.1f}" for k in stages) + f" | {total:.1f} | {fps:.2f} |")
    print(f"| {name} | reference (median) | " + " | ".join(f"{m[k]:.1f}" for k in stages) + f" | {m['total']:.1f} | {p['frames_per_s']:.2f} |")
    print(f"| {name} | covermap ÷ reference | | | | | | | | {fps / p['frames_per_s']:.2f}× |")
print()
print("Recall on testdata/labels/privacy.json (found at IoU ≥ 0.3 / covered ≥ 90 % by the blur):")
print()
print("| class | size | labelled | covermap found | covermap covered | reference found | reference covered |")
print("|---|---|---|---|---|---|---|")
a = json.load(open(f"{c}/eval-covermap.json")); b = json.load(open(f"{c}/eval-reference.json"))
key = lambda r: (r["class"], r["size"] or "all")
rb = {key(r): r for r in b["rows"]}
for r in a["rows"]:
    t, u = r, rb[key(r)]
    print(f"| {r['class']} | {r['size'] or 'all'} | {t['labelled']} | {t['found']} | {t['covered']} | {u['found']} | {u['covered']} |")
PY
