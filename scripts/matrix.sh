#!/usr/bin/env bash
# The whole version matrix: the operator's workflow (register, paused task,
# full copy, start, lag 0, comparison MATCH, cutover, rollback, equality
# after each step) for every ordered pair of the given flavors, on real
# nodes started here. CI runs a subset (integration/tests/version_matrix.rs).
#
#   scripts/matrix.sh                    every flavor node.sh lists
#   scripts/matrix.sh es6 es7 os2        these flavors only
#   TANDEM_MATRIX_PAIRS=es7:os2 scripts/matrix.sh es7 os2   chosen pairs
#
# Prints one line per pair with its time, and a summary; exits non-zero when
# a pair fails. State lives in $TANDEM_STATE (default .tandem-matrix/).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export TANDEM_STATE=${TANDEM_STATE:-$ROOT/.tandem-matrix}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${TANDEM_CACHE:-$HOME/.cache/tandem}/target}
flavors=("$@")
if [[ ${#flavors[@]} -eq 0 ]]; then
  mapfile -t flavors < <("$ROOT/scripts/search/node.sh" flavors | awk '{print $1}')
fi
export TANDEM_FLAVORS="${flavors[*]}"
if [[ -z ${TANDEM_MATRIX_PAIRS:-} ]]; then
  pairs=()
  for s in "${flavors[@]}"; do
    for t in "${flavors[@]}"; do
      [[ $s == "$t" ]] || pairs+=("$s:$t")
    done
  done
  TANDEM_MATRIX_PAIRS=$(IFS=,; echo "${pairs[*]}")
fi
export TANDEM_MATRIX_PAIRS

started=$(date +%s)
"$ROOT/scripts/dev" up
# shellcheck disable=SC1091
source "$TANDEM_STATE/env"
echo "flavors: ${flavors[*]}" >&2
echo "pairs:   $TANDEM_MATRIX_PAIRS" >&2
rc=0
cargo test -p tandem-integration --test version_matrix \
  version_matrix_pairs_from_the_environment -- --nocapture 2>&1 \
  | tee "$TANDEM_STATE/matrix.log" | grep -E '^matrix |panicked|test result' || rc=$?
grep -q 'test result: ok' "$TANDEM_STATE/matrix.log" || rc=1
echo "matrix: $(grep -c '^matrix ' "$TANDEM_STATE/matrix.log" || true) pairs passed in $(( $(date +%s) - started )) s (log: $TANDEM_STATE/matrix.log)" >&2
exit $rc
