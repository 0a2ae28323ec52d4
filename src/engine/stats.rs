//! Per-core engine counters (socket-level events the sans-IO core does not see), plain integers
//! summed on demand.

use crate::master::Counters;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Datagrams longer than `core::MAX_DATAGRAM`, dropped unread.
    pub oversized: u64,
    pub recv_errors: u64,
    /// `recvmmsg` calls that returned datagrams, and the datagrams.
    pub recv_calls: u64,
    pub datagrams_received: u64,
    /// Receive batches handled as saturated (two full batches in a row).
    pub saturated_batches: u64,
    /// Sends the kernel refused for their destination (unreachable, refused).
    pub send_errors: u64,
    /// Flushes that found a socket buffer full (the rest was retried a tick later).
    pub send_would_block: u64,
    /// `sendmmsg` calls.
    pub send_calls: u64,
    /// Datagrams sent (all paths).
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    /// GSO runs sent (several datagrams in one message).
    pub gso_sends: u64,
    /// GSO refused by the kernel: the core switched to one datagram per transmit.
    pub gso_fallbacks: u64,
    /// Pacer ticks (flushes not driven by a receive).
    pub pace_ticks: u64,
    /// Naps taken to gather game-server datagrams (`engine::coalesce`).
    pub naps: u64,
    /// Shard snapshots handed to the list builder.
    pub snapshots_sent: u64,
    /// Publications put off because the builder had not taken the last two snapshots yet.
    pub snapshots_deferred: u64,
    /// Lists installed from the builder.
    pub lists_installed: u64,
    /// Status reports and dumps dropped because the watcher's channel was full.
    pub status_dropped: u64,
}

impl EngineCounters {
    pub fn add(&mut self, o: &EngineCounters) {
        let pairs = [
            (&mut self.oversized, o.oversized),
            (&mut self.recv_errors, o.recv_errors),
            (&mut self.recv_calls, o.recv_calls),
            (&mut self.datagrams_received, o.datagrams_received),
            (&mut self.saturated_batches, o.saturated_batches),
            (&mut self.send_errors, o.send_errors),
            (&mut self.send_would_block, o.send_would_block),
            (&mut self.send_calls, o.send_calls),
            (&mut self.datagrams_sent, o.datagrams_sent),
            (&mut self.bytes_sent, o.bytes_sent),
            (&mut self.gso_sends, o.gso_sends),
            (&mut self.gso_fallbacks, o.gso_fallbacks),
            (&mut self.pace_ticks, o.pace_ticks),
            (&mut self.naps, o.naps),
            (&mut self.snapshots_sent, o.snapshots_sent),
            (&mut self.snapshots_deferred, o.snapshots_deferred),
            (&mut self.lists_installed, o.lists_installed),
            (&mut self.status_dropped, o.status_dropped),
        ];
        for (a, b) in pairs {
            *a = a.wrapping_add(b);
        }
    }
}

/// Counters of every core, summed, plus each core's own.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub shard: Counters,
    pub engine: EngineCounters,
    pub per_core: Vec<(Counters, EngineCounters)>,
    /// What the list builder did.
    pub lists: crate::master::list::builder::BuildStats,
}

impl Report {
    pub fn add(&mut self, shard: &Counters, engine: &EngineCounters) {
        self.shard += shard;
        self.engine.add(engine);
        self.per_core.push((*shard, *engine));
    }
}
