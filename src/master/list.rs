//! The list a core serves: the merge of every shard's latest snapshot, its indexes, and the pages
//! cut from it.
//!
//! Work per query is bounded (n = servers listed):
//! - Valve, no filter: a binary search on the shared encoding for the seed, then a slice of it —
//!   O(log n), no copy (the engine sends header + slice + terminator as one datagram).
//! - Valve, filtered: candidates come from the narrowest index the filter allows — by `gamedir`,
//!   `appid`, region, or the address range of `gameaddr` — else the whole list; a binary search
//!   for the seed, then the filter on each candidate until the page is full, at most
//!   [`MAX_SCAN`] candidates. A page cut short by the cap is legal (the client continues from its
//!   last address); a cap reached with no match ends the list there (counted).
//! - DP: one encoding per normalised query (game, protocol, options, families) per epoch, made
//!   from the game's index and shared (`Arc`) by every client asking the same — never a copy per
//!   client. At most [`MAX_DP_CACHE_ENTRIES`] encodings and [`MAX_DP_CACHE_BYTES`] per epoch; the
//!   least recently used goes first (a reply in flight keeps its own reference).
//!
//! The shared Valve encoding and the indexes are built at merge time, O(n); DP encodings lazily.

use super::intern::SymTable;
use super::matcher;
use super::record::{AddrKey, Family, Server};
use super::table::ShardSnapshot;
use crate::wire::dp_list::{ListQuery as DpQuery, QueryFilter, ResponseWriter};
use crate::wire::filter::{Condition, Filter};
use crate::wire::valve_list::{ENTRY_LEN, MAX_PAGE_ENTRIES, PAGE_HEADER, Region};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// Candidates a filtered Valve query examines at most.
pub const MAX_SCAN: usize = 65_536;
/// Shared DP encodings kept per epoch, and their bytes.
pub const MAX_DP_CACHE_ENTRIES: usize = 256;
pub const MAX_DP_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// A server in the merged list: which shard snapshot, which index in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ref {
    shard: u32,
    idx: u32,
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Candidates the filter was evaluated on.
    pub examined: usize,
    /// [`MAX_SCAN`] stopped the scan.
    pub capped: bool,
}

/// A DP query reduced to what decides its answer: queries equal here get the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DpKey {
    game: Box<[u8]>,
    protocol: u32,
    ext: bool,
    ipv4: bool,
    ipv6: bool,
    empty: bool,
    full: bool,
    gametype: Option<Box<[u8]>>,
}

#[derive(Debug, Default)]
struct DpCache {
    map: HashMap<DpKey, (Arc<Packets>, u64)>,
    bytes: usize,
    clock: u64,
}

impl DpCache {
    fn get(&mut self, key: &DpKey) -> Option<Arc<Packets>> {
        self.clock = self.clock.wrapping_add(1);
        let clock = self.clock;
        self.map.get_mut(key).map(|(p, used)| {
            *used = clock;
            p.clone()
        })
    }

    fn insert(&mut self, key: DpKey, p: Arc<Packets>) {
        let size = p.bytes.len();
        while !self.map.is_empty()
            && (self.map.len() >= MAX_DP_CACHE_ENTRIES
                || self.bytes.saturating_add(size) > MAX_DP_CACHE_BYTES)
        {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((old, _)) = self.map.remove(&oldest) {
                self.bytes = self.bytes.saturating_sub(old.bytes.len());
            }
        }
        self.bytes = self.bytes.saturating_add(size);
        self.map.insert(key, (p, self.clock));
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

/// The merged, deduplicated, address-ordered list of one epoch.
#[derive(Debug, Default)]
pub struct List {
    shards: Vec<Arc<ShardSnapshot>>,
    /// Valve-family IPv4 servers in wire order, and their 6-byte entries (the shared encoding).
    valve: Vec<Ref>,
    valve_entries: Arc<[u8]>,
    /// Positions in `valve`, ascending, by ASCII-lowercased gamedir, by appid, by region byte.
    valve_by_game: HashMap<Box<[u8]>, Vec<u32>>,
    valve_by_appid: HashMap<u32, Vec<u32>>,
    valve_by_region: HashMap<u8, Vec<u32>>,
    /// DP servers in wire order (IPv4 first, then IPv6).
    dp: Vec<Ref>,
    /// Positions in `dp`, ascending, by (gamename, protocol).
    dp_by_game: HashMap<(Box<[u8]>, u32), Vec<u32>>,
    dp_cache: DpCache,
}

const NO_SERVER: Server = Server::EMPTY;

impl List {
    /// Merges shard snapshots. An address present in two shards (a server whose packets moved
    /// core) is listed once: the copy heard from last wins.
    pub fn merge(shards: Vec<Arc<ShardSnapshot>>) -> Self {
        let mut all: Vec<Ref> = Vec::with_capacity(shards.iter().map(|s| s.servers.len()).sum());
        for (si, s) in shards.iter().enumerate() {
            all.extend((0..s.servers.len()).map(|idx| Ref {
                shard: si as u32,
                idx: idx as u32,
            }));
        }
        // Refs are made just above from these very shards: every one resolves.
        let get = |r: &Ref| {
            shards
                .get(r.shard as usize)
                .and_then(|s| s.servers.get(r.idx as usize))
                .unwrap_or(&NO_SERVER)
        };
        // Each shard is sorted already; a stable sort of the concatenation is a k-way merge in
        // practice (runs are detected), and keeps equal keys in shard order for the dedup below.
        all.sort_by_key(|r| get(r).addr);
        all.dedup_by(|later, earlier| {
            let (l, e) = (get(later), get(earlier));
            if l.addr != e.addr {
                return false;
            }
            if l.last_seen > e.last_seen {
                std::mem::swap(later, earlier);
            }
            true
        });
        let mut list = List {
            shards: Vec::new(),
            ..List::default()
        };
        let mut entries = Vec::with_capacity(all.len().saturating_mul(ENTRY_LEN));
        for r in all {
            let s = get(&r);
            let strings = shards.get(r.shard as usize).map(|s| &s.strings);
            match s.family {
                Family::Valve if s.addr.is_v4() => {
                    let pos = u32::try_from(list.valve.len()).unwrap_or(u32::MAX);
                    list.valve.push(r);
                    entries.extend_from_slice(&s.addr.v4_entry());
                    let game = strings.map_or(&[][..], |t| t.get(s.game));
                    list.valve_by_game
                        .entry(game.to_ascii_lowercase().into())
                        .or_default()
                        .push(pos);
                    list.valve_by_appid.entry(s.appid).or_default().push(pos);
                    list.valve_by_region.entry(s.region).or_default().push(pos);
                }
                Family::Valve => {} // the Valve list format carries IPv4 only
                Family::DarkPlaces => {
                    let pos = u32::try_from(list.dp.len()).unwrap_or(u32::MAX);
                    list.dp.push(r);
                    let game = strings.map_or(&[][..], |t| t.get(s.game));
                    list.dp_by_game
                        .entry((game.into(), s.protocol))
                        .or_default()
                        .push(pos);
                }
            }
        }
        list.valve_entries = entries.into();
        list.shards = shards;
        list
    }

    fn server(&self, r: Ref) -> Option<(&Server, &SymTable)> {
        let s = self.shards.get(r.shard as usize)?;
        Some((s.servers.get(r.idx as usize)?, &s.strings))
    }

    /// Servers in the list (Valve IPv4 + DP).
    pub fn len(&self) -> usize {
        self.valve.len().saturating_add(self.dp.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Servers on the Valve list (IPv4 only: the page format has no room for IPv6).
    pub fn valve_len(&self) -> usize {
        self.valve.len()
    }

    /// Servers on the DP list (every game, IPv4 and IPv6).
    pub fn dp_len(&self) -> usize {
        self.dp.len()
    }

    /// Every listed server's address, Valve then DP, for tests and tools.
    pub fn addrs(&self) -> impl Iterator<Item = AddrKey> + '_ {
        self.valve_addrs().chain(self.dp_addrs())
    }

    /// The Valve list's addresses, in wire order.
    pub fn valve_addrs(&self) -> impl Iterator<Item = AddrKey> + '_ {
        self.valve
            .iter()
            .filter_map(|&r| Some(self.server(r)?.0.addr))
    }

    /// The DP list's addresses, in wire order (IPv4 first).
    pub fn dp_addrs(&self) -> impl Iterator<Item = AddrKey> + '_ {
        self.dp.iter().filter_map(|&r| Some(self.server(r)?.0.addr))
    }

    /// The 6-byte entry at Valve position `pos`.
    fn entry(&self, pos: usize) -> [u8; ENTRY_LEN] {
        let start = pos.saturating_mul(ENTRY_LEN);
        self.valve_entries
            .get(start..start.saturating_add(ENTRY_LEN))
            .and_then(|e| e.try_into().ok())
            .unwrap_or([0; ENTRY_LEN])
    }

    /// Index of the first Valve server after `seed` (an expired seed still finds the next one).
    fn valve_after(&self, seed: [u8; 6]) -> usize {
        let (chunks, _) = self.valve_entries.as_chunks::<ENTRY_LEN>();
        chunks.partition_point(|e| *e <= seed)
    }

    /// The narrowest candidates a filter (and region) allow.
    fn candidates(&self, region: Region, filter: &Filter<'_>) -> Candidates<'_> {
        const NONE: &[u32] = &[];
        let all = self.valve.len();
        let mut best = Candidates::All;
        if let Some(r) = region_byte(region) {
            let p = self.valve_by_region.get(&r).map_or(NONE, Vec::as_slice);
            best = Candidates::Positions(p);
        }
        for c in filter.required() {
            let next = match *c {
                Condition::GameDir(g) => Candidates::Positions(
                    self.valve_by_game
                        .get(&*g.to_ascii_lowercase())
                        .map_or(NONE, Vec::as_slice),
                ),
                Condition::AppId(id) => {
                    Candidates::Positions(self.valve_by_appid.get(&id).map_or(NONE, Vec::as_slice))
                }
                Condition::GameAddr(ga) => {
                    let ip = ga.ip.octets();
                    let (chunks, _) = self.valve_entries.as_chunks::<ENTRY_LEN>();
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

    /// The page after `seed`, at most `capacity` entries (terminator included; at most
    /// [`MAX_PAGE_ENTRIES`]). Unfiltered queries get a slice of the shared encoding; filtered ones
    /// are encoded into `out` (header, entries, terminator on the last page).
    pub fn valve_page(
        &self,
        region: Region,
        seed: [u8; 6],
        filter: &Filter<'_>,
        capacity: usize,
        out: &mut Vec<u8>,
    ) -> (ValvePage, Scan) {
        let capacity = capacity.clamp(2, MAX_PAGE_ENTRIES);
        let all_regions = region_byte(region).is_none();
        if filter.is_empty() && all_regions {
            let start = self.valve_after(seed);
            let remaining = self.valve.len().saturating_sub(start);
            let (count, last) = if remaining < capacity {
                (remaining, true)
            } else {
                (capacity, false)
            };
            let from = start.saturating_mul(ENTRY_LEN);
            let page = ValvePage::Shared {
                entries: self.valve_entries.clone(),
                range: from..from.saturating_add(count.saturating_mul(ENTRY_LEN)),
                last,
            };
            return (page, Scan::default());
        }
        let collapse = filter.collapse_addr_hash();
        let mut last_ip: Option<[u8; 4]> = collapse.then(|| [seed[0], seed[1], seed[2], seed[3]]);
        out.extend_from_slice(&PAGE_HEADER);
        let mut count = 0usize;
        let mut scan = Scan::default();
        let candidates = self.candidates(region, filter);
        let positions: Box<dyn Iterator<Item = usize> + '_> = match candidates {
            Candidates::All => Box::new(self.valve_after(seed)..self.valve.len()),
            Candidates::Range(r) => {
                let start = r.start.max(self.valve_after(seed));
                Box::new(start..r.end.max(start))
            }
            Candidates::Positions(p) => {
                let first = p.partition_point(|&pos| self.entry(pos as usize) <= seed);
                Box::new(
                    p.get(first..)
                        .unwrap_or_default()
                        .iter()
                        .map(|&p| p as usize),
                )
            }
        };
        for pos in positions {
            if scan.examined >= MAX_SCAN {
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
            let Some(&r) = self.valve.get(pos) else { break };
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

    /// Answers a `getservers` / `getserversExt`: the encoding shared by every query that reduces to
    /// the same (game, protocol, options, families), made on first use this epoch.
    pub fn dp_response(&mut self, q: &DpQuery<'_>, max_packet: usize) -> Arc<Packets> {
        let f = q.filter();
        let game = matcher::dp_game(q.gamename);
        let key = DpKey {
            game: game.into(),
            protocol: q.protocol,
            ext: q.ext,
            ipv4: f.ipv4,
            ipv6: f.ipv6,
            empty: f.empty,
            full: f.full,
            gametype: f.gametype.map(|g| g.value().into()),
        };
        if let Some(p) = self.dp_cache.get(&key) {
            return p;
        }
        let mut fresh = Packets::default();
        self.encode_dp(game, q.protocol, q.ext, &f, max_packet, &mut fresh);
        let shared = Arc::new(fresh);
        self.dp_cache.insert(key, shared.clone());
        shared
    }

    fn encode_dp(
        &self,
        game: &[u8],
        protocol: u32,
        ext: bool,
        f: &QueryFilter<'_>,
        max_packet: usize,
        out: &mut Packets,
    ) {
        let Ok(mut w) = ResponseWriter::new(ext, max_packet, &mut out.bytes, &mut out.ends) else {
            return;
        };
        let positions = self
            .dp_by_game
            .get(&(Box::from(game), protocol))
            .map_or(&[][..], Vec::as_slice);
        for &pos in positions {
            let Some((s, strings)) = self.dp.get(pos as usize).and_then(|&r| self.server(r)) else {
                continue;
            };
            if matcher::dp_matches(game, protocol, f, s, strings) {
                // Port 0 and IPv6-in-plain-response are excluded by dp_matches and the policy.
                let _ = w.push(s.addr.addr());
            }
        }
        w.finish();
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
    use crate::master::policy::Limits;
    use crate::master::table::{Fields, Table};
    use crate::master::time::Time;
    use crate::wire::valve_list::{ListPage, NULL_ADDR};
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

    fn limits() -> Limits {
        Limits {
            allow_private: true,
            max_servers_per_ip: 1000,
            ..Limits::default()
        }
    }

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0x0B00_0000 + i), 27015))
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

    fn page_bytes(list: &List, p: &ValvePage, out: &[u8]) -> Vec<u8> {
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
                let _ = list;
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
            let (p, _) = list.valve_page(Region::All, key, &f, MAX_PAGE_ENTRIES, &mut out);
            let bytes = page_bytes(list, &p, &out);
            let page = ListPage::decode(&bytes).unwrap();
            seen.extend(page.servers());
            if page.is_final() {
                return seen;
            }
            seed = page.next_seed().unwrap_or(seed);
        }
        panic!("paging did not end");
    }

    #[test]
    fn merge_dedupes_newest_wins_and_pages_cover_everything_once() {
        let mut a = Table::new(Time::ZERO, limits());
        let mut b = Table::new(Time::ZERO, limits());
        for i in 0..1000u32 {
            let t = if i.is_multiple_of(2) { &mut a } else { &mut b };
            t.upsert(Time::from_secs(1), addr(i), Family::Valve, &fields(i))
                .unwrap();
        }
        // Server 7 also on shard a, heard later there with another map.
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
        let list = List::merge(vec![a.snapshot(), b.snapshot()]);
        assert_eq!(list.len(), 1000);
        let (s, strings) = list.server(list.valve[7]).unwrap();
        assert_eq!(strings.get(s.map), b"newer");
        let all = walk(&list, b"");
        assert_eq!(all.len(), 1000);
        assert!(
            all.windows(2).all(|w| w[0] < w[1]),
            "wire order, no repeats"
        );
        let dust = walk(&list, b"\\map\\de_dust");
        assert_eq!(dust.len(), 500);
        let collapsed = walk(&list, b"\\collapse_addr_hash\\1");
        assert_eq!(collapsed.len(), 1000, "one server per IP here");
    }

    #[test]
    fn an_expired_seed_yields_the_next_address_and_exact_pages() {
        let mut t = Table::new(Time::ZERO, limits());
        for i in (0..462).map(|i| i * 2) {
            t.upsert(Time::from_secs(1), addr(i), Family::Valve, &fields(i))
                .unwrap();
        }
        let list = List::merge(vec![t.snapshot()]);
        let seed = AddrKey::new(addr(11)).v4_entry(); // never listed: falls between 10 and 12
        let (p, _) = list.valve_page(Region::All, seed, &Filter::default(), 231, &mut Vec::new());
        let ValvePage::Shared { range, last, .. } = &p else {
            panic!()
        };
        assert_eq!(range.start, 6 * ENTRY_LEN);
        assert!(!last, "456 left: a full page of 231, no terminator");
        assert_eq!(range.len(), 231 * ENTRY_LEN);
        let (first, _) = list.valve_page(
            Region::All,
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
    fn dp_lists_are_encoded_once_per_normalised_query_and_shared() {
        let mut t = Table::new(Time::ZERO, limits());
        for i in 0..300 {
            let f = Fields {
                game: b"Xonotic",
                protocol: 3,
                players: (i % 3) as u8,
                max_players: 2,
                ..Default::default()
            };
            t.upsert(Time::from_secs(1), addr(i), Family::DarkPlaces, &f)
                .unwrap();
        }
        let mut list = List::merge(vec![t.snapshot()]);
        let count = |p: &Packets| -> usize {
            p.iter()
                .map(|p| {
                    crate::wire::dp_list::ListResponse::decode(p)
                        .unwrap()
                        .servers()
                        .count()
                })
                .sum()
        };
        let q = DpQuery::decode(b"\xff\xff\xff\xffgetservers Xonotic 3 empty full\n").unwrap();
        let a = list.dp_response(&q, 1400);
        // The same query in another spelling (options reordered, qstat's newline dropped).
        let q2 = DpQuery::decode(b"\xff\xff\xff\xffgetservers Xonotic 3 full empty").unwrap();
        let b = list.dp_response(&q2, 1400);
        assert!(Arc::ptr_eq(&a, &b), "shared, not re-encoded");
        assert_eq!(count(&a), 300);
        // Without `empty full`: empty (players 0) and full (players 2 of 2) are left out — and
        // that filtered answer is shared too.
        let q = DpQuery::decode(b"\xff\xff\xff\xffgetservers Xonotic 3").unwrap();
        let c = list.dp_response(&q, 1400);
        assert_eq!(count(&c), 100);
        assert!(Arc::ptr_eq(&c, &list.dp_response(&q, 1400)));
        // Another game: nothing, from its (absent) index, as one EOT packet.
        let q = DpQuery::decode(b"\xff\xff\xff\xffgetservers Nexuiz 3 empty full").unwrap();
        let none = list.dp_response(&q, 1400);
        assert_eq!((count(&none), none.ends.len()), (0, 1));
    }

    #[test]
    fn the_dp_cache_is_bounded_and_forgets_the_least_recently_used() {
        let mut list = List::merge(vec![]);
        let q = |g: &str| {
            [
                &b"\xff\xff\xff\xff"[..],
                format!("getservers Xonotic 3 gametype={g}").as_bytes(),
            ]
            .concat()
        };
        let keep = q("keep");
        let kept = list.dp_response(&DpQuery::decode(&keep).unwrap(), 1400);
        for i in 0..(2 * MAX_DP_CACHE_ENTRIES) {
            let b = q(&i.to_string());
            list.dp_response(&DpQuery::decode(&b).unwrap(), 1400);
            // One query keeps being asked: it stays.
            let again = list.dp_response(&DpQuery::decode(&keep).unwrap(), 1400);
            assert!(Arc::ptr_eq(&kept, &again), "evicted at {i}");
        }
        assert!(list.dp_cache.map.len() <= MAX_DP_CACHE_ENTRIES);
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
        let list = List::merge(vec![t.snapshot()]);
        let page = |filter: &[u8], region: Region| {
            let f = Filter::parse(filter).unwrap();
            let mut out = Vec::new();
            let (p, scan) = list.valve_page(region, [0; 6], &f, 231, &mut out);
            let n = ListPage::decode(&page_bytes(&list, &p, &out))
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
        // With matches before the cap, a partial page (not final) ends at the last match.
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
        let list = List::merge(vec![t.snapshot()]);
        let (p, _) = list.valve_page(
            Region::All,
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
        let (p, _) = list.valve_page(Region::All, [0; 6], &f, 200, &mut out);
        assert!(!p.is_last());
        assert_eq!(ListPage::decode(&out).unwrap().servers().count(), 200);
    }
}
