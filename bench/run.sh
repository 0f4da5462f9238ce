#!/usr/bin/env bash
# Tandem benchmarks: the gateway against nginx and against direct access, on
# the same real search node, in one run. Writes report.md + results.json into
# the run directory and prints the report. See docs/benchmarks.md.
#
#   bench/run.sh
#   BENCH_DURATION=10 BENCH_ROUNDS=1 bench/run.sh          # quicker
#
# Starts (and stops on exit, whatever happens): an Elasticsearch 7 node
# (primary) and an OpenSearch 2 node (backup) via scripts/search/node.sh,
# nginx (Debian package) as a plain proxy_pass with upstream keepalive, and
# two release gateways: A (replay paused) for the write/read runs, B (fresh
# queue) for the replay runs. Load comes from wrk (Debian package) with
# bench/bulk.lua and bench/read.lua; bench/bench.py drives the runs.
#
# Knobs (environment):
#   BENCH_DURATION=10        seconds per measured run (each after BENCH_WARMUP=3 s of warm-up)
#   BENCH_CONNECTIONS=8      concurrent connections; BENCH_THREADS=2 wrk threads
#   BENCH_ROUNDS=3           rounds of direct / nginx / gateway (order rotates every round)
#   BENCH_LAT_DURATION=8     BENCH_LAT_ROUNDS=2: the 1-connection (unloaded latency) runs
#   BENCH_DOCS_PER_BULK=100  BENCH_DOC_BYTES=200
#   BENCH_READ_DOCS=10000    documents preloaded for the read runs
#   BENCH_REPLAY_DOCS=100000 BENCH_REPLAY_ROUNDS=3  BENCH_REPLAY_BATCH=1000 (= replay.max_batch_ops)
#   BENCH_LIVE_ROUNDS=2      bulk runs with the replayer running (each next to an nginx run)
#   BENCH_PHASES=bulk,bulk1,read,read1,memory,replay,live
#   BENCH_MEMORY_CONNECTIONS=200  the memory phase: mixed reads and bulks, gateway RSS sampled
#   BENCH_GLOBAL_WARMUP=10   seconds of load per path before the first measurement
#   BENCH_MAX_OTHER=0.5      a run during which other processes used more CPU cores than this is
#   BENCH_RETRY_BUDGET=6     measured once more, at most this many times per benchmark run
#   BENCH_QUEUE=1            also run `cargo bench --bench queue`, BENCH_QUEUE_RUNS=3 times (0: skip)
#   BENCH_GATEWAY_THREADS=2  BENCH_NGINX_WORKERS=2  BENCH_SEARCH_HEAP=1g
#   BENCH_DIR                run directory (default ~/.cache/tandem/bench/<date>; local disk)
#   BENCH_KEEP_DATA=0        1 keeps node data and queues after the run (logs and results are always kept)
#   BENCH_REV=HEAD           commit to build and measure (from a `git archive` snapshot in
#                            ~/.cache/tandem/bench/src), or `worktree` for the work tree as it is
#   BENCH_SKIP_BUILD=0       1 uses the release binary already in $CARGO_TARGET_DIR
#   BENCH_HOLD=0             1 starts everything, writes $BENCH_DIR/env and waits (manual runs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tandem/target}
export BENCH_DIR=${BENCH_DIR:-$HOME/.cache/tandem/bench/$(date +%Y%m%d-%H%M%S)}
export BENCH_GATEWAY_THREADS=${BENCH_GATEWAY_THREADS:-2}
export BENCH_NGINX_WORKERS=${BENCH_NGINX_WORKERS:-2}
export BENCH_SEARCH_HEAP=${BENCH_SEARCH_HEAP:-1g}
BENCH_QUEUE=${BENCH_QUEUE:-1}
BENCH_KEEP_DATA=${BENCH_KEEP_DATA:-0}
BENCH_SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
BENCH_REV=${BENCH_REV:-HEAD}
REPLAY_BATCH=${BENCH_REPLAY_BATCH:-1000}

log() { printf '\033[1;34m[bench]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[bench] error:\033[0m %s\n' "$*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() {
  local url=$1 what=$2 pid=${3:-}
  for _ in $(seq 150); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null && die "$what exited (see $BENCH_DIR/*.log)"
    sleep 0.2
  done
  die "$what did not answer at $url"
}

# ---------------------------------------------------------------- cleanup
PIDS=()   # gateways and nginx (their pids), stopped in reverse order
NODES=()  # search node state dirs
cleanup() {
  local rc=$? i pid
  trap - EXIT INT TERM
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for dir in "${NODES[@]}"; do
    "$ROOT/scripts/search/node.sh" stop "$dir" >/dev/null 2>&1 || true
  done
  if [[ $BENCH_KEEP_DATA != 1 && -d $BENCH_DIR ]]; then
    rm -rf "$BENCH_DIR"/es7/data "$BENCH_DIR"/os2/data "$BENCH_DIR"/gw-a/queue "$BENCH_DIR"/gw-b/queue \
      "$BENCH_DIR"/nginx/tmp "$BENCH_DIR"/tandem-gateway
  fi
  log "stopped everything; results and logs in $BENCH_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ tools
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
if ((${#need_apt[@]})); then
  log "installing ${need_apt[*]} (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)

mkdir -p "$BENCH_DIR"
log "run directory: $BENCH_DIR"

# The gateway is built from a committed revision (a `git archive` snapshot),
# so a run measures a known commit even while the work tree is being edited.
if [[ $BENCH_REV == worktree ]]; then
  SRC=$ROOT
  export BENCH_GIT_REV="work tree at $(git -C "$ROOT" rev-parse --short HEAD)$(
    git -C "$ROOT" status --porcelain -- dataplane Cargo.lock Cargo.toml | grep -q . && echo ' (modified)')"
else
  commit=$(git -C "$ROOT" rev-parse --verify "$BENCH_REV^{commit}") || die "unknown revision $BENCH_REV"
  SRC=$HOME/.cache/tandem/bench/src
  if [[ $(cat "$SRC/.bench-rev" 2>/dev/null) != "$commit" ]]; then
    log "snapshot of $BENCH_REV ($commit) in $SRC"
    rm -rf "$SRC" && mkdir -p "$SRC"
    git -C "$ROOT" archive --format=tar "$commit" | tar -x -C "$SRC"
    echo "$commit" > "$SRC/.bench-rev"
  fi
  export BENCH_GIT_REV="$(git -C "$ROOT" log -1 --format='%h %s' "$commit")"
fi
if [[ $BENCH_SKIP_BUILD != 1 ]]; then
  log "building the release gateway ($BENCH_GIT_REV)"
  (cd "$SRC" && cargo build --release --quiet -p tandem-gateway --bin tandem-gateway)
  if [[ $BENCH_QUEUE == 1 ]]; then
    log "building the queue bench"
    (cd "$SRC" && cargo bench --quiet -p tandem-gateway --bench queue --no-run)
  fi
fi
# A private copy: the shared target dir may be rebuilt by someone else mid-run.
cp "$CARGO_TARGET_DIR/release/tandem-gateway" "$BENCH_DIR/tandem-gateway" || die "no release gateway in $CARGO_TARGET_DIR/release"
GATEWAY=$BENCH_DIR/tandem-gateway

# Queue bench first, with nothing else of ours running: it measures the disk.
# fdatasync latency on a shared VM disk swings a lot, so it runs several times.
if [[ $BENCH_QUEUE == 1 ]]; then
  : > "$BENCH_DIR/queue-bench.txt"
  for i in $(seq "${BENCH_QUEUE_RUNS:-3}"); do
    log "queue bench run $i (cargo bench -p tandem-gateway --bench queue, QUEUE_BENCH_DIR=$BENCH_DIR)"
    (cd "$SRC" && QUEUE_BENCH_DIR=$BENCH_DIR cargo bench --quiet -p tandem-gateway --bench queue) \
      2>>"$BENCH_DIR/queue-bench.log" | tee -a "$BENCH_DIR/queue-bench.txt" >&2
  done
fi

# ---------------------------------------------------------- search nodes
export TANDEM_SEARCH_WATCH_PID=$$   # nodes exit by themselves if this script dies
export TANDEM_SEARCH_XMS=$BENCH_SEARCH_HEAP TANDEM_SEARCH_XMX=$BENCH_SEARCH_HEAP
log "starting es7 (primary) and os2 (backup)"
NODES+=("$BENCH_DIR/es7" "$BENCH_DIR/os2")
# The real-memory circuit breaker counts uncollected garbage under the nodes'
# SerialGC and refuses bulks with 429 once the heap fills up; off for the
# benchmark (the request/in-flight breakers stay on).
"$ROOT/scripts/search/node.sh" start es7 "$BENCH_DIR/es7" -Eindices.breaker.total.use_real_memory=false >/dev/null &
es_start=$!
"$ROOT/scripts/search/node.sh" start os2 "$BENCH_DIR/os2" -Eindices.breaker.total.use_real_memory=false >/dev/null &
os_start=$!
wait "$es_start" || die "es7 did not start (see $BENCH_DIR/es7/node.log)"
wait "$os_start" || die "os2 did not start (see $BENCH_DIR/os2/node.log)"
export BENCH_ES_URL=$(cat "$BENCH_DIR/es7/url") BENCH_OS_URL=$(cat "$BENCH_DIR/os2/url")
export BENCH_ES_PID=$(cat "$BENCH_DIR/es7/pid") BENCH_OS_PID=$(cat "$BENCH_DIR/os2/pid")
es_hostport=${BENCH_ES_URL#http://}

# ------------------------------------------------------------------ nginx
ngx=$BENCH_DIR/nginx
mkdir -p "$ngx/tmp"
nginx_port=$(free_port)
cat > "$ngx/nginx.conf" <<CONF
# Plain reverse proxy in front of the same ES node, upstream keep-alive on.
worker_processes $BENCH_NGINX_WORKERS;
pid $ngx/nginx.pid;
error_log $ngx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $ngx/tmp/body;
  proxy_temp_path $ngx/tmp/proxy;
  fastcgi_temp_path $ngx/tmp/fastcgi;
  uwsgi_temp_path $ngx/tmp/uwsgi;
  scgi_temp_path $ngx/tmp/scgi;
  client_max_body_size 100m;
  # Keep _bulk bodies in memory (the 16k default spools them to a temp file).
  client_body_buffer_size 1m;
  keepalive_requests 1000000;
  upstream es {
    server $es_hostport;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://es;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
"$NGINX_BIN" -p "$ngx" -e "$ngx/error.log" -c "$ngx/nginx.conf" -g 'daemon off;' &
export BENCH_NGINX_PID=$!
PIDS+=("$BENCH_NGINX_PID")
export BENCH_NGINX_URL=http://127.0.0.1:$nginx_port
wait_http "$BENCH_NGINX_URL/" nginx "$BENCH_NGINX_PID"

# --------------------------------------------------------------- gateways
start_gateway() { # name -> sets GW_URL, GW_ADMIN, GW_PID
  local name=$1 port admin
  port=$(free_port); admin=$(free_port)
  mkdir -p "$BENCH_DIR/$name"
  cat > "$BENCH_DIR/$name/gateway.toml" <<TOML
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
threads = $BENCH_GATEWAY_THREADS
data_dir = "$BENCH_DIR/$name"

[primary]
url = "$BENCH_ES_URL"

[backup]
url = "$BENCH_OS_URL"

[replay]
start_paused = true
max_batch_ops = $REPLAY_BATCH
TOML
  RUST_LOG=${RUST_LOG:-warn} "$GATEWAY" --config "$BENCH_DIR/$name/gateway.toml" \
    >"$BENCH_DIR/$name.log" 2>&1 &
  GW_PID=$!
  PIDS+=("$GW_PID")
  GW_URL=http://127.0.0.1:$port
  GW_ADMIN=http://127.0.0.1:$admin
  wait_http "$GW_ADMIN/ready" "gateway $name" "$GW_PID"
}
start_gateway gw-a
export BENCH_GW_URL=$GW_URL BENCH_GW_ADMIN=$GW_ADMIN BENCH_GW_PID=$GW_PID
start_gateway gw-b
export BENCH_GW2_URL=$GW_URL BENCH_GW2_ADMIN=$GW_ADMIN BENCH_GW2_PID=$GW_PID
log "direct $BENCH_ES_URL | nginx $BENCH_NGINX_URL | gateway A $BENCH_GW_URL | gateway B $BENCH_GW2_URL | backup $BENCH_OS_URL"

# ----------------------------------------------------------- measurements
if [[ ${BENCH_HOLD:-0} == 1 ]]; then
  # Manual runs: keep everything up until Ctrl-C / SIGTERM.
  export -p | grep -E '^declare -x BENCH_' > "$BENCH_DIR/env"
  log "holding; environment in $BENCH_DIR/env (source it); Ctrl-C or kill $$ to stop"
  sleep infinity &
  PIDS+=($!)
  wait $! || true
  exit 0
fi
python3 "$ROOT/bench/bench.py"
