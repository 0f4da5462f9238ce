#!/usr/bin/env bash
# Fails when the committed build output of the console differs from what its
# sources give: rebuilds console/ (with ../proto) from scratch in a temporary
# directory with build.sh, then compares dist/ and src/gen/ with the ones
# here. CI runs it; fix a failure by running console/build.sh and committing.
#
#   console/check.sh
set -euo pipefail

CONSOLE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$CONSOLE_DIR/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The sources only: no node_modules, no build output, no generated code.
mkdir -p "$tmp/console"
(cd "$CONSOLE_DIR" && tar --exclude=./node_modules --exclude=./dist --exclude=./src/gen --exclude=./test-output -cf - .) |
  (cd "$tmp/console" && tar -xf -)
cp -r "$ROOT/proto" "$tmp/proto"

# Install here once (npm ci from the lockfile, skipped when up to date) and
# share node_modules with the temporary copy.
"$CONSOLE_DIR/build.sh" --deps-only
ln -s "$CONSOLE_DIR/node_modules" "$tmp/console/node_modules"

"$tmp/console/build.sh"

status=0
for dir in dist src/gen; do
  if ! diff -r "$CONSOLE_DIR/$dir" "$tmp/console/$dir" >"$tmp/diff.txt" 2>&1; then
    echo "console/$dir differs from what its sources build:" >&2
    head -20 "$tmp/diff.txt" | cut -c1-200 >&2
    status=1
  fi
done
if ((status)); then
  echo "run console/build.sh and commit console/dist and console/src/gen" >&2
  exit 1
fi
echo "console: dist/ and src/gen/ match their sources"
