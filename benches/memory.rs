//! Bytes per listed server: the table's own accounting (`Table::heap_bytes`), the shared list's, and
//! the process's resident-set growth, for three populations on two shards (as `--cores 2` runs):
//!
//! - `valve-typical`: the GoldSrc heartbeat of shared/docs/protocols.md §2, one of 8 maps, the
//!   hostname shared by many (as a big hosting company's servers are);
//! - `dp-unique`: DarkPlaces servers each with its own hostname (`muster-loadgen #i`, what
//!   `muster-loadgen fleet` registers and what the 1M goal is stated for);
//! - `worst`: every string of every server unique and maximal (7 strings × 255 bytes): the string
//!   budget (`max_string_mib`, default 128) is what bounds it.
//!
//! Run: `cargo bench --bench memory` (add `-- 100000` for a quicker run). Prints a table; asserts
//! nothing (the bound itself is tested in `master::table`; the figures go to docs/benchmarks.md).

use muster::master::Budget;
use muster::master::Family;
use muster::master::Limits;
use muster::master::ListBuilder;
use muster::master::Time;
use muster::master::steer;
use muster::master::{Fields, Table};
use muster::wire::dp_list::MAX_RESPONSE_LEN;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SHARDS: usize = 2;
const STRING_BUDGET: usize = muster::master::service::DEFAULT_MAX_STRING_BYTES;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
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

#[derive(Clone, Copy)]
enum Population {
    ValveTypical,
    DpUnique,
    Worst,
}

impl Population {
    fn name(self) -> &'static str {
        match self {
            Population::ValveTypical => "valve-typical",
            Population::DpUnique => "dp-unique",
            Population::Worst => "worst",
        }
    }
}

/// A string of exactly `len` bytes unique to (`i`, `field`).
fn unique(i: u32, field: u8, len: usize) -> Vec<u8> {
    let mut s = format!("{field}-{i}-").into_bytes();
    s.resize(len, b'x');
    s
}

fn measure(p: Population, n: u32) {
    let before = rss_bytes();
    let limits = Limits {
        // A deployment sized for them: each shard reserves its share up front.
        max_servers: n as usize,
        max_servers_per_ip: 64,
        max_servers_per_net: u16::MAX,
        allow_private: true,
        ..Limits::default()
    };
    let budget = Budget::shared(limits.max_servers, SHARDS);
    let mut tables: Vec<Table> = (0..SHARDS)
        .map(|_| {
            Table::with_budget(
                Time::ZERO,
                limits.clone(),
                budget.clone(),
                STRING_BUDGET / SHARDS,
            )
        })
        .collect();
    let mut builder = ListBuilder::new(SHARDS, MAX_RESPONSE_LEN);
    let mut list = None;
    let now = Time::from_secs(1);
    for i in 0..n {
        // 32 servers per address, as the fleet registers them (and as big hosts run them).
        let ip = Ipv4Addr::from(0x0A00_0000 | (i / 32));
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, 27000 + (i % 32) as u16));
        let host = format!("muster-loadgen #{i}").into_bytes();
        let (family, game, product, map, version, tags, gamedata, hostname);
        let owned: Vec<Vec<u8>>;
        match p {
            Population::ValveTypical => {
                family = Family::Valve;
                (game, product, version) = (&b"cstrike"[..], &b"cstrike"[..], &b"1.1.2.7"[..]);
                map = MAPS[(i % 8) as usize];
                (tags, gamedata) = (&b""[..], &b""[..]);
                hostname = &b"Counter-Strike 1.6 Server"[..];
            }
            Population::DpUnique => {
                family = Family::DarkPlaces;
                (game, product, map, version) =
                    (&b"Nexuiz"[..], &b"data"[..], &b"dm1"[..], &b""[..]);
                (tags, gamedata) = (&b""[..], &b""[..]);
                hostname = &host[..];
            }
            Population::Worst => {
                family = Family::Valve;
                owned = (0..7u8).map(|f| unique(i, f, 255)).collect();
                (game, product, map, version) =
                    (&owned[0][..], &owned[1][..], &owned[2][..], &owned[3][..]);
                (tags, gamedata, hostname) = (&owned[4][..], &owned[5][..], &owned[6][..]);
            }
        }
        let f = Fields {
            region: 255,
            server_type: b'd',
            players: (i % 17) as u8,
            max_players: 16,
            flags: 1,
            protocol: if family == Family::DarkPlaces { 3 } else { 48 },
            game,
            product,
            map,
            version,
            tags,
            gamedata,
            hostname,
            ..Default::default()
        };
        let shard = steer::shard_for(addr.ip(), SHARDS);
        if let Some(t) = tables.get_mut(shard) {
            let _ = t.upsert(now, addr, family, &f);
        }
        // Publish as the engine does, every 64k registrations (CoW copies included).
        if i % 65_536 == 65_535 {
            for (s, t) in tables.iter_mut().enumerate() {
                builder.apply(s, t.snapshot());
            }
            list = builder.build().or(list);
        }
    }
    for (s, t) in tables.iter_mut().enumerate() {
        builder.apply(s, t.snapshot());
    }
    list = builder.build().or(list);
    let listed: usize = tables.iter().map(Table::len).sum();
    let table_bytes: usize = tables.iter().map(Table::heap_bytes).sum();
    let strings: usize = tables.iter().map(|t| t.strings().heap_bytes()).sum();
    let refused: u64 = tables.iter().map(|t| t.strings().refused()).sum();
    let list_bytes = list.as_ref().map_or(0, |l| l.heap_bytes());
    // What the binary does after a rebuild: freed memory goes back to the OS.
    // SAFETY: mi_collect takes no pointers.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let grown = rss_bytes().saturating_sub(before);
    let per = |b: usize| b / listed.max(1);
    println!(
        "| {} | {n} | {listed} | {} | {} | {} | {} | {refused} | {:.0} |",
        p.name(),
        per(table_bytes),
        per(strings),
        per(list_bytes),
        per(grown),
        grown as f64 / (1 << 20) as f64,
    );
    drop(list);
    drop(builder);
    drop(tables);
}

/// Each population in a process of its own (so one's freed memory is not the next one's).
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u32 = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let all = [
        Population::ValveTypical,
        Population::DpUnique,
        Population::Worst,
    ];
    if let Some(p) = all.iter().find(|p| args.iter().any(|a| a == p.name())) {
        measure(*p, n);
        return;
    }
    println!(
        "| population | servers | listed | table B/server | of which strings | list B/server | RSS growth B/server | strings refused | RSS growth MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    for p in all {
        let _ = std::process::Command::new(&me)
            .arg(p.name())
            .arg(n.to_string())
            .status();
    }
}
