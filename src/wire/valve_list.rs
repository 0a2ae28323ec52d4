//! Valve master list query (client → master, `0x31`) and its response page (`FF FF FF FF 66 0A`).
//!
//! Request: `31 <region u8> "a.b.c.d:port" 00 <filter> 00`. The seed is `0.0.0.0:0` on the first
//! request and the last address received afterwards. Response: one datagram per request, the header
//! then 6-byte entries (IPv4, big-endian port), at most [`MAX_PAGE_ENTRIES`] including the
//! `0.0.0.0:0` terminator that ends the final page (shared/docs/protocols.md §1).

use super::cursor::{self, Reader, put_addr_v4};
use super::error::{Error, ErrorKind, Result};
use std::net::{Ipv4Addr, SocketAddrV4};

/// The request opcode, ASCII `1`.
pub const QUERY_OPCODE: u8 = 0x31;
/// The response page header.
pub const PAGE_HEADER: [u8; 6] = [0xFF, 0xFF, 0xFF, 0xFF, 0x66, 0x0A];
/// Most entries in one page, the `0.0.0.0:0` terminator included: 6 + 231 × 6 = 1392 bytes.
pub const MAX_PAGE_ENTRIES: usize = 231;
/// Size of one page entry.
pub const ENTRY_LEN: usize = 6;
/// Largest page in bytes.
pub const MAX_PAGE_LEN: usize = PAGE_HEADER.len() + MAX_PAGE_ENTRIES * ENTRY_LEN;
/// Longest seed text accepted (`255.255.255.255:65535` is 21 bytes; qstat may append junk).
pub const MAX_SEED_LEN: usize = 64;
/// The first-request seed and the final-page terminator.
pub const NULL_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);

/// The region byte. Unknown values are kept, not rejected: a master answers them as "all".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Region {
    UsEast,
    UsWest,
    SouthAmerica,
    Europe,
    Asia,
    Australia,
    MiddleEast,
    Africa,
    /// `0xFF`: rest of world, i.e. every region.
    All,
    Unknown(u8),
}

impl From<u8> for Region {
    fn from(b: u8) -> Self {
        match b {
            0 => Self::UsEast,
            1 => Self::UsWest,
            2 => Self::SouthAmerica,
            3 => Self::Europe,
            4 => Self::Asia,
            5 => Self::Australia,
            6 => Self::MiddleEast,
            7 => Self::Africa,
            0xFF => Self::All,
            other => Self::Unknown(other),
        }
    }
}

impl From<Region> for u8 {
    fn from(r: Region) -> u8 {
        match r {
            Region::UsEast => 0,
            Region::UsWest => 1,
            Region::SouthAmerica => 2,
            Region::Europe => 3,
            Region::Asia => 4,
            Region::Australia => 5,
            Region::MiddleEast => 6,
            Region::Africa => 7,
            Region::All => 0xFF,
            Region::Unknown(b) => b,
        }
    }
}

/// A decoded list query, borrowing the filter from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListQuery<'a> {
    pub region: Region,
    /// Where the client wants the page to start (exclusive); `0.0.0.0:0` for the first page.
    pub seed: SocketAddrV4,
    /// The raw `\key\value` filter; parse it with [`super::filter::Filter::parse`].
    pub filter: &'a [u8],
    /// False when a NUL terminator was missing (qstat 2.17's continuation): the query is still
    /// answered, but it does not re-encode to the same bytes.
    pub well_formed: bool,
}

impl<'a> ListQuery<'a> {
    /// Decodes a query. The seed is parsed leniently, as qstat needs: the address, `:`, then the
    /// leading digits of the port; anything after those digits and before the NUL is ignored.
    pub fn decode(buf: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        if r.u8("query.opcode")? != QUERY_OPCODE {
            return Err(Error::new(ErrorKind::BadHeader, "query.opcode", 0));
        }
        let region = Region::from(r.u8("query.region")?);
        let seed_at = r.offset();
        let (mut seed_text, seed_done) = match r.cstr("query.seed") {
            Ok(s) => (s, true),
            Err(_) => (r.take_rest(), false),
        };
        if seed_done && r.is_empty() {
            // One NUL, at the very end: qstat 2.17's continuation, `1 FF <seed><stale byte> 00`
            // (its template writes the NUL one byte late). The stale byte may be a digit that
            // would change the port, so it is dropped, unless that leaves no valid seed.
            if let Some((_, head)) = seed_text.split_last()
                && parse_seed(head).is_ok()
            {
                seed_text = head;
            }
        }
        let seed = parse_seed(seed_text).map_err(|e| Error {
            offset: seed_at.saturating_add(e.offset),
            ..e
        })?;
        let (filter, well_formed) = if !seed_done {
            (&b""[..], false)
        } else {
            match r.cstr("query.filter") {
                Ok(f) => (f, true),
                Err(_) => (r.take_rest(), false),
            }
        };
        r.finish("query")?;
        Ok(Self {
            region,
            seed,
            filter,
            well_formed,
        })
    }

    /// Appends the canonical encoding: opcode, region, seed text, NUL, filter, NUL.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        out.push(QUERY_OPCODE);
        out.push(self.region.into());
        for (i, octet) in self.seed.ip().octets().into_iter().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            cursor::put_decimal(out, u64::from(octet));
        }
        out.push(b':');
        cursor::put_decimal(out, u64::from(self.seed.port()));
        out.push(0);
        cursor::put_cstr(out, self.filter, "query.filter")
    }
}

/// Parses `a.b.c.d:port…` leniently (see [`ListQuery::decode`]).
pub fn parse_seed(text: &[u8]) -> Result<SocketAddrV4> {
    const FIELD: &str = "query.seed";
    if text.len() > MAX_SEED_LEN {
        return Err(Error::new(ErrorKind::TooLong, FIELD, 0));
    }
    let mut halves = text.splitn(2, |&b| b == b':');
    let ip = cursor::parse_ipv4(halves.next().unwrap_or_default(), FIELD)?;
    let port_text = halves
        .next()
        .ok_or(Error::new(ErrorKind::BadAddress, FIELD, 0))?;
    let digits = port_text
        .split(|b| !b.is_ascii_digit())
        .next()
        .unwrap_or_default();
    let port = cursor::parse_decimal(digits, u64::from(u16::MAX), FIELD)
        .map_err(|e| Error::new(ErrorKind::BadAddress, FIELD, e.offset))?;
    Ok(SocketAddrV4::new(ip, port as u16))
}

/// A decoded response page: a checked view over the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListPage<'a> {
    entries: &'a [[u8; ENTRY_LEN]],
}

impl<'a> ListPage<'a> {
    /// Checks the header, the entry size and count, and that `0.0.0.0:0` appears only last.
    pub fn decode(buf: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        r.expect(&PAGE_HEADER, "page.header")?;
        let (entries, partial) = r.take_rest().as_chunks::<ENTRY_LEN>();
        if !partial.is_empty() {
            return Err(Error::new(ErrorKind::Truncated, "page.entry", buf.len()));
        }
        if entries.len() > MAX_PAGE_ENTRIES {
            return Err(Error::new(ErrorKind::TooLong, "page", MAX_PAGE_LEN));
        }
        let page = Self { entries };
        if let Some(i) = page.all().position(|a| a == NULL_ADDR)
            && i != page.len().saturating_sub(1)
        {
            return Err(Error::new(
                ErrorKind::BadValue,
                "page.terminator",
                i.saturating_mul(ENTRY_LEN)
                    .saturating_add(PAGE_HEADER.len()),
            ));
        }
        Ok(page)
    }

    /// Entry count, terminator included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, terminator included.
    pub fn all(&self) -> impl Iterator<Item = SocketAddrV4> + 'a {
        self.entries.iter().map(entry_addr)
    }

    /// The listed servers (terminator excluded).
    pub fn servers(&self) -> impl Iterator<Item = SocketAddrV4> + 'a {
        self.all().filter(|a| *a != NULL_ADDR)
    }

    /// True when this is the last page (it ends with `0.0.0.0:0`).
    pub fn is_final(&self) -> bool {
        self.entries.last() == Some(&[0u8; ENTRY_LEN])
    }

    /// The seed for the next request: the last listed server, if any.
    pub fn next_seed(&self) -> Option<SocketAddrV4> {
        self.servers().last()
    }
}

fn entry_addr(&[a, b, c, d, p0, p1]: &[u8; ENTRY_LEN]) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), u16::from_be_bytes([p0, p1]))
}

/// Appends a page: header, `servers`, and the terminator when `last`.
///
/// Fails with `TooLong` (writing nothing) when the entries would exceed [`MAX_PAGE_ENTRIES`], and with
/// `BadValue` if a server is `0.0.0.0:0` (it would read as the terminator).
pub fn encode_page(out: &mut Vec<u8>, servers: &[SocketAddrV4], last: bool) -> Result<()> {
    if servers.len().saturating_add(usize::from(last)) > MAX_PAGE_ENTRIES {
        return Err(Error::new(ErrorKind::TooLong, "page", servers.len()));
    }
    if let Some(i) = servers.iter().position(|a| *a == NULL_ADDR) {
        return Err(Error::new(ErrorKind::BadValue, "page.entry", i));
    }
    out.reserve(MAX_PAGE_LEN);
    out.extend_from_slice(&PAGE_HEADER);
    for &a in servers {
        put_addr_v4(out, a);
    }
    if last {
        put_addr_v4(out, NULL_ADDR);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // python-valve's MasterServerQuerier, keys sorted (shared/docs/protocols.md §1).
    const PYTHON_VALVE: &[u8] =
        b"1\xff0.0.0.0:0\0\\empty\\1\\gamedir\\tf\\gametype\\alltalk,cp\\map\\ctf_2fort\\secure\\1\\type\\d\0";
    // qstat 2.17 `-stm` continuation with no filter: the filter NUL is missing (§1).
    const QSTAT_CONT: &[u8] = b"1\xff127.1.0.231:27015q";

    #[test]
    fn python_valve_query_round_trips() {
        let q = ListQuery::decode(PYTHON_VALVE).unwrap();
        assert_eq!(q.region, Region::All);
        assert_eq!(q.seed, NULL_ADDR);
        assert_eq!(
            q.filter,
            &b"\\empty\\1\\gamedir\\tf\\gametype\\alltalk,cp\\map\\ctf_2fort\\secure\\1\\type\\d"[..]
        );
        assert!(q.well_formed);
        let mut out = Vec::new();
        q.encode(&mut out).unwrap();
        assert_eq!(out, PYTHON_VALVE);
    }

    #[test]
    fn qstat_malformed_continuation_is_lenient() {
        let q = ListQuery::decode(QSTAT_CONT).unwrap();
        assert_eq!(q.seed, "127.1.0.231:27015".parse().unwrap());
        assert_eq!(q.filter, b"");
        assert!(!q.well_formed);
        let mut out = Vec::new();
        q.encode(&mut out).unwrap();
        assert_eq!(out, b"1\xff127.1.0.231:27015\0\0");
    }

    #[test]
    fn qstat_continuation_with_a_late_nul_drops_the_stale_byte() {
        // Captured from quakestat 2.17 `-stm` here: the seed, one stale byte, then the NUL its
        // template writes one byte late. A stale digit would otherwise change the port.
        for (raw, seed) in [
            (&b"1\xff10.64.1.43:22992\0"[..], "10.64.1.43:2299"),
            (b"1\xff10.0.3.230:20230d\0", "10.0.3.230:20230"),
            (b"1\xff10.0.3.199:27214u\0", "10.0.3.199:27214"),
        ] {
            let q = ListQuery::decode(raw).unwrap();
            assert_eq!(q.seed, seed.parse().unwrap());
            assert_eq!((q.filter, q.well_formed), (&b""[..], false));
        }
        // Both NULs present: nothing is dropped.
        let q = ListQuery::decode(b"1\xff10.64.1.43:22992\0\0").unwrap();
        assert_eq!(q.seed, "10.64.1.43:22992".parse().unwrap());
        // Dropping would leave no valid seed: kept whole.
        let q = ListQuery::decode(b"1\xff0.0.0.0:0\0").unwrap();
        assert_eq!(q.seed, NULL_ADDR);
    }

    #[test]
    fn regions_keep_unknown_values() {
        for b in 0..=255u8 {
            assert_eq!(u8::from(Region::from(b)), b);
        }
        assert_eq!(Region::from(3), Region::Europe);
        assert_eq!(Region::from(9), Region::Unknown(9));
    }

    #[test]
    fn bad_queries_are_rejected() {
        for (bad, kind) in [
            (&b""[..], ErrorKind::Truncated),
            (b"2\xff0.0.0.0:0\0\0", ErrorKind::BadHeader),
            (b"1\xff", ErrorKind::BadAddress),
            (b"1\xff0.0.0.0\0\0", ErrorKind::BadAddress),
            (b"1\xff0.0.0.0:\0\0", ErrorKind::BadAddress),
            (b"1\xff0.0.0.0:70000\0\0", ErrorKind::BadAddress),
            (b"1\xffhello:1\0\0", ErrorKind::BadAddress),
            (b"1\xff0.0.0.0:0\0\0junk", ErrorKind::TrailingBytes),
        ] {
            assert_eq!(ListQuery::decode(bad).unwrap_err().kind, kind, "{bad:?}");
        }
    }

    #[test]
    fn pages_encode_and_decode() {
        let servers: Vec<SocketAddrV4> = (1..=230u32)
            .map(|i| SocketAddrV4::new(Ipv4Addr::from(0x7F00_0000 + i), 27015))
            .collect();
        let mut out = Vec::new();
        encode_page(&mut out, &servers, true).unwrap();
        assert_eq!(out.len(), MAX_PAGE_LEN);
        assert_eq!(&out[..6], &PAGE_HEADER);
        assert_eq!(&out[6..12], &[127, 0, 0, 1, 0x69, 0x87]);
        assert_eq!(&out[out.len() - 6..], &[0; 6]);
        let page = ListPage::decode(&out).unwrap();
        assert!(page.is_final());
        assert_eq!(page.len(), 231);
        assert_eq!(page.servers().collect::<Vec<_>>(), servers);
        assert_eq!(page.next_seed(), servers.last().copied());

        let mut too_many = Vec::new();
        assert_eq!(
            encode_page(
                &mut too_many,
                &[servers.clone(), vec![servers[0]]].concat(),
                true
            )
            .unwrap_err()
            .kind,
            ErrorKind::TooLong
        );
        assert!(too_many.is_empty());
        assert!(encode_page(&mut too_many, &[NULL_ADDR], false).is_err());
    }

    #[test]
    fn bad_pages_are_rejected() {
        assert_eq!(
            ListPage::decode(b"\xff\xff\xff\xff\x66").unwrap_err().kind,
            ErrorKind::BadHeader
        );
        assert_eq!(
            ListPage::decode(b"\xff\xff\xff\xff\x66\x0a\x01\x02\x03")
                .unwrap_err()
                .kind,
            ErrorKind::Truncated
        );
        let mut early_end = PAGE_HEADER.to_vec();
        early_end.extend_from_slice(&[0; 6]);
        early_end.extend_from_slice(&[1, 2, 3, 4, 0, 5]);
        assert_eq!(
            ListPage::decode(&early_end).unwrap_err().kind,
            ErrorKind::BadValue
        );
        let empty = ListPage::decode(&PAGE_HEADER).unwrap();
        assert!(empty.is_empty() && !empty.is_final());
    }

    fn v4() -> impl Strategy<Value = SocketAddrV4> {
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port))
    }

    proptest! {
        #[test]
        fn query_round_trip(region in any::<u8>(), seed in v4(),
                            filter in proptest::collection::vec(1u8..=255, 0..200)) {
            let q = ListQuery { region: Region::from(region), seed, filter: &filter, well_formed: true };
            let mut out = Vec::new();
            q.encode(&mut out).unwrap();
            prop_assert_eq!(ListQuery::decode(&out).unwrap(), q);
        }

        #[test]
        fn page_round_trip(servers in proptest::collection::vec(v4().prop_filter("terminator", |a| *a != NULL_ADDR), 0..=230), last in any::<bool>()) {
            let mut out = Vec::new();
            encode_page(&mut out, &servers, last).unwrap();
            let page = ListPage::decode(&out).unwrap();
            prop_assert_eq!(page.is_final(), last);
            prop_assert_eq!(page.servers().collect::<Vec<_>>(), servers);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::wire::NO_PANIC_CASES))]
        #[test]
        fn decoders_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let _ = ListQuery::decode(&raw);
            if let Ok(p) = ListPage::decode(&raw) {
                prop_assert!(p.len() <= MAX_PAGE_ENTRIES);
                let _ = p.servers().count();
            }
        }
    }
}
