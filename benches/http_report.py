#!/usr/bin/env python3
"""Writes the results of benches/http.sh (its result file) into docs/benchmarks.md, between the
http markers. Every figure comes from the result file of the run."""
import sys

out = sys.argv[1]
lines = [l.rstrip("\n") for l in open(out)]
header = [l[2:] for l in lines if l.startswith("# ") and not l.startswith("# ratio")]
rows = {}
for l in lines:
    if l.startswith("#") or l.startswith("servers"):
        continue
    f = l.split()
    if len(f) < 9:
        continue
    n, path, server, body, rps, p99, per_cpu, per_thread, ratio = f[:9]
    rows[(n, path, server)] = dict(body=int(body), rps=float(rps), p99=p99, per_cpu=int(per_cpu),
                                   per_thread=per_thread, ratio=ratio)


def size(b):
    return f"{b / 1e6:.1f} MB" if b >= 1e6 else f"{b / 1e3:.0f} KB"


def k(n):
    return f"{int(n) // 1000}k" if int(n) < 1_000_000 else f"{int(n) // 1_000_000}M"


table = []
for (n, path, server), m in rows.items():
    if server != "muster":
        continue
    g = rows.get((n, path, "nginx"))
    if not g:
        continue
    r = m["per_cpu"] / g["per_cpu"] if g["per_cpu"] else 0
    mark = "**" if r >= 1 else ""
    table.append(
        f"| {k(n)} | `{path}` | {size(m['body'])} | {m['rps']:,.1f} | {m['p99']} | {g['rps']:,.1f} | {g['p99']} "
        f"| {m['per_cpu']:,} (thread {int(m['per_thread']):,}) | {g['per_cpu']:,} | {mark}{r:.2f}×{mark} |"
    )

text = f"""<!-- http:begin (written by benches/http.sh; do not edit by hand) -->
## The public HTTP lists against nginx

{header[0] if header else ''}: `bash benches/http.sh` (installs Debian's `wrk` and `nginx` if
missing). {header[1] if len(header) > 1 else ''}. For each size, a Xash3D fleet
(`muster-loadgen fleet --protocol xash`, the engine's handshake) registers with `muster serve
--cores 1 --public-http …`; the script saves muster's `/v1/servers/valve` and `/api/v1/servers`
(first page, 500 servers) into nginx's root, checks both servers send the same bytes, then runs
wrk against each. nginx: one worker, `sendfile on`, `tcp_nopush on`, access log off (the FWGS
setup today: a static file). CPU is the server process's utime+stime over its wrk run; for muster
also its public listener's thread alone. Ratio: muster's requests per CPU-second over nginx's,
same path, same bytes, same run (goal ≥ 1).

| servers | path | body | muster req/s | p99 | nginx req/s | p99 | muster req/CPU-s | nginx req/CPU-s | ratio |
|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(table) + """

Answers are built once per list publication and shared: a request is a lookup and one write.
For the large `/v1/servers/<gamedir>` bodies the kernel copies muster's body from memory into the
socket, where nginx's `sendfile` hands page-cache pages over without that copy: that copy is the
difference per request at 1M. Closing it would take a zero-copy send of the published body
(the list in a memfd and `sendfile`, beside hyper); not done.
<!-- http:end -->"""

path = "docs/benchmarks.md"
doc = open(path).read()
b, e = doc.find("<!-- http:begin"), doc.find("<!-- http:end -->")
if b >= 0 and e >= 0:
    doc = doc[:b] + text + doc[e + len("<!-- http:end -->"):]
else:
    doc = doc.rstrip() + "\n\n" + text + "\n"
open(path, "w").write(doc)
print("docs/benchmarks.md updated")
