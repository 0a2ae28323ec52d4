//! What a shard needs to run: [`Config`] (built by `config.rs` from the TOML and the flags, or by
//! tests), its defaults, and the Xash3D switches.

use crate::master::admission::AdmissionConfig;
use crate::master::admission::unproven::Unproven;
use crate::master::policy::bans::NetSet;
use crate::master::policy::games::Games;
use crate::master::policy::{GamePolicy, Limits};
use crate::master::probe::ProbeConfig;
use crate::master::table::budget::Budget;
use crate::master::transmit::TxConfig;
use crate::wire::dp_list::MAX_RESPONSE_LEN;
use std::net::SocketAddr;
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
    /// Liveness probes (`[probe]`); off unless the configuration turns them on (the product's
    /// default configuration does).
    pub probe: ProbeConfig,
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
            valve_challenge_window_ms: crate::master::challenge::DEFAULT_VALVE_WINDOW_MS,
            dp_challenge_window_ms: crate::master::challenge::DEFAULT_DP_WINDOW_MS,
            max_dp_packet: MAX_RESPONSE_LEN,
            admission: AdmissionConfig::default(),
            tx: TxConfig::default(),
            budget: None,
            unproven: None,
            max_string_bytes: DEFAULT_MAX_STRING_BYTES,
            xash: XashConfig::default(),
            game_props: Arc::new(Games::default()),
            bans: Arc::new(NetSet::default()),
            probe: ProbeConfig::off(),
        }
    }
}

/// Interned strings held by all shards together: ~69 bytes a server at a million servers whose
/// names are all distinct (a 21-byte name plus its keeping), and the bound on the worst case.
pub const DEFAULT_MAX_STRING_BYTES: usize = 128 * 1024 * 1024;
