#!/usr/bin/env bash
# Regenerates src/gen/ from proto/tandem/v1/*.proto with ts-proto, run by buf
# (both pinned in package.json and installed into node_modules).
#
#   clients/typescript/generate.sh             # rewrite src/gen/
#   clients/typescript/generate.sh --out DIR   # write under DIR instead
#                                              # (DIR/clients/typescript/src/gen)
set -euo pipefail

SDK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SDK_DIR/../.." && pwd)

out=""
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/ensure-deps.sh
source "$SDK_DIR/scripts/ensure-deps.sh"
ensure_node_modules

# buf.gen.yaml names its input (proto/) and plugin relative to the repository
# root.
cd "$ROOT"
args=(generate --template clients/typescript/buf.gen.yaml)
if [[ -n $out ]]; then
  args+=(--output "$out")
fi
"$SDK_DIR/node_modules/.bin/buf" "${args[@]}"
