//! The peering datagram: masters forward the registrations they verified to each other (issue 22;
//! muster's own protocol, spoken only between masters that share a 32-byte key).
//!
//! ```text
//! "MSTRPEER" (8) | version 1 (1) | kind (1) | sender id (u64 BE) | sequence (u64 BE)
//! | body … | MAC (16)
//! ```
//!
//! The MAC is the first 16 bytes of BLAKE3 in keyed mode over everything before it: the whole
//! datagram is authenticated, so a forger without the key cannot make one, and a receiver checks
//! it before reading anything else ([`Sealed::open`]). The sequence number is per sender and
//! increases by one a datagram; [`ReplayWindow`] refuses one seen before (or older than the last
//! 64), so a captured datagram cannot be sent again.
//!
//! Bodies by kind:
//! - [`Kind::Entries`] (and [`Kind::SyncEntries`], the answer to a sync): `count (u16 BE)`, then
//!   per server: family (1: Valve, 2: DP) | address (4: IPv4 + 4 bytes, or 6: IPv6 + 16 bytes)
//!   | port (u16 BE) | age_ms (u32 BE: how long before sending the origin last heard it) | hop
//!   (u8: 0 from its origin) | flags (u16 BE) | region | server type | players | max | bots
//!   | appid (u32 BE) | protocol (u32 BE) | 7 strings, each a length byte then the bytes (game,
//!   product, map, version, tags, gamedata, hostname). An entry whose flags hold [`GONE`] says
//!   the origin stopped listing the server (a ban, its timeout, a reload's policy) at `age_ms`
//!   before sending; its other fields are zero and its strings empty.
//! - [`Kind::SyncRequest`]: empty; the receiver answers with everything it lists.
//! - [`Kind::SyncDone`]: `count (u32 BE)`: the sync sent that many entries.

use super::cursor::Reader;
use super::error::{Error, ErrorKind, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const MAGIC: &[u8; 8] = b"MSTRPEER";
pub const VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 8 + 1 + 1 + 8 + 8;
pub const MAC_LEN: usize = 16;
/// Largest peering datagram (fits a 1500-byte path with IPv6 and UDP headers).
pub const MAX_DATAGRAM: usize = 1400;
/// Strings of an entry, in order.
pub const STRINGS: usize = 7;
/// Entry flag: the origin no longer lists this server (above every flag a record carries).
pub const GONE: u16 = 1 << 15;

/// What a peering datagram carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Entries = 1,
    SyncRequest = 2,
    SyncEntries = 3,
    SyncDone = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        [
            Kind::Entries,
            Kind::SyncRequest,
            Kind::SyncEntries,
            Kind::SyncDone,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }
}

/// One forwarded server, borrowing its strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// 1: Valve family, 2: Quake III / DarkPlaces.
    pub family: u8,
    pub addr: SocketAddr,
    /// How long before the datagram was sent its origin last heard the server.
    pub age_ms: u32,
    /// 0 when sent by the master that verified the registration.
    pub hop: u8,
    pub flags: u16,
    pub region: u8,
    pub server_type: u8,
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
    pub appid: u32,
    pub protocol: u32,
    /// game, product, map, version, tags, gamedata, hostname (each at most 255 bytes).
    pub strings: [&'a [u8]; STRINGS],
}

impl Entry<'_> {
    /// Bytes this entry takes in a datagram.
    pub fn encoded_len(&self) -> usize {
        // Address kind and bytes.
        let addr: usize = if self.addr.is_ipv4() { 5 } else { 17 };
        let strings: usize = self
            .strings
            .iter()
            .map(|s| 1usize.saturating_add(s.len().min(255)))
            .fold(0, usize::saturating_add);
        // family, port, age, hop, flags, region, type, players, max, bots, appid, protocol.
        const FIXED: usize = 1 + 2 + 4 + 1 + 2 + 1 + 1 + 1 + 1 + 1 + 4 + 4;
        strings.saturating_add(addr).saturating_add(FIXED)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.family);
        match self.addr.ip() {
            IpAddr::V4(v4) => {
                out.push(4);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.push(6);
                out.extend_from_slice(&v6.octets());
            }
        }
        out.extend_from_slice(&self.addr.port().to_be_bytes());
        out.extend_from_slice(&self.age_ms.to_be_bytes());
        out.push(self.hop);
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&[
            self.region,
            self.server_type,
            self.players,
            self.max_players,
            self.bots,
        ]);
        out.extend_from_slice(&self.appid.to_be_bytes());
        out.extend_from_slice(&self.protocol.to_be_bytes());
        for s in self.strings {
            let s = s.get(..255).unwrap_or(s);
            out.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(s);
        }
    }
}

impl<'a> Entry<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Entry<'a>> {
        let family = r.u8("peer.family")?;
        let ip = match r.u8("peer.addr_kind")? {
            4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("peer.ipv4")?)),
            6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("peer.ipv6")?)),
            _ => {
                return Err(Error::new(
                    ErrorKind::BadValue,
                    "peer.addr_kind",
                    r.offset().saturating_sub(1),
                ));
            }
        };
        let port = r.u16_be("peer.port")?;
        let age_ms = u32::from_be_bytes(r.array::<4>("peer.age")?);
        let hop = r.u8("peer.hop")?;
        let flags = r.u16_be("peer.flags")?;
        let [region, server_type, players, max_players, bots] = r.array::<5>("peer.numbers")?;
        let appid = u32::from_be_bytes(r.array::<4>("peer.appid")?);
        let protocol = u32::from_be_bytes(r.array::<4>("peer.protocol")?);
        let mut strings: [&[u8]; STRINGS] = [b""; STRINGS];
        for s in &mut strings {
            let len = usize::from(r.u8("peer.string_len")?);
            *s = r.take(len, "peer.string")?;
        }
        Ok(Entry {
            family,
            addr: SocketAddr::new(ip, port),
            age_ms,
            hop,
            flags,
            region,
            server_type,
            players,
            max_players,
            bots,
            appid,
            protocol,
            strings,
        })
    }
}

fn mac(key: &[u8; 32], bytes: &[u8]) -> [u8; MAC_LEN] {
    let h = blake3::keyed_hash(key, bytes);
    let mut m = [0u8; MAC_LEN];
    m.copy_from_slice(h.as_bytes().get(..MAC_LEN).unwrap_or(&[0; MAC_LEN]));
    m
}

/// Builds one datagram: a header, entries while they fit, then the MAC ([`Builder::seal`]).
#[derive(Debug)]
pub struct Builder {
    buf: Vec<u8>,
    count: u16,
    count_at: Option<usize>,
}

impl Builder {
    /// A datagram of `kind` from `sender` numbered `seq`.
    pub fn new(kind: Kind, sender: u64, seq: u64) -> Builder {
        let mut buf = Vec::with_capacity(MAX_DATAGRAM);
        buf.extend_from_slice(MAGIC);
        buf.push(VERSION);
        buf.push(kind as u8);
        buf.extend_from_slice(&sender.to_be_bytes());
        buf.extend_from_slice(&seq.to_be_bytes());
        let count_at = matches!(kind, Kind::Entries | Kind::SyncEntries).then(|| {
            let at = buf.len();
            buf.extend_from_slice(&[0, 0]);
            at
        });
        Builder {
            buf,
            count: 0,
            count_at,
        }
    }

    /// Adds `e` if it fits (`false`: seal this datagram and start another).
    pub fn push(&mut self, e: &Entry<'_>) -> bool {
        let room = MAX_DATAGRAM.saturating_sub(MAC_LEN);
        if self.count_at.is_none()
            || self.count == u16::MAX
            || self.buf.len().saturating_add(e.encoded_len()) > room
        {
            return false;
        }
        e.encode(&mut self.buf);
        self.count = self.count.saturating_add(1);
        true
    }

    /// Sets the sequence number (a batch is numbered when it is sent).
    pub fn set_seq(&mut self, seq: u64) {
        if let Some(b) = self.buf.get_mut(18..26) {
            b.copy_from_slice(&seq.to_be_bytes());
        }
    }

    /// Entries added so far.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// A [`Kind::SyncDone`] body: how many entries the sync sent.
    pub fn sync_done(mut self, entries: u32) -> Builder {
        self.buf.extend_from_slice(&entries.to_be_bytes());
        self
    }

    /// The datagram, authenticated with `key`.
    pub fn seal(mut self, key: &[u8; 32]) -> Vec<u8> {
        if let Some(at) = self.count_at
            && let Some(c) = self.buf.get_mut(at..at.saturating_add(2))
        {
            c.copy_from_slice(&self.count.to_be_bytes());
        }
        let m = mac(key, &self.buf);
        self.buf.extend_from_slice(&m);
        self.buf
    }
}

/// A peering datagram whose MAC verified.
#[derive(Clone, Copy, Debug)]
pub struct Sealed<'a> {
    pub kind: Kind,
    pub sender: u64,
    pub seq: u64,
    body: &'a [u8],
}

/// Whether `buf` is a peering datagram at all (before its MAC is checked).
pub fn is_peer(buf: &[u8]) -> bool {
    buf.starts_with(MAGIC)
}

impl<'a> Sealed<'a> {
    /// Checks the MAC over the whole datagram with `key`, then the header. Nothing of a datagram
    /// whose MAC fails is read.
    pub fn open(buf: &'a [u8], key: &[u8; 32]) -> Result<Sealed<'a>> {
        let split = buf
            .len()
            .checked_sub(MAC_LEN)
            .filter(|&n| n >= HEADER_LEN)
            .ok_or(Error::new(ErrorKind::Truncated, "peer.header", buf.len()))?;
        let (signed, tag) = buf.split_at(split);
        let want = blake3::keyed_hash(key, signed);
        // Constant-time comparison (blake3's `Hash` equality), on the first 16 bytes.
        let mut padded = [0u8; 32];
        padded
            .get_mut(..MAC_LEN)
            .unwrap_or(&mut [])
            .copy_from_slice(tag);
        let mut expect = *want.as_bytes();
        if let Some(rest) = expect.get_mut(MAC_LEN..) {
            rest.fill(0);
        }
        if blake3::Hash::from(expect) != blake3::Hash::from(padded) {
            return Err(Error::new(ErrorKind::BadValue, "peer.mac", split));
        }
        let mut r = Reader::new(signed);
        r.expect(MAGIC, "peer.magic")?;
        r.expect(&[VERSION], "peer.version")?;
        let kind = Kind::from_u8(r.u8("peer.kind")?).ok_or(Error::new(
            ErrorKind::BadValue,
            "peer.kind",
            9,
        ))?;
        let sender = u64::from_be_bytes(r.array::<8>("peer.sender")?);
        let seq = u64::from_be_bytes(r.array::<8>("peer.seq")?);
        Ok(Sealed {
            kind,
            sender,
            seq,
            body: r.rest(),
        })
    }

    /// The entries of an [`Kind::Entries`] / [`Kind::SyncEntries`] datagram, all or an error
    /// (trailing bytes after the counted entries are an error).
    pub fn entries(&self) -> Result<Vec<Entry<'a>>> {
        if !matches!(self.kind, Kind::Entries | Kind::SyncEntries) {
            return Err(Error::new(ErrorKind::BadValue, "peer.kind", 9));
        }
        let mut r = Reader::new(self.body);
        let count = r.u16_be("peer.count")?;
        let mut v = Vec::with_capacity(usize::from(count).min(MAX_DATAGRAM / 30));
        for _ in 0..count {
            v.push(Entry::decode(&mut r)?);
        }
        r.finish("peer.entries")?;
        Ok(v)
    }

    /// A [`Kind::SyncDone`]'s entry count.
    pub fn sync_done(&self) -> Result<u32> {
        let mut r = Reader::new(self.body);
        let n = u32::from_be_bytes(r.array::<4>("peer.sync_count")?);
        r.finish("peer.sync_done")?;
        Ok(n)
    }
}

/// The sequence numbers seen from one sender: the highest, and which of the 64 before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    highest: u64,
    seen: u64,
}

impl ReplayWindow {
    /// The highest sequence accepted.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// `true` (and remembered) if `seq` was not seen and is not older than the window.
    pub fn accept(&mut self, seq: u64) -> bool {
        if seq > self.highest {
            let shift = seq.saturating_sub(self.highest);
            self.seen = if shift >= 64 {
                0
            } else {
                self.seen
                    .checked_shl(u32::try_from(shift).unwrap_or(64))
                    .unwrap_or(0)
            };
            // Bit 0 stands for `highest` itself.
            self.seen |= 1;
            self.highest = seq;
            return true;
        }
        let back = self.highest.saturating_sub(seq);
        if back >= 64 {
            return false;
        }
        let bit = 1u64
            .checked_shl(u32::try_from(back).unwrap_or(64))
            .unwrap_or(0);
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [0x5a; 32];

    fn entry(port: u16) -> Entry<'static> {
        Entry {
            family: 1,
            addr: SocketAddr::from(([203, 0, 113, 7], port)),
            age_ms: 1500,
            hop: 0,
            flags: 3,
            region: 255,
            server_type: b'd',
            players: 5,
            max_players: 16,
            bots: 1,
            appid: 10,
            protocol: 48,
            strings: [
                b"cstrike",
                b"cstrike",
                b"de_dust2",
                b"1.1.2.7",
                b"",
                b"",
                b"A server",
            ],
        }
    }

    #[test]
    fn entries_round_trip_and_fill_a_datagram() {
        let mut b = Builder::new(Kind::Entries, 0xABCD, 7);
        let mut n = 0u16;
        while b.push(&entry(27000 + n)) {
            n += 1;
        }
        let d = b.seal(&KEY);
        assert!(d.len() <= MAX_DATAGRAM);
        let per = entry(0).encoded_len();
        assert_eq!(per, 72);
        assert_eq!(
            usize::from(n),
            (MAX_DATAGRAM - MAC_LEN - HEADER_LEN - 2) / per,
            "as many as fit"
        );
        let s = Sealed::open(&d, &KEY).unwrap();
        assert_eq!((s.kind, s.sender, s.seq), (Kind::Entries, 0xABCD, 7));
        let e = s.entries().unwrap();
        assert_eq!(e.len(), usize::from(n));
        assert_eq!(e[3], entry(27003));
        let v6 = Entry {
            addr: "[2001:db8::1]:27960".parse().unwrap(),
            family: 2,
            ..entry(0)
        };
        let mut b = Builder::new(Kind::SyncEntries, 1, 1);
        assert!(b.push(&v6));
        let d = b.seal(&KEY);
        assert_eq!(Sealed::open(&d, &KEY).unwrap().entries().unwrap(), [v6]);
    }

    #[test]
    fn a_wrong_key_or_any_changed_byte_fails_the_mac() {
        let mut b = Builder::new(Kind::Entries, 1, 1);
        b.push(&entry(1));
        let d = b.seal(&KEY);
        assert_eq!(Sealed::open(&d, &[0x5b; 32]).unwrap_err().field, "peer.mac");
        for i in 0..d.len() {
            let mut forged = d.clone();
            forged[i] ^= 0x01;
            assert!(Sealed::open(&forged, &KEY).is_err(), "byte {i}");
        }
        assert!(Sealed::open(&d[..20], &KEY).is_err());
        assert!(Sealed::open(&[], &KEY).is_err());
    }

    #[test]
    fn sync_request_and_done() {
        let d = Builder::new(Kind::SyncRequest, 9, 2).seal(&KEY);
        assert_eq!(d.len(), HEADER_LEN + MAC_LEN);
        let s = Sealed::open(&d, &KEY).unwrap();
        assert_eq!(s.kind, Kind::SyncRequest);
        assert!(s.entries().is_err());
        let d = Builder::new(Kind::SyncDone, 9, 3)
            .sync_done(12345)
            .seal(&KEY);
        assert_eq!(Sealed::open(&d, &KEY).unwrap().sync_done().unwrap(), 12345);
    }

    #[test]
    fn the_replay_window_refuses_repeats_and_the_too_old() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(1));
        assert!(!w.accept(1), "a repeat");
        assert!(w.accept(3));
        assert!(w.accept(2), "late but new");
        assert!(!w.accept(2));
        assert!(w.accept(100));
        assert!(!w.accept(36), "64 back or more");
        assert!(w.accept(37));
        assert!(!w.accept(0));
    }

    proptest::proptest! {
        #[test]
        fn no_datagram_panics_the_decoder(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500)) {
            // With a valid MAC over random bodies too: only the decoder's checks stand between.
            let mut sealed = bytes.clone();
            sealed.extend_from_slice(&mac(&KEY, &bytes));
            for d in [&bytes, &sealed] {
                if let Ok(s) = Sealed::open(d, &KEY) {
                    let _ = s.entries();
                    let _ = s.sync_done();
                }
            }
        }
    }
}
