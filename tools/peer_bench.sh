#!/usr/bin/env bash
# facelogin's per-frame pipeline next to its peers, on the same frames and the same core
# (issue 5), as a Markdown table:
#   - facelogin (YuNet + the default fusion recogniser, and with dlib ResNet alone: the
#     peers' embedding), from `facelogin bench` per frame;
#   - a face_recognition-style pipeline: dlib HOG detector (upsampled once) + 68-point shape
#     predictor + the dlib ResNet descriptor (build/facelogin_peer_dlib, Debian libdlib-dev);
#   - face-api in Node.js: @vladmandic/face-api on tfjs's WebAssembly backend, one thread
#     (bench/peers, pinned in its package-lock.json).
# Every run is pinned to CPU 0 with taskset. It measures and prints; it never fails on a time.
#
#   bash tools/peer_bench.sh [FRAME.jpg ...]     (default: 20 frames of NUAA subject 0001)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FACELOGIN_BUILD_DIR:-$root/build}"
export FACELOGIN_MODEL_DIR="${FACELOGIN_MODEL_DIR:-$root/models}"
data="${FACELOGIN_DATA_DIR:-$root/../shared/data}"
frames=("$@")
if ((${#frames[@]} == 0)); then
  mapfile -t frames < <(ls "$data"/nuaa/ClientRaw/0001/0001_00_00_01_*.jpg | sort -t_ -k5 -n | head -20)
fi
for exe in facelogin facelogin_peer_dlib; do
  [[ -x "$build/$exe" ]] || { echo "peer_bench: $build/$exe not built (bash tools/setup.sh)" >&2; exit 1; }
done
(cd "$root/bench/peers" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
pin=(taskset -c 0)

median_of() { python3 -c 'import sys; v=sorted(float(x) for x in sys.argv[1:]); print(f"{v[len(v)//2]:.1f}")' "$@"; }
facelogin_ms() {  # median over the frames of each frame's median total
  local values=()
  for f in "${frames[@]}"; do
    values+=("$("${pin[@]}" "$build/facelogin" --json ${1:+--recognizer "$1"} bench --image "$f" \
      --iterations 5 --gallery 10 | python3 -c 'import json,sys; d=json.load(sys.stdin); print([s["median_ms"] for s in d["stages"] if s["stage"]=="total"][0])')")
  done
  median_of "${values[@]}"
}
json_ms() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.1f (%d/%d faces)" % (d["median_ms"]["total"], d["faces_found"], d["frames"]))' "$1"; }

echo "Per-frame pipeline, ${#frames[@]} frames ($(python3 -c 'import sys; print(sys.argv[1])' "$(basename "${frames[0]}")") ...), CPU 0, $(date -u +%F)"
echo
echo "| pipeline | detector | embedding | median ms per frame |"
echo "|---|---|---|---|"
echo "| facelogin (default) | YuNet at 320 px | dlib ResNet + MobileFaceNet, with mirror views | $(facelogin_ms "") |"
echo "| facelogin, dlib only | YuNet at 320 px | dlib ResNet, with mirror view | $(facelogin_ms dlib-resnet-v1) |"
echo "| facelogin, dlib only, no mirror | YuNet at 320 px | dlib ResNet | $(facelogin_ms dlib-resnet-noflip-v1) |"
dlib_json="$("${pin[@]}" "$build/facelogin_peer_dlib" --model "$FACELOGIN_MODEL_DIR/dlib_resnet_v1.onnx" --repeat 3 "${frames[@]}")"
echo "| face_recognition-style (dlib, C++) | HOG, upsampled once | dlib ResNet | $(json_ms "$dlib_json") |"
faceapi_json="$("${pin[@]}" node "$root/bench/peers/faceapi.mjs" --repeat 3 "${frames[@]}")"
echo "| face-api (Node.js, tfjs wasm) | SSD MobileNet v1 | dlib ResNet | $(json_ms "$faceapi_json") |"
