//! Servers forwarded by peer masters (issue 22): a peer verified the registration (its own
//! challenge completed), and says when it last heard the server. Applied here as the origin saw
//! it: the record expires when the origin's last word runs out (never later), a fresher word
//! refreshes it, a local registration always wins (the record becomes this master's own), and a
//! forwarded server is never probed here (its liveness is the origin's) nor forwarded again.

use crate::master::counters::{DropReason, inc};
use crate::master::policy;
use crate::master::table::Fields;
use crate::master::table::record::{Family, flags};
use crate::master::time::Time;
use std::net::SocketAddr;

use super::Master;

/// A server a peer forwarded, owned (the peering thread builds it from a verified datagram).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarded {
    pub addr: SocketAddr,
    pub family: Family,
    /// How long before it was received its origin last heard the server.
    pub age_ms: u32,
    /// Listed at its origin (false: hidden by the origin's probes).
    pub listed: bool,
    /// The origin stopped listing it `age_ms` before it was received (a ban, its timeout): it
    /// leaves this table too unless a fresher word or a local registration holds it.
    pub gone: bool,
    pub region: u8,
    pub server_type: u8,
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
    /// Its flags as registered (HIDDEN and FORWARDED are this master's own and ignored).
    pub flags: u16,
    pub appid: u32,
    pub protocol: u32,
    /// game, product, map, version, tags, gamedata, hostname.
    pub strings: [Box<[u8]>; 7],
}

impl Forwarded {
    fn fields(&self) -> Fields<'_> {
        let [game, product, map, version, tags, gamedata, hostname] = &self.strings;
        let mut f = self.flags & !(flags::HIDDEN | flags::FORWARDED);
        f |= flags::FORWARDED;
        if !self.listed {
            f |= flags::HIDDEN;
        }
        Fields {
            region: self.region,
            server_type: self.server_type,
            players: self.players,
            max_players: self.max_players,
            bots: self.bots,
            flags: f,
            appid: self.appid,
            protocol: self.protocol,
            game,
            product,
            map,
            version,
            tags,
            gamedata,
            hostname,
        }
    }
}

impl Master {
    /// Lists or refreshes a server a peer forwarded. `Ok(true)`: the table changed; `Ok(false)`:
    /// nothing to do (a local registration holds it, the word is older than what is held, or it
    /// ran out already). Today's local rules apply (bans, address and game policy, caps).
    pub fn apply_forwarded(&mut self, now: Time, f: &Forwarded) -> Result<bool, DropReason> {
        let from = policy::canonical(f.addr);
        if f.gone {
            return Ok(self.forget_forwarded(now, from, f.age_ms));
        }
        if self.config.bans.contains(from.ip()) {
            return Err(DropReason::Banned);
        }
        self.address_ok(from)?;
        if f.family == Family::DarkPlaces && !self.config.games.allows(&f.strings[0]) {
            return Err(DropReason::GameRejected);
        }
        let heard = Time::from_millis(now.millis().saturating_sub(u64::from(f.age_ms)));
        if heard.plus_millis(self.config.limits.server_timeout_ms) <= now {
            return Ok(false);
        }
        if let Some(held) = self.table.get(from) {
            if !held.is_forwarded() {
                return Ok(false); // this master's own registration wins
            }
            // Never older than what is held (seconds on the table's clock, rounded up).
            let held_secs = self.table.last_seen(from).unwrap_or(0);
            if u64::from(held_secs).saturating_mul(1000) > heard.millis().saturating_add(999) {
                return Ok(false);
            }
        }
        let fields = f.fields();
        let up = self.table.upsert_slot(heard, from, f.family, &fields)?;
        // The origin's probes decide whether it is listed (an upsert keeps the held flag).
        self.table.set_hidden(up.slot, !f.listed);
        inc(&mut self.counters.forwarded_in);
        Ok(true)
    }

    /// The origin delisted `from` `age_ms` ago: removed if held on a peer's word no fresher than
    /// that (a later word, from it or another peer, or a local registration keeps it).
    fn forget_forwarded(&mut self, now: Time, from: SocketAddr, age_ms: u32) -> bool {
        let Some(held) = self.table.get(from) else {
            return false;
        };
        if !held.is_forwarded() {
            return false;
        }
        let gone_ms = now.millis().saturating_sub(u64::from(age_ms));
        let held_ms = u64::from(self.table.last_seen(from).unwrap_or(0)).saturating_mul(1000);
        // Seen-seconds round up; a word from the same second as the removal is the removed one.
        if held_ms > gone_ms.saturating_add(999) {
            return false;
        }
        let removed = self.table.remove(from);
        if removed {
            inc(&mut self.counters.forwarded_gone);
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::service::test_support::*;

    fn fwd(addr: &str, age_ms: u32, listed: bool, map: &[u8]) -> Forwarded {
        Forwarded {
            addr: addr.parse().unwrap(),
            family: Family::Valve,
            age_ms,
            listed,
            gone: false,
            region: 255,
            server_type: b'd',
            players: 3,
            max_players: 16,
            bots: 0,
            flags: 0,
            appid: 10,
            protocol: 48,
            strings: [
                (*b"cstrike").into(),
                (*b"cstrike").into(),
                map.into(),
                (*b"1.1.2.7").into(),
                (*b"").into(),
                (*b"").into(),
                (*b"A server").into(),
            ],
        }
    }

    #[test]
    fn a_forwarded_server_lives_as_long_as_its_origins_word_and_no_longer() {
        let mut m = master(GamePolicy::default());
        let t = Time::from_secs(1000);
        let timeout = m.config().limits.server_timeout_ms;
        // Heard by its origin 10 s ago: listed here, expiring 10 s sooner than a fresh one.
        assert_eq!(
            m.apply_forwarded(t, &fwd("1.2.3.4:27015", 10_000, true, b"m")),
            Ok(true)
        );
        let r = *m.table().get(a("1.2.3.4:27015")).unwrap();
        assert!(r.is_forwarded() && r.is_listed());
        m.tick(t.plus_millis(timeout - 10_000 + 2_000), 1000);
        assert!(
            m.table().get(a("1.2.3.4:27015")).is_none(),
            "gone when the origin's word ran out"
        );
        // A word that ran out already lists nothing.
        assert_eq!(
            m.apply_forwarded(
                t,
                &fwd("1.2.3.5:27015", u32::try_from(timeout).unwrap(), true, b"m")
            ),
            Ok(false)
        );
        // An older word than the one held changes nothing; a fresher one refreshes.
        assert_eq!(
            m.apply_forwarded(t, &fwd("1.2.3.6:27015", 0, true, b"new")),
            Ok(true)
        );
        assert_eq!(
            m.apply_forwarded(t, &fwd("1.2.3.6:27015", 60_000, true, b"old")),
            Ok(false)
        );
        let r = *m.table().get(a("1.2.3.6:27015")).unwrap();
        assert_eq!(m.table().strings().get(r.map), b"new");
        // Hidden at its origin: hidden here.
        assert_eq!(
            m.apply_forwarded(t, &fwd("1.2.3.6:27015", 0, false, b"new")),
            Ok(true)
        );
        assert!(!m.table().get(a("1.2.3.6:27015")).unwrap().is_listed());
    }

    #[test]
    fn a_local_registration_wins_and_local_rules_apply() {
        let mut m = master(GamePolicy::default());
        let s = a("1.2.3.4:27015");
        xash_register(&mut m, s, false).unwrap();
        let t = Time::from_secs(10);
        assert_eq!(
            m.apply_forwarded(t, &fwd("1.2.3.4:27015", 0, true, b"m")),
            Ok(false)
        );
        assert!(!m.table().get(s).unwrap().is_forwarded());
        // A forwarded server that then registers here becomes this master's own.
        assert_eq!(
            m.apply_forwarded(t, &fwd("1.2.3.9:27015", 0, true, b"m")),
            Ok(true)
        );
        xash_register(&mut m, a("1.2.3.9:27015"), false).unwrap();
        assert!(!m.table().get(a("1.2.3.9:27015")).unwrap().is_forwarded());
        // Private addresses (not allowed by this master's config here) and bans apply.
        let mut c = Config::with_secret([7; 16]);
        c.bans = std::sync::Arc::new(NetSet::new(&["5.0.0.0/8".parse().unwrap()]));
        let mut strict = Master::new(Time::ZERO, c, 0, 1);
        assert_eq!(
            strict.apply_forwarded(t, &fwd("127.0.0.1:27015", 0, true, b"m")),
            Err(DropReason::PrivateAddress)
        );
        assert_eq!(
            strict.apply_forwarded(t, &fwd("5.1.1.1:27015", 0, true, b"m")),
            Err(DropReason::Banned)
        );
    }

    #[test]
    fn a_delisting_at_the_origin_removes_what_its_word_listed_and_nothing_fresher() {
        let mut m = master(GamePolicy::default());
        let t = Time::from_secs(1000);
        let gone = |addr: &str, age_ms: u32| Forwarded {
            gone: true,
            ..fwd(addr, age_ms, true, b"")
        };
        // Listed on a word 5 s old, delisted by the origin 1 s ago: removed and counted.
        m.apply_forwarded(t, &fwd("1.2.3.4:27015", 5_000, true, b"m"))
            .unwrap();
        assert_eq!(
            m.apply_forwarded(t, &gone("1.2.3.4:27015", 1_000)),
            Ok(true)
        );
        assert!(m.table().get(a("1.2.3.4:27015")).is_none());
        assert_eq!(m.counters().forwarded_gone, 1);
        // A word fresher than the delisting (another peer heard it since): kept.
        m.apply_forwarded(t, &fwd("1.2.3.5:27015", 0, true, b"m"))
            .unwrap();
        assert_eq!(
            m.apply_forwarded(t, &gone("1.2.3.5:27015", 10_000)),
            Ok(false)
        );
        assert!(m.table().get(a("1.2.3.5:27015")).is_some());
        // This master's own registration: kept; an address never held: nothing.
        let own = a("1.2.3.6:27015");
        xash_register(&mut m, own, false).unwrap();
        assert_eq!(m.apply_forwarded(t, &gone("1.2.3.6:27015", 0)), Ok(false));
        assert!(m.table().get(own).is_some());
        assert_eq!(m.apply_forwarded(t, &gone("9.9.9.9:27015", 0)), Ok(false));
        assert_eq!(m.counters().forwarded_gone, 1);
    }
}
