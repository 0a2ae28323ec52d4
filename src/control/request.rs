//! Reading a request, sans-IO: what both listeners refuse before routing (bodies, methods, long
//! targets), query parameters, `Accept-Encoding` and `If-None-Match`. Every function takes bytes
//! off the network and never panics (fuzzed: `fuzz/fuzz_targets/http_request.rs`).

use super::limits::MAX_TARGET_BYTES;

/// Why a request is answered before routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `413`: the request announces a body (none is ever read).
    Body,
    /// `405`: only GET and HEAD.
    Method,
    /// `414`: the path and query are longer than [`MAX_TARGET_BYTES`].
    TargetTooLong,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::Body => 413,
            Refusal::Method => 405,
            Refusal::TargetTooLong => 414,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Body => "request bodies are not accepted\n",
            Refusal::Method => "GET or HEAD only\n",
            Refusal::TargetTooLong => "request target too long\n",
        }
    }
}

/// The parts of a request head the checks read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Head<'a> {
    pub method: &'a [u8],
    /// Path and query, as sent.
    pub target: &'a [u8],
    /// `Content-Length` values (every one, as sent).
    pub content_length: &'a [&'a [u8]],
    /// Whether `Transfer-Encoding` was sent at all.
    pub transfer_encoding: bool,
}

/// `Ok(head_only)` if the request may be routed (`true` for HEAD), or why not. A body is
/// checked first: such a connection is closed, whatever else is wrong with the request.
pub fn check(h: &Head<'_>) -> Result<bool, Refusal> {
    let announces_body = h.transfer_encoding
        || h.content_length
            .iter()
            .any(|v| v.iter().any(|b| !matches!(b, b'0' | b' ' | b'\t')) || v.is_empty());
    if announces_body {
        return Err(Refusal::Body);
    }
    let head_only = match h.method {
        b"GET" => false,
        b"HEAD" => true,
        _ => return Err(Refusal::Method),
    };
    if h.target.len() > MAX_TARGET_BYTES {
        return Err(Refusal::TargetTooLong);
    }
    Ok(head_only)
}

/// Path and query of a target (`/a?b` → (`/a`, `b`)).
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

/// The value of `key` in a query string (`a=1&b=2`), percent-decoded; the first one wins.
pub fn param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` and `+` (as a space); a bad escape is kept as it is; invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(s.as_bytes())).into_owned()
}

pub fn percent_decode_bytes(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// A boolean query flag: `1`, `true`, `yes`, `on` (or present with no value) is set.
pub fn flag(query: &str, key: &str) -> bool {
    matches!(
        param(query, key).as_deref(),
        Some("" | "1" | "true" | "yes" | "on")
    )
}

/// Whether an `Accept-Encoding` value accepts gzip (`gzip` or `*`, with a non-zero `q`).
pub fn accepts_gzip(value: &[u8]) -> bool {
    let Ok(v) = std::str::from_utf8(value) else {
        return false;
    };
    let mut gzip = None;
    let mut star = None;
    for item in v.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
            })
            .next()
            .map_or(1.0, |q| q.parse::<f32>().unwrap_or(0.0));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q > 0.0);
        } else if coding == "*" {
            star = Some(q > 0.0);
        }
    }
    gzip.or(star).unwrap_or(false)
}

/// Whether an `If-None-Match` value matches any of `etags` (weak comparison, as RFC 9110 §13.1.2
/// asks of it: `W/` prefixes are ignored; `*` matches anything).
pub fn none_match(value: &[u8], etags: &[&str]) -> bool {
    let Ok(v) = std::str::from_utf8(value) else {
        return false;
    };
    v.split(',').any(|t| {
        let t = t.trim();
        if t == "*" {
            return true;
        }
        let t = t.strip_prefix("W/").unwrap_or(t);
        etags.iter().any(|e| e.strip_prefix("W/").unwrap_or(e) == t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head<'a>(method: &'a [u8], target: &'a [u8], cl: &'a [&'a [u8]], te: bool) -> Head<'a> {
        Head {
            method,
            target,
            content_length: cl,
            transfer_encoding: te,
        }
    }

    #[test]
    fn bodies_methods_and_long_targets_are_refused() {
        assert_eq!(check(&head(b"GET", b"/", &[], false)), Ok(false));
        assert_eq!(check(&head(b"HEAD", b"/", &[b"0"], false)), Ok(true));
        // The request that used to panic the control thread, and the one that froze it.
        assert_eq!(
            check(&head(
                b"GET",
                b"/healthz",
                &[b"18446744073709551615"],
                false
            )),
            Err(Refusal::Body)
        );
        assert_eq!(
            check(&head(b"GET", b"/healthz", &[b"2000"], false)),
            Err(Refusal::Body)
        );
        assert_eq!(check(&head(b"GET", b"/", &[], true)), Err(Refusal::Body));
        assert_eq!(
            check(&head(b"POST", b"/", &[b"0"], false)),
            Err(Refusal::Method)
        );
        assert_eq!(
            check(&head(b"POST", b"/", &[b"5"], false)),
            Err(Refusal::Body),
            "a body closes the connection whatever the method"
        );
        let long = vec![b'a'; MAX_TARGET_BYTES + 1];
        assert_eq!(
            check(&head(b"GET", &long, &[], false)),
            Err(Refusal::TargetTooLong)
        );
        assert_eq!(Refusal::Body.status(), 413);
    }

    #[test]
    fn query_parameters() {
        assert_eq!(param("game=cstrike&page=2", "page").as_deref(), Some("2"));
        assert_eq!(
            param("game=Team%20Fortress+2", "game").as_deref(),
            Some("Team Fortress 2")
        );
        assert_eq!(
            param("game=a%zz", "game").as_deref(),
            Some("a%zz"),
            "bad escapes kept"
        );
        assert_eq!(param("game=%+1", "game").as_deref(), Some("% 1"));
        assert_eq!(param("game", "game").as_deref(), Some(""));
        assert_eq!(param("", "game"), None);
        assert_eq!(percent_decode("%ff%FE"), "\u{fffd}\u{fffd}");
        assert!(flag("not_empty=1", "not_empty"));
        assert!(flag("not_empty", "not_empty"));
        assert!(!flag("not_empty=0", "not_empty"));
        assert!(!flag("", "not_empty"));
        assert_eq!(split_target("/a/b?c=d?e"), ("/a/b", "c=d?e"));
    }

    #[test]
    fn accept_encoding() {
        assert!(accepts_gzip(b"gzip, deflate, br"));
        assert!(accepts_gzip(b"br;q=1.0, gzip;q=0.8, *;q=0.1"));
        assert!(!accepts_gzip(b"gzip;q=0"));
        assert!(!accepts_gzip(b"identity"));
        assert!(accepts_gzip(b"*"));
        assert!(!accepts_gzip(b"*, gzip;q=0"));
        assert!(!accepts_gzip(b""));
        assert!(!accepts_gzip(b"\xff"));
    }

    #[test]
    fn if_none_match() {
        let e = "\"abc\"";
        assert!(none_match(b"\"abc\"", &[e]));
        assert!(none_match(b"W/\"abc\"", &[e]));
        assert!(none_match(b"\"x\", \"abc\"", &[e]));
        assert!(none_match(b"*", &[e]));
        assert!(!none_match(b"\"abd\"", &[e]));
        assert!(!none_match(b"abc", &[e]));
        assert!(none_match(b"\"abc-gz\"", &[e, "\"abc-gz\""]));
    }
}
