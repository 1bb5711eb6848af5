#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan + UBSan) in ./build-fuzz, writes their seed
# corpora, runs each target and prints, per target, the executions, executions per second, the
# corpus size and the crashes found. Exits non-zero if any target found a crash (or leak,
# timeout, out-of-memory). See docs/fuzzing.md.
#
#   bash tools/fuzz.sh                        # every target for 10 s (the default)
#   bash tools/fuzz.sh --seconds 600          # a long run: ten minutes each
#   bash tools/fuzz.sh --runs 1000000         # a fixed number of executions each
#   bash tools/fuzz.sh --runs 10000000 --seconds 3600   # whichever comes first (issue 17's bar)
#   bash tools/fuzz.sh --targets api_fuzzer,config_fuzzer --seconds 60
#   bash tools/fuzz.sh --build-only
#   bash tools/fuzz.sh --build-dir build-asan --seconds 5   # targets of a tree configured already
#   bash tools/fuzz.sh --toolchain-only    # installs clang + libFuzzer if root; fails without them
#
# Corpora grow in build-fuzz/corpus/<target> across runs; crash reproducers go to
# build-fuzz/findings/<target>/ (replay: build-fuzz/fuzz/<target> FILE); logs to
# build-fuzz/logs/<target>.log. api_fuzzer and socket_fuzzer load the models from
# FACELOGIN_MODEL_DIR (default ./models: run tools/setup.sh first).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

seconds=10
seconds_given=0
runs=""
only=""
build_only=0
skip_if_unavailable=0
build_dir=""
toolchain_only=0
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; seconds_given=1; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --targets) only="$2"; shift 2 ;;
    --build-only) build_only=1; shift ;;
    # A tree already configured with -DFACELOGIN_BUILD_FUZZERS=ON (tools/test.sh's sanitizer
    # build, which holds the tests and the fuzz targets): build the targets there, no configure.
    --build-dir) build_dir="$2"; shift 2 ;;
    --toolchain-only) toolchain_only=1; shift ;;
    # tools/test.sh: without clang/libFuzzer and without root to install them, say so and pass.
    --skip-if-unavailable) skip_if_unavailable=1; shift ;;
    *) echo "usage: $0 [--seconds N] [--runs N] [--targets a,b] [--build-only] [--build-dir DIR]" \
            "[--toolchain-only] [--skip-if-unavailable]" >&2
       exit 2 ;;
  esac
done

targets=(decode_fuzzer api_fuzzer socket_fuzzer auth_fuzzer config_fuzzer lfw_pairs_fuzzer
         dataset_dirs_fuzzer model_files_fuzzer embedding_cache_fuzzer)
if [[ -n "$only" ]]; then
  IFS=, read -r -a targets <<<"$only"
fi

# clang and its libFuzzer runtime (Debian: clang, libclang-rt-14-dev).
fuzzer_runtime() {
  local dir
  dir="$(clang++ -print-resource-dir 2>/dev/null)/lib/linux"
  [[ -f "$dir/libclang_rt.fuzzer-x86_64.a" ]]
}
if ! command -v clang++ >/dev/null || ! fuzzer_runtime; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "fuzz: clang++ with libFuzzer is missing: sudo apt-get install -y clang libclang-rt-14-dev" >&2
    ((skip_if_unavailable && !toolchain_only)) && { echo "fuzz: skipping the fuzz targets" >&2; exit 0; }
    exit 1
  fi
  echo "== installing clang and libFuzzer (Debian clang, libclang-rt-14-dev)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang \
    libclang-rt-14-dev >/dev/null
fi
((toolchain_only)) && exit 0

jobs="$(nproc)"
start=$(date +%s)
if [[ -n "$build_dir" ]]; then
  build="$(cd "$build_dir" && pwd)"
  if ! grep -q '^FACELOGIN_BUILD_FUZZERS:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
    echo "fuzz: $build_dir is not configured with -DFACELOGIN_BUILD_FUZZERS=ON" >&2
    exit 2
  fi
  echo "== building the fuzz targets in $build_dir"
else
  build="$root/build-fuzz"
  echo "== building the fuzz targets in build-fuzz (clang, ASan + UBSan, tests off)"
  cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DFACELOGIN_BUILD_FUZZERS=ON \
    -DFACELOGIN_BUILD_TESTS=OFF >/dev/null
fi
# Only the fuzz targets, their seed writers and the core they need: not the CLI or benches.
cmake --build "$build" -j"$jobs" --target fuzzers
echo "   built in $(($(date +%s) - start)) s"
((build_only)) && exit 0

export FACELOGIN_MODEL_DIR="${FACELOGIN_MODEL_DIR:-$root/models}"
# Leaks are checked (a leak is a finding); UBSan findings abort, so libFuzzer saves the input.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# Per target: dictionary and largest input.
dict_of() {
  case "$1" in
    decode_fuzzer) echo fuzz/image.dict ;;
    api_fuzzer | socket_fuzzer) echo fuzz/api.dict ;;
    config_fuzzer) echo fuzz/config.dict ;;
    lfw_pairs_fuzzer) echo fuzz/lfw_pairs.dict ;;
    dataset_dirs_fuzzer) echo fuzz/dataset_dirs.dict ;;
    auth_fuzzer) echo fuzz/auth.dict ;;
    *) echo "" ;;
  esac
}
max_len_of() {
  case "$1" in
    decode_fuzzer | api_fuzzer | socket_fuzzer) echo 65536 ;;
    *) echo 8192 ;;
  esac
}

# Seeds: checked-in files (fuzz/seeds/<target>) and the seed writers.
seed() {
  local target="$1" corpus="$2"
  mkdir -p "$corpus"
  case "$target" in
    decode_fuzzer) "$build/fuzz/decode_fuzz_seeds" "$corpus" >/dev/null ;;
    api_fuzzer) "$build/fuzz/api_fuzz_seeds" "$corpus" "$build/corpus/.socket-seeds" >/dev/null ;;
    socket_fuzzer) "$build/fuzz/api_fuzz_seeds" "$build/corpus/.api-seeds" "$corpus" >/dev/null ;;
    *)
      local name="${target%_fuzzer}"
      if [[ -d "fuzz/seeds/$name" ]]; then
        cp -n fuzz/seeds/"$name"/* "$corpus"/
      fi
      ;;
  esac
}

mkdir -p "$build/logs" "$build/corpus"
summary=()
failed=0
for target in "${targets[@]}"; do
  bin="$build/fuzz/$target"
  corpus="$build/corpus/$target"
  findings="$build/findings/$target"
  log="$build/logs/$target.log"
  mkdir -p "$findings"
  seed "$target" "$corpus"
  before=$(find "$findings" -type f | wc -l)
  args=("$corpus" "-artifact_prefix=$findings/" "-print_final_stats=1" "-timeout=60"
        "-rss_limit_mb=4096" "-max_len=$(max_len_of "$target")")
  dict="$(dict_of "$target")"
  [[ -n "$dict" ]] && args+=("-dict=$dict")
  [[ -n "$runs" ]] && args+=("-runs=$runs")
  if [[ -z "$runs" ]] || ((seconds_given)); then
    args+=("-max_total_time=$seconds")
  fi
  echo "== $target"
  rc=0
  "$bin" "${args[@]}" >"$log" 2>&1 || rc=$?
  # Scratch folders of targets that died (a crash skips their clean-up at exit).
  for dir in /dev/shm/facelogin-fuzz-* /tmp/facelogin-fuzz-*; do
    [[ -d "$dir" ]] && ! kill -0 "${dir##*-}" 2>/dev/null && rm -rf "$dir"
  done
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  size=$(find "$corpus" -type f | wc -l)
  crashes=$(($(find "$findings" -type f | wc -l) - before))
  if ((rc != 0 && crashes == 0)); then
    crashes=1  # died without an artifact (e.g. the harness could not start): see the log
  fi
  if ((crashes > 0)); then
    failed=1
    echo "   FINDING: see $log and $findings/"
    grep -m3 -E "ERROR: |contract broken|runtime error" "$log" | sed 's/^/   /' || true
  fi
  summary+=("$(printf '%-24s %12s %8s %8s %8s' "$target" "${execs:-?}" "${rate:-?}" "$size" "$crashes")")
done

printf '\n%-24s %12s %8s %8s %8s\n' target executions exec/s corpus crashes
printf '%s\n' "${summary[@]}"
exit "$failed"
