//! Per-shard counters: plain integers, summed across cores on demand.

use std::ops::AddAssign;

/// Why a datagram was dropped without effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// Not any message muster knows.
    Unknown,
    /// A known message that failed to decode.
    Malformed,
    /// A message a master never receives (replies, A2S…).
    Unexpected,
    /// A heartbeat or infoResponse whose challenge is wrong, stale or absent.
    BadChallenge,
    /// A registration from port 0, an unspecified, multicast or broadcast address.
    InvalidAddress,
    /// A registration from a loopback or private address while those are not allowed.
    PrivateAddress,
    /// A DP heartbeat with a flatline or unknown tag.
    UnknownTag,
    /// A DP game the game policy rejects.
    GameRejected,
    /// A registration missing a required key (or with a bad value for one).
    MissingKey,
    /// The per-address cap is reached.
    PerIpCap,
    /// The table cap is reached.
    TableFull,
    /// A `b` shutdown: it carries no proof of origin, so it is ignored (the timeout delists).
    Shutdown,
    /// A list query over its source's query rate (admission).
    SourceQueries,
    /// A list query from a source whose reply-byte budget is spent.
    SourceBytes,
    /// A list query over its network's (/24, /48) query rate, unvalidated sources.
    NetworkQueries,
    /// A list query from a network whose reply-byte budget is spent.
    NetworkBytes,
    /// A DarkPlaces or Xash3D reply refused by the master-wide budget for unproven addresses.
    UnprovenBytes,
    /// A challenge request over its source's rate.
    SourceChallenges,
    /// A challenge request over the core's rate.
    CoreChallenges,
    /// A reply refused because the core's transmit queue holds its maximum of bytes.
    TxFull,
    /// A list query shed while the core was saturated (registrations kept priority).
    Shed,
    /// From a banned network (`ban` in the config).
    Banned,
    /// While the master-wide budget is saturated, a network's new sources drew their fair share.
    NetworkShare,
    /// A filtered query refused by a scan (work) budget: its source's, network's or core's.
    Scan,
    /// A new source (or network) that admission could not track: every entry that could have
    /// made room holds a proof, a bar or a debt.
    AdmissionFull,
    /// A challenge refused because the shard holds its most handshakes in progress.
    PendingFull,
    /// The per-network (/24, /48) cap is reached.
    PerNetCap,
    /// A probe answer (A2S) from an address with no probe in flight.
    Unsolicited,
}

impl DropReason {
    pub const COUNT: usize = 28;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Unknown,
        DropReason::Malformed,
        DropReason::Unexpected,
        DropReason::BadChallenge,
        DropReason::InvalidAddress,
        DropReason::PrivateAddress,
        DropReason::UnknownTag,
        DropReason::GameRejected,
        DropReason::MissingKey,
        DropReason::PerIpCap,
        DropReason::TableFull,
        DropReason::Shutdown,
        DropReason::SourceQueries,
        DropReason::SourceBytes,
        DropReason::NetworkQueries,
        DropReason::NetworkBytes,
        DropReason::UnprovenBytes,
        DropReason::SourceChallenges,
        DropReason::CoreChallenges,
        DropReason::TxFull,
        DropReason::Shed,
        DropReason::Banned,
        DropReason::NetworkShare,
        DropReason::Scan,
        DropReason::AdmissionFull,
        DropReason::PendingFull,
        DropReason::PerNetCap,
        DropReason::Unsolicited,
    ];

    /// The label used in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Unknown => "unknown",
            DropReason::Malformed => "malformed",
            DropReason::Unexpected => "unexpected",
            DropReason::BadChallenge => "bad_challenge",
            DropReason::InvalidAddress => "invalid_address",
            DropReason::PrivateAddress => "private_address",
            DropReason::UnknownTag => "unknown_tag",
            DropReason::GameRejected => "game_rejected",
            DropReason::MissingKey => "missing_key",
            DropReason::PerIpCap => "per_ip_cap",
            DropReason::TableFull => "table_full",
            DropReason::Shutdown => "shutdown_ignored",
            DropReason::SourceQueries => "source_queries",
            DropReason::SourceBytes => "source_bytes",
            DropReason::NetworkQueries => "network_queries",
            DropReason::NetworkBytes => "network_bytes",
            DropReason::UnprovenBytes => "unproven_bytes",
            DropReason::SourceChallenges => "source_challenges",
            DropReason::CoreChallenges => "core_challenges",
            DropReason::TxFull => "tx_full",
            DropReason::Shed => "shed",
            DropReason::Banned => "banned",
            DropReason::NetworkShare => "network_share",
            DropReason::Scan => "scan",
            DropReason::AdmissionFull => "admission_full",
            DropReason::PendingFull => "pending_full",
            DropReason::PerNetCap => "per_net_cap",
            DropReason::Unsolicited => "unsolicited_answer",
        }
    }

    /// Whether this is admission control (or a ban) refusing a source: what the operator's "top
    /// refused sources" counts.
    pub const fn is_refusal(self) -> bool {
        matches!(
            self,
            DropReason::SourceQueries
                | DropReason::SourceBytes
                | DropReason::NetworkQueries
                | DropReason::NetworkBytes
                | DropReason::UnprovenBytes
                | DropReason::NetworkShare
                | DropReason::Scan
                | DropReason::AdmissionFull
                | DropReason::SourceChallenges
                | DropReason::CoreChallenges
                | DropReason::Banned
        )
    }
}

/// What one shard has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub received: u64,
    /// Datagrams sent in reply.
    pub answered: u64,
    pub challenges_sent: u64,
    /// New servers listed.
    pub registered: u64,
    /// Listed servers whose heartbeat refreshed them.
    pub refreshed: u64,
    pub expired: u64,
    pub valve_queries: u64,
    pub dp_queries: u64,
    /// Candidates examined by filtered Valve queries.
    pub scanned: u64,
    /// Filtered Valve queries cut short by the scan cap.
    pub scan_capped: u64,
    /// Multi-packet replies paced beyond their window.
    pub paced: u64,
    /// DP answers encoded as they were sent (filtered: not the shared `empty full` encoding).
    pub dp_streams: u64,
    /// Paced replies superseded by a newer one to the same client.
    pub superseded: u64,
    /// Valve queries whose filter did not parse (answered with the empty final page).
    pub bad_filters: u64,
    /// Xash3D queries (answered with a burst).
    pub xash_queries: u64,
    /// Of those, old clients answered with the update entry (`xash.min_clver`).
    pub xash_updates: u64,
    /// Of those, answered with a burst built for an earlier query of the same filter and list.
    pub xash_bursts_reused: u64,
    /// Servers listed from the state file at start.
    pub restored: u64,
    /// Servers delisted by a config reload (a ban, a game no longer accepted).
    pub delisted: u64,
    /// Valve walks begun, proven by their first page's end, and continuations that were no page
    /// end sent (a guess: the source was barred from proving).
    pub walks: u64,
    pub walk_proofs: u64,
    pub wrong_continuations: u64,
    /// Reply bytes admitted to unproven addresses (DarkPlaces, Xash3D) by this shard.
    pub unproven_bytes: u64,
    /// Liveness probes sent (resends and challenge steps included), answered, and missed
    /// (every attempt unanswered).
    pub probes_sent: u64,
    pub probes_answered: u64,
    pub probe_timeouts: u64,
    /// Servers hidden, by [`Hidden`](crate::master::probe::Hidden) code − 1, and shown again.
    pub hidden: [u64; 5],
    pub shown: u64,
    /// Servers listed or refreshed on a peer's word (peering).
    pub forwarded_in: u64,
    /// Forwarded servers removed because their origin stopped listing them (peering).
    pub forwarded_gone: u64,
    pub dropped: [u64; DropReason::COUNT],
}

/// Counts one event. Counters wrap rather than panic (2⁶⁴ events never happen; a panic on the
/// packet path must not be possible at all).
pub fn inc(c: &mut u64) {
    *c = c.wrapping_add(1);
}

/// Counts `n` events.
pub fn add(c: &mut u64, n: u64) {
    *c = c.wrapping_add(n);
}

impl Counters {
    pub fn drop(&mut self, why: DropReason) {
        if let Some(c) = self.dropped.get_mut(why as usize) {
            inc(c);
        }
    }

    pub fn dropped(&self, why: DropReason) -> u64 {
        self.dropped.get(why as usize).copied().unwrap_or(0)
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().fold(0, |a, b| a.wrapping_add(*b))
    }
}

impl AddAssign<&Counters> for Counters {
    fn add_assign(&mut self, o: &Counters) {
        add(&mut self.received, o.received);
        add(&mut self.answered, o.answered);
        add(&mut self.challenges_sent, o.challenges_sent);
        add(&mut self.registered, o.registered);
        add(&mut self.refreshed, o.refreshed);
        add(&mut self.expired, o.expired);
        add(&mut self.valve_queries, o.valve_queries);
        add(&mut self.dp_queries, o.dp_queries);
        add(&mut self.scanned, o.scanned);
        add(&mut self.scan_capped, o.scan_capped);
        add(&mut self.paced, o.paced);
        add(&mut self.dp_streams, o.dp_streams);
        add(&mut self.superseded, o.superseded);
        add(&mut self.bad_filters, o.bad_filters);
        add(&mut self.xash_queries, o.xash_queries);
        add(&mut self.xash_updates, o.xash_updates);
        add(&mut self.restored, o.restored);
        add(&mut self.delisted, o.delisted);
        add(&mut self.walks, o.walks);
        add(&mut self.walk_proofs, o.walk_proofs);
        add(&mut self.wrong_continuations, o.wrong_continuations);
        add(&mut self.unproven_bytes, o.unproven_bytes);
        add(&mut self.probes_sent, o.probes_sent);
        add(&mut self.probes_answered, o.probes_answered);
        add(&mut self.probe_timeouts, o.probe_timeouts);
        add(&mut self.shown, o.shown);
        add(&mut self.forwarded_in, o.forwarded_in);
        add(&mut self.forwarded_gone, o.forwarded_gone);
        add(&mut self.xash_bursts_reused, o.xash_bursts_reused);
        for (a, b) in self.hidden.iter_mut().zip(o.hidden) {
            add(a, b);
        }
        for (a, b) in self.dropped.iter_mut().zip(o.dropped) {
            add(a, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_slot_and_sum() {
        for (i, d) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i);
        }
        let mut a = Counters::default();
        a.drop(DropReason::BadChallenge);
        a.received = 2;
        let mut total = Counters::default();
        total += &a;
        total += &a;
        assert_eq!(
            (
                total.received,
                total.dropped(DropReason::BadChallenge),
                total.dropped_total()
            ),
            (4, 2, 2)
        );
    }
}
