#![no_main]

use libfuzzer_sys::fuzz_target;
use muster::wire;

fuzz_target!(|data: &[u8]| {
    match wire::classify(data) {
        wire::Kind::A2sInfoRequest => {
            if let Ok(m) = wire::a2s::InfoRequest::decode(data) {
                let mut out = Vec::new();
                m.encode(&mut out);
                assert_eq!(out, data);
            }
        }
        wire::Kind::A2sChallenge => {
            if let Ok(m) = wire::a2s::Challenge::decode(data) {
                let mut out = Vec::new();
                m.encode(&mut out);
                assert_eq!(out, data);
            }
        }
        wire::Kind::A2sSourceInfo => {
            if let Ok(m) = wire::a2s::SourceInfo::decode(data) {
                let mut out = Vec::new();
                m.encode(&mut out).unwrap();
                assert_eq!(out, data);
            }
        }
        wire::Kind::A2sGoldSrcInfo => {
            if let Ok(m) = wire::a2s::GoldSrcInfo::decode(data) {
                let mut out = Vec::new();
                m.encode(&mut out).unwrap();
                assert_eq!(out, data);
            }
        }
        _ => {}
    }
});
