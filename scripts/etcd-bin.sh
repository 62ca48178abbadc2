#!/usr/bin/env bash
# Builds etcd's own binaries from the Go module proxy into a cache outside the
# clone, one directory per release:
#
#   ${LOGBOOK_CACHE:-$HOME/.cache/logbook}/etcd-vX.Y.Z/{etcd,etcdctl}
#
# Usage: scripts/etcd-bin.sh [VERSION...]   (default: $ETCD_36 and $ETCD_37)
#   dir=$(scripts/etcd-bin.sh v3.7.3 | tail -1)
#
# Prints one line per step; the last lines of stdout are the binary
# directories, one per version, newest last. A version whose binaries are
# already there and answer --version is not rebuilt (a second run takes well
# under a second).
#
# How: go.etcd.io/etcd/server/v3 (the etcd main package) and
# go.etcd.io/etcd/etcdctl/v3 have `replace` lines to sibling directories in
# their go.mod, so `go install module@version` refuses them; instead a
# throwaway module under $CACHE/build/ requires both at the version and
# `go build`s them (their sibling modules api/v3, client/v3, pkg/v3 are
# required at the same version, so the result is the release's code).
#
# etcd's `benchmark` tool is not built: it lives in etcd's root module
# (go.etcd.io/etcd/v3/tools/benchmark), and neither go.etcd.io/etcd/v3 nor
# go.etcd.io/etcd/tools/v3 is served by the module proxy at any 3.6/3.7
# release (403 "not available"). The script still asks for it, and builds it
# if a version ever is served; otherwise it says "skipped" and goes on.
#
# Cold build on the 2-core dev VM (Go 1.26.8; empty Go build cache; another
# build was sharing the CPUs, so idle numbers are lower):
#   v3.7.3: 164 s (9 s downloads + 139 s etcd + 15 s etcdctl), 2 min CPU.
#   v3.6.16: 187 s alone from an empty build cache, 65 s right after v3.7.3.
#   Binaries: 41 MB (v3.7.3) and 43 MB (v3.6.16): etcd 25-27 MB, etcdctl
#   17-18 MB. Go build cache +0.5 GB, module cache +0.35 GB.
set -euo pipefail

ETCD_36=v3.6.16
ETCD_37=v3.7.3

CACHE="${LOGBOOK_CACHE:-$HOME/.cache/logbook}"
export CGO_ENABLED=0
export GOFLAGS="-trimpath -buildvcs=false"
# The etcd go.mod files say `toolchain go1.26.10`; build with the Go that is
# installed (their `go 1.26.0` line is satisfied) instead of fetching another.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
LDFLAGS="-s -w"

if (($# == 0)); then
    set -- "$ETCD_36" "$ETCD_37"
fi

step() { echo "etcd-bin: $*"; }

# Runs a go command with its output in the build log; shows the log's tail
# and fails if it fails.
run_logged() {
    local log=$1
    shift
    if ! "$@" >>"$log" 2>&1; then
        echo "etcd-bin: FAILED: $* (log: $log)" >&2
        tail -n 30 "$log" >&2
        return 1
    fi
}

binaries_ok() {
    local dir=$1
    [[ -x $dir/etcd && -x $dir/etcdctl ]] &&
        "$dir/etcd" --version >/dev/null 2>&1 &&
        "$dir/etcdctl" version >/dev/null 2>&1
}

build_version() {
    local v=$1
    local dir="$CACHE/etcd-$v"
    if binaries_ok "$dir"; then
        step "$v: already built in $dir"
        return 0
    fi

    local mod="$CACHE/build/etcd-$v"
    local out="$mod/bin"
    local log="$mod/build.log"
    rm -rf "$mod"
    mkdir -p "$out"
    : >"$log"
    local t0=$SECONDS t

    step "$v: creating build module in $mod"
    cat >"$mod/go.mod" <<EOF
module logbook.invalid/etcd-build

go 1.26
EOF

    t=$SECONDS
    step "$v: downloading go.etcd.io/etcd/server/v3 and etcdctl/v3 $v and their dependencies"
    (cd "$mod" && run_logged "$log" go get \
        "go.etcd.io/etcd/server/v3@$v" "go.etcd.io/etcd/etcdctl/v3@$v")
    step "$v: downloaded in $((SECONDS - t)) s"

    t=$SECONDS
    step "$v: building etcd"
    (cd "$mod" && run_logged "$log" go build -ldflags="$LDFLAGS" -o "$out/etcd" go.etcd.io/etcd/server/v3)
    step "$v: built etcd in $((SECONDS - t)) s"

    t=$SECONDS
    step "$v: building etcdctl"
    (cd "$mod" && run_logged "$log" go build -ldflags="$LDFLAGS" -o "$out/etcdctl" go.etcd.io/etcd/etcdctl/v3)
    step "$v: built etcdctl in $((SECONDS - t)) s"

    # The benchmark tool: wherever a release of etcd puts it, if served.
    local bench_mod="" m
    for m in go.etcd.io/etcd/tools/v3 go.etcd.io/etcd/v3; do
        if (cd "$mod" && go list -m "$m@$v" >>"$log" 2>&1); then
            bench_mod=$m
            break
        fi
    done
    if [[ -z $bench_mod ]]; then
        step "$v: benchmark skipped: neither go.etcd.io/etcd/tools/v3 nor go.etcd.io/etcd/v3 is served at $v"
    else
        local pkg="$bench_mod/benchmark"
        [[ $bench_mod == go.etcd.io/etcd/v3 ]] && pkg="$bench_mod/tools/benchmark"
        t=$SECONDS
        step "$v: building benchmark ($pkg)"
        if (cd "$mod" && run_logged "$log" go get "$bench_mod@$v" &&
            run_logged "$log" go build -ldflags="$LDFLAGS" -o "$out/benchmark" "$pkg"); then
            step "$v: built benchmark in $((SECONDS - t)) s"
        else
            rm -f "$out/benchmark"
            step "$v: benchmark skipped: its build failed (see $log)"
        fi
    fi

    step "$v: checking the binaries"
    "$out/etcd" --version >>"$log"
    local help
    help=$("$out/etcd" --help 2>&1 || true)
    grep -q -- '--listen-client-urls' <<<"$help" ||
        { echo "etcd-bin: $v: etcd --help does not list its flags" >&2; return 1; }
    "$out/etcdctl" version >>"$log"
    if [[ -x $out/benchmark ]]; then
        "$out/benchmark" --help >>"$log" 2>&1
    fi
    local got
    got=$("$out/etcd" --version | sed -n 's/^etcd Version: //p')
    [[ v$got == "$v" ]] ||
        { echo "etcd-bin: $v: etcd --version says '$got'" >&2; return 1; }

    step "$v: installing into $dir"
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    mv "$out" "$dir"
    rm -rf "$mod"
    step "$v: done in $((SECONDS - t0)) s: $("$dir/etcd" --version | head -1), $("$dir/etcdctl" version | head -1)"
}

mapfile -t versions < <(printf '%s\n' "$@" | sed 's/^\([0-9]\)/v\1/' | sort -u -V)
dirs=()
for v in "${versions[@]}"; do
    build_version "$v"
    echo "$CACHE/etcd-$v"
    dirs+=("$CACHE/etcd-$v")
done
if ((${#dirs[@]} > 1)); then
    printf '%s\n' "${dirs[@]}"
fi
