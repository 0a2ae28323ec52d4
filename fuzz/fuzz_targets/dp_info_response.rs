#![no_main]

use libfuzzer_sys::fuzz_target;
use muster::wire;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = wire::dp_server::InfoResponse::decode(data) else { return };
    let _ = (m.challenge(), m.number(b"protocol"), m.number(b"clients"));
    let mut out = Vec::new();
    if wire::dp_server::InfoResponse::encode(&mut out, m.info).is_ok() && !m.trailing_newline {
        assert_eq!(out, data);
    }
});
