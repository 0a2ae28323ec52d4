//! `query`: list-query load — whole lists fetched in closed loop (C in flight) or open loop (R per
//! second on a timetable, latency from the intended start). Valve lists are paged to the end;
//! DP lists are collected until the packet with EOT.

use crate::batch::{self, BatchRecv};
use crate::report::{Latency, LatencySummary, Progress};
use crate::schedule::{Load, Scheduler};
use crate::sources;
use mio::{Events, Poll};
use muster::wire::dp_list::ListResponse;
use muster::wire::valve_list::ListPage;
use muster::wire::xash::BurstDatagram;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `0x31` queries, paged with the last address as the next seed.
    Valve,
    /// `getservers <game> <protocol> empty full`.
    Dp,
    /// `getserversExt <game> <protocol> empty full`.
    DpExt,
    /// A Xash3D FWGS client: one `0x31` query whose filter is `--filter` (default
    /// `\gamedir\valve\clver\0.21`) plus `\key\<hex>`, the whole list read as a burst of
    /// keyed datagrams. Xash clients cannot tell the last datagram: a list ends when `--expect`
    /// entries came, or at the timeout (then counted whole, not as a timeout).
    Xash,
}

/// The key the `xash` mode sends (`\key\6d757374`) and expects echoed in every datagram.
pub const XASH_KEY: u32 = 0x6d75_7374;

fn xash_query(filter: &str) -> Vec<u8> {
    let f = if filter.is_empty() {
        "\\gamedir\\valve\\clver\\0.21"
    } else {
        filter
    };
    let mut q = b"1\xff0.0.0.0:0\0".to_vec();
    q.extend_from_slice(f.as_bytes());
    q.extend_from_slice(format!("\\key\\{XASH_KEY:x}").as_bytes());
    q.push(0);
    q
}

#[derive(Debug, Clone)]
pub struct Config {
    pub targets: Vec<SocketAddr>,
    pub mode: Mode,
    pub region: u8,
    pub filter: String,
    pub game: String,
    pub protocol: u32,
    pub load: Load,
    pub count: Option<u64>,
    pub duration: Duration,
    pub expect: Option<usize>,
    pub timeout: Duration,
    pub retries: u32,
    pub source_base: u8,
    pub hosts: usize,
    /// Hosts one to a /24 (clients of as many networks), not 254 to a /24.
    pub per24: bool,
    /// Let the kernel coalesce runs of datagrams (`UDP_GRO`): fewer receive calls.
    pub gro: bool,
    /// Receive buffer bytes for each list socket (`SO_RCVBUFFORCE` when allowed, else capped by
    /// `rmem_max`); `None`: the kernel's default, as a game client has.
    pub recv_buffer: Option<usize>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub mode: Option<Mode>,
    pub lists_started: u64,
    /// Lists that ended (terminator / EOT) with every expected entry.
    pub lists_complete: u64,
    /// Lists that ended short of the expected entries, or timed out.
    pub lists_incomplete: u64,
    pub timeouts: u64,
    /// Valve pages asked again after a timeout.
    pub page_retries: u64,
    /// Lists started again on the next master of their order after a timeout (several
    /// `--target`s: the Valve paper's failover, each master waited on twice as long as the last).
    pub failovers: u64,
    /// Lists ended (whole or not) by each master that answered them.
    pub answered_by: std::collections::BTreeMap<String, u64>,
    pub entries_expected: Option<usize>,
    pub entries_received: u64,
    pub duplicate_entries: u64,
    pub packets: u64,
    pub bytes: u64,
    pub lists_per_sec: f64,
    pub packets_per_sec: f64,
    pub bytes_per_sec: f64,
    pub time_to_first_packet: LatencySummary,
    pub time_to_complete: LatencySummary,
    pub duration_secs: f64,
}

struct Fetch {
    target: SocketAddr,
    /// The masters this list may ask, in its own random order; `next` is the one after `target`.
    order: Vec<SocketAddr>,
    next: usize,
    /// How long this list waits on its current master (doubles at each failover).
    timeout: u64,
    intended: u64,
    first: Option<u64>,
    last_activity: u64,
    seed: SocketAddrV4,
    tries: u32,
    /// Every entry received, as sortable keys (duplicates counted when the list ends).
    entries: Vec<Key>,
    /// IPv6 entries by key (to report them back by address).
    v6: HashMap<Key, SocketAddr>,
}

/// A list's own order of the masters: a random rotation and direction per list (SplitMix64 of the
/// list's number), so a client population spreads over the masters and one dead master costs
/// each list at most one timeout.
fn target_order(targets: &[SocketAddr], list: u64) -> Vec<SocketAddr> {
    let mut x = list.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let mut v = targets.to_vec();
    // Fisher–Yates with the one random word, re-mixed per step.
    for i in (1..v.len()).rev() {
        x = x
            .wrapping_mul(0x5851_F42D_4C95_7F2D)
            .wrapping_add(1442695040888963407);
        v.swap(i, ((x >> 33) % (i as u64 + 1)) as usize);
    }
    v
}

/// An entry as an integer, cheap to sort: IPv4 address and port in the low 48 bits; IPv6 a
/// 63-bit hash with the top bit set (2⁻⁶³ odds of a false duplicate per pair of IPv6 entries).
type Key = u64;

fn key(a: SocketAddr) -> Key {
    match a {
        SocketAddr::V4(v4) => (u64::from(u32::from(*v4.ip())) << 16) | u64::from(v4.port()),
        SocketAddr::V6(v6) => {
            let x = u128::from(*v6.ip()) ^ u128::from(v6.port());
            let h = ((x as u64) ^ ((x >> 64) as u64).rotate_left(29))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            h | (1 << 63)
        }
    }
}

fn addr(k: Key, v6: &HashMap<Key, SocketAddr>) -> SocketAddr {
    if k >> 63 == 0 {
        let ip = Ipv4Addr::from(((k >> 16) & 0xFFFF_FFFF) as u32);
        SocketAddr::from((ip, (k & 0xFFFF) as u16))
    } else {
        v6.get(&k).copied().unwrap_or(SocketAddr::from(([0; 4], 0)))
    }
}

struct Slot {
    sock: mio::net::UdpSocket,
    fetch: Option<Fetch>,
}

/// Time to first packet and to the complete list, from the intended start.
#[derive(Default)]
pub struct Latencies {
    pub ttfp: Latency,
    pub ttc: Latency,
}

pub struct Outcome {
    pub report: Report,
    pub latency: Latencies,
}

/// The address of list slot `i`: `hosts` of them, packed 254 to a /24 or one to a /24.
fn client_host(base: u8, hosts: usize, per24: bool, i: usize) -> Ipv4Addr {
    let layout = if per24 {
        crate::flood::Layout::Per24
    } else {
        crate::flood::Layout::Packed
    };
    layout.ip(base, i % hosts.max(1))
}

fn valve_query(region: u8, seed: SocketAddrV4, filter: &str) -> Vec<u8> {
    [
        &[0x31, region][..],
        seed.to_string().as_bytes(),
        b"\0",
        filter.as_bytes(),
        b"\0",
    ]
    .concat()
}

pub fn run(cfg: &Config) -> Result<Outcome, String> {
    run_inner(cfg, None)
}

/// Runs and also returns every distinct server any list carried (for `crawl`).
pub fn run_collect(cfg: &Config) -> Result<(Report, Vec<SocketAddr>), String> {
    let mut all = HashSet::new();
    let o = run_inner(cfg, Some(&mut all))?;
    Ok((o.report, all.into_iter().collect()))
}

fn run_inner(
    cfg: &Config,
    mut collect: Option<&mut HashSet<SocketAddr>>,
) -> Result<Outcome, String> {
    let start = Instant::now();
    let now_ns = || start.elapsed().as_nanos() as u64;
    let slots_n = match cfg.load {
        Load::Closed { concurrency } => concurrency.max(1),
        Load::Open { max_in_flight, .. } => max_in_flight.max(1),
    };
    let first_target = *cfg.targets.first().ok_or("no --target")?;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut slots = Vec::with_capacity(slots_n);
    for i in 0..slots_n {
        let host = client_host(cfg.source_base, cfg.hosts, cfg.per24, i);
        let sock = sources::bind_registered(&poll, host, first_target, i)?;
        if cfg.gro {
            batch::enable_gro(sock.as_raw_fd());
        }
        if let Some(bytes) = cfg.recv_buffer {
            sources::set_recv_buffer(&sock, bytes);
        }
        slots.push(Slot { sock, fetch: None });
    }
    let mut batch = BatchRecv::default();
    let dp_query = match cfg.mode {
        Mode::Valve => Vec::new(),
        Mode::Xash => xash_query(&cfg.filter),
        Mode::Dp | Mode::DpExt => {
            let word = if cfg.mode == Mode::Dp {
                "getservers"
            } else {
                "getserversExt"
            };
            let text = format!("{word} {} {} empty full", cfg.game, cfg.protocol);
            [&b"\xFF\xFF\xFF\xFF"[..], text.as_bytes()].concat()
        }
    };
    let end = cfg.duration.as_nanos() as u64;
    let mut sched = Scheduler::new(cfg.load, cfg.count, end);
    let mut r = Report {
        mode: Some(cfg.mode),
        entries_expected: cfg.expect,
        ..Report::default()
    };
    let mut lat = Latencies::default();
    let mut next_target = 0usize;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 65536];
    let mut progress = Progress::new();
    let timeout = cfg.timeout.as_nanos() as u64;
    // Hard stop: the run's duration plus time for the last lists to end, failovers included
    // (each master waited on twice as long as the one before).
    let failover_span = (1u64 << cfg.targets.len().min(16)).saturating_sub(1);
    let hard_end = end.saturating_add(
        timeout
            .saturating_mul(u64::from(cfg.retries) + 2)
            .saturating_mul(failover_span),
    );
    // Slots are taken in turn (a queue, not a stack): consecutive lists come from different
    // sockets, so with as many hosts as slots each list is a fresh client.
    let mut free: std::collections::VecDeque<usize> = (0..slots_n).collect();
    loop {
        let now = now_ns();
        if sched.done(now) || now > hard_end {
            break;
        }
        // Start what is due.
        while let Some(&slot) = free.front() {
            let Some(intended) = sched.start(now) else {
                break;
            };
            free.pop_front();
            let order = if cfg.targets.len() > 1 {
                target_order(&cfg.targets, next_target as u64)
            } else {
                cfg.targets.clone()
            };
            next_target += 1;
            let target = order[0];
            let s = &mut slots[slot];
            // Anything late from this socket's previous list is not this list's.
            let _ = sources::drain(&s.sock, &mut buf, usize::MAX, |_, _| {});
            let q = match cfg.mode {
                Mode::Valve => valve_query(
                    cfg.region,
                    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    &cfg.filter,
                ),
                _ => dp_query.clone(),
            };
            let _ = s.sock.send_to(&q, target);
            r.lists_started += 1;
            s.fetch = Some(Fetch {
                target,
                order,
                next: 1,
                timeout,
                intended,
                first: None,
                last_activity: now,
                seed: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                tries: 0,
                entries: Vec::new(),
                v6: HashMap::new(),
            });
        }
        // Timeouts.
        for (i, s) in slots.iter_mut().enumerate() {
            let Some(f) = &mut s.fetch else { continue };
            if now.saturating_sub(f.last_activity) < f.timeout {
                continue;
            }
            let xash_end = cfg.mode == Mode::Xash && f.first.is_some();
            if !xash_end
                && (f.tries >= cfg.retries || cfg.mode != Mode::Valve)
                && let Some(&next) = f.order.get(f.next)
            {
                // Fail over: the whole list again from the next master, waited on twice as long.
                f.next += 1;
                f.target = next;
                f.timeout = f.timeout.saturating_mul(2);
                f.tries = 0;
                f.first = None;
                f.last_activity = now;
                f.seed = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
                f.entries.clear();
                f.v6.clear();
                r.failovers += 1;
                let q = match cfg.mode {
                    Mode::Valve => valve_query(cfg.region, f.seed, &cfg.filter),
                    _ => dp_query.clone(),
                };
                let _ = s.sock.send_to(&q, next);
                continue;
            }
            if cfg.mode == Mode::Valve && f.tries < cfg.retries {
                f.tries += 1;
                f.last_activity = now;
                r.page_retries += 1;
                let _ = s
                    .sock
                    .send_to(&valve_query(cfg.region, f.seed, &cfg.filter), f.target);
                continue;
            }
            // A Xash burst has no last datagram: silence after it is its end.
            if !xash_end {
                r.timeouts += 1;
            }
            finish(
                collect.as_deref_mut(),
                &mut r,
                &mut lat,
                s.fetch.take(),
                now,
                xash_end,
                cfg.expect,
            );
            sched.finish();
            free.push_back(i);
        }
        let wake = sched
            .next_due()
            .map(|d| d.saturating_sub(now_ns()))
            .unwrap_or(u64::MAX)
            .min(timeout / 4 + 1)
            .min(10_000_000);
        sources::wait(&mut poll, &mut events, Duration::from_nanos(wake))?;
        for ev in &events {
            let i = ev.token().0;
            let Some(s) = slots.get_mut(i) else { continue };
            let mut ended: Option<bool> = None;
            let mut next_query: Option<Vec<u8>> = None;
            let sock = &s.sock;
            let fetch = &mut s.fetch;
            let _ = batch.drain(sock.as_raw_fd(), 4096, |d, from| {
                let Some(f) = fetch.as_mut() else { return };
                if from != f.target || ended.is_some() {
                    return;
                }
                let now = now_ns();
                r.packets += 1;
                r.bytes += d.len() as u64;
                f.first.get_or_insert(now);
                f.last_activity = now;
                let mut add = |a: SocketAddr, f: &mut Fetch| {
                    r.entries_received += 1;
                    let k = key(a);
                    if a.is_ipv6() {
                        f.v6.insert(k, a);
                    }
                    f.entries.push(k);
                };
                match cfg.mode {
                    Mode::Valve => {
                        let Ok(page) = ListPage::decode(d) else {
                            return;
                        };
                        for a in page.servers() {
                            add(SocketAddr::V4(a), f);
                        }
                        if page.is_final() {
                            ended = Some(true);
                        } else if let Some(seed) = page.next_seed() {
                            f.seed = seed;
                            f.tries = 0;
                            next_query = Some(valve_query(cfg.region, seed, &cfg.filter));
                        }
                    }
                    Mode::Xash => {
                        let Ok(b) = BurstDatagram::decode(d, f.target.is_ipv6(), true) else {
                            return;
                        };
                        if b.key != Some(XASH_KEY) {
                            return;
                        }
                        for a in b.servers {
                            add(a, f);
                        }
                        if cfg.expect.is_some_and(|n| f.entries.len() >= n) {
                            ended = Some(true);
                        }
                    }
                    Mode::Dp | Mode::DpExt => {
                        let Ok(resp) = ListResponse::decode(d) else {
                            return;
                        };
                        for a in resp.servers() {
                            add(a, f);
                        }
                        if resp.eot {
                            ended = Some(true);
                        }
                    }
                }
            });
            if let (Some(q), Some(f)) = (&next_query, &s.fetch)
                && ended.is_none()
            {
                let _ = s.sock.send_to(q, f.target);
            }
            if ended.is_some() {
                finish(
                    collect.as_deref_mut(),
                    &mut r,
                    &mut lat,
                    s.fetch.take(),
                    now_ns(),
                    true,
                    cfg.expect,
                );
                sched.finish();
                free.push_back(i);
            }
        }
        progress.tick(|| {
            format!(
                "query: {} lists ({} complete, {} incomplete, {} timeouts), {} in flight",
                r.lists_started,
                r.lists_complete,
                r.lists_incomplete,
                r.timeouts,
                sched.in_flight()
            )
        });
    }
    progress.finish();
    let secs = start.elapsed().as_secs_f64();
    r.duration_secs = secs;
    r.lists_per_sec = r.lists_complete as f64 / secs;
    r.packets_per_sec = r.packets as f64 / secs;
    r.bytes_per_sec = r.bytes as f64 / secs;
    r.time_to_first_packet = lat.ttfp.summary();
    r.time_to_complete = lat.ttc.summary();
    Ok(Outcome {
        report: r,
        latency: lat,
    })
}

fn finish(
    collect: Option<&mut HashSet<SocketAddr>>,
    r: &mut Report,
    lat: &mut Latencies,
    f: Option<Fetch>,
    now: u64,
    ended: bool,
    expect: Option<usize>,
) {
    let Some(mut f) = f else { return };
    if f.first.is_some() {
        *r.answered_by.entry(f.target.to_string()).or_default() += 1;
    }
    let received = f.entries.len();
    // Masters that send in address order (muster does) need no sort; others get a radix sort
    // (comparison sorts were most of the load generator's time against such a master).
    if !f.entries.is_sorted() {
        radsort::sort(&mut f.entries);
    }
    f.entries.dedup();
    r.duplicate_entries += (received - f.entries.len()) as u64;
    if let Some(c) = collect {
        c.extend(f.entries.iter().map(|&k| addr(k, &f.v6)));
    }
    if let Some(first) = f.first {
        lat.ttfp
            .record(Duration::from_nanos(first.saturating_sub(f.intended)));
    }
    let whole = ended && expect.is_none_or(|n| f.entries.len() == n);
    if whole {
        r.lists_complete += 1;
        lat.ttc
            .record(Duration::from_nanos(now.saturating_sub(f.intended)));
    } else {
        r.lists_incomplete += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_in_wire_order() {
        let v6 = HashMap::new();
        let a: SocketAddr = "10.0.0.1:27015".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1".parse().unwrap();
        assert_eq!(addr(key(a), &v6), a);
        assert!(key(a) < key(b));
        let c: SocketAddr = "[2001:db8::1]:27015".parse().unwrap();
        let mut m = HashMap::new();
        m.insert(key(c), c);
        assert_eq!(addr(key(c), &m), c);
        assert_ne!(key(c) >> 63, 0);
    }

    #[test]
    fn client_hosts_are_packed_or_one_to_a_slash_24() {
        let packed: Vec<Ipv4Addr> = (0..3).map(|i| client_host(200, 128, false, i)).collect();
        let per24: Vec<Ipv4Addr> = (0..3).map(|i| client_host(200, 128, true, i)).collect();
        assert_eq!(
            packed,
            [[127, 200, 0, 1], [127, 200, 0, 2], [127, 200, 0, 3]].map(Ipv4Addr::from)
        );
        assert_eq!(
            per24,
            [[127, 200, 0, 1], [127, 200, 1, 1], [127, 200, 2, 1]].map(Ipv4Addr::from)
        );
        // Slots past `hosts` reuse the hosts in turn.
        assert_eq!(
            client_host(200, 128, true, 130),
            client_host(200, 128, true, 2)
        );
        assert_eq!(
            client_host(200, 128, true, 300),
            Ipv4Addr::new(127, 200, 44, 1)
        );
    }

    #[test]
    fn valve_query_bytes() {
        // 0x31, region, seed text, NUL, filter, NUL (protocols.md §1).
        let q = valve_query(
            0xFF,
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            "\\gamedir\\tf",
        );
        assert_eq!(q, b"1\xff0.0.0.0:0\0\\gamedir\\tf\0");
    }

    #[test]
    fn each_list_has_its_own_order_of_every_master() {
        let t: Vec<SocketAddr> = (1..=3)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        let mut firsts = std::collections::HashMap::new();
        for list in 0..300 {
            let o = target_order(&t, list);
            let mut sorted = o.clone();
            sorted.sort();
            assert_eq!(sorted, t, "every master once");
            *firsts.entry(o[0]).or_insert(0) += 1;
        }
        // Lists start at every master, roughly evenly (a dead one costs a third of them a timeout).
        assert!(
            firsts.values().all(|&n| (60..=140).contains(&n)),
            "{firsts:?}"
        );
    }

    #[test]
    fn accounting_of_complete_incomplete_and_latency() {
        let mut r = Report::default();
        let mut lat = Latencies::default();
        let fetch = |n: usize, first: Option<u64>| Fetch {
            target: "127.0.0.1:1".parse().unwrap(),
            order: Vec::new(),
            next: 0,
            timeout: 1,
            intended: 1_000,
            first,
            last_activity: 0,
            seed: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            tries: 0,
            entries: (0..n)
                .map(|i| key(SocketAddr::from(([10, 0, 0, 1], 1000 + i as u16))))
                .collect(),
            v6: HashMap::new(),
        };
        finish(
            None,
            &mut r,
            &mut lat,
            Some(fetch(5, Some(3_001_000))),
            9_001_000,
            true,
            Some(5),
        );
        finish(
            None,
            &mut r,
            &mut lat,
            Some(fetch(4, Some(2_001_000))),
            9_001_000,
            true,
            Some(5),
        );
        finish(
            None,
            &mut r,
            &mut lat,
            Some(fetch(0, None)),
            9_001_000,
            false,
            Some(5),
        );
        assert_eq!((r.lists_complete, r.lists_incomplete), (1, 2));
        assert_eq!(
            lat.ttfp.summary().count,
            2,
            "first packets of the two lists that got any"
        );
        assert_eq!(
            lat.ttc.summary().count,
            1,
            "completion of the whole list only"
        );
        // 9 ms from the intended start, to hdrhistogram's 3 significant digits.
        assert!(
            lat.ttc.summary().max_us.abs_diff(9_000) <= 9,
            "{}",
            lat.ttc.summary()
        );
    }
}
