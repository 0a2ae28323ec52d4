//! (lint scope) Outside tests, `master/` may not unwrap, expect, panic, index unchecked or overflow:
//! every path here runs on datagrams from the network, as `wire/` does.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

//! The sans-IO master core: registration, challenges, expiry, caps, filters and list pages.
//!
//! A pure state machine per shard: it takes `now`, the peer address and a datagram, and says what to
//! send and what changed. No sockets, clocks or executors: the engine runs one instance per core,
//! simulations drive it with a virtual clock.
//!
//! | module | job |
//! |---|---|
//! | [`time`] | the caller's monotonic milliseconds |
//! | [`bucket`] | token buckets with debt (a whole list is never cut short) |
//! | [`budget`] | the global `max_servers`, drawn by every shard from one atomic count |
//! | [`bounded`] | a fixed-capacity map from source address to state, evicting what is worth least |
//! | [`admission`] | who gets how many replies, bytes and scan work: per source, network, core and class; Valve walks and their proofs |
//! | [`unproven`] | the master-wide budget for DarkPlaces / Xash3D replies to unproven addresses, shared by every core |
//! | [`known`] | the sources a core answered before a flood (they keep their budget when it saturates) |
//! | [`bans`] | banned networks as sorted merged ranges (a binary search per datagram) |
//! | [`refused`] | the sources refused most, per core: space-saving heavy hitters in a fixed 32 counters |
//! | [`transmit`] | the transmit queue: `poll_transmit` / `poll_timeout`, paced flows, GSO runs |
//! | [`challenge`] | stateless keyed-MAC challenges for both handshakes |
//! | [`intern`] | reference-counted strings shared by records |
//! | [`record`] | the compact server record and its wire-ordered address key |
//! | [`expiry`] | the timing wheel |
//! | [`policy`] | caps, address policy, game policy, GoldSrc appids |
//! | [`games`] | Quake III-family game properties: heartbeat tags, anonymous protocols, send-empty/full (dpmaster `-g`) |
//! | [`table`] | one shard's table, its snapshots, and dumps (with last-heard times) for the operator |
//! | [`pending`] | handshakes challenged and not completed, counted against the caps (as dpmaster) |
//! | [`matcher`] | Valve filters and DP options evaluated on records |
//! | [`builder`] | the list builder: shard snapshots and their membership changes in, one shared [`list::List`] out |
//! | [`list`] | the list every core serves: Valve pages and DP responses |
//! | [`counters`] | per-shard counters and drop reasons |
//! | `exercise` | (tests and the `exercise` feature) a byte-driven script runner checking the invariants; the fuzz target `master_handle` |
//! | [`service`] | [`Master`]: `handle`, `tick`, snapshot publication, `reconfigure` (a reload), `restore` (a state file) |
//! | [`steer`] | which shard a source address belongs to (the engine's BPF computes the same) |

pub use service::{Config, Datagram, Master};
pub use time::Time;

pub mod admission;
pub mod bans;
pub mod bounded;
pub mod bucket;
pub mod budget;
pub mod builder;
pub mod challenge;
pub mod counters;
#[cfg(any(test, feature = "exercise"))]
pub mod exercise;
pub mod expiry;
pub mod games;
pub mod intern;
pub mod known;
pub mod list;
pub mod matcher;
pub mod pending;
pub mod policy;
pub mod record;
pub mod refused;
pub mod service;
pub mod steer;
pub mod table;
pub mod time;
pub mod transmit;
pub mod unproven;
