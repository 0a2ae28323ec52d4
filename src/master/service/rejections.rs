//! The last refused registration of each address that tried (bounded): what the operator's
//! "why am I not listed?" answers for a server that is not in the table.

use crate::master::counters::DropReason;
use crate::master::time::Time;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// Addresses remembered per core; the oldest is forgotten first. A flood of refused handshakes
/// from spoofed addresses only cycles this memory (4096 × ~40 bytes).
pub const MAX_REJECTIONS: usize = 4096;

#[derive(Debug, Default)]
pub struct Rejections {
    last: HashMap<SocketAddr, (DropReason, u32)>,
    order: VecDeque<SocketAddr>,
}

impl Rejections {
    /// `addr`'s registration was refused for `why` at `now`.
    pub fn record(&mut self, now: Time, addr: SocketAddr, why: DropReason) {
        let at = now.secs_u32();
        if self.last.insert(addr, (why, at)).is_some() {
            return; // already in the order: keeps its place
        }
        self.order.push_back(addr);
        while self.order.len() > MAX_REJECTIONS {
            if let Some(old) = self.order.pop_front() {
                self.last.remove(&old);
            }
        }
    }

    /// Every remembered refusal: address, reason, seconds on the core's clock.
    pub fn list(&self) -> Vec<(SocketAddr, DropReason, u32)> {
        self.order
            .iter()
            .filter_map(|a| self.last.get(a).map(|&(why, at)| (*a, why, at)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_reason_is_kept_and_the_oldest_address_forgotten() {
        let mut r = Rejections::default();
        let a: SocketAddr = "1.2.3.4:27015".parse().unwrap();
        r.record(Time::from_secs(1), a, DropReason::BadChallenge);
        r.record(Time::from_secs(2), a, DropReason::PerIpCap);
        assert_eq!(r.list(), [(a, DropReason::PerIpCap, 2)]);
        for i in 0..MAX_REJECTIONS {
            let b = SocketAddr::from(([9, 9, (i >> 8) as u8, i as u8], 1));
            r.record(Time::from_secs(3), b, DropReason::Banned);
        }
        let l = r.list();
        assert_eq!(l.len(), MAX_REJECTIONS);
        assert!(l.iter().all(|(x, ..)| *x != a), "the oldest went first");
    }
}
