//! Many hosts through few sockets: a socket bound to the wildcard address sends from whichever
//! local address the caller names (`IP_PKTINFO` / `IPV6_PKTINFO` on send) and learns which local
//! address each datagram was sent to (the same option on receive). Every 127.b.c.d is local, so a
//! handful of sockets stand for a million game servers, each with its own address — far past
//! `ulimit -n`.
//!
//! Both directions move [`BATCH`] datagrams per system call (`sendmmsg`, `recvmmsg`).

use crate::batch::Slots;
use socket2::SockAddr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

/// Datagrams per `sendmmsg` / `recvmmsg`.
pub const BATCH: usize = 64;
/// Largest datagram received (a master's reply to a game server is small).
pub const SLOT: usize = 2048;

/// Asks the kernel for the destination address of every datagram received on `fd`.
pub fn enable(fd: RawFd, v6: bool) -> io::Result<()> {
    let on: libc::c_int = 1;
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    // SAFETY: setsockopt reads one c_int.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Room for one control message of either family (in_pktinfo 12 B, in6_pktinfo 20 B).
type Ctrl = [u64; 8];

/// Writes the PKTINFO control message choosing source `from` into `c`; returns its length.
fn put_pktinfo(c: &mut Ctrl, from: IpAddr) -> usize {
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_control = c.as_mut_ptr().cast();
    h.msg_controllen = std::mem::size_of::<Ctrl>();
    // SAFETY: the CMSG macros address the buffer `c`, which is large and aligned enough for one
    // control message of either kind.
    unsafe {
        let cm = libc::CMSG_FIRSTHDR(&h);
        match from {
            IpAddr::V4(v4) => {
                (*cm).cmsg_level = libc::IPPROTO_IP;
                (*cm).cmsg_type = libc::IP_PKTINFO;
                (*cm).cmsg_len =
                    libc::CMSG_LEN(std::mem::size_of::<libc::in_pktinfo>() as u32) as usize;
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(cm).cast(), info);
                libc::CMSG_SPACE(std::mem::size_of::<libc::in_pktinfo>() as u32) as usize
            }
            IpAddr::V6(v6) => {
                (*cm).cmsg_level = libc::IPPROTO_IPV6;
                (*cm).cmsg_type = libc::IPV6_PKTINFO;
                (*cm).cmsg_len =
                    libc::CMSG_LEN(std::mem::size_of::<libc::in6_pktinfo>() as u32) as usize;
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(cm).cast(), info);
                libc::CMSG_SPACE(std::mem::size_of::<libc::in6_pktinfo>() as u32) as usize
            }
        }
    }
}

/// The destination address in a received message's control data.
fn get_pktinfo(h: &libc::msghdr) -> Option<IpAddr> {
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, within its length.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(IpAddr::V4(Ipv4Addr::from(
                    info.ipi_addr.s_addr.to_ne_bytes(),
                )));
            }
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_PKTINFO {
                let info: libc::in6_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// Datagrams queued for one socket, each with its chosen source address.
#[derive(Default)]
pub struct SendQueue {
    bytes: Vec<u8>,
    items: Vec<(IpAddr, SocketAddr, std::ops::Range<usize>)>,
}

/// What a flush did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub sent: usize,
    /// Refused by the kernel (a full socket buffer after retrying, or an error): dropped.
    pub dropped: usize,
}

impl SendQueue {
    pub fn push(&mut self, from: IpAddr, to: SocketAddr, payload: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(payload);
        self.items.push((from, to, start..self.bytes.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends everything queued on `fd`, [`BATCH`] per call.
    pub fn flush(&mut self, fd: RawFd) -> Flushed {
        let mut done = Flushed::default();
        let mut at = 0;
        let mut stalls = 0;
        while at < self.items.len() {
            let chunk = &self.items[at..self.items.len().min(at + BATCH)];
            let addrs: Vec<SockAddr> = chunk.iter().map(|(_, to, _)| SockAddr::from(*to)).collect();
            let mut iovs: Vec<libc::iovec> = chunk
                .iter()
                .map(|(_, _, r)| libc::iovec {
                    iov_base: self.bytes[r.clone()].as_ptr().cast_mut().cast(),
                    iov_len: r.len(),
                })
                .collect();
            let mut ctrls: Vec<Ctrl> = vec![[0; 8]; chunk.len()];
            let lens: Vec<usize> = chunk
                .iter()
                .zip(ctrls.iter_mut())
                .map(|((from, _, _), c)| put_pktinfo(c, *from))
                .collect();
            // SAFETY: mmsghdr is plain data; zeroed is valid.
            let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; chunk.len()];
            for (i, h) in hdrs.iter_mut().enumerate() {
                h.msg_hdr.msg_name = addrs[i].as_ptr().cast_mut().cast();
                h.msg_hdr.msg_namelen = addrs[i].len();
                h.msg_hdr.msg_iov = &raw mut iovs[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = ctrls[i].as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = lens[i];
            }
            // SAFETY: every header points at data alive until the call returns.
            let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as u32, 0) };
            if n > 0 {
                done.sent += n as usize;
                at += n as usize;
                stalls = 0;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                // A full buffer: try a few times, then give the datagram up (a lost packet, as
                // on a network; the protocol's retries take over).
                io::ErrorKind::WouldBlock if stalls < 100 => {
                    stalls += 1;
                    std::thread::yield_now();
                }
                _ => {
                    done.dropped += 1;
                    at += 1;
                }
            }
        }
        self.bytes.clear();
        self.items.clear();
        done
    }
}

/// Receive buffers for [`BATCH`] datagrams with their destination addresses.
pub struct RecvBatch {
    slots: Slots,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            slots: Slots::new(BATCH, SLOT),
        }
    }
}

impl RecvBatch {
    /// Reads what waits on `fd` (at most `max` datagrams): `f(bytes, from, to)` for each.
    pub fn drain(
        &mut self,
        fd: RawFd,
        max: usize,
        mut f: impl FnMut(&[u8], SocketAddr, IpAddr),
    ) -> io::Result<usize> {
        self.slots.drain(fd, max, |buf, from, h| {
            if let Some(to) = get_pktinfo(h) {
                f(buf, from, to);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn one_socket_speaks_for_many_addresses_both_ways() {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let wild = UdpSocket::bind("0.0.0.0:0").unwrap();
        wild.set_nonblocking(true).unwrap();
        enable(wild.as_raw_fd(), false).unwrap();
        let port = wild.local_addr().unwrap().port();
        let mut q = SendQueue::default();
        let hosts: Vec<IpAddr> = (1..=100u8).map(|d| IpAddr::from([127, 7, 0, d])).collect();
        for h in &hosts {
            q.push(*h, peer.local_addr().unwrap(), &[h.to_string().len() as u8]);
        }
        assert_eq!(
            q.flush(wild.as_raw_fd()),
            Flushed {
                sent: 100,
                dropped: 0
            }
        );
        let mut buf = [0u8; 8];
        for h in &hosts {
            let (_, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(
                from,
                SocketAddr::new(*h, port),
                "sent from the chosen address"
            );
            peer.send_to(&[1], from).unwrap();
        }
        let mut rb = RecvBatch::default();
        let mut to = Vec::new();
        for _ in 0..1000 {
            rb.drain(wild.as_raw_fd(), usize::MAX, |_, from, dst| {
                assert_eq!(from, peer.local_addr().unwrap());
                to.push(dst);
            })
            .unwrap();
            if to.len() == hosts.len() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(to, hosts, "each reply says which address it was sent to");
    }
}
