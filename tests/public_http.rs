//! The public listener against the real binary on 127.0.0.1 / ::1: `/v1/servers/<gamedir>` read
//! the way Xash3D FWGS reads it lists exactly the Xash3D and GoldSrc servers registered; the JSON
//! API walks every server once by cursor, filters, and answers 304 / gzip; the public listener
//! serves nothing of the operator's.

mod common;

use common::*;
use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// One record of an FWGS HTTP list: (`gs`, address).
type Record = (bool, SocketAddr);

/// `COM_ParseFileSafe` with `PFILE_HASH_AS_COMMENT` as xash3d-fwgs `public/crtlib.c` has it: skip
/// bytes <= ' ', `//` and `#` comments to the end of the line, `"…"` one token (`\"` an escaped
/// quote), `{ } ( ) , '` single-character tokens, else a word up to a byte <= ' ' or a single
/// character. Returns the token and the rest, or `None` at the end of the input.
fn parse_token(data: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let single = |c: u8| matches!(c, b'{' | b'}' | b'(' | b')' | b',' | b'\'');
    let mut d = data;
    loop {
        while let Some((&c, rest)) = d.split_first() {
            if c > b' ' {
                break;
            }
            d = rest;
        }
        let c = *d.first()?;
        if (c == b'/' && d.get(1) == Some(&b'/')) || c == b'#' {
            while let Some((&c, rest)) = d.split_first() {
                if c == b'\n' {
                    break;
                }
                d = rest;
            }
            continue;
        }
        break;
    }
    let c = *d.first()?;
    let mut token = Vec::new();
    if c == b'"' {
        let mut i = 1;
        loop {
            let Some(&c) = d.get(i) else {
                return Some((token, &d[i..]));
            };
            i += 1;
            if c == b'\\' && d.get(i) == Some(&b'"') {
                token.push(b'"');
                i += 1;
                continue;
            }
            if c == b'"' {
                return Some((token, &d[i..]));
            }
            token.push(c);
        }
    }
    if single(c) {
        return Some((vec![c], &d[1..]));
    }
    let mut i = 0;
    while let Some(&c) = d.get(i) {
        if c <= b' ' || (i > 0 && single(c)) {
            break;
        }
        token.push(c);
        i += 1;
    }
    Some((token, &d[i..]))
}

/// `NET_StringToAdr` as xash3d-fwgs `engine/common/net_ws.c` reads the addresses a list can carry:
/// IPv6 first (`ParseIPv6Addr`: optional brackets, then `:port`), else IPv4 `a.b.c.d[:port]`
/// (the port after the first colon, `Q_atoi`). Host names would be resolved: a master never sends
/// them, so they count as unparsable here.
fn string_to_adr(token: &[u8]) -> Option<SocketAddr> {
    let s = std::str::from_utf8(token).ok()?;
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after.strip_prefix(':') {
            Some(p) => atoi(p),
            None => 0,
        };
        return Some(SocketAddr::new(IpAddr::V6(ip), port));
    }
    if let Ok(ip) = s.parse::<Ipv6Addr>() {
        return Some(SocketAddr::new(IpAddr::V6(ip), 0));
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, atoi(p)),
        None => (s, 0),
    };
    if !host.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let ip: Ipv4Addr = host.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V4(ip), port))
}

/// C's `atoi` on a port, truncated to 16 bits as `htons((short)…)` does.
fn atoi(s: &str) -> u16 {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<u64>().map_or(0, |v| v as u16)
}

/// xash3d-fwgs `engine/common/masterlist.c` NET_ParseMasterStaticBody: the body split into lines
/// by `Q_memfgets` (each copied into a 1024-byte buffer: at most 1023 bytes of it kept), the first
/// token `ip` or `gs` (any other line skipped), the second an address; port 0 becomes 27015.
fn fwgs_parse(body: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    for line in body.split_inclusive(|b| *b == b'\n') {
        let line = &line[..line.len().min(1023)];
        let Some((directive, rest)) = parse_token(line) else {
            continue;
        };
        let gs = match &directive[..] {
            b"ip" => false,
            b"gs" => true,
            _ => continue,
        };
        let Some((addr, _)) = parse_token(rest) else {
            continue;
        };
        let Some(mut a) = string_to_adr(&addr) else {
            continue;
        };
        if a.port() == 0 {
            a.set_port(27015);
        }
        out.push((gs, a));
    }
    out
}

#[test]
fn the_fwgs_parser_of_this_test_reads_the_documented_example() {
    // xash3d-fwgs Documentation/protocol/http-server-list.md, "Example", plus the rules it states.
    let body = b"# diffusion servers\nip 192.0.2.10:27015\nip [2001:db8::1]:27015\ngs 198.51.100.5:27015\n\
        // a comment\n  gs \"198.51.100.6\" # quoted, default port\nwhat 1.2.3.4:5\nip\n";
    assert_eq!(
        fwgs_parse(body),
        vec![
            (false, "192.0.2.10:27015".parse().unwrap()),
            (false, "[2001:db8::1]:27015".parse().unwrap()),
            (true, "198.51.100.5:27015".parse().unwrap()),
            (true, "198.51.100.6:27015".parse().unwrap()),
        ]
    );
    assert!(fwgs_parse(b"").is_empty(), "zero records is a valid list");
}

/// A config file of this test's own (the public lists rebuilt every second).
fn config(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("muster-public-{}-{name}.toml", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

/// `GET path` with extra header lines: status, headers (lowercase names), body.
fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    assert!(!chunked, "bodies are sent with a length");
    (status, headers, body)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn v6_socket() -> UdpSocket {
    let s = UdpSocket::bind("[::1]:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

#[test]
fn fwgs_list_read_with_the_engines_rules_is_exactly_the_xash3d_and_goldsrc_servers() {
    let cfg = config("fwgs", "[http]\npublic_refresh_secs = 1\n");
    let mut args = client_flags(100);
    args.extend(
        [
            "--listen",
            "[::1]:0",
            "--public-http",
            "127.0.0.1:0",
            "--config",
            cfg.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let m = Served::start_owned(&args);
    let public = m.public.unwrap();
    let v6_master = m.addrs[1];

    // Xash3D FWGS servers (the engine's handshake, protocol 49), over IPv4 and IPv6.
    let xash = xash_sockets(101, 3, 6);
    assert_eq!(xash_register(m.addr, &xash).answered, 6);
    let xash6 = vec![v6_socket(), v6_socket()];
    assert_eq!(xash_register(v6_master, &xash6).answered, 2);
    // GoldSrc servers (protocol 48), of valve and of cstrike.
    let goldsrc = sockets(102, 2, 5);
    assert_eq!(valve_register(m.addr, &goldsrc, "valve").answered, 5);
    let cstrike = sockets(103, 2, 3);
    assert_eq!(valve_register(m.addr, &cstrike, "cstrike").answered, 3);
    // Listed by the UDP master, but not for the engine's HTTP list: a Source server (protocol
    // 17) of gamedir valve, a Xash3D server behind NAT, DarkPlaces servers.
    let source = sockets(104, 1, 2);
    let info = |c: u32| {
        format!(
            "\\protocol\\17\\challenge\\{c}\\players\\0\\max\\8\\gamedir\\valve\\map\\crossfire\\type\\d\\os\\l\\region\\255\\product\\valve\\version\\1.0\n"
        )
    };
    assert_eq!(valve_register_info(m.addr, &source, info).answered, 2);
    let natted = sockets(105, 1, 1);
    let nat = |c: u32| {
        format!(
            "\\protocol\\49\\challenge\\{c}\\players\\1\\max\\16\\bots\\0\\gamedir\\valve\\map\\crossfire\\type\\d\\os\\w\\region\\255\\product\\valve\\version\\0.21\\nat\\1"
        )
    };
    assert_eq!(valve_register_info(m.addr, &natted, nat).answered, 1);
    let dp = sockets(106, 1, 2);
    assert_eq!(
        dp_register(m.addr, &dp, "DarkPlaces", NEXUIZ_INFO).answered,
        2
    );

    let mut want: BTreeSet<Record> = BTreeSet::new();
    want.extend(addrs(&xash).into_iter().map(|a| (false, a)));
    want.extend(addrs(&xash6).into_iter().map(|a| (false, a)));
    want.extend(addrs(&goldsrc).into_iter().map(|a| (true, a)));
    let read = |gamedir: &str| -> (u16, BTreeSet<Record>, Vec<Record>) {
        let (status, _, body) = get(public, &format!("/v1/servers/{gamedir}"), "");
        let records = fwgs_parse(&body);
        (status, records.iter().copied().collect(), records)
    };
    // Ask the master until the published lists have every registration.
    assert!(
        eventually(|| read("valve").1 == want),
        "{:?}",
        read("valve").1
    );
    let (status, set, records) = read("valve");
    assert_eq!(status, 200);
    assert_eq!(records.len(), set.len(), "each server once");
    assert!(
        records.iter().any(|(_, a)| a.is_ipv6()),
        "IPv6 servers are listed in brackets and read back"
    );
    let (_, cs, _) = read("cstrike");
    assert_eq!(cs, addrs(&cstrike).into_iter().map(|a| (true, a)).collect());
    assert_eq!(
        read("VALVE").1,
        want,
        "gamedirs match without regard to case"
    );
    let (status, _, body) = get(public, "/v1/servers/nosuchgame", "");
    assert_eq!(status, 200, "an unknown gamedir is an empty list");
    assert!(fwgs_parse(&body).is_empty());
    assert!(
        !body.is_empty(),
        "a comment line, so the engine says 0 servers, not no data"
    );

    // The public listener serves nothing of the operator's.
    for path in ["/metrics", "/api/stats", "/healthz", "/api/servers"] {
        assert_eq!(get(public, path, "").0, 404, "{path}");
    }
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn the_json_api_walks_every_server_once_filters_and_answers_304_and_gzip() {
    let cfg = config("api", "[http]\npublic_refresh_secs = 1\n");
    let mut args = client_flags(110);
    args.extend(
        [
            "--public-http",
            "127.0.0.1:0",
            "--config",
            cfg.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let m = Served::start_owned(&args);
    let public = m.public.unwrap();
    let valve = sockets(111, 8, 1200);
    assert_eq!(valve_register(m.addr, &valve, "cstrike").answered, 1200);
    let dp = sockets(112, 2, 30);
    assert_eq!(
        dp_register(m.addr, &dp, "DarkPlaces", NEXUIZ_INFO).answered,
        30
    );

    let walk = |query: &str| -> (Vec<SocketAddr>, usize) {
        let mut out = Vec::new();
        let mut cursor = String::new();
        let mut pages = 0;
        loop {
            let (status, _, body) = get(
                public,
                &format!("/api/v1/servers?{query}&cursor={cursor}"),
                "",
            );
            assert_eq!(status, 200);
            let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
            pages += 1;
            for s in j["servers"].as_array().unwrap() {
                out.push(s["address"].as_str().unwrap().parse().unwrap());
            }
            match j["next"].as_str() {
                Some(c) => cursor = c.to_owned(),
                None => return (out, pages),
            }
        }
    };
    assert!(eventually(|| walk("").0.len() == 1230));
    let (all, pages) = walk("");
    assert!(pages >= 3, "a few hundred a page: {pages} pages");
    let unique: HashSet<SocketAddr> = all.iter().copied().collect();
    assert_eq!(unique.len(), 1230, "each server once");
    let mut want = addrs(&valve);
    want.extend(addrs(&dp));
    assert_eq!(unique, want);
    let (cs, _) = walk("game=CStrike");
    assert_eq!(cs.into_iter().collect::<HashSet<_>>(), addrs(&valve));
    // common::NEXUIZ_INFO: 2 of 16 players on dm1; common::valve_info: 3 of 16 on de_dust2.
    let (dm1, _) = walk("map=DM1&not_empty=1&not_full=1");
    assert_eq!(dm1.into_iter().collect::<HashSet<_>>(), addrs(&dp));
    assert!(walk("map=nowhere").0.is_empty());
    let (status, _, _) = get(public, "/api/v1/servers?cursor=not-a-cursor", "");
    assert_eq!(status, 400);

    // Conditional and compressed: the same ETag until the list changes, 304 for it, gzip asked.
    let (status, h, body) = get(public, "/api/v1/servers", "");
    assert_eq!(status, 200);
    let etag = header(&h, "etag").unwrap().to_owned();
    assert_eq!(header(&h, "cache-control"), Some("public, max-age=1"));
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    let (status, _, none) = get(
        public,
        "/api/v1/servers",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!((status, none.len()), (304, 0));
    let (status, h, gz) = get(public, "/api/v1/servers", "Accept-Encoding: gzip\r\n");
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));
    assert_eq!(header(&h, "vary"), Some("accept-encoding"));
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, body);
    assert!(gz.len() < body.len() / 2, "{} of {}", gz.len(), body.len());

    // The browser page: no external fetches allowed by its policy.
    let (status, h, page) = get(public, "/", "");
    assert_eq!(status, 200);
    assert!(
        header(&h, "content-security-policy").is_some_and(|c| c.contains("default-src 'none'"))
    );
    assert!(String::from_utf8_lossy(&page).contains("browser.js"));
    assert_eq!(get(public, "/browser.js", "").0, 200);
    let _ = std::fs::remove_file(cfg);
}
