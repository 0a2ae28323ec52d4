#!/usr/bin/env python3
"""Writes the results of benches/peering.sh into docs/benchmarks.md, between the peering markers
(appended at the end of the file the first time)."""
import measured
import os
import platform
import sys

out = sys.argv[1]
commit, dirty = measured.commit_of(out)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rows = []
for tag in ("small", "big"):
    n, want, tb, tc, bytes_out, dgrams_out, rej_b, rej_c = open(f"{out}/{tag}.txt").read().split()
    n, want, bytes_out, dgrams_out = int(n), int(want), int(bytes_out), int(dgrams_out)
    per_peer = bytes_out / 2
    rows.append(
        f"| {n:,} | {want:,} | {float(tb):.2f} s | {float(tc):.2f} s | {per_peer / 1e6:,.2f} MB | "
        f"{per_peer / want:.1f} B | {dgrams_out // 2:,} | {int(rej_b) + int(rej_c)} |")

text = f"""<!-- peering:begin (written by benches/peering.sh; do not edit by hand) -->
## Peering

Three masters on loopback (issue 22). Run on {measured.run_date(out)} at commit
`{commit}`{' (with uncommitted changes)' if dirty else ''}: `benches/peering.sh` (`cargo build --release`). Machine:
{os.cpu_count()} × {cpu}, Linux {platform.release()}. A, B and C (`muster serve --cores 1
--no-probes`, each `--peer` of the other two with one key file) all on CPU 0; a DP fleet registers
with A only, from the other CPU. Convergence is the time from the fleet's last registration until
B (and C) list every server A registered (`muster_servers`, polled every 0.2 s): the cores dump
every second, the peering thread sends what changed, the peers' cores apply it and publish their
lists. Bytes are A's peering datagrams (UDP payload) to one peer.

| servers | registered with A | B lists all after | C lists all after | bytes to one peer | per server | datagrams to one peer | refused by B and C |
|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + """
<!-- peering:end -->"""

measured.write_section("peering", text)
