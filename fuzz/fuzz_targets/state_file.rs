#![no_main]
//! The state file reader never panics on any bytes, and every file it accepts decodes again to the
//! same contents once re-encoded (postcard reads some non-canonical varints, so bytes may differ).

use libfuzzer_sys::fuzz_target;
use muster::state::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = decode(data) {
        assert_eq!(decode(&encode(&body)).ok().as_ref(), Some(&body));
        for r in &body.records {
            assert!(body.fields(r).is_some());
        }
    }
    // The same bytes behind a valid header (length and checksum right): the body decoder itself.
    let mut framed = Vec::with_capacity(data.len() + 24);
    framed.extend_from_slice(b"MUSTERSF");
    framed.extend_from_slice(&muster::state::VERSION.to_le_bytes());
    framed.extend_from_slice(&(data.len() as u64).to_le_bytes());
    framed.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    framed.extend_from_slice(data);
    if let Ok(body) = decode(&framed) {
        // postcard accepts some non-canonical varints; the body must at least round-trip.
        assert_eq!(decode(&encode(&body)).ok(), Some(body));
    }
});
