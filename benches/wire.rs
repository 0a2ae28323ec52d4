//! Micro-benches of the wire codecs: the per-packet work on the master's hot paths.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use muster::wire::{dp_server, filter::Filter, valve_heartbeat, valve_list};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

const HEARTBEAT: &[u8] = b"0\n\\protocol\\7\\challenge\\12345\\players\\3\\max\\16\\bots\\0\\gamedir\\cstrike\\map\\de_dust\\password\\0\\os\\l\\lan\\0\\region\\255\\type\\d\\secure\\0\\version\\1.1.2.7\\product\\cstrike\n";
const INFO_RESPONSE: &[u8] = b"\xff\xff\xff\xffinfoResponse\n\\voip\\opus\\g_needpass\\0\\pure\\1\\gametype\\0\\sv_maxclients\\8\\g_humanplayers\\0\\clients\\0\\mapname\\oa_dm1\\hostname\\OA-test-1\\protocol\\71\\gamename\\Quake3Arena\\challenge\\|vVK}!Z@zn";
const QUERY: &[u8] =
    b"1\xff0.0.0.0:0\0\\empty\\1\\gamedir\\tf\\gametype\\alltalk,cp\\map\\ctf_2fort\\secure\\1\\type\\d\0";

fn wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));

    g.bench_function("decode_heartbeat", |b| {
        b.iter(|| {
            let m = valve_heartbeat::ServerMessage::decode(black_box(HEARTBEAT)).unwrap();
            let valve_heartbeat::ServerMessage::Heartbeat(hb) = m else {
                unreachable!()
            };
            black_box((hb.challenge(), hb.info.get(b"gamedir"), hb.info.get(b"map")))
        })
    });

    g.bench_function("decode_info_response", |b| {
        b.iter(|| {
            let ir = dp_server::InfoResponse::decode(black_box(INFO_RESPONSE)).unwrap();
            black_box((
                ir.challenge(),
                ir.number(b"protocol"),
                ir.number(b"clients"),
            ))
        })
    });

    g.bench_function("decode_valve_query_6_key_filter", |b| {
        b.iter(|| {
            let q = valve_list::ListQuery::decode(black_box(QUERY)).unwrap();
            black_box(Filter::parse(q.filter).unwrap())
        })
    });

    let servers: Vec<SocketAddrV4> = (0..230u32)
        .map(|i| SocketAddrV4::new(Ipv4Addr::from(0x0A00_0000 + i * 7), 27015))
        .collect();
    let mut out = Vec::with_capacity(valve_list::MAX_PAGE_LEN);
    g.bench_function("encode_full_page_231", |b| {
        b.iter(|| {
            out.clear();
            valve_list::encode_page(&mut out, black_box(&servers), true).unwrap();
            black_box(out.len())
        })
    });
    // Baselines measured in the same run, so figures can be read as ratios on a noisy machine:
    // copying the same bytes the decoder reads or the encoder writes.
    let mut copy = Vec::with_capacity(valve_list::MAX_PAGE_LEN);
    for (name, bytes) in [
        ("baseline_copy_heartbeat", HEARTBEAT),
        ("baseline_copy_info_response", INFO_RESPONSE),
        ("baseline_copy_query", QUERY),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                copy.clear();
                copy.extend_from_slice(black_box(bytes));
                black_box(copy.len())
            })
        });
    }
    let page_bytes = {
        let mut v = Vec::new();
        valve_list::encode_page(&mut v, &servers, true).unwrap();
        v
    };
    g.bench_function("baseline_copy_page_1392_bytes", |b| {
        b.iter(|| {
            copy.clear();
            copy.extend_from_slice(black_box(&page_bytes));
            black_box(copy.len())
        })
    });
    g.finish();
}

criterion_group!(benches, wire);
criterion_main!(benches);
