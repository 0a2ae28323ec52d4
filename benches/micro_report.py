#!/usr/bin/env python3
"""Writes the results of benches/micro.sh into docs/benchmarks.md, between the micro markers.
Every figure is read from criterion's estimates of this run (target/criterion/*/new) or from the
memory bench's output; the texts here only say what each bench does."""
import measured
import json
import os
import platform
import subprocess
import sys

out = sys.argv[1]


def median_ns(group, name):
    p = f"target/criterion/{group}/{name}/new/estimates.json"
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)["median"]["point_estimate"]


def fmt(ns):
    if ns is None:
        return "—"
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.1f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def ratio(a, b, per=1.0):
    return f"{a / (b * per):,.1f}×" if a and b else "—"


WIRE = [
    ("decode_heartbeat", "GoldSrc `0\\n` heartbeat (15 pairs, 196 B): validate, read `challenge`, `gamedir`, `map`", "baseline_copy_heartbeat"),
    ("decode_info_response", "openarena `infoResponse` (12 pairs, 206 B): validate, read `challenge`, `protocol`, `clients`", "baseline_copy_info_response"),
    ("decode_valve_query_6_key_filter", "python-valve query + parse its 6-key filter into the typed tree", "baseline_copy_query"),
    ("encode_full_page_231", "230 servers + terminator into a 1392-byte page", "baseline_copy_page_1392_bytes"),
]
# (name, what, baseline, baseline multiple): the ratio is time / (baseline × multiple).
MASTER = [
    ("upsert_refresh_in_100k", "a heartbeat refreshing one of 100k servers (7 strings re-interned)", "baseline_std_hashmap_insert_100k", 1e-5),
    ("upsert_insert_100k_fresh", "listing 100k new servers into an empty table", "baseline_std_hashmap_insert_100k", 1),
    ("expiry_tick_1k_of_100k", "one tick expiring the 1,000 servers of one second out of 100k", "baseline_std_hashmap_insert_100k", 1e-2),
    ("build_100k_valve_from_2_shards", "the list builder from scratch: 100k GoldSrc servers in 2 shards, Valve order + indexes", "baseline_copy_100k_records", 1),
    ("build_100k_dp_from_2_shards", "the same, 100k DP servers, orders per game + shared encodings", "baseline_copy_100k_records", 1),
    ("build_1m_valve_from_2_shards", "from scratch, a million GoldSrc servers", "baseline_copy_100k_records", 10),
    ("build_1m_dp_from_2_shards", "from scratch, a million DP servers", "baseline_copy_100k_records", 10),
    ("build_1m_valve_after_100_join_100_leave", "incremental: old order minus 100, merged with 100 sorted newcomers", "baseline_copy_100k_records", 10),
    ("build_1m_dp_after_100_join_100_leave", "the same for DP", "baseline_copy_100k_records", 10),
    ("build_1m_valve_after_an_attribute_change", "players changed, nobody joined or left: orders and encodings shared", None, 1),
    ("build_1m_dp_after_an_attribute_change", "the same for DP", None, 1),
    ("valve_page_unfiltered_shared_slice", "a page of the unfiltered Valve list: binary search + slice of the shared encoding", None, 1),
    ("valve_page_filtered_100k", "`\\gamedir\\cstrike\\map\\de_dust2\\empty\\1` first page (the `gamedir` index)", "baseline_copy_100k_records", 1),
    ("valve_page_filter_matching_nothing_scan_capped", "a filter no index narrows and nothing matches: stops at `MAX_SCAN`", "baseline_copy_100k_records", 1),
    ("dp_getservers_100k_shared", "`getservers Xonotic 3 empty full`, 100k servers, the shared encoding", None, 1),
    ("dp_getservers_100k_filtered_first_8_packets", "`getservers Xonotic 3` (no empty/full): the first step of a stream", None, 1),
    ("dp_getservers_100k_filtered_whole_stream", "the whole filtered stream, step by step as the pacer asks", "baseline_copy_100k_records", 1),
    ("admission_admit_and_charge_new_source", "a DP query from a source never seen: admitted, the master-wide budget, charged", "baseline_std_hashmap_insert_100k", 1e-5),
    ("admission_refuse_flooding_source", "a query from a source over its rate: refused and fined", "baseline_std_hashmap_insert_100k", 1e-5),
    ("register_10k_dp_full_handshake", "10k DP servers through `heartbeat` → `getinfo` → `infoResponse` into a fresh master, batches of 64 (the core's work per registration, no system calls)", "baseline_std_hashmap_insert_100k", 1e-1),
]
SCAN = [
    ("walk_start_65536_candidates_map", "`\\map\\no_such_map`: an interned-string comparison"),
    ("walk_start_65536_candidates_flags", "`\\dedicated\\1\\secure\\1`: flags (every server dedicated, none secure)"),
    ("walk_start_65536_candidates_name_match", "`\\name_match\\*no such server*` on 255-byte names"),
    ("walk_start_65536_candidates_gametype", "`\\gametype\\alltalk,cp,nosuchtag` on 5-tag lists"),
    ("walk_start_65536_candidates_worst_nor_of_wildcards", "the costliest filter that fits a datagram and matches nothing: `\\nand\\1\\nor\\5` of ~300 wildcard pieces"),
]

commit, dirty = measured.commit_of(out)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
parts = [f"""<!-- micro:begin (written by benches/micro.sh; do not edit by hand) -->
## Micro-benches (criterion)

Run on {measured.run_date(out)} at commit `{commit}`{' (with uncommitted changes)' if dirty else ''}: `benches/micro.sh`
(`cargo bench --bench wire|master|state -- --warm-up-time 1 --measurement-time 3`, then
`cargo bench --bench memory`). Machine: {os.cpu_count()} × {cpu}, Linux {platform.release()}.
Medians. Each ratio is to a baseline measured in the same run."""]

rows = []
for name, what, base in WIRE:
    t, b = median_ns("wire", name), median_ns("wire", base)
    rows.append(f"| `{name}` | {what} | {fmt(t)} | {fmt(b)} | {ratio(t, b)} |")
parts.append("""### Wire codecs

Baseline: copying the same bytes into a reused `Vec` (the least work any codec could do with that
datagram).

| bench | what it does | time | baseline (same bytes copied) | ratio |
|---|---|---|---|---|
""" + "\n".join(rows))

copy = median_ns("master", "baseline_copy_100k_records")
hmap = median_ns("master", "baseline_std_hashmap_insert_100k")
rows = []
for name, what, base, mult in MASTER:
    t = median_ns("master", name)
    b = median_ns("master", base) if base else None
    label = {"baseline_copy_100k_records": "copying 100k records", "baseline_std_hashmap_insert_100k": "100k HashMap inserts"}.get(base, "")
    r = f"{ratio(t, b, mult)} {('of ' + label + (f' × {mult:g}' if mult != 1 else '')) if base else ''}" if base else "—"
    rows.append(f"| `{name}` | {what} | {fmt(t)} | {r} |")
parts.append(f"""### Master core

Baselines in the same run: copying 100k 72-byte records ({fmt(copy)}) and inserting 100k `u64`
keys into a std `HashMap` ({fmt(hmap)}).

| bench | what | time | ratio to baseline |
|---|---|---|---|
""" + "\n".join(rows))

cheap = median_ns("scan", SCAN[1][0])
rows = []
for name, what in SCAN:
    t = median_ns("scan", name)
    rows.append(f"| `{name}` | {what} | {fmt(t)} | {fmt(t / 65536 if t else None)} | {ratio(t, cheap)} |")
parts.append("""### Scan cost per kind of condition

A walk's start among 65,536 servers with 255-byte hostnames and versions, for filters no index
narrows and nothing matches, so each query runs until its scan stops at `MAX_SCAN` = 65,536 units
of work: a candidate costs `matcher::scan_weight(filter)` units (1 for flags and interned strings,
more per wildcard piece and tag), so a costly filter examines fewer candidates. "Per unit" is the
query's time over 65,536. The weights bound what filters cost when every filter's time per unit
is at most the cheapest's (the flags case): a ratio of 1.0× or less.

| bench | filter | per query | per unit | ratio to flags |
|---|---|---|---|---|
""" + "\n".join(rows))

w, r = median_ns("state_file", "write_100k"), median_ns("state_file", "read_100k")
parts.append(f"""### State file

100k servers with distinct names: write with fsync {fmt(w)}, read {fmt(r)}.""")

mem = open(f"{out}/memory.md").read().strip() if os.path.exists(f"{out}/memory.md") else "(not run)"
parts.append("""### Bytes per server

One million servers on two shards (as `--cores 2` runs), `max_servers` = 1M, each population in a
process of its own; RSS is read after mimalloc hands freed pages back (`mi_collect`). Populations:
`valve-typical` (GoldSrc heartbeats, strings repeat), `dp-unique` (every hostname unique, as the
e2e fleet), `worst` (7 strings per server, each unique and 255 bytes: bounded by
`max_string_mib`, past which strings are stored empty and counted).

""" + mem)

text = "\n\n".join(parts) + "\n<!-- micro:end -->"
path = "docs/benchmarks.md"
doc = open(path).read()
b, e = doc.find("<!-- micro:begin"), doc.find("<!-- micro:end -->")
if b >= 0 and e >= 0:
    doc = doc[:b] + text + doc[e + len("<!-- micro:end -->"):]
else:
    doc = doc.rstrip() + "\n\n" + text + "\n"
open(path, "w").write(doc)
print("docs/benchmarks.md updated")
