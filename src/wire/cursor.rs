//! Safe, bounds-checked reads over a datagram, and appends to an output buffer.
//!
//! Every read returns a [`Result`] carrying the field name and offset, so decoders never index a
//! slice directly and never panic on short or hostile input.

use super::error::{Error, ErrorKind, Result};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

/// The 4-byte out-of-band prefix `FF FF FF FF` that marks connectionless Quake-family packets.
pub const OOB: [u8; 4] = [0xFF; 4];

/// A forward-only reader over a borrowed datagram.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Offset of the next unread byte in the original datagram.
    pub const fn offset(&self) -> usize {
        self.pos
    }

    /// The unread bytes.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    pub fn is_empty(&self) -> bool {
        self.rest().is_empty()
    }

    pub fn remaining(&self) -> usize {
        self.rest().len()
    }

    fn err(&self, kind: ErrorKind, field: &'static str) -> Error {
        Error::new(kind, field, self.pos)
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        let rest = self.rest();
        let out = rest
            .get(..n)
            .ok_or_else(|| self.err(ErrorKind::Truncated, field))?;
        // n ≤ rest.len(), so pos stays within the buffer.
        self.pos = self.pos.saturating_add(n);
        Ok(out)
    }

    /// Takes every unread byte.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let rest = self.rest();
        self.pos = self.buf.len();
        rest
    }

    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16_le(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub fn u16_be(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub fn u32_le(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub fn i32_le(&mut self, field: &'static str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array(field)?))
    }

    pub fn u64_le(&mut self, field: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Takes `expected` if the input starts with it; errors with `BadHeader` otherwise.
    pub fn expect(&mut self, expected: &[u8], field: &'static str) -> Result<()> {
        if self.rest().starts_with(expected) {
            self.pos = self.pos.saturating_add(expected.len());
            Ok(())
        } else {
            Err(self.err(ErrorKind::BadHeader, field))
        }
    }

    /// Takes `prefix` if present and says whether it was.
    pub fn eat(&mut self, prefix: &[u8]) -> bool {
        let hit = self.rest().starts_with(prefix);
        if hit {
            self.pos = self.pos.saturating_add(prefix.len());
        }
        hit
    }

    /// Takes a NUL-terminated string, returning it without the NUL.
    pub fn cstr(&mut self, field: &'static str) -> Result<&'a [u8]> {
        let rest = self.rest();
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.err(ErrorKind::MissingNul, field))?;
        let (s, _) = rest.split_at(end);
        // The string and its NUL, both inside the buffer.
        self.pos = self.pos.saturating_add(end).saturating_add(1);
        Ok(s)
    }

    /// A 4-byte IPv4 address and a big-endian port, as list entries carry them.
    pub fn addr_v4(&mut self, field: &'static str) -> Result<SocketAddrV4> {
        let ip: [u8; 4] = self.array(field)?;
        let port = self.u16_be(field)?;
        Ok(SocketAddrV4::new(Ipv4Addr::from(ip), port))
    }

    /// A 16-byte IPv6 address and a big-endian port.
    pub fn addr_v6(&mut self, field: &'static str) -> Result<SocketAddrV6> {
        let ip: [u8; 16] = self.array(field)?;
        let port = self.u16_be(field)?;
        Ok(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
    }

    /// Fails with `TrailingBytes` unless every byte was read.
    pub fn finish(&self, field: &'static str) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.err(ErrorKind::TrailingBytes, field))
        }
    }
}

/// Runs an encoder that appends to `out`; if it fails, `out` is left as it was.
pub fn all_or_nothing(
    out: &mut Vec<u8>,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let start = out.len();
    let r = encode(out);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Appends `n` in decimal (no allocation, no formatting machinery).
pub fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start = start.saturating_sub(1);
        if let Some(d) = digits.get_mut(start) {
            *d = b'0'.saturating_add((n % 10) as u8);
        }
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// Appends an IPv4 list entry (address, big-endian port).
pub fn put_addr_v4(out: &mut Vec<u8>, addr: SocketAddrV4) {
    out.extend_from_slice(&addr.ip().octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Appends an IPv6 list entry (address, big-endian port).
pub fn put_addr_v6(out: &mut Vec<u8>, addr: SocketAddrV6) {
    out.extend_from_slice(&addr.ip().octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Appends `s` and a NUL, refusing strings that already hold a NUL (they would split the field).
pub fn put_cstr(out: &mut Vec<u8>, s: &[u8], field: &'static str) -> Result<()> {
    if let Some(at) = s.iter().position(|&b| b == 0) {
        return Err(Error::new(ErrorKind::BadByte, field, at));
    }
    out.extend_from_slice(s);
    out.push(0);
    Ok(())
}

/// Parses an unsigned decimal with no sign, no spaces and no leading `+`, into a u64 bounded by `max`.
pub fn parse_decimal(s: &[u8], max: u64, field: &'static str) -> Result<u64> {
    if s.is_empty() || s.len() > 20 {
        return Err(Error::new(ErrorKind::BadNumber, field, 0));
    }
    let mut v: u64 = 0;
    for (i, &b) in s.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(Error::new(ErrorKind::BadNumber, field, i));
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b.wrapping_sub(b'0'))))
            .filter(|&v| v <= max)
            .ok_or(Error::new(ErrorKind::BadNumber, field, i))?;
    }
    Ok(v)
}

/// Parses dotted-quad IPv4 text (`a.b.c.d`, each 0–255, no leading `+`, at most 3 digits).
pub fn parse_ipv4(s: &[u8], field: &'static str) -> Result<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts
            .next()
            .ok_or(Error::new(ErrorKind::BadAddress, field, 0))?;
        if part.len() > 3 {
            return Err(Error::new(ErrorKind::BadAddress, field, 0));
        }
        *octet = parse_decimal(part, 255, field)
            .map_err(|_| Error::new(ErrorKind::BadAddress, field, 0))? as u8;
    }
    if parts.next().is_some() {
        return Err(Error::new(ErrorKind::BadAddress, field, 0));
    }
    Ok(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16_le("x").unwrap(), 0x0201);
        let e = r.u16_le("y").unwrap_err();
        assert_eq!((e.kind, e.field, e.offset), (ErrorKind::Truncated, "y", 2));
        assert_eq!(r.u8("z").unwrap(), 3);
        assert!(r.finish("end").is_ok());
    }

    #[test]
    fn cstr_needs_nul() {
        let mut r = Reader::new(b"ab\0cd");
        assert_eq!(r.cstr("s").unwrap(), b"ab");
        assert_eq!(r.cstr("t").unwrap_err().kind, ErrorKind::MissingNul);
        assert_eq!(r.finish("end").unwrap_err().kind, ErrorKind::TrailingBytes);
    }

    #[test]
    fn addresses_are_network_order() {
        let mut r = Reader::new(&[127, 0, 0, 1, 0x69, 0x87]);
        assert_eq!(r.addr_v4("a").unwrap(), "127.0.0.1:27015".parse().unwrap());
        let mut out = Vec::new();
        put_addr_v4(&mut out, "127.0.0.1:27015".parse().unwrap());
        assert_eq!(out, [127, 0, 0, 1, 0x69, 0x87]);
    }

    #[test]
    fn decimal_output() {
        for n in [0u64, 7, 10, 65535, u64::MAX] {
            let mut out = Vec::new();
            put_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn decimal_and_ipv4_text() {
        assert_eq!(parse_decimal(b"65535", 65535, "p").unwrap(), 65535);
        assert!(parse_decimal(b"65536", 65535, "p").is_err());
        assert!(parse_decimal(b"", 9, "p").is_err());
        assert!(parse_decimal(b"-1", 9, "p").is_err());
        assert!(parse_decimal(b"99999999999999999999999", u64::MAX, "p").is_err());
        assert_eq!(
            parse_ipv4(b"10.0.255.1", "a").unwrap(),
            Ipv4Addr::new(10, 0, 255, 1)
        );
        for bad in [
            &b"1.2.3"[..],
            b"1.2.3.4.5",
            b"256.1.1.1",
            b"1..2.3",
            b"0001.2.3.4",
            b"",
        ] {
            assert!(parse_ipv4(bad, "a").is_err(), "{bad:?}");
        }
    }
}
