#!/usr/bin/env bash
# volley's UDP multicast against a raw non-blocking UDP socket on loopback groups, in one
# run, then a side-by-side table with ratios and the targets:
#   busy-poll ping-pong p50 (RTT/2, 64 B) <= 1.3x raw; 64-byte throughput with packing
#   >= 5 M msgs/s (with the default options, and again with UDP GRO at the subscriber);
#   the reliable mode at 1% injected loss (throughput and p99) beside best effort; and,
#   for the record, the throughput of a blocking subscriber (the default RecvMode).
#
#   scripts/bench-mcast.sh
#
# Builds examples/mcast_bench.rs in release (see that file for what each mode measures),
# then runs it. Environment (defaults in brackets): LAT_COUNT [20000] timed round trips
# per latency run (1000 untimed first), LAT_REPS [5] latency runs of each kind (median
# shown), THR_COUNT [2000000] messages per volley
# throughput run, RAW_THR_COUNT [300000] datagrams per raw throughput run (one system
# call each: a raw run of 2 M would take far longer than volley's).
# Exit status: 0 when every run worked (targets missed are reported, not fatal), 1 if a
# run or the build failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

LAT_COUNT="${LAT_COUNT:-20000}"
LAT_REPS="${LAT_REPS:-5}"
THR_COUNT="${THR_COUNT:-2000000}"
RAW_THR_COUNT="${RAW_THR_COUNT:-300000}"
BIN=target/release/examples/mcast_bench

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench-mcast.sh: error: %s\n' "$*" >&2; exit 1; }

say "building $BIN"
cargo build --release --quiet --example mcast_bench || die "build failed"

# run NAME ARGS...: runs one measurement, keeps its RESULT line in $results/NAME.
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
run() {
    local name=$1
    shift
    say "$name: mcast_bench $*"
    local out
    out=$(timeout 120 "$BIN" "$@") || die "$name failed"
    printf '%s\n' "$out" | grep '^RESULT' >"$results/$name" || die "$name printed no RESULT"
    cat "$results/$name" >&2
}
# field NAME KEY: the value of KEY=... in NAME's RESULT line; for a latency NAME, the
# median over its repetitions.
field() {
    if [ -e "$results/$1" ]; then
        sed -n "s/.* $2=\([^ ]*\).*/\1/p" "$results/$1"
    else
        cat "$results/$1".* | sed -n "s/.* $2=\([^ ]*\).*/\1/p" | sort -g \
            | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
    fi
}
# all NAME KEY: every repetition's value, for the record.
all() { cat "$results/$1".* | sed -n "s/.* $2=\([^ ]*\).*/\1/p" | paste -sd/ -; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
mps() { awk -v v="$1" 'BEGIN { printf "%.2f M/s", v / 1e6 }'; }

# Latency runs alternate raw and volley LAT_REPS times; the table shows the median of
# each: on a shared host a run whose two threads lose a core to another process is
# several times slower, and alternating spreads that over both sides.
for rep in $(seq 1 "$LAT_REPS"); do
    run "lat_raw.$rep" lat --impl raw --count "$LAT_COUNT"
    run "lat_volley.$rep" lat --count "$LAT_COUNT"
    run "lat_reliable.$rep" lat --count "$LAT_COUNT" --reliable --loss 0.01
done
run thr_raw thr --impl raw --count "$RAW_THR_COUNT"
run thr_volley thr --count "$THR_COUNT"
run thr_volley_8k thr --count "$THR_COUNT" --datagram 8192
# Loopback's MTU is 65536: a 65000-byte datagram still needs no IP fragmentation there
# (a LAN's 1500-byte MTU would), so on loopback this is a configured, legitimate size.
run thr_volley_64k thr --count "$THR_COUNT" --datagram 65000
run thr_reliable thr --count "$THR_COUNT" --reliable --loss 0.01
run thr_volley_gro thr --count "$THR_COUNT" --gro
run thr_reliable_gro thr --count "$THR_COUNT" --reliable --loss 0.01 --gro
run thr_volley_blocking thr --count "$THR_COUNT" --blocking

lat_row() {
    printf '%-44s %14s %14s %10s  %s\n' "$1" "$2 us" "$3 us" "$(ratio "$2" "$3")" "$4"
}
thr_row() {
    printf '%-44s %14s %14s %10s  %s\n' "$1" "$(mps "$2")" "$(mps "$3")" "$(ratio "$2" "$3")" "$4"
}
echo
echo "multicast on loopback, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-44s %14s %14s %10s  %s\n' "measurement" "volley" "raw UDP" "volley/raw" "target"
lat_row "ping-pong p50, RTT/2, 64 B, busy-poll" "$(field lat_volley p50_us)" "$(field lat_raw p50_us)" "<= 1.3x"
lat_row "ping-pong p99" "$(field lat_volley p99_us)" "$(field lat_raw p99_us)" ""
printf '%-44s %14s %14s\n' "  p50 of each run (us)" "$(all lat_volley p50_us)" "$(all lat_raw p50_us)"
# Each volley run beside the raw run just before it: a run that lost a core to another
# process shows as one odd pair here, where the medians above can mix it with a clean one.
pairs=$(for rep in $(seq 1 "$LAT_REPS"); do
    ratio "$(field "lat_volley.$rep" p50_us)" "$(field "lat_raw.$rep" p50_us)"
    echo
done)
printf '%-44s %29s %10s\n' "  volley/raw p50, pair by pair" "$(printf '%s\n' "$pairs" | paste -sd/ -)" \
    "$(printf '%s\n' "$pairs" | tr -d x | sort -g | awk '{ v[NR] = $1 } END { printf "%.2fx", v[int((NR + 1) / 2)] }')"
thr_row "throughput 64 B, packed in 1400 B datagrams" "$(field thr_volley msgs_per_s)" "$(field thr_raw msgs_per_s)" ">= 5 M/s"
thr_row "  the same, UDP GRO at the subscriber" "$(field thr_volley_gro msgs_per_s)" "$(field thr_raw msgs_per_s)" ">= 5 M/s"
thr_row "throughput 64 B, packed in 8192 B datagrams" "$(field thr_volley_8k msgs_per_s)" "$(field thr_raw msgs_per_s)" ">= 5 M/s"
thr_row "throughput 64 B, packed in 65000 B datagrams" "$(field thr_volley_64k msgs_per_s)" "$(field thr_raw msgs_per_s)" ">= 5 M/s"
printf '%-44s %20s %8s\n' "  publisher CPU per message (ns)" \
    "$(field thr_volley send_cpu_ns_per_msg) / $(field thr_volley_8k send_cpu_ns_per_msg) / $(field thr_volley_64k send_cpu_ns_per_msg)" \
    "$(field thr_raw send_cpu_ns_per_msg)"
printf '%-44s %20s %8s\n' "  lost (not kept up with; counted)" \
    "$(field thr_volley lost) / $(field thr_volley_8k lost) / $(field thr_volley_64k lost)" "$(field thr_raw lost)"
printf '%-44s %20s\n' "  with GRO at 1400 B: publisher CPU (ns), lost" "$(field thr_volley_gro send_cpu_ns_per_msg), $(field thr_volley_gro lost)"
# The default RecvMode: the subscriber's I/O thread reads into its ring, the receiving
# thread sleeps between messages. Not the target's row (that is the busy-poll one above).
thr_row "  1400 B, a blocking subscriber (the default)" "$(field thr_volley_blocking msgs_per_s)" "$(field thr_raw msgs_per_s)" \
    "lost $(field thr_volley_blocking lost) of $THR_COUNT"
echo
printf '%-44s %14s %14s %10s\n' "reliable mode, 1% injected loss" "reliable" "best effort" "ratio"
thr_row "throughput 64 B (1400 B datagrams)" "$(field thr_reliable msgs_per_s)" "$(field thr_volley msgs_per_s)" \
    "lost $(field thr_reliable lost) of $THR_COUNT"
thr_row "  the same, UDP GRO at the subscriber" "$(field thr_reliable_gro msgs_per_s)" "$(field thr_volley_gro msgs_per_s)" \
    "lost $(field thr_reliable_gro lost) of $THR_COUNT"
lat_row "ping-pong p50" "$(field lat_reliable p50_us)" "$(field lat_volley p50_us)" ""
lat_row "ping-pong p99" "$(field lat_reliable p99_us)" "$(field lat_volley p99_us)" ""
