//! The real engine on 127.0.0.1 with two cores, driven over real sockets.

mod common;

use common::*;
use muster::master::DropReason;
use muster::master::steer::shard_for;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

#[test]
fn servers_register_through_both_handshakes_from_several_sources() {
    let e = engine(2, |_| {});
    let master = e.local_addrs()[0];
    // Valve (GoldSrc `q`/`s`/`0\n`) from 8 hosts, Nexuiz and Quake III (DP handshake) from 8 more.
    let valve = sockets(1, 8, 64);
    let nexuiz = sockets(2, 8, 48);
    let q3 = sockets(3, 8, 24);
    let hs = [
        valve_register(master, &valve, "cstrike"),
        dp_register(master, &nexuiz, "DarkPlaces", NEXUIZ_INFO),
        dp_register(master, &q3, "QuakeArena-1", Q3_INFO),
    ];
    let answered: Vec<usize> = hs.iter().map(|h| h.answered).collect();
    assert_eq!(answered, [64, 48, 24]);
    every_core_lists(&e, 64, 48 + 24);

    // Every core answers with every server: ask a client steered to each.
    for client in clients_on_every_core(2, 9) {
        assert_eq!(set(valve_list(master, &client, 0xFF, "").0), addrs(&valve));
        let nexuiz_query = "getservers Nexuiz 3 empty full";
        assert_eq!(
            set(dp_list(master, &client, nexuiz_query).0),
            addrs(&nexuiz)
        );
        // No gamename: Quake III (the QuakeArena-1 tag implies it), as dpmaster.
        let q3_query = "getservers 71 empty full\n";
        assert_eq!(set(dp_list(master, &client, q3_query).0), addrs(&q3));
    }

    let report = e.stop().unwrap();
    assert_eq!(report.shard.registered, 64 + 48 + 24);
    // One challenge per request (a request re-sent after a lost reply gets its own).
    let requests: usize = hs.iter().map(|h| h.requests).sum();
    assert_eq!(report.shard.challenges_sent, requests as u64);
    assert_eq!(report.shard.dropped_total(), 0);
    // Each server registered on the core its source address steers to.
    let mut per_core = [0u64; 2];
    for s in valve.iter().chain(&nexuiz).chain(&q3) {
        per_core[shard_for(s.local_addr().unwrap().ip(), 2)] += 1;
    }
    let got: Vec<u64> = report.per_core.iter().map(|(c, _)| c.registered).collect();
    assert_eq!(got, per_core);
    assert!(per_core.iter().all(|&n| n > 0), "both cores hold servers");
}

fn set(v: Vec<SocketAddr>) -> HashSet<SocketAddr> {
    let n = v.len();
    let s: HashSet<_> = v.into_iter().collect();
    assert_eq!(s.len(), n, "no server listed twice");
    s
}

/// Source addresses that steer to `core` of 2 (found by the same hash the kernel program runs).
fn host_on(core: usize, hi: u8) -> Ipv4Addr {
    (1..=254)
        .map(|d| Ipv4Addr::new(127, 0, hi, d))
        .find(|ip| shard_for(IpAddr::V4(*ip), 2) == core)
        .unwrap()
}

#[test]
fn a_server_registered_on_one_core_is_listed_by_the_other() {
    let e = engine(2, |_| {});
    let master = e.local_addrs()[0];
    for (server_core, client_core) in [(0, 1), (1, 0)] {
        let server = vec![socket(host_on(server_core, 10 + server_core as u8))];
        let client = socket(host_on(client_core, 20 + client_core as u8));
        let before = valve_list(master, &client, 0xFF, "").0.len();
        assert_eq!(valve_register(master, &server, "tf").answered, 1);
        let want = server[0].local_addr().unwrap();
        // Ready when every core's list holds it (asked of the engine, not by polling lists: a
        // client polling would meet its own query-rate limit).
        every_core_lists(&e, before + 1, 0);
        let (list, _) = valve_list(master, &client, 0xFF, "");
        assert!(
            list.contains(&want),
            "core {client_core} lists a server registered on core {server_core}"
        );
        assert_eq!(list.len(), before + 1);
    }
    let report = e.stop().unwrap();
    // The kernel steered as promised: each core registered one and answered list queries.
    for (core, (c, eng)) in report.per_core.iter().enumerate() {
        assert_eq!(c.registered, 1, "core {core}");
        assert!(c.valve_queries > 0, "core {core}");
        assert!(eng.snapshots_sent > 0, "core {core} published its shard");
    }
}

#[test]
fn valve_paging_filters_and_dp_ext_over_real_sockets() {
    let e = engine(2, |f| f.max_servers_per_ip = 1000);
    let master = e.local_addrs()[0];
    let cs = sockets(30, 4, 400);
    let tf = sockets(31, 4, 200);
    assert_eq!(valve_register(master, &cs, "cstrike").answered, 400);
    assert_eq!(valve_register(master, &tf, "tf").answered, 200);
    let nexuiz = sockets(32, 4, 300);
    let registered = dp_register(master, &nexuiz, "DarkPlaces", NEXUIZ_INFO);
    assert_eq!(registered.answered, 300);
    every_core_lists(&e, 600, 300);
    let client = socket(Ipv4Addr::new(127, 0, 33, 1));
    let all: HashSet<_> = addrs(&cs).union(&addrs(&tf)).copied().collect();
    let (list, pages) = valve_list(master, &client, 0xFF, "");
    assert_eq!(set(list), all);
    // 600 servers + the terminator, 168–231 entries a page (the length varies per client so that
    // a continuation proves receipt): 3 or 4 pages.
    assert!((3..=4).contains(&pages), "{pages} pages");
    let (list, _) = valve_list(master, &client, 0xFF, "\\gamedir\\tf");
    assert_eq!(set(list), addrs(&tf));
    let (list, _) = valve_list(master, &client, 0xFF, "\\nor\\1\\gamedir\\tf");
    assert_eq!(set(list), addrs(&cs));

    let (plain, packets) = dp_list(master, &client, "getservers Nexuiz 3 empty full");
    assert_eq!(set(plain), addrs(&nexuiz));
    assert_eq!(packets, 2, "196 IPv4 entries a packet, as dpmaster");
    let (ext, _) = dp_list(master, &client, "getserversExt Nexuiz 3 empty full ipv4");
    assert_eq!(set(ext), addrs(&nexuiz));
    let (other, _) = dp_list(master, &client, "getservers Xonotic 3 empty full");
    assert!(other.is_empty());
    e.stop().unwrap();
}

/// The kernel's default receive buffer for a new UDP socket.
fn rmem_default() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/rmem_default")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(212_992)
}

#[test]
fn five_thousand_servers_arrive_whole_at_a_client_with_a_default_buffer() {
    let e = engine(2, |f| f.max_servers_per_ip = 1000);
    let master = e.local_addrs()[0];
    let servers = sockets(40, 10, 5000);
    assert_eq!(
        dp_register(master, &servers, "DarkPlaces", NEXUIZ_INFO).answered,
        5000
    );
    let want = addrs(&servers);
    drop(servers);
    every_core_lists(&e, 0, 5000);
    let client = socket(Ipv4Addr::new(127, 0, 41, 1));
    for query in [
        "getservers Nexuiz 3 empty full",
        "getserversExt Nexuiz 3 empty full",
    ] {
        let (list, packets) = dp_list(master, &client, query);
        assert_eq!(set(list), want, "{query}");
        assert_eq!(packets, 26, "{query}: 5000 / 196 per packet");
    }
    let (list, pages) = valve_list(master, &client, 0xFF, "");
    assert!(
        list.is_empty() && pages == 1,
        "DP servers are not on the Valve list"
    );
    let r = e.stop().unwrap();
    assert!(r.engine.gso_sends > 0, "a 26-packet reply goes out by GSO");
}

#[test]
fn a_list_larger_than_the_default_buffer_arrives_whole_because_it_is_paced() {
    // More list bytes than a default receive buffer holds: sent all at once, the kernel would
    // drop the excess before the client reads it. Paced (96 KiB, then 4 MiB/s) it all arrives.
    let rmem = rmem_default();
    let n = (rmem * 5 / 4) / 7;
    let e = engine(2, |f| f.max_servers_per_ip = 10_000);
    let master = e.local_addrs()[0];
    let mut want = HashSet::new();
    // Registered in batches so the test needs few open sockets at once.
    for batch in 0..n.div_ceil(2000) {
        let count = 2000.min(n - batch * 2000);
        let servers = sockets(50 + batch as u8, 8, count);
        assert_eq!(
            dp_register(master, &servers, "DarkPlaces", NEXUIZ_INFO).answered,
            count
        );
        want.extend(addrs(&servers));
    }
    every_core_lists(&e, 0, n);
    let client = socket(Ipv4Addr::new(127, 0, 49, 1));
    let (list, packets) = dp_list(master, &client, "getservers Nexuiz 3 empty full");
    assert!(
        packets * 1394 > rmem,
        "the test list must exceed the buffer"
    );
    assert_eq!(set(list), want);
    let r = e.stop().unwrap();
    // The one list asked for (readiness came from the cores' status, not from queries).
    assert_eq!(r.shard.paced, 1, "the reply beyond the window was paced");
    assert_eq!(r.shard.dropped(DropReason::TxFull), 0);
}

/// Sends `datagrams` from `s` to `to` with `sendmmsg`, 64 per call (a burst the master receives
/// faster than it wakes up).
fn burst(s: &std::net::UdpSocket, to: SocketAddr, datagrams: &[Vec<u8>]) {
    use std::os::fd::AsRawFd;
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 only")
    };
    // SAFETY: plain data for the kernel; every pointer below outlives the call that reads it.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_port = to.port().to_be();
    sin.sin_addr.s_addr = u32::from_ne_bytes(to.ip().octets());
    for chunk in datagrams.chunks(64) {
        let mut iov: Vec<libc::iovec> = chunk
            .iter()
            .map(|d| libc::iovec {
                iov_base: d.as_ptr().cast_mut().cast(),
                iov_len: d.len(),
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: as above.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (&raw mut sin).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: the headers point at `iov`, `sin` and the datagrams, alive for the call.
        let n = unsafe { libc::sendmmsg(s.as_raw_fd(), hdrs.as_mut_ptr(), hdrs.len() as u32, 0) };
        assert_eq!(n, hdrs.len() as i32, "sendmmsg");
    }
}

#[test]
fn receives_and_replies_go_in_batches() {
    let e = engine(2, |_| {});
    let master = e.local_addrs()[0];
    // 1,280 DP heartbeats from 20 sources (64 each: a source's challenge budget), each source's
    // in one sendmmsg burst: one challenge each, read many at a time (recvmmsg) and sent many at a
    // time (sendmmsg).
    let hb = [OOB, b"heartbeat DarkPlaces\n"].concat();
    let all: Vec<Vec<u8>> = (0..64).map(|_| hb.clone()).collect();
    let sources = sockets(80, 20, 20);
    for s in &sources {
        burst(s, master, &all);
    }
    let mut buf = [0u8; 64];
    for (k, s) in sources.iter().enumerate() {
        for i in 0..64 {
            let n = recv_from_master(s, master, &mut buf)
                .unwrap_or_else(|| panic!("source {k}, challenge {i}"));
            assert!(buf[..n].starts_with(b"\xFF\xFF\xFF\xFFgetinfo "));
        }
    }
    let r = e.stop().unwrap();
    assert_eq!(r.shard.challenges_sent, 1280);
    assert_eq!(r.engine.datagrams_received, 1280);
    assert!(
        r.engine.recv_calls < r.engine.datagrams_received,
        "batched receives: {} calls for {} datagrams",
        r.engine.recv_calls,
        r.engine.datagrams_received
    );
    assert!(
        r.engine.send_calls < r.engine.datagrams_sent,
        "batched sends: {} calls for {} datagrams",
        r.engine.send_calls,
        r.engine.datagrams_sent
    );
}

/// Sends `datagram` from each socket in turn, `rounds` times, one every `gap` at most (never
/// catching up after a stall): a steady stream the master wakes up for, not a burst.
fn paced(
    socks: &[std::net::UdpSocket],
    to: SocketAddr,
    datagram: &[u8],
    rounds: usize,
    gap: Duration,
) {
    let mut last = std::time::Instant::now();
    for _ in 0..rounds {
        for s in socks {
            while last.elapsed() < gap {
                std::hint::spin_loop();
            }
            last = std::time::Instant::now();
            s.send_to(datagram, to).unwrap();
        }
    }
}

#[test]
fn a_core_naps_to_gather_a_storm_of_heartbeats_never_after_a_query() {
    // Default [sockets] coalesce_us (250 µs): a nap is taken when the last wake-up's rate says it
    // gathers at least two datagrams and not more than a batch, and no client datagram came.
    // 2,000 list queries from 40 clients, one every 30 µs at most (~33,000 a second): never a nap.
    let e = engine(2, |_| {});
    let master = e.local_addrs()[0];
    let clients = sockets(95, 40, 40);
    paced(
        &clients,
        master,
        b"1\xff0.0.0.0:0\0\0",
        50,
        Duration::from_micros(30),
    );
    let read = || -> u64 {
        e.status()
            .iter()
            .flatten()
            .map(|s| s.engine.datagrams_received)
            .sum()
    };
    assert!(
        eventually(|| read() >= 2000),
        "every query was read: {}",
        read()
    );
    let r = e.stop().unwrap();
    assert_eq!(r.engine.datagrams_received, 2000);
    assert_eq!(
        r.engine.naps, 0,
        "a client's query is never followed by a nap"
    );
    // The same stream of DP heartbeats from 40 game servers: the cores nap, every heartbeat still
    // gets its challenge.
    let e = engine(2, |_| {});
    let master = e.local_addrs()[0];
    let servers = sockets(96, 40, 40);
    let hb = [OOB, b"heartbeat DarkPlaces\n"].concat();
    paced(&servers, master, &hb, 50, Duration::from_micros(30));
    let mut buf = [0u8; 64];
    for (k, s) in servers.iter().enumerate() {
        for i in 0..50 {
            let n = recv_from_master(s, master, &mut buf)
                .unwrap_or_else(|| panic!("server {k}, challenge {i}"));
            assert!(buf[..n].starts_with(b"\xFF\xFF\xFF\xFFgetinfo "));
        }
    }
    let r = e.stop().unwrap();
    assert_eq!(r.shard.challenges_sent, 2000);
    assert!(
        r.engine.naps > 0,
        "no nap under a storm of heartbeats: {:?}",
        r.engine
    );
    assert!(
        r.engine.recv_calls < r.engine.datagrams_received,
        "naps gather datagrams: {} reads for {}",
        r.engine.recv_calls,
        r.engine.datagrams_received
    );
}

#[test]
fn registrations_go_through_a_query_flood() {
    let e = engine(2, |f| f.max_servers_per_ip = 1000);
    let master = e.local_addrs()[0];
    // 2,000 Valve servers listed, so every query is answered with a full page by some budget.
    let listed = sockets(90, 8, 2000);
    assert_eq!(valve_register(master, &listed, "cstrike").answered, 2000);
    every_core_lists(&e, 2000, 0);
    drop(listed);
    // Flooders on both cores hammer the master with list queries (bounded: 10 s at most) from
    // before the first new game server registers until after the last has. Each counts its own
    // sends; the test reads those counts, so "the flood was running" is the flooders' word.
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let sent: Vec<std::sync::Arc<AtomicU64>> = (0..2)
        .map(|_| std::sync::Arc::new(AtomicU64::new(0)))
        .collect();
    let counts = || -> Vec<u64> { sent.iter().map(|s| s.load(Ordering::Relaxed)).collect() };
    let flooders: Vec<_> = clients_on_every_core(2, 91)
        .into_iter()
        .zip(sent.iter().cloned())
        .map(|(s, sent)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let q: Vec<Vec<u8>> = (0..64).map(|_| b"1\xff0.0.0.0:0\0\0".to_vec()).collect();
                let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < end {
                    burst(&s, master, &q);
                    sent.fetch_add(64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    assert!(
        eventually(|| counts().iter().all(|&n| n >= 2048)),
        "the flood started on both cores: {:?}",
        counts()
    );
    let before = counts();
    let servers = sockets(92, 16, 400);
    let hs = valve_register(master, &servers, "tf");
    let after = counts();
    // Each flooder sent during the registrations, and is still sending after the last one: a
    // flooder that ran out of time (or died) before then never counts past `after`.
    let still_running = eventually(|| counts().iter().zip(&after).all(|(now, then)| now > then));
    stop.store(true, Ordering::Relaxed);
    for t in flooders {
        t.join().unwrap();
    }
    assert!(
        before.iter().zip(&after).all(|(b, a)| a > b),
        "every flooder sent while servers registered: {before:?} then {after:?}"
    );
    assert!(
        still_running,
        "the flood was still running when the last server registered: {after:?} then {:?}",
        counts()
    );
    assert_eq!(hs.answered, 400, "every new server got its challenge");
    every_core_lists(&e, 2400, 0);
    let r = e.stop().unwrap();
    assert_eq!(r.shard.registered, 2400);
    assert!(r.shard.valve_queries + r.shard.dropped_total() > 4096);
    // When the cores found their queues backing up, queries were shed, never registrations.
    if r.engine.saturated_batches > 0 {
        assert!(r.shard.dropped(DropReason::Shed) > 0);
    }
}

/// Set by the test below; the housekeeping hook panics on core 1 while it is.
static PANIC_CORE1: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn panics_on_core1(_: bool) {
    if PANIC_CORE1.load(std::sync::atomic::Ordering::Relaxed)
        && std::thread::current().name() == Some("muster-core1")
    {
        panic!("injected fault on core 1");
    }
}

#[test]
fn a_core_that_panics_stops_the_engine_with_an_error() {
    let mut s = muster::config::File::defaults();
    s.apply(&muster::config::Overrides {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        cores: Some(2),
        ..Default::default()
    });
    let mut settings = s
        .settings(muster::engine::sys::allowed_cpus().len(), [1; 16])
        .unwrap();
    settings.housekeeping = Some(panics_on_core1);
    let e = muster::engine::start(settings).unwrap();
    PANIC_CORE1.store(true, std::sync::atomic::Ordering::Relaxed);
    // The engine is never told to stop: the dead core must end it. Bounded by a watcher thread.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(e.join().map(|_| ()).map_err(|e| e.to_string())));
    let r = rx
        .recv_timeout(PATIENCE)
        .expect("the engine ended on its own");
    PANIC_CORE1.store(false, std::sync::atomic::Ordering::Relaxed);
    let why = r.expect_err("a panicked core is an error");
    assert!(
        why.contains("core 1") && why.contains("injected fault on core 1"),
        "{why}"
    );
}

/// Every core's report taken after this call began (reports queued while nobody read are older:
/// they are drained first), as (the master's clock in ms, bytes admitted to unproven addresses
/// by every core).
fn fresh(e: &muster::engine::Engine) -> (u64, u64) {
    let stale = e
        .status()
        .iter()
        .flatten()
        .map(|s| s.at_ms)
        .max()
        .unwrap_or(0);
    let mut now = (0, 0);
    assert!(eventually(|| {
        let st = e.status();
        let all: Vec<_> = st.iter().flatten().collect();
        now = (
            all.iter().map(|s| s.at_ms).max().unwrap_or(0),
            all.iter().map(|s| s.counters.unproven_bytes).sum(),
        );
        all.len() == st.len() && all.iter().all(|s| s.at_ms > stale)
    }));
    now
}

/// Reads whatever has arrived on `socks` (non-blocking); the bytes.
fn drain_all(socks: &[std::net::UdpSocket]) -> u64 {
    let mut buf = [0u8; 2048];
    let mut got = 0u64;
    for s in socks {
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            got += n as u64;
        }
    }
    got
}

#[test]
fn one_budget_for_unproven_replies_holds_across_cores_and_a_returning_client_still_lists() {
    // A small master-wide budget (64 KiB, then 64 KiB/s), so a short flood meets it.
    let e = engine(2, |f| {
        f.admission.unproven.reply_burst_kib = 64;
        f.admission.unproven.reply_kib_per_sec = 64;
    });
    let master = e.local_addrs()[0];
    let servers = sockets(60, 20, 600);
    let query = "getservers Nexuiz 3 empty full";
    assert_eq!(
        dp_register(master, &servers, "DarkPlaces", NEXUIZ_INFO).answered,
        600
    );
    every_core_lists(&e, 0, 600);
    // A player lists once before the flood (its list: 600 × 7 bytes in a few packets).
    let player = socket(Ipv4Addr::new(127, 0, 61, 9));
    assert_eq!(set(dp_list(master, &player, query).0), addrs(&servers));
    let (_, before) = fresh(&e);
    // The smart flood: 1,000 sources, each in its own /24 (127.100–103.c.1), each asking twice,
    // below every per-source and per-network rate: 2,000 queries over about four seconds.
    let flood: Vec<std::net::UdpSocket> = (0..1000u32)
        .map(|i| {
            let s = socket(Ipv4Addr::new(
                127,
                100 + (i / 256) as u8,
                (i % 256) as u8,
                1,
            ));
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let (t0, _) = fresh(&e);
    let q = [OOB, query.as_bytes()].concat();
    let mut received = 0u64;
    let mut sent = 0u64;
    for round in 0..2 {
        for (i, s) in flood.iter().enumerate() {
            let _ = s.send_to(&q, master);
            sent += q.len() as u64;
            if i % 250 == 249 {
                // 500 queries a second: pace, and read what came back meanwhile.
                std::thread::sleep(std::time::Duration::from_millis(500));
                received += drain_all(&flood);
            }
        }
        if round == 0 {
            // Mid-flood, the returning player still gets its whole list.
            assert_eq!(set(dp_list(master, &player, query).0), addrs(&servers));
        }
    }
    // Everything the cores admitted has arrived once the sockets hold it all (the player's lists
    // were admitted too: two of them).
    let list = 600 * 7 + 3 * 64;
    assert!(
        eventually(|| {
            received += drain_all(&flood);
            received + 2 * 4_500 >= fresh(&e).1 - before
        }),
        "received {received}, admitted {}",
        fresh(&e).1 - before
    );
    let (t1, admitted) = fresh(&e);
    let admitted = admitted - before;
    // The bound, on the master's own clock: the burst, the rate over the flood, one reply more.
    let bound = 64 * 1024 + 64 * 1024 * (t1 - t0 + 1000) / 1000 + list;
    assert!(
        received <= bound,
        "{received} bytes to the flood, bound {bound}"
    );
    assert!(admitted <= bound + 2 * list, "{admitted}");
    // dpmaster would have sent 2,000 lists: ~8.4 MB for {sent} bytes in.
    assert!(received < 2000 * 4_000 / 10, "{received} for {sent} sent");
    let r = e.stop().unwrap();
    assert!(r.shard.dropped(DropReason::UnprovenBytes) > 0);
}

#[test]
fn valve_pages_to_an_unproven_walk_hold_three_times_the_query_until_its_proof() {
    let e = engine(2, |_| {});
    let master = e.local_addrs()[0];
    let servers = sockets(62, 8, 240);
    assert_eq!(valve_register(master, &servers, "cstrike").answered, 240);
    every_core_lists(&e, 240, 0);
    let mut buf = [0u8; 2048];
    let ask = |s: &std::net::UdpSocket, seed: &str, buf: &mut [u8]| -> (usize, usize) {
        let q = [&[0x31, 0xFF][..], seed.as_bytes(), b"\0\0"].concat();
        s.send_to(&q, master).unwrap();
        (q.len(), recv_from_master(s, master, buf).expect("a page"))
    };
    // A spoofer's victim: its first page, then guessed continuations (none is its page's end:
    // the guesses are addresses nobody listed). Every reply holds at most 3× its query.
    let victim = socket(Ipv4Addr::new(127, 0, 63, 1));
    let (mut sent, mut got) = ask(&victim, "0.0.0.0:0", &mut buf);
    assert_eq!(
        got,
        6 + 5 * 6,
        "a bare 13-byte first page: the header and 5 entries"
    );
    for i in 0..9 {
        let (s, g) = ask(&victim, &format!("127.0.62.{}:{}", 1 + i, 1 + i), &mut buf);
        assert!(g <= 3 * s, "{g} bytes for a {s}-byte query");
        sent += s;
        got += g;
    }
    assert!(got <= 3 * sent);
    // A real client proves its walk with its first page's last entry and gets full pages.
    let client = socket(Ipv4Addr::new(127, 0, 63, 2));
    let (all, pages) = valve_list(master, &client, 0xFF, "");
    assert_eq!(set(all), addrs(&servers));
    assert_eq!(
        pages, 3,
        "5 entries, then 231, then the last 4 and the terminator"
    );
    let r = e.stop().unwrap();
    assert_eq!(
        r.shard.walk_proofs, 1,
        "only the real client proved its walk"
    );
    // The first guess continued the victim's walk from no page end: counted (and the source
    // barred). A guess that drew the walk's final page ended the walk; later ones continue
    // nothing (where the walk started is random, so how many is not fixed).
    assert!(r.shard.wrong_continuations >= 1);
}

/// A master on one core with the fresh secret `fresh`, and `challenge_secret_file` if given.
fn master_with_secret(fresh: [u8; 16], file: Option<&std::path::Path>) -> muster::engine::Engine {
    let mut f = muster::config::File::defaults();
    f.apply(&muster::config::Overrides {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        cores: Some(1),
        allow_private: true,
        list_refresh_ms: Some(100),
        no_probes: true,
        challenge_secret_file: file.map(|p| p.display().to_string()),
        ..Default::default()
    });
    let s = f
        .settings(muster::engine::sys::allowed_cpus().len(), fresh)
        .unwrap();
    muster::engine::start(s).unwrap()
}

#[test]
fn two_masters_sharing_a_challenge_secret_accept_each_others_handshakes() {
    let dir = std::env::temp_dir().join(format!("muster-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("challenge.key");
    std::fs::write(&key, format!("{}\n", "5a".repeat(32))).unwrap();
    // Different fresh secrets: only the file can make them agree.
    let a = master_with_secret([1; 16], Some(&key));
    let b = master_with_secret([2; 16], Some(&key));
    let c = master_with_secret([3; 16], None);
    let server = socket(Ipv4Addr::new(127, 0, 120, 1));
    let mut buf = [0u8; 64];
    // The game server's `q` reaches A; its heartbeat reaches B (an anycast route changed) and C.
    server.send_to(b"q", a.local_addrs()[0]).unwrap();
    let n = recv_from_master(&server, a.local_addrs()[0], &mut buf).expect("A's challenge");
    let challenge = u32::from_le_bytes(buf[6..10].try_into().unwrap());
    assert_eq!(n, 10);
    let hb = format!("0\n{}", valve_info("cstrike", "de_dust2", challenge));
    server.send_to(hb.as_bytes(), b.local_addrs()[0]).unwrap();
    server.send_to(hb.as_bytes(), c.local_addrs()[0]).unwrap();
    every_core_lists(&b, 1, 0);
    let bad = |e: &muster::engine::Engine| {
        e.status()
            .into_iter()
            .flatten()
            .map(|s| s.counters.dropped(DropReason::BadChallenge))
            .sum::<u64>()
    };
    assert!(
        eventually(|| bad(&c) == 1),
        "C, with its own secret, refuses it"
    );
    every_core_lists(&c, 0, 0);
    assert_eq!(bad(&b), 0);
    // A file that is not 64 hex digits is refused at start, in one line.
    std::fs::write(&key, "not a key").unwrap();
    let mut f = muster::config::File::defaults();
    f.challenge_secret_file = key.display().to_string();
    let e = f.settings(1, [0; 16]).unwrap_err().to_string();
    assert!(e.contains("64 hex digits"), "{e}");
    for e in [a, b, c] {
        e.stop().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
