//! The `muster` binary: command line, logging, signals; the engine does the rest.

use clap::{Args, Parser, Subcommand};
use muster::config::{self, Overrides};
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the master server (on the embedded defaults unless --config or flags say otherwise).
    Serve(Serve),
    /// Print the commented default configuration (a starting point for --config).
    DefaultConfig,
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
        Some(Command::Serve(s)) => match serve(s) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("muster: error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(s: Serve) -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut file = match &s.config {
        Some(path) => config::File::load(path)?,
        None => config::File::defaults(),
    };
    file.apply(&Overrides {
        listen: s.listen,
        cores: s.cores,
        allow_private: s.allow_private,
        server_timeout: s.server_timeout,
        max_servers: s.max_servers,
        max_servers_per_ip: s.max_servers_per_ip,
        list_refresh_ms: s.list_refresh_ms,
        pace_window_kib: s.pace_window_kib,
        pace_rate_kib: s.pace_rate_kib,
        trusted: s.trust,
        no_gso: s.no_gso,
    });
    let mut settings = file.settings(engine::sys::allowed_cpus().len(), secret()?)?;
    settings.housekeeping = Some(release_freed_memory);
    let cores = settings.cores;
    let engine = engine::start(settings)?;
    let stop = engine.stop_flag();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while stopping exits at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let addrs: Vec<String> = engine.local_addrs().iter().map(|a| a.to_string()).collect();
    let plural = if cores == 1 { "" } else { "s" };
    println!(
        "muster: serving on {} ({cores} core{plural})",
        addrs.join(", ")
    );
    let report = engine.join()?;
    log_report(&report);
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
        datagrams_sent = e.datagrams_sent,
        send_calls = e.send_calls,
        bytes_sent = e.bytes_sent,
        gso_sends = e.gso_sends,
        send_errors = e.send_errors,
        oversized = e.oversized,
        snapshots_sent = e.snapshots_sent,
        "stopped; totals of every core"
    );
    let drops: Vec<String> = muster::master::counters::Drop::ALL
        .iter()
        .filter(|d| c.dropped(**d) > 0)
        .map(|d| format!("{}={}", d.name(), c.dropped(*d)))
        .collect();
    if !drops.is_empty() {
        tracing::info!(reasons = %drops.join(" "), "dropped datagrams by reason");
    }
}
