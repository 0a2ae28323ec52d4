//! Stock clients against the real binary: Debian's qstat 2.17 (`quakestat`) lists what real-protocol
//! game servers registered, for Quake III (`-q3m`), Nexuiz (`-nexuizm`) and Steam (`-stm`).
//!
//! The lists span several packets/pages on purpose: qstat drops the last entry of a DP packet that
//! ends right after it (see `wire::dp_list::ResponseWriter`) and sends `-stm` continuations with a
//! stale byte after the seed (see `wire::valve_list::ListQuery::decode`).
//!
//! `.ci/test` installs qstat and runs these tests (`--include-ignored`); a plain `cargo test` lists
//! them as ignored, and run without `quakestat` installed they fail.

mod common;

use common::*;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `quakestat`, which must be installed (Debian's package `qstat`; `.ci/test` installs it).
fn quakestat() -> &'static str {
    let found = Command::new("quakestat")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "quakestat (Debian package qstat) is not installed; `bash .ci/test` installs it"
    );
    "quakestat"
}

/// Runs `quakestat <args>` with a hard time limit; returns the `ip:port` of every line whose first
/// word is `kind` (outfile mode prints `<kind> <ip:port>` per listed server).
fn qstat_list(bin: &str, args: &[String], kind: &str) -> Vec<SocketAddr> {
    // qstat ends a DP master query on its own 8 s timer (it never looks for EOT).
    let out = run_bounded(Command::new(bin).args(args), Duration::from_secs(30));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(kind)?.strip_prefix(' '))
        .map(|a| a.trim().parse().unwrap())
        .collect()
}

fn exact(list: Vec<SocketAddr>) -> HashSet<SocketAddr> {
    let n = list.len();
    let s: HashSet<_> = list.into_iter().collect();
    assert_eq!(s.len(), n, "a server listed twice");
    s
}

#[test]
#[ignore = "needs quakestat (Debian package qstat): `bash .ci/test` installs it and runs this"]
fn stock_qstat_lists_the_registered_servers() {
    let bin = quakestat();
    // The readiness clients (127.0.73.x) are trusted; quakestat (127.0.0.1) is not.
    let m = Served::for_clients(73);
    // 400 Quake III servers: 3 packets; 300 Nexuiz: 2 packets; 500 Valve: 3 pages.
    let q3 = sockets(70, 8, 400);
    let nexuiz = sockets(71, 8, 300);
    let valve = sockets(72, 8, 500);
    let answered = [
        dp_register(m.addr, &q3, "QuakeArena-1", Q3_INFO).answered,
        dp_register(m.addr, &nexuiz, "DarkPlaces", NEXUIZ_INFO).answered,
        valve_register(m.addr, &valve, "cstrike").answered,
    ];
    assert_eq!(answered, [400, 300, 500]);
    // Every core lists everything (quakestat's source steers to one of them; each core's list
    // catches up within the list-refresh bound).
    let clients = clients_on_every_core(2, 73);
    assert!(on_every_core(&clients, |c| {
        dp_list(m.addr, c, "getservers 71 empty full\n").0.len() == 400
            && dp_list(m.addr, c, "getservers Nexuiz 3 empty full").0.len() == 300
            && valve_list(m.addr, c, 0xFF, "").0.len() == 500
    }));

    let addr = m.addr.to_string();
    let runs = [
        ("-q3m,71,outfile".to_string(), "q3s", addrs(&q3)),
        ("-nexuizm,outfile".to_string(), "nexuizs", addrs(&nexuiz)),
        ("-stm,outfile".to_string(), "a2s", addrs(&valve)),
    ];
    std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(flag, kind, want)| {
                let args = vec![flag.clone(), format!("{addr},-")];
                s.spawn(move || {
                    let got = exact(qstat_list(bin, &args, kind));
                    assert_eq!(got.len(), want.len(), "quakestat {args:?}");
                    assert_eq!(&got, want, "quakestat {args:?}");
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let log = m.terminate();
    assert!(log.contains("stopped; totals"), "{log}");
}

/// qstat 2.17's RTCW, ET and Xonotic master types (qstat.cfg / qstat.c game table): `-rwm` asks
/// `getservers 60 empty full\n`, `-woetm` `getservers 84 empty full`, `-xonoticm`
/// `getservers Xonotic 3 empty full` — protocol-only queries that dpmaster 2.2 maps to wolfmp and
/// et (`games.c`).
#[test]
#[ignore = "needs quakestat (Debian package qstat): `bash .ci/test` installs it and runs this"]
fn stock_qstat_lists_rtcw_et_and_xonotic() {
    let bin = quakestat();
    let m = Served::for_clients(77);
    const RTCW: &str =
        "\\sv_maxclients\\16\\clients\\0\\mapname\\mp_beach\\hostname\\rtcw\\protocol\\60";
    const ET: &str = "\\sv_maxclients\\16\\clients\\16\\mapname\\oasis\\hostname\\et\\protocol\\84";
    const XONOTIC: &str = "\\gamename\\Xonotic\\sv_maxclients\\16\\clients\\3\\mapname\\dance\\hostname\\x\\protocol\\3";
    // 250 of each: two packets each (196 + 54).
    let rtcw = sockets(74, 8, 250);
    let et = sockets(75, 8, 250);
    let xonotic = sockets(76, 8, 250);
    let answered = [
        dp_register(m.addr, &rtcw, "Wolfenstein-1", RTCW).answered,
        dp_register(m.addr, &et, "EnemyTerritory-1", ET).answered,
        dp_register(m.addr, &xonotic, "DarkPlaces", XONOTIC).answered,
    ];
    assert_eq!(answered, [250, 250, 250]);
    let clients = clients_on_every_core(2, 77);
    assert!(on_every_core(&clients, |c| {
        dp_list(m.addr, c, "getservers 60 empty full\n").0.len() == 250
            // ET clients ask without `empty full` and still get every server (`et` options).
            && dp_list(m.addr, c, "getservers 84").0.len() == 250
            && dp_list(m.addr, c, "getservers Xonotic 3 empty full").0.len() == 250
    }));
    let addr = m.addr.to_string();
    let runs = [
        ("-rwm,outfile", "rws", addrs(&rtcw)),
        ("-woetm,outfile", "woets", addrs(&et)),
        ("-xonoticm,outfile", "xonotics", addrs(&xonotic)),
    ];
    std::thread::scope(|s| {
        let handles: Vec<_> = runs
            .iter()
            .map(|(flag, kind, want)| {
                let args = vec![flag.to_string(), format!("{addr},-")];
                s.spawn(move || {
                    let got = exact(qstat_list(bin, &args, kind));
                    assert_eq!(&got, want, "quakestat {args:?}");
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    m.terminate();
}
