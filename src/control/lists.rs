//! The public listener's two halves: the thread that turns the engine's list publications into
//! [`Published`] answers (off the packet cores and the control thread, paced like the list
//! builder), and the [`App`] that serves them.

use super::limits::PUBLIC_BUILD_DUTY;
use super::public::{self, Published, Static};
use super::reply::Resource;
use super::serve::App;
use crate::master::List;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long the builder waits for a publication before it looks at the stop flag.
pub const TICK: Duration = Duration::from_millis(100);

/// What the public lists' builder runs with.
pub struct BuilderArgs {
    /// Every list the engine publishes (the newest waiting one is taken).
    pub lists: Receiver<Arc<List>>,
    pub published: watch::Sender<Option<Arc<Published>>>,
    /// At most one build per refresh.
    pub refresh: Duration,
    pub stop: Arc<AtomicBool>,
    /// The allocator's hook (the binary's): called with `true` after a build replaced the last
    /// one, whose memory (tens of MB at a million servers) is then handed back.
    pub housekeeping: Option<fn(bool)>,
}

/// The thread body: builds the answers of each new publication, at most once per `refresh` and
/// never sooner than [`PUBLIC_BUILD_DUTY`] × the last build's time after it.
pub fn run(a: BuilderArgs) {
    let refresh_secs = a.refresh.as_secs().max(1);
    let mut pending: Option<Arc<List>> = None;
    let mut next_build = Instant::now();
    let mut built_epoch = None;
    while !a.stop.load(Ordering::Relaxed) {
        match a.lists.recv_timeout(TICK) {
            Ok(l) => pending = Some(l),
            Err(RecvTimeoutError::Timeout) => {}
            // The engine has stopped.
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while let Ok(l) = a.lists.try_recv() {
            pending = Some(l);
        }
        if Instant::now() < next_build {
            continue;
        }
        let Some(list) = pending.take() else {
            continue;
        };
        if built_epoch == Some(list.epoch) {
            continue;
        }
        let started = Instant::now();
        let p = Published::build(&list, refresh_secs, crate::engine::unix_now_ms() / 1000);
        drop(list);
        let took = started.elapsed();
        built_epoch = Some(p.epoch);
        tracing::debug!(
            servers = p.len(),
            heap_mib = p.heap_bytes() >> 20,
            took_ms = took.as_millis() as u64,
            "public lists built"
        );
        a.published.send_replace(Some(Arc::new(p)));
        if let Some(f) = a.housekeeping {
            f(true);
        }
        next_build = started + a.refresh.max(took * PUBLIC_BUILD_DUTY);
    }
}

/// The public listener: read-only lists from the latest publication, and the browser page.
pub struct PublicApp {
    published: watch::Receiver<Option<Arc<Published>>>,
    pages: Static,
    /// The operator's view, for `/api/v1/servers/<addr>` ("why am I not listed?").
    view: Option<watch::Receiver<Arc<super::http::Snapshot>>>,
}

impl PublicApp {
    pub fn new(published: watch::Receiver<Option<Arc<Published>>>, refresh: Duration) -> Self {
        Self {
            published,
            pages: Static::new(refresh.as_secs().max(1)),
            view: None,
        }
    }

    /// Answers "why am I not listed?" from `view` too.
    pub fn with_view(mut self, view: watch::Receiver<Arc<super::http::Snapshot>>) -> Self {
        self.view = Some(view);
        self
    }
}

impl App for PublicApp {
    fn answer(&self, path: &str, query: &str) -> impl Future<Output = Arc<Resource>> + Send + '_ {
        let route = public::route(path, query);
        let view = self.view.as_ref().map(|v| v.borrow().clone());
        async move {
            if let (public::Route::Why(addr), Some(snap)) = (&route, view) {
                let addr = *addr;
                // A scan of every core's dump: off the listener's thread.
                let done = tokio::task::spawn_blocking(move || snap.view.why(addr)).await;
                return match done {
                    Ok(w) => super::http::json_resource(&w),
                    Err(_) => Arc::new(Resource::text(500, "internal error\n")),
                };
            }
            let published = self.published.borrow().clone();
            public::answer(&route, published.as_deref(), &self.pages)
        }
    }
}
