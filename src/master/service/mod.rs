//! The master as a pure state machine: `handle(now, from, local, datagram)` queues what to send,
//! `poll_transmit(now)` / `poll_timeout()` hand it out when due (`transmit.rs`), `tick(now, budget)`
//! expires servers. Every list reply is admitted first ([`crate::master::admission`]).
//!
//! One [`Master`] is one shard (one core). Registration touches only its own table; list queries are
//! answered from the [`List`] every shard shares: each shard publishes a snapshot of its table
//! ([`Master::publish`]), the [`ListBuilder`](crate::master::list::builder::ListBuilder) merges them off the
//! packet cores, and every shard installs the result ([`Master::install_list`]).
//!
//! Registration, both families (shared/docs/protocols.md §2–3):
//! - Valve: `q` → challenge (stateless MAC, nothing stored) → `0\n` heartbeat whose challenge
//!   verifies → listed or refreshed.
//! - DP: `heartbeat <known tag>` → `getinfo <challenge>` (stateless; it encodes the tag) →
//!   `infoResponse` with a verifying challenge and every required key → listed or refreshed. Only a
//!   valid `infoResponse` refreshes a DP server.
//! - `b` shutdowns are ignored and counted: they carry no proof, so honouring one would let anyone
//!   delist any server by spoofing its address (xash3d-master does the same). A server that stops
//!   leaves the list at the timeout.

use crate::master::admission::Admission;
use crate::master::admission::refused::{Source, TopRefused};
use crate::master::admission::unproven::Unproven;
use crate::master::challenge::Challenges;
use crate::master::counters::{Counters, DropReason, add, inc};
use crate::master::list::List;
use crate::master::policy::{self};
use crate::master::probe::{Due, Prober};
use crate::master::table::budget::Budget;
use crate::master::table::{ShardDump, ShardSnapshot, Table};
use crate::master::time::Time;
use crate::master::transmit::{Transmit, TxQueue};
use crate::wire::{Kind, classify};
use rejections::Rejections;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{Config, DEFAULT_MAX_STRING_BYTES, XashConfig};
pub use peer::Forwarded;

mod config;
mod peer;
mod probe;
mod query;
mod register;
mod rejections;
mod reload;
#[cfg(test)]
pub(crate) mod test_support;
mod xash_bursts;

/// List queries handled per batch while the core is saturated (the rest are shed, counted);
/// registrations in the batch are all handled, first.
pub const SATURATED_QUERY_BUDGET: usize = 16;

/// One received datagram: who sent it, which of the engine's listeners it came in on, its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub from: SocketAddr,
    pub local: u8,
    pub bytes: &'a [u8],
}

/// Whether a message registers a game server.
fn is_registration(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::ValveChallengeRequest
            | Kind::ValveHeartbeat
            | Kind::ValveShutdown
            | Kind::DpHeartbeat
            | Kind::DpInfoResponse
    )
}

/// Whether a message comes from a game server (registrations and probe answers): these keep
/// priority when the core is saturated, so a query flood cannot make listed servers miss probes.
fn from_game_server(kind: Kind) -> bool {
    is_registration(kind)
        || matches!(
            kind,
            Kind::A2sChallenge | Kind::A2sSourceInfo | Kind::A2sGoldSrcInfo
        )
}

/// One shard of the master.
#[derive(Debug)]
pub struct Master {
    config: Config,
    challenges: Challenges,
    table: Table,
    list: Arc<List>,
    shard: usize,
    admission: Admission,
    tx: TxQueue,
    /// Where filtered Valve pages are encoded (reused).
    scratch: Vec<u8>,
    counters: Counters,
    refused: TopRefused,
    prober: Prober,
    /// Probe events due this tick (reused).
    due: Vec<Due>,
    /// The last refused registration of addresses not listed (the operator's "why").
    rejections: Rejections,
    /// Xash3D bursts built from `list`, per filter.
    xash_bursts: xash_bursts::XashBursts,
}

impl Master {
    /// Shard `shard` of `shards` (the engine runs one per core; tests may run one alone).
    pub fn new(now: Time, config: Config, shard: usize, shards: usize) -> Self {
        let shards = shards.max(1);
        Self {
            challenges: Challenges::new(
                config.secret,
                config.valve_challenge_window_ms,
                config.dp_challenge_window_ms,
            ),
            table: Table::with_budget(
                now,
                config.limits.clone(),
                config
                    .budget
                    .clone()
                    .unwrap_or_else(|| Budget::shared(config.limits.max_servers, 1)),
                config.max_string_bytes.checked_div(shards).unwrap_or(0),
            ),
            list: crate::master::list::builder::empty_list(shards, config.max_dp_packet),
            shard: shard.min(shards.saturating_sub(1)),
            admission: Admission::shared(
                now,
                config.admission.clone(),
                config.unproven.clone().unwrap_or_else(|| Unproven::new(1)),
                if config.unproven.is_some() { shard } else { 0 },
            ),
            tx: TxQueue::new(config.tx),
            scratch: Vec::new(),
            counters: Counters::default(),
            refused: TopRefused::new(now),
            prober: Prober::new(now, config.probe.clone()),
            due: Vec::new(),
            rejections: Rejections::default(),
            xash_bursts: xash_bursts::XashBursts::default(),
            config,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn list(&self) -> &Arc<List> {
        &self.list
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    pub fn tx(&self) -> &TxQueue {
        &self.tx
    }

    /// Which shard this is.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// For every shard, the epoch of its snapshot in the list this shard serves (0: none yet). A
    /// test or operator compares these across cores to know every core is up to date.
    pub fn list_epochs(&self) -> Vec<u64> {
        self.list.shard_epochs()
    }

    /// Handles one datagram from `from` that came in on listener `local`. Replies are queued:
    /// [`poll_transmit`](Self::poll_transmit) hands them out. `Err` says why it had no effect
    /// (also counted).
    pub fn handle(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        inc(&mut self.counters.received);
        let from = policy::canonical(from);
        let done = if self.config.bans.contains(from.ip()) {
            Err(DropReason::Banned)
        } else {
            self.dispatch(now, from, local, datagram)
        };
        if let Err(why) = done {
            self.counters.drop(why);
            if is_registration(classify(datagram)) {
                self.rejections.record(now, from, why);
            }
            if why.is_refusal() {
                self.refused.record(now, from.ip());
            }
        }
        let a = self.admission.stats();
        let c = &mut self.counters;
        (
            c.walks,
            c.walk_proofs,
            c.wrong_continuations,
            c.unproven_bytes,
        ) = (a.walks, a.proofs, a.wrong_continuations, a.unproven_bytes);
        done
    }

    fn dispatch(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        match classify(datagram) {
            Kind::ValveListQuery => self.valve_query(now, from, local, datagram),
            Kind::ValveChallengeRequest | Kind::ValveHeartbeat | Kind::ValveShutdown => {
                self.valve_server(now, from, local, datagram)
            }
            Kind::DpHeartbeat => self.dp_heartbeat(now, from, local, datagram),
            Kind::DpInfoResponse => self.dp_info(now, from, local, datagram),
            Kind::A2sChallenge | Kind::A2sSourceInfo | Kind::A2sGoldSrcInfo => {
                self.probe_answer(now, from, classify(datagram), datagram)
            }
            Kind::DpGetServers | Kind::DpGetServersExt => self.dp_query(now, from, local, datagram),
            Kind::Unknown => Err(DropReason::Unknown),
            _ => Err(DropReason::Unexpected),
        }
    }

    /// Handles a batch of datagrams: registrations and probe answers first, then list queries — at most
    /// [`SATURATED_QUERY_BUDGET`] of them when `saturated` (the engine's receive queue is backing
    /// up), the rest shed and counted, so game servers keep registering whatever the query load.
    /// Returns how many datagrams were not from game servers (clients' queries and the rest): the
    /// engine never delays its next read when a client is waiting.
    pub fn handle_batch(&mut self, now: Time, batch: &[Datagram<'_>], saturated: bool) -> usize {
        let mut from_servers: usize = 0;
        for d in batch.iter().filter(|d| from_game_server(classify(d.bytes))) {
            from_servers = from_servers.saturating_add(1);
            let _ = self.handle(now, d.from, d.local, d.bytes);
        }
        let mut budget = if saturated {
            SATURATED_QUERY_BUDGET
        } else {
            usize::MAX
        };
        for d in batch
            .iter()
            .filter(|d| !from_game_server(classify(d.bytes)))
        {
            match budget.checked_sub(1) {
                Some(left) => {
                    budget = left;
                    let _ = self.handle(now, d.from, d.local, d.bytes);
                }
                None => {
                    inc(&mut self.counters.received);
                    self.counters.drop(DropReason::Shed);
                }
            }
        }
        batch.len().saturating_sub(from_servers)
    }

    /// Moves what is due at `now` into `out` (at most `max` transmits).
    pub fn poll_transmit(&mut self, now: Time, out: &mut Vec<Transmit>, max: usize) {
        self.tx.poll_transmit(now, out, max);
    }

    /// Puts back, at the front and in order, transmits the socket did not take.
    pub fn unsent(&mut self, back: impl DoubleEndedIterator<Item = Transmit>) {
        self.tx.unsent(back);
    }

    /// When something next comes due to send (`None`: nothing queued).
    pub fn poll_timeout(&mut self) -> Option<Time> {
        self.tx.poll_timeout()
    }

    /// Every transmit due at `now` (tests and simulations).
    pub fn transmits(&mut self, now: Time) -> Vec<Transmit> {
        let mut out = Vec::new();
        self.tx.poll_transmit(now, &mut out, usize::MAX);
        out
    }

    /// The kernel refused GSO: send one datagram per transmit from now on.
    pub fn disable_gso(&mut self) {
        self.tx.disable_gso();
    }

    /// Expires silent servers, visiting at most `budget` expiry entries, then sends the liveness
    /// probes that came due (at most `budget` events). Returns `true` when all due work is done
    /// (`false`: call again soon).
    pub fn tick(&mut self, now: Time, budget: usize) -> bool {
        let (expired, done) = self.table.expire(now, budget);
        add(&mut self.counters.expired, expired as u64);
        if !done {
            return false;
        }
        self.probe(now, budget)
    }

    /// This shard's liveness probes (schedule and per-server state).
    pub fn prober(&self) -> &Prober {
        &self.prober
    }

    /// A snapshot of this shard if anything a list reads changed since the last one: the engine
    /// hands it to the list builder.
    pub fn publish(&mut self) -> Option<Arc<ShardSnapshot>> {
        self.table.changed().then(|| self.table.snapshot())
    }

    /// Every listed server of this shard with when it was last heard (the operator's view).
    pub fn dump(&self) -> ShardDump {
        let mut d = self.table.dump();
        if self.prober.enabled() {
            d.probes = self.prober.briefs(self.table.slots());
        }
        d.rejections = self.rejections.list();
        d
    }

    /// The sources refused most over the last minute or two, most first.
    pub fn top_refused(&mut self, now: Time) -> Vec<(Source, u64)> {
        self.refused.report(now)
    }

    /// Serves `list` from now on (ignored if older than the one held).
    pub fn install_list(&mut self, list: Arc<List>) {
        if list.epoch > self.list.epoch {
            self.list = list;
            self.xash_bursts.clear();
        }
    }
}
