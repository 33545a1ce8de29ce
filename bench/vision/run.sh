#!/usr/bin/env bash
# The vision benchmark (BENCHMARKS.md): covermap's vision stage and a Python reference doing the
# same steps with OpenCV and onnxruntime on the same models, side by side in one run, each pinned
# to one core, on a 1080p and a 4K street frame.
#
#   bench/vision/run.sh [REPEAT]     (default 5 runs per image, after one warm-up)
set -euo pipefail
cd "$(dirname "$0")/../.."
repeat=${1:-5}
models=$(models/fetch | tail -1 | sed -n 's/^models ready in //p')
venv="${XDG_CACHE_HOME:-$HOME/.cache}/covermap/bench-vision"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q onnxruntime==1.32.0 opencv-python-headless==5.0.0.93 numpy==2.4.6
fi
cargo build --release -q
work=$(mktemp -d /tmp/covermap-vision-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=testdata/camera/mapillary_tools/DSC00001.JPG
cp "$src" "$work/4k.jpg"
"$venv/bin/python" -c "import cv2; cv2.imwrite('$work/1080p.jpg', cv2.resize(cv2.imread('$src'), (1920, 1080), interpolation=cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 92])"
echo "== $(nproc) cores; one core each (taskset -c 0); $repeat runs per image after a warm-up"
taskset -c 0 target/release/covermap vision bench --repeat "$repeat" "$work/1080p.jpg" "$work/4k.jpg" | tee "$work/rust.jsonl"
taskset -c 0 "$venv/bin/python" bench/vision/reference.py "$models" "$repeat" "$work/1080p.jpg" "$work/4k.jpg" | tee "$work/py.jsonl"
"$venv/bin/python" - "$work/rust.jsonl" "$work/py.jsonl" <<'PY'
import json, sys
rust = [json.loads(l) for l in open(sys.argv[1])]
py = [json.loads(l) for l in open(sys.argv[2])]
stages = ["decode", "resize", "quality", "faces", "plates", "blur_encode"]
print("| frame | impl | " + " | ".join(stages) + " | total ms | frames/s/core |")
print("|---" * (len(stages) + 4) + "|")
for r, p in zip(rust, py):
    name = f"{r['width']}×{r['height']}"
    for x in (r, p):
        print(f"| {name} | {x['impl']} | " + " | ".join(f"{x['ms'][s]:.1f}" for s in stages)
              + f" | {x['total_ms']:.1f} | {x['fps']:.2f} |")
    print(f"| {name} | speed-up | | | | | | | {p['total_ms'] / r['total_ms']:.2f}× | |")
PY
# The worker judges a drive's frames in parallel, one ONNX Runtime thread per frame.
cores=$(nproc)
echo "== frames in parallel on all $cores cores (covermap vision bench --threads $cores)"
target/release/covermap vision bench --repeat "$repeat" --threads "$cores" "$work/1080p.jpg" "$work/4k.jpg" \
  | "$venv/bin/python" -c "
import json, sys
for l in sys.stdin:
    r = json.loads(l)
    print(f\"{r['width']}×{r['height']}: {r['parallel']['fps']:.2f} frames/s on {r['parallel']['threads']} threads ({r['fps']:.2f} on one)\")"
