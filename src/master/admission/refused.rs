//! The sources refused most, per core, for the operator's status page: the space-saving
//! heavy-hitters algorithm (Metwally et al.) over a window of [`REFUSED_WINDOW_MS`], in
//! [`TOP_REFUSED`] counters — constant memory and a short linear scan per refusal, however many
//! sources a flood forges. A source's count may be overestimated by at most the smallest count
//! held (the price of the bound); a source refused more often than `1 / TOP_REFUSED` of all
//! refusals in the window is always held.

use crate::master::time::Time;
use std::net::{IpAddr, Ipv6Addr};

/// Counters per core.
pub const TOP_REFUSED: usize = 32;
/// Length of one window; the report covers the last complete window and the current one.
pub const REFUSED_WINDOW_MS: u64 = 60_000;

/// A refused source: an IPv4 address, or the /64 of an IPv6 one (admission keeps budgets per /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    V4(std::net::Ipv4Addr),
    V6Prefix(Ipv6Addr),
}

impl Source {
    pub fn new(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6Prefix(Ipv6Addr::from(
                    u128::from(v6) & !((1u128 << 64).wrapping_sub(1)),
                )),
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::V4(a) => write!(f, "{a}"),
            Source::V6Prefix(p) => write!(f, "{p}/64"),
        }
    }
}

/// One core's heavy hitters.
#[derive(Clone, Debug)]
pub struct TopRefused {
    current: Vec<(Source, u64)>,
    last: Vec<(Source, u64)>,
    window_start: Time,
}

impl TopRefused {
    pub fn new(now: Time) -> Self {
        Self {
            current: Vec::with_capacity(TOP_REFUSED),
            last: Vec::new(),
            window_start: now,
        }
    }

    fn roll(&mut self, now: Time) {
        if now.since(self.window_start) >= REFUSED_WINDOW_MS {
            // A window with nothing after it empties the report too.
            self.last = if now.since(self.window_start) >= 2 * REFUSED_WINDOW_MS {
                Vec::new()
            } else {
                std::mem::take(&mut self.current)
            };
            self.current.clear();
            self.window_start = now;
        }
    }

    pub fn record(&mut self, now: Time, ip: IpAddr) {
        self.roll(now);
        let src = Source::new(ip);
        if let Some(e) = self.current.iter_mut().find(|e| e.0 == src) {
            e.1 = e.1.saturating_add(1);
        } else if self.current.len() < TOP_REFUSED {
            self.current.push((src, 1));
        } else if let Some(min) = self.current.iter_mut().min_by_key(|e| e.1) {
            // Space-saving: the newcomer inherits the smallest count.
            *min = (src, min.1.saturating_add(1));
        }
    }

    /// The sources of the last complete window and the current one, counts summed, most first.
    pub fn report(&mut self, now: Time) -> Vec<(Source, u64)> {
        self.roll(now);
        merge([self.last.as_slice(), self.current.as_slice()], TOP_REFUSED)
    }
}

/// Sums counts of equal sources across `lists` and keeps the `keep` largest, most first.
pub fn merge<'a>(
    lists: impl IntoIterator<Item = &'a [(Source, u64)]>,
    keep: usize,
) -> Vec<(Source, u64)> {
    let mut all: Vec<(Source, u64)> = lists.into_iter().flatten().copied().collect();
    all.sort_unstable_by_key(|e| e.0);
    let mut summed: Vec<(Source, u64)> = Vec::with_capacity(all.len());
    for (s, n) in all {
        match summed.last_mut() {
            Some(last) if last.0 == s => last.1 = last.1.saturating_add(n),
            _ => summed.push((s, n)),
        }
    }
    summed.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    summed.truncate(keep);
    summed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_heavy_hitter_survives_a_spoofed_crowd_in_bounded_memory() {
        let mut t = TopRefused::new(Time::ZERO);
        let now = Time::from_secs(1);
        for i in 0..100_000u32 {
            // One flooder every third refusal, the rest from forged sources never seen twice.
            if i % 3 == 0 {
                t.record(now, ip("203.0.113.7"));
            } else {
                t.record(now, IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
            }
            assert!(t.current.len() <= TOP_REFUSED);
        }
        let r = t.report(now);
        assert_eq!(r[0].0, Source::new(ip("203.0.113.7")));
        assert!(r[0].1 >= 33_334, "never undercounted: {}", r[0].1);
        assert!(r.len() <= TOP_REFUSED);
    }

    #[test]
    fn windows_roll_and_ipv6_groups_by_64() {
        let mut t = TopRefused::new(Time::ZERO);
        t.record(Time::from_secs(1), ip("2001:db8:0:1::5"));
        t.record(Time::from_secs(2), ip("2001:db8:0:1::6"));
        t.record(Time::from_secs(3), ip("::ffff:198.51.100.1"));
        let r = t.report(Time::from_secs(3));
        assert_eq!(r[0], (Source::new(ip("2001:db8:0:1::")), 2));
        assert_eq!(r[0].0.to_string(), "2001:db8:0:1::/64");
        assert_eq!(r[1].0.to_string(), "198.51.100.1");
        // Next window: the last one still shows; two windows on, nothing does.
        t.record(Time::from_secs(61), ip("198.51.100.1"));
        let r = t.report(Time::from_secs(61));
        assert_eq!(
            r.iter()
                .find(|e| e.0.to_string() == "198.51.100.1")
                .unwrap()
                .1,
            2
        );
        assert!(t.report(Time::from_secs(200)).is_empty());
    }
}
