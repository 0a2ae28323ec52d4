//! Real clients nobody on the project wrote, against the real binary, each on lists that span
//! several pages / packets / datagrams: ValvePython `steam`, python-valve and npm
//! `steam-server-query` (Valve pages, `\appid\10` through the GoldSrc gamedir → appid map),
//! pyq3serverlist (multi-packet DarkPlaces and Quake III lists: it concatenates packet bodies, so
//! any byte after a packet's last entry other than `\EOT` shifts the rest), and the `xash3d-query`
//! crate (one query, the whole list as a burst, keyed and unkeyed). Each must list exactly the
//! registered servers, none twice.
//!
//! `.ci/setup` installs the clients (pinned) under `target/interop/`; `.ci/test` runs these
//! (`--include-ignored`). Without them the tests fail with the install command.

mod common;

use common::*;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn interop(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    assert!(
        p.exists(),
        "{} is missing: `bash .ci/setup` installs the interop clients",
        p.display()
    );
    p
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// Runs a client with a hard time limit; its stdout's `ip:port` lines, each once.
fn run(mut cmd: Command) -> HashSet<SocketAddr> {
    let what = format!("{cmd:?}");
    let out = run_bounded(&mut cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed: {stderr}");
    let lines: Vec<SocketAddr> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap_or_else(|_| panic!("{what}: {l:?}")))
        .collect();
    let set: HashSet<SocketAddr> = lines.iter().copied().collect();
    assert_eq!(set.len(), lines.len(), "{what} listed a server twice");
    assert!(
        !stderr.contains("invalid") && !stderr.contains("error"),
        "{what}: {stderr}"
    );
    set
}

fn python(script_name: &str, args: &[&str]) -> HashSet<SocketAddr> {
    let mut c = Command::new(interop("target/interop/venv/bin/python"));
    c.arg(script(script_name)).args(args);
    run(c)
}

/// Only the readiness clients (127.0.99.x) are trusted; the clients under test (127.0.0.1) are not.
fn master() -> Served {
    Served::for_clients(99)
}

#[test]
#[ignore = "needs the Python and npm clients: `bash .ci/test` installs them and runs this"]
fn steam_python_valve_and_steam_server_query_list_the_valve_servers() {
    let m = master();
    // 500 Counter-Strike servers (GoldSrc: no appid in the heartbeat) and 200 Half-Life ones:
    // 700 on the unfiltered list, 4 pages.
    let cstrike = sockets(94, 8, 500);
    let valve = sockets(95, 8, 200);
    assert_eq!(valve_register(m.addr, &cstrike, "cstrike").answered, 500);
    assert_eq!(valve_register(m.addr, &valve, "valve").answered, 200);
    let clients = clients_on_every_core(2, 99);
    assert!(on_every_core(&clients, |c| valve_list(m.addr, c, 0xFF, "")
        .0
        .len()
        == 700));
    let addr = m.addr.to_string();
    let all: HashSet<SocketAddr> = addrs(&cstrike).union(&addrs(&valve)).copied().collect();
    assert_eq!(python("steam_list.py", &[&addr]), all, "steam, no filter");
    assert_eq!(
        python("steam_list.py", &[&addr, "--filter", "\\appid\\10"]),
        addrs(&cstrike),
        "steam, \\appid\\10"
    );
    assert_eq!(
        python("python_valve_list.py", &[&addr]),
        all,
        "python-valve"
    );
    assert_eq!(
        python("python_valve_list.py", &[&addr, "appid=70"]),
        addrs(&valve),
        "python-valve appid=70"
    );
    let mut node = Command::new("node");
    node.env("NODE_PATH", interop("target/interop/node/node_modules"))
        .arg(script("steam_server_query_list.js"))
        .args([&addr, "255", "{\"appid\":10}", "2000"]);
    assert_eq!(run(node), addrs(&cstrike), "steam-server-query appid 10");
    m.terminate();
}

#[test]
#[ignore = "needs pyq3serverlist: `bash .ci/test` installs it and runs this"]
fn pyq3serverlist_reads_multi_packet_lists_whole() {
    let m = master();
    // 400 Nexuiz (3 packets: 196 + 196 + 8) and 300 Quake III protocol 71 (2 packets).
    let nexuiz = sockets(96, 8, 400);
    let q3 = sockets(97, 8, 300);
    assert_eq!(
        dp_register(m.addr, &nexuiz, "DarkPlaces", NEXUIZ_INFO).answered,
        400
    );
    assert_eq!(
        dp_register(m.addr, &q3, "QuakeArena-1", Q3_INFO).answered,
        300
    );
    let clients = clients_on_every_core(2, 99);
    assert!(on_every_core(&clients, |c| {
        dp_list(m.addr, c, "getservers Nexuiz 3 empty full").0.len() == 400
            && dp_list(m.addr, c, "getservers 71 empty full").0.len() == 300
    }));
    let addr = m.addr.to_string();
    assert_eq!(
        python(
            "pyq3_list.py",
            &[&addr, "--game", "Nexuiz", "--protocol", "3"]
        ),
        addrs(&nexuiz),
        "pyq3serverlist Nexuiz"
    );
    assert_eq!(
        python("pyq3_list.py", &[&addr, "--protocol", "71"]),
        addrs(&q3),
        "pyq3serverlist Quake III"
    );
    m.terminate();
}

#[test]
#[ignore = "needs xash3d-query 0.2.0: `bash .ci/test` installs it and runs this"]
fn xash3d_query_lists_the_xash_servers_keyed_and_unkeyed() {
    let m = master();
    // 500 Xash3D servers: 7 datagrams of at most 82 (keyed) / 83 entries; 100 Counter-Strike
    // ones the `\gamedir\valve` filter leaves out.
    let xash = xash_sockets(98, 8, 500);
    let cstrike = sockets(93, 4, 100);
    assert_eq!(xash_register(m.addr, &xash).answered, 500);
    assert_eq!(valve_register(m.addr, &cstrike, "cstrike").answered, 100);
    let clients = clients_on_every_core(2, 99);
    assert!(on_every_core(&clients, |c| valve_list(m.addr, c, 0xFF, "")
        .0
        .len()
        == 600));
    let bin = interop("target/interop/cargo/bin/xash3d-query");
    for keyed in [true, false] {
        let mut c = Command::new(&bin);
        c.args(["-m", &m.addr.to_string(), "-T", "2"])
            .args(["-f", "\\gamedir\\valve\\clver\\0.21"]);
        if keyed {
            c.arg("-k");
        }
        c.arg("list");
        assert_eq!(run(c), addrs(&xash), "xash3d-query keyed={keyed}");
    }
    m.terminate();
}
