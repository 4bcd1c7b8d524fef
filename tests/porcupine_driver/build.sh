#!/usr/bin/env bash
# Build pcheck against a checkout of Porcupine's sources, offline:
#   bash tests/porcupine_driver/build.sh PORCUPINE_SOURCES OUTPUT
# (Go from Debian's golang-go; no module download: Porcupine has no dependencies.)
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: build.sh PORCUPINE_SOURCES OUTPUT" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
out=$(realpath -m "$2")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/main.go" "$here/go.mod" "$work/"
cd "$work"
go mod edit -replace "github.com/anishathalye/porcupine=$src"
GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local go build -o "$out" .
