#!/usr/bin/env bash
# A short load test on loopback (`facelogin loadtest`): two clients, eight complete logins with
# real NUAA frames, every one must be accepted without an HTTP error. It reports speed but never
# fails on it. Skips (77) without ../shared/data. Arguments after the binary go to `loadtest`
# (e.g. `--processes --servers 2`).
set -euo pipefail
cli="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nuaa="${FACELOGIN_DATA_DIR:-$here/../../shared/data}/nuaa/ClientRaw/0001"
if [[ ! -d "$nuaa" ]]; then
  echo "loadtest_smoke: $nuaa not found: skipping"
  exit 77
fi
frames() { ls "$nuaa"/0001_00_00_"$1"_*.jpg | sort -t_ -k5 -n; }
# shellcheck disable=SC2046
exec "$cli" loadtest --enrol $(frames 01) --login $(frames 02) --clients 2 --logins 8 "${@:2}"
