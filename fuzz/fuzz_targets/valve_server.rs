#![no_main]

use libfuzzer_sys::fuzz_target;
use muster::wire;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = wire::valve_heartbeat::ServerMessage::decode(data) else { return };
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    assert_eq!(out, data);
    if let wire::valve_heartbeat::ServerMessage::Heartbeat(hb) = m {
        let _ = hb.challenge();
    }
});
