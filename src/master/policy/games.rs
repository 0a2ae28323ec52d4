//! Quake III-family game properties, as dpmaster 2.2's `games.c` and its `-g` / `--game-properties`
//! option: which heartbeat tags name which game, which protocols an anonymous `getservers
//! <protocol>` means, and whether a game's lists always carry empty and full servers.
//!
//! Built in (dpmaster 2.2 `Game_InitProperties`): `Quake3Arena` (tag `QuakeArena-1`, protocols
//! 66–68), `wolfmp` (`Wolfenstein-1`; 50, 59, 60), `et` (`EnemyTerritory-1`; 72, 80, 83, 84; sends
//! empty and full servers unasked); the tag `DarkPlaces` lets the server name its game. An operator
//! adds or extends games in the config (`[[game]]`), e.g. `heartbeat = ["Warsow"]` for Warsow's own
//! tag. Tags not listed (flatlines such as `ETFlatline-1`, anything unknown) get no challenge.

/// Most heartbeat tags in all (each DP challenge verification tries every tag's MAC: bounded work).
pub const MAX_TAGS: usize = 16;
/// The game an anonymous query means when its protocol is no game's.
pub const DEFAULT_ANONYMOUS_GAME: &[u8] = b"Quake3Arena";

/// One game's properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GameProps {
    pub name: Box<[u8]>,
    /// Protocols an anonymous `getservers <protocol>` means this game for.
    pub protocols: Vec<u32>,
    /// Heartbeat tags that stand for this game (the server need not send `gamename`).
    pub heartbeats: Vec<Box<[u8]>>,
    /// Lists always carry empty servers, asked or not (dpmaster `send-empty-servers`).
    pub send_empty: bool,
    /// Lists always carry full servers, asked or not (dpmaster `send-full-servers`).
    pub send_full: bool,
}

/// Why a set of game properties is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GamesError {
    #[error("more than {MAX_TAGS} heartbeat tags")]
    TooManyTags,
    #[error("heartbeat tag {0:?} is claimed by two games")]
    TagTwice(String),
    #[error("a game needs a name without spaces")]
    BadName,
}

/// A heartbeat tag and the game it implies (`None` for `DarkPlaces`: the server names its game).
type TagEntry = (Box<[u8]>, Option<Box<[u8]>>);

/// Every game's properties and the heartbeat tags, in the order the DP challenge indexes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Games {
    games: Vec<GameProps>,
    /// (tag, the game it implies — `None` for `DarkPlaces`).
    tags: Vec<TagEntry>,
}

impl Default for Games {
    fn default() -> Self {
        Self::with(Vec::new()).unwrap_or_else(|_| Self {
            games: Vec::new(),
            tags: Vec::new(),
        })
    }
}

fn game(name: &[u8], protocols: &[u32], tag: &[u8], send_all: bool) -> GameProps {
    GameProps {
        name: name.into(),
        protocols: protocols.to_vec(),
        heartbeats: vec![tag.into()],
        send_empty: send_all,
        send_full: send_all,
    }
}

impl Games {
    /// The built-in games with `extra` laid over them: a game already known gets the extra
    /// protocols and tags added and its send options replaced; a new one is appended.
    pub fn with(extra: Vec<GameProps>) -> Result<Self, GamesError> {
        let mut games = vec![
            game(b"Quake3Arena", &[66, 67, 68], b"QuakeArena-1", false),
            game(b"wolfmp", &[50, 59, 60], b"Wolfenstein-1", false),
            game(b"et", &[72, 80, 83, 84], b"EnemyTerritory-1", true),
        ];
        for e in extra {
            if e.name.is_empty() || e.name.contains(&b' ') {
                return Err(GamesError::BadName);
            }
            match games.iter_mut().find(|g| g.name == e.name) {
                Some(g) => {
                    g.protocols.extend(e.protocols);
                    g.heartbeats.extend(e.heartbeats);
                    g.send_empty = e.send_empty;
                    g.send_full = e.send_full;
                }
                None => games.push(e),
            }
        }
        let mut tags: Vec<TagEntry> = vec![(b"DarkPlaces"[..].into(), None)];
        for g in &games {
            for t in &g.heartbeats {
                if tags.iter().any(|(known, _)| known == t) {
                    return Err(GamesError::TagTwice(
                        String::from_utf8_lossy(t).into_owned(),
                    ));
                }
                tags.push((t.clone(), Some(g.name.clone())));
            }
        }
        if tags.len() > MAX_TAGS {
            return Err(GamesError::TooManyTags);
        }
        Ok(Self { games, tags })
    }

    /// The index of a heartbeat tag (what the DP challenge encodes), if it is a heartbeat.
    pub fn tag_index(&self, tag: &[u8]) -> Option<u8> {
        self.tags
            .iter()
            .position(|(t, _)| &**t == tag)
            .and_then(|i| u8::try_from(i).ok())
    }

    /// How many tags there are (indexes `0..tags()`).
    pub fn tags(&self) -> u8 {
        u8::try_from(self.tags.len()).unwrap_or(u8::MAX)
    }

    /// The game tag `index` implies (`None` for `DarkPlaces` or an unknown index).
    pub fn tag_game(&self, index: u8) -> Option<&[u8]> {
        self.tags.get(usize::from(index))?.1.as_deref()
    }

    /// The game a DP query asks for: its gamename, or the game whose protocols include the
    /// query's ([`DEFAULT_ANONYMOUS_GAME`] if none: dpmaster 2.2 instead borrows the game of the
    /// first listed server with that protocol, which depends on registration order).
    pub fn query_game<'a>(&'a self, gamename: Option<&'a [u8]>, protocol: u32) -> &'a [u8] {
        match gamename {
            Some(g) => g,
            None => self
                .games
                .iter()
                .find(|g| g.protocols.contains(&protocol))
                .map_or(DEFAULT_ANONYMOUS_GAME, |g| &g.name),
        }
    }

    /// Whether `game`'s lists always carry (empty, full) servers.
    pub fn sends(&self, game: &[u8]) -> (bool, bool) {
        self.games
            .iter()
            .find(|g| &*g.name == game)
            .map_or((false, false), |g| (g.send_empty, g.send_full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_games_are_dpmaster_2_2s() {
        let g = Games::default();
        // dpmaster 2.2 games.c: Quake3Arena 66-68, wolfmp 50,59,60, et 72,80,83,84 (qstat -rwm asks
        // `getservers 60 empty full`, -woetm `getservers 84 empty full`).
        assert_eq!(g.query_game(None, 68), b"Quake3Arena");
        for p in [50, 59, 60] {
            assert_eq!(g.query_game(None, p), b"wolfmp");
        }
        for p in [72, 80, 83, 84] {
            assert_eq!(g.query_game(None, p), b"et");
        }
        assert_eq!(g.query_game(None, 71), DEFAULT_ANONYMOUS_GAME);
        assert_eq!(g.query_game(Some(b"Xonotic"), 84), b"Xonotic");
        assert_eq!(g.sends(b"et"), (true, true));
        assert_eq!(g.sends(b"wolfmp"), (false, false));
        assert_eq!(g.tag_index(b"DarkPlaces"), Some(0));
        assert_eq!(g.tag_game(0), None);
        let q3 = g.tag_index(b"QuakeArena-1").unwrap();
        assert_eq!(g.tag_game(q3), Some(&b"Quake3Arena"[..]));
        for ignored in [&b"ETFlatline-1"[..], b"WolfFlatline-1", b"Warsow"] {
            assert_eq!(g.tag_index(ignored), None);
        }
    }

    #[test]
    fn game_properties_add_tags_protocols_and_options() {
        // dpmaster manual.txt §5, `-g Warsow heartbeat=Warsow`.
        let g = Games::with(vec![
            GameProps {
                name: b"Warsow"[..].into(),
                protocols: vec![22],
                heartbeats: vec![b"Warsow"[..].into()],
                send_empty: true,
                send_full: false,
            },
            GameProps {
                name: b"wolfmp"[..].into(),
                protocols: vec![57],
                send_full: true,
                ..GameProps::default()
            },
        ])
        .unwrap();
        let w = g.tag_index(b"Warsow").unwrap();
        assert_eq!(g.tag_game(w), Some(&b"Warsow"[..]));
        assert_eq!(g.query_game(None, 22), b"Warsow");
        assert_eq!(g.sends(b"Warsow"), (true, false));
        assert_eq!(g.query_game(None, 57), b"wolfmp");
        assert_eq!(g.query_game(None, 60), b"wolfmp", "built-in protocols kept");
        assert_eq!(g.sends(b"wolfmp"), (false, true));
        let twice = GameProps {
            name: b"Other"[..].into(),
            heartbeats: vec![b"QuakeArena-1"[..].into()],
            ..GameProps::default()
        };
        assert!(matches!(
            Games::with(vec![twice]),
            Err(GamesError::TagTwice(_))
        ));
        let many = (0..MAX_TAGS)
            .map(|i| GameProps {
                name: format!("g{i}").into_bytes().into(),
                heartbeats: vec![format!("t{i}").into_bytes().into()],
                ..GameProps::default()
            })
            .collect();
        assert_eq!(Games::with(many), Err(GamesError::TooManyTags));
    }
}
