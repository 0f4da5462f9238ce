#!/usr/bin/env bash
# Builds the Tandem web console reproducibly into console/dist/:
#   1. npm ci when node_modules is missing or package-lock.json changed
#      (exact versions from the lockfile; download cache outside the repo),
#   2. buf generate: the browser client of proto/tandem/v1 into src/gen/,
#   3. tsc --noEmit: strict type check of src/ and test/,
#   4. esbuild: dist/app.js and dist/app.css (minified, stable names), and
#      dist/index.html copied from src/.
# The same sources give byte-identical output (check.sh relies on it).
#
#   console/build.sh               # everything
#   console/build.sh --deps-only   # only make node_modules match the lockfile
set -euo pipefail

CONSOLE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$CONSOLE_DIR"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "error: node and npm (Node.js 20 or later) are required" >&2
  exit 1
fi
if (($(node -p 'process.versions.node.split(".")[0]') < 20)); then
  echo "error: Node.js 20 or later is required, found $(node --version)" >&2
  exit 1
fi

stamp=node_modules/.tandem-package-lock.json
if [[ ! -f $stamp ]] || ! cmp -s "$stamp" package-lock.json; then
  cache="${TANDEM_CACHE_DIR:-$HOME/.cache/tandem}/npm"
  echo "installing node_modules (npm ci, cache $cache)" >&2
  npm ci --cache "$cache" --prefer-offline --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
if [[ ${1:-} == --deps-only ]]; then
  exit 0
fi

node_modules/.bin/buf generate
node_modules/.bin/tsc -p tsconfig.json
node_modules/.bin/tsc -p tsconfig.test.json

rm -rf dist
mkdir -p dist
node_modules/.bin/esbuild src/main.tsx \
  --bundle --minify --format=esm --target=es2022 --platform=browser \
  --jsx=automatic --jsx-import-source=preact \
  --legal-comments=none --charset=utf8 --log-level=warning \
  --outfile=dist/app.js
node_modules/.bin/esbuild src/app.css \
  --bundle --minify --legal-comments=none --charset=utf8 --log-level=warning \
  --outfile=dist/app.css
cp src/index.html dist/index.html
ls -l dist | awk 'NR > 1 { printf "  %-12s %8d bytes\n", $9, $5 }' >&2
