//! One shard's table of listed servers: copy-on-write chunks of compact records, an address index,
//! per-address counts for the cap, the expiry wheel, the string interner, and the membership
//! changes since the last snapshot.
//!
//! A snapshot ([`Table::snapshot`]) shares the record chunks and string chunks with the table
//! (`Arc` clones, no copy); a later write copies the one chunk it touches. A heartbeat that changes
//! nothing but when the server was last heard writes nothing a snapshot holds (that time is kept
//! beside the records), so churn that changes nothing changes nothing downstream. What the list
//! sorts and indexes by (address, family, game, protocol, region, appid) changing counts as the
//! server leaving and arriving; anything else is an attribute change, visible to the next snapshot
//! without any list rebuild.
//!
//! | module | job |
//! |---|---|
//! | [`record`] | the compact server record and its wire-ordered address key |
//! | [`intern`] | reference-counted strings shared by records, under a bounded total |
//! | [`expiry`] | the timing wheel |
//! | [`budget`] | the global `max_servers`, drawn by every shard from one atomic count |
//! | [`pending`] | handshakes challenged and not completed, counted against the caps |

pub mod budget;
pub mod expiry;
pub mod intern;
pub mod pending;
pub mod record;

use crate::master::policy::{IpKey, Limits};
use crate::master::table::budget::Budget;
use crate::master::table::expiry::{Due, Entry, Wheel};
use crate::master::table::intern::{Interner, Strings};
use crate::master::table::pending::{MAX_PENDING, Pending};
use crate::master::table::record::{AddrKey, Family, Server, flags};
use crate::master::time::Time;
use hashbrown::HashTable;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;

/// Most servers a table reserves room for at creation (it grows past that if allowed).
pub const MAX_RESERVED: usize = 1 << 20;
/// Records per copy-on-write chunk (a write after a snapshot copies 64 × 68 bytes).
pub const CHUNK: usize = 64;

type Chunk = [Option<Server>; CHUNK];

fn empty_chunk() -> Arc<Chunk> {
    Arc::new([None; CHUNK])
}

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
    /// The record these fields make, its strings interned (one reference each), first seen `now`.
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
        }
    }
}

/// Whether two records of one address sort and index alike in a list.
fn same_place(a: &Server, b: &Server) -> bool {
    a.family == b.family
        && a.game == b.game
        && a.protocol == b.protocol
        && a.region == b.region
        && a.appid == b.appid
        && a.is_listed() == b.is_listed()
}

/// What a probe answer tells of a server, borrowed from the answer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Probed<'a> {
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
    pub map: &'a [u8],
    pub name: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upserted {
    Inserted,
    Refreshed,
}

/// What [`Table::upsert_slot`] did, and where: the service's probes need the slot and whether a
/// peer's server became this master's, and an address costs a hash to find again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsert {
    pub how: Upserted,
    pub slot: u32,
    /// The record this one refreshed came from a peer (`false` when inserted).
    pub was_forwarded: bool,
}

/// Where a heartbeat's address stands, found by [`Table::could_list`] and acted on by
/// [`Table::reserve`] (nothing changes the table between the two: the service only asks the
/// challenge budgets), so the address is hashed and looked up once per heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    key: AddrKey,
    hash: u64,
    ip: IpKey,
    need: Need,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// Listed already: a challenge needs no place.
    Nothing,
    /// A handshake is in progress: a repeat extends its hold.
    Extend,
    /// A new place, taken from the budget.
    Place,
}

/// Per address (IPv4) or /64 (IPv6): servers listed and handshakes in progress, counted together
/// against `max_servers_per_ip` and found with one look-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Held {
    listed: u16,
    pending: u16,
}

impl Held {
    fn total(self) -> u16 {
        self.listed.saturating_add(self.pending)
    }
}

/// Changes the count of `key` in `map` by `f`, removing the entry when it reaches its default
/// (so the maps hold only addresses and networks with something in them).
fn count<K: std::hash::Hash + Eq, V: Default + PartialEq>(
    map: &mut HashMap<K, V>,
    key: K,
    f: impl FnOnce(&mut V),
) {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut e) => {
            f(e.get_mut());
            if *e.get() == V::default() {
                e.remove();
            }
        }
        std::collections::hash_map::Entry::Vacant(e) => {
            let mut v = V::default();
            f(&mut v);
            if v != V::default() {
                e.insert(v);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The table holds `max_servers` already (across every shard).
    TableFull,
    /// The address (IPv4) or /64 (IPv6) holds `max_servers_per_ip` already.
    PerIpCap,
    /// The /24 (IPv4) or /48 (IPv6) holds `max_servers_per_net` already (on this core).
    PerNetCap,
    /// The shard holds [`MAX_PENDING`] handshakes in progress already.
    PendingFull,
}

impl From<Rejected> for crate::master::counters::DropReason {
    fn from(r: Rejected) -> Self {
        match r {
            Rejected::TableFull => Self::TableFull,
            Rejected::PerIpCap => Self::PerIpCap,
            Rejected::PerNetCap => Self::PerNetCap,
            Rejected::PendingFull => Self::PendingFull,
        }
    }
}

/// An immutable view of a shard for the list: its records and strings (shared with the table,
/// copy-on-write), and what changed in membership since the shard's previous snapshot.
#[derive(Debug, Default)]
pub struct ShardSnapshot {
    /// Increases with every snapshot the shard takes.
    pub epoch: u64,
    records: Vec<Arc<Chunk>>,
    pub strings: Strings,
    /// Slots whose server left the list, or changed what the list sorts or indexes it by.
    pub removed: Vec<u32>,
    /// Slots whose server is new to the list, or changed so (a slot may be in both).
    pub added: Vec<u32>,
}

impl ShardSnapshot {
    /// The record in `slot`, if one is listed there (a hidden server is not: it never takes a
    /// place in a reply).
    pub fn get(&self, slot: u32) -> Option<&Server> {
        let i = slot as usize;
        self.records
            .get(i / CHUNK)?
            .get(i % CHUNK)?
            .as_ref()
            .filter(|s| s.is_listed())
    }

    /// Every listed record and its slot (hidden servers left out).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Server)> {
        self.records.iter().enumerate().flat_map(|(c, chunk)| {
            chunk.iter().enumerate().filter_map(move |(i, s)| {
                let slot = c.saturating_mul(CHUNK).saturating_add(i);
                let s = s.as_ref().filter(|s| s.is_listed())?;
                Some((u32::try_from(slot).ok()?, s))
            })
        })
    }
}

/// Every listed server of one shard with when it was last heard ([`Table::dump`]).
#[derive(Debug, Default)]
pub struct ShardDump {
    records: Vec<Arc<Chunk>>,
    pub strings: Strings,
    seen: Vec<u32>,
    pub timeout_ms: u64,
    /// Each slot's liveness probes (empty when probing is off), for the operator's "why".
    pub probes: Vec<crate::master::probe::Brief>,
    /// The last refused registration of addresses not listed (address, reason, seconds).
    pub rejections: Vec<(SocketAddr, crate::master::counters::DropReason, u32)>,
}

impl ShardDump {
    /// Every listed record with when it was last heard (seconds on the table's clock).
    pub fn iter(&self) -> impl Iterator<Item = (&Server, u32)> {
        self.records.iter().enumerate().flat_map(move |(c, chunk)| {
            chunk.iter().enumerate().filter_map(move |(i, s)| {
                let slot = c.saturating_mul(CHUNK).saturating_add(i);
                Some((s.as_ref()?, self.seen.get(slot).copied().unwrap_or(0)))
            })
        })
    }

    /// Every server in the table (hidden ones included) with its slot and when it was last heard.
    pub fn slots(&self) -> impl Iterator<Item = (u32, &Server, u32)> {
        self.records.iter().enumerate().flat_map(move |(c, chunk)| {
            chunk.iter().enumerate().filter_map(move |(i, s)| {
                let slot = c.saturating_mul(CHUNK).saturating_add(i);
                let seen = self.seen.get(slot).copied().unwrap_or(0);
                Some((u32::try_from(slot).ok()?, s.as_ref()?, seen))
            })
        })
    }

    /// The server in `slot` (hidden or not) and when it was last heard.
    pub fn at(&self, slot: u32) -> Option<(&Server, u32)> {
        let i = slot as usize;
        let s = self.records.get(i / CHUNK)?.get(i % CHUNK)?.as_ref()?;
        Some((s, self.seen.get(i).copied().unwrap_or(0)))
    }

    /// Slots the dump covers (one past the highest ever used).
    pub fn slots_len(&self) -> usize {
        self.seen.len()
    }

    /// The server at `addr`, its slot and when it was last heard (a scan: the operator's "why").
    pub fn find(&self, addr: SocketAddr) -> Option<(u32, &Server, u32)> {
        let key = AddrKey::new(addr);
        self.slots().find(|(_, s, _)| s.addr == key)
    }

    /// The probe brief of `slot` (default when probing is off).
    pub fn probe(&self, slot: u32) -> crate::master::probe::Brief {
        self.probes.get(slot as usize).copied().unwrap_or_default()
    }

    /// When a server last heard at `seen` expires.
    pub fn expires_at(&self, seen: u32) -> Time {
        Time::from_secs(u64::from(seen)).plus_millis(self.timeout_ms)
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

#[derive(Debug)]
pub struct Table {
    /// Address → slot. Holds only slot numbers and hashes each slot's own address, so the 19-byte
    /// key is stored once (in the record). The hasher is randomly keyed: addresses are chosen by
    /// whoever sends packets.
    index: HashTable<u32>,
    hasher: RandomState,
    chunks: Vec<Arc<Chunk>>,
    /// When each slot's server was last heard (seconds, rounded up), beside the records.
    seen: Vec<u32>,
    generations: Vec<u32>,
    free: Vec<u32>,
    per_ip: HashMap<IpKey, Held>,
    /// Servers listed per /24 or /48 (handshakes in progress count against the per-address cap
    /// only).
    per_net: HashMap<IpKey, u16>,
    /// Slots freed since [`take_freed`](Self::take_freed), with the address they held (the
    /// prober forgets them); bounded by the removals between two ticks.
    freed: Vec<(u32, IpKey)>,
    /// Handshakes challenged and not completed: they count against the caps, as in dpmaster.
    pending: Pending,
    wheel: Wheel,
    interner: Interner,
    limits: Limits,
    budget: Budget,
    /// Membership changes and whether anything a snapshot holds changed, since the last one.
    removed: Vec<u32>,
    added: Vec<u32>,
    changed: bool,
    epoch: u64,
    /// Slots found expired during one wheel advance (reused; at most the tick budget long).
    expired: Vec<u32>,
}

/// Seconds for `seen`, rounded up so expiry never comes before the timeout.
fn seen_secs(now: Time) -> u32 {
    u32::try_from(now.millis().div_ceil(1000)).unwrap_or(u32::MAX)
}

/// The record in `slot` of `chunks`.
fn record(chunks: &[Arc<Chunk>], slot: u32) -> Option<&Server> {
    let i = slot as usize;
    chunks.get(i / CHUNK)?.get(i % CHUNK)?.as_ref()
}

/// The address of an occupied slot (the index only holds occupied slots).
fn slot_key(chunks: &[Arc<Chunk>], s: u32) -> AddrKey {
    record(chunks, s).map_or(AddrKey([0; 19]), |x| x.addr)
}

impl Table {
    fn find(&self, key: AddrKey) -> Option<u32> {
        self.find_hashed(key, self.hasher.hash_one(key))
    }

    /// [`find`](Self::find) with the key's hash already computed.
    fn find_hashed(&self, key: AddrKey, hash: u64) -> Option<u32> {
        let chunks = &self.chunks;
        self.index
            .find(hash, |&s| slot_key(chunks, s) == key)
            .copied()
    }

    /// A table of this shard alone: `limits.max_servers` is its own cap.
    pub fn new(now: Time, limits: Limits) -> Self {
        let budget = Budget::shared(limits.max_servers, 1);
        Self::with_budget(now, limits, budget, usize::MAX)
    }

    /// A table drawing its room from `budget` (shared with the other shards), its strings bounded
    /// by `string_budget` bytes.
    pub fn with_budget(now: Time, limits: Limits, budget: Budget, string_budget: usize) -> Self {
        // Room up front for this shard's share of the cap (a quarter more for uneven steering),
        // up to MAX_RESERVED: growing rehashes every address and string (a random read of each),
        // a stall on the core and measured at 4% of a million registrations.
        let share = limits.max_servers.checked_div(budget.shards()).unwrap_or(0);
        let room = share.saturating_add(share / 4).min(MAX_RESERVED);
        Self {
            index: HashTable::with_capacity(room),
            hasher: RandomState::new(),
            chunks: Vec::with_capacity(room.div_ceil(CHUNK)),
            seen: Vec::with_capacity(room),
            generations: Vec::with_capacity(room),
            free: Vec::new(),
            per_ip: HashMap::new(),
            per_net: HashMap::new(),
            freed: Vec::new(),
            pending: Pending::default(),
            wheel: Wheel::new(now, limits.server_timeout_ms),
            interner: Interner::with_capacity(string_budget, room),
            limits,
            budget,
            removed: Vec::new(),
            added: Vec::new(),
            // The first snapshot is due even empty: the list then knows this shard is there.
            changed: true,
            epoch: 0,
            expired: Vec::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn get(&self, addr: SocketAddr) -> Option<&Server> {
        record(&self.chunks, self.find(AddrKey::new(addr))?)
    }

    /// When the server at `addr` was last heard (seconds on the table's clock).
    pub fn last_seen(&self, addr: SocketAddr) -> Option<u32> {
        let slot = self.find(AddrKey::new(addr))?;
        self.seen.get(slot as usize).copied()
    }

    /// Whether a server is listed at this address (IPv4) or /64 (IPv6).
    pub fn holds(&self, ip: IpKey) -> bool {
        self.per_ip.get(&ip).is_some_and(|h| h.listed > 0)
    }

    /// Every listed server, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Server> {
        self.chunks.iter().flat_map(|c| c.iter().flatten())
    }

    pub fn strings(&self) -> &Interner {
        &self.interner
    }

    fn expires_at(&self, seen: u32) -> Time {
        Time::from_secs(u64::from(seen)).plus_millis(self.limits.server_timeout_ms)
    }

    /// The record in `slot`, for writing (copying its chunk if a snapshot shares it).
    fn slot_mut(&mut self, slot: u32) -> Option<&mut Option<Server>> {
        let i = slot as usize;
        Arc::make_mut(self.chunks.get_mut(i / CHUNK)?).get_mut(i % CHUNK)
    }

    /// Servers listed at `ip` plus handshakes in progress there.
    fn held_by(&self, ip: IpKey) -> u16 {
        self.per_ip.get(&ip).copied().unwrap_or_default().total()
    }

    /// Servers listed in `net` (a /24 or /48).
    fn held_by_net(&self, net: IpKey) -> u16 {
        self.per_net.get(&net).copied().unwrap_or(0)
    }

    /// Whether another server of `addr` would pass the per-address and per-network caps.
    fn under_caps(&self, addr: SocketAddr) -> Result<(), Rejected> {
        if self.held_by(IpKey::new(addr.ip())) >= self.limits.max_servers_per_ip {
            return Err(Rejected::PerIpCap);
        }
        if self.held_by_net(IpKey::prefix(addr.ip())) >= self.limits.max_servers_per_net {
            return Err(Rejected::PerNetCap);
        }
        Ok(())
    }

    /// Whether a heartbeat from `addr` could be listed now: it is listed or challenged already, or
    /// its address is under `max_servers_per_ip` and the table has room — counting handshakes in
    /// progress, as dpmaster 2.2 does: it asks this before it sends a challenge (`servers.c`,
    /// `Sv_GetByAddr` with `create`: no `getinfo` to a server it could not list), so a master that
    /// is full spends nothing on hopeless handshakes.
    ///
    /// Reservations lapsed by `now` give their places back first.
    pub fn could_list(&mut self, now: Time, addr: SocketAddr) -> Result<Placement, Rejected> {
        self.lapse_pending(now);
        let key = AddrKey::new(addr);
        let hash = self.hasher.hash_one(key);
        let ip = IpKey::new(addr.ip());
        let place = |need| Placement {
            key,
            hash,
            ip,
            need,
        };
        if self.find_hashed(key, hash).is_some() {
            return Ok(place(Need::Nothing));
        }
        if self.pending.contains(key, hash) {
            return Ok(place(Need::Extend));
        }
        self.under_caps(addr)?;
        if self.pending.len() >= MAX_PENDING {
            return Err(Rejected::PendingFull);
        }
        if !self.budget.has_room() {
            return Err(Rejected::TableFull);
        }
        Ok(place(Need::Place))
    }

    /// Reserves a place for the handshake a challenge starts, where
    /// [`could_list`](Self::could_list) (called just before) found it could be listed: a listed
    /// server needs none, a repeat extends the hold.
    pub fn reserve(&mut self, now: Time, p: Placement) -> Result<(), Rejected> {
        match p.need {
            Need::Nothing => {}
            Need::Extend => {
                self.pending.hold(now, p.key, p.hash, &self.hasher);
            }
            Need::Place => {
                if !self.budget.take() {
                    return Err(Rejected::TableFull);
                }
                if self.pending.hold(now, p.key, p.hash, &self.hasher) {
                    count(&mut self.per_ip, p.ip, |h| {
                        h.pending = h.pending.saturating_add(1);
                    });
                }
            }
        }
        Ok(())
    }

    /// Handshakes in progress (holding places).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Gives back the places of lapsed reservations.
    fn lapse_pending(&mut self, now: Time) {
        let (budget, per_ip) = (&mut self.budget, &mut self.per_ip);
        self.pending.lapse(now, 256, &self.hasher, |key| {
            budget.give();
            count(per_ip, IpKey::new(key.addr().ip()), |h| {
                h.pending = h.pending.saturating_sub(1);
            });
        });
    }

    /// Lists or refreshes the server at `addr`.
    pub fn upsert(
        &mut self,
        now: Time,
        addr: SocketAddr,
        family: Family,
        f: &Fields<'_>,
    ) -> Result<Upserted, Rejected> {
        self.upsert_slot(now, addr, family, f).map(|u| u.how)
    }

    /// [`upsert`](Self::upsert), saying where the server is and whether it was a peer's.
    pub fn upsert_slot(
        &mut self,
        now: Time,
        addr: SocketAddr,
        family: Family,
        f: &Fields<'_>,
    ) -> Result<Upsert, Rejected> {
        let key = AddrKey::new(addr);
        let hash = self.hasher.hash_one(key);
        if let Some(slot) = self.find_hashed(key, hash) {
            let refreshed = |old: &Server| Upsert {
                how: Upserted::Refreshed,
                slot,
                was_forwarded: old.is_forwarded(),
            };
            // Intern the new strings before releasing the old, so unchanged ones are not freed.
            let mut server = f.to_server(key, family, now, &mut self.interner);
            let old = record(&self.chunks, slot).copied().unwrap_or(server);
            server.first_seen = old.first_seen;
            // Only probes hide or show a server; what a heartbeat claims cannot.
            server.flags = (server.flags & !flags::HIDDEN) | (old.flags & flags::HIDDEN);
            if let Some(seen) = self.seen.get_mut(slot as usize) {
                *seen = seen_secs(now);
            }
            if server == old {
                // Nothing a list reads changed: no write, no copy, no snapshot needed.
                server.release_strings(&mut self.interner);
                return Ok(refreshed(&old));
            }
            if !same_place(&server, &old) {
                self.removed.push(slot);
                self.added.push(slot);
            }
            if let Some(r) = self.slot_mut(slot) {
                *r = Some(server);
            }
            old.release_strings(&mut self.interner);
            self.changed = true;
            return Ok(refreshed(&old));
        }
        let ip = IpKey::new(addr.ip());
        let net = IpKey::prefix(addr.ip());
        // A reservation made at the challenge becomes the server's place.
        let reserved = self.pending.release(key, hash);
        if !reserved {
            self.under_caps(addr)?;
            if !self.budget.take() {
                return Err(Rejected::TableFull);
            }
        }
        count(&mut self.per_ip, ip, |h| {
            h.listed = h.listed.saturating_add(1);
            if reserved {
                h.pending = h.pending.saturating_sub(1);
            }
        });
        count(&mut self.per_net, net, |c| *c = c.saturating_add(1));
        let server = f.to_server(key, family, now, &mut self.interner);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                // Slot numbers are u32: `max_servers` is far below 2³² (config-checked).
                let s = u32::try_from(self.seen.len()).unwrap_or(u32::MAX);
                self.seen.push(0);
                self.generations.push(0);
                if self.seen.len() > self.chunks.len().saturating_mul(CHUNK) {
                    self.chunks.push(empty_chunk());
                }
                s
            }
        };
        if let Some(r) = self.slot_mut(slot) {
            *r = Some(server);
        }
        let seen = seen_secs(now);
        if let Some(x) = self.seen.get_mut(slot as usize) {
            *x = seen;
        }
        let (chunks, hasher) = (&self.chunks, &self.hasher);
        self.index
            .insert_unique(hash, slot, |&s| hasher.hash_one(slot_key(chunks, s)));
        let at = self.expires_at(seen);
        self.wheel.schedule(
            at,
            Entry {
                slot,
                generation: self.generations.get(slot as usize).copied().unwrap_or(0),
            },
        );
        self.added.push(slot);
        self.changed = true;
        Ok(Upsert {
            how: Upserted::Inserted,
            slot,
            was_forwarded: false,
        })
    }

    /// The slot of the server at `addr`.
    pub fn slot_of(&self, addr: SocketAddr) -> Option<u32> {
        self.find(AddrKey::new(addr))
    }

    /// The record in `slot`, hidden or not.
    pub fn at(&self, slot: u32) -> Option<&Server> {
        record(&self.chunks, slot)
    }

    /// The generation of `slot` if a server holds it (it changes whenever the slot is freed).
    pub fn generation(&self, slot: u32) -> Option<u32> {
        record(&self.chunks, slot)?;
        self.generations.get(slot as usize).copied()
    }

    /// Slots (one past the highest ever used).
    pub fn slots(&self) -> usize {
        self.seen.len()
    }

    /// Slots freed since the last call, with the address each held.
    pub fn take_freed(&mut self) -> Vec<(u32, IpKey)> {
        std::mem::take(&mut self.freed)
    }

    /// Hides (`true`) or shows the server in `slot`; `false` if nothing changed. Either way is a
    /// membership change for the list (the server leaves or joins every reply).
    pub fn set_hidden(&mut self, slot: u32, hidden: bool) -> bool {
        let Some(Some(r)) = self.slot_mut(slot) else {
            return false;
        };
        if r.is_listed() != hidden {
            return false;
        }
        r.flags ^= flags::HIDDEN;
        self.removed.push(slot);
        self.added.push(slot);
        self.changed = true;
        true
    }

    /// What a probe answer says of the server in `slot` now: players, bots, the map and the
    /// name (an attribute change: no list rebuild).
    pub fn refresh_info(&mut self, slot: u32, info: &Probed<'_>) {
        let Some(old) = record(&self.chunks, slot).copied() else {
            return;
        };
        let same_strings =
            self.interner.get(old.map) == info.map && self.interner.get(old.hostname) == info.name;
        if old.players == info.players
            && old.max_players == info.max_players
            && old.bots == info.bots
            && same_strings
        {
            return;
        }
        let mut new = old;
        (new.players, new.max_players, new.bots) = (info.players, info.max_players, info.bots);
        if !same_strings {
            new.map = self.interner.intern(info.map);
            new.hostname = self.interner.intern(info.name);
        }
        if let Some(r) = self.slot_mut(slot) {
            *r = Some(new);
        }
        if !same_strings {
            self.interner.release(old.map);
            self.interner.release(old.hostname);
        }
        self.changed = true;
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
        let Some(server) = self.slot_mut(slot).and_then(Option::take) else {
            return;
        };
        if let Ok(entry) = self
            .index
            .find_entry(self.hasher.hash_one(server.addr), |&s| s == slot)
        {
            entry.remove();
        }
        let ip = IpKey::new(server.addr.addr().ip());
        count(&mut self.per_ip, ip, |h| {
            h.listed = h.listed.saturating_sub(1)
        });
        count(
            &mut self.per_net,
            IpKey::prefix(server.addr.addr().ip()),
            |c| *c = c.saturating_sub(1),
        );
        self.freed.push((slot, ip));
        server.release_strings(&mut self.interner);
        self.budget.give();
        // A new generation makes the wheel entry of this slot stale.
        if let Some(g) = self.generations.get_mut(slot as usize) {
            *g = g.wrapping_add(1);
        }
        self.free.push(slot);
        self.removed.push(slot);
        self.changed = true;
    }

    /// Removes servers silent for the timeout, visiting at most `budget` wheel entries. Returns how
    /// many expired and whether all due work is done.
    pub fn expire(&mut self, now: Time, budget: usize) -> (usize, bool) {
        self.lapse_pending(now);
        let (chunks, seen, generations, expired) = (
            &self.chunks,
            &self.seen,
            &self.generations,
            &mut self.expired,
        );
        let timeout = self.limits.server_timeout_ms;
        let done = self.wheel.advance(now, budget, |e| {
            if generations.get(e.slot as usize) != Some(&e.generation)
                || record(chunks, e.slot).is_none()
            {
                return Due::Done; // the slot was freed (and maybe reused) since
            }
            let last = seen.get(e.slot as usize).copied().unwrap_or(0);
            let at = Time::from_secs(u64::from(last)).plus_millis(timeout);
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

    /// Whether anything a snapshot holds changed since the last [`snapshot`](Self::snapshot).
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// An immutable view for the list (sharing the table's chunks), with the membership changes
    /// since the previous one; the start of a new epoch.
    pub fn snapshot(&mut self) -> Arc<ShardSnapshot> {
        self.changed = false;
        self.epoch = self.epoch.wrapping_add(1);
        Arc::new(ShardSnapshot {
            epoch: self.epoch,
            records: self.chunks.clone(),
            strings: self.interner.snapshot(),
            removed: std::mem::take(&mut self.removed),
            added: std::mem::take(&mut self.added),
        })
    }

    /// A consistent view of every listed server with when it was last heard, for the operator
    /// (the JSON API, the state file). Shares the record and string chunks (`Arc` clones) and
    /// copies the last-heard times (4 bytes a server): cheap enough to take every second.
    pub fn dump(&self) -> ShardDump {
        ShardDump {
            records: self.chunks.clone(),
            strings: self.interner.snapshot(),
            seen: self.seen.clone(),
            timeout_ms: self.limits.server_timeout_ms,
            probes: Vec::new(),
            rejections: Vec::new(),
        }
    }

    /// Lists a server restored from a state file: heard at `heard` (so it expires when it would
    /// have), first seen at `first_seen` (seconds on the table's clock). Caps apply as to any
    /// registration; an address already listed is left as it is.
    pub fn restore(
        &mut self,
        heard: Time,
        first_seen: u32,
        addr: SocketAddr,
        family: Family,
        f: &Fields<'_>,
    ) -> Result<bool, Rejected> {
        if self.find(AddrKey::new(addr)).is_some() {
            return Ok(false);
        }
        self.upsert(heard, addr, family, f)?;
        if let Some(slot) = self.find(AddrKey::new(addr))
            && let Some(Some(r)) = self.slot_mut(slot)
        {
            r.first_seen = first_seen.min(r.first_seen);
        }
        Ok(true)
    }

    /// Replaces the limits (a config reload). A lower `server_timeout` applies from each server's
    /// next expiry check; caps apply to new registrations (servers already listed stay).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Delists every server `drop` says must go (a ban or a game policy changed); how many left.
    pub fn remove_where(&mut self, mut drop: impl FnMut(&Server, &Interner) -> bool) -> usize {
        let doomed: Vec<u32> = self
            .chunks
            .iter()
            .enumerate()
            .flat_map(|(c, chunk)| {
                chunk.iter().enumerate().filter_map(move |(i, s)| {
                    let slot = u32::try_from(c.saturating_mul(CHUNK).saturating_add(i)).ok()?;
                    Some((slot, s.as_ref()?))
                })
            })
            .filter(|(_, s)| drop(s, &self.interner))
            .map(|(slot, _)| slot)
            .collect();
        for &slot in &doomed {
            self.remove_slot(slot);
        }
        doomed.len()
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
                std::mem::size_of::<(IpKey, Held)>().saturating_add(1),
            ),
            size(self.chunks.len(), std::mem::size_of::<Chunk>()),
            size(self.seen.len(), 4),
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
            max_servers_per_net: 4,
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
    fn a_reservation_counts_against_its_address_until_it_lapses_or_is_listed() {
        // limits(): 2 per address.
        let mut t = Table::new(Time::ZERO, limits());
        let now = Time::from_secs(5);
        let reserve = |t: &mut Table, at: Time, s: &str| {
            let p = t.could_list(at, a(s))?;
            t.reserve(at, p)
        };
        assert_eq!(reserve(&mut t, now, "1.1.1.1:1"), Ok(()));
        assert_eq!(
            reserve(&mut t, now, "1.1.1.1:1"),
            Ok(()),
            "a repeat extends"
        );
        assert_eq!(reserve(&mut t, now, "1.1.1.1:2"), Ok(()));
        assert_eq!((t.pending(), t.len()), (2, 0));
        assert!(
            !t.holds(IpKey::new(a("1.1.1.1:1").ip())),
            "nothing listed yet"
        );
        assert_eq!(
            reserve(&mut t, now, "1.1.1.1:3"),
            Err(Rejected::PerIpCap),
            "two handshakes hold the address"
        );
        // One completes: its place becomes the server's, the address still holds two.
        let up = t.upsert(now, a("1.1.1.1:1"), Family::Valve, &f(b"m"));
        assert_eq!(up, Ok(Upserted::Inserted));
        assert_eq!((t.pending(), t.len()), (1, 1));
        assert!(t.holds(IpKey::new(a("1.1.1.1:1").ip())));
        assert_eq!(reserve(&mut t, now, "1.1.1.1:3"), Err(Rejected::PerIpCap));
        // A listed server needs no place.
        assert_eq!(reserve(&mut t, now, "1.1.1.1:1"), Ok(()));
        assert_eq!(t.pending(), 1);
        // The other lapses: its place goes back to the address and the table.
        let later = now.plus_millis(pending::PENDING_HOLD_MS);
        assert_eq!(reserve(&mut t, later, "1.1.1.1:3"), Ok(()));
        assert_eq!((t.pending(), t.len()), (1, 1));
        assert_eq!(
            t.per_ip.get(&IpKey::new(a("1.1.1.1:1").ip())),
            Some(&Held {
                listed: 1,
                pending: 1
            })
        );
        // Delisted and lapsed: nothing is left counted at the address.
        assert!(t.remove(a("1.1.1.1:1")));
        let _ = t.could_list(later.plus_millis(pending::PENDING_HOLD_MS), a("9.9.9.9:1"));
        assert_eq!(t.pending(), 0);
        assert!(t.per_ip.is_empty(), "{:?}", t.per_ip);
    }

    #[test]
    fn one_network_holds_at_most_max_servers_per_net() {
        // limits(): 2 per address, 4 per /24.
        let mut t = Table::new(Time::ZERO, limits());
        let now = Time::from_secs(5);
        let up = |t: &mut Table, s: &str| t.upsert(now, a(s), Family::Valve, &f(b"m"));
        for s in ["1.1.1.1:1", "1.1.1.1:2", "1.1.1.2:1", "1.1.1.2:2"] {
            assert_eq!(up(&mut t, s), Ok(Upserted::Inserted));
        }
        assert_eq!(up(&mut t, "1.1.1.3:1"), Err(Rejected::PerNetCap));
        assert_eq!(t.could_list(now, a("1.1.1.3:1")), Err(Rejected::PerNetCap));
        assert_eq!(
            up(&mut t, "1.1.2.3:1"),
            Ok(Upserted::Inserted),
            "another /24"
        );
        // A server leaving makes room in its network.
        assert!(t.remove(a("1.1.1.1:1")));
        assert_eq!(up(&mut t, "1.1.1.3:1"), Ok(Upserted::Inserted));
    }

    #[test]
    fn a_hidden_server_is_in_the_table_but_in_no_snapshot_and_heartbeats_keep_it_hidden() {
        let mut t = Table::new(Time::ZERO, limits());
        let now = Time::from_secs(5);
        t.upsert(now, a("1.1.1.1:1"), Family::Valve, &f(b"m"))
            .unwrap();
        let slot = t.slot_of(a("1.1.1.1:1")).unwrap();
        t.snapshot();
        assert!(t.set_hidden(slot, true));
        assert!(!t.set_hidden(slot, true), "no change");
        let snap = t.snapshot();
        assert_eq!(
            (snap.removed.as_slice(), snap.added.as_slice()),
            (&[slot][..], &[slot][..])
        );
        assert!(snap.get(slot).is_none() && snap.iter().next().is_none());
        t.upsert(now, a("1.1.1.1:1"), Family::Valve, &f(b"other"))
            .unwrap();
        assert!(
            !t.get(a("1.1.1.1:1")).unwrap().is_listed(),
            "a heartbeat cannot show it"
        );
        assert_eq!(t.dump().slots().count(), 1, "the operator still sees it");
        t.refresh_info(
            slot,
            &Probed {
                players: 3,
                max_players: 9,
                bots: 1,
                map: b"x",
                name: b"n",
            },
        );
        let r = *t.get(a("1.1.1.1:1")).unwrap();
        assert_eq!((r.players, r.max_players, r.bots), (3, 9, 1));
        assert_eq!(t.strings().get(r.map), b"x");
        assert!(t.set_hidden(slot, false));
        assert!(t.snapshot().get(slot).is_some());
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
    fn snapshots_share_records_keep_their_strings_and_carry_membership_changes() {
        let mut t = Table::new(Time::ZERO, limits());
        for s in ["3.0.0.1:5", "1.0.0.1:5", "2.0.0.1:5", "[::2]:5"] {
            t.upsert(Time::from_secs(1), a(s), Family::Valve, &f(b"de_dust"))
                .unwrap();
        }
        assert!(t.changed());
        let snap = t.snapshot();
        assert!(!t.changed());
        assert_eq!(snap.added, [0, 1, 2, 3]);
        assert!(snap.removed.is_empty());
        // The same heartbeat again changes nothing a snapshot holds.
        t.upsert(
            Time::from_secs(5),
            a("1.0.0.1:5"),
            Family::Valve,
            &f(b"de_dust"),
        )
        .unwrap();
        assert!(
            !t.changed(),
            "a refresh that changes nothing changes nothing downstream"
        );
        assert_eq!(t.last_seen(a("1.0.0.1:5")), Some(5));
        // A new map is an attribute change: no membership change.
        t.upsert(
            Time::from_secs(6),
            a("1.0.0.1:5"),
            Family::Valve,
            &f(b"de_nuke"),
        )
        .unwrap();
        let s2 = t.snapshot();
        assert!(s2.added.is_empty() && s2.removed.is_empty());
        assert_eq!(s2.strings.get(s2.get(1).unwrap().map), b"de_nuke");
        assert_eq!(
            snap.strings.get(snap.get(1).unwrap().map),
            b"de_dust",
            "the old view kept"
        );
        for s in ["3.0.0.1:5", "1.0.0.1:5", "2.0.0.1:5", "[::2]:5"] {
            t.remove(a(s));
        }
        let s3 = t.snapshot();
        assert_eq!(s3.removed.len(), 4);
        assert_eq!(s3.iter().count(), 0);
        assert_eq!(snap.iter().count(), 4);
        assert_eq!(snap.strings.get(snap.get(0).unwrap().map), b"de_dust");
    }

    #[test]
    fn a_shared_budget_caps_the_whole_table_across_shards() {
        let budget = Budget::shared(3, 2);
        let mut a1 = Table::with_budget(Time::ZERO, limits(), budget.clone(), usize::MAX);
        let mut b1 = Table::with_budget(Time::ZERO, limits(), budget, usize::MAX);
        let now = Time::from_secs(1);
        assert!(
            a1.upsert(now, a("1.1.1.1:1"), Family::Valve, &f(b"m"))
                .is_ok()
        );
        assert!(
            b1.upsert(now, a("2.2.2.2:1"), Family::Valve, &f(b"m"))
                .is_ok()
        );
        assert!(
            b1.upsert(now, a("2.2.2.2:2"), Family::Valve, &f(b"m"))
                .is_ok()
        );
        assert_eq!(
            a1.upsert(now, a("1.1.1.1:2"), Family::Valve, &f(b"m")),
            Err(Rejected::TableFull)
        );
        b1.remove(a("2.2.2.2:1"));
        assert!(
            a1.upsert(now, a("1.1.1.1:2"), Family::Valve, &f(b"m"))
                .is_ok()
        );
    }

    /// The worst case per server: every string unique and maximal (7 × 255 bytes). The string
    /// budget bounds what they take; past it servers are still listed (with empty strings), and
    /// the table's memory is the records' plus the budget.
    #[test]
    fn unique_maximal_strings_stop_at_the_string_budget() {
        const N: u32 = 4000;
        const STRING_BUDGET: usize = 1 << 20;
        let limits = Limits {
            max_servers: N as usize,
            max_servers_per_ip: 1000,
            allow_private: true,
            ..Limits::default()
        };
        let budget = Budget::shared(limits.max_servers, 1);
        let mut t = Table::with_budget(Time::ZERO, limits, budget, STRING_BUDGET);
        let unique = |i: u32, field: u8| {
            let mut s = format!("{field}-{i}-").into_bytes();
            s.resize(crate::wire::infostring::MAX_VALUE_LEN, b'x');
            s
        };
        for i in 0..N {
            let s: Vec<Vec<u8>> = (0..7).map(|field| unique(i, field)).collect();
            let fields = Fields {
                game: &s[0],
                product: &s[1],
                map: &s[2],
                version: &s[3],
                tags: &s[4],
                gamedata: &s[5],
                hostname: &s[6],
                ..Default::default()
            };
            let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 27015));
            assert!(
                t.upsert(Time::from_secs(1), addr, Family::Valve, &fields)
                    .is_ok()
            );
        }
        assert_eq!(t.len(), N as usize, "every server listed");
        let strings = t.strings();
        assert!(strings.refused() > 0, "the budget was reached");
        assert!(
            strings.held() <= STRING_BUDGET,
            "{} > {STRING_BUDGET}",
            strings.held()
        );
        // Records, index, wheel: ~130 bytes a server at this size; strings: the budget (with the
        // interner's fixed parts: chunk spans and its index).
        let records = 160 * N as usize;
        let strings_bound = STRING_BUDGET + strings.heap_bytes().saturating_sub(strings.held());
        assert!(
            t.heap_bytes() <= records + strings_bound + STRING_BUDGET / 8,
            "{} bytes for {N} servers",
            t.heap_bytes()
        );
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
            let limits = Limits { server_timeout_ms: timeout, max_servers: 1000, max_servers_per_ip: 1000, max_servers_per_net: 1000, allow_private: true };
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
