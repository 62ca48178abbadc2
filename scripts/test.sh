#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what the tests need, then
# formatting, lints and every test of the workspace.
#
# The Go programs the tests run against (etcd 3.6/3.7, Kubernetes' control
# plane, and the test binaries of etcd's e2e suite and of Kubernetes'
# integration tests) are built from the Go module proxy into a cache outside
# the clone (${LOGBOOK_CACHE:-~/.cache/logbook}); when they are there, each
# build step takes a second. On a fresh machine they take most of the CPU
# for a while (docs/kubernetes.md has the measured figures), so they run in
# the background, at a lower priority, while cargo compiles and runs the
# tests that do not need them; each is waited for just before the first test
# that needs it, and a failed build fails this script with its log's tail.
set -euo pipefail
cd "$(dirname "$0")/.."

# etcdctl (etcd-client) is the first judge of compatibility in the black-box
# tests; etcd itself (etcd-server) is the baseline of the benchmark tests.
missing=()
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# ip(8): tests/peer_connections.rs's network namespace and the robustness scenarios'
# (members in network namespaces; partitions and loss with nftables, bandwidth with tc).
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if ((${#missing[@]})); then
    echo "test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# A packaged etcd may start itself as a service on install; tests pick their
# own free ports, so it is left alone.

for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
        rustup component add "$component"
    fi
done

# ------------------------------------------------------ background jobs ----

bg_logs=$(mktemp -d "${TMPDIR:-/tmp}/logbook-test.XXXXXX")
declare -A bg_pid=()

# bg NAME CMD...: runs CMD in the background at a lower priority than cargo
# (nice 10, or $BG_NICE), its output in $bg_logs/NAME.log.
bg() {
    local name=$1
    shift
    echo "test.sh: $name: started in the background (log: $bg_logs/$name.log)"
    # A session (and process group) of its own, so that stop_bg can stop
    # the job with every process it started.
    setsid -w nice -n "${BG_NICE:-10}" "$@" >"$bg_logs/$name.log" 2>&1 &
    bg_pid[$name]=$!
}

# bg_wait NAME: waits for the background job NAME; fails the script (with
# the job's log's tail) if it failed.
bg_wait() {
    local name=$1 t=$SECONDS rc=0
    wait "${bg_pid[$name]}" || rc=$?
    unset "bg_pid[$name]"
    if ((rc != 0)); then
        echo "test.sh: $name FAILED (exit $rc); the end of $bg_logs/$name.log:" >&2
        tail -n 40 "$bg_logs/$name.log" >&2
        exit 1
    fi
    echo "test.sh: $name: done (waited $((SECONDS - t)) s)"
}

# Background jobs still running when the script ends (a failure elsewhere)
# are stopped, each with its process group.
stop_bg() {
    local name
    for name in "${!bg_pid[@]}"; do
        kill -TERM -- "-${bg_pid[$name]}" 2>/dev/null || true
        # (and the job itself, in case it has not yet made its own group)
        kill -TERM "${bg_pid[$name]}" 2>/dev/null || true
    done
}
trap stop_bg EXIT

# etcd 3.6 and 3.7 (and their etcdctl): most black-box tests compare with
# them; then etcd 3.6's e2e suite (e2e.test, etcdutl), which reuses etcd
# 3.6's Go build cache. etcd's own load generator (tools/benchmark of
# etcd 3.6.8), logbook bench's second opinion, is built after etcd.
bg etcd bash -c 'scripts/etcd-bin.sh && scripts/etcd-benchmark-bin.sh'
# Kubernetes' control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl v1.37.2) for tests/kubernetes.rs, then the test
# binaries of the --quick subset of its integration tests
# (scripts/kubernetes-integration.sh), which reuse its Go build cache.
bg kubernetes bash -c 'scripts/kubernetes-bin.sh && scripts/kubernetes-integration.sh --quick --build-only'

# Issue #27's fault and input checks. Porcupine (tools/porcupine, Go, from the
# module proxy), the robustness histories' second checker, built into the same
# cache (skipped when there; tests/robustness.rs builds it on first use too).
# tests/disk_faults.rs mounts small loop-device file systems and needs root; its
# full-disk tests run in `cargo test --workspace` below, its failing-disk (EIO
# failpoint) tests in the failpoints run. tests/fuzz_requests.rs fuzzes the gRPC
# requests and the JSON gateway for LOGBOOK_FUZZ_SECS each (default 30).
scripts/porcupine-bin.sh >/dev/null
if (($(id -u) != 0)); then
    echo "test.sh: tests/disk_faults.rs needs root (loop mounts); it will fail" >&2
fi

# ---------------------------------------------------------------- tests ----

# step CMD...: runs CMD after a line saying how long the script has run, so
# that a CI log shows where its time went.
step() {
    printf 'test.sh: [%d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"
    "$@"
}

step cargo fmt --all --check
step cargo clippy --workspace --all-targets -- -D warnings
step cargo test --workspace --no-run

bg_wait etcd
bg etcd-e2e scripts/etcd-e2e.sh --build-only
# The release binary the Kubernetes integration tests run against (the test
# framework gives each test apiserver 10 s to become healthy while it writes
# its bootstrap objects; the debug build was not measured against that).
bg release cargo build --release --bin logbook
# Every test but tests/kubernetes.rs' two (which need the control plane's
# binaries, still building on a fresh machine).
k8s_tests=(a_kubernetes_control_plane_runs_on_three_logbook_members
    a_running_control_plane_moves_from_etcd_to_logbook_and_back)
# tests/lease_checkpoint.rs' checkpoint test sleeps past etcd's fixed
# 5-minute lease checkpoint interval; it runs in the background beside the
# rest (its test binary directly: a second cargo would wait for the first's
# lock), at normal priority, since it measures a lease's remaining TTL.
slow_test=a_new_leader_keeps_the_checkpointed_remaining_ttl_as_etcd_does
ckpt_bin=$(cargo test --test lease_checkpoint --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*/deps/lease_checkpoint-[^"]*"' | tail -n 1 |
    sed 's/^"executable":"//; s/"$//')
[[ -x $ckpt_bin ]] || { echo "test.sh: no lease_checkpoint test binary" >&2; exit 1; }
BG_NICE=0 bg lease-checkpoint "$ckpt_bin" --exact "$slow_test"
step cargo test --workspace -- "${k8s_tests[@]/#/--skip=}" --skip="$slow_test"
bg_wait lease-checkpoint
step cargo test --features failpoints --test robustness
step cargo test --features failpoints --test disk_faults failing_disk

# etcd 3.6's own e2e suite, its stable subset (scripts/etcd-e2e.sh CI_TESTS),
# against the debug binary `cargo test` built: fails if one of those tests
# fails on Logbook. docs/etcd-e2e.md has the whole suite's counts.
bg_wait etcd-e2e
step env LOGBOOK_BIN=target/debug/logbook scripts/etcd-e2e.sh --ci

bg_wait kubernetes
step cargo test --test kubernetes

# Kubernetes' own integration tests (docs/kubernetes-integration.md), the
# --quick subset, against a release build of Logbook and against etcd 3.7.3:
# fails when a test fails on Logbook and passes on etcd (after one retry).
# Bounded by timeout(1).
bg_wait release
step env LOGBOOK_BIN="$PWD/target/release/logbook" timeout 40m scripts/kubernetes-integration.sh --quick
rm -rf "$bg_logs"
echo "test.sh: [$((SECONDS / 60)):$(printf %02d $((SECONDS % 60)))] all passed"
