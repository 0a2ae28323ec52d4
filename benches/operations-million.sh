#!/usr/bin/env bash
# What the operator's side costs at a million servers, written into docs/benchmarks.md between the
# operations markers (benches/operations_report.py).
#
# The same N DP servers (`muster-loadgen fleet --protocol dp --rate 100000`, fixed ports) against
# `muster serve --cores 2`, twice in one run:
#   off  `--http off`: no dumps, no state file;
#   on   HTTP plus `--state-file`: every core dumps its shard each second, the state file is
#        written every 10 s;
# each time the master's CPU over the fleet's registrations and over IDLE quiet seconds after, RSS
# and peak RSS. Then the counts are checked: the master lists all N (a client with a 64 MiB buffer;
# DP registrations lost on the way are sent again, outside the measured step, up to twice), and
# for "on" /api/stats agrees and the state file holds N. Then `kill -9`, and a restart from the
# state file on the same port: time from exec to serving, RSS and peak RSS 5 s later, and
# /api/stats must count N servers, N restored and no registration; the list must hold N again.
# A count that does not match stops the script before it writes anything.
#
#   benches/operations-million.sh              # about 3 minutes
#   N=20000 IDLE=3 benches/operations-million.sh   # a smoke run (writes its figures too)
#
# Loopback only; every step bounded in time. The load generator shares the 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-1000000}"
IDLE="${IDLE:-12}"
OUT=target/bench-operations
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.out "$OUT"/*.err
source benches/common.sh

MAX=$(( N + N / 10 ))
FPORT=$(( FLEET_PORT + 100 ))
STATE="$OUT/state"

free_tcp_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# now: seconds since the epoch, to the nanosecond.
now() { date +%s.%N; }
# serve TAG PORT [flags…]: muster --cores 2 on 127.0.0.1:PORT; sets PID and, in $OUT/TAG.serving.txt,
# the seconds from exec to its "serving on" line (polled every 10 ms, at most 120 s).
serve() {
    local tag=$1 port=$2; shift 2
    local t0; t0=$(now)
    # --no-probes: the fleet registers and stops (probes are measured by benches/probes.sh).
    $M serve --config benches/bench.toml --listen "127.0.0.1:$port" --cores 2 --allow-private \
        --max-servers-per-ip 64 --no-probes --trust 127.0.0.0/8 --max-servers "$MAX" "$@" \
        >"$OUT/$tag.out" 2>"$OUT/$tag.err" &
    PID=$!
    for _ in $(seq 12000); do
        grep -q "serving on" "$OUT/$tag.out" && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.01
    done
    local t1; t1=$(now)
    grep -q "serving on" "$OUT/$tag.out" || { echo "$tag: muster did not start"; cat "$OUT/$tag.err"; exit 1; }
    python3 -c "print(round($t1 - $t0, 2))" >"$OUT/$tag.serving.txt"
    check_rcvbuf "$port" muster
}
# listed_all ADDR: servers on the master's DP list, asked by a client that can hold a million entries.
listed_all() {
    { $L query --target "$1" --mode dp-ext --count 1 --timeout 3 --source-base 61 --hosts 1 \
        --recv-buffer-kib 65536 2>/dev/null || true; } \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries_received"])'
}
# until_listed ADDR: polls the list (at most 30 s: each core's list lags by up to one refresh)
# until it holds N; prints the last count.
until_listed() {
    local got=0
    for _ in $(seq 30); do
        got=$(listed_all "$1")
        [ "$got" -ge "$N" ] && break
        sleep 1
    done
    echo "$got"
}
# api_stat HTTP POINTER: one field of /api/stats (a JSON pointer, e.g. /servers/total).
api_stat() {
    curl -sf --max-time 5 "http://$1/api/stats" | python3 -c "import functools, json, sys
print(functools.reduce(lambda v, k: v[k], '$2'.strip('/').split('/'), json.load(sys.stdin)))"
}
# until_stat HTTP POINTER VALUE: polls (at most 60 s) until the field is VALUE.
until_stat() {
    for _ in $(seq 120); do
        [ "$(api_stat "$1" "$2")" = "$3" ] && return 0
        sleep 0.5
    done
    echo "/api/stats $2 is $(api_stat "$1" "$2"), not $3"
    exit 1
}
fail() { echo "operations-million: $*"; exit 1; }

# run TAG [flags…]: one master, the fleet, the idle interval, the counts.
run() {
    local tag=$1; shift
    local port; port=$(free_port)
    serve "$tag" "$port" "$@"
    local addr="127.0.0.1:$port"
    RUN_ADDR=$addr
    echo "== $tag: $N DP servers"
    local c0; c0=$(cpu_ticks "$PID")
    $L fleet --target "$addr" --servers "$N" --protocol dp --per-host 32 --rate 100000 --count "$N" \
        --duration 300 --port "$FPORT" --json "$OUT/$tag.fleet.json" >/dev/null
    local c1; c1=$(cpu_ticks "$PID")
    sleep "$IDLE" # the measured quiet interval: the operator's side (dumps, state writes) at work
    local c2; c2=$(cpu_ticks "$PID")
    echo "$((c1 - c0)) $((c2 - c1)) $(rss_kib "$PID") $(hwm_kib "$PID")" >"$OUT/$tag.txt"
    # The counts (not measured): what the master lists, the fleet sent again for what was lost.
    local got round
    for round in 1 2 3; do
        got=$(until_listed "$addr")
        [ "$got" -ge "$N" ] && break
        [ "$round" = 3 ] && break
        echo "$tag: $got of $N listed; the fleet heartbeats again"
        $L fleet --target "$addr" --servers "$N" --protocol dp --per-host 32 --rate 20000 \
            --count "$N" --duration 300 --port "$FPORT" >/dev/null
    done
    echo "$got $((round - 1))" >"$OUT/$tag.listed.txt"
    [ "$got" = "$N" ] || fail "$tag: the master lists $got servers, not $N"
}

run off --http off
stop_master

HTTP="127.0.0.1:$(free_tcp_port)"
run on --http "$HTTP" --state-file "$STATE"
until_stat "$HTTP" /servers/total "$N"
# The state file holds every server before the kill (written every 10 s).
until_stat "$HTTP" /state/last_write_servers "$N"
stat_file=$(stat -c %s "$STATE")
addr=$RUN_ADDR
kill -9 "$PID"; wait "$PID" 2>/dev/null || true

echo "== restart from the state file ($stat_file bytes)"
serve restart "${addr##*:}" --http "$HTTP" --state-file "$STATE"
until_stat "$HTTP" /totals/restored "$N"
sleep 5 # RSS 5 s after serving again
echo "$(rss_kib "$PID") $(hwm_kib "$PID") $stat_file" >"$OUT/restart.txt"
echo "$(api_stat "$HTTP" /servers/total) $(api_stat "$HTTP" /totals/restored) $(api_stat "$HTTP" /totals/registrations)" \
    >"$OUT/restart.counts.txt"
read -r servers restored registrations <"$OUT/restart.counts.txt"
[ "$servers $restored $registrations" = "$N $N 0" ] \
    || fail "restart: /api/stats counts $servers servers, $restored restored, $registrations registrations"
got=$(until_listed "$addr")
echo "$got" >"$OUT/restart.listed.txt"
[ "$got" = "$N" ] || fail "restart: the master lists $got servers, not $N"
stop_master
rm -f "$STATE"

python3 benches/operations_report.py "$OUT" "$N" "$IDLE" "$TICK"
