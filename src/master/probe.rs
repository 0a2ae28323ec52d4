//! Liveness probes, sans-IO: when each listed server is next asked for its info, what a missed or
//! odd answer means, and why a server is hidden. [`Master`](crate::master::Master) sends and reads
//! the packets (`service/probe.rs`); this holds only per-slot state and the schedule.
//!
//! - Every listed server is probed after it registers and then every `interval` (spread by slot so
//!   a million servers that registered together are not probed in one burst), one probe at a time
//!   per server, from the listener it registered through (NAT-friendly).
//! - Sending is paced per core by a token bucket of `rate` probes per second: at a million
//!   servers the cost is a known bandwidth (`rate` × ~30 bytes) and the interval stretches instead.
//! - Only listed servers are probed, and a listed server completed a handshake: it showed that it
//!   receives our packets, so a probe is never a reflection (shared/docs/protocols.md §6).
//! - A probe is one request plus `retries` resends `timeout` apart; a probe with no answer is a
//!   miss, and `failures` misses in a row hide the server ([`Hidden::Silent`]) until it answers.
//!   Valve-family servers start hidden ([`Hidden::Unproven`]) until their first answer.

use crate::master::policy::IpKey;
use crate::master::policy::bans::NetSet;
use crate::master::time::Time;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

/// Seconds between two probes of one server.
pub const DEFAULT_PROBE_INTERVAL_MS: u64 = 30_000;
/// How long a probe waits for its answer before a resend (or a miss).
pub const DEFAULT_PROBE_TIMEOUT_MS: u64 = 1_000;
/// Resends of an unanswered probe before it counts as missed.
pub const DEFAULT_PROBE_RETRIES: u8 = 1;
/// Missed probes in a row that hide a server.
pub const DEFAULT_PROBE_FAILURES: u8 = 2;
/// Probes sent per second per core, at most (each ~25–40 bytes on the wire: 10,000/s is ~300 KB/s).
pub const DEFAULT_PROBE_RATE: u32 = 10_000;
/// One address's servers answering with one identical body, from this many ports up, are clones.
pub const DEFAULT_CLONE_PORTS: u16 = 8;
/// Due probes looked at per call of [`Prober::due`] (the core yields between calls).
pub const MAX_DUE_PER_CALL: usize = 4096;
/// Largest accepted interval, timeout, and counts (config-checked).
pub const MAX_PROBE_INTERVAL_MS: u64 = 3_600_000;
pub const MAX_PROBE_TIMEOUT_MS: u64 = 10_000;
pub const MAX_PROBE_RETRIES: u8 = 5;
pub const MAX_PROBE_FAILURES: u8 = 20;

/// The `[probe]` settings.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    pub enabled: bool,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u8,
    pub failures: u8,
    /// Probes per second per core.
    pub rate: u32,
    /// See [`DEFAULT_CLONE_PORTS`]; 0 turns clone detection off.
    pub clone_ports: u16,
    /// Servers on these networks are listed without a first answer and never hidden as silent
    /// (an operator's own hosts, behind a firewall that drops probes).
    pub allow: Arc<NetSet>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: DEFAULT_PROBE_INTERVAL_MS,
            timeout_ms: DEFAULT_PROBE_TIMEOUT_MS,
            retries: DEFAULT_PROBE_RETRIES,
            failures: DEFAULT_PROBE_FAILURES,
            rate: DEFAULT_PROBE_RATE,
            clone_ports: DEFAULT_CLONE_PORTS,
            allow: Arc::new(NetSet::default()),
        }
    }
}

impl ProbeConfig {
    /// No probing: every server that completes a handshake is listed (muster before probes).
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

/// Why a server is in the table but in no list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Hidden {
    /// A Valve-family server that has not answered a probe yet.
    Unproven = 1,
    /// `failures` probes in a row went unanswered.
    Silent = 2,
    /// Its answer names another game, app or protocol than its heartbeat.
    Contradicts = 3,
    /// Its answer came from another address than the one listed (its `EDF` port names this one).
    WrongSource = 4,
    /// One address's many ports answer with one identical body.
    Clone = 5,
}

impl Hidden {
    pub const ALL: [Hidden; 5] = [
        Hidden::Unproven,
        Hidden::Silent,
        Hidden::Contradicts,
        Hidden::WrongSource,
        Hidden::Clone,
    ];

    /// The label in metrics and the API.
    pub const fn name(self) -> &'static str {
        match self {
            Hidden::Unproven => "not_answered_yet",
            Hidden::Silent => "probe_timeouts",
            Hidden::Contradicts => "answer_contradicts_heartbeat",
            Hidden::WrongSource => "answered_from_another_source",
            Hidden::Clone => "clone_of_other_ports",
        }
    }

    fn from_u8(v: u8) -> Option<Hidden> {
        Hidden::ALL.into_iter().find(|h| *h as u8 == v)
    }
}

/// What a probe in flight is waiting for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// No probe in flight.
    #[default]
    Idle,
    /// Sent; waiting for the info (or, Valve, an `S2C_CHALLENGE`).
    Sent,
    /// Valve: answered the challenge step; waiting for the info.
    Challenged,
}

/// One slot's probe state (what the operator's "why" shows comes from [`Brief`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    generation: u32,
    pub phase: Phase,
    /// When the current attempt was sent (ms on the core's clock).
    sent_ms: u64,
    /// Resends of the current probe.
    attempt: u8,
    /// Probes missed in a row.
    pub misses: u8,
    pub local: u8,
    /// DP: the heartbeat tag the server registered with (the `getinfo` challenge encodes it).
    pub tag: u8,
    hidden: u8,
    /// When the server last answered (seconds on the core's clock; 0: never).
    pub answered_secs: u32,
    pub rtt_ms: u16,
    /// The hash of its last answer's body (0: none), for clone detection.
    pub body: u64,
    /// When the next event of this slot is due (stale heap entries differ).
    due_ms: u64,
}

impl State {
    pub fn hidden(&self) -> Option<Hidden> {
        Hidden::from_u8(self.hidden)
    }
}

/// What the operator's view gets of a slot's probes (12 bytes a server in a dump).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Brief {
    /// 0: listed; else a [`Hidden`] code.
    pub hidden: u8,
    pub misses: u8,
    pub rtt_ms: u16,
    /// Seconds on the core's clock of the last answer (0: never).
    pub answered_secs: u32,
    /// Seconds on the core's clock of the last probe sent (0: never).
    pub probed_secs: u32,
}

impl Brief {
    pub fn hidden(&self) -> Option<Hidden> {
        Hidden::from_u8(self.hidden)
    }
}

/// The server a slot holds, as the prober tracks it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Who {
    pub slot: u32,
    /// The table's generation of the slot (events of an earlier server in it are dropped).
    pub generation: u32,
    /// The listener it registered through (its probes leave from there).
    pub local: u8,
    /// DP: its heartbeat tag's index.
    pub tag: u8,
}

/// What the master must do for a slot whose event came due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Send a probe (a first attempt or a resend).
    Send { slot: u32 },
    /// The probe was missed `misses` times in a row; hide it when that reaches `failures`.
    Missed { slot: u32, misses: u8 },
}

/// Every slot's probe state, the schedule, the pacing and the clone counts of one shard.
#[derive(Debug)]
pub struct Prober {
    config: ProbeConfig,
    slots: Vec<State>,
    /// `(due ms, slot, generation)`, soonest first. Entries whose `due` no longer matches the
    /// slot's are stale and skipped; at most two live per slot.
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Probes that may be sent now (token bucket of `rate` per second, burst `rate / 10`).
    tokens: f64,
    refilled_ms: u64,
    /// Answers with one body per address: `(address, body hash)` → servers.
    clones: HashMap<(IpKey, u64), u16>,
    /// When each slot last had a probe sent (seconds), beside the state.
    probed: Vec<u32>,
    spare: State,
}

impl Prober {
    pub fn new(now: Time, config: ProbeConfig) -> Self {
        Self {
            tokens: f64::from(config.rate.max(1)) / 10.0,
            refilled_ms: now.millis(),
            config,
            slots: Vec::new(),
            heap: BinaryHeap::new(),
            clones: HashMap::new(),
            probed: Vec::new(),
            spare: State::default(),
        }
    }

    pub fn config(&self) -> &ProbeConfig {
        &self.config
    }

    /// Replaces the settings (a reload): new timings apply from each server's next probe.
    pub fn set_config(&mut self, config: ProbeConfig) {
        self.config = config;
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub fn state(&self, slot: u32) -> Option<&State> {
        self.slots.get(slot as usize)
    }

    fn state_mut(&mut self, slot: u32) -> &mut State {
        let i = slot as usize;
        if self.slots.len() <= i {
            self.slots.resize(i.saturating_add(1), State::default());
            self.probed.resize(i.saturating_add(1), 0);
        }
        // Just resized to hold `i`: the stand-in is never used.
        self.slots.get_mut(i).unwrap_or(&mut self.spare)
    }

    fn schedule(&mut self, slot: u32, at_ms: u64) {
        let st = self.state_mut(slot);
        st.due_ms = at_ms;
        let generation = st.generation;
        self.heap.push(Reverse((at_ms, slot, generation)));
    }

    /// A spread of up to a quarter of the interval, fixed per slot, so servers that registered
    /// together drift apart.
    fn spread(&self, slot: u32) -> u64 {
        let quarter = self.config.interval_ms / 4;
        (u64::from(slot).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32)
            .checked_rem(quarter.max(1))
            .unwrap_or(0)
    }

    /// A new server took `who.slot`: probe it `after_ms` from now.
    pub fn track(&mut self, now: Time, who: Who, hidden: Option<Hidden>, after_ms: u64) {
        let Who {
            slot,
            generation,
            local,
            tag,
        } = who;
        *self.state_mut(slot) = State {
            generation,
            local,
            tag,
            hidden: hidden.map_or(0, |h| h as u8),
            ..State::default()
        };
        if let Some(p) = self.probed.get_mut(slot as usize) {
            *p = 0;
        }
        self.schedule(slot, now.millis().saturating_add(after_ms));
    }

    /// A restored server: first probe spread over one interval (a restart does not burst).
    pub fn track_restored(&mut self, now: Time, who: Who) {
        let after = self.spread(who.slot).saturating_mul(4);
        self.track(now, who, None, after);
    }

    /// Whether `slot` still holds the server `generation` names.
    fn live(&self, slot: u32, generation: u32) -> bool {
        self.slots
            .get(slot as usize)
            .is_some_and(|s| s.generation == generation)
    }

    /// The server in `slot` left the table: forget its body (clone counts).
    pub fn forget(&mut self, slot: u32, ip: IpKey) {
        if let Some(st) = self.slots.get_mut(slot as usize) {
            let body = std::mem::take(&mut st.body);
            st.generation = st.generation.wrapping_add(1);
            st.phase = Phase::Idle;
            st.hidden = 0;
            if body != 0 {
                self.uncount(ip, body);
            }
        }
    }

    fn uncount(&mut self, ip: IpKey, body: u64) {
        if let Some(c) = self.clones.get_mut(&(ip, body)) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.clones.remove(&(ip, body));
            }
        }
    }

    fn refill(&mut self, now: Time) {
        let rate = f64::from(self.config.rate.max(1));
        let elapsed = now.millis().saturating_sub(self.refilled_ms);
        self.refilled_ms = now.millis().max(self.refilled_ms);
        // Precision: milliseconds below 2⁵³ are exact in f64.
        self.tokens = (self.tokens + elapsed as f64 * rate / 1000.0).min((rate / 10.0).max(1.0));
    }

    /// Up to `max` (and [`MAX_DUE_PER_CALL`]) events due at `now`, in order, into `out`; sends are
    /// paced by the token bucket (what is over it stays due). `generation(slot)` is the table's
    /// current generation of a slot (`None`: free): events of servers gone since are dropped.
    pub fn due(
        &mut self,
        now: Time,
        max: usize,
        generation: impl Fn(u32) -> Option<u32>,
        out: &mut Vec<Due>,
    ) {
        if !self.config.enabled {
            return;
        }
        self.refill(now);
        let now_ms = now.millis();
        for _ in 0..max.min(MAX_DUE_PER_CALL) {
            let Some(&Reverse((at, slot, g))) = self.heap.peek() else {
                return;
            };
            if at > now_ms {
                return;
            }
            let stale = !self.live(slot, g)
                || generation(slot) != Some(g)
                || self.slots.get(slot as usize).map(|s| s.due_ms) != Some(at);
            if stale {
                self.heap.pop();
                continue;
            }
            let (timeout, retries, interval) = (
                self.config.timeout_ms,
                self.config.retries,
                self.config.interval_ms,
            );
            // Every datagram sent (first attempts and resends) takes a token.
            let sends = self
                .slots
                .get(slot as usize)
                .is_some_and(|s| s.phase == Phase::Idle || s.attempt < retries);
            if sends {
                if self.tokens < 1.0 {
                    return; // paced: the rest waits for tokens
                }
                self.tokens -= 1.0;
            }
            self.heap.pop();
            let st = self.state_mut(slot);
            let (event, wait) = match st.phase {
                Phase::Idle => {
                    st.phase = Phase::Sent;
                    st.attempt = 0;
                    st.sent_ms = now_ms;
                    (Due::Send { slot }, timeout)
                }
                Phase::Sent | Phase::Challenged if st.attempt < retries => {
                    st.attempt = st.attempt.saturating_add(1);
                    st.phase = Phase::Sent;
                    st.sent_ms = now_ms;
                    // Resends wait longer each time (a congested path gets room).
                    let wait = timeout.saturating_mul(u64::from(st.attempt).saturating_add(1));
                    (Due::Send { slot }, wait)
                }
                Phase::Sent | Phase::Challenged => {
                    st.phase = Phase::Idle;
                    st.misses = st.misses.saturating_add(1);
                    let misses = st.misses;
                    // After a miss the next probe comes sooner (a sixth of the interval, at
                    // least four timeouts): a dead server leaves the list within about one
                    // interval, a live one that lost a packet is asked again soon.
                    let again = (interval / 6).max(timeout.saturating_mul(4)).min(interval);
                    (Due::Missed { slot, misses }, again)
                }
            };
            self.schedule(slot, now_ms.saturating_add(wait));
            if let Due::Send { .. } = event {
                self.mark_probed(slot, now);
            }
            out.push(event);
        }
    }

    fn mark_probed(&mut self, slot: u32, now: Time) {
        if let Some(p) = self.probed.get_mut(slot as usize) {
            *p = now.secs_u32().max(1);
        }
    }

    /// Whether a probe of `slot` is waiting for an answer.
    pub fn awaiting(&self, slot: u32) -> bool {
        self.slots
            .get(slot as usize)
            .is_some_and(|s| s.phase != Phase::Idle)
    }

    /// Valve: the server answered with a challenge; `true` if the probe may be re-sent with it
    /// (one challenge step per attempt: a spoofed challenge cannot make us send more).
    pub fn challenged(&mut self, slot: u32) -> bool {
        match self.slots.get_mut(slot as usize) {
            Some(st) if st.phase == Phase::Sent => {
                st.phase = Phase::Challenged;
                true
            }
            _ => false,
        }
    }

    /// The server answered the probe in flight (its body hashed to `body`, 0 when not hashed):
    /// the next probe is due in an interval. Returns whether the answer made the server's address
    /// hold `clone_ports` or more identical bodies (a clone).
    pub fn answered(&mut self, now: Time, slot: u32, ip: IpKey, body: u64) -> bool {
        let now_ms = now.millis();
        let interval = self.config.interval_ms.saturating_add(self.spread(slot));
        let clone_ports = self.config.clone_ports;
        let st = self.state_mut(slot);
        let rtt = now_ms.saturating_sub(st.sent_ms);
        st.rtt_ms = u16::try_from(rtt).unwrap_or(u16::MAX);
        st.phase = Phase::Idle;
        st.misses = 0;
        st.answered_secs = now.secs_u32().max(1);
        let old = std::mem::replace(&mut st.body, body);
        self.schedule(slot, now_ms.saturating_add(interval));
        if old != body {
            if old != 0 {
                self.uncount(ip, old);
            }
            if body != 0 {
                let c = self.clones.entry((ip, body)).or_insert(0);
                *c = c.saturating_add(1);
            }
        }
        body != 0
            && clone_ports != 0
            && self.clones.get(&(ip, body)).copied().unwrap_or(0) >= clone_ports
    }

    /// The server in `slot` showed it is alive outside a probe (a DP registration is itself a
    /// `getinfo` answered).
    pub fn heard(&mut self, now: Time, slot: u32) {
        self.state_mut(slot).answered_secs = now.secs_u32().max(1);
    }

    /// Records why `slot` is hidden (`None`: listed).
    pub fn set_hidden(&mut self, slot: u32, why: Option<Hidden>) {
        self.state_mut(slot).hidden = why.map_or(0, |h| h as u8);
    }

    /// Every slot's brief, indexed by slot (for the operator's dump).
    pub fn briefs(&self, slots: usize) -> Vec<Brief> {
        (0..slots)
            .map(|i| {
                let s = self.slots.get(i).copied().unwrap_or_default();
                Brief {
                    hidden: s.hidden,
                    misses: s.misses,
                    rtt_ms: s.rtt_ms,
                    answered_secs: s.answered_secs,
                    probed_secs: self.probed.get(i).copied().unwrap_or(0),
                }
            })
            .collect()
    }

    /// Events scheduled (live and stale): bounded by twice the slots plus what is due.
    pub fn scheduled(&self) -> usize {
        self.heap.len()
    }
}

/// The hash that identifies an answer's body for clone detection (not the port: a faker's
/// clones may each name their own).
pub fn body_hash(parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x6d75_7374, 0x6572_7072);
    for p in parts {
        h.write(p);
        h.write_u8(0xff);
    }
    h.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn cfg() -> ProbeConfig {
        ProbeConfig {
            rate: 1000,
            ..ProbeConfig::default()
        }
    }

    fn due(p: &mut Prober, now: Time) -> Vec<Due> {
        let mut out = Vec::new();
        p.due(now, usize::MAX, |_| Some(0), &mut out);
        out
    }

    fn who(slot: u32, generation: u32) -> Who {
        Who {
            slot,
            generation,
            ..Who::default()
        }
    }

    fn ip() -> IpKey {
        IpKey::new(IpAddr::from([1, 2, 3, 4]))
    }

    #[test]
    fn a_probe_is_resent_then_missed_then_the_next_comes_sooner() {
        let mut p = Prober::new(Time::ZERO, cfg());
        p.track(Time::ZERO, who(3, 0), Some(Hidden::Unproven), 0);
        assert_eq!(due(&mut p, Time::ZERO), [Due::Send { slot: 3 }]);
        assert!(p.awaiting(3));
        assert!(due(&mut p, Time::from_millis(999)).is_empty());
        assert_eq!(
            due(&mut p, Time::from_millis(1000)),
            [Due::Send { slot: 3 }],
            "one resend"
        );
        // The resend waits twice the timeout.
        assert!(due(&mut p, Time::from_millis(2999)).is_empty());
        assert_eq!(
            due(&mut p, Time::from_millis(3000)),
            [Due::Missed { slot: 3, misses: 1 }]
        );
        assert!(!p.awaiting(3));
        // After a miss the next probe comes a sixth of the interval later.
        let next = Time::from_millis(3000 + DEFAULT_PROBE_INTERVAL_MS / 6);
        assert!(due(&mut p, Time::from_millis(next.millis() - 1)).is_empty());
        assert_eq!(due(&mut p, next), [Due::Send { slot: 3 }]);
    }

    #[test]
    fn an_answer_resets_misses_records_the_round_trip_and_schedules_the_next() {
        let mut p = Prober::new(Time::ZERO, cfg());
        p.track(Time::ZERO, who(0, 0), None, 0);
        due(&mut p, Time::ZERO);
        assert!(!p.answered(Time::from_millis(42), 0, ip(), 7));
        let s = p.state(0).copied().unwrap();
        assert_eq!((s.rtt_ms, s.misses, s.phase), (42, 0, Phase::Idle));
        // The pending timeout is stale now: nothing comes due until the interval.
        assert!(due(&mut p, Time::from_millis(5000)).is_empty());
        let b = p.briefs(1);
        assert_eq!(b[0].rtt_ms, 42);
        assert_eq!(b[0].hidden(), None);
    }

    #[test]
    fn sending_is_paced_by_the_rate() {
        let mut p = Prober::new(Time::ZERO, ProbeConfig { rate: 100, ..cfg() });
        for s in 0..1000 {
            p.track(Time::ZERO, who(s, 0), None, 0);
        }
        // A burst of a tenth of a second's worth, then 100 a second.
        assert_eq!(due(&mut p, Time::ZERO).len(), 10);
        let mut sent = 10;
        for ms in (100..=10_000).step_by(100) {
            sent += due(&mut p, Time::from_millis(ms))
                .iter()
                .filter(|d| matches!(d, Due::Send { .. }))
                .count();
        }
        assert!((1000..=1010).contains(&sent), "{sent} in 10 s at 100/s");
    }

    #[test]
    fn a_freed_or_reused_slot_drops_its_events() {
        let mut p = Prober::new(Time::ZERO, cfg());
        p.track(Time::ZERO, who(0, 0), None, 0);
        p.forget(0, ip());
        assert!(due(&mut p, Time::ZERO).is_empty());
        p.track(Time::ZERO, who(1, 5), None, 0);
        let mut out = Vec::new();
        p.due(Time::ZERO, 10, |_| Some(6), &mut out);
        assert!(out.is_empty(), "the table holds another generation");
    }

    #[test]
    fn one_address_answering_from_many_ports_with_one_body_is_a_clone() {
        let mut p = Prober::new(
            Time::ZERO,
            ProbeConfig {
                clone_ports: 3,
                ..cfg()
            },
        );
        let body = body_hash(&[b"Fake server", b"de_dust2"]);
        let clones: Vec<bool> = (0..4)
            .map(|s| {
                p.track(Time::ZERO, who(s, 0), None, 0);
                p.answered(Time::ZERO, s, ip(), body)
            })
            .collect();
        assert_eq!(clones, [false, false, true, true]);
        // One leaving brings the count under the threshold for the next answer.
        p.forget(0, ip());
        p.forget(1, ip());
        assert!(!p.answered(Time::from_secs(1), 2, ip(), body));
        // Another body on the same address is not a clone.
        assert!(!p.answered(Time::from_secs(1), 3, ip(), body_hash(&[b"Real"])));
    }

    #[test]
    fn a_challenge_step_is_taken_once_per_attempt() {
        let mut p = Prober::new(Time::ZERO, cfg());
        p.track(Time::ZERO, who(0, 0), None, 0);
        assert!(!p.challenged(0), "no probe in flight");
        due(&mut p, Time::ZERO);
        assert!(p.challenged(0));
        assert!(!p.challenged(0), "a second challenge is ignored");
    }

    #[test]
    fn hidden_reasons_round_trip_with_their_names() {
        for h in Hidden::ALL {
            assert_eq!(Hidden::from_u8(h as u8), Some(h));
        }
        assert_eq!(Hidden::from_u8(0), None);
        assert_eq!(Hidden::Silent.name(), "probe_timeouts");
    }
}
