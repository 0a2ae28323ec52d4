//! The master as a pure state machine: `handle(now, from, datagram, out)` and `tick(now, budget)`.
//!
//! One [`Master`] is one shard (one core). Registration touches only its own table; list queries are
//! answered from the merge of every shard's latest snapshot, which the engine moves between cores
//! ([`Master::publish`], [`Master::install`], [`Master::refresh_list`]).
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

use super::challenge::Challenges;
use super::counters::{Counters, Drop, add, inc};
use super::list::{List, Packets, ValvePage};
use super::policy::{self, AddressVerdict, GamePolicy, Limits, TAGS};
use super::record::{Family, flags, number, small_number};
use super::table::{Fields, Rejected, ShardSnapshot, Table, Upserted};
use super::time::Time;
use crate::wire::dp_list::{ListQuery as DpQuery, MAX_RESPONSE_LEN};
use crate::wire::dp_server::{GetInfo, Heartbeat as DpHeartbeat, InfoResponse};
use crate::wire::filter::Filter;
use crate::wire::infostring::InfoString;
use crate::wire::valve_heartbeat::{ChallengeReply, ServerMessage};
use crate::wire::valve_list::ListQuery;
use crate::wire::{Kind, classify};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

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
        }
    }
}

/// What to send back to the datagram's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nothing,
    /// The packets in `out` (one or more).
    Packets,
    /// One Valve page: `PAGE_HEADER`, `entries[range]`, then `0.0.0.0:0` if `last` — one datagram.
    ValvePage {
        entries: Arc<[u8]>,
        range: Range<usize>,
        last: bool,
    },
    /// Shared pre-encoded DP packets, sent as they are.
    Shared(Arc<Packets>),
}

impl Reply {
    /// The datagrams this reply sends, materialised (for tests and simple senders).
    pub fn datagrams(&self, out: &Packets) -> Vec<Vec<u8>> {
        match self {
            Reply::Nothing => Vec::new(),
            Reply::Packets => out.iter().map(<[u8]>::to_vec).collect(),
            Reply::Shared(p) => p.iter().map(<[u8]>::to_vec).collect(),
            Reply::ValvePage {
                entries,
                range,
                last,
            } => {
                let mut d = crate::wire::valve_list::PAGE_HEADER.to_vec();
                d.extend_from_slice(entries.get(range.clone()).unwrap_or_default());
                if *last {
                    d.extend_from_slice(&[0; 6]);
                }
                vec![d]
            }
        }
    }

    fn count(&self, out: &Packets) -> u64 {
        match self {
            Reply::Nothing => 0,
            Reply::Packets => out.ends.len() as u64,
            Reply::Shared(p) => p.ends.len() as u64,
            Reply::ValvePage { .. } => 1,
        }
    }
}

/// One shard of the master.
#[derive(Debug)]
pub struct Master {
    config: Config,
    challenges: Challenges,
    table: Table,
    list: List,
    shards: Vec<Option<Arc<ShardSnapshot>>>,
    shard: usize,
    list_stale: bool,
    /// For every shard, the epoch of its snapshot in `list` (0: none).
    list_epochs: Vec<u64>,
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
            table: Table::new(now, config.limits.clone()),
            list: List::default(),
            shards: vec![None; shards],
            shard: shard.min(shards.saturating_sub(1)),
            list_stale: false,
            list_epochs: vec![0; shards],
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

    pub fn list(&self) -> &List {
        &self.list
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Which shard this is.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// For every shard, the epoch of its snapshot merged into the list this shard serves (0: none
    /// yet). A test or operator compares these across cores to know every core is up to date.
    pub fn list_epochs(&self) -> &[u64] {
        &self.list_epochs
    }

    /// Handles one datagram from `from`. Reply bytes that are not shared go to `out` (cleared first).
    pub fn handle(
        &mut self,
        now: Time,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut Packets,
    ) -> Reply {
        out.clear();
        inc(&mut self.counters.received);
        let from = policy::canonical(from);
        let reply = match classify(datagram) {
            Kind::ValveListQuery => self.valve_query(datagram, out),
            Kind::ValveChallengeRequest | Kind::ValveHeartbeat | Kind::ValveShutdown => {
                self.valve_server(now, from, datagram, out)
            }
            Kind::DpHeartbeat => self.dp_heartbeat(now, from, datagram, out),
            Kind::DpInfoResponse => self.dp_info(now, from, datagram),
            Kind::DpGetServers | Kind::DpGetServersExt => self.dp_query(datagram, out),
            Kind::Unknown => Err(Drop::Unknown),
            _ => Err(Drop::Unexpected),
        };
        match reply {
            Ok(r) => {
                add(&mut self.counters.answered, r.count(out));
                r
            }
            Err(why) => {
                self.counters.drop(why);
                out.clear();
                Reply::Nothing
            }
        }
    }

    fn address_ok(&self, from: SocketAddr) -> Result<(), Drop> {
        match policy::check_address(from, self.config.limits.allow_private) {
            AddressVerdict::Ok => Ok(()),
            AddressVerdict::Invalid => Err(Drop::InvalidAddress),
            AddressVerdict::Private => Err(Drop::PrivateAddress),
        }
    }

    fn valve_query(&mut self, datagram: &[u8], out: &mut Packets) -> Result<Reply, Drop> {
        let q = ListQuery::decode(datagram).map_err(|_| Drop::Malformed)?;
        let filter = Filter::parse(q.filter).map_err(|_| Drop::BadFilter)?;
        inc(&mut self.counters.valve_queries);
        let seed = super::record::AddrKey::new(q.seed.into()).v4_entry();
        match self
            .list
            .valve_page(q.region, seed, &filter, &mut out.bytes)
        {
            ValvePage::Shared {
                entries,
                range,
                last,
            } => Ok(Reply::ValvePage {
                entries,
                range,
                last,
            }),
            ValvePage::Written => {
                out.ends.push(out.bytes.len());
                Ok(Reply::Packets)
            }
        }
    }

    fn valve_server(
        &mut self,
        now: Time,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut Packets,
    ) -> Result<Reply, Drop> {
        match ServerMessage::decode(datagram).map_err(|_| Drop::Malformed)? {
            ServerMessage::ChallengeRequest { nonce, .. } => {
                self.address_ok(from)?;
                let challenge = self.challenges.valve(now, from);
                ChallengeReply { challenge, nonce }.encode(&mut out.bytes);
                out.ends.push(out.bytes.len());
                inc(&mut self.counters.challenges_sent);
                Ok(Reply::Packets)
            }
            ServerMessage::Heartbeat(hb) => {
                self.address_ok(from)?;
                let challenge = hb.challenge().ok_or(Drop::BadChallenge)?;
                if !self.challenges.verify_valve(now, from, challenge) {
                    return Err(Drop::BadChallenge);
                }
                let fields = valve_fields(&hb.info).ok_or(Drop::MissingKey)?;
                self.upsert(now, from, Family::Valve, &fields)?;
                Ok(Reply::Nothing)
            }
            ServerMessage::Shutdown { .. } => Err(Drop::Shutdown),
        }
    }

    fn dp_heartbeat(
        &mut self,
        now: Time,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut Packets,
    ) -> Result<Reply, Drop> {
        let hb = DpHeartbeat::decode(datagram).map_err(|_| Drop::Malformed)?;
        let tag = policy::tag_index(hb.tag).ok_or(Drop::UnknownTag)?;
        self.address_ok(from)?;
        let challenge = self.challenges.dp(now, from, tag);
        GetInfo {
            challenge: challenge.as_bytes(),
        }
        .encode(&mut out.bytes)
        .map_err(|_| Drop::Malformed)?;
        out.ends.push(out.bytes.len());
        inc(&mut self.counters.challenges_sent);
        Ok(Reply::Packets)
    }

    fn dp_info(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) -> Result<Reply, Drop> {
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
        self.upsert(now, from, Family::DarkPlaces, &fields)?;
        Ok(Reply::Nothing)
    }

    fn dp_query(&mut self, datagram: &[u8], out: &mut Packets) -> Result<Reply, Drop> {
        let q = DpQuery::decode(datagram).map_err(|_| Drop::Malformed)?;
        inc(&mut self.counters.dp_queries);
        match self.list.dp_response(&q, self.config.max_dp_packet, out) {
            Some(shared) => Ok(Reply::Shared(shared)),
            None => Ok(Reply::Packets),
        }
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
        Ok(())
    }

    /// Expires silent servers, visiting at most `budget` expiry entries. Returns `true` when all due
    /// work is done (`false`: call again soon).
    pub fn tick(&mut self, now: Time, budget: usize) -> bool {
        let (expired, done) = self.table.expire(now, budget);
        add(&mut self.counters.expired, expired as u64);
        done
    }

    /// A snapshot of this shard if it changed since the last one; it is also installed locally.
    /// The engine sends it to every other core.
    pub fn publish(&mut self) -> Option<Arc<ShardSnapshot>> {
        let held = self.shards.get(self.shard).is_some_and(Option::is_some);
        if !self.table.changed() && held {
            return None;
        }
        let snap = self.table.snapshot();
        self.install(self.shard, snap.clone());
        Some(snap)
    }

    /// Installs shard `shard`'s latest snapshot (ignored if older than the one held).
    pub fn install(&mut self, shard: usize, snap: Arc<ShardSnapshot>) {
        let Some(slot) = self.shards.get_mut(shard) else {
            return;
        };
        if slot.as_ref().is_some_and(|held| held.epoch >= snap.epoch) {
            return;
        }
        *slot = Some(snap);
        self.list_stale = true;
    }

    /// Rebuilds the merged list if a snapshot changed; returns whether it did.
    pub fn refresh_list(&mut self) -> bool {
        if !self.list_stale {
            return false;
        }
        self.list = List::merge(self.shards.iter().flatten().cloned().collect());
        self.list_epochs = self
            .shards
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.epoch))
            .collect();
        self.list_stale = false;
        true
    }
}

/// The fields of a Valve heartbeat; `None` if `gamedir` is missing.
fn valve_fields<'a>(info: &InfoString<'a>) -> Option<Fields<'a>> {
    let get = |k: &[u8]| info.get(k);
    let game = get(b"gamedir").filter(|g| !g.is_empty())?;
    let server_type = get(b"type").and_then(|t| t.first().copied()).unwrap_or(0);
    let mut f = 0;
    let mut set = |bit: u16, on: bool| {
        if on {
            f |= bit;
        }
    };
    set(flags::DEDICATED, server_type.eq_ignore_ascii_case(&b'd'));
    set(flags::PROXY, server_type.eq_ignore_ascii_case(&b'p'));
    set(flags::SECURE, is_one(get(b"secure")));
    set(flags::PASSWORD, is_one(get(b"password")));
    set(flags::LAN, is_one(get(b"lan")));
    set(flags::NAT, is_one(get(b"nat")));
    set(flags::WHITELISTED, is_one(get(b"white")));
    set(
        flags::LINUX,
        get(b"os").is_some_and(|o| o.eq_ignore_ascii_case(b"l")),
    );
    Some(Fields {
        region: small_number(get(b"region")).unwrap_or(255),
        server_type,
        players: small_number(get(b"players")).unwrap_or(0),
        max_players: small_number(get(b"max")).unwrap_or(0),
        bots: small_number(get(b"bots")).unwrap_or(0),
        flags: f,
        appid: number(get(b"appid")).unwrap_or(0),
        protocol: number(get(b"protocol")).unwrap_or(0),
        game,
        product: get(b"product").unwrap_or_default(),
        map: get(b"map").unwrap_or_default(),
        version: get(b"version").unwrap_or_default(),
        tags: get(b"gametype").unwrap_or_default(),
        gamedata: get(b"gamedata").unwrap_or_default(),
        hostname: get(b"hostname")
            .or_else(|| get(b"name"))
            .unwrap_or_default(),
    })
}

/// The fields of an `infoResponse` as dpmaster 2.2 requires them: `protocol` numeric,
/// `sv_maxclients` non-zero, `clients` numeric, `gamename` unless the tag implies it (and equal to
/// it if both), no spaces in `gamename` and `gametype`.
fn dp_fields<'a>(ir: &InfoResponse<'a>, implied: Option<&'static [u8]>) -> Option<Fields<'a>> {
    let get = |k: &[u8]| ir.info.get(k);
    let protocol = ir.number(b"protocol")?;
    let max = ir.number(b"sv_maxclients").filter(|&m| m != 0)?;
    let clients = ir.number(b"clients")?;
    let game = match (get(b"gamename"), implied) {
        (Some(g), Some(i)) if g != i => return None,
        (Some(g), _) => g,
        (None, Some(i)) => i,
        (None, None) => return None,
    };
    let gametype = get(b"gametype").unwrap_or_default();
    if game.is_empty() || game.contains(&b' ') || gametype.contains(&b' ') {
        return None;
    }
    Some(Fields {
        region: 255,
        server_type: b'd',
        players: u8::try_from(clients).unwrap_or(u8::MAX),
        max_players: u8::try_from(max).unwrap_or(u8::MAX),
        bots: small_number(get(b"bots")).unwrap_or(0),
        flags: if is_one(get(b"g_needpass")) {
            flags::PASSWORD
        } else {
            0
        },
        appid: 0,
        protocol,
        game,
        product: get(b"modname").unwrap_or_default(),
        map: get(b"mapname").unwrap_or_default(),
        version: get(b"gameversion").unwrap_or_default(),
        tags: gametype,
        gamedata: b"",
        hostname: get(b"hostname").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::dp_server::GetInfo;

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
        let mut out = Packets::default();
        let mut hb = Vec::new();
        DpHeartbeat { tag, newline: true }.encode(&mut hb).unwrap();
        let before = m.counters().dropped_total();
        if m.handle(now, from, &hb, &mut out) == Reply::Nothing {
            return Drop::ALL.into_iter().find(|d| m.counters().dropped(*d) > 0);
        }
        let getinfo = out.iter().next().unwrap().to_vec();
        let challenge = GetInfo::decode(&getinfo).unwrap().challenge.to_vec();
        // A repeat heartbeat in the same window gets the same challenge.
        m.handle(now, from, &hb, &mut out);
        assert_eq!(out.iter().next().unwrap(), &getinfo[..]);
        let mut all: Vec<(&[u8], &[u8])> = pairs.to_vec();
        all.push((b"challenge", &challenge));
        let mut ir = Vec::new();
        InfoResponse::encode(&mut ir, all).unwrap();
        m.handle(now.plus_millis(30), from, &ir, &mut out);
        (m.counters().dropped_total() > before).then(|| {
            *Drop::ALL
                .iter()
                .find(|d| m.counters().dropped(**d) > 0)
                .unwrap()
        })
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
        let mut out = Packets::default();
        m.handle(Time::ZERO, a, b"q\xff\x78\x56\x34\x12", &mut out);
        let reply = ChallengeReply::decode(out.iter().next().unwrap()).unwrap();
        assert_eq!(reply.nonce, Some(0x1234_5678));
        assert_eq!(
            m.handle(Time::ZERO, a, b"GET / HTTP/1.0", &mut out),
            Reply::Nothing
        );
        assert_eq!(
            m.handle(
                Time::ZERO,
                a,
                b"\xff\xff\xff\xffTSource Engine Query\0",
                &mut out
            ),
            Reply::Nothing
        );
        assert_eq!(m.counters().dropped(Drop::Unknown), 1);
        assert_eq!(m.counters().dropped(Drop::Unexpected), 1);
    }
}
