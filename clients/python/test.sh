#!/usr/bin/env bash
# Checks the Python SDK end to end:
#   1. installs the pinned tools (requirements-dev.txt) into a cached venv,
#      $HOME/.cache/tandem/python-venv (or $TANDEM_PYTHON_VENV);
#   2. regenerates tandem.v1 into a temp dir and fails on any difference
#      with the committed code (drift check);
#   3. type-checks the SDK and the smoke test (mypy --strict);
#   4. builds the wheel and installs it into a temp dir;
#   5. runs tests/smoke.py with that install against the control plane at
#      TANDEM_SDK_ENDPOINT (token TANDEM_SDK_TOKEN), registering the
#      Elasticsearch 7 node at TANDEM_SDK_CLUSTER_URL.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${TANDEM_SDK_ENDPOINT:?set TANDEM_SDK_ENDPOINT to the control plane, http://host:port}"
: "${TANDEM_SDK_TOKEN:?set TANDEM_SDK_TOKEN to the control plane token}"
: "${TANDEM_SDK_CLUSTER_URL:?set TANDEM_SDK_CLUSTER_URL to an Elasticsearch 7 node}"

step() { echo "python sdk: $*" >&2; }
die() { echo "python sdk: FAILED: $*" >&2; exit 1; }

# shellcheck source=tools/venv.sh
source "$here/tools/venv.sh"
ensure_venv
py="$VENV/bin/python"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step "drift check (regenerating tandem.v1 from proto/)"
"$here/generate.sh" "$tmp/gen"
diff -r -x __pycache__ "$here/src/tandem/v1" "$tmp/gen/tandem/v1" >"$tmp/drift.diff" \
  || { head -n 40 "$tmp/drift.diff" >&2; die "src/tandem/v1 differs from proto/: run clients/python/generate.sh and commit"; }

step "type check (mypy --strict)"
(cd "$here" && "$VENV/bin/mypy" --cache-dir "$VENV/.mypy_cache" src/tandem tests/smoke.py)

step "building and installing the wheel"
# Build from a copy so the work tree gets no build/ or egg-info.
mkdir -p "$tmp/src"
(cd "$here" && tar --exclude=__pycache__ --exclude=build --exclude='*.egg-info' -cf - pyproject.toml README.md src) \
  | tar -xf - -C "$tmp/src"
"$py" -m pip wheel --quiet --no-deps --no-build-isolation -w "$tmp/dist" "$tmp/src" >/dev/null
"$py" -m pip install --quiet --no-deps --target "$tmp/site" "$tmp"/dist/tandem_sdk-*.whl
for f in tandem/py.typed tandem/v1/__init__.py tandem/v1/cluster_pb2.pyi tandem/v1/cluster_pb2_grpc.pyi; do
  [[ -f "$tmp/site/$f" ]] || die "the wheel lacks $f"
done

step "smoke test against $TANDEM_SDK_ENDPOINT"
export PYTHONPATH="$tmp/site" PYTHONDONTWRITEBYTECODE=1
[[ $("$py" -c 'import tandem; print(tandem.__file__)') == "$tmp/site/"* ]] \
  || die "the smoke test would not run against the built wheel"
"$py" "$here/tests/smoke.py"
