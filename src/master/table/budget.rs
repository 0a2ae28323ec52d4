//! The table's global cap (`max_servers`) held exactly across shards without a lock.
//!
//! Every core draws room for new servers from one shared atomic count of free places: a block at a
//! time while plenty is left ([`BLOCK`]), one at a time once what is left could be held idle by the
//! other cores' blocks ([`Budget::take`]), and gives back what it holds beyond a block as its
//! servers leave. So a server is refused `table_full` only when every place is taken or drawn by a
//! core that will use it next — not, as with a fixed split per core, while another core has room
//! it will never use. Steering puts each address on one core, so per-address caps need no
//! sharing at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Places a core draws at once while the shared count is high.
pub const BLOCK: usize = 1024;

/// One shard's share of the global cap.
#[derive(Clone, Debug)]
pub struct Budget {
    shared: Arc<AtomicUsize>,
    /// Places this shard has drawn and not used.
    held: usize,
    /// How many shards draw from `shared` (the low-water mark scales with it).
    shards: usize,
}

impl Budget {
    /// A shared count of `total` places, for `shards` shards: clone the result into each.
    pub fn shared(total: usize, shards: usize) -> Budget {
        Budget {
            shared: Arc::new(AtomicUsize::new(total)),
            held: 0,
            shards: shards.max(1),
        }
    }

    /// Takes one place for a new server; `false` if the table is full.
    pub fn take(&mut self) -> bool {
        if let Some(h) = self.held.checked_sub(1) {
            self.held = h;
            return true;
        }
        // Draw a block, or one place once what is left is within the blocks all shards could hold.
        let low = BLOCK.saturating_mul(self.shards).saturating_mul(2);
        let mut left = self.shared.load(Ordering::Relaxed);
        loop {
            if left == 0 {
                return false;
            }
            let want = if left > low { BLOCK } else { 1 };
            match self.shared.compare_exchange_weak(
                left,
                left.saturating_sub(want),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.held = want.saturating_sub(1);
                    return true;
                }
                Err(now) => left = now,
            }
        }
    }

    /// Gives back the place of a server that left. Beyond one block held (or any at all once the
    /// shared count runs low), places go back to the shared count.
    pub fn give(&mut self) {
        self.held = self.held.saturating_add(1);
        let low = BLOCK.saturating_mul(self.shards).saturating_mul(2);
        let keep = if self.shared.load(Ordering::Relaxed) > low {
            BLOCK
        } else {
            0
        };
        if let Some(extra) = self.held.checked_sub(keep).filter(|e| *e > 0) {
            self.shared.fetch_add(extra, Ordering::AcqRel);
            self.held = keep;
        }
    }

    /// Whether [`take`](Self::take) would succeed now (it may still fail if another shard draws
    /// the last place first).
    pub fn has_room(&self) -> bool {
        self.held > 0 || self.shared.load(Ordering::Relaxed) > 0
    }

    /// Places left to draw by every shard (what a status page shows as room).
    pub fn free(&self) -> usize {
        self.shared.load(Ordering::Relaxed)
    }

    /// How many shards share the count.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Places this shard holds unused.
    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_exact_across_shards() {
        // 10,000 places, 2 shards; shard A takes 6,000, shard B takes the rest — all of it, though
        // A drew blocks early on.
        let a0 = Budget::shared(10_000, 2);
        let (mut a, mut b) = (a0.clone(), a0);
        for _ in 0..6000 {
            assert!(a.take());
        }
        let mut got = 0;
        while b.take() {
            got += 1;
        }
        assert_eq!(got + 6000 + a.held(), 10_000);
        // A's idle remainder is what B missed; A gives back all beyond a block as servers leave,
        // and none is held once the count is low.
        assert!(a.held() < BLOCK, "{}", a.held());
        let idle = a.held();
        a.give();
        assert_eq!(
            a.held(),
            0,
            "low water: a freed place goes straight back, with the idle ones"
        );
        let mut more = 0;
        while b.take() {
            more += 1;
        }
        assert_eq!(more, idle + 1);
    }

    #[test]
    fn a_tiny_cap_is_shared_not_split() {
        // max_servers = 2 with 2 shards: both places can go to one shard (a fixed split per core
        // would allow one each).
        let s = Budget::shared(2, 2);
        let (mut a, b) = (s.clone(), s);
        assert!(a.take() && a.take());
        assert!(!a.take());
        assert_eq!(b.free(), 0);
    }

    #[test]
    fn threads_never_overdraw() {
        let s = Budget::shared(100_000, 4);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let mut mine = s.clone();
                std::thread::spawn(move || {
                    let mut n = 0usize;
                    for round in 0..50_000 {
                        if mine.take() {
                            n += 1;
                        }
                        if round % 3 == 0 && n > 0 {
                            mine.give();
                            n -= 1;
                        }
                    }
                    (n, mine.held())
                })
            })
            .collect();
        let (used, held): (usize, usize) = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(u, h), (a, b)| (u + a, h + b));
        assert_eq!(used + held + s.free(), 100_000, "every place accounted for");
    }
}
