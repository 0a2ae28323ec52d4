//! The raw system calls a core makes on its sockets: batched receives (`recvmmsg`), batched
//! gathered sends with UDP GSO (`sendmmsg`, straight from the shared list buffers, no copy), the
//! wait for any of them to be readable (`ppoll`), and the io_uring / locked-memory preflight.
//!
//! Sockets stay blocking, so every receive and send here passes `MSG_DONTWAIT`: a full socket
//! buffer returns `WouldBlock`, never blocks the core. The core blocks only in
//! [`wait_readable`], bounded by its earliest timer.

use crate::master::Transmit;
use socket2::{MsgHdr, SockAddr, SockAddrStorage, SockRef};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};

fn sock<'a>(fd: &'a BorrowedFd<'_>) -> SockRef<'a> {
    SockRef::from(fd)
}

/// Runs `f` again while a signal interrupts it (bounded: a signal storm is not worth a spin).
fn retry_eintr(mut f: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    let mut r = f();
    for _ in 0..3 {
        match &r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => r = f(),
            _ => break,
        }
    }
    r
}

/// Sends one datagram made of `parts` to `dest`.
pub fn send_gather(fd: RawFd, dest: &SockAddr, parts: &[&[u8]]) -> io::Result<usize> {
    // SAFETY: the caller owns the socket behind `fd` for the duration of the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let iov: arrayvec::ArrayVec<IoSlice<'_>, 4> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let msg = MsgHdr::new().with_addr(dest).with_buffers(&iov);
    retry_eintr(|| sock(&fd).sendmsg(&msg, libc::MSG_DONTWAIT))
}

/// The `UDP_SEGMENT` control message: one `u16`, the segment size.
#[repr(C, align(8))]
struct SegmentCmsg([u8; 24]);

fn segment_cmsg(segment: u16) -> SegmentCmsg {
    // SAFETY: CMSG_LEN and CMSG_SPACE are pure arithmetic on their argument.
    let (len, space) = unsafe { (libc::CMSG_LEN(2) as usize, libc::CMSG_SPACE(2) as usize) };
    debug_assert_eq!(space, 24);
    let mut b = [0u8; 24];
    let hdr = std::mem::size_of::<libc::size_t>();
    b[..hdr].copy_from_slice(&len.to_ne_bytes()[..hdr]);
    b[hdr..hdr + 4].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
    b[hdr + 4..hdr + 8].copy_from_slice(&libc::UDP_SEGMENT.to_ne_bytes());
    b[hdr + 8..hdr + 10].copy_from_slice(&segment.to_ne_bytes());
    SegmentCmsg(b)
}

/// Sends `bytes` to `dest` as datagrams of `segment` bytes (the last may be shorter) in one call.
pub fn send_segments(
    fd: RawFd,
    dest: &SockAddr,
    bytes: &[u8],
    segment: usize,
) -> io::Result<usize> {
    // SAFETY: as in `send_gather`.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let iov = [IoSlice::new(bytes)];
    let msg = MsgHdr::new().with_addr(dest).with_buffers(&iov);
    if bytes.len() <= segment {
        return retry_eintr(|| sock(&fd).sendmsg(&msg, libc::MSG_DONTWAIT));
    }
    let seg = u16::try_from(segment).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let cmsg = segment_cmsg(seg);
    let msg = msg.with_control(&cmsg.0);
    retry_eintr(|| sock(&fd).sendmsg(&msg, libc::MSG_DONTWAIT))
}

/// Datagrams one `recvmmsg` / `sendmmsg` call moves at most.
pub const BATCH: usize = 64;

/// The source address `recvmmsg` wrote into a slot, as a `SocketAddr` (`None`: a family other
/// than IPv4 / IPv6); the slot is left zeroed for the next call.
pub fn take_source(slot: &mut SockAddrStorage, len: libc::socklen_t) -> Option<SocketAddr> {
    let st = std::mem::replace(slot, SockAddrStorage::zeroed());
    // SAFETY: the kernel wrote an address of `len` bytes, its family included, into the slot.
    unsafe { SockAddr::new(st, len) }.as_socket()
}

/// Buffers for receiving up to [`BATCH`] datagrams in one `recvmmsg`.
pub struct RecvBatch {
    slot: usize,
    bufs: Vec<u8>,
    addrs: Vec<SockAddrStorage>,
    froms: [Option<SocketAddr>; BATCH],
    lens: [usize; BATCH],
    flags: [i32; BATCH],
    count: usize,
}

impl RecvBatch {
    /// Room for [`BATCH`] datagrams of up to `slot` bytes (a longer one is reported truncated).
    pub fn new(slot: usize) -> Self {
        Self {
            slot,
            bufs: vec![0; slot.saturating_mul(BATCH)],
            addrs: (0..BATCH).map(|_| SockAddrStorage::zeroed()).collect(),
            froms: [None; BATCH],
            lens: [0; BATCH],
            flags: [0; BATCH],
            count: 0,
        }
    }

    /// Receives what is waiting, up to [`BATCH`] datagrams, without waiting; returns how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.count = 0;
        let mut iov: Vec<libc::iovec> = self
            .bufs
            .chunks_mut(self.slot)
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain data; zeroed is valid.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for ((h, v), a) in hdrs
            .iter_mut()
            .zip(iov.iter_mut())
            .zip(self.addrs.iter_mut())
        {
            h.msg_hdr.msg_name = (a as *mut SockAddrStorage).cast();
            h.msg_hdr.msg_namelen = a.size_of();
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
        }
        let n = loop {
            // SAFETY: every header points at a live buffer and address slot owned by `self` (or
            // `iov`), alive for the call; the kernel writes at most their stated lengths.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                break r as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        for (((h, len), flags), (from, slot)) in hdrs
            .iter()
            .take(n)
            .zip(self.lens.iter_mut())
            .zip(self.flags.iter_mut())
            .zip(self.froms.iter_mut().zip(self.addrs.iter_mut()))
        {
            *len = h.msg_len as usize;
            *flags = h.msg_hdr.msg_flags;
            *from = take_source(slot, h.msg_hdr.msg_namelen);
        }
        self.count = n;
        Ok(n)
    }

    /// Datagram `i` of the last receive: its source, its bytes, and whether it was longer than
    /// the slot (then only the slot's worth is here).
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8], bool)> {
        if i >= self.count {
            return None;
        }
        let from = (*self.froms.get(i)?)?;
        let start = i.checked_mul(self.slot)?;
        let len = (*self.lens.get(i)?).min(self.slot);
        let truncated = self.flags.get(i).is_some_and(|f| f & libc::MSG_TRUNC != 0);
        Some((
            from,
            self.bufs.get(start..start.checked_add(len)?)?,
            truncated,
        ))
    }
}

/// Waits until one of `fds` is readable (or has an error to report), at most `timeout`
/// (rounded to whole microseconds): the core's one blocking call, made only when it has nothing
/// else to do before `timeout` ([`crate::engine`]'s receive loop). Returns how many are ready
/// (0: the time ran out or a signal came); each ready one has `revents` set.
pub fn wait_readable(fds: &mut [libc::pollfd], timeout: std::time::Duration) -> io::Result<usize> {
    for f in fds.iter_mut() {
        f.events = libc::POLLIN;
        f.revents = 0;
    }
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_micros().saturating_mul(1000)),
    };
    // SAFETY: `fds` is a live slice of pollfd for the call, its length passed with it; `ts` is a
    // valid timespec; no signal mask is given.
    let r = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if r >= 0 {
        return Ok(r as usize);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::Interrupted {
        return Ok(0);
    }
    Err(e)
}

/// Blocks the thread for `d` (a core's nap, `engine::coalesce`): the core has nothing to run
/// meanwhile, exactly as when it waits in [`wait_readable`]. An interrupted nap is just shorter.
pub fn nap(d: std::time::Duration) {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_micros().saturating_mul(1000)),
    };
    // SAFETY: `ts` is a valid timespec; no remainder is asked for (a null pointer is allowed).
    unsafe {
        libc::nanosleep(&ts, std::ptr::null_mut());
    }
}

/// Why [`send_batch`] stopped before the end.
#[derive(Debug)]
pub enum SendStop {
    /// The socket buffer is full: the rest waits.
    WouldBlock,
    /// The transmit at this index was a GSO run the kernel cannot segment.
    GsoRefused(usize, io::Error),
}

/// What [`send_batch`] did.
#[derive(Debug, Default)]
pub struct SendResult {
    /// Transmits handed to the kernel, from the front (errors skipped are counted apart).
    pub sent: usize,
    /// Transmits refused for their destination (unreachable, refused…): dropped, not retried.
    pub failed: usize,
    pub stop: Option<SendStop>,
}

/// Sends `txs` (all from one socket) with `sendmmsg`, [`BATCH`] at a time, each a gathered
/// datagram or a GSO run, without waiting.
pub fn send_batch(fd: RawFd, txs: &[Transmit]) -> SendResult {
    let mut r = SendResult::default();
    let mut at = 0;
    while at < txs.len() {
        let chunk = txs
            .get(at..txs.len().min(at.saturating_add(BATCH)))
            .unwrap_or_default();
        let addrs: Vec<SockAddr> = chunk.iter().map(|t| SockAddr::from(t.to)).collect();
        let parts: Vec<[&[u8]; 3]> = chunk.iter().map(|t| t.payload.parts()).collect();
        // Only the non-empty parts (most replies are one): the kernel copies and walks each
        // iovec it is given, per datagram.
        let iovs: Vec<([libc::iovec; 3], usize)> = parts
            .iter()
            .map(|p| {
                let mut v = [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; 3];
                let mut n = 0;
                for s in p.iter().filter(|s| !s.is_empty()) {
                    if let Some(slot) = v.get_mut(n) {
                        *slot = libc::iovec {
                            iov_base: s.as_ptr().cast_mut().cast(),
                            iov_len: s.len(),
                        };
                        n += 1;
                    }
                }
                (v, n)
            })
            .collect();
        let cmsgs: Vec<SegmentCmsg> = chunk
            .iter()
            .map(|t| segment_cmsg(u16::try_from(t.segment).unwrap_or(u16::MAX)))
            .collect();
        // SAFETY: mmsghdr is plain data; zeroed is valid.
        let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; chunk.len()];
        for (i, h) in hdrs.iter_mut().enumerate() {
            let (Some(t), Some(a), Some(v), Some(c)) =
                (chunk.get(i), addrs.get(i), iovs.get(i), cmsgs.get(i))
            else {
                continue;
            };
            // The kernel only reads the destination.
            h.msg_hdr.msg_name = a.as_ptr().cast_mut().cast();
            h.msg_hdr.msg_namelen = a.len();
            h.msg_hdr.msg_iov = v.0.as_ptr().cast_mut();
            h.msg_hdr.msg_iovlen = v.1;
            if t.count() > 1 {
                h.msg_hdr.msg_control = c.0.as_ptr().cast_mut().cast();
                h.msg_hdr.msg_controllen = c.0.len();
            }
        }
        // SAFETY: every header points at addresses, iovecs, payload slices and control bytes that
        // live until the call returns; the kernel only reads them.
        let n =
            unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as u32, libc::MSG_DONTWAIT) };
        if n > 0 {
            r.sent = r.sent.saturating_add(n as usize);
            at = at.saturating_add(n as usize);
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {
                r.stop = Some(SendStop::WouldBlock);
                return r;
            }
            _ if chunk.first().is_some_and(|t| t.count() > 1) && is_gso_unsupported(&e) => {
                r.stop = Some(SendStop::GsoRefused(at, e));
                return r;
            }
            _ => {
                // Unsendable to this destination (unreachable, refused): skip it, do not retry.
                r.failed = r.failed.saturating_add(1);
                at = at.saturating_add(1);
            }
        }
    }
    r
}

/// Whether a GSO send failed because the path cannot segment (disable GSO and send one by one).
pub fn is_gso_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
    )
}

/// Why io_uring cannot be used here, if it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UringRefused {
    /// The kernel has no io_uring (older than 5.1, or built without it).
    Missing,
    /// A sysctl, seccomp filter or LSM forbids it (`EPERM`/`EACCES`).
    Forbidden(&'static str),
    /// Creating a ring needs locked memory the limit does not allow.
    LockedMemory,
    Other(i32),
}

/// Creates and closes a tiny io_uring, as glommio will (it panics or exits instead of erroring).
pub fn probe_io_uring() -> Result<(), UringRefused> {
    // struct io_uring_params is 120 bytes; the kernel fills it in.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(entries, params) writes at most sizeof(io_uring_params) into params.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: fd is the ring just created and owned by nobody else.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    Err(classify_uring_errno(errno, disabled_sysctl()))
}

fn disabled_sysctl() -> Option<u8> {
    let s = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?;
    s.trim().parse().ok()
}

pub fn classify_uring_errno(errno: i32, sysctl: Option<u8>) -> UringRefused {
    match errno {
        libc::ENOSYS => UringRefused::Missing,
        libc::EPERM | libc::EACCES => UringRefused::Forbidden(match sysctl {
            Some(2) => "kernel.io_uring_disabled = 2",
            Some(1) => "kernel.io_uring_disabled = 1 and this user is not in kernel.io_uring_group",
            _ => "a seccomp filter or security module forbids io_uring_setup",
        }),
        libc::ENOMEM => UringRefused::LockedMemory,
        e => UringRefused::Other(e),
    }
}

/// The soft `RLIMIT_MEMLOCK`, in bytes (`u64::MAX` when unlimited).
pub fn memlock_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 {
        return u64::MAX;
    }
    r.rlim_cur
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if ok != 0 {
        let n = std::thread::available_parallelism().map_or(1, usize::from);
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: i < CPU_SETSIZE.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_wait_ends_when_a_socket_is_readable_and_not_before() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let pollfd = |s: &UdpSocket| libc::pollfd {
            fd: s.as_raw_fd(),
            events: 0,
            revents: 0,
        };
        let mut fds = [pollfd(&a), pollfd(&b)];
        // Nothing waits: the time runs out, nothing is marked.
        let none = wait_readable(&mut fds, std::time::Duration::from_millis(5)).unwrap();
        assert_eq!(none, 0);
        assert!(fds.iter().all(|f| f.revents == 0));
        // A datagram for the second socket: that one, and only it, is ready (the wait may be
        // long: the datagram is already queued on loopback when it starts).
        tx.send_to(b"\xFF\xFF\xFF\xFFgetservers", b.local_addr().unwrap())
            .unwrap();
        let one = wait_readable(&mut fds, std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(one, 1);
        assert_eq!(fds[0].revents, 0);
        assert_ne!(fds[1].revents & libc::POLLIN, 0);
        // Read, it is not ready any more.
        let mut batch = RecvBatch::new(64);
        assert_eq!(batch.recv(b.as_raw_fd()).unwrap(), 1);
        assert_eq!(batch.get(0).map(|(_, d, _)| d.len()), Some(14));
        let again = wait_readable(&mut fds, std::time::Duration::from_millis(1)).unwrap();
        assert_eq!(again, 0);
    }

    #[test]
    fn gso_send_arrives_as_separate_datagrams_and_gather_as_one() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = SockAddr::from(rx.local_addr().unwrap());
        let bytes: Vec<u8> = (0..250u8).collect();
        match send_segments(tx.as_raw_fd(), &dest, &bytes, 100) {
            Ok(n) => assert_eq!(n, 250),
            // A kernel without UDP GSO: the engine falls back; nothing more to check here.
            Err(e) if is_gso_unsupported(&e) => return,
            Err(e) => panic!("{e}"),
        }
        let mut buf = [0u8; 512];
        let sizes: Vec<usize> = (0..3).map(|_| rx.recv(&mut buf).unwrap()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(&buf[..50], &bytes[200..]);
        assert_eq!(
            send_gather(tx.as_raw_fd(), &dest, &[b"ab", b"", b"cde"]).unwrap(),
            5
        );
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"abcde");
    }

    #[test]
    fn io_uring_refusals_name_their_cause() {
        assert_eq!(
            classify_uring_errno(libc::ENOSYS, None),
            UringRefused::Missing
        );
        assert_eq!(
            classify_uring_errno(libc::EPERM, Some(2)),
            UringRefused::Forbidden("kernel.io_uring_disabled = 2")
        );
        assert!(matches!(
            classify_uring_errno(libc::EPERM, Some(0)),
            UringRefused::Forbidden(s) if s.contains("seccomp")
        ));
        assert_eq!(
            classify_uring_errno(libc::ENOMEM, None),
            UringRefused::LockedMemory
        );
        // This machine runs the engine tests, so it has io_uring.
        assert_eq!(probe_io_uring(), Ok(()));
        assert!(!allowed_cpus().is_empty());
    }
}
