#!/usr/bin/env bash
# Full-copy benchmark: a Tandem migration job against elasticdump, copying
# the same index between the same two real nodes (Elasticsearch 7.17 ->
# OpenSearch 2.19), in one run, rounds alternating. Prints a markdown table
# and writes results.json into the run directory. See docs/benchmarks.md.
#
#   bench/copy.sh
#   BENCH_COPY_DOCS=50000 BENCH_COPY_ROUNDS=1 bench/copy.sh    # quicker
#
# Knobs (environment):
#   BENCH_COPY_DOCS=200000   documents in the source index (1 shard, 0 replicas)
#   BENCH_DOC_BYTES=200      approximate _source size
#   BENCH_COPY_ROUNDS=2      rounds; each copies with both tools (order alternates)
#   BENCH_COPY_BATCH=1000    documents per read/write batch, for both tools
#   BENCH_COPY_SLICES=2      slices of the Tandem job (partitions copied in parallel;
#                            0: one per primary shard); elasticdump reads one scroll
#   BENCH_SEARCH_HEAP=1g     heap of each search node
#   BENCH_DIR                run directory (default ~/.cache/tandem/bench/copy-<date>)
#   ELASTICDUMP_VERSION=6.125.1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tandem/target}
BENCH_DIR=${BENCH_DIR:-$HOME/.cache/tandem/bench/copy-$(date +%Y%m%d-%H%M%S)}
DOCS=${BENCH_COPY_DOCS:-200000}
DOC_BYTES=${BENCH_DOC_BYTES:-200}
ROUNDS=${BENCH_COPY_ROUNDS:-2}
BATCH=${BENCH_COPY_BATCH:-1000}
SLICES=${BENCH_COPY_SLICES:-2}
ELASTICDUMP_VERSION=${ELASTICDUMP_VERSION:-6.125.1}
export TANDEM_SEARCH_XMS=${BENCH_SEARCH_HEAP:-1g} TANDEM_SEARCH_XMX=${BENCH_SEARCH_HEAP:-1g}

log() { printf '\033[1;34m[copy]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[copy] error:\033[0m %s\n' "$*" >&2; exit 1; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

CP_PID=
# Postgres runs as its own user when we are root: its directory must be
# reachable by it (the home directory often is not).
PG_DIR=$(mktemp -d -t tandem-copy-pg-XXXXXX)
chmod 755 "$PG_DIR"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $CP_PID ]] && kill "$CP_PID" 2>/dev/null || true
  "$ROOT/scripts/search/node.sh" stop "$BENCH_DIR/es7" >/dev/null 2>&1 || true
  "$ROOT/scripts/search/node.sh" stop "$BENCH_DIR/os2" >/dev/null 2>&1 || true
  "$ROOT/scripts/postgres.sh" stop "$PG_DIR" >/dev/null 2>&1 || true
  rm -rf "$BENCH_DIR"/es7/data "$BENCH_DIR"/os2/data "$PG_DIR"
  log "stopped everything; results in $BENCH_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$BENCH_DIR" "$BENCH_DIR/npm"
chmod 755 "$BENCH_DIR"
log "run directory: $BENCH_DIR"

log "installing elasticdump $ELASTICDUMP_VERSION (npm)"
(cd "$BENCH_DIR/npm" && npm install --silent --no-audit --no-fund \
  --cache "$HOME/.cache/tandem/npm" "elasticdump@$ELASTICDUMP_VERSION" >/dev/null)
ELASTICDUMP=$BENCH_DIR/npm/node_modules/.bin/elasticdump

log "building the release control plane and tandemctl"
(cd "$ROOT" && cargo build --release --quiet -p tandem-controlplane -p tandem-client)
BIN=$CARGO_TARGET_DIR/release

log "starting Postgres, Elasticsearch 7.17 and OpenSearch 2.19"
"$ROOT/scripts/postgres.sh" start "$PG_DIR" >/dev/null
"$ROOT/scripts/search/node.sh" start es7 "$BENCH_DIR/es7" -Eindices.breaker.total.use_real_memory=false >/dev/null &
es_start=$!
"$ROOT/scripts/search/node.sh" start os2 "$BENCH_DIR/os2" -Eindices.breaker.total.use_real_memory=false >/dev/null &
os_start=$!
wait "$es_start" && wait "$os_start" || die "a search node failed to start (logs in $BENCH_DIR)"
ES=$(cat "$BENCH_DIR/es7/url")
OS=$(cat "$BENCH_DIR/os2/url")

TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
CP_PORT=$(free_port)
TANDEM_DATABASE_URL=$(cat "$PG_DIR/url") TANDEM_AUTH_TOKEN=$TOKEN \
  TANDEM_SECRET_KEY=$(python3 -c 'import os, base64; print(base64.b64encode(os.urandom(32)).decode())') \
  "$BIN/tandem-controlplane" --listen "127.0.0.1:$CP_PORT" >"$BENCH_DIR/controlplane.log" 2>&1 &
CP_PID=$!
CTL=("$BIN/tandemctl" --endpoint "http://127.0.0.1:$CP_PORT" --token "$TOKEN")
for _ in $(seq 100); do "${CTL[@]}" health >/dev/null 2>&1 && break; sleep 0.2; done
"${CTL[@]}" cluster register source --url "$ES" >/dev/null
"${CTL[@]}" cluster register target --url "$OS" >/dev/null

log "loading $DOCS documents of ~$DOC_BYTES bytes into $ES/bench-src"
curl -fsS -XPUT "$ES/bench-src" -H 'content-type: application/json' \
  -d '{"settings":{"number_of_shards":1,"number_of_replicas":0,"refresh_interval":"-1"}}' >/dev/null
python3 - "$ES" "$DOCS" "$DOC_BYTES" <<'PY'
import json, sys, urllib.request
url, docs, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pad = "x" * max(0, size - 60)
for start in range(0, docs, 5000):
    lines = []
    for i in range(start, min(docs, start + 5000)):
        lines.append(json.dumps({"index": {"_index": "bench-src", "_id": str(i)}}))
        lines.append(json.dumps({"n": i, "name": "item-%d" % i, "pad": pad}))
    req = urllib.request.Request(url + "/_bulk", ("\n".join(lines) + "\n").encode(),
                                 {"content-type": "application/x-ndjson"})
    answer = json.load(urllib.request.urlopen(req))
    assert not answer["errors"], answer
PY
curl -fsS -XPUT "$ES/bench-src/_settings" -H 'content-type: application/json' \
  -d '{"index":{"refresh_interval":"1s"}}' >/dev/null
curl -fsS -XPOST "$ES/bench-src/_refresh" >/dev/null
curl -fsS -XPOST "$ES/bench-src/_forcemerge?max_num_segments=1" >/dev/null

count() { curl -fsS -XPOST "$1/$2/_refresh" >/dev/null; curl -fsS "$1/$2/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])'; }
now() { python3 -c 'import time; print(time.monotonic())'; }

run_elasticdump() {
  curl -fsS -XDELETE "$OS/bench-ed" >/dev/null 2>&1 || true
  local start end
  start=$(now)
  "$ELASTICDUMP" --input="$ES/bench-src" --output="$OS/bench-ed" --type=mapping >"$BENCH_DIR/elasticdump.log" 2>&1
  "$ELASTICDUMP" --input="$ES/bench-src" --output="$OS/bench-ed" --type=data --limit="$BATCH" \
    >>"$BENCH_DIR/elasticdump.log" 2>&1
  end=$(now)
  [[ $(count "$OS" bench-ed) == "$DOCS" ]] || die "elasticdump copied $(count "$OS" bench-ed) of $DOCS documents"
  python3 -c "print($end - $start)"
}

run_tandem() {
  local round=$1 start end
  curl -fsS -XDELETE "$OS/bench-src" >/dev/null 2>&1 || true
  start=$(now)
  "${CTL[@]}" migration create "copy-$round-$RANDOM" --source source --target target \
    --include bench-src --batch-size "$BATCH" --slices "$SLICES" --wait >"$BENCH_DIR/tandem-$round.log" 2>&1
  end=$(now)
  [[ $(count "$OS" bench-src) == "$DOCS" ]] || die "the migration job copied $(count "$OS" bench-src) of $DOCS documents"
  python3 -c "print($end - $start)"
}

RESULTS=()
for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then order=(tandem elasticdump); else order=(elasticdump tandem); fi
  for tool in "${order[@]}"; do
    log "round $round: $tool"
    if [[ $tool == tandem ]]; then secs=$(run_tandem "$round"); else secs=$(run_elasticdump); fi
    log "  $tool: ${secs}s"
    RESULTS+=("{\"round\": $round, \"tool\": \"$tool\", \"seconds\": $secs}")
  done
done

python3 - "$DOCS" "$DOC_BYTES" "$BATCH" "$SLICES" "$BENCH_DIR/results.json" "${RESULTS[@]}" <<'PY'
import json, statistics, sys
docs, size, batch, slices, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
runs = [json.loads(r) for r in sys.argv[6:]]
json.dump({"docs": docs, "doc_bytes": size, "batch": batch, "slices": slices, "runs": runs}, open(out, "w"), indent=2)
rounds = sorted({r["round"] for r in runs})
ratios = []
print("| round | Tandem migration job | elasticdump | Tandem / elasticdump (docs/s) |")
print("|---|---:|---:|---:|")
for n in rounds:
    t = next(r["seconds"] for r in runs if r["round"] == n and r["tool"] == "tandem")
    e = next(r["seconds"] for r in runs if r["round"] == n and r["tool"] == "elasticdump")
    ratios.append(e / t)
    print(f"| {n} | {t:.1f} s ({docs / t:,.0f} docs/s) | {e:.1f} s ({docs / e:,.0f} docs/s) | {e / t:.2f}x |")
print(f"\nmedian ratio: {statistics.median(ratios):.2f}x ({docs} docs of ~{size} B, batches of {batch}, Tandem slices {slices})")
PY
