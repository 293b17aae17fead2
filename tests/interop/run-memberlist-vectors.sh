#!/usr/bin/env bash
# Build tests/interop/memberlist-vectors against Debian's memberlist 0.2.2 (GOPATH mode) and
# write its traffic to core/src/wire/hashicorp/vectors/memberlist-0.2.2.txt (or $1).
#
#   apt-get install golang-go golang-github-hashicorp-memberlist-dev
#   bash tests/interop/run-memberlist-vectors.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../../core/src/wire/hashicorp/vectors/memberlist-0.2.2.txt}"
gopath="$(mktemp -d)"
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/memberlist-vectors"
cp "$here/memberlist-vectors/main.go" "$gopath/src/memberlist-vectors/"
GOPATH="$gopath:/usr/share/gocode" GO111MODULE=off GOFLAGS=-mod=mod go build -o "$gopath/mv" memberlist-vectors
"$gopath/mv" > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $(grep -vc '^#' "$out") records to $out"
