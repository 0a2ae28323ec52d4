//! muster — a game master server: game servers register by heartbeat, clients and server browsers
//! ask for the list of live servers.
//!
//! # Layout
//!
//! - [`wire`]: sans-IO, byte-exact codecs for every protocol muster speaks — the Valve master query
//!   and pages ([`wire::valve_list`]), GoldSrc/Source/Xash3D registration
//!   ([`wire::valve_heartbeat`]), Quake III / DarkPlaces as dpmaster 2.2 speaks it
//!   ([`wire::dp_server`], [`wire::dp_list`]), the A2S_INFO probe ([`wire::a2s`]), infostrings
//!   ([`wire::infostring`]), the Valve filter language ([`wire::filter`]) and the datagram classifier
//!   ([`wire::classify`]). No sockets, clocks, executors or allocation on the decode path.
//! - [`master`]: the sans-IO master core, one instance per shard (core): stateless challenges
//!   ([`master::challenge`]), the compact record ([`master::record`]) and its table with caps and a
//!   timing wheel for expiry ([`master::table`], [`master::expiry`], [`master::policy`]), filter
//!   evaluation ([`master::matcher`]), the merged list of every shard with shared pre-encoded pages
//!   ([`master::list`]), and the state machine that ties them ([`master::service`]:
//!   `handle(now, from, datagram, out)`, `tick`, snapshot publication; [`master::counters`]);
//!   which shard a source address belongs to ([`master::steer`], the function the engine's
//!   steering program computes); and, for tests and fuzzing, a byte-driven invariant checker
//!   (`master::exercise`).
//! - [`engine`]: the product around the core — one pinned glommio executor per core, each with a
//!   `SO_REUSEPORT` socket per listener (steered by source address) and its own shard, shard
//!   snapshots exchanged over a bounded channel mesh, replies sent gathered or by UDP GSO and paced
//!   per client ([`engine::core`], [`engine::socket`], [`engine::pacer`], [`engine::gso`],
//!   [`engine::sys`], [`engine::stats`]); each core reports its list sizes, merged epochs and
//!   counters over a bounded channel ([`engine::status`]).
//! - [`config`]: the `serve` configuration — the embedded commented TOML defaults, files laid over
//!   them, command-line overrides, validation into [`engine::Settings`].
//!
//! The binary (`src/main.rs`) parses the command line, sets up logging and signals, and runs the
//! engine. The load generator (`loadgen/`, its own crate) reuses [`wire`].

pub mod config;
pub mod engine;
pub mod master;
pub mod wire;
