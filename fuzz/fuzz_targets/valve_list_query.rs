#![no_main]

use libfuzzer_sys::fuzz_target;
use muster::wire;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = wire::valve_list::ListQuery::decode(data) else { return };
    let mut out = Vec::new();
    q.encode(&mut out).unwrap();
    if q.well_formed && q.filter.iter().all(|&b| b != 0) {
        // The seed text may differ (leading zeros in the port); the rest must survive.
        assert_eq!(wire::valve_list::ListQuery::decode(&out).unwrap().filter, q.filter);
    }
});
