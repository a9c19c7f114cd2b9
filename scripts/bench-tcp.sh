#!/usr/bin/env bash
# volley's TCP pub/sub against libzmq (and plain TCP sockets) on loopback, in one run:
# throughput at 64 B and 1 KiB, ping-pong latency p50/p99 (blocking and busy-poll) at 64 B
# and 1 KiB, then a side-by-side table with the ratios and the targets:
#   throughput >= 3x libzmq at 64 B; blocking p50 <= libzmq; busy-poll p50 <= 1.5x the raw
#   non-blocking busy-polled TCP ping-pong.
#
#   scripts/bench-tcp.sh
#
# Needs libzmq's headers: installs libzmq3-dev and pkg-config with apt-get when missing
# (as root). Builds bench/libzmq_bench.c into target/bench/ and examples/tcp_bench.rs in
# release. Every message is 2 frames (topic "bench" + payload); see those two files for
# what each mode measures. Latency is RTT/2 in microseconds.
#
# Fairness: every implementation gets the same message count, payload size, warm-up and
# socket options (TCP_NODELAY, loopback, default kernel buffers, no drops in the
# throughput runs). The raw socket rows send, per message, exactly the bytes volley and
# libzmq put on the wire for it (the two ZMTP frames: 73 B for a 64 B payload, 1040 B for
# 1 KiB), so they measure TCP alone for the same traffic.
#
# Environment (defaults in brackets): REPS [3] runs of each measurement, the median is
# reported; THR_COUNT_64 [1000000], THR_COUNT_1K [300000] messages per throughput run;
# LAT_COUNT [10000] timed round trips per latency run (1000 untimed first);
# LIBZMQ_BUSY [1] also measures libzmq with ZMQ_DONTWAIT spinning (0 skips it).
# Exit status: 0 when every run worked (targets missed are reported, not fatal), 1 if a
# run failed or the build did.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

REPS="${REPS:-3}"
THR_COUNT_64="${THR_COUNT_64:-1000000}"
THR_COUNT_1K="${THR_COUNT_1K:-300000}"
LAT_COUNT="${LAT_COUNT:-10000}"
LIBZMQ_BUSY="${LIBZMQ_BUSY:-1}"
RUN_TIMEOUT=120

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench-tcp.sh: error: %s\n' "$*" >&2; exit 1; }

# ---- libzmq headers ---------------------------------------------------------------------
have_libzmq() { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libzmq; }
if ! have_libzmq; then
    [ "$(id -u)" = 0 ] || die "libzmq headers missing: run 'apt-get install libzmq3-dev pkg-config' as root"
    command -v apt-get >/dev/null 2>&1 || die "libzmq headers missing and no apt-get: install libzmq (dev) and pkg-config"
    say "installing libzmq3-dev pkg-config"
    export DEBIAN_FRONTEND=noninteractive
    if ! compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null; then
        apt-get update -qq >&2 || die "apt-get update failed"
    fi
    if ! apt-get install -y -qq libzmq3-dev pkg-config >&2; then
        apt-get update -qq >&2 || die "apt-get update failed"
        apt-get install -y -qq libzmq3-dev pkg-config >&2 || die "apt-get install libzmq3-dev pkg-config failed"
    fi
    have_libzmq || die "libzmq still not found by pkg-config after installing"
fi

# ---- builds -----------------------------------------------------------------------------
mkdir -p target/bench
C_BIN=target/bench/libzmq_bench
if [ ! -x "$C_BIN" ] || [ bench/libzmq_bench.c -nt "$C_BIN" ]; then
    say "building $C_BIN (libzmq $(pkg-config --modversion libzmq))"
    # shellcheck disable=SC2046
    cc -O2 -Wall -o "$C_BIN" bench/libzmq_bench.c $(pkg-config --cflags --libs libzmq) -lpthread \
        || die "building bench/libzmq_bench.c failed"
fi
say "building examples/tcp_bench.rs (release)"
cargo build --release --quiet --example tcp_bench || die "cargo build --release --example tcp_bench failed"
RS_BIN=target/release/examples/tcp_bench

# ---- runs -------------------------------------------------------------------------------
RAW_OUT=target/bench/results.txt
: >"$RAW_OUT"
failures=0
declare -A VALUES # "impl mode recv size field" -> space-separated values over the reps

field() { # field NAME LINE
    local kv
    for kv in $2; do
        [ "${kv%%=*}" = "$1" ] && { printf '%s' "${kv#*=}"; return; }
    done
}

# run KEY_PREFIX FIELDS... -- COMMAND...: runs COMMAND once, keeps FIELDS of its RESULT line.
# The callers loop over the repetitions outside, so that one repetition runs every
# implementation back to back and a noisy moment of the host hits them alike.
run() {
    local prefix="$1"; shift
    local fields=()
    while [ "$1" != "--" ]; do fields+=("$1"); shift; done
    shift
    local line f
    if ! line=$(timeout "$RUN_TIMEOUT" "$@" 2>>"$RAW_OUT.err" | grep '^RESULT'); then
        say "FAILED: $*  (stderr in $RAW_OUT.err)"
        failures=$((failures + 1))
        return
    fi
    echo "$line" >>"$RAW_OUT"
    for f in "${fields[@]}"; do
        VALUES["$prefix $f"]+="$(field "$f" "$line") "
    done
}

median_of() { # median_of V... -> the median of the values, or "-" when there are none
    [ "$#" -gt 0 ] || { printf -- '-'; return; }
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}

median() { # median KEY -> the median of VALUES[KEY], or "-" when there is none
    # shellcheck disable=SC2086
    median_of ${VALUES[$1]:-}
}

pairwise() { # pairwise KEY_A KEY_B -> "r1/r2/.. (median rm)": A/B run by run (the runs of one
    # repetition sit side by side in time, so a phase of host load meets both)
    local -a a b ratios=()
    read -r -a a <<<"${VALUES[$1]:-}"
    read -r -a b <<<"${VALUES[$2]:-}"
    local i r
    for ((i = 0; i < ${#a[@]} && i < ${#b[@]}; i++)); do
        r=$(ratio "${a[i]}" "${b[i]}")
        [ "$r" = - ] || ratios+=("$r")
    done
    [ "${#ratios[@]}" -gt 0 ] || { printf -- '-'; return; }
    local IFS=/
    printf '%s (median %s)' "${ratios[*]}" "$(median_of "${ratios[@]}")"
}

# The ZMTP bytes of one benchmark message: a short frame (1-byte size) up to 255 bytes,
# a long one (8-byte size) above; the topic frame "bench" is 1 + 1 + 5 bytes.
wire_size() {
    if [ "$1" -le 255 ]; then echo $((7 + 2 + $1)); else echo $((7 + 9 + $1)); fi
}

start=$(date +%s)
: >"$RAW_OUT.err"
for rep in $(seq "$REPS"); do
    for size in 64 1024; do
        count=$THR_COUNT_64
        [ "$size" = 1024 ] && count=$THR_COUNT_1K
        say "run $rep/$REPS: throughput, $size B x $count"
        run "volley thr $size" msgs_per_s mb_per_s -- "$RS_BIN" thr --size "$size" --count "$count"
        run "volleybusy thr $size" msgs_per_s mb_per_s -- "$RS_BIN" thr --busy --size "$size" --count "$count"
        run "volleyowned thr $size" msgs_per_s mb_per_s -- "$RS_BIN" thr --owned --size "$size" --count "$count"
        run "libzmq thr $size" msgs_per_s mb_per_s -- "$C_BIN" thr --size "$size" --count "$count"
    done
    for size in 64 1024; do
        say "run $rep/$REPS: latency, $size B x $LAT_COUNT round trips"
        wire=$(wire_size "$size")
        for recv in blocking busy; do
            busy=()
            [ "$recv" = busy ] && busy=(--busy)
            run "volley lat-$recv $size" p50_us p99_us -- "$RS_BIN" lat --size "$size" --count "$LAT_COUNT" "${busy[@]}"
            if [ "$recv" = blocking ] || [ "$LIBZMQ_BUSY" = 1 ]; then
                run "libzmq lat-$recv $size" p50_us p99_us -- "$C_BIN" lat --size "$size" --count "$LAT_COUNT" "${busy[@]}"
            fi
            run "raw lat-$recv $size" p50_us p99_us -- "$C_BIN" raw --size "$wire" --count "$LAT_COUNT" "${busy[@]}"
            run "rawpair lat-$recv $size" p50_us p99_us -- "$C_BIN" raw --pair --size "$wire" --count "$LAT_COUNT" "${busy[@]}"
        done
    done
done
elapsed=$(($(date +%s) - start))

# ---- table ------------------------------------------------------------------------------
ratio() { # ratio A B [DECIMALS] -> A/B with 2 (or DECIMALS) decimals, or "-"
    awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%." d "f", a / b }'
}
# What a verdict compares: the ratio unrounded (a 1.502 printed as 1.50 is still above 1.5).
exact_ratio() { ratio "$1" "$2" 9; }
verdict() { # verdict RATIO OP LIMIT -> met / MISSED
    awk -v r="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (r == "-") { print "n/a"; exit }
        ok = (op == ">=") ? (r + 0 >= l + 0) : (r + 0 <= l + 0)
        print ok ? "met" : "MISSED" }'
}
row() { # row LABEL VOLLEY LIBZMQ RAW RAWPAIR TARGET_TEXT RATIO_FOR_TARGET OP LIMIT
    local r
    r=$(ratio "$2" "$3")
    local t="$6"
    [ -n "$t" ] && t="$t: $(verdict "$7" "$8" "$9")"
    printf '%-26s %12s %12s %10s %10s %9s   %s\n' "$1" "$2" "$3" "$4" "$5" "$r" "$t"
}

echo
echo "TCP pub/sub on loopback, $(nproc) cores, libzmq $(pkg-config --modversion libzmq); median of $REPS runs; took ${elapsed}s"
echo "messages: topic frame \"bench\" + payload; latency = RTT/2 over $LAT_COUNT round trips, microseconds"
echo
printf '%-26s %12s %12s %10s %10s %9s   %s\n' "measurement" "volley" "libzmq" "raw tcp" "raw pair" "v/libzmq" "target"
printf '%-26s %12s %12s %10s %10s %9s   %s\n' "-----------" "------" "------" "-------" "--------" "--------" "------"
for size in 64 1024; do
    l=$(median "libzmq thr $size msgs_per_s")
    for impl in volley volleybusy volleyowned; do
        v=$(median "$impl thr $size msgs_per_s")
        label="thr $size B msgs/s"
        [ "$impl" = volleybusy ] && label="thr $size B msgs/s busy"
        [ "$impl" = volleyowned ] && label="thr $size B msgs/s owned"
        if [ "$size" = 64 ] && [ "$impl" != volleyowned ]; then
            row "$label" "$v" "$l" "" "" "volley >= 3x libzmq" "$(exact_ratio "$v" "$l")" ">=" 3
            printf '%-26s %s\n' "  volley/libzmq, run by run" "$(pairwise "$impl thr $size msgs_per_s" "libzmq thr $size msgs_per_s")"
        else
            row "$label" "$v" "$l" "" "" ""
        fi
    done
    row "thr $size B MB/s" "$(median "volley thr $size mb_per_s")" "$(median "libzmq thr $size mb_per_s")" "" "" ""
done
for size in 64 1024; do
    for recv in blocking busy; do
        for q in p50 p99; do
            v=$(median "volley lat-$recv $size ${q}_us")
            l=$(median "libzmq lat-$recv $size ${q}_us")
            raw=$(median "raw lat-$recv $size ${q}_us")
            pair=$(median "rawpair lat-$recv $size ${q}_us")
            label="lat $size B $recv $q us"
            if [ "$q" = p50 ] && [ "$recv" = blocking ]; then
                row "$label" "$v" "$l" "$raw" "$pair" "volley <= libzmq" "$(exact_ratio "$v" "$l")" "<=" 1
                printf '%-26s %s\n' "  volley/libzmq, run by run" "$(pairwise "volley lat-$recv $size ${q}_us" "libzmq lat-$recv $size ${q}_us")"
            elif [ "$q" = p50 ] && [ "$recv" = busy ]; then
                row "$label" "$v" "$l" "$raw" "$pair" "volley/raw $(ratio "$v" "$raw") <= 1.5 (volley/raw pair $(ratio "$v" "$pair"))" "$(exact_ratio "$v" "$raw")" "<=" 1.5
                printf '%-26s %s\n' "  volley/raw, run by run" "$(pairwise "volley lat-$recv $size ${q}_us" "raw lat-$recv $size ${q}_us")"
            else
                row "$label" "$v" "$l" "$raw" "$pair" ""
            fi
        done
    done
done
echo
echo "What each row measures (same message count, payload size and socket options everywhere):"
echo "thr = PUB -> SUB messages/s over one loopback connection, measured at the subscriber, nothing"
echo "  dropped (volley: publisher Block policy, subscriber Buffer; libzmq: HWM 0). volley row: default"
echo "  RecvMode::Blocking sockets (I/O thread reads, application thread receives); 'busy' row:"
echo "  RecvMode::BusyPoll sockets (the receiving thread reads its connection itself). In both the"
echo "  publisher encodes and writes on its own thread, batching bursts (the I/O thread writes a"
echo "  burst's first batch and, on a timer, a long burst's last one). libzmq: its I/O threads."
echo "  volley sends with Publisher::send_slices from one buffer, as libzmq's bench calls zmq_send"
echo "  (both copy the caller's bytes); the 'owned' row sends a Message made fresh for each"
echo "  (Publisher::send, one allocation per message), blocking receive: shown, no target."
echo "lat = ping-pong over two PUB->SUB pairs, RTT/2. blocking: recv sleeps until a message;"
echo "  busy: volley RecvMode::BusyPoll (each thread reads and writes its connections itself);"
echo "  libzmq busy = ZMQ_DONTWAIT receive in a spin loop (its I/O thread still sleeps in epoll)."
echo "raw tcp = the same bytes per message over one TCP connection (pings and pongs both ways),"
echo "  busy: non-blocking recv() in a spin loop; blocking: read()/write()."
echo "raw pair = the same over two one-way connections (pings on one, pongs on the other), the"
echo "  topology of pub/sub ping-pong: the target compares with raw, the pair shows the topology's share."
echo "run by run = the ratio within each repetition (its runs follow each other within seconds), then"
echo "  the median of those: less exposed to a change of host load between repetitions."
echo "Every RESULT line: $RAW_OUT"

if [ "$failures" -gt 0 ]; then
    echo "bench-tcp.sh: $failures run(s) failed; see $RAW_OUT.err" >&2
    exit 1
fi
