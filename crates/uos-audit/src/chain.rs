//! Sealing events into the hash chain and verifying single events and whole chains.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::SubsecRound as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use uos_keys::{PublicKey, SigningKey};

use crate::canonical::{canonical_json, redact};
use crate::event::{format_time, AuditEvent, NewEvent};

/// The `prev_hash` of the first event (seq 1): 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Places `event` at `seq` after the event whose hash is `prev_hash`, and signs it.
///
/// Secrets in `changes` are redacted first and `occurred_at` is truncated to microseconds, so
/// what is hashed is exactly what storage keeps and serves.
pub fn seal(event: NewEvent, seq: i64, prev_hash: &str, key: &SigningKey) -> AuditEvent {
    let NewEvent {
        id,
        occurred_at,
        actor,
        action,
        org_id,
        target,
        mut changes,
        request_id,
    } = event;
    redact(&mut changes.before);
    redact(&mut changes.after);
    let mut sealed = AuditEvent {
        id,
        seq,
        occurred_at: occurred_at.trunc_subsecs(6),
        actor,
        action,
        org_id,
        target,
        changes,
        request_id,
        prev_hash: prev_hash.to_owned(),
        hash: String::new(),
        signature: String::new(),
        key_id: key.key_id().to_owned(),
    };
    sealed.hash = compute_hash(&sealed);
    sealed.signature = STANDARD.encode(key.sign(&hash_bytes(&sealed.hash)));
    sealed
}

/// Lowercase hex SHA-256 of the event's canonical JSON without `hash` and `signature` — what
/// `hash` must equal.
pub fn compute_hash(e: &AuditEvent) -> String {
    hex::encode(Sha256::digest(canonical_json(&hash_input(e)).as_bytes()))
}

/// Every field except `hash` and `signature`, named as in the serialized event. Spelled out
/// here, instead of derived from the serde attributes, so that a change to the wire format cannot
/// silently change what existing hashes cover.
fn hash_input(e: &AuditEvent) -> Value {
    json!({
        "id": e.id,
        "seq": e.seq,
        "occurred_at": format_time(&e.occurred_at),
        "actor": {"type": e.actor.kind, "id": e.actor.id},
        "action": e.action,
        "org_id": e.org_id,
        "target": {"type": e.target.kind, "id": e.target.id},
        "changes": {"before": e.changes.before, "after": e.changes.after},
        "request_id": e.request_id,
        "prev_hash": e.prev_hash,
        "key_id": e.key_id,
    })
}

/// The raw bytes that are signed. A hash that is not 64 hex chars yields no bytes, which no
/// signature verifies against ours.
fn hash_bytes(hash: &str) -> Vec<u8> {
    hex::decode(hash).unwrap_or_default()
}

/// What is wrong with a chain, and at which event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit event seq {seq}: {kind}")]
pub struct VerifyError {
    /// The `seq` the offending event claims.
    pub seq: i64,
    pub kind: VerifyErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyErrorKind {
    /// The content does not match `hash`: the event was edited.
    HashMismatch,
    /// `prev_hash` is not the previous event's hash: an event was deleted, inserted or moved.
    BrokenLink,
    /// The chain is intact but numbered wrongly.
    SeqGap { expected: i64 },
    /// `hash` matches the content but the signature does not: the event was re-hashed by
    /// someone without the audit key.
    BadSignature,
    /// Signed with a key that is not among the trusted keys.
    UnknownKey(String),
}

impl fmt::Display for VerifyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HashMismatch => f.write_str("content does not match its hash (event edited)"),
            Self::BrokenLink => f.write_str(
                "prev_hash is not the hash of the previous event \
                 (event deleted, inserted or reordered)",
            ),
            Self::SeqGap { expected } => write!(f, "expected seq {expected}"),
            Self::BadSignature => f.write_str("signature is not valid for its hash"),
            Self::UnknownKey(key_id) => write!(f, "signed by unknown key {key_id:?}"),
        }
    }
}

/// Checks one event on its own: content matches `hash`, and `signature` is valid for `hash`
/// under the key named by `key_id`, which must be one of `keys`.
pub fn verify_event(e: &AuditEvent, keys: &[PublicKey]) -> Result<(), VerifyError> {
    let fail = |kind| VerifyError { seq: e.seq, kind };
    if compute_hash(e) != e.hash {
        return Err(fail(VerifyErrorKind::HashMismatch));
    }
    let key = keys
        .iter()
        .find(|k| k.key_id == e.key_id)
        .ok_or_else(|| fail(VerifyErrorKind::UnknownKey(e.key_id.clone())))?;
    let signature = STANDARD.decode(&e.signature).unwrap_or_default();
    if !key.verify(&hash_bytes(&e.hash), &signature) {
        return Err(fail(VerifyErrorKind::BadSignature));
    }
    Ok(())
}

/// Summary of a verified chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// How many events were checked.
    pub events: u64,
    /// Seq and hash of the last event (of the starting point if there were no events): compare
    /// them with what the service reports to detect truncation at the end.
    pub head_seq: i64,
    pub head_hash: String,
}

/// Verifies `events` in the order given (an export is in seq order, so reordering is detected).
/// `start` is the expected `(seq, prev_hash)` of the first event, for verifying a chain segment;
/// `None` means the chain starts at genesis (seq 1, [`GENESIS_HASH`]).
///
/// Each event is checked on its own first ([`verify_event`]), then its link to the previous one,
/// then its seq. Stops at the first problem.
pub fn verify_chain<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    keys: &[PublicKey],
    start: Option<(i64, &str)>,
) -> Result<ChainReport, VerifyError> {
    let (mut expected_seq, start_hash) = start.unwrap_or((1, GENESIS_HASH));
    let mut prev_hash = start_hash.to_owned();
    let mut count = 0u64;
    for e in events {
        verify_event(e, keys)?;
        if e.prev_hash != prev_hash {
            return Err(VerifyError {
                seq: e.seq,
                kind: VerifyErrorKind::BrokenLink,
            });
        }
        if e.seq != expected_seq {
            return Err(VerifyError {
                seq: e.seq,
                kind: VerifyErrorKind::SeqGap {
                    expected: expected_seq,
                },
            });
        }
        prev_hash.clone_from(&e.hash);
        expected_seq = expected_seq.saturating_add(1);
        count += 1;
    }
    Ok(ChainReport {
        events: count,
        head_seq: expected_seq.saturating_sub(1),
        head_hash: prev_hash,
    })
}
