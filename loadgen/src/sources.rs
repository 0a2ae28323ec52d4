//! Simulated hosts: loopback source addresses and the sockets bound to them.
//!
//! Every simulated game server or client binds its own socket on one of many 127.b.c.d addresses,
//! so a master's per-address caps and the kernel's reuseport hashing see many hosts, as in the wild.

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Hosts per /16 of loopback used here (d = 1..=254, c = 0..=255).
const PER_B: usize = 254 * 256;

/// The `i`-th simulated host under `127.<base>.0.0`, spilling into the next /16s.
pub fn host(base: u8, i: usize) -> Ipv4Addr {
    let b = base.wrapping_add((i / PER_B) as u8);
    let c = ((i % PER_B) / 254) as u8;
    let d = (i % 254) as u8 + 1;
    Ipv4Addr::new(127, b, c, d)
}

/// The inverse of [`host`]: which host under `127.<base>.0.0` `ip` is.
pub fn host_index(base: u8, ip: Ipv4Addr) -> Option<usize> {
    let [a, b, c, d] = ip.octets();
    if a != 127 || d == 0 || d == 255 {
        return None;
    }
    let block = usize::from(b.wrapping_sub(base));
    Some(block * PER_B + usize::from(c) * 254 + usize::from(d) - 1)
}

/// A non-blocking socket on `host`, port chosen by the kernel, of the target's family (IPv6
/// targets are reached from `::1`: loopback has one IPv6 address).
pub fn bind(host: Ipv4Addr, target: SocketAddr) -> io::Result<UdpSocket> {
    let ip = match target {
        SocketAddr::V4(_) => IpAddr::V4(host),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    UdpSocket::bind(SocketAddr::new(ip, 0))
}

/// [`bind`], then registered with `poll` for reading under `token` (the caller's slot index).
pub fn bind_registered(
    poll: &Poll,
    host: Ipv4Addr,
    target: SocketAddr,
    token: usize,
) -> Result<UdpSocket, String> {
    let mut s =
        bind(host, target).map_err(|e| format!("bind on {host}: {e} (raise `ulimit -n`?)"))?;
    poll.registry()
        .register(&mut s, Token(token), Interest::READABLE)
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// Sets a socket's receive buffer to `bytes`: `SO_RCVBUFFORCE` (root may pass `rmem_max`), else
/// `SO_RCVBUF` (capped by it).
pub fn set_recv_buffer(s: &UdpSocket, bytes: usize) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |opt| {
        // SAFETY: setsockopt with a valid fd and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SO_RCVBUFFORCE) != 0 {
        let _ = set(libc::SO_RCVBUF);
    }
}

/// A flag set by SIGINT or SIGTERM, so a long run (a fleet kept up while something else is
/// measured) ends early and still reports what it did. Registered once per process.
pub fn interrupted() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registration fails only for forbidden signals; these two are not.
            let _ = signal_hook::flag::register(sig, flag.clone());
        }
        flag
    })
    .clone()
}

/// Only loopback targets: the load generator never aims at the Internet.
pub fn check_target(t: SocketAddr) -> Result<SocketAddr, String> {
    if t.ip().is_loopback() {
        Ok(t)
    } else {
        Err(format!(
            "{t}: only loopback targets (127.0.0.0/8, ::1) are allowed; load and floods stay on this machine"
        ))
    }
}

/// Reads everything waiting on a non-blocking socket into `f` (bounded: at most `max` datagrams).
pub fn drain(
    s: &UdpSocket,
    buf: &mut [u8],
    max: usize,
    mut f: impl FnMut(&[u8], SocketAddr),
) -> io::Result<usize> {
    let mut n = 0;
    while n < max {
        match s.recv_from(buf) {
            Ok((len, from)) => {
                n += 1;
                f(&buf[..len], from);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ICMP errors surface here on some kernels; they are not datagrams.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Waits up to `timeout` for readiness; a signal interrupting the wait is not an error.
pub fn wait(poll: &mut Poll, events: &mut Events, timeout: Duration) -> Result<(), String> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_distinct_loopback_addresses_never_ending_in_0_or_255() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..(PER_B + 600) {
            let h = host(100, i);
            assert!(h.is_loopback());
            assert!(h.octets()[3] != 0 && h.octets()[3] != 255);
            assert!(seen.insert(h), "{h} twice");
        }
        assert_eq!(host(100, 0), Ipv4Addr::new(127, 100, 0, 1));
        assert_eq!(host(100, 254), Ipv4Addr::new(127, 100, 1, 1));
        assert_eq!(host(100, PER_B), Ipv4Addr::new(127, 101, 0, 1));
        for i in [0, 1, 253, 254, 255, PER_B - 1, PER_B, 3 * PER_B + 77] {
            assert_eq!(host_index(100, host(100, i)), Some(i));
        }
        assert_eq!(host_index(100, Ipv4Addr::new(127, 100, 0, 0)), None);
        assert!(check_target("10.0.0.1:27010".parse().unwrap()).is_err());
        assert!(check_target("[::1]:27010".parse().unwrap()).is_ok());
    }
}
