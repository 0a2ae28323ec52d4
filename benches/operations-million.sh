#!/bin/bash
# Kept in the repo for docs/benchmarks.md, "Operations at a million servers". Run after
# `cargo build --release --workspace`; loopback only; ~2 minutes.
# A million DP servers with the operator's side off vs on (HTTP + a state file every 10 s):
# RSS, peak RSS, master CPU per registration; then kill -9 and a restart from the state file.
cd /work/main
M=target/release/muster; L=target/release/muster-loadgen
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
rss() { awk '/VmRSS/{print $2}' /proc/$1/status; }
hwm() { awk '/VmHWM/{print $2}' /proc/$1/status; }
run() {
  local tag=$1; shift
  rm -f /tmp/m-state
  $M serve --listen 127.0.0.1:28950 --cores 2 --allow-private --max-servers-per-ip 64 --trust 127.0.0.0/8 --max-servers 1100000 "$@" >/tmp/m-$tag.out 2>/tmp/m-$tag.err &
  local pid=$!; sleep 1
  local c0=$(ticks $pid)
  $L fleet --target 127.0.0.1:28950 --servers 1000000 --protocol dp --per-host 32 --rate 100000 --count 1000000 --duration 300 --json /tmp/m-$tag.fleet.json >/dev/null
  local c1=$(ticks $pid)
  sleep 12   # two state intervals / ten dumps
  local c2=$(ticks $pid)
  echo "$tag: listed $(python3 -c "import json;print(json.load(open('/tmp/m-$tag.fleet.json'))['listed'])") reg_cpu_ticks $((c1-c0)) idle12s_ticks $((c2-c1)) rss_kib $(rss $pid) hwm_kib $(hwm $pid)"
  if [ -n "$STATE" ]; then
    ls -la /tmp/m-state
    kill -9 $pid; wait $pid 2>/dev/null
    local t0=$(date +%s.%N)
    $M serve --listen 127.0.0.1:28950 --cores 2 --allow-private --max-servers-per-ip 64 --trust 127.0.0.0/8 --max-servers 1100000 "$@" >/tmp/m-$tag-2.out 2>/tmp/m-$tag-2.err &
    pid=$!
    until grep -q "serving on" /tmp/m-$tag-2.out 2>/dev/null; do sleep 0.05; done
    local t1=$(date +%s.%N)
    echo "restart to serving: $(python3 -c "print(round($t1-$t0,2))") s; rss_kib $(rss $pid)"; sleep 5; echo "5 s later rss_kib $(rss $pid) hwm_kib $(hwm $pid)"
    grep -h "listed from the state file\|state file read" /tmp/m-$tag-2.err
    sleep 3
    curl -s 127.0.0.1:27081/api/stats | python3 -c "import json,sys; s=json.load(sys.stdin); print('after restart: servers', s['servers'], 'restored', s['totals']['restored'], 'registrations', s['totals']['registrations'])"
  fi
  kill $pid; wait $pid 2>/dev/null
}
run off --http off
STATE=1 run on --http 127.0.0.1:27081 --state-file /tmp/m-state
