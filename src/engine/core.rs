//! One core: a pinned glommio executor owning its sockets (one per listener), its shard
//! ([`Master`]) and its counters. Nothing here is shared with another core: the core hands its
//! shard's snapshots to the list builder's thread and takes the shared list back, both over
//! bounded channels it never waits on.
//!
//! Tasks on the core:
//! - the receive loop, over all the core's sockets: drain each readable one with `recvmmsg`
//!   ([`BATCH`] at a time) → [`Master::handle_batch`] (registrations first; queries shed when
//!   saturated) → flush; with nothing left to read it waits in `ppoll` on the sockets until one is
//!   readable or the core's earliest timer is due, then lets glommio fire that timer. glommio runs
//!   the tasks and their timers; the wait for datagrams is the kernel's, one call per wake-up
//!   (an io_uring peek per wake-up made glommio re-arm its preemption timeouts every time);
//!   under a storm of game-server datagrams it first naps ([`coalesce`]) so they gather;
//! - the pacer: while replies are paced, one tick per millisecond (or when the earliest is due)
//!   flushes what came due — no timer per client;
//! - the core's main loop (every [`Settings::tick`]): reloads, expiry, publishing this shard to
//!   the list builder when it changed (at most every `list_refresh`), installing the builder's
//!   newest list, status, dumps, housekeeping, and the stop flag — one `Core` method each. No list
//!   is ever merged or encoded on the core.
//!
//! A flush takes everything due from [`Master::poll_transmit`] and sends it with `sendmmsg` of
//! gathered datagrams and GSO runs, never waiting: what a full socket buffer refuses goes back to
//! the master ([`Master::unsent`]) and the pacer retries it a millisecond later.

use super::coalesce;
use super::stats::EngineCounters;
use super::status::{CoreDump, CoreStatus, StatusSender};
use super::sys::{self, BATCH, RecvBatch, SendStop};
use super::{CLOCK_START, LAST_DUMP_WAIT, Settings, WallClock};
use crate::master::Config as MasterConfig;
use crate::master::Counters;
use crate::master::Forwarded;
use crate::master::List;
use crate::master::ShardSnapshot;
use crate::master::Transmit;
use crate::master::{Datagram, Master, Time};
use futures_lite::future;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::{LocalExecutorBuilder, Placement};
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// Largest datagram handled (dpmaster's `MAX_PACKET_SIZE_IN`); longer ones are dropped, counted.
pub const MAX_DATAGRAM: usize = 2048;
/// Expiry-wheel entries visited before the core lets its receive loops run.
pub const EXPIRY_BUDGET: usize = 4096;
/// Transmits taken from the master per `sendmmsg` round of a flush.
pub const SEND_BATCH: usize = 4 * BATCH;
/// Batches of forwarded servers (a peering datagram's worth each, ~20) applied per main-loop tick.
pub const MAX_FORWARDED_BATCHES: usize = 256;
/// Batches of forwarded servers queued per core before the peering thread's are refused.
pub const FORWARDED_QUEUE: usize = 4096;

/// How long the receive loop steps out so that glommio fires the core's due timers.
const TIMER_TURN: Duration = Duration::from_micros(1);

/// The pacer's tick while replies are paced or a send is waiting for buffer space.
pub const PACE_TICK: Duration = Duration::from_millis(1);

pub struct CoreArgs {
    pub index: usize,
    pub cpu: usize,
    /// How many cores (shards) there are.
    pub cores: usize,
    pub settings: Arc<Settings>,
    pub sockets: Vec<socket2::Socket>,
    pub snapshots: crossbeam_channel::Sender<Arc<ShardSnapshot>>,
    pub lists: crossbeam_channel::Receiver<Arc<List>>,
    pub stop: Arc<AtomicBool>,
    pub ready: Sender<Result<usize, (usize, String)>>,
    pub status: StatusSender,
    pub dumps: crossbeam_channel::Sender<CoreDump>,
    pub reconfig: crossbeam_channel::Receiver<Arc<MasterConfig>>,
    /// Servers forwarded by peer masters, for this shard ([`EngineHandle::forward`](super::EngineHandle::forward)).
    pub forwarded: crossbeam_channel::Receiver<Arc<Vec<Forwarded>>>,
    pub epoch: Instant,
    pub wall: WallClock,
    /// A state file's servers; this core lists those steered to it, then lets go.
    pub restore: Option<Arc<crate::state::Body>>,
}

#[derive(Debug)]
pub struct CoreReport {
    pub shard: Counters,
    pub engine: EngineCounters,
}

/// The thread body: builds the executor and runs the core on it.
pub fn run_thread(args: CoreArgs) -> Result<CoreReport, String> {
    let (index, ready) = (args.index, args.ready.clone());
    let built = LocalExecutorBuilder::new(Placement::Fixed(args.cpu))
        .name(&format!("muster-core{index}"))
        .io_memory(args.settings.io_memory)
        .make();
    match built {
        Ok(ex) => ex.run(run(args)),
        Err(e) => {
            let why = format!("glommio executor on CPU {}: {e}", args.cpu);
            let _ = ready.send(Err((index, why.clone())));
            Err(why)
        }
    }
}

struct Core {
    index: usize,
    master: RefCell<Master>,
    stats: RefCell<EngineCounters>,
    /// Blocking sockets; every call on them is the core's own (`sys`), with `MSG_DONTWAIT`.
    sockets: Vec<socket2::Socket>,
    epoch: Instant,
    /// Wakes the pacer when it sleeps with nothing to do and something gets queued.
    wake: LocalSender<()>,
    /// A send found the socket buffer full: the pacer retries after a tick.
    blocked: Cell<bool>,
    /// Another task of the core was made runnable (the pacer woken, the main loop between two
    /// expiry chunks): the receive loop gives the executor a turn before it waits.
    others: Cell<bool>,
    /// When the main loop's timer fires next, and the pacer's (`None`: it waits to be woken).
    next_tick: Cell<Instant>,
    pace_due: Cell<Option<Instant>>,
    out: RefCell<Vec<Transmit>>,
    settings: Arc<Settings>,
    snapshots: crossbeam_channel::Sender<Arc<ShardSnapshot>>,
    lists: crossbeam_channel::Receiver<Arc<List>>,
    status: StatusSender,
    dumps: crossbeam_channel::Sender<CoreDump>,
    reconfig: crossbeam_channel::Receiver<Arc<MasterConfig>>,
    forwarded: crossbeam_channel::Receiver<Arc<Vec<Forwarded>>>,
    /// When this shard was last published, the allocator last purged, the shard last dumped.
    last_publish: Cell<Option<Instant>>,
    kept: Cell<Instant>,
    dumped: Cell<Instant>,
}

async fn run(args: CoreArgs) -> Result<CoreReport, String> {
    let CoreArgs {
        index,
        cores,
        settings,
        sockets,
        snapshots,
        lists,
        stop,
        ready,
        status,
        dumps,
        reconfig,
        forwarded,
        epoch,
        wall,
        restore: to_restore,
        ..
    } = args;
    let (shard, shards) = (index, cores);
    let (wake, wake_rx) = local_channel::new_bounded(1);
    let now = clock(epoch);
    let mut master = Master::new(now, settings.master.clone(), shard, shards);
    if !settings.gso {
        master.disable_gso();
    }
    if let Some(body) = to_restore {
        super::restore::restore(&mut master, &body, wall, now, index, cores);
    }
    let core = Rc::new(Core {
        index,
        master: RefCell::new(master),
        stats: RefCell::new(EngineCounters::default()),
        sockets,
        epoch,
        wake,
        blocked: Cell::new(false),
        others: Cell::new(false),
        next_tick: Cell::new(Instant::now()),
        pace_due: Cell::new(None),
        out: RefCell::new(Vec::with_capacity(SEND_BATCH)),
        settings: settings.clone(),
        snapshots,
        lists,
        status,
        dumps,
        reconfig,
        forwarded,
        last_publish: Cell::new(None),
        kept: Cell::new(Instant::now()),
        dumped: Cell::new(Instant::now()),
    });
    glommio::spawn_local(receive(core.clone())).detach();
    glommio::spawn_local(pace(core.clone(), wake_rx)).detach();
    let _ = ready.send(Ok(index));
    tracing::debug!(core = index, shard, cpu = args.cpu, "core serving");
    while !stop.load(Ordering::Relaxed) {
        core.next_tick.set(Instant::now() + settings.tick());
        glommio::timer::sleep(settings.tick()).await;
        core.take_reloads();
        core.take_forwarded();
        core.expire().await;
        core.publish();
        core.install_newest_list();
        core.report();
        core.dump_if_due();
        core.housekeep();
    }
    if settings.dump_every.is_some() {
        // The state file written at shutdown holds what the cores held as they stopped.
        let _ = core
            .dumps
            .send_timeout(core.dump(index, true), LAST_DUMP_WAIT);
    }
    let shard = *core.master.borrow().counters();
    let engine = *core.stats.borrow();
    Ok(CoreReport { shard, engine })
}

/// The core's main-loop duties, one method each, run in this order every [`Settings::tick`].
impl Core {
    /// Takes reloaded configurations (SIGHUP), newest last.
    fn take_reloads(&self) {
        while let Ok(cfg) = self.reconfig.try_recv() {
            let gone = self.master.borrow_mut().reconfigure(self.now(), &cfg);
            tracing::info!(core = self.index, delisted = gone, "configuration reloaded");
        }
    }

    /// Servers peers forwarded, at most [`MAX_FORWARDED_BATCHES`] batches a tick (the rest wait:
    /// the channel is bounded, the peering thread counts what it could not hand over).
    fn take_forwarded(&self) {
        for _ in 0..MAX_FORWARDED_BATCHES {
            let Ok(batch) = self.forwarded.try_recv() else {
                return;
            };
            let now = self.now();
            let mut m = self.master.borrow_mut();
            for f in batch.iter() {
                let _ = m.apply_forwarded(now, f);
            }
        }
    }

    /// Expiry and liveness probes in budgeted chunks, letting the receive loops run between
    /// them; the probes a chunk queued are sent at once.
    async fn expire(&self) {
        loop {
            let done = self.master.borrow_mut().tick(self.now(), EXPIRY_BUDGET);
            self.flush();
            if done {
                break;
            }
            self.others.set(true);
            future::yield_now().await;
        }
    }

    /// Publishes this shard at most every `list_refresh`, and only when the builder has room for
    /// it (a snapshot carries the membership changes since the previous one: none may be lost).
    fn publish(&self) {
        let due = self
            .last_publish
            .get()
            .is_none_or(|t| t.elapsed() >= self.settings.list_refresh);
        if !due {
            return;
        }
        if self.snapshots.is_full() {
            self.stats.borrow_mut().snapshots_deferred += 1;
        } else if let Some(snap) = self.master.borrow_mut().publish() {
            self.last_publish.set(Some(Instant::now()));
            if self.snapshots.try_send(snap).is_ok() {
                self.stats.borrow_mut().snapshots_sent += 1;
            }
        }
    }

    /// Serves the builder's newest list (older ones waiting are skipped).
    fn install_newest_list(&self) {
        let mut newest = None;
        while let Ok(list) = self.lists.try_recv() {
            newest = Some(list);
        }
        if let Some(list) = newest {
            self.master.borrow_mut().install_list(list);
            self.stats.borrow_mut().lists_installed += 1;
        }
    }

    /// Tells whoever watches the engine how this core is (never waits: a full channel drops it).
    fn report(&self) {
        if !self.status.push(self.status(self.index)) {
            self.stats.borrow_mut().status_dropped += 1;
        }
    }

    /// A dump shares the table's chunks: taken when they are the ones the last snapshot shares
    /// too (nothing changed since it), it makes no later write copy a chunk that a snapshot would
    /// not have made it copy anyway. Usually at most a `list_refresh` late; never more than one
    /// more interval (a stalled publication must not stop the state file).
    fn dump_if_due(&self) {
        let Some(every) = self.settings.dump_every else {
            return;
        };
        let since = self.dumped.get().elapsed();
        if since >= every && (!self.master.borrow().table().changed() || since >= every * 2) {
            self.dumped.set(Instant::now());
            if self.dumps.try_send(self.dump(self.index, false)).is_err() {
                self.stats.borrow_mut().status_dropped += 1;
            }
        }
    }

    /// The allocator's purge, at most every [`HOUSEKEEPING_EVERY`](super::HOUSEKEEPING_EVERY).
    fn housekeep(&self) {
        if let Some(f) = self.settings.housekeeping
            && self.kept.get().elapsed() >= super::HOUSEKEEPING_EVERY
        {
            f(false);
            self.kept.set(Instant::now());
        }
    }
}

/// The engine's clock: [`CLOCK_START`] plus the milliseconds since `epoch` (in 64-bit
/// arithmetic: `as_millis` is a u128 division per call, and this runs twice per receive batch).
pub fn clock(epoch: Instant) -> Time {
    let d = epoch.elapsed();
    CLOCK_START.plus_millis(
        d.as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_millis())),
    )
}

impl Core {
    fn now(&self) -> Time {
        clock(self.epoch)
    }

    fn status(&self, index: usize) -> CoreStatus {
        let m = self.master.borrow();
        CoreStatus {
            core: index,
            at_ms: self.now().millis(),
            valve_listed: m.list().valve_len(),
            dp_listed: m.list().dp_len(),
            shard_servers: m.table().len(),
            merged_epochs: m.list_epochs(),
            counters: *m.counters(),
            engine: *self.stats.borrow(),
        }
    }

    fn dump(&self, index: usize, last: bool) -> CoreDump {
        let now = self.now();
        let mut m = self.master.borrow_mut();
        CoreDump {
            core: index,
            at: now,
            shard: m.dump(),
            top_refused: m.top_refused(now),
            tracked: m.admission().tracked(),
            last,
        }
    }

    fn fd(&self, local: u8) -> i32 {
        self.sockets
            .get(usize::from(local))
            .map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Sends everything due now, never waiting on a socket.
    fn flush(&self) {
        let now = self.now();
        let mut out = self.out.borrow_mut();
        for _ in 0..64 {
            out.clear();
            self.master
                .borrow_mut()
                .poll_transmit(now, &mut out, SEND_BATCH);
            if out.is_empty() {
                break;
            }
            let taken = out.len();
            if !self.send_all(&mut out) {
                return;
            }
            if taken < SEND_BATCH {
                break;
            }
        }
        self.blocked.set(false);
    }

    /// One `recvmmsg` on socket `local` and what it brought handled and flushed; returns how
    /// many datagrams came (0: none waited, or the call failed, counted) and how many of them
    /// were not from game servers.
    fn receive_batch(
        &self,
        batch: &mut RecvBatch,
        local: u8,
        was_full: &mut bool,
    ) -> (usize, usize) {
        let n = match batch.recv(self.fd(local)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                self.stats.borrow_mut().recv_errors += 1;
                0
            }
        };
        if n == 0 {
            return (0, 0);
        }
        let full = n == BATCH;
        // Two full batches in a row: the kernel queue is backing up.
        let saturated = full && *was_full;
        *was_full = full;
        let mut datagrams: Vec<Datagram<'_>> = Vec::with_capacity(n);
        {
            let mut st = self.stats.borrow_mut();
            st.recv_calls += 1;
            st.datagrams_received += n as u64;
            st.saturated_batches += u64::from(saturated);
            for i in 0..n {
                match batch.get(i) {
                    Some((from, bytes, false)) if bytes.len() <= MAX_DATAGRAM => {
                        datagrams.push(Datagram { from, local, bytes });
                    }
                    _ => st.oversized += 1,
                }
            }
        }
        let from_clients = self
            .master
            .borrow_mut()
            .handle_batch(self.now(), &datagrams, saturated);
        self.flush();
        if self.master.borrow_mut().poll_timeout().is_some() {
            self.wake_pacer();
        }
        (n, from_clients)
    }

    /// Wakes the pacer if it sleeps with nothing to do; the receive loop then lets it run.
    fn wake_pacer(&self) {
        if self.wake.try_send(()).is_ok() {
            self.others.set(true);
        }
    }

    /// When the receive loop must give the executor a turn at the latest: the main loop's next
    /// tick or the pacer's next wake-up, whichever is first.
    fn deadline(&self) -> Instant {
        let tick = self.next_tick.get();
        self.pace_due.get().map_or(tick, |p| p.min(tick))
    }

    /// Sends `out` (grouped by socket); `false` if a socket buffer filled (the rest went back).
    fn send_all(&self, out: &mut Vec<Transmit>) -> bool {
        let mut i = 0;
        while i < out.len() {
            let local = out.get(i).map_or(0, |t| t.local);
            let run = out
                .get(i..)
                .map_or(0, |r| r.iter().take_while(|t| t.local == local).count());
            let batch = out.get(i..i.saturating_add(run)).unwrap_or_default();
            let r = sys::send_batch(self.fd(local), batch);
            {
                let mut st = self.stats.borrow_mut();
                for t in batch.iter().take(r.sent) {
                    let n = t.count() as u64;
                    st.datagrams_sent += n;
                    st.bytes_sent += t.payload.len() as u64;
                    st.gso_sends += u64::from(n > 1);
                }
                st.send_errors += r.failed as u64;
                st.send_calls += 1;
            }
            let done = i.saturating_add(r.sent).saturating_add(r.failed);
            match r.stop {
                None => i = i.saturating_add(run),
                Some(SendStop::WouldBlock) => {
                    self.stats.borrow_mut().send_would_block += 1;
                    self.give_back(out, done);
                    return false;
                }
                Some(SendStop::GsoRefused(at, e)) => {
                    tracing::warn!(error = %e, "UDP GSO refused; sending one datagram per call");
                    self.stats.borrow_mut().gso_fallbacks += 1;
                    self.master.borrow_mut().disable_gso();
                    // The refused run and everything after it go back, the run cut into datagrams.
                    let at = i.saturating_add(at);
                    let rest: Vec<Transmit> = out.drain(at..).collect();
                    let split: Vec<Transmit> = rest.into_iter().flat_map(|t| t.split()).collect();
                    self.master.borrow_mut().unsent(split.into_iter());
                    out.clear();
                    return true;
                }
            }
        }
        true
    }

    /// Hands `out[from..]` back to the master and arms the pacer to retry.
    fn give_back(&self, out: &mut Vec<Transmit>, from: usize) {
        let rest: Vec<Transmit> = out.drain(from.min(out.len())..).collect();
        self.master.borrow_mut().unsent(rest.into_iter());
        out.clear();
        self.blocked.set(true);
        self.wake_pacer();
    }
}

/// The core's receive loop, over all its sockets: drain each readable socket with `recvmmsg`
/// ([`BATCH`] at a time) into [`Master::handle_batch`], flush, and when nothing is left to read,
/// either give the executor a turn (a timer of the core is due, or another task was woken) or
/// wait in the kernel on the sockets themselves until one is readable or the earliest timer is
/// due ([`Core::deadline`]). Waiting on the sockets directly, not through an io_uring operation
/// per wake-up, is what keeps a lightly loaded core cheap: each wake-up is one `ppoll` and one
/// `recvmmsg`, where glommio's reactor re-armed and cancelled its preemption timeouts and
/// submitted a peek on every pass (docs/benchmarks.md, "Every path per master CPU-second").
/// Under a storm of game-server datagrams it naps before waiting ([`coalesce::nap`]) so that
/// one wake-up reads and answers many.
async fn receive(core: Rc<Core>) {
    let mut batch = RecvBatch::new(MAX_DATAGRAM + 1);
    let n = core.sockets.len();
    let mut was_full = vec![false; n];
    // Sockets worth a `recvmmsg` now: all at first, then those `ppoll` found readable.
    let mut ready = vec![true; n];
    let mut fds: Vec<libc::pollfd> = (0..n)
        .map(|i| libc::pollfd {
            fd: core.fd(u8::try_from(i).unwrap_or(u8::MAX)),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // What the reads since the last wait brought, and when the sockets were last found empty
    // after reading something (the interval that says how fast datagrams come).
    let mut wake = coalesce::Wake::default();
    let mut emptied = Instant::now();
    loop {
        let mut more = false;
        for (i, (r, full)) in ready.iter_mut().zip(was_full.iter_mut()).enumerate() {
            if !*r {
                continue;
            }
            let local = u8::try_from(i).unwrap_or(u8::MAX);
            let (got, from_clients) = core.receive_batch(&mut batch, local, full);
            wake.datagrams = wake.datagrams.saturating_add(got as u64);
            wake.from_clients = wake.from_clients.saturating_add(from_clients as u64);
            // A full batch may have left more behind; anything less emptied the socket.
            *r = got == BATCH;
            more |= *r;
        }
        if more {
            glommio::yield_if_needed().await;
        }
        if core.others.replace(false) {
            // The woken task is queued ahead of this one: it runs, then this loop again.
            future::yield_now().await;
            continue;
        }
        if Instant::now() >= core.deadline() {
            // A timer of the core is due: glommio fires timers only when no task is runnable,
            // so this loop steps out for a moment (it must not stay runnable meanwhile).
            glommio::timer::sleep(TIMER_TURN).await;
            continue;
        }
        if more {
            continue;
        }
        let now = Instant::now();
        let wait = core.deadline().saturating_duration_since(now);
        if wake.datagrams > 0 {
            wake.since_last = now.saturating_duration_since(emptied);
            emptied = now;
            let nap = coalesce::nap(wake, core.settings.coalesce, BATCH, wait);
            wake = coalesce::Wake::default();
            if let Some(nap) = nap {
                core.stats.borrow_mut().naps += 1;
                sys::nap(nap);
                // Which sockets the nap filled: one `ppoll` that does not wait, not a
                // `recvmmsg` on each (the only one is simply read).
                if fds.len() == 1 {
                    ready.fill(true);
                } else if sys::wait_readable(&mut fds, Duration::ZERO).is_ok() {
                    mark_readable(&mut ready, &fds);
                }
                continue;
            }
        }
        match sys::wait_readable(&mut fds, wait) {
            Ok(_) => mark_readable(&mut ready, &fds),
            Err(_) => {
                core.stats.borrow_mut().recv_errors += 1;
                glommio::timer::sleep(TIMER_TURN).await;
            }
        }
    }
}

/// After a `ppoll`: the sockets it found readable are the ones worth a `recvmmsg`.
fn mark_readable(ready: &mut [bool], fds: &[libc::pollfd]) {
    for (r, f) in ready.iter_mut().zip(fds) {
        *r = f.revents != 0;
    }
}

/// Paced replies and refused sends: one tick per millisecond while there are any.
async fn pace(core: Rc<Core>, wake: LocalReceiver<()>) {
    loop {
        let due = core.master.borrow_mut().poll_timeout();
        match due {
            None => {
                core.pace_due.set(None);
                if wake.recv().await.is_none() {
                    return;
                }
                continue;
            }
            Some(due) => {
                let now = core.now();
                let wait = if core.blocked.get() {
                    PACE_TICK
                } else {
                    Duration::from_millis(due.millis().saturating_sub(now.millis())).min(PACE_TICK)
                };
                if !wait.is_zero() {
                    core.pace_due.set(Some(Instant::now() + wait));
                    glommio::timer::sleep(wait).await;
                    core.pace_due.set(None);
                }
            }
        }
        core.flush();
        core.stats.borrow_mut().pace_ticks += 1;
    }
}
