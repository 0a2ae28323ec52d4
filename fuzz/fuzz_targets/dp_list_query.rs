#![no_main]

use libfuzzer_sys::fuzz_target;
use muster::wire;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = wire::dp_list::ListQuery::decode(data) else { return };
    let _ = q.filter();
    let mut out = Vec::new();
    let _ = q.encode(&mut out);
});
