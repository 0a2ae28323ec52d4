//! Helpers shared by the service's tests: handshakes, bursts, a list synchronised as the engine
//! does.
#![allow(dead_code)]

// What the service's tests name, in one place.
pub(crate) use crate::master::counters::DropReason;
pub(crate) use crate::master::policy::GamePolicy;
pub(crate) use crate::master::policy::bans::NetSet;
pub(crate) use crate::master::policy::games::Games;
pub(crate) use crate::master::service::*;
pub(crate) use crate::master::time::Time;
pub(crate) use crate::master::transmit::Transmit;
pub(crate) use crate::wire::dp_server::{GetInfo, Heartbeat as DpHeartbeat, InfoResponse};
pub(crate) use crate::wire::valve_heartbeat::ChallengeReply;
pub(crate) use std::net::SocketAddr;

/// The one datagram among `t`.
pub(crate) fn only(t: Vec<Transmit>) -> Vec<u8> {
    let mut d: Vec<Vec<u8>> = t.iter().flat_map(Transmit::datagrams).collect();
    assert_eq!(d.len(), 1, "{t:?}");
    d.remove(0)
}

pub(crate) fn master(games: GamePolicy) -> Master {
    let mut c = Config::with_secret([7; 16]);
    c.limits.allow_private = true;
    c.games = games;
    Master::new(Time::ZERO, c, 0, 1)
}

/// Runs the DP handshake with `tag` and an infoResponse of `pairs` (challenge added).
pub(crate) fn dp_register(
    m: &mut Master,
    from: SocketAddr,
    tag: &[u8],
    pairs: &[(&[u8], &[u8])],
) -> Option<DropReason> {
    let now = Time::from_secs(10);
    let mut hb = Vec::new();
    DpHeartbeat { tag, newline: true }.encode(&mut hb).unwrap();
    if let Err(why) = m.handle(now, from, 0, &hb) {
        return Some(why);
    }
    let getinfo = only(m.transmits(now));
    let challenge = GetInfo::decode(&getinfo).unwrap().challenge.to_vec();
    // A repeat heartbeat in the same window gets the same challenge.
    m.handle(now, from, 0, &hb).unwrap();
    assert_eq!(only(m.transmits(now)), getinfo);
    let mut all: Vec<(&[u8], &[u8])> = pairs.to_vec();
    all.push((b"challenge", &challenge));
    let mut ir = Vec::new();
    InfoResponse::encode(&mut ir, all).unwrap();
    m.handle(now.plus_millis(30), from, 0, &ir).err()
}

pub(crate) const REQUIRED: [(&[u8], &[u8]); 3] = [
    (b"protocol", b"68"),
    (b"sv_maxclients", b"8"),
    (b"clients", b"1"),
];

/// Publishes the shard and installs the list built from it (as the engine's builder does).
pub(crate) fn sync(m: &mut Master) {
    let mut b = crate::master::list::builder::ListBuilder::new(1, 1400);
    if let Some(snap) = m.publish() {
        b.apply(0, snap);
    }
    if let Some(list) = b.build() {
        m.install_list(list);
    }
}

/// A Xash3D FWGS server's handshake: `q\xff<nonce>` → `s` challenge → the engine's info
/// string (xash3d-fwgs `sv_main.c`, SV_AddToMaster: protocol 49, no appid, `\nat\`).
pub(crate) fn xash_register(m: &mut Master, from: SocketAddr, nat: bool) -> Result<(), DropReason> {
    let now = Time::from_secs(10);
    m.handle(now, from, 0, b"q\xff\x01\x00\x00\x00")?;
    let reply = ChallengeReply::decode(&only(m.transmits(now))).unwrap();
    let hb = format!(
        "0\n\\protocol\\49\\challenge\\{}\\players\\1\\max\\16\\bots\\0\\gamedir\\valve\\map\\crossfire\\type\\d\\password\\1\\os\\w\\secure\\0\\lan\\0\\version\\0.21\\region\\255\\product\\valve\\nat\\{}",
        reply.challenge,
        u8::from(nat)
    );
    m.handle(now, from, 0, hb.as_bytes())
}

pub(crate) fn burst(
    m: &mut Master,
    from: SocketAddr,
    filter: &[u8],
    keyed: bool,
) -> Vec<SocketAddr> {
    let now = Time::from_secs(11);
    let mut q = b"1\xff0.0.0.0:0\0".to_vec();
    q.extend_from_slice(filter);
    q.push(0);
    m.handle(now, from, 0, &q).unwrap();
    let mut servers = Vec::new();
    for d in m.transmits(now).iter().flat_map(Transmit::datagrams) {
        let b = crate::wire::xash::BurstDatagram::decode(&d, from.is_ipv6(), keyed).unwrap();
        if keyed {
            assert_eq!(b.key, Some(0x9be5_942b), "the key echoed in every datagram");
        }
        servers.extend(b.servers);
    }
    servers
}

pub(crate) fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
