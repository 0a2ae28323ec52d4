//! Per-core engine counters (socket-level events the sans-IO core does not see), plain integers
//! summed on demand.

use crate::master::counters::Counters;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Datagrams longer than `core::MAX_DATAGRAM`, dropped unread.
    pub oversized: u64,
    pub recv_errors: u64,
    /// Sends the kernel refused (other than a full socket buffer).
    pub send_errors: u64,
    /// Sends that found the socket buffer full and waited or were rescheduled.
    pub send_would_block: u64,
    /// Datagrams sent (all paths).
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    /// `sendmsg` calls that carried several datagrams by GSO.
    pub gso_sends: u64,
    /// GSO refused by the kernel: the core switched to one datagram per call.
    pub gso_fallbacks: u64,
    /// Multi-packet replies that needed pacing beyond their burst.
    pub paced_replies: u64,
    /// Paced replies refused because `pacing.max_clients` were in flight (the burst was sent).
    pub pacer_full: u64,
    /// Shard snapshots sent to other cores.
    pub snapshots_sent: u64,
    /// Snapshots not sent because a peer's channel was full (the latest is retried).
    pub snapshots_deferred: u64,
    /// Merged-list rebuilds.
    pub list_rebuilds: u64,
    /// Status reports dropped because the watcher's channel was full.
    pub status_dropped: u64,
}

impl EngineCounters {
    pub fn add(&mut self, o: &EngineCounters) {
        self.oversized += o.oversized;
        self.recv_errors += o.recv_errors;
        self.send_errors += o.send_errors;
        self.send_would_block += o.send_would_block;
        self.datagrams_sent += o.datagrams_sent;
        self.bytes_sent += o.bytes_sent;
        self.gso_sends += o.gso_sends;
        self.gso_fallbacks += o.gso_fallbacks;
        self.paced_replies += o.paced_replies;
        self.pacer_full += o.pacer_full;
        self.snapshots_sent += o.snapshots_sent;
        self.snapshots_deferred += o.snapshots_deferred;
        self.list_rebuilds += o.list_rebuilds;
        self.status_dropped += o.status_dropped;
    }
}

/// Counters of every core, summed, plus each core's own.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub shard: Counters,
    pub engine: EngineCounters,
    pub per_core: Vec<(Counters, EngineCounters)>,
}

impl Report {
    pub fn add(&mut self, shard: &Counters, engine: &EngineCounters) {
        self.shard += shard;
        self.engine.add(engine);
        self.per_core.push((*shard, *engine));
    }
}
