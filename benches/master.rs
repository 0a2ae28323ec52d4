//! Criterion benches of the master core: upsert, expiry, snapshot + merge, filtered lists, pages.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use muster::master::list::List;
use muster::master::policy::Limits;
use muster::master::record::Family;
use muster::master::table::{Fields, Table};
use muster::master::time::Time;
use muster::wire::dp_list::ListQuery as DpQuery;
use muster::wire::filter::Filter;
use muster::wire::valve_list::Region;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

const N: u32 = 100_000;

fn limits() -> Limits {
    Limits {
        max_servers: 2_000_000,
        max_servers_per_ip: 32,
        allow_private: true,
        ..Limits::default()
    }
}

fn addr(i: u32) -> SocketAddr {
    // Spread over the address space, two ports per host.
    let ip = (i / 2).wrapping_mul(2_654_435_761) | 0x0100_0000;
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(ip),
        27015 + (i % 2) as u16,
    ))
}

const MAPS: [&[u8]; 8] = [
    b"de_dust2",
    b"de_inferno",
    b"cs_office",
    b"de_nuke",
    b"de_train",
    b"cs_italy",
    b"de_aztec",
    b"de_mirage",
];

fn fields(i: u32) -> Fields<'static> {
    Fields {
        region: (i % 8) as u8,
        server_type: b'd',
        players: (i % 17) as u8,
        max_players: 16,
        flags: 1,
        protocol: 48,
        game: b"cstrike",
        product: b"cstrike",
        map: MAPS[(i % 8) as usize],
        version: b"1.1.2.7",
        tags: b"",
        ..Default::default()
    }
}

fn table(n: u32, shard: u32, shards: u32, now: Time) -> Table {
    let mut t = Table::new(Time::ZERO, limits());
    for i in (0..n).filter(|i| i % shards == shard) {
        t.upsert(now, addr(i), Family::Valve, &fields(i)).unwrap();
    }
    t
}

fn upsert(c: &mut Criterion) {
    let mut g = c.benchmark_group("master");
    g.throughput(Throughput::Elements(1));
    let mut t = table(N, 0, 1, Time::from_secs(1));
    let mut i = 0u32;
    g.bench_function("upsert_refresh_in_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            black_box(
                t.upsert(Time::from_secs(2), addr(i), Family::Valve, &fields(i))
                    .unwrap(),
            )
        })
    });
    g.throughput(Throughput::Elements(u64::from(N)));
    g.sample_size(10);
    g.bench_function("upsert_insert_100k_fresh", |b| {
        b.iter_batched(
            || Table::new(Time::ZERO, limits()),
            |mut t| {
                for i in 0..N {
                    t.upsert(Time::from_secs(1), addr(i), Family::Valve, &fields(i))
                        .unwrap();
                }
                t
            },
            BatchSize::PerIteration,
        )
    });
    // 100k servers registered over 100 s: one second's bucket (1,000 servers) expires per tick.
    g.throughput(Throughput::Elements(1000));
    g.bench_function("expiry_tick_1k_of_100k", |b| {
        b.iter_batched(
            || {
                let mut t = Table::new(Time::ZERO, limits());
                for i in 0..N {
                    t.upsert(
                        Time::from_millis(u64::from(i)),
                        addr(i),
                        Family::Valve,
                        &fields(i),
                    )
                    .unwrap();
                }
                t
            },
            |mut t| {
                // The bucket at 900 s + 1 s holds the servers registered in (0, 1] s.
                let (n, done) = t.expire(Time::from_secs(901), usize::MAX);
                assert!(done && n >= 999);
                t
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn snapshot_merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("master");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(N)));
    for shards in [2u32, 16] {
        let mut tables: Vec<Table> = (0..shards)
            .map(|s| table(N, s, shards, Time::from_secs(1)))
            .collect();
        g.bench_function(format!("snapshot_and_merge_100k_{shards}_shards"), |b| {
            b.iter(|| {
                let snaps = tables.iter_mut().map(|t| t.snapshot()).collect();
                black_box(List::merge(snaps).len())
            })
        });
    }
    g.finish();
}

fn lists(c: &mut Criterion) {
    let mut g = c.benchmark_group("master");
    let mut t = table(N, 0, 1, Time::from_secs(1));
    let list = List::merge(vec![t.snapshot()]);
    let mut out = Vec::with_capacity(1400);
    let none = Filter::default();
    g.bench_function("valve_page_unfiltered_shared_slice", |b| {
        b.iter(|| {
            black_box(list.valve_page(
                Region::All,
                black_box([100, 0, 0, 0, 0, 0]),
                &none,
                231,
                &mut out,
            ))
        })
    });
    // ~1 in 8 servers on de_dust2, ~1 in 17 empty: a full page needs ~2,000 servers scanned.
    let f = Filter::parse(b"\\gamedir\\cstrike\\map\\de_dust2\\empty\\1").unwrap();
    g.bench_function("valve_page_filtered_100k", |b| {
        b.iter(|| {
            out.clear();
            black_box(list.valve_page(Region::All, [0; 6], &f, 231, &mut out))
        })
    });
    // The worst case: a filter nothing matches, with no index to narrow it: the scan stops at
    // MAX_SCAN (65,536) candidates.
    let nothing = Filter::parse(b"\\map\\no_such_map").unwrap();
    g.throughput(Throughput::Elements(muster::master::list::MAX_SCAN as u64));
    g.bench_function("valve_page_filter_matching_nothing_scan_capped", |b| {
        b.iter(|| {
            out.clear();
            black_box(list.valve_page(Region::All, [0; 6], &nothing, 231, &mut out))
        })
    });
    g.throughput(Throughput::Elements(1));
    // DP: 100k Xonotic servers; a shared `empty full` list vs. a filtered one encoded per query.
    let mut dp = Table::new(Time::ZERO, limits());
    for i in 0..N {
        let f = Fields {
            game: b"Xonotic",
            protocol: 3,
            players: (i % 9) as u8,
            max_players: 8,
            ..Default::default()
        };
        dp.upsert(Time::from_secs(1), addr(i), Family::DarkPlaces, &f)
            .unwrap();
    }
    let snap = dp.snapshot();
    let mut dp_list = List::merge(vec![snap.clone()]);
    let shared = DpQuery::decode(b"\xff\xff\xff\xffgetservers Xonotic 3 empty full").unwrap();
    let filtered = DpQuery::decode(b"\xff\xff\xff\xffgetservers Xonotic 3").unwrap();
    dp_list.dp_response(&shared, 1400);
    g.bench_function("dp_getservers_100k_shared", |b| {
        b.iter(|| black_box(dp_list.dp_response(&shared, 1400)))
    });
    // The first query of an epoch for a filtered list encodes it (from the game's index); every
    // later one shares it.
    g.bench_function("dp_getservers_100k_filtered_first_of_epoch", |b| {
        b.iter_batched(
            || List::merge(vec![snap.clone()]),
            |mut l| black_box(l.dp_response(&filtered, 1400)),
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Floors measured in the same run, so the figures above can be read as ratios on a noisy machine.
fn baselines(c: &mut Criterion) {
    let mut g = c.benchmark_group("master");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(N)));
    // The least a snapshot can cost: copying 100k records.
    let mut t = table(N, 0, 1, Time::from_secs(1));
    let snap = t.snapshot();
    g.bench_function("baseline_copy_100k_records", |b| {
        b.iter(|| black_box(snap.servers.clone()))
    });
    // The least an insert can cost: a std HashMap insert of a u64 key.
    g.bench_function("baseline_std_hashmap_insert_100k", |b| {
        b.iter_batched(
            std::collections::HashMap::<u64, u64>::new,
            |mut m| {
                for i in 0..u64::from(N) {
                    m.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i);
                }
                m
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, upsert, snapshot_merge, lists, baselines);
criterion_main!(benches);
