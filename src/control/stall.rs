//! A connection's clock: the socket wrapped so that silence and slow reading end it.
//!
//! - **Idle**: no byte in either direction for `idle_timeout` while no request is being answered
//!   and no write waits → the next read fails with `TimedOut` (hyper then closes the connection).
//! - **Write stall**: once a write has to wait (the client's receive window is full), the client
//!   must take at least `min_send_rate` bytes a second on average over each `write_timeout`
//!   stretch; one that takes less — or nothing — fails the write. A reply is then never held
//!   hostage by a reader that does not read.
//!
//! hyper's own `header_read_timeout` bounds how long a request head may take to arrive.

use super::conns::ConnCounters;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The timeouts of one connection.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub min_send_rate: u64,
}

/// `io` with its clock.
#[derive(Debug)]
pub struct Guarded<IO> {
    io: IO,
    clock: Clock,
    busy: Arc<AtomicBool>,
    counters: Arc<ConnCounters>,
    last_activity: Instant,
    idle: Pin<Box<Sleep>>,
    /// Since when writes have had to wait, and the bytes written since.
    stall: Option<(Instant, u64)>,
    stall_sleep: Pin<Box<Sleep>>,
    timed_out: bool,
}

fn timed_out(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what)
}

impl<IO> Guarded<IO> {
    pub fn new(io: IO, clock: Clock, busy: Arc<AtomicBool>, counters: Arc<ConnCounters>) -> Self {
        let now = Instant::now();
        Self {
            io,
            clock,
            busy,
            counters,
            last_activity: now,
            idle: Box::pin(tokio::time::sleep_until(now + clock.idle_timeout)),
            stall: None,
            stall_sleep: Box::pin(tokio::time::sleep_until(now + clock.write_timeout)),
            timed_out: false,
        }
    }

    fn expire(&mut self, what: &'static str) -> io::Error {
        if !self.timed_out {
            self.timed_out = true;
            self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
        }
        timed_out(what)
    }

    /// Whether the client took enough over the stretch that began at `start` (`Ok(true)`: the
    /// stretch is over and a new one begins).
    fn stretch_ok(&self, start: Instant, bytes: u64, now: Instant) -> Result<bool, ()> {
        let elapsed = now.saturating_duration_since(start);
        if elapsed < self.clock.write_timeout {
            return Ok(false);
        }
        let owed = self.clock.min_send_rate as f64 * elapsed.as_secs_f64();
        if bytes > 0 && bytes as f64 >= owed {
            Ok(true)
        } else {
            Err(())
        }
    }

    fn wrote(&mut self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let now = Instant::now();
        self.last_activity = now;
        if let Some((start, bytes)) = self.stall.as_mut() {
            *bytes = bytes.saturating_add(n as u64);
            let (start, bytes) = (*start, *bytes);
            match self.stretch_ok(start, bytes, now) {
                Ok(true) => self.stall = Some((now, 0)),
                Ok(false) => {}
                Err(()) => return Err(self.expire("the client reads too slowly")),
            }
        }
        Ok(())
    }

    /// A write must wait: start (or check) the stretch, and wake at its end.
    fn write_pending(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let now = Instant::now();
        let (start, bytes) = *self.stall.get_or_insert((now, 0));
        match self.stretch_ok(start, bytes, now) {
            Ok(true) => self.stall = Some((now, 0)),
            Ok(false) => {}
            Err(()) => return Err(self.expire("the client does not read")),
        }
        let (start, _) = self.stall.unwrap_or((now, 0));
        let deadline = start + self.clock.write_timeout;
        self.stall_sleep.as_mut().reset(deadline);
        if self.stall_sleep.as_mut().poll(cx).is_ready() {
            // Woken at the deadline with the write still waiting: check it at once.
            return self.write_pending_at_deadline();
        }
        Ok(())
    }

    fn write_pending_at_deadline(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let (start, bytes) = self.stall.unwrap_or((now, 0));
        match self.stretch_ok(start, bytes, now) {
            Ok(_) => {
                self.stall = Some((now, 0));
                Ok(())
            }
            Err(()) => Err(self.expire("the client does not read")),
        }
    }
}

use std::future::Future;

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.last_activity = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.busy.load(Ordering::Relaxed) {
                    return Poll::Pending;
                }
                // Waiting for the next request: any earlier reply is out.
                this.stall = None;
                let deadline = this.last_activity + this.clock.idle_timeout;
                if Instant::now() >= deadline {
                    return Poll::Ready(Err(this.expire("idle")));
                }
                this.idle.as_mut().reset(deadline);
                if this.idle.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(this.expire("idle")));
                }
                Poll::Pending
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.wrote(n)?;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.write_pending(cx)?;
                Poll::Pending
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.wrote(n)?;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.write_pending(cx)?;
                Poll::Pending
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    }

    fn clock() -> Clock {
        Clock {
            idle_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            min_send_rate: 1000,
        }
    }

    #[test]
    fn a_silent_idle_connection_times_out_and_is_counted() {
        rt().block_on(async {
            let (a, _b) = tokio::io::duplex(64);
            let counters = Arc::new(ConnCounters::default());
            let mut g = Guarded::new(a, clock(), Arc::default(), counters.clone());
            let started = Instant::now();
            let mut buf = [0u8; 8];
            let e = g.read(&mut buf).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert_eq!(started.elapsed(), Duration::from_secs(5));
            assert_eq!(counters.timed_out.load(Ordering::Relaxed), 1);
        });
    }

    #[test]
    fn a_busy_connection_is_not_idle() {
        rt().block_on(async {
            let (a, mut b) = tokio::io::duplex(64);
            let busy = Arc::new(AtomicBool::new(true));
            let mut g = Guarded::new(a, clock(), busy, Arc::default());
            let writer = async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                b.write_all(b"x").await.unwrap();
                b
            };
            let mut buf = [0u8; 1];
            let (r, _b) = tokio::join!(g.read(&mut buf), writer);
            assert_eq!(r.unwrap(), 1);
        });
    }

    #[test]
    fn a_reader_that_never_reads_fails_the_write_after_the_write_timeout() {
        rt().block_on(async {
            let (a, _b) = tokio::io::duplex(1024);
            let busy = Arc::new(AtomicBool::new(true));
            let mut g = Guarded::new(a, clock(), busy, Arc::default());
            let started = Instant::now();
            let e = g.write_all(&[0u8; 100_000]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert_eq!(started.elapsed(), Duration::from_secs(10));
        });
    }

    #[test]
    fn a_trickling_reader_is_dropped_and_a_fair_one_is_not() {
        for (rate, ok) in [(100u64, false), (5000, true)] {
            rt().block_on(async move {
                let (a, mut b) = tokio::io::duplex(256);
                let busy = Arc::new(AtomicBool::new(true));
                let mut g = Guarded::new(a, clock(), busy, Arc::default());
                let reader = async move {
                    let mut buf = vec![0u8; rate as usize / 10];
                    let mut got = 0usize;
                    while got < 60_000 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        match b.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got += n,
                        }
                    }
                    got
                };
                let writer = async move {
                    let r = g.write_all(&[7u8; 60_000]).await;
                    // Closing lets the reader see the end.
                    drop(g);
                    r
                };
                let (w, _) = tokio::join!(writer, reader);
                assert_eq!(w.is_ok(), ok, "reader at {rate} B/s");
            });
        }
    }
}
