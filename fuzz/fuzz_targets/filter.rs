#![no_main]

use libfuzzer_sys::fuzz_target;
use muster::wire;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = wire::filter::Filter::parse(data) else { return };
    let mut flip = false;
    let _ = f.eval(|_| {
        flip = !flip;
        Some(flip)
    });
    let _ = f.collapse_addr_hash();
});
