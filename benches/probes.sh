#!/usr/bin/env bash
# Liveness probes (issue 21), written into docs/benchmarks.md between the probes markers
# (benches/probes_report.py):
#
#  1. cost: N GoldSrc servers (`muster-loadgen fleet --protocol valve`, re-heartbeating every
#     600 s so that nothing but probes crosses the wire while measured) against
#     `muster serve --cores 1` on CPU 0 (the fleet on the other CPU); once every server is listed
#     (each answered its first probe) and one probe interval (30 s, the default) later, 45 s of
#     the master's CPU (utime+stime), probes sent and bytes sent (`/metrics`), RSS. At N = 10,000 and
#     1,000,000; at 10,000 also the same window with `--no-probes` (the idle baseline).
#  2. silent → unlisted: the 10,000-server fleet is stopped (every server silent at once); the
#     time until the first and the last leaves the list (polled every 0.5 s; default timings:
#     interval 30 s, timeout 1 s, one resend, 2 misses).
#  3. the seed-000 question (../shared/seeds/000_*: a crawler that lists the master, then asks
#     every server): 10,000 servers of which 60% are dead (heartbeat, never answer: the seed finds
#     20–40% answering). Time to hold the list of live servers with players: `GET /api/v1/servers`
#     pages from muster's public listener (probes on) against `muster-loadgen crawl` (python-valve's
#     flow: 8 region lists, 256 A2S_INFO in flight, 1 s timeout, one retry) of muster with probes
#     (it lists the live ones) and of muster `--no-probes` (it lists every server that
#     heartbeats, as Valve's master does).
#
#   benches/probes.sh                  # about 12 minutes
#   N_BIG=100000 benches/probes.sh     # smaller second size
#
# Loopback only; every step bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

N_SMALL="${N_SMALL:-10000}"
N_BIG="${N_BIG:-1000000}"
WINDOW="${WINDOW:-45}"
WARMUP="${WARMUP:-30}"
OUT=target/bench-probes
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.out "$OUT"/*.err
source benches/common.sh

free_tcp_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
# metric HTTP NAME: the sum of NAME's samples on muster's /metrics.
metric() {
    python3 - "$1" "$2" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=10).read().decode()
name = sys.argv[2]
print(int(sum(float(l.split()[-1]) for l in body.splitlines()
              if l.startswith(name) and (l[len(name)] in " {"))))
PY
}
# listed_count HTTP: servers listed (the muster_servers gauge, every game).
listed_count() { metric "$1" muster_servers; }
# wait_listed HTTP EXPECT LIMIT: seconds until EXPECT are listed (polled every 0.5 s), or fail.
wait_listed() {
    local t0; t0=$(now)
    for _ in $(seq $(( $3 * 2 ))); do
        [ "$(listed_count "$1")" -ge "$2" ] && { python3 -c "print(round($(now) - $t0, 1))"; return 0; }
        sleep 0.5
    done
    echo "only $(listed_count "$1") of $2 listed after $3 s" >&2
    return 1
}
FLEET=""
stop_fleet() { [ -n "$FLEET" ] && { kill -TERM "$FLEET" 2>/dev/null || true; wait "$FLEET" 2>/dev/null || true; }; FLEET=""; }
on_exit_probes() { stop_fleet; on_exit; }
trap on_exit_probes EXIT

# cost TAG N [muster flags…]: part 1 for one size.
cost() {
    local tag=$1 n=$2; shift 2
    local hp; hp=$(free_tcp_port)
    start_muster 1 --http "127.0.0.1:$hp" --max-servers $(( n + n / 10 )) "$@"
    local http="127.0.0.1:$hp"
    local t0; t0=$(now)
    $LG1 $L fleet --target "$ADDR" --servers "$n" --protocol valve --per-host 32 --rate 50000 \
        --interval 600 --duration 900 --source-base 100 --port $(( FLEET_PORT + 300 )) \
        --json "$OUT/$tag.fleet.json" >/dev/null 2>"$OUT/$tag.fleet.err" &
    FLEET=$!
    local limit=$(( 120 + n / 2000 ))
    # Every server that registered (a handshake the fleet gave up after its retries comes back
    # only at its next heartbeat, 600 s later): 99.5% of the fleet, then the listed count is
    # stable against the registrations.
    wait_listed "$http" $(( n - n / 200 )) "$limit" >/dev/null
    for _ in $(seq 60); do
        [ "$(listed_count "$http")" -ge "$(metric "$http" muster_registrations_total)" ] && break
        sleep 0.5
    done
    python3 -c "print(round($(now) - $t0, 1))" >"$OUT/$tag.listed_secs.txt"
    # Steady state: one interval for the probes' phases to spread, then the window.
    sleep "$WARMUP"
    local c0 p0 b0 r0; c0=$(cpu_ticks "$PID"); p0=$(metric "$http" muster_probes_sent_total)
    b0=$(metric "$http" muster_bytes_sent_total); r0=$(metric "$http" muster_datagrams_received_total)
    sleep "$WINDOW"
    local c1 p1 b1 r1; c1=$(cpu_ticks "$PID"); p1=$(metric "$http" muster_probes_sent_total)
    b1=$(metric "$http" muster_bytes_sent_total); r1=$(metric "$http" muster_datagrams_received_total)
    echo "$(( c1 - c0 )) $(( p1 - p0 )) $(( b1 - b0 )) $(( r1 - r0 )) $WINDOW $TICK $(rss_kib "$PID") $(listed_count "$http")" >"$OUT/$tag.window.txt"
    metric "$http" muster_probe_timeouts_total >"$OUT/$tag.timeouts.txt"
    echo "$http" >"$OUT/$tag.http.txt"
}

echo "== cost at $N_SMALL servers, probes off (baseline)"
cost off "$N_SMALL" --no-probes
stop_fleet; stop_master
echo "== cost at $N_SMALL servers"
cost small "$N_SMALL"
echo "== silent → unlisted at $N_SMALL servers"
http=$(cat "$OUT/small.http.txt")
listed0=$(listed_count "$http")
t0=$(now); stop_fleet
first=""; last=""
for _ in $(seq 240); do
    n=$(listed_count "$http")
    t=$(python3 -c "print(round($(now) - $t0, 1))")
    [ -z "$first" ] && [ "$n" -lt "$listed0" ] && first=$t
    [ "$n" -eq 0 ] && { last=$t; break; }
    sleep 0.5
done
[ -n "$last" ] || { echo "servers still listed 120 s after going silent"; exit 1; }
echo "$first $last $(metric "$http" muster_servers_hidden)" >"$OUT/silent.txt"
stop_master
echo "== cost at $N_BIG servers"
cost big "$N_BIG"
stop_fleet; stop_master

echo "== seed-000: time to the live servers with players"
SEED_N="${SEED_N:-10000}"
# api_walk PUBLIC: seconds to walk /api/v1/servers whole, and the servers with players on it.
api_walk() {
    python3 - "$1" <<'PY'
import json, sys, time, urllib.request
base = f"http://{sys.argv[1]}/api/v1/servers"
t0 = time.monotonic()
cursor, live, pages = None, 0, 0
while True:
    url = base + (f"?cursor={cursor}" if cursor else "")
    page = json.load(urllib.request.urlopen(url, timeout=10))
    pages += 1
    live += sum(1 for s in page["servers"] if s["players"] > 0)
    cursor = page.get("next")
    if not cursor:
        break
print(round(time.monotonic() - t0, 3), live, pages)
PY
}
# seed_run TAG [muster flags…]: muster with its public listener and the seed fleet; sets http, public.
seed_run() {
    local tag=$1; shift
    local hp pp; hp=$(free_tcp_port); pp=$(free_tcp_port)
    start_muster 1 --http "127.0.0.1:$hp" --public-http "127.0.0.1:$pp" --trust 127.90.0.0/16 "$@"
    $LG1 $L fleet --target "$ADDR" --servers "$SEED_N" --protocol valve --per-host 32 --rate 50000 \
        --interval 600 --duration 600 --source-base 110 --port $(( FLEET_PORT + 400 )) \
        --probe-silent 0.6 --json "$OUT/seed-$tag.fleet.json" >/dev/null 2>&1 &
    FLEET=$!
    http="127.0.0.1:$hp"; public="127.0.0.1:$pp"
}
seed_run probes
live=$(( SEED_N - $(python3 -c "
n=$SEED_N; s=0
for i in range(n):
    u=((i*0x9E3779B97F4A7C15 % 2**64) >> 11) / 2**53
    s += u < 0.6
print(s)") ))
wait_listed "$http" "$live" 120 >/dev/null
# The public list is rebuilt every public_refresh_secs (5 s): wait for one holding them all.
for _ in $(seq 40); do
    [ "$(api_walk "$public" | awk '{ print $2 }')" -ge "$live" ] && break
    sleep 0.5
done
for k in 1 2 3; do api_walk "$public"; done >"$OUT/seed.api.txt"
$L crawl --target "$ADDR" --duration 300 --json "$OUT/seed.crawl-probes.json" >/dev/null 2>&1
stop_fleet; stop_master
seed_run noprobes --no-probes
wait_listed "$http" "$SEED_N" 120 >/dev/null
$L crawl --target "$ADDR" --duration 300 --json "$OUT/seed.crawl-noprobes.json" >/dev/null 2>&1
stop_fleet; stop_master
echo "$SEED_N $live" >"$OUT/seed.txt"

python3 benches/probes_report.py "$OUT"
