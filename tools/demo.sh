#!/usr/bin/env bash
# The first run: enrol a person from a photo, then verify and identify other photos, with a
# throw-away state directory so that it can be repeated. Uses the real photos in
# ../shared/data/media/face_recognition (or FACELOGIN_DATA_DIR/media/face_recognition).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
photos="${FACELOGIN_DATA_DIR:-$root/../shared/data}/media/face_recognition"
if [[ ! -d "$photos" ]]; then
  echo "demo: $photos not found; set FACELOGIN_DATA_DIR to the shared data folder" >&2
  exit 1
fi
export FACELOGIN_HOME="$(mktemp -d)"
export FACELOGIN_MODEL_DIR="${FACELOGIN_MODEL_DIR:-$root/models}"
trap 'rm -rf "$FACELOGIN_HOME"' EXIT
fl=./build/facelogin
run() { printf '\n$ %s\n' "$*"; "$@"; }

run $fl enroll --user obama "$photos/obama.jpg"
run $fl enroll --user biden "$photos/biden.jpg"
run $fl users list
run $fl verify --user obama "$photos/obama2.jpg" "$photos/knn_examples/test/obama1.jpg"
set +e
run $fl verify --user obama "$photos/knn_examples/train/biden/biden2.jpg"
echo "(exit code $?: 1 means 'not this person')"
set -e
run $fl identify "$photos/obama_small.jpg"
