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

use crate::master::policy::IpKey;
use crate::master::table::record::AddrKey;
use crate::master::time::Time;
use std::collections::{HashMap, VecDeque};

/// How long a reservation lasts: dpmaster's challenge timeout. A real server answers a `getinfo`
/// within one round trip; a heartbeat that comes later is still listed if there is room.
pub const PENDING_HOLD_MS: u64 = 2_000;
/// Reservations per shard (at the default challenge budget of 50,000 a second per core, two
/// seconds of challenges would need 100,000: beyond this, challenges wait).
pub const MAX_PENDING: usize = 65_536;

#[derive(Debug, Default)]
pub struct Pending {
    /// Address → when its reservation lapses.
    lapses: HashMap<AddrKey, Time>,
    per_ip: HashMap<IpKey, u16>,
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

    pub fn contains(&self, key: AddrKey) -> bool {
        self.lapses.contains_key(&key)
    }

    /// Reservations held by one address.
    pub fn per_ip(&self, ip: IpKey) -> u16 {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Holds `key` (of `ip`) until `now` + [`PENDING_HOLD_MS`]; `true` if it is new (the caller
    /// took a place for it), `false` if it was held already (extended).
    pub fn hold(&mut self, now: Time, key: AddrKey, ip: IpKey) -> bool {
        let lapse = now.plus_millis(PENDING_HOLD_MS);
        let new = self.lapses.insert(key, lapse).is_none();
        if new {
            let c = self.per_ip.entry(ip).or_insert(0);
            *c = c.saturating_add(1);
        }
        self.order.push_back((lapse, key));
        new
    }

    /// Drops the reservation of `key`; `true` if there was one.
    pub fn release(&mut self, key: AddrKey, ip: IpKey) -> bool {
        if self.lapses.remove(&key).is_none() {
            return false;
        }
        if let Some(c) = self.per_ip.get_mut(&ip) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.per_ip.remove(&ip);
            }
        }
        true
    }

    /// Removes the reservations lapsed at `now`, at most `budget` queue entries visited; calls
    /// `gone` once for each reservation removed.
    pub fn lapse(&mut self, now: Time, budget: usize, mut gone: impl FnMut(AddrKey)) {
        for _ in 0..budget {
            let Some(&(at, key)) = self.order.front() else {
                break;
            };
            if at > now {
                break;
            }
            self.order.pop_front();
            if self.lapses.get(&key) == Some(&at) {
                self.lapses.remove(&key);
                let ip = IpKey::new(key.addr().ip());
                if let Some(c) = self.per_ip.get_mut(&ip) {
                    *c = c.saturating_sub(1);
                    if *c == 0 {
                        self.per_ip.remove(&ip);
                    }
                }
                gone(key);
            }
        }
        // Entries of extended or completed reservations pile up behind live ones at most as fast
        // as challenges are sent; compact when they outnumber the live ones by far.
        if self.order.len() > self.lapses.len().saturating_mul(4).max(1024) {
            let lapses = &self.lapses;
            self.order.retain(|(at, k)| lapses.get(k) == Some(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn key(s: &str) -> (AddrKey, IpKey) {
        let a: SocketAddr = s.parse().unwrap();
        (AddrKey::new(a), IpKey::new(a.ip()))
    }

    #[test]
    fn holds_count_per_address_and_lapse_after_the_hold() {
        let mut p = Pending::default();
        let t0 = Time::from_secs(10);
        let (a, ip) = key("192.0.2.1:27960");
        let (b, _) = key("192.0.2.1:27961");
        assert!(p.hold(t0, a, ip));
        assert!(p.hold(t0, b, ip));
        assert!(!p.hold(t0.plus_millis(500), a, ip), "a repeat extends");
        assert_eq!(p.per_ip(ip), 2);
        let mut gone = Vec::new();
        p.lapse(t0.plus_millis(PENDING_HOLD_MS), 100, |k| gone.push(k));
        assert_eq!(gone, vec![b], "a's hold was extended by 500 ms");
        p.lapse(t0.plus_millis(PENDING_HOLD_MS + 500), 100, |k| gone.push(k));
        assert_eq!(gone, vec![b, a]);
        assert!(p.is_empty() && p.per_ip(ip) == 0);
        // A completed handshake releases its hold; its queue entry is skipped later.
        assert!(p.hold(t0, a, ip));
        assert!(p.release(a, ip));
        p.lapse(t0.plus_secs(60), 100, |_| panic!("released"));
        assert_eq!(p.len(), 0);
    }
}
