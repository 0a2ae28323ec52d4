#!/usr/bin/env bash
# muster's public lists against nginx serving the very same bytes as static files — the FWGS
# setup today (a file a job rebuilds) — in one run, on loopback, with one HTTP load tool (wrk).
#
# For 10k and 1M Xash3D servers (the load generator's fleet, the engine's handshake): register
# them, save muster's /v1/servers/valve and /api/v1/servers (first page) into nginx's root, then
# for each URL run wrk against muster and against nginx and report requests/s, p99 latency, and
# requests per CPU-second of the server (its process's utime+stime over the run; for muster also
# its public listener's thread alone). nginx runs one worker (muster's public listener is one
# runtime thread), sendfile on, access log off.
#
# Usage: bash benches/http.sh [SIZES...]   (default: 10000 1000000)
# Env: DUR (seconds per wrk run, 10), CONNS (wrk connections, 16), OUT (result file).
# Loopback only; bounded: each wrk run lasts DUR seconds, each fleet at most 300 s.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("${@:-10000 1000000}")
read -r -a SIZES <<<"${SIZES[*]}"
DUR=${DUR:-10}
CONNS=${CONNS:-16}
OUT=${OUT:-target/http-bench.txt}
HZ=$(getconf CLK_TCK)

need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "== installing $2"
        apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
    fi
}
need wrk wrk
need nginx nginx
need curl curl

CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1} cargo build --release --workspace -q
M=target/release/muster
L=target/release/muster-loadgen
W=$(mktemp -d /tmp/muster-http-bench.XXXX)
chmod 755 "$W"
MPORT=28950 HPORT=28081 OPORT=28080 NPORT=28082
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
# utime+stime of muster's threads named $2 (e.g. muster-public)
thread_ticks() {
    local t=0
    for d in /proc/$1/task/*; do
        if [ "$(cat "$d/comm")" = "$2" ]; then t=$((t + $(awk '{print $14+$15}' "$d/stat"))); fi
    done
    echo $t
}

{
echo "# benches/http.sh run of $(date -u +%F) at $(git rev-parse --short HEAD)$(git diff --quiet -- . ':!docs/benchmarks.md' || echo +dirty)"
echo "# $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2}') × $(nproc), $(uname -r); wrk -t1 -c$CONNS -d${DUR}s; nginx $(nginx -v 2>&1 | sed 's/.*\///')"
printf '%-8s %-20s %-7s %12s %10s %10s %14s %14s %8s\n' servers path server "body_bytes" "req/s" "p99" "req/cpu_s" "req/thread_s" ratio
} | tee "$OUT"

for N in "${SIZES[@]}"; do
    # --no-probes: the fleet registers and stops (probes are measured by benches/probes.sh).
    $M serve --listen 127.0.0.1:$MPORT --cores 1 --allow-private --max-servers-per-ip 64 \
        --max-servers-per-net 65535 --no-probes --trust 127.0.0.0/8 --max-servers $((N + 1000)) --http 127.0.0.1:$OPORT \
        --public-http 127.0.0.1:$HPORT >"$W/muster.out" 2>"$W/muster.err" &
    MPID=$!
    PIDS+=("$MPID")
    until grep -q "public lists on" "$W/muster.out" 2>/dev/null; do sleep 0.1; done
    $L fleet --target 127.0.0.1:$MPORT --servers "$N" --protocol xash --per-host 32 \
        --rate 100000 --count "$N" --duration 300 >/dev/null 2>&1
    # Ask the master until its public list has every server (one comment line + N records).
    for _ in $(seq 600); do
        lines=$(curl -s "http://127.0.0.1:$HPORT/v1/servers/valve" | wc -l)
        [ "$lines" -ge $((N + 1)) ] && break
        sleep 0.5
    done
    mkdir -p "$W/www/v1/servers" "$W/www/api/v1"
    curl -s -o "$W/www/v1/servers/valve" "http://127.0.0.1:$HPORT/v1/servers/valve"
    curl -s -o "$W/www/api/v1/servers" "http://127.0.0.1:$HPORT/api/v1/servers"
    chmod -R a+rX "$W/www"
    cat >"$W/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $W/nginx.pid;
error_log $W/nginx.err;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    types { }
    server {
        listen 127.0.0.1:$NPORT;
        root $W/www;
        location /v1/servers/ { default_type "text/plain; charset=utf-8"; }
        location /api/v1/ { default_type application/json; }
    }
}
EOF
    nginx -c "$W/nginx.conf" -p "$W" &
    NPID=$!
    PIDS+=("$NPID")
    sleep 1
    NWORKER=$(pgrep -P "$NPID" | head -1)

    for path in /v1/servers/valve /api/v1/servers; do
        # The same bytes from both, unchanged since they were saved.
        cmp -s <(curl -s "http://127.0.0.1:$HPORT$path") <(curl -s "http://127.0.0.1:$NPORT$path") \
            || { echo "muster and nginx bodies differ for $path" >&2; exit 1; }
        bytes=$(stat -c %s "$W/www$path")
        declare -A per_cpu=()
        for server in muster nginx; do
            if [ $server = muster ]; then port=$HPORT; pids=("$MPID"); else port=$NPORT; pids=("$NPID" "$NWORKER"); fi
            c0=$(ticks "${pids[@]}"); t0=$(thread_ticks "$MPID" muster-public)
            wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$port$path" >"$W/wrk.txt"
            c1=$(ticks "${pids[@]}"); t1=$(thread_ticks "$MPID" muster-public)
            requests=$(awk '/requests in/{print $1}' "$W/wrk.txt")
            rps=$(awk '/Requests\/sec/{print $2}' "$W/wrk.txt")
            p99=$(awk '$1=="99%"{print $2}' "$W/wrk.txt")
            errors=$(awk '/Non-2xx|Socket errors/' "$W/wrk.txt")
            [ -n "$errors" ] && echo "$server $path: $errors" >&2
            cpu=$(python3 -c "print(max(($c1-$c0)/$HZ, 1/$HZ))")
            per_cpu[$server]=$(python3 -c "print(round($requests/$cpu))")
            thread="-"
            if [ $server = muster ]; then
                thread=$(python3 -c "print(round($requests/max(($t1-$t0)/$HZ, 1/$HZ)))")
            fi
            ratio="-"
            if [ $server = nginx ]; then
                ratio=$(python3 -c "print(f'{${per_cpu[muster]}/${per_cpu[nginx]}:.2f}x')")
            fi
            printf '%-8s %-20s %-7s %12s %10s %10s %14s %14s %8s\n' "$N" "$path" $server "$bytes" "$rps" "$p99" "${per_cpu[$server]}" "$thread" "$ratio" | tee -a "$OUT"
        done
        unset per_cpu
    done
    kill "$NPID" "$MPID" 2>/dev/null || true
    wait "$NPID" "$MPID" 2>/dev/null || true
    PIDS=()
    rm -rf "$W/www"
done
echo "# ratio: muster's requests per CPU-second over nginx's, same path, same bytes, same run" | tee -a "$OUT"
python3 benches/http_report.py "$OUT"
