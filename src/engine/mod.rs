//! The engine: the sans-IO master run on real sockets, one pinned glommio executor per core.
//!
//! | module | job |
//! |---|---|
//! | [`socket`] | one `SO_REUSEPORT` socket per core per listener, steered by source address |
//! | [`builder`] | the list builder's thread, off the packet cores: snapshots in, one shared list out |
//! | [`core`] | one core's executor: `recvmmsg` → [`Master::handle_batch`](crate::master::Master::handle_batch) → `sendmmsg`, the pacing tick, expiry, snapshot exchange |
//! | [`coalesce`] | when a core naps to let game-server datagrams gather (receive coalescing), never while a client waits |
//! | [`sys`] | `recvmmsg`, `sendmmsg` of gathered datagrams and GSO runs, the `ppoll` wait on a core's sockets, io_uring and locked-memory preflight, CPU set |
//! | [`stats`] | per-core engine counters |
//! | [`status`] | each core's report of itself (list sizes, merged epochs, counters) and its shard dump, over bounded channels |
//!
//! docs/architecture.md draws the data flow and lists the bounds.

pub mod builder;
pub mod coalesce;
pub mod core;
mod restore;
pub mod socket;
pub mod stats;
pub mod status;
pub mod sys;

use crate::master::Config as MasterConfig;
use crate::master::Time;
pub use stats::{EngineCounters, Report};
pub use status::{CoreDump, CoreStatus};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long `start` waits for every core to come up (executor, sockets, restoring its share of
/// the state file).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The engine's clock reads this at start, not zero: a server restored from a state file was last
/// heard, and first seen, before this process began, and the master's clock keeps such times as
/// unsigned seconds. A year back is far enough for "first seen" and costs nothing.
pub const CLOCK_START: Time = Time::from_secs(366 * 24 * 3600);
/// How long a stopping core waits for the control thread to take its last dump.
pub const LAST_DUMP_WAIT: Duration = Duration::from_secs(2);
/// glommio refuses to start below this locked-memory limit (its `MIN_MEMLOCK_LIMIT`).
pub const MIN_MEMLOCK: u64 = 512 * 1024;

/// Everything the engine runs with (built from the config file and flags by [`crate::config`]).
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: Vec<SocketAddr>,
    pub cores: usize,
    pub master: MasterConfig,
    pub list_refresh: Duration,
    pub gso: bool,
    pub recv_buffer: usize,
    pub io_memory: usize,
    /// How long a core naps to gather game-server datagrams ([`coalesce`]); zero: never.
    pub coalesce: Duration,
    /// Called about once every [`HOUSEKEEPING_EVERY`] on each engine thread (every core and the
    /// list builder) with `false`, and by the builder with `true` right after a list rebuild has
    /// freed the previous one's orders and encodings (tens of MB at a million servers): the binary
    /// hands its allocator's freed memory back to the OS with it (`true`: now, not after the
    /// allocator's usual delay). The library leaves the allocator to the binary, so it is a hook.
    pub housekeeping: Option<fn(bool)>,
    /// Each core pushes a [`CoreDump`] of its shard this often (and once as it stops) for the
    /// control thread ([`EngineHandle::dumps`]); `None`: never (no HTTP, no state file).
    pub dump_every: Option<Duration>,
    /// Servers to list at start (a state file), each core taking those steered to it.
    pub restore: Option<Arc<crate::state::Body>>,
    /// The list builder also hands every list it publishes to [`EngineHandle::lists`] (the public
    /// HTTP listener's lists are made from them). Off, nothing is held for a reader that never comes.
    pub publish_lists: bool,
}

/// Main-loop ticks per `list_refresh`.
pub const TICKS_PER_REFRESH: u32 = 5;

impl Settings {
    /// The cores' main-loop tick and the list builder's: a fifth of `list_refresh`, between 1 ms
    /// and 100 ms (a list reaches every core within about two refreshes).
    pub fn tick(&self) -> Duration {
        (self.list_refresh / TICKS_PER_REFRESH)
            .clamp(Duration::from_millis(1), Duration::from_millis(100))
    }
}

/// How often [`Engine::join`] looks for an engine thread that ended on its own.
pub const WATCH_EVERY: Duration = Duration::from_millis(50);

/// A panic's message, if it has one.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// How often [`Settings::housekeeping`] runs on each engine thread.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] socket::BindError),
    #[error(
        "io_uring is not available: {0} — muster needs Linux 5.8 or later with io_uring enabled"
    )]
    IoUring(String),
    #[error(
        "locked memory limit too small: `ulimit -l` is {have_kib} KiB, muster needs at least {need_kib} KiB (raise it with `ulimit -l {need_kib}`, or LimitMEMLOCK= in a systemd unit)"
    )]
    MemLock { have_kib: u64, need_kib: u64 },
    #[error("core {core} did not start: {why}")]
    Core { core: usize, why: String },
    #[error("core {core} failed: {why} (every core was stopped)")]
    Failed { core: usize, why: String },
    #[error("not all cores were serving within {0:?}")]
    StartTimeout(Duration),
    #[error("{cores} cores asked, but only {available} CPUs are available to this process")]
    Cpus { cores: usize, available: usize },
}

/// A running engine.
#[derive(Debug)]
pub struct Engine {
    local: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    status: Arc<status::StatusBoard>,
    handle: EngineHandle,
    threads: Vec<std::thread::JoinHandle<Result<core::CoreReport, String>>>,
    builder: Option<std::thread::JoinHandle<crate::master::list::builder::BuildStats>>,
}

/// What the operator's control thread needs of a running engine: each core's reports and dumps,
/// a way to hand every core a reloaded configuration, and the clock. Cloneable; nothing in it
/// is shared with the packet path but bounded channels.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    pub cores: usize,
    pub local: Vec<SocketAddr>,
    pub status: Arc<status::StatusBoard>,
    pub dumps: crossbeam_channel::Receiver<CoreDump>,
    /// Every list the builder publishes, newest waiting ([`Settings::publish_lists`]).
    pub lists: Option<crossbeam_channel::Receiver<Arc<crate::master::list::List>>>,
    reconfig: Vec<crossbeam_channel::Sender<Arc<MasterConfig>>>,
    forward: Vec<crossbeam_channel::Sender<Arc<Vec<crate::master::Forwarded>>>>,
    wall: WallClock,
    stop: Arc<AtomicBool>,
}

/// Milliseconds since the Unix epoch now.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl EngineHandle {
    /// Unix milliseconds of a time on the engine's clock.
    pub fn unix_ms(&self, t: Time) -> u64 {
        self.wall.unix_ms(t)
    }

    /// When the engine started, Unix milliseconds.
    /// The engine's clock against Unix time (what the operator's side converts dump times with).
    pub fn wall(&self) -> WallClock {
        self.wall
    }

    pub fn started_unix_ms(&self) -> u64 {
        self.wall.started_unix_ms
    }

    /// Hands every core a reloaded configuration (each applies it at its next tick). Waits at
    /// most a second per core; `false` if a core did not take it (it is stopping or stuck).
    pub fn reconfigure(&self, cfg: MasterConfig) -> bool {
        let cfg = Arc::new(cfg);
        self.reconfig
            .iter()
            .all(|tx| tx.send_timeout(cfg.clone(), Duration::from_secs(1)).is_ok())
    }

    /// Hands core `core` servers forwarded by a peer (its shard's: steered by
    /// [`crate::master::steer::shard_for`]); `false` if its queue is full (counted by the caller).
    pub fn forward(&self, core: usize, batch: Arc<Vec<crate::master::Forwarded>>) -> bool {
        self.forward
            .get(core)
            .is_some_and(|tx| tx.try_send(batch).is_ok())
    }

    /// Stops every core (as a signal would).
    pub fn stop_all(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The engine's clock against the wall clock: which Unix time a [`Time`] is, and back (the state
/// file keeps wall-clock times; the engine's clock starts at [`CLOCK_START`] when it starts).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// Unix milliseconds when the engine's clock read [`CLOCK_START`].
    pub started_unix_ms: u64,
}

impl WallClock {
    /// The engine time of Unix milliseconds `unix_ms` (saturating at the clock's zero).
    pub fn time(&self, unix_ms: u64) -> Time {
        match unix_ms.checked_sub(self.started_unix_ms) {
            Some(after) => CLOCK_START.plus_millis(after),
            None => Time::from_millis(
                CLOCK_START
                    .millis()
                    .saturating_sub(self.started_unix_ms - unix_ms),
            ),
        }
    }

    /// Unix milliseconds of a time on the engine's clock.
    pub fn unix_ms(&self, t: Time) -> u64 {
        match t.millis().checked_sub(CLOCK_START.millis()) {
            Some(after) => self.started_unix_ms.saturating_add(after),
            None => self
                .started_unix_ms
                .saturating_sub(CLOCK_START.millis() - t.millis()),
        }
    }
}

/// Checks that the kernel and limits allow glommio, before any executor tries (glommio panics or
/// exits on some of these instead of returning an error).
pub fn preflight() -> Result<(), StartError> {
    let have = sys::memlock_limit();
    if have < MIN_MEMLOCK {
        return Err(StartError::MemLock {
            have_kib: have / 1024,
            need_kib: MIN_MEMLOCK / 1024,
        });
    }
    sys::probe_io_uring().map_err(|r| {
        StartError::IoUring(match r {
            sys::UringRefused::Missing => "this kernel has no io_uring".to_owned(),
            sys::UringRefused::Forbidden(why) => format!("io_uring_setup is forbidden ({why})"),
            sys::UringRefused::LockedMemory => {
                "io_uring_setup failed for lack of locked memory (raise `ulimit -l`)".to_owned()
            }
            sys::UringRefused::Other(e) => {
                format!(
                    "io_uring_setup failed: {}",
                    std::io::Error::from_raw_os_error(e)
                )
            }
        })
    })
}

/// Binds every listener and starts one executor per core; returns once all are serving.
pub fn start(settings: Settings) -> Result<Engine, StartError> {
    preflight()?;
    let cpus = sys::allowed_cpus();
    let cores = settings.cores.max(1);
    if cores > cpus.len() {
        return Err(StartError::Cpus {
            cores,
            available: cpus.len(),
        });
    }
    let mut listeners = Vec::new();
    for &addr in &settings.listen {
        match socket::bind(addr, cores, settings.recv_buffer) {
            Ok(l) => listeners.push(l),
            // The IPv6 twin of a wildcard default is optional: skip it where the host has no IPv6.
            Err(socket::BindError::NoIpv6 { addr })
                if addr.ip().is_unspecified() && settings.listen.iter().any(|a| a.is_ipv4()) =>
            {
                tracing::warn!(%addr, "no IPv6 on this host; listener skipped");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let local: Vec<SocketAddr> = listeners.iter().map(|l| l.addr).collect();
    let mut per_core: Vec<Vec<socket2::Socket>> = (0..cores).map(|_| Vec::new()).collect();
    for l in listeners {
        for (c, s) in l.sockets.into_iter().enumerate() {
            per_core[c].push(s);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Snapshots from each core to the list builder, lists from the builder to each core.
    let (snap_tx, snap_rx): (Vec<_>, Vec<_>) = (0..cores)
        .map(|_| crossbeam_channel::bounded(builder::SNAPSHOTS_IN_FLIGHT))
        .unzip();
    let (list_tx, list_rx): (Vec<_>, Vec<_>) =
        (0..cores).map(|_| crossbeam_channel::bounded(1)).unzip();
    let mut settings = settings;
    // Each core drops its reference once it has restored its share: the decoded file (~130 MB at
    // a million servers) is gone once every core is serving.
    let restore = settings.restore.take();
    settings.master.budget = Some(crate::master::table::budget::Budget::shared(
        settings.master.limits.max_servers,
        cores,
    ));
    // One budget for replies to unproven addresses, whatever the number of cores.
    settings.master.unproven = Some(crate::master::admission::unproven::Unproven::new(cores));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (status_tx, status) = status::channel(cores);
    let status = Arc::new(status);
    let (dump_tx, dump_rx) = crossbeam_channel::bounded(cores * status::DUMPS_PER_CORE);
    let (reconfig_tx, reconfig_rx): (Vec<_>, Vec<_>) =
        (0..cores).map(|_| crossbeam_channel::bounded(1)).unzip();
    let (forward_tx, forward_rx): (Vec<_>, Vec<_>) = (0..cores)
        .map(|_| crossbeam_channel::bounded(core::FORWARDED_QUEUE))
        .unzip();
    let epoch = Instant::now();
    let started_unix_ms = unix_now_ms();
    let settings = Arc::new(settings);
    let mut threads = Vec::with_capacity(cores);
    let tick = settings.tick();
    let (observer_tx, observer_rx) = match settings.publish_lists {
        true => {
            let (tx, rx) = crossbeam_channel::bounded(1);
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    let builder = {
        let args = builder::BuilderArgs {
            snapshots: snap_rx,
            lists: list_tx,
            observer: observer_tx,
            max_packet: settings.master.max_dp_packet,
            stop: stop.clone(),
            tick,
            refresh: settings.list_refresh,
            housekeeping: settings.housekeeping,
        };
        std::thread::Builder::new()
            .name("muster-lists".to_owned())
            .spawn(move || builder::run(args))
            .map_err(|e| StartError::Core {
                core: cores,
                why: format!("the list builder's thread: {e}"),
            })?
    };
    for ((((index, sockets), (snapshots, lists)), reconfig), forwarded) in per_core
        .into_iter()
        .enumerate()
        .zip(snap_tx.into_iter().zip(list_rx))
        .zip(reconfig_rx)
        .zip(forward_rx)
    {
        let args = core::CoreArgs {
            index,
            cpu: cpus[index],
            cores,
            settings: settings.clone(),
            sockets,
            snapshots,
            lists,
            stop: stop.clone(),
            ready: ready_tx.clone(),
            status: status_tx.clone(),
            dumps: dump_tx.clone(),
            reconfig,
            forwarded,
            epoch,
            wall: WallClock { started_unix_ms },
            restore: restore.clone(),
        };
        let t = std::thread::Builder::new()
            .name(format!("muster-core{index}"))
            .spawn(move || core::run_thread(args))
            .map_err(|e| StartError::Core {
                core: index,
                why: e.to_string(),
            })?;
        threads.push(t);
    }
    drop(ready_tx);
    drop(restore);
    let handle = EngineHandle {
        cores,
        local: local.clone(),
        status: status.clone(),
        dumps: dump_rx,
        lists: observer_rx,
        reconfig: reconfig_tx,
        forward: forward_tx,
        wall: WallClock { started_unix_ms },
        stop: stop.clone(),
    };
    let engine = Engine {
        local,
        stop,
        status,
        handle,
        threads,
        builder: Some(builder),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    let mut ready = 0;
    while ready < cores {
        let left = deadline.saturating_duration_since(Instant::now());
        match ready_rx.recv_timeout(left) {
            Ok(Ok(_)) => ready += 1,
            Ok(Err((core, why))) => return Err(engine.abort(StartError::Core { core, why })),
            Err(_) => return Err(engine.abort(StartError::StartTimeout(START_TIMEOUT))),
        }
    }
    tracing::info!(cores, listeners = ?engine.local, "serving");
    Ok(engine)
}

impl Engine {
    /// The bound addresses (port 0 resolved), in `listen` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Each core's latest report of itself (`None` until its first tick).
    pub fn status(&self) -> Vec<Option<CoreStatus>> {
        self.status.latest()
    }

    /// Whether every core serves a list of exactly `valve` Valve and `dp` DP servers, merged from
    /// a snapshot of every shard. This is what "ready" means after registering servers: each
    /// core's merged list lags by up to one refresh, and a client may land on any core.
    pub fn every_core_lists(&self, valve: usize, dp: usize) -> bool {
        self.status().iter().all(|s| {
            s.as_ref().is_some_and(|s| {
                s.valve_listed == valve && s.dp_listed == dp && !s.merged_epochs.contains(&0)
            })
        })
    }

    /// What the control thread watches and drives.
    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Setting this flag stops every core within one tick (signal handlers set it).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Stops every core and returns their summed counters.
    pub fn stop(self) -> Result<Report, StartError> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits until the cores stop and sums their counters. They stop when the stop flag is set —
    /// or when any of them (or the list builder) ends on its own, by a panic or an error: then
    /// every other core is stopped too and the first failure is the error. A master never runs
    /// on with a dead shard (its servers would silently vanish from the list); the supervisor
    /// restarts it and the state file lists them again.
    pub fn join(mut self) -> Result<Report, StartError> {
        while !self.stop.load(Ordering::Relaxed) {
            let ended = self.threads.iter().any(|t| t.is_finished())
                || self.builder.as_ref().is_some_and(|b| b.is_finished());
            if ended {
                tracing::error!("an engine thread ended on its own; stopping every core");
                break;
            }
            std::thread::sleep(WATCH_EVERY);
        }
        self.stop.store(true, Ordering::Relaxed);
        let mut report = Report::default();
        let mut first_err = None;
        let threads = std::mem::take(&mut self.threads);
        for (core, t) in threads.into_iter().enumerate() {
            match t.join() {
                Ok(Ok(r)) => report.add(&r.shard, &r.engine),
                Ok(Err(why)) => {
                    first_err.get_or_insert(StartError::Core { core, why });
                }
                Err(panic) => {
                    first_err.get_or_insert(StartError::Failed {
                        core,
                        why: format!("its thread panicked: {}", panic_message(&*panic)),
                    });
                }
            }
        }
        // The cores are gone: the builder has nobody to build for.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(b) = self.builder.take() {
            match b.join() {
                Ok(stats) => report.lists = stats,
                Err(_) => {
                    first_err.get_or_insert(StartError::Core {
                        core: report.per_core.len(),
                        why: "the list builder's thread panicked".to_owned(),
                    });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    fn abort(self, e: StartError) -> StartError {
        self.stop.store(true, Ordering::Relaxed);
        // Another core's own error (e.g. glommio's) explains more than a timeout does.
        match (self.join(), e) {
            (Err(inner), StartError::StartTimeout(_)) => inner,
            (_, e) => e,
        }
    }
}
