//! The list builder: every shard's snapshots in, one [`List`] out for every core to share.
//!
//! Sans-IO, so the engine runs it on a thread of its own, off the packet cores, and the
//! simulations run it inline. Each shard's snapshots come in order ([`ListBuilder::apply`]); each
//! carries the slots whose server joined or left the list since the shard's previous one.
//! [`ListBuilder::build`] then:
//! - when only attributes changed (players, map…): a new [`List`] sharing the previous orders and
//!   encodings — O(shards);
//! - when membership changed: the Valve order merged from the old one (minus what left) and what
//!   joined (sorted), and its indexes carried over through the merge's position map; the DP games
//!   that changed re-merged and re-encoded, the others shared. Every pass reads the previous
//!   order's own keys (the 6-byte entries), never the records: O(n) sequential work plus
//!   O(k log k) for the k that joined, off the packet cores.
//!
//! An address held by two shards (impossible while steering keeps a host on one core) is listed
//! by both: a copy dropped as a duplicate could not come back when the other leaves.

use crate::master::list::{DpGroup, DpOrder, List, Packets, Ref, Valve6Order, ValveOrder};
use crate::master::table::ShardSnapshot;
use crate::master::table::record::{AddrKey, Family, Server};
use crate::wire::dp_list::{ENTRY_V4_LEN, ENTRY_V6_LEN, ResponseWriter};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
#[cfg(test)]
use std::net::{Ipv4Addr, SocketAddrV4};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;

/// What the builder did (for counters and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildStats {
    pub publications: u64,
    /// Publications that rebuilt orders (membership changed).
    pub rebuilds: u64,
    /// DP games re-encoded.
    pub dp_groups_encoded: u64,
}

/// Refs that must leave their place in the list (they left, or moved), as one bit per slot.
#[derive(Debug, Default)]
struct Gone {
    bits: Vec<Vec<u64>>,
    set: Vec<Ref>,
}

impl Gone {
    fn insert(&mut self, r: Ref) {
        let (shard, slot) = (r.shard(), r.slot() as usize);
        if self.bits.len() <= shard {
            self.bits.resize_with(shard.saturating_add(1), Vec::new);
        }
        let Some(b) = self.bits.get_mut(shard) else {
            return;
        };
        if b.len() <= slot / 64 {
            b.resize((slot / 64).saturating_add(1), 0);
        }
        if let Some(w) = b.get_mut(slot / 64) {
            let bit = 1u64 << (slot % 64);
            if *w & bit == 0 {
                *w |= bit;
                self.set.push(r);
            }
        }
    }

    fn contains(&self, r: Ref) -> bool {
        let slot = r.slot() as usize;
        self.bits
            .get(r.shard())
            .and_then(|b| b.get(slot / 64))
            .is_some_and(|w| w & (1u64 << (slot % 64)) != 0)
    }

    /// Empties the set in O(its size), keeping the room.
    fn clear(&mut self) {
        for r in std::mem::take(&mut self.set) {
            let slot = r.slot() as usize;
            if let Some(w) = self
                .bits
                .get_mut(r.shard())
                .and_then(|b| b.get_mut(slot / 64))
            {
                *w = 0;
            }
        }
    }
}

#[derive(Debug)]
pub struct ListBuilder {
    shards: Vec<Arc<ShardSnapshot>>,
    valve: Arc<ValveOrder>,
    valve6: Arc<Valve6Order>,
    dp: Arc<DpOrder>,
    gone: Gone,
    added: Vec<Ref>,
    /// Whether a Valve server left its place since the last build, and the DP games one left.
    valve_gone: bool,
    valve6_gone: bool,
    dp_gone: HashSet<GameKey>,
    changed: bool,
    epoch: u64,
    max_packet: usize,
    stats: BuildStats,
}

/// A DP game: its `gamename` and protocol.
type GameKey = (Box<[u8]>, u32);

/// The DP game a record belongs to.
fn dp_key(s: &Server, snap: &ShardSnapshot) -> GameKey {
    (snap.strings.get(s.game).into(), s.protocol)
}

/// A DP entry's sort key and address: IPv6 address and port.
type Key6 = [u8; 18];

/// What joined one DP game, IPv4 and IPv6, with sort keys.
type Joined = (Vec<([u8; 6], Ref)>, Vec<(Key6, Ref)>);

fn key6(a: &AddrKey) -> Key6 {
    let mut k = [0u8; 18];
    if let (Some(to), Some(from)) = (k.get_mut(..16), a.0.get(1..17)) {
        to.copy_from_slice(from);
    }
    if let (Some(to), Some(from)) = (k.get_mut(16..), a.0.get(17..19)) {
        to.copy_from_slice(from);
    }
    k
}

#[cfg(test)]
fn v4_of(k: &[u8; 6]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(k[0], k[1], k[2], k[3]),
        u16::from_be_bytes([k[4], k[5]]),
    )
}

fn v6_of(k: &Key6) -> SocketAddrV6 {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(k.get(..16).unwrap_or(&[0; 16]));
    SocketAddrV6::new(Ipv6Addr::from(ip), u16::from_be_bytes([k[16], k[17]]), 0, 0)
}

/// Encodes the `empty full` answers of one game (IPv4 entries, then IPv6, each in order).
fn encode(keys4: &[[u8; 6]], keys6: &[Key6], max_packet: usize) -> (Packets, Packets) {
    // Room for every entry and a header per packet, so the buffers grow once.
    let room = |entry_bytes: usize| {
        let packets = entry_bytes
            .checked_div(max_packet)
            .unwrap_or(0)
            .saturating_add(2);
        Packets {
            bytes: Vec::with_capacity(entry_bytes.saturating_add(packets.saturating_mul(32))),
            ends: Vec::with_capacity(packets),
        }
    };
    let v4 = keys4.len().saturating_mul(ENTRY_V4_LEN);
    let mut plain = room(v4);
    let mut ext = room(v4.saturating_add(keys6.len().saturating_mul(ENTRY_V6_LEN)));
    if let Ok(mut w) = ResponseWriter::new(false, max_packet, &mut plain.bytes, &mut plain.ends) {
        for k in keys4 {
            let _ = w.push_v4_bytes(*k);
        }
        w.finish();
    }
    if let Ok(mut w) = ResponseWriter::new(true, max_packet, &mut ext.bytes, &mut ext.ends) {
        for k in keys4 {
            let _ = w.push_v4_bytes(*k);
        }
        for k in keys6 {
            let _ = w.push_v6(v6_of(k));
        }
        w.finish();
    }
    (plain, ext)
}

/// Where an old position went in a merge: `DROPPED` if it left.
const DROPPED: u32 = u32::MAX;

/// The result of merging an order with what joined.
struct Merged<K> {
    refs: Vec<Ref>,
    keys: Vec<K>,
    /// Old position → new position (or [`DROPPED`]).
    old_to: Vec<u32>,
    /// `new[j]` → its new position.
    new_to: Vec<u32>,
}

/// `old` (refs with their keys, in key order) minus `gone`, merged with `new` (sorted by key):
/// one sequential pass that never looks at a record. With `positions`, where every old and new
/// entry went (for carrying indexes over); without, those maps stay empty.
fn merge<K: Ord + Copy>(
    old_refs: &[Ref],
    old_keys: &[K],
    gone: &Gone,
    new: &[(K, Ref)],
    positions: bool,
) -> Merged<K> {
    let n = old_refs.len().saturating_add(new.len());
    let mut m = Merged {
        refs: Vec::with_capacity(n),
        keys: Vec::with_capacity(n),
        old_to: Vec::with_capacity(if positions { old_refs.len() } else { 0 }),
        new_to: Vec::with_capacity(if positions { new.len() } else { 0 }),
    };
    let record = |to: &mut Vec<u32>, p: u32| {
        if positions {
            to.push(p);
        }
    };
    let mut fresh = new.iter().peekable();
    let pos = |m: &Merged<K>| u32::try_from(m.refs.len()).unwrap_or(DROPPED);
    for (&r, &k) in old_refs.iter().zip(old_keys) {
        if gone.contains(r) {
            record(&mut m.old_to, DROPPED);
            continue;
        }
        while let Some(&&(nk, nr)) = fresh.peek() {
            if nk >= k {
                break;
            }
            fresh.next();
            let p = pos(&m);
            record(&mut m.new_to, p);
            m.refs.push(nr);
            m.keys.push(nk);
        }
        let p = pos(&m);
        record(&mut m.old_to, p);
        m.refs.push(r);
        m.keys.push(k);
    }
    for &(nk, nr) in fresh {
        let p = pos(&m);
        record(&mut m.new_to, p);
        m.refs.push(nr);
        m.keys.push(nk);
    }
    m
}

/// An index (positions, ascending) carried through a merge, with the positions that joined it.
fn remap(old: &[u32], old_to: &[u32], joined: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(old.len().saturating_add(joined.len()));
    let mut j = joined.iter().copied().peekable();
    for p in old
        .iter()
        .filter_map(|&p| old_to.get(p as usize).copied())
        .filter(|&p| p != DROPPED)
    {
        while let Some(q) = j.next_if(|&q| q < p) {
            out.push(q);
        }
        out.push(p);
    }
    out.extend(j);
    out
}

/// Every index of `old` carried through the merge, with `joined` (key → new positions, ascending)
/// added; lists left empty are dropped.
fn reindex<K: Eq + Hash + Clone>(
    old: &HashMap<K, Vec<u32>>,
    old_to: &[u32],
    mut joined: HashMap<K, Vec<u32>>,
) -> HashMap<K, Vec<u32>> {
    let mut out = HashMap::with_capacity(old.len().saturating_add(joined.len()));
    for (k, positions) in old {
        let add = joined.remove(k).unwrap_or_default();
        let v = remap(positions, old_to, &add);
        if !v.is_empty() {
            out.insert(k.clone(), v);
        }
    }
    for (k, v) in joined {
        if !v.is_empty() {
            out.insert(k, v);
        }
    }
    out
}

/// The list before any shard published: nothing listed, but every DP query still answered (with
/// one EOT packet).
/// Its epoch is 0: the first list a builder publishes replaces it.
pub fn empty_list(shards: usize, max_packet: usize) -> Arc<List> {
    let b = ListBuilder::new(shards, max_packet);
    Arc::new(List::new(0, b.shards, b.valve, b.valve6, b.dp))
}

impl ListBuilder {
    /// A builder for `shards` shards, encoding DP answers in packets of at most `max_packet`.
    pub fn new(shards: usize, max_packet: usize) -> Self {
        let none = {
            let (plain, ext) = encode(&[], &[], max_packet);
            Arc::new(DpGroup {
                plain: Arc::new(plain),
                ext: Arc::new(ext),
                ..DpGroup::default()
            })
        };
        Self {
            shards: (0..shards.clamp(1, Ref::MAX_SHARDS))
                .map(|_| Arc::new(ShardSnapshot::default()))
                .collect(),
            valve: Arc::new(ValveOrder::default()),
            valve6: Arc::new(Valve6Order::default()),
            dp: Arc::new(DpOrder {
                none,
                ..DpOrder::default()
            }),
            gone: Gone::default(),
            added: Vec::new(),
            valve_gone: false,
            valve6_gone: false,
            dp_gone: HashSet::new(),
            changed: true,
            epoch: 0,
            max_packet,
            stats: BuildStats::default(),
        }
    }

    pub fn stats(&self) -> BuildStats {
        self.stats
    }

    /// Takes shard `shard`'s next snapshot (a shard's snapshots must come in the order taken).
    pub fn apply(&mut self, shard: usize, snap: Arc<ShardSnapshot>) {
        let Some(held) = self.shards.get(shard) else {
            return;
        };
        if snap.epoch <= held.epoch && held.epoch != 0 {
            return;
        }
        // A slot that left or changed leaves the place its previous record had (found in the
        // snapshot held until now: that is what the list was built from).
        for &slot in snap.removed.iter().chain(&snap.added) {
            let Some(r) = Ref::new(shard, slot) else {
                continue;
            };
            if let Some(old) = held.get(slot) {
                self.gone.insert(r);
                match old.family {
                    Family::Valve if old.addr.is_v4() => self.valve_gone = true,
                    Family::Valve => self.valve6_gone = true,
                    Family::DarkPlaces => {
                        self.dp_gone.insert(dp_key(old, held));
                    }
                }
            }
        }
        for &slot in &snap.added {
            if let Some(r) = Ref::new(shard, slot) {
                self.added.push(r);
            }
        }
        if let Some(held) = self.shards.get_mut(shard) {
            *held = snap;
        }
        self.changed = true;
    }

    /// The list as of every snapshot applied, if anything changed since the last one built.
    pub fn build(&mut self) -> Option<Arc<List>> {
        if !self.changed {
            return None;
        }
        self.changed = false;
        if !self.gone.set.is_empty() || !self.added.is_empty() {
            self.rebuild();
        }
        self.epoch = self.epoch.wrapping_add(1);
        self.stats.publications = self.stats.publications.wrapping_add(1);
        Some(Arc::new(List::new(
            self.epoch,
            self.shards.clone(),
            self.valve.clone(),
            self.valve6.clone(),
            self.dp.clone(),
        )))
    }

    fn rebuild(&mut self) {
        self.stats.rebuilds = self.stats.rebuilds.wrapping_add(1);
        let mut added = std::mem::take(&mut self.added);
        added.sort_unstable();
        added.dedup();
        let shards = &self.shards;
        // What joined, by where it goes: the Valve list or a DP game.
        let mut valve_new: Vec<([u8; 6], Ref)> = Vec::new();
        let mut valve6_new: Vec<(Key6, Ref)> = Vec::new();
        let mut dp_new: HashMap<GameKey, Joined> = HashMap::new();
        for &r in &added {
            let Some(snap) = shards.get(r.shard()) else {
                continue;
            };
            let Some(s) = snap.get(r.slot()) else {
                continue; // joined and left between two snapshots
            };
            match s.family {
                Family::Valve if s.addr.is_v4() => valve_new.push((s.addr.v4_entry(), r)),
                // Valve pages carry IPv4 only; Xash3D bursts list IPv6 servers to IPv6 clients.
                Family::Valve => valve6_new.push((key6(&s.addr), r)),
                Family::DarkPlaces => {
                    let (v4, v6) = dp_new.entry(dp_key(s, snap)).or_default();
                    if s.addr.is_v4() {
                        v4.push((s.addr.v4_entry(), r));
                    } else {
                        v6.push((key6(&s.addr), r));
                    }
                }
            }
        }
        if !valve_new.is_empty() || self.valve_gone {
            valve_new.sort_unstable();
            self.valve = Arc::new(valve_order(&self.valve, &self.gone, &valve_new, shards));
        }
        if !valve6_new.is_empty() || self.valve6_gone {
            valve6_new.sort_unstable();
            let m = merge(
                &self.valve6.refs,
                &self.valve6.keys,
                &self.gone,
                &valve6_new,
                false,
            );
            self.valve6 = Arc::new(Valve6Order {
                refs: m.refs,
                keys: m.keys,
            });
        }
        // DP: every game that lost or gained a server is re-merged and re-encoded.
        let mut touched: HashSet<GameKey> = std::mem::take(&mut self.dp_gone);
        touched.extend(dp_new.keys().cloned());
        if !touched.is_empty() {
            let mut groups = self.dp.groups.clone();
            for key in touched {
                let (mut v4, mut v6) = dp_new.remove(&key).unwrap_or_default();
                v4.sort_unstable();
                v6.sort_unstable();
                let old = groups.get(&key).cloned().unwrap_or_default();
                let split = old.keys4.len().min(old.refs.len());
                let (old4, old6) = old.refs.split_at(split);
                let m4 = merge(old4, &old.keys4, &self.gone, &v4, false);
                let m6 = merge(old6, &old.keys6, &self.gone, &v6, false);
                if m4.refs.is_empty() && m6.refs.is_empty() {
                    groups.remove(&key);
                    continue;
                }
                let (plain, ext) = encode(&m4.keys, &m6.keys, self.max_packet);
                self.stats.dp_groups_encoded = self.stats.dp_groups_encoded.wrapping_add(1);
                let mut refs = m4.refs;
                refs.extend_from_slice(&m6.refs);
                groups.insert(
                    key,
                    Arc::new(DpGroup {
                        refs,
                        keys4: m4.keys,
                        keys6: m6.keys,
                        plain: Arc::new(plain),
                        ext: Arc::new(ext),
                    }),
                );
            }
            let len = groups.values().map(|g| g.refs.len()).sum();
            self.dp = Arc::new(DpOrder {
                groups,
                len,
                none: self.dp.none.clone(),
            });
        }
        self.valve_gone = false;
        self.valve6_gone = false;
        self.gone.clear();
    }
}

/// The Valve order after a merge: entries and refs, and each index carried over through the
/// position map with what joined added (the joiners' records are read, no one else's).
fn valve_order(
    old: &ValveOrder,
    gone: &Gone,
    new: &[([u8; 6], Ref)],
    shards: &[Arc<ShardSnapshot>],
) -> ValveOrder {
    let (old_keys, _) = old.entries.as_chunks::<6>();
    let m = merge(&old.refs, old_keys, gone, new, true);
    let mut games: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
    let mut appids: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut regions: HashMap<u8, Vec<u32>> = HashMap::new();
    // Lowercased gamedirs, once per (shard, string) however many servers share one.
    let mut lower: HashMap<(usize, u32), Box<[u8]>> = HashMap::new();
    for (&(_, r), &pos) in new.iter().zip(&m.new_to) {
        let Some(snap) = shards.get(r.shard()) else {
            continue;
        };
        let Some(s) = snap.get(r.slot()) else {
            continue;
        };
        let game = lower
            .entry((r.shard(), s.game.0))
            .or_insert_with(|| snap.strings.get(s.game).to_ascii_lowercase().into());
        games.entry(game.clone()).or_default().push(pos);
        appids.entry(s.appid).or_default().push(pos);
        regions.entry(s.region).or_default().push(pos);
    }
    ValveOrder {
        by_game: reindex(&old.by_game, &m.old_to, games),
        by_appid: reindex(&old.by_appid, &m.old_to, appids),
        by_region: reindex(&old.by_region, &m.old_to, regions),
        entries: m.keys.as_flattened().into(),
        refs: m.refs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::policy::Limits;
    use crate::master::table::{Fields, Table};
    use crate::master::time::Time;
    use crate::wire::dp_list::ListResponse;
    use proptest::prelude::*;
    use std::net::{IpAddr, SocketAddr};

    const GAMES: [&[u8]; 3] = [b"cstrike", b"CStrike", b"Nexuiz"];

    #[derive(Clone, Debug)]
    enum Op {
        /// Server `addr` (of a small space, so they collide) registers or refreshes.
        Upsert {
            shard: usize,
            addr: u8,
            v6: bool,
            dp: bool,
            game: usize,
            protocol: u32,
            region: u8,
            players: u8,
        },
        Remove {
            shard: usize,
            addr: u8,
            v6: bool,
        },
        /// A shard publishes a snapshot.
        Apply(usize),
        Build,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..3usize, any::<u8>(), prop::bool::weighted(0.2), any::<bool>(), 0..3usize, 1..3u32, 0..3u8, 0..3u8)
                .prop_map(|(shard, addr, v6, dp, game, protocol, region, players)| Op::Upsert {
                    shard, addr, v6, dp, game, protocol, region, players
                }),
            3 => (0..3usize, any::<u8>(), prop::bool::weighted(0.2))
                .prop_map(|(shard, addr, v6)| Op::Remove { shard, addr, v6 }),
            2 => (0..3usize).prop_map(Op::Apply),
            1 => Just(Op::Build),
        ]
    }

    fn sock(addr: u8, v6: bool) -> SocketAddr {
        let ip: IpAddr = if v6 {
            format!("2001:db8::{addr:x}").parse().unwrap()
        } else {
            [10, 0, addr / 16, addr % 16].into()
        };
        SocketAddr::new(ip, 27000 + u16::from(addr % 3))
    }

    /// What a list built from scratch of `tables` holds, checked against `list` piece by piece.
    fn check(list: &List, tables: &[Table]) {
        // Valve: every IPv4 Valve server, sorted; refs, entries and indexes agree.
        let mut want: Vec<[u8; 6]> = tables
            .iter()
            .flat_map(|t| t.iter())
            .filter(|s| s.family == Family::Valve && s.addr.is_v4())
            .map(|s| s.addr.v4_entry())
            .collect();
        want.sort_unstable();
        let v = &list.valve;
        assert_eq!(v.entries.as_chunks::<6>().0, &want[..]);
        assert_eq!(v.refs.len(), want.len());
        let mut games: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
        let mut appids: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut regions: HashMap<u8, Vec<u32>> = HashMap::new();
        for (pos, (&r, e)) in v.refs.iter().zip(&want).enumerate() {
            let (s, strings) = list.server(r).expect("a listed ref resolves");
            assert_eq!(&s.addr.v4_entry(), e, "ref and entry agree at {pos}");
            let pos = pos as u32;
            games
                .entry(strings.get(s.game).to_ascii_lowercase().into())
                .or_default()
                .push(pos);
            appids.entry(s.appid).or_default().push(pos);
            regions.entry(s.region).or_default().push(pos);
        }
        assert_eq!(v.by_game, games);
        assert_eq!(v.by_appid, appids);
        assert_eq!(v.by_region, regions);
        // DP: every game's servers, IPv4 then IPv6, each sorted; both encodings carry them.
        let mut groups: HashMap<GameKey, (Vec<[u8; 6]>, Vec<Key6>)> = HashMap::new();
        for t in tables {
            let snap_strings = t.strings();
            for s in t.iter().filter(|s| s.family == Family::DarkPlaces) {
                let g = groups
                    .entry((snap_strings.get(s.game).into(), s.protocol))
                    .or_default();
                if s.addr.is_v4() {
                    g.0.push(s.addr.v4_entry());
                } else {
                    g.1.push(key6(&s.addr));
                }
            }
        }
        assert_eq!(list.dp.groups.len(), groups.len());
        let mut total = 0;
        for (key, (mut k4, mut k6)) in groups {
            k4.sort_unstable();
            k6.sort_unstable();
            let g = list.dp.groups.get(&key).expect("every game has its group");
            assert_eq!((&g.keys4, &g.keys6), (&k4, &k6));
            assert_eq!(g.refs.len(), k4.len() + k6.len());
            for (r, a) in g.refs.iter().zip(
                k4.iter()
                    .map(|k| SocketAddr::V4(v4_of(k)))
                    .chain(k6.iter().map(|k| SocketAddr::V6(v6_of(k)))),
            ) {
                assert_eq!(list.server(*r).unwrap().0.addr.addr(), a);
            }
            let decode = |p: &Packets| -> Vec<SocketAddr> {
                p.iter()
                    .flat_map(|b| {
                        ListResponse::decode(b)
                            .unwrap()
                            .servers()
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
            let plain: Vec<SocketAddr> = k4.iter().map(|k| SocketAddr::V4(v4_of(k))).collect();
            assert_eq!(decode(&g.plain), plain);
            let mut ext = plain.clone();
            ext.extend(k6.iter().map(|k| SocketAddr::V6(v6_of(k))));
            assert_eq!(decode(&g.ext), ext);
            total += g.refs.len();
        }
        assert_eq!(list.dp.len, total);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// However snapshots and builds interleave with joins, leaves, moves between games and
        /// attribute changes, the incremental list is the list built from scratch.
        #[test]
        fn incremental_builds_equal_a_build_from_scratch(ops in prop::collection::vec(op(), 1..400)) {
            let limits = Limits { allow_private: true, max_servers_per_ip: 1000, max_servers_per_net: u16::MAX, ..Limits::default() };
            let mut tables: Vec<Table> = (0..3).map(|_| Table::new(Time::ZERO, limits.clone())).collect();
            let mut b = ListBuilder::new(3, 200);
            for op in ops {
                match op {
                    Op::Upsert { shard, addr, v6, dp, game, protocol, region, players } => {
                        let f = Fields {
                            game: GAMES[game],
                            protocol,
                            region,
                            players,
                            appid: u32::from(region) * 10,
                            ..Fields::default()
                        };
                        let family = if dp { Family::DarkPlaces } else { Family::Valve };
                        // One address lives in one shard (as steering keeps it).
                        let shard = if v6 { shard } else { usize::from(addr) % 3 };
                        let _ = tables[shard].upsert(Time::from_secs(1), sock(addr, v6), family, &f);
                    }
                    Op::Remove { shard, addr, v6 } => {
                        let shard = if v6 { shard } else { usize::from(addr) % 3 };
                        tables[shard].remove(sock(addr, v6));
                    }
                    Op::Apply(shard) => b.apply(shard, tables[shard].snapshot()),
                    Op::Build => {
                        // Bring every shard up to date, then compare.
                        for (i, t) in tables.iter_mut().enumerate() {
                            b.apply(i, t.snapshot());
                        }
                        if let Some(list) = b.build() {
                            check(&list, &tables);
                        }
                    }
                }
            }
            for (i, t) in tables.iter_mut().enumerate() {
                b.apply(i, t.snapshot());
            }
            if let Some(list) = b.build() {
                check(&list, &tables);
            }
        }
    }
}
