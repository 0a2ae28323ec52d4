//! The `muster` binary: command line, logging, signals; the engine does the rest.

use clap::{Args, Parser, Subcommand};
use muster::config::{self, Overrides};
use muster::control::{ControlSettings, Reloaded};
use muster::engine::{self, Report};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// muster — a fast, safe game master server. Game servers register by heartbeat (GoldSrc/Source/
/// Xash3D, Quake III / DarkPlaces); clients and server browsers ask for the list (Valve master
/// query, getservers/getserversExt as dpmaster 2.2 answers them).
#[derive(Debug, Parser)]
#[command(name = "muster", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once at start: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the master server (on the embedded defaults unless --config or flags say otherwise).
    Serve(Serve),
    /// Print the commented default configuration (a starting point for --config).
    DefaultConfig,
    /// Check a config file (as `serve --config FILE` would read it) and exit: 0 if it is valid,
    /// 1 with the reason if not. Run it before `systemctl reload muster`.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
}

/// Flags override the config file; the file overrides the embedded defaults
/// (`muster default-config` prints them). Logging follows RUST_LOG (default: info).
#[derive(Debug, Args)]
struct Serve {
    /// TOML config file; keys it leaves out keep their defaults, unknown keys are an error.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, repeatable; every listener accepts every protocol.
    /// [default: 0.0.0.0:27010, 0.0.0.0:27011, 0.0.0.0:27950 and their [::] twins where the host has IPv6]
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// Cores to run on, one pinned executor and shard each. [default: every CPU available]
    #[arg(long, value_name = "N")]
    cores: Option<usize>,
    /// Accept game servers on loopback and private addresses (LANs, tests).
    #[arg(long)]
    allow_private: bool,
    /// Delist a game server silent for this long. [default: 900]
    #[arg(long, value_name = "SECONDS")]
    server_timeout: Option<u64>,
    /// Most game servers per IPv4 address or IPv6 /64. [default: 32]
    #[arg(long, value_name = "N")]
    max_servers_per_ip: Option<u16>,
    /// Most game servers per IPv4 /24 or IPv6 /48, per core. [default: 256]
    #[arg(long, value_name = "N")]
    max_servers_per_net: Option<u16>,
    /// List every server that completes a handshake, without liveness probes.
    #[arg(long)]
    no_probes: bool,
    /// Most game servers in all. [default: 1000000]
    #[arg(long, value_name = "N")]
    max_servers: Option<usize>,
    /// Publish each core's shard to the others at most this often. [default: 250]
    #[arg(long, value_name = "MS")]
    list_refresh_ms: Option<u64>,
    /// KiB of a multi-packet reply sent at once before pacing starts. [default: 96]
    #[arg(long, value_name = "KIB")]
    pace_window_kib: Option<u32>,
    /// KiB per second per client after the window. [default: 4096]
    #[arg(long, value_name = "KIB")]
    pace_rate_kib: Option<u32>,
    /// A network (CIDR, or one address) whose queries are never limited by admission control —
    /// a server-list website, monitoring, a benchmark on loopback. Repeatable; adds to the config's
    /// `admission.trusted`.
    #[arg(long, value_name = "CIDR")]
    trust: Vec<String>,
    /// Send one datagram per system call instead of UDP GSO.
    #[arg(long)]
    no_gso: bool,
    /// Microseconds a core naps to gather a storm of game-server datagrams before it reads
    /// again; 0: never. [default: 250]
    #[arg(long, value_name = "US")]
    coalesce_us: Option<u64>,
    /// The operator's HTTP listener (status page, /metrics, JSON API), or `off`.
    /// [default: 127.0.0.1:27080]
    #[arg(long, value_name = "ADDR:PORT|off")]
    http: Option<String>,
    /// The public HTTP listener: read-only lists for anyone (Xash3D FWGS's
    /// /v1/servers/<gamedir>, the JSON API /api/v1/servers, a server browser at /), or `off`.
    /// [default: off]
    #[arg(long, value_name = "ADDR:PORT|off")]
    public_http: Option<String>,
    /// Keep the list across restarts in this file (written every `state_interval_secs` and at
    /// shutdown, read at start).
    #[arg(long, value_name = "FILE")]
    state_file: Option<PathBuf>,
    /// The challenge secret (64 hex digits), the same file on every master behind one address.
    #[arg(long, value_name = "FILE")]
    challenge_secret_file: Option<PathBuf>,
    /// Another master to exchange registrations with (its peering HOST:PORT); repeatable.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    peers: Vec<String>,
    /// The peers' shared key (64 hex digits).
    #[arg(long, value_name = "FILE")]
    peer_key_file: Option<PathBuf>,
    /// Where this master's peering socket listens. [default: 0.0.0.0:27951 with peers]
    #[arg(long, value_name = "ADDR:PORT")]
    peer_listen: Option<String>,
    /// A network (CIDR, or one address) to ban: its servers are delisted, its datagrams dropped.
    /// Repeatable; adds to the config's `ban`.
    #[arg(long, value_name = "CIDR")]
    ban: Vec<String>,
}

/// Hands what mimalloc freed back to the OS: on this thread, the pages whose purge delay has
/// passed; with `now`, everything freed anywhere (the list builder, after a rebuild freed the
/// previous list). A thread that has gone quiet otherwise keeps its freed pages: after a million
/// registrations ~60 MiB stayed resident with nothing in them (docs/benchmarks.md, "Memory").
fn release_freed_memory(now: bool) {
    // SAFETY: mi_collect takes no pointers; it works on the calling thread's heap and the arenas.
    unsafe { libmimalloc_sys::mi_collect(now && std::env::var_os("NOFORCE").is_none()) }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => {
            use clap::CommandFactory;
            // Printing help to a closed stdout is not worth a panic.
            let _ = Cli::command().print_help();
            ExitCode::SUCCESS
        }
        Some(Command::DefaultConfig) => {
            print!("{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Some(Command::CheckConfig { file }) => {
            match config::File::load(&file).and_then(|f| {
                f.operations()?;
                f.settings(engine::sys::allowed_cpus().len(), [0; 16])
            }) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("muster: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Serve(s)) => match serve(s) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("muster: error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn overrides(s: &Serve) -> Overrides {
    Overrides {
        listen: s.listen.clone(),
        cores: s.cores,
        allow_private: s.allow_private,
        server_timeout: s.server_timeout,
        max_servers: s.max_servers,
        max_servers_per_ip: s.max_servers_per_ip,
        max_servers_per_net: s.max_servers_per_net,
        no_probes: s.no_probes,
        list_refresh_ms: s.list_refresh_ms,
        pace_window_kib: s.pace_window_kib,
        pace_rate_kib: s.pace_rate_kib,
        trusted: s.trust.clone(),
        no_gso: s.no_gso,
        coalesce_us: s.coalesce_us,
        ban: s.ban.clone(),
        http_listen: s.http.clone(),
        public_http: s.public_http.clone(),
        state_file: s.state_file.as_ref().map(|p| p.display().to_string()),
        challenge_secret_file: s
            .challenge_secret_file
            .as_ref()
            .map(|p| p.display().to_string()),
        peers: s.peers.clone(),
        peer_key_file: s.peer_key_file.as_ref().map(|p| p.display().to_string()),
        peer_listen: s.peer_listen.clone(),
    }
}

/// Reads the state file for the engine to restore; a file that cannot be used is reported in
/// one line and ignored (the master starts with an empty list).
fn read_state(path: &std::path::Path) -> (Option<std::sync::Arc<muster::state::Body>>, String) {
    use muster::state::{StateError, read};
    match read(path) {
        Ok(body) => {
            let age = engine::unix_now_ms().saturating_sub(body.written_unix_ms) / 1000;
            let msg = format!(
                "{} servers read from the state file, written {age} s ago",
                body.records.len()
            );
            tracing::info!(file = %path.display(), servers = body.records.len(), age_secs = age, "state file read");
            (Some(std::sync::Arc::new(body)), msg)
        }
        Err(StateError::Missing) => {
            tracing::info!(file = %path.display(), "no state file yet; starting with an empty list");
            (None, "no state file yet".to_owned())
        }
        Err(e) => {
            tracing::warn!(
                "state file {} ignored: {e}; starting with an empty list",
                path.display()
            );
            (None, format!("ignored: {e}"))
        }
    }
}

/// Settings a reload cannot change (they shape sockets, threads and memory fixed at start).
fn needs_restart(old: &config::File, new: &config::File) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut check = |changed: bool, name| {
        if changed {
            v.push(name);
        }
    };
    check(old.listen != new.listen, "listen");
    check(old.cores != new.cores, "cores");
    check(old.max_servers != new.max_servers, "max_servers");
    check(old.max_string_mib != new.max_string_mib, "max_string_mib");
    check(
        old.list_refresh_ms != new.list_refresh_ms,
        "list_refresh_ms",
    );
    check(old.max_dp_packet != new.max_dp_packet, "max_dp_packet");
    check(old.pacing != new.pacing, "pacing");
    check(old.sockets != new.sockets, "sockets");
    check(old.http_listen != new.http_listen, "http_listen");
    check(old.public_http != new.public_http, "public_http");
    check(old.http != new.http, "http");
    check(old.state_file != new.state_file, "state_file");
    check(
        old.state_interval_secs != new.state_interval_secs,
        "state_interval_secs",
    );
    check(old.watch != new.watch, "watch");
    check(
        old.challenge_secret_file != new.challenge_secret_file,
        "challenge_secret_file",
    );
    check(old.peering != new.peering, "peering");
    v
}

fn serve(s: Serve) -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let over = overrides(&s);
    let mut file = match &s.config {
        Some(path) => config::File::load(path)?,
        None => config::File::defaults(),
    };
    file.apply(&over);
    let ops = file.operations()?;
    let cpus = engine::sys::allowed_cpus().len();
    let secret = secret()?;
    let mut settings = file.settings(cpus, secret)?;
    settings.housekeeping = Some(release_freed_memory);
    let mut control = ControlSettings::new(env!("CARGO_PKG_VERSION"));
    // The API, the state file and the watches all read the cores' dumps.
    if ops.http.is_some()
        || ops.state_file.is_some()
        || !ops.watches.is_empty()
        || ops.peering.is_some()
    {
        settings.dump_every = Some(if ops.peering.is_some() {
            muster::control::PEERING_DUMP_EVERY
        } else {
            muster::control::DUMP_EVERY
        });
    }
    control.watches = ops.watches.clone();
    control.peering = ops.peering.clone();
    if let Some(path) = &ops.state_file {
        let (body, msg) = read_state(path);
        settings.restore = body;
        control.state_at_start = Some(msg);
    }
    control.bind_http(ops.http)?;
    control.bind_public(ops.public_http)?;
    control.http_limits = ops.http_limits;
    control.public_refresh = ops.public_refresh;
    control.housekeeping = Some(release_freed_memory);
    settings.publish_lists = ops.public_http.is_some();
    let cores = settings.cores;
    let restoring = settings.restore.is_some();
    let engine = engine::start(settings)?;
    if restoring {
        // The decoded state file was allocated here and freed by the cores: hand it back now
        // (this thread then only waits, and would keep the pages).
        release_freed_memory(true);
    }
    let stop = engine.stop_flag();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, control.hup.clone())?;
    control.state_file = ops.state_file.clone();
    control.state_interval = ops.state_interval;
    control.config_file = s.config.clone();
    if let Some(path) = s.config.clone() {
        let mut running = file.clone();
        control.reload = Some(Box::new(move || {
            let mut new = config::File::load(&path).map_err(|e| e.to_string())?;
            new.apply(&over);
            // Validated as a whole, on the running core count (not a restart's).
            new.cores = running.cores;
            new.operations().map_err(|e| e.to_string())?;
            let settings = new.settings(cpus, secret).map_err(|e| e.to_string())?;
            let needs_restart = needs_restart(&running, &new);
            running = new;
            Ok(Reloaded {
                master: settings.master,
                needs_restart,
            })
        }));
    }
    let control = match muster::control::start(engine.handle(), control) {
        Ok(c) => c,
        Err(e) => {
            let _ = engine.stop();
            return Err(e.into());
        }
    };
    let addrs: Vec<String> = engine.local_addrs().iter().map(|a| a.to_string()).collect();
    let plural = if cores == 1 { "" } else { "s" };
    println!(
        "muster: serving on {} ({cores} core{plural})",
        addrs.join(", ")
    );
    if let Some(http) = control.http_addr() {
        println!("muster: status page on http://{http}/ (metrics: /metrics)");
    }
    if let Some(public) = control.public_addr() {
        println!(
            "muster: public lists on http://{public}/ (Xash3D FWGS: masterstatic http://{public})"
        );
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let report = engine.join();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let finished = control.finish();
    let report = report?;
    log_report(&report);
    finished?;
    Ok(())
}

/// The challenge secret: fresh per process (challenges are short-lived; a restart only costs a
/// game server one more round trip).
fn secret() -> std::io::Result<[u8; 16]> {
    use std::io::Read;
    let mut s = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut s)?;
    Ok(s)
}

fn log_report(r: &Report) {
    let c = &r.shard;
    let e = &r.engine;
    tracing::info!(
        received = c.received,
        answered = c.answered,
        challenges_sent = c.challenges_sent,
        registered = c.registered,
        refreshed = c.refreshed,
        expired = c.expired,
        valve_queries = c.valve_queries,
        dp_queries = c.dp_queries,
        paced = c.paced,
        dropped = c.dropped_total(),
        datagrams_received = e.datagrams_received,
        recv_calls = e.recv_calls,
        naps = e.naps,
        datagrams_sent = e.datagrams_sent,
        send_calls = e.send_calls,
        bytes_sent = e.bytes_sent,
        gso_sends = e.gso_sends,
        send_errors = e.send_errors,
        oversized = e.oversized,
        snapshots_sent = e.snapshots_sent,
        "stopped; totals of every core"
    );
    let drops: Vec<String> = muster::master::counters::DropReason::ALL
        .iter()
        .filter(|d| c.dropped(**d) > 0)
        .map(|d| format!("{}={}", d.name(), c.dropped(*d)))
        .collect();
    if !drops.is_empty() {
        tracing::info!(reasons = %drops.join(" "), "dropped datagrams by reason");
    }
}
