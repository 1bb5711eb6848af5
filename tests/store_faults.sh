#!/usr/bin/env bash
# Faults (issue 5), on one backend: `store_faults.sh CLI sqlite|postgres`.
#  1. `facelogin enroll` killed with SIGKILL at random moments: afterwards every user that exists
#     has all of its templates (3, all-or-nothing) and they decrypt (the user verifies); users
#     enrolled before are intact.
#  2. A server killed with SIGKILL in the middle of a login attempt: the database still opens and
#     nothing committed is lost.
#  3. PostgreSQL only: the database restarts under a running server. Meanwhile the server answers
#     503 (readiness and new attempts), never a decision; afterwards it serves again by itself.
# Skips (77) without ../shared/data, or without PostgreSQL for the postgres case (CI: failure).
set -euo pipefail
cli="$1"
backend="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nuaa="${FACELOGIN_DATA_DIR:-$here/../../shared/data}/nuaa/ClientRaw"
if [[ ! -d "$nuaa" ]]; then
  echo "store_faults: $nuaa not found: skipping"
  exit 77
fi
work="$(mktemp -d /tmp/facelogin-faults.XXXXXX)"
chmod 755 "$work"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill -9 "$server_pid" 2>/dev/null || true
  if [[ -f "$work/pg/PG_VERSION" ]]; then
    bash "$here/../tools/pg_cluster.sh" stop "$work/pg" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
export FACELOGIN_MODEL_DIR="${FACELOGIN_MODEL_DIR:-$here/../models}"
export FACELOGIN_KEY=5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a
fl=("$cli" --home "$work/home")
if [[ "$backend" == postgres ]]; then
  if [[ ! -x /usr/lib/postgresql/15/bin/pg_ctl ]]; then
    echo "store_faults: PostgreSQL 15 is not installed: skipping"
    [[ -n "${CI:-}" ]] && exit 1
    exit 77
  fi
  # Its own cluster: this test restarts it, which must not disturb other tests.
  port=5432  # names the Unix socket in its own directory (tools/pg_cluster.sh)
  conninfo="$(bash "$here/../tools/pg_cluster.sh" start "$work/pg" "$port")"
  fl+=(--database "$conninfo")
fi
frames() { ls "$nuaa/$1/$2"_*.jpg | sort -t_ -k5 -n | head -n "$3"; }
mapfile -t alice < <(frames 0001 0001_00_00_01 3)
mapfile -t bob < <(frames 0002 0002_01_00_01 3)
fail() { echo "store_faults ($backend): FAILED: $*" >&2; exit 1; }

echo "== $backend: enrolments killed with SIGKILL"
"${fl[@]}" enroll --user before "${alice[@]}" >/dev/null
for i in $(seq 1 12); do
  "${fl[@]}" enroll --user "killed$i" "${bob[@]}" >/dev/null 2>&1 &
  pid=$!
  sleep "0.$(printf %02d $((RANDOM % 50)))"  # model loading, analysis or the write (~0.45 s)
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # The enrolment is all-or-nothing: remove a completed one so the next can enrol this face.
  "${fl[@]}" users remove "killed$i" >/dev/null 2>&1 && echo "   killed$i had completed"
done
"${fl[@]}" enroll --user after "${bob[@]}" >/dev/null
list="$("${fl[@]}" --json users list)"
python3 - "$list" <<'PY' || fail "users after the kills: $list"
import json, sys
doc = json.loads(sys.argv[1])
users = doc["users"] if isinstance(doc, dict) else doc
names = {u["name"]: u for u in users}
assert set(names) == {"before", "after"}, sorted(names)
assert all(u["templates"] == 3 for u in users), users
PY
"${fl[@]}" verify --user before "${alice[0]}" >/dev/null || fail "before no longer verifies"
"${fl[@]}" verify --user after "${bob[0]}" >/dev/null || fail "after does not verify"

start_server() {
  "${fl[@]}" --json serve --listen 127.0.0.1:0 --data "$work/home" --workers 1 >"$work/serve.out" 2>"$work/serve.err" &
  server_pid=$!
  for _ in $(seq 1 100); do
    port_line="$(grep -o '"port": *[0-9]*' "$work/serve.out" 2>/dev/null || true)"
    [[ -n "$port_line" ]] && break
    sleep 0.2
  done
  [[ -n "$port_line" ]] || fail "the server did not start: $(cat "$work/serve.err")"
  url="http://127.0.0.1:${port_line##*:}"
  url="${url// /}"
}
http_status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

echo "== $backend: a server killed with SIGKILL during a login"
start_server
attempt="$(curl -s -X POST -H 'Content-Type: application/json' -d '{"user":"before","session":"cookie"}' "$url/api/v1/login/attempts")"
id="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$attempt")"
nonce="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["nonce"])' "$attempt")"
curl -s -o /dev/null -X POST -H 'Content-Type: image/jpeg' -H "X-Attempt-Nonce: $nonce" \
  --data-binary @"${alice[1]}" "$url/api/v1/login/attempts/$id/frames" &
sleep 0.05
kill -9 "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""
"${fl[@]}" verify --user before "${alice[0]}" >/dev/null || fail "the store lost 'before' after a server was killed"

if [[ "$backend" == postgres ]]; then
  echo "== postgres: the database restarts under a running server"
  start_server
  [[ "$(http_status "$url/readyz")" == 200 ]] || fail "not ready before the restart"
  bash "$here/../tools/pg_cluster.sh" stop "$work/pg"
  ready="$(http_status "$url/readyz")"
  [[ "$ready" == 503 ]] || fail "readiness during the outage: HTTP $ready (want 503)"
  start_status="$(http_status -X POST -H 'Content-Type: application/json' -d '{"user":"before","session":"cookie"}' "$url/api/v1/login/attempts")"
  [[ "$start_status" == 503 ]] || fail "a login start during the outage: HTTP $start_status (want 503)"
  bash "$here/../tools/pg_cluster.sh" start "$work/pg" "$port" >/dev/null
  for _ in $(seq 1 50); do
    [[ "$(http_status "$url/readyz")" == 200 ]] && break
    sleep 0.2
  done
  [[ "$(http_status "$url/readyz")" == 200 ]] || fail "the server did not recover after the restart"
  start_status="$(http_status -X POST -H 'Content-Type: application/json' -d '{"user":"before","session":"cookie"}' "$url/api/v1/login/attempts")"
  [[ "$start_status" == 201 ]] || fail "a login start after the restart: HTTP $start_status"
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
fi
echo "store_faults ($backend): ok"
