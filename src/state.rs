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
//! Encoding and decoding are pure (bytes in, bytes out); [`write_dumps`] and [`read`] do the I/O.
//! A missing, truncated, corrupt, foreign or newer file is refused whole with one [`StateError`]:
//! a partial list is never presented as the list.

use crate::master::table::intern::Sym;
use crate::master::{Family, Server};
use crate::master::{Fields, ShardDump};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::io::{Seek, Write};
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
    /// Each distinct string once (as bytes: postcard then copies them whole, not byte by byte).
    pub strings: Vec<ByteBuf>,
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
                .map_or(&[][..], |b| b.as_slice())
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

/// Counts `write` passes through (the body's length and CRC, computed as it streams out).
struct Summing<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let done = buf.get(..n).unwrap_or_default();
        self.crc.update(done);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Encodes `v` into `scratch` and writes it in one call (postcard writes byte by byte; the file
/// and its checksum take whole values).
fn put(w: &mut impl Write, scratch: &mut Vec<u8>, v: &impl Serialize) -> std::io::Result<()> {
    scratch.clear();
    let buf = postcard::to_extend(v, std::mem::take(scratch))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    *scratch = buf;
    w.write_all(scratch)
}

/// What [`write_dumps`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub servers: usize,
    pub bytes: u64,
}

/// Writes every server of `dumps` to `path` so that `path` always holds a whole file, old or new
/// (a temporary file beside it, fsync, rename over, fsync of the directory), streaming: the
/// string table is each shard's interned strings that listed servers use (a remap from string id
/// to table index, 4 bytes per id), and records go to the file as they are encoded — no copy of
/// the list is built in memory (a million servers: ~60 MB written, ~10 MB held meanwhile).
/// `times(dump, server, last_heard)` gives a server's first-seen Unix seconds and expiry Unix ms.
pub fn write_dumps(
    path: &Path,
    written_unix_ms: u64,
    dumps: &[&ShardDump],
    times: impl Fn(&ShardDump, &Server, u32) -> (u64, u64),
) -> std::io::Result<Written> {
    // Pass 1: which strings, in which order, and how many records.
    let mut remaps: Vec<Vec<u32>> = Vec::with_capacity(dumps.len());
    let mut order: Vec<(usize, Sym)> = Vec::new();
    let mut servers = 0usize;
    for (i, d) in dumps.iter().enumerate() {
        let mut remap: Vec<u32> = Vec::new();
        for (s, _) in d.iter() {
            servers += 1;
            for sym in s.syms() {
                let id = sym.0 as usize;
                if id >= remap.len() {
                    remap.resize(id + 1, u32::MAX);
                }
                if let Some(slot) = remap.get_mut(id)
                    && *slot == u32::MAX
                {
                    *slot = u32::try_from(order.len()).unwrap_or(u32::MAX);
                    order.push((i, sym));
                }
            }
        }
        remaps.push(remap);
    }
    // Pass 2: the file, header last (its length and CRC are known at the end).
    let tmp = temp_path(path);
    let file = std::fs::File::create(&tmp)?;
    let mut w = Summing {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        crc: crc32fast::Hasher::new(),
        len: 0,
    };
    w.inner.write_all(&[0u8; HEADER])?;
    let mut scratch = Vec::with_capacity(256);
    put(&mut w, &mut scratch, &written_unix_ms)?;
    put(&mut w, &mut scratch, &(order.len() as u64))?;
    for &(i, sym) in &order {
        let bytes = dumps.get(i).map_or(&[][..], |d| d.strings.get(sym));
        put(&mut w, &mut scratch, &serde_bytes::Bytes::new(bytes))?;
    }
    put(&mut w, &mut scratch, &(servers as u64))?;
    for (i, d) in dumps.iter().enumerate() {
        let remap = remaps.get(i).map_or(&[][..], Vec::as_slice);
        for (s, seen) in d.iter() {
            let (first_seen_unix, expires_unix_ms) = times(d, s, seen);
            let mut idx = [0u32; 7];
            for (slot, sym) in idx.iter_mut().zip(s.syms()) {
                *slot = remap.get(sym.0 as usize).copied().unwrap_or(0);
            }
            put(
                &mut w,
                &mut scratch,
                &Record {
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
                },
            )?;
        }
    }
    let (len, crc) = (w.len, w.crc.finalize());
    let mut file = w.inner.into_inner().map_err(|e| e.into_error())?;
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&crc.to_le_bytes());
    file.seek(std::io::SeekFrom::Start(0))?;
    file.write_all(&header)?;
    file.sync_all()?;
    drop(file);
    rename_durably(&tmp, path)?;
    Ok(Written {
        servers,
        bytes: len + HEADER as u64,
    })
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

/// The temporary file [`write_dumps`] writes before renaming it over `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Renames `tmp` over `path` and syncs the directory, so the rename survives a crash.
fn rename_durably(tmp: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(tmp, path)?;
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
            strings: [&b""[..], b"cstrike", b"de_dust2"]
                .map(ByteBuf::from)
                .to_vec(),
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
    fn streams_a_tables_servers_and_reads_them_back() {
        use crate::master::Limits;
        use crate::master::Table;
        use crate::master::Time;
        let mut tables: Vec<Table> = (0..2)
            .map(|_| {
                Table::new(
                    Time::ZERO,
                    Limits {
                        allow_private: true,
                        ..Limits::default()
                    },
                )
            })
            .collect();
        for i in 0..300u16 {
            let name = format!("server {i}");
            let f = Fields {
                players: (i % 7) as u8,
                max_players: 16,
                game: if i % 3 == 0 { b"Nexuiz" } else { b"cstrike" },
                map: b"dm1",
                hostname: name.as_bytes(),
                ..Fields::default()
            };
            let family = if i % 3 == 0 {
                Family::DarkPlaces
            } else {
                Family::Valve
            };
            let addr = SocketAddr::from(([192, 0, 2, (i % 200) as u8], 27000 + i));
            tables[usize::from(i % 2)]
                .upsert(Time::from_secs(u64::from(i)), addr, family, &f)
                .unwrap();
        }
        let dumps: Vec<ShardDump> = tables.iter().map(Table::dump).collect();
        let refs: Vec<&ShardDump> = dumps.iter().collect();
        let dir = std::env::temp_dir().join(format!("muster-state-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        assert!(matches!(read(&path), Err(StateError::Missing)));
        let w = write_dumps(&path, 42, &refs, |d, s, seen| {
            (u64::from(s.first_seen), d.expires_at(seen).millis())
        })
        .unwrap();
        assert_eq!(w.servers, 300);
        assert_eq!(w.bytes, std::fs::metadata(&path).unwrap().len());
        assert!(!temp_path(&path).exists(), "the temporary file was renamed");
        let body = read(&path).unwrap();
        assert_eq!((body.written_unix_ms, body.records.len()), (42, 300));
        // Every server with its fields and times, strings shared through the table.
        let expected: Vec<(&ShardDump, &Server, u32)> = refs
            .iter()
            .flat_map(|d| d.iter().map(move |(s, seen)| (*d, s, seen)))
            .collect();
        for ((d, s, seen), r) in expected.iter().zip(&body.records) {
            assert_eq!(r.addr, s.addr.addr());
            let (family, f) = body.fields(r).unwrap();
            assert_eq!(family, s.family);
            assert_eq!(f.hostname, d.strings.get(s.hostname));
            assert_eq!(f.game, d.strings.get(s.game));
            assert_eq!(f.players, s.players);
            assert_eq!(r.expires_unix_ms, d.expires_at(*seen).millis());
        }
        assert!(
            body.strings.len() < 320,
            "shared strings stored once per shard: {}",
            body.strings.len()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::wire::NO_PANIC_CASES))]
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
