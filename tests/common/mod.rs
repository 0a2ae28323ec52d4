//! Real-socket peers for the engine tests: game servers doing the real handshakes and list clients,
//! over std UDP sockets on loopback, each bounded by a receive timeout.
//!
//! Byte layouts follow ../shared/docs/protocols.md: `q` → `FF FF FF FF 73 0A <u32 LE>` →
//! `0\n\key\value…\n`; `heartbeat <tag>\n` → `getinfo <challenge>` → `infoResponse\n\key\value…`;
//! `31 <region> <ip:port>\0 <filter>\0` → `FF FF FF FF 66 0A` pages ending in `0.0.0.0:0`;
//! `getservers[Ext] …` → `getserversResponse` / `getserversExtResponse` packets ending in `\EOT\0\0\0`.

#![allow(dead_code)]

use muster::config::{File, Overrides};
use muster::engine::{self, Engine};
use muster::master::steer::shard_for;
use muster::wire::dp_list::ListResponse;
use muster::wire::valve_list::ListPage;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_muster");

pub const OOB: &[u8] = b"\xFF\xFF\xFF\xFF";
/// Every wait in these tests is bounded by this (a liveness bound, not a performance claim).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// An engine on 127.0.0.1:0 with `cores` cores accepting loopback servers.
pub fn engine(cores: usize, tweak: impl FnOnce(&mut File)) -> Engine {
    let mut f = File::defaults();
    f.apply(&Overrides {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        cores: Some(cores),
        allow_private: true,
        list_refresh_ms: Some(100),
        ..Overrides::default()
    });
    // The suite's fake servers on 127.0.x.x are listed without answering liveness probes
    // (tests/probes.rs probes from other networks), and share a few /24s.
    f.probe.allow = vec!["127.0.0.0/16".to_owned()];
    f.max_servers_per_net = u16::MAX;
    tweak(&mut f);
    let s = f
        .settings(engine::sys::allowed_cpus().len(), [42; 16])
        .unwrap();
    engine::start(s).expect("engine starts")
}

pub fn socket(ip: Ipv4Addr) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind a loopback source");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// `count` sockets spread over `hosts` source addresses 127.0.<hi>.<1..=hosts>.
pub fn sockets(hi: u8, hosts: u8, count: usize) -> Vec<UdpSocket> {
    (0..count)
        .map(|i| socket(Ipv4Addr::new(127, 0, hi, 1 + (i % hosts as usize) as u8)))
        .collect()
}

/// The next datagram from `master` on `s` (others are skipped, interrupted calls retried), or
/// `None` after the socket's read timeout.
pub fn recv_from_master(s: &UdpSocket, master: SocketAddr, buf: &mut [u8]) -> Option<usize> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        match s.recv_from(buf) {
            Ok((n, from)) if from == master => return Some(n),
            Ok((n, from)) => {
                eprintln!("unexpected {n} bytes from {from} (master {master})");
                continue;
            }
            // glommio's threads in this process deliver signals that interrupt blocking calls.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("no reply from {master} to {:?}: {e}", s.local_addr());
                return None;
            }
        }
    }
    None
}

/// A GoldSrc/Source heartbeat body (after `0\n`), as HLDS sends it.
pub fn valve_info(gamedir: &str, map: &str, challenge: u32) -> String {
    format!(
        "\\protocol\\48\\challenge\\{challenge}\\players\\3\\max\\16\\bots\\0\\gamedir\\{gamedir}\\map\\{map}\\password\\0\\os\\l\\lan\\0\\region\\255\\type\\d\\secure\\1\\version\\1.1.2.7\\product\\{gamedir}\n"
    )
}

/// Game-server sockets whose handshake is in flight at once. Bounded so a burst never overruns the
/// master's receive buffer or the kernel's loopback backlog (`net.core.netdev_max_backlog`).
pub const HANDSHAKE_WINDOW: usize = 128;
/// Times a game server asks for a challenge before giving up (a real one retries too).
pub const HANDSHAKE_TRIES: usize = 4;

/// What a batch of handshakes did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handshakes {
    /// Servers that got a challenge and answered it.
    pub answered: usize,
    /// Challenge requests sent (more than `answered` only where one went unanswered in time).
    pub requests: usize,
}

/// Runs the two-step handshake for every socket, [`HANDSHAKE_WINDOW`] at a time: sends `ask`,
/// waits for the master's challenge (asking again up to [`HANDSHAKE_TRIES`] times), and sends
/// `answer(challenge reply)`.
fn handshake(
    master: SocketAddr,
    servers: &[UdpSocket],
    ask: &[u8],
    mut answer: impl FnMut(&[u8]) -> Vec<u8>,
) -> Handshakes {
    let mut done = Handshakes::default();
    let mut buf = [0u8; 256];
    for window in servers.chunks(HANDSHAKE_WINDOW) {
        for s in window {
            s.send_to(ask, master).unwrap();
            done.requests += 1;
        }
        for s in window {
            for attempt in 1..=HANDSHAKE_TRIES {
                if let Some(n) = recv_from_master(s, master, &mut buf) {
                    s.send_to(&answer(&buf[..n]), master).unwrap();
                    done.answered += 1;
                    break;
                }
                if attempt < HANDSHAKE_TRIES {
                    s.send_to(ask, master).unwrap();
                    done.requests += 1;
                }
            }
        }
    }
    done
}

/// Registers every socket as a Valve game server: `q` → challenge → heartbeat.
pub fn valve_register(master: SocketAddr, servers: &[UdpSocket], gamedir: &str) -> Handshakes {
    handshake(master, servers, b"q", |reply| {
        // FF FF FF FF 73 0A <challenge u32 LE> (10 bytes; 14 with a Xash nonce).
        assert_eq!(&reply[..6], b"\xFF\xFF\xFF\xFFs\n", "challenge reply");
        assert_eq!(reply.len(), 10);
        let challenge = u32::from_le_bytes(reply[6..10].try_into().unwrap());
        format!("0\n{}", valve_info(gamedir, "de_dust2", challenge)).into_bytes()
    })
}

/// Registers every socket as a Valve-family game server with the heartbeat `info(challenge)`
/// (an infostring, without the `0\n`).
pub fn valve_register_info(
    master: SocketAddr,
    servers: &[UdpSocket],
    info: impl Fn(u32) -> String,
) -> Handshakes {
    handshake(master, servers, b"q", |reply| {
        assert_eq!(&reply[..6], b"\xFF\xFF\xFF\xFFs\n", "challenge reply");
        let challenge = u32::from_le_bytes(reply[6..10].try_into().unwrap());
        format!("0\n{}", info(challenge)).into_bytes()
    })
}

/// Registers every socket as a DP/Q3 game server: `heartbeat <tag>` → `getinfo` → `infoResponse`.
pub fn dp_register(master: SocketAddr, servers: &[UdpSocket], tag: &str, info: &str) -> Handshakes {
    let hb = [OOB, format!("heartbeat {tag}\n").as_bytes()].concat();
    handshake(master, servers, &hb, |text| {
        assert!(text.starts_with(b"\xFF\xFF\xFF\xFFgetinfo "), "{text:?}");
        let challenge = std::str::from_utf8(&text[12..]).unwrap();
        [
            OOB,
            format!("infoResponse\n{info}\\challenge\\{challenge}").as_bytes(),
        ]
        .concat()
    })
}

pub const NEXUIZ_INFO: &str = "\\gamename\\Nexuiz\\modname\\data\\gameversion\\20000\\sv_maxclients\\16\\clients\\2\\bots\\0\\mapname\\dm1\\hostname\\a Nexuiz server\\protocol\\3";
pub const Q3_INFO: &str = "\\sv_maxclients\\16\\clients\\0\\mapname\\q3dm17\\hostname\\a Q3 server\\protocol\\71\\gametype\\0";

/// The source addresses of `servers` (what the master lists).
pub fn addrs(servers: &[UdpSocket]) -> HashSet<SocketAddr> {
    servers.iter().map(|s| s.local_addr().unwrap()).collect()
}

/// Walks the Valve list page by page (seeding each query with the last address of the previous
/// page) and returns every server and the page count. Panics on a lost page.
pub fn valve_list(
    master: SocketAddr,
    client: &UdpSocket,
    region: u8,
    filter: &str,
) -> (Vec<SocketAddr>, usize) {
    let mut seed = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    let mut all = Vec::new();
    let mut buf = [0u8; 2048];
    for pages in 1..10_000 {
        let q = [
            &[0x31, region][..],
            seed.to_string().as_bytes(),
            b"\0",
            filter.as_bytes(),
            b"\0",
        ]
        .concat();
        client.send_to(&q, master).unwrap();
        let n = recv_from_master(client, master, &mut buf).expect("a page");
        let page = ListPage::decode(&buf[..n]).expect("a well-formed page");
        all.extend(page.servers().map(SocketAddr::V4));
        if page.is_final() {
            return (all, pages);
        }
        seed = page.next_seed().expect("a non-final page has a last entry");
    }
    panic!("the list never ended");
}

/// Sends one DP query and collects packets until the one with EOT; returns the servers and the
/// number of packets.
pub fn dp_list(master: SocketAddr, client: &UdpSocket, query: &str) -> (Vec<SocketAddr>, usize) {
    client
        .send_to(&[OOB, query.as_bytes()].concat(), master)
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 2048];
    for packets in 1..100_000 {
        let n = recv_from_master(client, master, &mut buf).expect("a response packet");
        let r = ListResponse::decode(&buf[..n]).expect("a well-formed response");
        all.extend(r.servers());
        if r.eot {
            return (all, packets);
        }
    }
    panic!("the response never ended");
}

/// Waits until every core of `e` serves a list of exactly `valve` Valve and `dp` DP servers (each
/// core's merged list lags by up to one refresh; a client may land on any core). Panics with each
/// core's last report if that does not happen within [`PATIENCE`].
pub fn every_core_lists(e: &Engine, valve: usize, dp: usize) {
    assert!(
        eventually(|| e.every_core_lists(valve, dp)),
        "not every core lists {valve} Valve + {dp} DP servers: {:#?}",
        e.status()
    );
}

/// One client socket per core of `cores`, each on a source address (127.0.<hi>.x) that the
/// engine's steering sends to that core: what the binary's cores serve can be asked of each.
pub fn clients_on_every_core(cores: usize, hi: u8) -> Vec<UdpSocket> {
    (0..cores)
        .map(|core| {
            let ip = (1..=254)
                .map(|d| Ipv4Addr::new(127, 0, hi, d))
                .find(|ip| shard_for(IpAddr::V4(*ip), cores) == core)
                .expect("some address of a /24 steers to every core");
            socket(ip)
        })
        .collect()
}

/// Polls until `ready(client)` holds for a client on every core (see [`clients_on_every_core`]).
pub fn on_every_core(clients: &[UdpSocket], mut ready: impl FnMut(&UdpSocket) -> bool) -> bool {
    eventually(|| clients.iter().all(&mut ready))
}

/// Polls `f` until it returns true; false if it did not within [`PATIENCE`].
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// A running `muster serve` and the addresses it reports (the game listener, and HTTP: every
/// test master serves HTTP on a port of its own, 127.0.0.1:0). Killed if dropped without
/// [`Served::terminate`] (a failing test must not leave a master running).
pub struct Served {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Every listen address, in `--listen` order.
    pub addrs: Vec<SocketAddr>,
    pub http: SocketAddr,
    /// The public listener, when started with `--public-http`.
    pub public: Option<SocketAddr>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Served {
    pub fn start(args: &[&str]) -> Served {
        Self::start_env(args, &[])
    }

    /// With extra environment variables.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve");
        if !args.contains(&"--http") {
            cmd.args(["--http", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        // "muster: serving on 127.0.0.1:PORT (N cores)"
        let Some(addr) = line
            .strip_prefix("muster: serving on ")
            .and_then(|r| r.split([',', ' ']).next())
        else {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "unexpected first line: {line:?}; stderr: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        let addr = addr.parse().unwrap();
        let addrs = line
            .strip_prefix("muster: serving on ")
            .and_then(|r| r.split(" (").next())
            .unwrap_or("")
            .split(", ")
            .filter_map(|a| a.parse().ok())
            .collect();
        // "muster: status page on http://127.0.0.1:PORT/ (metrics: /metrics)"
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let http = line
            .strip_prefix("muster: status page on http://")
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("unexpected second line: {line:?}"))
            .parse()
            .unwrap();
        // "muster: public lists on http://127.0.0.1:PORT/ (…)"
        let public = args.contains(&"--public-http").then(|| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.strip_prefix("muster: public lists on http://")
                .and_then(|r| r.split('/').next())
                .unwrap_or_else(|| panic!("unexpected third line: {line:?}"))
                .parse()
                .unwrap()
        });
        Served {
            child: Some(child),
            addr,
            addrs,
            http,
            public,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Sends `sig` to the master.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// `GET path` on the master's HTTP listener: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }

    /// `GET path` as JSON (status 200 asserted).
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Kills the master with SIGKILL (no shutdown work at all) and returns its stderr.
    pub fn kill9(mut self) -> String {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        let o = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// Sends SIGTERM and returns what the process wrote to stderr; asserts a clean exit.
    pub fn terminate(mut self) -> String {
        let child = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            o.status.success(),
            "exit after SIGTERM: {:?}\n{err}",
            o.status
        );
        err
    }
}

/// `GET path` on `addr`: status and body (any status; transport errors panic).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .into();
    let mut r = agent
        .get(&format!("http://{addr}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// `count` sockets over `hosts` addresses 127.0.<hi>.x whose ports' low byte is not 8:
/// xash3d-query 0.2.0 takes an unkeyed reply whose first entry is `7F x x x ?? 08` for a key
/// header (its decoder checks `s[0] == 0x7f && s[5] == 8`), which a 127.x server on such a port is.
pub fn xash_sockets(hi: u8, hosts: u8, count: usize) -> Vec<UdpSocket> {
    (0..count)
        .map(|i| {
            let ip = Ipv4Addr::new(127, 0, hi, 1 + (i % hosts as usize) as u8);
            loop {
                let s = socket(ip);
                if s.local_addr().unwrap().port() & 0xFF != 8 {
                    break s;
                }
            }
        })
        .collect()
}

/// Registers every socket as a Xash3D FWGS server, as the engine does (xash3d-fwgs
/// `masterlist.c` NET_AnnounceToMaster: `q\xFF<nonce u32 LE>`; `sv_main.c` SV_AddToMaster: the
/// challenge reply must echo the nonce, then the info string below, protocol 49, no appid).
pub fn xash_register(master: SocketAddr, servers: &[UdpSocket]) -> Handshakes {
    handshake(master, servers, b"q\xFF\x2A\x00\x00\x00", |reply| {
        // FF FF FF FF 73 0A <challenge u32 LE> <nonce u32 LE>.
        assert_eq!(reply.len(), 14, "challenge with the nonce echoed");
        assert_eq!(&reply[10..14], b"\x2A\x00\x00\x00");
        let challenge = u32::from_le_bytes(reply[6..10].try_into().unwrap());
        format!("0\n\\protocol\\49\\challenge\\{challenge}\\players\\1\\max\\16\\bots\\0\\gamedir\\valve\\map\\crossfire\\type\\d\\password\\1\\os\\w\\secure\\0\\lan\\0\\version\\0.21\\region\\255\\product\\valve\\nat\\0").into_bytes()
    })
}

impl Served {
    /// The binary as the client tests run it: 127.0.0.1 port 0, two cores, private game servers
    /// allowed, up to 1,000 per address, and the readiness clients on 127.0.<hi>.0/24 trusted (they
    /// poll often; the clients under test are not trusted).
    pub fn for_clients(trusted_hi: u8) -> Served {
        Served::start_owned(&client_flags(trusted_hi))
    }

    /// [`Served::start`] with owned arguments.
    pub fn start_owned(args: &[String]) -> Served {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        Served::start(&a)
    }
}

/// The flags of [`Served::for_clients`], for tests that add their own.
pub fn client_flags(trusted_hi: u8) -> Vec<String> {
    [
        "--listen",
        "127.0.0.1:0",
        "--cores",
        "2",
        "--allow-private",
        "--max-servers-per-ip",
        "1000",
        "--max-servers-per-net",
        "65535",
        "--no-probes",
        "--trust",
        &format!("127.0.{trusted_hi}.0/24"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs a client to its end, killing it (and failing) past `limit`. Its output is read as it
/// comes (a client writing more than a pipe holds would otherwise wait on us forever).
pub fn run_bounded(cmd: &mut std::process::Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}
