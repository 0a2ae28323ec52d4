//! Receiving in batches: `recvmmsg` fills many datagrams per system call, and with `UDP_GRO` on
//! the kernel may hand over a run of same-sized datagrams coalesced into one buffer (a GSO send on
//! loopback arrives that way), which is split back into its datagrams here. Either way the caller
//! sees one callback per datagram, as the master sent them — so a benchmark measures the master,
//! not the load generator's receive loop.

use muster::engine::sys::take_source;
use socket2::SockAddrStorage;
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

/// Receive slots for `recvmmsg`, reused call after call: a buffer, a source address and control
/// data per message. [`BatchRecv`] (GRO runs) and `pktinfo::RecvBatch` (destination addresses)
/// read the control data each their own way.
pub struct Slots {
    slot: usize,
    bufs: Vec<u8>,
    addrs: Vec<SockAddrStorage>,
    ctrls: Vec<[u64; 8]>,
}

impl Slots {
    /// `n` messages of up to `slot` bytes each.
    pub fn new(n: usize, slot: usize) -> Self {
        Self {
            slot,
            bufs: vec![0; n * slot],
            addrs: (0..n).map(|_| SockAddrStorage::zeroed()).collect(),
            ctrls: vec![[0; 8]; n],
        }
    }

    /// Reads what waits on `fd`, one `recvmmsg` of at most the slots' count after another, until
    /// less than that came or `max` messages were read: `f(bytes, from, header)` for each. Returns
    /// the messages read. Every receive loop of the load generator goes through here.
    pub fn drain(
        &mut self,
        fd: RawFd,
        max: usize,
        mut f: impl FnMut(&[u8], SocketAddr, &libc::msghdr),
    ) -> io::Result<usize> {
        let mut messages = 0;
        while messages < max {
            let want = self.addrs.len().min(max - messages);
            let n = self.recv(fd, want, &mut f)?;
            messages += n;
            if n < want {
                break;
            }
        }
        Ok(messages)
    }

    /// One `recvmmsg` of at most `want` messages, without waiting: `f(bytes, from, header)` for
    /// each. Returns how many came (0: nothing waits). Interrupted calls and ICMP errors (which
    /// surface here on some kernels; they are not datagrams) are retried.
    pub fn recv(
        &mut self,
        fd: RawFd,
        want: usize,
        mut f: impl FnMut(&[u8], SocketAddr, &libc::msghdr),
    ) -> io::Result<usize> {
        let want = want.min(self.addrs.len());
        let mut iov: Vec<libc::iovec> = self
            .bufs
            .chunks_mut(self.slot)
            .take(want)
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain data; zeroed is valid.
        let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; want];
        for (((h, v), a), c) in hdrs
            .iter_mut()
            .zip(iov.iter_mut())
            .zip(self.addrs.iter_mut())
            .zip(self.ctrls.iter_mut())
        {
            h.msg_hdr.msg_name = (a as *mut SockAddrStorage).cast();
            h.msg_hdr.msg_namelen = a.size_of();
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = c.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = std::mem::size_of_val(c);
        }
        let n = loop {
            // SAFETY: every header points at buffers owned by `self`/`iov`, alive for the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    want as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(0),
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused => continue,
                _ => return Err(e),
            }
        };
        for (i, h) in hdrs.iter().take(n).enumerate() {
            let Some(from) = take_source(&mut self.addrs[i], h.msg_hdr.msg_namelen) else {
                continue;
            };
            let len = (h.msg_len as usize).min(self.slot);
            f(
                &self.bufs[i * self.slot..i * self.slot + len],
                from,
                &h.msg_hdr,
            );
        }
        Ok(n)
    }
}

/// Receive buffers for one `recvmmsg` at a time (reused across sockets).
pub struct BatchRecv {
    slots: Slots,
}

impl Default for BatchRecv {
    fn default() -> Self {
        Self {
            slots: Slots::new(BATCH, SLOT),
        }
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
        self.slots.drain(fd, max, |buf, from, h| {
            let seg = gro_segment(h)
                .filter(|&s| s > 0)
                .unwrap_or(buf.len().max(1));
            for d in buf.chunks(seg) {
                seen += 1;
                f(d, from);
            }
        })?;
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
