#!/usr/bin/env python3
"""List every server a Quake III / DarkPlaces master returns (`getservers`), using
pyq3serverlist (PyPI `pyq3serverlist==0.4.0`). One `ip:port` a line.

usage: pyq3_list.py HOST:PORT --protocol 68 [--game NAME] [--keywords 'full empty'] [--timeout 1]
                    [--reader eof|timeout]
  Quake III:  --protocol 68                 -> "getservers 68 full empty"
  Xonotic:    --game Xonotic --protocol 3   -> "getservers Xonotic 3 full empty"
  Nexuiz:     --game Nexuiz  --protocol 3
The query is sent without a trailing newline. Only `getservers` (IPv4): the library has no getserversExt.
EOFReader (default) reads packets until one ends in `\\EOT\\0` / `\\EOF`; a lost packet = timeout = exit 1.

GOTCHA: the library concatenates the packets' bodies and parses 7-byte entries from the joined bytes. A
master that ends a non-final packet with one extra `\\` (muster does, for qstat/ioquake3; dpmaster
does not) shifts every later entry by one byte: the COUNT stays right but every entry after the first
packet is garbage. --trim-packet-tail drops a body's trailing bytes that do not make a whole entry, per
packet (a workaround, off by default so the stock behaviour is what is tested)."""
import argparse, sys
from pyq3serverlist import PrincipalServer, EOFReader, TimeoutReader, PyQ3SLError

ap = argparse.ArgumentParser()
ap.add_argument("master", help="HOST:PORT (IPv4 only)")
ap.add_argument("--protocol", type=int, required=True)
ap.add_argument("--game", default="", help="gamename token (DarkPlaces games); empty for Quake III")
ap.add_argument("--keywords", default="full empty")
ap.add_argument("--timeout", type=float, default=1.0, help="per-packet receive timeout, seconds")
ap.add_argument("--reader", choices=["eof", "timeout"], default="eof")
ap.add_argument("--trim-packet-tail", action="store_true",
                help="per packet, drop body bytes past the last whole 7-byte entry (workaround)")
a = ap.parse_args()
host, _, port = a.master.rpartition(":")
reader = EOFReader() if a.reader == "eof" else TimeoutReader()
if a.trim_packet_tail:
    base = type(reader)

    class TrimmingReader(base):
        @staticmethod
        def split_buffer(buffer, require_header, delim):
            header, body, tail = base.split_buffer(buffer, require_header, delim)
            return header, body[:len(body) - len(body) % 7], tail

    reader = TrimmingReader()
try:
    ps = PrincipalServer(host, int(port), reader=reader, timeout=a.timeout)
    got = ps.get_servers(a.protocol, game_name=a.game, keywords=a.keywords)
except PyQ3SLError as e:
    print(f"pyq3serverlist failed: {e!r}", file=sys.stderr)
    sys.exit(1)
sys.stdout.write("".join(f"{s.ip}:{s.port}\n" for s in got))
