#!/usr/bin/env python3
"""List every server a Valve-protocol master returns, using ValvePython `steam`
(`steam.game_servers.query_master`, PyPI `steam==1.4.4`). Prints one `ip:port` per line.

usage: steam_list.py HOST:PORT [--filter '\\appid\\10'] [--region 255] [--timeout 2]
Exit 1 (nothing printed) on timeout / bad reply, so a partial list never looks complete."""
import argparse, socket, sys
from steam.game_servers import query_master, MSRegion

ap = argparse.ArgumentParser()
ap.add_argument("master", help="HOST:PORT (IPv4; the library opens an AF_INET socket)")
ap.add_argument("--filter", default="", help=r"raw filter string, e.g. '\appid\10' (default: none)")
ap.add_argument("--region", type=lambda s: int(s, 0), default=0xFF, help="0-7 or 255 (0xFF, default)")
ap.add_argument("--timeout", type=float, default=2.0, help="per-page receive timeout, seconds")
a = ap.parse_args()
host, _, port = a.master.rpartition(":")
try:
    # max_servers counts the 0.0.0.0:0 terminator too and defaults to 20: lift it.
    got = list(query_master(a.filter, max_servers=1 << 62, region=MSRegion(a.region),
                            master=(host, int(port)), timeout=a.timeout))
except (socket.timeout, RuntimeError, OSError) as e:
    print(f"steam query_master failed: {e!r}", file=sys.stderr)
    sys.exit(1)
sys.stdout.write("".join(f"{ip}:{p}\n" for ip, p in got))
