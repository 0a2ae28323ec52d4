//! What a down alert says, and the JSON body Discord or Slack takes it in. Pure.
//!
//! - one transition: `My server (203.0.113.5:27015) is down after 3h12m up`,
//!   `My server (203.0.113.5:27015) is back after 4m down`;
//! - a digest: `12 servers down, 0 up in the last minute: a (…), b (…), … and 2 more`.
//!
//! Server names come from the network: control characters and Quake colour codes are taken out,
//! they are cut to [`MAX_NAME_CHARS`], and what the chat would read as markup is escaped — a
//! server named `@everyone` or `<!channel>` pings nobody (Discord's `allowed_mentions` is empty
//! too).

use super::watch::Transition;

/// Characters of a server name shown (hostnames run to 64 in practice).
pub const MAX_NAME_CHARS: usize = 64;
/// Servers named in a digest; the rest are counted.
pub const DIGEST_NAMES: usize = 10;
/// Discord refuses a message over 2,000 characters (Slack takes 40,000).
pub const MAX_TEXT_CHARS: usize = 2000;

/// `45s`, `4m`, `3h12m`, `2d5h`: the two largest units, the second left out when zero.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    let two = |a: u64, ua: &str, b: u64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua}{b}{ub}")
        }
    };
    if d > 0 {
        two(d, "d", h, "h")
    } else if h > 0 {
        two(h, "h", m, "m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

/// A name as a person reads it: no control characters, no Quake colour codes (`^1`, DarkPlaces'
/// `^xRGB`), runs of white space as one space, at most [`MAX_NAME_CHARS`].
pub fn clean_name(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars().peekable();
    let mut space = false;
    let mut n = 0;
    while let Some(c) = chars.next() {
        if c == '^' {
            match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    chars.next();
                    continue;
                }
                Some('x') => {
                    let mut hex = chars.clone();
                    hex.next();
                    if (0..3).all(|_| hex.next().is_some_and(|h| h.is_ascii_hexdigit())) {
                        chars = hex;
                        continue;
                    }
                }
                _ => {}
            }
        }
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        if n >= MAX_NAME_CHARS {
            out.push('…');
            break;
        }
        if space {
            out.push(' ');
            space = false;
            n += 1;
        }
        out.push(c);
        n += 1;
    }
    out
}

/// `text` made inert for the chat: Discord's markdown escaped with backslashes; Slack's three
/// control characters as the entities Slack asks for.
fn escape(text: &str, discord: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match (discord, c) {
            (true, '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '<' | '[' | ']' | '(' | ')')
            | (true, '#' | '@' | ':' | '-') => {
                out.push('\\');
                out.push(c);
            }
            (false, '&') => out.push_str("&amp;"),
            (false, '<') => out.push_str("&lt;"),
            (false, '>') => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// `name (address)`, or the address alone for a server with no name.
fn label(t: &Transition, discord: bool) -> String {
    let name = clean_name(&t.name);
    if name.is_empty() {
        t.address.to_string()
    } else {
        format!("{} ({})", escape(&name, discord), t.address)
    }
}

/// One transition.
pub fn transition(t: &Transition, discord: bool) -> String {
    let after = duration(t.after_ms);
    if t.up {
        format!("{} is back after {after} down", label(t, discord))
    } else {
        format!("{} is down after {after} up", label(t, discord))
    }
}

/// Several transitions in one message: how many each way, then the servers, down first.
pub fn digest(ts: &[Transition], discord: bool) -> String {
    let downs = ts.iter().filter(|t| !t.up).count();
    let ups = ts.len() - downs;
    let servers = |n| if n == 1 { "server" } else { "servers" };
    let mut text = format!(
        "{downs} {} down, {ups} up in the last minute: ",
        servers(downs)
    );
    let mixed = downs > 0 && ups > 0;
    let ordered = ts
        .iter()
        .filter(|t| !t.up)
        .chain(ts.iter().filter(|t| t.up));
    let names: Vec<String> = ordered
        .take(DIGEST_NAMES)
        .map(|t| {
            if mixed && t.up {
                format!("{} (back)", label(t, discord))
            } else {
                label(t, discord)
            }
        })
        .collect();
    text.push_str(&names.join(", "));
    if ts.len() > names.len() {
        text.push_str(&format!(", … and {} more", ts.len() - names.len()));
    }
    text
}

/// The POST body: `{"content": …}` with no mentions allowed for Discord, `{"text": …}` for the
/// rest; the text cut to [`MAX_TEXT_CHARS`].
pub fn body(text: &str, discord: bool) -> Vec<u8> {
    let text: String = if text.chars().count() > MAX_TEXT_CHARS {
        text.chars()
            .take(MAX_TEXT_CHARS - 1)
            .chain(std::iter::once('…'))
            .collect()
    } else {
        text.to_owned()
    };
    let v = if discord {
        serde_json::json!({ "content": text, "allowed_mentions": { "parse": [] } })
    } else {
        serde_json::json!({ "text": text })
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, port: u16, up: bool, after_ms: u64) -> Transition {
        Transition {
            hook: 0,
            address: ([203, 0, 113, 5], port).into(),
            name: name.to_owned(),
            game: "cstrike".to_owned(),
            up,
            after_ms,
            at_unix_ms: 0,
        }
    }

    #[test]
    fn durations_read_as_people_write_them() {
        for (ms, s) in [
            (0, "0s"),
            (45_999, "45s"),
            (240_000, "4m"),
            (250_000, "4m"),
            (3_600_000, "1h"),
            ((3 * 3600 + 12 * 60) * 1000, "3h12m"),
            ((2 * 86_400 + 5 * 3600 + 59) * 1000, "2d5h"),
            (86_400_000, "1d"),
        ] {
            assert_eq!(duration(ms), s, "{ms}");
        }
    }

    #[test]
    fn one_transition_names_the_server_its_address_and_how_long() {
        let down = t("My server", 27015, false, (3 * 3600 + 12 * 60) * 1000);
        assert_eq!(
            transition(&down, false),
            "My server (203.0.113.5:27015) is down after 3h12m up"
        );
        assert_eq!(
            transition(&t("", 27015, true, 240_000), false),
            "203.0.113.5:27015 is back after 4m down"
        );
    }

    #[test]
    fn names_are_cleaned_and_made_inert() {
        assert_eq!(clean_name("^1Red^7 ^xF0aServer\n\t x"), "Red Server x");
        assert_eq!(clean_name("  a  "), "a");
        assert_eq!(clean_name("^ caret ^x1"), "^ caret ^x1");
        let long = clean_name(&"n".repeat(300));
        assert_eq!(long.chars().count(), MAX_NAME_CHARS + 1);
        assert!(long.ends_with('…'));
        let slack = transition(&t("<!channel> & co", 1, false, 0), false);
        assert!(slack.starts_with("&lt;!channel&gt; &amp; co ("), "{slack}");
        let discord = transition(&t("@everyone **x**", 1, false, 0), true);
        assert!(discord.starts_with(r"\@everyone \*\*x\*\* ("), "{discord}");
        let b: serde_json::Value = serde_json::from_slice(&body("@everyone", true)).unwrap();
        assert_eq!(b["allowed_mentions"]["parse"], serde_json::json!([]));
        assert_eq!(b["content"], "@everyone");
        let b: serde_json::Value = serde_json::from_slice(&body("hi \"x\"", false)).unwrap();
        assert_eq!(b, serde_json::json!({ "text": "hi \"x\"" }));
        let b: serde_json::Value = serde_json::from_slice(&body(&"x".repeat(5000), true)).unwrap();
        assert_eq!(
            b["content"].as_str().unwrap().chars().count(),
            MAX_TEXT_CHARS
        );
    }

    #[test]
    fn a_digest_counts_each_way_and_names_the_first_servers() {
        let ts: Vec<Transition> = (0..12).map(|i| t(&format!("s{i}"), i, false, 0)).collect();
        let d = digest(&ts, false);
        assert!(
            d.starts_with("12 servers down, 0 up in the last minute: s0 (203.0.113.5:0), s1 ("),
            "{d}"
        );
        assert!(d.ends_with("s9 (203.0.113.5:9), … and 2 more"), "{d}");
        let mixed = [t("a", 1, true, 0), t("b", 2, false, 0)];
        assert_eq!(
            digest(&mixed, false),
            "1 server down, 1 up in the last minute: b (203.0.113.5:2), a (203.0.113.5:1) (back)"
        );
    }
}
