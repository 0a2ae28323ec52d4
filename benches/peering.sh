#!/usr/bin/env bash
# Peering (issue 22), written into docs/benchmarks.md between the peering markers
# (benches/peering_report.py): three masters on loopback (`muster serve --cores 1`, all on CPU 0,
# `--no-probes`, each `--peer` of the other two with one key file), a DP fleet of N servers
# registering with A only (`muster-loadgen fleet --protocol dp --rate 50000`, on the other CPU).
# From the fleet's end: the time until B and C list every server A lists (each master's
# `muster_servers` polled every 0.2 s), and the peering bytes A sent per peer per server
# (`muster_peer_bytes_total`). At N = 10,000 and 1,000,000.
#
#   benches/peering.sh                 # about 4 minutes
#   N_BIG=100000 benches/peering.sh
#
# Loopback only; every step bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

N_SMALL="${N_SMALL:-10000}"
N_BIG="${N_BIG:-1000000}"
OUT=target/bench-peering
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/*.json "$OUT"/*.out "$OUT"/*.err
source benches/common.sh

KEY="$OUT/peer.key"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$KEY"
free_tcp_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
metric() {
    python3 - "$1" "$2" "${3:-}" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=10).read().decode()
name, label = sys.argv[2], sys.argv[3]
print(int(sum(float(l.split()[-1]) for l in body.splitlines()
              if l.startswith(name) and l[len(name)] in " {" and label in l)))
PY
}
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; PIDS=(); }
trap 'stop_all; restore_rmem' EXIT

run() {
    local tag=$1 n=$2
    local udp=() peer=() http=()
    for i in 0 1 2; do udp+=("$(free_port)"); peer+=("$(free_port)"); http+=("$(free_tcp_port)"); done
    for i in 0 1 2; do
        local peers=()
        for j in 0 1 2; do [ "$i" != "$j" ] && peers+=(--peer "127.0.0.1:${peer[$j]}"); done
        taskset -c 0 $M serve --config benches/bench.toml --listen "127.0.0.1:${udp[$i]}" --cores 1 \
            --allow-private --max-servers-per-ip 64 --no-probes --max-servers $(( n + n / 10 )) \
            --http "127.0.0.1:${http[$i]}" --peer-listen "127.0.0.1:${peer[$i]}" "${peers[@]}" \
            --peer-key-file "$KEY" >"$OUT/$tag.$i.out" 2>"$OUT/$tag.$i.err" &
        PIDS+=($!)
    done
    for i in 0 1 2; do
        for _ in $(seq 100); do grep -q "serving on" "$OUT/$tag.$i.out" && break; sleep 0.1; done
        grep -q "serving on" "$OUT/$tag.$i.out" || { cat "$OUT/$tag.$i.err"; exit 1; }
    done
    local a="127.0.0.1:${udp[0]}" ha="127.0.0.1:${http[0]}" hb="127.0.0.1:${http[1]}" hc="127.0.0.1:${http[2]}"
    $LG1 $L fleet --target "$a" --servers "$n" --protocol dp --per-host 32 --rate 50000 --count "$n" \
        --duration 300 --source-base 140 --port $(( FLEET_PORT + 500 )) --json "$OUT/$tag.fleet.json" >/dev/null
    local t0; t0=$(now)
    local want=0 tb="" tc="" la lb lc
    for _ in $(seq 1500); do
        la=$(metric "$ha" muster_servers); lb=$(metric "$hb" muster_servers); lc=$(metric "$hc" muster_servers)
        want=$(metric "$ha" muster_registrations_total)
        local t; t=$(python3 -c "print(round($(now) - $t0, 2))")
        [ -z "$tb" ] && [ "$lb" -ge "$want" ] && [ "$la" -ge "$want" ] && tb=$t
        [ -z "$tc" ] && [ "$lc" -ge "$want" ] && [ "$la" -ge "$want" ] && tc=$t
        [ -n "$tb" ] && [ -n "$tc" ] && break
        sleep 0.2
    done
    [ -n "$tb" ] && [ -n "$tc" ] || { echo "$tag: B or C never listed all $want ($la $lb $lc)"; exit 1; }
    echo "$n $want $tb $tc $(metric "$ha" muster_peer_bytes_total 'direction="out"') \
$(metric "$ha" muster_peer_datagrams_total 'direction="out"') $(metric "$hb" muster_peer_rejected_total) \
$(metric "$hc" muster_peer_rejected_total)" >"$OUT/$tag.txt"
    stop_all
}

echo "== peering at $N_SMALL servers"
run small "$N_SMALL"
echo "== peering at $N_BIG servers"
run big "$N_BIG"
python3 benches/peering_report.py "$OUT"
