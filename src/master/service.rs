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

use super::admission::{Admission, AdmissionConfig, Class};
use super::budget::Budget;
use super::challenge::Challenges;
use super::counters::{Counters, Drop, add, inc};
use super::list::{DpReply, List, ValvePage};
use super::policy::{self, AddressVerdict, GamePolicy, IpKey, Limits, TAGS};
use super::record::{Family, flags, number, small_number};
use super::table::{Fields, Rejected, ShardSnapshot, Table, Upserted};
use super::time::Time;
use super::transmit::{Payload, Transmit, TxConfig, TxQueue};
use crate::wire::dp_list::{ListQuery as DpQuery, MAX_RESPONSE_LEN};
use crate::wire::dp_server::{GetInfo, Heartbeat as DpHeartbeat, InfoResponse};
use crate::wire::filter::Filter;
use crate::wire::infostring::InfoString;
use crate::wire::valve_heartbeat::{ChallengeReply, ServerMessage};
use crate::wire::valve_list::{ENTRY_LEN, ListQuery, NULL_ADDR};
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
    /// Bytes of interned strings all shards may hold together (split evenly).
    pub max_string_bytes: usize,
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
            max_string_bytes: DEFAULT_MAX_STRING_BYTES,
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
            admission: Admission::new(now, config.admission.clone()),
            tx: TxQueue::new(config.tx),
            scratch: Vec::new(),
            counters: Counters::default(),
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
        let done = match classify(datagram) {
            Kind::ValveListQuery => self.valve_query(now, from, local, datagram),
            Kind::ValveChallengeRequest | Kind::ValveHeartbeat | Kind::ValveShutdown => {
                self.valve_server(now, from, local, datagram)
            }
            Kind::DpHeartbeat => self.dp_heartbeat(now, from, local, datagram),
            Kind::DpInfoResponse => self.dp_info(now, from, datagram),
            Kind::DpGetServers | Kind::DpGetServersExt => self.dp_query(now, from, local, datagram),
            Kind::Unknown => Err(Drop::Unknown),
            _ => Err(Drop::Unexpected),
        };
        if let Err(why) = done {
            self.counters.drop(why);
        }
        done
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

    fn valve_query(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), Drop> {
        let q = ListQuery::decode(datagram).map_err(|_| Drop::Malformed)?;
        let filter = Filter::parse(q.filter).map_err(|_| Drop::BadFilter)?;
        let seed = super::record::AddrKey::new(q.seed.into()).v4_entry();
        let continues = (q.seed != NULL_ADDR).then_some(seed);
        let holds = self.table.holds(IpKey::new(from.ip()));
        let grant = self.admission.admit_query(now, from, continues, holds)?;
        inc(&mut self.counters.valve_queries);
        // Page lengths vary per source, so the last address of a page proves receipt.
        let capacity = if grant.class == Class::Trusted {
            crate::wire::valve_list::MAX_PAGE_ENTRIES
        } else {
            self.challenges.page_capacity(from, seed)
        };
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let (page, scan) = self
            .list
            .valve_page(q.region, seed, &filter, capacity, &mut out);
        add(&mut self.counters.scanned, scan.examined as u64);
        if scan.capped {
            inc(&mut self.counters.scan_capped);
        }
        let last_entry = |b: &[u8]| -> Option<[u8; ENTRY_LEN]> {
            b.len()
                .checked_sub(ENTRY_LEN)
                .and_then(|at| b.get(at..))
                .and_then(|e| e.try_into().ok())
        };
        let (payload, last) = match page {
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
            ValvePage::Written { last } => {
                let end = if last { None } else { last_entry(&out) };
                (Payload::Owned(out.as_slice().into()), end)
            }
        };
        self.scratch = out;
        let len = payload.len();
        if !self.tx.has_room(len) {
            return Err(Drop::TxFull);
        }
        self.admission.charge(now, grant, from, len);
        if let Some(end) = last.filter(|_| !matches!(payload, Payload::Page { last: true, .. })) {
            self.admission.page_sent(now, from, end);
        }
        self.reply(from, local, payload)
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
                self.admission.admit_challenge(now, from)?;
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
        let tag = policy::tag_index(hb.tag).ok_or(Drop::UnknownTag)?;
        self.address_ok(from)?;
        self.admission.admit_challenge(now, from)?;
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
            .verify_dp(now, from, challenge, TAGS.len() as u8)
            .ok_or(Drop::BadChallenge)?;
        let implied = TAGS.get(usize::from(tag)).and_then(|t| t.game);
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
        let holds = self.table.holds(IpKey::new(from.ip()));
        let grant = self.admission.admit_query(now, from, None, holds)?;
        inc(&mut self.counters.dp_queries);
        let reply = List::dp_reply(&self.list, &q, self.config.max_dp_packet);
        let bound = reply.bound();
        if !self.tx.has_room(bound) {
            return Err(Drop::TxFull);
        }
        // A stream is charged what it can take at most (it is filtered as it goes).
        self.admission.charge(now, grant, from, bound);
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
        match self.table.upsert(now, from, family, f) {
            Ok(Upserted::Inserted) => inc(&mut self.counters.registered),
            Ok(Upserted::Refreshed) => inc(&mut self.counters.refreshed),
            Err(Rejected::PerIpCap) => return Err(Drop::PerIpCap),
            Err(Rejected::TableFull) => return Err(Drop::TableFull),
        }
        // The address answered a challenge: it receives our packets.
        self.admission.validate(now, from.ip());
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
        appid: number(appid).unwrap_or(0),
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
fn dp_fields<'a>(ir: &InfoResponse<'a>, implied: Option<&'static [u8]>) -> Option<Fields<'a>> {
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
