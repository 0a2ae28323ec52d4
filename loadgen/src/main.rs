//! `muster-loadgen`: load generator for game master servers — any master that speaks the Valve and
//! Quake III / DarkPlaces protocols, not only muster. Loopback targets only.
//!
//! | module | job |
//! |---|---|
//! | [`fleet`] | simulated game servers: handshakes, re-heartbeats, A2S_INFO / getinfo answers |
//! | [`query`] | list-query load, closed and open loop, latency histograms |
//! | [`flood`] | attack traffic and the amplification it earns |
//! | [`floor`] | the kernel's floor under a registration: a responder that does nothing else |
//! | [`crawl`] | the seed crawler's flow: lists per region, then A2S_INFO everything |
//! | [`blast`] | the loopback ceiling: send_to, sendmmsg, GSO |
//! | [`batch`] | batched receives (`recvmmsg`, `UDP_GRO` runs split back into datagrams) |
//! | [`pktinfo`] | many source addresses through few wildcard sockets (`IP_PKTINFO`), batched |
//! | [`schedule`] | closed/open-loop start times |
//! | [`sources`] | simulated hosts (127.b.c.d) and their sockets |
//! | [`report`] | histograms, JSON, the progress line |
//! | [`plot`] | the SVG latency plot |

mod batch;
mod blast;
mod crawl;
mod fleet;
mod flood;
mod floor;
mod pktinfo;
mod plot;
mod query;
mod report;
mod schedule;
mod sources;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for game master servers (Valve master query, GoldSrc/Source heartbeats,
/// Quake III / DarkPlaces). Every run stops by itself (--duration, --count); targets must be on
/// loopback. Results print to stdout; --json FILE writes them as JSON.
#[derive(Debug, Parser)]
#[command(name = "muster-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Common {
    /// Master to aim at (HOST:PORT, loopback only); repeat for several masters.
    #[arg(long, required = true, value_name = "HOST:PORT")]
    target: Vec<SocketAddr>,
    /// Stop after this many seconds (a fleet also stops at SIGINT/SIGTERM, reporting what it did).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    duration: f64,
    /// Stop after this many operations (handshakes, lists, datagrams).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulated game servers registering (real handshakes), re-heartbeating, answering A2S_INFO.
    Fleet {
        #[command(flatten)]
        common: Common,
        /// How many game servers.
        #[arg(long, default_value_t = 100)]
        servers: usize,
        #[arg(long, value_enum, default_value = "mixed")]
        protocol: fleet::Protocol,
        /// Servers per simulated host (127.b.c.d), one wildcard socket each; keep it under the
        /// master's per-address cap. The fleet holds this many sockets, whatever its size.
        #[arg(long, default_value_t = 16)]
        per_host: usize,
        /// Seconds between a server's heartbeats.
        #[arg(long, default_value_t = 300.0)]
        interval: f64,
        /// New handshakes started per second while the fleet comes up.
        #[arg(long, default_value_t = 20_000.0)]
        rate: f64,
        /// Answer A2S_INFO with the S2C_CHALLENGE step first.
        #[arg(long)]
        a2s_challenge: bool,
        /// Seconds to wait for a challenge before asking again.
        #[arg(long, default_value_t = 1.0)]
        challenge_timeout: f64,
        #[arg(long, default_value_t = 3)]
        retries: u32,
        /// First octet after 127. of the simulated hosts.
        #[arg(long, default_value_t = 100)]
        source_base: u8,
        /// Change each server's player count with every heartbeat (attribute churn).
        #[arg(long)]
        vary_players: bool,
        /// Fraction of the servers that never answer a master's liveness probe.
        #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
        probe_silent: f64,
        /// Fraction that answer A2S_INFO naming another game than their heartbeat.
        #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
        probe_lying: f64,
        /// Fraction that answer probes after --probe-delay-ms.
        #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
        probe_slow: f64,
        #[arg(long, default_value_t = 500, value_name = "MS")]
        probe_delay_ms: u64,
        /// Bind the fleet's sockets to PORT, PORT+1, … (one per --per-host), so that running the
        /// fleet again re-registers the same servers. Default: ports the kernel picks.
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
        /// After the run, ask each master for its whole list and report how many of the fleet's
        /// servers it lists (`listed`; a DP registration is never acknowledged). The query comes
        /// from 127.<source-base − 1>.0.1: trust it on the master, or admission may cut the list.
        #[arg(long)]
        verify: bool,
    },
    /// List-query load: whole lists, closed loop (--concurrency) or open loop (--rate).
    Query {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value = "valve")]
        mode: query::Mode,
        /// Lists kept in flight (closed loop).
        #[arg(long, default_value_t = 1, conflicts_with = "rate")]
        concurrency: usize,
        /// Lists started per second on a fixed timetable (open loop).
        #[arg(long)]
        rate: Option<f64>,
        /// Open loop: most lists in flight (one socket each).
        #[arg(long, default_value_t = 256)]
        max_in_flight: usize,
        /// Valve region byte (255: all).
        #[arg(long, default_value_t = 255)]
        region: u8,
        /// Valve filter string, e.g. `\gamedir\cstrike`.
        #[arg(long, default_value = "")]
        filter: String,
        /// DP game name and protocol.
        #[arg(long, default_value = "Nexuiz")]
        game: String,
        #[arg(long, default_value_t = 3)]
        protocol: u32,
        /// Entries a complete list must have (counted as incomplete otherwise).
        #[arg(long)]
        expect: Option<usize>,
        /// Seconds without a packet before a page is asked again / a list times out.
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
        /// Valve page retries after a timeout.
        #[arg(long, default_value_t = 2)]
        retries: u32,
        /// Simulated client hosts.
        #[arg(long, default_value_t = 64)]
        hosts: usize,
        #[arg(long, default_value_t = 60)]
        source_base: u8,
        /// One client host in each /24 (127.<base + i/256>.<i%256>.1), not 254 to a /24: clients
        /// of as many networks, each under its own per-network budgets.
        #[arg(long)]
        per24: bool,
        /// Do not ask the kernel to coalesce datagrams (`UDP_GRO`): one receive per datagram.
        #[arg(long)]
        no_gro: bool,
        /// Receive buffer per list socket in KiB (forced past `rmem_max` when root). Default: the
        /// kernel's, as a game client has.
        #[arg(long, value_name = "KIB")]
        recv_buffer_kib: Option<usize>,
        /// Write the latency plot (SVG) here.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
    },
    /// Attack traffic (bounded): wrong challenges, challenge floods, query floods, malformed, random.
    Flood {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum)]
        kind: flood::Kind,
        /// Where the spoofed sources are: packed 254 to a /24, one per /24, or a fleet's hosts.
        #[arg(long, value_enum, default_value = "packed")]
        layout: flood::Layout,
        /// Simulated source hosts (all sent from one socket, `IP_PKTINFO`).
        #[arg(long, default_value_t = 256)]
        sources: usize,
        /// Datagrams per second, all sources together (each sends rate / sources).
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
        #[arg(long, default_value_t = 30)]
        source_base: u8,
        /// Seed of the junk generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The seed crawler's flow: one list query per region (masters rotating), then A2S_INFO all.
    Crawl {
        #[command(flatten)]
        common: Common,
        /// Region bytes to query [default: python-valve's na(0,1) sa eu as oc af rest(255)].
        #[arg(long, value_delimiter = ',')]
        regions: Vec<u8>,
        /// A2S_INFO probes in flight.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        #[arg(long, default_value_t = 1.0)]
        timeout: f64,
        #[arg(long, default_value_t = 1)]
        retries: u32,
        #[arg(long, default_value_t = 90)]
        source_base: u8,
    },
    /// The floor under a master's cost per registration: answer every DP `heartbeat` with a fixed
    /// `getinfo` (batched), nothing else. Run a fleet against it and read its CPU time.
    Floor {
        /// Where to listen (loopback only).
        #[arg(long, value_name = "HOST:PORT")]
        listen: SocketAddr,
        /// Stop after this many seconds (or at SIGINT/SIGTERM).
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        /// What to answer: `dp` (every `heartbeat` with a fixed `getinfo`) or `valve` (every
        /// `0x31` list query with one fixed full page that ends the list).
        #[arg(long, value_enum, default_value_t = floor::Answer::Dp)]
        answer: floor::Answer,
        /// After a read that did not fill its batch, sleep this many microseconds before the
        /// next (0: never), to gather datagrams as muster's receive coalescing does
        /// (`[sockets] coalesce_us`): the floor under a master that naps. At most 1,000.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1000))]
        nap_us: u64,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The loopback ceiling for one packet size: send_to, sendmmsg and GSO to a sink.
    Blast {
        /// Datagram size (1395: a full DP list packet).
        #[arg(long, default_value_t = 1395)]
        size: usize,
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        #[arg(long)]
        count: Option<u64>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
}

fn targets(c: &Common) -> Result<Vec<SocketAddr>, String> {
    c.target.iter().map(|t| sources::check_target(*t)).collect()
}

fn emit(json: &Option<PathBuf>, value: &impl Serialize) -> Result<(), String> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).map_err(|e| e.to_string())?
    );
    if let Some(p) = json {
        report::write_json(p, value)?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Fleet {
            common,
            servers,
            protocol,
            per_host,
            interval,
            rate,
            a2s_challenge,
            challenge_timeout,
            retries,
            source_base,
            vary_players,
            port,
            verify,
            probe_silent,
            probe_lying,
            probe_slow,
            probe_delay_ms,
        } => {
            let cfg = fleet::Config {
                targets: targets(&common)?,
                servers,
                protocol,
                per_host,
                source_base,
                interval: secs(interval),
                rate,
                a2s_challenge,
                challenge_timeout: secs(challenge_timeout),
                retries,
                duration: secs(common.duration),
                count: common.count,
                vary_players,
                port,
                verify,
                faults: fleet::Faults {
                    silent: probe_silent,
                    lying: probe_lying,
                    slow: probe_slow,
                    delay: Duration::from_millis(probe_delay_ms),
                },
            };
            emit(&common.json, &fleet::run(&cfg)?)
        }
        Command::Query {
            common,
            mode,
            concurrency,
            rate,
            max_in_flight,
            region,
            filter,
            game,
            protocol,
            expect,
            timeout,
            retries,
            hosts,
            source_base,
            per24,
            no_gro,
            recv_buffer_kib,
            plot: plot_file,
        } => {
            let load = match rate {
                Some(rate) => schedule::Load::Open {
                    rate,
                    max_in_flight,
                },
                None => schedule::Load::Closed { concurrency },
            };
            let cfg = query::Config {
                targets: targets(&common)?,
                mode,
                region,
                filter,
                game,
                protocol,
                load,
                count: common.count,
                duration: secs(common.duration),
                expect,
                timeout: secs(timeout),
                retries,
                source_base,
                hosts,
                per24,
                gro: !no_gro,
                recv_buffer: recv_buffer_kib.map(|k| k.saturating_mul(1024)),
            };
            let out = query::run(&cfg)?;
            if let Some(p) = plot_file {
                let title = format!("muster-loadgen query ({mode:?}, {load:?})");
                plot::latency_svg(&p, &title, &out.latency.ttfp, &out.latency.ttc)?;
            }
            emit(&common.json, &out.report)
        }
        Command::Flood {
            common,
            kind,
            layout,
            sources: n,
            rate,
            source_base,
            seed,
        } => {
            let cfg = flood::Config {
                targets: targets(&common)?,
                kind,
                layout,
                sources: n,
                rate,
                count: common.count,
                duration: secs(common.duration),
                source_base,
                seed,
            };
            emit(&common.json, &flood::run(&cfg)?)
        }
        Command::Crawl {
            common,
            regions,
            concurrency,
            timeout,
            retries,
            source_base,
        } => {
            let cfg = crawl::Config {
                masters: targets(&common)?,
                regions: if regions.is_empty() {
                    crawl::REGIONS.to_vec()
                } else {
                    regions
                },
                concurrency,
                timeout: secs(timeout),
                retries,
                source_base,
                duration: secs(common.duration),
            };
            emit(&common.json, &crawl::run(&cfg)?)
        }
        Command::Floor {
            listen,
            duration,
            answer,
            nap_us,
            json,
        } => {
            let listen = sources::check_target(listen)?;
            let r = floor::run(
                listen,
                secs(duration),
                answer,
                Duration::from_micros(nap_us),
            )?;
            emit(&json, &r)
        }
        Command::Blast {
            size,
            duration,
            count,
            json,
        } => {
            if !(1..=65_507).contains(&size) {
                return Err("--size must be 1..=65507".into());
            }
            let cfg = blast::Config {
                size,
                duration: secs(duration),
                count,
            };
            emit(&json, &blast::run(&cfg)?)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("muster-loadgen: error: {e}");
            ExitCode::FAILURE
        }
    }
}
