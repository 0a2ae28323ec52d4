//! What the control thread knows: each core's latest report and dump, the history, what the state
//! file and config reloads last did, the watched servers — and the answers built from it
//! (`/api/stats`, `/api/servers`, `/api/watch`). Pure: the thread feeds it, the HTTP handlers
//! read it.

use super::alert::{Delivery, Health};
use super::conns::ConnCounters;
use super::history::{Cumulative, History, Point};
use crate::engine::{CoreDump, CoreStatus, EngineCounters};
use crate::master::admission::refused::{self, Source};
use crate::master::probe::Hidden;
use crate::master::{Counters, DropReason};
use crate::master::{Family, Server};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

/// Servers per page of `/api/servers`.
pub const PAGE_SIZE: usize = 500;
/// Sources shown as "top refused".
pub const TOP_SHOWN: usize = 10;
/// Refusals per second (admission control and bans, all cores) above which the master reports a
/// flood: a person's browser is refused a few times a minute at most.
pub const FLOOD_REFUSED_PER_SEC: f64 = 100.0;

pub fn family_name(f: Family) -> &'static str {
    match f {
        Family::Valve => "valve",
        Family::DarkPlaces => "dp",
    }
}

/// Everything the control thread holds. Cheap to clone (the dumps are shared): the control thread
/// hands a copy to the HTTP side every tick, which answers from it on its own threads.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub version: &'static str,
    pub started_unix_ms: u64,
    pub now_unix_ms: u64,
    pub status: Vec<Option<CoreStatus>>,
    /// Unix ms at which each core's report last advanced.
    pub report_seen_unix_ms: Vec<u64>,
    pub dumps: Vec<Option<Arc<CoreDump>>>,
    pub history: History,
    pub state: StateInfo,
    pub config: ConfigInfo,
    /// The engine's clock against Unix time: converts dump times (engine clock) to Unix times.
    pub clock: Option<crate::engine::WallClock>,
    /// Each HTTP listener's counters, by name (`operator`, `public`).
    pub http: Vec<(&'static str, Arc<ConnCounters>)>,
    /// `[[watch]]`: the watched servers, as of the last fresh set of dumps (`None`: no watch).
    pub watch: Option<Arc<super::watch::Status>>,
    /// The alert thread's deliveries (`None`: no watch).
    pub alerts: Option<Arc<Health>>,
    /// The peering thread's figures (`None`: no peers).
    pub peering: Option<Arc<super::peering::PeeringCounters>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StateInfo {
    pub file: Option<String>,
    pub last_write_unix: Option<u64>,
    pub last_write_servers: Option<usize>,
    pub last_write_bytes: Option<u64>,
    pub writes: u64,
    pub write_errors: u64,
    pub last_error: Option<String>,
    /// What reading it at start did ("restored N servers", or why it was ignored).
    pub at_start: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ConfigInfo {
    pub file: Option<String>,
    pub loaded_unix: u64,
    pub reloads: u64,
    pub reload_errors: u64,
    pub last_error: Option<String>,
}

/// Sums of every core's latest report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub c: Counters,
    pub e: EngineCounters,
}

#[derive(Clone, Debug, Serialize)]
pub struct GameCount {
    pub family: &'static str,
    pub game: String,
    pub servers: u64,
}

impl View {
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.status.iter().flatten() {
            t.c += &s.counters;
            t.e.add(&s.engine);
        }
        t
    }

    pub fn cumulative(&self) -> Cumulative {
        let t = self.totals();
        Cumulative::of(&t.c, &t.e)
    }

    /// Servers held now, from every core's report (each server is in exactly one shard): known
    /// even when the cores do not dump (no HTTP, no state file).
    pub fn shard_servers(&self) -> u64 {
        self.status
            .iter()
            .flatten()
            .map(|s| s.shard_servers as u64)
            .sum()
    }

    /// Servers listed now, by family: every core's own shard (each server is in exactly one).
    /// Hidden servers ([`View::hidden`]) are not listed.
    pub fn servers(&self) -> (u64, u64) {
        let (mut valve, mut dp) = (0u64, 0u64);
        for d in self.dumps.iter().flatten() {
            for (s, _) in d.shard.iter().filter(|(s, _)| s.is_listed()) {
                match s.family {
                    Family::Valve => valve += 1,
                    Family::DarkPlaces => dp += 1,
                }
            }
        }
        (valve, dp)
    }

    /// Servers in the table but in no list (their probes hid them), by reason.
    pub fn hidden(&self) -> BTreeMap<&'static str, u64> {
        let mut by = BTreeMap::new();
        for d in self.dumps.iter().flatten() {
            for (slot, _, _) in d.shard.slots().filter(|(_, s, _)| !s.is_listed()) {
                let why = d.shard.probe(slot).hidden().map_or("hidden", Hidden::name);
                *by.entry(why).or_default() += 1;
            }
        }
        by
    }

    /// Listed servers per (family, game), most first.
    pub fn games(&self) -> Vec<GameCount> {
        let mut counts: HashMap<(Family, &[u8]), u64> = HashMap::new();
        for d in self.dumps.iter().flatten() {
            for (s, _) in d.shard.iter().filter(|(s, _)| s.is_listed()) {
                *counts
                    .entry((s.family, d.shard.strings.get(s.game)))
                    .or_default() += 1;
            }
        }
        let mut v: Vec<GameCount> = counts
            .into_iter()
            .map(|((f, g), n)| GameCount {
                family: family_name(f),
                game: String::from_utf8_lossy(g).into_owned(),
                servers: n,
            })
            .collect();
        v.sort_by(|a, b| {
            b.servers
                .cmp(&a.servers)
                .then_with(|| a.family.cmp(b.family))
                .then_with(|| a.game.cmp(&b.game))
        });
        v
    }

    pub fn top_refused(&self) -> Vec<(Source, u64)> {
        refused::merge(
            self.dumps
                .iter()
                .flatten()
                .map(|d| d.top_refused.as_slice()),
            TOP_SHOWN,
        )
    }

    pub fn tracked(&self) -> (usize, usize) {
        self.dumps
            .iter()
            .flatten()
            .fold((0, 0), |a, d| (a.0 + d.tracked.0, a.1 + d.tracked.1))
    }

    /// The latest rates (the last history point, or zeros before the first).
    pub fn rates(&self) -> Point {
        self.history.last().copied().unwrap_or_default()
    }

    pub fn flood(&self) -> bool {
        self.rates().refused > FLOOD_REFUSED_PER_SEC
    }

    fn unix_secs_of(&self, secs_on_clock: u32) -> u64 {
        match &self.clock {
            Some(w) => w.unix_ms(crate::master::Time::from_secs(u64::from(secs_on_clock))) / 1000,
            None => u64::from(secs_on_clock),
        }
    }

    /// `/api/stats`.
    pub fn stats(&self) -> Stats {
        let t = self.totals();
        let (valve, dp) = self.servers();
        let r = self.rates();
        let tracked = self.tracked();
        let xash = t.c.xash_queries;
        Stats {
            version: self.version,
            started_unix: self.started_unix_ms / 1000,
            uptime_secs: self.now_unix_ms.saturating_sub(self.started_unix_ms) / 1000,
            cores: self.status.len(),
            servers: ServerCounts {
                total: valve + dp,
                valve,
                dp,
                hidden: self.hidden(),
            },
            games: self.games(),
            totals: TotalsJson {
                received: t.c.received,
                registrations: t.c.registered,
                refreshed: t.c.refreshed,
                expired: t.c.expired,
                restored: t.c.restored,
                delisted: t.c.delisted,
                challenges_sent: t.c.challenges_sent,
                queries: Queries {
                    valve: t.c.valve_queries.saturating_sub(xash),
                    dp: t.c.dp_queries,
                    xash,
                },
                bytes_sent: t.e.bytes_sent,
                datagrams_sent: t.e.datagrams_sent,
                dropped: t.c.dropped_total(),
            },
            dropped: DropReason::ALL
                .iter()
                .filter(|d| t.c.dropped(**d) > 0)
                .map(|d| (d.name(), t.c.dropped(*d)))
                .collect(),
            rates: Rates {
                registrations_per_sec: r.registrations,
                queries_per_sec: r.queries,
                bytes_out_per_sec: r.bytes_out,
                drops_per_sec: r.drops,
            },
            admission: AdmissionJson {
                tracked_sources: tracked.0,
                tracked_networks: tracked.1,
                refused_per_sec: r.refused,
                flood: self.flood(),
            },
            top_refused: self
                .top_refused()
                .into_iter()
                .map(|(s, n)| Refused {
                    source: s.to_string(),
                    refused: n,
                })
                .collect(),
            per_core: self
                .status
                .iter()
                .enumerate()
                .map(|(core, s)| PerCore {
                    core,
                    shard_servers: s.as_ref().map_or(0, |s| s.shard_servers),
                    valve_listed: s.as_ref().map_or(0, |s| s.valve_listed),
                    dp_listed: s.as_ref().map_or(0, |s| s.dp_listed),
                    received: s.as_ref().map_or(0, |s| s.counters.received),
                    report_age_ms: self
                        .report_seen_unix_ms
                        .get(core)
                        .map(|&at| self.now_unix_ms.saturating_sub(at)),
                })
                .collect(),
            state: self.state.clone(),
            config: self.config.clone(),
            watch: self.watch_summary(),
            peering: self.peering.as_ref().map(|p| PeeringJson {
                peers: p.json(),
                rejected: p.rejected(),
            }),
        }
    }

    /// The watches in a few figures (`/api/stats`); `None` without a watch.
    pub fn watch_summary(&self) -> Option<WatchSummary> {
        let w = self.watch.as_ref()?;
        let d = self.deliveries();
        let sum = |f: &dyn Fn(&Delivery) -> u64| d.iter().map(f).sum::<u64>();
        Some(WatchSummary {
            watched: w.hooks.iter().map(|h| h.watched).sum(),
            up: w.hooks.iter().map(|h| h.up).sum(),
            down: w.hooks.iter().map(|h| h.down).sum(),
            never_listed: w.hooks.iter().map(|h| h.never_listed).sum(),
            transitions: w.transitions,
            alerts_sent: sum(&|d| d.counts.sent),
            alerts_failed: sum(&|d| d.counts.failed),
            alerts_dropped: self.alerts_dropped().iter().map(|(_, n)| n).sum(),
            alerts_pending: d.iter().map(|d| d.pending).sum(),
        })
    }

    /// Each webhook's delivery (empty without a watch).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.alerts
            .as_ref()
            .map(|a| a.deliveries())
            .unwrap_or_default()
    }

    /// Transitions not posted, by reason: the channel to the alert thread was full, a webhook's
    /// queue was full, every attempt failed (or the webhook refused).
    pub fn alerts_dropped(&self) -> [(&'static str, u64); 3] {
        let d = self.deliveries();
        let channel = self.alerts.as_ref().map_or(0, |a| {
            a.channel_full.load(std::sync::atomic::Ordering::Relaxed)
        });
        [
            ("channel_full", channel),
            ("queue_full", d.iter().map(|d| d.counts.queue_full).sum()),
            ("gave_up", d.iter().map(|d| d.counts.gave_up).sum()),
        ]
    }

    /// `/api/watch`: every webhook's watches, servers (down first) and delivery; the last
    /// transitions.
    pub fn watch_json(&self) -> WatchJson {
        let d = self.deliveries();
        match &self.watch {
            None => WatchJson {
                now_unix_ms: self.now_unix_ms,
                ..WatchJson::default()
            },
            Some(w) => WatchJson {
                now_unix_ms: self.now_unix_ms,
                hooks: w
                    .hooks
                    .iter()
                    .enumerate()
                    .map(|(i, h)| HookJson {
                        watch: h.clone(),
                        delivery: d.get(i).cloned(),
                    })
                    .collect(),
                history: w.history.clone(),
                transitions: w.transitions,
                untracked: w.untracked,
                dropped: self.alerts_dropped().into_iter().collect(),
            },
        }
    }

    /// `/api/servers`: page `page` of the servers of `game` (any game when `None`; the name is
    /// matched without regard to ASCII case), in address order.
    pub fn servers_page(&self, game: Option<&str>, page: usize) -> ServersPage {
        let mut hits: Vec<(&Server, u32, &CoreDump, u32)> = Vec::new();
        for d in self.dumps.iter().flatten() {
            for (slot, s, seen) in d.shard.slots() {
                if game.is_none_or(|g| {
                    d.shard
                        .strings
                        .get(s.game)
                        .eq_ignore_ascii_case(g.as_bytes())
                }) {
                    hits.push((s, seen, d.as_ref(), slot));
                }
            }
        }
        hits.sort_unstable_by_key(|h| h.0.addr);
        let total = hits.len();
        let servers = hits
            .iter()
            .skip(page.saturating_mul(PAGE_SIZE))
            .take(PAGE_SIZE)
            .map(|&(s, seen, d, slot)| {
                let text = |sym| String::from_utf8_lossy(d.shard.strings.get(sym)).into_owned();
                ServerJson {
                    address: s.addr.addr().to_string(),
                    listed: s.is_listed(),
                    hidden: (!s.is_listed())
                        .then(|| d.shard.probe(slot).hidden().map_or("hidden", Hidden::name)),
                    family: family_name(s.family),
                    game: text(s.game),
                    name: text(s.hostname),
                    map: text(s.map),
                    players: s.players,
                    max_players: s.max_players,
                    bots: s.bots,
                    first_heartbeat_unix: self.unix_secs_of(s.first_seen),
                    last_heartbeat_unix: self.unix_secs_of(seen),
                    expires_unix: self.unix_secs_of(d.shard.expires_at(seen).secs_u32()),
                }
            })
            .collect();
        ServersPage {
            game: game.map(str::to_owned),
            page,
            page_size: PAGE_SIZE,
            total,
            pages: total.div_ceil(PAGE_SIZE),
            servers,
        }
    }

    /// `/api/history`.
    pub fn history_json(&self, interval_secs: u64) -> HistoryJson<'_> {
        HistoryJson {
            interval_secs,
            points: self.history.points().collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct WatchSummary {
    pub watched: usize,
    pub up: usize,
    pub down: usize,
    pub never_listed: usize,
    pub transitions: super::watch::Directions,
    pub alerts_sent: u64,
    pub alerts_failed: u64,
    pub alerts_dropped: u64,
    pub alerts_pending: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct WatchJson {
    /// The control thread's clock (the `since` and `at` times are on it).
    pub now_unix_ms: u64,
    pub hooks: Vec<HookJson>,
    pub history: Vec<super::watch::Transition>,
    pub transitions: super::watch::Directions,
    pub untracked: usize,
    pub dropped: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
pub struct HookJson {
    #[serde(flatten)]
    pub watch: super::watch::HookStatus,
    pub delivery: Option<Delivery>,
}

#[derive(Debug, Serialize)]
pub struct HistoryJson<'a> {
    pub interval_secs: u64,
    pub points: Vec<&'a Point>,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub version: &'static str,
    pub started_unix: u64,
    pub uptime_secs: u64,
    pub cores: usize,
    pub servers: ServerCounts,
    pub games: Vec<GameCount>,
    pub totals: TotalsJson,
    pub dropped: BTreeMap<&'static str, u64>,
    pub rates: Rates,
    pub admission: AdmissionJson,
    pub top_refused: Vec<Refused>,
    pub per_core: Vec<PerCore>,
    pub state: StateInfo,
    pub config: ConfigInfo,
    /// `null` without a `[[watch]]`.
    pub watch: Option<WatchSummary>,
    /// Each peer's state and the datagrams refused (`null` without peers).
    pub peering: Option<PeeringJson>,
}

#[derive(Debug, Serialize)]
pub struct ServerCounts {
    pub total: u64,
    pub valve: u64,
    pub dp: u64,
    /// In the table but in no list, by reason (liveness probes).
    pub hidden: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
pub struct TotalsJson {
    pub received: u64,
    pub registrations: u64,
    pub refreshed: u64,
    pub expired: u64,
    pub restored: u64,
    pub delisted: u64,
    pub challenges_sent: u64,
    pub queries: Queries,
    pub bytes_sent: u64,
    pub datagrams_sent: u64,
    pub dropped: u64,
}

#[derive(Debug, Serialize)]
pub struct Queries {
    pub valve: u64,
    pub dp: u64,
    pub xash: u64,
}

#[derive(Debug, Serialize)]
pub struct Rates {
    pub registrations_per_sec: f64,
    pub queries_per_sec: f64,
    pub bytes_out_per_sec: f64,
    pub drops_per_sec: f64,
}

#[derive(Debug, Serialize)]
pub struct AdmissionJson {
    pub tracked_sources: usize,
    pub tracked_networks: usize,
    pub refused_per_sec: f64,
    pub flood: bool,
}

#[derive(Debug, Serialize)]
pub struct Refused {
    pub source: String,
    pub refused: u64,
}

#[derive(Debug, Serialize)]
pub struct PerCore {
    pub core: usize,
    pub shard_servers: usize,
    pub valve_listed: usize,
    pub dp_listed: usize,
    pub received: u64,
    pub report_age_ms: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct ServersPage {
    pub game: Option<String>,
    pub page: usize,
    pub page_size: usize,
    pub total: usize,
    pub pages: usize,
    pub servers: Vec<ServerJson>,
}

#[derive(Debug, Serialize)]
pub struct ServerJson {
    pub address: String,
    /// In list replies (false: hidden by its probes, see `hidden`).
    pub listed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<&'static str>,
    pub family: &'static str,
    pub game: String,
    pub name: String,
    pub map: String,
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
    pub first_heartbeat_unix: u64,
    pub last_heartbeat_unix: u64,
    pub expires_unix: u64,
}

/// `GET /api/v1/servers/<addr>`: whether one address is listed, and why not.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WhyJson {
    pub address: String,
    pub listed: bool,
    /// `listed`; a hidden server's reason (`not_answered_yet`, `probe_timeouts`,
    /// `answer_contradicts_heartbeat`, `answered_from_another_source`, `clone_of_other_ports`);
    /// for an address not in the table its last refused registration's reason (`bad_challenge`,
    /// `per_ip_cap`, `per_net_cap`, `banned`, `missing_key`, …), else `never_heartbeated`.
    pub reason: &'static str,
    /// The reason in a sentence, for a person.
    pub explanation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<WhyServer>,
    /// When the registration counted in `reason` was refused (not-listed addresses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_unix: Option<u64>,
}

/// What the master holds of a server in its table (listed or hidden).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WhyServer {
    pub family: &'static str,
    pub game: String,
    pub name: String,
    pub map: String,
    pub players: u8,
    pub max_players: u8,
    pub first_heartbeat_unix: u64,
    pub last_heartbeat_unix: u64,
    pub expires_unix: u64,
    /// Liveness probes (absent when probing is off or the server is on an allowed network).
    pub probed: bool,
    pub last_probe_unix: Option<u64>,
    pub last_answer_unix: Option<u64>,
    pub round_trip_ms: Option<u16>,
    /// Probes missed in a row since the last answer.
    pub probe_timeouts_since_answer: u8,
}

fn explain(reason: &str) -> &'static str {
    match reason {
        "listed" => "listed: in every reply that matches it",
        "not_answered_yet" => {
            "registered, but has not answered an A2S_INFO / getinfo probe yet: check that the \
             game port answers queries from the master's address"
        }
        "probe_timeouts" => "stopped answering probes: hidden until it answers again",
        "answer_contradicts_heartbeat" => {
            "its probe answer names another game or app id than its heartbeat"
        }
        "answered_from_another_source" => {
            "its probe answer came from another port or address than the one that registered"
        }
        "clone_of_other_ports" => {
            "one host's many ports answer with this same body: treated as copies of one server"
        }
        "never_heartbeated" => "no heartbeat from this address has reached the master lately",
        "bad_challenge" => "its heartbeat carried a wrong or stale challenge",
        "per_ip_cap" => "its address holds the most servers one address may list",
        "per_net_cap" => "its /24 (/48) holds the most servers one network may list",
        "banned" => "its network is banned by the operator",
        "missing_key" => {
            "its heartbeat lacks a required key (gamedir; DP: protocol, clients, sv_maxclients)"
        }
        "private_address" => "a private or loopback address, not accepted on this master",
        "table_full" => "the master holds its most servers",
        "game_rejected" => "its game is not accepted on this master",
        _ => "its last registration was refused",
    }
}

impl View {
    /// Whether `addr` is listed and why not: the table of the core it belongs to (every core's
    /// dump is searched: a scan, under a millisecond per 100,000 servers), else the refusals the
    /// cores remember.
    pub fn why(&self, addr: SocketAddr) -> WhyJson {
        let addr = crate::master::policy::canonical(addr);
        for d in self.dumps.iter().flatten() {
            if let Some((slot, s, seen)) = d.shard.find(addr) {
                let b = d.shard.probe(slot);
                let reason = if s.is_listed() {
                    "listed"
                } else {
                    b.hidden().map_or("hidden", Hidden::name)
                };
                let text = |sym| String::from_utf8_lossy(d.shard.strings.get(sym)).into_owned();
                let at = |secs: u32| (secs != 0).then(|| self.unix_secs_of(secs));
                return WhyJson {
                    address: addr.to_string(),
                    listed: s.is_listed(),
                    reason,
                    explanation: explain(reason).to_owned(),
                    server: Some(WhyServer {
                        family: family_name(s.family),
                        game: text(s.game),
                        name: text(s.hostname),
                        map: text(s.map),
                        players: s.players,
                        max_players: s.max_players,
                        first_heartbeat_unix: self.unix_secs_of(s.first_seen),
                        last_heartbeat_unix: self.unix_secs_of(seen),
                        expires_unix: self.unix_secs_of(d.shard.expires_at(seen).secs_u32()),
                        probed: b.probed_secs != 0 || b.hidden != 0,
                        last_probe_unix: at(b.probed_secs),
                        last_answer_unix: at(b.answered_secs),
                        round_trip_ms: (b.answered_secs != 0).then_some(b.rtt_ms),
                        probe_timeouts_since_answer: b.misses,
                    }),
                    refused_unix: None,
                };
            }
        }
        let refused = self
            .dumps
            .iter()
            .flatten()
            .flat_map(|d| d.shard.rejections.iter())
            .filter(|(a, ..)| *a == addr)
            .max_by_key(|(_, _, at)| *at);
        let (reason, refused_unix) = match refused {
            Some((_, why, at)) => (why.name(), Some(self.unix_secs_of(*at))),
            None => ("never_heartbeated", None),
        };
        WhyJson {
            address: addr.to_string(),
            listed: false,
            reason,
            explanation: explain(reason).to_owned(),
            server: None,
            refused_unix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::CoreDump;
    use crate::master::Time;
    use crate::master::probe::ProbeConfig;
    use crate::master::service::test_support::{Master, REQUIRED, dp_register, xash_register};
    use crate::master::{Config, DropReason};

    fn view_of(m: &Master) -> View {
        View {
            dumps: vec![Some(Arc::new(CoreDump {
                core: 0,
                at: Time::from_secs(10),
                shard: m.dump(),
                top_refused: Vec::new(),
                tracked: (0, 0),
                last: false,
            }))],
            ..View::default()
        }
    }

    #[test]
    fn why_says_listed_hidden_refused_or_never_heard() {
        let mut c = Config::with_secret([7; 16]);
        c.limits.allow_private = true;
        c.limits.max_servers_per_ip = 1;
        c.probe = ProbeConfig::default();
        let mut m = Master::new(Time::ZERO, c, 0, 1);
        let (xash, dp, capped) = (
            "1.2.3.4:27015".parse().unwrap(),
            "5.6.7.8:27960".parse().unwrap(),
            "1.2.3.4:27016".parse().unwrap(),
        );
        xash_register(&mut m, xash, false).unwrap();
        assert_eq!(dp_register(&mut m, dp, b"QuakeArena-1", &REQUIRED), None);
        assert_eq!(
            m.handle(Time::from_secs(10), capped, 0, b"q"),
            Err(DropReason::PerIpCap)
        );
        let v = view_of(&m);
        let w = v.why(xash);
        assert_eq!((w.listed, w.reason), (false, "not_answered_yet"));
        let s = w.server.unwrap();
        assert_eq!((s.game.as_str(), s.probed), ("valve", true));
        assert_eq!(s.last_answer_unix, None);
        let w = v.why(dp);
        assert_eq!((w.listed, w.reason), (true, "listed"));
        assert!(
            w.server.unwrap().last_answer_unix.is_some(),
            "its registration answered"
        );
        let w = v.why(capped);
        assert_eq!((w.listed, w.reason), (false, "per_ip_cap"));
        assert!(w.server.is_none() && w.refused_unix.is_some());
        let w = v.why("9.9.9.9:1".parse().unwrap());
        assert_eq!(w.reason, "never_heartbeated");
        // The operator's counts leave the hidden server out of the listed ones.
        assert_eq!(v.servers(), (0, 1));
        assert_eq!(v.hidden().get("not_answered_yet"), Some(&1));
        let page = v.servers_page(None, 0);
        assert_eq!(
            page.total, 2,
            "hidden servers are in the operator's list, marked"
        );
        assert!(
            page.servers
                .iter()
                .any(|s| !s.listed && s.hidden == Some("not_answered_yet"))
        );
    }
}

/// `/api/stats` `peering`.
#[derive(Debug, Serialize)]
pub struct PeeringJson {
    pub peers: Vec<super::peering::PeerJson>,
    /// Datagrams refused, by reason (`mac`, `replay`, `unknown_peer`, `malformed`) and batches
    /// not handed over (`core_queue_full`, `out_queue_full`).
    pub rejected: BTreeMap<&'static str, u64>,
}
