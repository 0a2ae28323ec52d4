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
//!
//! The binary (`src/main.rs`) parses the command line. The master core, the engine and the load
//! generator (`loadgen/`, its own crate, reusing [`wire`]) build on these codecs.

pub mod master;
pub mod wire;
