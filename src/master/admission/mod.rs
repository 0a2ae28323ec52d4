//! Admission control: who gets how many replies, how many bytes of them, and how much work.
//!
//! A reply to an address that has not shown it receives our packets spends a budget: a list query
//! is ~30 bytes and its answer up to megabytes, and the source address of a UDP datagram is free to
//! forge. A master that answers forged queries freely is a reflector for DDoS. The attacker this is
//! built against has read this code: it spoofs from thousands of /24s, below every per-source rate,
//! spoofs the addresses of listed game servers, guesses proofs, and asks for the filters that cost
//! most.
//!
//! | budget | kept per | for |
//! |---|---|---|
//! | queries, reply bytes, scan work | source (IPv4 address, IPv6 /64) | every source; limits by class |
//! | queries, reply bytes, scan work | network (IPv4 /24, IPv6 /48) | unvalidated sources together; validated ones together (limits of their own) |
//! | reply bytes | the whole master, every core together ([`Unproven`]) | every DarkPlaces and Xash3D reply to a source not on a trusted network |
//! | scan work | core | every source not on a trusted network (unvalidated ones only while it is above half) |
//! | queries, reply bytes, scan work | trusted network (as configured), per core | sources on it together |
//! | challenges | source, and core | `q` / DP heartbeats |
//!
//! Classes, from most to least believed:
//! - **trusted**: an operator-listed network (a server-list website). Large but finite budgets,
//!   and no proof asked for: anyone who forges an address on it draws on them (README).
//! - **validated**: the source proved, within `validation_ms`, that it receives our packets — it
//!   continued a Valve walk from the exact last entry of the first page we sent it ([`Step`]).
//!   Hosting a listed game server proves nothing about queries (game servers are what DDoS attacks
//!   aim at), nor does completing a registration.
//! - **unvalidated**: everyone else — enough for a person's server browser, not for a crawler.
//!
//! **Valve: the QUIC rule.** Until a walk is proven, each page holds only what fits in 3× the bytes
//! of the query that asked for it (header and 6-byte entries: 5 entries for a bare 13-byte query).
//! A walk starts at a random match of its filter, chosen by the master, and wraps round the list, so
//! the entry that ends its first page is one of M (the filter's matches), never predictable from
//! the list alone; a continuation seeded with exactly that entry proves the walk, and its later
//! pages are full. Proof is per walk (source, region and filter), not per source: a spoofer who
//! picks a filter with 7 matches guesses right one time in 7, and wins 7 entries. A continuation
//! that is not the walk's last page end proves nothing and bars the source from proving any walk
//! for `validation_ms`: one guess per window.
//!
//! **DarkPlaces and Xash3D** have no round trip. Every reply to a source off the trusted networks
//! is charged to [`Unproven`], one budget for the whole master. When a flood saturates it, a source
//! that queried in the hour before ([`known`]) or proved a Valve walk is served before new
//! sources, and new sources share what is left fairly per /24.
//!
//! A query refused for its source's rate costs the source a fine in reply bytes (at most one burst
//! of debt), so a source that keeps querying faster than allowed never earns replies back, while
//! one that asks at a human pace is never fined. Replies are charged in full, however large.
//!
//! State is bounded: [`BoundedMap`]s of `max_sources` and `max_prefixes` entries. What is evicted
//! first is what is worth least (an idle entry, then the least recently seen); a validated, barred
//! or indebted entry is never evicted — when only those are left, a new source is refused
//! (`admission_full`) rather than handed a fresh budget.
//!
//! | module | job |
//! |---|---|
//! | [`bucket`] | token buckets with debt: the budgets |
//! | [`bounded`] | a fixed-capacity map from source address to state, evicting what is worth least (never what is protected) |
//! | [`unproven`] | the master-wide budget for DarkPlaces / Xash3D replies to unproven addresses, shared by every core |
//! | [`known`] | the sources a core answered before a flood |
//! | [`refused`] | the sources refused most, per core: space-saving heavy hitters |

pub mod bounded;
pub mod bucket;
pub mod known;
pub mod refused;
pub mod unproven;

use crate::master::admission::bounded::BoundedMap;
use crate::master::admission::bucket::{Bucket, Rate};
use crate::master::admission::known::{KNOWN_FOR_MS, Known};
use crate::master::admission::unproven::{SHARE_WINDOW_MS, Tier, Unproven};
use crate::master::counters::DropReason;
use crate::master::policy::IpKey;
use crate::master::time::Time;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// One query, in the units of the query buckets (milli-queries: rates below one per second).
pub const QUERY: u64 = 1000;
/// Valve walks remembered per source (a browser may walk two filters at once).
pub const WALKS_PER_SOURCE: usize = 2;
/// Page ends remembered per walk: the last page and the one before (a client that lost a page
/// asks again with the seed before it).
pub const WALK_ENDS: usize = 2;
/// How long the master-wide budget counts as saturated after it last refused a new source.
pub const SATURATION_HOLD_MS: u64 = 10_000;
/// Units of scan work (~0.5 ms) a query may take and still run when the core's scan budget is
/// spent (an index answers such a query: a fresh client's, never the flood's unindexed filters).
/// Still charged.
pub const SMALL_SCAN: usize = 4096;
/// What a reply may be, in bytes, per byte of the query that asked for it, before proof (QUIC's
/// anti-amplification limit, RFC 9000 §8.1).
pub const UNPROVEN_FACTOR: usize = 3;

/// The limits of one class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassLimits {
    /// In milli-queries ([`QUERY`] per query).
    pub queries: Rate,
    /// In bytes of reply.
    pub bytes: Rate,
    /// In candidates examined by filtered queries.
    pub scan: Rate,
}

impl ClassLimits {
    pub const UNLIMITED: ClassLimits = ClassLimits {
        queries: Rate::UNLIMITED,
        bytes: Rate::UNLIMITED,
        scan: Rate::UNLIMITED,
    };
}

/// Every admission setting (`[admission]` in the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Sources tracked per core.
    pub max_sources: usize,
    /// Networks (/24, /48) tracked per core.
    pub max_prefixes: usize,
    pub unvalidated: ClassLimits,
    pub validated: ClassLimits,
    /// Per trusted network (as configured), per core.
    pub trusted_limits: ClassLimits,
    /// Per network, for its unvalidated sources together.
    pub network: ClassLimits,
    /// Per network, for its validated sources together.
    pub validated_network: ClassLimits,
    /// Reply bytes to unproven addresses (DarkPlaces, Xash3D), the whole master together.
    pub unproven: Rate,
    /// Candidates examined per core (unvalidated sources only while above half the burst).
    pub core_scan: Rate,
    /// Challenge replies per source (milli-challenges) and per core.
    pub source_challenges: Rate,
    pub core_challenges: Rate,
    /// Reply bytes a source is fined for a query refused at its own rate.
    pub fine_bytes: u32,
    /// How long a proof keeps a source validated, and a wrong guess bars it.
    pub validation_ms: u64,
    /// Networks with the trusted budgets.
    pub trusted: Vec<ipnet::IpNet>,
}

const KIB: u32 = 1024;
const MIB: u32 = 1024 * 1024;

/// A rate in queries: `burst` at once, then `per_min` a minute.
const fn queries(burst: u32, per_min: u32) -> Rate {
    Rate {
        burst: burst.saturating_mul(QUERY as u32),
        per_sec: per_min.saturating_mul(QUERY as u32) / 60,
    }
}

const fn rate(burst: u32, per_sec: u32) -> Rate {
    Rate { burst, per_sec }
}

/// The defaults, and why (README, "Admission control"). Scan work is in units of
/// [`scan_weight`](crate::master::list::matcher::scan_weight): one unit ≈ one cheap candidate, ~130 ns.
/// - unvalidated source: 10 queries at once, then 20 a minute (Valve's retired master allowed
///   about 30 pages a minute); 256 KiB of replies at once (a 10,000-server DP list is ~70 KB), then
///   4 KiB/s; 200k units at once (three of the costliest queries), then 20k a second;
/// - validated source (a browser paging a big list, refreshing a few times a minute): 64 queries
///   at once, then 10 a second; 4 MiB, then 128 KiB/s; 1M units, then 200k a second;
/// - a network's unvalidated sources: 64 queries, 2 a second; 1 MiB, then 32 KiB/s; 400k units,
///   40k a second; its validated sources: 512 queries, 20 a second; 8 MiB, then 256 KiB/s; 2M
///   units, 400k a second;
/// - a trusted network, per core: 2,000 queries, 1,000 a second; 256 MiB, then 64 MiB/s;
///   64M units, 32M a second;
/// - the whole master to unproven addresses: 1 MiB at once, then 1 MiB/s;
/// - scan work per core: 2M units at once, then 1M a second (~13% of a core at ~130 ns a unit;
///   unvalidated sources only while more than half is left);
/// - challenges: 64 per source at once (32 servers per address, each may retry), 2 a second;
///   100,000 per core at once, 50,000 a second;
/// - a refused query is fined 4 KiB (a second of an unvalidated source's refill);
/// - a proof lasts 15 minutes, as a registration does; so does a bar.
impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_sources: 65_536,
            max_prefixes: 16_384,
            unvalidated: ClassLimits {
                queries: queries(10, 20),
                bytes: rate(256 * KIB, 4 * KIB),
                scan: rate(200_000, 20_000),
            },
            validated: ClassLimits {
                queries: queries(64, 600),
                bytes: rate(4 * MIB, 128 * KIB),
                scan: rate(1_000_000, 200_000),
            },
            trusted_limits: ClassLimits {
                queries: queries(2_000, 60_000),
                bytes: rate(256 * MIB, 64 * MIB),
                scan: rate(64_000_000, 32_000_000),
            },
            network: ClassLimits {
                queries: queries(64, 120),
                bytes: rate(MIB, 32 * KIB),
                scan: rate(400_000, 40_000),
            },
            validated_network: ClassLimits {
                queries: queries(512, 1_200),
                bytes: rate(8 * MIB, 256 * KIB),
                scan: rate(2_000_000, 400_000),
            },
            unproven: rate(MIB, MIB),
            core_scan: rate(2_000_000, 1_000_000),
            source_challenges: queries(64, 120),
            core_challenges: queries(100_000, 3_000_000),
            fine_bytes: 4 * KIB,
            validation_ms: 15 * 60 * 1000,
            trusted: Vec::new(),
        }
    }
}

impl AdmissionConfig {
    /// No limits at all (tests of other things; a master on a closed network).
    pub fn unlimited() -> Self {
        Self {
            unvalidated: ClassLimits::UNLIMITED,
            validated: ClassLimits::UNLIMITED,
            trusted_limits: ClassLimits::UNLIMITED,
            network: ClassLimits::UNLIMITED,
            validated_network: ClassLimits::UNLIMITED,
            unproven: Rate::UNLIMITED,
            core_scan: Rate::UNLIMITED,
            source_challenges: Rate::UNLIMITED,
            core_challenges: Rate::UNLIMITED,
            ..Self::default()
        }
    }
}

/// How much a source is believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Trusted,
    Validated,
    Unvalidated,
}

/// A query that may be answered; what its answer costs is charged against the same budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub class: Class,
    key: IpKey,
    net: IpKey,
    /// Which trusted network (index into the config's list), if trusted.
    trust: usize,
}

/// How to answer a Valve query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Address order from the seed, full pages (trusted sources).
    Plain,
    /// Pages of the walk that started at `start` (pages after the seed, wrapping round to just
    /// before `start`); full pages once the walk is proven, else at most 3× the query's bytes.
    Walk { start: [u8; 6], full: bool },
    /// A first page with no walk yet for this filter: the caller picks the start
    /// ([`Admission::begin_walk`]) and sends an unproven page.
    NeedStart,
}

/// A Valve walk in progress: one per (source, region and filter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Walk {
    /// Keyed hash of the region and filter (0: the slot is free).
    filter: u32,
    start: [u8; 6],
    /// The last entries of the last pages sent, newest first (all zero: none; `0.0.0.0:0` is
    /// never a listed server).
    ends: [[u8; 6]; WALK_ENDS],
    proven: bool,
    /// Seconds; which walk to forget first.
    used: u32,
}

#[derive(Clone, Copy, Debug)]
struct Source {
    queries: Bucket,
    bytes: Bucket,
    scan: Bucket,
    challenges: Bucket,
    /// Seconds on the master's clock until which the source is validated (0: never).
    validated_until: u32,
    /// Seconds until which no continuation proves a walk of this source (a wrong one was seen).
    barred_until: u32,
    /// Fined since its reply budget was last full: forgetting it would forgive the fines.
    fined: bool,
    walks: [Walk; WALKS_PER_SOURCE],
    /// Last seen, seconds (which entry to forget first).
    seen: u32,
}

#[derive(Clone, Copy, Debug)]
struct Network {
    queries: Bucket,
    bytes: Bucket,
    scan: Bucket,
    validated_queries: Bucket,
    validated_bytes: Bucket,
    /// The share window this network last asked for an unproven reply in, and the bytes its new
    /// sources drew in it.
    window: u32,
    spent: u64,
}

/// A trusted network's budgets on this core.
#[derive(Clone, Copy, Debug)]
struct Trust {
    queries: Bucket,
    bytes: Bucket,
    scan: Bucket,
}

/// Counts of what admission did (refusals are the shard's drop counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Valve walks begun (first pages to sources off the trusted networks).
    pub walks: u64,
    /// Walks proven by a continuation from the exact end of their first page.
    pub proofs: u64,
    /// Continuations that were no page end we sent: the source was barred from proving.
    pub wrong_continuations: u64,
    /// Bytes admitted to unproven addresses by this core (DarkPlaces, Xash3D).
    pub unproven_bytes: u64,
}

/// One core's admission state.
#[derive(Debug)]
pub struct Admission {
    cfg: AdmissionConfig,
    sources: BoundedMap<Source>,
    networks: BoundedMap<Network>,
    trusts: Vec<Trust>,
    core_scan: Bucket,
    core_challenges: Bucket,
    unproven: Arc<Unproven>,
    /// This core's index into `unproven`'s per-core counts.
    core: usize,
    known: Known,
    /// When the master-wide budget began refusing new sources (as this core saw it), and when it
    /// last did.
    saturated_since: Option<Time>,
    last_refusal: Time,
    /// The share window being counted, and the networks counted in it and in the one before.
    window: u32,
    active: u32,
    active_before: u32,
    stats: AdmissionStats,
}

fn secs(now: Time) -> u32 {
    u32::try_from(now.millis() / 1000).unwrap_or(u32::MAX)
}

fn share_window(now: Time) -> u32 {
    u32::try_from(now.millis() / SHARE_WINDOW_MS).unwrap_or(u32::MAX)
}

const NO_END: [u8; 6] = [0; 6];

impl Admission {
    /// A core's admission, alone (its own master-wide budget: tests, one core).
    pub fn new(now: Time, cfg: AdmissionConfig) -> Self {
        Self::shared(now, cfg, Unproven::new(1), 0)
    }

    /// Core `core`'s admission, drawing on the master-wide `unproven` budget every core shares.
    pub fn shared(now: Time, cfg: AdmissionConfig, unproven: Arc<Unproven>, core: usize) -> Self {
        let trust = cfg.trusted_limits;
        Self {
            sources: BoundedMap::new(cfg.max_sources),
            networks: BoundedMap::new(cfg.max_prefixes),
            trusts: cfg
                .trusted
                .iter()
                .map(|_| Trust {
                    queries: Bucket::full(trust.queries, now),
                    bytes: Bucket::full(trust.bytes, now),
                    scan: Bucket::full(trust.scan, now),
                })
                .collect(),
            core_scan: Bucket::full(cfg.core_scan, now),
            core_challenges: Bucket::full(cfg.core_challenges, now),
            unproven,
            core,
            known: Known::new(now),
            saturated_since: None,
            last_refusal: now,
            window: share_window(now),
            active: 0,
            active_before: 0,
            stats: AdmissionStats::default(),
            cfg,
        }
    }

    pub fn config(&self) -> &AdmissionConfig {
        &self.cfg
    }

    pub fn stats(&self) -> AdmissionStats {
        self.stats
    }

    /// The master-wide budget this core draws on.
    pub fn unproven(&self) -> &Arc<Unproven> {
        &self.unproven
    }

    /// Sources and networks tracked now.
    pub fn tracked(&self) -> (usize, usize) {
        (self.sources.len(), self.networks.len())
    }

    /// New sources and networks refused because every entry that could have made room was
    /// protected (validated, barred or in debt).
    pub fn refused_full(&self) -> u64 {
        self.sources.refused().wrapping_add(self.networks.refused())
    }

    /// Heap bytes held: constant (the tables reserve their whole capacity at creation).
    pub fn heap_bytes(&self) -> usize {
        self.sources
            .heap_bytes()
            .saturating_add(self.networks.heap_bytes())
            .saturating_add(self.known.heap_bytes())
    }

    /// Whether the master-wide budget is saturated (it refused a new source lately).
    pub fn saturated(&mut self, now: Time) -> bool {
        match self.saturated_since {
            Some(_) if now.since(self.last_refusal) < SATURATION_HOLD_MS => true,
            Some(_) => {
                self.saturated_since = None;
                false
            }
            None => false,
        }
    }

    fn trust_of(&self, ip: IpAddr) -> Option<usize> {
        self.cfg.trusted.iter().position(|n| n.contains(&ip))
    }

    fn source(&mut self, now: Time, key: IpKey) -> Option<&mut Source> {
        let cfg = &self.cfg;
        let fresh = Source {
            queries: Bucket::full(cfg.unvalidated.queries, now),
            bytes: Bucket::full(cfg.unvalidated.bytes, now),
            scan: Bucket::full(cfg.unvalidated.scan, now),
            challenges: Bucket::full(cfg.source_challenges, now),
            validated_until: 0,
            barred_until: 0,
            fined: false,
            walks: [Walk::default(); WALKS_PER_SOURCE],
            seen: secs(now),
        };
        let (limits, challenges, t) = (cfg.unvalidated, cfg.source_challenges, secs(now));
        let s = self.sources.entry(
            key,
            || fresh,
            |s| {
                // Never forgotten: a validated source (its proof), a barred one (a guesser would
                // get another try), a fined or indebted one (a fresh entry would forgive it).
                if s.fined && s.bytes.is_full(limits.bytes, now) {
                    s.fined = false;
                }
                if s.validated_until > t
                    || s.barred_until > t
                    || s.fined
                    || s.bytes.in_debt(limits.bytes, now)
                    || s.scan.in_debt(limits.scan, now)
                {
                    return None;
                }
                // Worth nothing: full buckets and no walk in progress.
                let idle = s.queries.is_full(limits.queries, now)
                    && s.bytes.is_full(limits.bytes, now)
                    && s.scan.is_full(limits.scan, now)
                    && s.challenges.is_full(challenges, now)
                    && s.walks.iter().all(|w| w.filter == 0);
                Some(if idle { 0 } else { u64::from(s.seen) + 1 })
            },
        )?;
        s.seen = secs(now);
        Some(s)
    }

    fn network(&mut self, now: Time, key: IpKey) -> Option<&mut Network> {
        let (n, v) = (self.cfg.network, self.cfg.validated_network);
        self.networks.entry(
            key,
            || Network {
                queries: Bucket::full(n.queries, now),
                bytes: Bucket::full(n.bytes, now),
                scan: Bucket::full(n.scan, now),
                validated_queries: Bucket::full(v.queries, now),
                validated_bytes: Bucket::full(v.bytes, now),
                window: 0,
                spent: 0,
            },
            |e| {
                if e.bytes.in_debt(n.bytes, now)
                    || e.validated_bytes.in_debt(v.bytes, now)
                    || e.scan.in_debt(n.scan, now)
                {
                    return None;
                }
                let idle = e.queries.is_full(n.queries, now)
                    && e.bytes.is_full(n.bytes, now)
                    && e.scan.is_full(n.scan, now)
                    && e.validated_queries.is_full(v.queries, now)
                    && e.validated_bytes.is_full(v.bytes, now);
                Some(u64::from(!idle))
            },
        )
    }

    fn limits(&self, class: Class) -> ClassLimits {
        match class {
            Class::Trusted => self.cfg.trusted_limits,
            Class::Validated => self.cfg.validated,
            Class::Unvalidated => self.cfg.unvalidated,
        }
    }

    /// Decides whether a list query from `from` may be answered at all: its source's and network's
    /// query rates, and whether their reply budgets are above zero. What the reply costs is charged
    /// later ([`charge`](Self::charge), and for DarkPlaces / Xash3D
    /// [`admit_unproven`](Self::admit_unproven)).
    pub fn admit_query(&mut self, now: Time, from: SocketAddr) -> Result<Grant, DropReason> {
        let ip = from.ip();
        let (key, net) = (IpKey::new(ip), IpKey::prefix(ip));
        if let Some(i) = self.trust_of(ip) {
            let l = self.cfg.trusted_limits;
            let t = self.trusts.get_mut(i).ok_or(DropReason::SourceQueries)?;
            if !t.queries.has(l.queries, now, QUERY) {
                return Err(DropReason::SourceQueries);
            }
            if !t.bytes.allows(l.bytes, now) {
                return Err(DropReason::SourceBytes);
            }
            t.queries.take(l.queries, now, QUERY);
            return Ok(Grant {
                class: Class::Trusted,
                key,
                net,
                trust: i,
            });
        }
        let (validated, unvalidated, fine) = (
            self.cfg.validated,
            self.cfg.unvalidated,
            self.cfg.fine_bytes,
        );
        let s = self.source(now, key).ok_or(DropReason::AdmissionFull)?;
        let class = if s.validated_until > secs(now) {
            Class::Validated
        } else {
            Class::Unvalidated
        };
        let limits = if class == Class::Validated {
            validated
        } else {
            unvalidated
        };
        if !s.queries.has(limits.queries, now, QUERY) {
            s.bytes.fine(limits.bytes, now, u64::from(fine));
            s.fined = true;
            return Err(DropReason::SourceQueries);
        }
        if !s.bytes.allows(limits.bytes, now) {
            s.bytes.fine(limits.bytes, now, u64::from(fine));
            s.fined = true;
            return Err(DropReason::SourceBytes);
        }
        s.queries.take(limits.queries, now, QUERY);
        let (n_limits, v_limits) = (self.cfg.network, self.cfg.validated_network);
        let n = self.network(now, net).ok_or(DropReason::AdmissionFull)?;
        let (queries, bytes, q_rate, b_rate) = match class {
            Class::Validated => (
                &mut n.validated_queries,
                &mut n.validated_bytes,
                v_limits.queries,
                v_limits.bytes,
            ),
            _ => (
                &mut n.queries,
                &mut n.bytes,
                n_limits.queries,
                n_limits.bytes,
            ),
        };
        if !queries.has(q_rate, now, QUERY) {
            return Err(DropReason::NetworkQueries);
        }
        if !bytes.allows(b_rate, now) {
            return Err(DropReason::NetworkBytes);
        }
        queries.take(q_rate, now, QUERY);
        Ok(Grant {
            class,
            key,
            net,
            trust: 0,
        })
    }

    /// Takes the bytes of an admitted reply from its source's and network's budgets (in full).
    pub fn charge(&mut self, now: Time, grant: Grant, bytes: usize) {
        let cost = bytes as u64;
        let limits = self.limits(grant.class);
        match grant.class {
            Class::Trusted => {
                if let Some(t) = self.trusts.get_mut(grant.trust) {
                    t.bytes.take(limits.bytes, now, cost);
                }
            }
            class => {
                // Who was there before a flood: a source answered while there is none (a flood's
                // sources must not make themselves known); a known source's stamp is refreshed
                // whenever it is answered.
                let saturated = self.saturated(now);
                self.known.note(now, grant.key, !saturated);
                if let Some(s) = self.sources.get_mut(&grant.key) {
                    s.bytes.take(limits.bytes, now, cost);
                }
                let (n_rate, v_rate) = (self.cfg.network.bytes, self.cfg.validated_network.bytes);
                if let Some(n) = self.networks.get_mut(&grant.net) {
                    if class == Class::Validated {
                        n.validated_bytes.take(v_rate, now, cost);
                    } else {
                        n.bytes.take(n_rate, now, cost);
                    }
                }
            }
        }
    }

    /// Whether a scan (a filtered Valve page, a walk's start, a Xash3D burst) that may examine
    /// up to `estimate` candidates may run now: the source's and network's scan budgets are above
    /// zero, and — for a scan larger than [`SMALL_SCAN`] — the core's is too, above half its burst
    /// for an unvalidated source. A flood of expensive filters thus leaves the rest of the core
    /// to validated sources and, above all, to registrations, while a fresh client's cheap query
    /// (an index answers it) still runs.
    pub fn admit_scan(
        &mut self,
        now: Time,
        grant: Grant,
        estimate: usize,
    ) -> Result<(), DropReason> {
        let limits = self.limits(grant.class);
        if grant.class == Class::Trusted {
            let t = self.trusts.get_mut(grant.trust).ok_or(DropReason::Scan)?;
            return if t.scan.allows(limits.scan, now) {
                Ok(())
            } else {
                Err(DropReason::Scan)
            };
        }
        let core = self.cfg.core_scan;
        let floor = if grant.class == Class::Unvalidated {
            i32::try_from(core.burst / 2).unwrap_or(i32::MAX)
        } else {
            0
        };
        if estimate > SMALL_SCAN && !core.is_unlimited() && self.core_scan.level(core, now) <= floor
        {
            return Err(DropReason::Scan);
        }
        let n_rate = self.cfg.network.scan;
        let source_ok = self
            .sources
            .get_mut(&grant.key)
            .is_some_and(|s| s.scan.allows(limits.scan, now));
        let network_ok = self
            .networks
            .get_mut(&grant.net)
            .is_some_and(|n| n.scan.allows(n_rate, now));
        if source_ok && network_ok {
            Ok(())
        } else {
            Err(DropReason::Scan)
        }
    }

    /// Takes `examined` candidates from the budgets [`admit_scan`](Self::admit_scan) checked.
    pub fn charge_scan(&mut self, now: Time, grant: Grant, examined: usize) {
        if examined == 0 {
            return;
        }
        let cost = examined as u64;
        let limits = self.limits(grant.class);
        if grant.class == Class::Trusted {
            if let Some(t) = self.trusts.get_mut(grant.trust) {
                t.scan.take(limits.scan, now, cost);
            }
            return;
        }
        self.core_scan.take(self.cfg.core_scan, now, cost);
        if let Some(s) = self.sources.get_mut(&grant.key) {
            s.scan.take(limits.scan, now, cost);
        }
        let n_rate = self.cfg.network.scan;
        if let Some(n) = self.networks.get_mut(&grant.net) {
            n.scan.take(n_rate, now, cost);
        }
    }

    /// Which tier of the master-wide budget a source draws from: known if it proved a walk, or
    /// was answered in the hour before the budget saturated.
    fn tier(&self, now: Time, grant: Grant) -> Tier {
        let since = self
            .saturated_since
            .unwrap_or(now)
            .millis()
            .saturating_sub(KNOWN_FOR_MS);
        if grant.class == Class::Validated
            || self.known.seen_since(grant.key, Time::from_millis(since))
        {
            Tier::Known
        } else {
            Tier::New
        }
    }

    /// Whether the master-wide budget would admit a reply to this source now (nothing charged):
    /// checked before building a reply whose size is known only once built (a Xash3D burst).
    pub fn unproven_open(&self, now: Time, grant: Grant) -> Result<(), DropReason> {
        if grant.class == Class::Trusted
            || self
                .unproven
                .allows(self.cfg.unproven, now, self.tier(now, grant))
        {
            Ok(())
        } else {
            Err(DropReason::UnprovenBytes)
        }
    }

    /// Admits a DarkPlaces or Xash3D reply of `bytes` against the master-wide budget for unproven
    /// addresses (trusted sources are not charged to it) and charges it there in full.
    pub fn admit_unproven(
        &mut self,
        now: Time,
        grant: Grant,
        bytes: usize,
    ) -> Result<(), DropReason> {
        if grant.class == Class::Trusted {
            return Ok(());
        }
        let cost = bytes as u64;
        let tier = self.tier(now, grant);
        let rate = self.cfg.unproven;
        if tier == Tier::New {
            // Count the networks asking in this window (the fair share divides by them).
            let window = share_window(now);
            if window != self.window {
                self.active_before = if window == self.window.wrapping_add(1) {
                    self.active
                } else {
                    0
                };
                self.window = window;
                self.active = 0;
                self.unproven
                    .set_active(self.core, self.active_before.max(self.active));
            }
            let saturated = self.saturated(now);
            let share = self.unproven.fair_share(rate);
            let Some(n) = self.networks.get_mut(&grant.net) else {
                return Err(DropReason::AdmissionFull);
            };
            let first = n.window != window;
            if first {
                n.window = window;
                n.spent = 0;
            }
            if saturated && n.spent >= share {
                return Err(DropReason::NetworkShare);
            }
            if first {
                self.active = self.active.saturating_add(1);
                if self.active > self.active_before {
                    self.unproven.set_active(self.core, self.active);
                }
            }
        }
        if !self.unproven.try_take(rate, now, cost, tier) {
            if tier == Tier::New {
                self.saturated_since.get_or_insert(now);
                self.last_refusal = now;
            }
            return Err(DropReason::UnprovenBytes);
        }
        if tier == Tier::New
            && let Some(n) = self.networks.get_mut(&grant.net)
        {
            n.spent = n.spent.saturating_add(cost);
        }
        self.stats.unproven_bytes = self.stats.unproven_bytes.wrapping_add(cost);
        Ok(())
    }

    /// How to answer a Valve query seeded with `seed` (`None`: a first page) for the walk
    /// `filter` (a nonzero keyed hash of its region and filter).
    pub fn valve_step(
        &mut self,
        now: Time,
        grant: Grant,
        filter: u32,
        seed: Option<[u8; 6]>,
    ) -> Step {
        if grant.class == Class::Trusted {
            return Step::Plain;
        }
        let (validation, t) = (self.cfg.validation_ms, secs(now));
        let validated_limits = self.cfg.validated;
        let Some(s) = self.sources.get_mut(&grant.key) else {
            return Step::NeedStart;
        };
        let walk = s.walks.iter_mut().find(|w| w.filter == filter);
        let Some(seed) = seed else {
            // A first page: a retry of an unproven walk's first page gets the same walk (and the
            // same proof); otherwise a new walk, at a new random start.
            return match walk {
                Some(w) if !w.proven => {
                    w.used = t;
                    Step::Walk {
                        start: w.start,
                        full: false,
                    }
                }
                _ => Step::NeedStart,
            };
        };
        match walk {
            Some(w) if seed != NO_END && w.ends.contains(&seed) => {
                w.used = t;
                if w.proven {
                    return Step::Walk {
                        start: w.start,
                        full: true,
                    };
                }
                if s.barred_until > t {
                    return Step::Walk {
                        start: w.start,
                        full: false,
                    };
                }
                w.proven = true;
                let start = w.start;
                // The source receives our packets: validated budgets (full, not what it spent
                // unvalidated) for as long as the proof lasts.
                if s.validated_until <= t {
                    s.queries = Bucket::full(validated_limits.queries, now);
                    s.bytes = Bucket::full(validated_limits.bytes, now);
                    s.scan = Bucket::full(validated_limits.scan, now);
                }
                s.validated_until = secs(now.plus_millis(validation));
                self.stats.proofs = self.stats.proofs.wrapping_add(1);
                Step::Walk { start, full: true }
            }
            Some(w) => {
                // No page of this walk ended there: a guess. It proves nothing, and this source
                // proves nothing more until the bar lapses (one guess per window).
                let start = w.start;
                s.barred_until = secs(now.plus_millis(validation));
                self.stats.wrong_continuations = self.stats.wrong_continuations.wrapping_add(1);
                Step::Walk { start, full: false }
            }
            // No walk to continue (never begun, or forgotten under a flood of new sources): small
            // pages in address order from the seed. Nothing could be proven, so nothing is barred.
            None => Step::Walk {
                start: NO_END,
                full: false,
            },
        }
    }

    /// Starts a walk for `filter` at `start` (the caller chose it: a random match).
    pub fn begin_walk(&mut self, now: Time, grant: Grant, filter: u32, start: [u8; 6]) {
        let t = secs(now);
        if let Some(s) = self.sources.get_mut(&grant.key) {
            let slot = match s.walks.iter().position(|w| w.filter == filter) {
                Some(i) => i,
                None => s
                    .walks
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, w)| (w.filter != 0, w.used))
                    .map_or(0, |(i, _)| i),
            };
            if let Some(w) = s.walks.get_mut(slot) {
                *w = Walk {
                    filter,
                    start,
                    ends: [NO_END; WALK_ENDS],
                    proven: false,
                    used: t,
                };
            }
            self.stats.walks = self.stats.walks.wrapping_add(1);
        }
    }

    /// Remembers that a page of walk `filter` ending with `end` was sent (`None`: the walk's
    /// final page — the walk is over).
    pub fn page_sent(&mut self, grant: Grant, filter: u32, end: Option<[u8; 6]>) {
        let Some(s) = self.sources.get_mut(&grant.key) else {
            return;
        };
        let Some(w) = s.walks.iter_mut().find(|w| w.filter == filter) else {
            return;
        };
        match end {
            Some(e) => {
                if w.ends.first() != Some(&e) {
                    w.ends.rotate_right(1);
                    if let Some(first) = w.ends.first_mut() {
                        *first = e;
                    }
                }
            }
            None => *w = Walk::default(),
        }
    }

    /// Decides whether a challenge may be sent to `from` (a `q` or a DP heartbeat).
    pub fn admit_challenge(&mut self, now: Time, from: SocketAddr) -> Result<(), DropReason> {
        let ip = from.ip();
        if self.trust_of(ip).is_some() {
            return Ok(());
        }
        let (per_source, per_core) = (self.cfg.source_challenges, self.cfg.core_challenges);
        if !self.core_challenges.has(per_core, now, QUERY) {
            return Err(DropReason::CoreChallenges);
        }
        let s = self
            .source(now, IpKey::new(ip))
            .ok_or(DropReason::SourceChallenges)?;
        if !s.challenges.has(per_source, now, QUERY) {
            return Err(DropReason::SourceChallenges);
        }
        s.challenges.take(per_source, now, QUERY);
        self.core_challenges.take(per_core, now, QUERY);
        Ok(())
    }
}

/// The most entries (terminator included) a Valve page may hold for a query of `query_len` bytes
/// on an unproven walk: what fits in [`UNPROVEN_FACTOR`] times the query (header included; at
/// least one, the terminator: the shortest query is 13 bytes).
pub fn unproven_page_entries(query_len: usize) -> usize {
    use crate::wire::valve_list::{ENTRY_LEN, MAX_PAGE_ENTRIES, PAGE_HEADER};
    (query_len.saturating_mul(UNPROVEN_FACTOR))
        .saturating_sub(PAGE_HEADER.len())
        .checked_div(ENTRY_LEN)
        .unwrap_or(0)
        .clamp(1, MAX_PAGE_ENTRIES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const T0: Time = Time::from_secs(1000);

    fn admit(ad: &mut Admission, now: Time, from: &str) -> Result<Class, DropReason> {
        ad.admit_query(now, a(from)).map(|g| g.class)
    }

    #[test]
    fn an_unvalidated_source_gets_its_burst_then_its_rate() {
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        for i in 0..10 {
            assert_eq!(
                admit(&mut ad, T0, "198.51.100.7:5000"),
                Ok(Class::Unvalidated),
                "{i}"
            );
        }
        assert_eq!(
            admit(&mut ad, T0, "198.51.100.7:5000"),
            Err(DropReason::SourceQueries)
        );
        // 20 a minute: one more after 3 s.
        assert_eq!(
            admit(&mut ad, T0.plus_millis(2900), "198.51.100.7:5001"),
            Err(DropReason::SourceQueries)
        );
        assert!(admit(&mut ad, T0.plus_secs(6), "198.51.100.7:5001").is_ok());
        // Another source is not affected.
        assert!(admit(&mut ad, T0, "198.51.100.8:5000").is_ok());
    }

    #[test]
    fn a_whole_list_is_charged_in_full_and_the_next_waits_for_the_refill() {
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        let from = a("198.51.100.7:5000");
        let g = ad.admit_query(T0, from).unwrap();
        ad.charge(T0, g, 1024 * 1024); // 1 MiB: four times the 256 KiB burst, charged in full
        assert_eq!(ad.admit_query(T0, from), Err(DropReason::SourceBytes));
        // 768 KiB of debt at 4 KiB/s: 192 s (the fine above stops at one burst of debt, and the
        // debt is deeper already).
        let t = T0.plus_secs(190);
        assert_eq!(ad.admit_query(t, from), Err(DropReason::SourceBytes));
        assert!(ad.admit_query(T0.plus_secs(194), from).is_ok());
    }

    #[test]
    fn a_flooding_source_is_fined_into_silence() {
        // 20 queries a second, far above 20 a minute: after the burst, the fines keep the byte
        // budget below zero, so even the queries the rate lets through get nothing.
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        let from = a("198.51.100.9:27005");
        let mut answered = 0;
        for i in 0..(20 * 60) {
            let now = T0.plus_millis(i * 50);
            if let Ok(g) = ad.admit_query(now, from) {
                ad.charge(now, g, 70_000);
                answered += 1;
            }
        }
        assert!(answered <= 5, "{answered} lists in a minute of flooding");
        // A human pace is never fined: one query a minute for an hour, every one answered.
        let human = a("198.51.100.10:27005");
        for m in 0..60 {
            let now = T0.plus_secs(60 * m);
            let g = ad.admit_query(now, human).unwrap();
            ad.charge(now, g, 70_000);
        }
    }

    #[test]
    fn a_network_bounds_what_its_sources_get() {
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        // 256 sources of one /24, each sending one query answered with 70 KB: the /24's 1 MiB
        // (plus one reply of debt) stops them, whatever each source's own budget.
        let mut sent = 0usize;
        for host in 0..=255u8 {
            let from = SocketAddr::from(([203, 0, 113, host], 27005));
            if let Ok(g) = ad.admit_query(T0, from) {
                ad.charge(T0, g, 70_000);
                sent += 70_000;
            }
        }
        assert!(sent <= 1024 * 1024 + 70_000, "{sent} bytes to one /24");
    }

    /// Walks a source through a first page and its proof; the start the master chose.
    fn prove(ad: &mut Admission, now: Time, from: SocketAddr, filter: u32) -> Grant {
        let g = ad.admit_query(now, from).unwrap();
        assert_eq!(ad.valve_step(now, g, filter, None), Step::NeedStart);
        ad.begin_walk(now, g, filter, [9, 9, 9, 9, 0, 1]);
        ad.page_sent(g, filter, Some([9, 9, 9, 9, 0, 6]));
        let g = ad.admit_query(now, from).unwrap();
        assert_eq!(
            ad.valve_step(now, g, filter, Some([9, 9, 9, 9, 0, 6])),
            Step::Walk {
                start: [9, 9, 9, 9, 0, 1],
                full: true
            }
        );
        ad.admit_query(now, from).unwrap()
    }

    #[test]
    fn a_walk_is_proven_by_its_first_page_end_and_a_wrong_guess_bars_the_source() {
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        let from = a("198.51.100.20:27005");
        let g = prove(&mut ad, T0, from, 7);
        assert_eq!(g.class, Class::Validated);
        assert_eq!(ad.stats().proofs, 1);
        // Its later pages continue from the last end sent; a lost page is asked again.
        ad.page_sent(g, 7, Some([9, 9, 9, 9, 1, 0]));
        let full = Step::Walk {
            start: [9, 9, 9, 9, 0, 1],
            full: true,
        };
        assert_eq!(ad.valve_step(T0, g, 7, Some([9, 9, 9, 9, 1, 0])), full);
        assert_eq!(ad.valve_step(T0, g, 7, Some([9, 9, 9, 9, 0, 6])), full);
        // Another filter is another walk: unproven, whatever the source proved elsewhere.
        assert_eq!(ad.valve_step(T0, g, 8, None), Step::NeedStart);

        // A spoofer's guess for a victim: one wrong continuation, and the victim's own right one
        // no longer proves (one try per window); its pages stay small.
        let victim = a("198.51.100.21:27005");
        let g = ad.admit_query(T0, victim).unwrap();
        assert_eq!(ad.valve_step(T0, g, 7, None), Step::NeedStart);
        ad.begin_walk(T0, g, 7, [1, 1, 1, 1, 0, 1]);
        ad.page_sent(g, 7, Some([1, 1, 1, 1, 0, 6]));
        let small = Step::Walk {
            start: [1, 1, 1, 1, 0, 1],
            full: false,
        };
        assert_eq!(ad.valve_step(T0, g, 7, Some([1, 1, 1, 1, 0, 5])), small);
        assert_eq!(ad.stats().wrong_continuations, 1);
        assert_eq!(ad.valve_step(T0, g, 7, Some([1, 1, 1, 1, 0, 6])), small);
        assert_eq!(
            admit(&mut ad, T0, "198.51.100.21:1"),
            Ok(Class::Unvalidated)
        );
        // After the bar lapses, the right end proves.
        let later = T0.plus_secs(901);
        let g = ad.admit_query(later, victim).unwrap();
        assert_eq!(
            ad.valve_step(later, g, 7, Some([1, 1, 1, 1, 0, 6])),
            Step::Walk {
                start: [1, 1, 1, 1, 0, 1],
                full: true
            }
        );
        // A first page asked again before the proof keeps the walk (and its proof).
        let other = a("198.51.100.22:27005");
        let g = ad.admit_query(T0, other).unwrap();
        ad.valve_step(T0, g, 3, None);
        ad.begin_walk(T0, g, 3, [2, 2, 2, 2, 0, 1]);
        assert_eq!(
            ad.valve_step(T0, g, 3, None),
            Step::Walk {
                start: [2, 2, 2, 2, 0, 1],
                full: false
            }
        );
    }

    #[test]
    fn a_proof_validates_for_fifteen_minutes_and_trusted_networks_have_their_own_finite_budget() {
        let cfg = AdmissionConfig {
            trusted: vec!["192.0.2.0/24".parse().unwrap()],
            ..AdmissionConfig::default()
        };
        let mut ad = Admission::new(T0, cfg);
        let from = a("198.51.100.20:27005");
        prove(&mut ad, T0, from, 1);
        // Its unvalidated queries are not held against it: a validated burst from here.
        for _ in 0..60 {
            assert_eq!(admit(&mut ad, T0, "198.51.100.20:1"), Ok(Class::Validated));
        }
        assert_eq!(
            admit(&mut ad, T0.plus_secs(899), "198.51.100.20:1"),
            Ok(Class::Validated)
        );
        assert_eq!(
            admit(&mut ad, T0.plus_secs(901), "198.51.100.20:1"),
            Ok(Class::Unvalidated)
        );
        // Trusted: 2,000 queries at once for the whole network, then 1,000 a second.
        let mut ok = 0;
        for i in 0..3000u32 {
            let host = format!("192.0.2.{}:1", i % 256);
            if admit(&mut ad, T0, &host) == Ok(Class::Trusted) {
                ok += 1;
            }
        }
        assert_eq!(ok, 2000, "finite, and shared by the network's addresses");
        let g = ad.admit_query(T0.plus_secs(1), a("192.0.2.9:1")).unwrap();
        assert_eq!(ad.valve_step(T0, g, 1, None), Step::Plain);
        // Trusted sources draw nothing from the master-wide budget.
        assert_eq!(ad.admit_unproven(T0, g, 10 << 30), Ok(()));
        assert_eq!(ad.unproven().charged(), 0);
    }

    #[test]
    fn hosting_a_game_server_or_completing_a_handshake_validates_nothing() {
        // There is no such path any more: only a walk's proof validates. A source that asked for
        // challenges (a game server) queries as any other.
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        let server = a("198.51.100.40:27015");
        assert_eq!(ad.admit_challenge(T0, server), Ok(()));
        assert_eq!(
            admit(&mut ad, T0, "198.51.100.40:27015"),
            Ok(Class::Unvalidated)
        );
    }

    #[test]
    fn challenges_have_their_own_budget_untouched_by_query_fines() {
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        let server = a("198.51.100.40:27015");
        // A spoofer floods queries in the server's name: the fines do not stop its challenges.
        for _ in 0..1000 {
            let _ = ad.admit_query(T0, server);
        }
        for _ in 0..64 {
            assert_eq!(ad.admit_challenge(T0, server), Ok(()));
        }
        assert_eq!(
            ad.admit_challenge(T0, server),
            Err(DropReason::SourceChallenges)
        );
        assert_eq!(ad.admit_challenge(T0.plus_millis(500), server), Ok(()));
    }

    #[test]
    fn dp_replies_share_one_master_wide_budget_and_known_sources_keep_theirs() {
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        // A returning player asked an hour ago (before any flood).
        let player = a("198.51.100.77:27005");
        let g = ad.admit_query(T0, player).unwrap();
        assert_eq!(ad.admit_unproven(T0, g, 70_000), Ok(()));
        ad.charge(T0, g, 70_000);
        // An hour later a flood from 2,000 fresh /24s, one query each, 70 KB lists.
        let t = T0.plus_secs(3000);
        let mut sent = 0u64;
        for i in 0..2000u32 {
            let from = SocketAddr::from((std::net::Ipv4Addr::from(0x0A00_0000 + (i << 8)), 1));
            if let Ok(g) = ad.admit_query(t, from)
                && ad.admit_unproven(t, g, 70_000).is_ok()
            {
                ad.charge(t, g, 70_000);
                sent += 70_000;
            }
        }
        // New sources stop at half the 1 MiB burst (plus the reply that crossed it).
        assert!(sent <= 512 * 1024 + 70_000, "{sent}");
        assert!(ad.saturated(t));
        // The returning player is served from the half kept for known sources.
        let g = ad.admit_query(t, player).unwrap();
        assert_eq!(ad.admit_unproven(t, g, 70_000), Ok(()));
        // A source first seen during the flood is not known.
        let fresh = a("198.51.100.200:27005");
        let g = ad.admit_query(t, fresh).unwrap();
        assert_eq!(
            ad.admit_unproven(t, g, 70_000),
            Err(DropReason::UnprovenBytes)
        );
    }

    #[test]
    fn while_saturated_new_sources_share_fairly_per_network() {
        // A budget that refills fast, so the fair share (not the bucket) is what binds.
        let cfg = AdmissionConfig {
            unproven: rate(MIB, 100 * MIB),
            ..AdmissionConfig::default()
        };
        let unproven = Unproven::new(2);
        let mut ad = Admission::shared(T0, cfg.clone(), unproven.clone(), 0);
        // Saturate: one big reply to a new source, then a refusal.
        let g = ad.admit_query(T0, a("203.0.113.1:1")).unwrap();
        assert_eq!(ad.admit_unproven(T0, g, 4 << 20), Ok(()));
        let g = ad.admit_query(T0, a("203.0.113.2:1")).unwrap();
        assert_eq!(
            ad.admit_unproven(T0, g, 100),
            Err(DropReason::UnprovenBytes)
        );
        assert!(ad.saturated(T0));
        // The other core counts 9,999 networks asking: each gets 1/10,000 of a window's refill.
        unproven.set_active(1, 9_999);
        let share = unproven.fair_share(cfg.unproven);
        assert!(share < 120_000, "{share}");
        // A second on (the bucket is full again, still saturated): one /24 with 64 sources asking
        // for 10 KB each gets its share, not 64 replies.
        let t = T0.plus_secs(1);
        let mut crowd = 0u64;
        for i in 0..64u8 {
            let from = SocketAddr::from(([198, 18, 5, i], 1));
            let g = ad.admit_query(t, from).unwrap();
            match ad.admit_unproven(t, g, 10_000) {
                Ok(()) => crowd += 10_000,
                Err(e) => assert_eq!(e, DropReason::NetworkShare),
            }
        }
        assert!(
            crowd >= share && crowd <= share + 10_000,
            "{crowd} vs share {share}"
        );
        // A lone source on another /24 still gets its list.
        let g = ad.admit_query(t, a("198.18.9.1:1")).unwrap();
        assert_eq!(ad.admit_unproven(t, g, 10_000), Ok(()));
    }

    #[test]
    fn a_flood_of_fresh_sources_never_evicts_a_validated_or_fined_entry() {
        let cfg = AdmissionConfig {
            max_sources: 256,
            max_prefixes: 4096,
            ..AdmissionConfig::default()
        };
        let mut ad = Admission::new(T0, cfg);
        // A validated browser and a fined victim (a spoofed flood in its name).
        let browser = a("198.51.100.1:27005");
        prove(&mut ad, T0, browser, 1);
        let victim = a("198.51.100.2:27005");
        for _ in 0..50 {
            let _ = ad.admit_query(T0, victim);
        }
        assert_eq!(ad.admit_query(T0, victim), Err(DropReason::SourceQueries));
        // 100,000 fresh spoofed sources, one query each.
        for i in 0..100_000u32 {
            let from = SocketAddr::from((std::net::Ipv4Addr::from(0x0A00_0000 + i), 1));
            let _ = ad.admit_query(T0.plus_millis(u64::from(i / 100)), from);
        }
        let t = T0.plus_secs(1);
        assert_eq!(admit(&mut ad, t, "198.51.100.1:1"), Ok(Class::Validated));
        assert_eq!(
            ad.admit_query(t, victim),
            Err(DropReason::SourceQueries),
            "the fined victim was not handed a fresh budget"
        );
        assert_eq!(ad.tracked().0, 256);
    }

    #[test]
    fn a_million_spoofed_sources_leave_memory_constant() {
        let cfg = AdmissionConfig {
            max_sources: 4096,
            max_prefixes: 1024,
            ..AdmissionConfig::default()
        };
        let mut ad = Admission::new(T0, cfg);
        let before = ad.heap_bytes();
        let mut admitted = 0u64;
        for i in 0..1_000_000u32 {
            let from = SocketAddr::from((std::net::Ipv4Addr::from(0x0A00_0000 + i * 7), 27005));
            let now = T0.plus_millis(u64::from(i / 100));
            if let Ok(g) = ad.admit_query(now, from)
                && ad.admit_unproven(now, g, 1392).is_ok()
            {
                ad.charge(now, g, 1392);
                admitted += 1392;
            }
        }
        assert_eq!(ad.tracked(), (4096, 1024));
        assert_eq!(ad.heap_bytes(), before, "no growth");
        // The master-wide budget bounded what the flood drew: 1 MiB + 1 MiB/s over its 10 s.
        assert!(admitted <= (1 << 20) * 11 + 1392, "{admitted}");
    }

    #[test]
    fn unproven_pages_hold_what_fits_in_three_times_the_query() {
        // `1 FF "0.0.0.0:0" 00 00`: 13 bytes → 39 → the header and 5 entries.
        assert_eq!(unproven_page_entries(13), 5);
        assert_eq!(unproven_page_entries(100), 49);
        assert_eq!(unproven_page_entries(2000), 231);
        assert_eq!(unproven_page_entries(0), 1);
    }

    #[test]
    fn an_expensive_filter_flood_is_stopped_by_the_scan_budgets() {
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        // 2,000 /24s, each asking once for a filter that takes 65,536 units.
        let mut scanned = 0u64;
        for i in 0..2000u32 {
            let from = SocketAddr::from((std::net::Ipv4Addr::from(0x0A00_0000 + (i << 8)), 1));
            if let Ok(g) = ad.admit_query(T0, from)
                && ad.admit_scan(T0, g, 65_536).is_ok()
            {
                ad.charge_scan(T0, g, 65_536);
                scanned += 65_536;
            }
        }
        // Unvalidated sources stop at half the core's 2M burst.
        assert!(scanned <= 1_000_000 + 65_536, "{scanned}");
        // A small scan (an index answers it) still runs; a large one from a fresh source not.
        let fresh = a("198.51.100.2:27005");
        let g = ad.admit_query(T0, fresh).unwrap();
        assert_eq!(ad.admit_scan(T0, g, 231), Ok(()));
        assert_eq!(ad.admit_scan(T0, g, 65_536), Err(DropReason::Scan));
        // A validated browser still scans.
        let browser = a("198.51.100.1:27005");
        let g = prove(&mut ad, T0, browser, 1);
        assert_eq!(ad.admit_scan(T0, g, 65_536), Ok(()));
    }
}
