#![no_main]

use libfuzzer_sys::fuzz_target;
use muster::wire;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = wire::dp_list::ListResponse::decode(data) else { return };
    let servers: Vec<_> = r.servers().collect();
    let (mut out, mut ends) = (Vec::new(), Vec::new());
    if let Ok(mut w) = wire::dp_list::ResponseWriter::new(r.ext, 65_507, &mut out, &mut ends) {
        if servers.iter().all(|a| w.push(*a).is_ok()) && r.eot {
            w.finish();
            assert_eq!(out, data);
        }
    }
});
