//! The public listener's read-only lists, built once per list publication ([`Published::build`],
//! off every packet core and off the control thread) and shared by every request:
//!
//! | path | what |
//! |---|---|
//! | `/v1/servers/<gamedir>` | Xash3D FWGS's HTTP server list ([`super::fwgs`]); an unknown gamedir gets an empty list |
//! | `/api/v1/servers?game=&map=&not_empty=&not_full=&cursor=` | JSON, [`PAGE_SERVERS`] servers a page, and the cursor of the next |
//! | `/` | the server browser (`browser.html`, `browser.js`: searches and sorts what the API lists) |
//!
//! The order every page walks is (game, address, family), lowercase game first: each server's JSON
//! object is encoded once into one buffer in that order, so a page of every server or of one game
//! is one slice of it, and its cursor (the key of its last server) stays meaningful across
//! publications — the next page starts after that key in whatever list is current. Pages of
//! every server and of one game, walked from their start, are kept once made (body, ETag, gzip);
//! a filtered page (`map`, `not_empty`, `not_full`) copies the matching objects, examining at most
//! [`MAX_SCAN`] servers (a page cut short still carries the cursor to go on from).

use super::fwgs;
use super::limits::MAX_TARGET_BYTES;
use super::reply::{Cache, Extra, HTML, JS, JSON, Resource, TEXT};
use super::request::{flag, param, percent_decode_bytes};
use crate::master::List;
use crate::master::table::record::{AddrKey, Family, Server, flags};
use bytes::Bytes;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// Servers per page of `/api/v1/servers`.
pub const PAGE_SERVERS: usize = 500;
/// Servers a filtered page examines at most before it ends (with a cursor to go on from).
pub const MAX_SCAN: usize = 65_536;
/// Bytes of a cursor accepted (it holds a game name and an address key, in hex).
pub const MAX_CURSOR_BYTES: usize = MAX_TARGET_BYTES;

/// The server browser page and its script (no external fetches: everything is here).
pub const BROWSER_HTML: &str = include_str!("browser.html");
pub const BROWSER_JS: &str = include_str!("browser.js");
/// The pages may load nothing but themselves and the API.
pub const BROWSER_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One server in the public order.
#[derive(Clone, Copy, Debug)]
struct Item {
    /// Rank of its lowercase game among the publication's games.
    game: u32,
    addr: AddrKey,
    family: u8,
    /// Id of its lowercase map (for `map=`).
    map: u32,
    players: u8,
    max_players: u8,
}

/// Where a page starts: after this key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub game: Vec<u8>,
    pub addr: AddrKey,
    pub family: u8,
}

impl Cursor {
    /// `<game hex>.<address key hex><family hex>`.
    pub fn encode(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(self.game.len() * 2 + 42);
        for b in &self.game {
            let _ = write!(s, "{b:02x}");
        }
        s.push('.');
        for b in self.addr.0.iter().chain(std::iter::once(&self.family)) {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        if s.len() > MAX_CURSOR_BYTES {
            return None;
        }
        let (g, k) = s.split_once('.')?;
        let game = hex(g)?;
        let key = hex(k)?;
        let (addr, family) = key.split_at_checked(19)?;
        let family = match family {
            [f] => *f,
            _ => return None,
        };
        Some(Cursor {
            game,
            addr: AddrKey(addr.try_into().ok()?),
            family,
        })
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            let h = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(h, 16)
                .ok()
                .filter(|_| h.bytes().all(|c| c.is_ascii_hexdigit()))
        })
        .collect()
}

/// A `/api/v1/servers` query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiQuery {
    /// Lowercase.
    pub game: Option<Vec<u8>>,
    /// Lowercase.
    pub map: Option<Vec<u8>>,
    pub not_empty: bool,
    pub not_full: bool,
    pub cursor: Option<Cursor>,
}

impl ApiQuery {
    fn filtered(&self) -> bool {
        self.map.is_some() || self.not_empty || self.not_full
    }
}

/// A public request, routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Browser,
    BrowserScript,
    /// `/v1/servers/<gamedir>`, the gamedir lowercase.
    Fwgs(Vec<u8>),
    Api(ApiQuery),
    /// `/api/v1/servers/<ip:port>`: whether one address is listed, and why not.
    Why(std::net::SocketAddr),
    /// `400`, and why.
    Bad(&'static str),
    NotFound,
}

/// Routes a public request (path and query as sent). Never panics (fuzzed).
pub fn route(path: &str, query: &str) -> Route {
    match path {
        "/" | "/index.html" => Route::Browser,
        "/browser.js" => Route::BrowserScript,
        "/api/v1/servers" => {
            let text = |k| {
                param(query, k)
                    .filter(|v| !v.is_empty())
                    .map(|v| v.to_lowercase().into_bytes())
            };
            let cursor = match param(query, "cursor").filter(|c| !c.is_empty()) {
                None => None,
                Some(c) => match Cursor::decode(&c) {
                    Some(c) => Some(c),
                    None => return Route::Bad("cursor is not one this API handed out\n"),
                },
            };
            Route::Api(ApiQuery {
                game: text("game"),
                map: text("map"),
                not_empty: flag(query, "not_empty"),
                not_full: flag(query, "not_full"),
                cursor,
            })
        }
        _ if path.starts_with("/api/v1/servers/") => {
            match path.strip_prefix("/api/v1/servers/").and_then(why_address) {
                Some(a) => Route::Why(a),
                None => Route::Bad("expected /api/v1/servers/<ip:port> ([v6]:port for IPv6)\n"),
            }
        }
        _ => match path.strip_prefix("/v1/servers/") {
            Some(g) if !g.is_empty() => {
                let g = percent_decode_bytes(g.as_bytes());
                if g.contains(&b'/') || g.is_empty() {
                    Route::NotFound
                } else {
                    Route::Fwgs(g.to_ascii_lowercase())
                }
            }
            _ => Route::NotFound,
        },
    }
}

/// The address of a "why" request's path (`1.2.3.4:27015`, `[2001:db8::1]:27015`, percent-encoded
/// or not).
pub fn why_address(s: &str) -> Option<std::net::SocketAddr> {
    let b = percent_decode_bytes(s.as_bytes());
    std::str::from_utf8(&b).ok()?.parse().ok()
}

/// One publication's lists and the answers made from them.
#[derive(Debug)]
pub struct Published {
    /// The list's publication number.
    pub epoch: u64,
    pub built_unix: u64,
    refresh_secs: u64,
    /// Lowercase game names, sorted; an item's `game` is an index here.
    games: Vec<Box<[u8]>>,
    /// Each game's items.
    game_ranges: Vec<Range<usize>>,
    maps: HashMap<Box<[u8]>, u32>,
    items: Vec<Item>,
    /// Item `i`'s JSON object is `json[offsets[i] + 1 .. offsets[i + 1]]` (each starts with `,`).
    offsets: Vec<usize>,
    json: Bytes,
    fwgs: HashMap<Box<[u8]>, Arc<Resource>>,
    fwgs_empty: Arc<Resource>,
    /// Pages of every server, walked from the start, once made.
    pages_all: Vec<OnceLock<Arc<Resource>>>,
    /// Each game's pages, walked from its start, once made.
    pages_game: Vec<Vec<OnceLock<Arc<Resource>>>>,
}

#[derive(Serialize)]
struct ServerJson<'a> {
    address: String,
    family: &'static str,
    game: Cow<'a, str>,
    name: Cow<'a, str>,
    map: Cow<'a, str>,
    players: u8,
    max_players: u8,
    bots: u8,
    protocol: u32,
    version: Cow<'a, str>,
    password: bool,
    dedicated: bool,
}

fn public_cache(refresh_secs: u64) -> Cache {
    Cache::Public(refresh_secs)
}

const LISTS: Extra = Extra {
    cors: true,
    csp: None,
    allow: false,
};

impl Published {
    /// Builds the lists of `list`. Work O(n log n) in its servers, once per publication.
    pub fn build(list: &List, refresh_secs: u64, built_unix: u64) -> Published {
        let mut game_ids: HashMap<Box<[u8]>, u32> = HashMap::new();
        let mut maps: HashMap<Box<[u8]>, u32> = HashMap::new();
        let mut rows: Vec<(u32, &Server, &crate::master::table::intern::Strings)> =
            Vec::with_capacity(list.len());
        for (s, strings) in list.servers() {
            let g = strings.get(s.game).to_ascii_lowercase().into_boxed_slice();
            let next = game_ids.len() as u32;
            let id = *game_ids.entry(g).or_insert(next);
            rows.push((id, s, strings));
        }
        let mut games: Vec<(Box<[u8]>, u32)> = game_ids.into_iter().collect();
        games.sort_unstable();
        let mut rank = vec![0u32; games.len()];
        for (r, (_, id)) in games.iter().enumerate() {
            if let Some(slot) = rank.get_mut(*id as usize) {
                *slot = r as u32;
            }
        }
        let games: Vec<Box<[u8]>> = games.into_iter().map(|(g, _)| g).collect();
        for row in &mut rows {
            row.0 = rank.get(row.0 as usize).copied().unwrap_or(0);
        }
        rows.sort_unstable_by(|a, b| {
            (a.0, a.1.addr, a.1.family as u8).cmp(&(b.0, b.1.addr, b.1.family as u8))
        });

        let mut json = Vec::with_capacity(rows.len().saturating_mul(160));
        let mut offsets = Vec::with_capacity(rows.len() + 1);
        let mut items = Vec::with_capacity(rows.len());
        let mut game_ranges = vec![0..0; games.len()];
        let mut fwgs_bodies: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut at = 0usize;
        while at < rows.len() {
            let g = rows.get(at).map_or(0, |r| r.0);
            let end = at
                + rows
                    .get(at..)
                    .map_or(0, |r| r.iter().take_while(|x| x.0 == g).count());
            if let Some(r) = game_ranges.get_mut(g as usize) {
                *r = at..end;
            }
            let mut lines = Vec::new();
            let mut listed = 0usize;
            for &(_, s, strings) in rows.get(at..end).unwrap_or_default() {
                let text = |sym| String::from_utf8_lossy(strings.get(sym));
                let map_lc = strings.get(s.map).to_ascii_lowercase().into_boxed_slice();
                let next = maps.len() as u32;
                let map = *maps.entry(map_lc).or_insert(next);
                offsets.push(json.len());
                json.push(b',');
                let obj = ServerJson {
                    address: s.addr.addr().to_string(),
                    family: match s.family {
                        Family::Valve => "valve",
                        Family::DarkPlaces => "dp",
                    },
                    game: text(s.game),
                    name: text(s.hostname),
                    map: text(s.map),
                    players: s.players,
                    max_players: s.max_players,
                    bots: s.bots,
                    protocol: s.protocol,
                    version: text(s.version),
                    password: s.has(flags::PASSWORD),
                    dedicated: s.has(flags::DEDICATED),
                };
                // Serializing plain strings and numbers into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut json, &obj);
                items.push(Item {
                    game: g,
                    addr: s.addr,
                    family: s.family as u8,
                    map,
                    players: s.players,
                    max_players: s.max_players,
                });
                if fwgs::record(&mut lines, s) {
                    listed += 1;
                }
            }
            if listed > 0 {
                let mut body = Vec::with_capacity(lines.len() + 80);
                fwgs::header(&mut body, listed);
                body.extend_from_slice(&lines);
                fwgs_bodies.push((g as usize, body));
            }
            at = end.max(at + 1);
        }
        offsets.push(json.len());
        let fwgs = fwgs_bodies
            .into_iter()
            .filter_map(|(g, body)| {
                let name = games.get(g)?.clone();
                Some((name, Arc::new(Self::list_resource(body, refresh_secs))))
            })
            .collect();
        let mut empty = Vec::new();
        fwgs::header(&mut empty, 0);
        let pages = |n: usize| {
            (0..n.div_ceil(PAGE_SERVERS).max(1))
                .map(|_| OnceLock::new())
                .collect()
        };
        Published {
            epoch: list.epoch,
            built_unix,
            refresh_secs,
            pages_all: pages(items.len()),
            pages_game: game_ranges.iter().map(|r| pages(r.len())).collect(),
            games,
            game_ranges,
            maps,
            items,
            offsets,
            json: Bytes::from(json),
            fwgs,
            fwgs_empty: Arc::new(Self::list_resource(empty, refresh_secs)),
        }
    }

    fn list_resource(body: Vec<u8>, refresh_secs: u64) -> Resource {
        Resource::new(200, TEXT, public_cache(refresh_secs), Bytes::from(body))
            .tagged()
            .with(LISTS)
    }

    /// Servers in the publication.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Heap bytes held (the encoded objects and lists, the order and its index).
    pub fn heap_bytes(&self) -> usize {
        let fwgs: usize = self.fwgs.values().map(|r| r.body.len()).sum();
        self.json
            .len()
            .saturating_add(fwgs)
            .saturating_add(self.items.len() * std::mem::size_of::<Item>())
            .saturating_add(self.offsets.len() * 8)
    }

    /// `/v1/servers/<gamedir>`.
    pub fn fwgs(&self, gamedir: &[u8]) -> Arc<Resource> {
        self.fwgs
            .get(gamedir)
            .cloned()
            .unwrap_or_else(|| self.fwgs_empty.clone())
    }

    fn object(&self, i: usize) -> &[u8] {
        let (Some(&a), Some(&b)) = (self.offsets.get(i), self.offsets.get(i + 1)) else {
            return b"";
        };
        self.json.get(a.saturating_add(1)..b).unwrap_or_default()
    }

    fn cursor_of(&self, i: usize) -> Option<Cursor> {
        let it = self.items.get(i)?;
        Some(Cursor {
            game: self.games.get(it.game as usize)?.to_vec(),
            addr: it.addr,
            family: it.family,
        })
    }

    /// The first item after `c` in the publication's order.
    fn position_after(&self, c: &Cursor) -> usize {
        match self.games.binary_search_by(|g| (**g).cmp(&c.game[..])) {
            Ok(g) => {
                let r = self.game_ranges.get(g).cloned().unwrap_or(0..0);
                let within = self
                    .items
                    .get(r.clone())
                    .unwrap_or_default()
                    .partition_point(|it| (it.addr, it.family) <= (c.addr, c.family));
                r.start + within
            }
            Err(g) => self
                .game_ranges
                .get(g)
                .map_or(self.items.len(), |r| r.start),
        }
    }

    /// `/api/v1/servers`.
    pub fn api(&self, q: &ApiQuery) -> Arc<Resource> {
        let (range, grid) = match &q.game {
            None => (0..self.items.len(), Some(&self.pages_all)),
            Some(g) => match self.games.binary_search_by(|x| (**x).cmp(&g[..])) {
                Ok(i) => (
                    self.game_ranges.get(i).cloned().unwrap_or(0..0),
                    self.pages_game.get(i),
                ),
                Err(_) => (0..0, None),
            },
        };
        let start = q
            .cursor
            .as_ref()
            .map_or(range.start, |c| self.position_after(c))
            .clamp(range.start, range.end);
        let listed = range.len();
        if q.filtered() {
            return Arc::new(self.filtered_page(q, start..range.end, listed));
        }
        let end = start.saturating_add(PAGE_SERVERS).min(range.end);
        let cell = ((start - range.start).is_multiple_of(PAGE_SERVERS))
            .then(|| grid.and_then(|g| g.get((start - range.start) / PAGE_SERVERS)))
            .flatten();
        let make = || {
            let next = (end < range.end)
                .then(|| end.checked_sub(1).and_then(|i| self.cursor_of(i)))
                .flatten();
            let mut body = Vec::with_capacity(
                self.offsets
                    .get(end)
                    .zip(self.offsets.get(start))
                    .map_or(0, |(b, a)| b.saturating_sub(*a))
                    + 200,
            );
            body.extend_from_slice(b"{\"servers\":[");
            let a = self.offsets.get(start).copied().unwrap_or(0);
            let b = self.offsets.get(end).copied().unwrap_or(a);
            // The objects of a contiguous range, less the first one's leading comma.
            if b > a {
                body.extend_from_slice(self.json.get(a + 1..b).unwrap_or_default());
            }
            self.page_tail(&mut body, end - start, listed, next.as_ref());
            Arc::new(self.page_resource(body))
        };
        match cell {
            Some(c) => c.get_or_init(make).clone(),
            None => make(),
        }
    }

    fn filtered_page(&self, q: &ApiQuery, range: Range<usize>, listed: usize) -> Resource {
        let map = match &q.map {
            Some(m) => match self.maps.get(&m[..]) {
                Some(id) => Some(*id),
                // No server has that map: an empty page, nothing more to walk.
                None => {
                    let mut body = b"{\"servers\":[".to_vec();
                    self.page_tail(&mut body, 0, listed, None);
                    return self.page_resource(body);
                }
            },
            None => None,
        };
        let mut body = b"{\"servers\":[".to_vec();
        let (mut count, mut examined, mut i) = (0usize, 0usize, range.start);
        while i < range.end && count < PAGE_SERVERS && examined < MAX_SCAN {
            if let Some(it) = self.items.get(i) {
                let wanted = map.is_none_or(|m| it.map == m)
                    && (!q.not_empty || it.players > 0)
                    && (!q.not_full || it.max_players == 0 || it.players < it.max_players);
                if wanted {
                    if count > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(self.object(i));
                    count += 1;
                }
            }
            examined += 1;
            i += 1;
        }
        let next = (i < range.end)
            .then(|| i.checked_sub(1).and_then(|l| self.cursor_of(l)))
            .flatten();
        self.page_tail(&mut body, count, listed, next.as_ref());
        self.page_resource(body)
    }

    fn page_tail(&self, body: &mut Vec<u8>, count: usize, listed: usize, next: Option<&Cursor>) {
        let next = next.map_or_else(|| "null".to_owned(), |c| format!("\"{}\"", c.encode()));
        let _ = write!(
            body,
            "],\"count\":{count},\"listed\":{listed},\"next\":{next},\"refresh_secs\":{},\"built_unix\":{}}}",
            self.refresh_secs, self.built_unix
        );
    }

    fn page_resource(&self, body: Vec<u8>) -> Resource {
        Resource::new(
            200,
            JSON,
            public_cache(self.refresh_secs),
            Bytes::from(body),
        )
        .tagged()
        .with(LISTS)
    }
}

/// The pages, made once.
#[derive(Debug)]
pub struct Static {
    pub browser: Arc<Resource>,
    pub script: Arc<Resource>,
}

impl Static {
    pub fn new(refresh_secs: u64) -> Static {
        let page = Extra {
            cors: false,
            csp: Some(BROWSER_CSP),
            allow: false,
        };
        let make = |ct, body: &'static str| {
            Arc::new(
                Resource::new(
                    200,
                    ct,
                    Cache::Public(refresh_secs),
                    Bytes::from_static(body.as_bytes()),
                )
                .tagged()
                .with(page),
            )
        };
        Static {
            browser: make(HTML, BROWSER_HTML),
            script: make(JS, BROWSER_JS),
        }
    }
}

/// Answers a routed request from the current publication (`None`: none yet).
pub fn answer(route: &Route, published: Option<&Published>, pages: &Static) -> Arc<Resource> {
    let lists = |f: &dyn Fn(&Published) -> Arc<Resource>| match published {
        Some(p) => f(p),
        None => Arc::new(Resource::text(
            503,
            "the list is not published yet; try again in a second\n",
        )),
    };
    match route {
        Route::Browser => pages.browser.clone(),
        Route::BrowserScript => pages.script.clone(),
        Route::Fwgs(g) => lists(&|p| p.fwgs(g)),
        Route::Api(q) => lists(&|p| p.api(q)),
        Route::Bad(why) => Arc::new(Resource::text(400, *why)),
        // Answered by the listener from the operator's view (`lists::PublicApp`).
        Route::Why(_) => Arc::new(Resource::text(404, "not found\n")),
        Route::NotFound => Arc::new(Resource::text(404, "not found\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::Limits;
    use crate::master::ListBuilder;
    use crate::master::Time;
    use crate::master::{Fields, Table};
    use std::collections::HashSet;
    use std::net::SocketAddr;

    fn limits() -> Limits {
        Limits {
            allow_private: true,
            max_servers_per_ip: 1000,
            max_servers_per_net: u16::MAX,
            ..Limits::default()
        }
    }

    struct S {
        addr: &'static str,
        family: Family,
        game: &'static [u8],
        map: &'static [u8],
        players: u8,
        protocol: u32,
        flags: u16,
    }

    fn s(addr: &'static str, game: &'static [u8], protocol: u32) -> S {
        S {
            addr,
            family: Family::Valve,
            game,
            map: b"crossfire",
            players: 1,
            protocol,
            flags: 0,
        }
    }

    fn list(servers: &[S], tables: usize) -> Arc<List> {
        let mut ts: Vec<Table> = (0..tables)
            .map(|_| Table::new(Time::ZERO, limits()))
            .collect();
        for (i, x) in servers.iter().enumerate() {
            let f = Fields {
                game: x.game,
                map: x.map,
                players: x.players,
                max_players: 8,
                protocol: x.protocol,
                flags: x.flags,
                hostname: b"a \"quoted\" <name>\n",
                ..Default::default()
            };
            ts[i % tables]
                .upsert(Time::from_secs(1), x.addr.parse().unwrap(), x.family, &f)
                .unwrap();
        }
        let mut b = ListBuilder::new(tables, 1400);
        for (i, t) in ts.iter_mut().enumerate() {
            b.apply(i, t.snapshot());
        }
        b.build().unwrap()
    }

    fn body(r: &Resource) -> String {
        String::from_utf8(r.body.to_vec()).unwrap()
    }

    fn page(p: &Published, q: &str) -> serde_json::Value {
        let Route::Api(q) = route("/api/v1/servers", q) else {
            panic!("not an API route: {q}")
        };
        let r = p.api(&q);
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Every address `q` lists, following the cursors.
    fn walk(p: &Published, q: &str) -> (Vec<String>, usize) {
        walk_from(p, q, "")
    }

    fn walk_from(p: &Published, q: &str, from: &str) -> (Vec<String>, usize) {
        let mut out = Vec::new();
        let mut pages = 0;
        let mut cursor = from.to_owned();
        loop {
            let j = page(p, &format!("{q}&cursor={cursor}"));
            pages += 1;
            for x in j["servers"].as_array().unwrap() {
                out.push(x["address"].as_str().unwrap().to_owned());
            }
            match j["next"].as_str() {
                Some(c) => cursor = c.to_owned(),
                None => return (out, pages),
            }
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route("/", ""), Route::Browser);
        assert_eq!(route("/browser.js", ""), Route::BrowserScript);
        assert_eq!(
            route("/v1/servers/Valve", ""),
            Route::Fwgs(b"valve".to_vec())
        );
        assert_eq!(route("/v1/servers/a%2Fb", ""), Route::NotFound);
        assert_eq!(route("/v1/servers/", ""), Route::NotFound);
        assert_eq!(route("/v1/servers", ""), Route::NotFound);
        assert_eq!(
            route("/metrics", ""),
            Route::NotFound,
            "operator paths are not public"
        );
        assert_eq!(route("/healthz", ""), Route::NotFound);
        assert_eq!(
            route(
                "/api/v1/servers",
                "game=CStrike&map=De_Dust2&not_empty=1&not_full"
            ),
            Route::Api(ApiQuery {
                game: Some(b"cstrike".to_vec()),
                map: Some(b"de_dust2".to_vec()),
                not_empty: true,
                not_full: true,
                cursor: None,
            })
        );
        assert!(matches!(
            route("/api/v1/servers", "cursor=zz"),
            Route::Bad(_)
        ));
        let c = Cursor {
            game: b"valve".to_vec(),
            addr: AddrKey::new("[2001:db8::1]:27015".parse().unwrap()),
            family: 1,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("."), None);
        assert_eq!(Cursor::decode("7.00"), None);
    }

    #[test]
    fn fwgs_lists_xash_as_ip_and_goldsrc_as_gs_per_gamedir() {
        let mut nat = s("192.0.2.5:27015", b"valve", 49);
        nat.flags = flags::NAT;
        let mut dp = s("192.0.2.6:26000", b"valve", 49);
        dp.family = Family::DarkPlaces;
        let servers = [
            s("192.0.2.1:27015", b"valve", 49),
            s("192.0.2.2:27015", b"Valve", 48),
            s("[2001:db8::7]:27015", b"valve", 49),
            s("192.0.2.3:27015", b"valve", 17),
            s("192.0.2.4:27015", b"cstrike", 48),
            nat,
            dp,
        ];
        let p = Published::build(&list(&servers, 2), 5, 0);
        let valve = body(&p.fwgs(b"valve"));
        let lines: Vec<&str> = valve.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "ip 192.0.2.1:27015",
                "gs 192.0.2.2:27015",
                "ip [2001:db8::7]:27015"
            ]
        );
        assert!(valve.starts_with("# muster "));
        assert_eq!(
            body(&p.fwgs(b"cstrike")).lines().nth(1),
            Some("gs 192.0.2.4:27015")
        );
        let unknown = p.fwgs(b"nothing");
        assert_eq!(unknown.status, 200);
        assert!(body(&unknown).lines().all(|l| l.starts_with('#')));
        assert_eq!(unknown.cache, Cache::Public(5));
        assert!(p.fwgs(b"valve").etag.is_some());
        // Built again from the same servers: the same bytes, the same ETag (clients keep their 304s).
        let again = Published::build(&list(&servers, 1), 5, 0);
        assert_eq!(again.fwgs(b"valve").etag, p.fwgs(b"valve").etag);
    }

    #[test]
    fn pages_walk_every_server_once_by_game_and_filtered() {
        let mut servers = Vec::new();
        let addrs: Vec<&'static str> = (0..1234u32)
            .map(|i| &*Box::leak(format!("198.51.{}.{}:27015", i / 200, i % 200).into_boxed_str()))
            .collect();
        for (i, a) in addrs.iter().enumerate() {
            let mut x = s(a, if i % 3 == 0 { b"cstrike" } else { b"valve" }, 48);
            x.players = (i % 9) as u8;
            x.map = if i % 2 == 0 {
                b"de_dust2"
            } else {
                b"crossfire"
            };
            servers.push(x);
        }
        let p = Published::build(&list(&servers, 2), 5, 0);
        assert_eq!(p.len(), 1234);

        let (all, pages) = walk(&p, "");
        assert_eq!(pages, 1234usize.div_ceil(PAGE_SERVERS));
        assert_eq!(all.len(), 1234);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 1234, "each once");
        let first = page(&p, "");
        assert_eq!(
            (first["count"].as_u64(), first["listed"].as_u64()),
            (Some(500), Some(1234))
        );
        let x = &first["servers"][0];
        assert_eq!(
            x["name"], "a \"quoted\" <name>\n",
            "names survive JSON escaping"
        );
        assert_eq!(x["game"], "cstrike", "cstrike sorts before valve");

        let (cs, _) = walk(&p, "game=CSTRIKE");
        assert_eq!(cs.len(), 1234usize.div_ceil(3));
        let (none, pages) = walk(&p, "game=tfc");
        assert_eq!((none.len(), pages), (0, 1));

        // Filters: as many as match, each once.
        let want = servers
            .iter()
            .filter(|x| x.players > 0 && x.players < 8 && x.map == b"de_dust2")
            .count();
        let (f, _) = walk(&p, "map=DE_DUST2&not_empty=1&not_full=1");
        assert_eq!(f.len(), want);
        assert_eq!(f.iter().collect::<HashSet<_>>().len(), want);
        let (nomap, _) = walk(&p, "map=nowhere");
        assert!(nomap.is_empty());

        // The same first page twice is the same shared answer.
        let q = ApiQuery::default();
        assert!(Arc::ptr_eq(&p.api(&q), &p.api(&q)));
    }

    #[test]
    fn a_cursor_goes_on_in_the_next_publication() {
        let addrs: Vec<&'static str> = (0..1200u32)
            .map(|i| &*Box::leak(format!("203.0.{}.{}:27015", i / 250, i % 250).into_boxed_str()))
            .collect();
        let servers: Vec<S> = addrs.iter().map(|a| s(a, b"valve", 49)).collect();
        let p1 = Published::build(&list(&servers, 1), 5, 0);
        let j = page(&p1, "");
        let next = j["next"].as_str().unwrap().to_owned();
        let seen: Vec<String> = j["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["address"].as_str().unwrap().to_owned())
            .collect();
        // Ten servers of the first page leave; the rest go on from the cursor, none lost or repeated.
        let p2 = Published::build(&list(&servers[10..], 1), 5, 0);
        let (rest, _) = walk_from(&p2, "", &next);
        let mut both: Vec<String> = seen.into_iter().chain(rest).collect();
        both.sort();
        let mut want: Vec<String> = addrs
            .iter()
            .map(|a| a.parse::<SocketAddr>().unwrap().to_string())
            .collect();
        want.sort();
        assert_eq!(both, want);
    }

    #[test]
    fn before_the_first_publication_lists_answer_503_and_pages_200() {
        let pages = Static::new(5);
        assert_eq!(
            answer(&Route::Fwgs(b"valve".to_vec()), None, &pages).status,
            503
        );
        assert_eq!(answer(&Route::Browser, None, &pages).status, 200);
        assert_eq!(answer(&Route::NotFound, None, &pages).status, 404);
        assert_eq!(answer(&Route::Bad("x"), None, &pages).status, 400);
        assert!(pages.browser.extra.csp.is_some());
    }
}
