#!/usr/bin/env bash
# Runs every test: sets up (packages, models) if needed, builds with warnings as errors, runs the
# suite, then builds and runs it again under AddressSanitizer + UndefinedBehaviorSanitizer, then
# runs each fuzz target for a few seconds.
#
#   bash tools/test.sh              # both builds
#   bash tools/test.sh --no-sanitize
#
# Tests on real faces read ../shared (FACELOGIN_DATA_DIR) and skip, saying so, where it is absent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
sanitize=1
for arg in "$@"; do
  case "$arg" in
    --no-sanitize) sanitize=0 ;;
    *) echo "usage: $0 [--no-sanitize]" >&2; exit 2 ;;
  esac
done
jobs="$(nproc)"

bash tools/setup.sh
export FACELOGIN_MODEL_DIR="${FACELOGIN_MODEL_DIR:-$root/models}"

# The web app's end-to-end test drives Debian's Chromium with npm's playwright-core (pinned in
# tests/e2e/package-lock.json). Without them it is skipped, except under CI.
if ! command -v chromium >/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "== installing chromium for the end-to-end test"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "test: chromium is not installed (sudo apt-get install chromium): the e2e test will skip" >&2
  fi
fi
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)

# The shared store suites and the two-server test run on PostgreSQL too: a throwaway cluster on
# loopback (tools/pg_cluster.sh), removed at exit. FACELOGIN_TEST_POSTGRES set by the caller wins.
if [[ -z "${FACELOGIN_TEST_POSTGRES:-}" ]]; then
  pg_dir="$(mktemp -d /tmp/facelogin-pg.XXXXXX)/cluster"
  trap 'bash tools/pg_cluster.sh stop "$pg_dir" 2>/dev/null || true; rm -rf "$(dirname "$pg_dir")"' EXIT
  chmod 755 "$(dirname "$pg_dir")"  # the cluster's owner (postgres, when run as root) enters it
  echo "== PostgreSQL test cluster (Unix socket in $pg_dir)"
  FACELOGIN_TEST_POSTGRES="$(bash tools/pg_cluster.sh start "$pg_dir" 5432)"
  export FACELOGIN_TEST_POSTGRES
fi

echo "== tests (Release, -Werror)"
ctest --test-dir build --output-on-failure -j"$jobs"

# The sanitizer build is also the fuzz build: with clang (installed here when root, as chromium
# above) it holds the tests and the libFuzzer targets, so one instrumented compile of the core
# serves both. Without clang it is a g++ build of the tests only and the fuzz step is skipped.
fuzz_seconds="${FACELOGIN_FUZZ_SECONDS:-5}"
if ((sanitize)); then
  asan_cxx=g++
  asan_fuzz=OFF
  if bash tools/fuzz.sh --toolchain-only; then
    asan_cxx=clang++
    asan_fuzz=ON
  fi
  # A tree configured with the other compiler cannot be switched in place.
  cached="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' build-asan/CMakeCache.txt 2>/dev/null || true)"
  if [[ -n "$cached" && "$(basename "$cached")" != "$asan_cxx" ]]; then
    rm -rf build-asan
  fi
  echo "== tests under ASan + UBSan ($asan_cxx)"
  # -O1, as the AddressSanitizer documentation advises for usable speed (assertions stay on:
  # Debug): at -O0 the tests took 1.4 to 3.5 times as long (three measured, docs/fuzzing.md).
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER="$asan_cxx" \
    -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" \
    -DFACELOGIN_WERROR=ON -DFACELOGIN_SANITIZE=ON -DFACELOGIN_BUILD_FUZZERS="$asan_fuzz" \
    -DFACELOGIN_BUILD_COMPARISONS=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  # Left to the Release run above, because what they add is not memory or UB checking and they
  # are the longest under the sanitizers (minutes each, some alone on the machine): the LFW
  # accuracy report of the UltraFace fallback (the detector's code runs in the other UltraFace
  # tests), the SIGKILL fault scripts (store crash safety, not memory), the two-process load
  # smoke (the in-process one stays), and the Python converter tests (no C++).
  asan_skip='^(UltrafaceDetector\.ReportsLfwAccuracyAgainstYunet|store_faults_.*|'
  asan_skip+='loadtest_processes_smoke|convert_tfjs_graph|convert_tflite)$'
  # LeakSanitizer included: a leak fails the test that made it.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" -E "$asan_skip"

  # Every libFuzzer target for a few seconds (tools/fuzz.sh, docs/fuzzing.md): their seeds and
  # whatever the corpus of earlier runs holds must not crash. FACELOGIN_FUZZ_SECONDS=0 skips it.
  if [[ $asan_fuzz == ON ]] && ((fuzz_seconds > 0)); then
    echo "== fuzz targets, ${fuzz_seconds} s each"
    bash tools/fuzz.sh --build-dir build-asan --seconds "$fuzz_seconds"
  elif ((fuzz_seconds > 0)); then
    echo "test: no clang with libFuzzer (sudo apt-get install clang libclang-rt-14-dev):" \
      "the fuzz targets are skipped" >&2
  fi
fi
