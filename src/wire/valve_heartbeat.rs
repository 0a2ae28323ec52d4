//! GoldSrc / Source / Xash3D game-server registration (game server ↔ master).
//!
//! Game server → master (opcode at offset 0, or at offset 4 after an OOB prefix):
//! - `q` challenge request; Xash3D sends `71 FF <u32 nonce>`.
//! - `0\n\key\value…\n` heartbeat whose `challenge` value echoes the master's challenge in decimal.
//! - `b` or `b\n` shutdown.
//!
//! Master → game server: `FF FF FF FF 73 0A <u32 challenge>` and, for Xash3D, the server's nonce after it.
//! Integers are little-endian (shared/docs/protocols.md §2).

use super::cursor::{OOB, Reader};
use super::error::{Error, ErrorKind, Result};
use super::infostring::{self, InfoString};

/// Opcode of the challenge request.
pub const OP_CHALLENGE_REQUEST: u8 = b'q';
/// Opcode of the heartbeat.
pub const OP_HEARTBEAT: u8 = b'0';
/// Opcode of the shutdown notice.
pub const OP_SHUTDOWN: u8 = b'b';
/// Header of the master's challenge reply.
pub const CHALLENGE_REPLY_HEADER: [u8; 6] = [0xFF, 0xFF, 0xFF, 0xFF, 0x73, 0x0A];
/// Byte between `q` and the Xash3D nonce.
pub const XASH_NONCE_MARK: u8 = 0xFF;

/// A message from a game server to the master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMessage<'a> {
    /// `q`; `nonce` is Xash3D's, to be echoed in the reply.
    ChallengeRequest {
        oob: bool,
        nonce: Option<u32>,
    },
    Heartbeat(Heartbeat<'a>),
    /// `b` (`newline` records whether `b\n` was sent). It carries no proof of origin.
    Shutdown {
        oob: bool,
        newline: bool,
    },
}

/// A `0\n` heartbeat: an infostring view plus the framing needed to re-encode it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat<'a> {
    pub info: InfoString<'a>,
    pub oob: bool,
    /// How the infostring ends: GoldSrc/Source send `\n`, Xash3D nothing, one Source fork a NUL.
    pub end: HeartbeatEnd,
}

/// The byte (if any) after a heartbeat's infostring. HLMaster's reader stops at `\n` or NUL alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeartbeatEnd {
    None,
    Newline,
    Nul,
}

impl HeartbeatEnd {
    fn bytes(self) -> &'static [u8] {
        match self {
            Self::None => b"",
            Self::Newline => b"\n",
            Self::Nul => b"\0",
        }
    }
}

impl<'a> Heartbeat<'a> {
    /// The `challenge` value, read as Source's signed or Xash3D's unsigned decimal.
    pub fn challenge(&self) -> Option<u32> {
        self.info.get(b"challenge").and_then(parse_challenge)
    }

    /// Appends the heartbeat: optional OOB, `0\n`, the pairs, then `end`.
    pub fn encode<'p>(
        out: &mut Vec<u8>,
        oob: bool,
        pairs: impl IntoIterator<Item = (&'p [u8], &'p [u8])>,
        end: HeartbeatEnd,
    ) -> Result<()> {
        super::cursor::all_or_nothing(out, |out| {
            if oob {
                out.extend_from_slice(&OOB);
            }
            out.extend_from_slice(b"0\n");
            for (k, v) in pairs {
                infostring::put_pair(out, k, v)?;
            }
            out.extend_from_slice(end.bytes());
            Ok(())
        })
    }
}

/// Reads a challenge echoed as decimal text: signed 32-bit (`%d`, Source) or unsigned (`%u`, Xash3D).
pub fn parse_challenge(text: &[u8]) -> Option<u32> {
    let (neg, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let v = super::cursor::parse_decimal(digits, u64::from(u32::MAX), "challenge").ok()?;
    if neg {
        // -2147483648 ..= -1 as the same 32 bits; "-0" is 0.
        (v <= 1 << 31).then(|| (v as u32).wrapping_neg())
    } else {
        Some(v as u32)
    }
}

impl<'a> ServerMessage<'a> {
    pub fn decode(buf: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        let oob = r.eat(&OOB);
        let op = r.u8("server.opcode")?;
        match op {
            OP_CHALLENGE_REQUEST => {
                let nonce = if r.is_empty() {
                    None
                } else {
                    if r.u8("q.mark")? != XASH_NONCE_MARK {
                        return Err(Error::new(
                            ErrorKind::BadHeader,
                            "q.mark",
                            r.offset().saturating_sub(1),
                        ));
                    }
                    Some(r.u32_le("q.nonce")?)
                };
                r.finish("q")?;
                Ok(Self::ChallengeRequest { oob, nonce })
            }
            OP_HEARTBEAT => {
                r.expect(b"\n", "heartbeat.newline")?;
                let at = r.offset();
                let body = r.take_rest();
                let (body, end) = if let Some(b) = body.strip_suffix(b"\n") {
                    (b, HeartbeatEnd::Newline)
                } else if let Some(b) = body.strip_suffix(b"\0") {
                    (b, HeartbeatEnd::Nul)
                } else {
                    (body, HeartbeatEnd::None)
                };
                let info = InfoString::parse(body).map_err(|e| Error {
                    offset: at.saturating_add(e.offset),
                    field: "heartbeat.info",
                    ..e
                })?;
                Ok(Self::Heartbeat(Heartbeat { info, oob, end }))
            }
            OP_SHUTDOWN => {
                let newline = r.eat(b"\n");
                r.finish("b")?;
                Ok(Self::Shutdown { oob, newline })
            }
            _ => Err(Error::new(
                ErrorKind::BadHeader,
                "server.opcode",
                r.offset().saturating_sub(1),
            )),
        }
    }

    /// Appends the exact encoding of this message.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        match *self {
            Self::ChallengeRequest { oob, nonce } => {
                if oob {
                    out.extend_from_slice(&OOB);
                }
                out.push(OP_CHALLENGE_REQUEST);
                if let Some(n) = nonce {
                    out.push(XASH_NONCE_MARK);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Ok(())
            }
            Self::Heartbeat(hb) => Heartbeat::encode(out, hb.oob, hb.info, hb.end),
            Self::Shutdown { oob, newline } => {
                if oob {
                    out.extend_from_slice(&OOB);
                }
                out.push(OP_SHUTDOWN);
                if newline {
                    out.push(b'\n');
                }
                Ok(())
            }
        }
    }
}

/// The master's answer to `q`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChallengeReply {
    pub challenge: u32,
    /// Xash3D's nonce, echoed after the challenge when the request carried one.
    pub nonce: Option<u32>,
}

impl ChallengeReply {
    /// Size of the reply with and without the Xash3D nonce.
    pub const LEN: usize = 10;
    pub const LEN_XASH: usize = 14;

    pub fn decode(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        r.expect(&CHALLENGE_REPLY_HEADER, "challenge_reply.header")?;
        let challenge = r.u32_le("challenge_reply.challenge")?;
        let nonce = if r.is_empty() {
            None
        } else {
            Some(r.u32_le("challenge_reply.nonce")?)
        };
        r.finish("challenge_reply")?;
        Ok(Self { challenge, nonce })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&CHALLENGE_REPLY_HEADER);
        out.extend_from_slice(&self.challenge.to_le_bytes());
        if let Some(n) = self.nonce {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The GoldSrc heartbeat of shared/docs/protocols.md §2, with challenge 12345.
    const GOLDSRC: &[u8] = b"0\n\\protocol\\7\\challenge\\12345\\players\\3\\max\\16\\bots\\0\\gamedir\\cstrike\\map\\de_dust\\password\\0\\os\\l\\lan\\0\\region\\255\\type\\d\\secure\\0\\version\\1.1.2.7\\product\\cstrike\n";

    #[test]
    fn goldsrc_heartbeat_round_trips() {
        let ServerMessage::Heartbeat(hb) = ServerMessage::decode(GOLDSRC).unwrap() else {
            panic!("not a heartbeat");
        };
        assert!(!hb.oob && hb.end == HeartbeatEnd::Newline);
        assert_eq!(hb.challenge(), Some(12345));
        assert_eq!(hb.info.get(b"gamedir"), Some(&b"cstrike"[..]));
        assert_eq!(hb.info.get(b"max"), Some(&b"16"[..]));
        assert_eq!(hb.info.len(), 15);
        let mut out = Vec::new();
        ServerMessage::Heartbeat(hb).encode(&mut out).unwrap();
        assert_eq!(out, GOLDSRC);
    }

    #[test]
    fn xash_heartbeat_without_newline_and_nul_terminated_heartbeat() {
        // Xash3D writes no `\n` (xash3d-master notes the engine bug); a Source fork ends with NUL.
        let xash = b"0\n\\protocol\\48\\challenge\\4294967295\\players\\0\\max\\32\\gamedir\\valve\\nat\\0";
        let ServerMessage::Heartbeat(hb) = ServerMessage::decode(xash).unwrap() else {
            panic!()
        };
        assert_eq!(
            (hb.end, hb.challenge()),
            (HeartbeatEnd::None, Some(u32::MAX))
        );
        assert_eq!(hb.info.get(b"nat"), Some(&b"0"[..]));
        let mut nul = xash.to_vec();
        nul.push(0);
        let ServerMessage::Heartbeat(hb) = ServerMessage::decode(&nul).unwrap() else {
            panic!()
        };
        assert_eq!(hb.end, HeartbeatEnd::Nul);
        let mut out = Vec::new();
        ServerMessage::Heartbeat(hb).encode(&mut out).unwrap();
        assert_eq!(out, nul);
        nul.push(b'\n');
        assert!(
            ServerMessage::decode(&nul).is_err(),
            "NUL then newline is garbage"
        );
    }

    #[test]
    fn oob_heartbeat_is_accepted() {
        let mut raw = OOB.to_vec();
        raw.extend_from_slice(GOLDSRC);
        let msg = ServerMessage::decode(&raw).unwrap();
        assert!(matches!(msg, ServerMessage::Heartbeat(h) if h.oob));
        let mut out = Vec::new();
        msg.encode(&mut out).unwrap();
        assert_eq!(out, raw);
    }

    #[test]
    fn challenge_requests() {
        let cases: [(&[u8], ServerMessage<'_>); 4] = [
            (
                b"q",
                ServerMessage::ChallengeRequest {
                    oob: false,
                    nonce: None,
                },
            ),
            (
                b"\xff\xff\xff\xffq",
                ServerMessage::ChallengeRequest {
                    oob: true,
                    nonce: None,
                },
            ),
            // Xash3D: 71 FF <u32 nonce>
            (
                b"q\xff\x78\x56\x34\x12",
                ServerMessage::ChallengeRequest {
                    oob: false,
                    nonce: Some(0x1234_5678),
                },
            ),
            (
                b"\xff\xff\xff\xffq\xff\x01\x00\x00\x00",
                ServerMessage::ChallengeRequest {
                    oob: true,
                    nonce: Some(1),
                },
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(ServerMessage::decode(raw).unwrap(), want);
            let mut out = Vec::new();
            want.encode(&mut out).unwrap();
            assert_eq!(out, raw);
        }
        for bad in [
            &b"q\x00\x01\x02\x03\x04"[..],
            b"q\xff\x01\x02",
            b"q\xff\x01\x02\x03\x04\x05",
            b"qq",
        ] {
            assert!(ServerMessage::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shutdowns() {
        for (raw, oob, newline) in [
            (&b"b"[..], false, false),
            (b"b\n", false, true),
            (b"\xff\xff\xff\xffb\n", true, true),
        ] {
            let msg = ServerMessage::decode(raw).unwrap();
            assert_eq!(msg, ServerMessage::Shutdown { oob, newline });
            let mut out = Vec::new();
            msg.encode(&mut out).unwrap();
            assert_eq!(out, raw);
        }
        assert!(ServerMessage::decode(b"b\nx").is_err());
        assert!(ServerMessage::decode(b"x").is_err());
        assert!(ServerMessage::decode(b"0").is_err());
        assert!(ServerMessage::decode(b"0\nbad").is_err());
    }

    #[test]
    fn challenge_text_signed_and_unsigned() {
        // Bit 31 set: Source prints it negative, Xash3D unsigned; both read as the same u32.
        assert_eq!(parse_challenge(b"-1"), Some(u32::MAX));
        assert_eq!(parse_challenge(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_challenge(b"-2147483648"), Some(0x8000_0000));
        assert_eq!(parse_challenge(b"2147483648"), Some(0x8000_0000));
        assert_eq!(parse_challenge(b"-2147483649"), None);
        assert_eq!(parse_challenge(b"4294967296"), None);
        assert_eq!(parse_challenge(b"12a"), None);
        assert_eq!(parse_challenge(b""), None);
        assert_eq!(parse_challenge(b"-"), None);
        assert_eq!(parse_challenge(b"+5"), None);
    }

    #[test]
    fn challenge_replies() {
        let plain = ChallengeReply {
            challenge: 0x0102_0304,
            nonce: None,
        };
        let mut out = Vec::new();
        plain.encode(&mut out);
        assert_eq!(out, b"\xff\xff\xff\xff\x73\x0a\x04\x03\x02\x01");
        assert_eq!(ChallengeReply::decode(&out).unwrap(), plain);
        let xash = ChallengeReply {
            challenge: 7,
            nonce: Some(0x1234_5678),
        };
        out.clear();
        xash.encode(&mut out);
        assert_eq!(
            out,
            b"\xff\xff\xff\xff\x73\x0a\x07\x00\x00\x00\x78\x56\x34\x12"
        );
        assert_eq!(out.len(), ChallengeReply::LEN_XASH);
        assert_eq!(ChallengeReply::decode(&out).unwrap(), xash);
        assert!(ChallengeReply::decode(&out[..12]).is_err());
        out.push(0);
        assert_eq!(
            ChallengeReply::decode(&out).unwrap_err().kind,
            ErrorKind::TrailingBytes
        );
    }

    proptest! {
        #[test]
        fn heartbeat_round_trip(challenge in any::<u32>(), players in 0u8..64, map in "[a-z_0-9]{1,20}",
                                oob in any::<bool>(), end in prop_oneof![Just(HeartbeatEnd::None), Just(HeartbeatEnd::Newline), Just(HeartbeatEnd::Nul)]) {
            let ch = (challenge as i32).to_string();
            let pl = players.to_string();
            let pairs: [(&[u8], &[u8]); 3] = [(b"challenge", ch.as_bytes()), (b"players", pl.as_bytes()), (b"map", map.as_bytes())];
            let mut out = Vec::new();
            Heartbeat::encode(&mut out, oob, pairs, end).unwrap();
            let ServerMessage::Heartbeat(hb) = ServerMessage::decode(&out).unwrap() else { panic!() };
            prop_assert_eq!(hb.challenge(), Some(challenge));
            prop_assert_eq!(hb.info.get(b"map"), Some(map.as_bytes()));
            let mut again = Vec::new();
            ServerMessage::Heartbeat(hb).encode(&mut again).unwrap();
            prop_assert_eq!(again, out);
        }

        #[test]
        fn challenge_round_trip(challenge in any::<u32>(), nonce in proptest::option::of(any::<u32>()), oob in any::<bool>()) {
            let reply = ChallengeReply { challenge, nonce };
            let mut out = Vec::new();
            reply.encode(&mut out);
            prop_assert_eq!(ChallengeReply::decode(&out).unwrap(), reply);
            let req = ServerMessage::ChallengeRequest { oob, nonce };
            out.clear();
            req.encode(&mut out).unwrap();
            prop_assert_eq!(ServerMessage::decode(&out).unwrap(), req);
        }
    }
}
