//! The list builder: every shard's snapshots in, one [`List`] out for every core to share.
//!
//! Sans-IO, so the engine runs it on a thread of its own, off the packet cores, and the
//! simulations run it inline. Each shard's snapshots come in order ([`ListBuilder::apply`]); each
//! carries the slots whose server joined or left the list since the shard's previous one.
//! [`ListBuilder::build`] then:
//! - when only attributes changed (players, map…): a new [`List`] sharing the previous orders and
//!   encodings — O(shards);
//! - when membership changed: the Valve order merged from the old one (minus what left) and what
//!   joined (sorted), its encoding and indexes rebuilt; the DP games that changed re-merged and
//!   re-encoded, the others shared — O(n) off the packet cores, never a full sort.
//!
//! An address held by two shards (impossible while steering keeps a host on one core) is listed
//! once: the copy already listed stays.

use super::list::{DpGroup, DpOrder, List, Packets, Ref, ValveOrder};
use super::record::{AddrKey, Family, Server};
use super::table::ShardSnapshot;
use crate::wire::dp_list::ResponseWriter;
use crate::wire::valve_list::ENTRY_LEN;
use std::collections::{HashMap, HashSet};
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

#[derive(Debug)]
pub struct ListBuilder {
    shards: Vec<Arc<ShardSnapshot>>,
    valve: Arc<ValveOrder>,
    dp: Arc<DpOrder>,
    removed: HashSet<Ref>,
    added: Vec<Ref>,
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

/// Encodes the `empty full` answers of one game's servers (in wire order).
fn encode(refs: &[Ref], shards: &[Arc<ShardSnapshot>], max_packet: usize) -> (Packets, Packets) {
    let mut plain = Packets::default();
    let mut ext = Packets::default();
    if let Ok(mut w) = ResponseWriter::new(false, max_packet, &mut plain.bytes, &mut plain.ends) {
        for s in records(refs, shards).filter(|s| s.addr.is_v4()) {
            let _ = w.push(s.addr.addr());
        }
        w.finish();
    }
    if let Ok(mut w) = ResponseWriter::new(true, max_packet, &mut ext.bytes, &mut ext.ends) {
        for s in records(refs, shards) {
            let _ = w.push(s.addr.addr());
        }
        w.finish();
    }
    (plain, ext)
}

fn record(r: Ref, shards: &[Arc<ShardSnapshot>]) -> Option<&Server> {
    shards.get(r.shard())?.get(r.slot())
}

fn records<'a>(
    refs: &'a [Ref],
    shards: &'a [Arc<ShardSnapshot>],
) -> impl Iterator<Item = &'a Server> {
    refs.iter().filter_map(|&r| record(r, shards))
}

/// `old` (sorted, minus `removed`) merged with `new` (sorted): equal addresses kept once.
fn merge(
    old: &[Ref],
    removed: &HashSet<Ref>,
    new: &[(AddrKey, Ref)],
    shards: &[Arc<ShardSnapshot>],
) -> Vec<Ref> {
    let mut out = Vec::with_capacity(old.len().saturating_add(new.len()));
    let mut kept = old
        .iter()
        .filter(|r| !removed.contains(r))
        .filter_map(|&r| Some((record(r, shards)?.addr, r)))
        .peekable();
    let mut fresh = new.iter().copied().peekable();
    let mut last: Option<AddrKey> = None;
    loop {
        let next = match (kept.peek(), fresh.peek()) {
            (Some(a), Some(b)) if a.0 <= b.0 => kept.next(),
            (Some(_), Some(_)) => fresh.next(),
            (Some(_), None) => kept.next(),
            (None, Some(_)) => fresh.next(),
            (None, None) => break,
        };
        if let Some((key, r)) = next
            && last != Some(key)
        {
            out.push(r);
            last = Some(key);
        }
    }
    out
}

/// The list before any shard published: nothing listed, but every DP query still answered (with
/// one EOT packet).
/// Its epoch is 0: the first list a builder publishes replaces it.
pub fn empty_list(shards: usize, max_packet: usize) -> Arc<List> {
    let b = ListBuilder::new(shards, max_packet);
    Arc::new(List::new(0, b.shards, b.valve, b.dp))
}

impl ListBuilder {
    /// A builder for `shards` shards, encoding DP answers in packets of at most `max_packet`.
    pub fn new(shards: usize, max_packet: usize) -> Self {
        let none = {
            let (plain, ext) = encode(&[], &[], max_packet);
            Arc::new(DpGroup {
                refs: Vec::new(),
                plain: Arc::new(plain),
                ext: Arc::new(ext),
            })
        };
        Self {
            shards: (0..shards.clamp(1, Ref::MAX_SHARDS))
                .map(|_| Arc::new(ShardSnapshot::default()))
                .collect(),
            valve: Arc::new(ValveOrder::default()),
            dp: Arc::new(DpOrder {
                none,
                ..DpOrder::default()
            }),
            removed: HashSet::new(),
            added: Vec::new(),
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
        let Some(held) = self.shards.get_mut(shard) else {
            return;
        };
        if snap.epoch <= held.epoch && held.epoch != 0 {
            return;
        }
        for &slot in &snap.removed {
            if let Some(r) = Ref::new(shard, slot) {
                self.removed.insert(r);
            }
        }
        for &slot in &snap.added {
            if let Some(r) = Ref::new(shard, slot) {
                self.added.push(r);
            }
        }
        *held = snap;
        self.changed = true;
    }

    /// The list as of every snapshot applied, if anything changed since the last one built.
    pub fn build(&mut self) -> Option<Arc<List>> {
        if !self.changed {
            return None;
        }
        self.changed = false;
        if !self.removed.is_empty() || !self.added.is_empty() {
            self.rebuild();
        }
        self.epoch = self.epoch.wrapping_add(1);
        self.stats.publications = self.stats.publications.wrapping_add(1);
        Some(Arc::new(List::new(
            self.epoch,
            self.shards.clone(),
            self.valve.clone(),
            self.dp.clone(),
        )))
    }

    fn rebuild(&mut self) {
        self.stats.rebuilds = self.stats.rebuilds.wrapping_add(1);
        let removed = std::mem::take(&mut self.removed);
        let mut added = std::mem::take(&mut self.added);
        added.sort_unstable();
        added.dedup();
        let shards = &self.shards;
        // What joined, by where it goes: the Valve list or a DP game, each sorted by address.
        let mut valve_new: Vec<(AddrKey, Ref)> = Vec::new();
        let mut dp_new: HashMap<GameKey, Vec<(AddrKey, Ref)>> = HashMap::new();
        for &r in &added {
            let Some(snap) = shards.get(r.shard()) else {
                continue;
            };
            let Some(s) = snap.get(r.slot()) else {
                continue; // joined and left between two snapshots
            };
            match s.family {
                Family::Valve if s.addr.is_v4() => valve_new.push((s.addr, r)),
                Family::Valve => {} // the Valve list format carries IPv4 only
                Family::DarkPlaces => dp_new.entry(dp_key(s, snap)).or_default().push((s.addr, r)),
            }
        }
        // A ref re-added (moved within the list) must leave its old place: treat it as removed.
        let mut gone = removed;
        gone.extend(added.iter().copied());
        // Equal addresses (one server in two shards) in shard order: the lower shard's copy stays.
        valve_new.sort_unstable();
        let valve_touched =
            !valve_new.is_empty() || self.valve.refs.iter().any(|r| gone.contains(r));
        if valve_touched {
            self.valve = Arc::new(valve_order(
                merge(&self.valve.refs, &gone, &valve_new, shards),
                shards,
            ));
        }
        // DP: every game that lost or gained a server is re-merged and re-encoded.
        let mut groups = self.dp.groups.clone();
        let mut touched: HashSet<GameKey> = dp_new.keys().cloned().collect();
        for (k, g) in &self.dp.groups {
            if g.refs.iter().any(|r| gone.contains(r)) {
                touched.insert(k.clone());
            }
        }
        for key in touched {
            let old = groups.get(&key).map(|g| g.refs.clone()).unwrap_or_default();
            let mut new = dp_new.remove(&key).unwrap_or_default();
            new.sort_unstable();
            let refs = merge(&old, &gone, &new, shards);
            if refs.is_empty() {
                groups.remove(&key);
                continue;
            }
            let (plain, ext) = encode(&refs, shards, self.max_packet);
            self.stats.dp_groups_encoded = self.stats.dp_groups_encoded.wrapping_add(1);
            groups.insert(
                key,
                Arc::new(DpGroup {
                    refs,
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
}

/// The Valve list's encoding and indexes for `refs` (in wire order).
fn valve_order(refs: Vec<Ref>, shards: &[Arc<ShardSnapshot>]) -> ValveOrder {
    let mut entries = Vec::with_capacity(refs.len().saturating_mul(ENTRY_LEN));
    let mut order = ValveOrder::default();
    for (pos, &r) in refs.iter().enumerate() {
        let Some(snap) = shards.get(r.shard()) else {
            continue;
        };
        let Some(s) = snap.get(r.slot()) else {
            continue;
        };
        let pos = u32::try_from(pos).unwrap_or(u32::MAX);
        entries.extend_from_slice(&s.addr.v4_entry());
        let game = snap.strings.get(s.game);
        order
            .by_game
            .entry(game.to_ascii_lowercase().into())
            .or_default()
            .push(pos);
        order.by_appid.entry(s.appid).or_default().push(pos);
        order.by_region.entry(s.region).or_default().push(pos);
    }
    order.entries = entries.into();
    order.refs = refs;
    order
}
