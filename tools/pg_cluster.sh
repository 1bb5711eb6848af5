#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for tests and local trials (never for production: it trusts
# every local connection). It listens on a Unix socket in DIR only, so no TCP port can clash with
# other tests; PORT only names the socket.
#
#   tools/pg_cluster.sh start DIR [PORT]   creates DIR (if new) and starts the server; prints the
#                                          connection string on stdout
#   tools/pg_cluster.sh stop DIR           stops it (DIR is kept; delete it to start afresh)
#
# Needs Debian's postgresql-15. PostgreSQL refuses to run as root: as root the cluster belongs to
# the `postgres` system user that the package creates.
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
cmd="${1:-}"
dir="${2:-}"
port="${3:-55432}"
if [[ -z "$cmd" || -z "$dir" ]]; then
  echo "usage: $0 start|stop DIR [PORT]" >&2
  exit 2
fi
if [[ ! -x "$bin/pg_ctl" ]]; then
  echo "pg_cluster: $bin/pg_ctl not found: apt-get install postgresql-15" >&2
  exit 1
fi
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
case "$cmd" in
  start)
    if [[ ! -f "$dir/PG_VERSION" ]]; then
      mkdir -p "$dir"
      [[ "$(id -u)" == 0 ]] && chown postgres: "$dir"
      as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
        >"$dir.initdb.log" 2>&1 || { cat "$dir.initdb.log" >&2; exit 1; }
    fi
    as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses= -c fsync=off -c max_connections=200" \
      start >/dev/null
    echo "host=$dir port=$port user=postgres dbname=postgres"
    ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$dir" -w -t 60 -m fast stop >/dev/null
    ;;
  *)
    echo "usage: $0 start|stop DIR [PORT]" >&2
    exit 2
    ;;
esac
