//! Per-client pacing of multi-packet replies: a burst at once, then a steady rate.
//!
//! Sans-IO: the core's sender asks what is due at `now` (nanoseconds on its own clock) and sends it.
//! Each client has its own schedule, so a long list to one client never delays another's.
//! A client that asks again while its previous reply is still going out gets the new reply in
//! place of the old (it restarted; finishing the old one only doubles its traffic).

use crate::master::list::Packets;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::ops::Range;
use std::sync::Arc;

/// Most packets sent to one client in one wake-up, however late the wake-up (a late timer must not
/// turn into a burst the client's socket buffer cannot hold).
pub const MAX_CATCH_UP: usize = 16;

#[derive(Debug)]
struct Flow {
    packets: Arc<Packets>,
    next: usize,
    due: u64,
    generation: u64,
}

/// The queue was full: only the burst goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

#[derive(Debug)]
pub struct Pacer<D> {
    burst: usize,
    interval_ns: u64,
    max_flows: usize,
    flows: HashMap<D, Flow>,
    heap: BinaryHeap<Reverse<(u64, u64, D)>>,
    generation: u64,
}

/// Packets `range` of `packets` are due for `dest`.
#[derive(Debug)]
pub struct Due<D> {
    pub dest: D,
    pub packets: Arc<Packets>,
    pub range: Range<usize>,
}

impl<D: Copy + Eq + Hash + Ord> Pacer<D> {
    /// `burst` packets at once, then `rate` packets per second per client; at most `max_flows`
    /// clients in flight.
    pub fn new(burst: u32, rate: u32, max_flows: usize) -> Self {
        Self {
            burst: (burst as usize).max(1),
            interval_ns: 1_000_000_000 / u64::from(rate.max(1)),
            max_flows: max_flows.max(1),
            flows: HashMap::new(),
            heap: BinaryHeap::new(),
            generation: 0,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.flows.len()
    }

    /// A new reply for `dest`: returns how many packets (from the first) to send now; the rest is
    /// scheduled. `Err(Full)` means the rest could not be scheduled (only the burst may be sent).
    pub fn start(&mut self, now: u64, dest: D, packets: Arc<Packets>) -> Result<usize, Full> {
        let total = packets.ends.len();
        let now_count = total.min(self.burst);
        if now_count == total {
            // Fits in a burst; a previous reply still pacing to this client is superseded.
            self.flows.remove(&dest);
            return Ok(total);
        }
        if self.requeue(now, dest, packets, now_count) {
            Ok(now_count)
        } else {
            Err(Full)
        }
    }

    /// Schedules `packets[from..]` for `dest` one interval from `now` (also how a caller hands back
    /// what the socket would not take). Returns `false` if the queue is full.
    pub fn requeue(&mut self, now: u64, dest: D, packets: Arc<Packets>, from: usize) -> bool {
        if from >= packets.ends.len() {
            self.flows.remove(&dest);
            return true;
        }
        if !self.flows.contains_key(&dest) && self.flows.len() >= self.max_flows {
            return false;
        }
        self.generation += 1;
        let due = now.saturating_add(self.interval_ns);
        self.flows.insert(
            dest,
            Flow {
                packets,
                next: from,
                due,
                generation: self.generation,
            },
        );
        self.heap.push(Reverse((due, self.generation, dest)));
        self.compact();
        true
    }

    /// When the next packet is due, if any.
    pub fn next_due(&mut self) -> Option<u64> {
        self.skip_stale();
        self.heap.peek().map(|Reverse((due, _, _))| *due)
    }

    /// The next client with packets due at `now`, and which; its schedule moves on as if they were
    /// sent (call [`Pacer::requeue`] with what was not).
    pub fn poll(&mut self, now: u64) -> Option<Due<D>> {
        self.skip_stale();
        let Reverse((due, _, dest)) = *self.heap.peek()?;
        if due > now {
            return None;
        }
        self.heap.pop();
        let flow = self.flows.get_mut(&dest)?;
        let late = ((now - due) / self.interval_ns) as usize;
        let remaining = flow.packets.ends.len() - flow.next;
        let count = (1 + late).min(MAX_CATCH_UP).min(remaining);
        let range = flow.next..flow.next + count;
        let packets = flow.packets.clone();
        if count == remaining {
            self.flows.remove(&dest);
        } else {
            flow.next += count;
            // From the intended time, not `now`: a slightly late wake-up does not slow the rate.
            flow.due = due.saturating_add(self.interval_ns * count as u64).max(now);
            self.heap.push(Reverse((flow.due, flow.generation, dest)));
        }
        Some(Due {
            dest,
            packets,
            range,
        })
    }

    fn skip_stale(&mut self) {
        while let Some(Reverse((due, generation, dest))) = self.heap.peek() {
            match self.flows.get(dest) {
                Some(f) if f.generation == *generation && f.due == *due => return,
                _ => {
                    self.heap.pop();
                }
            }
        }
    }

    /// Superseded entries linger in the heap until they come due; rebuild when they dominate.
    fn compact(&mut self) {
        if self.heap.len() > 2 * self.flows.len() + 64 {
            self.heap = self
                .flows
                .iter()
                .map(|(d, f)| Reverse((f.due, f.generation, *d)))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(n: usize) -> Arc<Packets> {
        Arc::new(Packets {
            bytes: vec![0; n],
            ends: (1..=n).collect(),
        })
    }

    const MS: u64 = 1_000_000;

    /// Everything the pacer sends to each destination, by polling every `step` until done.
    fn drain(p: &mut Pacer<u8>, mut now: u64, step: u64) -> Vec<(u64, u8, Range<usize>)> {
        let mut sent = Vec::new();
        for _ in 0..100_000 {
            while let Some(d) = p.poll(now) {
                sent.push((now, d.dest, d.range));
            }
            if p.next_due().is_none() {
                break;
            }
            now += step;
        }
        sent
    }

    #[test]
    fn burst_then_rate_and_every_packet_exactly_once() {
        // 4 packets at once, then 1000/s: one per millisecond.
        let mut p = Pacer::new(4, 1000, 8);
        assert_eq!(p.start(0, 1u8, packets(10)), Ok(4));
        assert_eq!(p.next_due(), Some(MS));
        assert!(
            p.poll(MS - 1).is_none(),
            "nothing before the first interval"
        );
        let sent = drain(&mut p, MS, MS);
        let times: Vec<_> = sent.iter().map(|s| s.0 / MS).collect();
        assert_eq!(times, [1, 2, 3, 4, 5, 6]);
        let mut covered: Vec<usize> = sent.iter().flat_map(|s| s.2.clone()).collect();
        covered.sort();
        assert_eq!(covered, (4..10).collect::<Vec<_>>());
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn a_late_wakeup_catches_up_but_at_most_max_catch_up() {
        let mut p = Pacer::new(1, 1000, 8);
        p.start(0, 1u8, packets(100)).unwrap();
        let d = p.poll(5 * MS).unwrap();
        assert_eq!(
            d.range,
            1..6,
            "due at 1 ms, woken at 5 ms: five intervals' worth"
        );
        let d = p.poll(500 * MS).unwrap();
        assert_eq!(d.range.len(), MAX_CATCH_UP);
    }

    #[test]
    fn clients_are_paced_independently() {
        let mut p = Pacer::new(2, 1000, 8);
        p.start(0, 1u8, packets(1000)).unwrap();
        p.start(0, 2u8, packets(4)).unwrap();
        // Client 2's two paced packets finish at 2 ms though client 1 has ~1000 to go.
        let mut done_2 = None;
        let mut now = 0;
        while done_2.is_none() && now < 10 * MS {
            now += MS;
            while let Some(d) = p.poll(now) {
                if d.dest == 2 && d.range.end == 4 {
                    done_2 = Some(now);
                }
            }
        }
        assert_eq!(done_2, Some(2 * MS));
        assert_eq!(p.in_flight(), 1);
    }

    #[test]
    fn small_replies_are_not_queued_and_a_new_reply_supersedes_the_old() {
        let mut p = Pacer::new(8, 1000, 8);
        assert_eq!(p.start(0, 1u8, packets(8)), Ok(8));
        assert_eq!(p.in_flight(), 0);
        p.start(0, 1u8, packets(20)).unwrap();
        p.start(MS / 2, 1u8, packets(30)).unwrap();
        assert_eq!(p.in_flight(), 1);
        let sent = drain(&mut p, 0, MS / 4);
        let total: usize = sent.iter().map(|s| s.2.len()).sum();
        assert_eq!(total, 22, "only the second reply's 30 − 8 paced packets");
        assert!(sent.iter().all(|s| s.2.end <= 30));
    }

    #[test]
    fn the_queue_is_bounded_and_requeue_resumes_where_the_socket_stopped() {
        let mut p = Pacer::new(1, 1000, 2);
        p.start(0, 1u8, packets(5)).unwrap();
        p.start(0, 2u8, packets(5)).unwrap();
        assert_eq!(p.start(0, 3u8, packets(5)), Err(Full));
        assert_eq!(p.in_flight(), 2);
        // Destination 1's socket took none of packets 1..: resume there.
        let d = p.poll(MS).unwrap();
        assert!(p.requeue(MS, d.dest, d.packets, d.range.start));
        let sent = drain(&mut p, MS, MS);
        let to_dest: usize = sent
            .iter()
            .filter(|s| s.1 == d.dest)
            .map(|s| s.2.len())
            .sum();
        assert_eq!(to_dest, 4);
    }

    #[test]
    fn superseded_entries_do_not_grow_the_heap_without_bound() {
        let mut p = Pacer::new(1, 10, 4);
        for i in 0..10_000u64 {
            p.start(i, 1u8, packets(3)).unwrap();
        }
        assert!(p.heap.len() <= 2 * p.flows.len() + 65, "{}", p.heap.len());
    }
}
