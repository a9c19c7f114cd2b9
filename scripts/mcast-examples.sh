#!/usr/bin/env bash
# The two multicast examples talking on loopback, as a user would run them, with the
# loss generator on at the subscriber: best effort (delivered + lost == sent, exactly)
# and reliable (everything delivered, the loss repaired). mcast_sub --expect does the
# checking and exits non-zero when the counts do not add up.
#
#   scripts/mcast-examples.sh      (after cargo build --release --example mcast_pub --example mcast_sub)
#
# Runs from scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/examples
for e in mcast_pub mcast_sub; do
    if [ ! -x "$bin/$e" ]; then
        echo "mcast-examples: $bin/$e not found; build it first (cargo build --release --examples)" >&2
        exit 1
    fi
done
# A port of this run, so that examples someone runs by hand on the default group do not
# mix with it.
endpoint="udp://239.255.0.79:$((20000 + $$ % 20000))?iface=127.0.0.1"
count=2000
work=$(mktemp -d)
sub_pid=""
cleanup() {
    [ -n "$sub_pid" ] && kill "$sub_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# $1 names the case; the rest are flags of both examples. The subscriber runs first
# (a late joiner has no history), and gives up after 20 s.
run_case() {
    local name=$1
    shift
    echo "-- $name: $count messages, 5% of the datagrams dropped at the subscriber"
    timeout 20 "$bin/mcast_sub" "$endpoint" --quiet --loss 0.05 --seed 3 --expect "$count" "$@" \
        >"$work/sub.out" 2>&1 &
    sub_pid=$!
    sleep 0.5
    "$bin/mcast_pub" "$endpoint" --quiet --count "$count" --rate 5000 "$@"
    local rc=0
    wait "$sub_pid" || rc=$?
    sub_pid=""
    cat "$work/sub.out"
    if [ "$rc" != 0 ]; then
        echo "mcast-examples: FAILED ($name): mcast_sub exited $rc"
        exit 1
    fi
    if ! grep -q "checked: delivered + lost == sent" "$work/sub.out"; then
        echo "mcast-examples: FAILED ($name): no check line"
        exit 1
    fi
}

run_case best-effort
if grep -q " lost 0 " "$work/sub.out"; then
    echo "mcast-examples: FAILED: 5% injected loss, yet nothing counted lost"
    exit 1
fi
run_case reliable --reliable
if ! grep -Eq "delivered $count \+ lost 0 " "$work/sub.out"; then
    echo "mcast-examples: FAILED: reliable mode did not deliver all $count"
    exit 1
fi
echo "mcast-examples: passed"
