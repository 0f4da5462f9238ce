# Sourced by generate.sh and test.sh: makes sure Node.js 20+ is present and
# node_modules matches package-lock.json (npm ci with a download cache outside
# the repository, $TANDEM_CACHE_DIR or ~/.cache/tandem, that CI can keep).
#
# Expects SDK_DIR (the clients/typescript directory) to be set.

ensure_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "error: node and npm (Node.js 20 or later) are required" >&2
    return 1
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  if ((major < 20)); then
    echo "error: Node.js 20 or later is required, found $(node --version)" >&2
    return 1
  fi
}

ensure_node_modules() {
  ensure_node
  local cache="${TANDEM_CACHE_DIR:-$HOME/.cache/tandem}/npm"
  local stamp="$SDK_DIR/node_modules/.tandem-package-lock.json"
  # Reinstall only when package-lock.json changed since the last npm ci.
  if [[ -f $stamp ]] && cmp -s "$stamp" "$SDK_DIR/package-lock.json"; then
    return 0
  fi
  echo "installing node_modules (npm ci, cache $cache)" >&2
  (cd "$SDK_DIR" && npm ci --cache "$cache" --prefer-offline --no-audit --no-fund --loglevel=error)
  cp "$SDK_DIR/package-lock.json" "$stamp"
}
