//! A map from source address (or network prefix) to per-source state, with a fixed capacity.
//!
//! Anyone on the Internet chooses the keys (a spoofer has 2³² of them), so the map never grows
//! past `max` entries: inserting into a full map first evicts the least valuable of a few entries
//! sampled at random. The caller says what an entry is worth — an entry that holds nothing a fresh
//! one would not (full buckets, no proof in progress) is worth nothing and goes first — or that it
//! must never be evicted (`None`: a fined source, a validated one; forgetting it would hand a
//! spoofer a fresh budget). When no sampled entry may go, nothing is inserted and the caller is
//! told so: under a flood of a million spoofed sources the map forgets the flood, never the state
//! that matters. Memory is constant once full: no allocation per insert after that.

use crate::master::policy::IpKey;
use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};

/// Entries sampled to choose one to evict (twice this many when the first ones are all protected).
pub const EVICTION_SAMPLE: usize = 8;

#[derive(Debug)]
pub struct BoundedMap<V> {
    /// Key → slot, hashing each slot's key (stored once, in `keys`). Randomly keyed: the keys are
    /// chosen by whoever sends packets.
    index: HashTable<u32>,
    hasher: RandomState,
    keys: Vec<IpKey>,
    values: Vec<V>,
    max: usize,
    /// xorshift state for sampling (not security-relevant: which of the sampled entries goes is
    /// decided by worth).
    rng: u64,
    evicted: u64,
    refused: u64,
}

impl<V> BoundedMap<V> {
    /// A map of at most `max` entries (at least 1). Space for all of them is reserved up front, so
    /// the memory a flood can make the map use is what it uses from the start.
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        let hasher = RandomState::new();
        let seed = hasher.hash_one(max) | 1;
        Self {
            // Twice the entries: with at most half its room used, the table cleans out the
            // tombstones evictions leave by rehashing in place, never by growing.
            index: HashTable::with_capacity(max.saturating_mul(2)),
            hasher,
            keys: Vec::with_capacity(max),
            values: Vec::with_capacity(max),
            max,
            rng: seed,
            evicted: 0,
            refused: 0,
        }
    }

    fn find(&self, key: &IpKey) -> Option<u32> {
        let keys = &self.keys;
        self.index
            .find(self.hasher.hash_one(key), |&s| {
                keys.get(s as usize).is_some_and(|k| k == key)
            })
            .copied()
    }

    pub fn get_mut(&mut self, key: &IpKey) -> Option<&mut V> {
        let slot = self.find(key)?;
        self.values.get_mut(slot as usize)
    }

    /// The entry for `key`, inserted with `make()` if absent. When the map is full, the least
    /// `worth` of [`EVICTION_SAMPLE`] random entries is evicted first (`None` from `worth`: never
    /// evicted). `None`: the map is full and no sampled entry may be evicted.
    pub fn entry(
        &mut self,
        key: IpKey,
        make: impl FnOnce() -> V,
        mut worth: impl FnMut(&mut V) -> Option<u64>,
    ) -> Option<&mut V> {
        let slot = match self.find(&key) {
            Some(s) => s as usize,
            None => {
                if self.keys.len() >= self.max && !self.evict(&mut worth) {
                    self.refused = self.refused.wrapping_add(1);
                    return None;
                }
                let slot = self.keys.len();
                self.keys.push(key);
                self.values.push(make());
                let (keys, hasher) = (&self.keys, &self.hasher);
                self.index.insert_unique(
                    hasher.hash_one(key),
                    u32::try_from(slot).unwrap_or(u32::MAX),
                    |&s| keys.get(s as usize).map_or(0, |k| hasher.hash_one(k)),
                );
                slot
            }
        };
        self.values.get_mut(slot)
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Evicts the least worth of a random sample; `false` if every sampled entry is protected.
    fn evict(&mut self, worth: &mut impl FnMut(&mut V) -> Option<u64>) -> bool {
        let len = self.keys.len();
        if len == 0 {
            return true;
        }
        let mut victim: Option<(u64, usize)> = None;
        for n in 0..EVICTION_SAMPLE.saturating_mul(2) {
            if n == EVICTION_SAMPLE && victim.is_some() {
                break;
            }
            let i = usize::try_from(self.next_random().checked_rem(len as u64).unwrap_or(0))
                .unwrap_or(0);
            let Some(w) = self.values.get_mut(i).and_then(&mut *worth) else {
                continue; // protected
            };
            if victim.is_none_or(|(best, _)| w < best) {
                victim = Some((w, i));
            }
            if w == 0 {
                break; // nothing lost by evicting this one
            }
        }
        match victim {
            Some((_, i)) => {
                self.remove_slot(i);
                self.evicted = self.evicted.wrapping_add(1);
                true
            }
            None => false,
        }
    }

    /// Removes slot `i` by moving the last entry into it.
    fn remove_slot(&mut self, i: usize) {
        let Some(&key) = self.keys.get(i) else {
            return;
        };
        let slot = u32::try_from(i).unwrap_or(u32::MAX);
        if let Ok(e) = self
            .index
            .find_entry(self.hasher.hash_one(key), |&s| s == slot)
        {
            e.remove();
        }
        let last = self.keys.len().saturating_sub(1);
        self.keys.swap_remove(i);
        self.values.swap_remove(i);
        if i != last
            && let Some(&moved) = self.keys.get(i)
        {
            let from = u32::try_from(last).unwrap_or(u32::MAX);
            if let Some(s) = self
                .index
                .find_mut(self.hasher.hash_one(moved), |&s| s == from)
            {
                *s = slot;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.max
    }

    /// Entries evicted to make room since the map was made.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Insertions refused because the map was full of protected entries.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Heap bytes held: constant from creation (space for `max` entries is reserved then).
    pub fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<IpKey>().saturating_add(std::mem::size_of::<V>());
        self.keys
            .capacity()
            .max(self.values.capacity())
            .saturating_mul(entry)
            .saturating_add(self.index.allocation_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn k(i: u32) -> IpKey {
        IpKey::new(IpAddr::V4(Ipv4Addr::from(i)))
    }

    #[test]
    fn finds_what_it_holds_and_never_grows_past_max() {
        let mut m: BoundedMap<u64> = BoundedMap::new(100);
        for i in 0..100 {
            *m.entry(k(i), || 0, |_| Some(1)).unwrap() += u64::from(i);
        }
        assert_eq!(m.len(), 100);
        for i in 0..100 {
            assert_eq!(m.get_mut(&k(i)).copied(), Some(u64::from(i)));
        }
        let bytes = m.heap_bytes();
        for i in 100..100_000 {
            m.entry(k(i), || 7, |_| Some(1));
        }
        assert_eq!(m.len(), 100);
        assert_eq!(m.evicted(), 99_900);
        assert_eq!(
            m.heap_bytes(),
            bytes,
            "memory constant under a flood of new keys"
        );
        // Every held key is still findable (the index survived all the swap-removes).
        let held: Vec<IpKey> = m.keys.clone();
        for key in held {
            assert!(m.get_mut(&key).is_some());
        }
    }

    #[test]
    fn worthless_entries_go_first() {
        let mut m: BoundedMap<u64> = BoundedMap::new(64);
        // Half the entries are worth something (value 1), half nothing (value 0).
        for i in 0..64 {
            m.entry(k(i), || u64::from(i % 2), |v| Some(*v));
        }
        // A flood of worthless newcomers (value 0) evicts worthless entries: the sample almost
        // always holds one, and the ones worth something survive.
        for i in 1000..1100 {
            m.entry(k(i), || 0, |v| Some(*v));
        }
        let kept = (0..64)
            .filter(|i| i % 2 == 1 && m.get_mut(&k(*i)).is_some())
            .count();
        assert!(kept >= 28, "{kept} of 32 valuable entries kept");
    }

    #[test]
    fn protected_entries_are_never_evicted_and_newcomers_are_refused_instead() {
        let mut m: BoundedMap<bool> = BoundedMap::new(64);
        // 48 protected entries (true), 16 that may go.
        for i in 0..64 {
            m.entry(k(i), || i < 48, |p| (!*p).then_some(1));
        }
        // A flood of 10,000 newcomers, each protected once in: the 16 evictable slots turn over
        // until the map holds only protected entries; then newcomers are refused.
        let mut refused = 0;
        for i in 1000..11_000 {
            if m.entry(k(i), || true, |p| (!*p).then_some(1)).is_none() {
                refused += 1;
            }
        }
        assert!(
            (0..48).all(|i| m.get_mut(&k(i)).is_some()),
            "every protected entry kept"
        );
        assert_eq!(m.len(), 64);
        assert_eq!(refused, 10_000 - 16);
        assert_eq!(m.refused(), refused as u64);
    }
}
