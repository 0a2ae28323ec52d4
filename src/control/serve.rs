//! One HTTP listener on a thread of its own: a single-threaded tokio runtime running hyper's
//! HTTP/1 server, never a packet core and never the control thread. Both listeners (the
//! operator's and the public one) run this with their own [`App`] and [`HttpLimits`]:
//!
//! - connections registered per source, the stalest idle one evicted at a cap ([`super::conns`]);
//! - a request head of at most [`MAX_HEAD_BYTES`] in at most `header_timeout` (hyper);
//! - idle and slow-reader timeouts on the socket ([`super::stall`]);
//! - no request body is ever read: one announced gets `413` and the connection closed
//!   ([`super::request::check`]);
//! - heavy work (encoding operator answers, compressing) on one blocking thread
//!   ([`MAX_BLOCKING_THREADS`]), so `/healthz` is answered on the runtime's thread meanwhile.

use super::conns::{Conn, ConnCounters, Registry};
use super::limits::{
    HttpLimits, LISTEN_BACKLOG, MAX_BLOCKING_THREADS, MAX_HEAD_BYTES, MAX_HEADERS,
};
use super::reply::{Cache, Chosen, Resource, Wants, choose};
use super::request::{self, Head, Refusal};
use super::stall::{Clock, Guarded};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

/// How long accepting pauses after the process ran out of file descriptors (or another accept
/// error), so the loop never spins.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long stopping waits for connections still open.
pub const STOP_GRACE: Duration = Duration::from_millis(500);

/// What a listener serves: a resource for each routed GET/HEAD (the checks common to every
/// request are done before).
pub trait App: Send + Sync + 'static {
    fn answer(&self, path: &str, query: &str) -> impl Future<Output = Arc<Resource>> + Send + '_;
}

/// Binds a TCP listener (address reuse, non-blocking, [`LISTEN_BACKLOG`]) — before anything else
/// starts, so a port in use fails the start with nothing done.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(LISTEN_BACKLOG)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// A listener being served.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub counters: Arc<ConnCounters>,
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, closes the connections (after at most [`STOP_GRACE`]) and joins the thread.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Serves `listener` with `app` on a thread named `name`.
pub fn spawn<A: App>(
    name: &str,
    listener: std::net::TcpListener,
    limits: HttpLimits,
    app: Arc<A>,
) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let registry = Registry::new(limits.max_connections, limits.max_connections_per_source);
    let counters = registry.counters.clone();
    let stop = Arc::new(Notify::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_name(format!("{name}-blocking"))
        .build()?;
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            rt.block_on(accept_loop(listener, registry, limits, app, stopping));
            rt.shutdown_timeout(STOP_GRACE);
        })?;
    Ok(Running {
        addr,
        counters,
        stop,
        thread: Some(thread),
    })
}

async fn accept_loop<A: App>(
    listener: std::net::TcpListener,
    registry: Arc<Registry>,
    limits: HttpLimits,
    app: Arc<A>,
    stop: Arc<Notify>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "HTTP listener unusable");
            return;
        }
    };
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = stop.notified() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(conn) = registry.admit(peer.ip()) else {
                    // Every connection at the cap is busy answering: refuse this one.
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_conn(stream, conn, app.clone(), limits));
            }
            Err(e) => {
                // EMFILE and the like: say so now and then, and pause instead of spinning.
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "HTTP accept failed; pausing");
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Serves one registered connection until it ends, times out or is evicted.
async fn serve_conn<IO, A>(io: IO, conn: Conn, app: Arc<A>, limits: HttpLimits)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: App,
{
    let counters = conn.counters();
    let clock = Clock {
        idle_timeout: limits.idle_timeout,
        write_timeout: limits.write_timeout,
        min_send_rate: limits.min_send_rate,
    };
    let io = TokioIo::new(Guarded::new(io, clock, conn.busy.clone(), counters.clone()));
    let busy = conn.busy.clone();
    let service_counters = counters.clone();
    let svc = hyper::service::service_fn(move |req| {
        handle(req, app.clone(), busy.clone(), service_counters.clone())
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .max_headers(MAX_HEADERS)
        // A client may shut its side once it has sent its request (`nc -N`, this module's
        // `exchange`): answer it, then close.
        .half_close(true)
        .keep_alive(true);
    let served = b.serve_connection(io, svc);
    tokio::select! {
        r = served => {
            if let Err(e) = r && e.is_timeout() {
                counters.timed_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ = conn.evicted.notified() => {}
    }
    drop(conn);
}

/// Runs `request` (raw bytes, as a client would send them, the client then closing its side)
/// through everything a connection goes through — hyper's parser, the checks, `app` — in memory,
/// and returns every byte answered. For the fuzz target and property tests; never for serving.
pub fn exchange<A: App>(app: Arc<A>, limits: HttpLimits, request: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let registry = Registry::new(limits.max_connections, limits.max_connections_per_source);
        let Some(conn) = registry.admit(std::net::Ipv4Addr::LOCALHOST.into()) else {
            return Vec::new();
        };
        let task = tokio::spawn(serve_conn(server, conn, app, limits));
        let mut answer = Vec::new();
        let talk = async {
            let _ = client.write_all(request).await;
            let _ = client.shutdown().await;
            let _ = client.read_to_end(&mut answer).await;
        };
        let _ = tokio::time::timeout(EXCHANGE_LIMIT, talk).await;
        task.abort();
        answer
    })
}

/// How long [`exchange`] waits for the answer.
pub const EXCHANGE_LIMIT: Duration = Duration::from_secs(5);

/// Clears the connection's busy flag when the response body is done (sent or abandoned).
struct BusyGuard(Arc<AtomicBool>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// A response body: one shared chunk.
pub struct Body {
    data: Option<Bytes>,
    _busy: Option<BusyGuard>,
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.data
                .take()
                .filter(|d| !d.is_empty())
                .map(|d| Ok(Frame::data(d))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.data.as_ref().is_none_or(Bytes::is_empty)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

async fn handle<A: App>(
    req: Request<Incoming>,
    app: Arc<A>,
    busy: Arc<AtomicBool>,
    counters: Arc<ConnCounters>,
) -> Result<Response<Body>, Infallible> {
    busy.store(true, Ordering::Relaxed);
    let guard = BusyGuard(busy);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let content_length: Vec<&[u8]> = req
        .headers()
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let head = Head {
        method: req.method().as_str().as_bytes(),
        target: target.as_bytes(),
        content_length: &content_length,
        transfer_encoding: req.headers().contains_key(header::TRANSFER_ENCODING),
    };
    let head_only = match request::check(&head) {
        Ok(h) => h,
        Err(refusal) => {
            if refusal == Refusal::Body {
                counters.bodies_refused.fetch_add(1, Ordering::Relaxed);
            }
            let mut r = Resource::text(refusal.status(), refusal.message());
            r.extra.allow = refusal == Refusal::Method;
            let chosen = choose(&r, Wants::default()).await;
            // A body announced is never read: the connection cannot carry another request.
            return Ok(response(&r, chosen, refusal == Refusal::Body, guard));
        }
    };
    let (path, query) = request::split_target(target);
    let resource = app.answer(path, query).await;
    let wants = Wants {
        head_only,
        if_none_match: req
            .headers()
            .get(header::IF_NONE_MATCH)
            .map(HeaderValue::as_bytes),
        accept_encoding: req
            .headers()
            .get(header::ACCEPT_ENCODING)
            .map(HeaderValue::as_bytes),
    };
    let chosen = choose(&resource, wants).await;
    Ok(response(&resource, chosen, false, guard))
}

fn response(r: &Resource, c: Chosen, close: bool, guard: BusyGuard) -> Response<Body> {
    let head_only_len = (c.body.is_empty() && c.content_length > 0).then_some(c.content_length);
    let mut resp = Response::new(Body {
        data: Some(c.body),
        _busy: Some(guard),
    });
    *resp.status_mut() =
        hyper::StatusCode::from_u16(c.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    match r.cache {
        Cache::NoStore => {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Cache::Public(secs) => {
            if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={secs}")) {
                h.insert(header::CACHE_CONTROL, v);
            }
        }
    }
    if let Some(e) = c
        .etag
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        h.insert(header::ETAG, e);
    }
    if r.compressible() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if c.gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if let Some(len) = head_only_len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if r.extra.cors {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    if let Some(csp) = r.extra.csp {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    if r.extra.allow {
        h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::http::{Operator, Snapshot};
    use crate::control::lists::PublicApp;
    use proptest::prelude::*;
    use tokio::sync::watch;

    fn operator() -> Arc<Operator> {
        let (_tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        Arc::new(Operator::new(rx))
    }

    fn public() -> Arc<PublicApp> {
        let (_tx, rx) = watch::channel(None);
        Arc::new(PublicApp::new(rx, Duration::from_secs(5)))
    }

    fn status(answer: &[u8]) -> u16 {
        answer
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Every status line in a (possibly pipelined) answer.
    fn statuses(answer: &[u8]) -> Vec<u16> {
        answer
            .windows(9)
            .enumerate()
            .filter(|(_, w)| *w == b"HTTP/1.1 ")
            .map(|(i, _)| status(&answer[i..]))
            .collect()
    }

    #[test]
    fn requests_in_memory_get_the_answers_their_checks_say() {
        let l = HttpLimits::default();
        let op = operator();
        let a = exchange(op.clone(), l, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        // No core has reported in a default view: healthy is "every core reports" of zero cores.
        assert_eq!(status(&a), 200, "{}", String::from_utf8_lossy(&a));
        let a = exchange(
            op.clone(),
            l,
            b"GET /healthz HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
        );
        assert!(
            matches!(status(&a), 413 | 431),
            "{}",
            String::from_utf8_lossy(&a)
        );
        let a = exchange(
            op.clone(),
            l,
            b"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
        );
        assert_eq!(status(&a), 413);
        assert!(String::from_utf8_lossy(&a).contains("connection: close"));
        let a = exchange(op.clone(), l, b"DELETE / HTTP/1.1\r\n\r\n");
        assert_eq!(status(&a), 405);
        assert!(String::from_utf8_lossy(&a).contains("allow: GET, HEAD"));
        let a = exchange(op.clone(), l, b"HEAD / HTTP/1.1\r\n\r\n");
        assert_eq!(status(&a), 200);
        let text = String::from_utf8_lossy(&a);
        assert!(text.ends_with("\r\n\r\n"), "HEAD: no body: {text}");
        assert!(text.contains(&format!(
            "content-length: {}",
            crate::control::http::PAGE.len()
        )));
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(64 * 1024));
        assert_eq!(status(&exchange(op.clone(), l, long.as_bytes())), 431);
        let target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(4000));
        assert_eq!(status(&exchange(op.clone(), l, target.as_bytes())), 414);
        // Pipelined requests, each answered in order.
        let two = b"GET /nope HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n";
        assert_eq!(statuses(&exchange(op, l, two)), [404, 200]);
        let p = public();
        assert_eq!(
            statuses(&exchange(
                p.clone(),
                l,
                b"GET /v1/servers/valve HTTP/1.1\r\n\r\n"
            )),
            [503],
            "nothing published yet"
        );
        assert_eq!(statuses(&exchange(p, l, b"GET / HTTP/1.1\r\n\r\n")), [200]);
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("/".to_owned()),
            Just("/healthz".to_owned()),
            Just("/api/v1/servers".to_owned()),
            Just("/v1/servers/valve".to_owned()),
            Just("/api/servers".to_owned()),
            "[ -~]{0,40}",
            "/[a-z%0-9/._?=&+-]{0,60}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::wire::NO_PANIC_CASES))]
        /// Whatever the method, target and headers, each listener answers with a status its
        /// checks allow, and never fails to answer a well-framed request.
        #[test]
        fn any_request_gets_a_well_formed_answer(
            method in prop_oneof![
                Just("GET".to_owned()),
                Just("HEAD".to_owned()),
                Just("POST".to_owned()),
                "[A-Z]{1,8}",
            ],
            path in token(),
            query in "[a-z_=&%0-9.+-]{0,80}",
            headers in proptest::collection::vec(("[A-Za-z-]{1,20}", "[ -~]{0,60}"), 0..6),
            public_side in any::<bool>(),
        ) {
            let target = if query.is_empty() { path } else { format!("{path}?{query}") };
            let mut req = format!("{method} {target} HTTP/1.1\r\nHost: m\r\n");
            for (k, v) in &headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            let l = HttpLimits::default();
            let a = if public_side {
                exchange(public(), l, req.as_bytes())
            } else {
                exchange(operator(), l, req.as_bytes())
            };
            let s = status(&a);
            prop_assert!(
                [200, 304, 400, 404, 405, 413, 414, 431, 503].contains(&s),
                "{req:?} → {:?}",
                String::from_utf8_lossy(&a)
            );
        }
    }
}
