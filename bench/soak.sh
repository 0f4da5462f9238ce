#!/usr/bin/env bash
# Soak test of convergence under faults: concurrent writers on a small id
# space while the gateway is killed with SIGKILL and restarted, the backup
# goes away and comes back, and the primary's answers are cut off; ends
# with an independent full-scan equality check of both clusters.
#
#   bench/soak.sh [SECONDS] [PRIMARY:BACKUP]    (default 120 es7:os2)
#
# Uses the clusters of `scripts/dev up` when they run (.tandem/env), else
# the test harness starts its own.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${TANDEM_CACHE:-$HOME/.cache/tandem}/target}
[[ -f $ROOT/.tandem/env ]] && source "$ROOT/.tandem/env"
export TANDEM_SOAK_SECS=${1:-120}
export TANDEM_SOAK_PAIR=${2:-es7:os2}
cd "$ROOT"
exec cargo test -p tandem-integration --test convergence -- --ignored --nocapture \
  soak_with_kills_backup_outages_and_lost_answers
