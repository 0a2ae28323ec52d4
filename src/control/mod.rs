//! The operator's side, on a thread of its own off the packet cores: it takes each core's reports
//! ([`CoreStatus`](crate::engine::CoreStatus), every tick) and dumps ([`CoreDump`](crate::engine::CoreDump), every
//! [`DUMP_EVERY`]) from bounded channels the cores never wait on, and from them
//!
//! - hands the HTTP side a fresh [`View`] every tick (the operator's listener answers from it);
//! - keeps the last hour of rates ([`history`]) and logs a summary line every minute;
//! - writes the state file every `state_interval` and once more at shutdown ([`crate::state`]);
//! - reloads the config on SIGHUP and hands it to every core;
//! - tells systemd it is alive (`WATCHDOG=1`) only while every core reports;
//! - watches the servers of `[[watch]]` in each fresh set of dumps and hands their transitions to
//!   the alert thread ([`alert`]), which posts them to their webhooks.
//!
//! HTTP is never served on that thread: each listener runs on a thread of its own
//! ([`serve`]), the operator's from the control thread's [`View`], the public one (`public_http`,
//! off by default) from the lists a builder thread makes of each list publication ([`lists`]).
//!
//! | module | job |
//! |---|---|
//! | [`view`] | what the thread knows, and the JSON answers built from it |
//! | [`history`] | the ring of rate points behind the charts |
//! | [`metrics`] | the Prometheus exposition |
//! | [`http`] | the operator's routes, the embedded status page, `/healthz` |
//! | [`serve`] | one listener: tokio runtime thread, hyper HTTP/1, limits on every connection |
//! | [`limits`] | every HTTP bound and default |
//! | [`conns`] | connections per source and in all, the stalest idle one evicted at a cap |
//! | [`stall`] | idle and slow-reader timeouts on a connection's socket |
//! | [`request`] | sans-IO checks of a request (bodies, methods, targets), query strings, conditional and gzip headers |
//! | [`reply`] | a shared answer with its ETag and gzip copy; `304` / gzip / HEAD per request |
//! | [`public`] | the public lists of one publication: FWGS text, the JSON API's pages, the browser page |
//! | [`fwgs`] | Xash3D FWGS's HTTP server list format |
//! | [`lists`] | the public lists' builder thread and the public listener's app |
//! | [`watch`] | sans-IO: which watched servers are listed, their transitions and history |
//! | [`notifier`] | sans-IO: one webhook's outbox — quiet time, digests, rate limit, retries |
//! | [`message`] | what an alert says, and the Discord / Slack JSON body |
//! | [`webhook`] | a webhook URL checked and taken apart (and shown without its secret) |
//! | [`peering`] | the peering thread: this master's registrations to its peers, theirs to the cores, full sync at start |
//! | [`alert`] | the alert thread: the channel from the control thread, the POSTs over TCP / TLS |

pub mod alert;
pub mod conns;
pub mod fwgs;
pub mod history;
pub mod http;
pub mod limits;
pub mod lists;
pub mod message;
pub mod metrics;
pub mod notifier;
pub mod peering;
pub mod public;
pub mod reply;
pub mod request;
pub mod serve;
pub mod stall;
pub mod view;
pub mod watch;
pub mod webhook;

use crate::engine::{EngineHandle, unix_now_ms};
use crate::master::Config as MasterConfig;
use crate::state;
use history::Cumulative;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use view::View;

/// How often each core dumps its shard for the control thread when HTTP, a state file or a watch
/// is on (the API's freshness; the state file is written from the latest dumps; how soon a
/// watched server's change is seen).
pub const DUMP_EVERY: Duration = Duration::from_secs(1);
/// The dump period when peers are configured: a registration reaches the peers within about
/// this plus a list refresh (the goal is 2 s; each dump shares the shard's records and copies
/// ~16 bytes a server).
pub const PEERING_DUMP_EVERY: Duration = Duration::from_millis(250);
/// The control loop's period: it takes reports and dumps, hands the HTTP side a fresh view and
/// sees to its duties this often.
pub const TICK: Duration = Duration::from_millis(100);
/// The log's summary line, this often.
pub const DEFAULT_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// A reloaded configuration, and the changed settings it cannot apply without a restart.
#[derive(Debug)]
pub struct Reloaded {
    pub master: MasterConfig,
    pub needs_restart: Vec<&'static str>,
}

/// Re-reads the config file (the binary's: it knows the path and the command-line overrides).
pub type Reload = Box<dyn FnMut() -> Result<Reloaded, String> + Send>;

pub struct ControlSettings {
    /// The operator's listener.
    pub http: Option<SocketAddr>,
    /// The public listener (read-only lists); the engine must have been started with
    /// [`Settings::publish_lists`](crate::engine::Settings::publish_lists).
    pub public_http: Option<SocketAddr>,
    /// The bounds both listeners run with.
    pub http_limits: limits::HttpLimits,
    /// How often the public lists are rebuilt at most (and their `Cache-Control: max-age`).
    pub public_refresh: Duration,
    /// The allocator's hook (see [`crate::engine::Settings::housekeeping`]).
    pub housekeeping: Option<fn(bool)>,
    pub state_file: Option<PathBuf>,
    pub state_interval: Duration,
    /// Between points of the charts' history.
    pub sample_every: Duration,
    pub summary_every: Duration,
    pub config_file: Option<PathBuf>,
    pub version: &'static str,
    /// What reading the state file at start did, for the status page.
    pub state_at_start: Option<String>,
    pub reload: Option<Reload>,
    /// Set by the SIGHUP handler; the thread takes it.
    pub hup: Arc<AtomicBool>,
    /// `[[watch]]`: servers whose coming and going is posted to webhooks. They need the cores'
    /// dumps ([`crate::engine::Settings::dump_every`]).
    pub watches: Vec<watch::WatchSpec>,
    /// `[peering]`: other masters to exchange registrations with (needs the cores' dumps).
    pub peering: Option<peering::PeeringSettings>,
    /// The listeners, once bound ([`ControlSettings::bind_http`], [`ControlSettings::bind_public`]).
    operator_listener: Option<std::net::TcpListener>,
    public_listener: Option<std::net::TcpListener>,
}

impl ControlSettings {
    pub fn new(version: &'static str) -> Self {
        Self {
            http: None,
            public_http: None,
            http_limits: limits::HttpLimits::default(),
            public_refresh: limits::DEFAULT_PUBLIC_REFRESH,
            housekeeping: None,
            state_file: None,
            state_interval: Duration::from_secs(10),
            sample_every: Duration::from_secs(history::DEFAULT_SAMPLE_EVERY_SECS),
            summary_every: DEFAULT_SUMMARY_EVERY,
            config_file: None,
            version,
            state_at_start: None,
            reload: None,
            hup: Arc::new(AtomicBool::new(false)),
            watches: Vec::new(),
            peering: None,
            operator_listener: None,
            public_listener: None,
        }
    }

    /// Binds the operator's listener now (before the engine starts, so a port in use fails the
    /// start with nothing else done); [`start`] serves on it.
    pub fn bind_http(&mut self, addr: Option<SocketAddr>) -> Result<(), ControlError> {
        self.http = addr;
        self.operator_listener = addr.map(bind).transpose()?;
        Ok(())
    }

    /// Binds the public listener now, as [`ControlSettings::bind_http`] does.
    pub fn bind_public(&mut self, addr: Option<SocketAddr>) -> Result<(), ControlError> {
        self.public_http = addr;
        self.public_listener = addr.map(bind).transpose()?;
        Ok(())
    }
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ControlError> {
    serve::bind(addr).map_err(|e| ControlError::Http {
        addr,
        why: if e.kind() == std::io::ErrorKind::AddrInUse {
            "the address is already in use".to_owned()
        } else {
            e.to_string()
        },
    })
}

/// The running control thread and HTTP listeners.
pub struct Control {
    thread: Option<JoinHandle<()>>,
    finish: Arc<AtomicBool>,
    operator: Option<serve::Running>,
    public: Option<serve::Running>,
    public_builder: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    alerts: Option<alert::Alerts>,
    peering: Option<Arc<peering::PeeringCounters>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot serve HTTP on {addr}: {why}")]
    Http { addr: SocketAddr, why: String },
    #[error("the control thread: {0}")]
    Thread(String),
    #[error("the public listener needs the engine to publish its lists (Settings::publish_lists)")]
    NoLists,
}

/// Sets the engine's stop flag if the control thread dies by a panic: a master whose operator
/// side is gone (no watchdog, no state file) must not run on unseen.
struct StopOnPanic(EngineHandle);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop_all();
        }
    }
}

/// Binds the listeners (if not yet bound), starts them and the control thread.
pub fn start(engine: EngineHandle, mut s: ControlSettings) -> Result<Control, ControlError> {
    if s.operator_listener.is_none() && s.http.is_some() {
        s.bind_http(s.http)?;
    }
    if s.public_listener.is_none() && s.public_http.is_some() {
        s.bind_public(s.public_http)?;
    }
    let thread_err = |e: std::io::Error| ControlError::Thread(e.to_string());
    let (operator_listener, public_listener) =
        (s.operator_listener.take(), s.public_listener.take());
    let (limits, public_refresh, housekeeping) = (s.http_limits, s.public_refresh, s.housekeeping);
    let (snapshot_tx, snapshot_rx) =
        tokio::sync::watch::channel(Arc::new(http::Snapshot::default()));
    let reload = s.reload.take();
    let (watching, alerts) = if s.watches.is_empty() {
        (None, None)
    } else {
        let watcher = watch::Watcher::new(&s.watches, unix_now_ms());
        let alerts = alert::Alerts::start(watcher.webhooks()).map_err(thread_err)?;
        let watching = Watching {
            watcher,
            outbox: alerts.outbox.clone(),
            fresh: vec![false; engine.cores],
        };
        (Some(watching), Some(alerts))
    };
    // The view exists before any request can arrive: the first answers already know the state
    // file's fate, the config, the version.
    let peering_settings = s.peering.take();
    let mut t = Thread::new(engine.clone(), s, reload, snapshot_tx);
    if let Some(w) = &watching {
        t.view.watch = Some(Arc::new(w.watcher.status()));
        t.view.alerts = Some(w.outbox.health.clone());
    }
    t.watching = watching;
    let mut peering_counters = None;
    if let Some(p) = peering_settings {
        let p = peering::Peering::start(p, engine.clone()).map_err(thread_err)?;
        tracing::info!(listen = %p.local, "peering");
        t.view.peering = Some(p.counters.clone());
        peering_counters = Some(p.counters.clone());
        t.peering = Some(p);
    }
    t.publish();
    let mut counters = Vec::new();
    let operator = match operator_listener {
        Some(l) => {
            let app = Arc::new(http::Operator::new(snapshot_rx.clone()));
            let r = serve::spawn("muster-http", l, limits, app).map_err(thread_err)?;
            counters.push(("operator", r.counters.clone()));
            Some(r)
        }
        None => None,
    };
    let stop_public = Arc::new(AtomicBool::new(false));
    let (public, public_builder) = match public_listener {
        Some(l) => {
            let lists = engine.lists.clone().ok_or(ControlError::NoLists)?;
            let (tx, rx) = tokio::sync::watch::channel(None);
            let args = lists::BuilderArgs {
                lists,
                published: tx,
                refresh: public_refresh,
                stop: stop_public.clone(),
                housekeeping,
            };
            let builder = std::thread::Builder::new()
                .name("muster-public-lists".to_owned())
                .spawn(move || lists::run(args))
                .map_err(thread_err)?;
            let app =
                Arc::new(lists::PublicApp::new(rx, public_refresh).with_view(snapshot_rx.clone()));
            let r = serve::spawn("muster-public", l, limits, app).map_err(thread_err)?;
            counters.push(("public", r.counters.clone()));
            (Some(r), Some(builder))
        }
        None => (None, None),
    };
    t.view.http = counters;
    t.publish();
    let finish = Arc::new(AtomicBool::new(false));
    let done = finish.clone();
    let thread = std::thread::Builder::new()
        .name("muster-control".to_owned())
        .spawn(move || {
            let _guard = StopOnPanic(engine);
            t.run(&done);
        })
        .map_err(thread_err)?;
    Ok(Control {
        thread: Some(thread),
        finish,
        operator,
        public,
        // The builder stops with the engine (its list channel closes) or with this flag.
        public_builder: public_builder.map(|b| (stop_public, b)),
        alerts,
        peering: peering_counters,
    })
}

impl Control {
    /// Where the operator's HTTP is served (the port resolved).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.operator.as_ref().map(|r| r.addr)
    }

    /// The peering thread's figures (`None`: no peers).
    pub fn peering(&self) -> Option<&Arc<peering::PeeringCounters>> {
        self.peering.as_ref()
    }

    /// Where the public lists are served (the port resolved).
    pub fn public_addr(&self) -> Option<SocketAddr> {
        self.public.as_ref().map(|r| r.addr)
    }

    /// Takes the cores' last dumps, writes the state file, stops the listeners, and stops. Call
    /// after the engine stopped. `Err` if the control thread had died (a panic).
    pub fn finish(mut self) -> Result<(), ControlError> {
        self.finish.store(true, Ordering::Relaxed);
        let joined = self.thread.take().map(JoinHandle::join);
        if let Some(r) = self.public.take() {
            r.stop();
        }
        if let Some(r) = self.operator.take() {
            r.stop();
        }
        if let Some((stop, t)) = self.public_builder.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = t.join();
        }
        if let Some(a) = self.alerts.take() {
            a.stop();
        }
        match joined {
            Some(Err(p)) => Err(ControlError::Thread(format!(
                "panicked: {}",
                crate::engine::panic_message(&*p)
            ))),
            _ => Ok(()),
        }
    }
}

struct Thread {
    engine: EngineHandle,
    s: ControlSettings,
    reload: Option<Reload>,
    /// Where each tick's view goes for the operator's listener.
    snapshots: tokio::sync::watch::Sender<Arc<http::Snapshot>>,
    view: View,
    /// Each core's last report time (`at_ms`), to see it advance.
    last_at: Vec<u64>,
    sampled: (Instant, Cumulative),
    summarised: (Instant, Cumulative),
    state_written: Instant,
    /// A foreign file sits at the state path: never overwritten.
    state_blocked: bool,
    watchdog: Option<(Duration, Instant)>,
    watching: Option<Watching>,
    peering: Option<peering::Peering>,
}

/// The watches' side of the control thread.
struct Watching {
    watcher: watch::Watcher,
    outbox: alert::Outbox,
    /// Which cores dumped since the last observation: the watcher sees only whole sets (a server
    /// is in exactly one core's dump; a partial set would show the others' servers as gone).
    fresh: Vec<bool>,
}

impl Watching {
    /// Hands the watcher every server of `dumps` once every core has dumped anew; the
    /// transitions go to the alert thread. `Some` new status when it changed.
    fn observe(
        &mut self,
        now_ms: u64,
        dumps: &[Option<Arc<crate::engine::CoreDump>>],
        clock: Option<crate::engine::WallClock>,
    ) -> Option<watch::Status> {
        if !self.fresh.iter().all(|f| *f) {
            return None;
        }
        // A stopping core's last dump is no news about the servers.
        if dumps.iter().flatten().any(|d| d.last) {
            return None;
        }
        self.fresh.iter_mut().for_each(|f| *f = false);
        let seen = dumps.iter().flatten().flat_map(|d| {
            d.shard.iter().map(move |(s, _)| watch::Seen {
                addr: s.addr.addr(),
                game: d.shard.strings.get(s.game),
                name: d.shard.strings.get(s.hostname),
                listed: s.is_listed(),
                first_seen_unix_ms: clock.map_or(0, |c| {
                    c.unix_ms(crate::master::Time::from_secs(u64::from(s.first_seen)))
                }),
            })
        });
        for t in self.watcher.observe(now_ms, seen) {
            tracing::info!(
                server = %t.address,
                name = %message::clean_name(&t.name),
                after = %message::duration(t.after_ms),
                "watched server {}",
                if t.up { "back" } else { "down" }
            );
            self.outbox.send(t);
        }
        self.watcher.status_if_changed()
    }
}

impl Thread {
    fn new(
        engine: EngineHandle,
        s: ControlSettings,
        reload: Option<Reload>,
        snapshots: tokio::sync::watch::Sender<Arc<http::Snapshot>>,
    ) -> Self {
        let cores = engine.cores;
        let now_ms = unix_now_ms();
        let view = View {
            version: s.version,
            started_unix_ms: engine.started_unix_ms(),
            now_unix_ms: now_ms,
            status: vec![None; cores],
            report_seen_unix_ms: vec![0; cores],
            dumps: (0..cores).map(|_| None).collect(),
            history: Default::default(),
            state: view::StateInfo {
                file: s.state_file.as_ref().map(|p| p.display().to_string()),
                at_start: s.state_at_start.clone(),
                ..Default::default()
            },
            config: view::ConfigInfo {
                file: s.config_file.as_ref().map(|p| p.display().to_string()),
                loaded_unix: now_ms / 1000,
                ..Default::default()
            },
            clock: Some(engine.wall()),
            http: Vec::new(),
            watch: None,
            alerts: None,
            peering: None,
        };
        let state_blocked = s
            .state_file
            .as_deref()
            .is_some_and(|p| matches!(state::read(p), Err(state::StateError::Foreign)));
        if state_blocked {
            tracing::error!(
                file = %s.state_file.as_deref().unwrap_or_else(|| std::path::Path::new("")).display(),
                "the state file path holds a file that is not muster's; it will not be overwritten (persistence is off until it is moved away)"
            );
        }
        let start = Instant::now();
        Self {
            watchdog: sd_notify::watchdog_enabled().map(|d| (d, start)),
            engine,
            s,
            reload,
            snapshots,
            view,
            last_at: vec![0; cores],
            sampled: (start, Cumulative::default()),
            summarised: (start, Cumulative::default()),
            state_written: start,
            state_blocked,
            watching: None,
            peering: None,
        }
    }

    fn run(&mut self, finish: &AtomicBool) {
        loop {
            std::thread::sleep(TICK);
            self.refresh();
            self.publish();
            if finish.load(Ordering::Relaxed) {
                // The engine has stopped: its cores' last dumps are in (or never will be).
                self.refresh();
                self.publish();
                self.write_state("shutdown");
                return;
            }
            self.duties();
        }
    }

    /// Hands the operator's listener the current view (a cheap copy: the dumps are shared).
    fn publish(&self) {
        self.snapshots.send_replace(Arc::new(http::Snapshot {
            view: self.view.clone(),
            history_interval_secs: self.s.sample_every.as_secs().max(1),
        }));
    }

    /// Takes in every core's newest report and dump.
    fn refresh(&mut self) {
        let now_ms = unix_now_ms();
        self.view.now_unix_ms = now_ms;
        self.view.status = self.engine.status.latest();
        for (core, s) in self.view.status.iter().enumerate() {
            if let (Some(s), Some(last), Some(seen)) = (
                s,
                self.last_at.get_mut(core),
                self.view.report_seen_unix_ms.get_mut(core),
            ) && s.at_ms != *last
            {
                *last = s.at_ms;
                *seen = now_ms;
            }
        }
        while let Ok(d) = self.engine.dumps.try_recv() {
            let core = d.core;
            let d = Arc::new(d);
            if let Some(p) = &self.peering {
                p.dump(d.clone());
            }
            if let Some(slot) = self.view.dumps.get_mut(core) {
                *slot = Some(d);
            }
            if let Some(f) = self.watching.as_mut().and_then(|w| w.fresh.get_mut(core)) {
                *f = true;
            }
        }
        if let Some(w) = &mut self.watching
            && let Some(status) = w.observe(now_ms, &self.view.dumps, self.view.clock)
        {
            self.view.watch = Some(Arc::new(status));
        }
    }

    fn duties(&mut self) {
        let now = Instant::now();
        let since = now.duration_since(self.sampled.0);
        if since >= self.s.sample_every {
            let cum = self.view.cumulative();
            let p = history::rates(
                &self.sampled.1,
                &cum,
                since.as_secs_f64(),
                self.view.now_unix_ms as f64 / 1000.0,
                self.view.shard_servers(),
            );
            self.view.history.push(p);
            self.sampled = (now, cum);
        }
        let since = now.duration_since(self.summarised.0);
        if since >= self.s.summary_every {
            let cum = self.view.cumulative();
            let p = history::rates(&self.summarised.1, &cum, since.as_secs_f64(), 0.0, 0);
            // The list every core serves (core 0's; the others' lag by at most a refresh).
            let listed = self.view.status.first().and_then(Option::as_ref);
            tracing::info!(
                servers = self.view.shard_servers(),
                listed_valve = listed.map_or(0, |s| s.valve_listed),
                listed_dp = listed.map_or(0, |s| s.dp_listed),
                registrations_per_sec = %format!("{:.1}", p.registrations),
                queries_per_sec = %format!("{:.1}", p.queries),
                bytes_out_per_sec = %format!("{:.0}", p.bytes_out),
                drops_per_sec = %format!("{:.1}", p.drops),
                refused_per_sec = %format!("{:.1}", p.refused),
                "summary"
            );
            self.summarised = (now, cum);
        }
        if self.s.hup.swap(false, Ordering::Relaxed) {
            self.reload();
        }
        if now.duration_since(self.state_written) >= self.s.state_interval {
            self.write_state("interval");
        }
        if let Some((every, last)) = self.watchdog
            && now.duration_since(last) >= every / 2
        {
            self.watchdog = Some((every, now));
            match http::unhealthy(&self.view) {
                None => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                Some(why) => tracing::warn!(%why, "not telling systemd we are alive"),
            }
        }
    }

    fn reload(&mut self) {
        let Some(reload) = self.reload.as_mut() else {
            tracing::warn!("SIGHUP: no config file to reload (started without --config)");
            return;
        };
        match reload() {
            Ok(r) => {
                if !r.needs_restart.is_empty() {
                    tracing::warn!(
                        settings = %r.needs_restart.join(", "),
                        "changed in the config file, but these take a restart; the running values stay"
                    );
                }
                let bans = r.master.bans.len();
                if self.engine.reconfigure(r.master) {
                    self.view.config.reloads += 1;
                    self.view.config.loaded_unix = self.view.now_unix_ms / 1000;
                    self.view.config.last_error = None;
                    tracing::info!(ban_ranges = bans, "config reloaded");
                } else {
                    self.view.config.reload_errors += 1;
                    self.view.config.last_error = Some("a core did not take the new config".into());
                    tracing::error!("config reload: a core did not take the new config");
                }
            }
            Err(why) => {
                self.view.config.reload_errors += 1;
                self.view.config.last_error = Some(why.clone());
                tracing::error!(%why, "config reload refused; the running config stays");
            }
        }
    }

    /// Writes every core's latest dump to the state file — only when every core has dumped (a
    /// partial list is never saved as the whole).
    fn write_state(&mut self, why: &'static str) {
        self.state_written = Instant::now();
        let Some(path) = self.s.state_file.clone() else {
            return;
        };
        if self.state_blocked {
            return;
        }
        if self.view.dumps.iter().any(Option::is_none) {
            tracing::debug!(why, "state file not written: not every core has dumped yet");
            return;
        }
        let dumps: Vec<&crate::engine::CoreDump> =
            self.view.dumps.iter().flatten().map(|d| &**d).collect();
        let shards: Vec<&crate::master::table::ShardDump> =
            dumps.iter().map(|d| &d.shard).collect();
        let engine = &self.engine;
        let written = state::write_dumps(&path, unix_now_ms(), &shards, |d, s, seen| {
            let first = engine.unix_ms(crate::master::Time::from_secs(u64::from(s.first_seen)));
            (first / 1000, engine.unix_ms(d.expires_at(seen)))
        });
        match written {
            Ok(w) => {
                let st = &mut self.view.state;
                st.writes += 1;
                st.last_write_unix = Some(unix_now_ms() / 1000);
                st.last_write_servers = Some(w.servers);
                st.last_write_bytes = Some(w.bytes);
                st.last_error = None;
                tracing::debug!(
                    why,
                    servers = w.servers,
                    bytes = w.bytes,
                    "state file written"
                );
                if why == "shutdown" {
                    tracing::info!(servers = w.servers, file = %path.display(), "state file written");
                }
            }
            Err(e) => {
                let st = &mut self.view.state;
                st.write_errors += 1;
                st.last_error = Some(e.to_string());
                tracing::error!(file = %path.display(), error = %e, "cannot write the state file");
            }
        }
    }
}
