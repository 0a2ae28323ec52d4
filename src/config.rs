//! The `serve` configuration: TOML with unknown keys refused, defaults from the embedded
//! `default-config.toml` (so the commented file in the repo *is* the defaults), command-line
//! overrides applied on top, then checked and turned into the engine's [`Settings`].

use crate::control::watch::{MAX_GAME_LEN, MAX_WATCH_SERVERS, MAX_WATCHES, WatchSpec, Watched};
use crate::control::webhook::Webhook;
use crate::engine::Settings;
use crate::engine::coalesce::MAX_COALESCE;
use crate::master::Config as MasterConfig;
use crate::master::TxConfig;
use crate::master::XashConfig;
use crate::master::admission::bucket::{MAX_BURST, Rate};
use crate::master::admission::{AdmissionConfig, ClassLimits, QUERY};
use crate::master::policy::bans::{MAX_BANS, NetSet};
use crate::master::policy::games::{GameProps, Games};
use crate::master::probe::ProbeConfig;
use crate::master::{GamePolicy, Limits};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The commented default configuration, embedded in the binary.
pub const DEFAULT_TOML: &str = include_str!("default-config.toml");

/// Largest accepted `max_dp_packet`: one UDP datagram on a 1500-byte Ethernet path.
pub const MAX_DP_PACKET: usize = 1472;
/// Smallest `max_dp_packet` that still carries a header, one IPv6 entry and the EOT.
pub const MIN_DP_PACKET: usize = 64;
/// Upper bound on `list_refresh_ms`: a list older than a minute is not a live list.
pub const MAX_LIST_REFRESH_MS: u64 = 60_000;
/// Upper bound on `max_servers` (a list addresses 2²⁶ slots a shard; this leaves room).
pub const MAX_SERVERS: usize = 16_000_000;
/// Upper bound on `state_interval_secs` (a day: a state file older than that is barely a state).
pub const MAX_STATE_INTERVAL_SECS: u64 = 86_400;
/// Upper bound on `pacing.max_queued_mib`.
pub const MAX_QUEUED_MIB: usize = 4096;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub listen: Vec<SocketAddr>,
    pub cores: usize,
    pub allow_private: bool,
    pub server_timeout: u64,
    pub max_servers: usize,
    pub max_servers_per_ip: u16,
    pub max_servers_per_net: u16,
    pub max_string_mib: usize,
    pub list_refresh_ms: u64,
    pub accept_games: Vec<String>,
    pub reject_games: Vec<String>,
    pub max_dp_packet: usize,
    pub pacing: PacingFile,
    pub admission: AdmissionFile,
    pub sockets: SocketsFile,
    pub xash: XashFile,
    /// `[probe]`: liveness probes of listed servers.
    pub probe: ProbeFile,
    /// `[[game]]`: Quake III-family game properties laid over the built-in ones.
    #[serde(default)]
    pub game: Vec<GameFile>,
    /// Networks (CIDR or address) whose servers are delisted and whose datagrams are dropped.
    pub ban: Vec<String>,
    /// The operator's HTTP listener (status page, metrics, JSON API); "off" disables it.
    pub http_listen: String,
    /// The public HTTP listener (read-only lists, server browser); "" or "off": none.
    pub public_http: String,
    /// `[http]`: the bounds of both HTTP listeners.
    pub http: HttpFile,
    /// Where listed servers are kept across restarts ("" = nowhere).
    pub state_file: String,
    pub state_interval_secs: u64,
    /// A file holding the challenge secret (64 hex digits), shared by masters behind one address
    /// ("": a fresh secret per process).
    pub challenge_secret_file: String,
    /// `[[watch]]`: servers whose going and coming back is posted to a webhook.
    #[serde(default)]
    pub watch: Vec<WatchFile>,
    /// `[peering]`: the masters this one exchanges registrations with.
    pub peering: PeeringFile,
}

/// One `[[watch]]` table: `servers` or `game`, and where to post.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchFile {
    /// Addresses (`ip:port`) of the servers watched.
    pub servers: Option<Vec<String>>,
    /// Every server of this game (Valve gamedir, DarkPlaces gamename; any case).
    pub game: Option<String>,
    /// Discord's or Slack's incoming-webhook URL (or any that takes their JSON).
    pub webhook: String,
}

/// One `[[game]]` table (dpmaster's `-g <game> protocols=… heartbeat=… options=…`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GameFile {
    pub name: String,
    #[serde(default)]
    pub protocols: Vec<u32>,
    #[serde(default)]
    pub heartbeat: Vec<String>,
    #[serde(default)]
    pub send_empty: bool,
    #[serde(default)]
    pub send_full: bool,
}

/// `[http]`: what one HTTP connection may cost (both listeners).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub header_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub write_timeout_secs: u64,
    pub min_send_rate_bytes: u64,
    pub public_refresh_secs: u64,
}

/// `[peering]`: redundant masters (issue 22).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeeringFile {
    /// Where this master's peering socket listens ("": `0.0.0.0:27951` when there are peers).
    pub listen: String,
    /// Every other master's peering address (`host:port`).
    pub peers: Vec<String>,
    /// 64 hex digits (32 random bytes), the same file on every peer.
    pub key_file: String,
}

/// Peers a master may have (each forwarded registration goes to every one).
pub const MAX_PEERS: usize = 32;

/// `[probe]`: liveness probes ([`crate::master::probe`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeFile {
    pub enabled: bool,
    pub interval_secs: u64,
    pub timeout_ms: u64,
    pub retries: u8,
    pub failures: u8,
    pub rate_per_sec: u32,
    pub clone_ports: u16,
    /// Networks whose servers are listed without answering probes (CIDRs or addresses).
    pub allow: Vec<String>,
}

/// `[xash]`: Xash3D FWGS behaviours behind switches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XashFile {
    /// Clients with an older `\clver\` get only `update_addr` (empty: off).
    pub min_clver: String,
    /// The one entry old clients get (`host:port`; required when `min_clver` is set).
    pub update_addr: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacingFile {
    pub window_kib: u32,
    pub rate_kib: u32,
    pub max_queued_mib: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionFile {
    pub trusted: Vec<String>,
    pub max_sources: usize,
    pub max_networks: usize,
    pub fine_kib: u32,
    pub validation_secs: u64,
    pub unvalidated: ClassFile,
    pub validated: ClassFile,
    pub network: ClassFile,
    pub validated_network: ClassFile,
    pub trusted_network: ClassFile,
    pub unproven: UnprovenFile,
    pub core: CoreFile,
    pub challenges: ChallengesFile,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassFile {
    pub queries_burst: u32,
    pub queries_per_minute: u32,
    pub reply_burst_kib: u32,
    pub reply_kib_per_sec: u32,
    pub scan_burst: u32,
    pub scan_per_sec: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnprovenFile {
    pub reply_burst_kib: u32,
    pub reply_kib_per_sec: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreFile {
    pub scan_burst: u32,
    pub scan_per_sec: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengesFile {
    pub source_burst: u32,
    pub source_per_sec: u32,
    pub core_burst: u32,
    pub core_per_sec: u32,
}

const KIB: u32 = 1024;

fn kib(n: u32) -> u32 {
    n.saturating_mul(KIB).min(MAX_BURST)
}

fn queries(n: u32) -> u32 {
    n.saturating_mul(QUERY as u32).min(MAX_BURST)
}

impl ClassFile {
    fn limits(&self) -> ClassLimits {
        ClassLimits {
            queries: Rate {
                burst: queries(self.queries_burst),
                per_sec: queries(self.queries_per_minute) / 60,
            },
            bytes: Rate {
                burst: kib(self.reply_burst_kib),
                per_sec: kib(self.reply_kib_per_sec),
            },
            scan: Rate {
                burst: self.scan_burst.min(MAX_BURST),
                per_sec: self.scan_per_sec,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketsFile {
    pub gso: bool,
    pub recv_buffer_kib: usize,
    pub io_memory_kib: usize,
    /// Microseconds a core naps to gather game-server datagrams before it waits again
    /// (`engine::coalesce`); 0: never.
    pub coalesce_us: u64,
}

/// Values given on the command line; each `Some` replaces the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Vec<SocketAddr>,
    pub cores: Option<usize>,
    pub allow_private: bool,
    pub server_timeout: Option<u64>,
    pub max_servers: Option<usize>,
    pub max_servers_per_ip: Option<u16>,
    pub max_servers_per_net: Option<u16>,
    pub list_refresh_ms: Option<u64>,
    pub pace_window_kib: Option<u32>,
    pub pace_rate_kib: Option<u32>,
    pub trusted: Vec<String>,
    pub no_gso: bool,
    pub coalesce_us: Option<u64>,
    pub ban: Vec<String>,
    pub http_listen: Option<String>,
    pub public_http: Option<String>,
    pub state_file: Option<String>,
    /// `--no-probes`: list every server that completes a handshake (probing off).
    pub no_probes: bool,
    pub challenge_secret_file: Option<String>,
    pub peers: Vec<String>,
    pub peer_key_file: Option<String>,
    pub peer_listen: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid setting `{key}`: {why}")]
    Invalid { key: &'static str, why: String },
}

impl File {
    /// The embedded defaults.
    pub fn defaults() -> File {
        // The embedded file is checked by a unit test; failing here would be a build defect.
        Self::parse_partial(DEFAULT_TOML, "<embedded default>")
            .unwrap_or_else(|e| unreachable!("embedded default config: {e}"))
    }

    /// Reads `path`; keys it leaves out keep their defaults.
    pub fn load(path: &Path) -> Result<File, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_partial(&text, &path.display().to_string())
    }

    /// Parses `text` laid over the defaults (a missing key keeps the default; an unknown key is an
    /// error). Merging at the TOML level keeps one source of truth for defaults: the embedded file.
    fn parse_partial(text: &str, path: &str) -> Result<File, ConfigError> {
        let err = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message: one_line(&message),
        };
        let mut base: toml::Table = toml::from_str(include_str!("default-config.toml"))
            .map_err(|e| err(format!("embedded default: {e}")))?;
        let over: toml::Table = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        merge(&mut base, over);
        File::deserialize(toml::Value::Table(base)).map_err(|e| err(e.to_string()))
    }

    pub fn apply(&mut self, o: &Overrides) {
        if !o.listen.is_empty() {
            self.listen.clone_from(&o.listen);
        }
        if let Some(v) = o.cores {
            self.cores = v;
        }
        self.allow_private |= o.allow_private;
        if let Some(v) = o.server_timeout {
            self.server_timeout = v;
        }
        if let Some(v) = o.max_servers {
            self.max_servers = v;
        }
        if let Some(v) = o.max_servers_per_ip {
            self.max_servers_per_ip = v;
        }
        if let Some(v) = o.max_servers_per_net {
            self.max_servers_per_net = v;
        }
        if o.no_probes {
            self.probe.enabled = false;
        }
        if let Some(v) = o.list_refresh_ms {
            self.list_refresh_ms = v;
        }
        if let Some(v) = o.pace_window_kib {
            self.pacing.window_kib = v;
        }
        if let Some(v) = o.pace_rate_kib {
            self.pacing.rate_kib = v;
        }
        self.admission.trusted.extend(o.trusted.iter().cloned());
        if o.no_gso {
            self.sockets.gso = false;
        }
        if let Some(v) = o.coalesce_us {
            self.sockets.coalesce_us = v;
        }
        self.ban.extend(o.ban.iter().cloned());
        if let Some(v) = &o.http_listen {
            self.http_listen.clone_from(v);
        }
        if let Some(v) = &o.public_http {
            self.public_http.clone_from(v);
        }
        if let Some(v) = &o.state_file {
            self.state_file.clone_from(v);
        }
        if let Some(v) = &o.challenge_secret_file {
            self.challenge_secret_file.clone_from(v);
        }
        self.peering.peers.extend(o.peers.iter().cloned());
        if let Some(v) = &o.peer_key_file {
            self.peering.key_file.clone_from(v);
        }
        if let Some(v) = &o.peer_listen {
            self.peering.listen.clone_from(v);
        }
    }

    /// The operator's side: HTTP listeners and their bounds, the state file, checked.
    pub fn operations(&self) -> Result<Operations, ConfigError> {
        let listener = |key: &'static str, v: &str| match v.trim() {
            "" | "off" => Ok(None),
            a => a
                .parse::<SocketAddr>()
                .map(Some)
                .map_err(|_| ConfigError::Invalid {
                    key,
                    why: format!("{a:?} is not an address:port (or \"off\")"),
                }),
        };
        let http = listener("http_listen", &self.http_listen)?;
        let public_http = listener("public_http", &self.public_http)?;
        if let (Some(a), Some(b)) = (http, public_http)
            && a == b
            && a.port() != 0
        {
            return Err(ConfigError::Invalid {
                key: "public_http",
                why: format!("{a} is the operator's listener too (`http_listen`)"),
            });
        }
        let h = &self.http;
        let in_range = |key, v: usize, r: std::ops::RangeInclusive<usize>| {
            if r.contains(&v) {
                Ok(v)
            } else {
                Err(ConfigError::Invalid {
                    key,
                    why: format!("{v} is not in {}..={}", r.start(), r.end()),
                })
            }
        };
        let secs = |key, v: u64, r: std::ops::RangeInclusive<u64>| {
            if r.contains(&v) {
                Ok(Duration::from_secs(v))
            } else {
                Err(ConfigError::Invalid {
                    key,
                    why: format!("{v} is not in {}..={}", r.start(), r.end()),
                })
            }
        };
        use crate::control::limits as l;
        let http_limits = l::HttpLimits {
            max_connections: in_range(
                "http.max_connections",
                h.max_connections,
                l::MAX_CONNECTIONS_RANGE,
            )?,
            max_connections_per_source: in_range(
                "http.max_connections_per_source",
                h.max_connections_per_source,
                l::MAX_CONNECTIONS_RANGE,
            )?,
            header_timeout: secs(
                "http.header_timeout_secs",
                h.header_timeout_secs,
                l::TIMEOUT_SECS_RANGE,
            )?,
            idle_timeout: secs(
                "http.idle_timeout_secs",
                h.idle_timeout_secs,
                l::TIMEOUT_SECS_RANGE,
            )?,
            write_timeout: secs(
                "http.write_timeout_secs",
                h.write_timeout_secs,
                l::TIMEOUT_SECS_RANGE,
            )?,
            min_send_rate: h.min_send_rate_bytes,
        };
        let public_refresh = secs(
            "http.public_refresh_secs",
            h.public_refresh_secs,
            l::PUBLIC_REFRESH_SECS_RANGE,
        )?;
        if !(1..=MAX_STATE_INTERVAL_SECS).contains(&self.state_interval_secs) {
            return Err(ConfigError::Invalid {
                key: "state_interval_secs",
                why: format!("must be 1..={MAX_STATE_INTERVAL_SECS}"),
            });
        }
        Ok(Operations {
            http,
            public_http,
            http_limits,
            public_refresh,
            state_file: (!self.state_file.is_empty()).then(|| PathBuf::from(&self.state_file)),
            state_interval: Duration::from_secs(self.state_interval_secs),
            watches: self.watches()?,
            peering: self.peering()?,
        })
    }

    /// The `[peering]` table, checked: `None` without peers.
    fn peering(&self) -> Result<Option<crate::control::peering::PeeringSettings>, ConfigError> {
        let p = &self.peering;
        if p.peers.is_empty() {
            return Ok(None);
        }
        let bad = |key, why: String| ConfigError::Invalid { key, why };
        if p.peers.len() > MAX_PEERS {
            return Err(bad("peering.peers", format!("at most {MAX_PEERS}")));
        }
        let peers = p
            .peers
            .iter()
            .map(|a| {
                a.trim()
                    .parse::<SocketAddr>()
                    .map_err(|_| bad("peering.peers", format!("{a:?} is not an address:port")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let listen = match p.listen.trim() {
            "" => SocketAddr::from(([0, 0, 0, 0], 27951)),
            l => l
                .parse()
                .map_err(|_| bad("peering.listen", format!("{l:?} is not an address:port")))?,
        };
        let path = p.key_file.trim();
        if path.is_empty() {
            return Err(bad(
                "peering.key_file",
                "peers need a key file (64 hex digits, the same on every peer)".to_owned(),
            ));
        }
        let key = read_hex_key(path).map_err(|why| bad("peering.key_file", why))?;
        Ok(Some(crate::control::peering::PeeringSettings {
            listen,
            peers,
            key,
        }))
    }

    /// The `[[watch]]` tables, checked.
    fn watches(&self) -> Result<Vec<WatchSpec>, ConfigError> {
        let bad = |why: String| ConfigError::Invalid { key: "watch", why };
        if self.watch.len() > MAX_WATCHES {
            return Err(bad(format!(
                "{} entries, at most {MAX_WATCHES}",
                self.watch.len()
            )));
        }
        let mut specs = Vec::with_capacity(self.watch.len());
        for (i, w) in self.watch.iter().enumerate() {
            let n = i + 1;
            let webhook = Webhook::parse(w.webhook.trim())
                .map_err(|e| bad(format!("entry {n}: webhook {e}")))?;
            let watched = match (&w.servers, &w.game) {
                (Some(servers), None) => {
                    if servers.is_empty() || servers.len() > MAX_WATCH_SERVERS {
                        return Err(bad(format!(
                            "entry {n}: servers must list 1..={MAX_WATCH_SERVERS} addresses"
                        )));
                    }
                    let addrs = servers
                        .iter()
                        .map(|a| {
                            a.trim().parse::<SocketAddr>().map_err(|_| {
                                bad(format!(
                                    "entry {n}: {a:?} is not an ip:port (like 192.0.2.7:27015)"
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Watched::Servers(addrs)
                }
                (None, Some(game)) => {
                    let game = game.trim();
                    if game.is_empty() || game.len() > MAX_GAME_LEN {
                        return Err(bad(format!(
                            "entry {n}: game must be 1..={MAX_GAME_LEN} bytes"
                        )));
                    }
                    Watched::Game(game.to_owned())
                }
                _ => {
                    return Err(bad(format!(
                        "entry {n}: give exactly one of `servers` and `game`"
                    )));
                }
            };
            specs.push(WatchSpec { watched, webhook });
        }
        Ok(specs)
    }

    /// The `ban` list, checked (a bare address is a network of one).
    /// The `[probe]` section, checked.
    pub fn probe_config(&self) -> Result<ProbeConfig, ConfigError> {
        use crate::master::probe::{
            MAX_PROBE_FAILURES, MAX_PROBE_INTERVAL_MS, MAX_PROBE_RETRIES, MAX_PROBE_TIMEOUT_MS,
        };
        let p = &self.probe;
        let bad = |key, why: String| Err(ConfigError::Invalid { key, why });
        let interval_ms = p.interval_secs.saturating_mul(1000);
        if !(1000..=MAX_PROBE_INTERVAL_MS).contains(&interval_ms) {
            return bad("probe.interval_secs", "must be 1..=3600".to_owned());
        }
        if !(1..=MAX_PROBE_TIMEOUT_MS).contains(&p.timeout_ms) {
            return bad("probe.timeout_ms", "must be 1..=10000".to_owned());
        }
        if p.retries > MAX_PROBE_RETRIES {
            return bad("probe.retries", format!("at most {MAX_PROBE_RETRIES}"));
        }
        if !(1..=MAX_PROBE_FAILURES).contains(&p.failures) {
            return bad(
                "probe.failures",
                format!("must be 1..={MAX_PROBE_FAILURES}"),
            );
        }
        if p.rate_per_sec == 0 {
            return bad("probe.rate_per_sec", "must be at least 1".to_owned());
        }
        // Every attempt of one probe must end before the next probe of the server is due.
        let attempts = u64::from(p.retries).saturating_add(1);
        if p.timeout_ms
            .saturating_mul(attempts.saturating_mul(attempts))
            >= interval_ms
        {
            return bad(
                "probe.timeout_ms",
                "timeout × (retries + 1)² must be under interval_secs".to_owned(),
            );
        }
        if p.allow.len() > MAX_BANS {
            return bad("probe.allow", format!("at most {MAX_BANS} entries"));
        }
        let nets = p
            .allow
            .iter()
            .map(|b| parse_net(b, "probe.allow"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProbeConfig {
            enabled: p.enabled,
            interval_ms,
            timeout_ms: p.timeout_ms,
            retries: p.retries,
            failures: p.failures,
            rate: p.rate_per_sec,
            clone_ports: p.clone_ports,
            allow: std::sync::Arc::new(NetSet::new(&nets)),
        })
    }

    fn bans(&self) -> Result<NetSet, ConfigError> {
        if self.ban.len() > MAX_BANS {
            return Err(ConfigError::Invalid {
                key: "ban",
                why: format!("{} entries, at most {MAX_BANS}", self.ban.len()),
            });
        }
        let nets = self
            .ban
            .iter()
            .map(|b| parse_net(b, "ban"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetSet::new(&nets))
    }

    /// The challenge secret of `challenge_secret_file`, if one is set: 64 hex digits (32 bytes,
    /// whitespace around them ignored), reduced to the 16-byte key by SipHash-128. Every master
    /// given the same file verifies the others' challenges (instances behind one anycast address
    /// or an L4 balancer: a `q` answered by one, the heartbeat reaching another).
    pub fn challenge_secret(&self) -> Result<Option<[u8; 16]>, ConfigError> {
        use siphasher::sip128::{Hasher128, SipHasher24};
        use std::hash::Hasher;
        let path = self.challenge_secret_file.trim();
        if path.is_empty() {
            return Ok(None);
        }
        let bad = |why: String| ConfigError::Invalid {
            key: "challenge_secret_file",
            why,
        };
        let bytes = read_hex_key(path).map_err(bad)?;
        let mut h = SipHasher24::new_with_key(b"muster challenge");
        h.write(&bytes);
        Ok(Some(h.finish128().as_bytes()))
    }

    /// Checks every value and builds the engine settings. `online_cpus` resolves `cores = 0`;
    /// `secret` is the challenge secret unless `challenge_secret_file` names one.
    pub fn settings(&self, online_cpus: usize, secret: [u8; 16]) -> Result<Settings, ConfigError> {
        let secret = self.challenge_secret()?.unwrap_or(secret);
        let bad = |key, why: &str| {
            Err(ConfigError::Invalid {
                key,
                why: why.to_owned(),
            })
        };
        if self.listen.is_empty() {
            return bad("listen", "at least one address is needed");
        }
        let cores = if self.cores == 0 {
            online_cpus.max(1)
        } else {
            self.cores
        };
        if cores > online_cpus.max(1) {
            return Err(ConfigError::Invalid {
                key: "cores",
                why: format!("{cores} asked, {online_cpus} CPUs available to this process"),
            });
        }
        if self.server_timeout == 0 {
            return bad("server_timeout", "must be at least 1 second");
        }
        if self.max_servers == 0 || self.max_servers > MAX_SERVERS {
            return bad("max_servers", "must be 1..=16000000");
        }
        if self.max_servers_per_ip == 0 {
            return bad("max_servers_per_ip", "must be at least 1");
        }
        if self.max_servers_per_net == 0 {
            return bad("max_servers_per_net", "must be at least 1");
        }
        if !(1..=MAX_LIST_REFRESH_MS).contains(&self.list_refresh_ms) {
            return bad("list_refresh_ms", "must be 1..=60000");
        }
        if !(MIN_DP_PACKET..=MAX_DP_PACKET).contains(&self.max_dp_packet) {
            return bad("max_dp_packet", "must be 64..=1472");
        }
        if self.sockets.coalesce_us > MAX_COALESCE.as_micros() as u64 {
            return bad("sockets.coalesce_us", "must be 0..=1000");
        }
        if self.pacing.window_kib == 0 || self.pacing.rate_kib == 0 {
            return bad("pacing", "window_kib and rate_kib must be at least 1");
        }
        if !(1..=MAX_QUEUED_MIB).contains(&self.pacing.max_queued_mib) {
            return bad("pacing.max_queued_mib", "must be 1..=4096");
        }
        let admission = self.admission()?;
        let games = |v: &[String]| v.iter().map(|g| g.as_bytes().into()).collect();
        let mut master = MasterConfig::with_secret(secret);
        master.limits = Limits {
            server_timeout_ms: self.server_timeout.saturating_mul(1000),
            // The whole table's: the engine shares it between cores (`master::budget`).
            max_servers: self.max_servers,
            max_servers_per_ip: self.max_servers_per_ip,
            max_servers_per_net: self.max_servers_per_net,
            allow_private: self.allow_private,
        };
        master.probe = self.probe_config()?;
        master.games = GamePolicy {
            accept: games(&self.accept_games),
            reject: games(&self.reject_games),
        };
        master.max_dp_packet = self.max_dp_packet;
        master.max_string_bytes = self.max_string_mib.saturating_mul(1024 * 1024);
        master.admission = admission;
        master.xash = self.xash_config()?;
        master.bans = std::sync::Arc::new(self.bans()?);
        let props = self
            .game
            .iter()
            .map(|g| GameProps {
                name: g.name.as_bytes().into(),
                protocols: g.protocols.clone(),
                heartbeats: g.heartbeat.iter().map(|t| t.as_bytes().into()).collect(),
                send_empty: g.send_empty,
                send_full: g.send_full,
            })
            .collect();
        master.game_props =
            std::sync::Arc::new(Games::with(props).map_err(|e| ConfigError::Invalid {
                key: "game",
                why: e.to_string(),
            })?);
        master.tx = TxConfig {
            window: kib(self.pacing.window_kib) as usize,
            rate: kib(self.pacing.rate_kib),
            max_pending: self.pacing.max_queued_mib.saturating_mul(1024 * 1024),
            gso: self.sockets.gso,
        };
        Ok(Settings {
            listen: self.listen.clone(),
            cores,
            master,
            list_refresh: Duration::from_millis(self.list_refresh_ms),
            gso: self.sockets.gso,
            recv_buffer: self.sockets.recv_buffer_kib.saturating_mul(1024),
            io_memory: self.sockets.io_memory_kib.saturating_mul(1024),
            coalesce: Duration::from_micros(self.sockets.coalesce_us),
            housekeeping: None,
            dump_every: None,
            restore: None,
            publish_lists: false,
        })
    }
}

impl File {
    /// The `[admission]` section, checked.
    fn xash_config(&self) -> Result<XashConfig, ConfigError> {
        let x = &self.xash;
        if x.min_clver.is_empty() {
            return Ok(XashConfig::default());
        }
        let min = crate::wire::xash::parse_version(x.min_clver.as_bytes()).ok_or_else(|| {
            ConfigError::Invalid {
                key: "xash.min_clver",
                why: format!("{:?} is not a version like 0.21", x.min_clver),
            }
        })?;
        let addr = x
            .update_addr
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::Invalid {
                key: "xash.update_addr",
                why: format!(
                    "{:?} is not an address:port (required with min_clver)",
                    x.update_addr
                ),
            })?;
        Ok(XashConfig {
            min_clver: Some(min),
            update_addr: Some(addr),
        })
    }

    fn admission(&self) -> Result<AdmissionConfig, ConfigError> {
        let a = &self.admission;
        let mut trusted = Vec::with_capacity(a.trusted.len());
        for t in &a.trusted {
            trusted.push(parse_net(t, "admission.trusted")?);
        }
        if a.max_sources == 0 || a.max_networks == 0 {
            return Err(ConfigError::Invalid {
                key: "admission.max_sources",
                why: "max_sources and max_networks must be at least 1".to_owned(),
            });
        }
        for (key, c) in [
            ("admission.unvalidated", a.unvalidated),
            ("admission.validated", a.validated),
            ("admission.network", a.network),
            ("admission.validated_network", a.validated_network),
            ("admission.trusted_network", a.trusted_network),
        ] {
            if c.queries_burst == 0 || c.reply_burst_kib == 0 || c.scan_burst == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    why: "queries_burst, reply_burst_kib and scan_burst must be at least 1 (a source could never be answered)".to_owned(),
                });
            }
        }
        if a.core.scan_burst == 0 {
            return Err(ConfigError::Invalid {
                key: "admission.core",
                why: "scan_burst must be at least 1 (no filtered query could be answered)"
                    .to_owned(),
            });
        }
        Ok(AdmissionConfig {
            max_sources: a.max_sources,
            max_prefixes: a.max_networks,
            unvalidated: a.unvalidated.limits(),
            validated: a.validated.limits(),
            trusted_limits: a.trusted_network.limits(),
            network: a.network.limits(),
            validated_network: a.validated_network.limits(),
            unproven: Rate {
                burst: kib(a.unproven.reply_burst_kib),
                per_sec: kib(a.unproven.reply_kib_per_sec),
            },
            core_scan: Rate {
                burst: a.core.scan_burst.min(MAX_BURST),
                per_sec: a.core.scan_per_sec,
            },
            // A host may run `max_servers_per_ip` servers, each of which may need a retry.
            source_challenges: Rate {
                burst: queries(
                    a.challenges
                        .source_burst
                        .max(u32::from(self.max_servers_per_ip).saturating_mul(2)),
                ),
                per_sec: queries(a.challenges.source_per_sec),
            },
            core_challenges: Rate {
                burst: queries(a.challenges.core_burst),
                per_sec: queries(a.challenges.core_per_sec),
            },
            fine_bytes: kib(a.fine_kib),
            validation_ms: a.validation_secs.saturating_mul(1000),
            trusted,
        })
    }
}

/// A CIDR, or a bare address as a network of one.
fn parse_net(t: &str, key: &'static str) -> Result<ipnet::IpNet, ConfigError> {
    let net = t
        .parse::<ipnet::IpNet>()
        .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| ConfigError::Invalid {
            key,
            why: format!("{t:?} is not a CIDR (like 192.0.2.0/24) or an address"),
        })?;
    Ok(net.trunc())
}

/// The operator's side of the configuration (not the engine's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operations {
    /// Where the status page, metrics and JSON API are served (`None`: nowhere).
    pub http: Option<SocketAddr>,
    /// Where the public lists are served (`None`: nowhere, the default).
    pub public_http: Option<SocketAddr>,
    pub http_limits: crate::control::limits::HttpLimits,
    pub public_refresh: Duration,
    pub state_file: Option<PathBuf>,
    pub state_interval: Duration,
    /// `[[watch]]`, checked (empty: no down alerts).
    pub watches: Vec<WatchSpec>,
    /// `[peering]`, checked (`None`: no peers).
    pub peering: Option<crate::control::peering::PeeringSettings>,
}

/// A 32-byte key from a file of 64 hex digits (whitespace around them ignored).
fn read_hex_key(path: &str) -> Result<[u8; 32], String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let hex = text.trim();
    let bytes: Option<Vec<u8>> = (hex.len() == 64 && hex.is_ascii())
        .then(|| {
            (0..32)
                .map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| {
        format!(
            "{path}: expected 64 hex digits (32 random bytes: `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'`)"
        )
    })
}

/// toml's messages quote the offending line over several lines; errors here are one line:
/// keep the position and the reason, drop the source excerpt.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_excerpt(l))
        .collect::<Vec<_>>()
        .join(": ")
}

/// A line of toml's source excerpt: `|`, `2 | key = 1`, `  | ^^^`.
fn is_excerpt(line: &str) -> bool {
    match line.split_once('|') {
        Some((n, _)) => n.trim().is_empty() || n.trim().parse::<u64>().is_ok(),
        None => false,
    }
}

/// Lays `over` onto `base`, table by table.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_match_the_documented_values() {
        let f = File::defaults();
        assert_eq!(f.listen.len(), 6);
        assert_eq!(f.listen[0], "0.0.0.0:27010".parse().unwrap());
        assert_eq!(f.listen[5], "[::]:27950".parse().unwrap());
        assert_eq!(
            (f.cores, f.allow_private, f.server_timeout),
            (0, false, 900)
        );
        assert_eq!((f.max_servers, f.max_servers_per_ip), (1_000_000, 32));
        assert_eq!((f.list_refresh_ms, f.max_dp_packet), (250, 1400));
        assert_eq!((f.pacing.window_kib, f.pacing.rate_kib), (96, 4096));
        // The embedded [admission] section is exactly the documented defaults of the code.
        let s = f.settings(2, [0; 16]).unwrap();
        assert_eq!(s.master.admission, AdmissionConfig::default());
        assert_eq!(s.master.tx, TxConfig::default());
        assert!(f.sockets.gso);
        assert_eq!(f.sockets.io_memory_kib, 64);
        assert_eq!(s.coalesce, crate::engine::coalesce::DEFAULT_COALESCE);
    }

    #[test]
    fn game_tables_and_the_xash_switch() {
        let f = File::parse_partial(
            "[[game]]\nname = \"Warsow\"\nheartbeat = [\"Warsow\"]\nprotocols = [22]\nsend_empty = true\n\n[xash]\nmin_clver = \"0.21\"\nupdate_addr = \"192.0.2.1:27015\"\n",
            "t",
        )
        .unwrap();
        let s = f.settings(2, [0; 16]).unwrap();
        let g = &s.master.game_props;
        assert!(g.tag_index(b"Warsow").is_some() && g.tag_index(b"QuakeArena-1").is_some());
        assert_eq!(g.query_game(None, 22), b"Warsow");
        assert_eq!(g.sends(b"Warsow"), (true, false));
        assert_eq!(s.master.xash.min_clver, Some((0, 21)));
        // A tag claimed twice, a game field muster does not know, a min_clver without its address.
        for bad in [
            "[[game]]\nname = \"X\"\nheartbeat = [\"QuakeArena-1\"]\n",
            "[xash]\nmin_clver = \"0.21\"\n",
        ] {
            let f = File::parse_partial(bad, "t").unwrap();
            assert!(f.settings(2, [0; 16]).is_err(), "{bad}");
        }
        assert!(File::parse_partial("[[game]]\nname = \"X\"\noptions = 1\n", "t").is_err());
    }

    #[test]
    fn watch_tables_are_checked() {
        let f = File::parse_partial(
            "[[watch]]\nservers = [\"192.0.2.7:27015\", \"[2001:db8::1]:27960\"]\nwebhook = \"https://discord.com/api/webhooks/1/s\"\n\n[[watch]]\ngame = \"cstrike\"\nwebhook = \"http://127.0.0.1:9/hook\"\n",
            "t",
        )
        .unwrap();
        let w = f.operations().unwrap().watches;
        assert_eq!(w.len(), 2);
        assert_eq!(
            w[0].watched,
            Watched::Servers(vec![
                "192.0.2.7:27015".parse().unwrap(),
                "[2001:db8::1]:27960".parse().unwrap()
            ])
        );
        assert!(w[0].webhook.is_discord());
        assert_eq!(w[1].watched, Watched::Game("cstrike".into()));
        assert!(File::defaults().operations().unwrap().watches.is_empty());
        for (bad, why) in [
            ("servers = [\"a:1\"]\nwebhook = \"http://h/x\"", "ip:port"),
            ("servers = []\nwebhook = \"http://h/x\"", "1..="),
            ("game = \"\"\nwebhook = \"http://h/x\"", "game"),
            (
                "game = \"x\"\nservers = [\"192.0.2.1:1\"]\nwebhook = \"http://h/x\"",
                "exactly one",
            ),
            ("webhook = \"http://h/x\"", "exactly one"),
            ("game = \"x\"\nwebhook = \"ftp://h/x\"", "http"),
            ("game = \"x\"\nwebhook = \"https://h/x\"\nurl = 1", "url"),
        ] {
            let e = File::parse_partial(&format!("[[watch]]\n{bad}\n"), "t")
                .and_then(|f| f.operations().map(|_| ()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // The commented examples of the default config, uncommented, check out.
        let example: String = DEFAULT_TOML
            .lines()
            .skip_while(|l| *l != "# [[watch]]")
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches('#').trim_start()))
            .collect();
        let w = File::parse_partial(&example, "example")
            .unwrap()
            .operations()
            .unwrap()
            .watches;
        assert_eq!(w.len(), 2, "{example}");
        let many = "[[watch]]\ngame = \"x\"\nwebhook = \"http://h/x\"\n".repeat(MAX_WATCHES + 1);
        assert!(
            File::parse_partial(&many, "t")
                .unwrap()
                .operations()
                .is_err()
        );
    }

    #[test]
    fn a_partial_file_keeps_other_defaults_and_unknown_keys_fail() {
        let f = File::parse_partial("cores = 2\n[pacing]\nrate_kib = 10\n", "t").unwrap();
        assert_eq!(
            (f.cores, f.pacing.rate_kib, f.pacing.window_kib),
            (2, 10, 96)
        );
        assert_eq!(f.server_timeout, 900);
        let e = File::parse_partial("corez = 2\n", "t").unwrap_err();
        assert!(e.to_string().contains("corez"), "{e}");
        let e = File::parse_partial("[pacing]\nburstt = 1\n", "t").unwrap_err();
        assert!(e.to_string().contains("burstt"), "{e}");
        let e = File::parse_partial("[admission.unvalidated]\nqueries = 1\n", "t").unwrap_err();
        assert!(e.to_string().contains("queries"), "{e}");
        let e = File::parse_partial("cores = \"two\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("cores"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let mut f =
            File::parse_partial("server_timeout = 60\nallow_private = false\n", "t").unwrap();
        f.apply(&Overrides {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            server_timeout: Some(5),
            allow_private: true,
            max_servers_per_ip: Some(3),
            no_gso: true,
            coalesce_us: Some(0),
            ..Overrides::default()
        });
        assert_eq!(f.listen, vec!["127.0.0.1:0".parse::<SocketAddr>().unwrap()]);
        assert_eq!((f.server_timeout, f.allow_private), (5, true));
        assert_eq!(f.max_servers_per_ip, 3);
        assert!(!f.sockets.gso);
        assert_eq!(f.sockets.coalesce_us, 0);
        assert_eq!(
            f.cores, 0,
            "not given on the command line: the file's value stays"
        );
    }

    #[test]
    fn settings_resolve_cores_share_the_table_cap_and_refuse_bad_values() {
        let mut f = File::defaults();
        f.max_servers = 1001;
        let s = f.settings(2, [0; 16]).unwrap();
        assert_eq!(s.cores, 2);
        assert_eq!(
            s.master.limits.max_servers, 1001,
            "shared by the cores, not split"
        );
        assert_eq!(s.master.limits.server_timeout_ms, 900_000);
        assert_eq!(s.list_refresh, Duration::from_millis(250));
        f.cores = 3;
        assert!(
            f.settings(2, [0; 16])
                .unwrap_err()
                .to_string()
                .contains("cores")
        );
        f.cores = 1;
        f.list_refresh_ms = 0;
        assert!(
            f.settings(2, [0; 16])
                .unwrap_err()
                .to_string()
                .contains("list_refresh_ms")
        );
        f.list_refresh_ms = 250;
        f.sockets.coalesce_us = 1001;
        assert!(
            f.settings(2, [0; 16])
                .unwrap_err()
                .to_string()
                .contains("coalesce_us")
        );
        f.sockets.coalesce_us = 0;
        assert_eq!(f.settings(2, [0; 16]).unwrap().coalesce, Duration::ZERO);
        f.sockets.coalesce_us = 250;
        f.admission.trusted = vec![
            "10.0.0.0/8".into(),
            "192.0.2.7".into(),
            "2001:db8::/32".into(),
        ];
        let s = f.settings(2, [0; 16]).unwrap();
        assert_eq!(s.master.admission.trusted.len(), 3);
        assert!(
            s.master.admission.trusted[1]
                .contains(&"192.0.2.7".parse::<std::net::IpAddr>().unwrap())
        );
        f.admission.trusted = vec!["10.0.0.0/33".into()];
        let e = f.settings(2, [0; 16]).unwrap_err().to_string();
        assert!(
            e.contains("admission.trusted") && e.contains("10.0.0.0/33"),
            "{e}"
        );
        f.admission.trusted.clear();
        f.listen.clear();
        assert!(f.settings(2, [0; 16]).is_err());
    }
}
