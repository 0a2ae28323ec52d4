//! One shard's table of listed servers: a slab of compact records, an address index, per-address
//! counts for the cap, the expiry wheel and the string interner.

use super::expiry::{Due, Entry, Wheel};
use super::intern::{Interner, SymTable};
use super::policy::{IpKey, Limits};
use super::record::{AddrKey, Family, Server};
use super::time::Time;
use hashbrown::HashTable;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;

/// Most servers a table reserves room for at creation (it grows past that if allowed).
pub const MAX_RESERVED: usize = 1 << 18;

/// What a registration carries, borrowed from the datagram; strings are interned on insert.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fields<'a> {
    pub region: u8,
    pub server_type: u8,
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
    pub flags: u16,
    pub appid: u32,
    pub protocol: u32,
    pub game: &'a [u8],
    pub product: &'a [u8],
    pub map: &'a [u8],
    pub version: &'a [u8],
    pub tags: &'a [u8],
    pub gamedata: &'a [u8],
    pub hostname: &'a [u8],
}

impl Fields<'_> {
    /// The record these fields make, its strings interned (one reference each), seen `now`.
    pub fn to_server(&self, addr: AddrKey, family: Family, now: Time, i: &mut Interner) -> Server {
        Server {
            addr,
            family,
            region: self.region,
            server_type: self.server_type,
            players: self.players,
            max_players: self.max_players,
            bots: self.bots,
            flags: self.flags,
            appid: self.appid,
            protocol: self.protocol,
            game: i.intern(self.game),
            product: i.intern(self.product),
            map: i.intern(self.map),
            version: i.intern(self.version),
            tags: i.intern(self.tags),
            gamedata: i.intern(self.gamedata),
            hostname: i.intern(self.hostname),
            first_seen: now.secs_u32(),
            last_seen: seen_secs(now),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upserted {
    Inserted,
    Refreshed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The shard holds `max_servers` already.
    TableFull,
    /// The address (IPv4) or /64 (IPv6) holds `max_servers_per_ip` already.
    PerIpCap,
}

/// An immutable, address-sorted copy of a shard, shared with every core.
#[derive(Debug, Default)]
pub struct ShardSnapshot {
    /// Sorted by [`AddrKey`], i.e. wire order.
    pub servers: Vec<Server>,
    pub strings: SymTable,
    /// Increases with every snapshot the shard takes.
    pub epoch: u64,
}

#[derive(Debug)]
pub struct Table {
    /// Address → slot. Holds only slot numbers and hashes each slot's own address, so the 19-byte
    /// key is stored once (in the record). The hasher is randomly keyed: addresses are chosen by
    /// whoever sends packets.
    index: HashTable<u32>,
    hasher: RandomState,
    slots: Vec<Option<Server>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    per_ip: HashMap<IpKey, u16>,
    wheel: Wheel,
    interner: Interner,
    limits: Limits,
    changed: bool,
    epoch: u64,
    /// Slots found expired during one wheel advance (reused; at most the tick budget long).
    expired: Vec<u32>,
}

/// Seconds for `last_seen`, rounded up so expiry never comes before the timeout.
fn seen_secs(now: Time) -> u32 {
    u32::try_from(now.millis().div_ceil(1000)).unwrap_or(u32::MAX)
}

/// The address of an occupied slot (the index only holds occupied slots).
fn slot_key(slots: &[Option<Server>], s: u32) -> AddrKey {
    slots
        .get(s as usize)
        .and_then(|x| x.as_ref())
        .map_or(AddrKey([0; 19]), |x| x.addr)
}

impl Table {
    fn find(&self, key: AddrKey) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hasher.hash_one(key), |&s| slot_key(slots, s) == key)
            .copied()
    }

    pub fn new(now: Time, limits: Limits) -> Self {
        // Room up front for up to MAX_RESERVED servers: growing rehashes every address (a random
        // read of each record), a stall on the core. Vectors reserve address space only (pages are
        // touched as servers arrive); the index's ~1.3 MB is allocated at once.
        let room = limits.max_servers.min(MAX_RESERVED);
        Self {
            index: HashTable::with_capacity(room),
            hasher: RandomState::new(),
            slots: Vec::with_capacity(room),
            generations: Vec::with_capacity(room),
            free: Vec::new(),
            per_ip: HashMap::new(),
            wheel: Wheel::new(now, limits.server_timeout_ms),
            interner: Interner::default(),
            limits,
            changed: false,
            epoch: 0,
            expired: Vec::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn get(&self, addr: SocketAddr) -> Option<&Server> {
        let i = self.find(AddrKey::new(addr))?;
        self.slots.get(i as usize)?.as_ref()
    }

    /// Whether a server is listed at this address (IPv4) or /64 (IPv6).
    pub fn holds(&self, ip: IpKey) -> bool {
        self.per_ip.contains_key(&ip)
    }

    /// Every listed server, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Server> {
        self.slots.iter().flatten()
    }

    pub fn strings(&self) -> &Interner {
        &self.interner
    }

    fn expires_at(&self, s: &Server) -> Time {
        Time::from_secs(u64::from(s.last_seen)).plus_millis(self.limits.server_timeout_ms)
    }

    /// Lists or refreshes the server at `addr`.
    pub fn upsert(
        &mut self,
        now: Time,
        addr: SocketAddr,
        family: Family,
        f: &Fields<'_>,
    ) -> Result<Upserted, Rejected> {
        let key = AddrKey::new(addr);
        if let Some(old) = self
            .find(key)
            .and_then(|slot| self.slots.get_mut(slot as usize)?.as_mut())
        {
            // Intern the new strings before releasing the old, so unchanged ones are not freed.
            let mut server = f.to_server(key, family, now, &mut self.interner);
            server.first_seen = old.first_seen;
            let previous = std::mem::replace(old, server);
            previous.release_strings(&mut self.interner);
            self.changed = true;
            return Ok(Upserted::Refreshed);
        }
        if self.index.len() >= self.limits.max_servers {
            return Err(Rejected::TableFull);
        }
        let ip = IpKey::new(addr.ip());
        let count = self.per_ip.entry(ip).or_insert(0);
        if *count >= self.limits.max_servers_per_ip {
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
            return Err(Rejected::PerIpCap);
        }
        *count = count.saturating_add(1);
        let server = f.to_server(key, family, now, &mut self.interner);
        let reused = self
            .free
            .pop()
            .and_then(|s| Some((s, self.slots.get_mut(s as usize)?)));
        let slot = match reused {
            Some((s, place)) => {
                *place = Some(server);
                s
            }
            None => {
                // Slot numbers are u32: `max_servers` is far below 2³² (config-checked).
                let s = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Some(server));
                self.generations.push(0);
                s
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hasher.hash_one(key), slot, |&s| {
            hasher.hash_one(slot_key(slots, s))
        });
        let at = self.expires_at(&server);
        self.wheel.schedule(
            at,
            Entry {
                slot,
                generation: self.generations.get(slot as usize).copied().unwrap_or(0),
            },
        );
        self.changed = true;
        Ok(Upserted::Inserted)
    }

    /// Delists the server at `addr`; `false` if it was not listed.
    pub fn remove(&mut self, addr: SocketAddr) -> bool {
        match self.find(AddrKey::new(addr)) {
            Some(slot) => {
                self.remove_slot(slot);
                true
            }
            None => false,
        }
    }

    fn remove_slot(&mut self, slot: u32) {
        let Some(place) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(server) = place.take() else {
            return;
        };
        if let Ok(entry) = self
            .index
            .find_entry(self.hasher.hash_one(server.addr), |&s| s == slot)
        {
            entry.remove();
        }
        let ip = IpKey::new(server.addr.addr().ip());
        if let Some(c) = self.per_ip.get_mut(&ip) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.per_ip.remove(&ip);
            }
        }
        server.release_strings(&mut self.interner);
        // A new generation makes the wheel entry of this slot stale.
        if let Some(g) = self.generations.get_mut(slot as usize) {
            *g = g.wrapping_add(1);
        }
        self.free.push(slot);
        self.changed = true;
    }

    /// Removes servers silent for the timeout, visiting at most `budget` wheel entries. Returns how
    /// many expired and whether all due work is done.
    pub fn expire(&mut self, now: Time, budget: usize) -> (usize, bool) {
        let (slots, generations, expired) = (&self.slots, &self.generations, &mut self.expired);
        let timeout = self.limits.server_timeout_ms;
        let done = self.wheel.advance(now, budget, |e| {
            if generations.get(e.slot as usize) != Some(&e.generation) {
                return Due::Done; // the slot was freed (and maybe reused) since
            }
            let Some(Some(server)) = slots.get(e.slot as usize) else {
                return Due::Done;
            };
            let at = Time::from_secs(u64::from(server.last_seen)).plus_millis(timeout);
            if at <= now {
                expired.push(e.slot);
                Due::Done
            } else {
                Due::Reschedule(at)
            }
        });
        let n = self.expired.len();
        let mut expired = std::mem::take(&mut self.expired);
        for slot in expired.drain(..) {
            self.remove_slot(slot);
        }
        self.expired = expired;
        (n, done)
    }

    /// Whether the table changed since the last [`snapshot`](Self::snapshot).
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// An immutable sorted copy for the list, and the start of a new epoch.
    pub fn snapshot(&mut self) -> Arc<ShardSnapshot> {
        let mut servers: Vec<Server> = self.slots.iter().flatten().copied().collect();
        servers.sort_unstable_by_key(|s| s.addr);
        self.changed = false;
        self.epoch = self.epoch.wrapping_add(1);
        Arc::new(ShardSnapshot {
            servers,
            strings: self.interner.table(),
            epoch: self.epoch,
        })
    }

    /// Heap bytes held by the table (records, index, caps, wheel, strings): memory per server is
    /// this over [`len`](Self::len).
    pub fn heap_bytes(&self) -> usize {
        let size = |n: usize, each: usize| n.saturating_mul(each);
        // Vectors count their length: room reserved past it is address space the kernel has not
        // backed (it was never written). Hash tables count their whole allocation.
        [
            self.index.allocation_size(),
            size(
                self.per_ip.capacity(),
                std::mem::size_of::<(IpKey, u16)>().saturating_add(1),
            ),
            size(self.slots.len(), std::mem::size_of::<Option<Server>>()),
            size(self.generations.len(), 4),
            size(self.free.capacity(), 4),
            self.wheel.heap_bytes(),
            self.interner.heap_bytes(),
        ]
        .iter()
        .fold(0usize, |a, b| a.saturating_add(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            server_timeout_ms: 900_000,
            max_servers: 100,
            max_servers_per_ip: 2,
            allow_private: true,
        }
    }

    fn f(map: &[u8]) -> Fields<'_> {
        Fields {
            game: b"cstrike",
            map,
            max_players: 16,
            ..Default::default()
        }
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn insert_refresh_remove_and_strings() {
        let mut t = Table::new(Time::ZERO, limits());
        let now = Time::from_secs(5);
        assert_eq!(
            t.upsert(now, a("1.1.1.1:1"), Family::Valve, &f(b"de_dust")),
            Ok(Upserted::Inserted)
        );
        assert_eq!(
            t.upsert(now, a("1.1.1.1:1"), Family::Valve, &f(b"de_nuke")),
            Ok(Upserted::Refreshed)
        );
        assert_eq!(t.len(), 1);
        let s = *t.get(a("1.1.1.1:1")).unwrap();
        assert_eq!(t.strings().get(s.map), b"de_nuke");
        assert_eq!(
            t.strings().len(),
            2,
            "de_dust freed; cstrike and de_nuke live"
        );
        assert!(t.remove(a("1.1.1.1:1")));
        assert!(!t.remove(a("1.1.1.1:1")));
        assert!(t.strings().is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn caps() {
        let mut t = Table::new(Time::ZERO, limits());
        let now = Time::from_secs(1);
        t.upsert(now, a("1.1.1.1:1"), Family::Valve, &f(b"m"))
            .unwrap();
        t.upsert(now, a("1.1.1.1:2"), Family::Valve, &f(b"m"))
            .unwrap();
        assert_eq!(
            t.upsert(now, a("1.1.1.1:3"), Family::Valve, &f(b"m")),
            Err(Rejected::PerIpCap)
        );
        // A refresh is not a new entry.
        assert_eq!(
            t.upsert(now, a("1.1.1.1:2"), Family::Valve, &f(b"m")),
            Ok(Upserted::Refreshed)
        );
        t.remove(a("1.1.1.1:1"));
        assert!(
            t.upsert(now, a("1.1.1.1:3"), Family::Valve, &f(b"m"))
                .is_ok()
        );
        let mut small = Table::new(
            Time::ZERO,
            Limits {
                max_servers: 3,
                ..limits()
            },
        );
        for i in 0..3 {
            small
                .upsert(
                    now,
                    SocketAddr::new([9, 0, 0, i].into(), 1),
                    Family::Valve,
                    &f(b"m"),
                )
                .unwrap();
        }
        assert_eq!(
            small.upsert(now, a("9.9.9.9:1"), Family::Valve, &f(b"m")),
            Err(Rejected::TableFull)
        );
    }

    #[test]
    fn expiry_at_the_timeout_not_before_and_refresh_postpones_it() {
        let mut t = Table::new(Time::ZERO, limits());
        let t0 = Time::from_millis(10_400);
        t.upsert(t0, a("2.2.2.2:1"), Family::Valve, &f(b"m"))
            .unwrap();
        t.upsert(t0, a("2.2.2.3:1"), Family::Valve, &f(b"m"))
            .unwrap();
        // Refresh one at +600 s.
        let (n, _) = t.expire(t0.plus_secs(600), 1000);
        assert_eq!(n, 0);
        t.upsert(t0.plus_secs(600), a("2.2.2.3:1"), Family::Valve, &f(b"m"))
            .unwrap();
        let (n, _) = t.expire(t0.plus_millis(900_000 - 1), 1000);
        assert_eq!(n, 0, "not before the timeout");
        let (n, done) = t.expire(t0.plus_secs(902), 1000);
        assert_eq!((n, done), (1, true));
        assert!(t.get(a("2.2.2.2:1")).is_none());
        assert!(t.get(a("2.2.2.3:1")).is_some());
        let (n, _) = t.expire(t0.plus_secs(1502), 1000);
        assert_eq!(n, 1);
        assert!(t.is_empty());
    }

    #[test]
    fn snapshots_are_sorted_and_keep_their_strings() {
        let mut t = Table::new(Time::ZERO, limits());
        for s in ["3.0.0.1:5", "1.0.0.1:5", "2.0.0.1:5", "[::2]:5"] {
            t.upsert(Time::from_secs(1), a(s), Family::Valve, &f(b"de_dust"))
                .unwrap();
        }
        assert!(t.changed());
        let snap = t.snapshot();
        assert!(!t.changed());
        let order: Vec<String> = snap
            .servers
            .iter()
            .map(|s| s.addr.addr().to_string())
            .collect();
        assert_eq!(order, ["1.0.0.1:5", "2.0.0.1:5", "3.0.0.1:5", "[::2]:5"]);
        for s in ["3.0.0.1:5", "1.0.0.1:5", "2.0.0.1:5", "[::2]:5"] {
            t.remove(a(s));
        }
        assert_eq!(snap.strings.get(snap.servers[0].map), b"de_dust");
    }
}

#[cfg(test)]
mod model {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The wheel-driven table agrees with a naive model: a server is listed iff its last
        /// heartbeat is less than the timeout ago (to the second the table stores).
        #[test]
        fn expiry_matches_a_naive_model(steps in proptest::collection::vec((0u8..20, 0u64..4000), 1..400)) {
            let timeout = 30_000;
            let limits = Limits { server_timeout_ms: timeout, max_servers: 1000, max_servers_per_ip: 1000, allow_private: true };
            let mut t = Table::new(Time::from_secs(1), limits);
            let mut model: std::collections::HashMap<u8, u64> = Default::default();
            let mut now = 1000u64;
            for (server, dt) in steps {
                now += dt;
                t.expire(Time::from_millis(now), usize::MAX);
                model.retain(|_, seen| seen.div_ceil(1000) * 1000 + timeout > now);
                for s in 0..20u8 {
                    let addr = SocketAddr::from(([1, 1, 1, s], 1));
                    prop_assert_eq!(t.get(addr).is_some(), model.contains_key(&s), "server {} at {} ms", s, now);
                }
                let addr = SocketAddr::from(([1, 1, 1, server], 1));
                t.upsert(Time::from_millis(now), addr, Family::Valve, &Fields { game: b"g", ..Default::default() }).unwrap();
                model.insert(server, now);
            }
        }
    }
}
