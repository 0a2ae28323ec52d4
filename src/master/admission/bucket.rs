//! Token buckets with debt: the admission control's budgets.
//!
//! A bucket holds up to `burst` units and refills at `rate` units per second. A request is allowed
//! while the level is above zero, and then takes what it really costs — possibly more than is
//! left: the level goes negative (debt) and must refill past zero before the next request. So one
//! reply may be larger than what remains (a whole list is sent whole, never cut short), while the
//! average stays at `rate` and a burst at `burst` plus one reply. A reply is charged in full, however
//! large ([`Bucket::take`]: no debt is forgiven, so a source is never owed one list per refill
//! whatever its size); a fine is not a reply and stops at one burst of debt ([`Bucket::fine`]), so
//! a flood spoofed in a victim's name cannot lock the victim out for longer than one refill of
//! its burst.

use crate::master::time::Time;

/// The shape of a bucket (shared by every bucket of one kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Units the bucket holds when full (and the deepest debt it can owe).
    pub burst: u32,
    /// Units regained per second.
    pub per_sec: u32,
}

/// Largest `burst` a bucket takes (its level and debt live in an `i32`).
pub const MAX_BURST: u32 = i32::MAX as u32;

impl Rate {
    /// The burst as a level (clamped to [`MAX_BURST`]).
    fn cap(&self) -> i32 {
        i32::try_from(self.burst).unwrap_or(i32::MAX)
    }

    /// A bucket that never refuses.
    pub const UNLIMITED: Rate = Rate {
        burst: u32::MAX,
        per_sec: u32::MAX,
    };

    pub fn is_unlimited(&self) -> bool {
        *self == Rate::UNLIMITED
    }
}

/// One bucket's state: 8 bytes (a level of ±2³¹ units: bursts are bounded by `MAX_BURST`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    level: i32,
    /// When `level` was last brought up to date (ms on the master's clock).
    at: u32,
}

/// Time in the bucket's own 32-bit milliseconds (wraps after 49 days; only differences are used).
fn ms(now: Time) -> u32 {
    now.millis() as u32
}

impl Bucket {
    /// A full bucket.
    pub fn full(rate: Rate, now: Time) -> Bucket {
        Bucket {
            level: rate.cap(),
            at: ms(now),
        }
    }

    /// Brings the level up to `now`.
    fn refill(&mut self, rate: Rate, now: Time) {
        let now = ms(now);
        let elapsed = u64::from(now.wrapping_sub(self.at));
        // A clock that stepped back (never on a monotonic clock) is ignored.
        if elapsed > u64::from(u32::MAX / 2) {
            self.at = now;
            return;
        }
        let per_sec = u64::from(rate.per_sec);
        let gained = elapsed.saturating_mul(per_sec) / 1000;
        if gained == 0 {
            return;
        }
        let level = i64::from(self.level).saturating_add(i64::try_from(gained).unwrap_or(i64::MAX));
        if level >= i64::from(rate.cap()) {
            self.level = rate.cap();
            self.at = now;
        } else {
            self.level = i32::try_from(level).unwrap_or(i32::MAX);
            // Advance only by the time those whole units took, keeping the fraction for later.
            let used = gained.saturating_mul(1000).div_ceil(per_sec.max(1));
            self.at = self
                .at
                .wrapping_add(u32::try_from(used).unwrap_or(u32::MAX));
        }
    }

    /// The level at `now` (after refill).
    pub fn level(&mut self, rate: Rate, now: Time) -> i32 {
        self.refill(rate, now);
        self.level
    }

    /// Whether `units` can be taken whole now (no debt: for counts, like queries).
    pub fn has(&mut self, rate: Rate, now: Time, units: u64) -> bool {
        rate.is_unlimited()
            || i64::from(self.level(rate, now)) >= i64::try_from(units).unwrap_or(i64::MAX)
    }

    /// Whether a request may go ahead now (the level is above zero; its cost may then exceed
    /// what is left: for bytes, so a reply is never cut short).
    pub fn allows(&mut self, rate: Rate, now: Time) -> bool {
        rate.is_unlimited() || self.level(rate, now) > 0
    }

    /// Takes `units` (the real cost of what was allowed), going into debt as deep as it takes
    /// (down to the `i32` floor, 2³¹ units: two GiB of replies).
    pub fn take(&mut self, rate: Rate, now: Time, units: u64) {
        if rate.is_unlimited() {
            return;
        }
        self.refill(rate, now);
        let units = i32::try_from(units).unwrap_or(i32::MAX);
        self.level = self
            .level
            .saturating_sub(units)
            .max(i32::MIN.saturating_add(1));
    }

    /// Takes a fine of `units`: like [`take`](Self::take), but never deeper than one burst of debt
    /// (a debt already deeper, from a real reply, is left as it is).
    pub fn fine(&mut self, rate: Rate, now: Time, units: u64) {
        if rate.is_unlimited() {
            return;
        }
        self.refill(rate, now);
        let floor = rate.cap().saturating_neg();
        if self.level > floor {
            let units = i32::try_from(units).unwrap_or(i32::MAX);
            self.level = self.level.saturating_sub(units).max(floor);
        }
    }

    /// Whether the bucket owes anything (its level is below zero).
    pub fn in_debt(&mut self, rate: Rate, now: Time) -> bool {
        !rate.is_unlimited() && self.level(rate, now) < 0
    }

    /// Whether the bucket is full at `now`: it holds nothing a fresh bucket would not.
    pub fn is_full(&mut self, rate: Rate, now: Time) -> bool {
        self.level(rate, now) >= rate.cap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rate = Rate {
        burst: 10,
        per_sec: 2,
    };

    #[test]
    fn burst_then_rate() {
        let t0 = Time::from_secs(100);
        let mut b = Bucket::full(R, t0);
        for _ in 0..10 {
            assert!(b.allows(R, t0));
            b.take(R, t0, 1);
        }
        assert!(!b.allows(R, t0), "the burst is spent");
        assert!(
            !b.allows(R, t0.plus_millis(499)),
            "half a unit is not a unit"
        );
        assert!(
            b.allows(R, t0.plus_millis(500)),
            "2 per second: one after 500 ms"
        );
        b.take(R, t0.plus_millis(500), 1);
        assert!(!b.allows(R, t0.plus_millis(999)));
        assert!(!b.has(R, t0.plus_millis(1499), 2) && b.has(R, t0.plus_millis(1500), 2));
        // Refill stops at the burst.
        assert_eq!(b.level(R, t0.plus_secs(3600)), 10);
    }

    #[test]
    fn a_large_reply_goes_whole_into_debt_and_is_repaid_at_the_rate() {
        let t0 = Time::from_secs(5);
        let mut b = Bucket::full(R, t0);
        assert!(b.allows(R, t0));
        b.take(R, t0, 8);
        assert!(b.allows(R, t0), "2 left");
        b.take(R, t0, 7);
        assert_eq!(b.level(R, t0), -5, "in debt");
        assert!(!b.allows(R, t0.plus_millis(2500)), "level 0 is not above 0");
        assert!(b.allows(R, t0.plus_millis(3000)));
        b.take(R, t0.plus_secs(3), 1000);
        assert_eq!(
            b.level(R, t0.plus_secs(3)),
            -999,
            "a reply is charged in full: no debt is forgiven"
        );
        assert!(b.in_debt(R, t0.plus_secs(3)));
        assert!(
            !b.allows(R, t0.plus_secs(502)),
            "repaid at 2 a second: 500 s"
        );
        assert!(b.allows(R, t0.plus_millis(503_500)));
    }

    #[test]
    fn a_fine_stops_at_one_burst_of_debt_and_never_lightens_a_deeper_one() {
        let t0 = Time::from_secs(5);
        let mut b = Bucket::full(R, t0);
        for _ in 0..100 {
            b.fine(R, t0, 4);
        }
        assert_eq!(b.level(R, t0), -10, "fines stop at one burst");
        b.take(R, t0, 50);
        assert_eq!(b.level(R, t0), -60);
        b.fine(R, t0, 4);
        assert_eq!(b.level(R, t0), -60, "a fine does not lift a deeper debt");
    }

    #[test]
    fn fractions_of_a_unit_are_not_lost_between_frequent_refills() {
        let t0 = Time::from_secs(1);
        let mut b = Bucket::full(R, t0);
        b.take(R, t0, 10);
        // Looked at every millisecond for a second: 2 units regained, as if looked at once.
        for ms in 1..=1000 {
            let _ = b.level(R, t0.plus_millis(ms));
        }
        assert_eq!(b.level(R, t0.plus_secs(1)), 2);
    }

    #[test]
    fn a_late_look_keeps_the_fraction() {
        let t0 = Time::from_secs(1);
        let mut b = Bucket::full(R, t0);
        b.take(R, t0, 10);
        assert_eq!(b.level(R, t0.plus_millis(750)), 1, "1.5 units: 1 now");
        assert_eq!(
            b.level(R, t0.plus_millis(1000)),
            2,
            "and the half is still owed"
        );
    }

    #[test]
    fn unlimited_never_refuses() {
        let t0 = Time::from_secs(1);
        let mut b = Bucket::full(Rate::UNLIMITED, t0);
        b.take(Rate::UNLIMITED, t0, u64::MAX);
        assert!(b.allows(Rate::UNLIMITED, t0));
        assert_eq!(std::mem::size_of::<Bucket>(), 8);
    }
}
