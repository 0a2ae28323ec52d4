#![no_main]

use libfuzzer_sys::fuzz_target;
use muster::wire;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = wire::valve_list::ListPage::decode(data) else { return };
    let servers: Vec<_> = p.servers().collect();
    let mut out = Vec::new();
    wire::valve_list::encode_page(&mut out, &servers, p.is_final()).unwrap();
    assert_eq!(out, data);
});
