//! Stateless challenges for both registration handshakes.
//!
//! A challenge is a keyed MAC (SipHash-2-4, 128-bit output) of the game server's address, port and
//! the current time window, under a key derived from a process secret and the window number: keys
//! rotate every window, and a leaked key is useless after two windows. A challenge verifies in the
//! window it was issued and the next one. Nothing is stored per request, so a flood of spoofed
//! requests costs the master nothing but the reply, and a repeat request in the same window gets
//! the same challenge (as dpmaster does).
//!
//! - Valve / GoldSrc / Xash3D: a `u32` with bit 31 clear, so Source's `%d` and Xash3D's `%u` print
//!   the same decimal (shared/docs/protocols.md §2).
//! - Quake III / DarkPlaces: 8–11 characters of dpmaster's alphabet. The MAC also covers the
//!   heartbeat tag's index, and verification recovers it, so the master knows which anonymous tag
//!   (and so which game) an `infoResponse` answers without remembering the heartbeat.

use crate::wire::dp_server::{CHALLENGE_MAX_LEN, CHALLENGE_MIN_LEN, is_challenge_byte};
use siphasher::sip128::{Hasher128, SipHasher24};
use std::cell::Cell;
use std::hash::Hasher;
use std::net::SocketAddr;

use crate::master::time::Time;

/// Default window for Valve challenges: a challenge lives 60–120 s. Game servers answer at once; the
/// margin covers slow links and a heartbeat sent just after a window turns.
pub const DEFAULT_VALVE_WINDOW_MS: u64 = 60_000;
/// Default window for DP challenges: 2–4 s, close to dpmaster's 2 s validity.
pub const DEFAULT_DP_WINDOW_MS: u64 = 2_000;

/// dpmaster's challenge alphabet, in byte order.
// A const evaluation: an out-of-range index here fails the build, not a datagram.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const ALPHABET: [u8; 89] = {
    let mut a = [0u8; 89];
    let mut b = 33u8;
    let mut i = 0;
    while b <= 126 {
        if is_challenge_byte(b) {
            a[i] = b;
            i += 1;
        }
        b += 1;
    }
    a
};

/// A DP challenge as text: up to [`CHALLENGE_MAX_LEN`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DpChallenge {
    buf: [u8; CHALLENGE_MAX_LEN],
    len: u8,
}

impl DpChallenge {
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// Issues and verifies challenges. Cheap to copy: every core holds the same secret, so a challenge
/// issued by one core verifies on any other.
#[derive(Clone, Debug)]
pub struct Challenges {
    secret: [u8; 16],
    valve_window_ms: u64,
    dp_window_ms: u64,
    /// The last per-window keys derived, by (domain, window parity): a key is one SipHash of the
    /// secret, and every challenge of a window shares it.
    keys: [Cell<Option<WindowKey>>; 8],
}

/// A derived key: (domain, window, key).
type WindowKey = (u8, u64, [u8; 16]);

/// The number of the window `now` falls in (`window_ms` is at least 1 by construction).
fn window(now: Time, window_ms: u64) -> u64 {
    now.millis().checked_div(window_ms).unwrap_or(0)
}

/// Domain separation between the two handshakes and the Valve walks.
const DOMAIN_VALVE: u8 = 1;
const DOMAIN_DP: u8 = 2;
const DOMAIN_WALK: u8 = 3;

impl Challenges {
    pub fn new(secret: [u8; 16], valve_window_ms: u64, dp_window_ms: u64) -> Self {
        Self {
            secret,
            valve_window_ms: valve_window_ms.max(1),
            dp_window_ms: dp_window_ms.max(1),
            keys: Default::default(),
        }
    }

    /// The key of `window` in `domain`: a MAC of both under the secret (cached).
    fn key(&self, domain: u8, window: u64) -> [u8; 16] {
        let slot = usize::from(domain & 3)
            .saturating_mul(2)
            .saturating_add((window & 1) as usize);
        let cell = self.keys.get(slot);
        if let Some(Some((d, w, key))) = cell.map(Cell::get)
            && d == domain
            && w == window
        {
            return key;
        }
        let mut k = SipHasher24::new_with_key(&self.secret);
        k.write_u8(domain);
        k.write_u64(window);
        let key = k.finish128().as_bytes();
        if let Some(c) = cell {
            c.set(Some((domain, window, key)));
        }
        key
    }

    fn mac(&self, domain: u8, window: u64, addr: SocketAddr, extra: u8) -> u128 {
        let key = self.key(domain, window);
        let mut h = SipHasher24::new_with_key(&key);
        match addr {
            SocketAddr::V4(a) => {
                h.write_u8(4);
                h.write(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                h.write_u8(6);
                h.write(&a.ip().octets());
            }
        }
        h.write_u16(addr.port());
        h.write_u8(extra);
        h.finish128().as_u128()
    }

    fn valve_at(&self, window: u64, addr: SocketAddr) -> u32 {
        (self.mac(DOMAIN_VALVE, window, addr, 0) as u32) & 0x7FFF_FFFF
    }

    /// The random number a Valve walk of `addr` begun at `now` starts from: a keyed MAC of both
    /// (a spoofer who has read the code still cannot know it). Two walks of one client started in
    /// the same millisecond start alike.
    pub fn walk_random(&self, now: Time, addr: SocketAddr) -> u64 {
        self.mac(DOMAIN_WALK, now.millis(), addr, 0) as u64
    }

    /// A walk's identity among a client's walks: a keyed hash of the query's region and filter,
    /// never 0 (0 marks a free walk slot).
    pub fn walk_key(&self, region: u8, filter: &[u8]) -> u32 {
        let key = self.key(DOMAIN_WALK, u64::MAX);
        let mut h = SipHasher24::new_with_key(&key);
        h.write_u8(region);
        h.write(filter);
        (h.finish() as u32).max(1)
    }

    /// The challenge to send to `addr` now.
    pub fn valve(&self, now: Time, addr: SocketAddr) -> u32 {
        self.valve_at(window(now, self.valve_window_ms), addr)
    }

    /// Whether `challenge` was issued to `addr` in this window or the previous one. Bit 31 is
    /// ignored, so a server that printed it signed or unsigned verifies alike.
    pub fn verify_valve(&self, now: Time, addr: SocketAddr, challenge: u32) -> bool {
        let w = window(now, self.valve_window_ms);
        let c = challenge & 0x7FFF_FFFF;
        c == self.valve_at(w, addr)
            || w.checked_sub(1)
                .is_some_and(|p| c == self.valve_at(p, addr))
    }

    fn dp_at(&self, window: u64, addr: SocketAddr, tag: u8) -> DpChallenge {
        // Mixed-radix digits of the MAC: first the length, then one alphabet index per byte; the
        // low half gives the length and 9 digits (4 · 89⁹ < 2⁶⁴), the high half the rest. 64-bit
        // arithmetic: division by a constant is a multiplication (u128 would call __udivti3).
        const SPAN: u64 = (CHALLENGE_MAX_LEN - CHALLENGE_MIN_LEN + 1) as u64;
        const RADIX: u64 = ALPHABET.len() as u64;
        const LOW_DIGITS: usize = 9;
        let m = self.mac(DOMAIN_DP, window, addr, tag);
        let (mut lo, mut hi) = (m as u64, (m >> 64) as u64);
        let len = CHALLENGE_MIN_LEN.saturating_add((lo % SPAN) as usize);
        lo /= SPAN;
        let mut buf = [0u8; CHALLENGE_MAX_LEN];
        for (i, b) in buf.iter_mut().take(len).enumerate() {
            let half = if i < LOW_DIGITS { &mut lo } else { &mut hi };
            let digit = (*half % RADIX) as usize;
            *half /= RADIX;
            *b = ALPHABET.get(digit).copied().unwrap_or(b'A');
        }
        DpChallenge {
            buf,
            len: len as u8,
        }
    }

    /// The `getinfo` challenge for `addr` answering a heartbeat whose tag has index `tag`.
    pub fn dp(&self, now: Time, addr: SocketAddr, tag: u8) -> DpChallenge {
        self.dp_at(window(now, self.dp_window_ms), addr, tag)
    }

    /// Which of `tags` (indices `0..tags`) the challenge was issued for, in this window or the
    /// previous one; `None` if it was not issued to `addr`.
    pub fn verify_dp(&self, now: Time, addr: SocketAddr, challenge: &[u8], tags: u8) -> Option<u8> {
        if !(CHALLENGE_MIN_LEN..=CHALLENGE_MAX_LEN).contains(&challenge.len()) {
            return None;
        }
        let w = window(now, self.dp_window_ms);
        let windows = [Some(w), w.checked_sub(1)];
        (0..tags).find(|&t| {
            windows
                .iter()
                .flatten()
                .any(|&win| self.dp_at(win, addr, t).as_bytes() == challenge)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_starts_differ_per_client_and_instant() {
        let c = ch();
        let a: SocketAddr = "198.51.100.7:27005".parse().unwrap();
        let b: SocketAddr = "198.51.100.8:27005".parse().unwrap();
        let t = Time::from_secs(50);
        assert_eq!(c.walk_random(t, a), c.walk_random(t, a));
        assert_ne!(c.walk_random(t, a), c.walk_random(t, b));
        assert_ne!(c.walk_random(t, a), c.walk_random(t.plus_millis(1), a));
        // Spread: 1,000 clients over 100 positions leave no position empty.
        let mut hit = [false; 100];
        for i in 0..1000u32 {
            let from = SocketAddr::from((std::net::Ipv4Addr::from(0x0A00_0000 + i), 1));
            hit[(c.walk_random(t, from) % 100) as usize] = true;
        }
        assert!(hit.iter().all(|h| *h));
    }

    fn ch() -> Challenges {
        Challenges::new(
            *b"0123456789abcdef",
            DEFAULT_VALVE_WINDOW_MS,
            DEFAULT_DP_WINDOW_MS,
        )
    }

    const A: &str = "127.0.0.2:27015";

    #[test]
    fn valve_challenges_verify_for_two_windows_only() {
        let c = ch();
        let a: SocketAddr = A.parse().unwrap();
        let t0 = Time::from_secs(1000);
        let v = c.valve(t0, a);
        assert_eq!(v & 0x8000_0000, 0, "bit 31 clear");
        assert_eq!(
            c.valve(t0.plus_millis(1), a),
            v,
            "same window, same challenge"
        );
        assert!(c.verify_valve(t0, a, v));
        assert!(
            c.verify_valve(t0, a, v | 0x8000_0000),
            "signed reading verifies too"
        );
        assert!(c.verify_valve(t0.plus_secs(60), a, v));
        assert!(!c.verify_valve(t0.plus_secs(180), a, v), "stale");
        assert!(
            !c.verify_valve(t0, "127.0.0.2:27016".parse().unwrap(), v),
            "other port"
        );
        assert!(
            !c.verify_valve(t0, "127.0.0.3:27015".parse().unwrap(), v),
            "other host"
        );
        let other = Challenges::new(
            *b"fedcba9876543210",
            DEFAULT_VALVE_WINDOW_MS,
            DEFAULT_DP_WINDOW_MS,
        );
        assert!(!other.verify_valve(t0, a, v), "other secret");
    }

    #[test]
    fn dp_challenges_use_dpmaster_alphabet_and_recover_the_tag() {
        let c = ch();
        let a: SocketAddr = "[::1]:26000".parse().unwrap();
        let t0 = Time::from_secs(50);
        let mut lens = std::collections::BTreeSet::new();
        for port in 0..200u16 {
            let a = SocketAddr::new(a.ip(), port);
            let s = c.dp(t0, a, 1);
            let b = s.as_bytes();
            lens.insert(b.len());
            assert!(b.iter().all(|&x| is_challenge_byte(x)), "{b:?}");
            assert_eq!(c.verify_dp(t0, a, b, 4), Some(1));
            assert_eq!(c.verify_dp(t0.plus_millis(2500), a, b, 4), Some(1));
            assert_eq!(c.verify_dp(t0.plus_secs(5), a, b, 4), None, "stale");
        }
        assert_eq!(lens, (8..=11).collect(), "lengths 8 to 11 all occur");
        assert_eq!(c.verify_dp(t0, a, b"short", 4), None);
        assert_eq!(ALPHABET.len(), 89);
    }
}
