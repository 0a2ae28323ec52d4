//! `muster-loadgen`: load generator for game master servers (fleets, query storms, floods, crawls,
//! the loopback ceiling). Its subcommands land with the load-generator issue; today it only parses
//! its command line and shares muster's codecs.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for game master servers. Subcommands are not built yet.
#[derive(Debug, Parser)]
#[command(name = "muster-loadgen", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    // Linked so the load generator and the master never disagree on bytes.
    let _ = muster::wire::classify(b"");
    eprintln!("muster-loadgen: no subcommands yet (see the load-generator issue)");
}
