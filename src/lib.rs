//! muster — a game master server: game servers register by heartbeat, clients and server browsers
//! ask for the list of live servers.
//!
//! # Layout
//!
//! - [`wire`]: sans-IO, byte-exact codecs for every protocol muster speaks — the Valve master query
//!   and pages ([`wire::valve_list`]), GoldSrc/Source/Xash3D registration
//!   ([`wire::valve_heartbeat`]), Quake III / DarkPlaces as dpmaster 2.2 speaks it
//!   ([`wire::dp_server`], [`wire::dp_list`]), Xash3D FWGS queries and their bursts
//!   ([`wire::xash`]), the A2S_INFO probe ([`wire::a2s`]), infostrings
//!   ([`wire::infostring`]), the Valve filter language ([`wire::filter`]) and the datagram classifier
//!   ([`wire::classify`]). No sockets, clocks, executors or allocation on the decode path.
//! - [`master`]: the sans-IO master core, one instance per shard (core): stateless challenges
//!   ([`master::challenge`]) and the handshakes in progress that count against the caps
//!   ([`master::pending`]), admission control of every reply — Valve walks and their proofs,
//!   budgets per source, network and core ([`master::admission`], [`master::bucket`],
//!   [`master::bounded`]), one master-wide budget for replies to unproven addresses shared by
//!   every core ([`master::unproven`]), the sources known from before a flood
//!   ([`master::known`]) — the transmit queue of paced flows
//!   ([`master::transmit`]), the compact record ([`master::record`]) with interned strings under a
//!   bounded total ([`master::intern`]) and its table with caps and a timing wheel for expiry
//!   ([`master::table`], [`master::expiry`], [`master::policy`]), Quake III-family game properties
//!   (heartbeat tags, anonymous protocols: [`master::games`]), the global `max_servers` shared by
//!   every shard through one atomic count ([`master::budget`]), filter evaluation
//!   ([`master::matcher`]), the list builder that turns every shard's snapshots into one list
//!   ([`master::builder`]), that list with its shared pre-encoded pages ([`master::list`]), banned
//!   networks ([`master::bans`]), the sources refused most ([`master::refused`]), and the
//!   state machine that ties them ([`master::service`]: `handle(now, from, datagram, out)`, `tick`,
//!   `poll_transmit`, snapshot publication; [`master::counters`]); which shard a source address
//!   belongs to ([`master::steer`], the function the engine's steering program computes); and, for
//!   tests and fuzzing, a byte-driven invariant checker (`master::exercise`).
//! - [`engine`]: the product around the core — one pinned glommio executor per core, each with a
//!   `SO_REUSEPORT` socket per listener (steered by source address), its own shard, batched
//!   `recvmmsg`/`sendmmsg` of GSO runs and one pacing tick ([`engine::core`], [`engine::socket`],
//!   [`engine::sys`], [`engine::stats`]); the list builder's thread off the packet cores, which
//!   takes every core's snapshots over bounded channels and hands each core the shared list
//!   ([`engine::builder`]); each core reports its list sizes, epochs and counters over a bounded
//!   channel ([`engine::status`]).
//!   Each core also dumps its shard (records, last-heard times, top refused sources) every second
//!   for the control thread ([`engine::CoreDump`]), takes reloaded configurations
//!   ([`engine::EngineHandle::reconfigure`]), restores its share of a state file at start, and a
//!   core that dies stops them all ([`engine::Engine::join`]).
//! - [`control`]: the operator's side, on a thread of its own off the packet cores — the last hour
//!   of rates ([`control::history`]), the minute's summary line, the state file written on an
//!   interval and at shutdown, SIGHUP reloads, systemd's watchdog — and the HTTP side on threads of
//!   its own (hyper on a small tokio runtime per listener, every connection bounded:
//!   [`control::serve`], [`control::limits`], [`control::conns`], [`control::stall`],
//!   [`control::request`], [`control::reply`]): the operator's listener with the status page,
//!   Prometheus metrics and the JSON API ([`control::http`], [`control::metrics`],
//!   [`control::view`]), and the public one with read-only lists built once per list publication
//!   ([`control::lists`], [`control::public`], [`control::fwgs`]: Xash3D FWGS's HTTP server list,
//!   a JSON API, a server browser page).
//! - [`state`]: the state file's versioned, checksummed format (pure encode/decode) and its atomic
//!   write.
//! - [`config`]: the `serve` configuration — the embedded commented TOML defaults, files laid over
//!   them, command-line overrides, validation into [`engine::Settings`] and
//!   [`config::Operations`] (HTTP listener, state file).
//!
//! The binary (`src/main.rs`) parses the command line (`serve`, `check-config`,
//! `default-config`), sets up logging and signals (SIGINT/SIGTERM stop, SIGHUP reloads), reads the
//! state file, runs the engine and the control thread, and tells systemd READY/STOPPING. The load generator (`loadgen/`, its own crate) reuses [`wire`].

pub mod config;
pub mod control;
pub mod engine;
pub mod master;
pub mod state;
pub mod wire;
