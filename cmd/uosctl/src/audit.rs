//! `uosctl audit …`: offline verification of an audit export.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify hashes, signatures and chain links of exported audit events, each chain's in the
    /// order given, and with `--checkpoint` that no chain lost its tail.
    #[command(
        after_help = "Exit status: 0 every chain is valid, 1 one is not, 2 unreadable input."
    )]
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
    /// A signed checkpoint (`GET /v1/audit/checkpoints`: the last one of its `items` is taken):
    /// each chain in the events must reach the head the checkpoint saw, with its hash.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Seq of the first event, when verifying a segment of one chain that does not start at
    /// genesis.
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
    let checkpoint = args
        .checkpoint
        .as_deref()
        .map(read_checkpoint)
        .transpose()?;
    let verified = match args.start_seq.zip(args.start_prev_hash.as_deref()) {
        Some(start) => uos_audit::verify_chain(&events, &keys, Some(start)).map(|r| vec![r]),
        None => uos_audit::verify_chains(&events, &keys),
    };
    let reports = match verified {
        Ok(reports) => reports,
        Err(e) => {
            println!("FAILED: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(c) = &checkpoint {
        if let Err(e) = hold_to_checkpoint(c, &keys, &events, &reports) {
            println!("FAILED: {e}");
            return Ok(ExitCode::FAILURE);
        }
    }
    for r in &reports {
        println!(
            "ok: {}: {} events, head seq {} hash {}",
            r.chain, r.events, r.head_seq, r.head_hash
        );
    }
    if let Some(c) = &checkpoint {
        println!(
            "ok: every chain reaches checkpoint {} of {}",
            c.checkpoint_id, c.issued_at
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The checkpoint is signed by a trusted key, and each verified chain reaches what it saw.
fn hold_to_checkpoint(
    c: &uos_audit::Checkpoint,
    keys: &[uos_keys::PublicKey],
    events: &[uos_audit::AuditEvent],
    reports: &[uos_audit::ChainReport],
) -> Result<(), uos_audit::CheckpointError> {
    uos_audit::verify_checkpoint(c, keys)?;
    for r in reports {
        let chain: Vec<_> = events
            .iter()
            .filter(|e| e.chain == r.chain)
            .cloned()
            .collect();
        uos_audit::check_against_checkpoint(c, &r.chain, &chain)?;
    }
    Ok(())
}

/// One checkpoint, or the last of a `GET /v1/audit/checkpoints` body.
fn read_checkpoint(path: &Path) -> anyhow::Result<uos_audit::Checkpoint> {
    let mut value: serde_json::Value = serde_json::from_str(&read_input(path)?)
        .with_context(|| format!("reading the checkpoint from {}", path.display()))?;
    if let Some(items) = value.get_mut("items").map(serde_json::Value::take) {
        value = items
            .as_array()
            .and_then(|items| items.last().cloned())
            .with_context(|| format!("{}: no checkpoint in its items", path.display()))?;
    }
    serde_json::from_value(value).with_context(|| format!("{}: not a checkpoint", path.display()))
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
