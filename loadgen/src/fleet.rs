//! `fleet`: N simulated game servers doing the real handshakes with one or more masters,
//! re-heartbeating at an interval, and answering A2S_INFO and `getinfo` like real servers.
//!
//! One thread, one socket per server (each on a simulated host), a mio poll loop and a timer heap.

use crate::report::{Latency, LatencySummary, Progress};
use crate::sources;
use mio::{Events, Poll};
use muster::wire::a2s::{Challenge, InfoRequest, SourceInfo};
use muster::wire::dp_server::GetInfo;
use muster::wire::valve_heartbeat::ChallengeReply;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
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
    /// Round-robin over the three.
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
}

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
    pub getinfo_answered: u64,
    pub duration_secs: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Valve,
    Dp,
    Q3,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Next challenge request due at the heap entry's time.
    Idle,
    /// Challenge requested at `since` (first try of this handshake), `tries` so far.
    Waiting { since: u64, tries: u32 },
}

struct Handshake {
    phase: Phase,
    generation: u32,
    registered_once: bool,
}

struct Server {
    sock: mio::net::UdpSocket,
    kind: Kind,
    region: u8,
    a2s_secret: i32,
    hs: Vec<Handshake>,
}

const NS: f64 = 1e9;

pub fn run(cfg: &Config) -> Result<Report, String> {
    let start = Instant::now();
    let now_ns = || start.elapsed().as_nanos() as u64;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let first = *cfg.targets.first().ok_or("no --target")?;
    let mut servers = Vec::with_capacity(cfg.servers);
    for i in 0..cfg.servers {
        let host = sources::host(cfg.source_base, i / cfg.per_host.max(1));
        let sock = sources::bind_registered(&poll, host, first, i)?;
        let kind = match cfg.protocol {
            Protocol::Valve => Kind::Valve,
            Protocol::Dp => Kind::Dp,
            Protocol::Q3 => Kind::Q3,
            Protocol::Mixed => [Kind::Valve, Kind::Dp, Kind::Q3][i % 3],
        };
        servers.push(Server {
            sock,
            kind,
            region: (i % 8) as u8,
            a2s_secret: (i as i32).wrapping_mul(0x2F0F_1E27) | 1,
            hs: cfg
                .targets
                .iter()
                .map(|_| Handshake {
                    phase: Phase::Idle,
                    generation: 0,
                    registered_once: false,
                })
                .collect(),
        });
    }
    // (due, server, target, generation): challenge requests to send and timeouts to check.
    let mut timers: BinaryHeap<Reverse<(u64, u32, u16, u32)>> = BinaryHeap::new();
    for i in 0..cfg.servers {
        let due = (i as f64 / cfg.rate.max(1.0) * NS) as u64;
        for t in 0..cfg.targets.len() {
            timers.push(Reverse((due, i as u32, t as u16, 0)));
        }
    }
    let mut r = Report {
        servers: cfg.servers,
        targets: cfg.targets.len(),
        ..Report::default()
    };
    let mut latency = Latency::default();
    let mut last_first_registration = 0u64;
    let mut first_started: Option<u64> = None;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::with_capacity(1500);
    let mut progress = Progress::new();
    let end = cfg.duration.as_nanos() as u64;
    let limit = cfg.count.unwrap_or(u64::MAX);
    let interrupted = sources::interrupted();
    loop {
        let now = now_ns();
        if now >= end || r.handshakes >= limit || interrupted.load(Ordering::Relaxed) {
            break;
        }
        // Timers due now (bounded per round so receives are not starved).
        for _ in 0..4096 {
            let Some(&Reverse((due, i, t, g))) = timers.peek() else {
                break;
            };
            if due > now {
                break;
            }
            timers.pop();
            let Some(s) = servers.get_mut(i as usize) else {
                continue;
            };
            let Some(h) = s.hs.get_mut(t as usize) else {
                continue;
            };
            if h.generation != g {
                continue;
            }
            let target = cfg.targets[t as usize];
            let (since, tries) = match h.phase {
                Phase::Idle => (now, 0),
                Phase::Waiting { since, tries } => {
                    if tries > cfg.retries {
                        r.failures += 1;
                        h.phase = Phase::Idle;
                        h.generation += 1;
                        timers.push(Reverse((
                            now + cfg.interval.as_nanos() as u64,
                            i,
                            t,
                            h.generation,
                        )));
                        continue;
                    }
                    r.retries += 1;
                    (since, tries)
                }
            };
            first_started.get_or_insert(now);
            let _ = s.sock.send_to(challenge_request(s.kind), target);
            h.phase = Phase::Waiting {
                since,
                tries: tries + 1,
            };
            h.generation += 1;
            timers.push(Reverse((
                now + cfg.challenge_timeout.as_nanos() as u64,
                i,
                t,
                h.generation,
            )));
        }
        let wait = timers
            .peek()
            .map(|Reverse((due, ..))| due.saturating_sub(now_ns()))
            .unwrap_or(u64::MAX)
            .min(end.saturating_sub(now_ns()))
            .min(50_000_000);
        sources::wait(&mut poll, &mut events, Duration::from_nanos(wait))?;
        for ev in &events {
            let i = ev.token().0;
            let Some(s) = servers.get_mut(i) else {
                continue;
            };
            let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
            let mut registrations: Vec<usize> = Vec::new();
            let kind = s.kind;
            let (region, secret) = (s.region, s.a2s_secret);
            let res = sources::drain(&s.sock, &mut buf, 256, |d, from| {
                match cfg.targets.iter().position(|t| *t == from) {
                    Some(t) => {
                        if let Some(reply) = registration(kind, region, d) {
                            replies.push((reply, from));
                            registrations.push(t);
                        }
                    }
                    None => {
                        if let Some(reply) = answer_probe(
                            kind,
                            region,
                            secret,
                            cfg.a2s_challenge,
                            d,
                            &mut r,
                            &mut out,
                        ) {
                            replies.push((reply, from));
                        }
                    }
                }
            });
            if res.is_err() {
                continue;
            }
            for (reply, to) in &replies {
                let _ = s.sock.send_to(reply, *to);
            }
            let now = now_ns();
            for t in registrations {
                let h = &mut s.hs[t];
                if let Phase::Waiting { since, .. } = h.phase {
                    latency.record(Duration::from_nanos(now - since));
                    r.handshakes += 1;
                    if !h.registered_once {
                        h.registered_once = true;
                        r.registered += 1;
                        last_first_registration = now;
                    }
                    h.phase = Phase::Idle;
                    h.generation += 1;
                    timers.push(Reverse((
                        now + cfg.interval.as_nanos() as u64,
                        i as u32,
                        t as u16,
                        h.generation,
                    )));
                }
            }
        }
        progress.tick(|| {
            format!(
                "fleet: {}/{} registered, {} handshakes, {} retries, {} failures, {} A2S answered",
                r.registered,
                cfg.servers * cfg.targets.len(),
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
    Ok(r)
}

fn challenge_request(kind: Kind) -> &'static [u8] {
    match kind {
        Kind::Valve => b"q",
        Kind::Dp => b"\xFF\xFF\xFF\xFFheartbeat DarkPlaces\n",
        Kind::Q3 => b"\xFF\xFF\xFF\xFFheartbeat QuakeArena-1\n",
    }
}

fn valve_info(region: u8) -> String {
    format!(
        "\\protocol\\48\\players\\3\\max\\16\\bots\\0\\gamedir\\cstrike\\map\\de_dust2\\password\\0\\os\\l\\lan\\0\\region\\{region}\\type\\d\\secure\\1\\version\\1.1.2.7\\product\\cstrike"
    )
}

fn dp_info(kind: Kind, challenge: &[u8]) -> Vec<u8> {
    let body: &[u8] = match kind {
        Kind::Q3 => b"\\sv_maxclients\\16\\clients\\2\\mapname\\q3dm17\\hostname\\muster-loadgen\\protocol\\68\\gametype\\0",
        _ => b"\\gamename\\Nexuiz\\modname\\data\\sv_maxclients\\16\\clients\\2\\bots\\0\\mapname\\dm1\\hostname\\muster-loadgen\\protocol\\3",
    };
    [
        b"\xFF\xFF\xFF\xFFinfoResponse\n",
        body,
        b"\\challenge\\",
        challenge,
    ]
    .concat()
}

/// The registration step, if `d` is the master's challenge for a server of this kind.
fn registration(kind: Kind, region: u8, d: &[u8]) -> Option<Vec<u8>> {
    match kind {
        Kind::Valve => {
            let c = ChallengeReply::decode(d).ok()?;
            let info = valve_info(region);
            Some(format!("0\n\\challenge\\{}{info}\n", c.challenge).into_bytes())
        }
        Kind::Dp | Kind::Q3 => {
            let g = GetInfo::decode(d).ok()?;
            Some(dp_info(kind, g.challenge))
        }
    }
}

/// A crawler's probe: A2S_INFO (with the S2C_CHALLENGE step if asked) or `getinfo`.
fn answer_probe(
    kind: Kind,
    region: u8,
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
        let name = format!("muster-loadgen region {region}");
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
    if kind != Kind::Valve
        && let Ok(g) = GetInfo::decode(d)
    {
        r.getinfo_answered += 1;
        return Some(dp_info(kind, g.challenge));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_answer_real_challenges() {
        // The master's Valve challenge: FF FF FF FF 73 0A <u32 LE>.
        let hb = registration(Kind::Valve, 3, b"\xFF\xFF\xFF\xFFs\n\x2a\x00\x00\x00").unwrap();
        let hb = String::from_utf8(hb).unwrap();
        assert!(hb.starts_with("0\n\\challenge\\42\\protocol\\48"), "{hb}");
        assert!(hb.contains("\\region\\3\\") && hb.ends_with('\n'));
        let ir = registration(Kind::Dp, 0, b"\xFF\xFF\xFF\xFFgetinfo A_bc-123").unwrap();
        assert!(ir.starts_with(b"\xFF\xFF\xFF\xFFinfoResponse\n\\gamename\\Nexuiz"));
        assert!(ir.ends_with(b"\\challenge\\A_bc-123"));
        assert!(registration(Kind::Dp, 0, b"q").is_none());
    }

    #[test]
    fn a2s_with_and_without_the_challenge_step() {
        let mut r = Report::default();
        let mut out = Vec::new();
        let mut req = Vec::new();
        InfoRequest { challenge: None }.encode(&mut req);
        let reply = answer_probe(Kind::Valve, 1, 77, true, &req, &mut r, &mut out).unwrap();
        assert_eq!(Challenge::decode(&reply).unwrap(), Challenge(77));
        let mut req2 = Vec::new();
        InfoRequest {
            challenge: Some(77),
        }
        .encode(&mut req2);
        let reply = answer_probe(Kind::Valve, 1, 77, true, &req2, &mut r, &mut out).unwrap();
        assert_eq!(SourceInfo::decode(&reply).unwrap().map, b"de_dust2");
        let reply = answer_probe(Kind::Valve, 1, 77, false, &req, &mut r, &mut out).unwrap();
        assert!(SourceInfo::decode(&reply).is_ok());
        assert_eq!(
            (r.a2s_requests, r.a2s_challenges_sent, r.a2s_answered),
            (3, 1, 2)
        );
    }
}
