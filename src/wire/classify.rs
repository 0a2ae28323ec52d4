//! Tells, from a datagram's first bytes, which protocol and message it is, so one socket can carry
//! every protocol. Classification is cheap (a few prefix compares) and never fails: what it cannot
//! name is [`Kind::Unknown`]. Decoding the message proper is the protocol module's job.

use super::cursor::OOB;
use super::{a2s, dp_list, dp_server, valve_heartbeat as vh, valve_list};

/// The protocol family a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Valve master list query and page.
    ValveList,
    /// GoldSrc / Source / Xash3D registration.
    ValveHeartbeat,
    /// Quake III / DarkPlaces, dpmaster style.
    DarkPlaces,
    /// A2S_INFO probe and replies.
    A2s,
    Unknown,
}

/// Every message muster or its load generator sends or receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    ValveListQuery,
    ValveListPage,
    ValveChallengeRequest,
    ValveHeartbeat,
    ValveShutdown,
    ValveChallengeReply,
    DpHeartbeat,
    DpGetInfo,
    DpInfoResponse,
    DpGetServers,
    DpGetServersExt,
    DpGetServersResponse,
    DpGetServersExtResponse,
    A2sInfoRequest,
    A2sChallenge,
    A2sSourceInfo,
    A2sGoldSrcInfo,
    Unknown,
}

impl Kind {
    pub const fn family(self) -> Family {
        match self {
            Self::ValveListQuery | Self::ValveListPage => Family::ValveList,
            Self::ValveChallengeRequest
            | Self::ValveHeartbeat
            | Self::ValveShutdown
            | Self::ValveChallengeReply => Family::ValveHeartbeat,
            Self::DpHeartbeat
            | Self::DpGetInfo
            | Self::DpInfoResponse
            | Self::DpGetServers
            | Self::DpGetServersExt
            | Self::DpGetServersResponse
            | Self::DpGetServersExtResponse => Family::DarkPlaces,
            Self::A2sInfoRequest
            | Self::A2sChallenge
            | Self::A2sSourceInfo
            | Self::A2sGoldSrcInfo => Family::A2s,
            Self::Unknown => Family::Unknown,
        }
    }
}

/// Names the message `buf` holds, from its first bytes only.
pub fn classify(buf: &[u8]) -> Kind {
    match buf.strip_prefix(&OOB) {
        Some(body) => classify_oob(body),
        None => match buf.first() {
            Some(&valve_list::QUERY_OPCODE) => Kind::ValveListQuery,
            Some(&vh::OP_CHALLENGE_REQUEST) => Kind::ValveChallengeRequest,
            Some(&vh::OP_HEARTBEAT) => Kind::ValveHeartbeat,
            Some(&vh::OP_SHUTDOWN) => Kind::ValveShutdown,
            _ => Kind::Unknown,
        },
    }
}

fn classify_oob(body: &[u8]) -> Kind {
    // Longest text prefixes first: `getserversExtResponse` also starts with `getserversExt`.
    const TEXT: [(&[u8], Kind); 7] = [
        (dp_list::RESPONSE_EXT, Kind::DpGetServersExtResponse),
        (dp_list::RESPONSE, Kind::DpGetServersResponse),
        (b"getserversExt ", Kind::DpGetServersExt),
        (b"getservers ", Kind::DpGetServers),
        (dp_server::HEARTBEAT, Kind::DpHeartbeat),
        (dp_server::GETINFO, Kind::DpGetInfo),
        (dp_server::INFO_RESPONSE, Kind::DpInfoResponse),
    ];
    if let Some((_, k)) = TEXT.iter().find(|(p, _)| body.starts_with(p)) {
        return *k;
    }
    match body {
        [vh::OP_CHALLENGE_REQUEST, ..] => Kind::ValveChallengeRequest,
        [vh::OP_HEARTBEAT, b'\n', ..] => Kind::ValveHeartbeat,
        [vh::OP_SHUTDOWN, ..] => Kind::ValveShutdown,
        [0x73, 0x0A, ..] => Kind::ValveChallengeReply,
        [0x66, 0x0A, ..] => Kind::ValveListPage,
        [b'T', ..] if body.starts_with(a2s::INFO_REQUEST_BODY) => Kind::A2sInfoRequest,
        [a2s::OP_CHALLENGE, ..] => Kind::A2sChallenge,
        [a2s::OP_SOURCE_INFO, ..] => Kind::A2sSourceInfo,
        [a2s::OP_GOLDSRC_INFO, ..] => Kind::A2sGoldSrcInfo,
        _ => Kind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_captured_message() {
        let cases: &[(&[u8], Kind)] = &[
            (b"1\xff0.0.0.0:0\0\0", Kind::ValveListQuery),
            (b"\xff\xff\xff\xff\x66\x0a", Kind::ValveListPage),
            (b"q", Kind::ValveChallengeRequest),
            (b"q\xff\x01\x02\x03\x04", Kind::ValveChallengeRequest),
            (b"\xff\xff\xff\xffq", Kind::ValveChallengeRequest),
            (b"0\n\\protocol\\7\n", Kind::ValveHeartbeat),
            (b"\xff\xff\xff\xff0\n\\protocol\\7\n", Kind::ValveHeartbeat),
            (b"b\n", Kind::ValveShutdown),
            (b"\xff\xff\xff\xffb", Kind::ValveShutdown),
            (
                b"\xff\xff\xff\xff\x73\x0a\x01\x02\x03\x04",
                Kind::ValveChallengeReply,
            ),
            (
                b"\xff\xff\xff\xffheartbeat QuakeArena-1\n",
                Kind::DpHeartbeat,
            ),
            (b"\xff\xff\xff\xffgetinfo |vVK}!Z@zn", Kind::DpGetInfo),
            (
                b"\xff\xff\xff\xffinfoResponse\n\\a\\b",
                Kind::DpInfoResponse,
            ),
            (
                b"\xff\xff\xff\xffgetservers 71 empty full\n",
                Kind::DpGetServers,
            ),
            (
                b"\xff\xff\xff\xffgetserversExt Xonotic 3 ipv6",
                Kind::DpGetServersExt,
            ),
            (
                b"\xff\xff\xff\xffgetserversResponse\\EOT\0\0\0",
                Kind::DpGetServersResponse,
            ),
            (
                b"\xff\xff\xff\xffgetserversExtResponse\\EOT\0\0\0",
                Kind::DpGetServersExtResponse,
            ),
            (
                b"\xff\xff\xff\xffTSource Engine Query\0",
                Kind::A2sInfoRequest,
            ),
            (b"\xff\xff\xff\xff\x41\x01\x02\x03\x04", Kind::A2sChallenge),
            (b"\xff\xff\xff\xff\x49\x11", Kind::A2sSourceInfo),
            (b"\xff\xff\xff\xff\x6d", Kind::A2sGoldSrcInfo),
            (b"", Kind::Unknown),
            (b"\xff\xff\xff", Kind::Unknown),
            (b"\xff\xff\xff\xff", Kind::Unknown),
            (b"\xff\xff\xff\xffTSource", Kind::Unknown),
            (b"\xff\xff\xff\xffgetservers", Kind::Unknown),
            (b"GET / HTTP/1.1", Kind::Unknown),
        ];
        for (raw, want) in cases {
            assert_eq!(classify(raw), *want, "{raw:?}");
        }
        assert_eq!(Kind::DpGetInfo.family(), Family::DarkPlaces);
        assert_eq!(Kind::ValveShutdown.family(), Family::ValveHeartbeat);
    }
}
