//! The list a core serves: the merge of every shard's latest snapshot, and the pages cut from it.
//!
//! Costs per query (n = servers listed, p = entries in the answer):
//! - Valve, no filter: a binary search on the shared encoding for the seed, then a slice of it —
//!   O(log n), no copy in the core (the engine sends header + slice + terminator as one datagram).
//! - Valve, filtered: a binary search, then a scan from the seed until the page is full or the list
//!   ends, evaluating the filter on each server and encoding matches into the caller's buffer —
//!   O(servers scanned).
//! - DP `… empty full` with no gametype: encoded once per game, protocol and address families per
//!   epoch, then shared (`Arc`) by every such query until the next merge. Up to
//!   [`MAX_SHARED_DP_LISTS`] such lists per epoch; past that, queries take the filtered path.
//! - DP otherwise: a scan of the DP servers, matches encoded into the caller's buffer — O(n).
//!
//! The shared Valve encoding is built at merge time, O(n); DP lists lazily on first use.

use super::intern::SymTable;
use super::matcher;
use super::record::{AddrKey, Family, Server};
use super::table::ShardSnapshot;
use crate::wire::dp_list::{ListQuery as DpQuery, ResponseWriter};
use crate::wire::filter::Filter;
use crate::wire::valve_list::{ENTRY_LEN, MAX_PAGE_ENTRIES, PAGE_HEADER, Region};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// Most shared DP encodings kept per epoch (distinct game/protocol/family combinations).
pub const MAX_SHARED_DP_LISTS: usize = 64;

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
    Written,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DpKey {
    game: Box<[u8]>,
    protocol: u32,
    ext: bool,
    ipv4: bool,
    ipv6: bool,
}

/// The merged, deduplicated, address-ordered list of one epoch.
#[derive(Debug, Default)]
pub struct List {
    shards: Vec<Arc<ShardSnapshot>>,
    /// Valve-family IPv4 servers in wire order, and their 6-byte entries (the shared encoding).
    valve: Vec<Ref>,
    valve_entries: Arc<[u8]>,
    /// DP servers in wire order (IPv4 first, then IPv6).
    dp: Vec<Ref>,
    dp_shared: HashMap<DpKey, Arc<Packets>>,
}

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
        static NONE: Server = Server::EMPTY;
        let get = |r: &Ref| {
            shards
                .get(r.shard as usize)
                .and_then(|s| s.servers.get(r.idx as usize))
                .unwrap_or(&NONE)
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
        let mut valve = Vec::new();
        let mut dp = Vec::new();
        for r in all {
            let s = get(&r);
            match s.family {
                Family::Valve if s.addr.is_v4() => valve.push(r),
                Family::Valve => {} // the Valve list format carries IPv4 only
                Family::DarkPlaces => dp.push(r),
            }
        }
        let mut entries = Vec::with_capacity(valve.len().saturating_mul(ENTRY_LEN));
        for r in &valve {
            entries.extend_from_slice(&get(r).addr.v4_entry());
        }
        Self {
            valve_entries: entries.into(),
            valve,
            dp,
            dp_shared: HashMap::new(),
            shards,
        }
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

    /// Index of the first Valve server after `seed` (an expired seed still finds the next one).
    fn valve_after(&self, seed: [u8; 6]) -> usize {
        let (chunks, _) = self.valve_entries.as_chunks::<ENTRY_LEN>();
        chunks.partition_point(|e| *e <= seed)
    }

    /// The page after `seed`. Unfiltered queries get a slice of the shared encoding; filtered ones
    /// are encoded into `out` (header, entries, terminator on the last page).
    pub fn valve_page(
        &self,
        region: Region,
        seed: [u8; 6],
        filter: &Filter<'_>,
        out: &mut Vec<u8>,
    ) -> ValvePage {
        let start = self.valve_after(seed);
        let all_regions = matches!(region, Region::All | Region::Unknown(_));
        if filter.is_empty() && all_regions {
            let remaining = self.valve.len().saturating_sub(start);
            let (count, last) = if remaining < MAX_PAGE_ENTRIES {
                (remaining, true)
            } else {
                (MAX_PAGE_ENTRIES, false)
            };
            let from = start.saturating_mul(ENTRY_LEN);
            return ValvePage::Shared {
                entries: self.valve_entries.clone(),
                range: from..from.saturating_add(count.saturating_mul(ENTRY_LEN)),
                last,
            };
        }
        let collapse = filter.collapse_addr_hash();
        let mut last_ip: Option<[u8; 4]> = collapse.then(|| [seed[0], seed[1], seed[2], seed[3]]);
        out.extend_from_slice(&PAGE_HEADER);
        let mut count = 0usize;
        for &r in self.valve.get(start..).unwrap_or_default() {
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
            if count == MAX_PAGE_ENTRIES {
                // A match beyond a full page: this page is not the last.
                return ValvePage::Written;
            }
            out.extend_from_slice(&e);
            count = count.saturating_add(1);
            last_ip = Some(ip);
        }
        if count < MAX_PAGE_ENTRIES {
            out.extend_from_slice(&[0; ENTRY_LEN]);
        }
        // With exactly a full page of matches and nothing after, the next query gets the terminator.
        ValvePage::Written
    }

    /// Answers a `getservers` / `getserversExt`: the shared encoding when the query asks for every
    /// server of its game and protocol, else encoded into `out`.
    pub fn dp_response(
        &mut self,
        q: &DpQuery<'_>,
        max_packet: usize,
        out: &mut Packets,
    ) -> Option<Arc<Packets>> {
        let f = q.filter();
        let game = matcher::dp_game(q.gamename);
        let shareable = f.empty && f.full && f.gametype.is_none();
        let key = DpKey {
            game: game.into(),
            protocol: q.protocol,
            ext: q.ext,
            ipv4: f.ipv4,
            ipv6: f.ipv6,
        };
        if shareable && let Some(p) = self.dp_shared.get(&key) {
            return Some(p.clone());
        }
        let cache = shareable && self.dp_shared.len() < MAX_SHARED_DP_LISTS;
        let mut fresh = Packets::default();
        let target = if cache { &mut fresh } else { out };
        self.encode_dp(game, q.protocol, q.ext, &f, max_packet, target);
        if cache {
            let shared = Arc::new(fresh);
            self.dp_shared.insert(key, shared.clone());
            return Some(shared);
        }
        None
    }

    fn encode_dp(
        &self,
        game: &[u8],
        protocol: u32,
        ext: bool,
        f: &crate::wire::dp_list::QueryFilter<'_>,
        max_packet: usize,
        out: &mut Packets,
    ) {
        let Ok(mut w) = ResponseWriter::new(ext, max_packet, &mut out.bytes, &mut out.ends) else {
            return;
        };
        for &r in &self.dp {
            let Some((s, strings)) = self.server(r) else {
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
            ValvePage::Written => out.to_vec(),
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
            let p = list.valve_page(Region::All, key, &f, &mut out);
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
        let p = list.valve_page(Region::All, seed, &Filter::default(), &mut Vec::new());
        let ValvePage::Shared { range, last, .. } = &p else {
            panic!()
        };
        assert_eq!(range.start, 6 * ENTRY_LEN);
        assert!(!last, "456 left: a full page of 231, no terminator");
        assert_eq!(range.len(), 231 * ENTRY_LEN);
        let first = list.valve_page(Region::All, [0; 6], &Filter::default(), &mut Vec::new());
        let ValvePage::Shared { range, .. } = first else {
            panic!()
        };
        assert_eq!(range, 0..231 * ENTRY_LEN);
    }

    #[test]
    fn dp_shared_lists_are_encoded_once_per_epoch() {
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
        let q = DpQuery::decode(b"\xff\xff\xff\xffgetservers Xonotic 3 empty full\n").unwrap();
        let mut out = Packets::default();
        let a = list.dp_response(&q, 1400, &mut out).unwrap();
        let b = list.dp_response(&q, 1400, &mut out).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "shared, not re-encoded");
        assert!(out.bytes.is_empty());
        let listed: usize = a
            .iter()
            .map(|p| {
                crate::wire::dp_list::ListResponse::decode(p)
                    .unwrap()
                    .servers()
                    .count()
            })
            .sum();
        assert_eq!(listed, 300);
        // Without `empty full`: empty (players 0) and full (players 2 of 2) are left out.
        let q = DpQuery::decode(b"\xff\xff\xff\xffgetservers Xonotic 3").unwrap();
        assert!(list.dp_response(&q, 1400, &mut out).is_none());
        let listed: usize = out
            .iter()
            .map(|p| {
                crate::wire::dp_list::ListResponse::decode(p)
                    .unwrap()
                    .servers()
                    .count()
            })
            .sum();
        assert_eq!(listed, 100);
    }
}
