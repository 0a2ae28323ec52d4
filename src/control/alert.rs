//! The alert thread (`muster-alerts`): the IO of down alerts. The control thread hands it
//! [`Transition`]s over a bounded channel it never waits on ([`Outbox::send`]: a full channel drops
//! the transition, counted); the thread keeps one [`Notifier`] per webhook and, on a
//! single-threaded tokio runtime of its own, POSTs what they ask for — HTTP/1.1 over TCP, or TLS
//! (rustls; Mozilla's roots built in, and the system's) for `https://` — bounded by [`CONNECT_TIMEOUT`] per
//! address and [`POST_TIMEOUT`] in all, and tells them how it went.
//!
//! Nothing here runs on a packet core or the control thread; stopping it drops what is still
//! queued (logged).

use super::notifier::{Counts, Notifier, Outcome};
use super::watch::Transition;
use super::webhook::Webhook;
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types::ServerName};

/// Transitions waiting between the control thread and this one (a whole game watch going down
/// at once fits).
pub const MAX_CHANNEL: usize = 32_768;
/// Connecting to one address of the webhook's host, at most.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One POST in all — resolving, connecting, TLS, request, the response's head — at most.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Addresses of a webhook's host tried, at most.
pub const MAX_ADDRS: usize = 4;
/// How often the thread looks at its queues.
pub const TICK: Duration = Duration::from_millis(100);
/// Characters of an error kept for the status page.
pub const MAX_ERROR_CHARS: usize = 200;
/// Threads resolving host names at most (each lookup is a blocking call).
const MAX_BLOCKING_THREADS: usize = 2;
/// How long stopping waits for a lookup still running.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// One webhook's delivery, for the status page and metrics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delivery {
    /// Without its path (a secret).
    pub webhook: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// Transitions waiting, plus one for a message being sent or retried.
    pub pending: usize,
    pub last_delivered_unix_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_unix_ms: Option<u64>,
}

/// What the alert thread shares: each webhook's delivery, updated every tick.
#[derive(Debug, Default)]
pub struct Health {
    /// Transitions the control thread could not hand over (the channel was full).
    pub channel_full: AtomicU64,
    deliveries: Mutex<Vec<Delivery>>,
}

impl Health {
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }
}

/// The control thread's end.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: Sender<Transition>,
    pub health: Arc<Health>,
}

impl Outbox {
    /// Never waits: a full channel drops `t` (counted in [`Health::channel_full`]).
    pub fn send(&self, t: Transition) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(t) {
            self.health.channel_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The running thread.
#[derive(Debug)]
pub struct Alerts {
    pub outbox: Outbox,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Alerts {
    /// Starts the thread for these webhooks ([`Transition::hook`] indexes them).
    pub fn start(hooks: Vec<Webhook>) -> std::io::Result<Alerts> {
        let (tx, rx) = crossbeam_channel::bounded(MAX_CHANNEL);
        let health = Arc::new(Health {
            channel_full: AtomicU64::new(0),
            deliveries: Mutex::new(
                hooks
                    .iter()
                    .map(|h| Delivery {
                        webhook: h.redacted(),
                        ..Delivery::default()
                    })
                    .collect(),
            ),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(MAX_BLOCKING_THREADS)
            .thread_name("muster-alerts-dns")
            .build()?;
        let (h, s) = (health.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("muster-alerts".to_owned())
            .spawn(move || {
                rt.block_on(run(hooks, rx, s, h));
                rt.shutdown_timeout(STOP_GRACE);
            })?;
        Ok(Alerts {
            outbox: Outbox { tx, health },
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (what is still queued is dropped) and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Alerts {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The POSTs made and their outcome: status and `Retry-After`, or why there was none.
type Answer = Result<(u16, Option<String>), String>;

async fn run(
    hooks: Vec<Webhook>,
    rx: Receiver<Transition>,
    stop: Arc<AtomicBool>,
    health: Arc<Health>,
) {
    let tls = match tls_config() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(error = %e, "down alerts are off: cannot set up TLS");
            return;
        }
    };
    let start = Instant::now();
    let now_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut notifiers: Vec<Notifier> = hooks
        .iter()
        .map(|h| Notifier::new(h.is_discord()))
        .collect();
    // At most one POST per webhook is out: this channel holds at most that many answers.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Answer)>();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deliveries = health.deliveries();
    while !stop.load(Ordering::Relaxed) {
        let answer = tokio::select! {
            _ = tick.tick() => None,
            a = done_rx.recv() => a,
        };
        let now = now_ms();
        while let Ok(t) = rx.try_recv() {
            if let Some(n) = notifiers.get_mut(t.hook) {
                n.push(now, t);
            }
        }
        if let Some((i, a)) = answer
            && let (Some(hook), Some(d), Some(n)) =
                (hooks.get(i), deliveries.get_mut(i), notifiers.get_mut(i))
        {
            answered(hook, d, n, now, a);
        }
        for (i, n) in notifiers.iter_mut().enumerate() {
            if let Some(post) = n.poll(now) {
                let (hook, tls, done) = (hooks[i].clone(), tls.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let _ = done.send((i, send(&hook, tls, post.body).await));
                });
            }
        }
        for (d, n) in deliveries.iter_mut().zip(&notifiers) {
            d.counts = n.counts();
            d.pending = n.pending();
        }
        if let Ok(mut shared) = health.deliveries.lock() {
            shared.clone_from(&deliveries);
        }
    }
    let pending: usize = notifiers.iter().map(Notifier::pending).sum();
    if pending > 0 {
        tracing::warn!(pending, "stopping with down alerts not sent");
    }
}

/// Tells `n` how its POST went, and logs it.
fn answered(hook: &Webhook, d: &mut Delivery, n: &mut Notifier, now: u64, a: Answer) {
    let outcome = match &a {
        Ok((status, retry_after)) => Outcome::of_reply(*status, retry_after.as_deref()),
        Err(_) => Outcome::Failed {
            retry_after_ms: None,
        },
    };
    let unix = crate::engine::unix_now_ms();
    let webhook = hook.redacted();
    match (a, outcome) {
        (_, Outcome::Delivered) => {
            tracing::info!(%webhook, "down alert posted");
            d.last_delivered_unix_ms = Some(unix);
        }
        (Ok((status, _)), _) => {
            tracing::warn!(%webhook, status, "down alert not taken");
            d.last_error = Some(format!("HTTP {status}"));
            d.last_error_unix_ms = Some(unix);
        }
        (Err(e), _) => {
            tracing::warn!(%webhook, error = %e, "down alert not posted");
            d.last_error = Some(e.chars().take(MAX_ERROR_CHARS).collect());
            d.last_error_unix_ms = Some(unix);
        }
    }
    let gave_up = n.counts().gave_up;
    n.done(now, outcome);
    if n.counts().gave_up > gave_up {
        tracing::error!(%webhook, "down alert given up");
    }
}

/// TLS as a browser does it: Mozilla's roots and the system's (`SSL_CERT_FILE`, `SSL_CERT_DIR`,
/// `/etc/ssl/certs`… when there are any: an internal CA, a TLS-inspecting proxy), TLS 1.2 and 1.3,
/// HTTP/1.1 by ALPN.
fn tls_config() -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let system = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(system.certs);
    tracing::debug!(
        system_roots = added,
        errors = system.errors.len(),
        "TLS roots for down alerts"
    );
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut c = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(c)
}

/// One POST of `body` to `hook`, within [`POST_TIMEOUT`].
async fn send(hook: &Webhook, tls: Arc<ClientConfig>, body: Bytes) -> Answer {
    let exchange = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((hook.host.as_str(), hook.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", hook.host))?
            .take(MAX_ADDRS)
            .collect();
        let tcp = connect(&addrs).await?;
        let _ = tcp.set_nodelay(true);
        if hook.https {
            let name = ServerName::try_from(hook.host.clone())
                .map_err(|e| format!("{}: {e}", hook.host))?;
            let tls = TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", hook.host))?;
            post(TokioIo::new(tls), hook, body).await
        } else {
            post(TokioIo::new(tcp), hook, body).await
        }
    };
    tokio::time::timeout(POST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {} s", POST_TIMEOUT.as_secs()))?
}

async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut why = "the host has no address".to_owned();
    for a in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => why = format!("cannot connect to {a}: {e}"),
            Err(_) => why = format!("connecting to {a} timed out"),
        }
    }
    Err(why)
}

/// The request on a fresh connection (one per message: alerts are rare); the response's status
/// and `Retry-After`. Its body is never read.
async fn post<T>(io: T, hook: &Webhook, body: Bytes) -> Answer
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let req = Request::post(hook.path.as_str())
        .header(HOST, hook.authority.as_str())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("muster/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(body))
        .map_err(|e| e.to_string());
    let answer = match req {
        Ok(req) => sender
            .send_request(req)
            .await
            .map(|r| {
                let retry = r
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                (r.status().as_u16(), retry)
            })
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    conn.abort();
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};

    /// What a receiver was sent: (request line, headers, body) per request.
    type Got = Vec<(String, String, String)>;

    /// A receiver on 127.0.0.1 answering each POST with the next of `statuses` (then 204); what
    /// it was sent, as (request line, headers, body).
    fn receiver(statuses: Vec<&'static str>) -> (String, std::thread::JoinHandle<Got>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook/secret?x=1", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            for i in 0..statuses.len() + 1 {
                let (s, _) = l.accept().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let (mut headers, mut len) = (String::new(), 0);
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    headers.push_str(&h);
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                got.push((
                    line.trim().to_owned(),
                    headers,
                    String::from_utf8(body).unwrap(),
                ));
                let status = statuses.get(i).copied().unwrap_or("204 No Content");
                let mut s = s;
                write!(
                    s,
                    "HTTP/1.1 {status}\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n"
                )
                .unwrap();
            }
            got
        });
        (url, t)
    }

    fn transition(port: u16) -> Transition {
        Transition {
            hook: 0,
            address: ([192, 0, 2, 1], port).into(),
            name: "srv".to_owned(),
            game: "g".to_owned(),
            up: false,
            after_ms: 3_600_000,
            at_unix_ms: 0,
        }
    }

    #[test]
    fn a_post_is_retried_after_a_failure_and_delivered_once() {
        let (url, got) = receiver(vec!["500 Internal Server Error"]);
        let alerts = Alerts::start(vec![Webhook::parse(&url).unwrap()]).unwrap();
        alerts.outbox.send(transition(1));
        let got = got.join().unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, "POST /hook/secret?x=1 HTTP/1.1");
        assert_eq!(got[0].2, got[1].2, "the same message again");
        assert_eq!(
            got[0].2,
            r#"{"text":"srv (192.0.2.1:1) is down after 1h up"}"#
        );
        let headers = got[0].1.to_ascii_lowercase();
        assert!(
            headers.contains("content-type: application/json"),
            "{headers}"
        );
        assert!(headers.contains("user-agent: muster/"), "{headers}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let d = loop {
            let d = alerts.outbox.health.deliveries();
            if d[0].counts.sent == 1 || Instant::now() > deadline {
                break d;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(
            (d[0].counts.sent, d[0].counts.failed, d[0].pending),
            (1, 1, 0)
        );
        assert_eq!(d[0].last_error.as_deref(), Some("HTTP 500"));
        assert!(d[0].webhook.ends_with("/…") && !d[0].webhook.contains("secret"));
        alerts.stop();
    }

    #[test]
    fn an_unreachable_webhook_is_an_error_not_a_hang() {
        // A port nobody listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hook = Webhook::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let a = rt.block_on(send(
            &hook,
            Arc::new(tls_config().unwrap()),
            Bytes::from_static(b"{}"),
        ));
        assert!(a.unwrap_err().contains("cannot connect"));
    }
}
