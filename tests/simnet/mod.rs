//! The simulated network and master shards shared by the simulation tests (`tests/sim.rs`,
//! `tests/sim_admission.rs`): a virtual clock, a seeded RNG, a network that loses and reorders
//! datagrams, game servers speaking both handshakes, list clients, and shards steered and
//! synchronised as the engine does. Nothing here touches a socket or a clock.

#![allow(dead_code)]

use muster::master::Budget;
use muster::master::DropReason;
use muster::master::Limits;
use muster::master::ListBuilder;
use muster::master::Unproven;
use muster::master::steer::shard_for;
use muster::master::{Config, Master, Time};
use muster::wire::dp_server::{GetInfo, Heartbeat as DpHeartbeat, InfoResponse};
use muster::wire::valve_heartbeat::{ChallengeReply, Heartbeat, HeartbeatEnd};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Publication period of shard snapshots, as the engine's default `list-refresh`.
pub const REFRESH_MS: u64 = 250;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Valve,
    /// A DP server with the index of its heartbeat tag (0 DarkPlaces/Xonotic, 1 QuakeArena-1).
    Dp(u8),
}

pub struct GameServer {
    pub addr: SocketAddr,
    pub kind: Kind,
    pub players: u8,
    pub map: &'static str,
    /// Stops heartbeating at this time (leaves the list at the timeout after).
    pub leaves_at: Time,
    pub interval_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum To {
    Master,
    Server(usize),
    Client(SocketAddr),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    Deliver {
        from: SocketAddr,
        to: To,
        bytes: Vec<u8>,
    },
    /// A game server starts a handshake.
    Announce(usize),
    /// A shard's paced replies come due.
    Flush(usize),
}

pub struct Sim {
    /// The list builder (the engine runs it on its own thread; here it runs at each refresh).
    pub builder: ListBuilder,
    pub now: Time,
    pub rng: StdRng,
    pub loss: f64,
    pub max_latency_ms: u64,
    pub queue: BinaryHeap<Reverse<(Time, u64, Event)>>,
    pub seq: u64,
    pub masters: Vec<Master>,
    pub servers: Vec<GameServer>,
    pub by_addr: HashMap<SocketAddr, usize>,
    /// Datagrams delivered to clients, in arrival order, with the address they reached.
    pub client_inbox: Vec<Vec<u8>>,
    pub inbox_by_client: HashMap<SocketAddr, Vec<Vec<u8>>>,
    /// Bytes the masters sent to each client address (counted as sent, before any loss).
    pub sent_to: HashMap<SocketAddr, u64>,
    pub next_refresh: Time,
}

pub const SECRET: [u8; 16] = *b"simulation-key!!";

impl Sim {
    pub fn new(seed: u64, shards: usize, limits: Limits, loss: f64) -> Self {
        let config = Config {
            limits,
            ..Config::with_secret(SECRET)
        };
        Self::with_config(seed, shards, config, loss)
    }

    /// A simulation whose shards run `config` (sharing one table budget, as the engine's cores).
    pub fn with_config(seed: u64, shards: usize, mut config: Config, loss: f64) -> Self {
        if config.budget.is_none() {
            config.budget = Some(Budget::shared(config.limits.max_servers, shards));
        }
        // One master-wide budget for unproven replies, as the engine's cores share.
        if config.unproven.is_none() {
            config.unproven = Some(Unproven::new(shards));
        }
        Self {
            builder: ListBuilder::new(shards, config.max_dp_packet),
            now: Time::from_secs(1),
            rng: StdRng::seed_from_u64(seed),
            loss,
            max_latency_ms: 40,
            queue: BinaryHeap::new(),
            seq: 0,
            masters: (0..shards)
                .map(|i| Master::new(Time::from_secs(1), config.clone(), i, shards))
                .collect(),
            servers: Vec::new(),
            by_addr: HashMap::new(),
            client_inbox: Vec::new(),
            inbox_by_client: HashMap::new(),
            sent_to: HashMap::new(),
            next_refresh: Time::from_secs(1),
        }
    }

    pub fn schedule(&mut self, at: Time, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, e)));
    }

    /// A datagram from `from` reaches the master at `at` (no loss: attack traffic and clients
    /// under test).
    pub fn inject(&mut self, at: Time, from: SocketAddr, bytes: Vec<u8>) {
        self.schedule(
            at,
            Event::Deliver {
                from,
                to: To::Master,
                bytes,
            },
        );
    }

    /// Bytes the masters sent to addresses matching `f`.
    pub fn bytes_to(&self, f: impl Fn(&SocketAddr) -> bool) -> u64 {
        self.sent_to
            .iter()
            .filter(|(a, _)| f(a))
            .map(|(_, b)| b)
            .sum()
    }

    /// Sends a datagram through the lossy, reordering network.
    pub fn send(&mut self, from: SocketAddr, to: To, bytes: Vec<u8>) {
        if self.rng.random_bool(self.loss) {
            return;
        }
        let latency = self.rng.random_range(1..=self.max_latency_ms);
        self.schedule(
            self.now.plus_millis(latency),
            Event::Deliver { from, to, bytes },
        );
    }

    /// The shard the engine's steering program sends a source to (the same function).
    pub fn shard_of(&self, from: SocketAddr) -> usize {
        shard_for(from.ip(), self.masters.len())
    }

    pub fn add_server(&mut self, s: GameServer, first_at: Time) -> usize {
        let i = self.servers.len();
        self.by_addr.insert(s.addr, i);
        self.servers.push(s);
        self.schedule(first_at, Event::Announce(i));
        i
    }

    /// Runs every event up to `until`, with the engine's periodic duties on the way.
    pub fn run_until(&mut self, until: Time) {
        loop {
            let next_event = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let next = match next_event {
                Some(t) if t <= until && t <= self.next_refresh => t,
                _ if self.next_refresh <= until => {
                    self.now = self.next_refresh;
                    self.refresh();
                    continue;
                }
                Some(t) if t <= until => t,
                _ => break,
            };
            self.now = next;
            let Some(Reverse((_, _, e))) = self.queue.pop() else {
                break;
            };
            self.dispatch(e);
        }
        self.now = until;
    }

    /// Expiry, publication and merge, as each core's timers do.
    pub fn refresh(&mut self) {
        let now = self.now;
        for (i, m) in self.masters.iter_mut().enumerate() {
            while !m.tick(now, 10_000) {}
            if let Some(s) = m.publish() {
                self.builder.apply(i, s);
            }
        }
        if let Some(list) = self.builder.build() {
            for m in &mut self.masters {
                m.install_list(list.clone());
            }
        }
        self.next_refresh = now.plus_millis(REFRESH_MS);
    }

    pub fn dispatch(&mut self, e: Event) {
        match e {
            Event::Announce(i) => {
                let s = &self.servers[i];
                if self.now >= s.leaves_at {
                    return;
                }
                let (addr, kind, interval) = (s.addr, s.kind, s.interval_ms);
                let bytes = match kind {
                    Kind::Valve => b"q".to_vec(),
                    Kind::Dp(tag) => {
                        let mut v = Vec::new();
                        let tag: &[u8] = if tag == 0 {
                            b"DarkPlaces"
                        } else {
                            b"QuakeArena-1"
                        };
                        DpHeartbeat { tag, newline: true }.encode(&mut v).unwrap();
                        v
                    }
                };
                self.send(addr, To::Master, bytes);
                let jitter = self.rng.random_range(0..1000);
                self.schedule(self.now.plus_millis(interval + jitter), Event::Announce(i));
            }
            Event::Deliver {
                from,
                to: To::Master,
                bytes,
            } => {
                let shard = self.shard_of(from);
                let _ = self.masters[shard].handle(self.now, from, 0, &bytes);
                self.flush(shard);
            }
            Event::Flush(shard) => self.flush(shard),
            Event::Deliver {
                to: To::Server(i),
                bytes,
                ..
            } => self.server_receives(i, &bytes),
            Event::Deliver {
                to: To::Client(at),
                bytes,
                ..
            } => {
                self.inbox_by_client
                    .entry(at)
                    .or_default()
                    .push(bytes.clone());
                self.client_inbox.push(bytes);
            }
        }
    }

    /// Sends what shard `shard` has due now, and schedules its next paced packets.
    pub fn flush(&mut self, shard: usize) {
        let now = self.now;
        for t in self.masters[shard].transmits(now) {
            let to = match self.by_addr.get(&t.to) {
                Some(&i) => To::Server(i),
                None => {
                    *self.sent_to.entry(t.to).or_default() += t.payload.len() as u64;
                    To::Client(t.to)
                }
            };
            for d in t.datagrams() {
                self.send(SocketAddr::from(([0, 0, 0, 0], 0)), to.clone(), d);
            }
        }
        if let Some(due) = self.masters[shard].poll_timeout() {
            self.schedule(due.max(now.plus_millis(1)), Event::Flush(shard));
        }
    }

    /// A game server answers the master's challenge.
    pub fn server_receives(&mut self, i: usize, bytes: &[u8]) {
        let s = &self.servers[i];
        let (addr, players, map) = (s.addr, s.players.to_string(), s.map);
        let mut reply = Vec::new();
        match s.kind {
            Kind::Valve => {
                let Ok(c) = ChallengeReply::decode(bytes) else {
                    return;
                };
                // Source prints the challenge signed.
                let ch = (c.challenge as i32).to_string();
                let pairs: [(&[u8], &[u8]); 8] = [
                    (b"protocol", b"7"),
                    (b"challenge", ch.as_bytes()),
                    (b"players", players.as_bytes()),
                    (b"max", b"16"),
                    (b"gamedir", b"cstrike"),
                    (b"map", map.as_bytes()),
                    (b"type", b"d"),
                    (b"os", b"l"),
                ];
                Heartbeat::encode(&mut reply, false, pairs, HeartbeatEnd::Newline).unwrap();
            }
            Kind::Dp(tag) => {
                let Ok(gi) = GetInfo::decode(bytes) else {
                    return;
                };
                let mut pairs: Vec<(&[u8], &[u8])> = vec![
                    (b"sv_maxclients", b"8"),
                    (b"clients", players.as_bytes()),
                    (b"mapname", map.as_bytes()),
                    (b"challenge", gi.challenge),
                ];
                if tag == 0 {
                    pairs.push((b"gamename", b"Xonotic"));
                    pairs.push((b"protocol", b"3"));
                } else {
                    pairs.push((b"protocol", b"71"));
                }
                InfoResponse::encode(&mut reply, pairs).unwrap();
            }
        }
        self.send(addr, To::Master, reply);
    }

    /// Every address listed by shard 0's merged list.
    pub fn listed(&self) -> BTreeSet<SocketAddr> {
        self.masters[0].list().addrs().map(|k| k.addr()).collect()
    }

    pub fn dropped_total(&self) -> u64 {
        self.masters
            .iter()
            .map(|m| m.counters().dropped_total())
            .sum()
    }

    pub fn dropped(&self, why: DropReason) -> u64 {
        self.masters.iter().map(|m| m.counters().dropped(why)).sum()
    }
}

/// A Valve list query from `seed` with `filter`, every region.
pub fn valve_query(seed: SocketAddrV4, filter: &[u8]) -> Vec<u8> {
    let mut q = Vec::new();
    muster::wire::valve_list::ListQuery {
        region: muster::wire::valve_list::Region::All,
        seed,
        filter,
        well_formed: true,
    }
    .encode(&mut q)
    .unwrap();
    q
}

/// Walks the whole Valve list for `filter` on one master directly (no network): the first page,
/// then continuations from each page's last entry until the final page. Returns every server
/// seen, in the order seen, and the pages it took.
pub fn walk_master(
    m: &mut Master,
    now: Time,
    client: SocketAddr,
    filter: &[u8],
) -> (Vec<SocketAddrV4>, usize) {
    let mut seed = muster::wire::valve_list::NULL_ADDR;
    let mut seen = Vec::new();
    for pages in 1..10_000 {
        m.handle(now, client, 0, &valve_query(seed, filter))
            .unwrap();
        let page = m
            .transmits(now)
            .into_iter()
            .find(|t| t.to == client)
            .expect("a page for the client")
            .datagrams()
            .remove(0);
        let page = muster::wire::valve_list::ListPage::decode(&page).unwrap();
        seen.extend(page.servers());
        if page.is_final() {
            return (seen, pages);
        }
        seed = page.next_seed().unwrap();
    }
    panic!("the walk did not end");
}

pub fn v4(i: u32) -> SocketAddr {
    // Many hosts: 20.x.y.z, two ports per host.
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(0x1400_0000 + i / 2),
        27015 + (i % 2) as u16,
    ))
}

pub fn limits(timeout_ms: u64) -> Limits {
    Limits {
        server_timeout_ms: timeout_ms,
        max_servers: 1_000_000,
        max_servers_per_ip: 32,
        max_servers_per_net: u16::MAX,
        allow_private: false,
    }
}

pub fn fleet(sim: &mut Sim, n: u32, leaves_at: Time, interval_ms: u64) {
    for i in 0..n {
        let kind = match i % 4 {
            0 | 1 => Kind::Valve,
            2 => Kind::Dp(0),
            _ => Kind::Dp(1),
        };
        let first = sim.now.plus_millis(sim.rng.random_range(0..2000));
        sim.add_server(
            GameServer {
                addr: v4(i),
                kind,
                players: (i % 9) as u8,
                map: if i % 3 == 0 { "de_dust" } else { "cs_office" },
                leaves_at,
                interval_ms,
            },
            first,
        );
    }
}
