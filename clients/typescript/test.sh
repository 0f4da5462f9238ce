#!/usr/bin/env bash
# Checks the TypeScript SDK: installs the pinned toolchain (npm ci, cached in
# $TANDEM_CACHE_DIR or ~/.cache/tandem), fails if regenerating the code from
# proto/ differs from the committed src/gen/, type-checks and builds it
# (tsc, strict), then runs test/smoke.ts against a real control plane:
#
#   TANDEM_SDK_ENDPOINT=http://127.0.0.1:50051 TANDEM_SDK_TOKEN=... \
#   TANDEM_SDK_CLUSTER_URL=http://127.0.0.1:9200 clients/typescript/test.sh
set -euo pipefail

: "${TANDEM_SDK_ENDPOINT:?set TANDEM_SDK_ENDPOINT to the control plane URL, http://host:port}"
: "${TANDEM_SDK_TOKEN:?set TANDEM_SDK_TOKEN to the control plane bearer token}"
: "${TANDEM_SDK_CLUSTER_URL:?set TANDEM_SDK_CLUSTER_URL to an Elasticsearch 7.17 node URL}"

SDK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$SDK_DIR"

# shellcheck source=scripts/ensure-deps.sh
source scripts/ensure-deps.sh
ensure_node_modules

echo "== drift check: regenerate from proto/ and compare with src/gen/"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./generate.sh --out "$tmp"
if ! diff -ru src/gen "$tmp/clients/typescript/src/gen"; then
  echo "error: src/gen/ is out of date with proto/; run clients/typescript/generate.sh and commit" >&2
  exit 1
fi

# One compile of src/ and test/ with the package's settings (strict,
# declarations) into build/; `npm run build` emits the same src/ into dist/.
echo "== tsc (strict): type-check and compile the package and the smoke test"
node_modules/.bin/tsc -p tsconfig.test.json

echo "== smoke test against $TANDEM_SDK_ENDPOINT"
node build/test/smoke.js
