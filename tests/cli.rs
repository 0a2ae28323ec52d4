//! The `muster` binary: help, configuration errors, startup failures, signals.

mod common;

use common::*;
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// The one line a failed start prints, checked to be exactly one line.
fn one_line_error(o: &Output) -> String {
    assert!(!o.status.success(), "expected a failure: {o:?}");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| !l.contains(" WARN ")).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("muster: error: "), "{err}");
    lines[0].to_owned()
}

#[test]
fn help_explains_every_option() {
    let top = run(&["--help"]);
    assert!(top.status.success());
    let top = String::from_utf8(top.stdout).unwrap();
    assert!(
        top.contains("serve") && top.contains("default-config") && top.contains("check-config"),
        "{top}"
    );
    let serve = String::from_utf8(run(&["serve", "--help"]).stdout).unwrap();
    for flag in [
        "--config",
        "--listen",
        "--cores",
        "--allow-private",
        "--server-timeout",
        "--max-servers-per-ip",
        "--max-servers",
        "--list-refresh-ms",
        "--pace-window-kib",
        "--pace-rate-kib",
        "--trust",
        "--no-gso",
        "--http",
        "--public-http",
        "--state-file",
        "--ban",
    ] {
        assert!(serve.contains(flag), "{flag} missing from:\n{serve}");
    }
    assert!(serve.contains("0.0.0.0:27010"), "defaults shown: {serve}");
    // The default config the binary prints is the commented file in the repo.
    let dc = run(&["default-config"]);
    assert_eq!(
        String::from_utf8(dc.stdout).unwrap(),
        muster::config::DEFAULT_TOML
    );
}

#[test]
fn a_port_in_use_is_one_clear_line_and_a_failure() {
    let held = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    // No HTTP: this master waits REBIND_WAIT for the UDP port, and must not hold the default
    // HTTP port meanwhile (other tests start masters with the defaults).
    let o = run(&["serve", "--listen", &addr, "--cores", "1", "--http", "off"]);
    let line = one_line_error(&o);
    assert!(
        line.contains(&addr) && line.contains("already in use"),
        "{line}"
    );
}

#[test]
fn a_restart_right_after_kill_9_gets_the_same_port() {
    // The killed process's io_uring lets go of its sockets a moment after it dies (~0.3 s here):
    // the new master waits for the port (engine::socket::REBIND_WAIT) instead of failing.
    let m = Served::start(&["--listen", "127.0.0.1:0", "--cores", "2"]);
    let addr = m.addr.to_string();
    m.kill9();
    for _ in 0..3 {
        // Started at once after the kill; `start` fails the test if the master exits instead.
        let m = Served::start(&["--listen", &addr, "--cores", "2"]);
        assert_eq!(m.addr.to_string(), addr);
        m.kill9();
    }
}

#[test]
fn too_little_locked_memory_is_one_clear_line_and_a_failure() {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--http",
        "off",
    ]);
    // SAFETY: setrlimit is async-signal-safe; the child lowers only its own limit.
    unsafe {
        cmd.pre_exec(|| {
            let r = libc::rlimit {
                rlim_cur: 64 * 1024,
                rlim_max: 64 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let line = one_line_error(&o);
    assert!(
        line.contains("locked memory") && line.contains("64 KiB") && line.contains("ulimit -l"),
        "{line}"
    );
}

#[test]
fn config_errors_name_the_key() {
    let dir = std::env::temp_dir().join(format!("muster-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "listen = [\"127.0.0.1:0\"]\nserver_timeuot = 5\n").unwrap();
    let o = run(&["serve", "--config", bad.to_str().unwrap()]);
    assert!(one_line_error(&o).contains("server_timeuot"));
    let o = run(&[
        "serve",
        "--config",
        dir.join("missing.toml").to_str().unwrap(),
    ]);
    assert!(one_line_error(&o).contains("cannot read config file"));
    let o = run(&["serve", "--listen", "127.0.0.1:0", "--cores", "999"]);
    assert!(one_line_error(&o).contains("cores"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_config_says_ok_or_names_the_key() {
    let dir = std::env::temp_dir().join(format!("muster-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, muster::config::DEFAULT_TOML).unwrap();
    let o = run(&["check-config", good.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}: ok\n", good.display())
    );
    for (text, key) in [
        ("ban = [\"300.0.0.1/8\"]\n", "ban"),
        ("http_listen = \"localhost\"\n", "http_listen"),
        ("state_interval_secs = 0\n", "state_interval_secs"),
        ("max_servers_per_ip = 0\n", "max_servers_per_ip"),
        ("no_such_key = 1\n", "no_such_key"),
    ] {
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let o = run(&["check-config", bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{text}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.lines().count() == 1 && err.contains(key),
            "{text}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_http_port_in_use_is_one_clear_line_and_a_failure() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let o = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--http",
        &addr,
    ]);
    let line = one_line_error(&o);
    assert!(
        line.contains("cannot serve HTTP") && line.contains(&addr),
        "{line}"
    );
}

#[test]
fn sigterm_stops_cleanly_and_logs_the_totals() {
    // The readiness clients (127.0.61.x) poll often: trusted, so admission never refuses them.
    let m = Served::start(&[
        "--listen",
        "127.0.0.1:0",
        "--cores",
        "2",
        "--allow-private",
        "--trust",
        "127.0.61.0/24",
    ]);
    let servers = sockets(60, 4, 8);
    let hs = dp_register(m.addr, &servers, "DarkPlaces", NEXUIZ_INFO);
    assert_eq!(hs.answered, 8);
    // Every core lists all 8 before the stop, so the totals are final.
    let clients = clients_on_every_core(2, 61);
    assert!(on_every_core(&clients, |c| {
        dp_list(m.addr, c, "getservers Nexuiz 3 empty full").0.len() == 8
    }));
    let log = m.terminate();
    let totals = log
        .lines()
        .find(|l| l.contains("stopped; totals of every core"))
        .unwrap_or_else(|| panic!("no totals logged:\n{log}"));
    assert!(totals.contains("registered=8"), "{totals}");
    let challenges = format!("challenges_sent={}", hs.requests);
    assert!(totals.contains(&challenges), "{totals}");
}
