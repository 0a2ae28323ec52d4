//! Criterion benches of the master core: upsert, expiry, the list builder, filtered lists, pages,
//! admission.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use muster::master::Limits;
use muster::master::ListBuilder;
use muster::master::Time;
use muster::master::list::{DpReply, List, Packets};
use muster::master::{Family, Server};
use muster::master::{Fields, Table};
use muster::wire::dp_list::ListQuery as DpQuery;
use muster::wire::filter::Filter;
use muster::wire::valve_list::Region;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

const N: u32 = 100_000;

fn limits() -> Limits {
    Limits {
        max_servers: 2_000_000,
        max_servers_per_ip: 32,
        max_servers_per_net: u16::MAX,
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

fn dp_fields(i: u32) -> Fields<'static> {
    Fields {
        region: 255,
        players: (i % 17) as u8,
        max_players: 16,
        protocol: 3,
        game: b"Nexuiz",
        product: b"data",
        map: MAPS[(i % 8) as usize],
        ..Default::default()
    }
}

/// `n` servers of `family` over `shards` tables (server i in shard i % shards).
fn tables(n: u32, shards: u32, family: Family) -> Vec<Table> {
    let mut ts: Vec<Table> = (0..shards)
        .map(|_| Table::new(Time::ZERO, limits()))
        .collect();
    for i in 0..n {
        let f = match family {
            Family::Valve => fields(i),
            Family::DarkPlaces => dp_fields(i),
        };
        if let Some(t) = ts.get_mut((i % shards) as usize) {
            t.upsert(Time::from_secs(1), addr(i), family, &f).unwrap();
        }
    }
    ts
}

/// A builder that has built the list of `ts` once.
fn built(ts: &mut [Table]) -> ListBuilder {
    let mut lb = ListBuilder::new(ts.len(), 1400);
    for (i, t) in ts.iter_mut().enumerate() {
        lb.apply(i, t.snapshot());
    }
    lb.build();
    lb
}

/// The list builder (off the packet cores): a whole list from nothing, and the incremental cases
/// — an attribute change (no rebuild) and 100 servers joining and 100 leaving.
fn builder(c: &mut Criterion) {
    let mut g = c.benchmark_group("master");
    g.sample_size(10);
    for (n, name) in [(N, "100k"), (1_000_000, "1m")] {
        for (family, fam) in [(Family::Valve, "valve"), (Family::DarkPlaces, "dp")] {
            // A first build takes every server as added: each iteration needs fresh tables.
            g.bench_function(format!("build_{name}_{fam}_from_2_shards"), |b| {
                b.iter_batched(
                    || {
                        let mut ts = tables(n, 2, family);
                        let snaps: Vec<_> = ts.iter_mut().map(Table::snapshot).collect();
                        (ts, snaps)
                    },
                    |(ts, snaps)| {
                        let mut lb = ListBuilder::new(2, 1400);
                        for (i, s) in snaps.into_iter().enumerate() {
                            lb.apply(i, s);
                        }
                        let list = lb.build();
                        assert_eq!(list.as_ref().map(|l| l.len()), Some(n as usize));
                        (ts, list)
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    for (family, fam) in [(Family::Valve, "valve"), (Family::DarkPlaces, "dp")] {
        let mut ts = tables(1_000_000, 2, family);
        let mut lb = built(&mut ts);
        let mut round = 0u32;
        g.bench_function(format!("build_1m_{fam}_after_an_attribute_change"), |b| {
            b.iter(|| {
                round += 1;
                let f = Fields {
                    players: (round % 16) as u8,
                    ..match family {
                        Family::Valve => fields(4),
                        Family::DarkPlaces => dp_fields(4),
                    }
                };
                ts[0]
                    .upsert(Time::from_secs(2), addr(4), family, &f)
                    .unwrap();
                lb.apply(0, ts[0].snapshot());
                black_box(lb.build().map(|l| l.len()))
            })
        });
        g.bench_function(format!("build_1m_{fam}_after_100_join_100_leave"), |b| {
            b.iter(|| {
                round += 1;
                for k in 0..100u32 {
                    let i = 2_000_000 + (round % 1000) * 100 + k;
                    let f = match family {
                        Family::Valve => fields(i),
                        Family::DarkPlaces => dp_fields(i),
                    };
                    let t = &mut ts[(i % 2) as usize];
                    t.upsert(Time::from_secs(2), addr(i), family, &f).unwrap();
                    t.remove(addr(i.wrapping_sub(100)));
                }
                for (s, t) in ts.iter_mut().enumerate() {
                    lb.apply(s, t.snapshot());
                }
                black_box(lb.build().map(|l| l.len()))
            })
        });
    }
    g.finish();
}

/// A list of these tables, as the builder makes it.
fn build(tables: &mut [&mut Table]) -> Arc<List> {
    let mut lb = ListBuilder::new(tables.len(), 1400);
    for (i, t) in tables.iter_mut().enumerate() {
        lb.apply(i, t.snapshot());
    }
    lb.build().unwrap()
}

fn lists(c: &mut Criterion) {
    let mut g = c.benchmark_group("master");
    let mut t = table(N, 0, 1, Time::from_secs(1));
    let list = build(&mut [&mut t]);
    let mut out = Vec::with_capacity(1400);
    let none = Filter::default();
    g.bench_function("valve_page_unfiltered_shared_slice", |b| {
        b.iter(|| {
            black_box(list.valve_page(
                Region::All,
                black_box([100, 0, 0, 0, 0, 0]),
                [0; 6],
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
            black_box(list.valve_page(Region::All, [0; 6], [0; 6], &f, 231, &mut out))
        })
    });
    // The worst case: a filter nothing matches, with no index to narrow it: the scan stops at
    // MAX_SCAN (65,536) candidates.
    let nothing = Filter::parse(b"\\map\\no_such_map").unwrap();
    g.throughput(Throughput::Elements(muster::master::list::MAX_SCAN as u64));
    g.bench_function("valve_page_filter_matching_nothing_scan_capped", |b| {
        b.iter(|| {
            out.clear();
            black_box(list.valve_page(Region::All, [0; 6], [0; 6], &nothing, 231, &mut out))
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
    let dp_list = build(&mut [&mut dp]);
    let shared = DpQuery::decode(b"\xff\xff\xff\xffgetservers Xonotic 3 empty full").unwrap();
    let filtered = DpQuery::decode(b"\xff\xff\xff\xffgetservers Xonotic 3").unwrap();
    g.bench_function("dp_getservers_100k_shared", |b| {
        b.iter(|| {
            black_box(List::dp_reply(
                &dp_list,
                &shared,
                b"Xonotic",
                (false, false),
                1400,
            ))
        })
    });
    // A filtered answer is streamed: its first step (8 packets) is what the query costs at once;
    // the rest is encoded as the packets come due.
    g.bench_function("dp_getservers_100k_filtered_first_8_packets", |b| {
        let mut out = Packets::default();
        b.iter(|| {
            let DpReply::Stream(mut s) =
                List::dp_reply(&dp_list, &filtered, b"Xonotic", (false, false), 1400)
            else {
                unreachable!()
            };
            black_box(s.next_packets(&mut out))
        })
    });
    g.throughput(Throughput::Elements(77_778));
    g.bench_function("dp_getservers_100k_filtered_whole_stream", |b| {
        let mut out = Packets::default();
        b.iter(|| {
            let DpReply::Stream(mut s) =
                List::dp_reply(&dp_list, &filtered, b"Xonotic", (false, false), 1400)
            else {
                unreachable!()
            };
            while s.next_packets(&mut out) {}
        })
    });
    g.throughput(Throughput::Elements(1));
    g.finish();
}

/// What one candidate costs a scan, per kind of condition, on the worst strings a server may send
/// (255-byte hostname and version): 65,536 candidates (`MAX_SCAN`) examined by a walk's start, for
/// filters no index narrows and nothing matches. The weights of `matcher::scan_weight` come from
/// these figures (one unit ≈ the cheapest candidate).
fn scan_cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("scan");
    g.sample_size(10);
    let long: Vec<u8> = (0..255u32).map(|i| b'a' + (i % 26) as u8).collect();
    let name: &'static [u8] = Box::leak(long.clone().into_boxed_slice());
    let mut t = Table::new(Time::ZERO, limits());
    for i in 0..65_536u32 {
        let f = Fields {
            hostname: name,
            version: name,
            tags: b"alltalk,cp,increased_maxplayers,payload,respawntimes",
            ..fields(i)
        };
        t.upsert(Time::from_secs(1), addr(i), Family::Valve, &f)
            .unwrap();
    }
    let mut b = ListBuilder::new(1, 1400);
    b.apply(0, t.snapshot());
    let list = b.build().unwrap();
    // The costliest filter that fits a datagram and matches nothing: `nand` of one `nor` group
    // (every child evaluated when none matches; the `nor` then holds, so the `nand` does not) of
    // wildcards whose pieces each match a little further into a 255-byte text, the last never:
    // ~700 bytes, ~300 pieces, each a substring search per candidate.
    let piece_run: Vec<u8> = {
        let mut p = vec![b'*'];
        for k in 0..60 {
            p.push(b'a' + (k % 26) as u8);
            p.push(b'*');
        }
        p.extend_from_slice(b"zz*");
        p
    };
    let mut worst = b"\\nand\\1\\nor\\5".to_vec();
    for i in 0..5 {
        let key: &[u8] = if i % 2 == 0 {
            b"name_match"
        } else {
            b"version_match"
        };
        worst.extend_from_slice(b"\\");
        worst.extend_from_slice(key);
        worst.extend_from_slice(b"\\");
        worst.extend_from_slice(&piece_run);
    }
    assert!(worst.len() < 1400, "{}", worst.len());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("map", b"\\map\\no_such_map".to_vec()),
        // Every server is dedicated and none secure.
        ("flags", b"\\dedicated\\1\\secure\\1".to_vec()),
        ("name_match", b"\\name_match\\*no such server*".to_vec()),
        ("gametype", b"\\gametype\\alltalk,cp,nosuchtag".to_vec()),
        ("worst_nor_of_wildcards", worst),
    ];
    g.throughput(Throughput::Elements(65_536));
    for (label, raw) in &cases {
        let f = Filter::parse(raw).unwrap();
        g.bench_function(format!("walk_start_65536_candidates_{label}"), |b| {
            b.iter(|| black_box(list.valve_walk_start(Region::All, &f, 7)))
        });
    }
    g.finish();
}

/// Admission control per query: a fresh source admitted, and a flooding source refused (what a
/// spoofed flood costs the core per datagram once its burst is spent).
fn admission(c: &mut Criterion) {
    use muster::master::admission::{Admission, AdmissionConfig};
    let mut g = c.benchmark_group("master");
    let now = Time::from_secs(100);
    let mut ad = Admission::new(now, AdmissionConfig::default());
    let mut i = 0u32;
    g.bench_function("admission_admit_and_charge_new_source", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let from = SocketAddr::from((std::net::Ipv4Addr::from(0x0A00_0000 + i), 27005));
            if let Ok(grant) = ad.admit_query(now, from)
                && ad.admit_unproven(now, grant, 1392).is_ok()
            {
                ad.charge(now, grant, 1392);
            }
        })
    });
    let flooder: SocketAddr = "198.51.100.9:27005".parse().unwrap();
    for _ in 0..100 {
        let _ = ad.admit_query(now, flooder);
    }
    g.bench_function("admission_refuse_flooding_source", |b| {
        b.iter(|| black_box(ad.admit_query(now, flooder)))
    });
    g.finish();
}

/// What a DP registration costs the core outside the kernel: 10,000 servers (32 per 127.x.y.z
/// host, as `muster-loadgen fleet --protocol dp` registers them, the loopback trusted as in
/// `benches/paths.sh`) through the whole handshake into a fresh master, in batches of 64 as the
/// engine hands them over: `heartbeat` → `getinfo` → `infoResponse`. The infoResponses carry the
/// challenges the same secret and clock give, so every one lists its server.
fn registration(c: &mut Criterion) {
    use muster::master::transmit::Transmit;
    use muster::master::{Config, Datagram, Master};
    use muster::wire::dp_server::GetInfo;
    const SERVERS: u32 = 10_000;
    const BATCH: usize = 64;
    let now = Time::from_secs(10);
    let config = || {
        let mut c = Config::with_secret([7; 16]);
        c.limits.allow_private = true;
        c.limits.max_servers_per_ip = 64;
        c.limits.max_servers_per_net = u16::MAX;
        c.admission.trusted = vec!["127.0.0.0/8".parse().unwrap()];
        c
    };
    let from = |i: u32| {
        let host = 0x7F0A_0000 + i / 32;
        SocketAddr::from((Ipv4Addr::from(host), 20_000 + (i % 32) as u16))
    };
    let heartbeat = b"\xFF\xFF\xFF\xFFheartbeat DarkPlaces\n".to_vec();
    // The infoResponses, answering the challenges a master with this secret gives at `now`.
    let mut m = Master::new(now, config(), 0, 1);
    let mut info = Vec::new();
    for i in 0..SERVERS {
        m.handle(now, from(i), 0, &heartbeat).unwrap();
        let sent: Vec<Transmit> = m.transmits(now);
        let getinfo = sent[0].datagrams().remove(0);
        let challenge = GetInfo::decode(&getinfo).unwrap().challenge.to_vec();
        info.push(
            [
                &b"\xFF\xFF\xFF\xFFinfoResponse\n"[..],
                format!(
                    "\\gamename\\Nexuiz\\modname\\data\\sv_maxclients\\16\\clients\\{}\\bots\\0\\mapname\\dm1\\hostname\\muster-loadgen #{i}\\protocol\\3\\challenge\\",
                    i % 17
                )
                .as_bytes(),
                &challenge,
            ]
            .concat(),
        );
    }
    let heartbeats: Vec<Datagram<'_>> = (0..SERVERS)
        .map(|i| Datagram {
            from: from(i),
            local: 0,
            bytes: &heartbeat,
        })
        .collect();
    let responses: Vec<Datagram<'_>> = (0..SERVERS)
        .map(|i| Datagram {
            from: from(i),
            local: 0,
            bytes: &info[i as usize],
        })
        .collect();
    let mut g = c.benchmark_group("master");
    g.sample_size(20);
    g.throughput(Throughput::Elements(u64::from(SERVERS)));
    g.bench_function("register_10k_dp_full_handshake", |b| {
        b.iter_batched(
            || Master::new(now, config(), 0, 1),
            |mut m| {
                let mut out = Vec::new();
                for (hb, ir) in heartbeats.chunks(BATCH).zip(responses.chunks(BATCH)) {
                    m.handle_batch(now, hb, false);
                    out.clear();
                    m.poll_transmit(now, &mut out, usize::MAX);
                    black_box(&out);
                    m.handle_batch(now, ir, false);
                }
                assert_eq!(m.table().len(), SERVERS as usize, "{:?}", m.counters());
                m
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Floors measured in the same run, so the figures above can be read as ratios on a noisy machine.
fn baselines(c: &mut Criterion) {
    let mut g = c.benchmark_group("master");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(N)));
    // What copying the records costs (a snapshot does not: it shares them).
    let t = table(N, 0, 1, Time::from_secs(1));
    let records: Vec<Server> = t.iter().copied().collect();
    g.bench_function("baseline_copy_100k_records", |b| {
        b.iter(|| black_box(records.clone()))
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

criterion_group!(
    benches,
    upsert,
    builder,
    lists,
    scan_cost,
    admission,
    registration,
    baselines
);
criterion_main!(benches);
