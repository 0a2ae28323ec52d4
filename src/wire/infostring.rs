//! Quake-family infostrings: `\key\value\key\value…`, as carried by GoldSrc/Source heartbeats and
//! Quake III / DarkPlaces `infoResponse`.
//!
//! [`InfoString::parse`] validates the whole string once; afterwards iteration and look-ups are
//! infallible and borrow from the datagram.
//!
//! Rules (documented bounds, chosen to match dpmaster 2.2 where it has one):
//! - The string is empty or starts with `\`; keys and values alternate; a key without a value is an
//!   error. Keys are non-empty. No field holds NUL or `\n` (the message framing strips the one
//!   terminator the protocol allows).
//! - At most [`MAX_INFO_PAIRS`] pairs and keys of at most [`MAX_KEY_LEN`] bytes, or the string is
//!   rejected.
//! - A value longer than [`MAX_VALUE_LEN`] bytes is kept by the iterator (so re-encoding is exact) but
//!   [`InfoString::get`] treats it as absent, as dpmaster ignores such values.
//! - Duplicate keys: the **first** occurrence wins in [`InfoString::get`], as in dpmaster's and the
//!   Quake engines' `Info_ValueForKey`. Keys compare case-sensitively.

use super::error::{Error, ErrorKind, Result};

/// Most `\key\value` pairs accepted in one infostring. Real heartbeats carry ~20 and Quake III
/// `infoResponse`s ~15; dpmaster has no count limit beyond its 2048-byte packet, which cannot hold
/// more than 512 pairs, so 128 leaves room for chatty mods while bounding the work of a look-up.
pub const MAX_INFO_PAIRS: usize = 128;
/// Longest key accepted (dpmaster's key bound).
pub const MAX_KEY_LEN: usize = 255;
/// Longest value [`InfoString::get`] returns; dpmaster ignores longer values.
pub const MAX_VALUE_LEN: usize = 255;

/// A validated, borrowed infostring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfoString<'a> {
    raw: &'a [u8],
    pairs: u8,
}

impl<'a> InfoString<'a> {
    /// Validates `raw` (see the module rules) without copying it.
    pub fn parse(raw: &'a [u8]) -> Result<Self> {
        const FIELD: &str = "infostring";
        let body = match raw.split_first() {
            None => return Ok(Self { raw, pairs: 0 }),
            Some((b'\\', body)) => body,
            Some(_) => return Err(Error::new(ErrorKind::BadInfostring, FIELD, 0)),
        };
        let mut pairs = 0usize;
        let mut at = 1usize;
        let mut is_key = true;
        for field in fields(body) {
            if let Some(bad) = memchr::memchr2(0, b'\n', field) {
                return Err(Error::new(
                    ErrorKind::BadByte,
                    FIELD,
                    at.saturating_add(bad),
                ));
            }
            if is_key {
                if field.is_empty() {
                    return Err(Error::new(ErrorKind::BadInfostring, FIELD, at));
                }
                if field.len() > MAX_KEY_LEN {
                    return Err(Error::new(ErrorKind::TooLong, FIELD, at));
                }
                pairs = pairs.saturating_add(1);
                if pairs > MAX_INFO_PAIRS {
                    return Err(Error::new(ErrorKind::TooLong, FIELD, at));
                }
            }
            is_key = !is_key;
            at = at.saturating_add(field.len()).saturating_add(1);
        }
        if !is_key {
            // The last field was a key: its value is missing.
            return Err(Error::new(ErrorKind::BadInfostring, FIELD, raw.len()));
        }
        Ok(Self {
            raw,
            pairs: pairs as u8,
        })
    }

    /// The bytes as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    pub fn len(&self) -> usize {
        usize::from(self.pairs)
    }

    pub fn is_empty(&self) -> bool {
        self.pairs == 0
    }

    /// Every pair in order, duplicates and over-long values included.
    pub fn iter(&self) -> Pairs<'a> {
        Pairs {
            fields: fields(self.raw.get(1..).unwrap_or(&[])),
            left: self.pairs,
        }
    }

    /// The value of the first pair named `key`, unless it is longer than [`MAX_VALUE_LEN`].
    pub fn get(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .filter(|v| v.len() <= MAX_VALUE_LEN)
    }

    /// The values of several keys in one pass over the pairs: `out[i]` is what
    /// [`get`](Self::get)`(keys[i])` returns (first occurrence, values over [`MAX_VALUE_LEN`]
    /// ignored). A heartbeat's dozen keys cost one scan instead of a dozen.
    pub fn pick<const N: usize>(&self, keys: [&[u8]; N]) -> [Option<&'a [u8]>; N] {
        let mut out = [None; N];
        let mut settled = [false; N];
        let mut left = N;
        for (k, v) in self.iter() {
            let Some(i) = keys.iter().position(|want| *want == k) else {
                continue;
            };
            if let (Some(slot), Some(done)) = (out.get_mut(i), settled.get_mut(i))
                && !*done
            {
                // The first occurrence settles the key; too long a value is ignored, as `get`
                // ignores it.
                *slot = Some(v).filter(|v| v.len() <= MAX_VALUE_LEN);
                *done = true;
                left = left.saturating_sub(1);
                if left == 0 {
                    break;
                }
            }
        }
        out
    }

    /// [`get`](Self::get) as UTF-8-agnostic text for callers that want `&str`; `None` if not UTF-8.
    pub fn get_str(&self, key: &[u8]) -> Option<&'a str> {
        self.get(key).and_then(|v| core::str::from_utf8(v).ok())
    }
}

impl<'a> IntoIterator for InfoString<'a> {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = Pairs<'a>;
    fn into_iter(self) -> Pairs<'a> {
        self.iter()
    }
}

/// The `\`-separated fields of `body`, as `body.split(|&b| b == b'\\')` yields them, found with
/// `memchr` (a heartbeat is parsed and read once per datagram: a byte-at-a-time split was most
/// of its cost).
fn fields(body: &[u8]) -> Fields<'_> {
    Fields { rest: Some(body) }
}

#[derive(Clone, Debug)]
struct Fields<'a> {
    /// What is left to split; `None` once the last field was yielded.
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match memchr::memchr(b'\\', rest) {
            Some(i) => {
                self.rest = rest.get(i.saturating_add(1)..);
                rest.get(..i)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Iterator over the pairs of a validated [`InfoString`].
#[derive(Clone, Debug)]
pub struct Pairs<'a> {
    fields: Fields<'a>,
    left: u8,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left = self.left.saturating_sub(1);
        // Validation guaranteed both fields exist; the fallback is never taken.
        let key = self.fields.next().unwrap_or(&[]);
        let value = self.fields.next().unwrap_or(&[]);
        Some((key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

/// Appends `\key\value`, refusing what [`InfoString::parse`] would reject. Values longer than
/// [`MAX_VALUE_LEN`] are written (peers ignore them), so whatever decodes re-encodes exactly.
pub fn put_pair(out: &mut Vec<u8>, key: &[u8], value: &[u8]) -> Result<()> {
    const FIELD: &str = "infostring";
    let bad = |b: &u8| matches!(b, 0 | b'\n' | b'\\');
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::new(ErrorKind::TooLong, FIELD, out.len()));
    }
    if key.iter().any(bad) || value.iter().any(bad) {
        return Err(Error::new(ErrorKind::BadByte, FIELD, out.len()));
    }
    out.push(b'\\');
    out.extend_from_slice(key);
    out.push(b'\\');
    out.extend_from_slice(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Captured from openarena-server (shared/docs/protocols.md §3), the body after `infoResponse\n`.
    const OA: &[u8] = b"\\voip\\opus\\g_needpass\\0\\pure\\1\\gametype\\0\\sv_maxclients\\8\\g_humanplayers\\0\\clients\\0\\mapname\\oa_dm1\\hostname\\OA-test-1\\protocol\\71\\gamename\\Quake3Arena\\challenge\\|vVK}!Z@zn";

    #[test]
    fn captured_openarena_info() {
        let info = InfoString::parse(OA).unwrap();
        assert_eq!(info.len(), 12);
        assert_eq!(info.get(b"challenge"), Some(&b"|vVK}!Z@zn"[..]));
        assert_eq!(info.get(b"sv_maxclients"), Some(&b"8"[..]));
        assert_eq!(info.get_str(b"gamename"), Some("Quake3Arena"));
        assert_eq!(info.get(b"GAMENAME"), None, "keys are case-sensitive");
        let mut out = Vec::new();
        for (k, v) in info {
            put_pair(&mut out, k, v).unwrap();
        }
        assert_eq!(out, OA);
    }

    #[test]
    fn pick_agrees_with_get_in_one_pass() {
        let long = "x".repeat(300);
        let raw = format!("\\a\\1\\b\\\\c\\{long}\\a\\2\\c\\3\\d\\4");
        let info = InfoString::parse(raw.as_bytes()).unwrap();
        let keys: [&[u8]; 5] = [b"a", b"b", b"c", b"d", b"e"];
        let picked = info.pick(keys);
        for (k, v) in keys.iter().zip(picked) {
            assert_eq!(v, info.get(k), "{}", String::from_utf8_lossy(k));
        }
        assert_eq!(picked[0], Some(&b"1"[..]), "first duplicate wins");
        assert_eq!(
            picked[2], None,
            "an over-long first value settles the key, as in get"
        );
    }

    #[test]
    fn first_duplicate_wins_and_empty_values_are_kept() {
        let info = InfoString::parse(b"\\a\\1\\b\\\\a\\2").unwrap();
        assert_eq!(info.get(b"a"), Some(&b"1"[..]));
        assert_eq!(info.get(b"b"), Some(&b""[..]));
        assert_eq!(info.iter().count(), 3);
    }

    #[test]
    fn long_values_are_ignored_by_get_but_kept() {
        let mut raw = b"\\hostname\\".to_vec();
        raw.extend(std::iter::repeat_n(b'x', MAX_VALUE_LEN + 1));
        raw.extend_from_slice(b"\\hostname\\ok");
        let info = InfoString::parse(&raw).unwrap();
        assert_eq!(info.get(b"hostname"), None);
        assert_eq!(info.iter().count(), 2);
        // Found by the `valve_server` fuzz target: what decodes must re-encode.
        let mut out = Vec::new();
        for (k, v) in info {
            put_pair(&mut out, k, v).unwrap();
        }
        assert_eq!(out, raw);
    }

    #[test]
    fn malformed_infostrings_are_rejected() {
        for (bad, kind) in [
            (&b"a\\b"[..], ErrorKind::BadInfostring),
            (b"\\a", ErrorKind::BadInfostring),
            (b"\\a\\b\\", ErrorKind::BadInfostring),
            (b"\\\\b", ErrorKind::BadInfostring),
            (b"\\a\\b\0", ErrorKind::BadByte),
            (b"\\a\\b\n", ErrorKind::BadByte),
        ] {
            assert_eq!(InfoString::parse(bad).unwrap_err().kind, kind, "{bad:?}");
        }
        let many: Vec<u8> = (0..=MAX_INFO_PAIRS)
            .flat_map(|i| format!("\\k{i}\\v").into_bytes())
            .collect();
        assert_eq!(
            InfoString::parse(&many).unwrap_err().kind,
            ErrorKind::TooLong
        );
        assert!(InfoString::parse(b"").unwrap().is_empty());
    }

    fn field() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_filter("framing", |b| !matches!(b, 0 | 10 | 92)),
            0..40,
        )
    }

    proptest! {
        #[test]
        fn round_trip(pairs in proptest::collection::vec((field().prop_filter("key", |k| !k.is_empty()), field()), 0..MAX_INFO_PAIRS)) {
            let mut raw = Vec::new();
            for (k, v) in &pairs {
                put_pair(&mut raw, k, v).unwrap();
            }
            let info = InfoString::parse(&raw).unwrap();
            let back: Vec<(Vec<u8>, Vec<u8>)> = info.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            prop_assert_eq!(back, pairs);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::wire::NO_PANIC_CASES))]
        #[test]
        fn never_panics(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(info) = InfoString::parse(&raw) {
                prop_assert!(info.iter().count() <= MAX_INFO_PAIRS);
                let _ = info.get(b"challenge");
            }
        }

        #[test]
        fn fields_split_as_slice_split_does(raw in proptest::collection::vec(prop_oneof![Just(b'\\'), any::<u8>()], 0..64)) {
            let ours: Vec<&[u8]> = fields(&raw).collect();
            let std: Vec<&[u8]> = raw.split(|&b| b == b'\\').collect();
            prop_assert_eq!(ours, std);
        }
    }

    #[test]
    fn fields_at_the_edges() {
        let all = |b: &'static [u8]| fields(b).collect::<Vec<_>>();
        assert_eq!(all(b""), vec![&b""[..]]);
        assert_eq!(all(b"\\"), vec![&b""[..], &b""[..]]);
        assert_eq!(all(b"a\\b\\"), vec![&b"a"[..], &b"b"[..], &b""[..]]);
    }
}
