//! Quake III / DarkPlaces list queries (`getservers`, `getserversExt`) and their responses.
//!
//! Query: `getservers [gamename] <protocol> [options…]` or `getserversExt <gamename> <protocol>
//! [options…]`, tokens separated by spaces; qstat ends the last token with `\n`.
//! Response: `getserversResponse` / `getserversExtResponse`, then entries `\` + IPv4 + port or (Ext
//! only) `/` + IPv6 + port, at most [`MAX_RESPONSE_LEN`] bytes a packet, `\EOT\0\0\0` at the end of
//! the last packet and `\EOT` at the end of every other (shared/docs/protocols.md §3; see
//! [`ResponseWriter`]).

use super::cursor::{OOB, Reader, put_addr_v4, put_addr_v6};
use super::error::{Error, ErrorKind, Result};
use arrayvec::ArrayVec;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

pub const GETSERVERS: &[u8] = b"getservers";
pub const GETSERVERS_EXT: &[u8] = b"getserversExt";
pub const RESPONSE: &[u8] = b"getserversResponse";
pub const RESPONSE_EXT: &[u8] = b"getserversExtResponse";
/// End-of-transmission marker, shaped like an IPv4 entry.
pub const EOT: &[u8; 7] = b"\\EOT\0\0\0";
/// Largest response datagram, as dpmaster 2.2.
pub const MAX_RESPONSE_LEN: usize = 1400;
/// Size of an IPv4 and an IPv6 entry, marker included.
pub const ENTRY_V4_LEN: usize = 7;
pub const ENTRY_V6_LEN: usize = 19;
/// Most option tokens kept from one query; more is rejected (real clients send at most 5).
pub const MAX_QUERY_OPTIONS: usize = 8;
/// Longest gamename or option token.
pub const MAX_TOKEN_LEN: usize = 64;

/// The gametype a query asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gametype<'a> {
    /// `gametype=X`, the value as sent (DarkPlaces games use names, Quake III numbers).
    Named(&'a [u8]),
    /// The Quake III keywords and the number dpmaster maps each to.
    Ffa,
    Tourney,
    Team,
    Ctf,
}

impl<'a> Gametype<'a> {
    /// The value to compare with a server's `gametype` key.
    pub fn value(&self) -> &'a [u8] {
        match *self {
            Self::Named(v) => v,
            Self::Ffa => b"0",
            Self::Tourney => b"1",
            Self::Team => b"3",
            Self::Ctf => b"4",
        }
    }
}

/// One option token, in the order it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryOption<'a> {
    Empty,
    Full,
    Gametype(Gametype<'a>),
    Ipv4,
    Ipv6,
    /// Ignored, as dpmaster ignores options it does not know.
    Unknown(&'a [u8]),
}

impl<'a> QueryOption<'a> {
    fn parse(t: &'a [u8]) -> Self {
        match t {
            b"empty" => Self::Empty,
            b"full" => Self::Full,
            b"ipv4" => Self::Ipv4,
            b"ipv6" => Self::Ipv6,
            b"ffa" => Self::Gametype(Gametype::Ffa),
            b"tourney" => Self::Gametype(Gametype::Tourney),
            b"team" => Self::Gametype(Gametype::Team),
            b"ctf" => Self::Gametype(Gametype::Ctf),
            _ => match t.strip_prefix(b"gametype=") {
                Some(v) if !v.is_empty() => Self::Gametype(Gametype::Named(v)),
                _ => Self::Unknown(t),
            },
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let text: &[u8] = match *self {
            Self::Empty => b"empty",
            Self::Full => b"full",
            Self::Ipv4 => b"ipv4",
            Self::Ipv6 => b"ipv6",
            Self::Gametype(Gametype::Ffa) => b"ffa",
            Self::Gametype(Gametype::Tourney) => b"tourney",
            Self::Gametype(Gametype::Team) => b"team",
            Self::Gametype(Gametype::Ctf) => b"ctf",
            Self::Gametype(Gametype::Named(v)) => {
                out.extend_from_slice(b"gametype=");
                v
            }
            Self::Unknown(t) => t,
        };
        out.extend_from_slice(text);
    }
}

/// A decoded `getservers` / `getserversExt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery<'a> {
    pub ext: bool,
    /// Required by `getserversExt`; absent from Quake III's `getservers <protocol>`.
    pub gamename: Option<&'a [u8]>,
    pub protocol: u32,
    pub options: ArrayVec<QueryOption<'a>, MAX_QUERY_OPTIONS>,
    /// qstat ends the query with `\n`.
    pub trailing_newline: bool,
}

/// The filter a query's options amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QueryFilter<'a> {
    /// Include empty servers (otherwise they are left out).
    pub empty: bool,
    /// Include full servers (otherwise they are left out).
    pub full: bool,
    /// The last gametype option sent, if any.
    pub gametype: Option<Gametype<'a>>,
    /// Address families to list: neither option means both for `getserversExt`, IPv4 only for
    /// `getservers` (whose response cannot carry IPv6).
    pub ipv4: bool,
    pub ipv6: bool,
}

impl<'a> ListQuery<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        r.expect(&OOB, "getservers.oob")?;
        r.expect(GETSERVERS, "getservers.header")?;
        let ext = r.eat(b"Ext");
        let at = r.offset();
        let rest = r.take_rest();
        let (body, trailing_newline) = match rest.strip_suffix(b"\n") {
            Some(b) => (b, true),
            None => (rest, false),
        };
        let body = body.strip_prefix(b" ").ok_or(Error::new(
            ErrorKind::Missing,
            "getservers.protocol",
            at,
        ))?;
        if let Some(i) = body.iter().position(|b| !matches!(b, 32..=126)) {
            return Err(Error::new(
                ErrorKind::BadByte,
                "getservers",
                at.saturating_add(1).saturating_add(i),
            ));
        }
        let mut tokens = body.split(|&b| b == b' ').filter(|t| !t.is_empty());
        let first =
            tokens
                .next()
                .ok_or(Error::new(ErrorKind::Missing, "getservers.protocol", at))?;
        let is_number = first.iter().all(u8::is_ascii_digit);
        let (gamename, protocol_text) = if ext || !is_number {
            let p =
                tokens
                    .next()
                    .ok_or(Error::new(ErrorKind::Missing, "getservers.protocol", at))?;
            (Some(first), p)
        } else {
            (None, first)
        };
        if gamename.is_some_and(|g| g.len() > MAX_TOKEN_LEN) {
            return Err(Error::new(ErrorKind::TooLong, "getservers.gamename", at));
        }
        let protocol =
            super::cursor::parse_decimal(protocol_text, u64::from(u32::MAX), "getservers.protocol")
                .map_err(|e| Error { offset: at, ..e })? as u32;
        let mut options = ArrayVec::new();
        for t in tokens {
            if t.len() > MAX_TOKEN_LEN {
                return Err(Error::new(ErrorKind::TooLong, "getservers.option", at));
            }
            options
                .try_push(QueryOption::parse(t))
                .map_err(|_| Error::new(ErrorKind::TooLong, "getservers.options", at))?;
        }
        Ok(Self {
            ext,
            gamename,
            protocol,
            options,
            trailing_newline,
        })
    }

    /// Appends the query, tokens separated by single spaces.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.ext && self.gamename.is_none() {
            return Err(Error::new(ErrorKind::Missing, "getserversExt.gamename", 0));
        }
        if let Some(g) = self.gamename
            && (g.is_empty() || g.len() > MAX_TOKEN_LEN || g.iter().any(|b| !matches!(b, 33..=126)))
        {
            return Err(Error::new(ErrorKind::BadValue, "getservers.gamename", 0));
        }
        out.extend_from_slice(&OOB);
        out.extend_from_slice(if self.ext { GETSERVERS_EXT } else { GETSERVERS });
        if let Some(g) = self.gamename {
            out.push(b' ');
            out.extend_from_slice(g);
        }
        out.push(b' ');
        super::cursor::put_decimal(out, u64::from(self.protocol));
        for o in &self.options {
            out.push(b' ');
            o.write(out);
        }
        if self.trailing_newline {
            out.push(b'\n');
        }
        Ok(())
    }

    /// What the options ask for.
    pub fn filter(&self) -> QueryFilter<'a> {
        let mut f = QueryFilter::default();
        for o in &self.options {
            match *o {
                QueryOption::Empty => f.empty = true,
                QueryOption::Full => f.full = true,
                QueryOption::Gametype(g) => f.gametype = Some(g),
                QueryOption::Ipv4 => f.ipv4 = true,
                QueryOption::Ipv6 => f.ipv6 = true,
                QueryOption::Unknown(_) => {}
            }
        }
        if !self.ext {
            (f.ipv4, f.ipv6) = (true, false);
        } else if !f.ipv4 && !f.ipv6 {
            (f.ipv4, f.ipv6) = (true, true);
        }
        f
    }
}

/// Largest UDP payload over IPv4.
pub const MAX_UDP_PAYLOAD: usize = 65_507;
/// The smallest `max_len` a [`ResponseWriter`] accepts: header, one IPv6 entry and the EOT marker.
const MIN_MAX_LEN: usize =
    OOB.len() + RESPONSE.len() + ENTRY_V6_LEN + EOT.len() + PACKET_TRAILER.len();
const MIN_MAX_LEN_EXT: usize =
    OOB.len() + RESPONSE_EXT.len() + ENTRY_V6_LEN + EOT.len() + PACKET_TRAILER.len();
/// Ends every packet but the last: the EOT marker without its NUL bytes (see [`ResponseWriter`]).
pub const PACKET_TRAILER: &[u8; 4] = b"\\EOT";

/// Writes a list response as consecutive packets into one buffer, recording where each ends, so a
/// sender can pass them to the kernel as they are (one `send` each, or one GSO batch).
///
/// Each packet holds as many entries as fit in `max_len` bytes; the `\EOT\0\0\0` marker is added to
/// the last packet by [`finish`](Self::finish), which starts a new packet if it does not fit.
///
/// One deliberate difference from dpmaster 2.2: a packet that does not end with the whole EOT
/// marker ends with [`PACKET_TRAILER`], `\EOT` without the NULs — the one layout every client we
/// read takes whole:
/// - qstat 2.17 (`qstat.c`, `deal_with_q3master_packet`: `while (p < end - 6)`) and ioquake3
///   (`cl_main.c`, `CL_ServersResponsePacket`: an entry needs 7 bytes after its `\` and a `\` or
///   `/` after it) drop the last entry of a packet that ends right after it (dpmaster's layout);
///   the trailer's `\` keeps it, and its 3 remaining bytes are too short to read as an entry;
/// - DarkPlaces (`netconn.c`: 7- or 19-byte records, stops below 7 bytes) ignores the 4 bytes, and
///   ends the list only on `\EOT\0\0\0`;
/// - pyq3serverlist 0.4.0 cuts each packet's body at the first `\EOT` and concatenates the bodies
///   (a bare `\` after the last entry, muster's earlier trailer, shifted every later entry by a
///   byte); it finishes on the NULs of the last packet's marker.
///
/// A full IPv4 packet still holds 196 entries (1,398 bytes).
#[derive(Debug)]
pub struct ResponseWriter<'o> {
    out: &'o mut Vec<u8>,
    ends: &'o mut Vec<usize>,
    ext: bool,
    max_len: usize,
    packet_start: usize,
    open: bool,
}

impl<'o> ResponseWriter<'o> {
    /// `max_len` must leave room for the header, one IPv6 entry and the EOT marker.
    pub fn new(
        ext: bool,
        max_len: usize,
        out: &'o mut Vec<u8>,
        ends: &'o mut Vec<usize>,
    ) -> Result<Self> {
        let min = if ext { MIN_MAX_LEN_EXT } else { MIN_MAX_LEN };
        if !(min..=MAX_UDP_PAYLOAD).contains(&max_len) {
            return Err(Error::new(
                ErrorKind::BadValue,
                "getserversResponse.max_len",
                max_len,
            ));
        }
        let packet_start = out.len();
        Ok(Self {
            out,
            ends,
            ext,
            max_len,
            packet_start,
            open: false,
        })
    }

    /// Opens a packet if none is open, or closes the open one (with its trailer) first if `n`
    /// more bytes would not leave room for the trailer (`reserve` = its length) or would not fit
    /// at all (`reserve` = 0, for the EOT that ends the last packet).
    fn room_for(&mut self, n: usize, reserve: usize) {
        let used = self.out.len().saturating_sub(self.packet_start);
        if self.open && used.saturating_add(n).saturating_add(reserve) > self.max_len {
            // Entries were added keeping room for the trailer, so it always fits.
            self.out.extend_from_slice(PACKET_TRAILER);
            self.ends.push(self.out.len());
            self.open = false;
        }
        if !self.open {
            self.packet_start = self.out.len();
            self.out.extend_from_slice(&OOB);
            self.out
                .extend_from_slice(if self.ext { RESPONSE_EXT } else { RESPONSE });
            self.open = true;
        }
    }

    /// Appends one server. IPv6 addresses need an Ext response; IPv4 entries that would read as the
    /// EOT marker (69.79.84.0:0) are refused, as is port 0.
    pub fn push(&mut self, addr: SocketAddr) -> Result<()> {
        match addr {
            SocketAddr::V4(a) => self.push_v4(a),
            SocketAddr::V6(a) => self.push_v6(a),
        }
    }

    pub fn push_v4(&mut self, a: SocketAddrV4) -> Result<()> {
        if a.port() == 0 {
            return Err(Error::new(
                ErrorKind::BadValue,
                "getserversResponse.entry",
                0,
            ));
        }
        self.room_for(ENTRY_V4_LEN, PACKET_TRAILER.len());
        self.out.push(b'\\');
        put_addr_v4(self.out, a);
        Ok(())
    }

    /// Appends one IPv4 server given as its 6 wire bytes (address and port, big-endian): the
    /// list builder's form, written without a detour through `SocketAddr`.
    pub fn push_v4_bytes(&mut self, e: [u8; 6]) -> Result<()> {
        if e[4] == 0 && e[5] == 0 {
            return Err(Error::new(
                ErrorKind::BadValue,
                "getserversResponse.entry",
                0,
            ));
        }
        self.room_for(ENTRY_V4_LEN, PACKET_TRAILER.len());
        self.out
            .extend_from_slice(&[b'\\', e[0], e[1], e[2], e[3], e[4], e[5]]);
        Ok(())
    }

    pub fn push_v6(&mut self, a: SocketAddrV6) -> Result<()> {
        if !self.ext || a.port() == 0 {
            return Err(Error::new(
                ErrorKind::BadValue,
                "getserversResponse.entry",
                0,
            ));
        }
        self.room_for(ENTRY_V6_LEN, PACKET_TRAILER.len());
        self.out.push(b'/');
        put_addr_v6(self.out, a);
        Ok(())
    }

    /// Packets completed so far (not counting the one being filled).
    pub fn packets(&self) -> usize {
        self.ends.len()
    }

    /// Whether an entry of `len` bytes would close the packet being filled and start another.
    pub fn would_start_packet(&self, len: usize) -> bool {
        let used = self.out.len().saturating_sub(self.packet_start);
        self.open
            && used
                .saturating_add(len)
                .saturating_add(PACKET_TRAILER.len())
                > self.max_len
    }

    /// Ends the packet being filled as a non-final one (with its trailer): the response goes on
    /// in another writer's packets. Nothing happens if no packet is open.
    pub fn close(mut self) -> usize {
        if self.open {
            self.out.extend_from_slice(PACKET_TRAILER);
            self.ends.push(self.out.len());
            self.open = false;
        }
        self.ends.len()
    }

    /// Ends the response with the EOT marker and returns how many packets it holds.
    pub fn finish(mut self) -> usize {
        self.room_for(EOT.len(), 0);
        self.out.extend_from_slice(EOT);
        self.ends.push(self.out.len());
        self.ends.len()
    }
}

/// A decoded response packet: a checked view over its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListResponse<'a> {
    pub ext: bool,
    entries: &'a [u8],
    /// True when this packet ends with `\EOT\0\0\0` (it is the last one).
    pub eot: bool,
}

impl<'a> ListResponse<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        r.expect(&OOB, "getserversResponse.oob")?;
        let ext = if r.eat(RESPONSE_EXT) {
            true
        } else {
            r.expect(RESPONSE, "getserversResponse.header")?;
            false
        };
        let start = r.offset();
        let mut end = buf.len();
        let mut eot = false;
        while !r.is_empty() {
            if eot {
                return Err(Error::new(
                    ErrorKind::TrailingBytes,
                    "getserversResponse",
                    r.offset(),
                ));
            }
            let entry_start = r.offset();
            if r.remaining() == PACKET_TRAILER.len() && buf.ends_with(PACKET_TRAILER) {
                // The trailer ending a non-final packet (see `ResponseWriter`).
                end = entry_start;
                r.take(PACKET_TRAILER.len(), "getserversResponse.trailer")?;
                continue;
            }
            match r.u8("getserversResponse.entry")? {
                b'\\' => {
                    let e: [u8; 6] = r.array("getserversResponse.entry")?;
                    if &e == b"EOT\0\0\0" {
                        eot = true;
                        end = entry_start;
                    }
                }
                b'/' if ext => {
                    r.take(18, "getserversResponse.entry")?;
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::BadByte,
                        "getserversResponse.entry",
                        entry_start,
                    ));
                }
            }
        }
        Ok(Self {
            ext,
            entries: buf.get(start..end).unwrap_or_default(),
            eot,
        })
    }

    /// The listed servers, in order.
    pub fn servers(&self) -> impl Iterator<Item = SocketAddr> + 'a {
        let mut r = Reader::new(self.entries);
        core::iter::from_fn(move || match r.u8("entry").ok()? {
            b'\\' => r.addr_v4("entry").ok().map(SocketAddr::V4),
            _ => r.addr_v6("entry").ok().map(SocketAddr::V6),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn q(raw: &[u8]) -> ListQuery<'_> {
        ListQuery::decode(raw).unwrap()
    }

    fn re_encode(raw: &[u8]) {
        let mut out = Vec::new();
        q(raw).encode(&mut out).unwrap();
        assert_eq!(out, raw, "{}", String::from_utf8_lossy(raw));
    }

    #[test]
    fn quake3_and_darkplaces_queries() {
        // qstat -q3m,71: protocol only, options, final newline (shared/docs/protocols.md §3).
        let oa = q(b"\xff\xff\xff\xffgetservers 71 empty full\n");
        assert!(!oa.ext && oa.gamename.is_none() && oa.trailing_newline);
        assert_eq!(oa.protocol, 71);
        let f = oa.filter();
        assert!(f.empty && f.full && f.ipv4 && !f.ipv6 && f.gametype.is_none());
        // DarkPlaces getservers names its game.
        let nx = q(b"\xff\xff\xff\xffgetservers Nexuiz 3 empty full\n");
        assert_eq!((nx.gamename, nx.protocol), (Some(&b"Nexuiz"[..]), 3));
        // Bare query: no options, so empty and full servers are left out.
        let bare = q(b"\xff\xff\xff\xffgetservers 68");
        assert_eq!(
            bare.filter(),
            QueryFilter {
                ipv4: true,
                ..Default::default()
            }
        );
        for raw in [
            &b"\xff\xff\xff\xffgetservers 71 empty full\n"[..],
            b"\xff\xff\xff\xffgetservers Nexuiz 3 empty full\n",
            b"\xff\xff\xff\xffgetservers 68",
            b"\xff\xff\xff\xffgetservers 68 ffa",
            b"\xff\xff\xff\xffgetserversExt Xonotic 3 ipv6 gametype=ctf empty",
            b"\xff\xff\xff\xffgetserversExt DarkPlaces-Quake 3 ipv4 ipv6\n",
            b"\xff\xff\xff\xffgetservers 68 tourney team ctf whatever",
        ] {
            re_encode(raw);
        }
    }

    #[test]
    fn ext_options() {
        let both = q(b"\xff\xff\xff\xffgetserversExt Xonotic 3").filter();
        assert!(both.ipv4 && both.ipv6);
        let v6 = q(b"\xff\xff\xff\xffgetserversExt Xonotic 3 ipv6").filter();
        assert!(!v6.ipv4 && v6.ipv6);
        let gt = q(b"\xff\xff\xff\xffgetserversExt Xonotic 3 gametype=ctf ffa").filter();
        assert_eq!(gt.gametype, Some(Gametype::Ffa), "the last gametype wins");
        assert_eq!(Gametype::Ctf.value(), b"4");
        assert_eq!(Gametype::Team.value(), b"3");
        assert_eq!(Gametype::Tourney.value(), b"1");
        let named = q(b"\xff\xff\xff\xffgetserversExt Xonotic 3 gametype=ctf").filter();
        assert_eq!(named.gametype.map(|g| g.value()), Some(&b"ctf"[..]));
    }

    #[test]
    fn bad_queries() {
        for bad in [
            &b"getservers 68"[..],
            b"\xff\xff\xff\xffgetservers",
            b"\xff\xff\xff\xffgetservers ",
            b"\xff\xff\xff\xffgetserversExt 68",
            b"\xff\xff\xff\xffgetservers Quake3Arena",
            b"\xff\xff\xff\xffgetservers 68x",
            b"\xff\xff\xff\xffgetservers 99999999999",
            b"\xff\xff\xff\xffgetservers 68 a b c d e f g h i",
            b"\xff\xff\xff\xffgetservers 68\0",
            b"\xff\xff\xff\xffgetserversX 68",
        ] {
            assert!(
                ListQuery::decode(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn v4(i: u32) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0x0A00_0000 + i), 27960))
    }

    #[test]
    fn response_packets_respect_the_size_limit_and_end_with_eot() {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        let mut w = ResponseWriter::new(false, MAX_RESPONSE_LEN, &mut out, &mut ends).unwrap();
        for i in 0..500 {
            w.push(v4(i)).unwrap();
        }
        let n = w.finish();
        assert_eq!(n, 3);
        let mut start = 0;
        let mut seen = Vec::new();
        for (i, &end) in ends.iter().enumerate() {
            let pkt = &out[start..end];
            assert!(pkt.len() <= MAX_RESPONSE_LEN);
            let resp = ListResponse::decode(pkt).unwrap();
            assert_eq!(resp.eot, i + 1 == ends.len(), "EOT on the last packet only");
            seen.extend(resp.servers());
            start = end;
        }
        // 22-byte header + 196 entries of 7 bytes + `\EOT`: 1398 bytes in a full packet.
        assert_eq!(ends[0], 22 + 196 * 7 + 4);
        assert_eq!(
            &out[ends[0] - 4..ends[0]],
            b"\\EOT",
            "non-final packets end with `\\EOT`, no NULs"
        );
        // The 392nd entry (10.0.1.135:27960), then the trailer.
        assert_eq!(
            &out[ends[1] - 11..ends[1]],
            b"\\\x0a\x00\x01\x87\x6d\x38\\EOT"
        );
        // The last: 108 entries, then the whole marker.
        assert_eq!(ends[2] - ends[1], 22 + 108 * 7 + 7);
        assert!(out.ends_with(EOT), "the last ends with `\\EOT\\0\\0\\0`");
        assert_eq!(seen, (0..500).map(v4).collect::<Vec<_>>());
    }

    #[test]
    fn empty_response_is_just_eot() {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        let w = ResponseWriter::new(false, MAX_RESPONSE_LEN, &mut out, &mut ends).unwrap();
        assert_eq!(w.finish(), 1);
        assert_eq!(out, b"\xff\xff\xff\xffgetserversResponse\\EOT\0\0\0");
        let resp = ListResponse::decode(&out).unwrap();
        assert!(resp.eot && resp.servers().next().is_none());
    }

    #[test]
    fn ext_response_carries_ipv6() {
        let a6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 26000, 0, 0));
        let mut out = Vec::new();
        let mut ends = Vec::new();
        let mut w = ResponseWriter::new(true, MAX_RESPONSE_LEN, &mut out, &mut ends).unwrap();
        w.push(v4(1)).unwrap();
        w.push(a6).unwrap();
        w.finish();
        let mut want = b"\xff\xff\xff\xffgetserversExtResponse\\\x0a\x00\x00\x01\x6d\x38/".to_vec();
        want.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        want.extend_from_slice(&26000u16.to_be_bytes());
        want.extend_from_slice(EOT);
        assert_eq!(out, want);
        assert_eq!(
            ListResponse::decode(&out)
                .unwrap()
                .servers()
                .collect::<Vec<_>>(),
            [v4(1), a6]
        );
        // A plain response cannot carry IPv6.
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let mut w = ResponseWriter::new(false, MAX_RESPONSE_LEN, &mut o, &mut e).unwrap();
        assert!(w.push(a6).is_err());
        assert!(
            ListResponse::decode(
                &want[..4]
                    .iter()
                    .chain(b"getserversResponse/")
                    .copied()
                    .collect::<Vec<_>>()
            )
            .is_err()
        );
    }

    #[test]
    fn bad_responses() {
        for bad in [
            &b"\xff\xff\xff\xffgetserversResponse\\EOT\0\0\0\\"[..],
            b"\xff\xff\xff\xffgetserversResponse\\\x01\x02\x03",
            b"\xff\xff\xff\xffgetserversResponsex",
            b"\xff\xff\xff\xffgetserversResponse/\x01",
        ] {
            assert!(ListResponse::decode(bad).is_err());
        }
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<u32>(), 1u16..)
                .prop_map(|(ip, p)| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), p))),
            (any::<u128>(), 1u16..).prop_map(|(ip, p)| SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                p,
                0,
                0
            ))),
        ]
    }

    proptest! {
        #[test]
        fn response_round_trip(addrs in proptest::collection::vec(addr(), 0..600), max_len in 60usize..=1400) {
            let (mut out, mut ends) = (Vec::new(), Vec::new());
            let mut w = ResponseWriter::new(true, max_len, &mut out, &mut ends).unwrap();
            for &a in &addrs {
                w.push(a).unwrap();
            }
            w.finish();
            let mut start = 0;
            let mut seen = Vec::new();
            for (i, &end) in ends.iter().enumerate() {
                prop_assert!(end - start <= max_len);
                let r = ListResponse::decode(&out[start..end]).unwrap();
                prop_assert_eq!(r.eot, i + 1 == ends.len());
                seen.extend(r.servers());
                start = end;
            }
            prop_assert_eq!(seen, addrs);
        }

        #[test]
        fn query_round_trip(ext in any::<bool>(), game in proptest::option::of("[A-Za-z][!-~]{0,20}"), protocol in any::<u32>(),
                            opts in proptest::collection::vec("empty|full|ipv4|ipv6|ffa|ctf|gametype=[a-z0-9]{1,8}|[a-z]{1,8}", 0..=MAX_QUERY_OPTIONS),
                            nl in any::<bool>()) {
            let game = if ext { Some(game.unwrap_or_else(|| "Xonotic".into())) } else { game };
            let mut raw = b"\xff\xff\xff\xff".to_vec();
            raw.extend_from_slice(if ext { GETSERVERS_EXT } else { GETSERVERS });
            if let Some(g) = &game { raw.push(b' '); raw.extend_from_slice(g.as_bytes()); }
            raw.extend_from_slice(format!(" {protocol}").as_bytes());
            for o in &opts { raw.push(b' '); raw.extend_from_slice(o.as_bytes()); }
            if nl { raw.push(b'\n'); }
            let decoded = ListQuery::decode(&raw).unwrap();
            prop_assert_eq!(decoded.protocol, protocol);
            prop_assert_eq!(decoded.gamename, game.as_deref().map(str::as_bytes));
            let mut out = Vec::new();
            decoded.encode(&mut out).unwrap();
            prop_assert_eq!(&out, &raw);
        }
    }
}
