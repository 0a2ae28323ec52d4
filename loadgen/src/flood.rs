//! `flood`: attack traffic, bounded in count and time, from many simulated sources — and what the
//! target sends back to each: the bytes a spoofer would have reflected at those addresses.
//!
//! Every source is a loopback address; one wildcard socket speaks for all of them (`IP_PKTINFO`:
//! it chooses each datagram's source and learns each reply's destination, `pktinfo.rs`), so a
//! flood from tens of thousands of addresses needs one file descriptor. Source layouts, for the
//! attacker who has read the master's budgets:
//! - `packed`: hosts 127.<base>.c.d, 254 to a /24 (a carpet bomb over few networks); with the
//!   `--source-base` and host count of a `fleet` run, exactly the registered game servers'
//!   addresses (`fleet` is the same layout, named for that use);
//! - `per24`: one address in each of N /24s (127.<base + i/256>.<i%256>.1): below every per-network
//!   budget.
//!
//! Each source sends `rate / sources` datagrams a second: below a per-source budget when that is
//! small enough. The report gives bytes delivered to the spoofed addresses per second, per address
//! (the largest, the mean, and how many got anything) and the amplification.

use crate::pktinfo;
use crate::report::Progress;
use crate::schedule::{Load, Scheduler};
use crate::sources;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Valve heartbeats and DP infoResponses carrying wrong challenges.
    BadChallenge,
    /// Challenge requests: `q` and DP `heartbeat`.
    Challenge,
    /// List queries: Valve first pages and DP `getservers Nexuiz 3 empty full`, alternating.
    Query,
    /// DP `getservers Nexuiz 3 empty full` only (for masters that speak no Valve).
    DpQuery,
    /// Valve first pages only (`1 FF 0.0.0.0:0 00 00`).
    ValveQuery,
    /// Xash3D FWGS queries (`\clver\0.21\key\…`): the whole list as a burst, no round trip.
    Xash,
    /// Valve first pages with the costliest filter: no index narrows it and nothing matches, so
    /// every query examines the whole list.
    ExpensiveFilter,
    /// Known message headers with broken bodies.
    Malformed,
    /// Random bytes of random length.
    Random,
}

/// Where the spoofed sources are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// 127.<base>.c.d, 254 hosts to a /24.
    Packed,
    /// The addresses a `fleet` run with the same `--source-base` registered from (one per host;
    /// `--sources` = servers / `--per-host`): the same as `packed`.
    Fleet,
    /// One address in each /24: 127.<base + i/256>.<i%256>.1.
    Per24,
}

impl Layout {
    pub(crate) fn ip(self, base: u8, i: usize) -> Ipv4Addr {
        match self {
            Layout::Packed | Layout::Fleet => sources::host(base, i),
            Layout::Per24 => {
                Ipv4Addr::new(127, base.wrapping_add((i / 256) as u8), (i % 256) as u8, 1)
            }
        }
    }

    fn index(self, base: u8, ip: Ipv4Addr) -> Option<usize> {
        match self {
            Layout::Packed | Layout::Fleet => sources::host_index(base, ip),
            Layout::Per24 => {
                let [a, b, c, d] = ip.octets();
                (a == 127 && d == 1)
                    .then(|| usize::from(b.wrapping_sub(base)) * 256 + usize::from(c))
            }
        }
    }

    /// The most sources the layout holds under 127.<base>.
    fn capacity(self, base: u8) -> usize {
        let blocks = 256 - usize::from(base);
        match self {
            Layout::Packed | Layout::Fleet => blocks * 254 * 256,
            Layout::Per24 => blocks * 256,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub targets: Vec<SocketAddr>,
    pub kind: Kind,
    pub layout: Layout,
    pub sources: usize,
    pub rate: f64,
    pub count: Option<u64>,
    pub duration: Duration,
    pub source_base: u8,
    pub seed: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub kind: Option<Kind>,
    pub layout: Option<Layout>,
    pub sources: usize,
    /// Datagrams a second each source sent (the flood's rate over its sources).
    pub rate_per_source: f64,
    pub sent_datagrams: u64,
    pub sent_bytes: u64,
    /// Datagrams the kernel refused to send (a full buffer): not sent, not counted in bytes.
    pub unsent_datagrams: u64,
    pub reply_datagrams: u64,
    pub reply_bytes: u64,
    /// Reply bytes over sent bytes, all sources together.
    pub amplification: f64,
    /// The largest reply-bytes / sent-bytes of any one source.
    pub max_source_amplification: f64,
    /// The most bytes any one source (spoofed address) was sent.
    pub max_source_reply_bytes: u64,
    /// Reply bytes per source, on average over every source.
    pub mean_source_reply_bytes: f64,
    /// Sources that got at least one reply.
    pub sources_answered: usize,
    /// Bytes sent and received back in each second of the run.
    pub per_second: Vec<Second>,
    /// Reply bytes over sent bytes from the fifth second on (what a sustained flood earns once
    /// the first bursts are spent).
    pub amplification_after_5s: f64,
    /// Reply bytes a second from the fifth second on.
    pub reply_bytes_per_sec_after_5s: f64,
    pub duration_secs: f64,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Second {
    pub sent_bytes: u64,
    pub reply_bytes: u64,
}

/// xorshift64*: deterministic, seedable, good enough for junk.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

const DP_QUERY: &[u8] = b"\xFF\xFF\xFF\xFFgetservers Nexuiz 3 empty full";
const VALVE_FIRST: &[u8] = b"1\xff0.0.0.0:0\0\0";

/// Datagram `n` of a flood of `kind`; `odd` picks between a kind's two forms.
fn payload_of(kind: Kind, odd: bool, n: u64, rng: &mut Rng, out: &mut Vec<u8>) {
    out.clear();
    match kind {
        Kind::BadChallenge if odd => {
            out.extend_from_slice(b"\xFF\xFF\xFF\xFFinfoResponse\n");
            out.extend_from_slice(
                format!(
                    "\\gamename\\Nexuiz\\protocol\\3\\clients\\0\\sv_maxclients\\8\\challenge\\{:010x}",
                    rng.next() & 0xFF_FFFF_FFFF
                )
                .as_bytes(),
            );
        }
        Kind::BadChallenge => out.extend_from_slice(
            format!(
                "0\n\\challenge\\{}\\protocol\\48\\gamedir\\cstrike\\map\\de_dust2\\max\\16\\players\\0\n",
                rng.next() as u32
            )
            .as_bytes(),
        ),
        Kind::Challenge if odd => out.extend_from_slice(b"\xFF\xFF\xFF\xFFheartbeat DarkPlaces\n"),
        Kind::Challenge => out.extend_from_slice(b"q"),
        Kind::Query if odd => out.extend_from_slice(DP_QUERY),
        Kind::Query | Kind::ValveQuery => out.extend_from_slice(VALVE_FIRST),
        Kind::DpQuery => out.extend_from_slice(DP_QUERY),
        Kind::Xash => {
            out.extend_from_slice(b"1\xff0.0.0.0:0\0\\clver\\0.21\\key\\");
            out.extend_from_slice(format!("{:x}", rng.next() as u32).as_bytes());
            out.push(0);
        }
        Kind::ExpensiveFilter => {
            out.extend_from_slice(b"1\xff0.0.0.0:0\0\\name_match\\*no such server*\0");
        }
        Kind::Malformed => {
            const CASES: [&[u8]; 8] = [
                b"1\xff999.1.2.3:1\0\0",
                b"1\xff0.0.0.0:0",
                b"\xFF\xFF\xFF\xFFgetservers",
                b"\xFF\xFF\xFF\xFFgetserversExt Nexuiz x empty",
                b"0\n\\challenge",
                b"\xFF\xFF\xFF\xFFinfoResponse\n\\a",
                b"\xFF\xFF\xFF\xFFheartbeat \n",
                b"q\xFF\xFF",
            ];
            out.extend_from_slice(CASES[(n % CASES.len() as u64) as usize]);
        }
        Kind::Random => {
            let len = 1 + (rng.next() % 1400) as usize;
            out.extend((0..len).map(|_| rng.next() as u8));
        }
    }
}

pub fn run(cfg: &Config) -> Result<Report, String> {
    let n = cfg.sources.max(1);
    if n > cfg.layout.capacity(cfg.source_base) {
        return Err(format!(
            "{n} sources do not fit the {:?} layout under 127.{}",
            cfg.layout, cfg.source_base
        ));
    }
    if cfg.targets.iter().any(SocketAddr::is_ipv6) {
        return Err("flood sources are IPv4 loopback addresses: give an IPv4 --target".into());
    }
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let std = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .map_err(|e| format!("bind the flood socket: {e}"))?;
    std.set_nonblocking(true).map_err(|e| e.to_string())?;
    pktinfo::enable(std.as_raw_fd(), false).map_err(|e| format!("IP_PKTINFO: {e}"))?;
    let _ = socket2::SockRef::from(&std).set_recv_buffer_size(16 << 20);
    let _ = socket2::SockRef::from(&std).set_send_buffer_size(4 << 20);
    let mut sock = mio::net::UdpSocket::from_std(std);
    poll.registry()
        .register(&mut sock, Token(0), Interest::READABLE)
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut sent = vec![0u64; n];
    let mut got = vec![0u64; n];
    let mut r = Report {
        kind: Some(cfg.kind),
        layout: Some(cfg.layout),
        sources: n,
        rate_per_source: cfg.rate / n as f64,
        ..Report::default()
    };
    let end = cfg.duration.as_nanos() as u64;
    let mut sched = Scheduler::new(
        Load::Open {
            rate: cfg.rate,
            max_in_flight: usize::MAX,
        },
        cfg.count,
        end,
    );
    let mut rng = Rng(cfg.seed | 1);
    let mut out = Vec::with_capacity(1500);
    let mut queue = pktinfo::SendQueue::default();
    let mut rb = pktinfo::RecvBatch::default();
    let mut events = Events::with_capacity(16);
    let mut progress = Progress::new();
    let interrupted = sources::interrupted();
    // After the last send, replies still in flight (paced lists) are collected for this long.
    let grace = Duration::from_millis(1500);
    let mut last_send = Instant::now();
    let mut pending: Vec<(usize, usize)> = Vec::with_capacity(pktinfo::BATCH * 16);
    loop {
        let now = start.elapsed().as_nanos() as u64;
        // Send what is due (at most 1024 per round, so replies are read in between).
        pending.clear();
        for _ in 0..1024 {
            if sched.start(now).is_none() {
                break;
            }
            sched.finish();
            let k = r.sent_datagrams + r.unsent_datagrams + pending.len() as u64;
            let i = (k % n as u64) as usize;
            // Each source alternates between the kind's forms (round by round over the sources).
            let round = k / n as u64;
            payload_of(cfg.kind, (round + k) % 2 == 1, k, &mut rng, &mut out);
            let target = cfg.targets[(k as usize / n) % cfg.targets.len()];
            queue.push(IpAddr::V4(cfg.layout.ip(cfg.source_base, i)), target, &out);
            pending.push((i, out.len()));
        }
        if !pending.is_empty() {
            let done = queue.flush(sock.as_raw_fd());
            let second = (now / 1_000_000_000) as usize;
            // A refused datagram is given up (as on a network); which ones is not known, so the
            // last ones queued are counted as unsent.
            for (j, &(i, len)) in pending.iter().enumerate() {
                if j < done.sent {
                    r.sent_datagrams += 1;
                    r.sent_bytes += len as u64;
                    sent[i] += len as u64;
                    second_mut(&mut r.per_second, second).sent_bytes += len as u64;
                } else {
                    r.unsent_datagrams += 1;
                }
            }
            last_send = Instant::now();
        }
        if (sched.done(now) && last_send.elapsed() >= grace)
            || interrupted.load(std::sync::atomic::Ordering::Relaxed)
        {
            break;
        }
        let wait = sched
            .next_due()
            .map(|d| d.saturating_sub(now))
            .unwrap_or(10_000_000)
            .min(10_000_000);
        sources::wait(&mut poll, &mut events, Duration::from_nanos(wait))?;
        let second = (start.elapsed().as_nanos() / 1_000_000_000) as usize;
        let (layout, base) = (cfg.layout, cfg.source_base);
        let _ = rb.drain(sock.as_raw_fd(), 1 << 16, |d, _from, to| {
            let IpAddr::V4(to) = to else { return };
            let Some(i) = layout.index(base, to).filter(|&i| i < n) else {
                return;
            };
            r.reply_datagrams += 1;
            r.reply_bytes += d.len() as u64;
            got[i] += d.len() as u64;
            second_mut(&mut r.per_second, second).reply_bytes += d.len() as u64;
        });
        progress.tick(|| {
            format!(
                "flood: {} sent, {} replies ({} bytes)",
                r.sent_datagrams, r.reply_datagrams, r.reply_bytes
            )
        });
    }
    progress.finish();
    r.duration_secs = start.elapsed().as_secs_f64();
    r.amplification = ratio(r.reply_bytes, r.sent_bytes);
    r.max_source_amplification = sent
        .iter()
        .zip(&got)
        .map(|(&s, &g)| ratio(g, s))
        .fold(0.0, f64::max);
    r.max_source_reply_bytes = got.iter().copied().max().unwrap_or(0);
    r.mean_source_reply_bytes = got.iter().sum::<u64>() as f64 / n as f64;
    r.sources_answered = got.iter().filter(|&&g| g > 0).count();
    let later: Vec<&Second> = r.per_second.iter().skip(5).collect();
    let (s5, g5) = later
        .iter()
        .fold((0, 0), |(s, g), x| (s + x.sent_bytes, g + x.reply_bytes));
    r.amplification_after_5s = ratio(g5, s5);
    let secs_after_5 = (r.duration_secs - 5.0).max(0.0);
    r.reply_bytes_per_sec_after_5s = if secs_after_5 > 0.0 {
        g5 as f64 / secs_after_5
    } else {
        0.0
    };
    Ok(r)
}

fn second_mut(v: &mut Vec<Second>, i: usize) -> &mut Second {
    if v.len() <= i {
        v.resize(i + 1, Second::default());
    }
    &mut v[i]
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster::wire::{Kind as W, classify};

    #[test]
    fn payloads_are_what_they_claim() {
        let mut rng = Rng(7);
        let mut out = Vec::new();
        let mut kinds = Vec::new();
        for (kind, n) in [
            (Kind::BadChallenge, 0),
            (Kind::BadChallenge, 1),
            (Kind::Challenge, 0),
            (Kind::Challenge, 1),
            (Kind::Query, 0),
            (Kind::Query, 1),
            (Kind::Xash, 0),
            (Kind::ExpensiveFilter, 0),
            (Kind::ValveQuery, 1),
        ] {
            payload_of(kind, n % 2 == 1, n, &mut rng, &mut out);
            kinds.push(classify(&out));
        }
        assert_eq!(
            kinds,
            [
                W::ValveHeartbeat,
                W::DpInfoResponse,
                W::ValveChallengeRequest,
                W::DpHeartbeat,
                W::ValveListQuery,
                W::DpGetServers,
                W::ValveListQuery,
                W::ValveListQuery,
                W::ValveListQuery,
            ]
        );
        // The Xash3D query parses as one (a key the client will check).
        payload_of(Kind::Xash, false, 0, &mut rng, &mut out);
        {
            let q = muster::wire::valve_list::ListQuery::decode(&out).unwrap();
            let f = muster::wire::filter::Filter::parse(q.filter).unwrap();
            assert!(matches!(
                muster::wire::xash::XashQuery::from_filter(&f),
                Ok(Some(_))
            ));
        }
        for n in 0..100 {
            payload_of(Kind::Random, false, n, &mut rng, &mut out);
            assert!((1..=1400).contains(&out.len()));
        }
        assert_eq!(ratio(30, 10), 3.0);
        assert_eq!(ratio(30, 0), 0.0);
    }

    #[test]
    fn layouts_map_sources_to_addresses_and_back() {
        for layout in [Layout::Packed, Layout::Fleet, Layout::Per24] {
            for i in [0usize, 1, 253, 254, 255, 256, 5000, 60_000] {
                let ip = layout.ip(100, i);
                assert_eq!(layout.index(100, ip), Some(i), "{layout:?} {i} {ip}");
            }
        }
        // Per /24: each source its own network.
        let nets: std::collections::HashSet<[u8; 3]> = (0..2000)
            .map(|i| {
                let o = Layout::Per24.ip(100, i).octets();
                [o[0], o[1], o[2]]
            })
            .collect();
        assert_eq!(nets.len(), 2000);
        assert_eq!(Layout::Per24.capacity(100), 156 * 256);
    }
}
