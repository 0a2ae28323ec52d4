//! A2S_INFO, the game-server info probe (crawler or master → game server), both directions: the
//! load generator plays game servers and the crawler probes them.
//!
//! - Request: `FF FF FF FF 54 "Source Engine Query" 00`, optionally followed by a 4-byte challenge.
//! - `S2C_CHALLENGE`: `FF FF FF FF 41 <i32 challenge>`; the client repeats the request with it.
//! - Source reply `FF FF FF FF 49 …` (EDF fields included) and the GoldSrc reply `FF FF FF FF 6D …`.
//!
//! Integers are little-endian (shared/docs/protocols.md §2).

use super::cursor::{OOB, Reader, put_cstr};
use super::error::{Error, ErrorKind, Result};

pub const INFO_REQUEST: &[u8] = b"\xFF\xFF\xFF\xFFTSource Engine Query\0";
/// [`INFO_REQUEST`] after its OOB prefix.
pub const INFO_REQUEST_BODY: &[u8] = b"TSource Engine Query\0";
pub const OP_CHALLENGE: u8 = 0x41;
pub const OP_SOURCE_INFO: u8 = 0x49;
pub const OP_GOLDSRC_INFO: u8 = 0x6D;
/// The Ship's app id: its reply carries three more bytes after `vac`.
pub const THE_SHIP_APPID: u16 = 2400;

pub const EDF_PORT: u8 = 0x80;
pub const EDF_STEAMID: u8 = 0x10;
pub const EDF_SOURCETV: u8 = 0x40;
pub const EDF_KEYWORDS: u8 = 0x20;
pub const EDF_GAMEID: u8 = 0x01;

/// `A2S_INFO` request; `challenge` is the value from an earlier `S2C_CHALLENGE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoRequest {
    pub challenge: Option<i32>,
}

impl InfoRequest {
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        r.expect(INFO_REQUEST, "a2s_info.header")?;
        let challenge = if r.is_empty() {
            None
        } else {
            Some(r.i32_le("a2s_info.challenge")?)
        };
        r.finish("a2s_info")?;
        Ok(Self { challenge })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(INFO_REQUEST);
        if let Some(c) = self.challenge {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
}

/// `S2C_CHALLENGE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge(pub i32);

impl Challenge {
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        r.expect(&OOB, "s2c_challenge.oob")?;
        r.expect(&[OP_CHALLENGE], "s2c_challenge.opcode")?;
        let c = r.i32_le("s2c_challenge.value")?;
        r.finish("s2c_challenge")?;
        Ok(Self(c))
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&OOB);
        out.push(OP_CHALLENGE);
        out.extend_from_slice(&self.0.to_le_bytes());
    }
}

/// The Ship's extra fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ShipFields {
    pub mode: u8,
    pub witnesses: u8,
    pub duration: u8,
}

/// Source's extra-data fields, present by bits of the EDF byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExtraData<'a> {
    pub port: Option<u16>,
    pub steam_id: Option<u64>,
    /// SourceTV port and name.
    pub source_tv: Option<(u16, &'a [u8])>,
    pub keywords: Option<&'a [u8]>,
    pub game_id: Option<u64>,
}

impl ExtraData<'_> {
    /// The EDF byte that announces exactly these fields.
    pub fn flags(&self) -> u8 {
        let bit = |present: bool, b: u8| if present { b } else { 0 };
        bit(self.port.is_some(), EDF_PORT)
            | bit(self.steam_id.is_some(), EDF_STEAMID)
            | bit(self.source_tv.is_some(), EDF_SOURCETV)
            | bit(self.keywords.is_some(), EDF_KEYWORDS)
            | bit(self.game_id.is_some(), EDF_GAMEID)
    }
}

/// The Source `A2S_INFO` reply (`0x49`), borrowing its strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceInfo<'a> {
    pub protocol: u8,
    pub name: &'a [u8],
    pub map: &'a [u8],
    pub folder: &'a [u8],
    pub game: &'a [u8],
    pub app_id: u16,
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
    /// `d` dedicated, `l` listen, `p` SourceTV proxy.
    pub server_type: u8,
    /// `l` Linux, `w` Windows, `m`/`o` macOS.
    pub environment: u8,
    /// 1 when password-protected.
    pub visibility: u8,
    pub vac: u8,
    pub ship: Option<ShipFields>,
    pub version: &'a [u8],
    /// `None` when the reply ends before the EDF byte (older servers).
    pub extra: Option<ExtraData<'a>>,
}

impl<'a> SourceInfo<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        r.expect(&OOB, "a2s_info_reply.oob")?;
        r.expect(&[OP_SOURCE_INFO], "a2s_info_reply.opcode")?;
        let protocol = r.u8("a2s_info_reply.protocol")?;
        let name = r.cstr("a2s_info_reply.name")?;
        let map = r.cstr("a2s_info_reply.map")?;
        let folder = r.cstr("a2s_info_reply.folder")?;
        let game = r.cstr("a2s_info_reply.game")?;
        let app_id = r.u16_le("a2s_info_reply.appid")?;
        let players = r.u8("a2s_info_reply.players")?;
        let max_players = r.u8("a2s_info_reply.max")?;
        let bots = r.u8("a2s_info_reply.bots")?;
        let server_type = r.u8("a2s_info_reply.type")?;
        let environment = r.u8("a2s_info_reply.environment")?;
        let visibility = r.u8("a2s_info_reply.visibility")?;
        let vac = r.u8("a2s_info_reply.vac")?;
        let ship = if app_id == THE_SHIP_APPID {
            Some(ShipFields {
                mode: r.u8("a2s_info_reply.ship")?,
                witnesses: r.u8("a2s_info_reply.ship")?,
                duration: r.u8("a2s_info_reply.ship")?,
            })
        } else {
            None
        };
        let version = r.cstr("a2s_info_reply.version")?;
        let extra = if r.is_empty() {
            None
        } else {
            let edf = r.u8("a2s_info_reply.edf")?;
            let known = EDF_PORT | EDF_STEAMID | EDF_SOURCETV | EDF_KEYWORDS | EDF_GAMEID;
            if edf & !known != 0 {
                return Err(Error::new(
                    ErrorKind::BadValue,
                    "a2s_info_reply.edf",
                    r.offset().saturating_sub(1),
                ));
            }
            let mut x = ExtraData::default();
            if edf & EDF_PORT != 0 {
                x.port = Some(r.u16_le("a2s_info_reply.port")?);
            }
            if edf & EDF_STEAMID != 0 {
                x.steam_id = Some(r.u64_le("a2s_info_reply.steamid")?);
            }
            if edf & EDF_SOURCETV != 0 {
                let port = r.u16_le("a2s_info_reply.tv_port")?;
                x.source_tv = Some((port, r.cstr("a2s_info_reply.tv_name")?));
            }
            if edf & EDF_KEYWORDS != 0 {
                x.keywords = Some(r.cstr("a2s_info_reply.keywords")?);
            }
            if edf & EDF_GAMEID != 0 {
                x.game_id = Some(r.u64_le("a2s_info_reply.gameid")?);
            }
            Some(x)
        };
        r.finish("a2s_info_reply")?;
        Ok(Self {
            protocol,
            name,
            map,
            folder,
            game,
            app_id,
            players,
            max_players,
            bots,
            server_type,
            environment,
            visibility,
            vac,
            ship,
            version,
            extra,
        })
    }

    /// Appends the reply. Fails (writing nothing) if a string holds a NUL or `ship` disagrees
    /// with `app_id`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.ship.is_some() != (self.app_id == THE_SHIP_APPID) {
            return Err(Error::new(ErrorKind::BadValue, "a2s_info_reply.ship", 0));
        }
        super::cursor::all_or_nothing(out, |o| self.encode_fields(o))
    }

    fn encode_fields(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&OOB);
        out.push(OP_SOURCE_INFO);
        out.push(self.protocol);
        put_cstr(out, self.name, "a2s_info_reply.name")?;
        put_cstr(out, self.map, "a2s_info_reply.map")?;
        put_cstr(out, self.folder, "a2s_info_reply.folder")?;
        put_cstr(out, self.game, "a2s_info_reply.game")?;
        out.extend_from_slice(&self.app_id.to_le_bytes());
        out.extend_from_slice(&[
            self.players,
            self.max_players,
            self.bots,
            self.server_type,
            self.environment,
            self.visibility,
            self.vac,
        ]);
        if let Some(s) = self.ship {
            out.extend_from_slice(&[s.mode, s.witnesses, s.duration]);
        }
        put_cstr(out, self.version, "a2s_info_reply.version")?;
        if let Some(x) = self.extra {
            out.push(x.flags());
            if let Some(p) = x.port {
                out.extend_from_slice(&p.to_le_bytes());
            }
            if let Some(id) = x.steam_id {
                out.extend_from_slice(&id.to_le_bytes());
            }
            if let Some((port, name)) = x.source_tv {
                out.extend_from_slice(&port.to_le_bytes());
                put_cstr(out, name, "a2s_info_reply.tv_name")?;
            }
            if let Some(k) = x.keywords {
                put_cstr(out, k, "a2s_info_reply.keywords")?;
            }
            if let Some(g) = x.game_id {
                out.extend_from_slice(&g.to_le_bytes());
            }
        }
        Ok(())
    }
}

/// The mod block of a GoldSrc reply, present when its `mod` byte is 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModInfo<'a> {
    pub link: &'a [u8],
    pub download: &'a [u8],
    pub version: i32,
    pub size: i32,
    /// 0 single- and multiplayer, 1 multiplayer only.
    pub kind: u8,
    /// 0 the mod uses the Half-Life DLL, 1 its own.
    pub dll: u8,
}

/// The GoldSrc `A2S_INFO` reply (`0x6D`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoldSrcInfo<'a> {
    /// The server's own `ip:port` text.
    pub address: &'a [u8],
    pub name: &'a [u8],
    pub map: &'a [u8],
    pub folder: &'a [u8],
    pub game: &'a [u8],
    pub players: u8,
    pub max_players: u8,
    pub protocol: u8,
    /// `D` dedicated, `L` non-dedicated, `P` HLTV.
    pub server_type: u8,
    /// `L` Linux, `W` Windows.
    pub environment: u8,
    pub visibility: u8,
    pub mod_info: Option<ModInfo<'a>>,
    pub vac: u8,
    pub bots: u8,
}

impl<'a> GoldSrcInfo<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        r.expect(&OOB, "goldsrc_info.oob")?;
        r.expect(&[OP_GOLDSRC_INFO], "goldsrc_info.opcode")?;
        let address = r.cstr("goldsrc_info.address")?;
        let name = r.cstr("goldsrc_info.name")?;
        let map = r.cstr("goldsrc_info.map")?;
        let folder = r.cstr("goldsrc_info.folder")?;
        let game = r.cstr("goldsrc_info.game")?;
        let players = r.u8("goldsrc_info.players")?;
        let max_players = r.u8("goldsrc_info.max")?;
        let protocol = r.u8("goldsrc_info.protocol")?;
        let server_type = r.u8("goldsrc_info.type")?;
        let environment = r.u8("goldsrc_info.environment")?;
        let visibility = r.u8("goldsrc_info.visibility")?;
        let mod_info = match r.u8("goldsrc_info.mod")? {
            0 => None,
            1 => {
                let link = r.cstr("goldsrc_info.mod.link")?;
                let download = r.cstr("goldsrc_info.mod.download")?;
                if r.u8("goldsrc_info.mod.null")? != 0 {
                    return Err(Error::new(
                        ErrorKind::BadValue,
                        "goldsrc_info.mod.null",
                        r.offset().saturating_sub(1),
                    ));
                }
                Some(ModInfo {
                    link,
                    download,
                    version: r.i32_le("goldsrc_info.mod.version")?,
                    size: r.i32_le("goldsrc_info.mod.size")?,
                    kind: r.u8("goldsrc_info.mod.type")?,
                    dll: r.u8("goldsrc_info.mod.dll")?,
                })
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::BadValue,
                    "goldsrc_info.mod",
                    r.offset().saturating_sub(1),
                ));
            }
        };
        let vac = r.u8("goldsrc_info.vac")?;
        let bots = r.u8("goldsrc_info.bots")?;
        r.finish("goldsrc_info")?;
        Ok(Self {
            address,
            name,
            map,
            folder,
            game,
            players,
            max_players,
            protocol,
            server_type,
            environment,
            visibility,
            mod_info,
            vac,
            bots,
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        super::cursor::all_or_nothing(out, |o| self.encode_fields(o))
    }

    fn encode_fields(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&OOB);
        out.push(OP_GOLDSRC_INFO);
        put_cstr(out, self.address, "goldsrc_info.address")?;
        put_cstr(out, self.name, "goldsrc_info.name")?;
        put_cstr(out, self.map, "goldsrc_info.map")?;
        put_cstr(out, self.folder, "goldsrc_info.folder")?;
        put_cstr(out, self.game, "goldsrc_info.game")?;
        out.extend_from_slice(&[
            self.players,
            self.max_players,
            self.protocol,
            self.server_type,
            self.environment,
            self.visibility,
        ]);
        match self.mod_info {
            None => out.push(0),
            Some(m) => {
                out.push(1);
                put_cstr(out, m.link, "goldsrc_info.mod.link")?;
                put_cstr(out, m.download, "goldsrc_info.mod.download")?;
                out.push(0);
                out.extend_from_slice(&m.version.to_le_bytes());
                out.extend_from_slice(&m.size.to_le_bytes());
                out.push(m.kind);
                out.push(m.dll);
            }
        }
        out.push(self.vac);
        out.push(self.bots);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The Valve developer wiki's example reply of a TF2 server, all EDF fields set to exercise them.
    fn tf2() -> SourceInfo<'static> {
        SourceInfo {
            protocol: 17,
            name: b"muster test",
            map: b"ctf_2fort",
            folder: b"tf",
            game: b"Team Fortress",
            app_id: 440,
            players: 5,
            max_players: 24,
            bots: 1,
            server_type: b'd',
            environment: b'l',
            visibility: 0,
            vac: 1,
            ship: None,
            version: b"8835751",
            extra: Some(ExtraData {
                port: Some(27015),
                steam_id: Some(0x0123_4567_89AB_CDEF),
                source_tv: Some((27020, b"SourceTV")),
                keywords: Some(b"alltalk,cp"),
                game_id: Some(440),
            }),
        }
    }

    #[test]
    fn request_with_and_without_challenge() {
        let mut out = Vec::new();
        InfoRequest { challenge: None }.encode(&mut out);
        assert_eq!(out, b"\xff\xff\xff\xffTSource Engine Query\0");
        assert_eq!(
            InfoRequest::decode(&out).unwrap(),
            InfoRequest { challenge: None }
        );
        out.extend_from_slice(&[0x4A, 0xA1, 0x86, 0x01]);
        assert_eq!(
            InfoRequest::decode(&out).unwrap().challenge,
            Some(0x0186_A14A)
        );
        assert!(InfoRequest::decode(&out[..27]).is_err());
        out.push(0);
        assert!(InfoRequest::decode(&out).is_err());
        assert!(InfoRequest::decode(b"\xff\xff\xff\xffTSource Engine Quer\0").is_err());
    }

    #[test]
    fn challenge_packet() {
        let raw = b"\xff\xff\xff\xff\x41\x4a\xa1\x86\x01";
        let c = Challenge::decode(raw).unwrap();
        assert_eq!(c, Challenge(0x0186_A14A));
        let mut out = Vec::new();
        c.encode(&mut out);
        assert_eq!(out, raw);
    }

    #[test]
    fn source_reply_bytes() {
        let mut out = Vec::new();
        tf2().encode(&mut out).unwrap();
        let mut want = b"\xff\xff\xff\xff\x49\x11muster test\0ctf_2fort\0tf\0Team Fortress\0\xb8\x01\x05\x18\x01dl\x00\x018835751\0".to_vec();
        want.push(0xF1); // EDF: port, steamid, tv, keywords, gameid
        want.extend_from_slice(&27015u16.to_le_bytes());
        want.extend_from_slice(&0x0123_4567_89AB_CDEFu64.to_le_bytes());
        want.extend_from_slice(&27020u16.to_le_bytes());
        want.extend_from_slice(b"SourceTV\0alltalk,cp\0");
        want.extend_from_slice(&440u64.to_le_bytes());
        assert_eq!(out, want);
        assert_eq!(SourceInfo::decode(&out).unwrap(), tf2());
        // Every shorter prefix is a clean error, except the one that ends before the EDF byte.
        for n in 0..out.len() {
            let before_edf =
                out.len() - (want.len() - (want.iter().position(|&b| b == 0xF1).unwrap()));
            if n != before_edf {
                assert!(SourceInfo::decode(&out[..n]).is_err(), "prefix {n}");
            }
        }
    }

    #[test]
    fn the_ship_and_no_edf() {
        let mut ship = tf2();
        ship.app_id = THE_SHIP_APPID;
        ship.ship = Some(ShipFields {
            mode: 1,
            witnesses: 2,
            duration: 3,
        });
        ship.extra = None;
        let mut out = Vec::new();
        ship.encode(&mut out).unwrap();
        assert_eq!(SourceInfo::decode(&out).unwrap(), ship);
        ship.ship = None;
        assert!(ship.encode(&mut Vec::new()).is_err());
    }

    #[test]
    fn goldsrc_reply() {
        let hl = GoldSrcInfo {
            address: b"127.0.0.1:27015",
            name: b"HLDS",
            map: b"crossfire",
            folder: b"valve",
            game: b"Half-Life",
            players: 2,
            max_players: 16,
            protocol: 47,
            server_type: b'D',
            environment: b'L',
            visibility: 0,
            mod_info: Some(ModInfo {
                link: b"http://x",
                download: b"",
                version: 1,
                size: 184_000_000,
                kind: 0,
                dll: 1,
            }),
            vac: 1,
            bots: 0,
        };
        let mut out = Vec::new();
        hl.encode(&mut out).unwrap();
        let mut want = b"\xff\xff\xff\xff\x6d127.0.0.1:27015\0HLDS\0crossfire\0valve\0Half-Life\0\x02\x10\x2fDL\x00\x01http://x\0\0\0".to_vec();
        want.extend_from_slice(&1i32.to_le_bytes());
        want.extend_from_slice(&184_000_000i32.to_le_bytes());
        want.extend_from_slice(&[0, 1, 1, 0]);
        assert_eq!(out, want);
        assert_eq!(GoldSrcInfo::decode(&out).unwrap(), hl);
        let plain = GoldSrcInfo {
            mod_info: None,
            ..hl
        };
        out.clear();
        plain.encode(&mut out).unwrap();
        assert_eq!(GoldSrcInfo::decode(&out).unwrap(), plain);
        *out.iter_mut().rev().nth(2).unwrap() = 7; // the mod byte
        assert!(GoldSrcInfo::decode(&out).is_err());
    }

    fn text() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 0..40)
    }

    proptest! {
        #[test]
        fn source_round_trip(name in text(), map in text(), app_id in any::<u16>(), players in any::<u8>(),
                             port in proptest::option::of(any::<u16>()), kw in proptest::option::of(text()),
                             tv in proptest::option::of((any::<u16>(), text())), gid in proptest::option::of(any::<u64>()),
                             sid in proptest::option::of(any::<u64>()), has_edf in any::<bool>()) {
            let kw_ref = kw.as_deref();
            let tv_ref = tv.as_ref().map(|(p, n)| (*p, n.as_slice()));
            let info = SourceInfo {
                name: &name, map: &map, app_id, players,
                ship: (app_id == THE_SHIP_APPID).then_some(ShipFields::default()),
                extra: has_edf.then_some(ExtraData { port, steam_id: sid, source_tv: tv_ref, keywords: kw_ref, game_id: gid }),
                ..tf2()
            };
            let mut out = Vec::new();
            info.encode(&mut out).unwrap();
            prop_assert_eq!(SourceInfo::decode(&out).unwrap(), info);
        }
    }
}
