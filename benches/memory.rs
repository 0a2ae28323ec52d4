//! Bytes per listed server at 100k and 1M: the table's own accounting (`Table::heap_bytes`) and the
//! process's resident-set growth, for the GoldSrc heartbeat of shared/docs/protocols.md §2.
//! Run: `cargo bench --bench memory`. Prints a table; asserts nothing (figures go to the docs).

use muster::master::policy::Limits;
use muster::master::record::Family;
use muster::master::table::{Fields, Table};
use muster::master::time::Time;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

fn main() {
    println!("| servers | table heap bytes/server | RSS growth bytes/server |");
    println!("|---|---|---|");
    for n in [100_000u32, 1_000_000] {
        let before = rss_bytes();
        let mut t = Table::new(
            Time::ZERO,
            Limits {
                max_servers: 2_000_000,
                allow_private: true,
                ..Limits::default()
            },
        );
        for i in 0..n {
            // Typical internet spread: ~2 servers per IPv4 address.
            let ip = (i / 2).wrapping_mul(2_654_435_761) | 0x0100_0000;
            let addr = SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(ip),
                27015 + (i % 2) as u16,
            ));
            // The doc's GoldSrc heartbeat: cstrike, one of 8 maps, version 1.1.2.7, product cstrike.
            let f = Fields {
                region: 255,
                server_type: b'd',
                players: (i % 17) as u8,
                max_players: 16,
                flags: 1,
                protocol: 48,
                game: b"cstrike",
                product: b"cstrike",
                map: MAPS[(i % 8) as usize],
                version: b"1.1.2.7",
                ..Default::default()
            };
            t.upsert(Time::from_secs(1), addr, Family::Valve, &f)
                .unwrap();
        }
        let grown = rss_bytes().saturating_sub(before);
        println!(
            "| {n} | {} | {} |",
            t.heap_bytes() / n as usize,
            grown / n as usize
        );
        drop(t);
    }
}
