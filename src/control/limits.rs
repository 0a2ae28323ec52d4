//! Every bound of the HTTP side, in one place: what a connection may cost and for how long.
//!
//! The fixed ones are protocol hygiene no operator needs to tune (`MAX_*`); the others are
//! defaults of the config's `[http]` table (`DEFAULT_*`), each checked against a `*_RANGE`.

use std::time::Duration;

/// Bytes of a request head (request line and headers together) hyper buffers at most; a longer
/// head gets `431` and the connection is closed. 16 KiB holds any browser's cookies-free request.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Header lines in one request at most (more: `431`).
pub const MAX_HEADERS: usize = 64;
/// Bytes of a request body accepted: none. A request announcing one (`Content-Length` > 0 or
/// `Transfer-Encoding`) gets `413` and the connection is closed without reading it.
pub const MAX_BODY_BYTES: u64 = 0;
/// Bytes of a path with its query string that routing looks at; longer gets `414`.
pub const MAX_TARGET_BYTES: usize = 2048;
/// Connections waiting in the kernel to be accepted, per listener.
pub const LISTEN_BACKLOG: i32 = 1024;
/// Threads of blocking work (encoding operator answers, compressing a published list the first
/// time a client asks for gzip) per listener: one, so no request burst takes more than one CPU.
pub const MAX_BLOCKING_THREADS: usize = 1;
/// Bodies this size and over are compressed for a client that accepts gzip; smaller ones are not
/// worth it.
pub const MIN_GZIP_BYTES: usize = 1024;

/// Connections a listener holds at most, all sources together.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2048;
/// Connections one source holds at most (an IPv4 address, or an IPv6 /64).
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 32;
/// From the moment a connection waits for a request (accepted, or its last response sent) to the
/// end of that request's head; a client that takes longer is disconnected (slowloris).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No byte in either direction for this long, and no write waiting: the connection is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// A response write that makes no progress for this long, or less than
/// [`DEFAULT_MIN_SEND_RATE`] on average over such a stretch, closes the connection: a client
/// that does not read (or reads a byte now and then) is dropped.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes per second a client must take on average while a response waits on it.
pub const DEFAULT_MIN_SEND_RATE: u64 = 4096;
/// The public lists are rebuilt from the published list at most this often (and never faster
/// than [`PUBLIC_BUILD_DUTY`] times their build time); `Cache-Control: max-age` says the same.
pub const DEFAULT_PUBLIC_REFRESH: Duration = Duration::from_secs(5);
/// A public build that took T is followed by at least `PUBLIC_BUILD_DUTY × T` before the next
/// (the builder keeps to a fifth of a CPU however large the list).
pub const PUBLIC_BUILD_DUTY: u32 = 5;

/// Accepted ranges of the settings.
pub const MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<usize> = 1..=65_536;
pub const TIMEOUT_SECS_RANGE: std::ops::RangeInclusive<u64> = 1..=3600;
pub const PUBLIC_REFRESH_SECS_RANGE: std::ops::RangeInclusive<u64> = 1..=3600;

/// The bounds one listener runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub min_send_rate: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            min_send_rate: DEFAULT_MIN_SEND_RATE,
        }
    }
}
