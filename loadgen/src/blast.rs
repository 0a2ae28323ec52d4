//! `blast`: this machine's loopback ceiling for datagrams of one size, sent three ways to a sink —
//! one `send_to` per packet, `sendmmsg` in batches, and UDP GSO — so master figures can be stated
//! as ratios to what the kernel itself does in the same run.

use serde::Serialize;
use socket2::SockAddr;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Datagrams per `sendmmsg` call.
pub const MMSG_BATCH: usize = 64;

#[derive(Debug, Clone)]
pub struct Config {
    pub size: usize,
    pub duration: Duration,
    pub count: Option<u64>,
}

#[derive(Debug, Default, Serialize, Clone)]
pub struct Method {
    pub method: &'static str,
    pub sent: u64,
    pub received: u64,
    pub sent_per_sec: f64,
    pub received_per_sec: f64,
    pub received_bytes_per_sec: f64,
    pub syscalls: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub size: usize,
    pub methods: Vec<Method>,
    /// GSO received/s over send_to received/s.
    pub gso_vs_send_to: f64,
    pub sendmmsg_vs_send_to: f64,
}

pub fn run(cfg: &Config) -> Result<Report, String> {
    let mut r = Report {
        size: cfg.size,
        ..Report::default()
    };
    let per = cfg.duration / 3;
    for method in ["send_to", "sendmmsg", "gso"] {
        r.methods.push(one(method, cfg.size, per, cfg.count)?);
    }
    let rate = |m: &str| {
        r.methods
            .iter()
            .find(|x| x.method == m)
            .map_or(0.0, |x| x.received_per_sec)
    };
    let base = rate("send_to");
    if base > 0.0 {
        r.gso_vs_send_to = rate("gso") / base;
        r.sendmmsg_vs_send_to = rate("sendmmsg") / base;
    }
    Ok(r)
}

fn one(
    method: &'static str,
    size: usize,
    run_for: Duration,
    count: Option<u64>,
) -> Result<Method, String> {
    let sink = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    // A large buffer so the sink measures what arrives, not its own scheduling (root may force it).
    let s2 = socket2::SockRef::from(&sink);
    let _ = s2.set_recv_buffer_size(64 << 20);
    sink.set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let dest: SocketAddr = sink.local_addr().map_err(|e| e.to_string())?;
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sink_thread = {
        let (received, stop) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if sink.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let fd = tx.as_raw_fd();
    let to = SockAddr::from(dest);
    let payload = vec![0x5Au8; size];
    let limit = count.unwrap_or(u64::MAX);
    let segs = (muster::master::transmit::MAX_GSO_BYTES / size.max(1))
        .clamp(1, muster::master::transmit::MAX_GSO_SEGMENTS);
    let gso_buf = payload.repeat(segs);
    let start = Instant::now();
    let (mut sent, mut calls) = (0u64, 0u64);
    while start.elapsed() < run_for && sent < limit {
        calls += 1;
        let n = match method {
            "send_to" => tx.send_to(&payload, dest).map(|_| 1).unwrap_or(0),
            "sendmmsg" => sendmmsg(fd, &to, &payload, MMSG_BATCH),
            _ => muster::engine::sys::send_segments(fd, &to, &gso_buf, size)
                .map(|_| segs as u64)
                .unwrap_or(0),
        };
        sent += n;
    }
    let secs = start.elapsed().as_secs_f64();
    // Let the sink drain what is queued before counting.
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let _ = sink_thread.join();
    let got = received.load(Ordering::Relaxed);
    Ok(Method {
        method,
        sent,
        received: got,
        sent_per_sec: sent as f64 / secs,
        received_per_sec: got as f64 / secs,
        received_bytes_per_sec: (got * size as u64) as f64 / secs,
        syscalls: calls,
    })
}

/// `batch` copies of `payload` to `to` in one `sendmmsg`; returns how many went.
fn sendmmsg(fd: i32, to: &SockAddr, payload: &[u8], batch: usize) -> u64 {
    let mut iov: Vec<libc::iovec> = (0..batch)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr().cast_mut().cast(),
            iov_len: payload.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: mmsghdr is plain data; every pointer set below outlives the call.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = to.as_ptr().cast_mut().cast();
            m.msg_hdr.msg_namelen = to.len();
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: msgs holds `batch` initialised headers pointing at live buffers.
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), batch as u32, 0) };
    n.max(0) as u64
}
