#!/usr/bin/env bash
# Builds a Kubernetes control plane's binaries from the Go module proxy into a
# cache outside the clone:
#
#   ${LOGBOOK_CACHE:-$HOME/.cache/logbook}/k8s-vX.Y.Z/
#       kube-apiserver kube-controller-manager kube-scheduler kubectl
#
# Usage: scripts/kubernetes-bin.sh [VERSION]   (default: $K8S_VERSION)
#   dir=$(scripts/kubernetes-bin.sh | tail -1)
#
# Prints one line per step; the last line of stdout is the binary directory.
# If the four binaries are already there and report the version, nothing is
# rebuilt (a second run takes well under a second).
#
# How: k8s.io/kubernetes requires its staging modules (k8s.io/api,
# k8s.io/apimachinery, k8s.io/apiserver, k8s.io/client-go, ...) as v0.0.0 and
# replaces them with ./staging/src/..., which a module download does not
# contain, so `go install k8s.io/kubernetes/cmd/...@v1.X.Y` cannot work. A
# throwaway module under $CACHE/build/ requires k8s.io/kubernetes at the
# release and replaces every module of its staging `replace` block (read
# from the release's own go.mod) with the published v0.X.Y of that module,
# then `go build`s the four main packages. The version that `--version` and
# `kubectl version` report is set with -ldflags -X, as Kubernetes' own
# hack/lib/version.sh does (gitVersion, gitMajor, gitMinor, gitTreeState,
# buildDate = the release's publication time from the proxy; the git commit is
# not known from a module download, so gitCommit is left empty).
#
# Cold build on the 2-core dev VM (Go 1.26.8; Go build cache empty but for
# etcd's builds; a Rust build was sharing the CPUs, load average ~11):
#   v1.37.2: 26 min wall (17 s downloads + 1542 s go build -p 2), 17 min of
#   CPU, so roughly 10 min on an idle machine. With a warm Go build cache the
#   whole script takes about 40 s.
#   Binaries: 351 MiB in all (kube-apiserver 114, kube-controller-manager 100,
#   kube-scheduler 77, kubectl 59). Go build cache +3.6 GB, module cache
#   +0.6 GB.
set -euo pipefail

K8S_VERSION=v1.37.2

v=${1:-$K8S_VERSION}
[[ $v == v* ]] || v="v$v"
if [[ ! $v =~ ^v1\.([0-9]+)\.([0-9]+)$ ]]; then
    echo "kubernetes-bin: '$v' is not a release version like v1.37.2" >&2
    exit 2
fi
minor=${BASH_REMATCH[1]}
staging_v="v0.${minor}.${BASH_REMATCH[2]}"

CACHE="${LOGBOOK_CACHE:-$HOME/.cache/logbook}"
export CGO_ENABLED=0
export GOFLAGS="-trimpath -buildvcs=false"
# Build with the Go that is installed rather than fetch the toolchain a
# go.mod may name; k8s.io/kubernetes v1.37 needs go 1.26.0.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

dir="$CACHE/k8s-$v"
mod="$CACHE/build/k8s-$v"
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
packages=(
    k8s.io/kubernetes/cmd/kube-apiserver
    k8s.io/kubernetes/cmd/kube-controller-manager
    k8s.io/kubernetes/cmd/kube-scheduler
    k8s.io/kubernetes/cmd/kubectl
)

step() { echo "kubernetes-bin: $v: $*"; }

# The version line a binary prints ("Kubernetes v1.37.2" for the servers,
# "Client Version: v1.37.2" for kubectl).
version_of() {
    local bin=$1
    if [[ $(basename "$bin") == kubectl ]]; then
        "$bin" version --client 2>/dev/null | sed -n 's/^Client Version: //p'
    else
        "$bin" --version 2>/dev/null | sed -n 's/^Kubernetes //p'
    fi
}

binaries_ok() {
    local b
    for b in "${binaries[@]}"; do
        [[ -x $1/$b && $(version_of "$1/$b") == "$v" ]] || return 1
    done
}

if binaries_ok "$dir"; then
    step "already built in $dir"
    echo "$dir"
    exit 0
fi

log="$mod/build.log"
out="$mod/bin"
rm -rf "$mod"
mkdir -p "$out"
: >"$log"
t0=$SECONDS

# Runs a go command with its output in the build log; shows the log's tail
# and fails if it fails.
run_logged() {
    if ! "$@" >>"$log" 2>&1; then
        echo "kubernetes-bin: FAILED: $* (log: $log)" >&2
        tail -n 30 "$log" >&2
        return 1
    fi
}

t=$SECONDS
step "reading k8s.io/kubernetes@$v's go.mod"
info=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$v")
gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")
infofile=$(sed -n 's/^[[:space:]]*"Info": "\(.*\)",$/\1/p' <<<"$info")
[[ -f $gomod && -f $infofile ]] ||
    { echo "kubernetes-bin: no go.mod for k8s.io/kubernetes@$v:" >&2; echo "$info" >&2; exit 1; }
# Every module that the release's go.mod replaces with a ./staging directory.
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$gomod")
((${#staging[@]} > 0)) ||
    { echo "kubernetes-bin: found no staging replace lines in $gomod" >&2; exit 1; }
goline=$(grep -m1 '^go ' "$gomod")
release_time=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$infofile")
step "found ${#staging[@]} staging modules, pinned to $staging_v ($((SECONDS - t)) s)"

step "creating build module in $mod"
{
    echo "module logbook.invalid/kubernetes-build"
    echo
    echo "$goline"
    echo
    # Kubernetes' own GODEBUG defaults (godebug lines apply only to a main
    # module, so they are carried over).
    awk '/^godebug \(/{b=1} b{print} b&&/^\)/{b=0; next} /^godebug [^(]/{print}' "$gomod"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    for m in "${staging[@]}"; do
        echo "	$m => $m $staging_v"
    done
    echo ")"
} >"$mod/go.mod"

t=$SECONDS
step "downloading the modules the four commands need"
(cd "$mod" && run_logged go get "${packages[@]/%/@$v}")
step "downloaded in $((SECONDS - t)) s"

ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit="
    ldflags+=" -X $pkg.buildDate=${release_time:-1970-01-01T00:00:00Z}"
done

t=$SECONDS
step "building ${binaries[*]} (go build -p 2, takes long)"
(cd "$mod" && run_logged go build -p 2 -ldflags="$ldflags" -o "$out/" "${packages[@]}")
step "built in $((SECONDS - t)) s"

step "checking the binaries"
for b in "${binaries[@]}"; do
    got=$(version_of "$out/$b")
    [[ $got == "$v" ]] ||
        { echo "kubernetes-bin: $b reports version '$got', not $v" >&2; exit 1; }
done
# (Read the help whole before grepping: grep -q stopping early would make
# the apiserver die of SIGPIPE and the pipeline fail.)
help=$("$out/kube-apiserver" --help 2>&1 || true)
grep -q -- '--etcd-servers' <<<"$help" ||
    { echo "kubernetes-bin: kube-apiserver --help does not list --etcd-servers" >&2; exit 1; }

step "installing into $dir"
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
mv "$out" "$dir"
rm -rf "$mod"
step "done in $((SECONDS - t0)) s: $("$dir/kube-apiserver" --version), kubectl $(version_of "$dir/kubectl")"
echo "$dir"
