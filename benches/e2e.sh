#!/usr/bin/env bash
# End-to-end benchmarks on loopback, written into docs/benchmarks.md (between the e2e markers):
#
#  1. side by side with dpmaster 2.2 (the reference a user would pick instead): the same DP
#     fleet registered with each, then the same list-query load — lists/s, p99, and lists per
#     second of the master's CPU (utime+stime from /proc/PID/stat) — dpmaster vs muster
#     `--cores 1` and `--cores 2`, at 1k and 10k servers (registrations per CPU-second beside
#     dpmaster and the kernel's floor: benches/paths.sh, in rounds);
#  2. (the reflection floods have their own script: benches/reflection.sh);
#  3. muster alone at 1k / 10k / 100k / 1M servers: registrations/s, list load, memory;
#  4. a million DP servers, each with its own hostname (the goals of docs/benchmarks.md): RSS,
#     registrations/s through the handshake (`fleet --verify`: what the master lists), Valve page
#     latency quiet and while 2,000 servers re-heartbeat every second, the 1M DP list at a client
#     with the default socket buffer — and dpmaster 2.2 given the same million.
#
#   benches/e2e.sh                                   # everything (about 20 minutes)
#   PARTS="dpmaster sizes" DUR=5 benches/e2e.sh      # some parts
#   SIZES="1000 10000" benches/e2e.sh
#
# dpmaster is built from ../shared/peers/dpmaster as its README there says (set DPMASTER to use a
# binary of your own). Side by side on equal terms (benches/common.sh): dpmaster's socket gets the
# receive buffer muster asks for (net.core.rmem_default raised while it starts, so run as root), and
# with one master core every muster thread runs on CPU 0 under `taskset -c 0`, as dpmaster does.
# Everything runs on loopback; every step is bounded in time.
# Every muster here runs --no-probes: the fleets register and stop, and what probing costs is
# measured by benches/probes.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PARTS="${PARTS:-dpmaster sizes million}"
SIZES="${SIZES:-1000 10000 100000 1000000}"
DUR="${DUR:-8}"
CONC="${CONC:-8}"
OUT=target/bench-e2e
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt

source benches/common.sh

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
                muster1) start_muster 1 --no-probes --trust 127.0.0.0/8; pin=$LG1 ;;
                muster2) start_muster 2 --no-probes --trust 127.0.0.0/8; pin="" ;;
            esac
            register "$ADDR" "$n" dp 100 "$tag" dp "$n"
            sleep 1
            query_load "$ADDR" "$tag" dp "$n" "$pin"
            stop_master
        done
    done
fi

if [[ " $PARTS " == *" sizes "* ]]; then
    for cores in 1 2; do
        for n in $SIZES; do
            tag="size-c$cores-n$n"
            echo "== $tag"
            start_muster "$cores" --no-probes --trust 127.0.0.0/8 --max-servers 2000000
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
            muster) start_muster 2 --no-probes --trust 127.0.0.0/8 --max-servers 1100000 ;;
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
                --count 2000 --duration 60 --source-base 120 --port 21000 >/dev/null
            sleep 2
            $L query --target "$ADDR" --mode valve --rate 500 --duration "$DUR" --expect 2000 \
                --json "$OUT/$tag.quiet.json" >/dev/null
            $L fleet --target "$ADDR" --servers 2000 --protocol valve --per-host 32 --rate 20000 \
                --interval 1 --vary-players --duration $((DUR + 4)) --source-base 120 --port 21000 >/dev/null &
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
