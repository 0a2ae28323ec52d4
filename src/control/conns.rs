//! Who holds a listener's connections, and who gives one up when they run out.
//!
//! Every accepted connection is registered with its source (an IPv4 address, or an IPv6 /64).
//! At a cap — [`HttpLimits::max_connections_per_source`](super::limits::HttpLimits) for the
//! source, [`HttpLimits::max_connections`](super::limits::HttpLimits) for the listener — the
//! newcomer is let in by evicting the oldest connection that is *idle* (no request being
//! answered: waiting for a head, or for the next request on a kept-alive connection); only when
//! every one of them is busy is the newcomer refused. So idle or half-sent connections, however
//! many and from however many sources, never lock anybody out: each new client pushes out the
//! stalest of them, and a request that arrived is always answered.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A source of connections: an IPv4 address, or the /64 of an IPv6 one (one host's worth).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    let mut p = [0u8; 8];
                    p.copy_from_slice(&o[..8]);
                    Source::V6(p)
                }
            },
        }
    }
}

/// What the registry counts (read by `/metrics`).
#[derive(Debug, Default)]
pub struct ConnCounters {
    pub accepted: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// New connections refused: every connection at the cap was busy.
    pub refused: AtomicU64,
    /// Connections closed by a timeout (head, idle, write).
    pub timed_out: AtomicU64,
    pub requests: AtomicU64,
    /// Requests refused for announcing a body.
    pub bodies_refused: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    source: Source,
    busy: Arc<AtomicBool>,
    evict: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// Every connection by id; ids grow, so the first is the oldest.
    conns: BTreeMap<u64, Entry>,
    /// Each source's connections, oldest first.
    by_source: HashMap<Source, VecDeque<u64>>,
}

/// One listener's connections.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    max_total: usize,
    max_per_source: usize,
    pub counters: Arc<ConnCounters>,
}

/// A registered connection: dropping it unregisters it.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    registry: Arc<Registry>,
    /// Set while a request is being answered (the connection cannot be evicted then).
    pub busy: Arc<AtomicBool>,
    /// Notified when the connection is evicted: its task then closes it.
    pub evicted: Arc<Notify>,
}

impl Conn {
    /// The listener's counters.
    pub fn counters(&self) -> Arc<ConnCounters> {
        self.registry.counters.clone()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.registry.remove(self.id);
        self.registry.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Registry {
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<Registry> {
        Arc::new(Registry {
            inner: Mutex::new(Inner::default()),
            max_total: max_total.max(1),
            max_per_source: max_per_source.max(1),
            counters: Arc::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain maps behind: still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection from `ip`, evicting the oldest idle one at a cap; `None` if it
    /// must be refused (every connection at the cap is busy).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Conn> {
        let source = Source::of(ip);
        let mut g = self.lock();
        let inner = &mut *g;
        let held = inner.by_source.get(&source).map_or(0, VecDeque::len);
        if held >= self.max_per_source {
            let oldest_idle = inner.by_source.get(&source).and_then(|ids| {
                ids.iter().copied().find(|id| {
                    inner
                        .conns
                        .get(id)
                        .is_some_and(|e| !e.busy.load(Ordering::Relaxed))
                })
            });
            match oldest_idle {
                Some(id) => self.evict(inner, id),
                None => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        if inner.conns.len() >= self.max_total {
            let oldest_idle = inner
                .conns
                .iter()
                .find(|(_, e)| !e.busy.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            match oldest_idle {
                Some(id) => self.evict(inner, id),
                None => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        let id = inner.next_id;
        inner.next_id = inner.next_id.wrapping_add(1);
        let busy = Arc::new(AtomicBool::new(false));
        let evicted = Arc::new(Notify::new());
        inner.conns.insert(
            id,
            Entry {
                source,
                busy: busy.clone(),
                evict: evicted.clone(),
            },
        );
        inner.by_source.entry(source).or_default().push_back(id);
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        Some(Conn {
            id,
            registry: self.clone(),
            busy,
            evicted,
        })
    }

    /// Unregisters `id` now (so it no longer counts) and tells its task to close it.
    fn evict(&self, inner: &mut Inner, id: u64) {
        if let Some(e) = Self::unregister(inner, id) {
            // `notify_one` keeps a permit if the task is not waiting yet: it closes on its next poll.
            e.evict.notify_one();
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn unregister(inner: &mut Inner, id: u64) -> Option<Entry> {
        let e = inner.conns.remove(&id)?;
        if let Some(ids) = inner.by_source.get_mut(&e.source) {
            ids.retain(|x| *x != id);
            if ids.is_empty() {
                inner.by_source.remove(&e.source);
            }
        }
        Some(e)
    }

    fn remove(&self, id: u64) {
        let mut g = self.lock();
        Self::unregister(&mut g, id);
    }

    /// Connections registered now.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sources holding connections now.
    pub fn sources(&self) -> usize {
        self.lock().by_source.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_addresses_and_v6_slash_64s() {
        assert_eq!(Source::of(ip("::ffff:1.2.3.4")), Source::of(ip("1.2.3.4")));
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn at_the_source_cap_the_oldest_idle_connection_of_that_source_goes() {
        let r = Registry::new(100, 2);
        let a = r.admit(ip("10.0.0.1")).unwrap();
        let b = r.admit(ip("10.0.0.1")).unwrap();
        let other = r.admit(ip("10.0.0.2")).unwrap();
        a.busy.store(true, Ordering::Relaxed);
        // a is busy, b is the oldest idle one of 10.0.0.1.
        let c = r.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.counters.evicted.load(Ordering::Relaxed), 1);
        // b was told to close (a permit is stored), a and the other source were not.
        futures_lite::future::block_on(b.evicted.notified());
        c.busy.store(true, Ordering::Relaxed);
        // Both of 10.0.0.1's connections busy: the next one from it is refused.
        assert!(r.admit(ip("10.0.0.1")).is_none());
        assert_eq!(r.counters.refused.load(Ordering::Relaxed), 1);
        drop((a, b, c, other));
        assert!(r.is_empty());
        assert_eq!(r.sources(), 0);
        assert_eq!(r.counters.open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn at_the_total_cap_the_oldest_idle_connection_of_any_source_goes() {
        let r = Registry::new(3, 10);
        let conns: Vec<Conn> = (1..=3)
            .map(|i| r.admit(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        conns[0].busy.store(true, Ordering::Relaxed);
        let d = r.admit(ip("10.0.0.9")).unwrap();
        assert_eq!(r.len(), 3);
        // The second (oldest idle) was evicted, not the busy first.
        futures_lite::future::block_on(conns[1].evicted.notified());
        for c in &conns {
            c.busy.store(true, Ordering::Relaxed);
        }
        d.busy.store(true, Ordering::Relaxed);
        assert!(r.admit(ip("10.0.0.10")).is_none(), "every one busy");
        // Thousands of idle newcomers churn through, never more than the cap held.
        d.busy.store(false, Ordering::Relaxed);
        let mut last = None;
        for i in 0..5000u32 {
            let a = std::net::Ipv4Addr::from(0x0B00_0000 + i);
            last = Some(r.admit(IpAddr::V4(a)).unwrap());
            assert!(r.len() <= 3);
        }
        drop(last);
        assert!(r.len() <= 3);
    }
}
