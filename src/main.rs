//! The `muster` binary: command-line entry point.

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// muster — a fast, safe game master server (Valve master query, GoldSrc/Source/Xash heartbeats,
/// Quake III / DarkPlaces as dpmaster 2.2 speaks it).
#[derive(Debug, Parser)]
#[command(name = "muster", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the master server (not built yet: the engine lands with the thread-per-core engine issue).
    Serve,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => {
            use clap::CommandFactory;
            // Printing help to a closed stdout is not worth a panic.
            let _ = Cli::command().print_help();
            std::process::ExitCode::SUCCESS
        }
        Some(Command::Serve) => {
            eprintln!(
                "muster: `serve` is not implemented yet: the codecs and the sans-IO master core exist, the engine that runs them on sockets does not"
            );
            std::process::ExitCode::FAILURE
        }
    }
}
