#!/usr/bin/env bash
# Every path per master CPU-second (issue 23), side by side in one run, written into
# docs/benchmarks.md between the paths markers (benches/paths_report.py). Each master runs on
# CPU 0 (muster `--cores 1 --no-probes --trust 127.0.0.0/8`, every thread under `taskset -c 0`),
# the load generator on the other CPUs; the master's CPU is utime+stime from /proc/PID/stat over
# the measured step. Every part runs ROUNDS times, the masters alternating, and the report takes
# each master's median.
#  1. registrations: 100,000 DP servers offered at 20,000/s and at 100,000/s through the whole handshake
#     (`fleet --protocol dp`), against the floor (`muster-loadgen floor`: recvmmsg, a fixed
#     `getinfo`, sendmmsg, nothing else; once as is and once napping 250 µs after every read that
#     emptied its socket, `--nap-us 250`, as muster's coalescing does), dpmaster 2.2 and muster
#     (with and without its receive coalescing, `--coalesce-us 0`); registrations per master
#     CPU-second = servers listed afterwards / CPU. The kernel's part (stime) is kept apart too:
#     it says how much of a registration no master's own code can remove. Every master's socket gets the same receive
#     buffer (benches/common.sh: net.core.rmem_max/rmem_default raised for the run, restored).
#  2. Xash3D bursts: a Xash3D fleet (the engine's handshake, 14 servers per address: xash3d-master's
#     cap) of 1,000 and 10,000 servers, then `query --mode xash` (8 lists in flight) against
#     FWGS xash3d-master (built with cargo) and muster: lists per master CPU-second.
#  3. Valve pages: a GoldSrc fleet of 10,000, then `query --mode valve` (8 walks in flight), against
#     the floor answering every `0x31` with one fixed full page (`floor --answer valve`): pages per
#     master CPU-second.
#  4. DP lists (the path the others are held to): 10,000 DP servers, `query --mode dp`, dpmaster
#     2.2 and muster: lists per master CPU-second.
#
#   benches/paths.sh                      # about 8 minutes
#   ROUNDS=1 PARTS="xash valve" benches/paths.sh
#
# xash3d-master: XASH3D_MASTER=/path/to/binary, else built from target/peers/xash3d-master (cloned
# from a local mirror or GitHub if absent). Loopback only; every step bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-3}"
PARTS="${PARTS:-registrations xash valve dp}"
DUR="${DUR:-6}"
CONC="${CONC:-8}"
OUT=target/bench-paths
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/*.json "$OUT"/*.out "$OUT"/*.err
source benches/common.sh
[ -n "$DPMASTER" ] || { echo "dpmaster: not built (no ../shared/peers/dpmaster, no DPMASTER)"; exit 1; }

XM="${XASH3D_MASTER:-}"
if [ -z "$XM" ]; then
    d=target/peers/xash3d-master
    if [ ! -d "$d" ]; then
        for src in /work/.mirror/FWGS+xash3d-master/repo https://github.com/FWGS/xash3d-master; do
            timeout 120 git clone -q "$src" "$d" 2>/dev/null && break
            rm -rf "$d"
        done
    fi
    if [ -d "$d" ] && (cd "$d" && timeout 600 cargo build --release -q -p xash3d-master); then
        XM="$d/target/release/xash3d-master"
    fi
fi
if [[ " $PARTS " == *" xash "* ]] && [ -z "$XM" ]; then
    echo "xash3d-master: not built (set XASH3D_MASTER)"; exit 1
fi
[ -z "$XM" ] || (cd "$(dirname "$XM")/../.." && git rev-parse --short HEAD 2>/dev/null) >"$OUT/xm-commit.txt" || true

# start_xm: xash3d-master on CPU 0, its socket created while net.core.rmem_default is muster's
# buffer (it never sets SO_RCVBUF), as dpmaster's.
start_xm() {
    local port; port=$(free_port)
    sysctl -q -w net.core.rmem_default="$RCVBUF"
    taskset -c 0 "$XM" --ip 127.0.0.1 --port "$port" >"$OUT/master.out" 2>&1 &
    PID=$!
    ADDR="127.0.0.1:$port"
    for _ in $(seq 50); do [ -n "$(rcvbuf "$port")" ] && break; sleep 0.1; done
    sysctl -q -w net.core.rmem_default="$RMEM_DEFAULT0"
    check_rcvbuf "$port" xash3d-master
}
start_floor() {
    local port; port=$(free_port)
    taskset -c 0 $L floor --listen "127.0.0.1:$port" --duration 600 "$@" >/dev/null 2>&1 &
    PID=$!
    ADDR="127.0.0.1:$port"
    for _ in $(seq 50); do [ -n "$(rcvbuf "$port")" ] && break; sleep 0.1; done
    check_rcvbuf "$port" floor
}
start() {
    case $1 in
        muster) start_muster 1 --no-probes --trust 127.0.0.0/8 ;;
        muster-nap0) start_muster 1 --no-probes --trust 127.0.0.0/8 --coalesce-us 0 ;;
        dpmaster) start_dpmaster ;;
        xm) start_xm ;;
        floor) start_floor ;;
        floor-nap) start_floor --nap-us 250 ;;
        floor-valve) start_floor --answer valve ;;
    esac
}

for round in $(seq "$ROUNDS"); do
    if [[ " $PARTS " == *" registrations "* ]]; then
        for rate in 20000 100000; do
        for who in floor floor-nap dpmaster muster-nap0 muster; do
            tag="reg-$who-r$rate-$round"
            echo "== $tag"
            start "$who"
            c0=$(cpu_ticks "$PID"); s0=$(sys_ticks "$PID")
            $LG1 $L fleet --target "$ADDR" --servers 100000 --protocol dp --per-host 32 --rate "$rate" \
                --count 100000 --duration 120 --port $((FLEET_PORT + 300)) --json "$OUT/$tag.fleet.json" >/dev/null
            c1=$(cpu_ticks "$PID"); s1=$(sys_ticks "$PID")
            echo "$(( c1 - c0 ))" >"$OUT/$tag.cpu.txt"
            echo "$(( s1 - s0 ))" >"$OUT/$tag.sys.txt"
            if [ "$who" = floor ] || [ "$who" = floor-nap ]; then echo 100000; else listed_wait "$ADDR" dp 100000; fi >"$OUT/$tag.listed.txt"
            stop_master
        done
        done
    fi
    if [[ " $PARTS " == *" xash "* ]]; then
        for n in 1000 10000; do
            for who in xm muster; do
                tag="xash-$who-n$n-$round"
                echo "== $tag"
                start "$who"
                # The fleet keeps answering the master (xash3d-master asks nothing; muster runs
                # --no-probes) until the load is done; each server registers once.
                $LG1 $L fleet --target "$ADDR" --servers "$n" --protocol xash --per-host 14 --rate 20000 \
                    --duration 120 --port $((FLEET_PORT + 400)) --source-base 150 --json "$OUT/$tag.fleet.json" >/dev/null &
                fleet=$!
                listed_wait "$ADDR" xash "$n" >"$OUT/$tag.listed.txt"
                query_load "$ADDR" "$tag" xash "$n" "$LG1"
                kill -INT "$fleet" 2>/dev/null || true; wait "$fleet" 2>/dev/null || true
                stop_master
            done
        done
    fi
    if [[ " $PARTS " == *" valve "* ]]; then
        for who in floor-valve muster; do
            tag="valve-$who-$round"
            echo "== $tag"
            start "$who"
            expect=230
            if [ "$who" = muster ]; then
                expect=10000
                register "$ADDR" 10000 valve 100 "$tag" valve 10000
            fi
            query_load "$ADDR" "$tag" valve "$expect" "$LG1"
            stop_master
        done
    fi
    if [[ " $PARTS " == *" dp "* ]]; then
        for who in dpmaster muster; do
            tag="dp-$who-$round"
            echo "== $tag"
            start "$who"
            register "$ADDR" 10000 dp 100 "$tag" dp 10000
            query_load "$ADDR" "$tag" dp 10000 "$LG1"
            stop_master
        done
    fi
done
python3 benches/paths_report.py "$OUT" "$ROUNDS" "$TICK"
