//! The state file: every listed server with when it expires, so a restart (an upgrade, a crash, a
//! config change) does not empty the list until each game server's next heartbeat.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `MUSTERSF` |
//! | 4 | format version ([`VERSION`]) |
//! | 8 | body length |
//! | 4 | CRC-32 (IEEE) of the body |
//! | … | body: [postcard](https://docs.rs/postcard) of [`Body`] — a string table and the records |
//!
//! Times are Unix wall-clock (a restart does not keep the monotonic clock): each record's
//! `expires_unix_ms` is when it would expire had nothing stopped, so downtime counts against it.
//! Encoding and decoding are pure (bytes in, bytes out); [`write_atomic`] and [`read`] do the I/O.
//! A missing, truncated, corrupt, foreign or newer file is refused whole with one [`StateError`]:
//! a partial list is never presented as the list.

use crate::master::intern::Strings;
use crate::master::record::{Family, Server};
use crate::master::table::Fields;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const MAGIC: [u8; 8] = *b"MUSTERSF";
/// The format written; files of other versions are refused (a newer muster's file is not guessed at).
pub const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 4;
/// Largest state file read: ~16M servers (`config::MAX_SERVERS`) with their strings.
pub const MAX_STATE_BYTES: u64 = 4 << 30;
/// Most records and strings a file may hold.
pub const MAX_RECORDS: usize = 16_000_000;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no such file")]
    Missing,
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("not a muster state file (no MUSTERSF magic)")]
    Foreign,
    #[error("format version {0}, this muster reads version {VERSION}")]
    Version(u32),
    #[error("truncated: {have} bytes where the header promises {want}")]
    Truncated { have: u64, want: u64 },
    #[error("trailing garbage: {have} bytes where the header promises {want}")]
    Trailing { have: u64, want: u64 },
    #[error("corrupt: checksum mismatch")]
    Checksum,
    #[error("corrupt: {0}")]
    Decode(String),
    #[error("too large: {0} bytes")]
    TooLarge(u64),
}

/// One saved server. Strings are indexes into [`Body::strings`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub addr: SocketAddr,
    /// 1 Valve, 2 DarkPlaces ([`Family`]).
    pub family: u8,
    pub region: u8,
    pub server_type: u8,
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
    pub flags: u16,
    pub appid: u32,
    pub protocol: u32,
    /// game, product, map, version, tags, gamedata, hostname.
    pub strings: [u32; 7],
    pub first_seen_unix: u64,
    pub expires_unix_ms: u64,
}

/// What the file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    pub written_unix_ms: u64,
    pub strings: Vec<Vec<u8>>,
    pub records: Vec<Record>,
}

impl Body {
    /// A record's family and fields, its strings borrowed from the table.
    pub fn fields(&self, r: &Record) -> Option<(Family, Fields<'_>)> {
        let family = match r.family {
            1 => Family::Valve,
            2 => Family::DarkPlaces,
            _ => return None,
        };
        let s = |i: usize| {
            r.strings
                .get(i)
                .and_then(|&x| self.strings.get(x as usize))
                .map_or(&[][..], Vec::as_slice)
        };
        Some((
            family,
            Fields {
                region: r.region,
                server_type: r.server_type,
                players: r.players,
                max_players: r.max_players,
                bots: r.bots,
                flags: r.flags,
                appid: r.appid,
                protocol: r.protocol,
                game: s(0),
                product: s(1),
                map: s(2),
                version: s(3),
                tags: s(4),
                gamedata: s(5),
                hostname: s(6),
            },
        ))
    }
}

/// Builds a body from listed servers, interning their strings into one table.
#[derive(Default)]
pub struct BodyBuilder<'a> {
    body: Body,
    index: HashMap<&'a [u8], u32>,
}

impl<'a> BodyBuilder<'a> {
    pub fn new(written_unix_ms: u64) -> Self {
        Self {
            body: Body {
                written_unix_ms,
                ..Body::default()
            },
            index: HashMap::new(),
        }
    }

    fn intern(&mut self, s: &'a [u8]) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = u32::try_from(self.body.strings.len()).unwrap_or(u32::MAX);
        self.body.strings.push(s.to_vec());
        self.index.insert(s, i);
        i
    }

    pub fn push(
        &mut self,
        s: &Server,
        strings: &'a Strings,
        first_seen_unix: u64,
        expires_unix_ms: u64,
    ) {
        let syms = s.syms();
        let mut idx = [0u32; 7];
        for (slot, sym) in idx.iter_mut().zip(syms) {
            *slot = self.intern(strings.get(sym));
        }
        self.body.records.push(Record {
            addr: s.addr.addr(),
            family: s.family as u8,
            region: s.region,
            server_type: s.server_type,
            players: s.players,
            max_players: s.max_players,
            bots: s.bots,
            flags: s.flags,
            appid: s.appid,
            protocol: s.protocol,
            strings: idx,
            first_seen_unix,
            expires_unix_ms,
        });
    }

    pub fn finish(self) -> Body {
        self.body
    }
}

/// The file's bytes.
pub fn encode(body: &Body) -> Vec<u8> {
    // Serialising plain structs into a Vec cannot fail.
    let payload = postcard::to_stdvec(body).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Checks and decodes a whole file.
pub fn decode(bytes: &[u8]) -> Result<Body, StateError> {
    let have = bytes.len() as u64;
    let field = |at: usize, n: usize| bytes.get(at..at + n);
    let magic = field(0, 8).ok_or(StateError::Foreign)?;
    if magic != MAGIC {
        return Err(StateError::Foreign);
    }
    let truncated = StateError::Truncated {
        have,
        want: HEADER as u64,
    };
    let u32_at = |at| {
        field(at, 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let version = u32_at(8).ok_or(truncated)?;
    if version != VERSION {
        return Err(StateError::Version(version));
    }
    let len = field(12, 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(StateError::Truncated {
            have,
            want: HEADER as u64,
        })?;
    let crc = u32_at(20).ok_or(StateError::Truncated {
        have,
        want: HEADER as u64,
    })?;
    let want = len.saturating_add(HEADER as u64);
    if have < want {
        return Err(StateError::Truncated { have, want });
    }
    if have > want {
        return Err(StateError::Trailing { have, want });
    }
    let payload = bytes.get(HEADER..).unwrap_or_default();
    if crc32fast::hash(payload) != crc {
        return Err(StateError::Checksum);
    }
    let body: Body =
        postcard::from_bytes(payload).map_err(|e| StateError::Decode(e.to_string()))?;
    if body.records.len() > MAX_RECORDS || body.strings.len() > MAX_RECORDS.saturating_mul(7) {
        return Err(StateError::Decode(
            "more records than any master holds".into(),
        ));
    }
    for r in &body.records {
        if r.strings.iter().any(|&i| i as usize >= body.strings.len()) {
            return Err(StateError::Decode(format!(
                "record {} names a string the table lacks",
                r.addr
            )));
        }
        if body.fields(r).is_none() {
            return Err(StateError::Decode(format!(
                "record {} has unknown family {}",
                r.addr, r.family
            )));
        }
    }
    Ok(body)
}

/// Reads and decodes `path`.
pub fn read(path: &Path) -> Result<Body, StateError> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StateError::Missing,
        _ => StateError::Read(e),
    })?;
    if meta.len() > MAX_STATE_BYTES {
        return Err(StateError::TooLarge(meta.len()));
    }
    let bytes = std::fs::read(path).map_err(StateError::Read)?;
    decode(&bytes)
}

/// The temporary file [`write_atomic`] writes before renaming it over `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` so that `path` always holds a whole file, old or new: a temporary
/// file beside it, fsync, rename over, fsync of the directory (so the rename survives a crash).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(addr: &str, family: u8, strings: [u32; 7]) -> Record {
        Record {
            addr: addr.parse().unwrap(),
            family,
            region: 255,
            server_type: b'd',
            players: 3,
            max_players: 16,
            bots: 1,
            flags: 5,
            appid: 10,
            protocol: 48,
            strings,
            first_seen_unix: 1_763_800_000,
            expires_unix_ms: 1_763_800_900_000,
        }
    }

    fn body() -> Body {
        Body {
            written_unix_ms: 1_763_800_100_000,
            strings: vec![b"".to_vec(), b"cstrike".to_vec(), b"de_dust2".to_vec()],
            records: vec![
                record("192.0.2.1:27015", 1, [1, 1, 2, 0, 0, 0, 0]),
                record("[2001:db8::1]:26000", 2, [1, 0, 2, 0, 0, 0, 0]),
            ],
        }
    }

    #[test]
    fn round_trips_and_lays_out_the_header() {
        let bytes = encode(&body());
        assert_eq!(&bytes[..8], b"MUSTERSF");
        assert_eq!(&bytes[8..12], &[1, 0, 0, 0], "version 1, little-endian");
        let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
        assert_eq!(len as usize, bytes.len() - HEADER);
        assert_eq!(decode(&bytes).unwrap(), body());
        let b = body();
        let (family, f) = b.fields(&b.records[0]).unwrap();
        assert_eq!(family, Family::Valve);
        assert_eq!(
            (f.game, f.map, f.hostname),
            (&b"cstrike"[..], &b"de_dust2"[..], &b""[..])
        );
    }

    #[test]
    fn refuses_every_kind_of_bad_file_whole() {
        let good = encode(&body());
        let cut = &good[..good.len() - 3];
        assert!(
            matches!(decode(cut), Err(StateError::Truncated { .. })),
            "{:?}",
            decode(cut)
        );
        assert!(matches!(
            decode(&good[..10]),
            Err(StateError::Truncated { .. })
        ));
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(matches!(decode(&flipped), Err(StateError::Checksum)));
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(StateError::Trailing { .. })));
        assert!(matches!(
            decode(b"{\"servers\": []}"),
            Err(StateError::Foreign)
        ));
        assert!(matches!(decode(b""), Err(StateError::Foreign)));
        let mut newer = good.clone();
        newer[8] = 2;
        assert!(matches!(decode(&newer), Err(StateError::Version(2))));
        // A string index past the table, with a valid checksum: refused, not half-restored.
        let mut b = body();
        b.records[1].strings[6] = 99;
        assert!(matches!(decode(&encode(&b)), Err(StateError::Decode(_))));
        let mut b = body();
        b.records[0].family = 7;
        assert!(matches!(decode(&encode(&b)), Err(StateError::Decode(_))));
    }

    #[test]
    fn writes_atomically_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("muster-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        assert!(matches!(read(&path), Err(StateError::Missing)));
        write_atomic(&path, &encode(&body())).unwrap();
        assert!(!temp_path(&path).exists(), "the temporary file was renamed");
        assert_eq!(read(&path).unwrap(), body());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode(&bytes);
            let mut framed = encode(&body());
            framed.truncate(HEADER);
            framed.extend_from_slice(&bytes);
            let _ = decode(&framed);
        }
    }
}
