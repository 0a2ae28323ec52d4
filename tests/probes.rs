//! Liveness probes over real sockets: fleets where some game servers answer probes and some never
//! do (never listed), some stop and come back (hidden, then listed again), some lie (hidden by
//! reason). The fake servers answer as real ones do: A2S_INFO with the S2C_CHALLENGE step
//! (shared/docs/protocols.md §2: `FF FF FF FF 41 <challenge>`, then `FF FF FF FF 49 …`) and
//! `getinfo` with an `infoResponse` echoing its challenge (§3).

mod common;

use common::*;
use muster::master::Counters;
use muster::master::probe::Hidden;
use muster::wire::a2s::{Challenge, InfoRequest, SourceInfo};
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// How a fake server treats probes.
const ANSWER: u8 = 0;
const SILENT: u8 = 1;
/// Answers with another game directory than its heartbeat's.
const LIE: u8 = 2;

/// Fake servers answering probes from a thread until dropped; each server's behaviour can change.
struct Responders {
    modes: Vec<Arc<AtomicU8>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Responders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn a2s_info(folder: &[u8], port: u16) -> Vec<u8> {
    let mut b = Vec::new();
    SourceInfo {
        protocol: 48,
        name: format!("server on {port}").as_bytes(),
        map: b"crossfire",
        folder,
        game: b"Half-Life",
        app_id: 70,
        players: 7,
        max_players: 16,
        bots: 0,
        server_type: b'd',
        environment: b'l',
        visibility: 0,
        vac: 0,
        ship: None,
        version: b"1.1.2.7",
        extra: None,
    }
    .encode(&mut b)
    .unwrap();
    b
}

/// Answers every probe on `servers` by `modes` (Valve: the challenge step first; DP: getinfo).
fn respond(servers: Vec<UdpSocket>, modes: &[u8], dp_info: Option<&'static str>) -> Responders {
    let modes: Vec<Arc<AtomicU8>> = modes.iter().map(|m| Arc::new(AtomicU8::new(*m))).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (m, st) = (modes.clone(), stop.clone());
    for s in &servers {
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    }
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        // Bounded: a test ends long before this.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
            for (s, mode) in servers.iter().zip(&m) {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                let mode = mode.load(Ordering::Relaxed);
                if mode == SILENT {
                    continue;
                }
                let port = s.local_addr().unwrap().port();
                let folder: &[u8] = if mode == LIE { b"cstrike" } else { b"valve" };
                let reply = match (InfoRequest::decode(&buf[..n]), dp_info) {
                    (Ok(InfoRequest { challenge: None }), _) => {
                        let mut c = Vec::new();
                        Challenge(0x5eed_0000 | i32::from(port)).encode(&mut c);
                        c
                    }
                    (Ok(InfoRequest { challenge: Some(_) }), _) => a2s_info(folder, port),
                    (Err(_), Some(info)) if buf[..n].starts_with(b"\xFF\xFF\xFF\xFFgetinfo ") => {
                        let challenge = std::str::from_utf8(&buf[12..n]).unwrap().trim();
                        [
                            &b"\xFF\xFF\xFF\xFF"[..],
                            format!("infoResponse\n{info}\\challenge\\{challenge}").as_bytes(),
                        ]
                        .concat()
                    }
                    _ => continue,
                };
                let _ = s.send_to(&reply, from);
            }
        }
    });
    Responders {
        modes,
        stop,
        thread: Some(thread),
    }
}

/// Every core's counters summed.
fn totals(e: &muster::engine::Engine) -> Counters {
    let mut t = Counters::default();
    for s in e.status().into_iter().flatten() {
        t += &s.counters;
    }
    t
}

fn hidden(c: &Counters, why: Hidden) -> u64 {
    c.hidden[why as usize - 1]
}

fn probing_engine() -> muster::engine::Engine {
    engine(2, |f| {
        // Probe everyone (the suite's other tests allow loopback through unprobed).
        f.probe.allow.clear();
        f.probe.interval_secs = 1;
        f.probe.timeout_ms = 150;
        f.probe.retries = 1;
        f.probe.failures = 2;
    })
}

#[test]
fn valve_servers_are_listed_when_they_answer_hidden_when_silent_and_listed_again() {
    let e = probing_engine();
    let master = e.local_addrs()[0];
    let servers = sockets(40, 4, 8);
    assert_eq!(valve_register(master, &servers, "valve").answered, 8);
    // 0–3 answer, 4–5 never do, 6–7 answer for another game.
    let modes = [ANSWER, ANSWER, ANSWER, ANSWER, SILENT, SILENT, LIE, LIE];
    let r = respond(servers, &modes, None);
    every_core_lists(&e, 4, 0);
    assert!(
        eventually(|| hidden(&totals(&e), Hidden::Contradicts) == 2),
        "{:?}",
        totals(&e)
    );
    let c = totals(&e);
    assert_eq!(
        hidden(&c, Hidden::Unproven),
        8,
        "every Valve server starts hidden"
    );
    assert_eq!(c.shown, 4);
    assert!(c.probes_answered >= 4 && c.probes_sent >= c.probes_answered);
    // Two stop answering: they leave the list after `failures` missed probes…
    r.modes[0].store(SILENT, Ordering::Relaxed);
    r.modes[1].store(SILENT, Ordering::Relaxed);
    every_core_lists(&e, 2, 0);
    assert_eq!(hidden(&totals(&e), Hidden::Silent), 2);
    // …and come back at their next answer.
    r.modes[0].store(ANSWER, Ordering::Relaxed);
    r.modes[1].store(ANSWER, Ordering::Relaxed);
    every_core_lists(&e, 4, 0);
    // The silent pair was never listed; the liars never were either.
    let client = socket(Ipv4Addr::new(127, 0, 41, 1));
    let (list, _) = valve_list(master, &client, 0xFF, "");
    assert_eq!(list.len(), 4);
    drop(r);
    e.stop().unwrap();
}

#[test]
fn dp_servers_are_listed_at_once_and_hidden_when_they_stop_answering_getinfo() {
    let e = probing_engine();
    let master = e.local_addrs()[0];
    let servers = sockets(42, 3, 3);
    assert_eq!(
        dp_register(master, &servers, "DarkPlaces", NEXUIZ_INFO).answered,
        3
    );
    every_core_lists(&e, 0, 3);
    let r = respond(servers, &[ANSWER, ANSWER, SILENT], Some(NEXUIZ_INFO));
    every_core_lists(&e, 0, 2);
    assert!(eventually(|| totals(&e).probes_answered >= 2));
    r.modes[2].store(ANSWER, Ordering::Relaxed);
    every_core_lists(&e, 0, 3);
    assert_eq!(hidden(&totals(&e), Hidden::Silent), 1);
    assert!(totals(&e).shown >= 1);
    drop(r);
    e.stop().unwrap();
}
