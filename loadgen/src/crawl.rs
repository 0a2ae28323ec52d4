//! `crawl`: the flow of the 50k-server crawler in ../shared/seeds (python-valve + gevent): ask the
//! masters for the list — one query per region, in parallel, rotating between master addresses —
//! then A2S_INFO every distinct server with bounded concurrency and timeouts.

use crate::query::{self, Mode};
use crate::report::{Latency, LatencySummary, Progress};
use crate::schedule::Load;
use crate::sources;
use mio::{Events, Poll};
use muster::wire::a2s::{Challenge, InfoRequest};
use serde::Serialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// python-valve's regions as the crawler lists them (`na` is US east + US west; `rest` is 0xFF).
pub const REGIONS: [u8; 8] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x07, 0xFF];

#[derive(Debug, Clone)]
pub struct Config {
    pub masters: Vec<SocketAddr>,
    pub regions: Vec<u8>,
    pub concurrency: usize,
    pub timeout: Duration,
    pub retries: u32,
    pub source_base: u8,
    pub duration: Duration,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub regions_queried: usize,
    pub region_lists_incomplete: u64,
    /// Region lists asked again of another master after a timeout, and which master answered
    /// each (several `--target`s).
    pub failovers: u64,
    pub lists_answered_by: std::collections::BTreeMap<String, u64>,
    /// Distinct servers over every region's list.
    pub listed: usize,
    pub probed: usize,
    pub answered: usize,
    /// Servers that asked for the S2C_CHALLENGE step first.
    pub challenged: usize,
    pub timeouts: usize,
    pub list_secs: f64,
    pub wall_secs: f64,
    pub info_latency: LatencySummary,
}

pub fn run(cfg: &Config) -> Result<Report, String> {
    let start = Instant::now();
    let mut r = Report::default();
    // Step 1: one list per region, in parallel, masters rotating as the crawler's deque does.
    let mut listed: HashSet<SocketAddr> = HashSet::new();
    let lists: Vec<Result<(query::Report, Vec<SocketAddr>), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = cfg
            .regions
            .iter()
            .enumerate()
            .map(|(i, &region)| {
                let master = cfg.masters[i % cfg.masters.len()];
                s.spawn(move || region_list(cfg, master, region, i))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("list thread panicked".into()))
            })
            .collect()
    });
    for l in lists {
        let (rep, servers) = l?;
        r.regions_queried += 1;
        r.region_lists_incomplete += rep.lists_incomplete;
        r.failovers += rep.failovers;
        for (m, n) in rep.answered_by {
            *r.lists_answered_by.entry(m).or_default() += n;
        }
        listed.extend(servers);
    }
    r.listed = listed.len();
    r.list_secs = start.elapsed().as_secs_f64();
    // Step 2: A2S_INFO each server, `concurrency` in flight.
    let (answered, challenged, timeouts, latency) = probe(cfg, listed.into_iter().collect())?;
    r.probed = r.listed;
    r.answered = answered;
    r.challenged = challenged;
    r.timeouts = timeouts;
    r.info_latency = latency.summary();
    r.wall_secs = start.elapsed().as_secs_f64();
    Ok(r)
}

/// One region's whole list (a single Valve list walk) from `master` first, failing over to the
/// other masters in a random order with doubling timeouts.
fn region_list(
    cfg: &Config,
    master: SocketAddr,
    region: u8,
    i: usize,
) -> Result<(query::Report, Vec<SocketAddr>), String> {
    let mut targets = vec![master];
    targets.extend(cfg.masters.iter().filter(|m| **m != master));
    let q = query::Config {
        targets,
        mode: Mode::Valve,
        region,
        filter: String::new(),
        game: String::new(),
        protocol: 0,
        load: Load::Closed { concurrency: 1 },
        count: Some(1),
        duration: cfg.duration,
        expect: None,
        timeout: cfg.timeout,
        retries: cfg.retries,
        source_base: cfg.source_base.wrapping_add(1 + i as u8),
        hosts: 1,
        per24: false,
        gro: true,
        recv_buffer: None,
    };
    query::run_collect(&q)
}

struct Probe {
    server: SocketAddr,
    sent: Instant,
    tries: u32,
    challenge: Option<i32>,
}

fn probe(cfg: &Config, servers: Vec<SocketAddr>) -> Result<(usize, usize, usize, Latency), String> {
    let slots_n = cfg.concurrency.max(1).min(servers.len().max(1));
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let first = *servers.first().unwrap_or(&cfg.masters[0]);
    let mut socks = Vec::with_capacity(slots_n);
    for i in 0..slots_n {
        let host = sources::host(cfg.source_base, i);
        socks.push(sources::bind_registered(&poll, host, first, i)?);
    }
    let mut inflight: Vec<Option<Probe>> = (0..slots_n).map(|_| None).collect();
    let mut queue = servers.into_iter();
    let (mut answered, mut challenged, mut timeouts) = (0, 0, 0);
    let mut latency = Latency::default();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 4096];
    let mut req = Vec::new();
    let mut progress = Progress::new();
    let deadline = Instant::now() + cfg.duration;
    let send = |s: &mio::net::UdpSocket, p: &Probe, req: &mut Vec<u8>| {
        req.clear();
        InfoRequest {
            challenge: p.challenge,
        }
        .encode(req);
        let _ = s.send_to(req, p.server);
    };
    loop {
        for (i, slot) in inflight.iter_mut().enumerate() {
            let expired = slot
                .as_ref()
                .is_some_and(|p| p.sent.elapsed() >= cfg.timeout);
            if expired && let Some(p) = slot.as_mut() {
                if p.tries < cfg.retries {
                    p.tries += 1;
                    p.sent = Instant::now();
                    send(&socks[i], p, &mut req);
                } else {
                    timeouts += 1;
                    *slot = None;
                }
            }
            if slot.is_none()
                && Instant::now() < deadline
                && let Some(server) = queue.next()
            {
                let _ = sources::drain(&socks[i], &mut buf, usize::MAX, |_, _| {});
                let p = Probe {
                    server,
                    sent: Instant::now(),
                    tries: 0,
                    challenge: None,
                };
                send(&socks[i], &p, &mut req);
                *slot = Some(p);
            }
        }
        if inflight.iter().all(Option::is_none) {
            break;
        }
        sources::wait(&mut poll, &mut events, Duration::from_millis(10))?;
        for ev in &events {
            let i = ev.token().0;
            let Some(sock) = socks.get(i) else { continue };
            let slot = &mut inflight[i];
            let mut resend = false;
            let _ = sources::drain(sock, &mut buf, 64, |d, from| {
                let Some(p) = slot.as_mut() else { return };
                if from != p.server {
                    return;
                }
                if let Ok(Challenge(c)) = Challenge::decode(d) {
                    if p.challenge.is_none() {
                        challenged += 1;
                    }
                    p.challenge = Some(c);
                    resend = true;
                } else if d.len() > 5 && (d[4] == 0x49 || d[4] == 0x6D) {
                    latency.record(p.sent.elapsed());
                    answered += 1;
                    *slot = None;
                }
            });
            if resend && let Some(p) = slot.as_mut() {
                p.sent = Instant::now();
                send(sock, p, &mut req);
            }
        }
        progress.tick(|| format!("crawl: {answered} answered, {timeouts} timeouts"));
    }
    progress.finish();
    Ok((answered, challenged, timeouts, latency))
}
