#!/usr/bin/env python3
"""Writes the results of benches/reflection.sh into docs/benchmarks.md, between the reflection
markers: what every flood delivered to the spoofed addresses, per master, and what clients got
meanwhile. Every figure is read from the run's JSON files; nothing is typed in by hand."""
import measured
import json
import os
import platform
import subprocess
import sys

out, masters, floods, tick = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4])
MIB = 1024 * 1024


def load(name):
    path = f"{out}/{name}"
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f) if name.endswith(".json") else f.read().strip()


def cpu_secs(name):
    v = load(name)
    return int(v) / tick if v else 0.0


commit, dirty = measured.commit_of(out)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
labels = {
    "dpmaster": "dpmaster 2.2",
    "dpmaster-f": "dpmaster 2.2 `-f`",
    "muster1": "muster `--cores 1`",
    "muster2": "muster `--cores 2`",
}
flood_labels = {
    "dumb": "dumb: 256 sources in two /24s, 5,000/s, 15 s",
    "per24": "2,000 /24s, one source each, 100 DP/s, 30 s",
    "servers": "the 313 game servers' addresses, 1,000 DP/s, 20 s",
    "xash": "2,000 /24s, 100 Xash3D/s, 20 s",
    "valve": "2,000 /24s, 200 Valve first pages/s, 20 s",
}


def whole(r, want):
    if not r:
        return "—"
    ok = r["lists_complete"] >= 1
    return f"{r['entries_received']:,}/{want:,}{' ✓' if ok else ' ✗'}"


rows = []
for f in floods:
    for who in masters:
        tag = f"{who}-{f}"
        r = load(f"{tag}.flood.json")
        if not r:
            continue
        dur = r["duration_secs"]
        # The master-wide budget's bound over the run: 1 MiB + 1 MiB/s, plus one reply.
        bound = f"{(MIB + MIB * dur) / 1e6:.1f} MB" if who.startswith("muster") and f != "valve" else "—"
        q = load(f"{tag}.qstat.txt")
        clients = [f"DP {whole(load(f'{tag}.returning.json'), 10000)}"]
        if q is not None:
            clients.append(f"qstat {int(q):,}/10,000")
        if who.startswith("muster"):
            clients.append(f"fresh Valve {whole(load(f'{tag}.fresh-valve.json'), 2000)}")
        rows.append(
            f"| {flood_labels.get(f, f)} | {labels[who]} | {r['sent_bytes'] / 1e3:,.0f} KB "
            f"| {r['reply_bytes'] / 1e6:,.2f} MB | {r['amplification']:,.1f}× "
            f"| {r['reply_bytes_per_sec_after_5s'] / 1e6:,.2f} MB/s | {bound} "
            f"| {r['max_source_reply_bytes'] / 1e3:,.1f} KB ({r['max_source_amplification']:,.1f}×) "
            f"| {r['sources_answered']:,}/{r['sources']:,} | {cpu_secs(f'{tag}.cpu.txt'):.2f} s | {'; '.join(clients)} |"
        )

expensive = ""
quiet, during, fl = load("expensive.quiet.json"), load("expensive.during.json"), load("expensive.flood.json")
if quiet and during and fl:
    qp, dp = quiet["time_to_complete"]["p99_us"], during["time_to_complete"]["p99_us"]
    q50, d50 = quiet["time_to_complete"]["p50_us"], during["time_to_complete"]["p50_us"]
    qc, fc = cpu_secs("expensive.quiet.cpu.txt"), cpu_secs("expensive.flood.cpu.txt")
    expensive = f"""

#### The expensive filter

muster `--cores 2` with 100,000 GoldSrc servers. Fresh Valve clients (each list from a new address
in a /24 of its own, five a second for 20 s) list one region (`--region 3`, 12,500 servers: 55 pages after the 5-entry
first page), quiet, then while `muster-loadgen flood --kind expensive-filter --layout per24
--sources 2000 --rate 700` sends first pages whose filter (`\\name_match\\*no such server*`) no
index narrows and nothing matches — each would examine 65,536 candidates (`MAX_SCAN`).

| | whole lists | p50 whole list | p99 whole list | master CPU over the step |
|---|---|---|---|---|
| quiet | {quiet['lists_complete']}/{quiet['lists_started']} | {q50 / 1000:.1f} ms | {qp / 1000:.1f} ms | {qc:.2f} s over {quiet['duration_secs']:.0f} s |
| during the flood | {during['lists_complete']}/{during['lists_started']} | {d50 / 1000:.1f} ms ({d50 / q50 if q50 else 0:.2f}× quiet) | {dp / 1000:.1f} ms ({dp / qp if qp else 0:.2f}× quiet; goal ≤ 3×) | {fc:.2f} s over {fl['duration_secs']:.0f} s |

The flood sent {fl['sent_datagrams']:,} queries ({fl['sent_bytes'] / 1e3:,.0f} KB) and its addresses
got {fl['reply_bytes'] / 1e3:,.0f} KB back ({fl['amplification']:.2f}×)."""

rcvbuf = int(open(f"{out}/rcvbuf.txt").read()) if os.path.exists(f"{out}/rcvbuf.txt") else 0
text = f"""<!-- reflection:begin (written by benches/reflection.sh; do not edit by hand) -->
### Reflection against the smartest spoofer

Run on {measured.run_date(out)} at commit `{commit}`{' (with uncommitted changes)' if dirty else ''}: `benches/reflection.sh`
(`cargo build --release`). Machine: {os.cpu_count()} × {cpu}, Linux {platform.release()}. Every
master on its defaults (muster trusts only the helper that checks what is listed); 10,000 DP
servers listed, and for muster 2,000 GoldSrc servers beside them. Floods from
`muster-loadgen flood` (one `IP_PKTINFO` socket; every source a loopback address that receives
what the master sends it: the bytes a spoofer would have reflected at that address). Four seconds
into each flood, the returning clients (they listed once before the floods: the load generator's
DP client and stock qstat) and a fresh Valve client ask for the whole list. The bound is the
master-wide budget for unproven replies over the flood: 1 MiB + 1 MiB/s × its duration, plus one
reply. Master CPU is utime + stime of the whole process over the flood; with one core, muster and
dpmaster run under `taskset -c 0` (every muster thread, list builder and control included). Every
master socket had the same receive buffer, {rcvbuf:,} bytes (`ss -m`; muster asks for it, dpmaster
got it from `net.core.rmem_default`, raised while it started).

| flood | master | sent | to the spoofed addresses | amplification | from second 5 | muster's bound | worst address | addresses answered | master CPU | clients during the flood |
|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + expensive + "\n<!-- reflection:end -->"

path = "docs/benchmarks.md"
doc = open(path).read()
b, e = doc.find("<!-- reflection:begin"), doc.find("<!-- reflection:end -->")
if b >= 0 and e >= 0:
    doc = doc[:b] + text + doc[e + len("<!-- reflection:end -->"):]
else:
    doc = doc.rstrip() + "\n\n" + text + "\n"
open(path, "w").write(doc)
print("docs/benchmarks.md updated")
