#![no_main]

use libfuzzer_sys::fuzz_target;
use muster::wire;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = wire::infostring::InfoString::parse(data) else { return };
    assert!(info.iter().count() <= wire::infostring::MAX_INFO_PAIRS);
    let _ = info.get(b"challenge");
});
