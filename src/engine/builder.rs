//! The list builder's thread, off the packet cores: takes every core's shard snapshots (one
//! bounded channel per core, so a core never blocks and never loses one), runs the sans-IO
//! [`ListBuilder`], and hands each core the new [`List`] (a bounded channel of one per core: a core
//! that has not taken the last one yet gets the newest when it does).

use crate::master::builder::{BuildStats, ListBuilder};
use crate::master::list::List;
use crate::master::table::ShardSnapshot;
use crossbeam_channel::{Receiver, Select, Sender, TrySendError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Snapshots in flight per core: a core takes one only when its channel has room, so none is lost.
pub const SNAPSHOTS_IN_FLIGHT: usize = 2;

pub struct BuilderArgs {
    pub snapshots: Vec<Receiver<Arc<ShardSnapshot>>>,
    pub lists: Vec<Sender<Arc<List>>>,
    pub max_packet: usize,
    pub stop: Arc<AtomicBool>,
    /// How long to wait for snapshots before checking the stop flag.
    pub tick: Duration,
}

/// The thread body; returns what it did when the stop flag is set.
pub fn run(args: BuilderArgs) -> BuildStats {
    let BuilderArgs {
        snapshots,
        lists,
        max_packet,
        stop,
        tick,
    } = args;
    let mut builder = ListBuilder::new(snapshots.len(), max_packet);
    // Lists not yet taken by a core (it had not taken the one before).
    let mut pending: Vec<Option<Arc<List>>> = vec![None; lists.len()];
    while !stop.load(Ordering::Relaxed) {
        let mut sel = Select::new();
        for r in &snapshots {
            sel.recv(r);
        }
        // Wait for a snapshot (or the tick, to see the stop flag and retry pending lists).
        let _ = sel.ready_timeout(tick);
        let mut got = false;
        for (shard, r) in snapshots.iter().enumerate() {
            while let Ok(snap) = r.try_recv() {
                builder.apply(shard, snap);
                got = true;
            }
        }
        if got && let Some(list) = builder.build() {
            pending.iter_mut().for_each(|p| *p = Some(list.clone()));
        }
        for (core, tx) in lists.iter().enumerate() {
            let Some(slot) = pending.get_mut(core) else {
                continue;
            };
            if let Some(list) = slot.take() {
                match tx.try_send(list) {
                    Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                    Err(TrySendError::Full(list)) => *slot = Some(list),
                }
            }
        }
    }
    builder.stats()
}
