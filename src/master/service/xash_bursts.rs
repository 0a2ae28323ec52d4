//! Xash3D bursts kept for the list they were built from (issue 23). A Xash3D client reads the
//! whole filtered list at once, and the clients of a game send the same filter: the burst is built
//! once per list and filter (a scan of every candidate) and each query gets a copy with its own
//! key written in ([`rekey_burst`](crate::wire::xash::rekey_burst)). Dropped when a new list is
//! installed.

use crate::master::list::{Packets, Scan};
use crate::wire::valve_list::Region;
use std::sync::Arc;

/// Bursts kept per core: the filters of the few games a master serves, and then some.
pub const MAX_XASH_BURSTS: usize = 16;
/// Bytes of bursts kept per core (a 1M-server burst is ~6 MB).
pub const MAX_XASH_BURST_BYTES: usize = 32 << 20;

/// What a burst depends on besides the list: the family asked over, the region, whether it is
/// keyed, and the filter without its `\key\` pair.
#[derive(Debug, PartialEq, Eq)]
pub struct BurstKey {
    pub v6: bool,
    pub region: Region,
    pub keyed: bool,
    pub filter: Box<[u8]>,
}

impl BurstKey {
    pub fn new(v6: bool, region: Region, keyed: bool, raw_filter: &[u8]) -> BurstKey {
        BurstKey {
            v6,
            region,
            keyed,
            filter: without_key(raw_filter).into_boxed_slice(),
        }
    }
}

/// A raw `\k\v…` filter without its `\key\<hex>` pair (the only part that differs per client).
fn without_key(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut parts = raw.split(|&b| b == b'\\');
    // Before the first backslash (empty in a well-formed filter): kept as it is.
    if let Some(head) = parts.next() {
        out.extend_from_slice(head);
    }
    while let Some(k) = parts.next() {
        let v = parts.next();
        if k == b"key" && v.is_some() {
            continue;
        }
        out.push(b'\\');
        out.extend_from_slice(k);
        if let Some(v) = v {
            out.push(b'\\');
            out.extend_from_slice(v);
        }
    }
    out
}

#[derive(Debug)]
struct Kept {
    key: BurstKey,
    packets: Arc<Packets>,
    scan: Scan,
    used: u64,
}

/// The bursts of one core's current list, least recently used dropped first.
#[derive(Debug, Default)]
pub struct XashBursts {
    kept: Vec<Kept>,
    bytes: usize,
    clock: u64,
}

impl XashBursts {
    /// The burst for `key` and what building it scanned, if kept.
    pub fn get(&mut self, key: &BurstKey) -> Option<(Arc<Packets>, Scan)> {
        self.clock = self.clock.wrapping_add(1);
        let now = self.clock;
        let k = self.kept.iter_mut().find(|k| k.key == *key)?;
        k.used = now;
        Some((k.packets.clone(), k.scan))
    }

    /// Keeps a burst just built (unless it alone is over the byte bound).
    pub fn insert(&mut self, key: BurstKey, packets: Arc<Packets>, scan: Scan) {
        let size = packets.bytes.len().saturating_add(key.filter.len());
        if size > MAX_XASH_BURST_BYTES {
            return;
        }
        while !self.kept.is_empty()
            && (self.kept.len() >= MAX_XASH_BURSTS
                || self.bytes.saturating_add(size) > MAX_XASH_BURST_BYTES)
        {
            let oldest = self
                .kept
                .iter()
                .enumerate()
                .min_by_key(|(_, k)| k.used)
                .map_or(0, |(i, _)| i);
            let k = self.kept.swap_remove(oldest);
            self.bytes = self
                .bytes
                .saturating_sub(k.packets.bytes.len().saturating_add(k.key.filter.len()));
        }
        self.clock = self.clock.wrapping_add(1);
        self.bytes = self.bytes.saturating_add(size);
        self.kept.push(Kept {
            key,
            packets,
            scan,
            used: self.clock,
        });
    }

    /// A new list: every burst kept is stale.
    pub fn clear(&mut self) {
        self.kept.clear();
        self.bytes = 0;
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(n: usize) -> Arc<Packets> {
        Arc::new(Packets {
            bytes: vec![0; n],
            ends: vec![n],
        })
    }

    #[test]
    fn the_key_pair_is_all_that_differs_between_clients() {
        // The engine's query filter (xash3d-fwgs masterlist.c) from two clients.
        let a = BurstKey::new(
            false,
            Region::All,
            true,
            b"\\gamedir\\valve\\clver\\0.21\\nat\\0\\key\\9be5942b",
        );
        let b = BurstKey::new(
            false,
            Region::All,
            true,
            b"\\gamedir\\valve\\key\\1\\clver\\0.21\\nat\\0",
        );
        assert_eq!(&*a.filter, b"\\gamedir\\valve\\clver\\0.21\\nat\\0");
        assert_eq!(a, b, "wherever the key pair is");
        // Order matters (kept as sent: another order is another entry, never a wrong answer).
        let reordered = BurstKey::new(
            false,
            Region::All,
            true,
            b"\\clver\\0.21\\gamedir\\valve\\nat\\0\\key\\1",
        );
        assert_ne!(a, reordered);
        let c = BurstKey::new(
            false,
            Region::All,
            true,
            b"\\gamedir\\valve\\clver\\0.21\\nat\\0\\key\\1",
        );
        assert_eq!(a, c);
        assert_ne!(a, BurstKey::new(true, Region::All, true, &a.filter));
        assert_ne!(a, BurstKey::new(false, Region::All, false, &a.filter));
        assert_ne!(a, BurstKey::new(false, Region::Europe, true, &a.filter));
        // A value named key is not a key pair; a dangling `\key` is kept.
        assert_eq!(without_key(b"\\map\\key\\key\\5"), b"\\map\\key");
        assert_eq!(without_key(b"\\nat\\0\\key"), b"\\nat\\0\\key");
    }

    #[test]
    fn kept_within_count_and_bytes_least_recently_used_dropped() {
        let mut x = XashBursts::default();
        let k = |i: u8| BurstKey::new(false, Region::All, true, &[b'\\', b'a', b'\\', i]);
        for i in 0..MAX_XASH_BURSTS as u8 {
            x.insert(k(i), packets(10), Scan::default());
        }
        assert!(x.get(&k(0)).is_some()); // 0 used: 1 is now the least recent
        x.insert(k(200), packets(10), Scan::default());
        assert_eq!(x.len(), MAX_XASH_BURSTS);
        assert!(x.get(&k(1)).is_none());
        assert!(x.get(&k(0)).is_some() && x.get(&k(200)).is_some());
        // Bytes: a burst over the bound is not kept; big ones push the others out.
        x.insert(k(201), packets(MAX_XASH_BURST_BYTES + 1), Scan::default());
        assert!(x.get(&k(201)).is_none());
        // Exactly the bound with its 4-byte filter: everything else goes.
        x.insert(k(202), packets(MAX_XASH_BURST_BYTES - 4), Scan::default());
        assert!(x.get(&k(202)).is_some());
        assert_eq!(x.len(), 1);
        x.clear();
        assert!(x.is_empty() && x.get(&k(202)).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_filter_loses_exactly_its_key_pairs(
            pairs in proptest::collection::vec(
                (proptest::sample::select(vec!["key", "gamedir", "clver", "nat", "map"]), "[a-z0-9.]{0,8}"),
                0..8,
            )
        ) {
            let raw: String = pairs.iter().map(|(k, v)| format!("\\{k}\\{v}")).collect();
            let kept: String = pairs
                .iter()
                .filter(|(k, _)| *k != "key")
                .map(|(k, v)| format!("\\{k}\\{v}"))
                .collect();
            proptest::prop_assert_eq!(without_key(raw.as_bytes()), kept.as_bytes());
            // Twice is once.
            proptest::prop_assert_eq!(without_key(kept.as_bytes()), kept.as_bytes());
        }

        #[test]
        fn no_bytes_panic_it(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let out = without_key(&raw);
            proptest::prop_assert!(out.len() <= raw.len());
        }
    }
}
