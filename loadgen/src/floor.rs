//! `floor`: the least a master can spend on a DarkPlaces registration on this machine — a
//! responder that reads datagrams in batches (`recvmmsg`), answers every `heartbeat` with a
//! fixed `getinfo` (`sendmmsg`) and does nothing else: no challenge, no table, no list. Run a
//! fleet against it and read its CPU time: what remains is the kernel's work for two datagrams
//! in and one out, the floor under any master's cost per registration.
//!
//! With `--answer valve` it answers every Valve list query (`0x31`) with one fixed full page
//! (230 addresses and the `0.0.0.0:0` end: 1,392 bytes, a full page): the floor under a master's cost per page.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const BATCH: usize = 64;

/// What the floor answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Answer {
    Dp,
    Valve,
}

/// A full Valve page that ends the list: header, 230 servers, `0.0.0.0:0`.
fn valve_page() -> Vec<u8> {
    let mut p = b"\xFF\xFF\xFF\xFF\x66\x0A".to_vec();
    for i in 0..230u32 {
        p.extend_from_slice(&(0x0A00_0001 + i).to_be_bytes());
        p.extend_from_slice(&27015u16.to_be_bytes());
    }
    p.extend_from_slice(&[0; 6]);
    p
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub received: u64,
    pub answered: u64,
    /// Sleeps taken with `--nap-us`.
    pub naps: u64,
    pub duration_secs: f64,
}

/// Serves on `listen` until `duration` passes or SIGINT/SIGTERM.
///
/// A non-zero `nap` sleeps that long after every read that did not fill its batch (and so
/// emptied the socket), letting the next datagrams gather: one wake-up and one `recvmmsg` for
/// many at moderate rates, the least a responder that naps can spend.
pub fn run(
    listen: SocketAddr,
    duration: Duration,
    answer: Answer,
    nap: Duration,
) -> Result<Report, String> {
    let s = UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4 << 20);
    eprintln!(
        "floor: serving on {}",
        s.local_addr().map_err(|e| e.to_string())?
    );
    let fd = s.as_raw_fd();
    let start = Instant::now();
    let stop = crate::sources::interrupted();
    let mut r = Report::default();
    let mut bufs = vec![[0u8; 2048]; BATCH];
    // SAFETY: sockaddr_storage is plain data; zeroed is valid.
    let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let reply: Vec<u8> = match answer {
        Answer::Dp => b"\xFF\xFF\xFF\xFFgetinfo ABCDEFGHIJ".to_vec(),
        Answer::Valve => valve_page(),
    };
    while start.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        let mut iov: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain data; zeroed is valid.
        let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
        for (i, h) in hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_name = (&raw mut addrs[i]).cast();
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_hdr.msg_iov = &raw mut iov[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the headers point at buffers alive for the call; it blocks for at least one
        // datagram (or the socket's 100 ms timeout).
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue;
        }
        let n = n as usize;
        r.received += n as u64;
        let mut out_iov = libc::iovec {
            iov_base: reply.as_ptr().cast_mut().cast(),
            iov_len: reply.len(),
        };
        let mut out: Vec<libc::mmsghdr> = Vec::with_capacity(n);
        for i in 0..n {
            let asked = match answer {
                Answer::Dp => bufs[i].get(4..13) == Some(b"heartbeat"),
                Answer::Valve => bufs[i].first() == Some(&b'1'),
            };
            if asked {
                // SAFETY: plain data.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (&raw mut addrs[i]).cast();
                h.msg_hdr.msg_namelen = hdrs[i].msg_hdr.msg_namelen;
                h.msg_hdr.msg_iov = &raw mut out_iov;
                h.msg_hdr.msg_iovlen = 1;
                out.push(h);
            }
        }
        if !out.is_empty() {
            // SAFETY: the headers point at the reply and addresses above, alive for the call.
            let sent = unsafe { libc::sendmmsg(fd, out.as_mut_ptr(), out.len() as u32, 0) };
            r.answered += sent.max(0) as u64;
        }
        if !nap.is_zero() && n < BATCH {
            r.naps += 1;
            std::thread::sleep(nap);
        }
    }
    r.duration_secs = start.elapsed().as_secs_f64();
    Ok(r)
}
