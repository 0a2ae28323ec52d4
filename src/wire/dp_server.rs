//! Quake III / DarkPlaces game-server registration, as dpmaster 2.2 speaks it.
//!
//! Every packet starts with the OOB prefix (shared/docs/protocols.md §3):
//! - game server → master: `heartbeat <tag>\n`
//! - master → game server: `getinfo <challenge>`
//! - game server → master: `infoResponse\n\key\value…`

use super::cursor::{OOB, Reader};
use super::error::{Error, ErrorKind, Result};
use super::infostring::{self, InfoString};

pub const HEARTBEAT: &[u8] = b"heartbeat ";
pub const GETINFO: &[u8] = b"getinfo ";
pub const INFO_RESPONSE: &[u8] = b"infoResponse\n";

/// Longest heartbeat tag accepted (real tags are ~16 bytes).
pub const MAX_TAG_LEN: usize = 64;
/// Longest challenge a `getinfo` may carry when another master sent it (dpmaster's are 8–11).
pub const MAX_GETINFO_CHALLENGE_LEN: usize = 64;
/// Shortest and longest challenge muster issues, as dpmaster 2.2.
pub const CHALLENGE_MIN_LEN: usize = 8;
pub const CHALLENGE_MAX_LEN: usize = 11;

/// dpmaster's challenge alphabet: 33–126 except `\ ; " % /`, which would break the infostring,
/// the console's command parser or format strings on the game server.
pub const fn is_challenge_byte(b: u8) -> bool {
    matches!(b, 33..=126) && !matches!(b, b'\\' | b';' | b'"' | b'%' | b'/')
}

/// `heartbeat <tag>` with an optional final `\n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat<'a> {
    pub tag: &'a [u8],
    pub newline: bool,
}

impl<'a> Heartbeat<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        r.expect(&OOB, "heartbeat.oob")?;
        r.expect(HEARTBEAT, "heartbeat.header")?;
        let at = r.offset();
        let rest = r.take_rest();
        let (tag, newline) = match rest.strip_suffix(b"\n") {
            Some(t) => (t, true),
            None => (rest, false),
        };
        check_token(tag, MAX_TAG_LEN, "heartbeat.tag", at)?;
        Ok(Self { tag, newline })
    }

    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        check_token(self.tag, MAX_TAG_LEN, "heartbeat.tag", 0)?;
        out.extend_from_slice(&OOB);
        out.extend_from_slice(HEARTBEAT);
        out.extend_from_slice(self.tag);
        if self.newline {
            out.push(b'\n');
        }
        Ok(())
    }
}

/// `getinfo <challenge>`, master → game server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetInfo<'a> {
    pub challenge: &'a [u8],
}

impl<'a> GetInfo<'a> {
    /// Accepts any printable challenge without spaces (other masters may differ from dpmaster), and
    /// tolerates one final `\n`.
    pub fn decode(buf: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        r.expect(&OOB, "getinfo.oob")?;
        r.expect(GETINFO, "getinfo.header")?;
        let at = r.offset();
        let rest = r.take_rest();
        let challenge = rest.strip_suffix(b"\n").unwrap_or(rest);
        check_token(
            challenge,
            MAX_GETINFO_CHALLENGE_LEN,
            "getinfo.challenge",
            at,
        )?;
        Ok(Self { challenge })
    }

    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        check_token(
            self.challenge,
            MAX_GETINFO_CHALLENGE_LEN,
            "getinfo.challenge",
            0,
        )?;
        out.extend_from_slice(&OOB);
        out.extend_from_slice(GETINFO);
        out.extend_from_slice(self.challenge);
        Ok(())
    }
}

/// A printable token: non-empty, bounded, bytes 33–126 only.
fn check_token(t: &[u8], max: usize, field: &'static str, at: usize) -> Result<()> {
    if t.is_empty() {
        return Err(Error::new(ErrorKind::Missing, field, at));
    }
    if t.len() > max {
        return Err(Error::new(ErrorKind::TooLong, field, at));
    }
    match t.iter().position(|b| !matches!(b, 33..=126)) {
        Some(i) => Err(Error::new(ErrorKind::BadByte, field, at.saturating_add(i))),
        None => Ok(()),
    }
}

/// `infoResponse\n` and an infostring, game server → master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoResponse<'a> {
    pub info: InfoString<'a>,
    /// Some engines end the infostring with `\n`; kept so re-encoding is exact.
    pub trailing_newline: bool,
}

impl<'a> InfoResponse<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        r.expect(&OOB, "infoResponse.oob")?;
        r.expect(INFO_RESPONSE, "infoResponse.header")?;
        let at = r.offset();
        let rest = r.take_rest();
        let (body, trailing_newline) = match rest.strip_suffix(b"\n") {
            Some(b) => (b, true),
            None => (rest, false),
        };
        let info = InfoString::parse(body).map_err(|e| Error {
            offset: at.saturating_add(e.offset),
            field: "infoResponse.info",
            ..e
        })?;
        Ok(Self {
            info,
            trailing_newline,
        })
    }

    /// Appends `infoResponse\n` and the pairs (no trailing newline, as ioquake3 and DarkPlaces).
    pub fn encode<'p>(
        out: &mut Vec<u8>,
        pairs: impl IntoIterator<Item = (&'p [u8], &'p [u8])>,
    ) -> Result<()> {
        super::cursor::all_or_nothing(out, |out| {
            out.extend_from_slice(&OOB);
            out.extend_from_slice(INFO_RESPONSE);
            for (k, v) in pairs {
                infostring::put_pair(out, k, v)?;
            }
            Ok(())
        })
    }

    pub fn challenge(&self) -> Option<&'a [u8]> {
        self.info.get(b"challenge")
    }

    /// An integer key (`protocol`, `sv_maxclients`, `clients`, `bots`…), if present and numeric.
    pub fn number(&self, key: &[u8]) -> Option<u32> {
        let v = self.info.get(key)?;
        super::cursor::parse_decimal(v, u64::from(u32::MAX), "infoResponse")
            .ok()
            .map(|n| n as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Captured from openarena-server talking to dpmaster (shared/docs/protocols.md §3).
    const OA_HEARTBEAT: &[u8] = b"\xff\xff\xff\xffheartbeat QuakeArena-1\n";
    const OA_GETINFO: &[u8] = b"\xff\xff\xff\xffgetinfo |vVK}!Z@zn";
    const OA_INFO: &[u8] = b"\xff\xff\xff\xffinfoResponse\n\\voip\\opus\\g_needpass\\0\\pure\\1\\gametype\\0\\sv_maxclients\\8\\g_humanplayers\\0\\clients\\0\\mapname\\oa_dm1\\hostname\\OA-test-1\\protocol\\71\\gamename\\Quake3Arena\\challenge\\|vVK}!Z@zn";
    // From nexuiz-server (DarkPlaces), §3; the elided hostname and challenge filled in.
    const NEXUIZ_INFO: &[u8] = b"\xff\xff\xff\xffinfoResponse\n\\gamename\\Nexuiz\\modname\\data\\gameversion\\20000\\sv_maxclients\\8\\clients\\0\\bots\\0\\mapname\\basement\\hostname\\Nexuiz Server\\protocol\\3\\qcstatus\\dm:2.5.2::score!!\\challenge\\Ab3$x*Q~z";

    #[test]
    fn openarena_handshake_round_trips() {
        let hb = Heartbeat::decode(OA_HEARTBEAT).unwrap();
        assert_eq!(
            hb,
            Heartbeat {
                tag: b"QuakeArena-1",
                newline: true
            }
        );
        let mut out = Vec::new();
        hb.encode(&mut out).unwrap();
        assert_eq!(out, OA_HEARTBEAT);

        let gi = GetInfo::decode(OA_GETINFO).unwrap();
        assert_eq!(gi.challenge, b"|vVK}!Z@zn");
        assert!(gi.challenge.iter().all(|&b| is_challenge_byte(b)));
        out.clear();
        gi.encode(&mut out).unwrap();
        assert_eq!(out, OA_GETINFO);

        let ir = InfoResponse::decode(OA_INFO).unwrap();
        assert_eq!(ir.challenge(), Some(gi.challenge));
        assert_eq!(ir.number(b"protocol"), Some(71));
        assert_eq!(ir.number(b"sv_maxclients"), Some(8));
        assert_eq!(ir.number(b"clients"), Some(0));
        assert_eq!(ir.info.get(b"gamename"), Some(&b"Quake3Arena"[..]));
        out.clear();
        InfoResponse::encode(&mut out, ir.info).unwrap();
        assert_eq!(out, OA_INFO);
    }

    #[test]
    fn nexuiz_info_response() {
        let ir = InfoResponse::decode(NEXUIZ_INFO).unwrap();
        assert_eq!(ir.info.get(b"gamename"), Some(&b"Nexuiz"[..]));
        assert_eq!(ir.number(b"protocol"), Some(3));
        assert_eq!(ir.info.get(b"qcstatus"), Some(&b"dm:2.5.2::score!!"[..]));
        let mut out = Vec::new();
        InfoResponse::encode(&mut out, ir.info).unwrap();
        assert_eq!(out, NEXUIZ_INFO);
    }

    #[test]
    fn darkplaces_heartbeat_without_newline() {
        let hb = Heartbeat::decode(b"\xff\xff\xff\xffheartbeat DarkPlaces").unwrap();
        assert_eq!(
            hb,
            Heartbeat {
                tag: b"DarkPlaces",
                newline: false
            }
        );
    }

    #[test]
    fn malformed_packets_are_rejected() {
        for bad in [
            &b"heartbeat DarkPlaces\n"[..],              // no OOB
            b"\xff\xff\xff\xffheartbeat \n",             // empty tag
            b"\xff\xff\xff\xffheartbeat Dark Places\n",  // space in tag
            b"\xff\xff\xff\xffheartbeat DarkPlaces\n\n", // trailing garbage
            b"\xff\xff\xff\xffheartbeatDarkPlaces\n",
        ] {
            assert!(Heartbeat::decode(bad).is_err(), "{bad:?}");
        }
        assert!(GetInfo::decode(b"\xff\xff\xff\xffgetinfo ").is_err());
        assert!(GetInfo::decode(b"\xff\xff\xff\xffgetinfo a b").is_err());
        assert!(InfoResponse::decode(b"\xff\xff\xff\xffinfoResponse").is_err());
        assert!(InfoResponse::decode(b"\xff\xff\xff\xffinfoResponse\nclients\\0").is_err());
        let ir = InfoResponse::decode(b"\xff\xff\xff\xffinfoResponse\n\\clients\\x").unwrap();
        assert_eq!(ir.number(b"clients"), None);
    }

    #[test]
    fn challenge_alphabet() {
        let allowed: Vec<u8> = (0..=255u8).filter(|&b| is_challenge_byte(b)).collect();
        assert_eq!(allowed.len(), 94 - 5);
        for b in [b'\\', b';', b'"', b'%', b'/', b' ', 127, 0] {
            assert!(!is_challenge_byte(b));
        }
    }

    proptest! {
        #[test]
        fn round_trips(tag in "[!-~]{1,64}", ch in "[!-~]{1,64}", clients in 0u32..1000, nl in any::<bool>()) {
            let hb = Heartbeat { tag: tag.as_bytes(), newline: nl };
            let mut out = Vec::new();
            hb.encode(&mut out).unwrap();
            prop_assert_eq!(Heartbeat::decode(&out).unwrap(), hb);
            let gi = GetInfo { challenge: ch.as_bytes() };
            out.clear();
            gi.encode(&mut out).unwrap();
            prop_assert_eq!(GetInfo::decode(&out).unwrap(), gi);
            out.clear();
            let c = clients.to_string();
            let chv = ch.replace('\\', "_");
            InfoResponse::encode(&mut out, [(&b"clients"[..], c.as_bytes()), (b"challenge", chv.as_bytes())]).unwrap();
            let ir = InfoResponse::decode(&out).unwrap();
            prop_assert_eq!(ir.number(b"clients"), Some(clients));
            prop_assert_eq!(ir.challenge(), Some(chv.as_bytes()));
        }
    }
}
