//! Which shard (core) a datagram belongs to, by its source address.
//!
//! The engine's classic-BPF program on each `SO_REUSEPORT` group (`engine/socket.rs`) computes
//! exactly [`shard_for`]; the deterministic simulation (`tests/sim.rs`) shards with this same
//! function, so what it shows about per-core state (the per-address cap, challenges meeting their
//! heartbeats) is what the engine does.
//!
//! The key is the IPv4 address, or the IPv6 /64 (the unit of the per-address cap): every port of
//! one host lands on one shard, so a per-address count kept by that shard alone is exact.

use std::net::IpAddr;

/// The multiplier of the hash (Knuth's multiplicative constant, 2³² / φ).
pub const HASH_MUL: u32 = 0x9E37_79B1;

/// The 32-bit steering key of a source address: IPv4 itself; IPv6 the XOR of the two words of its
/// /64. The BPF program loads the same words from the IP header.
pub fn key(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            // A dual-stack socket's mapped address is the IPv4 host (never on the wire as such:
            // IPv6 listeners are V6ONLY, but the sans-IO core canonicalises the same way).
            Some(v4) => u32::from(v4),
            None => {
                let o = v6.octets();
                let w = |a: u8, b: u8, c: u8, d: u8| u32::from_be_bytes([a, b, c, d]);
                w(o[0], o[1], o[2], o[3]) ^ w(o[4], o[5], o[6], o[7])
            }
        },
    }
}

/// The shard of `shards` that datagrams from `ip` are steered to.
pub fn shard_for(ip: IpAddr, shards: usize) -> usize {
    let h = key(ip).wrapping_mul(HASH_MUL) >> 16;
    // `h` < 2¹⁶ and `shards` ≥ 1: the remainder is a valid shard index.
    (h as usize).checked_rem(shards.max(1)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_one_shard_and_ipv6_by_its_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        assert_eq!(key(a), key(b));
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        let v4: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(shard_for(mapped, 7), shard_for(v4, 7));
        // A known value: (0x7F000001 * 0x9E3779B1 mod 2³²) >> 16 = 0x6D37, odd: shard 1 of 2.
        assert_eq!(
            u32::from(std::net::Ipv4Addr::LOCALHOST).wrapping_mul(HASH_MUL) >> 16,
            0x6D37
        );
        assert_eq!(shard_for("127.0.0.1".parse().unwrap(), 2), 1);
        assert_eq!(shard_for(v4, 1), 0);
        assert_eq!(shard_for(v4, 0), 0, "no shards is treated as one");
    }

    #[test]
    fn hosts_spread_over_shards() {
        let mut seen = [0usize; 4];
        for d in 0..=255u8 {
            seen[shard_for(IpAddr::from([127, 0, 3, d]), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 32), "{seen:?}");
    }
}
