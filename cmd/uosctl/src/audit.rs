//! `uosctl audit …`: offline verification of an audit export.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify hashes, signatures and chain links of exported audit events, each chain's in the
    /// order given, and with `--checkpoint` (or an export file's manifest) that no chain lost
    /// its tail. A failure names the first bad line of the file.
    ///
    /// Every event's hash, link and seq is checked, and each chain's last signature (which
    /// vouches for every event before it, since each hash covers the previous one);
    /// `--every-signature` checks each event's signature too. A failure names the same line
    /// either way.
    #[command(
        after_help = "Exit status: 0 every chain is valid, 1 one is not, 2 unreadable input."
    )]
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// An export file (`GET /v1/audit/exports/{id}/download`: events, then its manifest line),
    /// NDJSON events, or the JSON body of `GET /v1/audit/events`; `-` reads stdin.
    #[arg(
        value_name = "FILE|-",
        required_unless_present = "events",
        conflicts_with = "events"
    )]
    file: Option<PathBuf>,
    /// The same as FILE.
    #[arg(long, value_name = "FILE|-")]
    events: Option<PathBuf>,
    /// The JSON body of `GET /v1/audit/keys`. Unset: the keys in the export's manifest.
    #[arg(long, value_name = "FILE")]
    keys: Option<PathBuf>,
    /// A signed checkpoint (`GET /v1/audit/checkpoints`: the last one of its `items` is taken):
    /// each chain in the events must reach the head the checkpoint saw, with its hash. Unset:
    /// the latest checkpoint in the export's manifest.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Seq of the first event, when verifying a segment of one chain that does not start at
    /// genesis.
    #[arg(long, requires = "start_prev_hash")]
    start_seq: Option<i64>,
    /// Hash of the event just before the segment (the first event's expected `prev_hash`).
    #[arg(long, requires = "start_seq")]
    start_prev_hash: Option<String>,
    /// Check every event's signature, not only each chain's last (3 to 4 times slower).
    #[arg(long)]
    every_signature: bool,
}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => verify(&args),
    }
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let path = args
        .file
        .as_deref()
        .or(args.events.as_deref())
        .context("name the file to verify")?;
    let text = read_input(path)?;
    let checkpoint = args
        .checkpoint
        .as_deref()
        .map(read_checkpoint)
        .transpose()?;
    // A list body (`{"items": [...]}`) has no lines to name; NDJSON and export files do.
    let file = match uos_audit::parse_export(&text) {
        Ok(file) => file,
        Err(ndjson_error) => match uos_audit::parse_events(&text) {
            Ok(events) => uos_audit::ExportFile {
                lines: (1..=events.len()).collect(),
                events,
                manifest: None,
            },
            Err(_) => {
                return Err(ndjson_error)
                    .with_context(|| format!("reading events from {}", path.display()))
            }
        },
    };
    let keys = match (&args.keys, &file.manifest) {
        (Some(keys), _) => uos_audit::parse_keys(&read_input(keys)?)
            .with_context(|| format!("reading keys from {}", keys.display()))?,
        (None, Some((_, manifest))) => manifest.keys.clone(),
        (None, None) => anyhow::bail!(
            "{} has no manifest with the audit keys: give them with --keys",
            path.display()
        ),
    };
    let signatures = if args.every_signature {
        uos_audit::Signatures::Every
    } else {
        uos_audit::Signatures::Last
    };
    if let Some(start) = args.start_seq.zip(args.start_prev_hash.as_deref()) {
        return verify_segment(&file.events, &keys, start, checkpoint.as_ref(), signatures);
    }
    match uos_audit::verify_export_with(&file, &keys, checkpoint.as_ref(), signatures) {
        Ok(report) => {
            for r in &report.chains {
                println!(
                    "ok: {}: {} events, head seq {} hash {}",
                    r.chain, r.events, r.head_seq, r.head_hash
                );
            }
            if let Some(id) = report.checkpoint {
                println!("ok: every chain reaches checkpoint {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAILED: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// One chain's segment that starts after genesis at `start` (seq and the previous hash).
fn verify_segment(
    events: &[uos_audit::AuditEvent],
    keys: &[uos_keys::PublicKey],
    start: (i64, &str),
    checkpoint: Option<&uos_audit::Checkpoint>,
    signatures: uos_audit::Signatures,
) -> anyhow::Result<ExitCode> {
    let report = match uos_audit::verify_chain_with(events, keys, Some(start), signatures) {
        Ok(report) => report,
        Err(e) => {
            println!("FAILED: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Some(c) = checkpoint {
        if let Err(e) = hold_to_checkpoint(c, keys, events, std::slice::from_ref(&report)) {
            println!("FAILED: {e}");
            return Ok(ExitCode::FAILURE);
        }
    }
    println!(
        "ok: {}: {} events, head seq {} hash {}",
        report.chain, report.events, report.head_seq, report.head_hash
    );
    if let Some(c) = checkpoint {
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
