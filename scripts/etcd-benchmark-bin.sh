#!/usr/bin/env bash
# Builds etcd's own load generator, `benchmark` (etcd's tools/benchmark), from
# the Go module proxy into a cache outside the clone:
#
#   ${LOGBOOK_CACHE:-$HOME/.cache/logbook}/etcd-benchmark-vX.Y.Z/benchmark
#
# Usage: scripts/etcd-benchmark-bin.sh [VERSION]   (default: v3.6.8)
#   dir=$(scripts/etcd-benchmark-bin.sh | tail -1)
#
# The last line of stdout is the binary's directory. A binary that is already
# there and answers --help is not rebuilt.
#
# Where it comes from: the proxy does not serve go.etcd.io/etcd/tools/v3, but
# it serves etcd's root module go.etcd.io/etcd/v3 (v3.6.0 ... v3.6.8), whose
# zip holds tools/benchmark (package go.etcd.io/etcd/v3/tools/benchmark). A
# throwaway module requires it at the version and `go build -trimpath`s the
# package (the root module's go.mod requires api/v3, client/v3, pkg/v3 and
# server/v3 at the same release, so the result is the release's code).
# `logbook bench` uses it for its "second opinion" rows and says so in one
# line when it is absent.
set -euo pipefail

VERSION=${1:-v3.6.8}
[[ $VERSION == v* ]] || VERSION="v$VERSION"

CACHE="${LOGBOOK_CACHE:-$HOME/.cache/logbook}"
DIR="$CACHE/etcd-benchmark-$VERSION"
export CGO_ENABLED=0
export GOFLAGS="-trimpath -buildvcs=false"
# Build with the installed Go instead of fetching the toolchain go.mod names.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

step() { echo "etcd-benchmark-bin: $*"; }

if [[ -x $DIR/benchmark ]] && "$DIR/benchmark" --help >/dev/null 2>&1; then
    step "$VERSION: already built in $DIR"
    echo "$DIR"
    exit 0
fi

mod="$CACHE/build/etcd-benchmark-$VERSION"
log="$mod/build.log"
rm -rf "$mod"
mkdir -p "$mod/bin"
: >"$log"
t0=$SECONDS

run_logged() {
    if ! "$@" >>"$log" 2>&1; then
        echo "etcd-benchmark-bin: FAILED: $* (log: $log)" >&2
        tail -n 30 "$log" >&2
        return 1
    fi
}

cat >"$mod/go.mod" <<GOMOD
module logbook.invalid/etcd-benchmark-build

go 1.26
GOMOD

step "$VERSION: downloading go.etcd.io/etcd/v3@$VERSION and its dependencies"
(cd "$mod" && run_logged go get "go.etcd.io/etcd/v3@$VERSION")
step "$VERSION: building go.etcd.io/etcd/v3/tools/benchmark"
(cd "$mod" && run_logged go build -ldflags="-s -w" -o "$mod/bin/benchmark" \
    go.etcd.io/etcd/v3/tools/benchmark)
"$mod/bin/benchmark" --help >>"$log" 2>&1 ||
    { echo "etcd-benchmark-bin: $VERSION: the built benchmark does not answer --help" >&2; exit 1; }

rm -rf "$DIR"
mkdir -p "$(dirname "$DIR")"
mv "$mod/bin" "$DIR"
rm -rf "$mod"
step "$VERSION: done in $((SECONDS - t0)) s"
echo "$DIR"
