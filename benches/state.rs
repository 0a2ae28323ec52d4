//! The state file at 100,000 servers with distinct names: streaming a table dump to the file (what
//! the control thread does every `state_interval_secs`: encode, fsync, rename) and reading it back
//! (the binary, once at start). Bytes per server are printed once.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use muster::master::Family;
use muster::master::Limits;
use muster::master::Time;
use muster::master::{Fields, Table};
use muster::state::{read, write_dumps};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

const N: u32 = 100_000;

fn table() -> Table {
    let mut t = Table::new(
        Time::ZERO,
        Limits {
            max_servers: 2 * N as usize,
            max_servers_per_ip: 32,
            max_servers_per_net: u16::MAX,
            allow_private: true,
            ..Limits::default()
        },
    );
    let maps: [&[u8]; 4] = [b"de_dust2", b"de_inferno", b"cs_office", b"de_nuke"];
    for i in 0..N {
        let ip = (i / 2).wrapping_mul(2_654_435_761) | 0x0100_0000;
        let addr = SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(ip),
            27015 + (i % 2) as u16,
        ));
        let name = format!("Community server number {i} | all maps");
        let f = Fields {
            players: (i % 17) as u8,
            max_players: 16,
            appid: 10,
            protocol: 48,
            game: b"cstrike",
            product: b"cstrike",
            map: maps[i as usize % 4],
            version: b"1.1.2.7",
            hostname: name.as_bytes(),
            ..Fields::default()
        };
        t.upsert(Time::from_secs(u64::from(i % 600)), addr, Family::Valve, &f)
            .unwrap();
    }
    t
}

fn write(t: &Table, path: &std::path::Path) -> u64 {
    let d = t.dump();
    write_dumps(path, 1, &[&d], |d, s, seen| {
        (u64::from(s.first_seen), d.expires_at(seen).millis())
    })
    .unwrap()
    .bytes
}

fn benches(c: &mut Criterion) {
    let t = table();
    let dir = std::env::temp_dir().join(format!("muster-bench-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state");
    let bytes = write(&t, &path);
    println!(
        "state file: {N} servers, {bytes} bytes, {:.1} bytes/server",
        bytes as f64 / f64::from(N)
    );
    let mut g = c.benchmark_group("state_file");
    g.throughput(Throughput::Elements(u64::from(N)));
    g.sample_size(10);
    // Streams to the file with fsync and rename: the control thread's whole cost.
    g.bench_function("write_100k", |b| b.iter(|| black_box(write(&t, &path))));
    g.bench_function("read_100k", |b| b.iter(|| black_box(read(&path).unwrap())));
    g.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}

criterion_group!(state, benches);
criterion_main!(state);
