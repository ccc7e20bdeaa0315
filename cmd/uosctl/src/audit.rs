//! `uosctl audit …`: offline verification of an audit export.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify hashes, signatures and chain links of exported audit events, in the order given.
    #[command(after_help = "Exit status: 0 the chain is valid, 1 it is not, 2 unreadable input.")]
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// NDJSON export, or the JSON body of `GET /v1/audit/events`; `-` reads stdin.
    #[arg(long, value_name = "FILE|-")]
    events: PathBuf,
    /// The JSON body of `GET /v1/audit/keys`.
    #[arg(long, value_name = "FILE")]
    keys: PathBuf,
    /// Seq of the first event, when verifying a segment that does not start at genesis.
    #[arg(long, requires = "start_prev_hash")]
    start_seq: Option<i64>,
    /// Hash of the event just before the segment (the first event's expected `prev_hash`).
    #[arg(long, requires = "start_seq")]
    start_prev_hash: Option<String>,
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => verify(&args),
    }
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let events = uos_audit::parse_events(&read_input(&args.events)?)
        .with_context(|| format!("reading events from {}", args.events.display()))?;
    let keys = uos_audit::parse_keys(&read_input(&args.keys)?)
        .with_context(|| format!("reading keys from {}", args.keys.display()))?;
    let start = args.start_seq.zip(args.start_prev_hash.as_deref());
    match uos_audit::verify_chain(&events, &keys, start) {
        Ok(report) => {
            println!(
                "ok: {} events, head seq {} hash {}",
                report.events, report.head_seq, report.head_hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAILED: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}
