#!/usr/bin/env bash
# Kubernetes' own integration tests (k8s.io/kubernetes/test/integration/...)
# against a single Logbook member and against a real etcd, in the same run,
# with a table of what passes and fails on each.
#
# Usage: scripts/kubernetes-integration.sh [options]
#   --quick            a subset (TestEtcdStoragePath and list, watch and watch
#                      cache tests), about 15 minutes for both systems on a
#                      loaded 2-core VM; what scripts/test.sh runs
#   --filter REGEX     run only the top-level tests matching REGEX (passed to
#                      -test.run; overrides the --quick selection)
#   --only logbook|etcd
#                      run against one system only
#   --packages a,b     only these of the packages below (short names)
#   --timeout DUR      -test.timeout of every test (default: per package)
#   --build-only       build the test binaries and stop
#   -h, --help
#
# Environment: LOGBOOK_CACHE (default ~/.cache/logbook), LOGBOOK_BIN (default
# target/release/logbook of this clone, built with cargo if missing),
# K8SIT_OUT (where logs go; default a new directory under ${TMPDIR:-/tmp}).
#
# Exit status: 0 when no test fails on Logbook that passes on etcd; 1 when
# one does (with --only: when any test of that system fails); 2 on bad usage
# or a set-up failure (build, server start).
#
# The packages (short name = last path element), chosen because they drive
# the apiserver's storage layer, list, watch and watch cache through a real
# kube-apiserver (started in-process by the test framework):
#   etcd          k8s.io/kubernetes/test/integration/etcd: TestEtcdStoragePath
#                 (every built-in resource, at the current and the emulated
#                 previous versions, created through the API and read back
#                 raw from the store at its expected key), cross-group
#                 storage and CRD/built-in overlap.
#   apiserver     k8s.io/kubernetes/test/integration/apiserver: TestListOptions
#                 (every combination of resourceVersion, resourceVersionMatch,
#                 limit and continue, with and without the watch cache, incl.
#                 a compacted revision), TestListResourceVersion0,
#                 TestAPIListChunking*, TestWatchCacheUpdatedByEtcd (two
#                 stores started by the test itself, progress notifications
#                 every 1s), sharded list/watch, metadata and table lists,
#                 patch conflicts (optimistic concurrency), field validation.
#   apimachinery  k8s.io/kubernetes/test/integration/apimachinery: watch
#                 restarts and timeouts (a watch without resourceVersion is a
#                 consistent read from the watch cache), watch of namespace
#                 events, the reflector's WatchList (streaming list) fallback.
#   controlplane  k8s.io/kubernetes/test/integration/controlplane: watch
#                 without arguments, empty lists, several apiservers on one
#                 store (lease reconcilers), graceful shutdown, CRDs.
#   storageversionmigrator
#                 k8s.io/kubernetes/test/integration/storageversionmigrator:
#                 lists and watches every object of a resource and rewrites
#                 it (also while other objects are created and deleted).
#
# How the tests find the store: framework.EtcdMain (every package's
# TestMain) dials KUBE_INTEGRATION_ETCD_URL (default http://127.0.0.1:2379;
# "http://" is stripped and the rest dialled as host:port) and uses it if it
# answers; otherwise it starts `etcd` from PATH. Every test apiserver uses a
# fresh random key prefix (/<uuid>/registry), so the tests of one binary share
# one store. Some tests (TestWatchCacheUpdatedByEtcd,
# TestReflectorWatchListFallback) start their own stores with
# framework.RunCustomEtcd: `etcd` from PATH with
#   --data-dir D --listen-client-urls unix://D/etcd.sock
#   --advertise-client-urls http://127.0.0.111:0 --listen-peer-urls
#   http://127.0.0.1:0 -log-level warn --quota-backend-bytes 8589934592 ...
# So the script puts first on PATH a directory whose `etcd` is the system
# under test (Logbook answers to the name etcd through a symlink), and no
# test ever silently falls back to another etcd.
#
# The binaries are built once (go test -c) into
#   ${LOGBOOK_CACHE:-$HOME/.cache/logbook}/k8s-v1.37.2/integration/<name>.test
# from a throwaway module like scripts/kubernetes-bin.sh's (requires
# k8s.io/kubernetes at the release, replaces every staging module with its
# published v0.X.Y; `go get -t` of the test packages adds their test-only
# dependencies); existing binaries are not rebuilt. The etcd to compare with
# is scripts/etcd-bin.sh's v3.7.3.
#
# Each (system, package) pair gets a fresh server on free 127.0.0.1 ports and
# a fresh data directory; each top-level test runs alone (-test.run '^Name$')
# in a test-binary process with -test.v in its own process group (killed
# afterwards, so stores a test started cannot outlive it, and an apiserver a
# failed test left behind cannot end later tests with its fatal log line),
# from a directory laid out like the Kubernetes tree (TestEtcdStoragePath
# reads ../../../staging/src/k8s.io/api/testdata, linked to the module
# cache). A top-level test that failed on Logbook and passed on etcd runs
# once more on Logbook on a fresh server (a loaded machine can time out a
# test apiserver's start against either system); the summary lists it.
# The binaries are built with -trimpath (to reuse kubernetes-bin.sh's build
# cache), so the test apiserver (cmd/kube-apiserver/app/testing, and
# apiextensions' test server) cannot find its own testdata directory from
# runtime.Caller; it then joins TEST_SRCDIR/TEST_WORKSPACE (meant for bazel)
# before the trimmed path, so TEST_SRCDIR is a directory holding writable
# copies of those testdata directories, and TEST_WORKSPACE is ".".
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
STAGING_VERSION=v0.37.2

repo=$(cd "$(dirname "$0")/.." && pwd)
CACHE="${LOGBOOK_CACHE:-$HOME/.cache/logbook}"
bindir="$CACHE/k8s-$K8S_VERSION/integration"
mod="$CACHE/build/k8s-$K8S_VERSION-integration"

# short name, package, -test.timeout of each test, --quick regex
packages=(etcd apiserver apimachinery controlplane storageversionmigrator)
declare -A pkg_path=(
    [etcd]=k8s.io/kubernetes/test/integration/etcd
    [apiserver]=k8s.io/kubernetes/test/integration/apiserver
    [apimachinery]=k8s.io/kubernetes/test/integration/apimachinery
    [controlplane]=k8s.io/kubernetes/test/integration/controlplane
    [storageversionmigrator]=k8s.io/kubernetes/test/integration/storageversionmigrator
)
declare -A pkg_timeout=([etcd]=15m [apiserver]=15m [apimachinery]=10m [controlplane]=10m [storageversionmigrator]=15m)
declare -A pkg_quick=(
    [etcd]='^TestEtcdStoragePath$'
    [apiserver]='^(TestListOptions|TestListResourceVersion0|TestAPIListChunking|TestAPIListChunkingWithLabelSelector|TestNameInFieldSelector|TestWatchTransformCaching|TestWatchCacheUpdatedByEtcd)$'
    [apimachinery]='^(TestWatchRestartsIfTimeoutNotReached|TestWatchNamespaceEvent|TestWatchClientTimeoutXXX|TestReflectorWatchListFallback)$'
)
declare -A pkg_quick_timeout=([etcd]=10m [apiserver]=5m [apimachinery]=5m)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "kubernetes-integration: $*" >&2; exit 2; }
step() { echo "kubernetes-integration: $*"; }

quick=0 filter="" only="" timeout="" build_only=0 want_pkgs=""
while (($#)); do
    case $1 in
    --quick) quick=1 ;;
    --filter) (($# > 1)) || die "--filter needs a regex"; filter=$2; shift ;;
    --filter=*) filter=${1#*=} ;;
    --only) (($# > 1)) || die "--only needs logbook or etcd"; only=$2; shift ;;
    --only=*) only=${1#*=} ;;
    --packages) (($# > 1)) || die "--packages needs names"; want_pkgs=$2; shift ;;
    --packages=*) want_pkgs=${1#*=} ;;
    --timeout) (($# > 1)) || die "--timeout needs a duration"; timeout=$2; shift ;;
    --timeout=*) timeout=${1#*=} ;;
    --build-only) build_only=1 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
case $only in "" | logbook | etcd) ;; *) die "--only takes logbook or etcd, not '$only'" ;; esac
if [[ -n $want_pkgs ]]; then
    sel=()
    for p in ${want_pkgs//,/ }; do
        [[ -n ${pkg_path[$p]:-} ]] || die "unknown package '$p' (known: ${packages[*]})"
        sel+=("$p")
    done
    packages=("${sel[@]}")
fi
if ((quick)) && [[ -z $want_pkgs ]]; then
    packages=(etcd apiserver apimachinery)
fi
systems=(logbook etcd)
[[ -n $only ]] && systems=("$only")

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

# ---------------------------------------------------------------- build ----

build_tests() {
    local missing=() p
    for p in "${packages[@]}"; do
        [[ -x $bindir/$p.test ]] || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        step "test binaries already built in $bindir"
        return 0
    fi
    local t0=$SECONDS t log="$mod/build.log"
    rm -rf "$mod"
    mkdir -p "$mod" "$bindir"
    : >"$log"
    run_logged() {
        if ! "$@" >>"$log" 2>&1; then
            echo "kubernetes-integration: FAILED: $* (log: $log)" >&2
            tail -n 30 "$log" >&2
            return 1
        fi
    }
    # Same flags as scripts/kubernetes-bin.sh, so the Go build cache it
    # filled is reused for every non-test package.
    export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"

    step "reading k8s.io/kubernetes@$K8S_VERSION's go.mod"
    local info gomod
    info=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION")
    gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' <<<"$info")
    [[ -f $gomod ]] || die "no go.mod for k8s.io/kubernetes@$K8S_VERSION: $info"
    local staging
    mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$gomod")
    ((${#staging[@]} > 0)) || die "found no staging replace lines in $gomod"
    {
        echo "module logbook.invalid/kubernetes-integration"
        echo
        grep -m1 '^go ' "$gomod"
        echo
        awk '/^godebug \(/{b=1} b{print} b&&/^\)/{b=0; next} /^godebug [^(]/{print}' "$gomod"
        echo
        echo "require k8s.io/kubernetes $K8S_VERSION"
        echo
        echo "replace ("
        local m
        for m in "${staging[@]}"; do
            echo "	$m => $m $STAGING_VERSION"
        done
        echo ")"
    } >"$mod/go.mod"

    t=$SECONDS
    step "downloading the test packages' dependencies (go get -t)"
    local args=()
    for p in "${missing[@]}"; do args+=("${pkg_path[$p]}@$K8S_VERSION"); done
    (cd "$mod" && run_logged go get -t "${args[@]}")
    step "downloaded in $((SECONDS - t)) s"

    for p in "${missing[@]}"; do
        t=$SECONDS
        step "building $p.test (go test -c ${pkg_path[$p]})"
        (cd "$mod" && run_logged go test -c -vet=off -ldflags="-s -w" -o "$mod/$p.test" "${pkg_path[$p]}")
        mv "$mod/$p.test" "$bindir/$p.test"
        step "built $p.test in $((SECONDS - t)) s"
    done
    rm -rf "$mod"
    step "test binaries built in $((SECONDS - t0)) s"
}

build_tests
((build_only)) && exit 0

# ------------------------------------------------------------- systems ----

declare -A server_bin=()
for s in "${systems[@]}"; do
    case $s in
    logbook)
        lb=${LOGBOOK_BIN:-$repo/target/release/logbook}
        if [[ ! -x $lb ]]; then
            [[ -z ${LOGBOOK_BIN:-} ]] || die "LOGBOOK_BIN=$lb is not executable"
            step "building $lb (cargo build --release)"
            (cd "$repo" && cargo build --release --bin logbook) || die "cargo build failed"
        fi
        server_bin[logbook]=$lb
        ;;
    etcd)
        edir=$("$repo/scripts/etcd-bin.sh" "$ETCD_VERSION" | tail -1) || die "scripts/etcd-bin.sh $ETCD_VERSION failed"
        server_bin[etcd]=$edir/etcd
        ;;
    esac
done

out=${K8SIT_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/logbook-k8sit.XXXXXX")}
mkdir -p "$out"
step "logs in $out"

# The test's working directory: a Kubernetes-like tree whose
# staging/src/k8s.io/api is the module cache's k8s.io/api.
tree="$out/tree"
modcache=$(go env GOMODCACHE)
api_dir="$modcache/k8s.io/api@$STAGING_VERSION"
mkdir -p "$tree/staging/src/k8s.io" "$tree/test/integration"
if [[ -d $api_dir/testdata ]]; then
    ln -sfn "$api_dir" "$tree/staging/src/k8s.io/api"
else
    step "warning: $api_dir/testdata missing; TestEtcdStoragePath will miss its fixtures"
fi

# TEST_SRCDIR for the test servers: writable copies of their testdata
# directories (they write serving-certificate fixtures there), under the
# module@version paths that -trimpath recorded (the staging modules are
# recorded at the version k8s.io/kubernetes requires, v0.0.0).
src="$out/src"
copy_testdata() { # module dir in the cache, recorded module@version, package dir
    [[ -d $modcache/$1/$3/testdata ]] || return 0
    mkdir -p "$src/$2/$3"
    cp -r "$modcache/$1/$3/testdata" "$src/$2/$3/"
    chmod -R u+w "$src/$2/$3/testdata"
}
k8s_mod="k8s.io/kubernetes@$K8S_VERSION"
for d in cmd/kube-apiserver/app/testing pkg/controlplane/apiserver/samples/generic/server/testing; do
    copy_testdata "$k8s_mod" "$k8s_mod" "$d"
done
for v in v0.0.0 "$STAGING_VERSION"; do
    copy_testdata "k8s.io/apiextensions-apiserver@$STAGING_VERSION" "k8s.io/apiextensions-apiserver@$v" pkg/cmd/server/testing
done

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    else
        echo $((20000 + RANDOM % 30000))
    fi
}

server_pid="" test_pgid=""
cleanup() {
    if [[ -n $test_pgid ]]; then kill -KILL -- "-$test_pgid" 2>/dev/null || true; fi
    if [[ -n $server_pid ]]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server SYSTEM DIR: starts the system's server with a fresh data dir in
# DIR on free ports, waits until /health answers; sets server_pid, server_url.
start_server() {
    local sys=$1 dir=$2 cport pport i
    cport=$(free_port)
    pport=$(free_port)
    while [[ $pport == "$cport" ]]; do pport=$(free_port); done
    server_url="http://127.0.0.1:$cport"
    mkdir -p "$dir"
    local sub=()
    [[ $sys == logbook ]] && sub=(serve)
    "${server_bin[$sys]}" "${sub[@]}" \
        --name k8sit --data-dir "$dir/data" \
        --listen-client-urls "$server_url" --advertise-client-urls "$server_url" \
        --listen-peer-urls "http://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "k8sit=http://127.0.0.1:$pport" \
        --quota-backend-bytes 8589934592 --log-level warn \
        >"$dir/server.log" 2>&1 &
    server_pid=$!
    for ((i = 0; i < 300; i++)); do
        if curl -fsS --max-time 1 "$server_url/health" 2>/dev/null | grep -q '"health":"true"'; then
            return 0
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "kubernetes-integration: $sys did not become healthy at $server_url; its log:" >&2
    tail -n 20 "$dir/server.log" >&2
    stop_server
    return 1
}

stop_server() {
    [[ -n $server_pid ]] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# parse LOG: prints "STATUS NAME" for every test result line (top-level and
# subtests), and "FAIL NAME" for tests still running when the binary panicked
# (timeout or crash).
parse() {
    awk '
        match($0, /^ *--- (PASS|FAIL|SKIP): [^ ]+/) {
            s = substr($0, RSTART, RLENGTH); sub(/^ *--- /, "", s)
            split(s, a, ": "); print a[1], a[2]; seen[a[2]] = 1; next
        }
        /^panic: / { panicked = 1 }
        panicked && /^\t*running tests:/ { running = 1; next }
        running && /^\t\t[^ \t]+ \(/ { n = $1; if (!(n in seen)) print "FAIL", n; next }
        running && !/^\t\t/ { running = 0 }
    ' "$1"
}

declare -A result=()    # result[sys/pkg/test] = PASS|FAIL|SKIP|NOTRUN
declare -A elapsed=()   # elapsed[sys/pkg] = seconds
declare -A ran=()       # ran[sys/pkg] = 1

# run_test SYS PKG NAME TIMEOUT LOG: one top-level test in a process of its
# own (a test whose apiserver outlives it can kill the whole binary with a
# fatal log line; a crash or timeout then costs that test only), in its own
# process group, killed afterwards; records its results (and its subtests').
run_test() {
    local sys=$1 p=$2 name=$3 tmo=$4 log=$5 dir="$out/$1/$2" rc=0 st sub
    (cd "$tree/test/integration/$p" && exec setsid "${envs[@]}" "$bindir/$p.test" \
        -test.v -test.timeout "$tmo" -test.run "^${name}\$" >"$log" 2>&1) &
    test_pgid=$!
    wait "$test_pgid" || rc=$?
    kill -KILL -- "-$test_pgid" 2>/dev/null || true
    test_pgid=""
    while read -r st sub; do
        result[$sys/$p/$sub]=$st
    done < <(parse "$log")
    [[ -n ${result[$sys/$p/$name]:-} ]] || result[$sys/$p/$name]=NOTRUN
    return "$rc"
}

# test_env SYS PKG: the environment the test binaries of PKG run with
# against SYS's server at server_url (sets envs).
test_env() {
    local dir="$out/$1/$2"
    mkdir -p "$dir/shim" "$tree/test/integration/$2"
    ln -sfn "${server_bin[$1]}" "$dir/shim/etcd"
    envs=(env "PATH=$dir/shim:$PATH" "KUBE_INTEGRATION_ETCD_URL=$server_url" "TMPDIR=$dir"
        "TEST_SRCDIR=$src" TEST_WORKSPACE=.)
}

run_pkg() {
    local sys=$1 p=$2 regex=$3 tmo=$4
    local dir="$out/$sys/$p"
    mkdir -p "$dir"
    start_server "$sys" "$dir" || return 2
    test_env "$sys" "$p"
    # The tests the selection names (their TestMain needs the store too).
    local names
    names=$(
        cd "$tree/test/integration/$p" || exit 0
        timeout 120 "${envs[@]}" "$bindir/$p.test" -test.list "$regex" 2>/dev/null | grep '^Test' || true
    )
    if [[ -z $names ]]; then
        stop_server
        step "$sys $p: no test matches '$regex'"
        return 0
    fi
    ran[$sys/$p]=1
    step "$sys $p: $(wc -l <<<"$names") tests (-test.run '$regex', -test.timeout $tmo each) against ${server_bin[$sys]} at $server_url"
    local t=$SECONDS name failed=0
    mkdir -p "$dir/tests"
    while read -r name; do
        run_test "$sys" "$p" "$name" "$tmo" "$dir/tests/$name.log" || failed=$((failed + 1))
    done <<<"$names"
    stop_server
    elapsed[$sys/$p]=$((SECONDS - t))
    step "$sys $p: $failed of $(wc -l <<<"$names") tests failed, ${elapsed[$sys/$p]} s (logs: $dir/tests/<test>.log)"
}

for p in "${packages[@]}"; do
    regex='.*'
    tmo=${pkg_timeout[$p]}
    if ((quick)); then
        regex=${pkg_quick[$p]:-}
        tmo=${pkg_quick_timeout[$p]:-${pkg_timeout[$p]}}
        if [[ -z $regex && -z $filter ]]; then
            step "$p: no --quick selection; skipped"
            continue
        fi
    fi
    [[ -n $filter ]] && regex=$filter
    [[ -n $timeout ]] && tmo=$timeout
    for s in "${systems[@]}"; do
        run_pkg "$s" "$p" "$regex" "$tmo" || die "$s $p: could not start the server"
    done
done

# A top-level test that failed on Logbook and passed on etcd runs once more
# on Logbook, alone, on a fresh server: on a loaded machine a test
# apiserver's start-up can time out against either system. One that passes
# then is reported as such (and not counted as a regression); its first log
# is kept next to the retry's.
declare -A retried=()   # retried[pkg/test] = PASS|FAIL|...
if [[ -z $only ]]; then
    for p in "${packages[@]}"; do
        [[ -n ${ran[logbook/$p]:-} && -n ${ran[etcd/$p]:-} ]] || continue
        again=()
        for k in "${!result[@]}"; do
            [[ $k == "logbook/$p/"* ]] || continue
            name=${k#"logbook/$p/"}
            [[ $name == */* ]] && continue
            [[ ${result[$k]} == FAIL || ${result[$k]} == NOTRUN ]] || continue
            [[ ${result[etcd/$p/$name]:-} == PASS ]] && again+=("$name")
        done
        ((${#again[@]})) || continue
        tmo=${pkg_timeout[$p]}
        ((quick)) && tmo=${pkg_quick_timeout[$p]:-$tmo}
        [[ -n $timeout ]] && tmo=$timeout
        for name in "${again[@]}"; do
            dir="$out/logbook/$p"
            start_server logbook "$dir/retry-$name" || die "logbook $p: could not start the server"
            test_env logbook "$p"
            step "logbook $p: $name failed on Logbook and passed on etcd; running it once more"
            mv "$dir/tests/$name.log" "$dir/tests/$name.first.log"
            # Forget the first attempt's subtests: the retry's replace them.
            for k in "${!result[@]}"; do
                [[ $k == "logbook/$p/$name/"* ]] && unset "result[$k]"
            done
            run_test logbook "$p" "$name" "$tmo" "$dir/tests/$name.log" || true
            stop_server
            retried[$p/$name]=${result[logbook/$p/$name]}
            step "logbook $p: $name on retry: ${retried[$p/$name]}"
        done
    done
fi

# -------------------------------------------------------------- summary ----

# count SYS PKG: "pass fail skip notrun" over top-level tests, then the same
# over subtests.
count() {
    local sys=$1 p=$2 k name st top=(0 0 0 0) sub=(0 0 0 0)
    for k in "${!result[@]}"; do
        [[ $k == "$sys/$p/"* ]] || continue
        name=${k#"$sys/$p/"}
        st=${result[$k]}
        local i
        case $st in PASS) i=0 ;; FAIL) i=1 ;; SKIP) i=2 ;; *) i=3 ;; esac
        if [[ $name == */* ]]; then sub[i]=$((sub[i] + 1)); else top[i]=$((top[i] + 1)); fi
    done
    echo "${top[*]} ${sub[*]}"
}

cell() { # pass fail skip notrun -> "P/F/S(+N not run)"
    local c="$1/$2/$3"
    (($4 > 0)) && c+=" +$4 not run"
    echo "$c"
}

regressions=()
any_fail=0
echo
echo "Kubernetes $K8S_VERSION integration tests; cells: passed/failed/skipped (top-level tests) [subtests], seconds"
printf '%-22s %-30s %-30s\n' package "logbook" "etcd $ETCD_VERSION"
for p in "${packages[@]}"; do
    line=$(printf '%-22s' "$p")
    for s in logbook etcd; do
        if [[ -z ${ran[$s/$p]:-} ]]; then
            line+=$(printf ' %-30s' "-")
            continue
        fi
        read -r a b c d e f g _ <<<"$(count "$s" "$p")"
        ((b + d > 0)) && any_fail=1
        line+=$(printf ' %-30s' "$(cell "$a" "$b" "$c" "$d") [$e/$f/$g] ${elapsed[$s/$p]}s")
    done
    echo "$line"
    if [[ -n ${ran[logbook/$p]:-} && -n ${ran[etcd/$p]:-} ]]; then
        for k in "${!result[@]}"; do
            [[ $k == "logbook/$p/"* ]] || continue
            name=${k#"logbook/$p/"}
            st=${result[$k]}
            [[ $st == FAIL || $st == NOTRUN ]] || continue
            [[ ${result[etcd/$p/$name]:-} == PASS ]] && regressions+=("$p $name")
        done
    fi
done

if ((${#regressions[@]})); then
    echo
    echo "Failing on Logbook, passing on etcd $ETCD_VERSION (${#regressions[@]}):"
    printf '%s\n' "${regressions[@]}" | sort | sed 's/^/  /'
fi
if ((${#retried[@]})); then
    echo
    echo "Failed on Logbook and passed on etcd, then run once more on Logbook (counted as the retry went):"
    for k in "${!retried[@]}"; do echo "  ${k%%/*} ${k#*/}: ${retried[$k]}"; done | sort
fi
echo
echo "logs: $out/<system>/<package>/tests/<test>.log (and server.log)"

if [[ -n $only ]]; then
    exit $any_fail
fi
((${#regressions[@]} == 0))
