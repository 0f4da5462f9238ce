#!/usr/bin/env bash
# Generates the tandem.v1 modules of the Python SDK from proto/tandem/v1:
# messages (*_pb2.py), gRPC stubs (*_pb2_grpc.py), their type stubs (*.pyi,
# by mypy-protobuf) and tandem/v1/__init__.py re-exporting them.
#
#   clients/python/generate.sh          regenerate src/tandem/v1 in place
#   clients/python/generate.sh DIR      write DIR/tandem/v1 instead (test.sh
#                                       uses this to check for drift)
#
# The tools come from requirements-dev.txt (pinned), installed by
# tools/venv.sh into a cached venv; protoc is the one grpcio-tools bundles.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tools/venv.sh
source "$here/tools/venv.sh"
ensure_venv

dest=${1:-$here/src}
out="$dest/tandem/v1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$root/proto"
protos=(tandem/v1/*.proto)
mkdir -p "$work/tandem/v1"
"$VENV/bin/python" -m grpc_tools.protoc -I. \
  --plugin=protoc-gen-mypy="$VENV/bin/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$VENV/bin/protoc-gen-mypy_grpc" \
  --python_out="$work" --grpc_python_out="$work" \
  --mypy_out=quiet:"$work" --mypy_grpc_out=quiet:"$work" \
  --include_imports --descriptor_set_out="$work/descriptors.pb" \
  "${protos[@]}"
"$VENV/bin/python" "$here/tools/write_init.py" "$work/descriptors.pb" "$work/tandem/v1/__init__.py"

# Replace the whole directory so files of removed protos disappear too.
rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$work/tandem/v1" "$out"
