#!/usr/bin/env bash
# Official Python Elasticsearch / OpenSearch clients for the tests that drive
# a gateway with them (integration/tests/python_clients.rs).
#
#   scripts/pyclients.sh NAME...    make sure each client's venv is ready and
#                                   print its interpreter, one line per NAME
#   scripts/pyclients.sh list       print the known NAMEs
#
# NAME is a requirement file of integration/pyclients/ without .txt
# (elasticsearch7, elasticsearch8, opensearch2); every package in it is
# pinned. Each venv lives outside the clone, in
# ${TANDEM_CACHE:-~/.cache/tandem}/pyclients/NAME, and is rebuilt only when
# its requirement file changes (its sha256 is stamped in the venv), so a
# second run costs a hash. Concurrent runs wait for each other (flock).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQUIREMENTS=$ROOT/integration/pyclients
CACHE=${TANDEM_CACHE:-$HOME/.cache/tandem}/pyclients

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# python3 with the venv module and pip bootstrap (Debian ships them apart).
ensure_python() {
  if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    log "installing python3 and python3-venv"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null \
      || die "python3 with the venv module is needed and could not be installed"
  fi
}

ensure_venv() {
  local name=$1 requirements venv want
  requirements=$REQUIREMENTS/$name.txt
  [[ -f $requirements ]] || die "unknown client $name (have: $(list | tr '\n' ' '))"
  venv=$CACHE/$name
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  mkdir -p "$CACHE"
  (
    flock 9
    if [[ -x $venv/bin/python && "$(cat "$venv/.tandem-requirements" 2>/dev/null)" == "$want" ]]; then
      exit 0
    fi
    ensure_python
    log "installing the $name client into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
      -r "$requirements" >&2 || { rm -rf "$venv"; die "pip could not install $requirements"; }
    # The stamp comes last: an interrupted install is redone next time.
    echo "$want" >"$venv/.tandem-requirements"
  ) 9>"$CACHE/.$name.lock"
  echo "$venv/bin/python"
}

list() {
  local file
  for file in "$REQUIREMENTS"/*.txt; do basename "$file" .txt; done
}

[[ $# -gt 0 ]] || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
if [[ $1 == list ]]; then list; exit 0; fi
for name in "$@"; do ensure_venv "$name"; done
