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
//!   `handle(now, from, datagram, out)`, `tick`, snapshot publication; [`master::counters`]).
//!
//! The binary (`src/main.rs`) parses the command line. The engine (sockets, cores, clocks) and the
//! load generator (`loadgen/`, its own crate, reusing [`wire`]) build on these.

pub mod master;
pub mod wire;
