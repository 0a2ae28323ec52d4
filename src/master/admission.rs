//! Admission control: who gets how many replies, and how many bytes of them.
//!
//! A reply to an address that has not shown it receives our packets spends a budget: a list query
//! is ~30 bytes and its answer up to megabytes, and the source address of a UDP datagram is free to
//! forge. A master that answers forged queries freely is a reflector for DDoS. So every reply is
//! admitted against token buckets (`bucket.rs`, debt allowed so a list is never cut short):
//!
//! | budget | kept per | for |
//! |---|---|---|
//! | queries, reply bytes | source (IPv4 address, IPv6 /64) | every source; the limits depend on its class |
//! | queries, reply bytes | network (IPv4 /24, IPv6 /48) | unvalidated sources (carpet bombing spreads a flood over a network) |
//! | reply bytes | core | unvalidated sources, all together (the most any flood can reflect) |
//! | challenges | source, and core | `q` / DP heartbeats (challenge replies are small, but not free) |
//!
//! Classes, from most to least trusted:
//! - **trusted**: an operator-listed network (a server-list website): no limits at all;
//! - **validated**: the source showed it receives our packets — its address holds a game server
//!   that completed a challenge handshake, or it continued a Valve list from the exact last address
//!   of the page we sent it (page lengths vary per source, see `page_jitter`, so an off-path
//!   spoofer cannot guess it) — for `validation_ms` after the proof;
//! - **unvalidated**: everyone else — enough for a person's server browser, not for a crawler.
//!
//! A query refused for its source's rate also costs the source a fine in reply bytes, so a source
//! that keeps querying faster than allowed (a flood aimed at a victim) never earns replies back,
//! while one that asks at a human pace is never fined.
//!
//! State is bounded: [`BoundedMap`]s of `max_sources` and `max_prefixes` entries, evicting what is
//! worth least (an entry with full buckets and nothing in progress is worth nothing).

use super::bounded::BoundedMap;
use super::bucket::{Bucket, Rate};
use super::counters::Drop;
use super::policy::IpKey;
use super::time::Time;
use std::net::{IpAddr, SocketAddr};

/// One query, in the units of the query buckets (milli-queries: rates below one per second).
pub const QUERY: u64 = 1000;
/// Last page ends remembered per source (a client that re-asks for a page it lost still proves).
pub const PROOF_SEEDS: usize = 2;

/// The limits of one class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassLimits {
    /// In milli-queries ([`QUERY`] per query).
    pub queries: Rate,
    /// In bytes of reply.
    pub bytes: Rate,
}

impl ClassLimits {
    pub const UNLIMITED: ClassLimits = ClassLimits {
        queries: Rate::UNLIMITED,
        bytes: Rate::UNLIMITED,
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
    /// Per network, for unvalidated sources together.
    pub network: ClassLimits,
    /// Reply bytes to unvalidated sources, per core.
    pub core_unvalidated_bytes: Rate,
    /// Challenge replies per source (milli-challenges) and per core.
    pub source_challenges: Rate,
    pub core_challenges: Rate,
    /// Reply bytes a source is fined for a query refused at its own rate.
    pub fine_bytes: u32,
    /// How long a proof keeps a source validated.
    pub validation_ms: u64,
    /// Networks with no limits.
    pub trusted: Vec<ipnet::IpNet>,
}

/// The defaults, and why (README, "Admission control"):
/// - unvalidated: 10 queries at once, then 20 a minute (Valve's retired master allowed about 30
///   pages a minute); 256 KiB of replies at once (a 10,000-server DP list is ~70 KB), then 4 KiB/s
///   (a browser refreshing such a list every minute keeps up);
/// - validated: 64 queries at once, then 10 a second; 16 MiB at once, then 1 MiB/s;
/// - per network (unvalidated): 64 queries, 2 a second; 1 MiB, then 32 KiB/s;
/// - per core to unvalidated sources: 8 MiB at once, then 4 MiB/s;
/// - challenges: 64 per source at once (32 servers per address, each may retry), 2 a second;
///   100,000 per core at once, 50,000 a second;
/// - a refused query is fined 4 KiB (a second of an unvalidated source's refill);
/// - a proof lasts 15 minutes, as a registration does.
impl Default for AdmissionConfig {
    fn default() -> Self {
        let per_min = |n: u32| Rate {
            burst: 0,
            per_sec: n.saturating_mul(1000) / 60,
        };
        let q = |burst: u32, r: Rate| Rate {
            burst: burst.saturating_mul(QUERY as u32),
            per_sec: r.per_sec,
        };
        let per_sec = |n: u32| Rate {
            burst: 0,
            per_sec: n.saturating_mul(QUERY as u32),
        };
        let bytes = |burst: u32, per_sec: u32| Rate { burst, per_sec };
        const KIB: u32 = 1024;
        const MIB: u32 = 1024 * 1024;
        Self {
            max_sources: 65_536,
            max_prefixes: 16_384,
            unvalidated: ClassLimits {
                queries: q(10, per_min(20)),
                bytes: bytes(256 * KIB, 4 * KIB),
            },
            validated: ClassLimits {
                queries: q(64, per_sec(10)),
                bytes: bytes(16 * MIB, MIB),
            },
            network: ClassLimits {
                queries: q(64, per_sec(2)),
                bytes: bytes(MIB, 32 * KIB),
            },
            core_unvalidated_bytes: bytes(8 * MIB, 4 * MIB),
            source_challenges: q(64, per_sec(2)),
            core_challenges: q(100_000, per_sec(50_000)),
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
            network: ClassLimits::UNLIMITED,
            core_unvalidated_bytes: Rate::UNLIMITED,
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

/// A query that may be answered; [`Admission::charge`] takes what its reply costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub class: Class,
    key: IpKey,
}

#[derive(Clone, Copy, Debug)]
struct Source {
    queries: Bucket,
    bytes: Bucket,
    challenges: Bucket,
    /// Seconds on the master's clock until which the source is validated (0: never).
    validated_until: u32,
    /// The last address of the last pages sent (a continuation from one of them is a proof).
    seeds: [Option<[u8; 6]>; PROOF_SEEDS],
    /// Last seen, seconds (which entry to forget first).
    seen: u32,
}

impl Source {
    /// Validated from `now` for `ms`; a source that was not validated starts with the validated
    /// class's full budgets (what it spent unvalidated is not held against it).
    fn promote(&mut self, now: Time, ms: u64, validated: ClassLimits) {
        if self.validated_until <= secs(now) {
            self.queries = Bucket::full(validated.queries, now);
            self.bytes = Bucket::full(validated.bytes, now);
        }
        self.validated_until = secs(now.plus_millis(ms));
    }
}

#[derive(Clone, Copy, Debug)]
struct Network {
    queries: Bucket,
    bytes: Bucket,
}

/// Counts of what admission did (also reflected in the shard's drop counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    pub validations: u64,
    pub proofs: u64,
}

/// One core's admission state.
#[derive(Debug)]
pub struct Admission {
    cfg: AdmissionConfig,
    sources: BoundedMap<Source>,
    networks: BoundedMap<Network>,
    core_bytes: Bucket,
    core_challenges: Bucket,
    stats: AdmissionStats,
}

fn secs(now: Time) -> u32 {
    u32::try_from(now.millis() / 1000).unwrap_or(u32::MAX)
}

impl Admission {
    pub fn new(now: Time, cfg: AdmissionConfig) -> Self {
        Self {
            sources: BoundedMap::new(cfg.max_sources),
            networks: BoundedMap::new(cfg.max_prefixes),
            core_bytes: Bucket::full(cfg.core_unvalidated_bytes, now),
            core_challenges: Bucket::full(cfg.core_challenges, now),
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

    /// Sources and networks tracked now.
    pub fn tracked(&self) -> (usize, usize) {
        (self.sources.len(), self.networks.len())
    }

    /// Heap bytes held: constant (the tables reserve their whole capacity at creation).
    pub fn heap_bytes(&self) -> usize {
        self.sources
            .heap_bytes()
            .saturating_add(self.networks.heap_bytes())
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.cfg.trusted.iter().any(|n| n.contains(&ip))
    }

    fn source(&mut self, now: Time, ip: IpAddr) -> Option<&mut Source> {
        let cfg = &self.cfg;
        let fresh = Source {
            queries: Bucket::full(cfg.unvalidated.queries, now),
            bytes: Bucket::full(cfg.unvalidated.bytes, now),
            challenges: Bucket::full(cfg.source_challenges, now),
            validated_until: 0,
            seeds: [None; PROOF_SEEDS],
            seen: secs(now),
        };
        let (unvalidated, challenges) = (cfg.unvalidated, cfg.source_challenges);
        let s = self.sources.entry(
            IpKey::new(ip),
            || fresh,
            |s| {
                // Worth nothing: full buckets, not validated, no page in progress.
                let idle = s.queries.is_full(unvalidated.queries, now)
                    && s.bytes.is_full(unvalidated.bytes, now)
                    && s.challenges.is_full(challenges, now)
                    && s.validated_until <= secs(now)
                    && s.seeds == [None; PROOF_SEEDS];
                if idle { 0 } else { u64::from(s.seen) + 1 }
            },
        )?;
        s.seen = secs(now);
        Some(s)
    }

    fn network(&mut self, now: Time, ip: IpAddr) -> Option<&mut Network> {
        let limits = self.cfg.network;
        self.networks.entry(
            IpKey::prefix(ip),
            || Network {
                queries: Bucket::full(limits.queries, now),
                bytes: Bucket::full(limits.bytes, now),
            },
            |n| {
                let idle =
                    n.queries.is_full(limits.queries, now) && n.bytes.is_full(limits.bytes, now);
                u64::from(!idle)
            },
        )
    }

    fn limits(&self, class: Class) -> ClassLimits {
        match class {
            Class::Trusted => ClassLimits::UNLIMITED,
            Class::Validated => self.cfg.validated,
            Class::Unvalidated => self.cfg.unvalidated,
        }
    }

    /// Marks `ip` as proven to receive our packets (it completed a challenge handshake).
    pub fn validate(&mut self, now: Time, ip: IpAddr) {
        if self.trusted(ip) {
            return;
        }
        let (ms, limits) = (self.cfg.validation_ms, self.cfg.validated);
        if let Some(s) = self.source(now, ip) {
            s.promote(now, ms, limits);
        }
        self.stats.validations = self.stats.validations.wrapping_add(1);
    }

    /// Decides whether a list query from `from` may be answered. `continues` is a Valve query's
    /// seed when it is not the first page; `holds_server` whether the source's address holds a
    /// listed game server (also a proof).
    pub fn admit_query(
        &mut self,
        now: Time,
        from: SocketAddr,
        continues: Option<[u8; 6]>,
        holds_server: bool,
    ) -> Result<Grant, Drop> {
        let ip = from.ip();
        let key = IpKey::new(ip);
        if self.trusted(ip) {
            return Ok(Grant {
                class: Class::Trusted,
                key,
            });
        }
        let validation_ms = self.cfg.validation_ms;
        let (validated, unvalidated, fine) = (
            self.cfg.validated,
            self.cfg.unvalidated,
            self.cfg.fine_bytes,
        );
        let s = self.source(now, ip).ok_or(Drop::SourceQueries)?;
        let proof = continues.is_some_and(|seed| s.seeds.contains(&Some(seed)));
        if holds_server || proof {
            s.promote(now, validation_ms, validated);
        }
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
            s.bytes.take(limits.bytes, now, u64::from(fine));
            return Err(Drop::SourceQueries);
        }
        if !s.bytes.allows(limits.bytes, now) {
            s.bytes.take(limits.bytes, now, u64::from(fine));
            return Err(Drop::SourceBytes);
        }
        s.queries.take(limits.queries, now, QUERY);
        if proof {
            self.stats.proofs = self.stats.proofs.wrapping_add(1);
        }
        if class == Class::Unvalidated {
            let (net_limits, core) = (self.cfg.network, self.cfg.core_unvalidated_bytes);
            let core_ok = self.core_bytes.allows(core, now);
            let n = self.network(now, ip).ok_or(Drop::NetworkQueries)?;
            if !n.queries.has(net_limits.queries, now, QUERY) {
                return Err(Drop::NetworkQueries);
            }
            if !n.bytes.allows(net_limits.bytes, now) {
                return Err(Drop::NetworkBytes);
            }
            if !core_ok {
                return Err(Drop::CoreBytes);
            }
            n.queries.take(net_limits.queries, now, QUERY);
        }
        Ok(Grant { class, key })
    }

    /// Takes the cost of an admitted reply from every budget it was admitted against.
    pub fn charge(&mut self, now: Time, grant: Grant, from: SocketAddr, bytes: usize) {
        let limits = self.limits(grant.class);
        let cost = bytes as u64;
        if grant.class == Class::Trusted {
            return;
        }
        if let Some(s) = self.sources.get_mut(&grant.key) {
            s.bytes.take(limits.bytes, now, cost);
        }
        if grant.class == Class::Unvalidated {
            let (net, core) = (self.cfg.network.bytes, self.cfg.core_unvalidated_bytes);
            if let Some(n) = self.networks.get_mut(&IpKey::prefix(from.ip())) {
                n.bytes.take(net, now, cost);
            }
            self.core_bytes.take(core, now, cost);
        }
    }

    /// Remembers the last address of a (non-final) Valve page sent to `from`: a continuation
    /// seeded with it proves `from` receives our packets.
    pub fn page_sent(&mut self, now: Time, from: SocketAddr, last: [u8; 6]) {
        if self.trusted(from.ip()) {
            return;
        }
        if let Some(s) = self.source(now, from.ip()) {
            s.seeds.rotate_right(1);
            if let Some(first) = s.seeds.first_mut() {
                *first = Some(last);
            }
        }
    }

    /// Decides whether a challenge may be sent to `from` (a `q` or a DP heartbeat).
    pub fn admit_challenge(&mut self, now: Time, from: SocketAddr) -> Result<(), Drop> {
        let ip = from.ip();
        if self.trusted(ip) {
            return Ok(());
        }
        let (per_source, per_core) = (self.cfg.source_challenges, self.cfg.core_challenges);
        if !self.core_challenges.has(per_core, now, QUERY) {
            return Err(Drop::CoreChallenges);
        }
        let s = self.source(now, ip).ok_or(Drop::SourceChallenges)?;
        if !s.challenges.has(per_source, now, QUERY) {
            return Err(Drop::SourceChallenges);
        }
        s.challenges.take(per_source, now, QUERY);
        self.core_challenges.take(per_core, now, QUERY);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const T0: Time = Time::from_secs(1000);

    fn admit(ad: &mut Admission, now: Time, from: &str) -> Result<Class, Drop> {
        ad.admit_query(now, a(from), None, false).map(|g| g.class)
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
            Err(Drop::SourceQueries)
        );
        // 20 a minute: one more after 3 s.
        assert_eq!(
            admit(&mut ad, T0.plus_millis(2900), "198.51.100.7:5001"),
            Err(Drop::SourceQueries)
        );
        assert!(admit(&mut ad, T0.plus_secs(6), "198.51.100.7:5001").is_ok());
        // Another source is not affected.
        assert!(admit(&mut ad, T0, "198.51.100.8:5000").is_ok());
    }

    #[test]
    fn a_whole_list_goes_into_debt_and_the_next_waits_for_the_refill() {
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        let from = a("198.51.100.7:5000");
        let g = ad.admit_query(T0, from, None, false).unwrap();
        ad.charge(T0, g, from, 300 * 1024); // 300 KiB: more than the 256 KiB burst
        assert_eq!(
            ad.admit_query(T0, from, None, false),
            Err(Drop::SourceBytes)
        );
        // 44 KiB of debt (+ the 4 KiB fine) at 4 KiB/s: about 12 s.
        let t = T0.plus_secs(10);
        assert_eq!(ad.admit_query(t, from, None, false), Err(Drop::SourceBytes));
        assert!(ad.admit_query(T0.plus_secs(14), from, None, false).is_ok());
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
            if let Ok(g) = ad.admit_query(now, from, None, false) {
                ad.charge(now, g, from, 70_000);
                answered += 1;
            }
        }
        assert!(answered <= 5, "{answered} lists in a minute of flooding");
        // A human pace is never fined: one query a minute for an hour, every one answered.
        let human = a("198.51.100.10:27005");
        for m in 0..60 {
            let now = T0.plus_secs(60 * m);
            let g = ad.admit_query(now, human, None, false).unwrap();
            ad.charge(now, g, human, 70_000);
        }
    }

    #[test]
    fn a_network_and_the_core_bound_what_many_sources_get() {
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        // 256 sources of one /24, each sending one query answered with 70 KB: the /24's 1 MiB
        // (plus one reply of debt) stops them, whatever each source's own budget.
        let mut sent = 0usize;
        for host in 0..=255u8 {
            let from = SocketAddr::from(([203, 0, 113, host], 27005));
            if let Ok(g) = ad.admit_query(T0, from, None, false) {
                ad.charge(T0, g, from, 70_000);
                sent += 70_000;
            }
        }
        assert!(sent <= 1024 * 1024 + 70_000, "{sent} bytes to one /24");
        // Over many networks, the core's 8 MiB (plus one reply) is the limit.
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        let mut sent = 0usize;
        for net in 0..=255u8 {
            for host in 0..4u8 {
                let from = SocketAddr::from(([198, 18, net, host], 27005));
                if let Ok(g) = ad.admit_query(T0, from, None, false) {
                    ad.charge(T0, g, from, 70_000);
                    sent += 70_000;
                }
            }
        }
        assert!(
            sent <= 8 * 1024 * 1024 + 70_000,
            "{sent} bytes from one core"
        );
        assert!(
            sent >= 8 * 1024 * 1024 - 70_000,
            "{sent}: the core budget was what stopped it"
        );
    }

    #[test]
    fn proofs_validate_and_trusted_networks_have_no_limits() {
        let cfg = AdmissionConfig {
            trusted: vec!["192.0.2.0/24".parse().unwrap()],
            ..AdmissionConfig::default()
        };
        let mut ad = Admission::new(T0, cfg);
        for _ in 0..1000 {
            assert_eq!(admit(&mut ad, T0, "192.0.2.55:1"), Ok(Class::Trusted));
        }
        // A Valve continuation from the end of a page we sent: validated from then on.
        let from = a("198.51.100.20:27005");
        assert_eq!(
            admit(&mut ad, T0, "198.51.100.20:27005"),
            Ok(Class::Unvalidated)
        );
        ad.page_sent(T0, from, [1, 2, 3, 4, 0x69, 0x87]);
        let wrong = ad.admit_query(T0, from, Some([1, 2, 3, 4, 0x69, 0x88]), false);
        assert_eq!(
            wrong.map(|g| g.class),
            Ok(Class::Unvalidated),
            "a guessed seed proves nothing"
        );
        let right = ad.admit_query(T0, from, Some([1, 2, 3, 4, 0x69, 0x87]), false);
        assert_eq!(right.map(|g| g.class), Ok(Class::Validated));
        assert_eq!(ad.stats().proofs, 1);
        // Its unvalidated queries are not held against it: a validated burst from here.
        for _ in 0..63 {
            let g = ad.admit_query(T0, from, None, false).map(|g| g.class);
            assert_eq!(g, Ok(Class::Validated));
        }
        assert_eq!(
            admit(&mut ad, T0.plus_secs(899), "198.51.100.20:1"),
            Ok(Class::Validated)
        );
        assert_eq!(
            admit(&mut ad, T0.plus_secs(901), "198.51.100.20:1"),
            Ok(Class::Unvalidated)
        );
        // A completed handshake, or a listed server at the address, validates too.
        ad.validate(T0, a("198.51.100.30:27015").ip());
        assert_eq!(admit(&mut ad, T0, "198.51.100.30:1"), Ok(Class::Validated));
        let held = ad.admit_query(T0, a("198.51.100.31:1"), None, true);
        assert_eq!(held.map(|g| g.class), Ok(Class::Validated));
    }

    #[test]
    fn challenges_have_their_own_budget_untouched_by_query_fines() {
        let mut ad = Admission::new(T0, AdmissionConfig::default());
        let server = a("198.51.100.40:27015");
        // A spoofer floods queries in the server's name: the fines do not stop its challenges.
        for _ in 0..1000 {
            let _ = ad.admit_query(T0, server, None, false);
        }
        for _ in 0..64 {
            assert_eq!(ad.admit_challenge(T0, server), Ok(()));
        }
        assert_eq!(ad.admit_challenge(T0, server), Err(Drop::SourceChallenges));
        assert_eq!(ad.admit_challenge(T0.plus_millis(500), server), Ok(()));
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
        let mut admitted = 0u32;
        for i in 0..1_000_000u32 {
            let from = SocketAddr::from((std::net::Ipv4Addr::from(0x0A00_0000 + i * 7), 27005));
            let now = T0.plus_millis(u64::from(i / 100));
            if let Ok(g) = ad.admit_query(now, from, None, false) {
                ad.charge(now, g, from, 1392);
                admitted += 1;
            }
        }
        assert_eq!(ad.tracked(), (4096, 1024));
        assert_eq!(ad.heap_bytes(), before, "no growth");
        // The core's budget bounded what the flood drew: 8 MiB + 4 MiB/s over its 10 s.
        assert!(
            u64::from(admitted) * 1392 <= 8 * 1024 * 1024 + 4 * 1024 * 1024 * 11,
            "{admitted}"
        );
    }
}
