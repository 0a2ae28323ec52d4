//! The master-wide budget for list replies to unproven addresses: one for every core together.
//!
//! DarkPlaces / Quake III and Xash3D list queries have no round trip: nothing in them shows that the
//! source address receives our packets, and a ~30-byte query draws up to megabytes. Per-source and
//! per-network budgets bound what one address or one /24 draws, but a spoofer has millions of
//! addresses and thousands of /24s; a per-core budget grows with `--cores`. So every such reply
//! (to anyone not on a trusted network) is also charged here, once for the whole master: what all
//! spoofed addresses together receive is at most `burst` plus `per_sec` per second, plus one reply
//! (the one that crossed zero: a list is never cut short), whatever the number of cores.
//!
//! The bucket is kept as GCRA (the "virtual scheduling" form of a token bucket): one atomic
//! theoretical-arrival time in microseconds, advanced by each reply's cost with a compare-and-swap.
//! Cores share it without a lock, as they share the table's place count ([`crate::master::table::budget`]).
//!
//! Two tiers, so a flood of new sources cannot starve the people who were there before it
//! ([`super`] decides who is which): a *known* source (one that queried in the hour before the
//! budget saturated, or that proved itself on a Valve walk) is served while the bucket is above
//! zero; a *new* source only while it is above half its burst. New sources thus never take the
//! lower half: it refills for known sources first.
//!
//! Each core also publishes how many /24s asked it for such replies in the last window, so that,
//! while the budget is saturated, new sources share what is left fairly per /24
//! ([`Unproven::fair_share`]).

use crate::master::admission::bucket::Rate;
use crate::master::time::Time;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The window over which each core counts the /24s asking for unproven replies.
pub const SHARE_WINDOW_MS: u64 = 10_000;
/// The least a /24 may draw per window while saturated, whatever the count (one small list).
pub const MIN_SHARE_BYTES: u64 = 1_500;

/// Who is asking, for the two tiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Served while the bucket is above zero.
    Known,
    /// Served while the bucket is above half its burst.
    New,
}

/// The shared budget (clone the `Arc` into every core's configuration).
#[derive(Debug)]
pub struct Unproven {
    /// Theoretical arrival time, µs on the master's clock: the bucket is full when this is at or
    /// before now, and `tat - now` is what has been drawn beyond the refill.
    tat_us: AtomicU64,
    /// Per core: the /24s that asked in its last whole window.
    active: Box<[AtomicU32]>,
    /// Bytes charged since start (all cores): what the operator's metrics show.
    charged: AtomicU64,
}

/// µs a `rate` takes to refill `bytes` (rounded up: never undercharged; saturating).
fn cost_us(rate: Rate, bytes: u64) -> u64 {
    let per_sec = u128::from(rate.per_sec.max(1));
    let us = u128::from(bytes)
        .saturating_mul(1_000_000)
        .div_ceil(per_sec);
    u64::try_from(us).unwrap_or(u64::MAX)
}

impl Unproven {
    /// A full budget for `cores` cores.
    pub fn new(cores: usize) -> Arc<Self> {
        Arc::new(Self {
            tat_us: AtomicU64::new(0),
            active: (0..cores.max(1)).map(|_| AtomicU32::new(0)).collect(),
            charged: AtomicU64::new(0),
        })
    }

    /// Admits a reply of `bytes` for a source of `tier` and charges it in full, or refuses it
    /// (nothing charged).
    pub fn try_take(&self, rate: Rate, now: Time, bytes: u64, tier: Tier) -> bool {
        if rate.is_unlimited() {
            self.charged.fetch_add(bytes, Ordering::Relaxed);
            return true;
        }
        let now_us = now.millis().saturating_mul(1000);
        let tau = cost_us(rate, u64::from(rate.burst));
        // The drawn-ahead time at which this tier is refused.
        let limit = match tier {
            Tier::Known => tau,
            Tier::New => tau / 2,
        };
        let cost = cost_us(rate, bytes);
        let mut tat = self.tat_us.load(Ordering::Relaxed);
        loop {
            let from = tat.max(now_us);
            if from.saturating_sub(now_us) >= limit {
                return false;
            }
            match self.tat_us.compare_exchange_weak(
                tat,
                from.saturating_add(cost),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.charged.fetch_add(bytes, Ordering::Relaxed);
                    return true;
                }
                Err(t) => tat = t,
            }
        }
    }

    /// Whether a reply to a source of `tier` would be admitted now (nothing charged): a check
    /// before building one.
    pub fn allows(&self, rate: Rate, now: Time, tier: Tier) -> bool {
        if rate.is_unlimited() {
            return true;
        }
        let now_us = now.millis().saturating_mul(1000);
        let tau = cost_us(rate, u64::from(rate.burst));
        let limit = match tier {
            Tier::Known => tau,
            Tier::New => tau / 2,
        };
        self.tat_us
            .load(Ordering::Relaxed)
            .max(now_us)
            .saturating_sub(now_us)
            < limit
    }

    /// Bytes left in the bucket at `now` (negative: in debt).
    pub fn level(&self, rate: Rate, now: Time) -> i64 {
        if rate.is_unlimited() {
            return i64::MAX;
        }
        let now_us = now.millis().saturating_mul(1000);
        let ahead = self.tat_us.load(Ordering::Relaxed).saturating_sub(now_us);
        let drawn = u128::from(ahead).saturating_mul(u128::from(rate.per_sec)) / 1_000_000;
        i64::from(rate.burst).saturating_sub(i64::try_from(drawn).unwrap_or(i64::MAX))
    }

    /// Bytes charged since start, all cores.
    pub fn charged(&self) -> u64 {
        self.charged.load(Ordering::Relaxed)
    }

    /// Core `core` counted `n` /24s asking in its last window.
    pub fn set_active(&self, core: usize, n: u32) {
        if let Some(a) = self.active.get(core) {
            a.store(n, Ordering::Relaxed);
        }
    }

    /// /24s asking, all cores (a /24 steered to two cores counts on each, and gets a share on each).
    pub fn active(&self) -> u64 {
        self.active
            .iter()
            .map(|a| u64::from(a.load(Ordering::Relaxed)))
            .sum()
    }

    /// While saturated, the bytes one /24 of new sources may draw per [`SHARE_WINDOW_MS`]: the
    /// window's refill split evenly between the /24s asking (at least [`MIN_SHARE_BYTES`]).
    pub fn fair_share(&self, rate: Rate) -> u64 {
        let window = u64::from(rate.per_sec).saturating_mul(SHARE_WINDOW_MS) / 1000;
        window
            .checked_div(self.active())
            .unwrap_or(window)
            .max(MIN_SHARE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1024 * 1024;
    const R: Rate = Rate {
        burst: MIB,
        per_sec: MIB,
    };

    #[test]
    fn new_sources_stop_at_half_the_burst_known_ones_at_zero() {
        let u = Unproven::new(2);
        let t0 = Time::from_secs(100);
        // 70 KB replies to new sources: served while more than half the burst is left.
        let mut new = 0u64;
        while u.try_take(R, t0, 70_000, Tier::New) {
            new += 70_000;
        }
        assert!(
            new >= u64::from(MIB / 2) && new < u64::from(MIB / 2) + 70_000,
            "{new}"
        );
        // A known source still gets its list, into the lower half.
        assert!(u.try_take(R, t0, 70_000, Tier::Known));
        let mut known = 70_000u64;
        while u.try_take(R, t0, 70_000, Tier::Known) {
            known += 70_000;
        }
        // Everything drawn at one instant: the burst plus at most one reply.
        assert!(new + known <= u64::from(MIB) + 70_000, "{}", new + known);
        assert!(u.level(R, t0) <= 0);
        // A second later, the refill goes to known sources first: new ones wait for the upper half.
        let t1 = t0.plus_secs(1);
        assert!(!u.try_take(R, t0.plus_millis(400), 10, Tier::New));
        assert!(u.try_take(R, t1, 70_000, Tier::Known));
        assert_eq!(u.charged(), new + known + 70_000);
    }

    #[test]
    fn a_reply_larger_than_the_burst_is_charged_in_full() {
        let u = Unproven::new(1);
        let t0 = Time::from_secs(10);
        assert!(u.try_take(R, t0, 7 * u64::from(MIB), Tier::Known));
        assert!(u.level(R, t0) <= -6 * i64::from(MIB));
        // Six seconds of refill owed before anyone is served again.
        assert!(!u.try_take(R, t0.plus_millis(5_900), 1, Tier::Known));
        assert!(u.try_take(R, t0.plus_millis(6_100), 1, Tier::Known));
    }

    #[test]
    fn cores_share_one_bucket() {
        let u = Unproven::new(4);
        let t0 = Time::from_secs(1);
        let served: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let u = &u;
                    s.spawn(move || {
                        let mut got = 0u64;
                        for _ in 0..1000 {
                            if u.try_take(R, t0, 1_000, Tier::Known) {
                                got += 1_000;
                            }
                        }
                        got
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        // Four cores, one budget: the burst (plus the one reply that crossed zero), not four.
        assert!(served <= u64::from(MIB) + 1_000, "{served}");
        assert!(served >= u64::from(MIB) - 1_000, "{served}");
    }

    #[test]
    fn the_fair_share_splits_the_window_between_the_networks_asking() {
        let u = Unproven::new(2);
        u.set_active(0, 600);
        u.set_active(1, 400);
        assert_eq!(u.active(), 1000);
        assert_eq!(u.fair_share(R), u64::from(MIB) * 10 / 1000);
        u.set_active(0, 1_000_000);
        assert_eq!(u.fair_share(R), MIN_SHARE_BYTES);
        assert!(u.try_take(Rate::UNLIMITED, Time::ZERO, 5, Tier::New));
    }
}
