//! The transmit queue: what the master has to send, and when — sans-IO, in the shape of
//! quinn-proto's `poll_transmit` / `poll_timeout`. The engine asks for everything due, sends it in
//! batches (`sendmmsg` of GSO runs), hands back what the socket did not take, and wakes at the
//! earliest time anything else comes due; it keeps no timer per client.
//!
//! Single-datagram replies (challenges, Valve pages) are sent at the next flush. A multi-packet
//! reply (a DP list) is a *flow*: the first `window` bytes go at once — about what a client's
//! default socket buffer absorbs — and the rest at `rate` bytes per second, the Valve paper's
//! method 1: *next packet time = now + size of packet / receiving rate*. One flow per client
//! address: a new reply supersedes the old. Payloads are shared (`Arc`) with the list that encoded
//! them, never copied per client; the queue is bounded by the bytes it has still to send.

use crate::master::list::{DpStream, Packets};
use crate::master::time::Time;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

/// Most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS`).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send: one IPv4 UDP datagram's worth (65535 − 20 − 8).
pub const MAX_GSO_BYTES: usize = 65_507;
/// A paced flow that fell behind (a late flush) catches up by at most this much.
pub const MAX_CATCH_UP_US: u64 = 2_000;
/// Largest inline reply (challenge replies are 10–21 bytes).
pub const SMALL: usize = 32;

/// How the queue paces and how much it may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxConfig {
    /// Bytes of a multi-packet reply sent at once.
    pub window: usize,
    /// Bytes per second per client after the window.
    pub rate: u32,
    /// Bytes the queue may hold to send (every flow's remainder and every queued datagram).
    pub max_pending: usize,
    /// Cut runs of packets into GSO sends (off: one datagram per transmit).
    pub gso: bool,
}

impl Default for TxConfig {
    /// 96 KiB at once: a Linux client's default receive buffer (`rmem_default`, 208 KiB) holds
    /// about 90 datagrams of 1.4 KB once each one's kernel overhead is counted; 64 of them is a
    /// safe window. Then 4 MiB/s (~3,000 DP packets a second). 64 MiB queued per core at most.
    fn default() -> Self {
        Self {
            window: 96 * 1024,
            rate: 4 * 1024 * 1024,
            max_pending: 64 * 1024 * 1024,
            gso: true,
        }
    }
}

/// The bytes of one transmit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A short reply, inline.
    Small { bytes: [u8; SMALL], len: u8 },
    /// A reply encoded for this client (a filtered Valve page).
    Owned(Box<[u8]>),
    /// A Valve page from the shared entries: header, `entries[range]`, terminator if `last`.
    Page {
        entries: Arc<[u8]>,
        range: Range<usize>,
        last: bool,
    },
    /// Consecutive packets of a shared encoding, laid end to end.
    Run {
        packets: Arc<Packets>,
        bytes: Range<usize>,
    },
}

const NO_BYTES: &[u8] = &[];
const TERMINATOR: &[u8] = &[0; 6];

impl Payload {
    /// A short reply (`None` if longer than [`SMALL`]).
    pub fn small(b: &[u8]) -> Option<Payload> {
        let mut bytes = [0u8; SMALL];
        bytes.get_mut(..b.len())?.copy_from_slice(b);
        Some(Payload::Small {
            bytes,
            len: u8::try_from(b.len()).ok()?,
        })
    }

    /// The slices that make the bytes, in order (unused ones empty).
    pub fn parts(&self) -> [&[u8]; 3] {
        match self {
            Payload::Small { bytes, len } => [
                bytes.get(..usize::from(*len)).unwrap_or_default(),
                NO_BYTES,
                NO_BYTES,
            ],
            Payload::Owned(b) => [b, NO_BYTES, NO_BYTES],
            Payload::Page {
                entries,
                range,
                last,
            } => [
                &crate::wire::valve_list::PAGE_HEADER,
                entries.get(range.clone()).unwrap_or_default(),
                if *last { TERMINATOR } else { NO_BYTES },
            ],
            Payload::Run { packets, bytes } => [
                packets.bytes.get(bytes.clone()).unwrap_or_default(),
                NO_BYTES,
                NO_BYTES,
            ],
        }
    }

    pub fn len(&self) -> usize {
        self.parts()
            .iter()
            .fold(0usize, |n, p| n.saturating_add(p.len()))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One send: a datagram, or a GSO run of datagrams of `segment` bytes (the last may be shorter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    /// The engine's listener the query came in on (the reply leaves from the same address).
    pub local: u8,
    /// Datagram size: a payload longer than this is cut into datagrams of this size.
    pub segment: usize,
    pub payload: Payload,
}

impl Transmit {
    /// How many datagrams this sends.
    pub fn count(&self) -> usize {
        self.payload.len().div_ceil(self.segment.max(1)).max(1)
    }

    /// The same bytes as one transmit per datagram (when the kernel refuses GSO).
    pub fn split(self) -> Vec<Transmit> {
        match &self.payload {
            Payload::Run { packets, bytes } if self.count() > 1 => {
                let seg = self.segment.max(1);
                (bytes.start..bytes.end)
                    .step_by(seg)
                    .map(|at| Transmit {
                        to: self.to,
                        local: self.local,
                        segment: seg,
                        payload: Payload::Run {
                            packets: packets.clone(),
                            bytes: at..at.saturating_add(seg).min(bytes.end),
                        },
                    })
                    .collect()
            }
            _ => vec![self],
        }
    }

    /// The datagrams, materialised (tests and simple senders).
    pub fn datagrams(&self) -> Vec<Vec<u8>> {
        let all: Vec<u8> = self.payload.parts().concat();
        if all.is_empty() {
            return vec![Vec::new()];
        }
        all.chunks(self.segment.max(1))
            .map(<[u8]>::to_vec)
            .collect()
    }
}

/// A reply the queue would not take: it holds `max_pending` bytes already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

type Dest = (SocketAddr, u8);

/// Where a flow's packets come from: a shared encoding, or a stream encoded a few packets at a
/// time as they come due (a filtered DP answer).
#[derive(Debug)]
enum Source {
    Packets,
    Stream(Box<DpStream>),
}

#[derive(Debug)]
struct Flow {
    source: Source,
    /// The packets being sent: the whole shared encoding, or the stream's current step.
    chunk: Arc<Packets>,
    /// The next packet of `chunk` to send.
    next: usize,
    /// When it may go, in µs on the master's clock.
    due_us: u64,
    generation: u64,
    /// Bytes still counted against `max_pending` for this flow.
    held: usize,
}

impl Flow {
    /// The next packet's bytes, stepping a stream when its current packets are all out;
    /// `None` when the reply is complete.
    fn peek(&mut self) -> Option<Range<usize>> {
        if let Some(r) = packet(&self.chunk, self.next) {
            return Some(r);
        }
        let Source::Stream(s) = &mut self.source else {
            return None;
        };
        let mut fresh = Packets::default();
        if !s.next_packets(&mut fresh) || fresh.ends.is_empty() {
            return None;
        }
        self.chunk = Arc::new(fresh);
        self.next = 0;
        packet(&self.chunk, 0)
    }
}

/// Counts of what the queue did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Multi-packet replies that needed pacing beyond their window.
    pub paced: u64,
    /// Replies superseded by a newer one to the same client before they were all sent.
    pub superseded: u64,
}

/// One core's transmit queue.
#[derive(Debug)]
pub struct TxQueue {
    cfg: TxConfig,
    ready: VecDeque<Transmit>,
    ready_bytes: usize,
    flows: HashMap<Dest, Flow>,
    /// (due µs, generation, destination); entries of superseded or finished flows are skipped.
    due: BinaryHeap<Reverse<(u64, u64, Dest)>>,
    flow_bytes: usize,
    generation: u64,
    stats: TxStats,
}

fn us(now: Time) -> u64 {
    now.millis().saturating_mul(1000)
}

/// The byte range of packet `i` of `p`.
fn packet(p: &Packets, i: usize) -> Option<Range<usize>> {
    let end = *p.ends.get(i)?;
    let start = match i.checked_sub(1) {
        Some(j) => *p.ends.get(j)?,
        None => 0,
    };
    Some(start..end)
}

/// The bytes of packets `from..to` of `p`.
fn span(p: &Packets, from: usize, to: usize) -> usize {
    match (
        packet(p, from),
        to.checked_sub(1).and_then(|l| packet(p, l)),
    ) {
        (Some(a), Some(b)) if to > from => b.end.saturating_sub(a.start),
        _ => 0,
    }
}

impl TxQueue {
    pub fn new(cfg: TxConfig) -> Self {
        Self {
            cfg,
            ready: VecDeque::new(),
            ready_bytes: 0,
            flows: HashMap::new(),
            due: BinaryHeap::new(),
            flow_bytes: 0,
            generation: 0,
            stats: TxStats::default(),
        }
    }

    pub fn config(&self) -> TxConfig {
        self.cfg
    }

    /// Turns GSO off (the kernel refused it): from now on one datagram per transmit.
    pub fn disable_gso(&mut self) {
        self.cfg.gso = false;
    }

    pub fn stats(&self) -> TxStats {
        self.stats
    }

    /// Bytes waiting to be sent.
    pub fn pending_bytes(&self) -> usize {
        self.ready_bytes.saturating_add(self.flow_bytes)
    }

    /// Replies in flight (paced flows).
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Whether the queue would take `bytes` more.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.pending_bytes().saturating_add(bytes) <= self.cfg.max_pending
    }

    fn push_ready(&mut self, t: Transmit) {
        self.ready_bytes = self.ready_bytes.saturating_add(t.payload.len());
        self.ready.push_back(t);
    }

    /// Queues one datagram for the next flush.
    pub fn send(&mut self, to: SocketAddr, local: u8, payload: Payload) -> Result<(), Full> {
        let len = payload.len();
        if !self.has_room(len) {
            return Err(Full);
        }
        self.push_ready(Transmit {
            to,
            local,
            segment: len.max(1),
            payload,
        });
        Ok(())
    }

    /// Queues a multi-packet reply: the window now, the rest paced. Supersedes any reply still in
    /// flight to the same client.
    pub fn send_packets(
        &mut self,
        now: Time,
        to: SocketAddr,
        local: u8,
        packets: Arc<Packets>,
    ) -> Result<(), Full> {
        let total = packets.bytes.len();
        self.start(now, (to, local), Source::Packets, packets, total)
    }

    /// Queues a reply encoded as it goes (`bound`: the most bytes it can take): the window now, the
    /// rest paced. Supersedes any reply still in flight to the same client.
    pub fn send_stream(
        &mut self,
        now: Time,
        to: SocketAddr,
        local: u8,
        stream: Box<DpStream>,
        bound: usize,
    ) -> Result<(), Full> {
        let empty = Arc::new(Packets::default());
        self.start(now, (to, local), Source::Stream(stream), empty, bound)
    }

    fn start(
        &mut self,
        now: Time,
        dest: Dest,
        source: Source,
        chunk: Arc<Packets>,
        bound: usize,
    ) -> Result<(), Full> {
        if let Some(old) = self.flows.remove(&dest) {
            self.flow_bytes = self.flow_bytes.saturating_sub(old.held);
            self.stats.superseded = self.stats.superseded.wrapping_add(1);
        }
        if !self.has_room(bound) {
            return Err(Full);
        }
        let mut flow = Flow {
            source,
            chunk,
            next: 0,
            due_us: 0,
            generation: 0,
            held: bound,
        };
        self.flow_bytes = self.flow_bytes.saturating_add(bound);
        // The window: whole packets up to `window` bytes, at least one.
        let mut sent = 0usize;
        let mut full = false;
        while !full && flow.peek().is_some() {
            // Whole packets of the current step that still fit in the window, as one run.
            let (mut k, mut bytes) = (0usize, sent);
            while let Some(r) = packet(&flow.chunk, flow.next.saturating_add(k)) {
                if bytes > 0 && bytes.saturating_add(r.len()) > self.cfg.window {
                    full = true;
                    break;
                }
                bytes = bytes.saturating_add(r.len());
                k = k.saturating_add(1);
            }
            sent = sent.saturating_add(self.release(dest, &mut flow, k));
        }
        if flow.peek().is_none() {
            self.flow_bytes = self.flow_bytes.saturating_sub(flow.held);
            return Ok(());
        }
        self.generation = self.generation.wrapping_add(1);
        flow.generation = self.generation;
        flow.due_us = us(now).saturating_add(self.pace_us(sent));
        self.due.push(Reverse((flow.due_us, self.generation, dest)));
        self.flows.insert(dest, flow);
        self.stats.paced = self.stats.paced.wrapping_add(1);
        self.compact();
        Ok(())
    }

    /// Sends the next `count` packets of `flow` (fewer if it ends): queued as GSO runs. Returns the
    /// bytes released.
    fn release(&mut self, dest: Dest, flow: &mut Flow, count: usize) -> usize {
        let mut bytes = 0usize;
        let mut left = count;
        while left > 0 {
            if flow.peek().is_none() {
                break;
            }
            let start = flow.next;
            let n = flow.chunk.ends.len();
            let upto = n.min(start.saturating_add(left));
            let chunk = flow.chunk.clone();
            let b = span(&chunk, start, upto);
            self.emit_runs(dest.0, dest.1, &chunk, start, upto);
            flow.next = upto;
            left = left.saturating_sub(upto.saturating_sub(start));
            bytes = bytes.saturating_add(b);
        }
        flow.held = flow.held.saturating_sub(bytes);
        self.flow_bytes = self.flow_bytes.saturating_sub(bytes);
        bytes
    }

    /// µs that `bytes` take at the pacing rate.
    fn pace_us(&self, bytes: usize) -> u64 {
        (bytes as u64)
            .saturating_mul(1_000_000)
            .checked_div(u64::from(self.cfg.rate.max(1)))
            .unwrap_or(0)
    }

    /// Queues packets `from..to` of `p` as GSO runs: equal sizes, a shorter one ends a run.
    fn emit_runs(&mut self, to: SocketAddr, local: u8, p: &Arc<Packets>, from: usize, upto: usize) {
        let max_segments = if self.cfg.gso { MAX_GSO_SEGMENTS } else { 1 };
        let mut i = from;
        while i < upto {
            let Some(first) = packet(p, i) else { break };
            let segment = first.len();
            let mut end = first.end;
            let mut count = 1usize;
            while count < max_segments {
                let Some(next) =
                    packet(p, i.saturating_add(count)).filter(|_| i.saturating_add(count) < upto)
                else {
                    break;
                };
                if next.len() > segment || next.end.saturating_sub(first.start) > MAX_GSO_BYTES {
                    break;
                }
                count = count.saturating_add(1);
                end = next.end;
                if next.len() < segment {
                    break; // a shorter datagram ends a GSO send
                }
            }
            self.push_ready(Transmit {
                to,
                local,
                segment: segment.max(1),
                payload: Payload::Run {
                    packets: p.clone(),
                    bytes: first.start..end,
                },
            });
            i = i.saturating_add(count);
        }
    }

    /// Moves everything due at `now` to `out` (at most `max` transmits), in order: queued
    /// datagrams first, then what each paced flow may send by now.
    pub fn poll_transmit(&mut self, now: Time, out: &mut Vec<Transmit>, max: usize) {
        let now_us = us(now);
        self.release_due(now_us);
        while out.len() < max {
            let Some(t) = self.ready.pop_front() else {
                break;
            };
            self.ready_bytes = self.ready_bytes.saturating_sub(t.payload.len());
            out.push(t);
        }
    }

    /// Moves the packets every flow may send by `now_us` into `ready`.
    fn release_due(&mut self, now_us: u64) {
        while let Some(&Reverse((due_us, generation, dest))) = self.due.peek() {
            if due_us > now_us {
                break;
            }
            self.due.pop();
            let Some(mut flow) = self.flows.remove(&dest) else {
                continue;
            };
            if flow.generation != generation {
                self.flows.insert(dest, flow);
                continue; // superseded: its replacement has its own entry
            }
            // A late flush catches up by at most MAX_CATCH_UP_US.
            let mut t = flow.due_us.max(now_us.saturating_sub(MAX_CATCH_UP_US));
            while t <= now_us && flow.peek().is_some() {
                // Every packet of the current step due by now, released as one run.
                let mut k = 0usize;
                while t <= now_us {
                    let Some(r) = packet(&flow.chunk, flow.next.saturating_add(k)) else {
                        break;
                    };
                    t = t.saturating_add(self.pace_us(r.len()));
                    k = k.saturating_add(1);
                }
                self.release(dest, &mut flow, k);
            }
            if flow.peek().is_none() {
                self.flow_bytes = self.flow_bytes.saturating_sub(flow.held);
                continue;
            }
            flow.due_us = t;
            self.due.push(Reverse((t, generation, dest)));
            self.flows.insert(dest, flow);
        }
    }

    /// Puts back, at the front and in order, transmits the socket did not take.
    pub fn unsent(&mut self, back: impl DoubleEndedIterator<Item = Transmit>) {
        for t in back.rev() {
            self.ready_bytes = self.ready_bytes.saturating_add(t.payload.len());
            self.ready.push_front(t);
        }
    }

    /// When the next paced packet comes due (`None`: nothing is paced). Queued datagrams are due
    /// now, which the caller knows (it flushes after every batch).
    pub fn poll_timeout(&mut self) -> Option<Time> {
        if !self.ready.is_empty() {
            return Some(Time::ZERO);
        }
        while let Some(&Reverse((due_us, generation, dest))) = self.due.peek() {
            match self.flows.get(&dest) {
                Some(f) if f.generation == generation => {
                    return Some(Time::from_millis(due_us.div_ceil(1000)));
                }
                _ => {
                    self.due.pop();
                }
            }
        }
        None
    }

    /// Superseded flows leave their heap entries behind; rebuild when those dominate.
    fn compact(&mut self) {
        if self.due.len() > self.flows.len().saturating_mul(2).saturating_add(64) {
            self.due = self
                .flows
                .iter()
                .map(|(d, f)| Reverse((f.due_us, f.generation, *d)))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` packets of `size` bytes (the last `last` bytes), each filled with its index.
    fn packets(n: usize, size: usize, last: usize) -> Arc<Packets> {
        let mut p = Packets::default();
        for i in 0..n {
            let len = if i + 1 == n { last } else { size };
            p.bytes.extend(std::iter::repeat_n(i as u8, len));
            p.ends.push(p.bytes.len());
        }
        Arc::new(p)
    }

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 1], port))
    }

    fn cfg() -> TxConfig {
        TxConfig {
            window: 4 * 1400,
            rate: 1400 * 1000, // one 1400-byte packet per ms
            max_pending: 16 << 20,
            gso: true,
        }
    }

    /// Polls every `step` ms until the queue is empty; returns (ms, transmit) for each.
    fn drain(q: &mut TxQueue, mut now: Time, step: u64) -> Vec<(u64, Transmit)> {
        let mut sent = Vec::new();
        for _ in 0..100_000 {
            let mut out = Vec::new();
            q.poll_transmit(now, &mut out, usize::MAX);
            sent.extend(out.into_iter().map(|t| (now.millis(), t)));
            if q.poll_timeout().is_none() {
                break;
            }
            now = now.plus_millis(step);
        }
        sent
    }

    #[test]
    fn the_window_goes_at_once_as_gso_runs_then_one_packet_per_interval() {
        let mut q = TxQueue::new(cfg());
        let p = packets(10, 1400, 700);
        q.send_packets(Time::ZERO, a(1), 0, p.clone()).unwrap();
        let mut out = Vec::new();
        q.poll_transmit(Time::ZERO, &mut out, usize::MAX);
        assert_eq!(out.len(), 1, "4 equal packets: one GSO send");
        assert_eq!((out[0].segment, out[0].count()), (1400, 4));
        assert_eq!(
            q.poll_timeout(),
            Some(Time::from_millis(4)),
            "4 packets' worth of time later"
        );
        let rest = drain(&mut q, Time::from_millis(1), 1);
        let times: Vec<u64> = rest.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, [4, 5, 6, 7, 8, 9]);
        // Every byte exactly once, in order.
        let mut all: Vec<u8> = out.iter().flat_map(|t| t.datagrams().concat()).collect();
        all.extend(rest.iter().flat_map(|(_, t)| t.datagrams().concat()));
        assert_eq!(all, p.bytes);
        assert_eq!(q.pending_bytes(), 0);
    }

    #[test]
    fn a_late_flush_catches_up_a_little_not_a_burst() {
        let mut q = TxQueue::new(cfg());
        q.send_packets(Time::ZERO, a(1), 0, packets(100, 1400, 1400))
            .unwrap();
        let mut out = Vec::new();
        q.poll_transmit(Time::ZERO, &mut out, usize::MAX);
        out.clear();
        // Due at 4 ms, flushed at 500 ms: 2 ms of catch-up (3 packets), not 496 packets.
        q.poll_transmit(Time::from_millis(500), &mut out, usize::MAX);
        let n: usize = out.iter().map(Transmit::count).sum();
        assert_eq!(n, 3);
    }

    #[test]
    fn clients_are_paced_independently_and_a_new_reply_supersedes() {
        let mut q = TxQueue::new(cfg());
        q.send_packets(Time::ZERO, a(1), 0, packets(1000, 1400, 1400))
            .unwrap();
        q.send_packets(Time::ZERO, a(2), 0, packets(6, 1400, 1400))
            .unwrap();
        let sent = drain(&mut q, Time::ZERO, 1);
        let done_2 = sent
            .iter()
            .filter(|(_, t)| t.to == a(2))
            .map(|(ms, _)| *ms)
            .max();
        assert_eq!(done_2, Some(5), "client 2's last two packets at 4 and 5 ms");
        let mut q = TxQueue::new(cfg());
        q.send_packets(Time::ZERO, a(1), 0, packets(50, 1400, 1400))
            .unwrap();
        q.send_packets(Time::ZERO, a(1), 0, packets(8, 1400, 1400))
            .unwrap();
        let sent = drain(&mut q, Time::ZERO, 1);
        let n: usize = sent.iter().map(|(_, t)| t.count()).sum();
        assert_eq!(
            n,
            4 + 8,
            "the first reply's window, then only the second reply"
        );
        assert_eq!(q.stats().superseded, 1);
        assert_eq!(q.pending_bytes(), 0);
    }

    #[test]
    fn the_queue_is_bounded_by_bytes_and_unsent_transmits_go_back_first() {
        let mut q = TxQueue::new(TxConfig {
            max_pending: 10_000,
            ..cfg()
        });
        assert!(
            q.send_packets(Time::ZERO, a(1), 0, packets(6, 1400, 1400))
                .is_ok()
        );
        assert_eq!(
            q.send_packets(Time::ZERO, a(2), 0, packets(6, 1400, 1400)),
            Err(Full),
            "8,400 + 8,400 bytes > 10,000"
        );
        assert_eq!(q.send(a(3), 0, Payload::small(b"hello").unwrap()), Ok(()));
        let mut out = Vec::new();
        q.poll_transmit(Time::ZERO, &mut out, usize::MAX);
        assert_eq!(out.len(), 2);
        let first = out.remove(0);
        q.unsent(out.into_iter());
        q.unsent(std::iter::once(first.clone()));
        let mut again = Vec::new();
        q.poll_transmit(Time::ZERO, &mut again, 1);
        assert_eq!(
            again,
            [first],
            "the socket's refusals go out first, in order"
        );
    }

    #[test]
    fn without_gso_every_datagram_is_its_own_transmit_and_small_payloads_are_inline() {
        let mut q = TxQueue::new(TxConfig {
            gso: false,
            ..cfg()
        });
        q.send_packets(Time::ZERO, a(1), 0, packets(3, 1400, 100))
            .unwrap();
        let mut out = Vec::new();
        q.poll_transmit(Time::ZERO, &mut out, usize::MAX);
        assert!(out.iter().all(|t| t.count() == 1));
        assert_eq!(out.len(), 3);
        assert_eq!(Payload::small(&[1; 40]), None);
        let mut q = TxQueue::new(cfg());
        q.send_packets(Time::ZERO, a(1), 0, packets(3, 1400, 100))
            .unwrap();
        let mut out = Vec::new();
        q.poll_transmit(Time::ZERO, &mut out, usize::MAX);
        let run = out.remove(0);
        let whole = run.datagrams();
        let split: Vec<Vec<u8>> = run.split().iter().flat_map(Transmit::datagrams).collect();
        assert_eq!(
            (whole.len(), split),
            (3, whole),
            "the run, cut into its datagrams"
        );
        let p = Payload::Page {
            entries: Arc::from(&[9u8; 12][..]),
            range: 6..12,
            last: true,
        };
        assert_eq!(p.len(), 6 + 6 + 6);
        assert_eq!(p.parts()[2], [0; 6]);
    }
}
