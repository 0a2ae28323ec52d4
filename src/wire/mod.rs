//! (lint scope) Outside tests, `wire/` may not unwrap, expect, panic or index unchecked: every path
//! here is reachable from network input.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

//! Byte-exact, sans-IO codecs for every protocol a master speaks.
//!
//! No sockets, clocks, executors or allocation on the decode path: decoders are checked views over a
//! borrowed `&[u8]`, read through [`cursor::Reader`], and fail with a small `Copy` [`Error`]. Encoders
//! append to a caller's `Vec<u8>` (reused by the caller, so steady state does not allocate).
//!
//! | module | protocol |
//! |---|---|
//! | [`valve_list`] | Valve master list query `0x31` and its `FF FF FF FF 66 0A` pages |
//! | [`valve_heartbeat`] | GoldSrc / Source / Xash3D `q`, challenge reply, `0\n` heartbeat, `b` |
//! | [`dp_server`] | Quake III / DarkPlaces `heartbeat`, `getinfo`, `infoResponse` |
//! | [`dp_list`] | `getservers` / `getserversExt` and their responses |
//! | [`a2s`] | A2S_INFO request, `S2C_CHALLENGE`, Source and GoldSrc replies |
//! | [`infostring`] | `\key\value` infostrings |
//! | [`filter`] | the Valve filter language as a typed tree |
//! | [`xash`] | Xash3D FWGS list queries (`\key\`, `\clver\`, `\nat\`) and their bursts |
//! | [`peer`] | muster's peering datagram between masters: forwarded registrations, sync, MAC, replay window |
//! | [`classify`](mod@classify) | which protocol and message a datagram is |

pub mod a2s;
pub mod classify;
pub mod cursor;
pub mod dp_list;
pub mod dp_server;
pub mod error;
pub mod filter;
pub mod infostring;
pub mod peer;
pub mod valve_heartbeat;
pub mod valve_list;
pub mod xash;

pub use classify::{Family, Kind, classify};
pub use error::{Error, ErrorKind, Result};

/// Any message, decoded after [`classify()`] named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    ValveListQuery(valve_list::ListQuery<'a>),
    ValveListPage(valve_list::ListPage<'a>),
    ValveServer(valve_heartbeat::ServerMessage<'a>),
    ValveChallengeReply(valve_heartbeat::ChallengeReply),
    DpHeartbeat(dp_server::Heartbeat<'a>),
    DpGetInfo(dp_server::GetInfo<'a>),
    DpInfoResponse(dp_server::InfoResponse<'a>),
    DpListQuery(dp_list::ListQuery<'a>),
    DpListResponse(dp_list::ListResponse<'a>),
    A2sInfoRequest(a2s::InfoRequest),
    A2sChallenge(a2s::Challenge),
    A2sSourceInfo(a2s::SourceInfo<'a>),
    A2sGoldSrcInfo(a2s::GoldSrcInfo<'a>),
}

impl<'a> Message<'a> {
    /// Classifies and decodes `buf`. Unknown datagrams fail with `BadHeader`.
    pub fn decode(buf: &'a [u8]) -> Result<Self> {
        Ok(match classify(buf) {
            Kind::ValveListQuery => Self::ValveListQuery(valve_list::ListQuery::decode(buf)?),
            Kind::ValveListPage => Self::ValveListPage(valve_list::ListPage::decode(buf)?),
            Kind::ValveChallengeRequest | Kind::ValveHeartbeat | Kind::ValveShutdown => {
                Self::ValveServer(valve_heartbeat::ServerMessage::decode(buf)?)
            }
            Kind::ValveChallengeReply => {
                Self::ValveChallengeReply(valve_heartbeat::ChallengeReply::decode(buf)?)
            }
            Kind::DpHeartbeat => Self::DpHeartbeat(dp_server::Heartbeat::decode(buf)?),
            Kind::DpGetInfo => Self::DpGetInfo(dp_server::GetInfo::decode(buf)?),
            Kind::DpInfoResponse => Self::DpInfoResponse(dp_server::InfoResponse::decode(buf)?),
            Kind::DpGetServers | Kind::DpGetServersExt => {
                Self::DpListQuery(dp_list::ListQuery::decode(buf)?)
            }
            Kind::DpGetServersResponse | Kind::DpGetServersExtResponse => {
                Self::DpListResponse(dp_list::ListResponse::decode(buf)?)
            }
            Kind::A2sInfoRequest => Self::A2sInfoRequest(a2s::InfoRequest::decode(buf)?),
            Kind::A2sChallenge => Self::A2sChallenge(a2s::Challenge::decode(buf)?),
            Kind::A2sSourceInfo => Self::A2sSourceInfo(a2s::SourceInfo::decode(buf)?),
            Kind::A2sGoldSrcInfo => Self::A2sGoldSrcInfo(a2s::GoldSrcInfo::decode(buf)?),
            Kind::Unknown => return Err(Error::new(ErrorKind::BadHeader, "datagram", 0)),
        })
    }
}

/// Cases for the "arbitrary bytes never panic a decoder" properties (CI runs at least 10,000).
#[cfg(test)]
pub(crate) const NO_PANIC_CASES: u32 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Real message starts, so random tails reach deep into every decoder, not just its header check.
    const PREFIXES: &[&[u8]] = &[
        b"",
        b"1\xff",
        b"1\x030.0.0.0:0\0\\",
        b"q",
        b"q\xff",
        b"0\n\\",
        b"b",
        b"\xff\xff\xff\xff",
        b"\xff\xff\xff\xff\x66\x0a",
        b"\xff\xff\xff\xff\x73\x0a",
        b"\xff\xff\xff\xffheartbeat ",
        b"\xff\xff\xff\xffgetinfo ",
        b"\xff\xff\xff\xffinfoResponse\n\\",
        b"\xff\xff\xff\xffgetservers ",
        b"\xff\xff\xff\xffgetserversExt ",
        b"\xff\xff\xff\xffgetserversResponse\\",
        b"\xff\xff\xff\xffgetserversExtResponse/",
        b"\xff\xff\xff\xffTSource Engine Query\0",
        b"\xff\xff\xff\xff\x41",
        b"\xff\xff\xff\xff\x49\x11",
        b"\xff\xff\xff\xff\x6d",
    ];

    fn datagram() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::sample::select(PREFIXES),
            proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(0u8), Just(b'\\'), Just(b' '), Just(b'\n')],
                0..1500,
            ),
        )
            .prop_map(|(p, tail)| [p, &tail[..]].concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(NO_PANIC_CASES))]

        /// Every decoder, fed a real header and arbitrary bytes, returns instead of panicking, and
        /// what decodes re-encodes to the same bytes wherever the codec promises exactness.
        #[test]
        fn no_decoder_panics(buf in datagram()) {
            let kind = classify(&buf);
            match Message::decode(&buf) {
                Err(_) => {}
                Ok(msg) => {
                    prop_assert_ne!(kind, Kind::Unknown);
                    let mut out = Vec::new();
                    match msg {
                        Message::ValveServer(m) => { m.encode(&mut out).unwrap(); prop_assert_eq!(&out, &buf); }
                        Message::ValveChallengeReply(m) => { m.encode(&mut out); prop_assert_eq!(&out, &buf); }
                        Message::DpHeartbeat(m) => { m.encode(&mut out).unwrap(); prop_assert_eq!(&out, &buf); }
                        Message::A2sInfoRequest(m) => { m.encode(&mut out); prop_assert_eq!(&out, &buf); }
                        Message::A2sChallenge(m) => { m.encode(&mut out); prop_assert_eq!(&out, &buf); }
                        Message::A2sSourceInfo(m) => { m.encode(&mut out).unwrap(); prop_assert_eq!(&out, &buf); }
                        Message::A2sGoldSrcInfo(m) => { m.encode(&mut out).unwrap(); prop_assert_eq!(&out, &buf); }
                        Message::ValveListQuery(q) => {
                            if let Ok(f) = filter::Filter::parse(q.filter) {
                                let _ = f.eval(|_| Some(false));
                            }
                        }
                        Message::DpListResponse(r) => { let _ = r.servers().count(); }
                        _ => {}
                    }
                }
            }
        }
    }
}
