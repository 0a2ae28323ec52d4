//! The list builder's thread, off the packet cores: takes every core's shard snapshots (one
//! bounded channel per core, so a core never blocks and never loses one), runs the sans-IO
//! [`ListBuilder`], and hands each core the new [`List`] (a bounded channel of one per core: a core
//! that has not taken the last one yet gets the newest when it does).

use crate::master::List;
use crate::master::ShardSnapshot;
use crate::master::list::builder::{BuildStats, ListBuilder};
use crossbeam_channel::{Receiver, Select, Sender, TrySendError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Snapshots in flight per core: a core takes one only when its channel has room, so none is lost.
pub const SNAPSHOTS_IN_FLIGHT: usize = 2;
/// A rebuild that took T is followed by at least `BUILD_DUTY × T` before the next one: the
/// builder keeps to a fifth of a CPU however big the list and heavy the churn (the list then lags
/// a little more, never the packet cores).
pub const BUILD_DUTY: u32 = 5;

pub struct BuilderArgs {
    pub snapshots: Vec<Receiver<Arc<ShardSnapshot>>>,
    pub lists: Vec<Sender<Arc<List>>>,
    /// Also gets every list (a channel of one; a reader that has not taken the last one gets the
    /// newest when it does). Not counted as delivered: a slow reader never delays housekeeping.
    pub observer: Option<Sender<Arc<List>>>,
    pub max_packet: usize,
    pub stop: Arc<AtomicBool>,
    /// How long to wait for snapshots before checking the stop flag.
    pub tick: Duration,
    /// At most one list per refresh: the cores' snapshots of one refresh make one list.
    pub refresh: Duration,
    pub housekeeping: Option<fn(bool)>,
}

/// The thread body; returns what it did when the stop flag is set.
pub fn run(args: BuilderArgs) -> BuildStats {
    let BuilderArgs {
        snapshots,
        lists,
        observer,
        max_packet,
        stop,
        tick,
        refresh,
        housekeeping,
    } = args;
    // When the next list may be built, and whether snapshots wait for it.
    let mut next_build = Instant::now();
    let mut dirty = false;
    let mut kept = Instant::now();
    let mut rebuilt = false;
    let mut builder = ListBuilder::new(snapshots.len(), max_packet);
    // Lists not yet taken by a core (it had not taken the one before).
    let mut pending: Vec<Option<Arc<List>>> = vec![None; lists.len()];
    let mut observer_pending: Option<Arc<List>> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut sel = Select::new();
        for r in &snapshots {
            sel.recv(r);
        }
        // Wait for a snapshot (or the tick, to see the stop flag and retry pending lists).
        let wait = if dirty {
            next_build
                .saturating_duration_since(Instant::now())
                .min(tick)
        } else {
            tick
        };
        let _ = sel.ready_timeout(wait);
        for (shard, r) in snapshots.iter().enumerate() {
            while let Ok(snap) = r.try_recv() {
                builder.apply(shard, snap);
                dirty = true;
            }
        }
        if dirty && Instant::now() >= next_build {
            dirty = false;
            let started = Instant::now();
            let rebuilds = builder.stats().rebuilds;
            if let Some(list) = builder.build() {
                pending.iter_mut().for_each(|p| *p = Some(list.clone()));
                if observer.is_some() {
                    observer_pending = Some(list.clone());
                }
            }
            if builder.stats().rebuilds != rebuilds {
                rebuilt = true;
            }
            next_build = started + refresh.max(started.elapsed() * BUILD_DUTY);
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
        if let (Some(tx), Some(list)) = (&observer, observer_pending.take()) {
            match tx.try_send(list) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(list)) => observer_pending = Some(list),
            }
        }
        // Once every core holds the new list, the old one is gone: give its memory back now.
        let delivered = pending.iter().all(Option::is_none);
        if let Some(f) = housekeeping {
            if rebuilt && delivered {
                f(true);
                rebuilt = false;
                kept = Instant::now();
            } else if kept.elapsed() >= super::HOUSEKEEPING_EVERY {
                f(false);
                kept = Instant::now();
            }
        }
    }
    builder.stats()
}
