#!/usr/bin/env python3
"""Writes the results of benches/e2e.sh into docs/benchmarks.md, between the e2e markers."""
import measured
import json
import os
import platform
import subprocess
import sys

out, parts, sizes, dur, conc, tick = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4], sys.argv[5], int(sys.argv[6])


def load(name):
    path = f"{out}/{name}"
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f) if name.endswith(".json") else f.read().strip()


def cpu_secs(name):
    v = load(name)
    return int(v) / tick if v else 0.0


def ratio(a, b):
    return f"{a / b:.2f}×" if b else "—"


commit, dirty = measured.commit_of(out)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
blast = load("blast.json")
sections = []
sections.append(f"""### End to end (muster-loadgen on loopback)

Run on {measured.run_date(out)} at commit `{commit}`{' (with uncommitted changes)' if dirty else ''}: `PARTS="{' '.join(parts)}" SIZES="{' '.join(sizes)}" DUR={dur} CONC={conc} benches/e2e.sh`
(`cargo build --release`). Machine: {os.cpu_count()} × {cpu}, Linux {platform.release()}. With one
master core, the master runs on CPU 0 (muster and dpmaster under `taskset -c 0`: every muster
thread, list builder, control and HTTP included) and the load generator on the other CPU; with
`--cores 2` they share both. Master CPU is utime + stime of the whole process from
`/proc/PID/stat` over the measured step. Every master socket had the same receive buffer,
{int(load("rcvbuf.txt") or 0):,} bytes (`ss -m`; muster asks for it, dpmaster got it from
`net.core.rmem_default`, raised while it started). Loopback ceiling measured in the same run
(`muster-loadgen blast --size 1395`): send_to {blast['methods'][0]['received_per_sec']:,.0f}
datagrams/s, GSO {blast['methods'][2]['received_per_sec']:,.0f}/s.""")

if "dpmaster" in parts:
    rows = []
    for n in ("1000", "10000"):
        base = None
        for who, label in (("dpmaster", "dpmaster 2.2"), ("muster1", "muster `--cores 1`"), ("muster2", "muster `--cores 2`")):
            tag = f"sbs-{who}-n{n}"
            q = load(f"{tag}.json")
            if not q:
                continue
            c = cpu_secs(f"{tag}.cpu.txt")
            lg = load(f"{tag}.lgtime.txt")
            lg_cpu = sum(float(x) for x in lg.split()) if lg else 0.0
            per_cpu = q["lists_complete"] / c if c else 0.0
            if who == "dpmaster":
                base = (q["lists_per_sec"], q["time_to_complete"]["p99_us"], per_cpu)
            b = base or (0, 0, 0)
            rows.append(
                f"| {int(n):,} | {label} | {q['lists_per_sec']:,.0f} ({ratio(q['lists_per_sec'], b[0])}) "
                f"| {q['time_to_complete']['p99_us'] / 1000:.2f} | {c:.2f} s | {per_cpu:,.0f} ({ratio(per_cpu, b[2])}) "
                f"| {q['lists_incomplete']} | {lg_cpu / float(dur):.0%} |")
    sections.append(f"""#### Side by side with dpmaster 2.2

The same DP fleet (`muster-loadgen fleet --protocol dp`, registered again until every server is
listed) with each master, then `muster-loadgen query --mode dp --concurrency {conc} --duration {dur}
--expect N` (`getservers Nexuiz 3 empty full`; muster trusts the load generator's loopback
sources, `--trust 127.0.0.0/8`, so admission control does not limit this load). Ratios are to
dpmaster in the same run.

| servers | master | whole lists/s | p99 whole list (ms) | master CPU | lists per master CPU-second | incomplete | load generator CPU |
|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + """

Registrations per master CPU-second beside dpmaster and the kernel's floor are measured by
`benches/paths.sh` (rounds, equal receive buffers): "Every path per master CPU-second" below.""")

if "sizes" in parts:
    rows = []
    for cores in ("1", "2"):
        for n in sizes:
            tag = f"size-c{cores}-n{n}"
            fl = load(f"{tag}.fleet.json")
            if not fl:
                continue
            rss = load(f"{tag}.rss.txt").split()
            rss1 = int(rss[1]) * 1024
            for kind in ("valve", "dp"):
                q = load(f"{tag}.{kind}.json")
                c = cpu_secs(f"{tag}.{kind}.cpu.txt")
                rows.append(f"| {cores} | {int(n):,} | {kind} | {fl['registrations_per_sec']:,.0f} | {q['lists_per_sec']:,.0f} "
                            f"| {q['time_to_complete']['p99_us'] / 1000:.2f} | {q['lists_incomplete']} | {(q['lists_complete'] / c if c else 0):,.0f} "
                            f"| {rss1 / 2**20:.0f} MiB ({rss1 / int(n):,.0f} B/server) |")
    sections.append(f"""#### muster alone, 1k to 1M servers

`fleet --protocol mixed` (a third each GoldSrc, DarkPlaces, Quake III; 32 servers per loopback
address through 32 wildcard sockets), then `query --mode valve|dp --concurrency {conc} --duration
{dur}` of the whole Valve (n/3) or Nexuiz (n/3) list. Registrations/s is the fleet's first round
at an offered 50,000/s. RSS is the master's resident memory once every server is listed.

| cores | servers | list | registrations/s | whole lists/s | p99 whole list (ms) | incomplete | lists per master CPU-second | RSS |
|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows))

if "million" in parts:
    m = load("million-muster.fleet.json")
    d = load("million-dpmaster.fleet.json")
    rows, lat = [], []
    for who, label, f in (("muster", "muster `--cores 2`", m), ("dpmaster", "dpmaster 2.2", d)):
        if not f:
            continue
        rss, hwm, listed = (int(x) for x in load(f"million-{who}.rss.txt").split())
        c = cpu_secs(f"million-{who}.regcpu.txt")
        lg = load(f"million-{who}.lgtime.txt")
        lg_cpu = sum(float(x) for x in lg.split()) if lg else 0.0
        lists = []
        for kind in ("dp", "dpext"):
            q = load(f"million-{who}.{kind}.json")
            if q:
                done = q["time_to_complete"]["max_us"] / 1e6 if q["lists_complete"] else 0
                lists.append(f"`{'getserversExt' if kind == 'dpext' else 'getservers'}`: {q['lists_complete']}/{q['lists_started']} whole, "
                             f"{q['entries_received'] / max(q['lists_started'], 1):,.0f} entries each"
                             + (f", {done:.2f} s" if done else ""))
        reg = f"{f['listed_per_sec']:,.0f}/s listed ({f['listed']:,}), {f['retries']:,} challenge retries"
        rows.append(f"| {label} | {rss / 1024:.0f} MiB | {hwm / 1024:.0f} MiB | {rss * 1024 / max(listed, 1):,.0f} | {reg} "
                    f"| {c:.2f} s ({(listed / c if c else 0):,.0f} per CPU-second) | {lg_cpu:.1f} s | {'; '.join(lists)} |")
    q0, q1 = load("million-muster.quiet.json"), load("million-muster.churn.json")
    if q0 and q1:
        for k, label in (("time_to_first_packet", "first page"), ("time_to_complete", "whole list (2,000 entries, paged)")):
            a, b = q0[k]["p99_us"] / 1000, q1[k]["p99_us"] / 1000
            lat.append(f"| {label} | {a:.2f} | {b:.2f} | {ratio(b, a)} | {q0['lists_complete']}/{q1['lists_complete']} |")
    sections.append(f"""#### A million servers

`fleet --protocol dp --servers 1000000 --rate 100000`: DarkPlaces servers each with its own
hostname (`muster-loadgen #i`), from 31,250 loopback addresses × 32 ports through 32 wildcard
sockets (IP_PKTINFO), through the whole handshake; the master on 2 cores with the load generator
on the same 2 CPUs. The count is `--verify`: the fleet's servers found on the master's list
afterwards, asked by a client with a 64 MiB receive buffer (a DP registration is never
acknowledged); registrations/s is that count over the fleet's first round. RSS and its high-water mark (VmHWM) once
every server is listed; the lists are asked by a client with the kernel's default receive buffer
(muster paces after the first 96 KiB at 4 MiB/s: a 7 MB list takes under 2 s).

| master | RSS | peak RSS | bytes per server | registrations | master CPU for them | load generator CPU | 1M DP list, 3 clients |
|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

Valve page latency at the million, open loop (`query --mode valve --rate 500 --duration {dur}` of
2,000 GoldSrc servers registered beside it), quiet and while those 2,000 re-heartbeat every second
with a new player count (`fleet --interval 1 --vary-players`):

| p99 (ms) | quiet | under churn | ratio (goal ≤ 3×) | whole lists quiet / churn |
|---|---|---|---|---|
""" + "\n".join(lat))

text = "<!-- e2e:begin (written by benches/e2e.sh; do not edit by hand) -->\n" + "\n\n".join(sections) + "\n<!-- e2e:end -->"
path = "docs/benchmarks.md"
doc = open(path).read()
b, e = doc.find("<!-- e2e:begin"), doc.find("<!-- e2e:end -->")
if b >= 0 and e >= 0:
    doc = doc[:b] + text + doc[e + len("<!-- e2e:end -->"):]
else:
    doc = doc.rstrip() + "\n\n" + text + "\n"
open(path, "w").write(doc)
print("docs/benchmarks.md updated")
