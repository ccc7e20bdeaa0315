//! Developer tasks: `cargo xtask ci` (the whole test suite, as CI runs it) and
//! `cargo xtask bench` (seed + load benchmark against the release binary).

mod bench;
mod ci;
mod services;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "user-org-service developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Format check, clippy, and every test including the PostgreSQL suites (starts PostgreSQL
    /// if it is not running; fails if it stays unreachable).
    Ci,
    /// Seed users and measure list/invite latency with wrk against the release binary.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ci => ci::run(),
        Command::Bench(args) => bench::run(args),
    }
}
