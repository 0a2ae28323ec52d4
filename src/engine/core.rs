//! One core: a pinned glommio executor owning its sockets (one per listener), its shard
//! ([`Master`]), its pacer and its counters. Nothing here is shared with another core except the
//! immutable shard snapshots that travel over the bounded channel mesh.
//!
//! Tasks on the core:
//! - one receive loop per socket: `recv_from` → `Master::handle` → send (gathered, GSO, or paced);
//! - the pacer: sends the paced remainder of multi-packet replies when due;
//! - one installer per peer core: takes its snapshots into the local shard list;
//! - the core's main loop (every `list_refresh / 5`): expiry, publishing this shard when it changed
//!   (at most every `list_refresh`), rebuilding the merged list, and watching the stop flag.

use super::gso;
use super::pacer::{Full, Pacer};
use super::stats::EngineCounters;
use super::status::{CoreStatus, StatusSender};
use super::sys;
use super::{MESH_JOIN_TIMEOUT, Settings};
use crate::master::counters::Counters;
use crate::master::list::Packets;
use crate::master::table::ShardSnapshot;
use crate::master::{Master, Reply, Time};
use crate::wire::valve_list::PAGE_HEADER;
use futures_lite::future;
use glommio::channels::channel_mesh::{Full as FullMesh, MeshBuilder, Senders};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::UdpSocket;
use glommio::{GlommioError, LocalExecutorBuilder, Placement};
use socket2::SockAddr;
use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

/// Snapshots in flight per pair of cores. A core only ever needs its peers' latest, so a full
/// channel defers the send to the next refresh (with the then-latest snapshot).
pub const MESH_CAPACITY: usize = 2;
/// Largest datagram handled (dpmaster's `MAX_PACKET_SIZE_IN`); longer ones are dropped, counted.
pub const MAX_DATAGRAM: usize = 2048;
/// Expiry-wheel entries visited before the core lets its receive loops run.
pub const EXPIRY_BUDGET: usize = 4096;
/// Paced clients served per pacer wake-up before yielding.
pub const MAX_PACED_PER_ROUND: usize = 256;
/// Main-loop ticks per `list_refresh`.
const TICKS_PER_REFRESH: u32 = 5;

type Dest = (u8, SocketAddr);

pub struct CoreArgs {
    pub index: usize,
    pub cpu: usize,
    pub settings: Arc<Settings>,
    pub sockets: Vec<socket2::Socket>,
    pub mesh: Option<MeshBuilder<Arc<ShardSnapshot>, FullMesh>>,
    pub stop: Arc<AtomicBool>,
    pub ready: Sender<Result<usize, (usize, String)>>,
    pub status: StatusSender,
    pub epoch: Instant,
}

#[derive(Debug)]
pub struct CoreReport {
    pub shard: Counters,
    pub engine: EngineCounters,
}

/// The thread body: builds the executor and runs the core on it.
pub fn run_thread(args: CoreArgs) -> Result<CoreReport, String> {
    let (index, ready) = (args.index, args.ready.clone());
    let built = LocalExecutorBuilder::new(Placement::Fixed(args.cpu))
        .name(&format!("muster-core{index}"))
        .io_memory(args.settings.io_memory)
        .make();
    match built {
        Ok(ex) => ex.run(run(args)),
        Err(e) => {
            let why = format!("glommio executor on CPU {}: {e}", args.cpu);
            let _ = ready.send(Err((index, why.clone())));
            Err(why)
        }
    }
}

struct Core {
    master: RefCell<Master>,
    pacer: RefCell<Pacer<Dest>>,
    stats: RefCell<EngineCounters>,
    sockets: Vec<UdpSocket>,
    gso: Cell<bool>,
    burst: usize,
    epoch: Instant,
    wake: LocalSender<()>,
}

async fn run(args: CoreArgs) -> Result<CoreReport, String> {
    let CoreArgs {
        index,
        settings,
        sockets,
        mesh,
        stop,
        ready,
        status,
        epoch,
        ..
    } = args;
    let fail = |why: String| {
        let _ = ready.send(Err((index, why.clone())));
        Err(why)
    };
    let (senders, receivers) = match mesh {
        None => (None, None),
        Some(m) => {
            let joined = glommio::timer::timeout(MESH_JOIN_TIMEOUT, async move {
                m.join()
                    .await
                    .map_err(|e| GlommioError::IoError(io::Error::other(e.to_string())))
            })
            .await;
            match joined {
                Ok((s, r)) => (Some(s), Some(r)),
                Err(e) => {
                    return fail(format!(
                        "the cross-core channel mesh did not form within {MESH_JOIN_TIMEOUT:?} (another core failed to start?): {e}"
                    ));
                }
            }
        }
    };
    let (shard, shards) = senders
        .as_ref()
        .map_or((0, 1), |s: &Senders<_>| (s.peer_id(), s.nr_consumers()));
    let sockets = sockets
        .into_iter()
        // SAFETY: each fd comes from a socket2 socket given up here; glommio owns it from now on.
        .map(|s| unsafe { UdpSocket::from_raw_fd(s.into_raw_fd()) })
        .collect();
    let (wake, wake_rx) = local_channel::new_bounded(1);
    let now = Time::from_millis(epoch.elapsed().as_millis() as u64);
    let core = Rc::new(Core {
        master: RefCell::new(Master::new(now, settings.master.clone(), shard, shards)),
        pacer: RefCell::new(Pacer::new(
            settings.pacing.burst,
            settings.pacing.rate,
            settings.pacing.max_clients,
        )),
        stats: RefCell::new(EngineCounters::default()),
        sockets,
        gso: Cell::new(settings.gso),
        burst: settings.pacing.burst as usize,
        epoch,
        wake,
    });
    for i in 0..core.sockets.len() {
        glommio::spawn_local(receive(core.clone(), i)).detach();
    }
    glommio::spawn_local(pace(core.clone(), wake_rx)).detach();
    if let Some(mut r) = receivers {
        for (peer, stream) in r.streams() {
            let core = core.clone();
            glommio::spawn_local(async move {
                while let Some(snap) = stream.recv().await {
                    core.master.borrow_mut().install(peer, snap);
                }
            })
            .detach();
        }
    }
    let _ = ready.send(Ok(index));
    tracing::debug!(core = index, shard, cpu = args.cpu, "core serving");

    let tick = (settings.list_refresh / TICKS_PER_REFRESH)
        .clamp(Duration::from_millis(1), Duration::from_millis(100));
    let mut last_publish: Option<Instant> = None;
    let mut latest: Option<Arc<ShardSnapshot>> = None;
    let mut pending = vec![false; shards];
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(tick).await;
        // Expiry in budgeted chunks, letting the receive loops run between them.
        loop {
            let done = core.master.borrow_mut().tick(core.now(), EXPIRY_BUDGET);
            if done {
                break;
            }
            future::yield_now().await;
        }
        if last_publish.is_none_or(|t| t.elapsed() >= settings.list_refresh) {
            last_publish = Some(Instant::now());
            if let Some(snap) = core.master.borrow_mut().publish() {
                latest = Some(snap);
                pending.iter_mut().for_each(|p| *p = true);
                pending[shard] = false;
            }
        }
        if let (Some(s), Some(snap)) = (&senders, &latest) {
            let mut st = core.stats.borrow_mut();
            for (peer, p) in pending.iter_mut().enumerate().filter(|(_, p)| **p) {
                if s.try_send_to(peer, snap.clone()).is_ok() {
                    *p = false;
                    st.snapshots_sent += 1;
                } else {
                    st.snapshots_deferred += 1;
                }
            }
            if !pending.contains(&true) {
                latest = None;
            }
        }
        if core.master.borrow_mut().refresh_list() {
            core.stats.borrow_mut().list_rebuilds += 1;
        }
        if !status.push(core.status(index)) {
            core.stats.borrow_mut().status_dropped += 1;
        }
    }
    if let Some(s) = &senders {
        s.close();
    }
    let shard = *core.master.borrow().counters();
    let engine = *core.stats.borrow();
    Ok(CoreReport { shard, engine })
}

impl Core {
    fn now(&self) -> Time {
        Time::from_millis(self.epoch.elapsed().as_millis() as u64)
    }

    fn status(&self, index: usize) -> CoreStatus {
        let m = self.master.borrow();
        CoreStatus {
            core: index,
            at_ms: self.now().millis(),
            valve_listed: m.list().valve_len(),
            dp_listed: m.list().dp_len(),
            shard_servers: m.table().len(),
            merged_epochs: m.list_epochs().to_vec(),
            counters: *m.counters(),
            engine: *self.stats.borrow(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn fd(&self, socket: usize) -> i32 {
        self.sockets.get(socket).map_or(-1, AsRawFd::as_raw_fd)
    }

    async fn reply(&self, socket: usize, to: SocketAddr, reply: Reply, out: &mut Packets) {
        match reply {
            Reply::Nothing => {}
            Reply::ValvePage {
                entries,
                range,
                last,
            } => {
                let body = entries.get(range).unwrap_or_default();
                let tail: &[u8] = if last { &[0; 6] } else { &[] };
                self.send_one(socket, to, &[&PAGE_HEADER, body, tail]).await;
            }
            Reply::Packets if out.ends.len() <= 1 => {
                self.send_one(socket, to, &[&out.bytes]).await;
            }
            Reply::Packets => {
                let packets = Arc::new(std::mem::take(out));
                self.send_paced(socket, to, packets);
            }
            Reply::Shared(p) if p.ends.len() == 1 => {
                self.send_one(socket, to, &[&p.bytes]).await;
            }
            Reply::Shared(p) => self.send_paced(socket, to, p),
        }
    }

    /// One datagram made of `parts`, sent straight from where the bytes live; if the socket
    /// buffer is full, copied once and handed to glommio to send when it drains.
    async fn send_one(&self, socket: usize, to: SocketAddr, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        match sys::send_gather(self.fd(socket), &SockAddr::from(to), parts) {
            Ok(_) => self.sent(1, len),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stats.borrow_mut().send_would_block += 1;
                let datagram = parts.concat();
                let Some(s) = self.sockets.get(socket) else {
                    return;
                };
                match s.send_to(&datagram, to).await {
                    Ok(_) => self.sent(1, len),
                    Err(_) => self.stats.borrow_mut().send_errors += 1,
                }
            }
            Err(_) => self.stats.borrow_mut().send_errors += 1,
        }
    }

    fn sent(&self, datagrams: usize, bytes: usize) {
        let mut st = self.stats.borrow_mut();
        st.datagrams_sent += datagrams as u64;
        st.bytes_sent += bytes as u64;
    }

    /// A multi-packet reply: the burst now, the rest to the pacer.
    fn send_paced(&self, socket: usize, to: SocketAddr, packets: Arc<Packets>) {
        let now = self.now_ns();
        let dest = (socket as u8, to);
        let total = packets.ends.len();
        let started = self.pacer.borrow_mut().start(now, dest, packets.clone());
        let count = match started {
            Ok(c) => {
                if c < total {
                    self.stats.borrow_mut().paced_replies += 1;
                    let _ = self.wake.try_send(());
                }
                c
            }
            Err(Full) => {
                self.stats.borrow_mut().pacer_full += 1;
                self.burst.min(total)
            }
        };
        let sent = self.send_range(socket, to, &packets, 0..count);
        if sent < count && started.is_ok() {
            if self.pacer.borrow_mut().requeue(now, dest, packets, sent) {
                let _ = self.wake.try_send(());
            } else {
                self.stats.borrow_mut().pacer_full += 1;
            }
        }
    }

    /// Sends packets `range` without waiting; returns how many went out before the socket buffer
    /// filled (the caller reschedules the rest).
    fn send_range(
        &self,
        socket: usize,
        to: SocketAddr,
        packets: &Packets,
        range: std::ops::Range<usize>,
    ) -> usize {
        let dest = SockAddr::from(to);
        let fd = self.fd(socket);
        let mut sent = 0;
        for b in gso::batches(&packets.ends, range.clone(), self.gso.get()) {
            let bytes = packets.bytes.get(b.bytes.clone()).unwrap_or_default();
            let r = if b.count == 1 {
                sys::send_gather(fd, &dest, &[bytes])
            } else {
                sys::send_segments(fd, &dest, bytes, b.segment)
            };
            match r {
                Ok(_) => {
                    if b.count > 1 {
                        self.stats.borrow_mut().gso_sends += 1;
                    }
                    self.sent(b.count, bytes.len());
                    sent += b.count;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.borrow_mut().send_would_block += 1;
                    return sent;
                }
                Err(e) if b.count > 1 && sys::is_gso_unsupported(&e) => {
                    tracing::warn!(error = %e, "UDP GSO refused; sending one datagram per call");
                    self.gso.set(false);
                    self.stats.borrow_mut().gso_fallbacks += 1;
                    let from = range.start + sent;
                    return sent + self.send_range(socket, to, packets, from..range.end);
                }
                Err(_) => {
                    // Unsendable to this address (unreachable, refused): skip, do not retry.
                    self.stats.borrow_mut().send_errors += 1;
                    sent += b.count;
                }
            }
        }
        sent
    }
}

async fn receive(core: Rc<Core>, socket: usize) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut out = Packets::default();
    loop {
        let Some(s) = core.sockets.get(socket) else {
            return;
        };
        let (n, from) = match s.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(_) => {
                core.stats.borrow_mut().recv_errors += 1;
                future::yield_now().await;
                continue;
            }
        };
        let Some(datagram) = buf.get(..n).filter(|_| n <= MAX_DATAGRAM) else {
            core.stats.borrow_mut().oversized += 1;
            continue;
        };
        let reply = core
            .master
            .borrow_mut()
            .handle(core.now(), from, datagram, &mut out);
        core.reply(socket, from, reply, &mut out).await;
        glommio::yield_if_needed().await;
    }
}

async fn pace(core: Rc<Core>, wake: LocalReceiver<()>) {
    loop {
        let due = core.pacer.borrow_mut().next_due();
        match due {
            None => {
                if wake.recv().await.is_none() {
                    return;
                }
            }
            Some(due) => {
                let now = core.now_ns();
                if due > now {
                    let nap = Duration::from_nanos(due - now);
                    future::or(glommio::timer::sleep(nap), async {
                        let _ = wake.recv().await;
                    })
                    .await;
                }
            }
        }
        let now = core.now_ns();
        for _ in 0..MAX_PACED_PER_ROUND {
            let Some(d) = core.pacer.borrow_mut().poll(now) else {
                break;
            };
            let (socket, to) = d.dest;
            let sent = core.send_range(socket.into(), to, &d.packets, d.range.clone());
            let resume = d.range.start + sent;
            if resume < d.range.end
                && !core
                    .pacer
                    .borrow_mut()
                    .requeue(now, d.dest, d.packets, resume)
            {
                core.stats.borrow_mut().pacer_full += 1;
            }
        }
        future::yield_now().await;
    }
}
