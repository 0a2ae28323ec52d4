//! fleet + query + crawl (+ flood, blast) against a muster engine started on loopback: the counts
//! the load generator reports must be exactly right.

use muster::config::{File, Overrides};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LOADGEN: &str = env!("CARGO_BIN_EXE_muster-loadgen");

fn master() -> muster::engine::Engine {
    let mut f = File::defaults();
    f.apply(&Overrides {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        cores: Some(2),
        allow_private: true,
        list_refresh_ms: Some(100),
        // The list clients (query's and crawl's default source networks) are trusted: this test
        // checks the load generator's counts, not admission control. The flood's sources
        // (127.30.x) are not.
        trusted: vec!["127.60.0.0/16".into(), "127.90.0.0/16".into()],
        ..Overrides::default()
    });
    let s = f
        .settings(muster::engine::sys::allowed_cpus().len(), [9; 16])
        .unwrap();
    muster::engine::start(s).unwrap()
}

fn loadgen(args: &[&str]) -> Value {
    let out = Command::new(LOADGEN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "muster-loadgen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn fleet_query_crawl_flood_report_exact_counts() {
    let m = master();
    let addr: SocketAddr = m.local_addrs()[0];
    let target = addr.to_string();
    let dir = std::env::temp_dir().join(format!("loadgen-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fleet_json = dir.join("fleet.json");
    // 120 servers, mixed: 40 GoldSrc, 40 DarkPlaces (Nexuiz), 40 Quake III; A2S with a challenge.
    let mut fleet = Command::new(LOADGEN)
        .args([
            "fleet",
            "--target",
            &target,
            "--servers",
            "120",
            "--protocol",
            "mixed",
            "--a2s-challenge",
            // When it ends, count its servers on the master's lists.
            "--verify",
            // Up for the whole test, however slow the machine: ended by SIGTERM below.
            "--duration",
            "120",
            "--json",
        ])
        .arg(&fleet_json)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Ready means every core serves all 120 (40 Valve, 80 DP): each core's merged list lags by up
    // to one refresh, and the queries below come from sources steered to both cores.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.every_core_lists(40, 80) {
        assert!(
            Instant::now() < deadline,
            "the fleet never registered everywhere: {:#?}",
            m.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let svg = dir.join("latency.svg");
    let q = loadgen(&[
        "query",
        "--target",
        &target,
        "--mode",
        "valve",
        "--concurrency",
        "4",
        "--count",
        "20",
        "--expect",
        "40",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(
        (
            u(&q, "lists_started"),
            u(&q, "lists_complete"),
            u(&q, "lists_incomplete")
        ),
        (20, 20, 0),
        "{q}"
    );
    assert_eq!(
        (u(&q, "entries_received"), u(&q, "duplicate_entries")),
        (800, 0)
    );
    assert_eq!(q["time_to_complete"]["count"].as_u64(), Some(20));
    assert!(
        std::fs::read_to_string(&svg)
            .unwrap()
            .contains("time to first packet")
    );

    let q = loadgen(&[
        "query", "--target", &target, "--mode", "dp", "--count", "10", "--expect", "40",
    ]);
    assert_eq!(
        (u(&q, "lists_complete"), u(&q, "entries_received")),
        (10, 400),
        "{q}"
    );
    let q = loadgen(&[
        "query", "--target", &target, "--mode", "dp-ext", "--rate", "100", "--count", "10",
        "--expect", "40",
    ]);
    assert_eq!((u(&q, "lists_complete"), u(&q, "packets")), (10, 10), "{q}");
    let q = loadgen(&[
        "query",
        "--target",
        &target,
        "--mode",
        "dp",
        "--game",
        "Quake3Arena",
        "--protocol",
        "68",
        "--count",
        "1",
        "--expect",
        "40",
    ]);
    assert_eq!(u(&q, "lists_complete"), 1, "{q}");

    // The crawler: every region's list (the Valve servers spread over regions 0–7), then A2S_INFO.
    let c = loadgen(&["crawl", "--target", &target, "--concurrency", "16"]);
    assert_eq!(u(&c, "regions_queried"), 8);
    assert_eq!(
        (
            u(&c, "listed"),
            u(&c, "answered"),
            u(&c, "challenged"),
            u(&c, "timeouts")
        ),
        (40, 40, 40, 0),
        "{c}"
    );

    // 200 challenge requests from 8 hosts: one reply each.
    let f = loadgen(&[
        "flood",
        "--target",
        &target,
        "--kind",
        "challenge",
        "--count",
        "200",
        "--sources",
        "8",
        "--rate",
        "2000",
    ]);
    assert_eq!(
        (u(&f, "sent_datagrams"), u(&f, "reply_datagrams")),
        (200, 200),
        "{f}"
    );
    assert_eq!(u(&f, "sources_answered"), 8);
    let f = loadgen(&[
        "flood",
        "--target",
        &target,
        "--kind",
        "bad-challenge",
        "--count",
        "100",
        "--sources",
        "4",
        "--rate",
        "2000",
    ]);
    assert_eq!(
        (u(&f, "sent_datagrams"), u(&f, "reply_datagrams")),
        (100, 0),
        "{f}"
    );

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(fleet.id() as i32, libc::SIGTERM) };
    let status = fleet.wait().unwrap();
    assert!(status.success());
    let fl: Value = serde_json::from_slice(&std::fs::read(&fleet_json).unwrap()).unwrap();
    assert_eq!(
        (
            u(&fl, "registered"),
            u(&fl, "handshakes"),
            u(&fl, "failures")
        ),
        (120, 120, 0),
        "{fl}"
    );
    assert_eq!(u(&fl, "listed"), 120, "every server on the list: {fl}");
    // The crawler probed each GoldSrc server twice (request, then request + challenge).
    assert_eq!(
        (
            u(&fl, "a2s_requests"),
            u(&fl, "a2s_challenges_sent"),
            u(&fl, "a2s_answered")
        ),
        (80, 40, 40),
        "{fl}"
    );
    let report = m.stop().unwrap();
    assert_eq!(report.shard.registered, 120);
    assert_eq!(
        report
            .shard
            .dropped(muster::master::counters::DropReason::BadChallenge),
        100
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn blast_measures_three_methods() {
    let b = loadgen(&["blast", "--duration", "0.6", "--size", "1395"]);
    let methods = b["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["send_to", "sendmmsg", "gso"]);
    for m in methods {
        assert!(
            u(m, "received") > 0 && u(m, "received") <= u(m, "sent"),
            "{m}"
        );
    }
}

#[test]
fn non_loopback_targets_are_refused() {
    let out = Command::new(LOADGEN)
        .args(["query", "--target", "192.0.2.1:27010", "--count", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only loopback"));
}

#[test]
fn a_fleet_with_silent_lying_and_slow_servers_is_listed_by_what_its_probes_show() {
    let m = master();
    let target = m.local_addrs()[0].to_string();
    let dir = std::env::temp_dir().join(format!("loadgen-e2e-probes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("fleet.json");
    // 200 GoldSrc servers: a fifth never answer probes, a tenth answer for another game, a fifth
    // answer 300 ms late (inside the default 1 s probe timeout). Bounded: 8 s.
    let out = Command::new(LOADGEN)
        .args([
            "fleet",
            "--target",
            &target,
            "--servers",
            "200",
            "--protocol",
            "valve",
            "--probe-silent",
            "0.2",
            "--probe-lying",
            "0.1",
            "--probe-slow",
            "0.2",
            "--probe-delay-ms",
            "300",
            "--verify",
            "--duration",
            "8",
            "--json",
        ])
        .arg(&json)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let (silent, lying, slow) = (
        u(&r, "silent_servers"),
        u(&r, "lying_servers"),
        u(&r, "slow_servers"),
    );
    assert!(silent > 20 && lying > 5 && slow > 20, "{r}");
    assert_eq!(u(&r, "registered"), 200);
    // Listed: exactly the servers whose answers were true, the slow ones included.
    assert_eq!(u(&r, "listed"), 200 - silent - lying, "{r}");
    assert!(u(&r, "probes_ignored") >= silent, "{r}");
    assert!(u(&r, "probes_lied") >= lying, "{r}");
    assert!(u(&r, "probes_delayed") >= slow, "{r}");
    // The master counted the liars by reason: its final counters, as it stops (a core's latest
    // status report may predate the last probe answers it handled).
    let c = m.stop().unwrap().shard;
    let contradicts = muster::master::probe::Hidden::Contradicts as usize - 1;
    assert_eq!(c.hidden[contradicts], lying, "{c:?}");
}

#[test]
fn query_and_crawl_fail_over_from_a_dead_master_and_say_who_answered() {
    let m = master();
    let live = m.local_addrs()[0].to_string();
    // A master that is down: its port is bound, nothing ever answers.
    let dead_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = dead_sock.local_addr().unwrap().to_string();
    // 30 Nexuiz servers (listed at once: a DP registration is a getinfo answered).
    let fleet = loadgen(&[
        "fleet",
        "--target",
        &live,
        "--servers",
        "30",
        "--protocol",
        "dp",
        "--count",
        "30",
        "--source-base",
        "120",
    ]);
    assert_eq!(u(&fleet, "registered"), 30);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m.every_core_lists(0, 30) {
        assert!(Instant::now() < deadline, "{:?}", m.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    // 20 lists, each asking the two masters in its own random order: those that start with the
    // dead one time out once (0.2 s) and fail over; every list ends whole, from the live one.
    let q = loadgen(&[
        "query",
        "--target",
        &dead,
        "--target",
        &live,
        "--mode",
        "dp",
        "--count",
        "20",
        "--expect",
        "30",
        "--timeout",
        "0.2",
        "--retries",
        "0",
    ]);
    assert_eq!(
        (u(&q, "lists_complete"), u(&q, "lists_incomplete")),
        (20, 0),
        "{q}"
    );
    let failovers = u(&q, "failovers");
    assert!(
        (1..20).contains(&failovers),
        "random orders: some lists start at each: {q}"
    );
    assert_eq!(q["answered_by"][live.as_str()].as_u64(), Some(20), "{q}");
    assert!(q["answered_by"].get(dead.as_str()).is_none(), "{q}");
    // The crawler's region lists fail over the same way.
    let c = loadgen(&[
        "crawl",
        "--target",
        &dead,
        "--target",
        &live,
        "--timeout",
        "0.2",
        "--retries",
        "0",
        "--duration",
        "30",
    ]);
    assert_eq!(u(&c, "region_lists_incomplete"), 0, "{c}");
    assert_eq!(
        c["lists_answered_by"][live.as_str()].as_u64(),
        Some(8),
        "{c}"
    );
    m.stop().unwrap();
}

/// `floor` answers each DP `heartbeat` with its fixed `getinfo` and nothing else, and with
/// `--nap-us` sleeps after every read that emptied its socket (counted), without it never.
#[test]
fn the_floor_answers_heartbeats_only_and_naps_when_asked() {
    for nap in ["0", "250"] {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let floor = Command::new(LOADGEN)
            .args(["floor", "--listen", &listen, "--duration", "60"])
            .args(["--nap-us", nap])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 2048];
        // The first heartbeat may come before the floor has bound its socket: resent until
        // answered (bounded), then 20 more, each answered before the next is sent.
        let mut answered = 0;
        for _ in 0..100 {
            s.send_to(b"\xFF\xFF\xFF\xFFheartbeat DarkPlaces\n", &listen)
                .unwrap();
            if let Ok(n) = s.recv(&mut buf) {
                assert_eq!(&buf[..n], b"\xFF\xFF\xFF\xFFgetinfo ABCDEFGHIJ");
                answered += 1;
                if answered == 21 {
                    break;
                }
            }
        }
        assert_eq!(answered, 21);
        // Not a heartbeat: read, not answered.
        s.send_to(b"\xFF\xFF\xFF\xFFgetservers DarkPlaces 3", &listen)
            .unwrap();
        assert!(s.recv(&mut buf).is_err(), "the floor answered a query");
        // SAFETY: signals the child this test started.
        unsafe { libc::kill(floor.id() as libc::pid_t, libc::SIGINT) };
        let out = floor.wait_with_output().unwrap();
        assert!(out.status.success());
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(u(&r, "answered"), u(&r, "received") - 1, "{r}");
        assert!(u(&r, "received") >= 22, "{r}");
        if nap == "0" {
            assert_eq!(u(&r, "naps"), 0, "{r}");
        } else {
            // A nap per read that emptied the socket: the heartbeats came one at a time.
            assert!(
                u(&r, "naps") > 0 && u(&r, "naps") <= u(&r, "received"),
                "{r}"
            );
        }
    }
}
