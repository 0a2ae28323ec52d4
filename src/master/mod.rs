//! The sans-IO master core: registration, challenges, expiry, caps, filters and list pages.
//!
//! A pure state machine per shard: it takes `now`, the peer address and a datagram, and says what to
//! send and what changed. No sockets, clocks or executors: the engine runs one instance per core,
//! simulations drive it with a virtual clock.
//!
//! | module | job |
//! |---|---|
//! | [`time`] | the caller's monotonic milliseconds |
//! | [`challenge`] | stateless keyed-MAC challenges for both handshakes |
//! | [`intern`] | reference-counted strings shared by records |
//! | [`record`] | the compact server record and its wire-ordered address key |
//! | [`expiry`] | the timing wheel |
//! | [`policy`] | caps, address policy, DP tags and game policy |
//! | [`table`] | one shard's table and its snapshots |
//! | [`matcher`] | Valve filters and DP options evaluated on records |
//! | [`list`] | the merged list of every shard: Valve pages and DP responses |
//! | [`counters`] | per-shard counters and drop reasons |
//! | [`service`] | [`Master`]: `handle`, `tick`, snapshot publication |

pub use service::{Config, Master, Reply};
pub use time::Time;

pub mod challenge;
pub mod counters;
pub mod expiry;
pub mod intern;
pub mod list;
pub mod matcher;
pub mod policy;
pub mod record;
pub mod service;
pub mod table;
pub mod time;
