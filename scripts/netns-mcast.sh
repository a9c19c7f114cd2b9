#!/usr/bin/env bash
# Multicast between hosts, with network namespaces standing in for the hosts: one
# publisher and two subscribers, each in its own namespace with its own address, joined
# by veth pairs to a bridge that lives in a fourth namespace. Nothing is created in the
# namespace this script runs in, and the addresses (10.77.0.0/24) exist only on that
# private bridge, so no datagram can leave it. Everything is removed on exit.
#
#   scripts/netns-mcast.sh [VOLLEY_BINARY]     (default target/release/volley)
#
# Root only (network namespaces need CAP_SYS_ADMIN); elsewhere, or without the `ip`
# command, it prints why it skips and exits 0. Runs from scripts/test.sh.
#
# Checks: (1) best effort: both subscribers receive every message, nothing counted lost;
# (2) reliable, with 5% injected loss at the second subscriber: both still receive every
# message, the lossy one NAKed and got retransmissions, none is counted lost.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
    echo "netns-mcast: SKIPPED: $*"
    exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces (running as uid $(id -u))"
command -v ip >/dev/null 2>&1 || skip "no ip command (iproute2) on this host"

volley=${1:-target/release/volley}
if [ ! -x "$volley" ]; then
    echo "netns-mcast: $volley not found; build it first (cargo build --release)" >&2
    exit 1
fi
volley=$(cd "$(dirname "$volley")" && pwd)/$(basename "$volley")

tag="vmc$$"
bridge_ns="${tag}-br"
hosts=("${tag}-pub" "${tag}-sub1" "${tag}-sub2")
addrs=(10.77.0.1 10.77.0.2 10.77.0.3)
work=$(mktemp -d)
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for ns in "${hosts[@]}" "$bridge_ns"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

if ! ip netns add "$bridge_ns" 2>"$work/err"; then
    skip "cannot create a network namespace here: $(cat "$work/err")"
fi
if ! ip -n "$bridge_ns" link add br0 type bridge 2>"$work/err"; then
    skip "cannot create a bridge here (no bridge support in the kernel?): $(cat "$work/err")"
fi
ip -n "$bridge_ns" link set br0 up
for i in 0 1 2; do
    ns=${hosts[$i]}
    ip netns add "$ns"
    # Both ends are created inside namespaces of this script: the bridge end in the
    # bridge's, the host end (eth0) in the host's.
    if ! ip -n "$bridge_ns" link add "port$i" type veth peer name eth0 netns "$ns" 2>"$work/err"; then
        skip "cannot create a veth pair here: $(cat "$work/err")"
    fi
    ip -n "$bridge_ns" link set "port$i" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "${addrs[$i]}/24" dev eth0
    ip -n "$ns" link set eth0 up
done

group=239.255.77.7
port=7777
endpoint() { echo "udp://$group:$port?iface=$1"; }
fail=0

# Runs one publisher and both subscribers; $1 names the case, $2 the flags of all three,
# $3 extra flags of the second subscriber. Subscribers join first (no history for late
# joiners), then the publisher sends.
run_case() {
    local name=$1 flags=$2 sub2_flags=$3 count=20000
    echo "-- $name: $count messages from ${addrs[0]} to ${addrs[1]} and ${addrs[2]}"
    pids=()
    for i in 1 2; do
        local extra=""
        [ "$i" = 2 ] && extra=$sub2_flags
        # shellcheck disable=SC2086 # flags are words
        ip netns exec "${hosts[$i]}" "$volley" sub "$(endpoint "${addrs[$i]}")" \
            --count "$count" --timeout 10 --quiet $flags $extra \
            >"$work/$name-sub$i.out" 2>"$work/$name-sub$i.err" &
        pids+=($!)
    done
    sleep 1
    # shellcheck disable=SC2086
    # --drain: the publisher stays 2 s after its last message for the repairs.
    if ! ip netns exec "${hosts[0]}" "$volley" pub "$(endpoint "${addrs[0]}")" \
        --count "$count" --size 64 --rate 50000 --drain 2 $flags 2>"$work/$name-pub.err"; then
        echo "publisher failed:"
        cat "$work/$name-pub.err"
        fail=1
    fi
    sed 's/^/   pub: /' "$work/$name-pub.err"
    for i in 1 2; do
        local rc=0
        wait "${pids[$((i - 1))]}" || rc=$?
        sed "s/^/   sub$i: /" "$work/$name-sub$i.err"
        if [ "$rc" != 0 ] || ! grep -q "volley sub: $count received" "$work/$name-sub$i.err"; then
            echo "FAILED: sub$i (exit $rc) did not receive all $count messages"
            fail=1
        fi
        if ! grep -q " lost 0 " "$work/$name-sub$i.err"; then
            echo "FAILED: sub$i counted lost messages"
            fail=1
        fi
    done
    pids=()
}

run_case best-effort "" ""
run_case reliable "--reliable" "--loss 0.05 --loss-seed 7"
if ! grep -Eq "naks-sent [1-9]" "$work/reliable-sub2.err"; then
    echo "FAILED: the lossy subscriber sent no NAK"
    fail=1
fi
if ! grep -Eq "retransmits [1-9]" "$work/reliable-pub.err"; then
    echo "FAILED: the publisher retransmitted nothing"
    fail=1
fi

if [ "$fail" != 0 ]; then
    echo "netns-mcast: FAILED"
    exit 1
fi
echo "netns-mcast: passed (1 publisher, 2 subscribers on 3 addresses over a veth bridge)"
