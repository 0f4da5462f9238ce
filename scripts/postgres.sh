#!/usr/bin/env bash
# Start / stop a throwaway PostgreSQL server from Debian's server binaries.
#
#   scripts/postgres.sh start <state-dir>   # prints the database URL last
#   scripts/postgres.sh stop  <state-dir>
#   scripts/postgres.sh createdb <state-dir> <name>   # another database
#
# The server listens on a free loopback port, keeps everything in
# <state-dir>, and runs as the `postgres` system user when invoked as root
# (initdb refuses to run as root). The server binaries are installed with
# apt-get when missing.
set -euo pipefail

usage() { echo "usage: $0 start|stop <state-dir> | createdb <state-dir> <name>" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
cmd=$1
state=$(mkdir -p "$2" && cd "$2" && pwd)
data="$state/data"
log="$state/postgres.log"

find_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -x "$dir/pg_ctl" ]] && { echo "$dir"; return 0; }
  done
  return 1
}

ensure_installed() {
  if ! find_bin >/dev/null; then
    echo "postgres: server binaries missing; installing the Debian package" >&2
    local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Run a command as the postgres user when we are root.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    ensure_installed
    bin=$(find_bin)
    if [[ -f "$state/url" ]] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
      cat "$state/url"; exit 0
    fi
    if [[ $(id -u) -eq 0 ]]; then
      chown -R postgres: "$state"
      runuser -u postgres -- test -x "$state" || {
        echo "postgres: user 'postgres' cannot reach $state; make its parent directories traversable (chmod o+x)" >&2
        exit 1
      }
    fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
      pwfile="$state/pwfile"
      echo tandem > "$pwfile"
      [[ $(id -u) -eq 0 ]] && chown postgres: "$pwfile"
      as_pg "$bin/initdb" -D "$data" -U tandem --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$state/initdb.log" 2>&1 \
        || { cat "$state/initdb.log" >&2; exit 1; }
      rm -f "$pwfile"
    fi
    port=$(free_port)
    as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $state -c fsync=on -c max_connections=200" start >/dev/null \
      || { tail -n 30 "$log" >&2; exit 1; }
    # Create the application database (ignore "already exists" on restart).
    as_pg "$bin/psql" -h "$state" -p "$port" -U tandem -d postgres -qtAc \
      "SELECT 1 FROM pg_database WHERE datname='tandem'" | grep -q 1 \
      || as_pg "$bin/createdb" -h "$state" -p "$port" -U tandem tandem
    url="postgres://tandem:tandem@127.0.0.1:$port/tandem"
    echo "$url" > "$state/url"
    echo "$url"
    ;;
  createdb)
    # createdb STATE_DIR NAME: a new empty database on the running server.
    name=${3:?usage: postgres.sh createdb STATE_DIR NAME}
    bin=$(find_bin)
    [[ -f "$state/url" ]] || { echo "postgres: not running in $state" >&2; exit 1; }
    port=$(sed -E 's#.*:([0-9]+)/.*#\1#' "$state/url")
    as_pg "$bin/createdb" -h "$state" -p "$port" -U tandem "$name"
    ;;
  stop)
    bin=$(find_bin) || exit 0
    if [[ -f "$data/postmaster.pid" ]]; then
      as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -f "$state/url"
    ;;
  *) usage ;;
esac
