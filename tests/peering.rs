//! Redundant masters on loopback (issue 22): registrations forwarded between peers, forged and
//! replayed peering datagrams, a dead origin, a restarted master's full sync.

mod common;

use common::*;
use muster::config::{File, Overrides};
use muster::control::{self, Control, ControlSettings};
use muster::engine::Engine;
use muster::wire::peer::{Builder, Entry, Kind};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

const KEY: [u8; 32] = [0x5a; 32];

struct Peer {
    engine: Engine,
    control: Control,
    /// The configuration it started with (a test reloads a changed copy).
    master: muster::master::Config,
}

impl Peer {
    fn stop(self) {
        self.engine.stop().unwrap();
        self.control.finish().unwrap();
    }

    fn forwarded_gone(&self) -> u64 {
        self.engine
            .status()
            .into_iter()
            .flatten()
            .map(|s| s.counters.forwarded_gone)
            .sum()
    }

    fn forwarded_in(&self) -> u64 {
        self.engine
            .status()
            .into_iter()
            .flatten()
            .map(|s| s.counters.forwarded_in)
            .sum()
    }
}

fn key_file(dir: &Path) -> PathBuf {
    let p = dir.join("peer.key");
    std::fs::write(&p, "5a".repeat(32)).unwrap();
    p
}

/// A free UDP port on 127.0.0.1 (bound and let go: the master binds it next).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A master peering on `port` with the masters on `peers`; servers time out after `timeout` s.
fn peer(port: u16, peers: &[u16], key: &Path, timeout: u64) -> Peer {
    let mut f = File::defaults();
    f.apply(&Overrides {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        cores: Some(2),
        allow_private: true,
        list_refresh_ms: Some(100),
        no_probes: true,
        server_timeout: Some(timeout),
        peers: peers.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
        peer_key_file: Some(key.display().to_string()),
        peer_listen: Some(format!("127.0.0.1:{port}")),
        ..Overrides::default()
    });
    let ops = f.operations().unwrap();
    let mut s = f
        .settings(muster::engine::sys::allowed_cpus().len(), [port as u8; 16])
        .unwrap();
    s.dump_every = Some(Duration::from_millis(200));
    let master = s.master.clone();
    let engine = muster::engine::start(s).unwrap();
    let mut cs = ControlSettings::new("test");
    cs.peering = ops.peering;
    let control = control::start(engine.handle(), cs).unwrap();
    Peer {
        engine,
        control,
        master,
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("muster-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A peering datagram as a peer would send it, numbered `seq` (its clock in the high bits),
/// forwarding one DP server at `addr`, heard just now.
fn forged(addr: SocketAddr, seq: u64, key: &[u8; 32]) -> Vec<u8> {
    let mut b = Builder::new(Kind::Entries, 0xF00D, seq);
    assert!(b.push(&Entry {
        family: 2,
        addr,
        age_ms: 0,
        hop: 0,
        flags: 0,
        region: 255,
        server_type: b'd',
        players: 1,
        max_players: 8,
        bots: 0,
        appid: 0,
        protocol: 3,
        strings: [b"Nexuiz", b"data", b"dm1", b"", b"", b"", b"forged"],
    }));
    b.seal(key)
}

#[test]
fn a_registration_on_one_master_is_listed_by_its_peers_once_and_forgeries_change_nothing() {
    let dir = temp_dir("peering1");
    let key = key_file(&dir);
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    // The test's own socket is a fourth configured peer of C's (it knows the key).
    let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pf = fake.local_addr().unwrap().port();
    let a = peer(pa, &[pb, pc], &key, 900);
    let b = peer(pb, &[pa, pc], &key, 900);
    let c = peer(pc, &[pa, pb, pf], &key, 900);
    let servers = sockets(130, 4, 8);
    let ma = a.engine.local_addrs()[0];
    assert_eq!(
        dp_register(ma, &servers, "DarkPlaces", NEXUIZ_INFO).answered,
        8
    );
    every_core_lists(&a.engine, 0, 8);
    every_core_lists(&b.engine, 0, 8);
    every_core_lists(&c.engine, 0, 8);
    // The same fleet heartbeating to every master: still 8 each, never 16.
    for m in [&b, &c] {
        let addr = m.engine.local_addrs()[0];
        assert_eq!(
            dp_register(addr, &servers, "DarkPlaces", NEXUIZ_INFO).answered,
            8
        );
    }
    for m in [&a, &b, &c] {
        every_core_lists(&m.engine, 0, 8);
    }

    // A datagram sealed with another key, from a configured peer's address: dropped.
    let to_c: SocketAddr = format!("127.0.0.1:{pc}").parse().unwrap();
    let now_seq = muster::engine::unix_now_ms() << 16;
    let x: SocketAddr = "127.0.131.1:27960".parse().unwrap();
    let y: SocketAddr = "127.0.131.2:27960".parse().unwrap();
    let z: SocketAddr = "127.0.131.3:27960".parse().unwrap();
    let counters = c.control.peering().unwrap().clone();
    let rejected = |why: &str| counters.rejected()[why];
    fake.send_to(&forged(x, now_seq, &[0x11; 32]), to_c)
        .unwrap();
    // With the key: listed (and so the forgery before it was read and dropped).
    let good = forged(y, now_seq + 1, &KEY);
    fake.send_to(&good, to_c).unwrap();
    every_core_lists(&c.engine, 0, 9);
    assert_eq!(rejected("mac"), 1);
    // The same datagram again (a replay), then a fresh one: the fresh one lands, the replay not.
    fake.send_to(&good, to_c).unwrap();
    fake.send_to(&forged(z, now_seq + 2, &KEY), to_c).unwrap();
    every_core_lists(&c.engine, 0, 10);
    assert_eq!(rejected("replay"), 1);
    // From an address that is no configured peer: dropped, whatever the key.
    let stranger = socket(Ipv4Addr::new(127, 0, 132, 1));
    stranger
        .send_to(&forged(x, now_seq + 3, &KEY), to_c)
        .unwrap();
    assert!(eventually(|| rejected("unknown_peer") == 1));
    every_core_lists(&c.engine, 0, 10);
    assert_eq!(
        (rejected("mac"), rejected("replay")),
        (1, 1),
        "A and B were never refused"
    );
    for m in [a, b, c] {
        m.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_started_master_syncs_and_a_dead_origins_servers_last_their_timeout() {
    let dir = temp_dir("peering2");
    let key = key_file(&dir);
    let (pa, pb) = (free_port(), free_port());
    // B alone first (its peer A is not up: its sync requests go nowhere); servers time out
    // after 6 s.
    let b = peer(pb, &[pa], &key, 6);
    let on_b = sockets(134, 2, 5);
    let mb = b.engine.local_addrs()[0];
    assert_eq!(
        dp_register(mb, &on_b, "DarkPlaces", NEXUIZ_INFO).answered,
        5
    );
    every_core_lists(&b.engine, 0, 5);
    // A starts (no state file): it asks B for everything and lists B's servers.
    let a = peer(pa, &[pb], &key, 6);
    every_core_lists(&a.engine, 0, 5);
    assert!(a.forwarded_in() >= 5, "listed on B's word");
    // Servers registered on A are forwarded to B.
    let on_a = sockets(133, 2, 6);
    let ma = a.engine.local_addrs()[0];
    assert_eq!(
        dp_register(ma, &on_a, "DarkPlaces", NEXUIZ_INFO).answered,
        6
    );
    every_core_lists(&b.engine, 0, 11);
    // A stops: B keeps A's servers until their own timeout runs out, then lists none of them
    // (nor its own: nothing heartbeats again).
    a.stop();
    assert!(
        b.engine.every_core_lists(0, 11),
        "still listed right after the origin died"
    );
    every_core_lists(&b.engine, 0, 0);
    b.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_ban_at_the_origin_delists_its_servers_on_every_peer_before_their_timeout() {
    let dir = temp_dir("peering3");
    let key = key_file(&dir);
    let (pa, pb) = (free_port(), free_port());
    // Servers live 900 s: anything delisted during the test was delisted by a message.
    let a = peer(pa, &[pb], &key, 900);
    let b = peer(pb, &[pa], &key, 900);
    let banned = sockets(136, 2, 4);
    let kept = sockets(137, 2, 3);
    let ma = a.engine.local_addrs()[0];
    let mb = b.engine.local_addrs()[0];
    for fleet in [&banned, &kept] {
        assert_eq!(
            dp_register(ma, fleet, "DarkPlaces", NEXUIZ_INFO).answered,
            fleet.len()
        );
    }
    // One of the banned hosts also heartbeats to B itself: B's own registration stays.
    let own = &banned[..1];
    assert_eq!(dp_register(mb, own, "DarkPlaces", NEXUIZ_INFO).answered, 1);
    every_core_lists(&b.engine, 0, 7);
    // A bans 127.0.136.0/24 (a reload): A delists its 4, B the 3 it held on A's word.
    let mut cfg = a.master.clone();
    cfg.bans = std::sync::Arc::new(muster::master::NetSet::new(&["127.0.136.0/24"
        .parse()
        .unwrap()]));
    assert!(a.engine.handle().reconfigure(cfg));
    every_core_lists(&a.engine, 0, 3);
    every_core_lists(&b.engine, 0, 4);
    assert_eq!(
        b.forwarded_gone(),
        3,
        "removed on A's word, not by a timeout"
    );
    // The kept ones are still A's, listed on B on A's word.
    assert!(b.forwarded_in() >= 3);
    for m in [a, b] {
        m.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
