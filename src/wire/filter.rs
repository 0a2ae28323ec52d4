//! The Valve master filter language, parsed into a typed tree.
//!
//! A filter is an infostring of conditions (`\gamedir\tf\empty\1…`) that must all hold, except that
//! `\nor\N` and `\nand\N` scope the next N conditions into a group: `nor` excludes servers matching
//! ANY of them, `nand` servers matching ALL of them. Rules where the public documentation is silent:
//! - A nested group counts as one condition of its parent; N larger than what follows is clamped.
//! - Every key counts toward N, even a key that does not test a server (`collapse_addr_hash`, or a key
//!   muster does not know). Such keys are *neutral*: they never decide a group's result (see
//!   [`Filter::eval`]). Unknown keys are kept, not rejected, so new clients keep working.
//! - Boolean values: `0` or empty is false, anything else true. What a false flag means is the
//!   evaluator's business (`\password\0` asks for open servers; `\dedicated\0` asks nothing).
//! - A malformed value of a known key (`\appid\x`) rejects the whole filter.
//!
//! The tree is stored flat in prefix order in a fixed-capacity array: parsing never allocates.

use super::cursor::{parse_decimal, parse_ipv4};
use super::error::{Error, ErrorKind, Result};
use super::infostring::InfoString;
use arrayvec::ArrayVec;
use std::net::Ipv4Addr;

/// Most keys in one filter; more is rejected (python-valve's longest real filter has ~8).
pub const MAX_FILTER_NODES: usize = 32;
/// Longest `name_match` / `version_match` pattern.
pub const MAX_PATTERN_LEN: usize = 255;

/// Comma-separated tags (`\gametype\alltalk,cp`), borrowed from the query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tags<'a>(pub &'a [u8]);

impl<'a> Tags<'a> {
    /// Each non-empty tag, surrounding spaces trimmed.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
    }
}

/// `\gameaddr\ip` or `\gameaddr\ip:port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GameAddr {
    pub ip: Ipv4Addr,
    pub port: Option<u16>,
}

/// One test on a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition<'a> {
    Dedicated(bool),
    Secure(bool),
    Linux(bool),
    /// `\password\0`: servers that are not password-protected.
    Password(bool),
    /// `\empty\1`: servers that are not empty.
    NotEmpty(bool),
    /// `\full\1`: servers that are not full.
    NotFull(bool),
    /// Spectator proxies.
    Proxy(bool),
    /// Servers with no players.
    NoPlayers(bool),
    /// Whitelisted servers.
    White(bool),
    /// `\collapse_addr_hash\1`: one result per IP. Shapes the result, tests no server: neutral.
    CollapseAddrHash(bool),
    GameDir(&'a [u8]),
    Map(&'a [u8]),
    AppId(u32),
    NotAppId(u32),
    /// All tags present in the server's gametype / sv_tags.
    GameType(Tags<'a>),
    /// All tags present in the server's hidden game data.
    GameData(Tags<'a>),
    /// Any tag present in the server's hidden game data.
    GameDataOr(Tags<'a>),
    /// Hostname matches the pattern (`*` wildcard).
    NameMatch(&'a [u8]),
    /// Version matches the pattern (`*` wildcard).
    VersionMatch(&'a [u8]),
    GameAddr(GameAddr),
    /// Xash3D's `\nat\0|1`: only servers behind NAT (1) or only the others (0), as
    /// xash3d-master's `Filter::matches` (the server's `nat` flag must equal the value).
    Nat(bool),
    /// The older `\type\d` (server type byte: d, l, p).
    Type(u8),
    /// A key muster does not know, kept as sent: neutral.
    Unknown {
        key: &'a [u8],
        value: &'a [u8],
    },
}

/// Which group a `nor` / `nand` node opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    Nor,
    Nand,
}

/// A node of the flat prefix-order tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node<'a> {
    Cond(Condition<'a>),
    /// A group whose children are the next `children` subtrees; `requested` is the N as sent.
    Group {
        kind: GroupKind,
        requested: u8,
        children: u8,
    },
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Filter<'a> {
    nodes: ArrayVec<Node<'a>, MAX_FILTER_NODES>,
}

fn flag(v: &[u8]) -> bool {
    !(v.is_empty() || v == b"0")
}

fn number(v: &[u8], field: &'static str) -> Result<u32> {
    parse_decimal(v, u64::from(u32::MAX), field).map(|n| n as u32)
}

impl<'a> Condition<'a> {
    /// Maps one `\key\value` pair. Keys compare case-sensitively, as Valve's clients send them.
    pub fn parse(key: &'a [u8], value: &'a [u8]) -> Result<Self> {
        Ok(match key {
            b"dedicated" => Self::Dedicated(flag(value)),
            b"secure" => Self::Secure(flag(value)),
            b"linux" => Self::Linux(flag(value)),
            b"password" => Self::Password(flag(value)),
            b"empty" => Self::NotEmpty(flag(value)),
            b"full" => Self::NotFull(flag(value)),
            b"proxy" => Self::Proxy(flag(value)),
            b"noplayers" => Self::NoPlayers(flag(value)),
            b"white" => Self::White(flag(value)),
            b"collapse_addr_hash" => Self::CollapseAddrHash(flag(value)),
            b"gamedir" => Self::GameDir(value),
            b"map" => Self::Map(value),
            b"appid" => Self::AppId(number(value, "filter.appid")?),
            b"napp" => Self::NotAppId(number(value, "filter.napp")?),
            b"gametype" => Self::GameType(Tags(value)),
            b"gamedata" => Self::GameData(Tags(value)),
            b"gamedataor" => Self::GameDataOr(Tags(value)),
            b"name_match" | b"version_match" => {
                if value.len() > MAX_PATTERN_LEN {
                    return Err(Error::new(ErrorKind::TooLong, "filter.pattern", 0));
                }
                if key == b"name_match" {
                    Self::NameMatch(value)
                } else {
                    Self::VersionMatch(value)
                }
            }
            b"gameaddr" => Self::GameAddr(parse_gameaddr(value)?),
            b"nat" => Self::Nat(flag(value)),
            b"type" => match value {
                [t] => Self::Type(*t),
                _ => return Err(Error::new(ErrorKind::BadValue, "filter.type", 0)),
            },
            _ => Self::Unknown { key, value },
        })
    }

    /// Keys that test no server (see the module rules).
    pub fn is_neutral(&self) -> bool {
        matches!(self, Self::CollapseAddrHash(_) | Self::Unknown { .. })
    }
}

fn parse_gameaddr(v: &[u8]) -> Result<GameAddr> {
    const FIELD: &str = "filter.gameaddr";
    let mut halves = v.splitn(2, |&b| b == b':');
    let ip = halves.next().unwrap_or_default();
    let port = halves.next();
    let ip = parse_ipv4(ip, FIELD)?;
    let port = match port {
        Some(p) => Some(parse_decimal(p, u64::from(u16::MAX), FIELD)? as u16),
        None => None,
    };
    Ok(GameAddr { ip, port })
}

impl<'a> Filter<'a> {
    /// Parses a raw filter (the bytes between the seed's NUL and the final NUL of a list query).
    pub fn parse(raw: &'a [u8]) -> Result<Self> {
        let info = InfoString::parse(raw).map_err(|e| Error {
            field: "filter",
            ..e
        })?;
        let mut nodes: ArrayVec<Node<'a>, MAX_FILTER_NODES> = ArrayVec::new();
        for (key, value) in info {
            let node = match key {
                b"nor" | b"nand" => Node::Group {
                    kind: if key == b"nor" {
                        GroupKind::Nor
                    } else {
                        GroupKind::Nand
                    },
                    requested: parse_decimal(value, u64::from(u8::MAX), "filter.group")? as u8,
                    children: 0,
                },
                _ => Node::Cond(Condition::parse(key, value)?),
            };
            nodes
                .try_push(node)
                .map_err(|_| Error::new(ErrorKind::TooLong, "filter", 0))?;
        }
        // Resolve each group's child count, clamping N to what follows. Working backwards, the
        // subtree length of every later node is already known.
        // Indices stay below MAX_FILTER_NODES, so the saturating steps never saturate.
        let mut span = [1u8; MAX_FILTER_NODES];
        let len = nodes.len();
        for (i, node) in nodes.iter_mut().enumerate().rev() {
            if let Node::Group {
                requested,
                children,
                ..
            } = node
            {
                let mut next = i.saturating_add(1);
                let mut n = 0u8;
                while n < *requested && next < len {
                    let step = span.get(next).copied().unwrap_or(1);
                    next = next.saturating_add(usize::from(step));
                    n = n.saturating_add(1);
                }
                *children = n;
                if let Some(s) = span.get_mut(i) {
                    *s = u8::try_from(next.saturating_sub(i)).unwrap_or(u8::MAX);
                }
            }
        }
        Ok(Self { nodes })
    }

    /// The nodes in prefix order.
    pub fn nodes(&self) -> &[Node<'a>] {
        &self.nodes
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every condition, at any depth, in order.
    pub fn conditions(&self) -> impl Iterator<Item = &Condition<'a>> {
        self.nodes.iter().filter_map(|n| match n {
            Node::Cond(c) => Some(c),
            Node::Group { .. } => None,
        })
    }

    /// The conditions every listed server must satisfy: those at the top level, outside any
    /// `nor` / `nand` group, neutral ones left out (a list can answer from an index of one).
    pub fn required(&self) -> impl Iterator<Item = &Condition<'a>> {
        let mut i = 0;
        std::iter::from_fn(move || {
            while let Some(node) = self.nodes.get(i) {
                i = self.after(i);
                if let Node::Cond(c) = node
                    && !c.is_neutral()
                {
                    return Some(c);
                }
            }
            None
        })
    }

    /// Every top-level condition (outside any `nor` / `nand` group), neutral ones included: the
    /// keys that say what kind of client asks (Xash3D's `\\key\\`, `\\clver\\`).
    pub fn top_level(&self) -> impl Iterator<Item = &Condition<'a>> {
        let mut i = 0;
        std::iter::from_fn(move || {
            while let Some(node) = self.nodes.get(i) {
                i = self.after(i);
                if let Node::Cond(c) = node {
                    return Some(c);
                }
            }
            None
        })
    }

    /// The index after the subtree at `i`.
    fn after(&self, i: usize) -> usize {
        match self.nodes.get(i) {
            Some(&Node::Group { children, .. }) => {
                let mut next = i.saturating_add(1);
                for _ in 0..children {
                    next = self.after(next);
                }
                next
            }
            _ => i.saturating_add(1),
        }
    }

    /// Whether the result is to hold one server per IP.
    pub fn collapse_addr_hash(&self) -> bool {
        self.conditions()
            .any(|c| matches!(c, Condition::CollapseAddrHash(true)))
    }

    /// Evaluates the tree for one server. `test` answers a single condition: `Some(bool)`, or `None`
    /// when the condition is neutral for this server. The top level passes when no decided condition
    /// fails; a `nor` group when none of its decided children match; a `nand` group unless all of them
    /// match and at least one was decided.
    pub fn eval(&self, mut test: impl FnMut(&Condition<'a>) -> Option<bool>) -> bool {
        let mut i = 0;
        while i < self.nodes.len() {
            let (result, next) = self.eval_node(i, &mut test);
            if result == Some(false) {
                return false;
            }
            i = next;
        }
        true
    }

    /// Evaluates the subtree at `i`; returns its result and the index after it.
    fn eval_node(
        &self,
        i: usize,
        test: &mut impl FnMut(&Condition<'a>) -> Option<bool>,
    ) -> (Option<bool>, usize) {
        match self.nodes.get(i) {
            None => (None, i.saturating_add(1)),
            Some(Node::Cond(c)) => (
                if c.is_neutral() { None } else { test(c) },
                i.saturating_add(1),
            ),
            Some(&Node::Group { kind, children, .. }) => {
                let (mut any, mut all, mut decided) = (false, true, false);
                let mut next = i.saturating_add(1);
                for _ in 0..children {
                    let (r, after) = self.eval_node(next, test);
                    next = after;
                    if let Some(m) = r {
                        decided = true;
                        any |= m;
                        all &= m;
                    }
                }
                let result = match kind {
                    GroupKind::Nor => !any,
                    GroupKind::Nand => !(decided && all),
                };
                (decided.then_some(result), next)
            }
        }
    }
}

/// Longest pattern or text [`wildcard_match`] compares (infostring values and patterns are at most
/// 255 bytes; longer inputs are compared on their first bytes only).
pub const MAX_WILDCARD_LEN: usize = 256;

/// ASCII-lowercases at most [`MAX_WILDCARD_LEN`] bytes of `s` into `buf`.
fn lower<'b>(s: &[u8], buf: &'b mut [u8; MAX_WILDCARD_LEN]) -> &'b [u8] {
    let n = s.len().min(MAX_WILDCARD_LEN);
    for (d, c) in buf.iter_mut().zip(s) {
        *d = c.to_ascii_lowercase();
    }
    buf.get(..n).unwrap_or_default()
}

/// Matches `text` against a pattern where `*` stands for any run of bytes, ASCII case-insensitively,
/// in time linear in both: the pattern splits at `*` into literal pieces; the first must begin the
/// text, the last must end it, and each one between is found (by a linear substring search) at
/// its earliest place after the previous one — the earliest place is never worse, since it leaves
/// the most text for the pieces after it.
pub fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut pb, mut tb) = ([0u8; MAX_WILDCARD_LEN], [0u8; MAX_WILDCARD_LEN]);
    let (pattern, text) = (lower(pattern, &mut pb), lower(text, &mut tb));
    let mut pieces = pattern.split(|&b| b == b'*');
    let first = pieces.next().unwrap_or_default();
    let Some(last) = pieces.next_back() else {
        return pattern == text; // no `*`: the whole text
    };
    let Some(rest) = text.strip_prefix(first) else {
        return false;
    };
    let Some(mut middle) = rest
        .len()
        .checked_sub(last.len())
        .and_then(|end| rest.split_at_checked(end))
        .filter(|(_, tail)| *tail == last)
        .map(|(m, _)| m)
    else {
        return false;
    };
    for piece in pieces.filter(|p| !p.is_empty()) {
        match memchr::memmem::find(middle, piece) {
            Some(at) => {
                middle = middle
                    .get(at.saturating_add(piece.len())..)
                    .unwrap_or_default();
            }
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn python_valve_filter() {
        // The filter python-valve sends (shared/docs/protocols.md §1).
        let f = Filter::parse(
            b"\\empty\\1\\gamedir\\tf\\gametype\\alltalk,cp\\map\\ctf_2fort\\secure\\1\\type\\d",
        )
        .unwrap();
        let conds: Vec<_> = f.conditions().copied().collect();
        assert_eq!(
            conds,
            [
                Condition::NotEmpty(true),
                Condition::GameDir(b"tf"),
                Condition::GameType(Tags(b"alltalk,cp")),
                Condition::Map(b"ctf_2fort"),
                Condition::Secure(true),
                Condition::Type(b'd'),
            ]
        );
        let Condition::GameType(tags) = conds[2] else {
            unreachable!()
        };
        assert_eq!(tags.iter().collect::<Vec<_>>(), [&b"alltalk"[..], b"cp"]);
    }

    #[test]
    fn every_documented_key() {
        let cases: &[(&[u8], Condition<'_>)] = &[
            (b"\\dedicated\\1", Condition::Dedicated(true)),
            (b"\\secure\\1", Condition::Secure(true)),
            (b"\\linux\\1", Condition::Linux(true)),
            (b"\\password\\0", Condition::Password(false)),
            (b"\\empty\\1", Condition::NotEmpty(true)),
            (b"\\full\\1", Condition::NotFull(true)),
            (b"\\proxy\\1", Condition::Proxy(true)),
            (b"\\noplayers\\1", Condition::NoPlayers(true)),
            (b"\\white\\1", Condition::White(true)),
            (
                b"\\collapse_addr_hash\\1",
                Condition::CollapseAddrHash(true),
            ),
            (b"\\gamedir\\cstrike", Condition::GameDir(b"cstrike")),
            (b"\\map\\de_dust2", Condition::Map(b"de_dust2")),
            (b"\\appid\\440", Condition::AppId(440)),
            (b"\\napp\\500", Condition::NotAppId(500)),
            (b"\\gametype\\cp", Condition::GameType(Tags(b"cp"))),
            (b"\\gamedata\\a,b", Condition::GameData(Tags(b"a,b"))),
            (b"\\gamedataor\\a,b", Condition::GameDataOr(Tags(b"a,b"))),
            (b"\\name_match\\*dust*", Condition::NameMatch(b"*dust*")),
            (b"\\version_match\\1.0.*", Condition::VersionMatch(b"1.0.*")),
            (
                b"\\gameaddr\\1.2.3.4",
                Condition::GameAddr(GameAddr {
                    ip: Ipv4Addr::new(1, 2, 3, 4),
                    port: None,
                }),
            ),
            (
                b"\\gameaddr\\1.2.3.4:27015",
                Condition::GameAddr(GameAddr {
                    ip: Ipv4Addr::new(1, 2, 3, 4),
                    port: Some(27015),
                }),
            ),
            (b"\\type\\d", Condition::Type(b'd')),
            (
                b"\\region\\3",
                Condition::Unknown {
                    key: b"region",
                    value: b"3",
                },
            ),
        ];
        for (raw, want) in cases {
            let f = Filter::parse(raw).unwrap();
            assert_eq!(
                f.nodes(),
                &[Node::Cond(*want)],
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        for bad in [
            &b"\\appid\\x"[..],
            b"\\napp\\-1",
            b"\\gameaddr\\1.2.3",
            b"\\gameaddr\\1.2.3.4:x",
            b"\\type\\dl",
            b"\\nor\\x",
            b"\\nor\\256",
            b"gamedir\\tf",
        ] {
            assert!(
                Filter::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(Filter::parse(b"").unwrap().is_empty());
        assert!(
            Filter::parse(b"\\collapse_addr_hash\\1")
                .unwrap()
                .collapse_addr_hash()
        );
    }

    #[test]
    fn groups_scope_the_next_n_and_nest() {
        let f =
            Filter::parse(b"\\gamedir\\tf\\nor\\2\\map\\a\\nand\\2\\empty\\1\\full\\1\\secure\\1")
                .unwrap();
        let kinds: Vec<_> = f
            .nodes()
            .iter()
            .map(|n| match n {
                Node::Group { kind, children, .. } => format!("{kind:?}{children}"),
                Node::Cond(_) => "c".into(),
            })
            .collect();
        assert_eq!(kinds, ["c", "Nor2", "c", "Nand2", "c", "c", "c"]);
        // N beyond the end is clamped.
        let f = Filter::parse(b"\\nor\\5\\map\\a").unwrap();
        assert_eq!(
            f.nodes()[0],
            Node::Group {
                kind: GroupKind::Nor,
                requested: 5,
                children: 1
            }
        );
    }

    /// A toy server for evaluation tests: conditions on map and emptiness only.
    fn eval(filter: &[u8], map: &[u8], empty: bool) -> bool {
        Filter::parse(filter).unwrap().eval(|c| match *c {
            Condition::Map(m) => Some(m.eq_ignore_ascii_case(map)),
            Condition::NotEmpty(true) => Some(!empty),
            Condition::NotEmpty(false) => None,
            _ => None,
        })
    }

    #[test]
    fn evaluation_of_and_nor_nand() {
        assert!(eval(b"", b"x", true));
        assert!(eval(b"\\map\\A", b"a", true));
        assert!(!eval(b"\\map\\a\\empty\\1", b"a", true));
        // nor: exclude servers on a OR b.
        assert!(!eval(b"\\nor\\2\\map\\a\\map\\b", b"b", false));
        assert!(eval(b"\\nor\\2\\map\\a\\map\\b", b"c", false));
        // nand: exclude servers on a AND non-empty.
        assert!(!eval(b"\\nand\\2\\map\\a\\empty\\1", b"a", false));
        assert!(eval(b"\\nand\\2\\map\\a\\empty\\1", b"a", true));
        // Neutral keys count toward N but never decide.
        assert!(eval(b"\\nor\\2\\region\\1\\map\\a", b"b", false));
        assert!(!eval(b"\\nor\\2\\region\\1\\map\\a", b"a", false));
        // `\map\b` lies outside the one-key group: an ordinary top-level condition.
        assert!(eval(b"\\nand\\1\\region\\1\\map\\b", b"b", false));
        assert!(!eval(b"\\nand\\1\\region\\1\\map\\b", b"c", false));
        assert!(
            eval(b"\\nand\\1\\region\\1", b"a", false),
            "an undecided nand excludes nothing"
        );
        // Nested: exclude (map a AND NOT (empty)).
        assert!(eval(b"\\nand\\2\\map\\a\\nor\\1\\empty\\1", b"a", false));
        assert!(!eval(b"\\nand\\2\\map\\a\\nor\\1\\empty\\1", b"a", true));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"*dust*", b"de_DUST2 24/7"));
        assert!(wildcard_match(b"de_*", b"de_nuke"));
        assert!(!wildcard_match(b"de_*", b"cs_office"));
        assert!(wildcard_match(b"*", b""));
        assert!(wildcard_match(b"a*b*c", b"axxbyyc"));
        assert!(!wildcard_match(b"a*b*c", b"axxbyy"));
        assert!(wildcard_match(b"1.0.*", b"1.0.2.7"));
        assert!(!wildcard_match(b"", b"x"));
        assert!(wildcard_match(b"exact", b"EXACT"));
        assert!(
            !wildcard_match(b"ab*ba", b"aba"),
            "the first and last pieces may not overlap"
        );
        assert!(!wildcard_match(b"*a*a*a*a*b", &[b'a'; 200][..]));
        assert!(wildcard_match(b"**", b"x"));
    }

    #[test]
    fn required_conditions_are_the_top_level_ones() {
        let f = Filter::parse(b"\\gamedir\\tf\\nor\\2\\map\\a\\appid\\4\\secure\\0\\appid\\440")
            .unwrap();
        let req: Vec<_> = f.required().collect();
        assert_eq!(
            req,
            [
                &Condition::GameDir(b"tf"),
                &Condition::Secure(false),
                &Condition::AppId(440)
            ]
        );
        let nested = Filter::parse(b"\\nand\\1\\nor\\1\\gamedir\\x\\map\\m").unwrap();
        assert_eq!(
            nested.required().collect::<Vec<_>>(),
            [&Condition::Map(b"m")]
        );
    }

    #[test]
    fn the_backtracking_worst_case_matches_correctly() {
        // The classic quadratic case for backtracking matchers (a 255-byte pattern of `*a` pieces
        // and a text of `a`s, then a final mismatch): here each piece is searched once, left to
        // right, with a linear substring search.
        let pattern: Vec<u8> = std::iter::repeat_n(&b"*a"[..], 127)
            .flatten()
            .copied()
            .collect();
        let text = [b'a'; 255];
        assert!(wildcard_match(&pattern, &text));
        let mut miss = pattern.clone();
        miss.push(b'b');
        assert!(!wildcard_match(&miss, &text));
    }

    fn reference_match(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| reference_match(rest, &t[i..])),
            Some((c, rest)) => {
                t.first().is_some_and(|x| x.eq_ignore_ascii_case(c))
                    && reference_match(rest, &t[1..])
            }
        }
    }

    proptest! {
        #[test]
        fn wildcard_agrees_with_reference(p in "[ab*]{0,10}", t in "[abAB]{0,14}") {
            prop_assert_eq!(wildcard_match(p.as_bytes(), t.as_bytes()), reference_match(p.as_bytes(), t.as_bytes()));
        }

        #[test]
        fn groups_never_overrun(raw in proptest::collection::vec(prop_oneof![
            Just(&b"\\nor\\"[..]), Just(&b"\\nand\\"[..]), Just(&b"\\map\\"[..]), Just(&b"\\x\\"[..]), Just(&b"1"[..]), Just(&b"3"[..])], 0..60)) {
            let raw: Vec<u8> = raw.concat();
            if let Ok(f) = Filter::parse(&raw) {
                let _ = f.eval(|_| Some(true));
                prop_assert!(f.nodes().len() <= MAX_FILTER_NODES);
            }
        }
    }
}
