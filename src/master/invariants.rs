//! A byte-driven exerciser of [`Master`]: any byte string is read as a script of datagrams from a
//! handful of addresses, with time advancing, over two shards steered as the engine steers them;
//! after every step it checks the invariants the master promises. The cargo-fuzz target
//! `master_handle` runs it under libFuzzer; the unit tests below run it on random scripts.
//!
//! Built only for tests and with the `invariants` feature (the fuzz crate turns it on).
//!
//! Every byte string is a valid script (a missing byte reads as 0), so random input reaches deep
//! states: the script can answer the challenge the master really sent, as a game server would.
//! The challenge secret is a hash of the whole script, so a fuzzer that learns a valid challenge
//! from a comparison cannot replay it: any change to the input changes the secret.
//!
//! Invariants (a violation is an `Err` naming it):
//! - the shards hold at most `max_servers` together (one shared budget); every IPv4 address or
//!   IPv6 /64 at most `max_servers_per_ip` across all shards;
//! - a server sits only in the shard its address steers to;
//! - every listed server completed a handshake: its registration carried a challenge the master
//!   had sent to that address;
//! - after a synchronisation (publish, install everywhere, rebuild) every shard's list is exactly
//!   the listable servers of all tables, in wire order, each once;
//! - list replies decode, stay within their size bounds, and name only servers on the list;
//!   a registration message draws at most one small datagram.

use crate::master::Config;
use crate::master::Master;
use crate::master::Time;
use crate::master::counters::{Counters, DropReason};
use crate::master::list::builder::ListBuilder;
use crate::master::policy::{IpKey, Limits};
use crate::master::steer::shard_for;
use crate::master::table::record::AddrKey;
use crate::wire::dp_list::ListResponse;
use crate::wire::dp_server::{GetInfo, InfoResponse};
use crate::wire::valve_heartbeat::{ChallengeReply, Heartbeat, HeartbeatEnd};
use crate::wire::valve_list::{ListPage, ListQuery, MAX_PAGE_ENTRIES, PAGE_HEADER, Region};
use siphasher::sip128::{Hasher128, SipHasher24};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hasher;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

/// Shards the script runs (as two cores would).
pub const SHARDS: usize = 2;
/// Table cap (shared by the shards) and per-address cap: small, so scripts reach them.
pub const MAX_SERVERS: usize = 3;
pub const MAX_SERVERS_PER_IP: u16 = 2;
/// Server timeout: a few steps of the clock.
pub const TIMEOUT_MS: u64 = 60_000;
/// Largest reply to a registration message (`s` challenge with a Xash nonce: 14; `getinfo` with
/// the longest challenge: 4 + 8 + 11).
pub const MAX_REGISTRATION_REPLY: usize = 32;
/// Steps a script runs at most (bounds a fuzz input's work).
pub const MAX_STEPS: usize = 512;

/// The addresses datagrams come from: hosts with several ports, an invalid port, a private host,
/// two addresses of one IPv6 /64, and a v4-mapped form of an IPv4 host.
fn addresses() -> [SocketAddr; 10] {
    let v4 = |a, b, c, d, p| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), p));
    let v6 = |last, p| SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last).into(), p);
    let mapped = SocketAddr::new(Ipv4Addr::new(5, 6, 7, 8).to_ipv6_mapped().into(), 27020);
    [
        v4(1, 2, 3, 4, 27015),
        v4(1, 2, 3, 4, 27016),
        v4(1, 2, 3, 4, 27017),
        v4(5, 6, 7, 8, 27015),
        v4(5, 6, 7, 8, 0),
        v4(10, 0, 0, 1, 27015),
        v6(1, 27015),
        v6(2, 27016),
        mapped,
        v4(9, 9, 9, 9, 27960),
    ]
}

/// What a script did, to show it reached the states it should (the tests check these).
#[derive(Clone, Copy, Debug, Default)]
pub struct Reached {
    pub steps: usize,
    pub handshakes_answered: usize,
    pub list_replies: usize,
    /// Servers listed from a (scripted) state file.
    pub restored: usize,
    pub syncs: usize,
    /// Liveness probe datagrams sent as time passed (scripts whose first byte has bit 1 set).
    pub probes: usize,
    pub counters: Counters,
}

/// Reads bytes; past the end every read is 0.
struct Script<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let end = self.pos.saturating_add(n).min(self.data.len());
        let s = self.data.get(self.pos.min(end)..end).unwrap_or_default();
        self.pos = end;
        s
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> Option<T> {
        let i = usize::from(self.byte()).checked_rem(from.len())?;
        from.get(i).copied()
    }
}

struct Run {
    masters: Vec<Master>,
    builder: ListBuilder,
    now: Time,
    addrs: [SocketAddr; 10],
    /// The last challenge the master sent to each (canonical) address.
    valve_challenge: HashMap<AddrKey, u32>,
    dp_challenge: HashMap<AddrKey, Vec<u8>>,
    /// Addresses whose registration carried a challenge the master had sent them.
    completed: HashSet<AddrKey>,
    /// The listable servers at the last synchronisation (what lists may name).
    synced: BTreeSet<AddrKey>,
    /// The addresses the master last sent a Valve / DP challenge to (answers go there more often
    /// than not).
    last_valve: Option<SocketAddr>,
    last_dp: Option<SocketAddr>,
    reached: Reached,
}

fn canonical(a: SocketAddr) -> AddrKey {
    AddrKey::new(crate::master::policy::canonical(a))
}

/// Runs `data` as a script; `Err` names the first invariant broken. The first byte chooses the
/// admission control: even, the defaults (scripts then meet its refusals); odd, none (scripts then
/// reach every list path).
pub fn run(data: &[u8]) -> Result<Reached, String> {
    let mut h = SipHasher24::new_with_key(&[7; 16]);
    h.write(data);
    let secret = h.finish128().as_bytes();
    let mut config = Config::with_secret(secret);
    let (mode, data) = data.split_first().map_or((0, data), |(m, rest)| (*m, rest));
    if mode % 2 == 1 {
        config.admission = crate::master::admission::AdmissionConfig::unlimited();
    }
    if mode & 2 != 0 {
        // Liveness probes on: Valve servers listed once they answer, probes sent as time passes.
        config.probe = crate::master::probe::ProbeConfig {
            clone_ports: 2,
            ..crate::master::probe::ProbeConfig::default()
        };
    }
    // The whole of every reply at once, so a reply can be checked as a whole.
    config.tx.window = usize::MAX / 4;
    config.limits = Limits {
        server_timeout_ms: TIMEOUT_MS,
        max_servers: MAX_SERVERS,
        max_servers_per_ip: MAX_SERVERS_PER_IP,
        max_servers_per_net: u16::MAX,
        allow_private: false,
    };
    let mut r = Run::new(Time::from_secs(1000), &config);
    let mut s = Script { data, pos: 0 };
    while !s.done() && r.reached.steps < MAX_STEPS {
        r.reached.steps = r.reached.steps.saturating_add(1);
        r.step(&mut s)?;
        r.check_tables()?;
    }
    r.sync()?;
    for m in &r.masters {
        // Counters add with wrapping arithmetic (counters.rs): no overflow to fear.
        #[allow(clippy::arithmetic_side_effects)]
        {
            r.reached.counters += m.counters();
        }
    }
    Ok(r.reached)
}

const GAMEDIRS: [&[u8]; 4] = [b"cstrike", b"tf", b"valve", b""];
const MAPS: [&[u8]; 3] = [b"de_dust2", b"cs_office", b""];
const DP_GAMES: [Option<&[u8]>; 4] = [Some(b"Xonotic"), Some(b"Nexuiz"), None, Some(b"bad game")];
const DP_PROTOCOLS: [&[u8]; 3] = [b"3", b"71", b"x"];
const DP_TAGS: [&[u8]; 5] = [
    b"DarkPlaces",
    b"QuakeArena-1",
    b"Wolfenstein-1",
    b"EnemyTerritory-1",
    b"Nope-1",
];
const VALVE_FILTERS: [&[u8]; 6] = [
    b"",
    b"\\gamedir\\cstrike",
    b"\\nor\\1\\gamedir\\tf",
    b"\\empty\\1\\map\\de_dust2",
    b"\\collapse_addr_hash\\1",
    b"\\name_match\\*a*b*",
];
const DP_QUERIES: [&[u8]; 6] = [
    b"\xFF\xFF\xFF\xFFgetservers Xonotic 3 empty full",
    b"\xFF\xFF\xFF\xFFgetserversExt Xonotic 3 empty full",
    b"\xFF\xFF\xFF\xFFgetservers 71 empty full\n",
    b"\xFF\xFF\xFF\xFFgetservers Nexuiz 3",
    b"\xFF\xFF\xFF\xFFgetserversExt Xonotic 3 ipv6 full",
    b"\xFF\xFF\xFF\xFFgetservers Xonotic 3 gametype=dm empty",
];

impl Run {
    fn new(now: Time, config: &Config) -> Run {
        let mut config = config.clone();
        config.budget = Some(crate::master::table::budget::Budget::shared(
            config.limits.max_servers,
            SHARDS,
        ));
        Run {
            masters: (0..SHARDS)
                .map(|i| Master::new(now, config.clone(), i, SHARDS))
                .collect(),
            builder: ListBuilder::new(SHARDS, config.max_dp_packet),
            now,
            addrs: addresses(),
            valve_challenge: HashMap::new(),
            dp_challenge: HashMap::new(),
            completed: HashSet::new(),
            synced: BTreeSet::new(),
            last_valve: None,
            last_dp: None,
            reached: Reached::default(),
        }
    }

    fn step(&mut self, s: &mut Script<'_>) -> Result<(), String> {
        let op = s.byte();
        let picked = s.pick(&self.addrs).unwrap_or(self.addrs[0]);
        // A game server answers the challenge it was just sent: ops 2 and 4 go to the address last
        // challenged unless bit 3 says otherwise.
        let from = match (op % 8, self.last_valve, self.last_dp) {
            (2, Some(a), _) | (4, _, Some(a)) if op & 0x08 == 0 => a,
            _ => picked,
        };
        match op % 8 {
            0 if op & 0x80 != 0 => {
                // A game server's A2S_INFO answer (a probe's, or unasked), naming a game.
                let folder = s.pick(&GAMEDIRS).unwrap_or_default();
                let players = s.byte();
                let mut b = Vec::new();
                let info = crate::wire::a2s::SourceInfo {
                    protocol: 48,
                    name: b"server",
                    map: b"de_dust2",
                    folder,
                    game: b"game",
                    app_id: 10,
                    players,
                    max_players: 16,
                    bots: 0,
                    server_type: b'd',
                    environment: b'l',
                    visibility: 0,
                    vac: 0,
                    ship: None,
                    version: b"1",
                    extra: None,
                };
                if info.encode(&mut b).is_ok() {
                    self.deliver(from, &b, Expect::Anything)?;
                }
            }
            0 => {
                let len = usize::from(s.byte());
                let bytes = s.take(len).to_vec();
                self.deliver(from, &bytes, Expect::Anything)?;
            }
            1 => {
                let q: &[u8] = if op & 0x10 != 0 {
                    b"q\xFF\x01\x02\x03\x04"
                } else {
                    b"q"
                };
                self.deliver(from, q, Expect::Registration)?;
            }
            2 => self.valve_heartbeat(s, from, op)?,
            3 => {
                let tag = s.pick(&DP_TAGS).unwrap_or(b"DarkPlaces");
                let hb = [&b"\xFF\xFF\xFF\xFFheartbeat "[..], tag, b"\n"].concat();
                self.deliver(from, &hb, Expect::Registration)?;
            }
            4 => self.dp_info_response(s, from, op)?,
            5 if op & 0x80 != 0 => {
                // A Xash3D FWGS client: the whole list as a keyed burst, no paging.
                let key = u32::from(s.byte()).wrapping_mul(0x0101_0101) | 1;
                let filter = s.pick(&VALVE_FILTERS).unwrap_or_default();
                let text = [filter, format!("\\clver\\0.21\\key\\{key:x}").as_bytes()].concat();
                let mut q = Vec::new();
                let query = ListQuery {
                    region: Region::All,
                    seed: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    filter: &text,
                    well_formed: true,
                };
                if query.encode(&mut q).is_ok() {
                    let v6 = from.is_ipv6() && super::policy::canonical(from).is_ipv6();
                    self.deliver(from, &q, Expect::XashBurst { key, v6 })?;
                }
            }
            6 if op & 0x80 != 0 => self.restore(s, from)?,
            5 => {
                let filter = s.pick(&VALVE_FILTERS).unwrap_or_default();
                let seed = match s.byte() % 3 {
                    0 => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    1 => match s.pick(&self.addrs) {
                        Some(SocketAddr::V4(a)) => a,
                        _ => SocketAddrV4::new(Ipv4Addr::new(3, 0, 0, 0), 1),
                    },
                    _ => SocketAddrV4::new(Ipv4Addr::BROADCAST, 65535),
                };
                let region = match s.byte() % 10 {
                    8 => Region::All,
                    b => Region::from(b),
                };
                let mut q = Vec::new();
                let query = ListQuery {
                    region,
                    seed,
                    filter,
                    well_formed: true,
                };
                if query.encode(&mut q).is_ok() {
                    self.deliver(from, &q, Expect::ValvePage)?;
                }
            }
            6 => {
                let q = s.pick(&DP_QUERIES).unwrap_or_default();
                self.deliver(from, q, Expect::DpList)?;
            }
            _ => {
                // Time passes (up to 65 s, past the 60 s timeout; mostly less than a DP
                // challenge's 2–4 s life), expiry runs, and every shard publishes and takes in
                // the others' snapshots.
                let b = u64::from(s.byte());
                let ms = b.saturating_mul(b);
                self.now = self.now.plus_millis(ms);
                self.sync()?;
            }
        }
        Ok(())
    }

    /// A server from a state file, listed on the shard its address steers to as the engine's
    /// restore does (caps, address and game policy still apply): it joins the servers that may
    /// be listed without a handshake of their own.
    fn restore(&mut self, s: &mut Script<'_>, from: SocketAddr) -> Result<(), String> {
        let family = if s.byte().is_multiple_of(2) {
            super::Family::Valve
        } else {
            super::Family::DarkPlaces
        };
        let game = match family {
            super::Family::Valve => s.pick(&GAMEDIRS).unwrap_or_default(),
            _ => s.pick(&DP_GAMES).unwrap_or(None).unwrap_or_default(),
        };
        let fields = super::Fields {
            game,
            map: s.pick(&MAPS).unwrap_or_default(),
            players: s.byte(),
            max_players: s.byte(),
            protocol: 3,
            ..super::Fields::default()
        };
        // Expiring within 0–255 s: some already expired (then not listed).
        let expires = self
            .now
            .plus_secs(u64::from(s.byte()))
            .plus_millis(1)
            .min(self.now.plus_millis(TIMEOUT_MS));
        let first_seen = self.now.secs_u32();
        let shard = shard_for(from.ip(), SHARDS);
        let master = self
            .masters
            .get_mut(shard)
            .ok_or("the steering function named a shard that does not exist")?;
        if let Ok(true) = master.restore(self.now, from, family, &fields, expires, first_seen) {
            self.completed.insert(canonical(from));
            self.reached.restored = self.reached.restored.saturating_add(1);
        }
        Ok(())
    }

    fn valve_heartbeat(
        &mut self,
        s: &mut Script<'_>,
        from: SocketAddr,
        op: u8,
    ) -> Result<(), String> {
        let key = canonical(from);
        let known = self.valve_challenge.get(&key).copied();
        // Mostly the challenge the master sent; sometimes (bits 5 and 6) a wrong one.
        let (challenge, genuine) = match known {
            Some(c) if op & 0x60 != 0x60 => (c, true),
            Some(c) => (c ^ 0x55, false),
            None => (u32::from(s.byte()), false),
        };
        let text = if op & 0x40 != 0 {
            (challenge as i32).to_string() // Source's %d
        } else {
            challenge.to_string()
        };
        let players = s.byte().to_string();
        let max = s.byte().to_string();
        let gamedir = s.pick(&GAMEDIRS).unwrap_or_default();
        let map = s.pick(&MAPS).unwrap_or_default();
        let mut pairs: Vec<(&[u8], &[u8])> = vec![
            (b"protocol", b"48"),
            (b"challenge", text.as_bytes()),
            (b"players", players.as_bytes()),
            (b"max", max.as_bytes()),
            (b"map", map),
            (b"type", b"d"),
        ];
        if !gamedir.is_empty() {
            pairs.push((b"gamedir", gamedir));
        }
        let end = match op >> 7 {
            0 => HeartbeatEnd::Newline,
            _ => HeartbeatEnd::None,
        };
        let mut hb = Vec::new();
        if Heartbeat::encode(&mut hb, false, pairs, end).is_ok() {
            if genuine {
                self.completed.insert(key);
                self.reached.handshakes_answered =
                    self.reached.handshakes_answered.saturating_add(1);
            }
            self.deliver(from, &hb, Expect::Registration)?;
        }
        Ok(())
    }

    fn dp_info_response(
        &mut self,
        s: &mut Script<'_>,
        from: SocketAddr,
        op: u8,
    ) -> Result<(), String> {
        let key = canonical(from);
        let (challenge, genuine) = match self.dp_challenge.get(&key) {
            Some(c) if op & 0x60 != 0x60 => (c.clone(), true),
            Some(c) => ([c.as_slice(), b"x"].concat(), false),
            None => (b"ABCDEFGHI".to_vec(), false),
        };
        let clients = s.byte().to_string();
        let game = s.pick(&DP_GAMES).unwrap_or(None);
        let protocol = s.pick(&DP_PROTOCOLS).unwrap_or(b"3");
        let maxclients: &[u8] = if op & 0x40 != 0 { b"0" } else { b"8" };
        let mut pairs: Vec<(&[u8], &[u8])> = vec![
            (b"challenge", &challenge),
            (b"protocol", protocol),
            (b"sv_maxclients", maxclients),
            (b"clients", clients.as_bytes()),
            (b"mapname", b"dm4"),
        ];
        if let Some(g) = game {
            pairs.push((b"gamename", g));
        }
        let mut ir = Vec::new();
        if InfoResponse::encode(&mut ir, pairs).is_ok() {
            if genuine {
                self.completed.insert(key);
                self.reached.handshakes_answered =
                    self.reached.handshakes_answered.saturating_add(1);
            }
            self.deliver(from, &ir, Expect::Registration)?;
        }
        Ok(())
    }

    fn deliver(&mut self, from: SocketAddr, bytes: &[u8], expect: Expect) -> Result<(), String> {
        let shard = shard_for(from.ip(), SHARDS);
        let master = self
            .masters
            .get_mut(shard)
            .ok_or("the steering function named a shard that does not exist")?;
        let _ = master.handle(self.now, from, 0, bytes);
        let datagrams: Vec<Vec<u8>> = master
            .transmits(self.now)
            .iter()
            .flat_map(|t| t.datagrams())
            .collect();
        if master.tx().pending_bytes() > master.config().tx.max_pending {
            return Err("the transmit queue holds more than its bound".to_owned());
        }
        let key = canonical(from);
        // Remember challenges sent, as the game server at `from` would see them.
        for d in &datagrams {
            if let Ok(c) = ChallengeReply::decode(d) {
                self.valve_challenge.insert(key, c.challenge);
                self.last_valve = Some(from);
            } else if let Ok(g) = GetInfo::decode(d) {
                self.dp_challenge.insert(key, g.challenge.to_vec());
                self.last_dp = Some(from);
            }
        }
        let listed = |a: SocketAddr| self.synced.contains(&AddrKey::new(a));
        let kind = match (expect, datagrams.first()) {
            (_, None) => return Ok(()),
            (Expect::Anything, Some(d)) => Expect::of(d),
            (e, Some(_)) => e,
        };
        match kind {
            Expect::Registration | Expect::Anything => {
                if datagrams.len() > 1 || datagrams.iter().any(|d| d.len() > MAX_REGISTRATION_REPLY)
                {
                    return Err(format!(
                        "a registration message from {from} drew {} datagrams ({:?} bytes)",
                        datagrams.len(),
                        datagrams.iter().map(Vec::len).collect::<Vec<_>>()
                    ));
                }
            }
            Expect::ValvePage => {
                self.reached.list_replies = self.reached.list_replies.saturating_add(1);
                let [page] = datagrams.as_slice() else {
                    return Err(format!("a Valve query drew {} datagrams", datagrams.len()));
                };
                let max = PAGE_HEADER
                    .len()
                    .saturating_add(MAX_PAGE_ENTRIES.saturating_mul(6));
                if page.len() > max {
                    return Err(format!("a Valve page of {} bytes", page.len()));
                }
                let p = ListPage::decode(page).map_err(|e| format!("a Valve page: {e}"))?;
                if let Some(a) = p.servers().find(|a| !listed(SocketAddr::V4(*a))) {
                    return Err(format!("a Valve page names {a}, not on the list"));
                }
            }
            Expect::XashBurst { key, v6 } => {
                self.reached.list_replies = self.reached.list_replies.saturating_add(1);
                let max = if v6 { 1280 } else { 510 };
                for d in &datagrams {
                    if d.len() > max {
                        return Err(format!(
                            "a Xash3D datagram of {} bytes (max {max})",
                            d.len()
                        ));
                    }
                    let b = crate::wire::xash::BurstDatagram::decode(d, v6, true)
                        .map_err(|e| format!("a Xash3D burst datagram: {e}"))?;
                    if b.key != Some(key) {
                        return Err(format!("a burst keyed {:?}, asked {key:x}", b.key));
                    }
                    if let Some(a) = b.servers.iter().find(|a| !listed(**a)) {
                        return Err(format!("a Xash3D burst names {a}, not on the list"));
                    }
                }
            }
            Expect::DpList => {
                self.reached.list_replies = self.reached.list_replies.saturating_add(1);
                let max = self.masters.first().map_or(0, |m| m.config().max_dp_packet);
                for (i, d) in datagrams.iter().enumerate() {
                    if d.len() > max {
                        return Err(format!("a DP packet of {} bytes (max {max})", d.len()));
                    }
                    let r = ListResponse::decode(d).map_err(|e| format!("a DP packet: {e}"))?;
                    let last = i.saturating_add(1) == datagrams.len();
                    if r.eot != last {
                        return Err(format!("EOT on packet {i} of {}", datagrams.len()));
                    }
                    if let Some(a) = r.servers().find(|a| !listed(*a)) {
                        return Err(format!("a DP response names {a}, not on the list"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Expiry, publication and installation everywhere, then every list compared with the tables.
    fn sync(&mut self) -> Result<(), String> {
        self.reached.syncs = self.reached.syncs.saturating_add(1);
        let now = self.now;
        for (i, m) in self.masters.iter_mut().enumerate() {
            // Bounded: each call visits at most its budget; the wheel holds few entries here.
            for _ in 0..1000 {
                if m.tick(now, 64) {
                    break;
                }
            }
            // Probes go only to servers in the table (each completed a handshake): never a
            // reflection. A DP probe's challenge is remembered, so the script can answer it.
            for t in m.transmits(now) {
                if m.table().get(t.to).is_none() {
                    return Err(format!("a probe went to {}, not in the table", t.to));
                }
                for d in t.datagrams() {
                    if let Ok(g) = GetInfo::decode(&d) {
                        self.dp_challenge
                            .insert(canonical(t.to), g.challenge.to_vec());
                        self.last_dp = Some(t.to);
                    }
                    self.reached.probes = self.reached.probes.saturating_add(1);
                }
            }
            if let Some(snap) = m.publish() {
                self.builder.apply(i, snap);
            }
        }
        if let Some(list) = self.builder.build() {
            for m in &mut self.masters {
                m.install_list(list.clone());
            }
        }
        self.check_tables()?;
        let listable: BTreeSet<AddrKey> = self
            .masters
            .iter()
            .flat_map(|m| m.table().iter())
            .filter(|s| s.is_listed())
            .map(|s| s.addr)
            .collect();
        for m in &self.masters {
            let listed: Vec<AddrKey> = m.list().addrs().collect();
            let as_set: BTreeSet<AddrKey> = listed.iter().copied().collect();
            if as_set.len() != listed.len() {
                return Err(format!("shard {} lists a server twice", m.shard()));
            }
            if as_set != listable {
                return Err(format!(
                    "shard {} lists {} servers, the tables hold {} listable",
                    m.shard(),
                    as_set.len(),
                    listable.len()
                ));
            }
            let valve: Vec<AddrKey> = m.list().valve_addrs().collect();
            let ordered = |v: &[AddrKey]| v.windows(2).all(|w| w.first() < w.get(1));
            if !ordered(&valve) || !m.list().dp_games().all(|g| ordered(&g)) {
                return Err(format!("shard {} lists out of wire order", m.shard()));
            }
        }
        self.synced = listable;
        Ok(())
    }

    fn check_tables(&self) -> Result<(), String> {
        let mut per_ip: HashMap<IpKey, u16> = HashMap::new();
        let total: usize = self.masters.iter().map(|m| m.table().len()).sum();
        if total > MAX_SERVERS {
            return Err(format!("the shards hold {total} servers together"));
        }
        for m in &self.masters {
            for s in m.table().iter() {
                let addr = s.addr.addr();
                if shard_for(addr.ip(), SHARDS) != m.shard() {
                    return Err(format!("{addr} sits in shard {}, not its own", m.shard()));
                }
                if !self.completed.contains(&s.addr) {
                    return Err(format!("{addr} is listed without completing a handshake"));
                }
                let n = per_ip.entry(IpKey::new(addr.ip())).or_insert(0);
                *n = n.saturating_add(1);
                if *n > MAX_SERVERS_PER_IP {
                    return Err(format!("{} servers share the address of {addr}", *n));
                }
            }
            if m.counters().dropped(DropReason::Unknown) > m.counters().received {
                return Err("more drops than datagrams".to_owned());
            }
        }
        Ok(())
    }
}

/// What a datagram's reply must look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A raw datagram: judged by the reply it drew.
    Anything,
    Registration,
    ValvePage,
    DpList,
    /// A Xash3D query's burst (keyed with this key), to an IPv6 client or not.
    XashBurst {
        key: u32,
        v6: bool,
    },
}

impl Expect {
    fn of(reply: &[u8]) -> Expect {
        if reply.starts_with(&PAGE_HEADER) {
            Expect::ValvePage
        } else if ListResponse::decode(reply).is_ok() {
            Expect::DpList
        } else {
            Expect::Registration
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A script: `q` from address 0, the genuine heartbeat back, then time passes (a sync).
    fn register_valve_at_0() -> Vec<u8> {
        vec![
            0, // default admission
            1, 0, // op 1 (q), address 0
            2, 0, 5, 16, 0,
            0, // op 2 (heartbeat), address 0, players 5, max 16, cstrike, de_dust2
            7, 0, 64, // op 7, 4 s pass
        ]
    }

    #[test]
    fn a_scripted_handshake_lists_the_server_and_its_expiry_delists_it() {
        let reached = run(&register_valve_at_0()).unwrap();
        assert_eq!(reached.handshakes_answered, 1);
        assert_eq!(reached.counters.registered, 1);
        let mut script = register_valve_at_0();
        script.extend([7, 0, 250, 7, 0, 100]); // 72.5 s later: past the 60 s timeout
        let reached = run(&script).unwrap();
        assert_eq!(reached.counters.expired, 1);
        // From the private host (address 5): no challenge, nothing listed.
        let reached = run(&[0, 1, 5, 2, 5, 1, 1, 0, 0, 7, 0, 1]).unwrap();
        assert_eq!(reached.counters.registered, 0);
        assert_eq!(reached.counters.dropped(DropReason::PrivateAddress), 2);
    }

    #[test]
    fn the_checks_catch_a_server_listed_without_a_handshake() {
        // The same script, but the exerciser is told the handshake never happened.
        let data = register_valve_at_0()[1..].to_vec();
        let mut r = Run::new(Time::ZERO, &Config::with_secret([1; 16]));
        let mut s = Script {
            data: &data,
            pos: 0,
        };
        while !s.done() {
            r.step(&mut s).unwrap();
        }
        assert!(r.check_tables().is_ok());
        r.completed.clear();
        let e = r.check_tables().unwrap_err();
        assert!(e.contains("without completing a handshake"), "{e}");
    }

    #[test]
    fn random_scripts_reach_registration_lists_and_expiry() {
        let mut rng = StdRng::seed_from_u64(99);
        let mut total = Reached::default();
        for _ in 0..2000 {
            let len = rng.random_range(0..3000);
            let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let r = run(&data).unwrap_or_else(|e| panic!("{e}\nscript: {data:?}"));
            total.handshakes_answered += r.handshakes_answered;
            total.list_replies += r.list_replies;
            total.restored += r.restored;
            total.probes += r.probes;
            total.counters += &r.counters;
        }
        // Scripts with probes on reach probing, answers, and hiding.
        assert!(total.probes > 100, "probes sent: {}", total.probes);
        assert!(total.counters.probes_answered > 10, "{:?}", total.counters);
        assert!(total.counters.shown > 10, "{:?}", total.counters);
        assert!(total.restored > 100, "restores reached: {}", total.restored);
        assert!(total.counters.xash_queries > 100, "{:?}", total.counters);
        assert!(total.counters.registered > 1000, "{:?}", total.counters);
        assert!(total.counters.expired > 100, "{:?}", total.counters);
        assert!(total.list_replies > 1000);
        assert!(
            total.counters.dropped(DropReason::PerIpCap) > 0,
            "{:?}",
            total.counters
        );
        assert!(
            total.counters.dropped(DropReason::TableFull) > 0,
            "{:?}",
            total.counters
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn no_script_breaks_an_invariant(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Err(e) = run(&data) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}
