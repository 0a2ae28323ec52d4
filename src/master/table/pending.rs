//! Handshakes a shard has challenged and not yet seen completed, counted against the caps.
//!
//! dpmaster 2.2 creates a server's entry when it sends the `getinfo` (`servers.c`,
//! `Sv_GetByAddr` with `create`), so three servers of one address heartbeating in the same instant
//! under a per-address cap of two get two challenges, not three; and a table one place short of
//! full challenges one server, not every one that asks. The challenges themselves stay stateless
//! (`challenge.rs`): what is kept here is only a reservation — the address and when it lapses — so
//! the caps count it. A reservation holds one place of the global table budget until the
//! handshake completes (the place becomes the server's) or [`PENDING_HOLD_MS`] pass (it goes back).
//!
//! Bounded: at most [`MAX_PENDING`] reservations per shard; beyond that a challenge is refused
//! (`pending_full`). A spoofer can hold places for two seconds per spoofed heartbeat, within the
//! challenge budgets — the same exposure as dpmaster's.

use crate::master::table::record::AddrKey;
use crate::master::time::Time;
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};

/// How long a reservation lasts: dpmaster's challenge timeout. A real server answers a `getinfo`
/// within one round trip; a heartbeat that comes later is still listed if there is room.
pub const PENDING_HOLD_MS: u64 = 2_000;
/// Reservations per shard (at the default challenge budget of 50,000 a second per core, two
/// seconds of challenges would need 100,000: beyond this, challenges wait).
pub const MAX_PENDING: usize = 65_536;

/// The reservations of one shard. Found by the hash of their address under the table's own
/// keyed hasher (passed in: the table hashes an address once per datagram, for its index and
/// this). How many each address holds is the table's to count (beside its listed servers).
#[derive(Debug, Default)]
pub struct Pending {
    /// Address and when its reservation lapses.
    lapses: HashTable<(AddrKey, Time)>,
    /// Reservations in the order they lapse (holds are equal, so insertion order); an entry whose
    /// time no longer matches `lapses` was extended or completed and is skipped.
    order: VecDeque<(Time, AddrKey)>,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.lapses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lapses.is_empty()
    }

    /// Whether `key` (whose hash is `hash`) is held.
    pub fn contains(&self, key: AddrKey, hash: u64) -> bool {
        self.lapses.find(hash, |e| e.0 == key).is_some()
    }

    /// Holds `key` until `now` + [`PENDING_HOLD_MS`]; `true` if it is new (the caller took a place
    /// for it), `false` if it was held already (extended).
    pub fn hold(&mut self, now: Time, key: AddrKey, hash: u64, hasher: &RandomState) -> bool {
        let lapse = now.plus_millis(PENDING_HOLD_MS);
        self.order.push_back((lapse, key));
        match self
            .lapses
            .entry(hash, |e| e.0 == key, |e| hasher.hash_one(e.0))
        {
            hashbrown::hash_table::Entry::Occupied(mut e) => {
                e.get_mut().1 = lapse;
                false
            }
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert((key, lapse));
                true
            }
        }
    }

    /// Drops the reservation of `key`; `true` if there was one.
    pub fn release(&mut self, key: AddrKey, hash: u64) -> bool {
        match self.lapses.find_entry(hash, |e| e.0 == key) {
            Ok(e) => {
                e.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Removes the reservations lapsed at `now`, at most `budget` queue entries visited; calls
    /// `gone` once for each reservation removed.
    pub fn lapse(
        &mut self,
        now: Time,
        budget: usize,
        hasher: &RandomState,
        mut gone: impl FnMut(AddrKey),
    ) {
        for _ in 0..budget {
            let Some(&(at, key)) = self.order.front() else {
                break;
            };
            if at > now {
                break;
            }
            self.order.pop_front();
            if let Ok(e) = self
                .lapses
                .find_entry(hasher.hash_one(key), |e| *e == (key, at))
            {
                e.remove();
                gone(key);
            }
        }
        // Entries of extended or completed reservations pile up behind live ones at most as fast
        // as challenges are sent; compact when they outnumber the live ones by far.
        if self.order.len() > self.lapses.len().saturating_mul(4).max(1024) {
            let lapses = &self.lapses;
            self.order
                .retain(|&(at, k)| lapses.find(hasher.hash_one(k), |e| *e == (k, at)).is_some());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn key(s: &str, h: &RandomState) -> (AddrKey, u64) {
        let a = AddrKey::new(s.parse::<SocketAddr>().unwrap());
        (a, h.hash_one(a))
    }

    #[test]
    fn holds_lapse_after_the_hold_unless_extended_or_released() {
        let h = RandomState::new();
        let mut p = Pending::default();
        let t0 = Time::from_secs(10);
        let (a, ha) = key("192.0.2.1:27960", &h);
        let (b, hb) = key("192.0.2.1:27961", &h);
        assert!(p.hold(t0, a, ha, &h));
        assert!(p.hold(t0, b, hb, &h));
        assert!(!p.hold(t0.plus_millis(500), a, ha, &h), "a repeat extends");
        assert_eq!(p.len(), 2);
        assert!(p.contains(a, ha) && p.contains(b, hb));
        let mut gone = Vec::new();
        p.lapse(t0.plus_millis(PENDING_HOLD_MS), 100, &h, |k| gone.push(k));
        assert_eq!(gone, vec![b], "a's hold was extended by 500 ms");
        assert!(!p.contains(b, hb));
        p.lapse(t0.plus_millis(PENDING_HOLD_MS + 500), 100, &h, |k| {
            gone.push(k)
        });
        assert_eq!(gone, vec![b, a]);
        assert!(p.is_empty());
        // A completed handshake releases its hold; its queue entry is skipped later.
        assert!(p.hold(t0, a, ha, &h));
        assert!(p.release(a, ha));
        assert!(!p.release(a, ha), "released once");
        p.lapse(t0.plus_secs(60), 100, &h, |_| panic!("released"));
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn stale_queue_entries_are_compacted() {
        let h = RandomState::new();
        let mut p = Pending::default();
        let t0 = Time::from_secs(10);
        let (a, ha) = key("192.0.2.1:27960", &h);
        for i in 0..5_000u64 {
            p.hold(t0.plus_millis(i), a, ha, &h);
        }
        p.lapse(t0, 1, &h, |_| panic!("nothing lapsed yet"));
        assert_eq!(
            (p.len(), p.order.len()),
            (1, 1),
            "one live entry left queued"
        );
    }
}
