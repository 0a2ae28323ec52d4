//! Peering (issue 22): this master's own registrations go to its peers, theirs come to this
//! master's cores — on a thread of its own with one UDP socket, off the packet cores and the
//! control thread, nothing shared with either but bounded channels and counters.
//!
//! - Out: every core's dump (each second) is compared, slot by slot, with what was last sent of
//!   it; a server heard again, new, or hidden or shown by its probes since is sent (paced: UDP,
//!   no acknowledgement; a server whose datagram was lost goes again at its next heartbeat) in
//!   [`wire::peer`](crate::wire::peer) datagrams (about 19 servers each) to every peer, with how
//!   long ago this master last heard it. Servers peers forwarded are never sent on (no loops).
//! - In: a datagram is read only if its MAC verifies with the shared key, it comes from a
//!   configured peer's address, and its sequence number is new for its sender (a replay window,
//!   and a sequence older than [`MAX_SEQ_AGE_MS`] is refused: sequences start from the sender's
//!   clock). Its servers go to the cores they belong to ([`EngineHandle::forward`]).
//! - Sync: at start this master asks every peer for everything it lists (1 s apart, the wait
//!   doubling, until one answers whole, at most [`SYNC_TRIES`] times); asked, it answers with every server of its own,
//!   paced, to that peer only.
//!
//! Bounded: the out queue ([`MAX_OUT_QUEUE`] datagrams: a dump's changes past it wait for a later
//! dump; a sync's answer waits its turn; anything else past it drops the oldest, counted),
//! sends and receives per round, sync work per round, the replay windows (one per sender id, at
//! most [`MAX_SENDERS`]). A dead or slow peer costs sends that go nowhere, nothing more.

use crate::engine::{CoreDump, EngineHandle};
use crate::master::steer::shard_for;
use crate::master::table::record::{Family, flags};
use crate::master::{Forwarded, policy};
use crate::wire::peer::{Builder, Entry, GONE, Kind, ReplayWindow, STRINGS, Sealed};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Sealed datagrams waiting to be sent, at most.
pub const MAX_OUT_QUEUE: usize = 16_384;
/// Datagrams received per round of the thread's loop.
pub const MAX_PER_ROUND: usize = 2048;
/// Datagrams sent per round (a round lasts at least the socket's read wait when nothing comes
/// in): ~25,000 a second, paced so a peer's receive buffer is not overrun by a dump's burst.
pub const MAX_SENDS_PER_ROUND: usize = 256;
/// The peering socket's receive buffer (capped by `net.core.rmem_max`): a peer's burst of a
/// million servers' changes arrives paced, but a few rounds of it may queue here.
pub const RECV_BUFFER: usize = 4 << 20;
/// A round's wait for datagrams when there is nothing to send.
pub const ROUND: Duration = Duration::from_millis(10);
/// Sync requests sent at start (1 s apart, then doubling up to a minute) until a peer answers
/// whole.
pub const SYNC_TRIES: u32 = 10;
/// Sender ids with a replay window, at most (a restarted peer has a new one).
pub const MAX_SENDERS: usize = 64;
/// A datagram whose sequence (its sender's clock, ms) is older than this is refused.
pub const MAX_SEQ_AGE_MS: u64 = 60_000;

/// What the peering thread runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeeringSettings {
    pub listen: SocketAddr,
    pub peers: Vec<SocketAddr>,
    pub key: [u8; 32],
}

/// One peer's figures.
#[derive(Debug, Default)]
pub struct PeerCounters {
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub entries_in: AtomicU64,
    pub entries_out: AtomicU64,
    pub last_heard_unix_ms: AtomicU64,
    pub synced_entries: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// The peering thread's figures (read by the operator's side).
#[derive(Debug, Default)]
pub struct PeeringCounters {
    pub peers: Vec<(SocketAddr, PeerCounters)>,
    pub rejected_mac: AtomicU64,
    pub rejected_replay: AtomicU64,
    pub rejected_unknown_peer: AtomicU64,
    pub rejected_malformed: AtomicU64,
    /// Batches a core's queue had no room for, and datagrams dropped from a full out queue.
    pub core_queue_full: AtomicU64,
    pub out_queue_full: AtomicU64,
}

/// Each peer's state as JSON (`/api/stats`).
#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
pub struct PeerJson {
    pub address: String,
    pub last_heard_unix_ms: Option<u64>,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    pub entries_in: u64,
    pub entries_out: u64,
    pub synced_entries: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl PeeringCounters {
    /// Refusals and drops by reason.
    pub fn rejected(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("mac", l(&self.rejected_mac)),
            ("replay", l(&self.rejected_replay)),
            ("unknown_peer", l(&self.rejected_unknown_peer)),
            ("malformed", l(&self.rejected_malformed)),
            ("core_queue_full", l(&self.core_queue_full)),
            ("out_queue_full", l(&self.out_queue_full)),
        ]
        .into_iter()
        .collect()
    }

    pub fn json(&self) -> Vec<PeerJson> {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.peers
            .iter()
            .map(|(a, c)| PeerJson {
                address: a.to_string(),
                last_heard_unix_ms: Some(l(&c.last_heard_unix_ms)).filter(|&t| t != 0),
                datagrams_in: l(&c.datagrams_in),
                datagrams_out: l(&c.datagrams_out),
                entries_in: l(&c.entries_in),
                entries_out: l(&c.entries_out),
                synced_entries: l(&c.synced_entries),
                bytes_in: l(&c.bytes_in),
                bytes_out: l(&c.bytes_out),
            })
            .collect()
    }
}

/// The running peering thread.
pub struct Peering {
    thread: Option<std::thread::JoinHandle<()>>,
    dumps: crossbeam_channel::Sender<Arc<CoreDump>>,
    stop: Arc<AtomicBool>,
    pub counters: Arc<PeeringCounters>,
    pub local: SocketAddr,
}

impl Peering {
    /// Binds the peering socket and starts the thread.
    pub fn start(s: PeeringSettings, engine: EngineHandle) -> std::io::Result<Peering> {
        let sock = UdpSocket::bind(s.listen)?;
        sock.set_read_timeout(Some(ROUND))?;
        let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(RECV_BUFFER);
        let local = sock.local_addr()?;
        let counters = Arc::new(PeeringCounters {
            peers: s
                .peers
                .iter()
                .map(|p| (*p, PeerCounters::default()))
                .collect(),
            ..Default::default()
        });
        let (tx, rx) = crossbeam_channel::bounded(engine.cores.saturating_mul(4).max(4));
        let stop = Arc::new(AtomicBool::new(false));
        let mut t = Worker::new(s, engine, sock, rx, counters.clone());
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("muster-peering".to_owned())
            .spawn(move || t.run(&st))?;
        Ok(Peering {
            thread: Some(thread),
            dumps: tx,
            stop,
            counters,
            local,
        })
    }

    /// A core's new dump (dropped if the thread is behind: the next one carries the same news).
    pub fn dump(&self, d: Arc<CoreDump>) {
        let _ = self.dumps.try_send(d);
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Peering {
    /// Stops the thread and waits for it (at most a round): its socket is closed on return.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A full sync being sent to one peer: the next (core, slot) to send.
struct SyncJob {
    to: SocketAddr,
    core: usize,
    slot: usize,
    sent: u32,
}

struct Worker {
    s: PeeringSettings,
    engine: EngineHandle,
    sock: UdpSocket,
    dumps_rx: crossbeam_channel::Receiver<Arc<CoreDump>>,
    counters: Arc<PeeringCounters>,
    /// This process's sender id (random: a restarted peer starts a new replay window).
    id: u64,
    seq: u64,
    windows: HashMap<u64, ReplayWindow>,
    /// Per core, the latest dump and what was last sent of each slot: (heard, listed).
    latest: Vec<Option<Arc<CoreDump>>>,
    sent: Vec<Vec<(u32, bool)>>,
    out: VecDeque<(Option<SocketAddr>, Vec<u8>)>,
    syncs: VecDeque<SyncJob>,
    /// Sync requests still to send at start, and when the next goes.
    sync_tries: u32,
    next_sync: Instant,
}

fn random_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn unix_ms() -> u64 {
    crate::engine::unix_now_ms()
}

impl Worker {
    fn new(
        s: PeeringSettings,
        engine: EngineHandle,
        sock: UdpSocket,
        dumps_rx: crossbeam_channel::Receiver<Arc<CoreDump>>,
        counters: Arc<PeeringCounters>,
    ) -> Worker {
        let cores = engine.cores;
        Worker {
            sync_tries: if s.peers.is_empty() { 0 } else { SYNC_TRIES },
            s,
            engine,
            sock,
            dumps_rx,
            counters,
            id: random_id(),
            // Sequences start from the clock (ms, 16 bits of count below): they grow across
            // restarts, and a receiver can refuse one too old to be live.
            seq: unix_ms() << 16,
            windows: HashMap::new(),
            latest: vec![None; cores],
            sent: vec![Vec::new(); cores],
            out: VecDeque::new(),
            syncs: VecDeque::new(),
            next_sync: Instant::now(),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1).max(unix_ms() << 16);
        self.seq
    }

    fn queue(&mut self, to: Option<SocketAddr>, d: Vec<u8>) {
        if self.out.len() >= MAX_OUT_QUEUE {
            self.out.pop_front();
            self.counters.out_queue_full.fetch_add(1, Ordering::Relaxed);
        }
        self.out.push_back((to, d));
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut buf = vec![0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if self.sync_tries > 0 && Instant::now() >= self.next_sync {
                self.sync_tries -= 1;
                // 1 s, 2 s, 4 s … between requests (at most a minute): a peer that is down is
                // asked less and less.
                let asked = SYNC_TRIES.saturating_sub(self.sync_tries).min(6);
                self.next_sync =
                    Instant::now() + Duration::from_secs(1u64 << asked.saturating_sub(1));
                let d = Builder::new(Kind::SyncRequest, self.id, self.next_seq()).seal(&self.s.key);
                self.queue(None, d);
            }
            while let Ok(d) = self.dumps_rx.try_recv() {
                self.changes(d);
            }
            self.sync_work();
            self.send();
            // Receive until the socket is idle (its read timeout is one round) or a round's worth.
            for _ in 0..MAX_PER_ROUND {
                match self.sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let d = buf.get(..n).unwrap_or_default().to_vec();
                        self.receive(&d, from);
                    }
                    Err(_) => break,
                }
                if !self.out.is_empty() {
                    break;
                }
            }
        }
    }

    fn send(&mut self) {
        for _ in 0..MAX_SENDS_PER_ROUND {
            let Some((to, d)) = self.out.pop_front() else {
                return;
            };
            let peers: Vec<SocketAddr> = match to {
                Some(p) => vec![p],
                None => self.s.peers.clone(),
            };
            for p in peers {
                if self.sock.send_to(&d, p).is_ok()
                    && let Some((_, c)) = self.counters.peers.iter().find(|(a, _)| *a == p)
                {
                    c.datagrams_out.fetch_add(1, Ordering::Relaxed);
                    c.bytes_out.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
            }
        }
    }

    /// What changed in `d` since the last dump of its core was looked at: sent to every peer.
    fn changes(&mut self, d: Arc<CoreDump>) {
        if self.s.peers.is_empty() || d.last {
            return;
        }
        let core = d.core;
        let now = unix_ms();
        let dump_age = now.saturating_sub(self.engine.wall().unix_ms(d.at));
        let mut b = Builder::new(Kind::Entries, self.id, 0);
        let mut batches: Vec<Builder> = Vec::new();
        let mut entries = 0u64;
        let Some(sent) = self.sent.get_mut(core) else {
            return;
        };
        let slots = d.shard.slots_len();
        if sent.len() < slots {
            sent.resize(slots, (0, false));
        }
        // Servers sent before that left this core's table since (a ban, their timeout, a
        // reload's policy): peers delist them now rather than at their timeout. Found in the
        // previous dump by slot; their entries go before this dump's (a server that left and came
        // back into another slot is gone, then new).
        let mut gone = Vec::new();
        if let Some(Some(prev)) = self.latest.get(core) {
            for (slot, was) in sent.iter_mut().enumerate() {
                if *was == (0, false) {
                    continue;
                }
                let Ok(slot) = u32::try_from(slot) else { break };
                let Some((old, _)) = prev.shard.at(slot) else {
                    continue;
                };
                let stays = d
                    .shard
                    .at(slot)
                    .is_some_and(|(s, _)| s.addr == old.addr && !s.is_forwarded());
                if !stays && !old.is_forwarded() {
                    *was = (0, false);
                    gone.push(gone_entry(old, dump_age));
                }
            }
        }
        for e in &gone {
            // Bounded like the rest: past the out queue's room, peers delist at the timeout.
            if self.out.len().saturating_add(batches.len()) >= MAX_OUT_QUEUE {
                break;
            }
            if !b.push(e) {
                batches.push(std::mem::replace(
                    &mut b,
                    Builder::new(Kind::Entries, self.id, 0),
                ));
                b.push(e);
            }
            entries += 1;
        }
        for (slot, s, seen) in d.shard.slots() {
            if s.is_forwarded() {
                continue;
            }
            // Backpressure: what does not fit in the out queue now stays unsent (its remembered
            // state unchanged), and goes with a later dump.
            if self.out.len().saturating_add(batches.len()) >= MAX_OUT_QUEUE {
                break;
            }
            let now_state = (seen, s.is_listed());
            let Some(was) = sent.get_mut(slot as usize) else {
                continue;
            };
            if *was == now_state {
                continue;
            }
            *was = now_state;
            let e = entry_of(&d, s, seen, dump_age);
            if !b.push(&e) {
                batches.push(std::mem::replace(
                    &mut b,
                    Builder::new(Kind::Entries, self.id, 0),
                ));
                b.push(&e);
            }
            entries += 1;
        }
        if !b.is_empty() {
            batches.push(b);
        }
        // Changes left for later still had their state recorded above only if sent.
        if let Some(l) = self.latest.get_mut(core) {
            *l = Some(d);
        }
        for mut b in batches {
            b.set_seq(self.next_seq());
            let sealed = b.seal(&self.s.key);
            self.queue(None, sealed);
        }
        for (_, c) in &self.counters.peers {
            c.entries_out.fetch_add(entries, Ordering::Relaxed);
        }
    }

    /// Up to a round's worth of the syncs peers asked for.
    fn sync_work(&mut self) {
        let Some(mut job) = self.syncs.pop_front() else {
            return;
        };
        let mut made = 0;
        let now = unix_ms();
        while made < MAX_PER_ROUND / 4 && self.out.len() < MAX_OUT_QUEUE / 2 {
            let Some(d) = self.latest.get(job.core).cloned() else {
                break;
            };
            let Some(d) = d else {
                job.core += 1;
                job.slot = 0;
                continue;
            };
            let dump_age = now.saturating_sub(self.engine.wall().unix_ms(d.at));
            let mut b = Builder::new(Kind::SyncEntries, self.id, 0);
            let mut end = true;
            let from = job.slot;
            for (slot, s, seen) in d
                .shard
                .slots()
                .skip_while(|(slot, ..)| (*slot as usize) < from)
            {
                job.slot = slot as usize;
                if s.is_forwarded() {
                    continue;
                }
                if !b.push(&entry_of(&d, s, seen, dump_age)) {
                    end = false;
                    break;
                }
                job.sent = job.sent.saturating_add(1);
            }
            if !b.is_empty() {
                b.set_seq(self.next_seq());
                let sealed = b.seal(&self.s.key);
                self.queue(Some(job.to), sealed);
                made += 1;
            }
            if end {
                job.core += 1;
                job.slot = 0;
            }
        }
        if job.core >= self.latest.len() {
            let seq = self.next_seq();
            let done = Builder::new(Kind::SyncDone, self.id, seq)
                .sync_done(job.sent)
                .seal(&self.s.key);
            self.queue(Some(job.to), done);
        } else {
            self.syncs.push_back(job);
        }
    }

    fn receive(&mut self, d: &[u8], from: SocketAddr) {
        let c = &self.counters;
        let Some(peer) = c.peers.iter().find(|(a, _)| *a == from).map(|(_, p)| p) else {
            c.rejected_unknown_peer.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Ok(sealed) = Sealed::open(d, &self.s.key) else {
            c.rejected_mac.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let too_old = (sealed.seq >> 16).saturating_add(MAX_SEQ_AGE_MS) < unix_ms();
        if self.windows.len() >= MAX_SENDERS && !self.windows.contains_key(&sealed.sender) {
            // A restarted peer's old id: forget the oldest windows (sequences are the clock).
            let oldest = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.highest())
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.windows.remove(&k);
            }
        }
        let window = self.windows.entry(sealed.sender).or_default();
        if too_old || !window.accept(sealed.seq) {
            c.rejected_replay.fetch_add(1, Ordering::Relaxed);
            return;
        }
        peer.datagrams_in.fetch_add(1, Ordering::Relaxed);
        peer.bytes_in.fetch_add(d.len() as u64, Ordering::Relaxed);
        peer.last_heard_unix_ms.store(unix_ms(), Ordering::Relaxed);
        match sealed.kind {
            Kind::SyncRequest => {
                if !self.syncs.iter().any(|j| j.to == from) {
                    self.syncs.push_back(SyncJob {
                        to: from,
                        core: 0,
                        slot: 0,
                        sent: 0,
                    });
                }
            }
            Kind::SyncDone => {
                // A whole answer: no more requests needed.
                self.sync_tries = 0;
                if let Ok(n) = sealed.sync_done() {
                    peer.synced_entries
                        .fetch_add(u64::from(n), Ordering::Relaxed);
                }
            }
            Kind::Entries | Kind::SyncEntries => {
                let Ok(entries) = sealed.entries() else {
                    c.rejected_malformed.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                peer.entries_in
                    .fetch_add(entries.len() as u64, Ordering::Relaxed);
                let cores = self.engine.cores;
                let mut per_core: Vec<Vec<Forwarded>> = vec![Vec::new(); cores];
                for e in entries.iter().filter(|e| e.hop == 0) {
                    let Some(f) = forwarded_of(e) else {
                        continue;
                    };
                    let core = shard_for(policy::canonical(f.addr).ip(), cores);
                    if let Some(v) = per_core.get_mut(core) {
                        v.push(f);
                    }
                }
                for (core, batch) in per_core.into_iter().enumerate() {
                    if !batch.is_empty() && !self.engine.forward(core, Arc::new(batch)) {
                        c.core_queue_full.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// The entry a server of a dump makes: heard `dump.at − seen` before the dump, plus the dump's
/// own age.
fn entry_of<'a>(
    d: &'a CoreDump,
    s: &'a crate::master::Server,
    seen: u32,
    dump_age_ms: u64,
) -> Entry<'a> {
    let at = d.at.millis();
    let heard = u64::from(seen).saturating_mul(1000);
    let age = at.saturating_sub(heard).saturating_add(dump_age_ms);
    let st = |sym| d.shard.strings.get(sym);
    Entry {
        family: s.family as u8,
        addr: s.addr.addr(),
        age_ms: u32::try_from(age).unwrap_or(u32::MAX),
        hop: 0,
        flags: s.flags & !flags::FORWARDED,
        region: s.region,
        server_type: s.server_type,
        players: s.players,
        max_players: s.max_players,
        bots: s.bots,
        appid: s.appid,
        protocol: s.protocol,
        strings: [
            st(s.game),
            st(s.product),
            st(s.map),
            st(s.version),
            st(s.tags),
            st(s.gamedata),
            st(s.hostname),
        ],
    }
}

/// The entry saying the origin stopped listing `s`, `dump_age_ms` ago.
fn gone_entry(s: &crate::master::Server, dump_age_ms: u64) -> Entry<'static> {
    Entry {
        family: s.family as u8,
        addr: s.addr.addr(),
        age_ms: u32::try_from(dump_age_ms).unwrap_or(u32::MAX),
        hop: 0,
        flags: GONE,
        region: 0,
        server_type: 0,
        players: 0,
        max_players: 0,
        bots: 0,
        appid: 0,
        protocol: 0,
        strings: [b""; STRINGS],
    }
}

fn forwarded_of(e: &Entry<'_>) -> Option<Forwarded> {
    let family = match e.family {
        1 => Family::Valve,
        2 => Family::DarkPlaces,
        _ => return None,
    };
    let strings: [Box<[u8]>; STRINGS] = e.strings.map(Box::from);
    Some(Forwarded {
        addr: e.addr,
        family,
        age_ms: e.age_ms,
        listed: e.flags & flags::HIDDEN == 0,
        gone: e.flags & GONE != 0,
        region: e.region,
        server_type: e.server_type,
        players: e.players,
        max_players: e.max_players,
        bots: e.bots,
        flags: e.flags,
        appid: e.appid,
        protocol: e.protocol,
        strings,
    })
}
