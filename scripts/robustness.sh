#!/usr/bin/env bash
# Long robustness soak: a 3-member cluster under every fault type, scenario after
# scenario, each history checked: SIGKILL, power loss, SIGSTOP pauses, two-way and one-way
# partitions, black holes, delay and jitter, packet loss, bandwidth limits, a learner
# added, promoted and removed, the leader's machine replaced. Members run in network
# namespaces with kernel-made faults when run as root (nftables, tc), else behind TCP
# proxies; every fourth scenario uses the proxies anyway. Prints per scenario: operations,
# faults injected, anomalies found and the seed to replay; at the end the totals.
#
#   scripts/robustness.sh --minutes 30 --seed 42
#
# Replay one CI scenario: LOGBOOK_ROBUSTNESS_SEED=S cargo test --features failpoints \
#   --test robustness -- ci_network_faults --nocapture
# LOGBOOK_ROBUSTNESS_NET=proxy|netns forces the network mode.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
seed=$(( $(date +%s) % 1000000007 ))
while (($#)); do
    case "$1" in
        --minutes) minutes="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "robustness.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
echo "robustness.sh: soaking for ${minutes} minute(s), seed ${seed}"
LOGBOOK_SOAK_MINUTES="$minutes" LOGBOOK_ROBUSTNESS_SEED="$seed" \
    cargo test --features failpoints --test robustness -- --ignored soak --nocapture 2>&1 |
    grep --line-buffered -E '^scenario |^soak total|robustness: (\[|ANOMALY|history)|panicked|test result'
