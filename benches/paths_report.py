#!/usr/bin/env python3
"""Writes the results of benches/paths.sh into docs/benchmarks.md, between the paths markers
(appended at the end of the file the first time). Each master's figure is the median of the
rounds; ratios are against the baseline of the same part, measured in the same run."""
import json
import measured
import os
import platform
import statistics
import sys

out, rounds, tick = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
commit, dirty = measured.commit_of(out)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
xm_commit = open(f"{out}/xm-commit.txt").read().strip() if os.path.exists(f"{out}/xm-commit.txt") else "?"


def have(tag):
    return os.path.exists(f"{out}/{tag}.cpu.txt")


def cpu_s(tag):
    return int(open(f"{out}/{tag}.cpu.txt").read()) / tick


def lg_share(tag, secs):
    """The load generator's CPU (utime+stime, /usr/bin/time) over the run's duration: near 1.00
    it had no CPU to spare, and the figures are what it could ask, not what the master can do."""
    path = f"{out}/{tag}.lgtime.txt"
    if not os.path.exists(path) or not secs:
        return float("nan")
    return sum(float(x) for x in open(path).read().split()[:2]) / secs


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_ratio(x, base):
    return f"{x / base:.2f}×" if base else "–"


sections = []

# 1. Registrations.
names = {"floor": "floor (`muster-loadgen floor`)", "floor-nap": "floor napping (`floor --nap-us 250`)",
         "dpmaster": "dpmaster 2.2", "muster": "muster `--cores 1`",
         "muster-nap0": "muster `--cores 1 --coalesce-us 0` (no naps)"}
rows = []
budget = []
for rate in (20000, 100000):
    reg = {}
    for who in ("floor", "floor-nap", "dpmaster", "muster-nap0", "muster"):
        runs = []
        for r in range(1, rounds + 1):
            tag = f"reg-{who}-r{rate}-{r}"
            if not have(tag):
                continue
            listed = int(open(f"{out}/{tag}.listed.txt").read().split()[0])
            retries = json.load(open(f"{out}/{tag}.fleet.json"))["retries"]
            c = cpu_s(tag)
            sys_path = f"{out}/{tag}.sys.txt"
            k = int(open(sys_path).read()) / tick if os.path.exists(sys_path) else float("nan")
            # (registrations per CPU-second, listed, retries, CPU, kernel µs per listed registration)
            runs.append((listed / c if c else 0, listed, retries, c, 1e6 * k / listed if listed else float("nan")))
        if runs:
            reg[who] = runs
    base = med([r[0] for r in reg.get("dpmaster", [])])
    floor = med([r[0] for r in reg.get("floor", [])])
    for who, runs in reg.items():
        per = med([r[0] for r in runs])
        rows.append(
            f"| {rate:,}/s | {names[who]} | {', '.join(f'{r[1]:,}' for r in runs)} | {', '.join(str(r[2]) for r in runs)} | "
            f"{', '.join(f'{r[3]:.2f} s' for r in runs)} | {per:,.0f} | {1e6 / per:.1f} µs | {med([r[4] for r in runs]):.1f} µs | "
            f"{fmt_ratio(per, base)} | {fmt_ratio(per, floor)} |")
    if base and "muster" in reg:
        kernel = {w: med([r[4] for r in reg[w]]) for w in ("muster", "floor", "floor-nap") if w in reg}
        budget.append(
            f"- {rate:,}/s: 3× dpmaster is {1e6 / base / 3:.1f} µs a registration; the kernel's part alone is "
            + ", ".join(f"{v:.1f} µs for {names[w].split(' (')[0]}" for w, v in kernel.items()) + ".")
if rows:
    sections.append("""### Registrations per master CPU-second

100,000 DP servers offered at 20,000/s and at 100,000/s through the whole handshake (`fleet
--protocol dp --rate R`), one master at a time on CPU 0 with the same receive buffer;
registrations per CPU-second = servers listed afterwards / the master's CPU over the fleet's run
(the floor lists nothing: it counts as all 100,000; a registration lost is CPU spent for nothing).
muster runs once with its default receive coalescing (`[sockets] coalesce_us = 250`: a core naps
250 µs to let a storm of game-server datagrams gather, never after a client's datagram) and once
without it; the floor runs once as is (it wakes for whatever has arrived) and once napping 250 µs
after every read that emptied its socket (`--nap-us 250`), the least a master that naps can spend.
Each round's listed, retries and CPU, then the median's figures. "Kernel" is the master's system
time (stime) per listed registration, the part its own code does not spend: the system calls, two
datagrams in and one out through the network stack, and on loopback the delivery of each reply
into the load generator's socket and the wake-up of its reader.

| offered | master | listed | challenge retries | master CPU | registrations per CPU-second | per registration | kernel | vs dpmaster | vs floor |
|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + ("""

What the target (≥ 3× dpmaster's registrations per CPU-second) leaves a registration, against
the kernel's part alone (medians):

""" + "\n".join(budget) if budget else ""))


# 2-4. List paths: lists (or pages) per master CPU-second.
def list_rows(part, whos, count_key, base_who, label, sizes=(None,)):
    rows = []
    for n in sizes:
        figures = {}
        for who in whos:
            runs = []
            for r in range(1, rounds + 1):
                tag = f"{part}-{who}" + (f"-n{n}" if n else "") + f"-{r}"
                if not have(tag) or not os.path.exists(f"{out}/{tag}.json"):
                    continue
                q = json.load(open(f"{out}/{tag}.json"))
                c = cpu_s(tag)
                done = q[count_key]
                runs.append((done / c if c else 0, done / q["duration_secs"], q["time_to_complete"]["p99_us"] / 1000,
                             q["lists_incomplete"], c, lg_share(tag, q["duration_secs"])))
            if runs:
                figures[who] = runs
        base = med([r[0] for r in figures.get(base_who, [])])
        for who, runs in figures.items():
            per = med([r[0] for r in runs])
            rows.append(
                (f"| {n:,} " if n else "") +
                f"| {label[who]} | {med([r[1] for r in runs]):,.0f} | {med([r[2] for r in runs]):.2f} | "
                f"{med([r[4] for r in runs]):.2f} s | {med([r[5] for r in runs]):.2f} | {sum(r[3] for r in runs)} | {per:,.0f} | "
                f"{fmt_ratio(per, base)} |")
    return rows


rows = list_rows("xash", ("xm", "muster"), "lists_complete", "xm",
                 {"xm": f"xash3d-master (`{xm_commit}`)", "muster": "muster `--cores 1`"}, sizes=(1000, 10000))
if rows:
    sections.append(f"""### Xash3D bursts per master CPU-second

A Xash3D fleet (the engine's handshake and info string, region 255, 14 servers per address), then
`query --mode xash --concurrency {os.environ.get('CONC', '8')}` for {os.environ.get('DUR', '6')} s: the
engine's keyed query, the whole list read as a burst (complete when every server arrived). Medians of
the rounds; incomplete is summed. "Load generator CPU / s" is the load generator's CPU (user +
system) per second of the run, on its one CPU: at 0.95 or more it had nothing to spare, so the
master was not the limit, and lists per master CPU-second then say how cheaply the master waits
between requests as much as what it can serve (this and the tables below).

| servers | master | lists/s | p99 list (ms) | master CPU | load generator CPU / s | incomplete | lists per CPU-second | vs xash3d-master |
|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows))

rows = list_rows("valve", ("floor-valve", "muster"), "packets", "floor-valve",
                 {"floor-valve": "floor (`floor --answer valve`, one page a list)",
                  "muster": "muster `--cores 1`, 10,000 GoldSrc servers (44 pages a list)"})
if rows:
    sections.append("""### Valve pages per master CPU-second

`query --mode valve` (walks in flight as above), each page a round trip; the floor answers every
`0x31` with one fixed full page (230 servers and the end), so its lists are one page long. The
lists/s column counts pages here; p99 is per list (a 44-page walk for muster, one page for the floor).

| master | pages/s | p99 list (ms) | master CPU | load generator CPU / s | incomplete | pages per CPU-second | vs floor |
|---|---|---|---|---|---|---|---|
""" + "\n".join(rows))

rows = list_rows("dp", ("dpmaster", "muster"), "lists_complete", "dpmaster",
                 {"dpmaster": "dpmaster 2.2", "muster": "muster `--cores 1`"})
if rows:
    sections.append("""### DP lists per master CPU-second (the reference path)

10,000 DP servers, `query --mode dp` (the client reads datagram by datagram).

| master | lists/s | p99 list (ms) | master CPU | load generator CPU / s | incomplete | lists per CPU-second | vs dpmaster |
|---|---|---|---|---|---|---|---|
""" + "\n".join(rows))

text = f"""<!-- paths:begin (written by benches/paths.sh; do not edit by hand) -->
## Every path per master CPU-second

Issue 23. Run on {measured.run_date(out)} at commit `{commit}`{' (with uncommitted changes)' if dirty else ''}:
`benches/paths.sh` (rounds: {rounds}, `cargo build --release`). Machine: {os.cpu_count()} × {cpu}, Linux
{platform.release()}. Masters on CPU 0, the load generator on CPU 1, loopback; muster runs `--cores 1
--no-probes --trust 127.0.0.0/8`.

""" + "\n\n".join(sections) + """
<!-- paths:end -->"""

measured.write_section("paths", text)
