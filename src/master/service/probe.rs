//! Liveness probes on the wire ([`crate::master::probe`] holds the schedule): sending each due
//! probe, reading A2S answers and `infoResponse`s, and hiding or showing servers by what they say.
//!
//! - Valve family: `A2S_INFO` (shared/docs/protocols.md §2, wire/a2s.rs); an `S2C_CHALLENGE`
//!   answer gets the request again with the challenge, once per attempt. Quake III / DarkPlaces:
//!   `getinfo` with a registration challenge, so the `infoResponse` is checked (and refreshes the
//!   server) exactly as a registration: its MAC binds the address, so an answer from elsewhere
//!   fails as a bad challenge.
//! - An A2S answer is accepted only from a listed address with a probe in flight; anything else
//!   is dropped and counted (`unsolicited_answer`) and never answered.
//! - Contradiction is checked on what both carry reliably: the game directory, and the app id
//!   when the answer carries the 64-bit game id (Source). The A2S protocol byte is the network
//!   protocol (17 for Source) while the heartbeat's `protocol` is the build's: they differ on
//!   every real server, so they are not compared.

use crate::master::counters::{DropReason, inc};
use crate::master::policy::IpKey;
use crate::master::probe::{Due, Hidden, Who, body_hash};
use crate::master::table::Probed;
use crate::master::table::record::Family;
use crate::master::time::Time;
use crate::master::transmit::Payload;
use crate::wire::Kind;
use crate::wire::a2s::{Challenge, GoldSrcInfo, InfoRequest, SourceInfo};
use crate::wire::dp_server::GetInfo;
use std::net::SocketAddr;

use super::Master;

/// What an A2S info answer says, whichever of the two formats it came in.
struct Answer<'a> {
    folder: &'a [u8],
    /// The app id when the answer carries the 64-bit game id (its low 24 bits).
    appid: Option<u32>,
    /// The game port the answer names (Source EDF port, GoldSrc address), if any.
    port: Option<u16>,
    info: Probed<'a>,
    body: u64,
}

fn source_answer<'a>(s: &SourceInfo<'a>) -> Answer<'a> {
    let extra = s.extra.as_ref();
    Answer {
        folder: s.folder,
        appid: extra
            .and_then(|e| e.game_id)
            .map(|g| u32::try_from(g & 0x00FF_FFFF).unwrap_or(0)),
        port: extra.and_then(|e| e.port),
        info: Probed {
            players: s.players,
            max_players: s.max_players,
            bots: s.bots,
            map: s.map,
            name: s.name,
        },
        body: body_hash(&[s.name, s.map, s.folder, s.game, s.version]),
    }
}

fn goldsrc_answer<'a>(g: &GoldSrcInfo<'a>) -> Answer<'a> {
    let port = g
        .address
        .rsplit(|&b| b == b':')
        .next()
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|p| p.parse().ok());
    Answer {
        folder: g.folder,
        appid: None,
        port,
        info: Probed {
            players: g.players,
            max_players: g.max_players,
            bots: g.bots,
            map: g.map,
            name: g.name,
        },
        body: body_hash(&[g.name, g.map, g.folder, g.game]),
    }
}

impl Master {
    /// A server was listed: probe it (Valve family: at once, and hidden until it answers; DP:
    /// after an interval, its `infoResponse` just answered). Servers of allowed networks are not
    /// probed.
    pub(super) fn probe_registered(
        &mut self,
        now: Time,
        from: SocketAddr,
        slot: u32,
        local: u8,
        family: Family,
        tag: u8,
    ) {
        if !self.probes_apply(from) {
            return;
        }
        let generation = self.table.generation(slot).unwrap_or(0);
        let (hidden, after) = match family {
            Family::Valve => (Some(Hidden::Unproven), 0),
            Family::DarkPlaces => (None, self.prober.config().interval_ms),
        };
        let who = Who {
            slot,
            generation,
            local,
            tag,
        };
        self.prober.track(now, who, hidden, after);
        match hidden {
            Some(why) => self.count_hidden(why),
            None => self.prober.heard(now, slot),
        }
    }

    /// Whether probes watch the server at `addr` (on, and not on an allowed network).
    pub(super) fn probes_apply(&self, addr: SocketAddr) -> bool {
        self.prober.enabled() && !self.prober.config().allow.contains(addr.ip())
    }

    /// A server restored from the state file: probed within an interval, as it was.
    pub(super) fn probe_restored(&mut self, now: Time, addr: SocketAddr, local: u8) {
        if !self.probes_apply(addr) {
            return;
        }
        if let Some(slot) = self.table.slot_of(addr) {
            let generation = self.table.generation(slot).unwrap_or(0);
            // DP servers get their tag back from the next heartbeat; until then the first tag
            // (what every built-in game's getinfo verifies against) is asked.
            let who = Who {
                slot,
                generation,
                local,
                tag: self.restored_tag(slot),
            };
            self.prober.track_restored(now, who);
            if self.table.at(slot).is_some_and(|s| !s.is_listed()) {
                self.prober.set_hidden(slot, Some(Hidden::Unproven));
            }
        }
    }

    /// The heartbeat tag index whose implied game is the server's own (DP), else 0.
    fn restored_tag(&self, slot: u32) -> u8 {
        let Some(s) = self.table.at(slot) else {
            return 0;
        };
        let game = self.table.strings().get(s.game);
        let props = &self.config.game_props;
        (0..props.tags())
            .find(|&t| props.tag_game(t) == Some(game))
            .unwrap_or(0)
    }

    /// Sends what came due: probes, resends; hides servers that missed too many. At most
    /// `budget` events; `true` when nothing more is due now.
    pub(super) fn probe(&mut self, now: Time, budget: usize) -> bool {
        for (slot, ip) in self.table.take_freed() {
            self.prober.forget(slot, ip);
        }
        if !self.prober.enabled() {
            return true;
        }
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        let table = &self.table;
        self.prober
            .due(now, budget, |slot| table.generation(slot), &mut due);
        let more = due.len() >= budget;
        for d in due.drain(..) {
            match d {
                Due::Send { slot } => self.send_probe(now, slot, None),
                Due::Missed { slot, misses } => {
                    inc(&mut self.counters.probe_timeouts);
                    let never = self.prober.state(slot).is_none_or(|s| s.answered_secs == 0);
                    if misses >= self.prober.config().failures && !never {
                        self.hide(slot, Hidden::Silent);
                    }
                }
            }
        }
        self.due = due;
        !more
    }

    /// Sends one probe to the server in `slot` (with the A2S challenge it gave, if any).
    fn send_probe(&mut self, now: Time, slot: u32, challenge: Option<i32>) {
        let Some(server) = self.table.at(slot) else {
            return;
        };
        let (to, family) = (server.addr.addr(), server.family);
        let Some(st) = self.prober.state(slot).copied() else {
            return;
        };
        let mut b = Vec::with_capacity(40);
        match family {
            Family::Valve => InfoRequest { challenge }.encode(&mut b),
            Family::DarkPlaces => {
                let c = self.challenges.dp(now, to, st.tag);
                if (GetInfo {
                    challenge: c.as_bytes(),
                })
                .encode(&mut b)
                .is_err()
                {
                    return;
                }
            }
        }
        let Some(payload) = Payload::small(&b) else {
            return;
        };
        if self.tx.send(to, st.local, payload).is_ok() {
            inc(&mut self.counters.probes_sent);
        } else {
            self.counters.drop(DropReason::TxFull);
        }
    }

    /// An A2S answer (challenge or info) from `from`.
    pub(super) fn probe_answer(
        &mut self,
        now: Time,
        from: SocketAddr,
        kind: Kind,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        let slot = self.table.slot_of(from);
        if kind == Kind::A2sChallenge {
            let c = Challenge::decode(datagram).map_err(|_| DropReason::Malformed)?;
            let slot = slot.ok_or(DropReason::Unsolicited)?;
            if !self.prober.challenged(slot) {
                return Err(DropReason::Unsolicited);
            }
            self.send_probe(now, slot, Some(c.0));
            return Ok(());
        }
        let (source, goldsrc);
        let answer = if kind == Kind::A2sSourceInfo {
            source = SourceInfo::decode(datagram).map_err(|_| DropReason::Malformed)?;
            source_answer(&source)
        } else {
            goldsrc = GoldSrcInfo::decode(datagram).map_err(|_| DropReason::Malformed)?;
            goldsrc_answer(&goldsrc)
        };
        match slot {
            Some(slot) if self.prober.awaiting(slot) => {
                self.accept(now, slot, from, &answer);
                Ok(())
            }
            _ => self.answer_from_elsewhere(now, from, &answer),
        }
    }

    /// An answer from an address with no probe in flight that names, as its game port, a listed
    /// server of the same host whose probe is waiting: the server answers from another source
    /// than the one listed (a proxy or a faker answering for many ports from one).
    fn answer_from_elsewhere(
        &mut self,
        now: Time,
        from: SocketAddr,
        answer: &Answer<'_>,
    ) -> Result<(), DropReason> {
        let named = answer
            .port
            .filter(|&p| p != from.port())
            .map(|p| SocketAddr::new(from.ip(), p))
            .and_then(|a| self.table.slot_of(a))
            .filter(|&s| self.prober.awaiting(s))
            .ok_or(DropReason::Unsolicited)?;
        inc(&mut self.counters.probes_answered);
        self.prober.answered(now, named, IpKey::new(from.ip()), 0);
        self.hide(named, Hidden::WrongSource);
        Ok(())
    }

    /// The server in `slot` answered its probe.
    fn accept(&mut self, now: Time, slot: u32, from: SocketAddr, answer: &Answer<'_>) {
        inc(&mut self.counters.probes_answered);
        let Some(server) = self.table.at(slot).copied() else {
            return;
        };
        let game = self.table.strings().get(server.game);
        let contradicts = !game.eq_ignore_ascii_case(answer.folder)
            || answer
                .appid
                .is_some_and(|a| a != 0 && server.appid != 0 && a != server.appid);
        let ip = IpKey::new(from.ip());
        if contradicts {
            self.prober.answered(now, slot, ip, 0);
            self.hide(slot, Hidden::Contradicts);
            return;
        }
        self.table.refresh_info(slot, &answer.info);
        let clone = self.prober.answered(now, slot, ip, answer.body);
        if clone {
            self.hide(slot, Hidden::Clone);
        } else {
            self.show(slot);
        }
    }

    /// A DP server's verified `infoResponse` (a probe's or a heartbeat's) shows it alive.
    pub(super) fn probe_dp_alive(&mut self, now: Time, from: SocketAddr, slot: u32) {
        if !self.probes_apply(from) {
            return;
        }
        if self.prober.awaiting(slot) {
            inc(&mut self.counters.probes_answered);
            self.prober.answered(now, slot, IpKey::new(from.ip()), 0);
        } else {
            self.prober.heard(now, slot);
        }
        self.show(slot);
    }

    fn count_hidden(&mut self, why: Hidden) {
        let i = usize::from(why as u8).saturating_sub(1);
        if let Some(c) = self.counters.hidden.get_mut(i) {
            inc(c);
        }
    }

    /// Takes the server in `slot` out of every list, for `why` (counted when it is newly hidden or
    /// hidden for a new reason).
    fn hide(&mut self, slot: u32, why: Hidden) {
        let before = self.prober.state(slot).and_then(|s| s.hidden());
        let newly = self.table.set_hidden(slot, true);
        self.prober.set_hidden(slot, Some(why));
        if newly || before != Some(why) {
            self.count_hidden(why);
        }
    }

    /// Puts the server in `slot` back in the lists.
    fn show(&mut self, slot: u32) {
        if self.table.set_hidden(slot, false) {
            inc(&mut self.counters.shown);
        }
        self.prober.set_hidden(slot, None);
    }
}

impl Master {
    /// Probing turned on or off by a reload (`(was, is)`): off shows every hidden server (what a
    /// master without probes lists); on starts probing every server, spread over an interval.
    pub(super) fn reprobe(&mut self, now: Time, (was, is): (bool, bool)) {
        if was == is {
            return;
        }
        let slots: Vec<(u32, SocketAddr)> = (0..self.table.slots())
            .filter_map(|s| {
                let slot = u32::try_from(s).ok()?;
                Some((slot, self.table.at(slot)?.addr.addr()))
            })
            .collect();
        for (slot, addr) in slots {
            if is {
                self.probe_restored(now, addr, 0);
            } else {
                self.show(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::master::ListBuilder;
    use crate::master::probe::{Hidden, ProbeConfig};
    use crate::master::service::test_support::*;
    use crate::wire::a2s::{Challenge, ExtraData, InfoRequest, SourceInfo};

    fn probing() -> Master {
        let mut c = Config::with_secret([7; 16]);
        c.limits.allow_private = true;
        c.probe = ProbeConfig {
            clone_ports: 3,
            ..ProbeConfig::default()
        };
        Master::new(Time::ZERO, c, 0, 1)
    }

    /// A Xash3D/GoldSrc-style answer (gamedir `valve`) as a real Source-format reply encodes it
    /// (wire/a2s.rs; shared/docs/protocols.md §2).
    fn info(name: &[u8], players: u8, port: Option<u16>) -> Vec<u8> {
        let mut b = Vec::new();
        SourceInfo {
            protocol: 48,
            name,
            map: b"crossfire",
            folder: b"valve",
            game: b"Half-Life",
            app_id: 70,
            players,
            max_players: 16,
            bots: 0,
            server_type: b'd',
            environment: b'l',
            visibility: 0,
            vac: 0,
            ship: None,
            version: b"0.21",
            extra: port.map(|p| ExtraData {
                port: Some(p),
                ..ExtraData::default()
            }),
        }
        .encode(&mut b)
        .unwrap();
        b
    }

    thread_local! {
        /// One list builder per test (its epochs must grow for each list to be installed).
        static BUILDER: std::cell::RefCell<ListBuilder> =
            std::cell::RefCell::new(ListBuilder::new(1, 1400));
    }

    fn listed(m: &mut Master) -> Vec<SocketAddr> {
        BUILDER.with_borrow_mut(|b| {
            if let Some(snap) = m.publish() {
                b.apply(0, snap);
            }
            if let Some(list) = b.build() {
                m.install_list(list);
            }
        });
        let mut l: Vec<SocketAddr> = m
            .table()
            .iter()
            .filter(|s| s.is_listed())
            .map(|s| s.addr.addr())
            .collect();
        l.sort();
        // What a client gets agrees with the table's flags.
        let mut burst = burst(m, a("9.9.9.9:27005"), b"", false);
        burst.sort();
        assert_eq!(burst, l, "a reply holds exactly the listed servers");
        l
    }

    fn probes_to(m: &mut Master, now: Time, to: SocketAddr) -> Vec<Vec<u8>> {
        m.tick(now, 1000);
        m.transmits(now)
            .iter()
            .filter(|t| t.to == to)
            .flat_map(Transmit::datagrams)
            .collect()
    }

    #[test]
    fn a_valve_server_is_listed_once_it_answers_through_the_challenge_step() {
        let mut m = probing();
        let s = a("1.2.3.4:27015");
        xash_register(&mut m, s, false).unwrap();
        assert!(listed(&mut m).is_empty(), "hidden until it answers");
        let t = Time::from_secs(10);
        let p = probes_to(&mut m, t, s);
        assert_eq!(p, [crate::wire::a2s::INFO_REQUEST.to_vec()]);
        // The server asks for the challenge step; the probe comes again with it, once.
        let mut c = Vec::new();
        Challenge(0x1234_5678).encode(&mut c);
        m.handle(t, s, 0, &c).unwrap();
        let again = only(m.transmits(t));
        assert_eq!(
            InfoRequest::decode(&again).unwrap().challenge,
            Some(0x1234_5678)
        );
        assert_eq!(m.handle(t, s, 0, &c), Err(DropReason::Unsolicited));
        m.handle(
            t.plus_millis(20),
            s,
            0,
            &info(b"Real server", 5, Some(27015)),
        )
        .unwrap();
        assert_eq!(listed(&mut m), [s]);
        let r = *m.table().get(s).unwrap();
        assert_eq!(r.players, 5, "the answer refreshed the player count");
        assert_eq!(m.table().strings().get(r.hostname), b"Real server");
        let c = m.counters();
        assert_eq!((c.probes_sent, c.probes_answered, c.shown), (2, 1, 1));
        assert_eq!(c.hidden[Hidden::Unproven as usize - 1], 1);
        // Nothing is sent in reply to an answer: probes are never a reflector.
        assert!(m.transmits(t.plus_millis(20)).is_empty());
    }

    #[test]
    fn a_server_that_stops_answering_is_hidden_then_listed_again_when_it_answers() {
        let mut m = probing();
        let s = a("1.2.3.4:27015");
        xash_register(&mut m, s, false).unwrap();
        let mut t = Time::from_secs(10);
        probes_to(&mut m, t, s);
        m.handle(t, s, 0, &info(b"x", 1, None)).unwrap();
        assert_eq!(listed(&mut m), [s]);
        // Silent from now: each probe is sent twice (one resend) and missed; two misses hide it.
        let mut sent = 0;
        for _ in 0..2000 {
            t = t.plus_millis(50);
            sent += probes_to(&mut m, t, s).len();
            if m.table().get(s).is_some_and(|r| !r.is_listed()) {
                break;
            }
        }
        assert_eq!(sent, 4, "two probes of two attempts");
        assert!(listed(&mut m).is_empty());
        assert_eq!(m.counters().probe_timeouts, 2);
        assert_eq!(m.counters().hidden[Hidden::Silent as usize - 1], 1);
        let brief = m.dump().probe(m.table().slot_of(s).unwrap());
        assert_eq!((brief.hidden(), brief.misses), (Some(Hidden::Silent), 2));
        // It answers the next probe: listed again.
        loop {
            t = t.plus_millis(50);
            if !probes_to(&mut m, t, s).is_empty() {
                break;
            }
        }
        m.handle(t, s, 0, &info(b"x", 2, None)).unwrap();
        assert_eq!(listed(&mut m), [s]);
    }

    #[test]
    fn answers_that_contradict_the_heartbeat_or_come_from_elsewhere_hide_the_server() {
        let mut m = probing();
        let (liar, proxied) = (a("1.2.3.4:27015"), a("1.2.3.5:27015"));
        xash_register(&mut m, liar, false).unwrap();
        xash_register(&mut m, proxied, false).unwrap();
        let t = Time::from_secs(10);
        m.tick(t, 100);
        let _ = m.transmits(t);
        // Registered as `valve`, answers as `cstrike`.
        let mut lie = Vec::new();
        SourceInfo::decode(&info(b"x", 1, None))
            .map(|mut i| {
                i.folder = b"cstrike";
                i.encode(&mut lie).unwrap();
            })
            .unwrap();
        m.handle(t, liar, 0, &lie).unwrap();
        // Answers from another port of its host, naming the listed one.
        let other = a("1.2.3.5:40000");
        m.handle(t, other, 0, &info(b"y", 1, Some(27015))).unwrap();
        // An answer nobody asked for is dropped and counted.
        assert_eq!(
            m.handle(t, a("5.5.5.5:1"), 0, &info(b"z", 1, None)),
            Err(DropReason::Unsolicited)
        );
        assert!(listed(&mut m).is_empty());
        let why = |m: &Master, s| {
            m.prober()
                .state(m.table().slot_of(s).unwrap())
                .unwrap()
                .hidden()
        };
        assert_eq!(why(&m, liar), Some(Hidden::Contradicts));
        assert_eq!(why(&m, proxied), Some(Hidden::WrongSource));
    }

    #[test]
    fn one_hosts_ports_answering_with_one_body_are_hidden_as_clones() {
        let mut m = probing();
        let t = Time::from_secs(10);
        let fakes: Vec<SocketAddr> = (0..3)
            .map(|i| SocketAddr::from(([6, 6, 6, 6], 27015 + i)))
            .collect();
        let real = a("6.6.6.6:28000");
        for s in fakes.iter().chain([&real]) {
            xash_register(&mut m, *s, false).unwrap();
        }
        m.tick(t, 100);
        let _ = m.transmits(t);
        for s in &fakes {
            m.handle(t, *s, 0, &info(b"BEST SERVER 24/7", 0, None))
                .unwrap();
        }
        m.handle(t, real, 0, &info(b"Our clan server", 3, None))
            .unwrap();
        // The third identical body is the clone threshold (3 here): the third is hidden at once,
        // the first two at their next answer.
        assert_eq!(listed(&mut m), [fakes[0], fakes[1], real]);
        assert_eq!(m.counters().hidden[Hidden::Clone as usize - 1], 1);
    }

    #[test]
    fn dp_servers_are_listed_at_once_and_probed_with_a_checked_getinfo() {
        let mut m = probing();
        let s = a("1.2.3.4:27960");
        assert_eq!(dp_register(&mut m, s, b"QuakeArena-1", &REQUIRED), None);
        assert!(m.table().get(s).unwrap().is_listed());
        // The first probe comes an interval (plus its spread) later: a getinfo whose challenge
        // the master verifies like a registration's.
        let mut t = Time::from_secs(10);
        let probe = loop {
            t = t.plus_millis(100);
            if let Some(p) = probes_to(&mut m, t, s).pop() {
                break p;
            }
            assert!(
                t < Time::from_secs(60),
                "probed within an interval and its spread"
            );
        };
        let challenge = GetInfo::decode(&probe).unwrap().challenge.to_vec();
        let mut pairs: Vec<(&[u8], &[u8])> = REQUIRED.to_vec();
        pairs.push((b"challenge", &challenge));
        let mut ir = Vec::new();
        InfoResponse::encode(&mut ir, pairs).unwrap();
        m.handle(t, s, 0, &ir).unwrap();
        assert_eq!(m.counters().probes_answered, 1);
        // A forged answer from elsewhere fails its challenge.
        assert_eq!(
            m.handle(t, a("1.2.3.9:27960"), 0, &ir),
            Err(DropReason::BadChallenge)
        );
    }

    #[test]
    fn allowed_networks_are_listed_without_probes_and_probing_off_lists_everyone() {
        let mut c = Config::with_secret([7; 16]);
        c.limits.allow_private = true;
        c.probe = ProbeConfig {
            allow: std::sync::Arc::new(NetSet::new(&["1.2.3.0/24".parse().unwrap()])),
            ..ProbeConfig::default()
        };
        let mut m = Master::new(Time::ZERO, c.clone(), 0, 1);
        let (own, other) = (a("1.2.3.4:27015"), a("5.6.7.8:27015"));
        xash_register(&mut m, own, false).unwrap();
        xash_register(&mut m, other, false).unwrap();
        assert_eq!(listed(&mut m), [own]);
        assert_eq!(probes_to(&mut m, Time::from_secs(10), own).len(), 0);
        // A reload that turns probing off lists every server.
        c.probe.enabled = false;
        m.reconfigure(Time::from_secs(11), &c);
        assert_eq!(listed(&mut m), [own, other]);
    }
}
