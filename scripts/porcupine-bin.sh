#!/usr/bin/env bash
# Builds tools/porcupine (the robustness histories' second checker, on
# github.com/anishathalye/porcupine from the Go module proxy) into a cache
# outside the clone:
#
#   ${LOGBOOK_CACHE:-$HOME/.cache/logbook}/porcupine-<hash>/logbook-porcupine
#
# <hash> is taken from the program's sources (main.go, go.mod, go.sum), so an
# edit builds a new binary and an unchanged tree reuses the one there (a second
# run takes well under a second). The last line of stdout is the binary's path:
#   bin=$(scripts/porcupine-bin.sh | tail -1)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tools/porcupine"
CACHE="${LOGBOOK_CACHE:-$HOME/.cache/logbook}"
export CGO_ENABLED=0
export GOFLAGS="-trimpath -buildvcs=false -mod=readonly"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

if ! command -v go >/dev/null; then
    echo "porcupine-bin: FAILED: go is not installed (https://go.dev/dl/); the robustness checks need it" >&2
    exit 1
fi
hash=$(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" | sha256sum | cut -c1-12)
dir="$CACHE/porcupine-$hash"
bin="$dir/logbook-porcupine"
if [[ -x "$bin" ]]; then
    echo "porcupine-bin: $bin is there"
else
    echo "porcupine-bin: building $bin"
    mkdir -p "$dir"
    (cd "$SRC" && go build -ldflags "-s -w" -o "$bin.tmp" .)
    mv "$bin.tmp" "$bin"
fi
echo "$bin"
