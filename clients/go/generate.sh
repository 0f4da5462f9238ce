#!/usr/bin/env bash
# Regenerates the Go code of the tandem.v1 contract (package tandemv1) from
# ../../proto with pinned, locally installed tools:
#
#   buf                 @bufbuild/buf on npm          (compiles the .proto files)
#   protoc-gen-go       google.golang.org/protobuf    (messages)
#   protoc-gen-go-grpc  google.golang.org/grpc/cmd/protoc-gen-go-grpc (stubs)
#
# Usage: clients/go/generate.sh [OUT_DIR]
# OUT_DIR defaults to clients/go; the code lands in OUT_DIR/tandemv1. Tools are
# installed on first use into $TANDEM_CACHE (default $HOME/.cache/tandem).
set -euo pipefail

BUF_VERSION=1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here}
cache=${TANDEM_CACHE:-$HOME/.cache/tandem}
gobin="$cache/go-bin"
bufdir="$cache/go/buf-$BUF_VERSION"

mkdir -p "$out" "$gobin"
out=$(cd "$out" && pwd)

# Installs a Go plugin at an exact version unless that version is already
# there (`go version -m` reads the module version built into the binary).
install_plugin() {
  local name=$1 pkg=$2 version=$3
  if [[ -x "$gobin/$name" ]] &&
    go version -m "$gobin/$name" 2>/dev/null | grep -qE "^\s+mod\s+\S+\s+$version(\s|$)"; then
    return
  fi
  echo "installing $name $version into $gobin" >&2
  GOBIN="$gobin" GOFLAGS=-mod=mod go install "$pkg@$version"
}

install_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

if [[ ! -x "$bufdir/node_modules/.bin/buf" ]]; then
  echo "installing buf $BUF_VERSION into $bufdir" >&2
  npm install --silent --no-audit --no-fund --prefix "$bufdir" "@bufbuild/buf@$BUF_VERSION" >&2
fi

rm -rf "$out/tandemv1"
cd "$root"
PATH="$gobin:$PATH" "$bufdir/node_modules/.bin/buf" generate proto \
  --template "$here/buf.gen.yaml" --output "$out"
