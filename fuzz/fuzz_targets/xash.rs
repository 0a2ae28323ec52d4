#![no_main]
//! Xash3D: the filter reader never panics, and every burst datagram that decodes re-encodes to
//! the same bytes (header, key, entries, zero entry).

use libfuzzer_sys::fuzz_target;
use muster::wire::xash::{BurstDatagram, BurstWriter, XashQuery};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = muster::wire::filter::Filter::parse(data) {
        let _ = XashQuery::from_filter(&f).map(|q| q.map(|q| q.older_than((0, 21))));
    }
    let (v6, keyed, body) = match data.split_first() {
        Some((&b, rest)) => (b & 1 == 1, b & 2 == 2, rest),
        None => return,
    };
    if let Ok(d) = BurstDatagram::decode(body, v6, keyed) {
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        let mut w = BurstWriter::new(v6, d.key, &mut out, &mut ends);
        if d.servers.len() > w.per_datagram() {
            return; // longer than muster ever sends: it would cut it in two
        }
        for &s in &d.servers {
            w.push(s).unwrap();
        }
        w.finish();
        assert_eq!(out, body);
    }
});
