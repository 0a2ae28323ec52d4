//! Evaluates list-query filters against server records: the whole Valve filter language and the
//! Quake III / DarkPlaces query options.
//!
//! Valve semantics where a value is "false" (`\secure\0`, `\dedicated\0`…): the condition asks
//! nothing and is neutral, except `\password\0`, which asks for servers without a password.
//! String keys compare ASCII case-insensitively; tag lists are comma-separated.

use crate::master::table::intern::Strings;
use crate::master::table::record::{Family, Server, flags};
use crate::wire::dp_list::QueryFilter;
use crate::wire::filter::{Condition, Filter, Tags, wildcard_match};
use crate::wire::valve_list::Region;
use std::net::IpAddr;

fn tags_of(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

fn has_tag(list: &[u8], tag: &[u8]) -> bool {
    tags_of(list).any(|t| t.eq_ignore_ascii_case(tag))
}

fn all_tags(list: &[u8], want: Tags<'_>) -> bool {
    want.iter().all(|t| has_tag(list, t))
}

/// Units of scan work one candidate costs under `filter`: 1 for the candidate itself (its record
/// fetched and tested against flags, numbers and interned strings: ~130 ns at 100k servers, the
/// cheapest case of `cargo bench --bench master -- scan`), more for each condition that reads
/// text byte by byte — a wildcard (`name_match`, `version_match`: both strings lowercased, then a
/// substring search per `*`-separated piece) or a tag list. An upper bound on what a filter can
/// cost, so that budgets in units bound time whatever filter the attacker picks: the costliest
/// filter that fits a datagram (a `nor` group of ~600 wildcard pieces) measures ~10 µs a
/// candidate, ~77 units, and weighs 91 here.
pub fn scan_weight(filter: &Filter<'_>) -> usize {
    filter.conditions().fold(1usize, |w, c| {
        let extra = match c {
            Condition::NameMatch(p) | Condition::VersionMatch(p) => {
                let pieces = p.iter().filter(|&&b| b == b'*').count().saturating_add(1);
                2usize.saturating_add(pieces / 4)
            }
            Condition::GameType(t) | Condition::GameData(t) | Condition::GameDataOr(t) => {
                1usize.saturating_add(t.iter().count() / 2)
            }
            _ => 0,
        };
        w.saturating_add(extra)
    })
}

fn only_if(asked: bool, holds: bool) -> Option<bool> {
    asked.then_some(holds)
}

/// One condition against one server: `Some(matches)`, or `None` when the condition asks nothing.
pub fn test(c: &Condition<'_>, s: &Server, strings: &Strings) -> Option<bool> {
    match *c {
        Condition::Dedicated(b) => only_if(b, s.has(flags::DEDICATED)),
        Condition::Secure(b) => only_if(b, s.has(flags::SECURE)),
        Condition::Linux(b) => only_if(b, s.has(flags::LINUX)),
        Condition::Password(b) => Some(s.has(flags::PASSWORD) == b),
        Condition::NotEmpty(b) => only_if(b, !s.is_empty()),
        Condition::NotFull(b) => only_if(b, !s.is_full()),
        Condition::Proxy(b) => only_if(b, s.has(flags::PROXY)),
        Condition::NoPlayers(b) => only_if(b, s.is_empty()),
        Condition::White(b) => only_if(b, s.has(flags::WHITELISTED)),
        Condition::CollapseAddrHash(_) | Condition::Unknown { .. } => None,
        Condition::GameDir(g) => Some(strings.get(s.game).eq_ignore_ascii_case(g)),
        Condition::Map(m) => Some(strings.get(s.map).eq_ignore_ascii_case(m)),
        Condition::AppId(id) => Some(s.appid == id),
        Condition::NotAppId(id) => Some(s.appid != id),
        Condition::GameType(t) => Some(all_tags(strings.get(s.tags), t)),
        Condition::GameData(t) => Some(all_tags(strings.get(s.gamedata), t)),
        Condition::GameDataOr(t) => Some(t.iter().any(|x| has_tag(strings.get(s.gamedata), x))),
        Condition::NameMatch(p) => Some(wildcard_match(p, strings.get(s.hostname))),
        Condition::VersionMatch(p) => Some(wildcard_match(p, strings.get(s.version))),
        Condition::GameAddr(ga) => {
            let a = s.addr.addr();
            Some(a.ip() == IpAddr::V4(ga.ip) && ga.port.is_none_or(|p| p == a.port()))
        }
        Condition::Type(t) => Some(s.server_type.eq_ignore_ascii_case(&t)),
        Condition::Nat(b) => Some(s.has(flags::NAT) == b),
    }
}

/// Whether a Valve list query (region + filter) lists `s`. Region `0xFF` and unknown region bytes
/// ask for every region; otherwise the server's `region` must equal it.
pub fn valve_matches(region: Region, filter: &Filter<'_>, s: &Server, strings: &Strings) -> bool {
    let region_ok = match region {
        Region::All | Region::Unknown(_) => true,
        r => s.region == u8::from(r),
    };
    s.family == Family::Valve && region_ok && filter.eval(|c| test(c, s, strings))
}

/// Whether a `getservers` / `getserversExt` lists `s` (dpmaster 2.2 rules: empty and full servers
/// only when asked for, gametype compared exactly, default gametype "0").
pub fn dp_matches(
    game: &[u8],
    protocol: u32,
    f: &QueryFilter<'_>,
    s: &Server,
    strings: &Strings,
) -> bool {
    if s.family != Family::DarkPlaces || s.protocol != protocol || strings.get(s.game) != game {
        return false;
    }
    // dpmaster 2.2 (`HandleInfoResponse`): full is exactly `clients == sv_maxclients`; more
    // clients than that is "occupied" (listed without `full`).
    let full = s.max_players != 0 && s.players == s.max_players;
    if (s.is_empty() && !f.empty) || (full && !f.full) {
        return false;
    }
    if let Some(g) = f.gametype {
        let tags = strings.get(s.tags);
        let server_gt: &[u8] = if tags.is_empty() { b"0" } else { tags };
        if server_gt != g.value() {
            return false;
        }
    }
    if s.addr.is_v4() { f.ipv4 } else { f.ipv6 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::table::Fields;
    use crate::master::table::intern::Interner;
    use crate::master::table::record::AddrKey;
    use crate::master::time::Time;

    /// A Valve server built through the interner, as the table would.
    fn server(i: &mut Interner, f: Fields<'_>, addr: &str) -> Server {
        f.to_server(
            AddrKey::new(addr.parse().unwrap()),
            Family::Valve,
            Time::ZERO,
            i,
        )
    }

    fn base() -> Fields<'static> {
        Fields {
            region: 3,
            server_type: b'd',
            players: 5,
            max_players: 24,
            flags: flags::DEDICATED | flags::SECURE | flags::LINUX,
            appid: 440,
            game: b"tf",
            map: b"ctf_2fort",
            version: b"1.0.2.7",
            tags: b"alltalk,cp,increased_maxplayers",
            gamedata: b"g1,g2",
            hostname: b"Muster TF2 #1 | 24/7 2fort",
            ..Default::default()
        }
    }

    /// One row per filter key: (filter, fields that match, fields that do not).
    #[test]
    fn every_filter_key() {
        let mut i = Interner::default();
        let rows: Vec<(&[u8], Fields<'_>, Fields<'_>)> = vec![
            (b"\\dedicated\\1", base(), Fields { flags: 0, ..base() }),
            (
                b"\\secure\\1",
                base(),
                Fields {
                    flags: flags::DEDICATED,
                    ..base()
                },
            ),
            (
                b"\\linux\\1",
                base(),
                Fields {
                    flags: flags::DEDICATED,
                    ..base()
                },
            ),
            (
                b"\\password\\0",
                base(),
                Fields {
                    flags: flags::PASSWORD,
                    ..base()
                },
            ),
            (
                b"\\password\\1",
                Fields {
                    flags: flags::PASSWORD,
                    ..base()
                },
                base(),
            ),
            (
                b"\\empty\\1",
                base(),
                Fields {
                    players: 0,
                    ..base()
                },
            ),
            (
                b"\\full\\1",
                base(),
                Fields {
                    players: 24,
                    ..base()
                },
            ),
            (
                b"\\proxy\\1",
                Fields {
                    flags: flags::PROXY,
                    ..base()
                },
                base(),
            ),
            (
                b"\\noplayers\\1",
                Fields {
                    players: 0,
                    ..base()
                },
                base(),
            ),
            (
                b"\\white\\1",
                Fields {
                    flags: flags::WHITELISTED,
                    ..base()
                },
                base(),
            ),
            (
                b"\\gamedir\\TF",
                base(),
                Fields {
                    game: b"cstrike",
                    ..base()
                },
            ),
            (
                b"\\map\\CTF_2fort",
                base(),
                Fields {
                    map: b"cp_well",
                    ..base()
                },
            ),
            (
                b"\\appid\\440",
                base(),
                Fields {
                    appid: 10,
                    ..base()
                },
            ),
            (
                b"\\napp\\10",
                base(),
                Fields {
                    appid: 10,
                    ..base()
                },
            ),
            (
                b"\\gametype\\cp,alltalk",
                base(),
                Fields {
                    tags: b"cp",
                    ..base()
                },
            ),
            (
                b"\\gamedata\\g1,g2",
                base(),
                Fields {
                    gamedata: b"g1",
                    ..base()
                },
            ),
            (
                b"\\gamedataor\\x,g2",
                base(),
                Fields {
                    gamedata: b"g3",
                    ..base()
                },
            ),
            (
                b"\\name_match\\*2fort*",
                base(),
                Fields {
                    hostname: b"dust",
                    ..base()
                },
            ),
            (
                b"\\version_match\\1.0.*",
                base(),
                Fields {
                    version: b"2.0",
                    ..base()
                },
            ),
            (
                b"\\type\\d",
                base(),
                Fields {
                    server_type: b'l',
                    ..base()
                },
            ),
            (
                b"\\nor\\2\\map\\cp_well\\map\\de_dust",
                base(),
                Fields {
                    map: b"de_dust",
                    ..base()
                },
            ),
            (
                b"\\nand\\2\\map\\cp_well\\empty\\1",
                base(),
                Fields {
                    map: b"cp_well",
                    ..base()
                },
            ),
        ];
        for (filter, yes, no) in rows {
            let f = Filter::parse(filter).unwrap();
            let (sy, sn) = (
                server(&mut i, yes, "1.2.3.4:27015"),
                server(&mut i, no, "1.2.3.4:27015"),
            );
            let t = i.snapshot();
            let name = String::from_utf8_lossy(filter);
            assert!(
                valve_matches(Region::All, &f, &sy, &t),
                "{name} should match"
            );
            assert!(
                !valve_matches(Region::All, &f, &sn, &t),
                "{name} should not match"
            );
        }
        // gameaddr and region.
        let s = server(&mut i, base(), "1.2.3.4:27015");
        let t = i.snapshot();
        for (filter, want) in [
            (&b"\\gameaddr\\1.2.3.4"[..], true),
            (b"\\gameaddr\\1.2.3.4:27015", true),
            (b"\\gameaddr\\1.2.3.4:27016", false),
            (b"\\gameaddr\\1.2.3.5", false),
        ] {
            assert_eq!(
                valve_matches(Region::All, &Filter::parse(filter).unwrap(), &s, &t),
                want
            );
        }
        let none = Filter::default();
        assert!(valve_matches(Region::Europe, &none, &s, &t));
        assert!(!valve_matches(Region::Asia, &none, &s, &t));
        assert!(valve_matches(Region::Unknown(42), &none, &s, &t));
        // Neutral keys: collapse_addr_hash and unknown keys match everything.
        assert!(valve_matches(
            Region::All,
            &Filter::parse(b"\\collapse_addr_hash\\1\\whatever\\x").unwrap(),
            &s,
            &t
        ));
        assert!(valve_matches(
            Region::All,
            &Filter::parse(b"\\secure\\0").unwrap(),
            &Server { flags: 0, ..s },
            &t
        ));
    }

    #[test]
    fn dp_options() {
        use crate::wire::dp_list::{Gametype, QueryFilter};
        let mut i = Interner::default();
        let mut s = server(
            &mut i,
            Fields {
                game: b"Xonotic",
                protocol: 3,
                players: 0,
                max_players: 8,
                tags: b"",
                ..base()
            },
            "1.2.3.4:26000",
        );
        s.family = Family::DarkPlaces;
        let t = i.snapshot();
        let all = QueryFilter {
            empty: true,
            full: true,
            gametype: None,
            ipv4: true,
            ipv6: true,
        };
        assert!(dp_matches(b"Xonotic", 3, &all, &s, &t));
        assert!(
            !dp_matches(b"xonotic", 3, &all, &s, &t),
            "gamename is exact, as dpmaster"
        );
        assert!(!dp_matches(b"Xonotic", 4, &all, &s, &t));
        assert!(
            !dp_matches(
                b"Xonotic",
                3,
                &QueryFilter {
                    empty: false,
                    ..all
                },
                &s,
                &t
            ),
            "empty left out"
        );
        let full = Server { players: 8, ..s };
        assert!(!dp_matches(
            b"Xonotic",
            3,
            &QueryFilter { full: false, ..all },
            &full,
            &t
        ));
        assert!(
            dp_matches(
                b"Xonotic",
                3,
                &QueryFilter {
                    gametype: Some(Gametype::Ffa),
                    ..all
                },
                &s,
                &t
            ),
            "default gametype 0"
        );
        assert!(!dp_matches(
            b"Xonotic",
            3,
            &QueryFilter {
                gametype: Some(Gametype::Ctf),
                ..all
            },
            &s,
            &t
        ));
        assert!(!dp_matches(
            b"Xonotic",
            3,
            &QueryFilter { ipv4: false, ..all },
            &s,
            &t
        ));
    }
}
