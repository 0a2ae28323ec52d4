//! What each core reports about itself, pushed every main-loop tick over a bounded crossbeam
//! channel to whoever watches the engine (tests asking whether every core is ready; the operator's
//! control thread). Nothing is shared with the packet path but the channel's sending end: a core
//! never blocks on it, and a full channel drops the report (the next tick sends a newer one, and
//! every figure in it is cumulative, so nothing is lost but freshness).

use super::stats::EngineCounters;
use crate::master::Counters;
use crate::master::ShardDump;
use crate::master::Time;
use crate::master::admission::refused::Source;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::Mutex;

/// Reports queued per core before a core's pushes are dropped (the watcher reads the latest only).
pub const STATUS_QUEUE_PER_CORE: usize = 4;

/// One core's view of itself at one tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreStatus {
    pub core: usize,
    /// Monotonic milliseconds since the engine started, when this was taken.
    pub at_ms: u64,
    /// Servers in the list this core serves: Valve (IPv4) and DP.
    pub valve_listed: usize,
    pub dp_listed: usize,
    /// Servers in this core's own shard of the table.
    pub shard_servers: usize,
    /// For every shard, the epoch of its snapshot in the list this core serves (0: none yet).
    pub merged_epochs: Vec<u64>,
    pub counters: Counters,
    pub engine: EngineCounters,
}

/// Dumps queued per core for the control thread before a core's pushes are dropped.
pub const DUMPS_PER_CORE: usize = 2;

/// One core's whole shard, pushed every [`Settings::dump_every`](super::Settings::dump_every) and
/// once more as the core stops: the control thread lists servers from it (JSON API) and writes
/// the state file. Sharing, not copying: see [`ShardDump`].
#[derive(Debug)]
pub struct CoreDump {
    pub core: usize,
    /// When it was taken, on the engine's clock.
    pub at: Time,
    pub shard: ShardDump,
    /// The sources this core refused most lately.
    pub top_refused: Vec<(Source, u64)>,
    /// Sources and networks admission control tracks on this core.
    pub tracked: (usize, usize),
    /// The core is stopping: this is its last dump.
    pub last: bool,
}

/// The cores' sending end.
#[derive(Clone, Debug)]
pub struct StatusSender(Sender<CoreStatus>);

impl StatusSender {
    /// Never blocks; `false` if the report was dropped because the channel is full.
    pub fn push(&self, s: CoreStatus) -> bool {
        match self.0.try_send(s) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The watcher's end: drains the channel and keeps each core's latest report. Shared by whoever
/// watches (the control thread, tests); never touched by a packet core.
#[derive(Debug)]
pub struct StatusBoard {
    rx: Receiver<CoreStatus>,
    latest: Mutex<Vec<Option<CoreStatus>>>,
}

/// A channel for `cores` cores.
pub fn channel(cores: usize) -> (StatusSender, StatusBoard) {
    let (tx, rx) = crossbeam_channel::bounded(cores.max(1) * STATUS_QUEUE_PER_CORE);
    (
        StatusSender(tx),
        StatusBoard {
            rx,
            latest: Mutex::new(vec![None; cores]),
        },
    )
}

impl StatusBoard {
    /// Each core's latest report (`None`: not reported yet), after taking in everything queued.
    pub fn latest(&self) -> Vec<Option<CoreStatus>> {
        let mut latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for s in self.rx.try_iter() {
            if let Some(slot) = latest.get_mut(s.core) {
                // Reports of one core arrive in order; keep the newest.
                if slot.as_ref().is_none_or(|held| held.at_ms <= s.at_ms) {
                    *slot = Some(s);
                }
            }
        }
        latest.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_keeps_each_cores_latest_and_a_full_channel_drops() {
        let (tx, board) = channel(2);
        let at = |core, at_ms, valve_listed| CoreStatus {
            core,
            at_ms,
            valve_listed,
            ..CoreStatus::default()
        };
        assert_eq!(board.latest(), vec![None, None]);
        for t in 0..(2 * STATUS_QUEUE_PER_CORE as u64) {
            assert!(tx.push(at(0, t, t as usize)));
        }
        assert!(!tx.push(at(1, 99, 1)), "full: dropped, not blocked");
        let l = board.latest();
        assert_eq!(l[0].as_ref().map(|s| s.valve_listed), Some(7));
        assert_eq!(l[1], None);
        assert!(tx.push(at(1, 100, 5)));
        assert!(
            tx.push(at(9, 100, 5)),
            "an unknown core is ignored by the board"
        );
        let l = board.latest();
        assert_eq!(l[1].as_ref().map(|s| s.valve_listed), Some(5));
        assert_eq!(l[0].as_ref().map(|s| s.at_ms), Some(7), "kept");
    }
}
