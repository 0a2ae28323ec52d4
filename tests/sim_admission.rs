//! Admission control in the deterministic simulation: every rule driven through `Master::handle`
//! on shards steered as the engine steers them, with a virtual clock — bursts and refill, the
//! fine that silences a flooding source, trusted networks, validation (a registered address, a
//! Valve continuation from the exact end of the page sent), the network and core aggregates, the
//! bounded state under a million spoofed sources, and the reflection goal itself (a spoofed flood
//! earns nothing once its first bursts are spent, while fresh clients still get whole lists).

mod simnet;

use muster::master::counters::Drop;
use muster::master::{Config, Time};
use muster::wire::dp_list::ListResponse;
use muster::wire::valve_list::{ListPage, NULL_ADDR};
use simnet::*;
use std::net::{Ipv4Addr, SocketAddr};

const DP_QUERY: &[u8] = b"\xFF\xFF\xFF\xFFgetservers Xonotic 3 empty full";

fn config(tweak: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config {
        limits: limits(900_000),
        ..Config::with_secret(SECRET)
    };
    tweak(&mut c);
    c
}

/// A sim with `n` servers registered (half Valve, a quarter Xonotic, a quarter Quake III).
fn listed(seed: u64, n: u32, c: Config) -> Sim {
    let mut sim = Sim::with_config(seed, 2, c, 0.0);
    fleet(&mut sim, n, Time::from_secs(1_000_000), 600_000);
    sim.run_until(Time::from_secs(5));
    assert_eq!(sim.listed().len(), n as usize);
    sim
}

/// Asks for a whole DP list from `client` at `at`; the entries that came back (whole list or not).
fn dp_entries(sim: &mut Sim, client: SocketAddr, at: Time) -> (usize, bool) {
    sim.inbox_by_client.remove(&client);
    sim.inject(at, client, DP_QUERY.to_vec());
    sim.run_until(at.plus_secs(2));
    let got = sim.inbox_by_client.remove(&client).unwrap_or_default();
    let entries = got
        .iter()
        .map(|d| ListResponse::decode(d).unwrap().servers().count())
        .sum();
    // The network reorders: the EOT packet need not arrive last.
    let eot = got.iter().any(|d| ListResponse::decode(d).unwrap().eot);
    (entries, eot)
}

/// Pages through the Valve list from `client` (each page asked when the last arrived);
/// returns the servers seen, or `None` if a page never came.
fn valve_walk(sim: &mut Sim, client: SocketAddr) -> Option<usize> {
    let mut seed = NULL_ADDR;
    let mut seen = 0;
    for _ in 0..1000 {
        sim.inbox_by_client.remove(&client);
        let at = sim.now.plus_millis(1);
        sim.inject(at, client, valve_query(seed, b""));
        sim.run_until(at.plus_millis(200));
        let page = sim.inbox_by_client.remove(&client)?.pop()?;
        let page = ListPage::decode(&page).unwrap();
        seen += page.servers().count();
        if page.is_final() {
            return Some(seen);
        }
        seed = page.next_seed().unwrap();
    }
    None
}

#[test]
fn a_spoofed_query_flood_earns_nothing_once_its_bursts_are_spent() {
    // The flood, scaled to the simulation: 2,000 Xonotic + 4,000 Valve servers listed;
    // 256 spoofed sources over two /24s send 5,000 list queries a second for 15 s, each
    // alternating a Valve first page and the whole DP list.
    let mut sim = listed(1, 8000, config(|_| {}));
    let start = sim.now;
    let victims: Vec<SocketAddr> = (0..256u32)
        .map(|i| SocketAddr::from(([9, 9, (i / 254) as u8, (i % 254 + 1) as u8], 27005)))
        .collect();
    let valve_q = valve_query(NULL_ADDR, b"");
    let mut sent = [0u64; 2]; // before and from second 5
    for k in 0..75_000u64 {
        let at = start.plus_millis(k / 5);
        let from = victims[(k % 256) as usize];
        let q = if (k / 256 + k) % 2 == 0 {
            valve_q.clone()
        } else {
            DP_QUERY.to_vec()
        };
        sent[usize::from(k >= 25_000)] += q.len() as u64;
        sim.inject(at, from, q);
    }
    let is_victim = |a: &SocketAddr| a.ip().to_string().starts_with("9.9.");
    sim.run_until(start.plus_secs(5));
    let early = sim.bytes_to(is_victim);
    // A fresh client in the middle of the flood gets the whole list.
    let (entries, eot) = dp_entries(
        &mut sim,
        "198.51.100.1:5000".parse().unwrap(),
        start.plus_secs(6),
    );
    assert_eq!(
        (entries, eot),
        (2000, true),
        "a fresh DP client during the flood"
    );
    sim.run_until(start.plus_secs(16));
    let total = sim.bytes_to(is_victim);
    let baf = total as f64 / (sent[0] + sent[1]) as f64;
    let baf_late = (total - early) as f64 / sent[1] as f64;
    assert!(baf <= 15.0, "BAF over the run {baf:.2}");
    assert!(baf_late <= 1.0, "BAF from second 5 {baf_late:.2}");
    let refused: u64 = [
        Drop::SourceQueries,
        Drop::SourceBytes,
        Drop::NetworkBytes,
        Drop::NetworkQueries,
    ]
    .iter()
    .map(|d| sim.dropped(*d))
    .sum();
    assert!(
        refused > 70_000,
        "{refused} refusals, each counted by reason"
    );
    // A fresh Valve client pages the whole Valve list after the flood.
    let seen = valve_walk(&mut sim, "198.51.100.2:5000".parse().unwrap());
    assert_eq!(seen, Some(4000));
}

#[test]
fn a_human_pace_is_always_answered_and_a_fast_client_recovers_after_the_refill() {
    let mut sim = listed(2, 800, config(|_| {}));
    let human: SocketAddr = "198.51.100.10:5000".parse().unwrap();
    for m in 0..30u64 {
        let at = sim.now.plus_secs(30);
        assert_eq!(dp_entries(&mut sim, human, at), (200, true), "query {m}");
    }
    // Thirty at once: the burst of 10 is answered, the rest refused (and counted).
    let fast: SocketAddr = "198.51.100.11:5000".parse().unwrap();
    let at = sim.now.plus_secs(1);
    let before = sim.dropped(Drop::SourceQueries);
    for i in 0..30 {
        sim.inject(at.plus_millis(i), fast, DP_QUERY.to_vec());
    }
    sim.run_until(at.plus_secs(1));
    assert_eq!(sim.dropped(Drop::SourceQueries) - before, 20);
    // A minute later it is answered again.
    let later = sim.now.plus_secs(60);
    assert_eq!(dp_entries(&mut sim, fast, later), (200, true));
}

#[test]
fn trusted_networks_are_never_limited() {
    let c = config(|c| c.admission.trusted = vec!["198.18.0.0/15".parse().unwrap()]);
    let mut sim = listed(3, 800, c);
    let site: SocketAddr = "198.18.7.7:4000".parse().unwrap();
    let at = sim.now.plus_secs(1);
    for i in 0..2000 {
        sim.inject(at.plus_millis(i), site, DP_QUERY.to_vec());
    }
    sim.run_until(at.plus_secs(5));
    let lists = sim.inbox_by_client[&site]
        .iter()
        .filter(|d| ListResponse::decode(d).unwrap().eot)
        .count();
    assert_eq!(
        lists, 2000,
        "a server-list website crawling twice a millisecond"
    );
}

#[test]
fn proofs_validate_a_valve_pager_and_a_registered_address_but_not_a_guess() {
    let mut sim = listed(4, 20_000, config(|_| {}));
    // A fresh client pages all 10,000 Valve servers (50+ pages, far past the unvalidated burst of
    // 10 queries): each continuation carries the last address of the page it got — the proof.
    let client: SocketAddr = "198.51.100.20:5000".parse().unwrap();
    assert_eq!(valve_walk(&mut sim, client), Some(10_000));
    // A spoofer cannot: it never saw the pages, and page lengths vary per client, so its guessed
    // continuation seeds prove nothing; past its burst it is refused.
    let spoofed: SocketAddr = "198.51.100.21:5000".parse().unwrap();
    let before = sim.dropped(Drop::SourceQueries);
    let at = sim.now.plus_secs(1);
    for i in 0..60u32 {
        // Guess: the 231st address (a full page's last), and shorter pages' ends.
        let guess = match v4(2 * (231 - i)) {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!(),
        };
        sim.inject(
            at.plus_millis(u64::from(i)),
            spoofed,
            valve_query(guess, b""),
        );
    }
    sim.run_until(at.plus_secs(1));
    assert_eq!(
        sim.dropped(Drop::SourceQueries) - before,
        50,
        "10 answered, 50 refused"
    );
    // The address of a registered game server is validated: 60 DP queries in a second pass.
    let host_of_server = match v4(3) {
        SocketAddr::V4(a) => SocketAddr::from((*a.ip(), 5000)),
        SocketAddr::V6(_) => unreachable!(),
    };
    let before = sim.dropped_total();
    let at = sim.now.plus_secs(1);
    for i in 0..60 {
        sim.inject(at.plus_millis(i), host_of_server, DP_QUERY.to_vec());
    }
    sim.run_until(at.plus_secs(2));
    assert_eq!(
        sim.dropped_total(),
        before,
        "a validated source's burst is 64"
    );
}

#[test]
fn carpet_bombing_a_network_is_bounded_by_its_aggregate_and_many_networks_by_the_core() {
    let mut sim = listed(5, 8000, config(|_| {}));
    let list_bytes = {
        let at = sim.now.plus_secs(1);
        let (n, _) = dp_entries(&mut sim, "198.51.100.30:5000".parse().unwrap(), at);
        assert_eq!(n, 2000);
        sim.bytes_to(|a| a.port() == 5000 && a.ip() == Ipv4Addr::new(198, 51, 100, 30))
    };
    // Every address of one /24 asks once: the /24 gets its budget (64 queries, 1 MiB) and no more.
    let at = sim.now.plus_secs(1);
    for h in 1..=254u8 {
        sim.inject(
            at,
            SocketAddr::from(([203, 0, 113, h], 27005)),
            DP_QUERY.to_vec(),
        );
    }
    sim.run_until(at.plus_secs(2));
    let to_net = sim.bytes_to(|a| a.ip().to_string().starts_with("203.0.113."));
    // Each core keeps its own aggregate for the addresses it is steered.
    assert!(
        to_net <= 2 * (1024 * 1024 + list_bytes),
        "{to_net} bytes to one /24"
    );
    assert!(sim.dropped(Drop::NetworkQueries) + sim.dropped(Drop::NetworkBytes) > 0);
    // Spread over 2,000 networks, the cores' budgets (8 MiB each, 4 MiB/s) bound the total.
    let at = sim.now.plus_secs(1);
    for n in 0..2000u32 {
        let ip = Ipv4Addr::from(0x6400_0000 + (n << 8) + 1);
        sim.inject(at, SocketAddr::from((ip, 27005)), DP_QUERY.to_vec());
    }
    sim.run_until(at.plus_millis(500));
    let total = sim.bytes_to(|a| a.ip().to_string().starts_with("100."));
    let bound = 2 * (8 * 1024 * 1024 + 2 * 1024 * 1024 + list_bytes);
    assert!(
        total <= bound,
        "{total} bytes to 2,000 networks, bound {bound}"
    );
    assert!(sim.dropped(Drop::UnprovenBytes) > 0);
}

#[test]
fn a_million_spoofed_sources_leave_admission_state_constant() {
    let c = config(|c| {
        c.admission.max_sources = 8192;
        c.admission.max_prefixes = 2048;
    });
    let mut sim = listed(6, 400, c);
    let heap: Vec<usize> = sim
        .masters
        .iter()
        .map(|m| m.admission().heap_bytes())
        .collect();
    let start = sim.now;
    for i in 0..1_000_000u32 {
        let ip = Ipv4Addr::from(0x0A00_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761)));
        sim.inject(
            start.plus_millis(u64::from(i / 100)),
            SocketAddr::from((ip, 1)),
            DP_QUERY.to_vec(),
        );
    }
    sim.run_until(start.plus_secs(12));
    for (m, before) in sim.masters.iter().zip(heap) {
        let (sources, networks) = m.admission().tracked();
        assert!(sources <= 8192 && networks <= 2048, "{sources} {networks}");
        assert_eq!(m.admission().heap_bytes(), before, "no growth");
    }
    // And a fresh client still gets its list at the end.
    let at = sim.now.plus_secs(3);
    let (n, eot) = dp_entries(&mut sim, "198.51.100.40:5000".parse().unwrap(), at);
    assert_eq!((n, eot), (100, true));
}
