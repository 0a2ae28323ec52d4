#!/usr/bin/env bash
# Reflection against the smartest spoofer (issue 18), written into docs/benchmarks.md between the
# reflection markers. One run, the same CPU and the same floods for every master:
#
#   masters: dpmaster 2.2 (default), dpmaster 2.2 `-f` (its flood protection), muster `--cores 1`
#            and `--cores 2` on their defaults (muster trusts only the helper that checks what is
#            listed, 127.61.0.0/16);
#   listed:  10,000 DP (Nexuiz) servers from 313 hosts (`fleet --per-host 32`), and for muster
#            2,000 GoldSrc servers beside them;
#   floods (muster-loadgen flood, one PKTINFO socket, every source a loopback address):
#     dumb     256 sources over two /24s, 5,000 queries/s for 15 s, each alternating a Valve first
#              page and `getservers Nexuiz 3 empty full` (dpmaster: the DP query only);
#     per24    2,000 sources, each its own /24, 100 DP queries/s in all for 30 s: each source asks
#              once every 20 s, below every per-source and per-network budget;
#     servers  the 313 addresses of the listed game servers, 1,000 DP queries/s for 20 s;
#     xash     2,000 /24s, 100 Xash3D queries/s for 20 s (muster);
#     valve    2,000 /24s, 200 Valve first pages/s for 20 s (muster);
#   clients during each flood (4 s in): a returning DP client (it listed once before the floods)
#   and stock qstat (`quakestat -nexuizm`, also listed once before), and for muster a fresh Valve
#   client (its proof is its continuation) — each should get the whole list;
#   expensive filter (muster `--cores 2`, 100,000 GoldSrc servers): fresh Valve clients (a hundred,
#   each its own /24: `query --per24`) listing one
#   region (12,500 servers) quiet, then while 2,000 /24s send 700 first pages/s whose filter no
#   index narrows and nothing matches — p99 of the whole list, and the master's CPU.
#
#   dpmaster gets the receive buffer muster asks for, and muster `--cores 1` runs every thread on
#   CPU 0 as dpmaster does (benches/common.sh; run as root: it raises net.core.rmem_default while
#   dpmaster starts).
#
#   benches/reflection.sh                # about 15 minutes
#   FLOODS="per24 servers" MASTERS="dpmaster muster2" benches/reflection.sh
#   KEEP=1 MASTERS=muster2 benches/reflection.sh    # again for one master, the others' results kept
# Every muster here runs --no-probes: the fleets register and stop, and what probing costs is
# measured by benches/probes.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=target/bench-reflection
mkdir -p "$OUT"
# KEEP=1 keeps the results of an earlier run (to run some masters again and report them all).
[ "${KEEP:-0}" = 1 ] || rm -f "$OUT"/*.json "$OUT"/*.txt
source benches/common.sh

MASTERS="${MASTERS:-dpmaster dpmaster-f muster1 muster2}"
FLOODS="${FLOODS:-dumb per24 servers xash valve}"
EXPENSIVE="${EXPENSIVE:-1}"
GAP="${GAP:-12}"

# flood_args FLOOD WHO: the load generator's arguments for one flood.
flood_args() {
    local dp=dp-query; [[ $2 == muster* ]] && dp=query
    case $1 in
        dumb) echo "--kind $dp --layout packed --sources 256 --rate 5000 --duration 15 --source-base 30" ;;
        per24) echo "--kind dp-query --layout per24 --sources 2000 --rate 100 --duration 30 --source-base 150" ;;
        servers) echo "--kind dp-query --layout fleet --sources 313 --rate 1000 --duration 20 --source-base 100" ;;
        xash) echo "--kind xash --layout per24 --sources 2000 --rate 100 --duration 20 --source-base 150" ;;
        valve) echo "--kind valve-query --layout per24 --sources 2000 --rate 200 --duration 20 --source-base 150" ;;
    esac
}

fresh=170
for who in $MASTERS; do
    echo "== $who"
    case $who in
        dpmaster) [ -n "$DPMASTER" ] || continue; start_dpmaster ;;
        dpmaster-f) [ -n "$DPMASTER" ] || continue; start_dpmaster -f ;;
        muster1) start_muster 1 --no-probes --trust 127.61.0.0/16 ;;
        muster2) start_muster 2 --no-probes --trust 127.61.0.0/16 ;;
    esac
    register "$ADDR" 10000 dp 100 "$who-dp" dp 10000
    if [[ $who == muster* ]]; then register "$ADDR" 2000 valve 120 "$who-valve" valve 2000; fi
    # The returning clients list once before any flood.
    $L query --target "$ADDR" --mode dp --count 1 --expect 10000 --timeout 3 --source-base 78 \
        --hosts 1 --json "$OUT/$who.returning-before.json" >/dev/null || true
    if command -v quakestat >/dev/null; then
        timeout 30 quakestat -nexuizm,outfile "$ADDR,-" | grep -c '^nexuizs ' >"$OUT/$who.qstat-before.txt" || true
    fi
    for f in $FLOODS; do
        [[ $who == dpmaster* && ( $f == xash || $f == valve ) ]] && continue
        tag="$who-$f"
        echo "== $tag"
        c0=$(cpu_ticks "$PID")
        # shellcheck disable=SC2046
        $L flood --target "$ADDR" $(flood_args "$f" "$who") --json "$OUT/$tag.flood.json" >/dev/null &
        fpid=$!
        sleep 4
        $L query --target "$ADDR" --mode dp --count 1 --expect 10000 --timeout 3 --source-base 78 \
            --hosts 1 --json "$OUT/$tag.returning.json" >/dev/null || true
        if command -v quakestat >/dev/null; then
            timeout 30 quakestat -nexuizm,outfile "$ADDR,-" | grep -c '^nexuizs ' >"$OUT/$tag.qstat.txt" || true
        fi
        if [[ $who == muster* ]]; then
            fresh=$((fresh + 1))
            $L query --target "$ADDR" --mode valve --count 1 --expect 2000 --timeout 3 --source-base "$fresh" \
                --hosts 1 --json "$OUT/$tag.fresh-valve.json" >/dev/null || true
        fi
        wait "$fpid"
        c1=$(cpu_ticks "$PID")
        echo "$(( c1 - c0 ))" >"$OUT/$tag.cpu.txt"
        # Let the master-wide budget refill and its saturation lapse before the next flood.
        sleep "$GAP"
    done
    stop_master
done

if [ "$EXPENSIVE" = 1 ]; then
    tag=expensive
    echo "== $tag (muster --cores 2, 100,000 GoldSrc servers)"
    start_muster 2 --no-probes --trust 127.61.0.0/16
    register "$ADDR" 100000 valve 120 "$tag-valve" valve 100000
    # Fresh clients, five lists a second, each from its own address in its own /24 (players come
    # from many networks; 128 in one /24 would meet that network's budgets): one region
    # (i % 8 == 3). A hundred lists a step, so that the p99 is not simply the slowest of a few.
    c0=$(cpu_ticks "$PID")
    $L query --target "$ADDR" --mode valve --region 3 --rate 5 --duration 20 --expect 12500 \
        --timeout 3 --hosts 128 --per24 --source-base 200 --json "$OUT/$tag.quiet.json" >/dev/null || true
    c1=$(cpu_ticks "$PID")
    echo "$(( c1 - c0 ))" >"$OUT/$tag.quiet.cpu.txt"
    c0=$(cpu_ticks "$PID")
    $L flood --target "$ADDR" --kind expensive-filter --layout per24 --sources 2000 --rate 700 \
        --duration 24 --source-base 150 --json "$OUT/$tag.flood.json" >/dev/null &
    fpid=$!
    sleep 2
    $L query --target "$ADDR" --mode valve --region 3 --rate 5 --duration 20 --expect 12500 \
        --timeout 3 --hosts 128 --per24 --source-base 201 --json "$OUT/$tag.during.json" >/dev/null || true
    wait "$fpid"
    c1=$(cpu_ticks "$PID")
    echo "$(( c1 - c0 ))" >"$OUT/$tag.flood.cpu.txt"
    stop_master
fi

python3 benches/reflection_report.py "$OUT" "dpmaster dpmaster-f muster1 muster2" "dumb per24 servers xash valve" "$TICK"
