#!/usr/bin/env python3
"""List every server a Valve-protocol master returns, using python-valve
(`valve.source.master_server.MasterServerQuerier`, PyPI `python-valve==0.2.1`). One `ip:port` a line.

usage: python_valve_list.py HOST:PORT [--region 255|all|eu|...] [--dedup keep|skip] [--timeout 5]
                            [KEY=VALUE ...]   (filter pairs, e.g. appid=10 gamedir=cstrike; sent sorted)
python-valve 0.2.1 does not import on Python >= 3.10 (`collections.Mapping`); shimmed below.
It also ends a query SILENTLY on a timeout; this script turns that into exit 1."""
import argparse, collections, collections.abc, sys
if not hasattr(collections, "Mapping"):
    collections.Mapping = collections.abc.Mapping  # removed in Python 3.10
import valve.source
from valve.source import master_server as ms

ap = argparse.ArgumentParser()
ap.add_argument("master", help="HOST:PORT (IPv4 only)")
ap.add_argument("filters", nargs="*", help="KEY=VALUE filter pairs")
ap.add_argument("--region", default="255",
                help="region number (0-7, 255) or python-valve name: all (asks 0..7 and 255 in turn), "
                     "rest, eu, na, ... (default 255 = one query)")
ap.add_argument("--dedup", choices=["keep", "skip", "stop"], default="keep",
                help="python-valve's duplicate handling (library default is skip; keep shows repeats)")
ap.add_argument("--timeout", type=float, default=5.0)
a = ap.parse_args()
host, _, port = a.master.rpartition(":")
region = int(a.region, 0) if a.region[:1].isdigit() else a.region
filters = {}
for kv in a.filters:
    k, v = kv.split("=", 1)
    filters[k] = int(v) if v.isdigit() else v  # bool keys: the library does int(bool(v)), "0" would be 1


class Querier(ms.MasterServerQuerier):
    timed_out = False

    def get_response(self):
        try:
            return super().get_response()
        except valve.source.NoResponseError:
            self.timed_out = True
            raise


with Querier((host, int(port)), timeout=a.timeout) as q:
    got = list(q.find(region=region, duplicates=ms.Duplicates(a.dedup), **filters))
    if q.timed_out:
        print(f"python-valve: a page timed out after {len(got)} servers (list incomplete)",
              file=sys.stderr)
        sys.exit(1)
sys.stdout.write("".join(f"{ip}:{p}\n" for ip, p in got))
