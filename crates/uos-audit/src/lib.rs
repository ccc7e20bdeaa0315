//! Tamper-evident audit trail: event types, canonical encoding, secret redaction, the hash chain,
//! Ed25519 signatures, and the verifier used both by the service and offline by `uosctl`.
//!
//! Each event's `hash` is SHA-256 over the canonical JSON of the event without `hash` and
//! `signature`; it includes `prev_hash` (the previous event's hash) and `seq`, so editing,
//! deleting, inserting or reordering events breaks the chain, and the signature over the hash
//! means only the holder of the audit key can extend it. Signed checkpoints of every chain's
//! head let a verifier also detect a truncated tail, which no chain can show by itself.

mod action;
mod canonical;
mod chain;
mod checkpoint;
mod event;
mod export;
mod par;

pub use action::{audit_events_markdown, AuditAction, TargetKind};
pub use canonical::{canonical_json, redact, REDACTED};
pub use chain::{
    compute_hash, seal, verify_chain, verify_chain_with, verify_chains, verify_chains_with,
    verify_event, ChainReport, Signatures, VerifyError, VerifyErrorKind, GENESIS_HASH,
};
pub use checkpoint::{
    chain_of, check_against_checkpoint, sign_checkpoint, verify_checkpoint, ChainHead, Checkpoint,
    CheckpointError, LEGACY_CHAIN, PLATFORM_CHAIN,
};
pub use event::{
    parse_events, parse_keys, parse_ndjson, Actor, AuditEvent, Changes, NewEvent, Target,
};
pub use export::{
    parse_export, verify_export, verify_export_with, ExportError, ExportFile, ExportReport,
    Manifest,
};

/// Input that is not a readable audit export or key list.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: not a valid audit event: {source}")]
    Line {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}: not a valid export manifest: {why}")]
    Manifest { line: usize, why: String },
    #[error("not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("expected {0}")]
    Shape(&'static str),
}
