#!/usr/bin/env python3
"""Writes the results of benches/operations-million.sh into docs/benchmarks.md, between the
operations markers."""
import measured
import json
import os
import platform
import subprocess
import sys

out, n, idle, tick = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])


def read(name):
    with open(f"{out}/{name}") as f:
        return f.read().split()


def fleet(tag):
    with open(f"{out}/{tag}.fleet.json") as f:
        return json.load(f)


commit, dirty = measured.commit_of(out)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
env = " ".join(f"{k}={v}" for k, v in (("N", n), ("IDLE", idle)) if (k, v) != ("N", 1000000) and (k, v) != ("IDLE", 12))
runs = {tag: [int(x) for x in read(f"{tag}.txt")] for tag in ("off", "on")}
listed = {tag: [int(x) for x in read(f"{tag}.listed.txt")] for tag in ("off", "on")}
mib = lambda kib: kib / 1024


def ratio(a, b):
    return f"{a / b:.2f}×" if b else "—"


(reg0, idle0, rss0, hwm0), (reg1, idle1, rss1, hwm1) = runs["off"], runs["on"]
rows = [
    f"| registration CPU (first round) | {reg0:,} ticks | {reg1:,} ticks | {ratio(reg1, reg0)} |",
    f"| CPU over {idle} idle s, {n:,} listed | {idle0:,} ticks | {idle1:,} ticks | +{(idle1 - idle0) / tick * 10 / idle:.2f} s per 10 s |",
    f"| RSS / peak RSS | {mib(rss0):.0f} / {mib(hwm0):.0f} MiB | {mib(rss1):.0f} / {mib(hwm1):.0f} MiB | {ratio(rss1, rss0)} / {ratio(hwm1, hwm0)} |",
    f"| fleet: registered (handshakes answered), first round | {fleet('off')['registered']:,} in {fleet('off')['first_round_secs']:.1f} s | {fleet('on')['registered']:,} in {fleet('on')['first_round_secs']:.1f} s | |",
    f"| listed afterwards (fleet rounds sent again) | {listed['off'][0]:,} ({listed['off'][1]}) | {listed['on'][0]:,} ({listed['on'][1]}) | |",
]
rss2, hwm2, size = (int(x) for x in read("restart.txt"))
servers, restored, registrations = (int(x) for x in read("restart.counts.txt"))
serving = float(read("restart.serving.txt")[0])
relisted = int(read("restart.listed.txt")[0])

text = f"""<!-- operations:begin (written by benches/operations-million.sh; do not edit by hand) -->
## Operations at a million servers

What the operator's side costs: a million DP servers (`muster-loadgen fleet --protocol dp`)
against `muster serve --cores 2` with `--http off` (no dumps, no state file) and with HTTP on plus
`--state-file` (each core dumps its shard every second; the state file is written every 10 s),
then `kill -9` and a restart from the file. The script checks its counts (every server listed
before and after the restart, counted restored with no registration) before writing this.

Run on {measured.run_date(out)} at commit `{commit}`{' (with uncommitted changes)' if dirty else ''}: `{env + ' ' if env else ''}benches/operations-million.sh`
(`cargo build --release`). Machine: {os.cpu_count()} × {cpu}, Linux {platform.release()}; the
master (`--cores 2`) and the load generator share the CPUs. Ticks are utime + stime of the master
from `/proc/PID/stat` ({tick} per second).

| | operations off (`--http off`) | HTTP + state file | ratio |
|---|---|---|---|
""" + "\n".join(rows) + f"""

Restart after `kill -9` from the {size / 1e6:.1f} MB state file ({size / n:.0f} bytes a server): serving
again {serving:.2f} s after exec; `/api/stats` then counted {servers:,} servers, {restored:,}
restored and {registrations:,} registrations, and the DP list held {relisted:,} servers; RSS 5 s later
{mib(rss2):.0f} MiB, peak during the restore {mib(hwm2):.0f} MiB.
<!-- operations:end -->"""

doc = open("docs/benchmarks.md").read()
b, e = doc.find("<!-- operations:begin"), doc.find("<!-- operations:end -->")
if b < 0 or e < 0:
    sys.exit("docs/benchmarks.md has no operations markers")
doc = doc[:b] + text + doc[e + len("<!-- operations:end -->"):]
open("docs/benchmarks.md", "w").write(doc)
print(text)
print("docs/benchmarks.md updated")
