//! Watched servers (`[[watch]]`): which are listed, which are not, and when that changed. Sans-IO:
//! the control thread hands [`Watcher::observe`] every server of a fresh set of dumps (every core's)
//! with the time, and gets back the [`Transition`]s to alert on; [`super::notifier`] decides when
//! and how they are posted.
//!
//! A watched server is **up** while it is in some core's dump and listed, **down** once it is
//! absent from every dump (expired, banned) or present but hidden (`!Server::is_listed`: no probe
//! vouches for it). Its first sighting as listed is the baseline and alerts nobody — otherwise a
//! master restarted without a state file would announce every watched server "back" as it
//! re-registers; a `servers = [...]` address never listed since start is shown as such, and never
//! alerted on until it has been up once.
//!
//! Watches are grouped by webhook (one `Hook` each): a server two watches of one webhook both
//! cover is one entry there, so it alerts once. A `game = …` watch remembers the servers of that
//! game it has seen (their last name and game: once expired, a server is in no dump to be matched
//! by game), at most [`MAX_WATCHED`] per webhook.

use super::webhook::Webhook;
use serde::Serialize;
// hashbrown's foldhash, randomly seeded per process: each observation looks every listed server up
// once per webhook (half the time of std's SipHash: ~50 ms a second at a million servers), and a
// map holds at most MAX_WATCHED + MAX_WATCHES × MAX_WATCH_SERVERS addresses.
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;

/// `[[watch]]` entries in a config.
pub const MAX_WATCHES: usize = 32;
/// Addresses in one `servers = [...]`.
pub const MAX_WATCH_SERVERS: usize = 1_000;
/// Servers a webhook's `game = …` watches remember at most (the rest of the game's servers are
/// not watched, and counted as `untracked`).
pub const MAX_WATCHED: usize = 10_000;
/// Bytes of a `game = …` name.
pub const MAX_GAME_LEN: usize = 64;
/// Bytes of a server's name and game kept per watched server.
pub const MAX_NAME_BYTES: usize = 64;
/// Transitions kept for the status page (newest first), all webhooks together.
pub const MAX_HISTORY: usize = 100;
/// Watched servers a webhook's status shows (down first); the counts cover them all.
pub const MAX_SHOWN: usize = 1_000;
/// A server of a watched game that has been down this long is forgotten (it went for good; its
/// place may be needed).
pub const FORGET_AFTER_MS: u64 = 7 * 86_400_000;

/// What one `[[watch]]` covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watched {
    Servers(Vec<SocketAddr>),
    /// A Valve gamedir or DarkPlaces gamename, without regard to ASCII case.
    Game(String),
}

/// One `[[watch]]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSpec {
    pub watched: Watched,
    pub webhook: Webhook,
}

/// One server of the cores' dumps, as the watcher reads it.
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    pub addr: SocketAddr,
    pub game: &'a [u8],
    pub name: &'a [u8],
    /// In the lists (not hidden).
    pub listed: bool,
    /// Its first heartbeat, Unix ms (how long it has been up at its first sighting).
    pub first_seen_unix_ms: u64,
}

/// A watched server became listed again (`up`) or stopped being listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// Its webhook: an index into [`Watcher::webhooks`].
    pub hook: usize,
    pub address: SocketAddr,
    pub name: String,
    pub game: String,
    pub up: bool,
    /// How long it had been in the state it left.
    pub after_ms: u64,
    pub at_unix_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not listed since muster started (an address of `servers = [...]`, or a server of a watched
    /// game seen only hidden so far).
    NeverListed,
    Up,
    Down,
}

#[derive(Debug)]
struct Entry {
    /// Named by a `servers = [...]`: kept whatever happens.
    pinned: bool,
    state: State,
    /// Unix ms it entered `state`.
    since_ms: u64,
    name: Box<[u8]>,
    game: Box<[u8]>,
    /// The last observation it was in.
    epoch: u64,
}

/// Everything watched that alerts one webhook.
#[derive(Debug)]
struct Hook {
    webhook: Webhook,
    /// What its watches are, for the status page.
    watches: Vec<String>,
    games: Vec<Box<[u8]>>,
    servers: HashMap<SocketAddr, Entry>,
    /// Entries there by game alone (not pinned): at most [`MAX_WATCHED`].
    by_game: usize,
}

fn cut(b: &[u8]) -> Box<[u8]> {
    b[..b.len().min(MAX_NAME_BYTES)].into()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `e`'s change of state at `now`, before `e` records it.
fn transition(hook: usize, addr: SocketAddr, e: &Entry, up: bool, now: u64) -> Transition {
    Transition {
        hook,
        address: addr,
        name: text(&e.name),
        game: text(&e.game),
        up,
        after_ms: now.saturating_sub(e.since_ms),
        at_unix_ms: now,
    }
}

/// A first listing: up since its first heartbeat, as far as anyone knows, and no alert.
fn baseline(e: &mut Entry, s: &Seen, now: u64) {
    e.state = State::Up;
    e.since_ms = match s.first_seen_unix_ms {
        0 => now,
        t => t.min(now),
    };
}

impl Hook {
    /// Takes one server of the dumps.
    fn see(
        &mut self,
        hook: usize,
        epoch: u64,
        now: u64,
        s: &Seen,
        out: &mut Vec<Transition>,
    ) -> See {
        let e = match self.servers.get_mut(&s.addr) {
            Some(e) => e,
            None => {
                if !self.games.iter().any(|g| g.eq_ignore_ascii_case(s.game)) {
                    return See::Unwatched;
                }
                if self.by_game >= MAX_WATCHED {
                    return See::Untracked;
                }
                self.by_game += 1;
                let mut e = Entry {
                    pinned: false,
                    state: State::NeverListed,
                    since_ms: now,
                    name: cut(s.name),
                    game: cut(s.game),
                    epoch,
                };
                if s.listed {
                    baseline(&mut e, s, now);
                }
                self.servers.insert(s.addr, e);
                return See::Changed;
            }
        };
        e.epoch = epoch;
        let mut changed = false;
        if *e.name != s.name[..s.name.len().min(MAX_NAME_BYTES)] {
            e.name = cut(s.name);
            changed = true;
        }
        if *e.game != s.game[..s.game.len().min(MAX_NAME_BYTES)] {
            e.game = cut(s.game);
            changed = true;
        }
        let up = match (e.state, s.listed) {
            (State::NeverListed, true) => {
                baseline(e, s, now);
                return See::Changed;
            }
            (State::Down, true) => true,
            (State::Up, false) => false,
            _ => return if changed { See::Changed } else { See::Same },
        };
        out.push(transition(hook, s.addr, e, up, now));
        e.state = if up { State::Up } else { State::Down };
        e.since_ms = now;
        See::Changed
    }

    /// After an observation: servers in no dump are down (or forgotten); `true` if any changed.
    fn sweep(&mut self, hook: usize, epoch: u64, now: u64, out: &mut Vec<Transition>) -> bool {
        let mut gone = Vec::new();
        let mut changed = false;
        for (addr, e) in &self.servers {
            if e.epoch == epoch {
                continue;
            }
            match e.state {
                State::Up => {
                    out.push(transition(hook, *addr, e, false, now));
                    gone.push((*addr, true));
                }
                // Seen hidden, never listed, now gone: nothing was ever said of it.
                State::NeverListed if !e.pinned => gone.push((*addr, false)),
                State::Down if !e.pinned && now.saturating_sub(e.since_ms) >= FORGET_AFTER_MS => {
                    gone.push((*addr, false))
                }
                _ => {}
            }
        }
        for (addr, down) in gone {
            changed = true;
            if down {
                if let Some(e) = self.servers.get_mut(&addr) {
                    e.state = State::Down;
                    e.since_ms = now;
                }
            } else if self.servers.remove(&addr).is_some() {
                self.by_game = self.by_game.saturating_sub(1);
            }
        }
        changed
    }
}

enum See {
    Unwatched,
    Untracked,
    Same,
    Changed,
}

/// Transitions counted since start, each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Directions {
    pub down: u64,
    pub up: u64,
}

/// Every watch's state: what the control thread keeps between observations.
#[derive(Debug)]
pub struct Watcher {
    hooks: Vec<Hook>,
    history: VecDeque<Transition>,
    epoch: u64,
    transitions: Directions,
    /// Servers of a watched game seen at the last observation but not watched (a webhook's
    /// [`MAX_WATCHED`] reached).
    untracked: usize,
    /// What the status shows changed since [`Watcher::status`] was last built.
    dirty: bool,
}

impl Watcher {
    /// The watches of a config, grouped by webhook (in the order each webhook first appears).
    pub fn new(specs: &[WatchSpec], now_unix_ms: u64) -> Watcher {
        let mut hooks: Vec<Hook> = Vec::new();
        for spec in specs {
            let i = match hooks.iter().position(|h| h.webhook.url == spec.webhook.url) {
                Some(i) => i,
                None => {
                    hooks.push(Hook {
                        webhook: spec.webhook.clone(),
                        watches: Vec::new(),
                        games: Vec::new(),
                        servers: HashMap::new(),
                        by_game: 0,
                    });
                    hooks.len() - 1
                }
            };
            let h = &mut hooks[i];
            match &spec.watched {
                Watched::Servers(addrs) => {
                    h.watches.push(format!(
                        "{} server{}",
                        addrs.len(),
                        if addrs.len() == 1 { "" } else { "s" }
                    ));
                    for a in addrs {
                        h.servers.entry(*a).or_insert(Entry {
                            pinned: true,
                            state: State::NeverListed,
                            since_ms: now_unix_ms,
                            name: Box::default(),
                            game: Box::default(),
                            epoch: 0,
                        });
                    }
                }
                Watched::Game(g) => {
                    h.watches.push(format!("game {g}"));
                    h.games.push(g.as_bytes().into());
                }
            }
        }
        Watcher {
            hooks,
            history: VecDeque::new(),
            epoch: 0,
            transitions: Directions::default(),
            untracked: 0,
            dirty: true,
        }
    }

    /// Each webhook, in the order [`Transition::hook`] counts them.
    pub fn webhooks(&self) -> Vec<Webhook> {
        self.hooks.iter().map(|h| h.webhook.clone()).collect()
    }

    /// Takes every server of a fresh set of dumps (all cores') at `now_unix_ms`; returns the
    /// transitions, by webhook then address.
    pub fn observe<'a>(
        &mut self,
        now_unix_ms: u64,
        servers: impl IntoIterator<Item = Seen<'a>>,
    ) -> Vec<Transition> {
        self.epoch += 1;
        let (epoch, now) = (self.epoch, now_unix_ms);
        let mut out = Vec::new();
        let mut untracked = 0;
        for s in servers {
            for (i, h) in self.hooks.iter_mut().enumerate() {
                match h.see(i, epoch, now, &s, &mut out) {
                    See::Changed => self.dirty = true,
                    See::Untracked => untracked += 1,
                    See::Unwatched | See::Same => {}
                }
            }
        }
        for (i, h) in self.hooks.iter_mut().enumerate() {
            self.dirty |= h.sweep(i, epoch, now, &mut out);
        }
        self.dirty |= untracked != self.untracked;
        self.untracked = untracked;
        out.sort_by_key(|t| (t.hook, t.address));
        for t in &out {
            if t.up {
                self.transitions.up += 1;
            } else {
                self.transitions.down += 1;
            }
            if self.history.len() == MAX_HISTORY {
                self.history.pop_back();
            }
            self.history.push_front(t.clone());
        }
        out
    }

    /// The status page's picture, if it changed since the last call (built only then: a game
    /// watch may hold [`MAX_WATCHED`] servers).
    pub fn status_if_changed(&mut self) -> Option<Status> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(self.status())
    }

    pub fn status(&self) -> Status {
        let hooks = self
            .hooks
            .iter()
            .map(|h| {
                let mut servers: Vec<WatchedServer> = h
                    .servers
                    .iter()
                    .map(|(addr, e)| WatchedServer {
                        address: *addr,
                        name: text(&e.name),
                        game: text(&e.game),
                        state: e.state,
                        since_unix_ms: e.since_ms,
                    })
                    .collect();
                let count = |s| servers.iter().filter(|x| x.state == s).count();
                let (up, down, never_listed) = (
                    count(State::Up),
                    count(State::Down),
                    count(State::NeverListed),
                );
                let rank = |s: State| match s {
                    State::Down => 0,
                    State::NeverListed => 1,
                    State::Up => 2,
                };
                servers.sort_by(|a, b| {
                    (rank(a.state), &a.name, a.address).cmp(&(rank(b.state), &b.name, b.address))
                });
                let watched = servers.len();
                servers.truncate(MAX_SHOWN);
                HookStatus {
                    webhook: h.webhook.redacted(),
                    watches: h.watches.clone(),
                    watched,
                    up,
                    down,
                    never_listed,
                    servers,
                }
            })
            .collect();
        Status {
            hooks,
            history: self.history.iter().cloned().collect(),
            transitions: self.transitions,
            untracked: self.untracked,
        }
    }
}

/// The watches as the status page and `/api/watch` show them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    pub hooks: Vec<HookStatus>,
    /// The last [`MAX_HISTORY`] transitions, newest first.
    pub history: Vec<Transition>,
    pub transitions: Directions,
    pub untracked: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct HookStatus {
    /// Without its path (a secret).
    pub webhook: String,
    pub watches: Vec<String>,
    pub watched: usize,
    pub up: usize,
    pub down: usize,
    pub never_listed: usize,
    /// At most [`MAX_SHOWN`], down first.
    pub servers: Vec<WatchedServer>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WatchedServer {
    pub address: SocketAddr,
    pub name: String,
    pub game: String,
    pub state: State,
    pub since_unix_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn hook(url: &str) -> Webhook {
        Webhook::parse(url).unwrap()
    }

    fn addr(i: u16) -> SocketAddr {
        ([192, 0, 2, 1], 27000 + i).into()
    }

    fn servers(addrs: &[u16], url: &str) -> WatchSpec {
        WatchSpec {
            watched: Watched::Servers(addrs.iter().map(|i| addr(*i)).collect()),
            webhook: hook(url),
        }
    }

    fn game(g: &str, url: &str) -> WatchSpec {
        WatchSpec {
            watched: Watched::Game(g.to_owned()),
            webhook: hook(url),
        }
    }

    /// A dump: (address index, game, listed).
    fn seen(list: &[(u16, &'static str, bool)]) -> Vec<Seen<'static>> {
        list.iter()
            .map(|&(i, g, listed)| Seen {
                addr: addr(i),
                game: g.as_bytes(),
                name: b"srv",
                listed,
                first_seen_unix_ms: 1_000,
            })
            .collect()
    }

    fn brief(ts: &[Transition]) -> Vec<(usize, u16, bool, u64)> {
        ts.iter()
            .map(|t| (t.hook, t.address.port() - 27000, t.up, t.after_ms))
            .collect()
    }

    #[test]
    fn the_first_sighting_is_the_baseline_then_each_change_is_one_transition() {
        let mut w = Watcher::new(&[servers(&[1, 2], "http://h/a")], 0);
        // 2 is never listed: no alert, ever, until it has been up.
        assert!(
            w.observe(10 * MIN, seen(&[(1, "cstrike", true)]))
                .is_empty()
        );
        assert!(
            w.observe(11 * MIN, seen(&[(1, "cstrike", true)]))
                .is_empty()
        );
        // Expired: absent from every dump. Up since its first heartbeat (1 s).
        let down = w.observe(20 * MIN, seen(&[]));
        assert_eq!(brief(&down), [(0, 1, false, 20 * MIN - 1_000)]);
        assert_eq!(down[0].name, "srv");
        assert_eq!(
            down[0].game, "cstrike",
            "its last known game, though it is in no dump"
        );
        assert!(w.observe(21 * MIN, seen(&[])).is_empty(), "down stays down");
        let up = w.observe(24 * MIN, seen(&[(1, "cstrike", true)]));
        assert_eq!(brief(&up), [(0, 1, true, 4 * MIN)]);
        // Present but hidden is down too; listed again is up.
        assert_eq!(
            brief(&w.observe(30 * MIN, seen(&[(1, "cstrike", false)]))),
            [(0, 1, false, 6 * MIN)]
        );
        assert_eq!(
            brief(&w.observe(31 * MIN, seen(&[(1, "cstrike", true), (2, "x", true)]))),
            [(0, 1, true, MIN)],
            "2's first listing is its baseline"
        );
        let s = w.status();
        assert_eq!((s.transitions.down, s.transitions.up), (2, 2));
        assert_eq!(s.history.len(), 4);
        assert!(s.history[0].up, "newest first");
        let h = &s.hooks[0];
        assert_eq!((h.watched, h.up, h.down, h.never_listed), (2, 2, 0, 0));
        assert_eq!(h.webhook, "http://h/…");
    }

    #[test]
    fn a_never_listed_address_is_shown_as_such_and_never_alerted() {
        let mut w = Watcher::new(&[servers(&[1], "http://h/a")], 5);
        assert!(w.observe(MIN, seen(&[])).is_empty());
        assert!(
            w.observe(2 * MIN, seen(&[(1, "g", false)])).is_empty(),
            "hidden: not up"
        );
        assert!(w.observe(3 * MIN, seen(&[])).is_empty());
        let s = w.status();
        assert_eq!(s.hooks[0].servers[0].state, State::NeverListed);
        assert_eq!(s.hooks[0].servers[0].since_unix_ms, 5);
    }

    #[test]
    fn a_game_watch_remembers_its_servers_after_they_expire() {
        let mut w = Watcher::new(&[game("CStrike", "http://h/a")], 0);
        assert!(
            w.observe(
                MIN,
                seen(&[
                    (1, "cstrike", true),
                    (2, "valve", true),
                    (3, "cstrike", false)
                ])
            )
            .is_empty()
        );
        let s = w.status();
        assert_eq!(s.hooks[0].watched, 2, "1 and 3 (hidden), not 2");
        // 1 expires: still known by its last game. 3 goes without ever being listed: forgotten.
        assert_eq!(
            brief(&w.observe(2 * MIN, seen(&[]))),
            [(0, 1, false, 2 * MIN - 1_000)]
        );
        assert_eq!(w.status().hooks[0].watched, 1);
        assert_eq!(
            brief(&w.observe(3 * MIN, seen(&[(1, "cstrike", true)]))),
            [(0, 1, true, MIN)]
        );
        // Down for a week: forgotten.
        assert_eq!(w.observe(4 * MIN, seen(&[])).len(), 1);
        assert!(w.observe(4 * MIN + FORGET_AFTER_MS, seen(&[])).is_empty());
        assert_eq!(w.status().hooks[0].watched, 0);
    }

    #[test]
    fn a_game_watch_holds_at_most_max_watched_servers() {
        let mut w = Watcher::new(&[game("g", "http://h/a"), servers(&[0], "http://h/a")], 0);
        let many: Vec<Seen> = (0..=MAX_WATCHED as u32 + 10)
            .map(|i| Seen {
                addr: SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1)),
                game: b"g",
                name: b"n",
                listed: true,
                first_seen_unix_ms: 0,
            })
            .chain(seen(&[(0, "g", true)]))
            .collect();
        w.observe(MIN, many.iter().copied());
        let s = w.status();
        assert_eq!(
            s.hooks[0].watched,
            MAX_WATCHED + 1,
            "the pinned address on top"
        );
        assert_eq!(s.untracked, 11);
        assert_eq!(s.hooks[0].servers.len(), MAX_SHOWN);
        let down = w.observe(2 * MIN, std::iter::empty());
        assert_eq!(down.len(), MAX_WATCHED + 1);
    }

    #[test]
    fn watches_of_one_webhook_alert_once_per_server_and_webhooks_apart() {
        let mut w = Watcher::new(
            &[
                servers(&[1], "http://h/a"),
                game("cstrike", "http://h/a"),
                servers(&[1], "http://h/b"),
            ],
            0,
        );
        assert_eq!(w.webhooks().len(), 2);
        w.observe(MIN, seen(&[(1, "cstrike", true), (2, "cstrike", true)]));
        let down = w.observe(2 * MIN, seen(&[]));
        assert_eq!(
            brief(&down),
            [
                (0, 1, false, 2 * MIN - 1_000),
                (0, 2, false, 2 * MIN - 1_000),
                (1, 1, false, 2 * MIN - 1_000)
            ]
        );
        let s = w.status();
        assert_eq!(s.hooks[0].watches, ["1 server", "game cstrike"]);
        assert_eq!(s.hooks[0].servers.len(), 2);
    }

    #[test]
    fn names_are_kept_short_and_the_status_is_built_only_when_changed() {
        let mut w = Watcher::new(&[servers(&[1], "http://h/a")], 0);
        assert!(w.status_if_changed().is_some());
        assert!(w.status_if_changed().is_none());
        let long = [b'x'; 300];
        let s = Seen {
            addr: addr(1),
            game: b"g",
            name: &long,
            listed: true,
            first_seen_unix_ms: 0,
        };
        w.observe(MIN, [s]);
        let st = w.status_if_changed().unwrap();
        assert_eq!(st.hooks[0].servers[0].name.len(), MAX_NAME_BYTES);
        assert_eq!(
            st.hooks[0].servers[0].since_unix_ms, MIN,
            "no first heartbeat known: now"
        );
        w.observe(2 * MIN, [s]);
        assert!(w.status_if_changed().is_none(), "nothing changed");
        // History is bounded.
        for i in 0..MAX_HISTORY as u64 {
            w.observe(3 * MIN + 2 * i, std::iter::empty());
            w.observe(3 * MIN + 2 * i + 1, [s]);
        }
        assert_eq!(w.status().history.len(), MAX_HISTORY);
    }
}
