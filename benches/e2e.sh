#!/usr/bin/env bash
# End-to-end benchmark: muster on loopback, a fleet of N game servers (1k, 10k, 100k), then Valve
# and DP list-query load, with `--cores 1` and `--cores 2`. Figures go into docs/benchmarks.md
# (between the e2e markers) as ratios to `muster-loadgen blast` measured in the same run.
#
#   benches/e2e.sh                      # all sizes, 5 s of query load per step
#   SIZES="1000 10000" DUR=3 benches/e2e.sh
#
# Everything runs on loopback; every step is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES="${SIZES:-1000 10000 100000}"
DUR="${DUR:-5}"
CONC="${CONC:-8}"
OUT=target/bench-e2e
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.skipped

cargo build --release --workspace -q
M=target/release/muster
L=target/release/muster-loadgen
# The fleet holds one socket per game server: a 100k fleet needs `ulimit -n` above 100k. Raise
# it as far as allowed; sizes that still do not fit are skipped and say so in the results.
ulimit -n 262144 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDS=$(ulimit -n)

CPUS=$(nproc)
# With --cores 1 the master runs on CPU 0 (glommio pins it); the load generator is kept off it.
pin_loadgen() { if [ "$1" = 1 ] && [ "$CPUS" -gt 1 ]; then echo "taskset -c 1-$((CPUS - 1))"; fi; }

echo "== blast (loopback ceiling, 1395-byte datagrams)"
$L blast --duration 3 --json "$OUT/blast.json" >/dev/null

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

for cores in 1 2; do
    for n in $SIZES; do
        tag="c${cores}-n${n}"
        echo "== $tag"
        if [ $((n + 512)) -gt "$FDS" ]; then
            echo "skipped: $n servers need $n sockets; ulimit -n is $FDS here" | tee "$OUT/$tag.skipped"
            continue
        fi
        $M serve --listen 127.0.0.1:0 --cores "$cores" --allow-private --max-servers-per-ip 64 \
            >"$OUT/$tag.master.out" 2>"$OUT/$tag.master.err" &
        mpid=$!
        for _ in $(seq 100); do grep -q "serving on" "$OUT/$tag.master.out" && break; sleep 0.1; done
        addr=$(sed -n 's/^muster: serving on \([^ ,]*\).*/\1/p' "$OUT/$tag.master.out")
        [ -n "$addr" ] || { echo "master did not start"; cat "$OUT/$tag.master.err"; exit 1; }
        rss0=$(rss_kib $mpid)
        # --protocol mixed: server i is GoldSrc if i % 3 == 0, DarkPlaces (Nexuiz) if 1, Quake III if 2.
        valve_n=$(((n + 2) / 3))
        dp_n=$(((n + 1) / 3))
        PIN=$(pin_loadgen "$cores")
        # The fleet stops by itself once every server has registered (--count N handshakes).
        $PIN $L fleet --target "$addr" --servers "$n" --protocol mixed --per-host 16 \
            --count "$n" --duration 120 --json "$OUT/$tag.fleet.json" >/dev/null
        # Wait (bounded) until every Valve server is listed by the core that answers.
        ok=0
        for _ in $(seq 100); do
            if $L query --target "$addr" --count 1 --expect "$valve_n" --timeout 2 \
                | grep -q '"lists_complete": 1'; then ok=1; break; fi
            sleep 0.2
        done
        [ "$ok" = 1 ] || { echo "the list never held every server"; kill $mpid; exit 1; }
        rss1=$(rss_kib $mpid)
        echo "$rss0 $rss1 $n" >"$OUT/$tag.rss"
        $PIN $L query --target "$addr" --mode valve --concurrency "$CONC" --duration "$DUR" \
            --expect "$valve_n" --json "$OUT/$tag.valve.json" --plot "$OUT/$tag.valve.svg" >/dev/null
        $PIN $L query --target "$addr" --mode dp --concurrency "$CONC" --duration "$DUR" \
            --expect "$dp_n" --json "$OUT/$tag.dp.json" --plot "$OUT/$tag.dp.svg" >/dev/null
        kill -TERM $mpid
        wait $mpid || true
    done
done

python3 - "$OUT" "$SIZES" "$DUR" "$CONC" <<'EOF'
import json, os, sys, platform, subprocess, datetime
out, sizes, dur, conc = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
blast = json.load(open(f"{out}/blast.json"))
m = {x["method"]: x for x in blast["methods"]}
base_pps = m["send_to"]["received_per_sec"]
gso_pps = m["gso"]["received_per_sec"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rows = []
for cores in ("1", "2"):
    for n in sizes:
        tag = f"c{cores}-n{n}"
        if os.path.exists(f"{out}/{tag}.skipped"):
            why = open(f"{out}/{tag}.skipped").read().strip()
            rows.append(f"| {cores} | {int(n):,} | — | {why} | | | | | | | |")
            continue
        try:
            fl = json.load(open(f"{out}/{tag}.fleet.json"))
        except FileNotFoundError:
            fl = {}
        v = json.load(open(f"{out}/{tag}.valve.json"))
        d = json.load(open(f"{out}/{tag}.dp.json"))
        rss0, rss1, _ = open(f"{out}/{tag}.rss").read().split()
        rss_per = (int(rss1) - int(rss0)) * 1024 / int(n)
        for name, q in (("Valve", v), ("DP", d)):
            rows.append(
                f"| {cores} | {int(n):,} | {name} | {q['lists_per_sec']:.0f} | {q['packets_per_sec']:,.0f} "
                f"| {q['packets_per_sec'] / base_pps:.2f}× / {q['packets_per_sec'] / gso_pps:.2f}× "
                f"| {q['bytes_per_sec'] / 1e6:.1f} | {q['time_to_complete']['p99_us'] / 1000:.2f} "
                f"| {q['lists_incomplete']} | {fl.get('registrations_per_sec', 0):,.0f} | {rss_per:.0f} |"
            )
text = f"""<!-- e2e:begin (written by benches/e2e.sh; do not edit by hand) -->
### End to end (muster + muster-loadgen on loopback)

Run on {datetime.date.today()}: `SIZES="{' '.join(sizes)}" DUR={dur} CONC={conc} benches/e2e.sh`
(`cargo build --release`; muster `serve --listen 127.0.0.1:0 --cores C --allow-private
--max-servers-per-ip 64`; `muster-loadgen fleet --servers N --protocol mixed` — a third each
GoldSrc, DarkPlaces, Quake III; then `query --mode valve|dp --concurrency {conc} --duration {dur}
--expect` the GoldSrc / DarkPlaces count). Machine: {os.cpu_count()} × {cpu}, Linux {platform.release()}.
**Master and load generator share these {os.cpu_count()} cores**: with `--cores 1` the master is
pinned to CPU 0 and the load generator to the rest (`taskset`); with `--cores 2` they compete, so
those rows measure the pair, not the master alone.

Ceiling measured in the same run (`muster-loadgen blast --size 1395`): send_to
{base_pps:,.0f} packets/s, sendmmsg {m['sendmmsg']['received_per_sec']:,.0f}, GSO {gso_pps:,.0f}
({blast['gso_vs_send_to']:.1f}× send_to).

| cores | servers | list | whole lists/s | list packets/s | packets/s ÷ blast send_to / GSO | MB/s | p99 whole list (ms) | incomplete | registrations/s | RSS bytes/server |
|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + """

A list is counted whole only with every expected entry. Registrations/s is the fleet's first round
(handshakes started at 20k/s by the load generator, so it caps the figure at small sizes). RSS per
server is the master's resident-memory growth over the fleet's registration divided by N.
Latency plots: `target/bench-e2e/*.svg`.
<!-- e2e:end -->"""
path = "docs/benchmarks.md"
doc = open(path).read()
b, e = doc.find("<!-- e2e:begin"), doc.find("<!-- e2e:end -->")
if b >= 0 and e >= 0:
    doc = doc[:b] + text + doc[e + len("<!-- e2e:end -->"):]
else:
    doc = doc.rstrip() + "\n\n" + text + "\n"
open(path, "w").write(doc)
print("docs/benchmarks.md updated")
EOF
