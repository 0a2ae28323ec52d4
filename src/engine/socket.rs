//! Listener sockets: one per core per listen address, in one `SO_REUSEPORT` group, with datagrams
//! steered to a core by their source address.
//!
//! Steering by source address (a classic BPF program on the group) rather than the kernel's
//! 4-tuple hash puts every port of one game-server host on one core, so the per-address cap is
//! exact with no state shared between cores. Where the kernel refuses the program, it falls back
//! to its own hash (logged) and the cap holds per core.

use crate::master::steer;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long binding waits for a port in use to come free before giving up: a master restarted
/// right after `kill -9` finds its port held for a moment (the dead process's io_uring still
/// holds its sockets, ~0.3 s here). A port held longer belongs to a live process.
pub const REBIND_WAIT: Duration = Duration::from_secs(5);
/// Between tries while waiting.
pub const REBIND_RETRY_EVERY: Duration = Duration::from_millis(100);

/// The sockets of one listen address: `sockets[i]` belongs to core `i`.
#[derive(Debug)]
pub struct Listener {
    pub addr: SocketAddr,
    pub sockets: Vec<Socket>,
    pub steered: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {addr}: the address is already in use (is another master running?)")]
    InUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Other { addr: SocketAddr, source: io::Error },
    #[error("cannot listen on {addr}: this host has no IPv6")]
    NoIpv6 { addr: SocketAddr },
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // The IPv4 wildcard listener has its own group; a dual-stack socket would take its traffic.
        s.set_only_v6(true)?;
    }
    Ok(s)
}

/// Binds `cores` sockets to `addr` in one reuseport group, waiting up to [`REBIND_WAIT`] for a
/// port in use to come free.
pub fn bind(addr: SocketAddr, cores: usize, recv_buffer: usize) -> Result<Listener, BindError> {
    bind_within(addr, cores, recv_buffer, REBIND_WAIT)
}

/// [`bind`], waiting at most `wait` for `EADDRINUSE` to clear (logged once). The wait never joins
/// another process's group: every try is the probe without `SO_REUSEPORT`.
pub fn bind_within(
    addr: SocketAddr,
    cores: usize,
    recv_buffer: usize,
    wait: Duration,
) -> Result<Listener, BindError> {
    let deadline = Instant::now() + wait;
    let mut logged = false;
    loop {
        match bind_once(addr, cores, recv_buffer) {
            Err(BindError::InUse { .. }) if Instant::now() < deadline => {
                if !logged {
                    tracing::warn!(
                        %addr,
                        wait_secs = wait.as_secs_f32(),
                        "address in use; waiting for it to come free (a master that just stopped?)"
                    );
                    logged = true;
                }
                std::thread::sleep(REBIND_RETRY_EVERY);
            }
            Ok(l) => {
                if logged {
                    tracing::info!(%addr, "address free again; bound");
                }
                return Ok(l);
            }
            Err(e) => return Err(e),
        }
    }
}

fn bind_once(addr: SocketAddr, cores: usize, recv_buffer: usize) -> Result<Listener, BindError> {
    let other = |source: io::Error| {
        if source.raw_os_error() == Some(libc::EADDRINUSE) {
            BindError::InUse { addr }
        } else if addr.is_ipv6()
            && matches!(
                source.raw_os_error(),
                Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
            )
        {
            BindError::NoIpv6 { addr }
        } else {
            BindError::Other { addr, source }
        }
    };
    // Probe without SO_REUSEPORT: a reuseport bind would silently join another process's group
    // (another muster on the same port) and split the traffic. This one fails instead. It also
    // resolves port 0 to the port every core then shares.
    let probe = new_socket(addr).map_err(other)?;
    probe.bind(&SockAddr::from(addr)).map_err(other)?;
    let actual = probe
        .local_addr()
        .map_err(other)?
        .as_socket()
        .ok_or_else(|| other(io::Error::from(io::ErrorKind::AddrNotAvailable)))?;
    drop(probe);
    let mut sockets = Vec::with_capacity(cores);
    for _ in 0..cores {
        let s = new_socket(actual).map_err(other)?;
        s.set_reuse_port(true).map_err(other)?;
        // Best effort: the kernel caps it at net.core.rmem_max.
        let _ = s.set_recv_buffer_size(recv_buffer);
        s.bind(&SockAddr::from(actual)).map_err(other)?;
        sockets.push(s);
    }
    let steered = match sockets.first() {
        Some(s) if cores > 1 => match attach_steering(s, actual.is_ipv6(), cores) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%actual, error = %e, "source-address steering refused; the kernel's 4-tuple hash spreads datagrams instead (per-address caps then hold per core)");
                false
            }
        },
        _ => false,
    };
    Ok(Listener {
        addr: actual,
        sockets,
        steered,
    })
}

/// Classic BPF's offset of the network header (`SKF_NET_OFF`).
const SKF_NET_OFF: i32 = -0x10_0000;
const HASH_MUL: u32 = steer::HASH_MUL;

fn attach_steering(s: &Socket, v6: bool, cores: usize) -> io::Result<()> {
    let op = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let ld_net = |off: i32| {
        op(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            (SKF_NET_OFF + off) as u32,
        )
    };
    let mut prog = Vec::new();
    if v6 {
        // The program computes `steer::shard_for`. Source address at 8..24 of the IPv6 header;
        // its /64 is bytes 8..16.
        prog.push(ld_net(8));
        prog.push(op(libc::BPF_MISC | libc::BPF_TAX, 0));
        prog.push(ld_net(12));
        prog.push(op(libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X, 0));
    } else {
        // Source address at 12..16 of the IPv4 header.
        prog.push(ld_net(12));
    }
    prog.push(op(libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K, HASH_MUL));
    prog.push(op(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K, 16));
    prog.push(op(
        libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K,
        cores as u32,
    ));
    prog.push(op(libc::BPF_RET | libc::BPF_A, 0));
    s.attach_filter_reuseport_cbpf(&prog)
}

/// Helper trait so the attach reads as a method; socket2 has no reuseport-BPF call.
trait ReuseportCbpf {
    fn attach_filter_reuseport_cbpf(&self, prog: &[libc::sock_filter]) -> io::Result<()>;
}

impl ReuseportCbpf for Socket {
    fn attach_filter_reuseport_cbpf(&self, prog: &[libc::sock_filter]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr().cast_mut(),
        };
        // SAFETY: setsockopt reads one sock_fprog whose filter points at `prog`, alive for the call.
        let r = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_REUSEPORT_CBPF,
                (&raw const fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, UdpSocket};
    use std::time::Duration;

    #[test]
    fn a_port_held_by_another_socket_is_reported_in_use() {
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let e = bind_within(addr, 2, 1 << 16, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, BindError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("already in use"));
    }

    #[test]
    fn a_port_that_comes_free_while_waiting_is_bound_and_a_live_group_is_never_joined() {
        // Held by a reuseport group of "another master": waiting never joins it.
        let other =
            bind_within("127.0.0.1:0".parse().unwrap(), 2, 1 << 16, Duration::ZERO).unwrap();
        let addr = other.addr;
        let e = bind_within(addr, 2, 1 << 16, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, BindError::InUse { .. }), "{e}");
        // The holder goes away while we wait: bound.
        let (tx, rx) = std::sync::mpsc::channel();
        let releaser = std::thread::spawn(move || {
            // Released once the binder has had to wait (it reports the first failure by trying).
            std::thread::sleep(Duration::from_millis(300));
            drop(other);
            tx.send(()).unwrap();
        });
        let l = bind_within(addr, 2, 1 << 16, Duration::from_secs(30)).unwrap();
        rx.recv().unwrap();
        releaser.join().unwrap();
        assert_eq!(l.addr, addr);
        assert_eq!(l.sockets.len(), 2);
    }

    #[test]
    fn port_zero_resolves_once_and_datagrams_go_to_the_core_of_their_source() {
        let l = bind("127.0.0.1:0".parse().unwrap(), 2, 1 << 16).unwrap();
        assert_ne!(l.addr.port(), 0);
        assert_eq!(l.sockets.len(), 2);
        assert!(l.steered, "this kernel takes SO_ATTACH_REUSEPORT_CBPF");
        let cores: Vec<UdpSocket> = l.sockets.into_iter().map(UdpSocket::from).collect();
        for s in &cores {
            assert_eq!(s.local_addr().unwrap(), l.addr);
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
        }
        // From 8 source addresses, 4 ports each: each datagram arrives on its source's core.
        let mut seen = [0usize; 2];
        for host in 1..=8u8 {
            let ip: IpAddr = [127, 0, 0, host].into();
            for _ in 0..4 {
                let c = UdpSocket::bind((ip, 0)).unwrap();
                c.send_to(&[host], l.addr).unwrap();
                let want = steer::shard_for(ip, 2);
                let mut b = [0u8; 4];
                let (n, from) = cores[want].recv_from(&mut b).unwrap();
                assert_eq!((n, b[0], from.ip()), (1, host, ip));
                seen[want] += 1;
            }
        }
        assert!(
            seen[0] > 0 && seen[1] > 0,
            "8 hosts hash to both cores: {seen:?}"
        );
    }
}
