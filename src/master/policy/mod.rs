//! What the master accepts: table caps, address policy and the Quake III / DarkPlaces game rules.
//!
//! | module | job |
//! |---|---|
//! | [`games`] | Quake III-family game properties: heartbeat tags, anonymous protocols, send-empty/full (dpmaster `-g`) |
//! | [`bans`] | banned networks as sorted merged ranges (a binary search per datagram) |

pub mod bans;
pub mod games;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Silent servers leave after this long: the Valve master's and dpmaster's 15 minutes.
pub const DEFAULT_SERVER_TIMEOUT_MS: u64 = 15 * 60 * 1000;
/// Servers one shard lists at most. The engine divides its total (`--max-servers`) among cores.
pub const DEFAULT_MAX_SERVERS: usize = 1_000_000;
/// Servers listed per IPv4 address or IPv6 /64, as dpmaster.
pub const DEFAULT_MAX_SERVERS_PER_IP: u16 = 32;
/// Servers listed per IPv4 /24 or IPv6 /48 on one core (a network's addresses are steered to
/// different cores, so a network can hold up to this many times the cores): eight full addresses,
/// room for a hosting provider's rack, not for one spammer's network to fill a game's list.
pub const DEFAULT_MAX_SERVERS_PER_NET: u16 = 256;

/// The bounds and switches of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub server_timeout_ms: u64,
    pub max_servers: usize,
    pub max_servers_per_ip: u16,
    /// Servers (and handshakes in progress) per /24 or /48, per core.
    pub max_servers_per_net: u16,
    /// Accept game servers on loopback, private, link-local, CGNAT and unique-local addresses
    /// (tests and LANs). Off by default, as in dpmaster: such addresses are useless to the Internet.
    pub allow_private: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            server_timeout_ms: DEFAULT_SERVER_TIMEOUT_MS,
            max_servers: DEFAULT_MAX_SERVERS,
            max_servers_per_ip: DEFAULT_MAX_SERVERS_PER_IP,
            max_servers_per_net: DEFAULT_MAX_SERVERS_PER_NET,
            allow_private: false,
        }
    }
}

/// Turns an IPv4-mapped IPv6 address (from a dual-stack socket) into the IPv4 one.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// Why an address cannot be listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressVerdict {
    Ok,
    /// Port 0, unspecified, multicast or broadcast: never a game server.
    Invalid,
    /// Loopback or private, and `allow_private` is off.
    Private,
}

/// Whether a game server at `addr` may be listed.
pub fn check_address(addr: SocketAddr, allow_private: bool) -> AddressVerdict {
    if addr.port() == 0 {
        return AddressVerdict::Invalid;
    }
    let (invalid, private) = match addr.ip() {
        IpAddr::V4(ip) => (
            ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast(),
            is_private_v4(ip),
        ),
        IpAddr::V6(ip) => (ip.is_unspecified() || ip.is_multicast(), is_private_v6(ip)),
    };
    if invalid {
        AddressVerdict::Invalid
    } else if private && !allow_private {
        AddressVerdict::Private
    } else {
        AddressVerdict::Ok
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || (first & 0xFE00) == 0xFC00 // unique local fc00::/7
        || (first & 0xFFC0) == 0xFE80 // link local fe80::/10
}

/// The key of the per-address cap: the IPv4 address, or the IPv6 /64. [`IpKey::prefix`] gives
/// the wider network around it (IPv4 /24, IPv6 /48), for aggregates against carpet bombing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpKey([u8; 9]);

impl IpKey {
    /// The /24 (IPv4) or /48 (IPv6) around `ip`; never equal to any [`IpKey::new`].
    pub fn prefix(ip: IpAddr) -> Self {
        let mut k = [0u8; 9];
        match ip {
            IpAddr::V4(v4) => {
                k[0] = 24;
                k[1..4].copy_from_slice(&v4.octets()[..3]);
            }
            IpAddr::V6(v6) => {
                k[0] = 48;
                k[1..7].copy_from_slice(&v6.octets()[..6]);
            }
        }
        Self(k)
    }

    pub fn new(ip: IpAddr) -> Self {
        let mut k = [0u8; 9];
        match ip {
            IpAddr::V4(v4) => {
                k[0] = 4;
                k[1..5].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                k[0] = 6;
                k[1..9].copy_from_slice(&v6.octets()[..8]);
            }
        }
        Self(k)
    }
}

/// The Steam appid of a GoldSrc game directory, for heartbeats that carry none (GoldSrc and
/// Xash3D send `gamedir` only, yet `\appid\10` is the most common scripted filter). The table is
/// ReHLDS's (`rehlds/engine/sv_main.cpp`, the gamedir → appid map it reports to Steam);
/// directories it does not name map to 0 (no appid: a mod is not Half-Life).
pub fn goldsrc_appid(gamedir: &[u8]) -> u32 {
    const TABLE: [(&[u8], u32); 11] = [
        (b"cstrike", 10),
        (b"tfc", 20),
        (b"dod", 30),
        (b"dmc", 40),
        (b"gearbox", 50),
        (b"ricochet", 60),
        (b"valve", 70),
        (b"czero", 80),
        (b"czeror", 100),
        (b"bshift", 130),
        (b"cstrike_beta", 150),
    ];
    TABLE
        .iter()
        .find(|(dir, _)| dir.eq_ignore_ascii_case(gamedir))
        .map_or(0, |&(_, id)| id)
}

/// Which Quake III / DarkPlaces games may register. Empty `accept` means every game not rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GamePolicy {
    pub accept: Vec<Box<[u8]>>,
    pub reject: Vec<Box<[u8]>>,
}

impl GamePolicy {
    pub fn allows(&self, game: &[u8]) -> bool {
        !self.reject.iter().any(|g| &**g == game)
            && (self.accept.is_empty() || self.accept.iter().any(|g| &**g == game))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goldsrc_gamedirs_map_to_rehlds_appids() {
        assert_eq!(goldsrc_appid(b"cstrike"), 10);
        assert_eq!(goldsrc_appid(b"CStrike"), 10);
        assert_eq!(goldsrc_appid(b"valve"), 70);
        assert_eq!(goldsrc_appid(b"czero"), 80);
        assert_eq!(goldsrc_appid(b"svencoop"), 0);
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn address_policy() {
        for (addr, verdict) in [
            ("1.2.3.4:27015", AddressVerdict::Ok),
            ("1.2.3.4:0", AddressVerdict::Invalid),
            ("0.0.0.0:27015", AddressVerdict::Invalid),
            ("224.0.0.1:27015", AddressVerdict::Invalid),
            ("255.255.255.255:27015", AddressVerdict::Invalid),
            ("127.0.0.1:27015", AddressVerdict::Private),
            ("10.1.2.3:27015", AddressVerdict::Private),
            ("172.16.0.1:27015", AddressVerdict::Private),
            ("192.168.1.1:27015", AddressVerdict::Private),
            ("169.254.1.1:27015", AddressVerdict::Private),
            ("100.64.0.1:27015", AddressVerdict::Private),
            ("[::1]:27015", AddressVerdict::Private),
            ("[fd00::1]:27015", AddressVerdict::Private),
            ("[fe80::1]:27015", AddressVerdict::Private),
            ("[2001:db8::1]:27015", AddressVerdict::Ok),
            ("[ff02::1]:27015", AddressVerdict::Invalid),
        ] {
            assert_eq!(check_address(a(addr), false), verdict, "{addr}");
        }
        assert_eq!(
            check_address(a("127.0.0.1:27015"), true),
            AddressVerdict::Ok
        );
        assert_eq!(
            check_address(a("0.0.0.0:27015"), true),
            AddressVerdict::Invalid
        );
    }

    #[test]
    fn mapped_addresses_become_ipv4_and_v6_caps_use_the_64() {
        assert_eq!(canonical(a("[::ffff:1.2.3.4]:5")), a("1.2.3.4:5"));
        assert_eq!(canonical(a("[2001:db8::1]:5")), a("[2001:db8::1]:5"));
        let k1 = IpKey::new(a("[2001:db8:0:1::1]:1").ip());
        let k2 = IpKey::new(a("[2001:db8:0:1:ffff::2]:1").ip());
        let k3 = IpKey::new(a("[2001:db8:0:2::1]:1").ip());
        assert_eq!(k1, k2);
        assert_ne!(k1, k3);
        let p = |s: &str| IpKey::prefix(a(s).ip());
        assert_eq!(p("1.2.3.4:1"), p("1.2.3.200:9"));
        assert_ne!(p("1.2.3.4:1"), p("1.2.4.4:1"));
        assert_eq!(p("[2001:db8:1::1]:1"), p("[2001:db8:1:ffff::2]:1"));
        assert_ne!(p("[2001:db8:1::1]:1"), p("[2001:db8:2::1]:1"));
        assert_ne!(p("1.2.3.4:1"), IpKey::new(a("1.2.3.4:1").ip()));
    }

    #[test]
    fn tags_and_games() {
        let g = crate::master::policy::games::Games::default();
        assert_eq!(g.tag_index(b"QuakeArena-1"), Some(1));
        assert_eq!(g.tag_index(b"ETFlatline-1"), None);
        assert_eq!(
            g.tag_index(b"quakearena-1"),
            None,
            "tags are case-sensitive"
        );
        let p = GamePolicy {
            accept: vec![],
            reject: vec![b"spam".to_vec().into()],
        };
        assert!(p.allows(b"Nexuiz") && !p.allows(b"spam"));
        let only = GamePolicy {
            accept: vec![b"Xonotic".to_vec().into()],
            reject: vec![],
        };
        assert!(only.allows(b"Xonotic") && !only.allows(b"Nexuiz"));
    }
}
