#!/usr/bin/env bash
# End-to-end benchmarks on loopback, written into docs/benchmarks.md (between the e2e markers):
#
#  1. side by side with dpmaster 2.2 (the reference a user would pick instead): the same DP
#     fleet registered with each, then the same list-query load — lists/s, p99, and lists per
#     second of the master's CPU (utime+stime from /proc/PID/stat) — dpmaster vs muster
#     `--cores 1` and `--cores 2`, at 1k and 10k servers; and the CPU per registration through
#     the full handshake at 100k, with the kernel's floor (`muster-loadgen floor`) beside them;
#  2. the reflection flood: 10k DP + 2k Valve servers listed, 256 spoofed sources sending 5,000
#     list queries/s for 15 s — the bandwidth amplification (BAF) muster (defaults) and dpmaster
#     (default, and `-f`) hand out, and whether fresh clients still get whole lists meanwhile;
#  3. muster alone at 1k / 10k / 100k / 1M servers: registrations/s, list load, memory;
#  4. a million DP servers, each with its own hostname (the goals of docs/benchmarks.md): RSS,
#     registrations/s through the handshake (`fleet --verify`: what the master lists), Valve page
#     latency quiet and while 2,000 servers re-heartbeat every second, the 1M DP list at a client
#     with the default socket buffer — and dpmaster 2.2 given the same million.
#
#   benches/e2e.sh                                   # everything (about 20 minutes)
#   PARTS="dpmaster flood" DUR=5 benches/e2e.sh      # some parts
#   SIZES="1000 10000" benches/e2e.sh
#
# dpmaster is built from ../shared/peers/dpmaster as its README there says (set DPMASTER to use a
# binary of your own). Everything runs on loopback; every step is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

PARTS="${PARTS:-dpmaster flood sizes million}"
SIZES="${SIZES:-1000 10000 100000 1000000}"
DUR="${DUR:-8}"
CONC="${CONC:-8}"
OUT=target/bench-e2e
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt

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
    $M serve --listen "127.0.0.1:$port" --cores "$cores" --allow-private --max-servers-per-ip 64 "$@" \
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
FLEET_PORT=40000

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

echo "== blast (loopback ceiling, 1395-byte datagrams)"
$L blast --duration 3 --json "$OUT/blast.json" >/dev/null

if [[ " $PARTS " == *" dpmaster "* ]]; then
    [ -n "$DPMASTER" ] || { echo "dpmaster: not built (no ../shared/peers/dpmaster, no DPMASTER)"; exit 1; }
    for n in 1000 10000; do
        for who in dpmaster muster1 muster2; do
            tag="sbs-$who-n$n"
            echo "== $tag"
            case $who in
                dpmaster) start_dpmaster; pin=$LG1 ;;
                # The load generator's sources are trusted: this measures speed, not admission.
                muster1) start_muster 1 --trust 127.0.0.0/8; pin=$LG1 ;;
                muster2) start_muster 2 --trust 127.0.0.0/8; pin="" ;;
            esac
            register "$ADDR" "$n" dp 100 "$tag" dp "$n"
            sleep 1
            query_load "$ADDR" "$tag" dp "$n" "$pin"
            stop_master
        done
    done
    echo "== registration CPU at 100k (dpmaster, muster --cores 1, the floor)"
    for rate in 20000 100000; do
    for who in dpmaster muster1 floor; do
        tag="reg-$who-r$rate"
        case $who in
            dpmaster) start_dpmaster ;;
            muster1) start_muster 1 --trust 127.0.0.0/8 ;;
            floor)
                port=$(free_port)
                taskset -c 0 $L floor --listen "127.0.0.1:$port" --duration 300 >/dev/null 2>&1 &
                PID=$!; ADDR="127.0.0.1:$port"; sleep 0.3 ;;
        esac
        c0=$(cpu_ticks "$PID")
        $LG1 $L fleet --target "$ADDR" --servers 100000 --protocol dp --per-host 32 --rate "$rate" \
            --count 100000 --duration 120 --json "$OUT/$tag.fleet.json" >/dev/null
        c1=$(cpu_ticks "$PID")
        echo "$(( c1 - c0 ))" >"$OUT/$tag.regcpu.txt"
        if [ "$who" = floor ]; then echo 100000 >"$OUT/$tag.listed.txt"; else listed_wait "$ADDR" dp 100000 >"$OUT/$tag.listed.txt"; fi
        stop_master
    done
    done
fi

if [[ " $PARTS " == *" flood "* ]]; then
    for who in muster muster-dp dpmaster dpmaster-f; do
        tag="flood-$who"
        echo "== $tag"
        kind=query
        case $who in
            muster) start_muster 2 ;;
            muster-dp) start_muster 2; kind=dp-query ;;
            dpmaster) [ -n "$DPMASTER" ] || continue; start_dpmaster; kind=dp-query ;;
            dpmaster-f) [ -n "$DPMASTER" ] || continue; start_dpmaster -f; kind=dp-query ;;
        esac
        register "$ADDR" 10000 dp 100 "$tag-dp" dp 10000
        if [[ $who == muster* ]]; then register "$ADDR" 2000 valve 120 "$tag-valve" valve 2000; fi
        sleep 1
        $L flood --target "$ADDR" --kind "$kind" --sources 256 --rate 5000 --duration 15 \
            --json "$OUT/$tag.json" >/dev/null &
        fpid=$!
        sleep 6
        # Fresh clients in the middle of the flood, from addresses the flood does not use.
        if command -v quakestat >/dev/null; then
            timeout 30 quakestat -nexuizm,outfile "$ADDR,-" | grep -c '^nexuizs ' >"$OUT/$tag.qstat.txt" || true
        fi
        $L query --target "$ADDR" --mode dp --count 1 --expect 10000 --timeout 3 --source-base 78 \
            --json "$OUT/$tag.fresh-dp.json" >/dev/null || true
        if [[ $who == muster* ]]; then
            $L query --target "$ADDR" --mode valve --count 1 --expect 2000 --timeout 3 --source-base 77 \
                --json "$OUT/$tag.fresh-valve.json" >/dev/null || true
        fi
        wait "$fpid"
        stop_master
    done
fi

if [[ " $PARTS " == *" sizes "* ]]; then
    for cores in 1 2; do
        for n in $SIZES; do
            tag="size-c$cores-n$n"
            echo "== $tag"
            start_muster "$cores" --trust 127.0.0.0/8 --max-servers 2000000
            rss0=$(rss_kib "$PID")
            valve_n=$(( (n + 2) / 3 )); dp_n=$(( (n + 1) / 3 ))
            register "$ADDR" "$n" mixed 100 "$tag"
            # Every core lists every server (each core's list lags by up to one refresh).
            listed_wait "$ADDR" valve "$valve_n" >/dev/null
            echo "$rss0 $(rss_kib "$PID") $n" >"$OUT/$tag.rss.txt"
            pin=""; [ "$cores" = 1 ] && pin=$LG1
            query_load "$ADDR" "$tag.valve" valve "$valve_n" "$pin"
            query_load "$ADDR" "$tag.dp" dp "$dp_n" "$pin"
            stop_master
        done
    done
fi

if [[ " $PARTS " == *" million "* ]]; then
    for who in muster dpmaster; do
        tag="million-$who"
        echo "== $tag"
        case $who in
            muster) start_muster 2 --trust 127.0.0.0/8 --max-servers 1100000 ;;
            dpmaster) [ -n "$DPMASTER" ] || continue; start_dpmaster ;;
        esac
        c0=$(cpu_ticks "$PID")
        /usr/bin/time -o "$OUT/$tag.lgtime.txt" -f "%U %S" $L fleet --target "$ADDR" --servers 1000000 \
            --protocol dp --per-host 32 --rate 100000 --count 1000000 --duration 300 --verify \
            --json "$OUT/$tag.fleet.json" >/dev/null
        c1=$(cpu_ticks "$PID")
        echo "$(( c1 - c0 ))" >"$OUT/$tag.regcpu.txt"
        listed=$(python3 -c "import json; print(json.load(open('$OUT/$tag.fleet.json'))['listed'])")
        if [ "$who" = muster ]; then
            # 2,000 GoldSrc servers beside the million; quiet, then re-heartbeating every second
            # with a new player count each time (the same servers: fixed ports).
            $L fleet --target "$ADDR" --servers 2000 --protocol valve --per-host 32 --rate 20000 \
                --count 2000 --duration 60 --source-base 120 --port 41000 >/dev/null
            sleep 2
            $L query --target "$ADDR" --mode valve --rate 500 --duration "$DUR" --expect 2000 \
                --json "$OUT/$tag.quiet.json" >/dev/null
            $L fleet --target "$ADDR" --servers 2000 --protocol valve --per-host 32 --rate 20000 \
                --interval 1 --vary-players --duration $((DUR + 4)) --source-base 120 --port 41000 >/dev/null &
            churn=$!
            sleep 2
            $L query --target "$ADDR" --mode valve --rate 500 --duration "$DUR" --expect 2000 \
                --json "$OUT/$tag.churn.json" >/dev/null
            wait "$churn"
        fi
        sleep 2
        echo "$(rss_kib "$PID") $(hwm_kib "$PID") $listed" >"$OUT/$tag.rss.txt"
        $L query --target "$ADDR" --mode dp --count 3 --expect "$listed" --timeout 5 --source-base 79 \
            --json "$OUT/$tag.dp.json" >/dev/null || true
        $L query --target "$ADDR" --mode dp-ext --count 3 --expect "$listed" --timeout 5 --source-base 79 \
            --json "$OUT/$tag.dpext.json" >/dev/null || true
        stop_master
    done
fi

python3 benches/e2e_report.py "$OUT" "$PARTS" "$SIZES" "$DUR" "$CONC" "$TICK"
