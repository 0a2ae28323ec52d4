#!/usr/bin/env python3
"""Writes the results of benches/probes.sh into docs/benchmarks.md, between the probes markers
(appended at the end of the file the first time)."""
import json
import measured
import os
import platform
import sys

out = sys.argv[1]


def read(name):
    with open(f"{out}/{name}") as f:
        return f.read().split()


def window(tag):
    ticks, probes, sent, received, secs, tick, rss, listed = (int(x) for x in read(f"{tag}.window.txt"))
    return dict(cpu=ticks / tick, probes=probes, sent=sent, received=received, secs=secs, rss=rss / 1024,
                listed=listed)


def fleet(tag):
    with open(f"{out}/{tag}.fleet.json") as f:
        return json.load(f)


commit, dirty = measured.commit_of(out)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
off, small, big = window("off"), window("small"), window("big")
n_small, n_big = fleet("small")["servers"], fleet("big")["servers"]
listed_small, listed_big = float(read("small.listed_secs.txt")[0]), float(read("big.listed_secs.txt")[0])
listed_off = float(read("off.listed_secs.txt")[0])


def row(name, n, w, listed):
    s = w["secs"]
    per = w["cpu"] / w["probes"] * 1e6 if w["probes"] else 0
    return (f"| {name} | {w['listed']:,} of {n:,} | {w['probes'] / s:,.0f} | {w['sent'] / s / 1000:,.1f} KB/s | "
            f"{w['received'] / s:,.0f} | {w['cpu'] / s * 100:.2f}% | {per:.1f} µs | {w['rss']:.0f} MiB | {listed:.1f} s |")


rows = [
    row("probes off (`--no-probes`)", n_small, off, listed_off),
    row("probes on", n_small, small, listed_small),
    row("probes on", n_big, big, listed_big),
]
pace = (f"At {n_big:,} servers the per-core cap (10,000 datagrams a second) sets the pace: each server "
        "is probed less often than every 30 s, and a new GoldSrc server waits for its turn to be listed "
        "(a DP server is listed at once: its registration is itself a `getinfo` answered)."
        if big["probes"] / big["secs"] >= 9000 else
        f"At {n_big:,} servers the per-core cap (10,000 datagrams a second) is not reached.")


def took(secs):
    return f"{secs * 1000:.0f} ms" if secs < 1 else f"{secs:.1f} s"


first, last, _ = read("silent.txt")
seed_n, live = (int(x) for x in read("seed.txt"))
api = [l.split() for l in open(f"{out}/seed.api.txt").read().splitlines() if l.strip()]
api_secs = sorted(float(a[0]) for a in api)
api_live, api_pages = int(api[-1][1]), int(api[-1][2])
crawl = {t: json.load(open(f"{out}/seed.crawl-{t}.json")) for t in ("probes", "noprobes")}

text = f"""<!-- probes:begin (written by benches/probes.sh; do not edit by hand) -->
## Liveness probes

What probing costs and what it buys (issue 21). Run on {measured.run_date(out)} at commit
`{commit}`{' (with uncommitted changes)' if dirty else ''}: `benches/probes.sh` (`cargo build --release`). Machine:
{os.cpu_count()} × {cpu}, Linux {platform.release()}. `muster serve --cores 1` on CPU 0, the
load generator on the other CPU; default probe settings (interval 30 s, timeout 1 s, one resend,
2 misses, at most 10,000 probes a second per core). GoldSrc fleets (`muster-loadgen fleet
--protocol valve`, re-heartbeating every 600 s, so that only probes and their answers cross the
wire in the window) answer A2S_INFO with the S2C_CHALLENGE step, so one probe is two datagrams each
way. Figures over {small['secs']} s, one probe interval after every server is listed; CPU is the master's
utime + stime (`/proc/PID/stat`), probes and bytes from its `/metrics`. "Listed" counts every server
whose handshake completed (the fleet gives a handshake up after 3 retries and comes back at its
next heartbeat, 600 s later).

| | servers listed | probe datagrams sent /s | bytes sent | datagrams received /s | master CPU | CPU per probe datagram | RSS | fleet start → listed |
|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

{pace}

**Silent → unlisted.** The {n_small:,}-server fleet stopped at once (every server silent): the
first left the list {float(first):.1f} s later, the last {float(last):.1f} s later. Without probes
they stay listed until the heartbeat timeout (900 s by default, dpmaster's 15 minutes).

**The seed-000 question** (../shared/seeds/000: list the master, then ask every server; it finds
20–40% answering). {seed_n:,} GoldSrc servers heartbeat, {seed_n - live:,} of them (60%) never
answer; the {live:,} live ones have players. Time to hold the list of live servers with players:

| how | servers listed | live servers found | time |
|---|---|---|---|
| `GET /api/v1/servers` (public listener, probes on), {api_pages} page{'s' if api_pages != 1 else ''} | {api_live:,} | {api_live:,} | {took(api_secs[len(api_secs) // 2])} (median of {len(api_secs)}) |
| `muster-loadgen crawl` of muster with probes | {crawl['probes']['listed']:,} | {crawl['probes']['answered']:,} | {took(crawl['probes']['wall_secs'])} |
| `muster-loadgen crawl` of muster `--no-probes` (lists what heartbeats) | {crawl['noprobes']['listed']:,} | {crawl['noprobes']['answered']:,} | {took(crawl['noprobes']['wall_secs'])} |

The crawl (python-valve's flow: 8 region lists, 256 A2S_INFO in flight, 1 s timeout, one retry)
spends its time waiting on the dead; the API answer is at most one probe interval (30 s) old.
<!-- probes:end -->"""

measured.write_section("probes", text)
