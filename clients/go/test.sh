#!/usr/bin/env bash
# Checks the Go SDK: the committed generated code matches a fresh generation
# (drift check), everything builds and passes vet and gofmt, the unit tests
# pass, and the smoke tests pass against a real control plane given by
#
#   TANDEM_SDK_ENDPOINT     http://host:port of the control plane
#   TANDEM_SDK_TOKEN        its bearer token
#   TANDEM_SDK_CLUSTER_URL  an Elasticsearch 7.x node it can probe
#
# Tools (buf, protoc-gen-go, protoc-gen-go-grpc) are installed on first use
# into $TANDEM_CACHE (default $HOME/.cache/tandem); Go modules go to the usual
# Go module cache. Needs go (>= 1.26) and npm on PATH.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

die() { echo "clients/go/test.sh: $*" >&2; exit 1; }

command -v go >/dev/null || die "go is not installed (Go 1.26 or newer is needed)"
command -v npm >/dev/null || die "npm is not installed (it installs buf, the .proto compiler)"
: "${TANDEM_SDK_ENDPOINT:?TANDEM_SDK_ENDPOINT must name the control plane (http://host:port)}"
: "${TANDEM_SDK_TOKEN:?TANDEM_SDK_TOKEN must hold the control plane token}"
: "${TANDEM_SDK_CLUSTER_URL:?TANDEM_SDK_CLUSTER_URL must name an Elasticsearch 7.x node}"

echo "== drift check: regenerating tandemv1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
./generate.sh "$tmp"
if ! diff -r tandemv1 "$tmp/tandemv1"; then
  die "clients/go/tandemv1 differs from the code generate.sh produces: run clients/go/generate.sh and commit the result"
fi

echo "== build, vet, gofmt"
go mod verify >/dev/null
go build ./...
go vet ./...
unformatted=$(gofmt -l .)
[[ -z "$unformatted" ]] || die "not gofmt-formatted: $unformatted"

echo "== unit and smoke tests against $TANDEM_SDK_ENDPOINT"
# -count=1: never report a cached result, the control plane is the subject.
if ! go test -count=1 -v ./... 2>&1 | tee "$tmp/test.log"; then
  die "go test failed"
fi
# The smoke tests skip themselves only without TANDEM_SDK_ENDPOINT; make sure
# none was skipped for another reason.
if grep -q -- '--- SKIP' "$tmp/test.log"; then
  die "some tests were skipped although TANDEM_SDK_ENDPOINT is set"
fi
