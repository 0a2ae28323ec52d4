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

//! The sans-IO master core: registration, challenges, admission, expiry, caps, filters and lists.
//!
//! A pure state machine per shard: it takes `now`, the peer address and a datagram, and says what to
//! send and what changed. No sockets, clocks or executors: the engine runs one instance per core,
//! simulations drive it with a virtual clock. docs/master-core.md tells the whole story.
//!
//! | module | job |
//! |---|---|
//! | [`service`] | [`Master`], one shard: [`Master::handle`] a datagram (registration, queries), [`Master::poll_transmit`] what is due, [`Master::tick`] expiry and due liveness probes (`service/probe.rs`), snapshot publication, reload and restore, the last refused registrations (`service/rejections.rs`), Xash3D bursts kept per list and filter (`service/xash_bursts.rs`) |
//! | [`admission`] | who gets how many replies, bytes and how much scan work: Valve walks and their proofs, token buckets per source, network and core, the master-wide budget for unproven replies, the sources known from before a flood, the sources refused most |
//! | [`table`] | one shard's servers: the compact record, interned strings, the expiry wheel, the global `max_servers` budget, handshakes in progress |
//! | [`list`] | the list every core serves (Valve pages, Xash3D bursts, DP replies), the builder that merges every shard's snapshot into it, filter evaluation |
//! | [`policy`] | caps, address and game policy, GoldSrc appids, Quake III-family game properties, banned networks |
//! | [`probe`] | liveness probes: each listed server's probe schedule and state, pacing, why a server is hidden, clone counts |
//! | [`challenge`] | stateless keyed-MAC challenges for both handshakes; the keyed randomness of Valve walks |
//! | [`transmit`] | the transmit queue: `poll_transmit` / `poll_timeout`, paced flows, GSO runs |
//! | [`counters`] | per-shard counters and the reasons a datagram is dropped ([`DropReason`]) |
//! | [`steer`] | which shard a source address belongs to (the engine's BPF computes the same) |
//! | [`time`] | the caller's monotonic milliseconds |
//! | `invariants` | (tests and the `invariants` feature) a byte-driven script runner checking the invariants; the fuzz target `master_handle` |
//!
//! Dependencies run one way: `service` uses every other module; `list` reads `table` snapshots;
//! `admission` and `table` know nothing of each other or of `list`.

pub use admission::bucket::Rate;
pub use admission::unproven::Unproven;
pub use admission::{AdmissionConfig, ClassLimits};
pub use counters::{Counters, DropReason};
pub use list::builder::ListBuilder;
pub use list::{List, Packets};
pub use policy::bans::NetSet;
pub use policy::games::Games;
pub use policy::{GamePolicy, IpKey, Limits};
pub use service::{Config, Datagram, Forwarded, Master, XashConfig};
pub use table::budget::Budget;
pub use table::record::{AddrKey, Family, Server};
pub use table::{Fields, ShardDump, ShardSnapshot, Table};
pub use time::Time;
pub use transmit::{Transmit, TxConfig};

pub mod admission;
pub mod challenge;
pub mod counters;
#[cfg(any(test, feature = "invariants"))]
pub mod invariants;
pub mod list;
pub mod policy;
pub mod probe;
pub mod service;
pub mod steer;
pub mod table;
pub mod time;
pub mod transmit;
