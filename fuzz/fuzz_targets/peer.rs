#![no_main]

//! The peering datagram: never a panic, whatever the bytes — with a wrong MAC, and with a right
//! one over arbitrary bodies (what a peer holding the key could send); a datagram that decodes
//! re-encodes to the same bytes.

use libfuzzer_sys::fuzz_target;
use muster::wire::peer::{Builder, Kind, MAC_LEN, MAX_DATAGRAM, Sealed};

const KEY: [u8; 32] = [0x42; 32];

fuzz_target!(|data: &[u8]| {
    let _ = Sealed::open(data, &KEY);
    // The same bytes sealed with the key: the body's own checks are all that stand.
    let mut b = Builder::new(Kind::Entries, 0, 0).seal(&KEY);
    b.truncate(b.len() - MAC_LEN - 2);
    b.extend_from_slice(data);
    let hash = blake3::keyed_hash(&KEY, &b);
    b.extend_from_slice(&hash.as_bytes()[..MAC_LEN]);
    if let Ok(s) = Sealed::open(&b, &KEY)
        && let Ok(entries) = s.entries()
        && b.len() <= MAX_DATAGRAM
    {
        let mut again = Builder::new(s.kind, s.sender, s.seq);
        for e in &entries {
            assert!(again.push(e), "an entry that decoded fits again");
        }
        assert_eq!(again.seal(&KEY), b, "re-encodes to the same bytes");
    }
});
