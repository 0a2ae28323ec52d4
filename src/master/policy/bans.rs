//! Banned networks: a set of CIDRs looked up once per datagram, so it is kept as sorted, merged
//! address ranges searched in `O(log n)` (a ban list of thousands of entries costs ~12 comparisons).
//! IPv4 addresses are looked up as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), so one range list serves
//! both families.

use ipnet::IpNet;
use std::net::IpAddr;

/// Most ban entries a config may hold (each costs 32 bytes; the lookup stays logarithmic).
pub const MAX_BANS: usize = 1_000_000;

/// A set of networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetSet {
    /// Disjoint, sorted, inclusive ranges; adjacent ones merged.
    ranges: Vec<(u128, u128)>,
}

fn mapped(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl NetSet {
    pub fn new(nets: &[IpNet]) -> Self {
        let mut ranges: Vec<(u128, u128)> = nets
            .iter()
            .map(|n| (mapped(n.network()), mapped(n.broadcast())))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Self { ranges: merged }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Disjoint ranges held (after merging).
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.ranges.is_empty() {
            return false;
        }
        let x = mapped(ip);
        // The last range starting at or before x is the only one that can hold it.
        let i = self.ranges.partition_point(|r| r.0 <= x);
        i.checked_sub(1)
            .and_then(|i| self.ranges.get(i))
            .is_some_and(|r| x <= r.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> NetSet {
        let nets: Vec<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        NetSet::new(&nets)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn looks_up_v4_and_v6_ranges() {
        let s = set(&["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/48"]);
        assert!(s.contains(ip("203.0.113.0")));
        assert!(s.contains(ip("203.0.113.255")));
        assert!(!s.contains(ip("203.0.114.0")));
        assert!(!s.contains(ip("203.0.112.255")));
        assert!(s.contains(ip("198.51.100.7")));
        assert!(!s.contains(ip("198.51.100.8")));
        assert!(s.contains(ip("2001:db8::1")));
        assert!(s.contains(ip("2001:db8:0:ffff::1")));
        assert!(!s.contains(ip("2001:db8:1::1")));
        // An IPv4-mapped IPv6 source is the IPv4 address.
        assert!(s.contains(ip("::ffff:203.0.113.9")));
        assert!(!NetSet::default().contains(ip("1.2.3.4")));
    }

    #[test]
    fn merges_overlapping_and_adjacent() {
        let s = set(&["10.0.0.0/25", "10.0.0.128/25", "10.0.0.64/26", "0.0.0.0/0"]);
        assert_eq!(s.len(), 1, "{s:?}");
        assert!(s.contains(ip("255.255.255.255")));
        assert!(!s.contains(ip("2001:db8::1")), "IPv4 /0 is not all of IPv6");
        let s = set(&["10.0.0.0/25", "10.0.0.128/25"]);
        assert_eq!(s.len(), 1);
    }
}
