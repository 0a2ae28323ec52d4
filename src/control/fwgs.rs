//! Xash3D FWGS's HTTP server list (`GET <base>/v1/servers/<gamedir>`), as the engine reads it
//! (xash3d-fwgs `Documentation/protocol/http-server-list.md`; `engine/common/masterlist.c`
//! `NET_ParseMasterStaticBody`; shared/docs/protocols.md §1): UTF-8 text, one record a line,
//! `ip <addr>` for a Xash3D server (protocol 49), `gs <addr>` for a GoldSrc one (protocol 48),
//! IPv6 in brackets, `#` comments. The engine probes every address it reads directly, so only
//! servers it can reach that way are listed: Valve-family, protocol 49 or 48, and not behind NAT
//! (`\nat\1` servers need the UDP master's punching, which HTTP has not).

use crate::master::table::record::{Family, Server, flags};
use std::io::Write;

/// The protocol a Xash3D FWGS server registers with (xash3d-fwgs `sv_main.c`, SV_AddToMaster:
/// `PROTOCOL_VERSION`).
pub const XASH_PROTOCOL: u32 = 49;
/// GoldSrc's (HLDS) protocol.
pub const GOLDSRC_PROTOCOL: u32 = 48;

/// How the engine is to probe a listed server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `ip`: the Xash3D info query.
    Xash,
    /// `gs`: the GoldSrc `A2S_INFO` query.
    GoldSrc,
}

impl Kind {
    /// The record's directive, if the engine can use the server at all. The record keeps the
    /// `protocol` of the server's heartbeat: 49 is what a Xash3D server sends after the Xash3D
    /// handshake (`q\xFF<nonce>`), 48 what HLDS sends.
    pub fn of(s: &Server) -> Option<Kind> {
        if s.family != Family::Valve || s.has(flags::NAT) {
            return None;
        }
        match s.protocol {
            XASH_PROTOCOL => Some(Kind::Xash),
            GOLDSRC_PROTOCOL => Some(Kind::GoldSrc),
            _ => None,
        }
    }

    pub fn directive(self) -> &'static str {
        match self {
            Kind::Xash => "ip",
            Kind::GoldSrc => "gs",
        }
    }
}

/// The first line of every list: a comment the engine skips. A body is never empty, so the
/// engine reports "yielded 0 server(s)" for an empty list rather than "returned no data".
pub fn header(out: &mut Vec<u8>, servers: usize) {
    let _ = writeln!(
        out,
        "# muster {}: {servers} servers (ip: Xash3D, gs: GoldSrc)",
        env!("CARGO_PKG_VERSION")
    );
}

/// Appends `s`'s record line, if it is listed.
pub fn record(out: &mut Vec<u8>, s: &Server) -> bool {
    let Some(k) = Kind::of(s) else {
        return false;
    };
    // SocketAddr's Display brackets IPv6: `[2001:db8::1]:27015`.
    let _ = writeln!(out, "{} {}", k.directive(), s.addr.addr());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::AddrKey;

    fn server(addr: &str, family: Family, protocol: u32, f: u16) -> Server {
        Server {
            addr: AddrKey::new(addr.parse().unwrap()),
            family,
            protocol,
            flags: f,
            ..Server::EMPTY
        }
    }

    #[test]
    fn xash_and_goldsrc_servers_get_their_directive_and_others_none() {
        let mut out = Vec::new();
        header(&mut out, 2);
        assert!(record(
            &mut out,
            &server("192.0.2.10:27015", Family::Valve, 49, 0)
        ));
        assert!(record(
            &mut out,
            &server("[2001:db8::1]:27016", Family::Valve, 48, flags::DEDICATED)
        ));
        // Source (protocol 17), a DarkPlaces server, a Xash3D server behind NAT.
        assert!(!record(
            &mut out,
            &server("192.0.2.11:27015", Family::Valve, 17, 0)
        ));
        assert!(!record(
            &mut out,
            &server("192.0.2.12:26000", Family::DarkPlaces, 49, 0)
        ));
        assert!(!record(
            &mut out,
            &server("192.0.2.13:27015", Family::Valve, 49, flags::NAT)
        ));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("# muster "), "{text}");
        assert_eq!(
            &lines[1..],
            ["ip 192.0.2.10:27015", "gs [2001:db8::1]:27016"]
        );
    }
}
