//! `fleet`: N simulated game servers doing the real handshakes with one or more masters,
//! re-heartbeating at an interval, and answering A2S_INFO and `getinfo` like real servers.
//!
//! A million servers fit: `--per-host` wildcard sockets (one port each) speak for every server,
//! server `i` sending from 127.b.c.d = host `i / per-host` (`pktinfo`), replies mapped back by the
//! address they were sent to. Per-server state is one flat array; sends and receives are batched.
//!
//! One thread, one socket per server (each on a simulated host), a mio poll loop and a timer heap.

use crate::pktinfo;
use crate::report::{Latency, LatencySummary, Progress};
use crate::sources;
use mio::{Events, Interest, Poll, Token};
use muster::wire::a2s::{Challenge, InfoRequest, SourceInfo};
use muster::wire::dp_server::GetInfo;
use muster::wire::valve_heartbeat::ChallengeReply;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// GoldSrc/Source: `q` → challenge → `0\n\key\value…`.
    Valve,
    /// DarkPlaces (Nexuiz): `heartbeat DarkPlaces` → `getinfo` → `infoResponse`.
    Dp,
    /// Quake III: `heartbeat QuakeArena-1` → `getinfo` → `infoResponse`.
    Q3,
    /// Xash3D FWGS: `q\xFF<nonce>` → challenge with the nonce echoed → the engine's info string
    /// (protocol 49, `\version\0.21`); answers the client's `info 49` probe.
    Xash,
    /// Round-robin over GoldSrc, DarkPlaces and Quake III.
    Mixed,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub targets: Vec<SocketAddr>,
    pub servers: usize,
    pub protocol: Protocol,
    pub per_host: usize,
    pub source_base: u8,
    pub interval: Duration,
    pub rate: f64,
    pub a2s_challenge: bool,
    pub challenge_timeout: Duration,
    pub retries: u32,
    pub duration: Duration,
    pub count: Option<u64>,
    /// Change each server's player count with every heartbeat (attribute churn).
    pub vary_players: bool,
    /// First port of the fleet's sockets (`port + k` for socket k), so a second run is the same
    /// servers; `None`: ports the kernel picks.
    pub port: Option<u16>,
    /// After the run, ask each master for its whole list and count the fleet's servers on it.
    pub verify: bool,
    /// How the fleet's servers treat the masters' liveness probes.
    pub faults: Faults,
}

/// Fractions of the fleet that answer a master's liveness probes badly (each server's role is
/// fixed by its index, so a rerun has the same servers silent, lying or slow).
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Never answer a probe (a dead or fake server that only heartbeats).
    pub silent: f64,
    /// Answer A2S_INFO naming another game than the heartbeat (Valve family; DP and Q3 servers
    /// answer truthfully).
    pub lying: f64,
    /// Answer every probe after `delay`.
    pub slow: f64,
    pub delay: Duration,
}

/// What one server does with a master's probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    Answer,
    Silent,
    Lying,
    Slow,
}

impl Faults {
    fn of(&self, i: usize) -> Behaviour {
        // A fixed, well-spread point in [0, 1) per server.
        let u = ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
        if u < self.silent {
            Behaviour::Silent
        } else if u < self.silent + self.lying {
            Behaviour::Lying
        } else if u < self.silent + self.lying + self.slow {
            Behaviour::Slow
        } else {
            Behaviour::Answer
        }
    }
}

/// Slow answers held at once, at most (past it they are sent at once).
const MAX_DELAYED: usize = 1 << 20;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub servers: usize,
    pub targets: usize,
    /// (server, master) pairs that completed at least one handshake.
    pub registered: u64,
    /// Handshakes completed, re-heartbeats included.
    pub handshakes: u64,
    /// Seconds from the first handshake started to the last first registration.
    pub first_round_secs: f64,
    pub registrations_per_sec: f64,
    /// Challenge requests that went unanswered within the timeout and were sent again.
    pub retries: u64,
    /// Handshakes given up after every retry.
    pub failures: u64,
    /// Time from the first challenge request of a handshake to the registration being sent.
    pub handshake_latency: LatencySummary,
    pub a2s_requests: u64,
    pub a2s_challenges_sent: u64,
    pub a2s_answered: u64,
    /// Xash3D `info 49` probes answered.
    pub xash_info_answered: u64,
    pub getinfo_answered: u64,
    /// The masters' liveness probes received (A2S_INFO and its challenge step, `getinfo` after
    /// registration), answered, ignored (silent servers), answered with a lie, answered late.
    pub master_probes: u64,
    pub master_probes_answered: u64,
    pub probes_ignored: u64,
    pub probes_lied: u64,
    pub probes_delayed: u64,
    /// Servers of each role (`--probe-silent`, `--probe-lying`, `--probe-slow`).
    pub silent_servers: u64,
    pub lying_servers: u64,
    pub slow_servers: u64,
    pub duration_secs: f64,
    /// With `--verify`: (server, master) pairs found on the master's list after the run. A DP
    /// registration has no acknowledgement, so this, not `registered`, is what the master took.
    pub listed: Option<u64>,
    /// `listed` over `first_round_secs`.
    pub listed_per_sec: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Valve,
    Dp,
    Q3,
    Xash,
}

/// One (server, master) handshake's state: 16 bytes, in one flat array for the whole fleet.
#[derive(Clone, Copy, Debug, Default)]
struct Handshake {
    /// When the first challenge request of the current handshake went out (ns since start).
    since: u64,
    generation: u32,
    tries: u8,
    waiting: bool,
    registered_once: bool,
}

const NS: f64 = 1e9;
/// Timers released and datagrams read per socket per loop round (so neither starves the other).
const ROUND: usize = 4096;

/// Where the fleet's servers live: server `i` is host `i / sockets` (127.b.c.d, or ::1) on the
/// port of socket `i % sockets`.
struct Layout {
    sockets: usize,
    base: u8,
    v6: bool,
}

impl Layout {
    fn ip(&self, i: usize) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(sources::host(self.base, i / self.sockets))
        }
    }

    /// The server a datagram sent to `ip` on socket `s` is for.
    fn server(&self, ip: IpAddr, s: usize) -> Option<usize> {
        let host = match ip {
            IpAddr::V4(v4) => sources::host_index(self.base, v4)?,
            IpAddr::V6(_) => 0,
        };
        host.checked_mul(self.sockets)?.checked_add(s)
    }
}

fn kind_of(protocol: Protocol, i: usize) -> Kind {
    match protocol {
        Protocol::Valve => Kind::Valve,
        Protocol::Dp => Kind::Dp,
        Protocol::Q3 => Kind::Q3,
        Protocol::Xash => Kind::Xash,
        Protocol::Mixed => [Kind::Valve, Kind::Dp, Kind::Q3][i % 3],
    }
}

fn region_of(i: usize) -> u8 {
    (i % 8) as u8
}

fn a2s_secret_of(i: usize) -> i32 {
    (i as i32).wrapping_mul(0x2F0F_1E27) | 1
}

pub fn run(cfg: &Config) -> Result<Report, String> {
    let start = Instant::now();
    let now_ns = || start.elapsed().as_nanos() as u64;
    let first = *cfg.targets.first().ok_or("no --target")?;
    let layout = Layout {
        sockets: cfg.per_host.max(1),
        base: cfg.source_base,
        v6: first.is_ipv6(),
    };
    if layout.v6 && cfg.servers > layout.sockets {
        return Err(format!(
            "an IPv6 fleet has one address (::1): at most --per-host ({}) servers",
            layout.sockets
        ));
    }
    if !layout.v6
        && layout
            .server(layout.ip(cfg.servers.saturating_sub(1)), 0)
            .is_none()
    {
        return Err("too many servers for the 127.0.0.0/8 addresses from --source-base".into());
    }
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut socks = Vec::with_capacity(layout.sockets);
    for t in 0..layout.sockets {
        let port = match cfg.port {
            Some(p) => p
                .checked_add(t as u16)
                .ok_or("--port + --per-host passes 65535")?,
            None => 0,
        };
        let ip: IpAddr = if layout.v6 {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            std::net::Ipv4Addr::UNSPECIFIED.into()
        };
        let wild = SocketAddr::new(ip, port);
        let std = std::net::UdpSocket::bind(wild).map_err(|e| format!("bind {wild}: {e}"))?;
        std.set_nonblocking(true).map_err(|e| e.to_string())?;
        pktinfo::enable(std.as_raw_fd(), layout.v6).map_err(|e| format!("IP_PKTINFO: {e}"))?;
        let _ = socket2::SockRef::from(&std).set_recv_buffer_size(4 << 20);
        let _ = socket2::SockRef::from(&std).set_send_buffer_size(4 << 20);
        let mut sock = mio::net::UdpSocket::from_std(std);
        poll.registry()
            .register(&mut sock, Token(t), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        socks.push(sock);
    }
    let targets = cfg.targets.len();
    let mut hs = vec![Handshake::default(); cfg.servers.saturating_mul(targets)];
    // (due, server, target, generation): challenge requests to send and timeouts to check.
    let mut timers: BinaryHeap<Reverse<(u64, u32, u16, u32)>> = BinaryHeap::new();
    for i in 0..cfg.servers {
        let due = (i as f64 / cfg.rate.max(1.0) * NS) as u64;
        for t in 0..targets {
            timers.push(Reverse((due, i as u32, t as u16, 0)));
        }
    }
    let mut r = Report {
        servers: cfg.servers,
        targets,
        ..Report::default()
    };
    for i in 0..cfg.servers {
        match cfg.faults.of(i) {
            Behaviour::Silent => r.silent_servers += 1,
            Behaviour::Lying => r.lying_servers += 1,
            Behaviour::Slow => r.slow_servers += 1,
            Behaviour::Answer => {}
        }
    }
    // Slow servers' answers: (due, socket, from, to, datagram), due in order (one delay).
    let mut delayed: std::collections::VecDeque<(u64, usize, IpAddr, SocketAddr, Vec<u8>)> =
        std::collections::VecDeque::new();
    let delay = cfg.faults.delay.as_nanos() as u64;
    let mut latency = Latency::default();
    let mut last_first_registration = 0u64;
    let mut first_started: Option<u64> = None;
    let mut events = Events::with_capacity(1024);
    let mut out = Vec::with_capacity(1500);
    let mut queues: Vec<pktinfo::SendQueue> =
        (0..layout.sockets).map(|_| Default::default()).collect();
    let mut rb = pktinfo::RecvBatch::default();
    let mut progress = Progress::new();
    let end = cfg.duration.as_nanos() as u64;
    let limit = cfg.count.unwrap_or(u64::MAX);
    let interrupted = sources::interrupted();
    let interval = cfg.interval.as_nanos() as u64;
    let timeout = cfg.challenge_timeout.as_nanos() as u64;
    loop {
        let now = now_ns();
        if now >= end || r.handshakes >= limit || interrupted.load(Ordering::Relaxed) {
            break;
        }
        // Timers due now (bounded per round so receives are not starved).
        for _ in 0..ROUND {
            let Some(&Reverse((due, i, t, g))) = timers.peek() else {
                break;
            };
            if due > now {
                break;
            }
            timers.pop();
            let (i, t) = (i as usize, t as usize);
            let Some(h) = hs.get_mut(i * targets + t) else {
                continue;
            };
            if h.generation != g {
                continue;
            }
            if h.waiting {
                if u32::from(h.tries) > cfg.retries {
                    r.failures += 1;
                    h.waiting = false;
                    h.generation = h.generation.wrapping_add(1);
                    timers.push(Reverse((now + interval, i as u32, t as u16, h.generation)));
                    continue;
                }
                r.retries += 1;
            } else {
                h.waiting = true;
                h.since = now;
                h.tries = 0;
            }
            first_started.get_or_insert(now);
            h.tries = h.tries.saturating_add(1);
            h.generation = h.generation.wrapping_add(1);
            timers.push(Reverse((now + timeout, i as u32, t as u16, h.generation)));
            let s = i % layout.sockets;
            queues[s].push(
                layout.ip(i),
                cfg.targets[t],
                challenge_request(kind_of(cfg.protocol, i)),
            );
        }
        while delayed.front().is_some_and(|d| d.0 <= now) {
            if let Some((_, s, from, to, d)) = delayed.pop_front() {
                queues[s].push(from, to, &d);
            }
        }
        for (q, sock) in queues.iter_mut().zip(&socks) {
            if !q.is_empty() {
                q.flush(sock.as_raw_fd());
            }
        }
        let wait = timers
            .peek()
            .map(|Reverse((due, ..))| due.saturating_sub(now_ns()))
            .unwrap_or(u64::MAX)
            .min(
                delayed
                    .front()
                    .map_or(u64::MAX, |d| d.0.saturating_sub(now_ns())),
            )
            .min(end.saturating_sub(now_ns()))
            .min(50_000_000);
        sources::wait(&mut poll, &mut events, Duration::from_nanos(wait))?;
        let ready: Vec<usize> = events.iter().map(|e| e.token().0).collect();
        for s in ready {
            let Some(sock) = socks.get(s) else { continue };
            let now = now_ns();
            let mut registered: Vec<(usize, usize)> = Vec::new();
            let q = &mut queues[s];
            let res = rb.drain(sock.as_raw_fd(), ROUND, |d, from, to| {
                let Some(i) = layout.server(to, s).filter(|&i| i < cfg.servers) else {
                    return;
                };
                let kind = kind_of(cfg.protocol, i);
                let round = hs.get(i * targets).map_or(0, |h| h.generation);
                let info = Info {
                    index: i,
                    region: region_of(i),
                    players: if cfg.vary_players {
                        ((round as usize + i) % 17) as u8
                    } else {
                        3
                    },
                };
                let target = cfg.targets.iter().position(|t| *t == from);
                // A master's datagram is a probe unless it is the challenge of a handshake in
                // flight (a DP getinfo is both: while the handshake waits it completes it).
                let waiting =
                    target.is_some_and(|t| hs.get(i * targets + t).is_some_and(|h| h.waiting));
                let probe = target.is_some() && (!waiting || InfoRequest::decode(d).is_ok());
                if probe {
                    r.master_probes += 1;
                    let b = cfg.faults.of(i);
                    if b == Behaviour::Silent {
                        r.probes_ignored += 1;
                        return;
                    }
                    let Some(reply) = answer_master_probe(
                        kind,
                        info,
                        b == Behaviour::Lying,
                        a2s_secret_of(i),
                        d,
                        &mut out,
                    ) else {
                        return;
                    };
                    r.master_probes_answered += 1;
                    r.probes_lied += u64::from(b == Behaviour::Lying);
                    if b == Behaviour::Slow && delayed.len() < MAX_DELAYED {
                        r.probes_delayed += 1;
                        delayed.push_back((now + delay, s, to, from, reply));
                    } else {
                        q.push(to, from, &reply);
                    }
                    return;
                }
                match target {
                    Some(t) => {
                        if let Some(reply) = registration(kind, info, d) {
                            q.push(to, from, &reply);
                            registered.push((i, t));
                        }
                    }
                    // A silent server is dead to every prober, crawlers included.
                    None if cfg.faults.of(i) == Behaviour::Silent => {
                        r.probes_ignored += 1;
                    }
                    None => {
                        if let Some(reply) = answer_probe(
                            kind,
                            info,
                            a2s_secret_of(i),
                            cfg.a2s_challenge,
                            d,
                            &mut r,
                            &mut out,
                        ) {
                            q.push(to, from, &reply);
                        }
                    }
                }
            });
            if res.is_err() {
                continue;
            }
            q.flush(sock.as_raw_fd());
            for (i, t) in registered {
                let Some(h) = hs.get_mut(i * targets + t) else {
                    continue;
                };
                if !h.waiting {
                    continue; // a late duplicate challenge
                }
                latency.record(Duration::from_nanos(now.saturating_sub(h.since)));
                r.handshakes += 1;
                if !h.registered_once {
                    h.registered_once = true;
                    r.registered += 1;
                    last_first_registration = now;
                }
                h.waiting = false;
                h.generation = h.generation.wrapping_add(1);
                timers.push(Reverse((now + interval, i as u32, t as u16, h.generation)));
            }
        }
        progress.tick(|| {
            format!(
                "fleet: {}/{} registered, {} handshakes, {} retries, {} failures, {} A2S answered",
                r.registered,
                cfg.servers * targets,
                r.handshakes,
                r.retries,
                r.failures,
                r.a2s_answered
            )
        });
    }
    progress.finish();
    r.duration_secs = start.elapsed().as_secs_f64();
    r.first_round_secs =
        last_first_registration.saturating_sub(first_started.unwrap_or(0)) as f64 / NS;
    r.registrations_per_sec = if r.first_round_secs > 0.0 {
        r.registered as f64 / r.first_round_secs
    } else {
        0.0
    };
    r.handshake_latency = latency.summary();
    if cfg.verify {
        let listed = verify(cfg, &layout, sock_ports(&socks))?;
        r.listed = Some(listed);
        r.listed_per_sec = (r.first_round_secs > 0.0).then(|| listed as f64 / r.first_round_secs);
    }
    Ok(r)
}

/// The port each fleet socket got.
fn sock_ports(socks: &[mio::net::UdpSocket]) -> Vec<u16> {
    socks
        .iter()
        .map(|s| s.local_addr().map_or(0, |a| a.port()))
        .collect()
}

/// How many of the fleet's (server, master) pairs each master lists: one whole-list query per
/// kind of server in the fleet (Valve: the `0x31` walk; DP and Q3: `getserversExt … empty full`).
fn verify(cfg: &Config, layout: &Layout, ports: Vec<u16>) -> Result<u64, String> {
    let kinds: &[Kind] = match cfg.protocol {
        Protocol::Valve => &[Kind::Valve],
        Protocol::Dp => &[Kind::Dp],
        Protocol::Q3 => &[Kind::Q3],
        Protocol::Xash => &[Kind::Xash],
        Protocol::Mixed => &[Kind::Valve, Kind::Dp, Kind::Q3],
    };
    let mine = |a: &SocketAddr| -> bool {
        let Some(s) = ports.iter().position(|&p| p == a.port()) else {
            return false;
        };
        layout
            .server(a.ip(), s)
            .is_some_and(|i| i < cfg.servers && layout.ip(i) == a.ip())
    };
    let mut listed = 0u64;
    for &target in &cfg.targets {
        // The master's list lags its registrations by up to a refresh: ask until two answers in a
        // row agree (at most VERIFY_ROUNDS times).
        let mut last = None;
        for _ in 0..VERIFY_ROUNDS {
            let n = count_listed(cfg, target, kinds, &mine)?;
            if last == Some(n) {
                break;
            }
            last = Some(n);
            std::thread::sleep(Duration::from_millis(500));
        }
        listed += last.unwrap_or(0);
    }
    Ok(listed)
}

/// The verifying client's receive buffer: a million entries (7 MB) sent unpaced still fit.
const VERIFY_RECV_BUFFER: usize = 64 << 20;

/// Most whole-list rounds `--verify` asks for while the count still changes.
const VERIFY_ROUNDS: usize = 10;

fn count_listed(
    cfg: &Config,
    target: SocketAddr,
    kinds: &[Kind],
    mine: &dyn Fn(&SocketAddr) -> bool,
) -> Result<u64, String> {
    let mut seen: std::collections::HashSet<SocketAddr> = Default::default();
    {
        for &kind in kinds {
            let (mode, game, protocol) = match kind {
                Kind::Valve => (crate::query::Mode::Valve, String::new(), 0),
                Kind::Xash => (crate::query::Mode::Xash, String::new(), 0),
                Kind::Dp => (crate::query::Mode::DpExt, "Nexuiz".to_owned(), 3),
                Kind::Q3 => (crate::query::Mode::DpExt, "Quake3Arena".to_owned(), 68),
            };
            let q = crate::query::Config {
                targets: vec![target],
                mode,
                region: 255,
                filter: String::new(),
                game,
                protocol,
                load: crate::schedule::Load::Closed { concurrency: 1 },
                count: Some(1),
                duration: Duration::from_secs(600),
                expect: None,
                timeout: Duration::from_secs(3),
                retries: 3,
                source_base: cfg.source_base.wrapping_sub(1),
                hosts: 1,
                per24: false,
                gro: true,
                // What the master holds, not what a default-buffer client keeps of it.
                recv_buffer: Some(VERIFY_RECV_BUFFER),
            };
            let (_, servers) = crate::query::run_collect(&q)?;
            seen.extend(servers.into_iter().filter(|a| mine(a)));
        }
    }
    Ok(seen.len() as u64)
}

fn challenge_request(kind: Kind) -> &'static [u8] {
    match kind {
        Kind::Valve => b"q",
        // xash3d-fwgs masterlist.c NET_AnnounceToMaster: `q\xFF` + a u32 nonce (LE).
        Kind::Xash => b"q\xFF\x2A\x00\x00\x00",
        Kind::Dp => b"\xFF\xFF\xFF\xFFheartbeat DarkPlaces\n",
        Kind::Q3 => b"\xFF\xFF\xFF\xFFheartbeat QuakeArena-1\n",
    }
}

/// What a server reports: its own hostname (every server has its own, as in the wild) and a
/// player count that changes with every heartbeat when the fleet asks for churn.
#[derive(Clone, Copy, Debug)]
struct Info {
    index: usize,
    region: u8,
    players: u8,
}

fn valve_info(i: Info) -> String {
    format!(
        "\\protocol\\48\\players\\{}\\max\\16\\bots\\0\\gamedir\\cstrike\\map\\de_dust2\\password\\0\\os\\l\\lan\\0\\region\\{}\\type\\d\\secure\\1\\version\\1.1.2.7\\product\\cstrike\\hostname\\muster-loadgen #{}",
        i.players, i.region, i.index
    )
}

/// xash3d-fwgs `sv_main.c` SV_AddToMaster's info string (no trailing newline; `password` is
/// inverted in the engine: 1 means none; `region` is always 255 there, "all regions", and
/// xash3d-master lists a server only to queries naming its exact region).
fn xash_info(i: Info, challenge: u32) -> String {
    format!(
        "0\n\\protocol\\49\\challenge\\{challenge}\\players\\{}\\max\\16\\bots\\0\\gamedir\\valve\\map\\crossfire\\type\\d\\password\\1\\os\\w\\secure\\0\\lan\\0\\version\\0.21\\region\\255\\product\\valve\\nat\\0",
        i.players
    )
}

fn dp_info(kind: Kind, i: Info, challenge: &[u8]) -> Vec<u8> {
    let body = match kind {
        Kind::Q3 => format!(
            "\\sv_maxclients\\16\\clients\\{}\\mapname\\q3dm17\\hostname\\muster-loadgen #{}\\protocol\\68\\gametype\\0",
            i.players, i.index
        ),
        _ => format!(
            "\\gamename\\Nexuiz\\modname\\data\\sv_maxclients\\16\\clients\\{}\\bots\\0\\mapname\\dm1\\hostname\\muster-loadgen #{}\\protocol\\3",
            i.players, i.index
        ),
    };
    [
        &b"\xFF\xFF\xFF\xFFinfoResponse\n"[..],
        body.as_bytes(),
        b"\\challenge\\",
        challenge,
    ]
    .concat()
}

/// The registration step, if `d` is the master's challenge for a server of this kind.
fn registration(kind: Kind, i: Info, d: &[u8]) -> Option<Vec<u8>> {
    match kind {
        Kind::Valve => {
            let c = ChallengeReply::decode(d).ok()?;
            let info = valve_info(i);
            Some(format!("0\n\\challenge\\{}{info}\n", c.challenge).into_bytes())
        }
        Kind::Xash => {
            let c = ChallengeReply::decode(d).ok()?;
            // The engine ignores a challenge that does not echo its nonce.
            if c.nonce != Some(0x2A) {
                return None;
            }
            Some(xash_info(i, c.challenge).into_bytes())
        }
        Kind::Dp | Kind::Q3 => {
            let g = GetInfo::decode(d).ok()?;
            Some(dp_info(kind, i, g.challenge))
        }
    }
}

/// A master's liveness probe: A2S_INFO, always with the S2C_CHALLENGE step (as Source servers
/// answer today), naming the game the heartbeat named (another one when `lie`); `getinfo` with
/// the registration's `infoResponse`.
fn answer_master_probe(
    kind: Kind,
    info: Info,
    lie: bool,
    secret: i32,
    d: &[u8],
    out: &mut Vec<u8>,
) -> Option<Vec<u8>> {
    if let Ok(req) = InfoRequest::decode(d) {
        out.clear();
        if req.challenge != Some(secret) {
            Challenge(secret).encode(out);
            return Some(out.clone());
        }
        let folder: &[u8] = match (kind, lie) {
            (_, true) => b"hl2mp",
            (Kind::Xash, false) => b"valve",
            _ => b"cstrike",
        };
        let name = format!("muster-loadgen #{}", info.index);
        SourceInfo {
            protocol: 48,
            name: name.as_bytes(),
            map: if kind == Kind::Xash {
                b"crossfire"
            } else {
                b"de_dust2"
            },
            folder,
            game: b"Counter-Strike",
            app_id: 10,
            players: info.players,
            max_players: 16,
            bots: 0,
            server_type: b'd',
            environment: b'l',
            visibility: 0,
            vac: 1,
            ship: None,
            version: b"1.1.2.7",
            extra: None,
        }
        .encode(out)
        .ok()?;
        return Some(out.clone());
    }
    if matches!(kind, Kind::Dp | Kind::Q3) {
        let g = GetInfo::decode(d).ok()?;
        return Some(dp_info(kind, info, g.challenge));
    }
    None
}

/// A crawler's probe: A2S_INFO (with the S2C_CHALLENGE step if asked) or `getinfo`.
fn answer_probe(
    kind: Kind,
    info: Info,
    secret: i32,
    use_challenge: bool,
    d: &[u8],
    r: &mut Report,
    out: &mut Vec<u8>,
) -> Option<Vec<u8>> {
    if let Ok(req) = InfoRequest::decode(d) {
        r.a2s_requests += 1;
        out.clear();
        if use_challenge && req.challenge != Some(secret) {
            Challenge(secret).encode(out);
            r.a2s_challenges_sent += 1;
            return Some(out.clone());
        }
        let name = format!("muster-loadgen #{} region {}", info.index, info.region);
        let info = SourceInfo {
            protocol: 17,
            name: name.as_bytes(),
            map: b"de_dust2",
            folder: b"cstrike",
            game: b"Counter-Strike: Source",
            app_id: 240,
            players: 3,
            max_players: 16,
            bots: 0,
            server_type: b'd',
            environment: b'l',
            visibility: 0,
            vac: 1,
            ship: None,
            version: b"1.0.0.0",
            extra: None,
        };
        info.encode(out).ok()?;
        r.a2s_answered += 1;
        return Some(out.clone());
    }
    // A Xash3D client's probe: `FF FF FF FF info 49` → `info\n\p\49\map\…` (sv_client.c SV_Info).
    if kind == Kind::Xash && d.starts_with(b"\xFF\xFF\xFF\xFFinfo ") {
        r.xash_info_answered += 1;
        let reply = format!(
            "\\p\\49\\map\\crossfire\\dm\\1\\team\\0\\coop\\0\\numcl\\{}\\maxcl\\16\\gamedir\\valve\\password\\0\\host\\muster-loadgen #{}",
            info.players, info.index
        );
        let mut out = b"\xFF\xFF\xFF\xFFinfo\n".to_vec();
        out.extend_from_slice(reply.as_bytes());
        return Some(out);
    }
    if matches!(kind, Kind::Dp | Kind::Q3)
        && let Ok(g) = GetInfo::decode(d)
    {
        r.getinfo_answered += 1;
        return Some(dp_info(kind, info, g.challenge));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_roles_take_their_fractions_and_master_probes_are_answered_by_role() {
        let f = Faults {
            silent: 0.2,
            lying: 0.1,
            slow: 0.3,
            delay: Duration::from_millis(100),
        };
        let mut n = [0usize; 4];
        for i in 0..100_000 {
            n[f.of(i) as usize] += 1;
        }
        let frac = |k: Behaviour| n[k as usize] as f64 / 100_000.0;
        assert!((frac(Behaviour::Silent) - 0.2).abs() < 0.01, "{n:?}");
        assert!((frac(Behaviour::Lying) - 0.1).abs() < 0.01, "{n:?}");
        assert!((frac(Behaviour::Slow) - 0.3).abs() < 0.01, "{n:?}");
        let i = Info {
            index: 5,
            region: 0,
            players: 4,
        };
        let mut out = Vec::new();
        let mut req = Vec::new();
        InfoRequest { challenge: None }.encode(&mut req);
        // The challenge step first (as Source servers answer), then the info.
        let c = answer_master_probe(Kind::Valve, i, false, 77, &req, &mut out).unwrap();
        assert_eq!(Challenge::decode(&c).unwrap(), Challenge(77));
        req.clear();
        InfoRequest {
            challenge: Some(77),
        }
        .encode(&mut req);
        let truth = answer_master_probe(Kind::Xash, i, false, 77, &req, &mut out).unwrap();
        let t = SourceInfo::decode(&truth).unwrap();
        assert_eq!(
            (t.folder, t.players),
            (&b"valve"[..], 4),
            "the heartbeat's gamedir"
        );
        let lie = answer_master_probe(Kind::Valve, i, true, 77, &req, &mut out).unwrap();
        assert_eq!(SourceInfo::decode(&lie).unwrap().folder, b"hl2mp");
    }

    #[test]
    fn xash_servers_register_like_the_engine_and_answer_info_probes() {
        let i = Info {
            index: 9,
            region: 255,
            players: 2,
        };
        assert_eq!(challenge_request(Kind::Xash), b"q\xFF\x2A\x00\x00\x00");
        // The master's reply must echo the nonce (sv_main.c SV_AddToMaster drops it otherwise).
        assert!(
            registration(
                Kind::Xash,
                i,
                b"\xFF\xFF\xFF\xFFs\n\x2a\x00\x00\x00\x01\x00\x00\x00"
            )
            .is_none()
        );
        let hb = registration(
            Kind::Xash,
            i,
            b"\xFF\xFF\xFF\xFFs\n\x2a\x00\x00\x00\x2A\x00\x00\x00",
        )
        .unwrap();
        let hb = String::from_utf8(hb).unwrap();
        assert!(hb.starts_with("0\n\\protocol\\49\\challenge\\42\\"), "{hb}");
        assert!(hb.contains("\\version\\0.21\\") && !hb.ends_with('\n'));
        let (mut r, mut out) = (Report::default(), Vec::new());
        let reply = answer_probe(
            Kind::Xash,
            i,
            1,
            false,
            b"\xFF\xFF\xFF\xFFinfo 49",
            &mut r,
            &mut out,
        )
        .unwrap();
        assert!(reply.starts_with(b"\xFF\xFF\xFF\xFFinfo\n\\p\\49\\map\\crossfire"));
        assert_eq!(r.xash_info_answered, 1);
    }

    #[test]
    fn registrations_answer_real_challenges() {
        // The master's Valve challenge: FF FF FF FF 73 0A <u32 LE>.
        let i = Info {
            index: 7,
            region: 3,
            players: 3,
        };
        let hb = registration(Kind::Valve, i, b"\xFF\xFF\xFF\xFFs\n\x2a\x00\x00\x00").unwrap();
        let hb = String::from_utf8(hb).unwrap();
        assert!(hb.starts_with("0\n\\challenge\\42\\protocol\\48"), "{hb}");
        assert!(hb.contains("\\region\\3\\") && hb.ends_with('\n'));
        assert!(hb.contains("\\hostname\\muster-loadgen #7"), "{hb}");
        let ir = registration(Kind::Dp, i, b"\xFF\xFF\xFF\xFFgetinfo A_bc-123").unwrap();
        assert!(ir.starts_with(b"\xFF\xFF\xFF\xFFinfoResponse\n\\gamename\\Nexuiz"));
        assert!(ir.ends_with(b"\\challenge\\A_bc-123"));
        assert!(registration(Kind::Dp, i, b"q").is_none());
    }

    const INFO: Info = Info {
        index: 1,
        region: 1,
        players: 3,
    };

    #[test]
    fn a2s_with_and_without_the_challenge_step() {
        let mut r = Report::default();
        let mut out = Vec::new();
        let mut req = Vec::new();
        InfoRequest { challenge: None }.encode(&mut req);
        let reply = answer_probe(Kind::Valve, INFO, 77, true, &req, &mut r, &mut out).unwrap();
        assert_eq!(Challenge::decode(&reply).unwrap(), Challenge(77));
        let mut req2 = Vec::new();
        InfoRequest {
            challenge: Some(77),
        }
        .encode(&mut req2);
        let reply = answer_probe(Kind::Valve, INFO, 77, true, &req2, &mut r, &mut out).unwrap();
        assert_eq!(SourceInfo::decode(&reply).unwrap().map, b"de_dust2");
        let reply = answer_probe(Kind::Valve, INFO, 77, false, &req, &mut r, &mut out).unwrap();
        assert!(SourceInfo::decode(&reply).is_ok());
        assert_eq!(
            (r.a2s_requests, r.a2s_challenges_sent, r.a2s_answered),
            (3, 1, 2)
        );
    }
}
