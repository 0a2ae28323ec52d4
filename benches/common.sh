#!/usr/bin/env bash
# Shared by the benchmark scripts (sourced): the binaries, dpmaster 2.2 built from
# ../shared/peers, and helpers to start masters, register fleets and run list loads. Every
# step is bounded in time; everything runs on loopback.

cargo build --release --workspace -q
M=target/release/muster
L=target/release/muster-loadgen
CPUS=$(nproc)
TICK=$(getconf CLK_TCK)

if [ -z "${DPMASTER:-}" ] && [ -d ../shared/peers/dpmaster ]; then
    d=target/peers
    if [ ! -x "$d/dpmaster/dpmaster" ]; then
        rm -rf "$d" && mkdir -p "$d" && cp -r ../shared/peers/dpmaster "$d/"
        make -s -C "$d/dpmaster" release >/dev/null
    fi
    DPMASTER="$d/dpmaster/dpmaster"
fi
DPMASTER="${DPMASTER:-}"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
LG1=""; [ "$CPUS" -gt 1 ] && LG1="taskset -c 1-$((CPUS - 1))"

PID=""; ADDR=""
# start_muster CORES [flags…]: muster on 127.0.0.1 (pinned by itself: --cores 1 is CPU 0).
start_muster() {
    local cores=$1; shift
    local port; port=$(free_port)
    $M serve --config benches/bench.toml --listen "127.0.0.1:$port" --cores "$cores" --allow-private \
        --max-servers-per-ip 64 "$@" \
        >"$OUT/master.out" 2>"$OUT/master.err" &
    PID=$!
    for _ in $(seq 100); do grep -q "serving on" "$OUT/master.out" && break; sleep 0.1; done
    grep -q "serving on" "$OUT/master.out" || { cat "$OUT/master.err"; exit 1; }
    ADDR="127.0.0.1:$port"
}
# start_dpmaster [flags…]: dpmaster on CPU 0, quiet (-v 1: errors only; its default logs every packet).
start_dpmaster() {
    local port; port=$(free_port)
    local jail; jail=$(mktemp -d)
    taskset -c 0 "$DPMASTER" -j "$jail" -l 127.0.0.1 -p "$port" --allow-loopback -n 1100000 -N 64 -v 1 "$@" \
        >"$OUT/master.out" 2>&1 &
    PID=$!
    ADDR="127.0.0.1:$port"
    sleep 0.5
}
stop_master() { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }

# listed ADDR MODE: servers on the list (one query).
listed() {
    $L query --target "$1" --mode "$2" --count 1 --timeout 3 --source-base 61 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries_received"])'
}
# listed_wait ADDR MODE EXPECT: the list once it holds EXPECT, or after 5 s (each core's merged
# list lags by up to one refresh; dpmaster lists at once).
listed_wait() {
    local got=0
    for _ in $(seq 25); do
        got=$(listed "$1" "$2")
        [ "$got" -ge "$3" ] && break
        sleep 0.2
    done
    echo "$got"
}
# Fleet ports: fixed, so a second run re-registers the same servers.
FLEET_PORT=20000

# register ADDR N PROTOCOL BASE TAG [MODE EXPECT]: the fleet registers N servers and records the
# master's CPU over that first round; with MODE, again (up to 3 rounds) until EXPECT are listed
# (a DP registration lost on the way has no retry in the protocol).
register() {
    local addr=$1 n=$2 proto=$3 base=$4 tag=$5 mode=${6:-} expect=${7:-0}
    local port=$((FLEET_PORT + base))
    local c0; c0=$(cpu_ticks "$PID")
    $LG1 $L fleet --target "$addr" --servers "$n" --protocol "$proto" --per-host 32 --rate 50000 \
        --count "$n" --duration 300 --source-base "$base" --port "$port" --json "$OUT/$tag.fleet.json" >/dev/null
    local c1; c1=$(cpu_ticks "$PID")
    echo "$(( c1 - c0 ))" >"$OUT/$tag.regcpu.txt"
    [ -n "$mode" ] || return 0
    for _ in 1 2 3; do
        [ "$(listed_wait "$addr" "$mode" "$expect")" -ge "$expect" ] && break
        $LG1 $L fleet --target "$addr" --servers "$n" --protocol "$proto" --per-host 32 --rate 10000 \
            --count "$n" --duration 300 --source-base "$base" --port "$port" >/dev/null
    done
    listed_wait "$addr" "$mode" "$expect" >"$OUT/$tag.listed.txt"
}

# query_load ADDR TAG MODE EXPECT [pin]: closed-loop list load, the master's CPU over it.
query_load() {
    local addr=$1 tag=$2 mode=$3 expect=$4 pin=${5:-}
    local c0; c0=$(cpu_ticks "$PID")
    /usr/bin/time -o "$OUT/$tag.lgtime.txt" -f "%U %S" $pin $L query --target "$addr" --mode "$mode" \
        --concurrency "$CONC" --duration "$DUR" --expect "$expect" --json "$OUT/$tag.json" >/dev/null
    local c1; c1=$(cpu_ticks "$PID")
    echo "$(( c1 - c0 ))" >"$OUT/$tag.cpu.txt"
}

