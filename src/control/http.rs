//! The operator's HTTP endpoints (served by [`super::serve`] on the operator's listener, from the
//! control thread's latest [`View`], never on the control thread itself):
//!
//! | path | what |
//! |---|---|
//! | `/` | the status page (embedded; it draws from the JSON below) |
//! | `/metrics` | Prometheus text ([`super::metrics`]) |
//! | `/api/stats` | totals, rates, per-game counts, top refused sources, per core, state, config |
//! | `/api/servers?game=NAME&page=N` | listed servers, [`PAGE_SIZE`](super::view::PAGE_SIZE) a page |
//! | `/api/history` | the last hour of rates |
//! | `/api/watch` | the watched servers (`[[watch]]`), their last transitions, each webhook's delivery |
//! | `/healthz` | `ok` while every core reports, 503 otherwise |
//!
//! Only GET (and HEAD). No authentication: the default listener is loopback. `/healthz` is
//! answered on the listener's own thread; everything else is encoded on its blocking thread, so a
//! burst of heavy requests never delays it.

use super::reply::{Cache, HTML, JSON, Resource, TEXT};
use super::request::param;
use super::serve::App;
use super::view::View;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// The status page, embedded: no external fetches.
pub const PAGE: &str = include_str!("page.html");

/// A core whose report is older than this makes `/healthz` fail (it reports every tick).
pub const HEALTHY_REPORT_AGE_MS: u64 = 5_000;

/// What the control thread hands the operator's listener every tick.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub view: View,
    /// Between points of `/api/history`.
    pub history_interval_secs: u64,
}

/// A reply: status, content type, body.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

fn reply(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        content_type,
        body: body.into(),
    }
}

fn json(v: &impl serde::Serialize) -> Reply {
    match serde_json::to_vec(v) {
        Ok(b) => reply(200, JSON, b),
        Err(e) => reply(500, TEXT, e.to_string()),
    }
}

/// A JSON answer as a resource (never cached: it is one moment's).
pub fn json_resource(v: &impl serde::Serialize) -> Arc<Resource> {
    resource(json(v))
}

/// Why the engine is not healthy, if it is not.
pub fn unhealthy(view: &View) -> Option<String> {
    unhealthy_at(view, view.now_unix_ms)
}

/// The same, at `now_ms` (the HTTP side asks with the time of the request: a control thread that
/// stopped taking reports makes the engine look unhealthy, as it should).
pub fn unhealthy_at(view: &View, now_ms: u64) -> Option<String> {
    for (core, s) in view.status.iter().enumerate() {
        if s.is_none() {
            return Some(format!("core {core} has not reported"));
        }
        let age = view
            .report_seen_unix_ms
            .get(core)
            .map_or(u64::MAX, |at| now_ms.saturating_sub(*at));
        if age > HEALTHY_REPORT_AGE_MS {
            return Some(format!("core {core} last reported {age} ms ago"));
        }
    }
    None
}

/// Answers `GET url`.
pub fn route(view: &View, url: &str, history_interval_secs: u64) -> Reply {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    match path {
        "/" | "/index.html" => reply(200, HTML, PAGE),
        "/metrics" => reply(
            200,
            super::metrics::CONTENT_TYPE,
            super::metrics::render(view),
        ),
        "/api/stats" => json(&view.stats()),
        "/api/history" => json(&view.history_json(history_interval_secs)),
        "/api/watch" => json(&view.watch_json()),
        "/api/servers" => {
            let game = param(query, "game").filter(|g| !g.is_empty());
            let page = match param(query, "page").map(|p| p.parse::<usize>()) {
                None => 0,
                Some(Ok(p)) => p,
                Some(Err(_)) => {
                    return reply(400, TEXT, "page must be a number\n");
                }
            };
            json(&view.servers_page(game.as_deref(), page))
        }
        _ if path.starts_with("/api/v1/servers/") => {
            match path
                .strip_prefix("/api/v1/servers/")
                .and_then(super::public::why_address)
            {
                Some(a) => json(&view.why(a)),
                None => reply(400, TEXT, "expected /api/v1/servers/<ip:port>\n"),
            }
        }
        "/healthz" => match unhealthy(view) {
            None => reply(200, TEXT, "ok\n"),
            Some(why) => reply(503, TEXT, format!("{why}\n")),
        },
        _ => reply(404, TEXT, "not found\n"),
    }
}

/// The operator's listener: answers from the latest [`Snapshot`].
pub struct Operator {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    page: Arc<Resource>,
}

impl Operator {
    pub fn new(snapshot: watch::Receiver<Arc<Snapshot>>) -> Operator {
        Operator {
            snapshot,
            page: Arc::new(Resource::new(
                200,
                HTML,
                Cache::NoStore,
                Bytes::from_static(PAGE.as_bytes()),
            )),
        }
    }
}

fn resource(r: Reply) -> Arc<Resource> {
    Arc::new(Resource::new(
        r.status,
        r.content_type,
        Cache::NoStore,
        Bytes::from(r.body),
    ))
}

impl App for Operator {
    fn answer(&self, path: &str, query: &str) -> impl Future<Output = Arc<Resource>> + Send + '_ {
        let snap = self.snapshot.borrow().clone();
        let url = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        async move {
            match url.as_str() {
                "/healthz" => {
                    let now = crate::engine::unix_now_ms();
                    resource(match unhealthy_at(&snap.view, now) {
                        None => reply(200, TEXT, "ok\n"),
                        Some(why) => reply(503, TEXT, format!("{why}\n")),
                    })
                }
                "/" | "/index.html" => self.page.clone(),
                _ => {
                    let done = tokio::task::spawn_blocking(move || {
                        route(&snap.view, &url, snap.history_interval_secs)
                    })
                    .await;
                    match done {
                        Ok(r) => resource(r),
                        Err(_) => Arc::new(Resource::text(500, "internal error\n")),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_health() {
        let mut v = View::default();
        assert_eq!(route(&v, "/", 10).status, 200);
        assert_eq!(route(&v, "/nope", 10).status, 404);
        assert_eq!(route(&v, "/api/servers?page=x", 10).status, 400);
        let w: serde_json::Value =
            serde_json::from_slice(&route(&v, "/api/watch", 10).body).unwrap();
        assert_eq!(
            w["hooks"],
            serde_json::json!([]),
            "no watch: nothing watched"
        );
        let page = route(&v, "/api/servers?game=cstrike&page=0", 10);
        let j: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
        assert_eq!(
            (j["total"].as_u64(), j["game"].as_str()),
            (Some(0), Some("cstrike"))
        );
        v.status = vec![None];
        v.report_seen_unix_ms = vec![0];
        assert_eq!(
            route(&v, "/healthz", 10).status,
            503,
            "a core that never reported"
        );
        v.status = vec![Some(crate::engine::CoreStatus::default())];
        v.now_unix_ms = 10_000;
        v.report_seen_unix_ms = vec![9_000];
        assert_eq!(route(&v, "/healthz", 10).status, 200);
        v.report_seen_unix_ms = vec![1_000];
        assert_eq!(
            route(&v, "/healthz", 10).status,
            503,
            "a core silent for 9 s"
        );
    }
}
