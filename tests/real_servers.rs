//! Stock dedicated servers from Debian heartbeating to the real binary: OpenArena 0.8.8
//! (`openarena-server`, ioquake3's `ioq3ded`) and Nexuiz 2.5.2 (`nexuiz-server`, DarkPlaces). Each
//! runs on 127.0.0.1 with this master as its only master server; the master must list it with what
//! the server itself answered to `getinfo` (its hostname and map), to a DP client on every core.
//!
//! What makes them heartbeat: ioquake3 `server/sv_main.c` SV_MasterHeartbeat sends `heartbeat
//! QuakeArena-1` to each `sv_masterN` only when `dedicated` is 2 ("inet public play"), at the first
//! frame of a map and every 300 s; DarkPlaces `netconn.c` NetConn_Heartbeat sends `heartbeat
//! DarkPlaces` to each `sv_masterN` and `sv_masterextraN` when `sv_public` is on and `maxclients` is
//! at least 2 (a dedicated server's default is 8), at map start and every `sv_heartbeatperiod`.
//! Every other master (the packages' own and DarkPlaces' built-in `sv_masterextra`s) is blanked and
//! both bind loopback only (`net_ip`; `net_address`, `net_address_ipv6`), so nothing leaves the
//! machine.
//!
//! `.ci/setup` installs both packages and `.ci/test` runs these tests (`--include-ignored`); a plain
//! `cargo test` lists them as ignored, and run without the packages they fail.

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a game server may take from exec to being listed: loading a map is the game server's
/// work, not the master's (a liveness bound, not a performance claim; ~1 s on an idle machine).
const STARTUP: Duration = Duration::from_secs(90);

/// A stock game server started by a test; killed, and its scratch directory removed, when dropped.
struct GameServer {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl GameServer {
    /// Runs `wrapper args…` (a Debian package's launcher) with `HOME` in a scratch directory
    /// and its console in `console.log` there.
    fn start(name: &str, wrapper: &str, package: &str, addr: SocketAddr, args: &[String]) -> Self {
        assert!(
            Path::new(wrapper).exists(),
            "{wrapper} is missing: install Debian's {package} (`bash .ci/test` installs it)"
        );
        let dir = std::env::temp_dir().join(format!("muster-real-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("console.log")).unwrap();
        let child = Command::new(wrapper)
            .args(args)
            .env("HOME", &dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{wrapper}: {e}"));
        GameServer { child, dir, addr }
    }

    /// The server's console so far (for failure messages).
    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Panics with the console if the server has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the game server exited ({status}):\n{}", self.console());
        }
    }
}

impl Drop for GameServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port free at the time of asking (the game server binds it next).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The master's record of `addr` (`/api/servers`), once it has one; panics with the server's
/// console if none appears within [`STARTUP`] or the server exits first.
fn record_of(m: &Served, gs: &mut GameServer) -> serde_json::Value {
    let deadline = Instant::now() + STARTUP;
    while Instant::now() < deadline {
        gs.assert_running();
        let page = m.json("/api/servers");
        let hit = page["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["address"].as_str() == Some(&gs.addr.to_string()));
        if let Some(s) = hit {
            return s.clone();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} never listed within {STARTUP:?}; /api/servers: {}\nstats: {}\nconsole:\n{}",
        gs.addr,
        m.json("/api/servers"),
        m.json("/api/stats"),
        gs.console()
    );
}

/// A DP client steered to each core sees `addr` in the reply to `query`.
fn every_core_lists_it(m: &Served, hi: u8, query: &str, addr: SocketAddr) {
    let clients = clients_on_every_core(2, hi);
    assert!(
        on_every_core(&clients, |c| dp_list(m.addr, c, query).0.contains(&addr)),
        "{addr} is not in every core's reply to {query:?}"
    );
}

#[test]
#[ignore = "needs Debian's openarena-server / nexuiz-server: .ci/setup installs them, .ci/test runs it"]
fn stock_openarena_server_is_listed() {
    let m = Served::for_clients(81);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let hostname = format!("muster-oa-{}", std::process::id());
    let set = |k: &str, v: &str| ["+set".to_owned(), k.to_owned(), v.to_owned()];
    let mut args: Vec<String> = [
        set("dedicated", "2"),
        set("net_enabled", "1"), // IPv4 only
        set("net_ip", "127.0.0.1"),
        set("net_port", &addr.port().to_string()),
        set("sv_master1", &m.addr.to_string()),
        set("sv_master2", ""),
        set("sv_master3", ""),
        set("sv_master4", ""),
        set("sv_master5", ""),
        set("sv_hostname", &hostname),
    ]
    .concat();
    args.extend(["+map".to_owned(), "oa_dm1".to_owned()]);
    let mut gs = GameServer::start(
        "openarena",
        "/usr/games/openarena-server",
        "openarena-server",
        addr,
        &args,
    );

    let r = record_of(&m, &mut gs);
    // Its infoResponse: `\gamename\Quake3Arena\protocol\71\hostname\…\mapname\oa_dm1\sv_maxclients\8…`.
    assert_listed_as(&r, "Quake3Arena", &hostname, "oa_dm1", 8);
    // What OpenArena's client (and qstat -q3m) asks: protocol 71, no game name.
    every_core_lists_it(&m, 81, "getservers 71 empty full\n", addr);
    gs.assert_running();
    drop(gs);
    m.terminate();
}

#[test]
#[ignore = "needs Debian's openarena-server / nexuiz-server: .ci/setup installs them, .ci/test runs it"]
fn stock_nexuiz_server_is_listed() {
    let m = Served::for_clients(82);
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let hostname = format!("muster-nexuiz-{}", std::process::id());
    let set = |k: &str, v: &str| ["+set".to_owned(), k.to_owned(), v.to_owned()];
    let mut args: Vec<String> = vec!["-dedicated".into(), "-port".into(), port.to_string()];
    args.extend(
        [
            set("net_address", "127.0.0.1"),
            set("net_address_ipv6", "::1"),
            set("sv_public", "1"),
            set("sv_master1", &m.addr.to_string()),
            set("sv_master2", ""),
            set("sv_master3", ""),
            set("sv_master4", ""),
            set("sv_masterextra1", ""),
            set("sv_masterextra2", ""),
            set("sv_masterextra3", ""),
            set("hostname", &hostname),
        ]
        .concat(),
    );
    args.extend(["+map".to_owned(), "aggressor".to_owned()]);
    let mut gs = GameServer::start(
        "nexuiz",
        "/usr/games/nexuiz-server",
        "nexuiz-server",
        addr,
        &args,
    );

    let r = record_of(&m, &mut gs);
    // Its infoResponse: `\gamename\Nexuiz\modname\data\gameversion\20000\sv_maxclients\8…
    // \mapname\aggressor\hostname\…\protocol\3`.
    assert_listed_as(&r, "Nexuiz", &hostname, "aggressor", 8);
    // What Nexuiz's client (and qstat -nexuizm) asks.
    every_core_lists_it(&m, 82, "getservers Nexuiz 3 empty full", addr);
    gs.assert_running();
    drop(gs);
    m.terminate();
}

/// The master's record of a stock DP-protocol server: the game, hostname, map and slots its
/// `infoResponse` reported.
fn assert_listed_as(r: &serde_json::Value, game: &str, hostname: &str, map: &str, max: u64) {
    assert_eq!(
        (
            &r["family"],
            &r["game"],
            &r["name"],
            &r["map"],
            &r["max_players"]
        ),
        (
            &serde_json::json!("dp"),
            &serde_json::json!(game),
            &serde_json::json!(hostname),
            &serde_json::json!(map),
            &serde_json::json!(max)
        ),
        "{r}"
    );
}
