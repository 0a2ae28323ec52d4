//! Registration, both families (shared/docs/protocols.md §2–3): the challenge a `q` or DP
//! `heartbeat` draws (when the server could be listed, within the challenge budgets, holding a
//! place for the handshake), and the heartbeat or `infoResponse` that lists or refreshes a server
//! once its challenge verifies; the infostring fields each family's record keeps.

use crate::master::counters::{DropReason, inc};
use crate::master::policy::{self, AddressVerdict};
use crate::master::table::record::{Family, flags, number, small_number};
use crate::master::table::{Fields, Upserted};
use crate::master::time::Time;
use crate::master::transmit::Payload;
use crate::wire::dp_server::{GetInfo, Heartbeat as DpHeartbeat, InfoResponse};
use crate::wire::infostring::InfoString;
use crate::wire::valve_heartbeat::{ChallengeReply, ServerMessage};
use std::net::SocketAddr;

use super::Master;

fn is_one(v: Option<&[u8]>) -> bool {
    v == Some(b"1")
}

impl Master {
    /// Queues a challenge (one small datagram; the challenge budgets admitted it).
    fn send_challenge(
        &mut self,
        to: SocketAddr,
        local: u8,
        payload: Payload,
    ) -> Result<(), DropReason> {
        self.tx
            .send(to, local, payload)
            .map_err(|_| DropReason::TxFull)?;
        inc(&mut self.counters.answered);
        inc(&mut self.counters.challenges_sent);
        Ok(())
    }

    /// No challenge to a server that could not be listed (dpmaster 2.2 sends no `getinfo` then):
    /// a full table or address spends nothing on handshakes that would be dropped. Then the
    /// challenge budgets, then the handshake holds a place until it completes or lapses
    /// (dpmaster's count).
    fn admit_handshake(&mut self, now: Time, from: SocketAddr) -> Result<(), DropReason> {
        let placement = self.table.could_list(now, from)?;
        self.admission.admit_challenge(now, from)?;
        self.table.reserve(now, placement)?;
        Ok(())
    }

    pub(super) fn address_ok(&self, from: SocketAddr) -> Result<(), DropReason> {
        match policy::check_address(from, self.config.limits.allow_private) {
            AddressVerdict::Ok => Ok(()),
            AddressVerdict::Invalid => Err(DropReason::InvalidAddress),
            AddressVerdict::Private => Err(DropReason::PrivateAddress),
        }
    }

    pub(super) fn valve_server(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        match ServerMessage::decode(datagram).map_err(|_| DropReason::Malformed)? {
            ServerMessage::ChallengeRequest { nonce, .. } => {
                self.address_ok(from)?;
                self.admit_handshake(now, from)?;
                let challenge = self.challenges.valve(now, from);
                let mut b = Vec::with_capacity(16);
                ChallengeReply { challenge, nonce }.encode(&mut b);
                let payload = Payload::small(&b).ok_or(DropReason::Malformed)?;
                self.send_challenge(from, local, payload)
            }
            ServerMessage::Heartbeat(hb) => {
                self.address_ok(from)?;
                let challenge = hb.challenge().ok_or(DropReason::BadChallenge)?;
                if !self.challenges.verify_valve(now, from, challenge) {
                    return Err(DropReason::BadChallenge);
                }
                let fields = valve_fields(&hb.info).ok_or(DropReason::MissingKey)?;
                self.upsert(now, from, local, Family::Valve, 0, fields)
                    .map(drop)
            }
            ServerMessage::Shutdown { .. } => Err(DropReason::Shutdown),
        }
    }

    pub(super) fn dp_heartbeat(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        let hb = DpHeartbeat::decode(datagram).map_err(|_| DropReason::Malformed)?;
        let tag = self
            .config
            .game_props
            .tag_index(hb.tag)
            .ok_or(DropReason::UnknownTag)?;
        self.address_ok(from)?;
        self.admit_handshake(now, from)?;
        let challenge = self.challenges.dp(now, from, tag);
        let mut b = Vec::with_capacity(32);
        GetInfo {
            challenge: challenge.as_bytes(),
        }
        .encode(&mut b)
        .map_err(|_| DropReason::Malformed)?;
        let payload = Payload::small(&b).ok_or(DropReason::Malformed)?;
        self.send_challenge(from, local, payload)
    }

    pub(super) fn dp_info(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        datagram: &[u8],
    ) -> Result<(), DropReason> {
        let ir = InfoResponse::decode(datagram).map_err(|_| DropReason::Malformed)?;
        self.address_ok(from)?;
        let challenge = ir.challenge().ok_or(DropReason::BadChallenge)?;
        let tag = self
            .challenges
            .verify_dp(now, from, challenge, self.config.game_props.tags())
            .ok_or(DropReason::BadChallenge)?;
        let games = self.config.game_props.clone();
        let implied = games.tag_game(tag);
        let fields = dp_fields(&ir, implied).ok_or(DropReason::MissingKey)?;
        if !self.config.games.allows(fields.game) {
            return Err(DropReason::GameRejected);
        }
        let slot = self.upsert(now, from, local, Family::DarkPlaces, tag, fields)?;
        self.probe_dp_alive(now, from, slot);
        Ok(())
    }

    /// Lists (or refreshes) a server whose handshake completed through listener `local`; `tag`
    /// is a DP server's heartbeat tag (its probes' `getinfo` challenges encode it). Returns the
    /// server's slot.
    pub(super) fn upsert(
        &mut self,
        now: Time,
        from: SocketAddr,
        local: u8,
        family: Family,
        tag: u8,
        mut f: Fields<'_>,
    ) -> Result<u32, DropReason> {
        // A Valve-family server takes a place in lists once it answers a probe (a refresh keeps
        // whatever its probes decided).
        if family == Family::Valve && self.probes_apply(from) {
            f.flags |= flags::HIDDEN;
        }
        // A completed handshake lists the server; it proves nothing about list queries from its
        // address (game servers are what DDoS attacks aim at: [`crate::master::admission`]).
        let up = self.table.upsert_slot(now, from, family, &f)?;
        let slot = up.slot;
        match up.how {
            Upserted::Inserted => {
                inc(&mut self.counters.registered);
                self.probe_registered(now, from, slot, local, family, tag);
            }
            Upserted::Refreshed => {
                inc(&mut self.counters.refreshed);
                // A server a peer forwarded that registers here becomes this master's own
                // (probed here).
                if up.was_forwarded {
                    self.probe_registered(now, from, slot, local, family, tag);
                    // Listed as its origin said until this master's own probe answers.
                    if self.table.at(slot).is_some_and(|s| s.is_listed()) {
                        self.prober.set_hidden(slot, None);
                    }
                }
            }
        }
        Ok(slot)
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
    use crate::master::service::test_support::*;
    use crate::master::service::*;

    #[test]
    pub(super) fn no_challenge_for_a_server_that_could_not_be_listed() {
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
            Some(DropReason::PerIpCap)
        );
        assert_eq!(m.handle(Time::ZERO, b, 0, b"q"), Err(DropReason::PerIpCap));
        assert_eq!(m.counters().challenges_sent, sent, "nothing sent");
        // The listed server itself still gets its challenge (it refreshes).
        assert_eq!(dp_register(&mut m, a, b"QuakeArena-1", &REQUIRED), None);
    }

    #[test]
    pub(super) fn handshakes_in_progress_count_against_the_caps_as_in_dpmaster() {
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
        assert_eq!(verdicts, [Ok(()), Ok(()), Err(DropReason::PerIpCap)]);
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
            [
                Ok(()),
                Err(DropReason::TableFull),
                Err(DropReason::TableFull)
            ]
        );
        let _ = m.transmits(now);
        // Handshakes that never complete give their places back after the hold (2 s).
        let later = now.plus_millis(crate::master::table::pending::PENDING_HOLD_MS);
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
        assert_eq!(m.handle(later, same[2], 0, &hb), Err(DropReason::PerIpCap));
        // Two listed, one place left: one more handshake is held, then the table is full.
        assert_eq!(m.handle(later, others[1], 0, &hb), Ok(()));
        assert_eq!(
            m.handle(later, others[2], 0, &hb),
            Err(DropReason::TableFull)
        );
    }

    /// dpmaster 2.2's documented behaviours (techinfo.txt §3–4, manual.txt §5–8), one case each.
    #[test]
    pub(super) fn dpmaster_documented_behaviours() {
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
            Err(DropReason::BadChallenge)
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
            Err(DropReason::MissingKey)
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
            Err(DropReason::MissingKey)
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
    pub(super) fn anonymous_tags_imply_their_game_and_policy_applies() {
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
            Some(DropReason::MissingKey)
        );
        // DarkPlaces needs a gamename; the policy can reject it.
        let mut m = master(GamePolicy {
            accept: vec![],
            reject: vec![b"Xonotic".to_vec().into()],
        });
        assert_eq!(
            dp_register(&mut m, a, b"DarkPlaces", &REQUIRED),
            Some(DropReason::MissingKey)
        );
        assert_eq!(
            dp_register(&mut m, a, b"DarkPlaces", &pairs),
            Some(DropReason::GameRejected)
        );
        assert!(m.table().is_empty());
    }

    #[test]
    pub(super) fn configured_game_properties_add_a_heartbeat_tag_and_an_anonymous_protocol() {
        // dpmaster manual.txt §5: `-g Warsow heartbeat=Warsow` (muster: `[[game]]`).
        let mut c = Config::with_secret([7; 16]);
        c.limits.allow_private = true;
        c.game_props = Arc::new(
            Games::with(vec![crate::master::policy::games::GameProps {
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
            Some(DropReason::UnknownTag)
        );
    }

    #[test]
    pub(super) fn flatline_and_unknown_tags_get_no_challenge() {
        let a: SocketAddr = "1.2.3.4:27960".parse().unwrap();
        let mut m = master(GamePolicy::default());
        for tag in [&b"ETFlatline-1"[..], b"WolfFlatline-1", b"SomethingElse"] {
            assert_eq!(
                dp_register(&mut m, a, tag, &REQUIRED),
                Some(DropReason::UnknownTag)
            );
        }
        assert_eq!(m.counters().challenges_sent, 0);
    }

    #[test]
    pub(super) fn required_keys() {
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
                Some(DropReason::MissingKey),
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
            Some(DropReason::MissingKey)
        );
    }

    #[test]
    pub(super) fn xash_nonce_is_echoed_and_unknown_datagrams_are_counted() {
        let mut m = master(GamePolicy::default());
        let a: SocketAddr = "1.2.3.4:27015".parse().unwrap();
        m.handle(Time::ZERO, a, 0, b"q\xff\x78\x56\x34\x12")
            .unwrap();
        let reply = only(m.transmits(Time::ZERO));
        let reply = ChallengeReply::decode(&reply).unwrap();
        assert_eq!(reply.nonce, Some(0x1234_5678));
        assert_eq!(
            m.handle(Time::ZERO, a, 0, b"GET / HTTP/1.0"),
            Err(DropReason::Unknown)
        );
        assert_eq!(
            m.handle(Time::ZERO, a, 0, b"\xff\xff\xff\xffTSource Engine Query\0"),
            Err(DropReason::Unexpected)
        );
        assert!(m.transmits(Time::ZERO).is_empty());
        assert_eq!(m.counters().dropped(DropReason::Unknown), 1);
        assert_eq!(m.counters().dropped(DropReason::Unexpected), 1);
    }

    #[test]
    pub(super) fn a_saturated_batch_keeps_every_registration_and_sheds_queries_past_the_budget() {
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
        // The 100 queries are the batch's client datagrams, shed or not.
        assert_eq!(m.handle_batch(now, &batch, true), 100);
        assert_eq!(m.counters().challenges_sent, 40);
        assert_eq!(m.counters().valve_queries, SATURATED_QUERY_BUDGET as u64);
        assert_eq!(
            m.counters().dropped(DropReason::Shed),
            100 - SATURATED_QUERY_BUDGET as u64
        );
        let sent = m.transmits(now);
        assert_eq!(sent.len(), 40 + SATURATED_QUERY_BUDGET);
        assert!(
            sent[..40].iter().all(|t| t.payload.len() == 10),
            "challenges leave first"
        );
        // Not saturated: every query is answered.
        assert_eq!(m.handle_batch(now, &batch, false), 100);
        assert_eq!(
            m.handle_batch(now, &batch[100..], false),
            0,
            "game servers only"
        );
        assert_eq!(
            m.counters().dropped(DropReason::Shed),
            100 - SATURATED_QUERY_BUDGET as u64
        );
    }
}
