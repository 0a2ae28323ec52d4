//! The operator's side against the real binary on 127.0.0.1: the HTTP endpoints count what was
//! registered and parse as Prometheus text; the state file survives `kill -9`; SIGHUP applies a
//! ban and refuses a broken file; a corrupt or foreign state file is refused cleanly; systemd is
//! told READY and WATCHDOG.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A scratch directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("muster-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stat(m: &Served, pointer: &str) -> serde_json::Value {
    m.json("/api/stats")
        .pointer(pointer)
        .cloned()
        .unwrap_or_default()
}

/// Every core lists exactly `valve` (Valve query) and `dp` (`getservers Nexuiz`).
fn every_core_serves(
    m: &Served,
    hi: u8,
    valve: &HashSet<SocketAddr>,
    dp: &HashSet<SocketAddr>,
) -> bool {
    let clients = clients_on_every_core(2, hi);
    on_every_core(&clients, |c| {
        let v: HashSet<SocketAddr> = valve_list(m.addr, c, 0xFF, "").0.into_iter().collect();
        let d: HashSet<SocketAddr> = dp_list(m.addr, c, "getservers Nexuiz 3 empty full")
            .0
            .into_iter()
            .collect();
        &v == valve && &d == dp
    })
}

fn metrics(m: &Served) -> prometheus_parse::Scrape {
    let (status, body) = m.get("/metrics");
    assert_eq!(status, 200);
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text")
}

fn sample(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn http_endpoints_count_what_was_registered_and_parse_as_prometheus_text() {
    let m = Served::start_owned(&client_flags(70));
    let valve = sockets(71, 4, 12);
    assert_eq!(valve_register(m.addr, &valve, "cstrike").answered, 12);
    let dp = sockets(72, 3, 7);
    assert_eq!(
        dp_register(m.addr, &dp, "DarkPlaces", NEXUIZ_INFO).answered,
        7
    );

    // Cores dump their shards every second: ask until the API has them.
    assert!(
        eventually(|| stat(&m, "/servers/total") == 19),
        "{}",
        m.get("/api/stats").1
    );
    let s = m.json("/api/stats");
    assert_eq!(s["servers"]["valve"], 12);
    assert_eq!(s["servers"]["dp"], 7);
    let games: HashMap<(String, String), u64> = s["games"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                (
                    g["family"].as_str().unwrap().to_owned(),
                    g["game"].as_str().unwrap().to_owned(),
                ),
                g["servers"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        games,
        HashMap::from([
            (("valve".into(), "cstrike".into()), 12),
            (("dp".into(), "Nexuiz".into()), 7)
        ])
    );
    assert!(eventually(|| stat(&m, "/totals/registrations") == 19));
    assert_eq!(s["cores"], 2);
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));

    // /api/servers: the servers of a game (matched without regard to case), every field.
    let page = m.json("/api/servers?game=cstrike&page=0");
    assert_eq!(page["total"], 12);
    let listed: HashSet<SocketAddr> = page["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["address"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(listed, addrs(&valve));
    let x = &page["servers"][0];
    // common::valve_info: players 3, max 16, bots 0, map de_dust2.
    assert_eq!(
        (
            &x["family"],
            &x["game"],
            &x["map"],
            &x["players"],
            &x["max_players"],
            &x["bots"]
        ),
        (
            &"valve".into(),
            &"cstrike".into(),
            &"de_dust2".into(),
            &3.into(),
            &16.into(),
            &0.into()
        )
    );
    let started = s["started_unix"].as_u64().unwrap();
    let (first, last, expires) = (
        x["first_heartbeat_unix"].as_u64().unwrap(),
        x["last_heartbeat_unix"].as_u64().unwrap(),
        x["expires_unix"].as_u64().unwrap(),
    );
    assert!(
        started <= first + 1 && first <= last && last <= started + 60,
        "{x}"
    );
    assert_eq!(expires, last + 900, "the default 15-minute timeout");
    let page = m.json("/api/servers?game=NEXUIZ");
    assert_eq!(page["total"], 7);
    // common::NEXUIZ_INFO: hostname "a Nexuiz server", map dm1, 2 of 16 players.
    let x = &page["servers"][0];
    assert_eq!(
        (
            &x["family"],
            &x["name"],
            &x["map"],
            &x["players"],
            &x["max_players"]
        ),
        (
            &"dp".into(),
            &"a Nexuiz server".into(),
            &"dm1".into(),
            &2.into(),
            &16.into()
        )
    );
    assert_eq!(m.json("/api/servers")["total"], 19, "no game: every server");
    assert_eq!(
        m.json("/api/servers?page=1")["servers"],
        serde_json::json!([])
    );
    assert_eq!(m.get("/api/servers?page=x").0, 400);
    assert_eq!(m.get("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(m.get("/nowhere").0, 404);

    // A list query, then the metrics: names, types, values.
    let client = clients_on_every_core(2, 70).remove(0);
    assert_eq!(valve_list(m.addr, &client, 0xFF, "").0.len(), 12);
    assert!(eventually(|| {
        sample(
            &metrics(&m),
            "muster_queries_total",
            &[("protocol", "valve")],
        )
        .unwrap_or(0.0)
            >= 1.0
    }));
    let p = metrics(&m);
    assert!(!p.samples.is_empty());
    for x in &p.samples {
        assert!(x.metric.starts_with("muster_"), "{}", x.metric);
        match x.value {
            prometheus_parse::Value::Counter(_) => {
                assert!(x.metric.ends_with("_total"), "a counter named {}", x.metric)
            }
            prometheus_parse::Value::Gauge(_) => {
                assert!(!x.metric.ends_with("_total"), "a gauge named {}", x.metric)
            }
            _ => panic!("{} is neither counter nor gauge", x.metric),
        }
    }
    assert_eq!(
        sample(
            &p,
            "muster_servers",
            &[("family", "valve"), ("game", "cstrike")]
        ),
        Some(12.0)
    );
    assert_eq!(
        sample(
            &p,
            "muster_servers",
            &[("family", "dp"), ("game", "Nexuiz")]
        ),
        Some(7.0)
    );
    assert_eq!(sample(&p, "muster_registrations_total", &[]), Some(19.0));
    assert!(sample(&p, "muster_bytes_sent_total", &[]).unwrap() > 0.0);
    assert_eq!(
        sample(&p, "muster_dropped_total", &[("reason", "banned")]),
        Some(0.0)
    );
    assert_eq!(sample(&p, "muster_flood", &[]), Some(0.0));
    for core in ["0", "1"] {
        assert!(sample(&p, "muster_core_shard_servers", &[("core", core)]).is_some());
    }
    let shards: f64 = ["0", "1"]
        .iter()
        .map(|c| sample(&p, "muster_core_shard_servers", &[("core", c)]).unwrap())
        .sum();
    assert_eq!(shards, 19.0, "each server in exactly one core's shard");
    m.terminate();
}

#[test]
fn the_list_survives_kill_9_and_restarts_whole_without_a_heartbeat() {
    let dir = scratch("kill9");
    let cfg = dir.join("muster.toml");
    std::fs::write(&cfg, "state_interval_secs = 1\n").unwrap();
    let state = dir.join("state");
    let mut args = client_flags(73);
    args.extend(["--config".into(), cfg.display().to_string()]);
    args.extend(["--state-file".into(), state.display().to_string()]);

    let m = Served::start_owned(&args);
    let valve = sockets(74, 2, 10);
    assert_eq!(valve_register(m.addr, &valve, "cstrike").answered, 10);
    let dp = sockets(75, 2, 5);
    assert_eq!(
        dp_register(m.addr, &dp, "DarkPlaces", NEXUIZ_INFO).answered,
        5
    );
    assert!(every_core_serves(&m, 73, &addrs(&valve), &addrs(&dp)));
    // The master says when its state file holds every server.
    assert!(
        eventually(|| stat(&m, "/state/last_write_servers") == 15),
        "{}",
        m.get("/api/stats").1
    );
    let before = m.json("/api/servers");
    m.kill9();

    let m = Served::start_owned(&args);
    // Listed at once, by every core, with no game server having sent anything since.
    assert!(every_core_serves(&m, 73, &addrs(&valve), &addrs(&dp)));
    assert!(eventually(|| stat(&m, "/totals/restored") == 15));
    let s = m.json("/api/stats");
    assert_eq!(s["totals"]["registrations"], 0, "no new heartbeat: {s}");
    assert!(
        s["state"]["at_start"]
            .as_str()
            .unwrap()
            .starts_with("15 servers read"),
        "{s}"
    );
    // Each as it was: first seen and when it expires kept (seconds: the clock is re-read).
    assert!(eventually(|| stat(&m, "/servers/total") == 15));
    let after = m.json("/api/servers");
    let key = |v: &serde_json::Value| -> Vec<(String, u64, u64, String)> {
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["address"].as_str().unwrap().to_owned(),
                    x["first_heartbeat_unix"].as_u64().unwrap(),
                    x["expires_unix"].as_u64().unwrap(),
                    x["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let (b, a) = (key(&before), key(&after));
    assert_eq!(b.len(), a.len());
    for (b, a) in b.iter().zip(&a) {
        assert_eq!((&b.0, &b.3), (&a.0, &a.3));
        assert!(
            b.1.abs_diff(a.1) <= 1 && b.2.abs_diff(a.2) <= 1,
            "{b:?} then {a:?}"
        );
    }
    m.terminate();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sighup_applies_a_ban_and_a_broken_file_keeps_the_running_config() {
    let dir = scratch("hup");
    let cfg = dir.join("muster.toml");
    std::fs::write(&cfg, "allow_private = true\n").unwrap();
    let mut args = client_flags(76);
    args.extend(["--config".into(), cfg.display().to_string()]);
    let m = Served::start_owned(&args);
    let servers = sockets(77, 2, 8);
    assert_eq!(valve_register(m.addr, &servers, "cstrike").answered, 8);
    let all = addrs(&servers);
    let kept: HashSet<SocketAddr> = all
        .iter()
        .filter(|a| a.ip() == ip(127, 0, 77, 1))
        .copied()
        .collect();
    assert_eq!(kept.len(), 4);
    assert!(every_core_serves(&m, 76, &all, &HashSet::new()));

    std::fs::write(&cfg, "allow_private = true\nban = [\"127.0.77.2/32\"]\n").unwrap();
    m.signal(libc::SIGHUP);
    assert!(
        every_core_serves(&m, 76, &kept, &HashSet::new()),
        "the banned host's servers delisted"
    );
    assert!(eventually(|| stat(&m, "/totals/delisted") == 4));
    assert_eq!(stat(&m, "/config/reloads"), 1);
    // Its datagrams are dropped and counted (a challenge request gets nothing).
    let banned = servers
        .iter()
        .find(|s| s.local_addr().unwrap().ip() == ip(127, 0, 77, 2))
        .unwrap();
    banned.send_to(b"q", m.addr).unwrap();
    assert!(eventually(|| {
        sample(
            &metrics(&m),
            "muster_dropped_total",
            &[("reason", "banned")],
        )
        .unwrap_or(0.0)
            >= 1.0
    }));

    // A file that does not parse: refused whole, the ban and the list stay.
    std::fs::write(&cfg, "allow_private = \"yes\"\nban = []\n").unwrap();
    m.signal(libc::SIGHUP);
    assert!(eventually(|| stat(&m, "/config/reload_errors") == 1));
    let why = stat(&m, "/config/last_error");
    assert!(why.as_str().unwrap().contains("allow_private"), "{why}");
    assert_eq!(stat(&m, "/config/reloads"), 1);
    assert!(every_core_serves(&m, 76, &kept, &HashSet::new()));
    let err = m.terminate();
    assert!(err.contains("config reload refused"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_truncated_or_foreign_state_file_is_refused_in_one_line() {
    let dir = scratch("corrupt");
    let good = muster::state::encode(&muster::state::Body {
        written_unix_ms: 1,
        strings: vec![serde_bytes::ByteBuf::from(&b"cstrike"[..])],
        records: vec![],
    });
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("corrupt", flipped, "corrupt: checksum mismatch"),
        ("truncated", good[..good.len() - 2].to_vec(), "truncated"),
        (
            "foreign",
            b"{\"servers\": [\"1.2.3.4:27015\"]}\n".to_vec(),
            "not a muster state file",
        ),
    ];
    for (name, bytes, why) in cases {
        let state = dir.join(name);
        std::fs::write(&state, &bytes).unwrap();
        let mut args = client_flags(78);
        args.extend(["--state-file".into(), state.display().to_string()]);
        let m = Served::start_owned(&args);
        let s = m.json("/api/stats");
        let at_start = s["state"]["at_start"].as_str().unwrap();
        assert!(
            at_start.starts_with("ignored: ") && at_start.contains(why),
            "{name}: {at_start}"
        );
        assert_eq!(s["servers"]["total"], 0);
        let err = m.terminate();
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("state file") && l.contains("ignored"))
            .collect();
        assert_eq!(lines.len(), 1, "{name}: one line says why: {err}");
        assert!(lines[0].contains(why), "{name}: {}", lines[0]);
        if name == "foreign" {
            // Never written over: it is not muster's.
            assert_eq!(std::fs::read(&state).unwrap(), bytes);
            assert!(err.contains("will not be overwritten"), "{err}");
        } else {
            // Ours, damaged: replaced by a whole file at shutdown.
            assert!(muster::state::read(&state).is_ok(), "{name}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn systemd_is_told_ready_and_the_watchdog_is_fed() {
    use std::os::unix::net::UnixDatagram;
    let dir = scratch("notify");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let a = client_flags(79);
    let args: Vec<&str> = a.iter().map(String::as_str).collect();
    let m = Served::start_env(
        &args,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !(seen.iter().any(|m: &String| m.contains("READY=1"))
        && seen.iter().any(|m| m.contains("WATCHDOG=1")))
    {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{e}; got {seen:?}"));
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    m.terminate();
    // Watchdog pings may still be queued before it.
    loop {
        let n = sock
            .recv(&mut buf)
            .expect("STOPPING=1 before the socket went quiet");
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            break;
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
