//! The compact server record and the address key that orders the list.
//!
//! Where the bytes go (x86-64, `size_of::<Server>()` is asserted in the tests):
//!
//! | field | bytes | why |
//! |---|---|---|
//! | `addr` ([`AddrKey`]) | 19 | family tag, 16 address bytes (IPv4 in the first 4), big-endian port: ordering the key bytes is wire order |
//! | `family`, `region`, `server_type` | 3 | |
//! | `players`, `max_players`, `bots` | 3 | |
//! | `flags` | 2 | dedicated, secure, linux, password, lan, proxy, nat, whitelisted |
//! | `appid`, `protocol` | 8 | |
//! | 7 × [`Sym`]: game, product, map, version, tags, gamedata, hostname | 28 | interned: repeated strings are stored once per shard |
//! | `first_seen` | 4 | seconds on the core's clock |
//!
//! 67 bytes of fields, 68 with padding (`Option<Server>` too: the family has a niche). When the
//! server was last heard is kept beside the record by the table (`Table::seen`), not in it: a
//! heartbeat that changes nothing else then changes nothing a list reads. The table adds its index
//! and expiry entries; see `docs/benchmarks.md` for bytes per server at 1k–1M, typical and worst.
//! The Valve paper budgeted 14 bytes (address, next pointer, timestamp): everything past that buys
//! filtering at the master.

use crate::master::table::intern::{Interner, Sym};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A server's address as a sortable key: `[4 | 6, address (16), port (big-endian, 2)]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrKey(pub [u8; 19]);

impl AddrKey {
    pub fn new(addr: SocketAddr) -> Self {
        let mut k = [0u8; 19];
        match addr.ip() {
            IpAddr::V4(ip) => {
                k[0] = 4;
                k[1..5].copy_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                k[0] = 6;
                k[1..17].copy_from_slice(&ip.octets());
            }
        }
        k[17..19].copy_from_slice(&addr.port().to_be_bytes());
        Self(k)
    }

    pub fn is_v4(&self) -> bool {
        self.0[0] == 4
    }

    pub fn addr(&self) -> SocketAddr {
        let port = u16::from_be_bytes([self.0[17], self.0[18]]);
        if self.is_v4() {
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(self.0[1], self.0[2], self.0[3], self.0[4])),
                port,
            )
        } else {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&self.0[1..17]);
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)
        }
    }

    /// The 6-byte Valve / `getserversResponse` entry of an IPv4 key.
    pub fn v4_entry(&self) -> [u8; 6] {
        [
            self.0[1], self.0[2], self.0[3], self.0[4], self.0[17], self.0[18],
        ]
    }
}

/// Which handshake registered the server (and so which list queries see it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Family {
    /// GoldSrc / Source / Xash3D, listed by the Valve master query.
    Valve = 1,
    /// Quake III / DarkPlaces, listed by `getservers`.
    DarkPlaces = 2,
}

/// Bits of [`Server::flags`].
pub mod flags {
    pub const DEDICATED: u16 = 1 << 0;
    pub const SECURE: u16 = 1 << 1;
    pub const LINUX: u16 = 1 << 2;
    pub const PASSWORD: u16 = 1 << 3;
    pub const LAN: u16 = 1 << 4;
    pub const PROXY: u16 = 1 << 5;
    pub const NAT: u16 = 1 << 6;
    pub const WHITELISTED: u16 = 1 << 7;
    /// Kept in the table but in no list: a liveness probe has not vouched for it
    /// ([`crate::master::probe`]). Never set by what a server claims.
    pub const HIDDEN: u16 = 1 << 8;
    /// Listed on a peer's word (peering): its liveness is its origin's; never forwarded again.
    pub const FORWARDED: u16 = 1 << 9;
}

/// One listed server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Server {
    pub addr: AddrKey,
    pub family: Family,
    /// Valve region byte (255 = world), 255 for DP servers.
    pub region: u8,
    /// `d` dedicated, `l` listen, `p` proxy (Valve `type` key); 0 when unknown.
    pub server_type: u8,
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
    pub flags: u16,
    pub appid: u32,
    pub protocol: u32,
    /// Valve `gamedir`, DP `gamename`.
    pub game: Sym,
    /// Valve `product`; DP `modname`.
    pub product: Sym,
    pub map: Sym,
    pub version: Sym,
    /// Valve `gametype` (Source's `sv_tags`); DP `gametype`.
    pub tags: Sym,
    /// Valve hidden tags (`gamedata`).
    pub gamedata: Sym,
    pub hostname: Sym,
    pub first_seen: u32,
}

impl Server {
    /// Whether the server takes a place in list replies (not hidden by its probes).
    pub fn is_listed(&self) -> bool {
        self.flags & flags::HIDDEN == 0
    }

    /// Whether a peer forwarded it (it registered with another master).
    pub fn is_forwarded(&self) -> bool {
        self.flags & flags::FORWARDED != 0
    }

    /// A record with nothing in it (a stand-in where a lookup that cannot fail must still not panic).
    pub const EMPTY: Server = Server {
        addr: AddrKey([0; 19]),
        family: Family::Valve,
        region: 0,
        server_type: 0,
        players: 0,
        max_players: 0,
        bots: 0,
        flags: 0,
        appid: 0,
        protocol: 0,
        game: Sym::NONE,
        product: Sym::NONE,
        map: Sym::NONE,
        version: Sym::NONE,
        tags: Sym::NONE,
        gamedata: Sym::NONE,
        hostname: Sym::NONE,
        first_seen: 0,
    };

    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    pub fn is_empty(&self) -> bool {
        self.players == 0
    }

    pub fn is_full(&self) -> bool {
        self.max_players != 0 && self.players >= self.max_players
    }

    /// Every interned string, for reference counting.
    pub fn syms(&self) -> [Sym; 7] {
        [
            self.game,
            self.product,
            self.map,
            self.version,
            self.tags,
            self.gamedata,
            self.hostname,
        ]
    }

    pub fn release_strings(&self, interner: &mut Interner) {
        for s in self.syms() {
            interner.release(s);
        }
    }
}

/// Parses a small decimal value of an infostring, saturating at `u8::MAX` (a server claiming 300
/// players is listed as 255, not dropped).
pub fn small_number(v: Option<&[u8]>) -> Option<u8> {
    let v = v?;
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        v.iter()
            .fold(0u32, |n, d| {
                n.saturating_mul(10)
                    .saturating_add(u32::from(d.wrapping_sub(b'0')))
            })
            .min(255) as u8,
    )
}

/// Parses a decimal `u32` value.
pub fn number(v: Option<&[u8]>) -> Option<u32> {
    let v = v?;
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u32, |n, d| {
        n.checked_mul(10)?
            .checked_add(u32::from(d.wrapping_sub(b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_compact() {
        assert_eq!(std::mem::size_of::<Server>(), 68);
        assert_eq!(std::mem::size_of::<Option<Server>>(), 68);
        assert_eq!(std::mem::size_of::<AddrKey>(), 19);
    }

    #[test]
    fn keys_order_as_wire_bytes_and_round_trip() {
        let addrs: Vec<SocketAddr> = [
            "10.0.0.1:27015",
            "9.255.255.255:65535",
            "10.0.0.1:27016",
            "[::1]:1",
            "[2001:db8::1]:27015",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        for a in &addrs {
            assert_eq!(AddrKey::new(*a).addr(), *a);
        }
        let mut keys: Vec<AddrKey> = addrs.iter().map(|a| AddrKey::new(*a)).collect();
        keys.sort();
        let sorted: Vec<String> = keys.iter().map(|k| k.addr().to_string()).collect();
        assert_eq!(
            sorted,
            [
                "9.255.255.255:65535",
                "10.0.0.1:27015",
                "10.0.0.1:27016",
                "[::1]:1",
                "[2001:db8::1]:27015"
            ]
        );
        assert_eq!(AddrKey::new(addrs[0]).v4_entry(), [10, 0, 0, 1, 0x69, 0x87]);
    }

    #[test]
    fn numbers() {
        assert_eq!(small_number(Some(b"300")), Some(255));
        assert_eq!(small_number(Some(b"12")), Some(12));
        assert_eq!(small_number(Some(b"-1")), None);
        assert_eq!(small_number(None), None);
        assert_eq!(number(Some(b"4294967295")), Some(u32::MAX));
        assert_eq!(number(Some(b"4294967296")), None);
    }
}
