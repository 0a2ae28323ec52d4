//! muster — a game master server: game servers register by heartbeat, clients and server browsers
//! ask for the list of live servers.
//!
//! # Layout
//!
//! One line per layer; each module's own table (in its `mod.rs`) names its parts.
//!
//! - [`wire`]: sans-IO, byte-exact codecs for every protocol muster speaks — decode and encode,
//!   no sockets, clocks or allocation on the decode path.
//! - [`master`]: the sans-IO master core, one [`master::Master`] per shard (core): registration,
//!   admission control of every reply, the table, the shared list, the transmit queue.
//! - [`engine`]: the product around the core — a pinned glommio executor, sockets and a shard per
//!   core, the list builder's thread, status and dumps over bounded channels.
//! - [`control`]: the operator's side off the packet cores — state file, reloads, watchdog,
//!   history — the HTTP listeners (operator and public), and down alerts for `[[watch]]`ed
//!   servers (`control::watch` and `control::notifier` sans-IO, `control::message` and
//!   `control::webhook` pure, the POSTs on the `muster-alerts` thread in `control::alert`).
//! - [`state`]: the state file's versioned, checksummed format.
//! - [`config`]: the `serve` configuration — embedded TOML defaults, files, flags, validation.
//!
//! Dependencies run one way: `wire` ← `master` ← `state` ← `engine` ← `control` ← `config` (each
//! uses only those to its left: `master` never names `engine`, `wire` never names `master`;
//! `config` builds the settings of `engine` and `control`). The binary (`src/main.rs`)
//! wires them together: command line, logging, signals, the state file, the engine, the control
//! thread, systemd. The load generator (`loadgen/`, its own crate) reuses [`wire`].

pub mod config;
pub mod control;
pub mod engine;
pub mod master;
pub mod state;
pub mod wire;
