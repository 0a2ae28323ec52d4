//! The sources a core has answered recently: who was there before a flood.
//!
//! When a flood saturates the master-wide budget for unproven replies ([`super::unproven`]), nothing in
//! a DarkPlaces query proves who is real. What a core can know is who asked *before*: a returning
//! player, a server-list website. A source that got a reply in the hour before the budget
//! saturated keeps its own budget ([`Tier::Known`](crate::master::admission::unproven::Tier)), while the flood's fresh
//! sources share the rest.
//!
//! Memory is fixed: [`KNOWN_CAPACITY`] slots of 8 bytes (a 32-bit keyed fingerprint of the source
//! and the minute it was last answered), in buckets of [`WAYS`]; a full bucket forgets its oldest.
//! A spoofer who has read this code could try to plant its own addresses before flooding, so new
//! fingerprints enter at most [`MAX_NEW_PER_SEC`] a second per core (refreshes of known ones are
//! free): an hour of planting fills at most 57,600 slots, and the core's real clients of the last
//! hour are not all pushed out. Nothing is planted while saturated.

use crate::master::admission::bucket::{Bucket, Rate};
use crate::master::policy::IpKey;
use crate::master::time::Time;
use std::hash::{BuildHasher, RandomState};

/// Fingerprints kept per core (512 KiB).
pub const KNOWN_CAPACITY: usize = 65_536;
/// Slots per bucket.
pub const WAYS: usize = 8;
/// New fingerprints a core takes per second (a burst of 256).
pub const MAX_NEW_PER_SEC: u32 = 16;
/// How far back a source counts as known: an hour before saturation.
pub const KNOWN_FOR_MS: u64 = 3_600_000;

const NEW: Rate = Rate {
    burst: 256,
    per_sec: MAX_NEW_PER_SEC,
};

#[derive(Debug)]
pub struct Known {
    /// `fingerprint << 32 | minute + 1` (0: empty).
    slots: Vec<u64>,
    hasher: RandomState,
    new: Bucket,
}

fn minute(now: Time) -> u32 {
    u32::try_from(now.millis() / 60_000).unwrap_or(u32::MAX)
}

impl Known {
    pub fn new(now: Time) -> Self {
        Self {
            slots: vec![0; KNOWN_CAPACITY],
            hasher: RandomState::new(),
            new: Bucket::full(NEW, now),
        }
    }

    fn locate(&self, key: IpKey) -> (u32, usize) {
        let h = self.hasher.hash_one(key);
        // A zero fingerprint would look empty: never produce one.
        let fp = ((h >> 32) as u32).max(1);
        let buckets = KNOWN_CAPACITY / WAYS;
        let start = ((h as usize) % buckets).saturating_mul(WAYS);
        (fp, start)
    }

    /// Records that `key` was answered at `now`: refreshes its stamp if known, and takes it in if
    /// `admit_new` (and the rate of new fingerprints allows).
    pub fn note(&mut self, now: Time, key: IpKey, admit_new: bool) {
        let (fp, start) = self.locate(key);
        let stamp = u64::from(minute(now)).saturating_add(1);
        let value = (u64::from(fp) << 32) | stamp;
        let Some(bucket) = self.slots.get_mut(start..start.saturating_add(WAYS)) else {
            return;
        };
        if let Some(s) = bucket.iter_mut().find(|s| (**s >> 32) as u32 == fp) {
            *s = value;
            return;
        }
        if !admit_new || !self.new.has(NEW, now, 1) {
            return;
        }
        self.new.take(NEW, now, 1);
        // An empty slot (stamp 0) is the oldest of all.
        if let Some(oldest) = bucket.iter_mut().min_by_key(|s| **s & 0xFFFF_FFFF) {
            *oldest = value;
        }
    }

    /// Whether `key` was answered at or after `since`.
    pub fn seen_since(&self, key: IpKey, since: Time) -> bool {
        let (fp, start) = self.locate(key);
        let since = u64::from(minute(since)).saturating_add(1);
        self.slots
            .get(start..start.saturating_add(WAYS))
            .is_some_and(|b| {
                b.iter()
                    .any(|s| (*s >> 32) as u32 == fp && (*s & 0xFFFF_FFFF) >= since)
            })
    }

    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity().saturating_mul(8)
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
    fn a_source_answered_in_the_hour_is_known_and_others_are_not() {
        let t0 = Time::from_secs(10_000);
        let mut known = Known::new(t0);
        known.note(t0, k(1), true);
        assert!(known.seen_since(k(1), t0));
        let later = t0.plus_secs(1800);
        assert!(known.seen_since(k(1), Time::from_millis(later.millis() - KNOWN_FOR_MS)));
        assert!(!known.seen_since(k(2), Time::ZERO));
        // Two hours on, an hour back no longer reaches it.
        let much_later = t0.plus_secs(7200);
        assert!(!known.seen_since(k(1), Time::from_millis(much_later.millis() - KNOWN_FOR_MS)));
    }

    #[test]
    fn planting_is_rate_limited_and_refreshes_are_free() {
        let t0 = Time::from_secs(10_000);
        let mut known = Known::new(t0);
        known.note(t0, k(7), true);
        // A spoofer plants 100,000 fingerprints in one second: 255 more get in (the burst).
        for i in 1000..101_000 {
            known.note(t0, k(i), true);
        }
        let planted = (1000..101_000)
            .filter(|&i| known.seen_since(k(i), t0))
            .count();
        assert!(planted <= 256, "{planted}");
        // The real client refreshes whatever the planting: no new slot needed.
        known.note(t0.plus_secs(1), k(7), false);
        assert!(known.seen_since(k(7), t0.plus_secs(1)));
        // Nothing new is taken in while told not to (a flood is on).
        known.note(t0.plus_secs(100), k(424_242), false);
        assert!(!known.seen_since(k(424_242), t0));
        assert_eq!(known.heap_bytes(), KNOWN_CAPACITY * 8);
    }
}
