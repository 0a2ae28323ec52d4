//! A timing wheel for server expiry, with work proportional to what comes due.
//!
//! Each listed server has exactly one entry, in the bucket of its expiry second. A heartbeat that
//! refreshes a server does not touch the wheel: when the old bucket comes due, the owner sees the
//! server is still fresh and reschedules it once. So a server costs one wheel visit per timeout
//! period at most, however often it heartbeats, and a tick never scans the table (the Valve paper
//! warns about that cost at a few hundred thousand servers). Entries carry the slot's generation so
//! an entry for a removed server is skipped, not mistaken for the slot's next occupant.

use crate::master::time::Time;

/// Bucket width.
pub const GRANULARITY_MS: u64 = 1000;

/// A wheel entry: table slot and its generation when scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub slot: u32,
    pub generation: u32,
}

/// What the owner says of a due entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Removed (expired) or stale: drop the entry.
    Done,
    /// Still fresh: schedule again at this time.
    Reschedule(Time),
}

#[derive(Debug)]
pub struct Wheel {
    buckets: Vec<Vec<Entry>>,
    /// Absolute index (time / granularity) of the next bucket to process.
    cursor: u64,
    len: usize,
}

impl Wheel {
    /// A wheel whose horizon covers `horizon_ms` (the server timeout) from any `now`.
    pub fn new(now: Time, horizon_ms: u64) -> Self {
        let len =
            usize::try_from((horizon_ms / GRANULARITY_MS).saturating_add(2)).unwrap_or(usize::MAX);
        Self {
            buckets: (0..len).map(|_| Vec::new()).collect(),
            cursor: now.millis() / GRANULARITY_MS,
            len,
        }
    }

    /// Schedules `e` to come due at `at` (rounded up to the bucket; clamped to the horizon).
    pub fn schedule(&mut self, at: Time, e: Entry) {
        let tick = at.millis().div_ceil(GRANULARITY_MS);
        let tick = tick.clamp(self.cursor, self.horizon_end());
        let i = self.bucket(tick);
        if let Some(b) = self.buckets.get_mut(i) {
            b.push(e);
        }
    }

    /// The last tick the wheel can hold from its cursor (one revolution on).
    fn horizon_end(&self) -> u64 {
        self.cursor
            .saturating_add(self.len as u64)
            .saturating_sub(1)
    }

    /// The bucket of absolute tick `tick` (`len` ≥ 2 by construction).
    fn bucket(&self, tick: u64) -> usize {
        tick.checked_rem(self.len as u64).unwrap_or(0) as usize
    }

    /// Processes due entries up to `now`, at most `budget` of them. Returns `true` when everything
    /// due has been processed (`false`: call again, the budget ran out).
    pub fn advance(
        &mut self,
        now: Time,
        mut budget: usize,
        mut visit: impl FnMut(Entry) -> Due,
    ) -> bool {
        let now_tick = now.millis() / GRANULARITY_MS;
        // After a long pause every bucket is due: visit each once, not every skipped tick. All
        // entries lie within one revolution of the old cursor, so none is missed.
        let revolution = self.len as u64;
        if now_tick >= self.cursor.saturating_add(revolution) {
            self.cursor = now_tick.saturating_add(1).saturating_sub(revolution);
        }
        while self.cursor <= now_tick {
            let i = self.bucket(self.cursor);
            let next = self.cursor.saturating_add(1);
            let (lo, hi) = (next, self.horizon_end());
            while let Some(e) = self.buckets.get_mut(i).and_then(Vec::pop) {
                let Some(left) = budget.checked_sub(1) else {
                    if let Some(b) = self.buckets.get_mut(i) {
                        b.push(e);
                    }
                    return false;
                };
                budget = left;
                if let Due::Reschedule(at) = visit(e) {
                    // Rescheduling into the bucket being drained would loop: push it one tick on.
                    let tick = at.millis().div_ceil(GRANULARITY_MS).clamp(lo, hi.max(lo));
                    let j = self.bucket(tick);
                    if let Some(b) = self.buckets.get_mut(j) {
                        b.push(e);
                    }
                }
            }
            self.cursor = next;
        }
        true
    }

    /// Entries held (live and stale).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn heap_bytes(&self) -> usize {
        let entries: usize = self.buckets.iter().map(Vec::capacity).sum();
        self.buckets
            .capacity()
            .saturating_mul(std::mem::size_of::<Vec<Entry>>())
            .saturating_add(entries.saturating_mul(std::mem::size_of::<Entry>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(slot: u32) -> Entry {
        Entry {
            slot,
            generation: 0,
        }
    }

    #[test]
    fn entries_come_due_at_their_second_not_before() {
        let mut w = Wheel::new(Time::ZERO, 900_000);
        w.schedule(Time::from_secs(10), e(1));
        w.schedule(Time::from_millis(10_500), e(2));
        let mut seen = Vec::new();
        assert!(w.advance(Time::from_millis(9_999), 100, |x| {
            seen.push(x.slot);
            Due::Done
        }));
        assert!(seen.is_empty());
        w.advance(Time::from_secs(10), 100, |x| {
            seen.push(x.slot);
            Due::Done
        });
        assert_eq!(seen, [1]);
        w.advance(Time::from_secs(11), 100, |x| {
            seen.push(x.slot);
            Due::Done
        });
        assert_eq!(seen, [1, 2]);
        assert!(w.is_empty());
    }

    #[test]
    fn reschedule_and_budget() {
        let mut w = Wheel::new(Time::ZERO, 60_000);
        for i in 0..10 {
            w.schedule(Time::from_secs(5), e(i));
        }
        let mut visits = 0;
        assert!(!w.advance(Time::from_secs(5), 4, |_| {
            visits += 1;
            Due::Reschedule(Time::from_secs(30))
        }));
        assert_eq!(visits, 4);
        assert!(w.advance(Time::from_secs(5), 100, |_| {
            visits += 1;
            Due::Reschedule(Time::from_secs(30))
        }));
        assert_eq!(visits, 10);
        // Nothing due until 30 s; then all ten.
        let mut later = 0;
        w.advance(Time::from_secs(29), 100, |_| {
            later += 1;
            Due::Done
        });
        assert_eq!(later, 0);
        w.advance(Time::from_secs(30), 100, |_| {
            later += 1;
            Due::Done
        });
        assert_eq!(later, 10);
    }

    #[test]
    fn a_long_pause_processes_every_bucket_once() {
        let mut w = Wheel::new(Time::ZERO, 10_000);
        for i in 0..12 {
            w.schedule(Time::from_secs(u64::from(i)), e(i));
        }
        let mut n = 0;
        w.advance(Time::from_secs(1000), 1000, |_| {
            n += 1;
            Due::Done
        });
        assert_eq!(n, 12);
        // A jump of years costs one revolution, not a loop per skipped second.
        w.schedule(Time::from_secs(1005), e(99));
        let mut m = 0;
        w.advance(Time::from_secs(100_000_000_000), 1000, |_| {
            m += 1;
            Due::Done
        });
        assert_eq!(m, 1);
    }
}
