//! A reloaded configuration ([`Master::reconfigure`]) and a state file's servers
//! ([`Master::restore`]).

use crate::master::admission::Admission;
use crate::master::counters::{DropReason, add, inc};
use crate::master::policy::{self, AddressVerdict, Limits};
use crate::master::table::Fields;
use crate::master::table::record::Family;
use crate::master::time::Time;
use std::net::SocketAddr;

use super::{Config, Master};

impl Master {
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
    ) -> Result<bool, DropReason> {
        let from = policy::canonical(from);
        if self.config.bans.contains(from.ip()) {
            return Err(DropReason::Banned);
        }
        self.address_ok(from)?;
        if family == Family::DarkPlaces && !self.config.games.allows(fields.game) {
            return Err(DropReason::GameRejected);
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
            self.probe_restored(now, from, 0);
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
        let probing = (c.probe.enabled, new.probe.enabled);
        c.probe = new.probe.clone();
        self.prober.set_config(c.probe.clone());
        self.reprobe(now, probing);
        let c = &self.config;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::service::test_support::*;
    use crate::master::service::*;

    #[test]
    pub(super) fn restored_servers_are_listed_at_once_and_expire_when_they_would_have() {
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
            Err(DropReason::Banned)
        );
        assert_eq!(
            m.restore(now, a("10.0.0.1:1"), Family::Valve, &f, later, 0),
            Err(DropReason::PrivateAddress)
        );
        let nexuiz = Fields {
            game: b"Nexuiz",
            ..f
        };
        assert_eq!(
            m.restore(now, a("192.0.2.3:1"), Family::DarkPlaces, &nexuiz, later, 0),
            Err(DropReason::GameRejected)
        );
    }

    #[test]
    pub(super) fn a_reload_bans_delists_drops_and_counts_and_keeps_the_rest() {
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
            Err(DropReason::Banned)
        );
        assert_eq!(
            m.handle(now, a("203.0.113.200:1"), 0, b"garbage"),
            Err(DropReason::Banned)
        );
        assert!(m.transmits(now).is_empty());
        assert_eq!(m.counters().dropped(DropReason::Banned), 2);
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
}
