//! Receiving in batches: `recvmmsg` fills many datagrams per system call, and with `UDP_GRO` on
//! the kernel may hand over a run of same-sized datagrams coalesced into one buffer (a GSO send on
//! loopback arrives that way), which is split back into its datagrams here. Either way the caller
//! sees one callback per datagram, as the master sent them — so a benchmark measures the master,
//! not the load generator's receive loop.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Messages per `recvmmsg` call.
pub const BATCH: usize = 16;
/// Bytes per message slot: a coalesced GRO run is at most one 64 KiB IP datagram.
pub const SLOT: usize = 65_536;

/// Asks the kernel to coalesce runs of datagrams (`UDP_GRO`); `false` where it cannot.
pub fn enable_gro(fd: RawFd) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Receive buffers for one `recvmmsg` at a time (reused across sockets).
pub struct BatchRecv {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<[u64; 8]>,
}

impl Default for BatchRecv {
    fn default() -> Self {
        Self {
            bufs: vec![0; BATCH * SLOT],
            // SAFETY: sockaddr_storage is plain data; zeroed is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            cmsgs: vec![[0; 8]; BATCH],
        }
    }
}

fn std_addr(st: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(st.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read((&raw const *st).cast()) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read((&raw const *st).cast()) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(sin6.sin6_port))))
        }
        _ => None,
    }
}

/// The GRO segment size in a message's control data, if the kernel coalesced it.
fn gro_segment(h: &libc::msghdr) -> Option<usize> {
    // SAFETY: the CMSG macros walk the control buffer the kernel filled, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v: u16 = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(usize::from(v));
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

impl BatchRecv {
    /// Reads what is waiting on `fd` (at most `max` messages, each maybe a coalesced run) and
    /// calls `f` once per datagram. Returns the datagrams seen.
    pub fn drain(
        &mut self,
        fd: RawFd,
        max: usize,
        mut f: impl FnMut(&[u8], SocketAddr),
    ) -> io::Result<usize> {
        let mut seen = 0;
        let mut messages = 0;
        while messages < max {
            let mut iov: Vec<libc::iovec> = self
                .bufs
                .chunks_mut(SLOT)
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: mmsghdr is plain data; zeroed is valid.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (((h, v), a), c) in hdrs
                .iter_mut()
                .zip(iov.iter_mut())
                .zip(self.addrs.iter_mut())
                .zip(self.cmsgs.iter_mut())
            {
                h.msg_hdr.msg_name = (a as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = c.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = std::mem::size_of_val(c);
            }
            let want = BATCH.min(max - messages) as u32;
            // SAFETY: every header points at buffers owned by `self`/`iov`, alive for the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    want,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    // ICMP errors surface here on some kernels; they are not datagrams.
                    io::ErrorKind::ConnectionRefused => continue,
                    _ => return Err(e),
                }
            }
            let n = n as usize;
            for (i, h) in hdrs.iter().take(n).enumerate() {
                let len = (h.msg_len as usize).min(SLOT);
                let Some(from) = std_addr(&self.addrs[i]) else {
                    continue;
                };
                let buf = &self.bufs[i * SLOT..i * SLOT + len];
                let seg = gro_segment(&h.msg_hdr)
                    .filter(|&s| s > 0)
                    .unwrap_or(len.max(1));
                for d in buf.chunks(seg) {
                    seen += 1;
                    f(d, from);
                }
            }
            messages += n;
            if n < want as usize {
                break;
            }
        }
        Ok(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_gso_run_arrives_coalesced_and_is_split_back_and_plain_datagrams_come_in_batches() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let gro = enable_gro(rx.as_raw_fd());
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        for i in 0..40u8 {
            tx.send_to(&[i; 100], to).unwrap();
        }
        let mut b = BatchRecv::default();
        let mut got = Vec::new();
        let n = b
            .drain(rx.as_raw_fd(), usize::MAX, |d, from| {
                assert_eq!(from, tx.local_addr().unwrap());
                got.push(d.to_vec());
            })
            .unwrap();
        assert_eq!(n, 40);
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, d)| d == &vec![i as u8; 100])
        );
        // A GSO send of 3 × 1000 + 500 bytes: split back into 4 datagrams whether or not the
        // kernel coalesced it.
        let mut bytes: Vec<u8> = Vec::new();
        for i in 0..4u8 {
            bytes.extend(std::iter::repeat_n(i, if i == 3 { 500 } else { 1000 }));
        }
        let seg: u16 = 1000;
        // SAFETY: a sendmsg with one iovec and one UDP_SEGMENT control message, all alive.
        let sent = unsafe {
            let mut ctrl = [0u64; 4];
            let mut iov = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
            let mut sin: libc::sockaddr_in = std::mem::zeroed();
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = to.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let mut h: libc::msghdr = std::mem::zeroed();
            h.msg_name = (&raw mut sin).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            h.msg_iov = &raw mut iov;
            h.msg_iovlen = 1;
            h.msg_control = ctrl.as_mut_ptr().cast();
            h.msg_controllen = libc::CMSG_SPACE(2) as usize;
            let c = libc::CMSG_FIRSTHDR(&h);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), seg);
            libc::sendmsg(tx.as_raw_fd(), &h, 0)
        };
        assert_eq!(sent, 3500, "GSO send");
        // Loopback delivers within the send; poll (bounded) in case it is deferred.
        let mut sizes = Vec::new();
        for _ in 0..2000 {
            b.drain(rx.as_raw_fd(), usize::MAX, |d, _| sizes.push(d.len()))
                .unwrap();
            if sizes.len() >= 4 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(sizes, [1000, 1000, 1000, 500], "GRO on: {gro}");
    }
}
