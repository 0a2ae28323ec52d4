//! The list every core serves: one per publication, built off the packet cores by the
//! [`ListBuilder`](crate::master::list::builder::ListBuilder) from every shard's snapshot and shared by `Arc` —
//! no core sorts, merges or encodes a whole list.
//!
//! What it holds: each shard's latest snapshot (records and strings, shared copy-on-write with the
//! shard's table), the Valve list (IPv4 Valve-family servers in wire order, their 6-byte encoding
//! and indexes), and the DP list by game (per `gamename` and protocol: servers in wire order and
//! the `empty full` answers, encoded once). The orders are rebuilt only when membership changes;
//! a publication that changed only attributes (players, map…) shares them with the previous one.
//!
//! Work per query is bounded (n = servers listed):
//! - Valve, no filter: a binary search on the shared encoding for the seed, then a slice of it —
//!   O(log n), no copy (the engine sends header + slice + terminator as one datagram).
//! - Valve, filtered: candidates come from the narrowest index the filter allows — by `gamedir`,
//!   `appid`, region, or the address range of `gameaddr` — else the whole list; a binary search
//!   for the seed, then the filter on each candidate until the page is full, at most
//!   [`MAX_SCAN`] candidates. A page cut short by the cap is legal (the client continues from its
//!   last address); a cap reached with no match ends the list there (counted).
//! - DP `… empty full` (no gametype; `getserversExt` for both families): the game's shared
//!   encoding, O(1), never a copy per client.
//! - DP otherwise: a [`DpStream`] — the game's servers filtered and encoded a few packets at a time
//!   as the transmit queue sends them, so neither the first packet nor the memory waits for the
//!   whole list.
//!
//! | module | job |
//! |---|---|
//! | [`builder`] | the list builder: shard snapshots and their membership changes in, one shared list out |
//! | [`matcher`] | Valve filters and DP options evaluated on records; what a candidate costs a scan |

pub mod builder;
pub mod matcher;

use crate::master::table::ShardSnapshot;
use crate::master::table::intern::Strings;
use crate::master::table::record::{AddrKey, Server};
use crate::wire::dp_list::{
    ENTRY_V4_LEN, ENTRY_V6_LEN, ListQuery as DpQuery, QueryFilter, ResponseWriter,
};
use crate::wire::filter::{Condition, Filter, Node};
use crate::wire::valve_list::{ENTRY_LEN, MAX_PAGE_ENTRIES, PAGE_HEADER, Region};
use crate::wire::xash::BurstWriter;
use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

/// Scan work one query may take, in units (candidates × the filter's
/// [`scan_weight`](matcher::scan_weight)): 65,536 candidates of a cheap filter, fewer of a costly
/// one — ~9 ms of a core at most, whatever the filter.
pub const MAX_SCAN: usize = 65_536;
/// Random candidates a walk's start tries before counting every match (rejection sampling: a
/// filter that matches one candidate in eight finds its start in about eight tries).
pub const WALK_START_TRIES: usize = 64;
/// Packets a [`DpStream`] encodes per step.
pub const STREAM_PACKETS: usize = 8;

/// A listed server: its shard (top 6 bits) and slot (low 26 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ref(u32);

impl Ref {
    /// Most shards a list can hold.
    pub const MAX_SHARDS: usize = 64;
    /// Most slots per shard.
    pub const MAX_SLOTS: u32 = 1 << 26;

    pub fn new(shard: usize, slot: u32) -> Option<Ref> {
        let shard = u32::try_from(shard)
            .ok()
            .filter(|s| *s < Self::MAX_SHARDS as u32)?;
        (slot < Self::MAX_SLOTS).then_some(Ref((shard << 26) | slot))
    }

    pub fn shard(self) -> usize {
        (self.0 >> 26) as usize
    }

    pub fn slot(self) -> u32 {
        self.0 & (Self::MAX_SLOTS - 1)
    }
}

/// Packets laid end to end, and where each ends.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Packets {
    pub bytes: Vec<u8>,
    pub ends: Vec<usize>,
}

impl Packets {
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let p = self.bytes.get(start..end).unwrap_or_default();
            start = end;
            p
        })
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// A Valve page, as slices to send back to back in one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValvePage {
    /// The page is `PAGE_HEADER`, `entries[range]`, and the terminator if `last`.
    Shared {
        entries: Arc<[u8]>,
        range: Range<usize>,
        last: bool,
    },
    /// The whole page was encoded into the caller's buffer.
    Written { last: bool },
}

impl ValvePage {
    /// Whether the page ends the list (carries the terminator).
    pub fn is_last(&self) -> bool {
        match self {
            ValvePage::Shared { last, .. } | ValvePage::Written { last } => *last,
        }
    }
}

/// What answering a Valve query took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Candidates the filter was evaluated on.
    pub examined: usize,
    /// [`MAX_SCAN`] stopped the scan.
    pub capped: bool,
    /// Units of work each candidate cost ([`scan_weight`](matcher::scan_weight)).
    pub weight: usize,
}

impl Default for Scan {
    fn default() -> Self {
        Scan {
            examined: 0,
            capped: false,
            weight: 1,
        }
    }
}

impl Scan {
    fn of(filter: &Filter<'_>) -> Scan {
        Scan {
            weight: matcher::scan_weight(filter),
            ..Scan::default()
        }
    }

    /// Candidates this scan may examine under [`MAX_SCAN`] (at least one).
    fn limit(&self) -> usize {
        MAX_SCAN.checked_div(self.weight).unwrap_or(MAX_SCAN).max(1)
    }

    /// Units of work taken: what admission charges.
    pub fn units(&self) -> usize {
        self.examined.saturating_mul(self.weight)
    }
}

/// The Valve list: IPv4 Valve-family servers in wire order, their 6-byte encoding, and positions
/// (ascending) by ASCII-lowercased gamedir, by appid and by region byte.
#[derive(Debug, Default)]
pub struct ValveOrder {
    pub refs: Vec<Ref>,
    pub entries: Arc<[u8]>,
    pub by_game: HashMap<Box<[u8]>, Vec<u32>>,
    pub by_appid: HashMap<u32, Vec<u32>>,
    pub by_region: HashMap<u8, Vec<u32>>,
}

/// The IPv6 Valve-family servers (Xash3D registers over IPv6; Valve pages cannot carry them):
/// refs and their 18-byte keys (address, port), in order. Only Xash3D bursts to IPv6 clients read it.
#[derive(Debug, Default)]
pub struct Valve6Order {
    pub refs: Vec<Ref>,
    pub keys: Vec<[u8; 18]>,
}

/// One DP game (`gamename`, protocol): its servers in wire order (IPv4 first, each family by
/// address), their addresses as sort keys (the builder merges on them, never reading records),
/// and the `empty full` answers encoded once: `getservers` (IPv4) and `getserversExt` (both).
#[derive(Debug, Default)]
pub struct DpGroup {
    pub refs: Vec<Ref>,
    /// Of `refs[..keys4.len()]`: IPv4 address and port, big-endian.
    pub keys4: Vec<[u8; 6]>,
    /// Of the rest: IPv6 address and port.
    pub keys6: Vec<[u8; 18]>,
    pub plain: Arc<Packets>,
    pub ext: Arc<Packets>,
}

/// The DP list, by game, and the answer for a game nobody plays (one EOT packet, each form).
#[derive(Debug, Default)]
pub struct DpOrder {
    pub groups: HashMap<(Box<[u8]>, u32), Arc<DpGroup>>,
    pub len: usize,
    pub none: Arc<DpGroup>,
}

/// The list of one publication.
#[derive(Debug, Default)]
pub struct List {
    /// The builder's publication number.
    pub epoch: u64,
    pub(super) shards: Vec<Arc<ShardSnapshot>>,
    pub(super) valve: Arc<ValveOrder>,
    pub(super) valve6: Arc<Valve6Order>,
    pub(super) dp: Arc<DpOrder>,
}

/// A DP answer: one shared encoding, or a stream encoded as it is sent.
#[derive(Debug)]
pub enum DpReply {
    Shared(Arc<Packets>),
    Stream(Box<DpStream>),
}

impl DpReply {
    /// Bytes the reply sends (for a stream, at most: it is filtered as it goes).
    pub fn bound(&self) -> usize {
        match self {
            DpReply::Shared(p) => p.bytes.len(),
            DpReply::Stream(s) => s.bound,
        }
    }
}

/// A DP query's options, owned (a stream outlives the datagram).
#[derive(Debug, Clone, PartialEq, Eq)]
struct DpOptions {
    empty: bool,
    full: bool,
    gametype: Option<Box<[u8]>>,
    ipv4: bool,
    ipv6: bool,
}

/// A filtered DP answer, encoded [`STREAM_PACKETS`] at a time from the game's servers.
#[derive(Debug)]
pub struct DpStream {
    list: Arc<List>,
    group: Arc<DpGroup>,
    game: Box<[u8]>,
    protocol: u32,
    options: DpOptions,
    ext: bool,
    max_packet: usize,
    /// The next of `group.refs` to look at; past the end once the EOT packet is out.
    next: usize,
    done: bool,
    /// Bytes the whole answer takes at most.
    pub bound: usize,
}

impl DpStream {
    /// Encodes the next packets into `out` (cleared first); `false` once the answer is complete
    /// (the last call wrote the EOT packet).
    pub fn next_packets(&mut self, out: &mut Packets) -> bool {
        out.clear();
        if self.done {
            return false;
        }
        let Ok(mut w) =
            ResponseWriter::new(self.ext, self.max_packet, &mut out.bytes, &mut out.ends)
        else {
            self.done = true;
            return false;
        };
        let filter = QueryFilter {
            empty: self.options.empty,
            full: self.options.full,
            gametype: None,
            ipv4: self.options.ipv4,
            ipv6: self.options.ipv6,
        };
        while let Some(&r) = self.group.refs.get(self.next) {
            let Some((s, strings)) = self.list.server(r) else {
                self.next = self.next.saturating_add(1);
                continue;
            };
            if !dp_wanted(
                &self.game,
                self.protocol,
                &self.options,
                &filter,
                s,
                strings,
            ) {
                self.next = self.next.saturating_add(1);
                continue;
            }
            let len = if s.addr.is_v4() {
                ENTRY_V4_LEN
            } else {
                ENTRY_V6_LEN
            };
            if w.packets() >= STREAM_PACKETS && w.would_start_packet(len) {
                w.close();
                return true;
            }
            let _ = w.push(s.addr.addr());
            self.next = self.next.saturating_add(1);
        }
        w.finish();
        self.done = true;
        true
    }
}

/// Whether a DP query with these options lists `s` (the gametype compared as dpmaster does).
fn dp_wanted(
    game: &[u8],
    protocol: u32,
    o: &DpOptions,
    f: &QueryFilter<'_>,
    s: &Server,
    strings: &Strings,
) -> bool {
    if !matcher::dp_matches(game, protocol, f, s, strings) {
        return false;
    }
    match &o.gametype {
        None => true,
        Some(g) => {
            let tags = strings.get(s.tags);
            let server_gt: &[u8] = if tags.is_empty() { b"0" } else { tags };
            server_gt == &**g
        }
    }
}

/// Where a filtered Valve query looks: every server, some positions of an index, or a range.
enum Candidates<'a> {
    All,
    Positions(&'a [u32]),
    Range(Range<usize>),
}

impl Candidates<'_> {
    fn len(&self, all: usize) -> usize {
        match self {
            Candidates::All => all,
            Candidates::Positions(p) => p.len(),
            Candidates::Range(r) => r.len(),
        }
    }
}

impl List {
    /// A list from its parts (the builder's).
    pub fn new(
        epoch: u64,
        shards: Vec<Arc<ShardSnapshot>>,
        valve: Arc<ValveOrder>,
        valve6: Arc<Valve6Order>,
        dp: Arc<DpOrder>,
    ) -> List {
        List {
            epoch,
            shards,
            valve,
            valve6,
            dp,
        }
    }

    /// The snapshot epoch of every shard this list was built from (0: none yet).
    pub fn shard_epochs(&self) -> Vec<u64> {
        self.shards.iter().map(|s| s.epoch).collect()
    }

    pub(super) fn server(&self, r: Ref) -> Option<(&Server, &Strings)> {
        let s = self.shards.get(r.shard())?;
        Some((s.get(r.slot())?, &s.strings))
    }

    /// Heap bytes of the list's own parts (orders, encodings, indexes); the records and strings it
    /// shares with the tables are theirs ([`Table::heap_bytes`](crate::master::table::Table::heap_bytes)).
    pub fn heap_bytes(&self) -> usize {
        let v = &self.valve;
        let index = |n: usize| n.saturating_mul(4);
        let valve = index(v.refs.len())
            .saturating_add(v.entries.len())
            .saturating_add(v.by_game.values().map(|p| index(p.len())).sum::<usize>())
            .saturating_add(v.by_appid.values().map(|p| index(p.len())).sum::<usize>())
            .saturating_add(v.by_region.values().map(|p| index(p.len())).sum::<usize>());
        let packets = |p: &Packets| {
            p.bytes
                .capacity()
                .saturating_add(p.ends.capacity().saturating_mul(8))
        };
        let dp: usize = self
            .dp
            .groups
            .values()
            .map(|g| {
                index(g.refs.len())
                    .saturating_add(g.keys4.len().saturating_mul(6))
                    .saturating_add(g.keys6.len().saturating_mul(18))
                    .saturating_add(packets(&g.plain))
                    .saturating_add(packets(&g.ext))
            })
            .sum();
        let valve6 = self.valve6.refs.len().saturating_mul(4 + 18);
        valve.saturating_add(valve6).saturating_add(dp)
    }

    /// Servers in the list (Valve IPv4, Valve IPv6 — listed to Xash3D clients over IPv6 — and DP).
    pub fn len(&self) -> usize {
        self.valve
            .refs
            .len()
            .saturating_add(self.valve6.refs.len())
            .saturating_add(self.dp.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Servers on the Valve list (IPv4 only: the page format has no room for IPv6).
    pub fn valve_len(&self) -> usize {
        self.valve.refs.len()
    }

    /// IPv6 Valve-family servers (Xash3D bursts to IPv6 clients).
    pub fn valve6_len(&self) -> usize {
        self.valve6.refs.len()
    }

    /// Servers on the DP list (every game, IPv4 and IPv6).
    pub fn dp_len(&self) -> usize {
        self.dp.len
    }

    /// Every listed server's address, Valve (IPv4, IPv6) then DP, for tests and tools.
    pub fn addrs(&self) -> impl Iterator<Item = AddrKey> + '_ {
        self.valve_addrs()
            .chain(self.valve6_addrs())
            .chain(self.dp_addrs())
    }

    /// The IPv6 Valve-family servers' addresses, in order.
    pub fn valve6_addrs(&self) -> impl Iterator<Item = AddrKey> + '_ {
        self.valve6
            .refs
            .iter()
            .filter_map(|&r| Some(self.server(r)?.0.addr))
    }

    /// The Valve list's addresses, in wire order.
    pub fn valve_addrs(&self) -> impl Iterator<Item = AddrKey> + '_ {
        self.valve
            .refs
            .iter()
            .filter_map(|&r| Some(self.server(r)?.0.addr))
    }

    /// The DP list's addresses, game by game, each game's in wire order.
    pub fn dp_addrs(&self) -> impl Iterator<Item = AddrKey> + '_ {
        self.dp
            .groups
            .values()
            .flat_map(|g| g.refs.iter())
            .filter_map(|&r| Some(self.server(r)?.0.addr))
    }

    /// Each DP game's addresses, in wire order.
    pub fn dp_games(&self) -> impl Iterator<Item = Vec<AddrKey>> + '_ {
        self.dp.groups.values().map(|g| {
            g.refs
                .iter()
                .filter_map(|&r| Some(self.server(r)?.0.addr))
                .collect()
        })
    }

    /// Every listed server with its strings (for tools, the status page, tests).
    pub fn servers(&self) -> impl Iterator<Item = (&Server, &Strings)> + '_ {
        self.valve
            .refs
            .iter()
            .chain(self.valve6.refs.iter())
            .chain(self.dp.groups.values().flat_map(|g| g.refs.iter()))
            .filter_map(|&r| self.server(r))
    }

    /// The 6-byte entry at Valve position `pos`.
    fn entry(&self, pos: usize) -> [u8; ENTRY_LEN] {
        let start = pos.saturating_mul(ENTRY_LEN);
        self.valve
            .entries
            .get(start..start.saturating_add(ENTRY_LEN))
            .and_then(|e| e.try_into().ok())
            .unwrap_or([0; ENTRY_LEN])
    }

    /// Index of the first Valve server after `seed` (an expired seed still finds the next one).
    fn valve_after(&self, seed: [u8; 6]) -> usize {
        let (chunks, _) = self.valve.entries.as_chunks::<ENTRY_LEN>();
        chunks.partition_point(|e| *e <= seed)
    }

    /// The narrowest candidates a filter (and region) allow.
    fn candidates(&self, region: Region, filter: &Filter<'_>) -> Candidates<'_> {
        const NONE: &[u32] = &[];
        let v = &*self.valve;
        let all = v.refs.len();
        let mut best = Candidates::All;
        if let Some(r) = region_byte(region) {
            best = Candidates::Positions(v.by_region.get(&r).map_or(NONE, Vec::as_slice));
        }
        for c in filter.required() {
            let next = match *c {
                Condition::GameDir(g) => Candidates::Positions(
                    v.by_game
                        .get(&*g.to_ascii_lowercase())
                        .map_or(NONE, Vec::as_slice),
                ),
                Condition::AppId(id) => {
                    Candidates::Positions(v.by_appid.get(&id).map_or(NONE, Vec::as_slice))
                }
                Condition::GameAddr(ga) => {
                    let ip = ga.ip.octets();
                    let (chunks, _) = v.entries.as_chunks::<ENTRY_LEN>();
                    let lo = chunks.partition_point(|e| e[..4] < ip[..]);
                    let hi = chunks.partition_point(|e| e[..4] <= ip[..]);
                    Candidates::Range(lo..hi.max(lo))
                }
                _ => continue,
            };
            if next.len(all) < best.len(all) {
                best = next;
            }
        }
        best
    }

    /// Index of the first Valve server at or after `key`.
    fn valve_from(&self, key: [u8; 6]) -> usize {
        let (chunks, _) = self.valve.entries.as_chunks::<ENTRY_LEN>();
        chunks.partition_point(|e| *e < key)
    }

    /// The Valve positions a walk that started at `start` still has to visit after `seed` (the
    /// null address: a first page), as two ranges visited in turn: from the seed to the end of the
    /// list, then — wrapping round — from its beginning to just before `start`. A walk that
    /// started at the null address is plain address order.
    fn walk_ranges(&self, seed: [u8; 6], start: [u8; 6]) -> [Range<usize>; 2] {
        let n = self.valve.refs.len();
        let at_start = self.valve_from(start);
        if seed == [0; 6] {
            [at_start..n, 0..at_start]
        } else if seed >= start {
            [self.valve_after(seed)..n, 0..at_start]
        } else {
            let from = self.valve_after(seed).min(at_start);
            [from..at_start, 0..0]
        }
    }

    /// The positions among `candidates` that fall in `range`, in order.
    fn positions_in<'a>(
        &self,
        candidates: &Candidates<'a>,
        range: Range<usize>,
    ) -> Box<dyn Iterator<Item = usize> + 'a> {
        match candidates {
            Candidates::All => Box::new(range),
            Candidates::Range(r) => {
                let lo = r.start.max(range.start);
                Box::new(lo..r.end.min(range.end).max(lo))
            }
            Candidates::Positions(p) => {
                let lo = p.partition_point(|&x| (x as usize) < range.start);
                let hi = p.partition_point(|&x| (x as usize) < range.end).max(lo);
                Box::new(
                    p.get(lo..hi)
                        .unwrap_or_default()
                        .iter()
                        .map(|&x| x as usize),
                )
            }
        }
    }

    /// The index whose positions are exactly the query's matches, when one index answers the
    /// whole query — the region alone, or one `gamedir` or `appid` over every region: a walk's
    /// start is then one lookup, and its pages examine only matches.
    fn exact_index(&self, region: Region, filter: &Filter<'_>) -> Option<&[u32]> {
        const NONE: &[u32] = &[];
        if filter
            .nodes()
            .iter()
            .any(|n| matches!(n, Node::Group { .. }))
            || filter.collapse_addr_hash()
        {
            return None;
        }
        let mut conditions = filter.conditions().filter(|c| !c.is_neutral());
        let only = conditions.next();
        if conditions.next().is_some() {
            return None;
        }
        let v = &*self.valve;
        match (region_byte(region), only) {
            (Some(r), None) => Some(v.by_region.get(&r).map_or(NONE, Vec::as_slice)),
            (None, Some(Condition::GameDir(g))) => Some(
                v.by_game
                    .get(&*g.to_ascii_lowercase())
                    .map_or(NONE, Vec::as_slice),
            ),
            (None, Some(Condition::AppId(id))) => {
                Some(v.by_appid.get(id).map_or(NONE, Vec::as_slice))
            }
            _ => None,
        }
    }

    /// At most how many candidates answering this query may examine (a walk's start or a page,
    /// a Xash3D burst): what admission weighs before letting it run. An unfiltered query over
    /// every region examines none.
    pub fn scan_estimate(&self, region: Region, filter: &Filter<'_>) -> usize {
        if filter.is_empty() && region_byte(region).is_none() {
            return 0;
        }
        if let Some(p) = self.exact_index(region, filter) {
            return p.len().min(MAX_PAGE_ENTRIES);
        }
        let scan = Scan::of(filter);
        self.candidates(region, filter)
            .len(self.valve.refs.len())
            .min(scan.limit())
            .saturating_mul(scan.weight)
    }

    /// Where a walk for `filter` (and `region`) starts: a match chosen uniformly at random by
    /// `random` (none: `None`). Unfiltered or answered by one index, O(1); otherwise up to
    /// [`WALK_START_TRIES`] random candidates, then one pass of reservoir sampling over what
    /// [`MAX_SCAN`] allows.
    ///
    /// Uniform over the matches, not over the list: the entry that ends the walk's first page is
    /// then one of M whatever the filter, never more likely for a match behind a long gap.
    pub fn valve_walk_start(
        &self,
        region: Region,
        filter: &Filter<'_>,
        random: u64,
    ) -> (Option<[u8; 6]>, Scan) {
        let n = self.valve.refs.len();
        let scan = Scan::default();
        if n == 0 {
            return (None, scan);
        }
        if filter.is_empty() && region_byte(region).is_none() {
            let pos = usize::try_from(random.checked_rem(n as u64).unwrap_or(0)).unwrap_or(0);
            return (Some(self.entry(pos)), scan);
        }
        if let Some(p) = self.exact_index(region, filter) {
            let at = usize::try_from(random.checked_rem(p.len() as u64).unwrap_or(0)).unwrap_or(0);
            return (p.get(at).map(|&pos| self.entry(pos as usize)), scan);
        }
        let candidates = self.candidates(region, filter);
        let mut scan = Scan::of(filter);
        let mut rng = random | 1;
        let mut next = move || {
            // xorshift64
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        // Rejection sampling: a random candidate, kept if it matches — uniform over the matches.
        let count = candidates.len(n);
        for _ in 0..WALK_START_TRIES.min(count) {
            let k = usize::try_from(next().checked_rem(count as u64).unwrap_or(0)).unwrap_or(0);
            let pos = match &candidates {
                Candidates::All => Some(k),
                Candidates::Range(r) => r.start.checked_add(k),
                Candidates::Positions(p) => p.get(k).map(|&x| x as usize),
            };
            scan.examined = scan.examined.saturating_add(1);
            if let Some((s, strings)) = pos
                .and_then(|p| self.valve.refs.get(p))
                .and_then(|&r| self.server(r))
                && matcher::valve_matches(region, filter, s, strings)
            {
                return (Some(s.addr.v4_entry()), scan);
            }
        }
        // Few matches: one pass over the candidates, keeping the k-th match with probability 1/k
        // (reservoir sampling) — uniform over the matches too.
        let limit = scan.limit();
        scan.examined = 0;
        let mut matches = 0u64;
        let mut chosen = None;
        for pos in self.positions_in(&candidates, 0..n) {
            if scan.examined >= limit {
                scan.capped = true;
                break;
            }
            scan.examined = scan.examined.saturating_add(1);
            let Some(&r) = self.valve.refs.get(pos) else {
                break;
            };
            let Some((s, strings)) = self.server(r) else {
                continue;
            };
            if !matcher::valve_matches(region, filter, s, strings) {
                continue;
            }
            matches = matches.saturating_add(1);
            if next().checked_rem(matches) == Some(0) {
                chosen = Some(s.addr.v4_entry());
            }
        }
        scan.examined = scan.examined.saturating_add(WALK_START_TRIES.min(count));
        (chosen, scan)
    }

    /// The page after `seed` of the walk that started at `start` (`[0; 6]`: address order), at
    /// most `capacity` entries (terminator included; at most [`MAX_PAGE_ENTRIES`]). Unfiltered
    /// queries get a slice of the shared encoding when the page does not wrap; otherwise the page
    /// is encoded into `out` (header, entries, terminator on the last page).
    pub fn valve_page(
        &self,
        region: Region,
        seed: [u8; 6],
        start: [u8; 6],
        filter: &Filter<'_>,
        capacity: usize,
        out: &mut Vec<u8>,
    ) -> (ValvePage, Scan) {
        let capacity = capacity.clamp(1, MAX_PAGE_ENTRIES);
        let all_regions = region_byte(region).is_none();
        let [first, then] = self.walk_ranges(seed, start);
        if filter.is_empty() && all_regions {
            let total = first.len().saturating_add(then.len());
            let (count, last) = if total < capacity {
                (total, true)
            } else {
                (capacity, false)
            };
            let from = first.start.saturating_mul(ENTRY_LEN);
            if count <= first.len() {
                let page = ValvePage::Shared {
                    entries: self.valve.entries.clone(),
                    range: from..from.saturating_add(count.saturating_mul(ENTRY_LEN)),
                    last,
                };
                return (page, Scan::default());
            }
            // The page wraps round the end of the list: two slices, copied once.
            let wrapped = count.saturating_sub(first.len());
            out.extend_from_slice(&PAGE_HEADER);
            for r in [first, then.start..then.start.saturating_add(wrapped)] {
                let (a, b) = (
                    r.start.saturating_mul(ENTRY_LEN),
                    r.end.saturating_mul(ENTRY_LEN),
                );
                out.extend_from_slice(self.valve.entries.get(a..b).unwrap_or_default());
            }
            if last {
                out.extend_from_slice(&[0; ENTRY_LEN]);
            }
            return (ValvePage::Written { last }, Scan::default());
        }
        let collapse = filter.collapse_addr_hash();
        let mut last_ip: Option<[u8; 4]> = collapse.then(|| [seed[0], seed[1], seed[2], seed[3]]);
        out.extend_from_slice(&PAGE_HEADER);
        let mut count = 0usize;
        let mut scan = Scan::of(filter);
        let limit = scan.limit();
        let candidates = self.candidates(region, filter);
        let positions = self
            .positions_in(&candidates, first)
            .chain(self.positions_in(&candidates, then));
        for pos in positions {
            if scan.examined >= limit {
                scan.capped = true;
                // Cut short: a partial page is legal, the client continues from its last entry;
                // with no match at all the list ends here.
                let last = count == 0;
                if last {
                    out.extend_from_slice(&[0; ENTRY_LEN]);
                }
                return (ValvePage::Written { last }, scan);
            }
            scan.examined = scan.examined.saturating_add(1);
            let Some(&r) = self.valve.refs.get(pos) else {
                break;
            };
            let Some((s, strings)) = self.server(r) else {
                continue;
            };
            let e = s.addr.v4_entry();
            let ip = [e[0], e[1], e[2], e[3]];
            if collapse && last_ip == Some(ip) {
                continue;
            }
            if !matcher::valve_matches(region, filter, s, strings) {
                continue;
            }
            if count == capacity {
                // A match beyond a full page: this page is not the last.
                return (ValvePage::Written { last: false }, scan);
            }
            out.extend_from_slice(&e);
            count = count.saturating_add(1);
            last_ip = Some(ip);
        }
        // With exactly a full page of matches and nothing after, the next query gets the terminator.
        let last = count < capacity;
        if last {
            out.extend_from_slice(&[0; ENTRY_LEN]);
        }
        (ValvePage::Written { last }, scan)
    }

    /// A Xash3D answer: the whole filtered list as one burst ([`crate::wire::xash`]), IPv6
    /// servers to a client that asked over IPv6 (`v6`), IPv4 ones otherwise. A client that cannot
    /// page gets everything at once, so the scan stops at [`MAX_SCAN`] candidates (the burst then
    /// holds what matched among them; counted by the caller as `scan_capped`).
    pub fn xash_burst(
        &self,
        v6: bool,
        region: Region,
        filter: &Filter<'_>,
        key: Option<u32>,
        out: &mut Packets,
    ) -> Scan {
        out.clear();
        let mut w = BurstWriter::new(v6, key, &mut out.bytes, &mut out.ends);
        let mut scan = Scan::of(filter);
        let limit = scan.limit();
        let collapse = filter.collapse_addr_hash();
        let mut last_ip: Option<IpAddr> = None;
        let mut visit = |r: Ref, scan: &mut Scan| -> bool {
            if scan.examined >= limit {
                scan.capped = true;
                return false;
            }
            scan.examined = scan.examined.saturating_add(1);
            let Some((s, strings)) = self.server(r) else {
                return true;
            };
            if !matcher::valve_matches(region, filter, s, strings) {
                return true;
            }
            let addr = s.addr.addr();
            if collapse {
                if last_ip == Some(addr.ip()) {
                    return true;
                }
                last_ip = Some(addr.ip());
            }
            let _ = w.push(addr);
            true
        };
        if v6 {
            for &r in &self.valve6.refs {
                if !visit(r, &mut scan) {
                    break;
                }
            }
        } else {
            match self.candidates(region, filter) {
                Candidates::All => {
                    for &r in &self.valve.refs {
                        if !visit(r, &mut scan) {
                            break;
                        }
                    }
                }
                Candidates::Range(range) => {
                    for &r in self.valve.refs.get(range).unwrap_or_default() {
                        if !visit(r, &mut scan) {
                            break;
                        }
                    }
                }
                Candidates::Positions(p) => {
                    for &pos in p {
                        let Some(&r) = self.valve.refs.get(pos as usize) else {
                            continue;
                        };
                        if !visit(r, &mut scan) {
                            break;
                        }
                    }
                }
            }
        }
        w.finish();
        scan
    }

    /// Answers a `getservers` / `getserversExt`: the game's shared encoding when the query asks for
    /// every server of its families (`empty full`, no gametype), else a stream of the matches.
    ///
    /// `game` is the game the query means (`Games::query_game`) and `sends` its per-game options
    /// (empty, full servers always listed: `Games::sends`).
    pub fn dp_reply(
        list: &Arc<List>,
        q: &DpQuery<'_>,
        game: &[u8],
        sends: (bool, bool),
        max_packet: usize,
    ) -> DpReply {
        let mut f = q.filter();
        f.empty |= sends.0;
        f.full |= sends.1;
        let group = list
            .dp
            .groups
            .get(&(Box::<[u8]>::from(game), q.protocol))
            .unwrap_or(&list.dp.none)
            .clone();
        let whole = f.empty && f.full && f.gametype.is_none();
        // The builder encoded these with the same `max_packet` (the shard's config).
        if whole && !q.ext {
            return DpReply::Shared(group.plain.clone());
        }
        if whole && q.ext && f.ipv4 && f.ipv6 {
            return DpReply::Shared(group.ext.clone());
        }
        let bound = group
            .refs
            .len()
            .saturating_mul(ENTRY_V6_LEN)
            .saturating_add(max_packet);
        DpReply::Stream(Box::new(DpStream {
            list: list.clone(),
            group,
            game: game.into(),
            protocol: q.protocol,
            options: DpOptions {
                empty: f.empty,
                full: f.full,
                gametype: f.gametype.map(|g| g.value().into()),
                ipv4: f.ipv4,
                ipv6: f.ipv6,
            },
            ext: q.ext,
            max_packet,
            next: 0,
            done: false,
            bound,
        }))
    }
}

/// The region a query asks for, if one (0xFF and unknown bytes ask for every region).
fn region_byte(region: Region) -> Option<u8> {
    match region {
        Region::All | Region::Unknown(_) => None,
        r => Some(u8::from(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DP answer as the service asks for it, with the built-in game properties.
    fn dp_reply(list: &Arc<List>, q: &DpQuery<'_>) -> DpReply {
        let games = crate::master::policy::games::Games::default();
        let game = games.query_game(q.gamename, q.protocol);
        List::dp_reply(list, q, game, games.sends(game), 1400)
    }
    use crate::master::list::builder::ListBuilder;
    use crate::master::policy::Limits;
    use crate::master::table::record::Family;
    use crate::master::table::{Fields, Table};
    use crate::master::time::Time;
    use crate::wire::dp_list::ListResponse;
    use crate::wire::valve_list::{ListPage, NULL_ADDR};
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

    fn limits() -> Limits {
        Limits {
            allow_private: true,
            max_servers_per_ip: 1000,
            max_servers_per_net: u16::MAX,
            ..Limits::default()
        }
    }

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::V4(addr4(i))
    }

    fn addr4(i: u32) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(0x0B00_0000 + i), 27015)
    }

    fn fields(i: u32) -> Fields<'static> {
        Fields {
            game: b"cstrike",
            map: if i.is_multiple_of(2) {
                b"de_dust"
            } else {
                b"cs_office"
            },
            max_players: 16,
            ..Default::default()
        }
    }

    /// The list of these tables (one shard each), as the builder makes it.
    fn build(tables: &mut [&mut Table]) -> Arc<List> {
        let mut b = ListBuilder::new(tables.len(), 1400);
        for (i, t) in tables.iter_mut().enumerate() {
            b.apply(i, t.snapshot());
        }
        b.build().unwrap()
    }

    fn page_bytes(p: &ValvePage, out: &[u8]) -> Vec<u8> {
        match p {
            ValvePage::Shared {
                entries,
                range,
                last,
            } => {
                let mut v = PAGE_HEADER.to_vec();
                v.extend_from_slice(&entries[range.clone()]);
                if *last {
                    v.extend_from_slice(&[0; 6]);
                }
                v
            }
            ValvePage::Written { .. } => out.to_vec(),
        }
    }

    /// Walks every page of a Valve query, returning the addresses in order.
    fn walk(list: &List, filter: &[u8]) -> Vec<SocketAddrV4> {
        let f = Filter::parse(filter).unwrap();
        let mut seed = NULL_ADDR;
        let mut seen = Vec::new();
        for _ in 0..1000 {
            let mut out = Vec::new();
            let key = AddrKey::new(seed.into()).v4_entry();
            let (p, _) = list.valve_page(Region::All, key, [0; 6], &f, MAX_PAGE_ENTRIES, &mut out);
            let bytes = page_bytes(&p, &out);
            let page = ListPage::decode(&bytes).unwrap();
            seen.extend(page.servers());
            if page.is_final() {
                return seen;
            }
            seed = page.next_seed().unwrap_or(seed);
        }
        panic!("paging did not end");
    }

    /// Every packet of a DP reply, the stream stepped to its end.
    fn dp_packets(reply: DpReply) -> Vec<Vec<u8>> {
        match reply {
            DpReply::Shared(p) => p.iter().map(<[u8]>::to_vec).collect(),
            DpReply::Stream(mut s) => {
                let mut all = Vec::new();
                let mut out = Packets::default();
                while s.next_packets(&mut out) {
                    all.extend(out.iter().map(<[u8]>::to_vec));
                }
                all
            }
        }
    }

    fn count(packets: &[Vec<u8>]) -> usize {
        packets
            .iter()
            .map(|p| ListResponse::decode(p).unwrap().servers().count())
            .sum()
    }

    #[test]
    fn two_shards_merge_into_one_order_and_pages_cover_everything_once() {
        let mut a = Table::new(Time::ZERO, limits());
        let mut b = Table::new(Time::ZERO, limits());
        for i in 0..1000u32 {
            let t = if i.is_multiple_of(2) { &mut a } else { &mut b };
            t.upsert(Time::from_secs(1), addr(i), Family::Valve, &fields(i))
                .unwrap();
        }
        // Server 7 also in shard a (impossible with steering): listed by both, so that neither
        // copy leaving can lose it.
        a.upsert(
            Time::from_secs(9),
            addr(7),
            Family::Valve,
            &Fields {
                map: b"newer",
                ..fields(7)
            },
        )
        .unwrap();
        let mut lb = ListBuilder::new(2, 1400);
        lb.apply(0, a.snapshot());
        lb.apply(1, b.snapshot());
        let list = lb.build().unwrap();
        assert_eq!(list.len(), 1001);
        let all = walk(&list, b"");
        assert_eq!(all.len(), 1001);
        assert!(all.windows(2).all(|w| w[0] <= w[1]), "wire order");
        assert_eq!(all.iter().filter(|a| **a == addr4(7)).count(), 2);
        let mut one = all.clone();
        one.dedup();
        assert_eq!(
            one.len(),
            1000,
            "every server, the one in both shards twice"
        );
        // Shard b's copy leaves: shard a's stays listed.
        b.remove(addr(7));
        lb.apply(1, b.snapshot());
        let after = lb.build().unwrap();
        assert_eq!(
            walk(&after, b"").iter().filter(|a| **a == addr4(7)).count(),
            1
        );
        let dust = walk(&list, b"\\map\\de_dust");
        assert_eq!(dust.len(), 500);
        let collapsed = walk(&list, b"\\collapse_addr_hash\\1");
        assert_eq!(collapsed.len(), 1000, "one server per IP here");
    }

    #[test]
    fn the_builder_applies_membership_changes_incrementally() {
        let mut t = Table::new(Time::ZERO, limits());
        let mut b = ListBuilder::new(1, 1400);
        for i in 0..300 {
            t.upsert(Time::from_secs(1), addr(i), Family::Valve, &fields(i))
                .unwrap();
        }
        b.apply(0, t.snapshot());
        let l1 = b.build().unwrap();
        assert_eq!(l1.valve_len(), 300);
        // Nothing new: nothing built.
        assert!(b.build().is_none());
        // An attribute change: a new list, the same order (shared, not rebuilt).
        t.upsert(
            Time::from_secs(2),
            addr(5),
            Family::Valve,
            &Fields {
                players: 9,
                ..fields(5)
            },
        )
        .unwrap();
        b.apply(0, t.snapshot());
        let l2 = b.build().unwrap();
        assert!(
            Arc::ptr_eq(&l1.valve, &l2.valve),
            "order shared across attribute changes"
        );
        assert_eq!(b.stats().rebuilds, 1);
        let (s, _) = l2.server(l2.valve.refs[5]).unwrap();
        assert_eq!(s.players, 9);
        // Removals and additions (a freed slot reused by a new address in the same epoch).
        for i in 0..100 {
            t.remove(addr(i * 3));
        }
        for i in 1000..1050 {
            t.upsert(Time::from_secs(3), addr(i), Family::Valve, &fields(i))
                .unwrap();
        }
        b.apply(0, t.snapshot());
        let l3 = b.build().unwrap();
        let want: Vec<AddrKey> = {
            let mut v: Vec<AddrKey> = t.iter().map(|s| s.addr).collect();
            v.sort();
            v
        };
        assert_eq!(l3.valve_addrs().collect::<Vec<_>>(), want);
        assert_eq!(l3.valve_len(), 250);
        assert_eq!(walk(&l3, b"").len(), 250);
        // A game change moves a server between indexes.
        t.upsert(
            Time::from_secs(4),
            addr(1),
            Family::Valve,
            &Fields {
                game: b"tf",
                ..fields(1)
            },
        )
        .unwrap();
        b.apply(0, t.snapshot());
        let l4 = b.build().unwrap();
        assert_eq!(walk(&l4, b"\\gamedir\\tf").len(), 1);
        assert_eq!(walk(&l4, b"\\gamedir\\cstrike").len(), 249);
    }

    #[test]
    fn an_expired_seed_yields_the_next_address_and_exact_pages() {
        let mut t = Table::new(Time::ZERO, limits());
        for i in (0..462).map(|i| i * 2) {
            t.upsert(Time::from_secs(1), addr(i), Family::Valve, &fields(i))
                .unwrap();
        }
        let list = build(&mut [&mut t]);
        let seed = AddrKey::new(addr(11)).v4_entry(); // never listed: falls between 10 and 12
        let (p, _) = list.valve_page(
            Region::All,
            seed,
            [0; 6],
            &Filter::default(),
            231,
            &mut Vec::new(),
        );
        let ValvePage::Shared { range, last, .. } = &p else {
            panic!()
        };
        assert_eq!(range.start, 6 * ENTRY_LEN);
        assert!(!last, "456 left: a full page of 231, no terminator");
        assert_eq!(range.len(), 231 * ENTRY_LEN);
        let (first, _) = list.valve_page(
            Region::All,
            [0; 6],
            [0; 6],
            &Filter::default(),
            231,
            &mut Vec::new(),
        );
        let ValvePage::Shared { range, .. } = first else {
            panic!()
        };
        assert_eq!(range, 0..231 * ENTRY_LEN);
    }

    #[test]
    fn dp_empty_full_is_shared_and_other_options_stream_exactly() {
        let mut t = Table::new(Time::ZERO, limits());
        for i in 0..3000 {
            let f = Fields {
                game: b"Xonotic",
                protocol: 3,
                players: (i % 3) as u8,
                max_players: 2,
                tags: if i % 5 == 0 { b"ctf" } else { b"" },
                ..Default::default()
            };
            t.upsert(Time::from_secs(1), addr(i), Family::DarkPlaces, &f)
                .unwrap();
        }
        let list = build(&mut [&mut t]);
        let q = DpQuery::decode(b"\xff\xff\xff\xffgetservers Xonotic 3 empty full\n").unwrap();
        let (DpReply::Shared(a), DpReply::Shared(b)) = (dp_reply(&list, &q), dp_reply(&list, &q))
        else {
            panic!("shared")
        };
        assert!(Arc::ptr_eq(&a, &b), "encoded once, by the builder");
        let whole: Vec<Vec<u8>> = a.iter().map(<[u8]>::to_vec).collect();
        assert_eq!(count(&whole), 3000);
        // Without `empty full`: empty (players 0) and full (2 of 2) left out — streamed, in full
        // packets of 196 but the last, EOT on the last only.
        let q = DpQuery::decode(b"\xff\xff\xff\xffgetservers Xonotic 3").unwrap();
        let reply = dp_reply(&list, &q);
        assert!(matches!(reply, DpReply::Stream(_)));
        let packets = dp_packets(reply);
        assert_eq!(count(&packets), 1000);
        let eots: Vec<bool> = packets
            .iter()
            .map(|p| ListResponse::decode(p).unwrap().eot)
            .collect();
        assert_eq!(eots.iter().filter(|e| **e).count(), 1);
        assert!(eots.last().unwrap());
        assert!(packets[..packets.len() - 1].iter().all(|p| p.len() == 1398));
        // A gametype.
        let q = DpQuery::decode(b"\xff\xff\xff\xffgetservers Xonotic 3 empty full gametype=ctf")
            .unwrap();
        assert_eq!(count(&dp_packets(dp_reply(&list, &q))), 600);
        // Another game: one EOT packet.
        let q = DpQuery::decode(b"\xff\xff\xff\xffgetservers Nexuiz 3 empty full").unwrap();
        let none = dp_packets(dp_reply(&list, &q));
        assert_eq!((count(&none), none.len()), (0, 1));
    }

    #[test]
    fn filtered_valve_queries_use_the_narrowest_index_and_the_scan_is_capped() {
        let mut t = Table::new(
            Time::ZERO,
            Limits {
                max_servers_per_ip: 10_000,
                ..limits()
            },
        );
        // 100,000 servers: 99,000 cstrike, 1,000 tf spread through them; regions by i % 8.
        for i in 0..100_000u32 {
            let f = Fields {
                game: if i % 100 == 7 { b"tf" } else { b"cstrike" },
                appid: if i % 100 == 7 { 440 } else { 10 },
                region: (i % 8) as u8,
                map: if i == 99_999 { b"rare" } else { b"de_dust" },
                max_players: 16,
                ..Default::default()
            };
            t.upsert(Time::from_secs(1), addr(i), Family::Valve, &f)
                .unwrap();
        }
        let list = build(&mut [&mut t]);
        let page = |filter: &[u8], region: Region| {
            let f = Filter::parse(filter).unwrap();
            let mut out = Vec::new();
            let (p, scan) = list.valve_page(region, [0; 6], [0; 6], &f, 231, &mut out);
            let n = ListPage::decode(&page_bytes(&p, &out))
                .unwrap()
                .servers()
                .count();
            (n, p.is_last(), scan)
        };
        // By gamedir (any case) and by appid: only tf servers are examined.
        let (n, last, scan) = page(b"\\gamedir\\TF", Region::All);
        assert_eq!((n, last), (231, false));
        assert!(scan.examined <= 232, "{scan:?}");
        let (_, _, scan) = page(b"\\appid\\440\\secure\\0", Region::All);
        assert!(scan.examined <= 232, "{scan:?}");
        // A region: only its servers are examined.
        let (n, last, scan) = page(b"", Region::Asia);
        assert!(n > 0 && !last && scan.examined <= 232);
        // An address: only that host's servers.
        let (n, last, scan) = page(b"\\gameaddr\\11.0.0.5", Region::All);
        assert_eq!((n, last), (1, true));
        assert!(scan.examined <= 2, "{scan:?}");
        // No index for `map`: the scan stops at MAX_SCAN; with no match by then, the list ends.
        let (n, last, scan) = page(b"\\map\\rare", Region::All);
        assert_eq!((n, last), (0, true));
        assert!(scan.capped && scan.examined == MAX_SCAN, "{scan:?}");
        let (n, last, scan) = page(b"\\nor\\1\\map\\de_dust\\map\\rare", Region::All);
        assert_eq!((n, last, scan.capped), (0, true, true));
        let (n, last, scan) = page(b"\\napp\\10", Region::All);
        assert_eq!((n, last), (231, false));
        assert!(scan.examined < MAX_SCAN);
    }

    #[test]
    fn a_smaller_capacity_cuts_pages_shorter() {
        let mut t = Table::new(Time::ZERO, limits());
        for i in 0..500 {
            t.upsert(Time::from_secs(1), addr(i), Family::Valve, &fields(i))
                .unwrap();
        }
        let list = build(&mut [&mut t]);
        let (p, _) = list.valve_page(
            Region::All,
            [0; 6],
            [0; 6],
            &Filter::default(),
            200,
            &mut Vec::new(),
        );
        let ValvePage::Shared { range, last, .. } = p else {
            panic!()
        };
        assert_eq!((range.len() / ENTRY_LEN, last), (200, false));
        let f = Filter::parse(b"\\map\\de_dust").unwrap();
        let mut out = Vec::new();
        let (p, _) = list.valve_page(Region::All, [0; 6], [0; 6], &f, 200, &mut out);
        assert!(!p.is_last());
        assert_eq!(ListPage::decode(&out).unwrap().servers().count(), 200);
    }

    /// Walks every page of a walk that starts at the match `random` picks, the first page holding
    /// `first` entries and the rest `capacity`: the addresses in order.
    fn walk_from(
        list: &List,
        filter: &[u8],
        random: u64,
        first: usize,
        capacity: usize,
    ) -> Vec<SocketAddrV4> {
        let f = Filter::parse(filter).unwrap();
        let (start, _) = list.valve_walk_start(Region::All, &f, random);
        let start = start.unwrap_or([0; 6]);
        let mut seed = NULL_ADDR;
        let mut seen = Vec::new();
        for n in 0..10_000 {
            let mut out = Vec::new();
            let key = AddrKey::new(seed.into()).v4_entry();
            let cap = if n == 0 { first } else { capacity };
            let (p, _) = list.valve_page(Region::All, key, start, &f, cap, &mut out);
            let bytes = page_bytes(&p, &out);
            let page = ListPage::decode(&bytes).unwrap();
            assert!(
                page.len() <= cap.max(1),
                "{} entries for a capacity of {cap}",
                page.len()
            );
            seen.extend(page.servers());
            if page.is_final() {
                return seen;
            }
            seed = page.next_seed().unwrap();
        }
        panic!("the walk did not end");
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Wherever a walk starts and however its pages are cut, it lists every match exactly
        /// once: round the end of the list and back to just before its start.
        #[test]
        fn a_walk_from_any_start_lists_every_match_once(
            n in 0u32..700,
            random in any::<u64>(),
            first in 1usize..20,
            capacity in 2usize..=231,
            filtered in any::<bool>(),
        ) {
            let mut t = Table::new(Time::ZERO, limits());
            for i in 0..n {
                t.upsert(Time::from_secs(1), addr(i), Family::Valve, &fields(i)).unwrap();
            }
            let list = build(&mut [&mut t]);
            let filter: &[u8] = if filtered { b"\\map\\de_dust" } else { b"" };
            let seen = walk_from(&list, filter, random, first, capacity);
            let mut want: Vec<SocketAddrV4> = (0..n)
                .filter(|i| !filtered || i % 2 == 0)
                .map(addr4)
                .collect();
            let mut got = seen.clone();
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
            let unique: std::collections::HashSet<_> = seen.iter().collect();
            prop_assert_eq!(unique.len(), seen.len());
        }
    }

    #[test]
    fn walk_starts_are_uniform_over_the_matches_not_the_gaps() {
        // 10 matches behind one long gap of non-matches and 10 close together: each of the 20 is
        // about as likely a start (a start drawn over positions would favour the first match
        // after the gap).
        let mut t = Table::new(Time::ZERO, limits());
        for i in 0..400u32 {
            let f = Fields {
                map: if !(10..390).contains(&i) {
                    b"de_dust"
                } else {
                    b"cs_office"
                },
                ..fields(i)
            };
            t.upsert(Time::from_secs(1), addr(i), Family::Valve, &f)
                .unwrap();
        }
        let list = build(&mut [&mut t]);
        let f = Filter::parse(b"\\map\\de_dust").unwrap();
        let mut counts: std::collections::HashMap<[u8; 6], u32> = Default::default();
        for r in 0..20_000u64 {
            let random = r.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let (start, scan) = list.valve_walk_start(Region::All, &f, random);
            // Random tries first (1 in 20 matches: about 20), rarely the whole pass after them.
            assert!(scan.examined <= WALK_START_TRIES + 400, "{scan:?}");
            *counts.entry(start.unwrap()).or_default() += 1;
        }
        assert_eq!(counts.len(), 20);
        assert!(
            counts.values().all(|&c| (700..1300).contains(&c)),
            "{counts:?}"
        );
        // No match: no start; no servers: no start.
        let none = Filter::parse(b"\\map\\nowhere").unwrap();
        assert_eq!(list.valve_walk_start(Region::All, &none, 7).0, None);
        // Three matches in 2,000 (one right after a gap of 1,500): the random tries mostly miss,
        // the pass after them picks among the three alike.
        let mut t = Table::new(Time::ZERO, limits());
        for i in 0..2000u32 {
            let f = Fields {
                map: if [3, 1500, 1501].contains(&i) {
                    b"de_dust"
                } else {
                    b"cs_office"
                },
                ..fields(i)
            };
            t.upsert(Time::from_secs(1), addr(i), Family::Valve, &f)
                .unwrap();
        }
        let list = build(&mut [&mut t]);
        let f = Filter::parse(b"\\map\\de_dust").unwrap();
        let mut counts: std::collections::HashMap<[u8; 6], u32> = Default::default();
        for r in 0..3000u64 {
            let (start, _) =
                list.valve_walk_start(Region::All, &f, r.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            *counts.entry(start.unwrap()).or_default() += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(
            counts.values().all(|&c| (850..1150).contains(&c)),
            "{counts:?}"
        );
    }
}
