//! Xash3D FWGS list queries and their bursts.
//!
//! A Xash3D client (the engine, `xash3d-query`) sends an ordinary Valve query (`0x31`, region
//! `FF`, seed `0.0.0.0:0`) whose filter carries Xash keys — `\clver\<version>`, `\nat\0|1`,
//! `\key\<hex>` — and never pages: it reads datagrams until its timeout, each ending with a
//! zero entry. xash3d-master (`crates/xash3d-protocol/src/net/master.rs`, `QueryServersResponse`)
//! therefore answers with the whole filtered list at once, as consecutive datagrams of:
//!
//! ```text
//! FF FF FF FF 66 0A  [7F <key u32 LE> 08]  entries…  <one zero entry>
//! ```
//!
//! The `7F … 08` header is present exactly when the query had `\key\` (the engine's builds of
//! 2023–2024 drop a datagram without it, "missing extra header"; `xash3d-query -k` drops one
//! without its key, and without `-k` drops one that has a header). Entries are 6 bytes (IPv4,
//! big-endian port) to a query that came over IPv4 and 18 bytes (IPv6) to one that came over
//! IPv6 (the engine sizes entries by its master's address family). Datagrams are 512 bytes at most
//! over IPv4 and 1,280 over IPv6, as xash3d-master's buffers (`udp_server.rs`, `mtu_buffer`).

use super::cursor::Reader;
use super::error::{Error, ErrorKind, Result};
use super::filter::{Condition, Filter};
use super::valve_list::PAGE_HEADER;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Opens the key header (xash3d-protocol: `s[0] == 0x7f && s[5] == 8`).
pub const KEY_MARKER: u8 = 0x7F;
/// Closes the key header (the engine's "reserved byte").
pub const KEY_END: u8 = 0x08;
/// The key header's length: marker, key, end.
pub const KEY_HEADER_LEN: usize = 6;
/// Largest burst datagram over IPv4 / IPv6 (xash3d-master's buffer sizes).
pub const MAX_DATAGRAM_V4: usize = 512;
pub const MAX_DATAGRAM_V6: usize = 1280;
/// Entry sizes.
pub const ENTRY_V4_LEN: usize = 6;
pub const ENTRY_V6_LEN: usize = 18;
/// Longest `\key\` value: a `u32` in hex without padding (`%x`).
pub const MAX_KEY_DIGITS: usize = 8;

/// What marks a Valve query as a Xash3D one, read from its filter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XashQuery<'a> {
    /// `\key\<hex>`: echoed in every datagram's key header.
    pub key: Option<u32>,
    /// `\clver\<version>` as sent (`0.21`).
    pub clver: Option<&'a [u8]>,
    /// `\nat\0|1`.
    pub nat: Option<bool>,
}

impl<'a> XashQuery<'a> {
    /// `Some` when the (already parsed) filter carries a Xash key (`key` or `clver`); a `\key\`
    /// that is not 1–8 hex digits is an error (xash3d-master rejects it too).
    pub fn from_filter(filter: &Filter<'a>) -> Result<Option<Self>> {
        let mut q = XashQuery::default();
        let mut xash = false;
        for c in filter.top_level() {
            match *c {
                Condition::Unknown { key: b"key", value } => {
                    q.key = Some(parse_key(value)?);
                    xash = true;
                }
                Condition::Unknown {
                    key: b"clver",
                    value,
                } => {
                    q.clver = Some(value);
                    xash = true;
                }
                Condition::Nat(n) => q.nat = Some(n),
                _ => {}
            }
        }
        Ok(xash.then_some(q))
    }

    /// Whether the client's `clver` is older than `min` (compared as dotted numbers; a missing or
    /// unreadable `clver` is not older: it gets the list).
    pub fn older_than(&self, min: (u32, u32)) -> bool {
        self.clver.and_then(parse_version).is_some_and(|v| v < min)
    }
}

/// `major.minor` of a Xash version string (`0.21`, `0.19.2`).
pub fn parse_version(v: &[u8]) -> Option<(u32, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

fn parse_key(v: &[u8]) -> Result<u32> {
    let bad = || Error::new(ErrorKind::BadValue, "xash.key", 0);
    if v.is_empty() || v.len() > MAX_KEY_DIGITS {
        return Err(bad());
    }
    let s = std::str::from_utf8(v).map_err(|_| bad())?;
    u32::from_str_radix(s, 16).map_err(|_| bad())
}

/// Writes a burst: datagrams of header, entries and a zero entry, cut at the family's size.
#[derive(Debug)]
pub struct BurstWriter<'o> {
    out: &'o mut Vec<u8>,
    ends: &'o mut Vec<usize>,
    key: Option<u32>,
    v6: bool,
    /// Entries in the open datagram (none open: `None`).
    open: Option<usize>,
    per_datagram: usize,
}

impl<'o> BurstWriter<'o> {
    /// A burst for a query that came over IPv6 (`v6`) or IPv4, with its key if it sent one.
    pub fn new(v6: bool, key: Option<u32>, out: &'o mut Vec<u8>, ends: &'o mut Vec<usize>) -> Self {
        let (max, entry) = if v6 {
            (MAX_DATAGRAM_V6, ENTRY_V6_LEN)
        } else {
            (MAX_DATAGRAM_V4, ENTRY_V4_LEN)
        };
        let header =
            PAGE_HEADER
                .len()
                .saturating_add(if key.is_some() { KEY_HEADER_LEN } else { 0 });
        // Room for the entries and the zero entry: 82 (keyed) or 83 over IPv4, 69 over IPv6.
        let per_datagram = max
            .saturating_sub(header)
            .checked_div(entry)
            .unwrap_or(0)
            .saturating_sub(1)
            .max(1);
        Self {
            out,
            ends,
            key,
            v6,
            open: None,
            per_datagram,
        }
    }

    /// Entries one datagram holds.
    pub fn per_datagram(&self) -> usize {
        self.per_datagram
    }

    fn open(&mut self) {
        self.out.extend_from_slice(&PAGE_HEADER);
        if let Some(k) = self.key {
            self.out.push(KEY_MARKER);
            self.out.extend_from_slice(&k.to_le_bytes());
            self.out.push(KEY_END);
        }
        self.open = Some(0);
    }

    fn close(&mut self) {
        let zeros = if self.v6 { ENTRY_V6_LEN } else { ENTRY_V4_LEN };
        self.out.extend(std::iter::repeat_n(0, zeros));
        self.ends.push(self.out.len());
        self.open = None;
    }

    /// Appends a server of the burst's family (others are refused), or port 0 (it would end the
    /// list early).
    pub fn push(&mut self, addr: SocketAddr) -> Result<()> {
        let fits = match addr {
            SocketAddr::V4(a) => !self.v6 && a.port() != 0,
            SocketAddr::V6(a) => self.v6 && a.port() != 0,
        };
        if !fits {
            return Err(Error::new(ErrorKind::BadValue, "xash.entry", 0));
        }
        let n = match self.open {
            Some(n) => n,
            None => {
                self.open();
                0
            }
        };
        match addr {
            SocketAddr::V4(a) => {
                self.out.extend_from_slice(&a.ip().octets());
                self.out.extend_from_slice(&a.port().to_be_bytes());
            }
            SocketAddr::V6(a) => {
                self.out.extend_from_slice(&a.ip().octets());
                self.out.extend_from_slice(&a.port().to_be_bytes());
            }
        }
        let n = n.saturating_add(1);
        self.open = Some(n);
        if n >= self.per_datagram {
            self.close();
        }
        Ok(())
    }

    /// Ends the burst; an empty list is one datagram of header and zero entry (xash3d-master's
    /// current behaviour: the client learns the list is empty). Returns the datagram count.
    pub fn finish(mut self) -> usize {
        if self.open.is_some() || self.ends.is_empty() {
            if self.open.is_none() {
                self.open();
            }
            self.close();
        }
        self.ends.len()
    }
}

/// Writes `key` into the key header of every datagram of a keyed burst (`bytes` laid end to end,
/// each ending at the next of `ends`): one burst built once serves every client of a filter,
/// each with its own key. Only for a burst built keyed (an unkeyed datagram whose first entry is
/// a 127/8 address with a port ending in 08 would look keyed).
pub fn rekey_burst(bytes: &mut [u8], ends: &[usize], key: u32) {
    let mut start = 0usize;
    for &end in ends {
        let at = start.saturating_add(PAGE_HEADER.len());
        if let Some(h) = bytes.get_mut(at..at.saturating_add(KEY_HEADER_LEN))
            && at.saturating_add(KEY_HEADER_LEN) <= end
            && let [KEY_MARKER, k @ .., KEY_END] = h
        {
            k.copy_from_slice(&key.to_le_bytes());
        }
        start = end;
    }
}

/// One burst datagram, decoded (the load generator's and the tests' reader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BurstDatagram {
    pub key: Option<u32>,
    pub servers: Vec<SocketAddr>,
}

impl BurstDatagram {
    /// Decodes a datagram of a burst whose entries are IPv6 (`v6`) or IPv4, with a key header
    /// if `keyed`. The zero entry must end it; nothing may follow.
    pub fn decode(buf: &[u8], v6: bool, keyed: bool) -> Result<Self> {
        let mut r = Reader::new(buf);
        r.expect(&PAGE_HEADER, "xash.header")?;
        let key = if keyed {
            if r.u8("xash.key_marker")? != KEY_MARKER {
                return Err(Error::new(
                    ErrorKind::BadHeader,
                    "xash.key_marker",
                    r.offset(),
                ));
            }
            let k = u32::from_le_bytes(r.array("xash.key")?);
            if r.u8("xash.key_end")? != KEY_END {
                return Err(Error::new(ErrorKind::BadHeader, "xash.key_end", r.offset()));
            }
            Some(k)
        } else {
            None
        };
        let mut servers = Vec::new();
        loop {
            let (addr, port) = if v6 {
                let a: [u8; 16] = r.array("xash.entry")?;
                let p: [u8; 2] = r.array("xash.entry")?;
                let port = u16::from_be_bytes(p);
                (
                    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a), port, 0, 0)),
                    port,
                )
            } else {
                let a: [u8; 4] = r.array("xash.entry")?;
                let p: [u8; 2] = r.array("xash.entry")?;
                let port = u16::from_be_bytes(p);
                (
                    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a), port)),
                    port,
                )
            };
            if port == 0 {
                // The end is an all-zero entry (clients stop at port 0; muster reads strictly).
                if !addr.ip().is_unspecified() {
                    return Err(Error::new(ErrorKind::BadValue, "xash.end", r.offset()));
                }
                break;
            }
            servers.push(addr);
        }
        r.finish("xash")?;
        Ok(Self { key, servers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(i: u32) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(0x0A00_0000 + i), 27015))
    }

    fn xash(filter: &[u8]) -> Result<Option<XashQuery<'_>>> {
        XashQuery::from_filter(&Filter::parse(filter)?)
    }

    #[test]
    fn engine_and_xash3d_query_filters() {
        // xash3d-fwgs `masterlist.c` NET_BuildMasterServerScanRequest: gamedir, clver, nat, commit,
        // branch, os, arch, buildnum, then the key in `%x` (no padding).
        let engine = b"\\gamedir\\valve\\clver\\0.21\\nat\\0\\commit\\633203e1\\branch\\master\\os\\linux\\arch\\amd64\\buildnum\\4000\\key\\1";
        let q = xash(engine).unwrap().unwrap();
        assert_eq!(q.key, Some(1));
        assert_eq!(q.clver, Some(&b"0.21"[..]));
        assert_eq!(q.nat, Some(false));
        // xash3d-query 0.2.0 `-k`: `\gamedir\valve\clver\0.20\key\9be5942b`.
        let q = xash(b"\\gamedir\\valve\\clver\\0.20\\key\\9be5942b")
            .unwrap()
            .unwrap();
        assert_eq!(q.key, Some(0x9be5_942b));
        assert!(q.older_than((0, 21)) && !q.older_than((0, 20)));
        // A Valve client's filter is not a Xash query.
        assert_eq!(xash(b"\\gamedir\\cstrike\\nat\\1").unwrap(), None);
        assert_eq!(xash(b"").unwrap(), None);
        for bad in [&b"\\key\\"[..], b"\\key\\123456789", b"\\key\\xyz"] {
            assert!(xash(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keyed_burst_matches_xash3d_master_bytes() {
        // research worked example (xash3d-protocol `QueryServersResponse::encode`): key 0x9be5942b,
        // 127.0.0.1:27015 and :27016.
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        let mut w = BurstWriter::new(false, Some(0x9be5_942b), &mut out, &mut ends);
        w.push("127.0.0.1:27015".parse().unwrap()).unwrap();
        w.push("127.0.0.1:27016".parse().unwrap()).unwrap();
        assert_eq!(w.finish(), 1);
        assert_eq!(
            out,
            b"\xff\xff\xff\xff\x66\x0a\x7f\x2b\x94\xe5\x9b\x08\x7f\x00\x00\x01\x69\x87\x7f\x00\x00\x01\x69\x88\x00\x00\x00\x00\x00\x00"
        );
        let d = BurstDatagram::decode(&out, false, true).unwrap();
        assert_eq!(d.key, Some(0x9be5_942b));
        assert_eq!(d.servers.len(), 2);
    }

    #[test]
    fn a_burst_rekeyed_carries_the_new_key_in_every_datagram() {
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        let mut w = BurstWriter::new(false, Some(0), &mut out, &mut ends);
        for i in 1..=100u32 {
            w.push(v4(i)).unwrap();
        }
        assert_eq!(w.finish(), 2);
        rekey_burst(&mut out, &ends, 0x9be5_942b);
        // The engine's header on each datagram: 7F, the key little-endian, 08.
        assert_eq!(out.get(6..12), Some(&b"\x7f\x2b\x94\xe5\x9b\x08"[..]));
        assert_eq!(
            out.get(ends[0] + 6..ends[0] + 12),
            Some(&b"\x7f\x2b\x94\xe5\x9b\x08"[..])
        );
        let (a, b) = out.split_at(ends[0]);
        let one = BurstDatagram::decode(a, false, true).unwrap();
        let two = BurstDatagram::decode(b, false, true).unwrap();
        assert_eq!((one.key, two.key), (Some(0x9be5_942b), Some(0x9be5_942b)));
        assert_eq!(one.servers.len() + two.servers.len(), 100);
        // Without a key header (and no 127/8 first entry) nothing is written.
        let (mut plain, mut ends) = (Vec::new(), Vec::new());
        let mut w = BurstWriter::new(false, None, &mut plain, &mut ends);
        w.push(v4(1)).unwrap();
        w.finish();
        let before = plain.clone();
        rekey_burst(&mut plain, &ends, 7);
        assert_eq!(plain, before);
    }

    #[test]
    fn bursts_cut_at_xash3d_master_sizes_and_every_datagram_ends_with_zero() {
        for (v6, key, per, size) in [
            (false, Some(7), 82, 510),
            (false, None, 83, 510),
            (true, Some(7), 69, 1272),
            (true, None, 69, 1266),
        ] {
            let (mut out, mut ends) = (Vec::new(), Vec::new());
            let mut w = BurstWriter::new(v6, key, &mut out, &mut ends);
            assert_eq!(w.per_datagram(), per);
            let addrs: Vec<SocketAddr> = (1..=200u32)
                .map(|i| {
                    if v6 {
                        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(i as u128), 27015, 0, 0))
                    } else {
                        v4(i)
                    }
                })
                .collect();
            for &a in &addrs {
                w.push(a).unwrap();
            }
            let n = w.finish();
            assert_eq!(n, 200usize.div_ceil(per));
            assert_eq!(ends[0], size, "a full datagram");
            let mut start = 0;
            let mut seen = Vec::new();
            for &end in &ends {
                let d = BurstDatagram::decode(&out[start..end], v6, key.is_some()).unwrap();
                assert_eq!(d.key, key);
                seen.extend(d.servers);
                start = end;
            }
            assert_eq!(seen, addrs);
        }
    }

    #[test]
    fn empty_burst_is_one_datagram_and_wrong_family_is_refused() {
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        let mut w = BurstWriter::new(false, None, &mut out, &mut ends);
        assert!(w.push("[::1]:27015".parse().unwrap()).is_err());
        assert!(w.push("1.2.3.4:0".parse().unwrap()).is_err());
        assert_eq!(w.finish(), 1);
        assert_eq!(out, b"\xff\xff\xff\xff\x66\x0a\0\0\0\0\0\0");
        // Trailing bytes after the zero entry and a missing key header are errors.
        assert!(
            BurstDatagram::decode(b"\xff\xff\xff\xff\x66\x0a\0\0\0\0\0\0\0", false, false).is_err()
        );
        assert!(BurstDatagram::decode(&out, false, true).is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version(b"0.21"), Some((0, 21)));
        assert_eq!(parse_version(b"0.19.2"), Some((0, 19)));
        assert_eq!(parse_version(b"1"), Some((1, 0)));
        assert_eq!(parse_version(b"x"), None);
    }
}
