//! Down alerts against the real binary on 127.0.0.1: a `[[watch]]` of eleven Valve servers whose
//! webhook is a receiver this test runs (it answers 500 to the first POST, 204 after). One server
//! stops heartbeating and expires, then comes back: one "down" message (retried once after the
//! 500, delivered once) and one "back". Then the other ten stop together: one digest.
//!
//! Every wait polls the receiver or the master's API with a deadline; the only fixed pause is the
//! keeper's heartbeat period (what a game server does).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every wait here, at most (an alert takes the expiry, a dump, the notifier's 5 s quiet time and
/// a retry: ~12 s).
const DEADLINE: Duration = Duration::from_secs(60);
/// Seconds a server is listed without a heartbeat.
const SERVER_TIMEOUT: u64 = 4;

/// One POST the receiver took: its path, its body, the status it answered.
#[derive(Clone, Debug)]
struct Posted {
    path: String,
    body: serde_json::Value,
    status: u16,
}

/// A webhook on 127.0.0.1: records each POST, answers `500` to the first `failures`, `204` after.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Posted>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start(failures: usize) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((conn, _)) => {
                        let n = g.lock().unwrap().len();
                        let status = if n < failures { 500 } else { 204 };
                        if let Some((path, body)) = Self::answer(conn, status) {
                            g.lock().unwrap().push(Posted { path, body, status });
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Receiver { addr, got, stop }
    }

    /// Reads one request (head and `Content-Length` body) and answers `status`.
    fn answer(conn: std::net::TcpStream, status: u16) -> Option<(String, serde_json::Value)> {
        conn.set_nonblocking(false).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut r = BufReader::new(conn.try_clone().ok()?);
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let path = line.split(' ').nth(1)?.to_owned();
        assert!(line.starts_with("POST "), "{line}");
        let mut len = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).ok()?;
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().ok()?;
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).ok()?;
        let reason = if status == 500 {
            "Internal Server Error"
        } else {
            "No Content"
        };
        let mut conn = conn;
        write!(
            conn,
            "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        Some((path, serde_json::from_slice(&body).ok()?))
    }

    fn posted(&self) -> Vec<Posted> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` POSTs came; all of them.
    fn wait_for(&self, n: usize) -> Vec<Posted> {
        let ok = wait(|| self.posted().len() >= n);
        let got = self.posted();
        assert!(ok, "{n} POSTs expected, got {got:#?}");
        got
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Polls `f` every 50 ms until it holds; false after [`DEADLINE`].
fn wait(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Heartbeats every second for the servers marked alive (a Valve server re-registers with the
/// same handshake: `q`, challenge, heartbeat), each named `names[i]`.
struct Keeper {
    alive: Arc<Mutex<Vec<bool>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Keeper {
    fn start(master: SocketAddr, servers: Vec<UdpSocket>, names: Vec<String>) -> Keeper {
        let alive = Arc::new(Mutex::new(vec![true; servers.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (alive.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let now_alive = a.lock().unwrap().clone();
                for (i, sock) in servers.iter().enumerate() {
                    if now_alive[i] {
                        let name = &names[i];
                        valve_register_info(master, std::slice::from_ref(sock), |c| {
                            format!(
                                "\\protocol\\48\\challenge\\{c}\\players\\1\\max\\16\\bots\\0\\gamedir\\cstrike\\map\\de_dust2\\password\\0\\os\\l\\lan\\0\\region\\255\\type\\d\\secure\\1\\version\\1.1.2.7\\product\\cstrike\\hostname\\{name}\n"
                            )
                        });
                    }
                }
                // A game server's heartbeat period (shortened, with the server timeout).
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Keeper {
            alive,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, which: impl IntoIterator<Item = usize>, alive: bool) {
        let mut a = self.alive.lock().unwrap();
        for i in which {
            a[i] = alive;
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn text(p: &Posted) -> String {
    p.body["text"].as_str().unwrap_or_default().to_owned()
}

fn watch(m: &Served) -> serde_json::Value {
    m.json("/api/watch")
}

#[test]
fn an_expiry_and_a_return_alert_once_each_and_a_mass_outage_is_one_digest() {
    let receiver = Receiver::start(1);
    let servers = sockets(81, 11, 11);
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.local_addr().unwrap()).collect();
    let names: Vec<String> = (0..11)
        .map(|i| {
            if i == 0 {
                "Alpha".to_owned()
            } else {
                format!("Bravo {i}")
            }
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("muster-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("watch.toml");
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    std::fs::write(
        &config,
        format!(
            "server_timeout = {SERVER_TIMEOUT}\n\n[[watch]]\nservers = [{}]\nwebhook = \"http://{}/hook/secret-token\"\n",
            list.join(", "),
            receiver.addr
        ),
    )
    .unwrap();
    let mut flags = client_flags(80);
    flags.extend(["--config".to_owned(), config.display().to_string()]);
    let m = Served::start_owned(&flags);
    let keeper = Keeper::start(m.addr, servers, names);

    // Listed for the first time: the baseline, no alert.
    assert!(wait(|| watch(&m)["hooks"][0]["up"] == 11), "{}", watch(&m));
    let w = watch(&m);
    assert_eq!(
        w["hooks"][0]["webhook"],
        format!("http://{}/…", receiver.addr)
    );
    assert_eq!(w["hooks"][0]["watches"], serde_json::json!(["11 servers"]));
    assert!(receiver.posted().is_empty());

    // Alpha stops and expires: one message, POSTed twice (500, then 204 a second later).
    keeper.set([0], false);
    let got = receiver.wait_for(2);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!((got[0].status, got[1].status), (500, 204));
    assert_eq!(got[0].body, got[1].body, "the same message retried");
    assert_eq!(got[0].path, "/hook/secret-token");
    let down = text(&got[1]);
    assert!(
        down.starts_with(&format!("Alpha ({}) is down after ", addrs[0])) && down.ends_with(" up"),
        "{down}"
    );
    assert!(wait(|| watch(&m)["hooks"][0]["delivery"]["sent"] == 1));

    // Alpha comes back: one message.
    keeper.set([0], true);
    let got = receiver.wait_for(3);
    let back = text(&got[2]);
    assert!(
        back.starts_with(&format!("Alpha ({}) is back after ", addrs[0]))
            && back.ends_with(" down"),
        "{back}"
    );

    // The ten others stop together: one digest.
    keeper.set(1..11, false);
    let got = receiver.wait_for(4);
    let digest = text(&got[3]);
    assert!(
        digest.starts_with("10 servers down, 0 up in the last minute: Bravo "),
        "{digest}"
    );
    for a in &addrs[1..] {
        assert!(digest.contains(&a.to_string()), "{a} in {digest}");
    }
    // Nothing more on its way: the master says so, and nothing more came.
    assert!(
        wait(|| {
            let w = watch(&m);
            let h = &w["hooks"][0];
            h["down"] == 10 && h["delivery"]["sent"] == 3 && h["delivery"]["pending"] == 0
        }),
        "{}",
        watch(&m)
    );
    assert_eq!(receiver.posted().len(), 4, "{:#?}", receiver.posted());

    let w = watch(&m);
    assert_eq!(w["transitions"], serde_json::json!({"down": 11, "up": 1}));
    let history = w["history"].as_array().unwrap();
    assert_eq!(history.len(), 12);
    assert_eq!(
        history[10]["up"], true,
        "newest first: Alpha's return before the ten"
    );
    let d = &w["hooks"][0]["delivery"];
    assert_eq!(
        (d["failed"].as_u64(), d["gave_up"].as_u64()),
        (Some(1), Some(0))
    );
    let s = m.json("/api/stats");
    assert_eq!(s["watch"]["alerts_sent"], 3);
    assert_eq!(s["watch"]["down"], 10);
    let (_, metrics) = m.get("/metrics");
    for line in [
        "muster_alerts_sent_total 3",
        "muster_alerts_failed_total 1",
        "muster_watch_transitions_total{direction=\"down\"} 11",
        "muster_watch_transitions_total{direction=\"up\"} 1",
        "muster_alerts_dropped_total{reason=\"gave_up\"} 0",
        "muster_watched_servers{state=\"down\"} 10",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    drop(keeper);
    let log = m.terminate();
    assert!(log.contains("watched server down"), "{log}");
    assert!(
        !log.contains("secret-token"),
        "the webhook's path is never logged"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
