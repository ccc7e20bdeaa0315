//! Sealing events into the hash chain and verifying single events and whole chains.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::SubsecRound as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use uos_keys::{PublicKey, SigningKey};

use crate::canonical::{canonical_json, redact};
use crate::checkpoint::{chain_of, LEGACY_CHAIN};
use crate::event::{format_time, AuditEvent, NewEvent};

/// The `prev_hash` of the first event (seq 1): 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Places `event` at `seq` of its chain ([`chain_of`] its org), after the event whose hash is
/// `prev_hash`, and signs it.
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
        chain: chain_of(org_id),
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
///
/// Events of the [`LEGACY_CHAIN`] were hashed before events had a chain, so for them `chain` is
/// left out: their hashes stay what they were. Relabelling any other event as legacy changes
/// what its hash covers, which verification reports as an edit.
fn hash_input(e: &AuditEvent) -> Value {
    let mut input = json!({
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
    });
    if e.chain != LEGACY_CHAIN {
        input["chain"] = Value::String(e.chain.clone());
    }
    input
}

/// The raw bytes that are signed. A hash that is not 64 hex chars yields no bytes, which no
/// signature verifies against ours.
fn hash_bytes(hash: &str) -> Vec<u8> {
    hex::decode(hash).unwrap_or_default()
}

/// What is wrong with a chain, and at which event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit event {chain} seq {seq}: {kind}")]
pub struct VerifyError {
    /// The chain the offending event claims.
    pub chain: String,
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
    /// The event belongs to another chain than the events before it.
    WrongChain { expected: String },
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
            Self::WrongChain { expected } => write!(f, "not an event of chain {expected}"),
        }
    }
}

/// Checks one event on its own: content matches `hash`, and `signature` is valid for `hash`
/// under the key named by `key_id`, which must be one of `keys`.
pub fn verify_event(e: &AuditEvent, keys: &[PublicKey]) -> Result<(), VerifyError> {
    let fail = |kind| VerifyError {
        chain: e.chain.clone(),
        seq: e.seq,
        kind,
    };
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
    /// The chain's name (empty when there were no events).
    pub chain: String,
    /// How many events were checked.
    pub events: u64,
    /// Seq and hash of the last event (of the starting point if there were no events): compare
    /// them with what the service reports to detect truncation at the end.
    pub head_seq: i64,
    pub head_hash: String,
}

/// Verifies `events`, all of one chain, in the order given (an export is in seq order, so
/// reordering is detected). `start` is the expected `(seq, prev_hash)` of the first event, for
/// verifying a chain segment; `None` means the chain starts at genesis (seq 1,
/// [`GENESIS_HASH`]).
///
/// Each event is checked on its own first ([`verify_event`]), then that it is on the chain of
/// the first, then its link to the previous one, then its seq. Stops at the first problem.
pub fn verify_chain<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    keys: &[PublicKey],
    start: Option<(i64, &str)>,
) -> Result<ChainReport, VerifyError> {
    let (mut expected_seq, start_hash) = start.unwrap_or((1, GENESIS_HASH));
    let mut prev_hash = start_hash.to_owned();
    let mut count = 0u64;
    let mut chain: Option<&str> = None;
    for e in events {
        verify_event(e, keys)?;
        let expected = *chain.get_or_insert(&e.chain);
        if e.chain != expected {
            return Err(VerifyError {
                chain: e.chain.clone(),
                seq: e.seq,
                kind: VerifyErrorKind::WrongChain {
                    expected: expected.to_owned(),
                },
            });
        }
        if e.prev_hash != prev_hash {
            return Err(VerifyError {
                chain: e.chain.clone(),
                seq: e.seq,
                kind: VerifyErrorKind::BrokenLink,
            });
        }
        if e.seq != expected_seq {
            return Err(VerifyError {
                chain: e.chain.clone(),
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
        chain: chain.unwrap_or_default().to_owned(),
        events: count,
        head_seq: expected_seq.saturating_sub(1),
        head_hash: prev_hash,
    })
}

/// Verifies events of any number of chains, as an export of several orgs or of the whole trail
/// holds them: each chain's events, in the order given, as one chain from genesis
/// ([`verify_chain`]). Reports one per chain, ordered by chain name; stops at the first problem.
pub fn verify_chains<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    keys: &[PublicKey],
) -> Result<Vec<ChainReport>, VerifyError> {
    let mut chains: BTreeMap<&str, Vec<&AuditEvent>> = BTreeMap::new();
    for e in events {
        chains.entry(e.chain.as_str()).or_default().push(e);
    }
    chains
        .into_values()
        .map(|events| verify_chain(events, keys, None))
        .collect()
}
