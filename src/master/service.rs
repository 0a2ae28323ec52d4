//! The master as a pure state machine: `handle(now, from, local, datagram)` queues what to send,
//! `poll_transmit(now)` / `poll_timeout()` hand it out when due (`transmit.rs`), `tick(now, budget)`
//! expires servers. Every list reply is admitted first (`admission.rs`).
//!
//! One [`Master`] is one shard (one core). Registration touches only its own table; list queries are
//! answered from the [`List`] every shard shares: each shard publishes a snapshot of its table
//! ([`Master::publish`]), the [`ListBuilder`](super::builder::ListBuilder) merges them off the
//! packet cores, and every shard installs the result ([`Master::install_list`]).
//!
//! Registration, both families (shared/docs/protocols.md §2–3):
//! - Valve: `q` → challenge (stateless MAC, nothing stored) → `0\n` heartbeat whose challenge
//!   verifies → listed or refreshed.
//! - DP: `heartbeat <known tag>` → `getinfo <challenge>` (stateless; it encodes the tag) →
//!   `infoResponse` with a verifying challenge and every required key → listed or refreshed. Only a
//!   valid `infoResponse` refreshes a DP server.
//! - `b` shutdowns are ignored and counted: they carry no proof, so honouring one would let anyone
//!   delist any server by spoofing its address (xash3d-master does the same). A server that stops
//!   leaves the list at the timeout.

use super::admission::{Admission, AdmissionConfig, Grant, Step, unproven_page_entries};
use super::bans::NetSet;
use super::budget::Budget;
use super::challenge::Challenges;
use super::counters::{Counters, Drop, add, inc};
use super::games::Games;
use super::list::{DpReply, List, Packets, Scan, ValvePage};
use super::policy::{self, AddressVerdict, GamePolicy, Limits};
use super::record::{Family, flags, number, small_number};
use super::refused::{Source, TopRefused};
use super::table::{Fields, ShardDump, ShardSnapshot, Table, Upserted};
use super::time::Time;
use super::transmit::{Payload, Transmit, TxConfig, TxQueue};
use super::unproven::Unproven;
use crate::wire::dp_list::{ListQuery as DpQuery, MAX_RESPONSE_LEN};
use crate::wire::dp_server::{GetInfo, Heartbeat as DpHeartbeat, InfoResponse};
use crate::wire::filter::Filter;
use crate::wire::infostring::InfoString;
use crate::wire::valve_heartbeat::{ChallengeReply, ServerMessage};
use crate::wire::valve_list::{
    ENTRY_LEN, ListQuery, MAX_PAGE_ENTRIES, NULL_ADDR, PAGE_HEADER, Region,
};
use crate::wire::xash::{BurstWriter, XashQuery};
use crate::wire::{Kind, classify};
use std::net::SocketAddr;
use std::sync::Arc;

/// List queries handled per batch while the core is saturated (the rest are shed, counted);
/// registrations in the batch are all handled, first.
pub const SATURATED_QUERY_BUDGET: usize = 16;

/// Everything a shard needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub limits: Limits,
    pub games: GamePolicy,
    /// The challenge secret, the same on every core (so any core verifies any challenge).
    pub secret: [u8; 16],
    pub valve_challenge_window_ms: u64,
    pub dp_challenge_window_ms: u64,
    /// Largest DP response packet (dpmaster: 1400).
    pub max_dp_packet: usize,
    pub admission: AdmissionConfig,
    pub tx: TxConfig,
    /// The global table cap shared by every shard (`None`: `limits.max_servers` is this shard's own).
    pub budget: Option<Budget>,
    /// The master-wide budget for replies to unproven addresses, shared by every shard (`None`:
    /// this shard's own).
    pub unproven: Option<Arc<Unproven>>,
    /// Bytes of interned strings all shards may hold together (split evenly).
    pub max_string_bytes: usize,
    pub xash: XashConfig,
    /// Heartbeat tags, anonymous protocols and per-game list options (`[[game]]`).
    pub game_props: Arc<Games>,
    /// Networks whose datagrams are dropped and whose servers are not listed (`ban`).
    pub bans: Arc<NetSet>,
}

/// Xash3D behaviours behind switches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XashConfig {
    /// Clients whose `\clver\` is older than this (`major`, `minor`) get one entry, `update_addr`,
    /// instead of the list — xash3d-master's way to tell old clients to update (its default 0.21).
    /// `None` (muster's default): every client gets the list.
    pub min_clver: Option<(u32, u32)>,
    /// The entry old clients get (a server whose name says to update).
    pub update_addr: Option<SocketAddr>,
}

impl Config {
    /// Defaults with the given secret.
    pub fn with_secret(secret: [u8; 16]) -> Self {
        Self {
            limits: Limits::default(),
            games: GamePolicy::default(),
            secret,
            valve_challenge_window_ms: super::challenge::DEFAULT_VALVE_WINDOW_MS,
            dp_challenge_window_ms: super::challenge::DEFAULT_DP_WINDOW_MS,
            max_dp_packet: MAX_RESPONSE_LEN,
            admission: AdmissionConfig::default(),
            tx: TxConfig::default(),
            budget: None,
            unproven: None,
            max_string_bytes: DEFAULT_MAX_STRING_BYTES,
            xash: XashConfig::default(),
            game_props: Arc::new(Games::default()),
            bans: Arc::new(NetSet::default()),
        }
    }
}

/// Interned strings held by all shards together: ~69 bytes a server at a million servers whose
/// names are all distinct (a 21-byte name plus its keeping), and the bound on the worst case.
pub const DEFAULT_MAX_STRING_BYTES: usize = 128 * 1024 * 1024;

/// One received datagram: who sent it, which of the engine's listeners it came in on, its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub from: SocketAddr,
    pub local: u8,
    pub bytes: &'a [u8],
}

/// Whether a message registers a game server (these keep priority when the core is saturated).
fn is_registration(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::ValveChallengeRequest
            | Kind::ValveHeartbeat
            | Kind::ValveShutdown
            | Kind::DpHeartbeat
            | Kind::DpInfoResponse
    )
}

/// One shard of the master.
#[derive(Debug)]
pub struct Master {
    config: Config,
    challenges: Challenges,
    table: Table,
    list: Arc<List>,
    shard: usize,
    admission: Admission,
    tx: TxQueue,
    /// Where filtered Valve pages are encoded (reused).
    scratch: Vec<u8>,
    counters: Counters,
    refused: TopRefused,
}

fn is_one(v: Option<&[u8]>) -> bool {
    v == Some(b"1")
}

impl Master {
    /// Shard `shard` of `shards` (the engine runs one per core; tests may run one alone).
    pub fn new(now: Time, config: Config, shard: usize, shards: usize) -> Self {
        let shards = shards.max(1);
        Self {
            challenges: Challenges::new(
                config.secret,
                config.valve_challenge_window_ms,
                config.dp_challenge_window_ms,
            ),
            table: Table::with_budget(
                now,
                config.limits.clone(),
                config
                    .budget
                    .clone()
                    .unwrap_or_else(|| Budget::shared(config.limits.max_servers, 1)),
                config.max_string_bytes.checked_div(shards).unwrap_or(0),
            ),
            list: super::builder::empty_list(shards, config.max_dp_packet),
            shard: shard.min(shards.saturating_sub(1)),
            admission: Admission::shared(
                now,
                config.admission.clone(),
                config.unproven.clone().unwrap_or_else(|| Unproven::new(1)),
                if config.unproven.is_some() { shard } else { 0 },
            ),
            tx: TxQueue::new(config.tx),
            scratch: Vec::new(),
            counters: Counters::default(),
            refused: TopRefused::new(now),
            config,
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn list(&self) -> &Arc<List> {
        &self.list
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    pub fn tx(&self) -> &TxQueue {
        &self.tx
    }

    /// Which shard this is.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// For every shard, the epoch of its snapshot in the list this shard serves (0: none yet). A
    /// test or operator compares these across cores to know every core is up to date.
    pub fn list_epochs(&self) -> Vec<u64> {
        self.list.shard_epochs()
    }

    /// Handles one datagram from `from` that came in on listener `local`. Replies are queued:
    /// [`poll_transmit`](Self::poll_transmit) hands them out. `Err` says why it had no effect
    /// (also counted).
    pub fn handle(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), Drop> {
        inc(&mut self.counters.received);
        let from = policy::canonical(from);
        let done = if self.config.bans.contains(from.ip()) {
            Err(Drop::Banned)
        } else {
            self.dispatch(now, from, local, datagram)
        };
        if let Err(why) = done {
            self.counters.drop(why);
            if why.is_refusal() {
                self.refused.record(now, from.ip());
            }
        }
        let a = self.admission.stats();
        let c = &mut self.counters;
        (
            c.walks,
            c.walk_proofs,
            c.wrong_continuations,
            c.unproven_bytes,
        ) = (a.walks, a.proofs, a.wrong_continuations, a.unproven_bytes);
        done
    }

    fn dispatch(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), Drop> {
        match classify(datagram) {
            Kind::ValveListQuery => self.valve_query(now, from, local, datagram),
            Kind::ValveChallengeRequest | Kind::ValveHeartbeat | Kind::ValveShutdown => {
                self.valve_server(now, from, local, datagram)
            }
            Kind::DpHeartbeat => self.dp_heartbeat(now, from, local, datagram),
            Kind::DpInfoResponse => self.dp_info(now, from, datagram),
            Kind::DpGetServers | Kind::DpGetServersExt => self.dp_query(now, from, local, datagram),
            Kind::Unknown => Err(Drop::Unknown),
            _ => Err(Drop::Unexpected),
        }
    }

    /// Handles a batch of datagrams: registrations first, then list queries — at most
    /// [`SATURATED_QUERY_BUDGET`] of them when `saturated` (the engine's receive queue is backing
    /// up), the rest shed and counted, so game servers keep registering whatever the query load.
    pub fn handle_batch(&mut self, now: Time, batch: &[Datagram<'_>], saturated: bool) {
        for d in batch.iter().filter(|d| is_registration(classify(d.bytes))) {
            let _ = self.handle(now, d.from, d.local, d.bytes);
        }
        let mut budget = if saturated {
            SATURATED_QUERY_BUDGET
        } else {
            usize::MAX
        };
        for d in batch.iter().filter(|d| !is_registration(classify(d.bytes))) {
            match budget.checked_sub(1) {
                Some(left) => {
                    budget = left;
                    let _ = self.handle(now, d.from, d.local, d.bytes);
                }
                None => {
                    inc(&mut self.counters.received);
                    self.counters.drop(Drop::Shed);
                }
            }
        }
    }

    /// Moves what is due at `now` into `out` (at most `max` transmits).
    pub fn poll_transmit(&mut self, now: Time, out: &mut Vec<Transmit>, max: usize) {
        self.tx.poll_transmit(now, out, max);
    }

    /// Puts back, at the front and in order, transmits the socket did not take.
    pub fn unsent(&mut self, back: impl DoubleEndedIterator<Item = Transmit>) {
        self.tx.unsent(back);
    }

    /// When something next comes due to send (`None`: nothing queued).
    pub fn poll_timeout(&mut self) -> Option<Time> {
        self.tx.poll_timeout()
    }

    /// Every transmit due at `now` (tests and simulations).
    pub fn transmits(&mut self, now: Time) -> Vec<Transmit> {
        let mut out = Vec::new();
        self.tx.poll_transmit(now, &mut out, usize::MAX);
        out
    }

    /// The kernel refused GSO: send one datagram per transmit from now on.
    pub fn disable_gso(&mut self) {
        self.tx.disable_gso();
    }

    /// No challenge to a server that could not be listed (dpmaster 2.2 sends no `getinfo` then):
    /// a full table or address spends nothing on handshakes that would be dropped.
    fn could_list(&self, from: SocketAddr) -> Result<(), Drop> {
        self.table.could_list(from).map_err(Drop::from)
    }

    fn address_ok(&self, from: SocketAddr) -> Result<(), Drop> {
        match policy::check_address(from, self.config.limits.allow_private) {
            AddressVerdict::Ok => Ok(()),
            AddressVerdict::Invalid => Err(Drop::InvalidAddress),
            AddressVerdict::Private => Err(Drop::PrivateAddress),
        }
    }

    /// Queues a one-datagram reply.
    fn reply(&mut self, to: SocketAddr, local: u8, payload: Payload) -> Result<(), Drop> {
        self.tx.send(to, local, payload).map_err(|_| Drop::TxFull)?;
        inc(&mut self.counters.answered);
        Ok(())
    }

    /// Counts a scan and charges it to the budgets it was admitted against.
    fn account_scan(&mut self, now: Time, grant: Grant, scan: Scan) {
        add(&mut self.counters.scanned, scan.examined as u64);
        if scan.capped {
            inc(&mut self.counters.scan_capped);
        }
        self.admission.charge_scan(now, grant, scan.units());
    }

    /// The empty final page (header and terminator: 12 bytes, under 3× the shortest query).
    fn empty_final_page(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        grant: Grant,
    ) -> Result<(), Drop> {
        let mut page = [0u8; PAGE_HEADER.len() + ENTRY_LEN];
        if let Some(h) = page.get_mut(..PAGE_HEADER.len()) {
            h.copy_from_slice(&PAGE_HEADER);
        }
        let payload = Payload::small(&page).ok_or(Drop::Malformed)?;
        if !self.tx.has_room(page.len()) {
            return Err(Drop::TxFull);
        }
        self.admission.charge(now, grant, page.len());
        self.reply(from, local, payload)
    }

    /// A Valve query: a page of the client's walk (`admission.rs`: the QUIC rule until the walk is
    /// proven), or a Xash3D burst, or the empty final page for a filter muster cannot read.
    fn valve_query(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), Drop> {
        let q = ListQuery::decode(datagram).map_err(|_| Drop::Malformed)?;
        // One parse: the filter's neutral keys say whether a Xash3D client asks.
        let parsed = Filter::parse(q.filter)
            .ok()
            .and_then(|f| XashQuery::from_filter(&f).ok().map(|x| (f, x)));
        let grant = self.admission.admit_query(now, from)?;
        inc(&mut self.counters.valve_queries);
        let Some((filter, xash)) = parsed else {
            // A filter muster cannot read: the empty final page, so the client stops at once
            // instead of waiting out its timeout (Steam's master answers the same way).
            inc(&mut self.counters.bad_filters);
            return self.empty_final_page(now, from, local, grant);
        };
        if let Some(x) = xash {
            return self.xash_query(now, from, local, grant, &q, &filter, x);
        }
        let scans = !filter.is_empty() || !matches!(q.region, Region::All | Region::Unknown(_));
        if scans {
            let estimate = self.list.scan_estimate(q.region, &filter);
            self.admission.admit_scan(now, grant, estimate)?;
        }
        let seed = super::record::AddrKey::new(q.seed.into()).v4_entry();
        let walk = self.challenges.walk_key(u8::from(q.region), q.filter);
        let continues = (q.seed != NULL_ADDR).then_some(seed);
        let step = match self.admission.valve_step(now, grant, walk, continues) {
            Step::NeedStart => {
                // A new walk starts at a random match, chosen by a keyed MAC of the client and
                // the instant: the end of its first page is one of M, whatever the spoofer knows.
                let random = self.challenges.walk_random(now, from);
                let (start, scan) = self.list.valve_walk_start(q.region, &filter, random);
                self.account_scan(now, grant, scan);
                if start.is_none() {
                    // Nothing matches (within MAX_SCAN, where a page's own scan would stop too):
                    // the empty final page, without scanning them all again.
                    return self.empty_final_page(now, from, local, grant);
                }
                let start = start.unwrap_or([0; 6]);
                self.admission.begin_walk(now, grant, walk, start);
                Step::Walk { start, full: false }
            }
            step => step,
        };
        let (start, capacity) = match step {
            Step::Walk { start, full: false } => (start, unproven_page_entries(datagram.len())),
            Step::Walk { start, full: true } => (start, MAX_PAGE_ENTRIES),
            Step::Plain | Step::NeedStart => ([0; 6], MAX_PAGE_ENTRIES),
        };
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let (page, scan) = self
            .list
            .valve_page(q.region, seed, start, &filter, capacity, &mut out);
        self.account_scan(now, grant, scan);
        let last_entry = |b: &[u8]| -> Option<[u8; ENTRY_LEN]> {
            b.len()
                .checked_sub(ENTRY_LEN)
                .and_then(|at| b.get(at..))
                .and_then(|e| e.try_into().ok())
        };
        let final_page = page.is_last();
        let (payload, end) = match page {
            ValvePage::Shared {
                entries,
                range,
                last,
            } => {
                let end = entries.get(range.clone()).and_then(last_entry);
                (
                    Payload::Page {
                        entries,
                        range,
                        last,
                    },
                    end,
                )
            }
            ValvePage::Written { .. } => {
                let end = last_entry(&out);
                (Payload::Owned(out.as_slice().into()), end)
            }
        };
        self.scratch = out;
        let len = payload.len();
        if !self.tx.has_room(len) {
            return Err(Drop::TxFull);
        }
        self.admission.charge(now, grant, len);
        if step != Step::Plain {
            self.admission
                .page_sent(grant, walk, end.filter(|_| !final_page));
        }
        self.reply(from, local, payload)
    }

    /// A Xash3D query: the whole filtered list at once, as a burst ([`crate::wire::xash`]); a
    /// client older than `xash.min_clver` gets only the configured update entry instead.
    #[allow(clippy::too_many_arguments)]
    fn xash_query(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        grant: Grant,
        q: &ListQuery<'_>,
        filter: &Filter<'_>,
        x: XashQuery<'_>,
    ) -> Result<(), Drop> {
        inc(&mut self.counters.xash_queries);
        // Nothing built for a burst the master-wide budget would refuse.
        self.admission.unproven_open(now, grant)?;
        // A burst visits the whole candidate list: its size (in units) bounds the work.
        let candidates = if from.is_ipv6() {
            self.list.valve6_len()
        } else {
            self.list.valve_len()
        };
        let estimate = candidates
            .saturating_mul(super::matcher::scan_weight(filter))
            .min(super::list::MAX_SCAN);
        self.admission.admit_scan(now, grant, estimate)?;
        let v6 = from.is_ipv6();
        let mut packets = Packets::default();
        let update = self
            .config
            .xash
            .min_clver
            .filter(|&min| x.older_than(min))
            .and(self.config.xash.update_addr);
        if let Some(addr) = update {
            let mut w = BurstWriter::new(v6, x.key, &mut packets.bytes, &mut packets.ends);
            let _ = w.push(addr);
            w.finish();
            inc(&mut self.counters.xash_updates);
        } else {
            let scan = self
                .list
                .xash_burst(v6, q.region, filter, x.key, &mut packets);
            self.account_scan(now, grant, scan);
        }
        let bound = packets.bytes.len();
        if !self.tx.has_room(bound) {
            return Err(Drop::TxFull);
        }
        // No round trip proves a Xash3D client: the master-wide budget for unproven addresses.
        self.admission.admit_unproven(now, grant, bound)?;
        self.admission.charge(now, grant, bound);
        add(&mut self.counters.answered, packets.ends.len() as u64);
        let before = self.tx.stats();
        self.tx
            .send_packets(now, from, local, Arc::new(packets))
            .map_err(|_| Drop::TxFull)?;
        let after = self.tx.stats();
        add(
            &mut self.counters.paced,
            after.paced.wrapping_sub(before.paced),
        );
        Ok(())
    }

    fn valve_server(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), Drop> {
        match ServerMessage::decode(datagram).map_err(|_| Drop::Malformed)? {
            ServerMessage::ChallengeRequest { nonce, .. } => {
                self.address_ok(from)?;
                self.could_list(from)?;
                self.admission.admit_challenge(now, from)?;
                // The handshake holds a place until it completes or lapses (dpmaster's count).
                self.table.reserve(now, from)?;
                let challenge = self.challenges.valve(now, from);
                let mut b = Vec::with_capacity(16);
                ChallengeReply { challenge, nonce }.encode(&mut b);
                let payload = Payload::small(&b).ok_or(Drop::Malformed)?;
                self.reply(from, local, payload)?;
                inc(&mut self.counters.challenges_sent);
                Ok(())
            }
            ServerMessage::Heartbeat(hb) => {
                self.address_ok(from)?;
                let challenge = hb.challenge().ok_or(Drop::BadChallenge)?;
                if !self.challenges.verify_valve(now, from, challenge) {
                    return Err(Drop::BadChallenge);
                }
                let fields = valve_fields(&hb.info).ok_or(Drop::MissingKey)?;
                self.upsert(now, from, Family::Valve, &fields)
            }
            ServerMessage::Shutdown { .. } => Err(Drop::Shutdown),
        }
    }

    fn dp_heartbeat(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), Drop> {
        let hb = DpHeartbeat::decode(datagram).map_err(|_| Drop::Malformed)?;
        let tag = self
            .config
            .game_props
            .tag_index(hb.tag)
            .ok_or(Drop::UnknownTag)?;
        self.address_ok(from)?;
        self.could_list(from)?;
        self.admission.admit_challenge(now, from)?;
        self.table.reserve(now, from)?;
        let challenge = self.challenges.dp(now, from, tag);
        let mut b = Vec::with_capacity(32);
        GetInfo {
            challenge: challenge.as_bytes(),
        }
        .encode(&mut b)
        .map_err(|_| Drop::Malformed)?;
        let payload = Payload::small(&b).ok_or(Drop::Malformed)?;
        self.reply(from, local, payload)?;
        inc(&mut self.counters.challenges_sent);
        Ok(())
    }

    fn dp_info(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) -> Result<(), Drop> {
        let ir = InfoResponse::decode(datagram).map_err(|_| Drop::Malformed)?;
        self.address_ok(from)?;
        let challenge = ir.challenge().ok_or(Drop::BadChallenge)?;
        let tag = self
            .challenges
            .verify_dp(now, from, challenge, self.config.game_props.tags())
            .ok_or(Drop::BadChallenge)?;
        let games = self.config.game_props.clone();
        let implied = games.tag_game(tag);
        let fields = dp_fields(&ir, implied).ok_or(Drop::MissingKey)?;
        if !self.config.games.allows(fields.game) {
            return Err(Drop::GameRejected);
        }
        self.upsert(now, from, Family::DarkPlaces, &fields)
    }

    fn dp_query(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), Drop> {
        let q = DpQuery::decode(datagram).map_err(|_| Drop::Malformed)?;
        // dpmaster 2.2 answers nothing for a game its policy rejects (manual.txt, `-g`/
        // `--game-policy`): the query is dropped, counted, and costs no reply.
        let game = self.config.game_props.query_game(q.gamename, q.protocol);
        if !self.config.games.allows(game) {
            return Err(Drop::GameRejected);
        }
        let grant = self.admission.admit_query(now, from)?;
        inc(&mut self.counters.dp_queries);
        let sends = self.config.game_props.sends(game);
        let reply = List::dp_reply(&self.list, &q, game, sends, self.config.max_dp_packet);
        let bound = reply.bound();
        if !self.tx.has_room(bound) {
            return Err(Drop::TxFull);
        }
        // No round trip proves a DP client: the master-wide budget for unproven addresses. A
        // stream is charged what it can take at most (it is filtered as it goes).
        self.admission.admit_unproven(now, grant, bound)?;
        self.admission.charge(now, grant, bound);
        let before = self.tx.stats();
        match reply {
            DpReply::Shared(packets) => {
                add(&mut self.counters.answered, packets.ends.len() as u64);
                self.tx.send_packets(now, from, local, packets)
            }
            DpReply::Stream(stream) => {
                inc(&mut self.counters.dp_streams);
                self.tx.send_stream(now, from, local, stream, bound)
            }
        }
        .map_err(|_| Drop::TxFull)?;
        let after = self.tx.stats();
        add(
            &mut self.counters.paced,
            after.paced.wrapping_sub(before.paced),
        );
        add(
            &mut self.counters.superseded,
            after.superseded.wrapping_sub(before.superseded),
        );
        Ok(())
    }

    fn upsert(
        &mut self,
        now: Time,
        from: SocketAddr,
        family: Family,
        f: &Fields<'_>,
    ) -> Result<(), Drop> {
        // A completed handshake lists the server; it proves nothing about list queries from its
        // address (game servers are what DDoS attacks aim at: admission.rs).
        match self.table.upsert(now, from, family, f)? {
            Upserted::Inserted => inc(&mut self.counters.registered),
            Upserted::Refreshed => inc(&mut self.counters.refreshed),
        }
        Ok(())
    }

    /// Expires silent servers, visiting at most `budget` expiry entries. Returns `true` when all due
    /// work is done (`false`: call again soon).
    pub fn tick(&mut self, now: Time, budget: usize) -> bool {
        let (expired, done) = self.table.expire(now, budget);
        add(&mut self.counters.expired, expired as u64);
        done
    }

    /// A snapshot of this shard if anything a list reads changed since the last one: the engine
    /// hands it to the list builder.
    pub fn publish(&mut self) -> Option<Arc<ShardSnapshot>> {
        self.table.changed().then(|| self.table.snapshot())
    }

    /// Every listed server of this shard with when it was last heard (the operator's view).
    pub fn dump(&self) -> ShardDump {
        self.table.dump()
    }

    /// The sources refused most over the last minute or two, most first.
    pub fn top_refused(&mut self, now: Time) -> Vec<(Source, u64)> {
        self.refused.report(now)
    }

    /// Lists a server from a state file, as it was: `expires` is when it would have expired had
    /// the master not stopped, `first_seen` in seconds on this clock. Today's rules apply (bans,
    /// address policy, game policy, caps); `Ok(false)`: already listed, or expired meanwhile.
    pub fn restore(
        &mut self,
        now: Time,
        from: SocketAddr,
        family: Family,
        fields: &Fields<'_>,
        expires: Time,
        first_seen: u32,
    ) -> Result<bool, Drop> {
        let from = policy::canonical(from);
        if self.config.bans.contains(from.ip()) {
            return Err(Drop::Banned);
        }
        self.address_ok(from)?;
        if family == Family::DarkPlaces && !self.config.games.allows(fields.game) {
            return Err(Drop::GameRejected);
        }
        if expires <= now {
            return Ok(false);
        }
        // Heard `timeout` before it expires (now, if the timeout was lowered since).
        let timeout = self.config.limits.server_timeout_ms;
        let heard = Time::from_millis(expires.millis().saturating_sub(timeout)).min(now);
        let listed = self
            .table
            .restore(heard, first_seen, from, family, fields)?;
        if listed {
            inc(&mut self.counters.restored);
        }
        Ok(listed)
    }

    /// Takes a reloaded configuration: bans, address and game policy, limits, admission, Xash
    /// switches and game properties. What the engine fixed at start stays (the challenge secret,
    /// the shared server budget, string budget, packet size, pacing). Servers the new rules refuse
    /// are delisted at once; returns how many.
    pub fn reconfigure(&mut self, now: Time, new: &Config) -> usize {
        let c = &mut self.config;
        c.limits = Limits {
            // The global cap is a shared count sized at start.
            max_servers: c.limits.max_servers,
            ..new.limits.clone()
        };
        c.games = new.games.clone();
        c.valve_challenge_window_ms = new.valve_challenge_window_ms;
        c.dp_challenge_window_ms = new.dp_challenge_window_ms;
        c.xash = new.xash;
        c.game_props = new.game_props.clone();
        c.bans = new.bans.clone();
        if c.admission != new.admission {
            c.admission = new.admission.clone();
            // Fresh buckets under the new limits (validations are earned again at the next proof).
            self.admission = Admission::shared(
                now,
                c.admission.clone(),
                self.admission.unproven().clone(),
                self.shard,
            );
        }
        self.table.set_limits(c.limits.clone());
        let (bans, games, allow_private) =
            (c.bans.clone(), c.games.clone(), c.limits.allow_private);
        let gone = self.table.remove_where(|s, strings| {
            let addr = s.addr.addr();
            bans.contains(addr.ip())
                || policy::check_address(addr, allow_private) != AddressVerdict::Ok
                || (s.family == Family::DarkPlaces && !games.allows(strings.get(s.game)))
        });
        add(&mut self.counters.delisted, gone as u64);
        gone
    }

    /// Serves `list` from now on (ignored if older than the one held).
    pub fn install_list(&mut self, list: Arc<List>) {
        if list.epoch > self.list.epoch {
            self.list = list;
        }
    }
}

/// The fields of a Valve heartbeat; `None` if `gamedir` is missing.
fn valve_fields<'a>(info: &InfoString<'a>) -> Option<Fields<'a>> {
    // One pass over the infostring for every key used.
    let [
        gamedir,
        kind,
        secure,
        password,
        lan,
        nat,
        white,
        os,
        region,
        players,
        max,
        bots,
        appid,
        protocol,
        product,
        map,
        version,
        gametype,
        gamedata,
        hostname,
        name,
    ] = info.pick([
        b"gamedir",
        b"type",
        b"secure",
        b"password",
        b"lan",
        b"nat",
        b"white",
        b"os",
        b"region",
        b"players",
        b"max",
        b"bots",
        b"appid",
        b"protocol",
        b"product",
        b"map",
        b"version",
        b"gametype",
        b"gamedata",
        b"hostname",
        b"name",
    ]);
    let game = gamedir.filter(|g| !g.is_empty())?;
    let server_type = kind.and_then(|t| t.first().copied()).unwrap_or(0);
    let mut f = 0;
    let mut set = |bit: u16, on: bool| {
        if on {
            f |= bit;
        }
    };
    set(flags::DEDICATED, server_type.eq_ignore_ascii_case(&b'd'));
    set(flags::PROXY, server_type.eq_ignore_ascii_case(&b'p'));
    set(flags::SECURE, is_one(secure));
    set(flags::PASSWORD, is_one(password));
    set(flags::LAN, is_one(lan));
    set(flags::NAT, is_one(nat));
    set(flags::WHITELISTED, is_one(white));
    set(
        flags::LINUX,
        os.is_some_and(|o| o.eq_ignore_ascii_case(b"l")),
    );
    Some(Fields {
        region: small_number(region).unwrap_or(255),
        server_type,
        players: small_number(players).unwrap_or(0),
        max_players: small_number(max).unwrap_or(0),
        bots: small_number(bots).unwrap_or(0),
        flags: f,
        // GoldSrc and Xash3D send no appid: the gamedir's (ReHLDS's table).
        appid: number(appid).unwrap_or_else(|| policy::goldsrc_appid(game)),
        protocol: number(protocol).unwrap_or(0),
        game,
        product: product.unwrap_or_default(),
        map: map.unwrap_or_default(),
        version: version.unwrap_or_default(),
        tags: gametype.unwrap_or_default(),
        gamedata: gamedata.unwrap_or_default(),
        hostname: hostname.or(name).unwrap_or_default(),
    })
}

/// The fields of an `infoResponse` as dpmaster 2.2 requires them: `protocol` numeric,
/// `sv_maxclients` non-zero, `clients` numeric, `gamename` unless the tag implies it (and equal to
/// it if both), no spaces in `gamename` and `gametype`.
fn dp_fields<'a>(ir: &InfoResponse<'a>, implied: Option<&'a [u8]>) -> Option<Fields<'a>> {
    // One pass over the infostring for every key used.
    let [
        protocol,
        maxclients,
        clients,
        gamename,
        gametype,
        bots,
        needpass,
        modname,
        mapname,
        gameversion,
        hostname,
    ] = ir.info.pick([
        b"protocol",
        b"sv_maxclients",
        b"clients",
        b"gamename",
        b"gametype",
        b"bots",
        b"g_needpass",
        b"modname",
        b"mapname",
        b"gameversion",
        b"hostname",
    ]);
    let decimal = |v: Option<&[u8]>| {
        crate::wire::cursor::parse_decimal(v?, u64::from(u32::MAX), "infoResponse")
            .ok()
            .and_then(|n| u32::try_from(n).ok())
    };
    let protocol = decimal(protocol)?;
    let max = decimal(maxclients).filter(|&m| m != 0)?;
    let clients = decimal(clients)?;
    let game = match (gamename, implied) {
        (Some(g), Some(i)) if g != i => return None,
        (Some(g), _) => g,
        (None, Some(i)) => i,
        (None, None) => return None,
    };
    let gametype = gametype.unwrap_or_default();
    if game.is_empty() || game.contains(&b' ') || gametype.contains(&b' ') {
        return None;
    }
    Some(Fields {
        region: 255,
        server_type: b'd',
        players: u8::try_from(clients).unwrap_or(u8::MAX),
        max_players: u8::try_from(max).unwrap_or(u8::MAX),
        bots: small_number(bots).unwrap_or(0),
        flags: if is_one(needpass) { flags::PASSWORD } else { 0 },
        appid: 0,
        protocol,
        game,
        product: modname.unwrap_or_default(),
        map: mapname.unwrap_or_default(),
        version: gameversion.unwrap_or_default(),
        tags: gametype,
        gamedata: b"",
        hostname: hostname.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::dp_server::GetInfo;

    /// The one datagram among `t`.
    fn only(t: Vec<Transmit>) -> Vec<u8> {
        let mut d: Vec<Vec<u8>> = t.iter().flat_map(Transmit::datagrams).collect();
        assert_eq!(d.len(), 1, "{t:?}");
        d.remove(0)
    }

    fn master(games: GamePolicy) -> Master {
        let mut c = Config::with_secret([7; 16]);
        c.limits.allow_private = true;
        c.games = games;
        Master::new(Time::ZERO, c, 0, 1)
    }

    /// Runs the DP handshake with `tag` and an infoResponse of `pairs` (challenge added).
    fn dp_register(
        m: &mut Master,
        from: SocketAddr,
        tag: &[u8],
        pairs: &[(&[u8], &[u8])],
    ) -> Option<Drop> {
        let now = Time::from_secs(10);
        let mut hb = Vec::new();
        DpHeartbeat { tag, newline: true }.encode(&mut hb).unwrap();
        if let Err(why) = m.handle(now, from, 0, &hb) {
            return Some(why);
        }
        let getinfo = only(m.transmits(now));
        let challenge = GetInfo::decode(&getinfo).unwrap().challenge.to_vec();
        // A repeat heartbeat in the same window gets the same challenge.
        m.handle(now, from, 0, &hb).unwrap();
        assert_eq!(only(m.transmits(now)), getinfo);
        let mut all: Vec<(&[u8], &[u8])> = pairs.to_vec();
        all.push((b"challenge", &challenge));
        let mut ir = Vec::new();
        InfoResponse::encode(&mut ir, all).unwrap();
        m.handle(now.plus_millis(30), from, 0, &ir).err()
    }

    const REQUIRED: [(&[u8], &[u8]); 3] = [
        (b"protocol", b"68"),
        (b"sv_maxclients", b"8"),
        (b"clients", b"1"),
    ];

    /// Publishes the shard and installs the list built from it (as the engine's builder does).
    fn sync(m: &mut Master) {
        let mut b = crate::master::builder::ListBuilder::new(1, 1400);
        if let Some(snap) = m.publish() {
            b.apply(0, snap);
        }
        if let Some(list) = b.build() {
            m.install_list(list);
        }
    }

    /// A Xash3D FWGS server's handshake: `q\xff<nonce>` → `s` challenge → the engine's info
    /// string (xash3d-fwgs `sv_main.c`, SV_AddToMaster: protocol 49, no appid, `\nat\`).
    fn xash_register(m: &mut Master, from: SocketAddr, nat: bool) -> Result<(), Drop> {
        let now = Time::from_secs(10);
        m.handle(now, from, 0, b"q\xff\x01\x00\x00\x00")?;
        let reply = ChallengeReply::decode(&only(m.transmits(now))).unwrap();
        let hb = format!(
            "0\n\\protocol\\49\\challenge\\{}\\players\\1\\max\\16\\bots\\0\\gamedir\\valve\\map\\crossfire\\type\\d\\password\\1\\os\\w\\secure\\0\\lan\\0\\version\\0.21\\region\\255\\product\\valve\\nat\\{}",
            reply.challenge,
            u8::from(nat)
        );
        m.handle(now, from, 0, hb.as_bytes())
    }

    fn burst(m: &mut Master, from: SocketAddr, filter: &[u8], keyed: bool) -> Vec<SocketAddr> {
        let now = Time::from_secs(11);
        let mut q = b"1\xff0.0.0.0:0\0".to_vec();
        q.extend_from_slice(filter);
        q.push(0);
        m.handle(now, from, 0, &q).unwrap();
        let mut servers = Vec::new();
        for d in m.transmits(now).iter().flat_map(Transmit::datagrams) {
            let b = crate::wire::xash::BurstDatagram::decode(&d, from.is_ipv6(), keyed).unwrap();
            if keyed {
                assert_eq!(b.key, Some(0x9be5_942b), "the key echoed in every datagram");
            }
            servers.extend(b.servers);
        }
        servers
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn restored_servers_are_listed_at_once_and_expire_when_they_would_have() {
        let mut m = master(GamePolicy::default());
        let now = Time::from_secs(5000);
        let f = Fields {
            game: b"cstrike",
            map: b"de_dust2",
            hostname: b"restored",
            players: 3,
            max_players: 16,
            ..Fields::default()
        };
        // 100 s of its 900 left; first seen an hour before.
        let expires = now.plus_secs(100);
        let r = m.restore(now, a("192.0.2.1:27015"), Family::Valve, &f, expires, 1400);
        assert_eq!(r, Ok(true));
        assert_eq!(
            m.restore(now, a("192.0.2.1:27015"), Family::Valve, &f, expires, 1400),
            Ok(false),
            "once"
        );
        assert_eq!(
            m.restore(now, a("192.0.2.2:27015"), Family::Valve, &f, now, 1400),
            Ok(false),
            "expired while the master was down"
        );
        let s = *m.table().get(a("192.0.2.1:27015")).unwrap();
        assert_eq!((s.first_seen, s.players), (1400, 3));
        assert_eq!(
            m.table().last_seen(a("192.0.2.1:27015")),
            Some(5000 + 100 - 900)
        );
        assert_eq!(m.counters().restored, 1);
        sync(&mut m);
        assert_eq!(m.list().valve_len(), 1, "listed with no heartbeat");
        m.tick(now.plus_secs(99), usize::MAX);
        assert_eq!(m.table().len(), 1);
        m.tick(now.plus_secs(101), usize::MAX);
        assert_eq!(m.table().len(), 0, "gone when it would have gone");
        // Today's rules apply to what is restored.
        let mut c = m.config().clone();
        c.bans = Arc::new(NetSet::new(&["198.51.100.0/24".parse().unwrap()]));
        c.games.reject = vec![b"Nexuiz".to_vec().into()];
        c.limits.allow_private = false;
        m.reconfigure(now, &c);
        let later = now.plus_secs(900);
        assert_eq!(
            m.restore(now, a("198.51.100.9:1"), Family::Valve, &f, later, 0),
            Err(Drop::Banned)
        );
        assert_eq!(
            m.restore(now, a("10.0.0.1:1"), Family::Valve, &f, later, 0),
            Err(Drop::PrivateAddress)
        );
        let nexuiz = Fields {
            game: b"Nexuiz",
            ..f
        };
        assert_eq!(
            m.restore(now, a("192.0.2.3:1"), Family::DarkPlaces, &nexuiz, later, 0),
            Err(Drop::GameRejected)
        );
    }

    #[test]
    fn a_reload_bans_delists_drops_and_counts_and_keeps_the_rest() {
        let mut m = master(GamePolicy::default());
        let banned = a("203.0.113.5:26000");
        let kept = a("192.0.2.7:26000");
        for from in [banned, kept] {
            assert_eq!(
                dp_register(
                    &mut m,
                    from,
                    b"DarkPlaces",
                    &[
                        (b"gamename", b"Nexuiz"),
                        REQUIRED[0],
                        REQUIRED[1],
                        REQUIRED[2]
                    ]
                ),
                None
            );
        }
        assert_eq!(m.table().len(), 2);
        let mut c = m.config().clone();
        c.bans = Arc::new(NetSet::new(&["203.0.113.0/24".parse().unwrap()]));
        let now = Time::from_secs(20);
        assert_eq!(m.reconfigure(now, &c), 1);
        assert!(m.table().get(banned).is_none() && m.table().get(kept).is_some());
        assert_eq!(m.counters().delisted, 1);
        // Every datagram from the network is dropped before it is read, counted as refused.
        assert_eq!(
            m.handle(now, banned, 0, b"\xff\xff\xff\xffheartbeat DarkPlaces\n"),
            Err(Drop::Banned)
        );
        assert_eq!(
            m.handle(now, a("203.0.113.200:1"), 0, b"garbage"),
            Err(Drop::Banned)
        );
        assert!(m.transmits(now).is_empty());
        assert_eq!(m.counters().dropped(Drop::Banned), 2);
        let top = m.top_refused(now);
        assert_eq!(top.len(), 2, "{top:?}");
        // A game no longer accepted is delisted by the next reload, the limits change in place.
        c.games.reject = vec![b"Nexuiz".to_vec().into()];
        c.limits.max_servers_per_ip = 1;
        c.limits.max_servers = 5;
        assert_eq!(m.reconfigure(now, &c), 1);
        assert_eq!(m.table().len(), 0);
        assert_eq!(m.table().limits().max_servers_per_ip, 1);
        assert_ne!(
            m.table().limits().max_servers,
            5,
            "the global cap is fixed at start"
        );
    }

    #[test]
    fn xash_clients_get_the_whole_list_as_a_burst_ipv6_to_ipv6_and_nat_by_flag() {
        let mut m = master(GamePolicy::default());
        let mut v4: Vec<SocketAddr> = (0..300u32)
            .map(|i| SocketAddr::new(std::net::Ipv4Addr::from(0x0505_0000 + i).into(), 27015))
            .collect();
        for &a in &v4 {
            xash_register(&mut m, a, false).unwrap();
        }
        let natted: SocketAddr = "6.6.6.6:27015".parse().unwrap();
        xash_register(&mut m, natted, true).unwrap();
        let v6: SocketAddr = "[2001:db8::5]:27015".parse().unwrap();
        xash_register(&mut m, v6, false).unwrap();
        sync(&mut m);
        // The engine's keyed query (xash3d-fwgs masterlist.c): every IPv4 server, key header on
        // every datagram (300 servers: 4 datagrams of at most 82).
        let client: SocketAddr = "7.7.7.7:27005".parse().unwrap();
        let mut got = burst(
            &mut m,
            client,
            b"\\gamedir\\valve\\clver\\0.21\\nat\\0\\key\\9be5942b",
            true,
        );
        got.sort();
        v4.sort();
        assert_eq!(got, v4, "nat 0: every non-NAT IPv4 server, once");
        // xash3d-query 0.2.0 without -k: no key header, NAT servers too (no `\nat\`).
        let got = burst(&mut m, client, b"\\gamedir\\valve\\clver\\0.20", false);
        assert_eq!(got.len(), 301);
        // `\nat\1`: only the NAT server (xash3d-master filter.rs: the flag must equal).
        let got = burst(
            &mut m,
            client,
            b"\\clver\\0.21\\nat\\1\\key\\9be5942b",
            true,
        );
        assert_eq!(got, [natted]);
        // Over IPv6: the IPv6 server, as an 18-byte entry.
        let client6: SocketAddr = "[2001:db8::7]:27005".parse().unwrap();
        let got = burst(&mut m, client6, b"\\clver\\0.21\\key\\9be5942b", true);
        assert_eq!(got, [v6]);
        assert_eq!(m.counters().xash_queries, 4);
        // Xash3D heartbeats carry no appid: gamedir valve is Half-Life's 70 (ReHLDS table).
        let s = *m.table().get(natted).unwrap();
        assert_eq!(s.appid, 70);
    }

    #[test]
    fn old_xash_clients_get_the_update_entry_when_switched_on() {
        let mut c = Config::with_secret([7; 16]);
        c.limits.allow_private = true;
        let update: SocketAddr = "9.9.9.9:27010".parse().unwrap();
        c.xash = XashConfig {
            min_clver: Some((0, 21)),
            update_addr: Some(update),
        };
        let mut m = Master::new(Time::ZERO, c, 0, 1);
        xash_register(&mut m, "5.5.5.5:27015".parse().unwrap(), false).unwrap();
        sync(&mut m);
        let client: SocketAddr = "7.7.7.7:27005".parse().unwrap();
        assert_eq!(
            burst(&mut m, client, b"\\clver\\0.20\\key\\9be5942b", true),
            [update]
        );
        assert_eq!(
            burst(&mut m, client, b"\\clver\\0.21\\key\\9be5942b", true).len(),
            1
        );
        assert_eq!(m.counters().xash_updates, 1);
    }

    #[test]
    fn an_unreadable_filter_gets_the_empty_final_page() {
        let mut m = master(GamePolicy::default());
        let client: SocketAddr = "7.7.7.7:27005".parse().unwrap();
        // `\appid\x`: a malformed value of a known key rejects the filter (filter.rs).
        m.handle(Time::ZERO, client, 0, b"1\xff0.0.0.0:0\0\\appid\\x\0")
            .unwrap();
        assert_eq!(
            only(m.transmits(Time::ZERO)),
            b"\xff\xff\xff\xff\x66\x0a\0\0\0\0\0\0"
        );
        assert_eq!(m.counters().bad_filters, 1);
    }

    #[test]
    fn no_challenge_for_a_server_that_could_not_be_listed() {
        // dpmaster 2.2 (servers.c): no getinfo when the address is at its cap or the table full.
        let mut c = Config::with_secret([7; 16]);
        c.limits.allow_private = true;
        c.limits.max_servers_per_ip = 1;
        let mut m = Master::new(Time::ZERO, c, 0, 1);
        let a: SocketAddr = "1.2.3.4:27960".parse().unwrap();
        let b: SocketAddr = "1.2.3.4:27961".parse().unwrap();
        assert_eq!(dp_register(&mut m, a, b"QuakeArena-1", &REQUIRED), None);
        let sent = m.counters().challenges_sent;
        assert_eq!(
            dp_register(&mut m, b, b"QuakeArena-1", &REQUIRED),
            Some(Drop::PerIpCap)
        );
        assert_eq!(m.handle(Time::ZERO, b, 0, b"q"), Err(Drop::PerIpCap));
        assert_eq!(m.counters().challenges_sent, sent, "nothing sent");
        // The listed server itself still gets its challenge (it refreshes).
        assert_eq!(dp_register(&mut m, a, b"QuakeArena-1", &REQUIRED), None);
    }

    #[test]
    fn handshakes_in_progress_count_against_the_caps_as_in_dpmaster() {
        // dpmaster 2.2 creates a server's entry when it sends the getinfo (servers.c,
        // Sv_GetByAddr with `create`): three servers of one address heartbeating in the same
        // instant under a cap of two get two getinfos, not three.
        let mut c = Config::with_secret([7; 16]);
        c.limits.allow_private = true;
        c.limits.max_servers_per_ip = 2;
        c.limits.max_servers = 3;
        let mut m = Master::new(Time::ZERO, c, 0, 1);
        let now = Time::from_secs(10);
        let mut hb = Vec::new();
        DpHeartbeat {
            tag: b"DarkPlaces",
            newline: true,
        }
        .encode(&mut hb)
        .unwrap();
        let same: Vec<SocketAddr> = (0..3)
            .map(|i| SocketAddr::from(([1, 2, 3, 4], 27960 + i)))
            .collect();
        let verdicts: Vec<_> = same.iter().map(|a| m.handle(now, *a, 0, &hb)).collect();
        assert_eq!(verdicts, [Ok(()), Ok(()), Err(Drop::PerIpCap)]);
        assert_eq!(m.transmits(now).len(), 2, "two getinfos");
        assert_eq!(m.table().pending(), 2);
        // A repeat heartbeat of a challenged server gets its challenge again (no new place).
        assert_eq!(m.handle(now, same[0], 0, &hb), Ok(()));
        assert_eq!(m.table().pending(), 2);
        // A table one place short of full (3 places, 2 held): of three other addresses
        // heartbeating at once, one gets a getinfo.
        let others: Vec<SocketAddr> = (0..3)
            .map(|i| SocketAddr::from(([5, 6, 7, i], 27960)))
            .collect();
        let verdicts: Vec<_> = others.iter().map(|a| m.handle(now, *a, 0, &hb)).collect();
        assert_eq!(
            verdicts,
            [Ok(()), Err(Drop::TableFull), Err(Drop::TableFull)]
        );
        let _ = m.transmits(now);
        // Handshakes that never complete give their places back after the hold (2 s).
        let later = now.plus_millis(crate::master::pending::PENDING_HOLD_MS);
        m.tick(later, 1000);
        assert_eq!(m.table().pending(), 0);
        // Completed handshakes turn their holds into the servers' places.
        let xonotic = [
            (&b"gamename"[..], &b"Xonotic"[..]),
            REQUIRED[0],
            REQUIRED[1],
            REQUIRED[2],
        ];
        for a in &same[..2] {
            assert_eq!(dp_register(&mut m, *a, b"DarkPlaces", &xonotic), None);
        }
        assert_eq!((m.table().len(), m.table().pending()), (2, 0));
        assert_eq!(m.handle(later, same[2], 0, &hb), Err(Drop::PerIpCap));
        // Two listed, one place left: one more handshake is held, then the table is full.
        assert_eq!(m.handle(later, others[1], 0, &hb), Ok(()));
        assert_eq!(m.handle(later, others[2], 0, &hb), Err(Drop::TableFull));
    }

    #[test]
    fn rtcw_and_et_queries_by_protocol_and_rejected_games_get_no_answer() {
        let mut m = master(GamePolicy {
            accept: vec![],
            reject: vec![b"wolfmp".to_vec().into()],
        });
        let et: SocketAddr = "1.2.3.4:27960".parse().unwrap();
        let pairs = [
            (&b"protocol"[..], &b"84"[..]),
            (b"sv_maxclients", b"8"),
            (b"clients", b"0"),
        ];
        assert_eq!(dp_register(&mut m, et, b"EnemyTerritory-1", &pairs), None);
        sync(&mut m);
        let client: SocketAddr = "7.7.7.7:27005".parse().unwrap();
        // qstat -woetm sends `getservers 84 empty full`; ET clients send `getservers 84` and
        // still get empty servers (dpmaster games.c: et has send-empty-servers).
        for q in [&b"getservers 84 empty full"[..], b"getservers 84"] {
            let mut d = b"\xff\xff\xff\xff".to_vec();
            d.extend_from_slice(q);
            m.handle(Time::ZERO, client, 0, &d).unwrap();
            let reply = only(m.transmits(Time::ZERO));
            let r = crate::wire::dp_list::ListResponse::decode(&reply).unwrap();
            assert_eq!(r.servers().collect::<Vec<_>>(), [et], "{q:?}");
        }
        // qstat -rwm: `getservers 60 empty full` is wolfmp, which the policy rejects: no answer.
        assert_eq!(
            m.handle(
                Time::ZERO,
                client,
                0,
                b"\xff\xff\xff\xffgetservers 60 empty full\n"
            ),
            Err(Drop::GameRejected)
        );
        assert!(m.transmits(Time::ZERO).is_empty());
    }

    /// dpmaster 2.2's documented behaviours (techinfo.txt §3–4, manual.txt §5–8), one case each.
    #[test]
    fn dpmaster_documented_behaviours() {
        let a: SocketAddr = "1.2.3.4:27960".parse().unwrap();
        let client: SocketAddr = "7.7.7.7:27005".parse().unwrap();
        let t0 = Time::from_secs(10);
        let getinfo = |m: &mut Master, now: Time| -> Vec<u8> {
            m.handle(now, a, 0, b"\xff\xff\xff\xffheartbeat QuakeArena-1\n")
                .unwrap();
            let g = only(m.transmits(now));
            GetInfo::decode(&g).unwrap().challenge.to_vec()
        };
        let info = |challenge: &[u8], pairs: &[(&[u8], &[u8])]| -> Vec<u8> {
            let mut all: Vec<(&[u8], &[u8])> = pairs.to_vec();
            all.push((b"challenge", challenge));
            let mut ir = Vec::new();
            InfoResponse::encode(&mut ir, all).unwrap();
            ir
        };
        // T§3.3, changelog 1.5: "A valid infoResponse is now rejected if its challenge has timed
        // out" (dpmaster: 2 s; muster's window is 2–4 s).
        let mut m = master(GamePolicy::default());
        let c = getinfo(&mut m, t0);
        assert_eq!(
            m.handle(t0.plus_millis(4_500), a, 0, &info(&c, &REQUIRED)),
            Err(Drop::BadChallenge)
        );
        // T§3.3: `protocol` must be an integer over its whole value; `gamename` has no spaces.
        let c = getinfo(&mut m, t0);
        let bad_protocol = [
            (&b"protocol"[..], &b"68x"[..]),
            (b"sv_maxclients", b"8"),
            (b"clients", b"1"),
        ];
        assert_eq!(
            m.handle(t0, a, 0, &info(&c, &bad_protocol)),
            Err(Drop::MissingKey)
        );
        let spaced = [
            (&b"protocol"[..], &b"3"[..]),
            (b"sv_maxclients", b"8"),
            (b"clients", b"1"),
            (b"gamename", b"Open Arena"),
        ];
        m.handle(t0, a, 0, b"\xff\xff\xff\xffheartbeat DarkPlaces\n")
            .unwrap();
        let c = GetInfo::decode(&only(m.transmits(t0)))
            .unwrap()
            .challenge
            .to_vec();
        assert_eq!(
            m.handle(t0, a, 0, &info(&c, &spaced)),
            Err(Drop::MissingKey)
        );
        assert!(m.table().is_empty());
        // T§3.3 (code `HandleInfoResponse`): clients == sv_maxclients is full; more clients than
        // that is "occupied", listed without the `full` keyword.
        let c = getinfo(&mut m, t0);
        let over = [
            (&b"protocol"[..], &b"68"[..]),
            (b"sv_maxclients", b"8"),
            (b"clients", b"9"),
        ];
        m.handle(t0, a, 0, &info(&c, &over)).unwrap();
        sync(&mut m);
        m.handle(t0, client, 0, b"\xff\xff\xff\xffgetservers 68")
            .unwrap();
        let r = only(m.transmits(t0));
        let listed: Vec<_> = crate::wire::dp_list::ListResponse::decode(&r)
            .unwrap()
            .servers()
            .collect();
        assert_eq!(listed, [a]);
        // T§4: "only another valid infoResponse from this very server will be able to refresh
        // this timeout" — heartbeats alone (answered with getinfo) let it expire at 15 min.
        for minute in 1..=16u64 {
            let now = t0.plus_millis(minute * 60_000);
            getinfo(&mut m, now);
            m.tick(now, usize::MAX);
        }
        assert!(m.table().is_empty(), "heartbeats never refresh the timeout");
        // T§3.4/§3.6 (testsuite test-invalid_protocol_in_getservers,
        // test-getserversext_without_gamename): no reply.
        for q in [
            &b"\xff\xff\xff\xffgetservers Xonotic abc"[..],
            b"\xff\xff\xff\xffgetserversExt 68",
        ] {
            assert!(m.handle(t0, client, 0, q).is_err(), "{q:?}");
        }
        assert!(m.transmits(t0).is_empty());
    }

    #[test]
    fn anonymous_tags_imply_their_game_and_policy_applies() {
        let a: SocketAddr = "1.2.3.4:27960".parse().unwrap();
        let mut m = master(GamePolicy::default());
        assert_eq!(dp_register(&mut m, a, b"QuakeArena-1", &REQUIRED), None);
        let s = *m.table().get(a).unwrap();
        assert_eq!(m.table().strings().get(s.game), b"Quake3Arena");
        // A gamename that contradicts the tag is refused.
        let mut m = master(GamePolicy::default());
        let mut pairs = REQUIRED.to_vec();
        pairs.push((b"gamename", b"Xonotic"));
        assert_eq!(
            dp_register(&mut m, a, b"QuakeArena-1", &pairs),
            Some(Drop::MissingKey)
        );
        // DarkPlaces needs a gamename; the policy can reject it.
        let mut m = master(GamePolicy {
            accept: vec![],
            reject: vec![b"Xonotic".to_vec().into()],
        });
        assert_eq!(
            dp_register(&mut m, a, b"DarkPlaces", &REQUIRED),
            Some(Drop::MissingKey)
        );
        assert_eq!(
            dp_register(&mut m, a, b"DarkPlaces", &pairs),
            Some(Drop::GameRejected)
        );
        assert!(m.table().is_empty());
    }

    #[test]
    fn configured_game_properties_add_a_heartbeat_tag_and_an_anonymous_protocol() {
        // dpmaster manual.txt §5: `-g Warsow heartbeat=Warsow` (muster: `[[game]]`).
        let mut c = Config::with_secret([7; 16]);
        c.limits.allow_private = true;
        c.game_props = Arc::new(
            Games::with(vec![crate::master::games::GameProps {
                name: b"Warsow"[..].into(),
                protocols: vec![22],
                heartbeats: vec![b"Warsow"[..].into()],
                send_empty: true,
                send_full: true,
            }])
            .unwrap(),
        );
        let mut m = Master::new(Time::ZERO, c, 0, 1);
        let a: SocketAddr = "1.2.3.4:44400".parse().unwrap();
        let pairs = [
            (&b"protocol"[..], &b"22"[..]),
            (b"sv_maxclients", b"8"),
            (b"clients", b"0"),
        ];
        assert_eq!(dp_register(&mut m, a, b"Warsow", &pairs), None);
        let s = *m.table().get(a).unwrap();
        assert_eq!(m.table().strings().get(s.game), b"Warsow");
        sync(&mut m);
        // `getservers 22` means Warsow, and its (empty) server is listed unasked.
        let client: SocketAddr = "7.7.7.7:27005".parse().unwrap();
        m.handle(Time::ZERO, client, 0, b"\xff\xff\xff\xffgetservers 22")
            .unwrap();
        let r = only(m.transmits(Time::ZERO));
        let listed: Vec<_> = crate::wire::dp_list::ListResponse::decode(&r)
            .unwrap()
            .servers()
            .collect();
        assert_eq!(listed, [a]);
        // Without the table, `Warsow` is an unknown tag.
        let mut plain = master(GamePolicy::default());
        assert_eq!(
            dp_register(&mut plain, a, b"Warsow", &pairs),
            Some(Drop::UnknownTag)
        );
    }

    #[test]
    fn flatline_and_unknown_tags_get_no_challenge() {
        let a: SocketAddr = "1.2.3.4:27960".parse().unwrap();
        let mut m = master(GamePolicy::default());
        for tag in [&b"ETFlatline-1"[..], b"WolfFlatline-1", b"SomethingElse"] {
            assert_eq!(
                dp_register(&mut m, a, tag, &REQUIRED),
                Some(Drop::UnknownTag)
            );
        }
        assert_eq!(m.counters().challenges_sent, 0);
    }

    #[test]
    fn required_keys() {
        let a: SocketAddr = "1.2.3.4:27960".parse().unwrap();
        for missing in 0..3 {
            let mut m = master(GamePolicy::default());
            let pairs: Vec<_> = REQUIRED
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != missing)
                .map(|(_, p)| *p)
                .collect();
            assert_eq!(
                dp_register(&mut m, a, b"QuakeArena-1", &pairs),
                Some(Drop::MissingKey),
                "without {missing}"
            );
        }
        let mut m = master(GamePolicy::default());
        let zero_max = [
            (&b"protocol"[..], &b"68"[..]),
            (b"sv_maxclients", b"0"),
            (b"clients", b"0"),
        ];
        assert_eq!(
            dp_register(&mut m, a, b"QuakeArena-1", &zero_max),
            Some(Drop::MissingKey)
        );
    }

    #[test]
    fn xash_nonce_is_echoed_and_unknown_datagrams_are_counted() {
        let mut m = master(GamePolicy::default());
        let a: SocketAddr = "1.2.3.4:27015".parse().unwrap();
        m.handle(Time::ZERO, a, 0, b"q\xff\x78\x56\x34\x12")
            .unwrap();
        let reply = only(m.transmits(Time::ZERO));
        let reply = ChallengeReply::decode(&reply).unwrap();
        assert_eq!(reply.nonce, Some(0x1234_5678));
        assert_eq!(
            m.handle(Time::ZERO, a, 0, b"GET / HTTP/1.0"),
            Err(Drop::Unknown)
        );
        assert_eq!(
            m.handle(Time::ZERO, a, 0, b"\xff\xff\xff\xffTSource Engine Query\0"),
            Err(Drop::Unexpected)
        );
        assert!(m.transmits(Time::ZERO).is_empty());
        assert_eq!(m.counters().dropped(Drop::Unknown), 1);
        assert_eq!(m.counters().dropped(Drop::Unexpected), 1);
    }

    #[test]
    fn a_saturated_batch_keeps_every_registration_and_sheds_queries_past_the_budget() {
        let mut m = master(GamePolicy::default());
        let now = Time::from_secs(5);
        let query = b"1\xff0.0.0.0:0\0\0";
        let servers: Vec<SocketAddr> = (0..40u16)
            .map(|p| SocketAddr::from(([203, 0, 113, (p % 8) as u8], 27015 + p)))
            .collect();
        let clients: Vec<SocketAddr> = (0..100u8)
            .map(|h| SocketAddr::from(([198, 51, 100, h], 5000)))
            .collect();
        // Queries first in the batch, challenge requests after: registrations still go first.
        let mut batch: Vec<Datagram<'_>> = clients
            .iter()
            .map(|&from| Datagram {
                from,
                local: 0,
                bytes: query,
            })
            .collect();
        batch.extend(servers.iter().map(|&from| Datagram {
            from,
            local: 0,
            bytes: b"q",
        }));
        m.handle_batch(now, &batch, true);
        assert_eq!(m.counters().challenges_sent, 40);
        assert_eq!(m.counters().valve_queries, SATURATED_QUERY_BUDGET as u64);
        assert_eq!(
            m.counters().dropped(Drop::Shed),
            100 - SATURATED_QUERY_BUDGET as u64
        );
        let sent = m.transmits(now);
        assert_eq!(sent.len(), 40 + SATURATED_QUERY_BUDGET);
        assert!(
            sent[..40].iter().all(|t| t.payload.len() == 10),
            "challenges leave first"
        );
        // Not saturated: every query is answered.
        m.handle_batch(now, &batch, false);
        assert_eq!(
            m.counters().dropped(Drop::Shed),
            100 - SATURATED_QUERY_BUDGET as u64
        );
    }
}
