#!/usr/bin/env node
// List every server a Valve-protocol master returns, using npm `steam-server-query@1.1.3`
// (queryMasterServer(masterServer, region, filters, timeout, maxHosts)). One `ip:port` a line.
//
// usage: NODE_PATH=<prefix>/node_modules node steam_server_query_list.js HOST:PORT [region] [filtersJSON] [timeoutMs]
//   region: 0-7 or 255 (default 255 = REGIONS.ALL); filtersJSON: e.g. '{"appid":10}' -> "\appid\10"
//   (an object, not a raw string; {} = empty filter); timeoutMs: per page, default 1000, one attempt.
// IPv4 only ('udp4' socket; the address is split on ':'). Exit 1 on timeout.
let lib;
try {
  lib = require('steam-server-query');
} catch (e) {
  console.error('steam-server-query not found: npm install --prefix DIR steam-server-query@1.1.3 and set NODE_PATH=DIR/node_modules');
  process.exit(2);
}
const [master, region = '255', filters = '{}', timeout = '1000'] = process.argv.slice(2);
if (!master) { console.error('usage: steam_server_query_list.js HOST:PORT [region] [filtersJSON] [timeoutMs]'); process.exit(2); }
lib.queryMasterServer(master, Number(region), JSON.parse(filters), Number(timeout))
  .then((hosts) => { process.stdout.write(hosts.map((h) => h + '\n').join('')); })
  .catch((e) => { console.error('steam-server-query failed: ' + e.message); process.exit(1); });
