//! The operator's HTTP endpoints, served by `tiny_http` on the control thread:
//!
//! | path | what |
//! |---|---|
//! | `/` | the status page (embedded; it draws from the JSON below) |
//! | `/metrics` | Prometheus text ([`super::metrics`]) |
//! | `/api/stats` | totals, rates, per-game counts, top refused sources, per core, state, config |
//! | `/api/servers?game=NAME&page=N` | listed servers, [`PAGE_SIZE`](super::view::PAGE_SIZE) a page |
//! | `/api/history` | the last hour of rates |
//! | `/healthz` | `ok` while every core reports, 503 otherwise |
//!
//! Only GET (and HEAD). No authentication: the default listener is loopback.

use super::view::View;
use tiny_http::{Header, Method, Request, Response};

/// The status page, embedded: no external fetches.
pub const PAGE: &str = include_str!("page.html");

/// A core whose report is older than this makes `/healthz` fail (it reports every tick).
pub const HEALTHY_REPORT_AGE_MS: u64 = 5_000;

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
        Ok(b) => reply(200, "application/json", b),
        Err(e) => reply(500, "text/plain; charset=utf-8", e.to_string()),
    }
}

/// Why the engine is not healthy, if it is not.
pub fn unhealthy(view: &View) -> Option<String> {
    for (core, s) in view.status.iter().enumerate() {
        if s.is_none() {
            return Some(format!("core {core} has not reported"));
        }
        let age = view
            .report_seen_unix_ms
            .get(core)
            .map_or(u64::MAX, |at| view.now_unix_ms.saturating_sub(*at));
        if age > HEALTHY_REPORT_AGE_MS {
            return Some(format!("core {core} last reported {age} ms ago"));
        }
    }
    None
}

/// The value of `key` in a query string (`a=1&b=2`), percent-decoded.
fn param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Answers `GET url`.
pub fn route(view: &View, url: &str, history_interval_secs: u64) -> Reply {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    match path {
        "/" | "/index.html" => reply(200, "text/html; charset=utf-8", PAGE),
        "/metrics" => reply(
            200,
            super::metrics::CONTENT_TYPE,
            super::metrics::render(view),
        ),
        "/api/stats" => json(&view.stats()),
        "/api/history" => json(&view.history_json(history_interval_secs)),
        "/api/servers" => {
            let game = param(query, "game").filter(|g| !g.is_empty());
            let page = match param(query, "page").map(|p| p.parse::<usize>()) {
                None => 0,
                Some(Ok(p)) => p,
                Some(Err(_)) => {
                    return reply(400, "text/plain; charset=utf-8", "page must be a number\n");
                }
            };
            json(&view.servers_page(game.as_deref(), page))
        }
        "/healthz" => match unhealthy(view) {
            None => reply(200, "text/plain; charset=utf-8", "ok\n"),
            Some(why) => reply(503, "text/plain; charset=utf-8", format!("{why}\n")),
        },
        _ => reply(404, "text/plain; charset=utf-8", "not found\n"),
    }
}

/// Answers one request (errors writing to a client that went away are its own business).
pub fn respond(view: &View, req: Request, history_interval_secs: u64) {
    let r = match req.method() {
        Method::Get | Method::Head => route(view, req.url(), history_interval_secs),
        _ => reply(405, "text/plain; charset=utf-8", "GET only\n"),
    };
    let mut resp = Response::from_data(r.body).with_status_code(r.status);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], r.content_type.as_bytes()) {
        resp = resp.with_header(h);
    }
    if let Ok(h) = Header::from_bytes(&b"Cache-Control"[..], &b"no-store"[..]) {
        resp = resp.with_header(h);
    }
    let _ = req.respond(resp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        assert_eq!(param("game=cstrike&page=2", "page").as_deref(), Some("2"));
        assert_eq!(
            param("game=Team%20Fortress+2", "game").as_deref(),
            Some("Team Fortress 2")
        );
        assert_eq!(
            param("game=a%zz", "game").as_deref(),
            Some("a%zz"),
            "bad escapes kept"
        );
        assert_eq!(param("game", "game").as_deref(), Some(""));
        assert_eq!(param("", "game"), None);
    }

    #[test]
    fn routes_and_health() {
        let mut v = View::default();
        assert_eq!(route(&v, "/", 10).status, 200);
        assert_eq!(route(&v, "/nope", 10).status, 404);
        assert_eq!(route(&v, "/api/servers?page=x", 10).status, 400);
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
