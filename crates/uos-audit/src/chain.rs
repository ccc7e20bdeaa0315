//! Sealing events into the hash chain and verifying single events and whole chains.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::SubsecRound as _;
use sha2::{Digest as _, Sha256};
use uos_keys::{PublicKey, SigningKey};

use crate::canonical::{redact, write_canonical, write_str};
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
        personal: Default::default(),
        erased: Vec::new(),
    };
    sealed.hash = compute_hash(&sealed);
    sealed.signature = STANDARD.encode(key.sign(&hash_bytes(&sealed.hash)));
    sealed
}

/// Lowercase hex SHA-256 of the event's canonical JSON without `hash` and `signature` — what
/// `hash` must equal.
pub fn compute_hash(e: &AuditEvent) -> String {
    let mut input = Vec::with_capacity(1024);
    write_hash_input(e, &mut input);
    hex::encode(Sha256::digest(&input))
}

/// The canonical JSON of every field except `hash` and `signature`, named as in the serialized
/// event: an object with its keys in bytewise order, written field by field (rather than
/// built as a `Value` and sorted), since verification hashes every event. Spelled out here,
/// instead of derived from the serde attributes, so that a change to the wire format cannot
/// silently change what existing hashes cover; the tests hold it to the object it stands for.
/// `personal` and `erased` are left out on purpose: they are what a reader could decrypt
/// today, which changes when a subject is purged, while the ciphertext they come from (in
/// `changes`) is hashed and never changes.
///
/// Events of the [`LEGACY_CHAIN`] were hashed before events had a chain, so for them `chain` is
/// left out: their hashes stay what they were. Relabelling any other event as legacy changes
/// what its hash covers, which verification reports as an edit.
fn write_hash_input(e: &AuditEvent, out: &mut Vec<u8>) {
    let opt = |v: Option<&str>, out: &mut Vec<u8>| match v {
        Some(s) => write_str(s, out),
        None => out.extend_from_slice(b"null"),
    };
    out.extend_from_slice(b"{\"action\":");
    write_str(&e.action, out);
    out.extend_from_slice(b",\"actor\":{\"id\":");
    opt(e.actor.id.as_deref(), out);
    out.extend_from_slice(b",\"type\":");
    write_str(&e.actor.kind, out);
    out.push(b'}');
    if e.chain != LEGACY_CHAIN {
        out.extend_from_slice(b",\"chain\":");
        write_str(&e.chain, out);
    }
    out.extend_from_slice(b",\"changes\":{\"after\":");
    write_canonical(&e.changes.after, out);
    out.extend_from_slice(b",\"before\":");
    write_canonical(&e.changes.before, out);
    out.extend_from_slice(b"},\"id\":");
    write_str(&e.id.to_string(), out);
    out.extend_from_slice(b",\"key_id\":");
    write_str(&e.key_id, out);
    out.extend_from_slice(b",\"occurred_at\":");
    write_str(&format_time(&e.occurred_at), out);
    out.extend_from_slice(b",\"org_id\":");
    opt(e.org_id.map(|o| o.to_string()).as_deref(), out);
    out.extend_from_slice(b",\"prev_hash\":");
    write_str(&e.prev_hash, out);
    out.extend_from_slice(b",\"request_id\":");
    opt(e.request_id.as_deref(), out);
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(e.seq.to_string().as_bytes());
    out.extend_from_slice(b",\"target\":{\"id\":");
    opt(e.target.id.as_deref(), out);
    out.extend_from_slice(b",\"type\":");
    write_str(&e.target.kind, out);
    out.extend_from_slice(b"}}");
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
    if !keys.iter().any(|k| k.key_id == e.key_id) {
        return Err(fail(VerifyErrorKind::UnknownKey(e.key_id.clone())));
    }
    if !signature_valid(e, keys) {
        return Err(fail(VerifyErrorKind::BadSignature));
    }
    Ok(())
}

/// Whether `signature` is valid for `hash` under the key `key_id` names (false for a key not
/// in `keys`).
fn signature_valid(e: &AuditEvent, keys: &[PublicKey]) -> bool {
    let Some(key) = keys.iter().find(|k| k.key_id == e.key_id) else {
        return false;
    };
    let signature = STANDARD.decode(&e.signature).unwrap_or_default();
    key.verify(&hash_bytes(&e.hash), &signature)
}

/// Which signatures a chain verification checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Signatures {
    /// Every event's: each event then stands on its own (what a consumer of single events,
    /// such as the stream, relies on).
    #[default]
    Every,
    /// The last event's of each chain (and, where one is given, the checkpoint's). Every
    /// hash, link and seq is still checked; since each event's hash covers the previous
    /// event's hash, a valid signature on the last event vouches for the content of every
    /// event before it. What this does not check is the signature *field* of earlier events.
    /// When anything fails, the chain is checked again up to there with [`Signatures::Every`],
    /// so the event reported is the one a full check would report.
    Last,
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
    verify_chain_with(events, keys, start, Signatures::Every)
}

/// [`verify_chain`], checking the signatures `signatures` says.
pub fn verify_chain_with<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    keys: &[PublicKey],
    start: Option<(i64, &str)>,
    signatures: Signatures,
) -> Result<ChainReport, VerifyError> {
    let events: Vec<&AuditEvent> = events.into_iter().collect();
    check_chain(&events, keys, start, signatures).map_err(|(_, e)| e)
}

/// [`verify_chain_with`] over a slice; a failure also gives the index of the event it is at.
pub(crate) fn check_chain(
    events: &[&AuditEvent],
    keys: &[PublicKey],
    start: Option<(i64, &str)>,
    signatures: Signatures,
) -> Result<ChainReport, (usize, VerifyError)> {
    let hashed = crate::par::map(events, |e| compute_hash(e) == e.hash);
    let signed = match signatures {
        Signatures::Every => crate::par::map(events, |e| signature_valid(e, keys)),
        Signatures::Last => Vec::new(),
    };
    let (mut expected_seq, start_hash) = start.unwrap_or((1, GENESIS_HASH));
    let mut prev_hash = start_hash;
    let mut chain: Option<&str> = None;
    for (i, e) in events.iter().enumerate() {
        let problem = if !hashed[i] {
            Some(VerifyErrorKind::HashMismatch)
        } else if !keys.iter().any(|k| k.key_id == e.key_id) {
            Some(VerifyErrorKind::UnknownKey(e.key_id.clone()))
        } else if !match signatures {
            Signatures::Every => signed[i],
            Signatures::Last => i + 1 < events.len() || signature_valid(e, keys),
        } {
            Some(VerifyErrorKind::BadSignature)
        } else if *chain.get_or_insert(e.chain.as_str()) != e.chain {
            Some(VerifyErrorKind::WrongChain {
                expected: chain.unwrap_or_default().to_owned(),
            })
        } else if e.prev_hash != prev_hash {
            Some(VerifyErrorKind::BrokenLink)
        } else if e.seq != expected_seq {
            Some(VerifyErrorKind::SeqGap {
                expected: expected_seq,
            })
        } else {
            None
        };
        if let Some(kind) = problem {
            if signatures == Signatures::Last {
                // An event before this one may carry the signature that exposes the change.
                check_chain(&events[..=i], keys, start, Signatures::Every)?;
            }
            return Err((
                i,
                VerifyError {
                    chain: e.chain.clone(),
                    seq: e.seq,
                    kind,
                },
            ));
        }
        prev_hash = &e.hash;
        expected_seq = expected_seq.saturating_add(1);
    }
    Ok(ChainReport {
        chain: chain.unwrap_or_default().to_owned(),
        events: events.len() as u64,
        head_seq: expected_seq.saturating_sub(1),
        head_hash: prev_hash.to_owned(),
    })
}

/// Verifies events of any number of chains, as an export of several orgs or of the whole trail
/// holds them: each chain's events, in the order given, as one chain from genesis
/// ([`verify_chain`]). Reports one per chain, ordered by chain name; stops at the first problem.
pub fn verify_chains<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    keys: &[PublicKey],
) -> Result<Vec<ChainReport>, VerifyError> {
    verify_chains_with(events, keys, Signatures::Every)
}

/// [`verify_chains`], checking the signatures `signatures` says.
pub fn verify_chains_with<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    keys: &[PublicKey],
    signatures: Signatures,
) -> Result<Vec<ChainReport>, VerifyError> {
    let mut chains: BTreeMap<&str, Vec<&AuditEvent>> = BTreeMap::new();
    for e in events {
        chains.entry(e.chain.as_str()).or_default().push(e);
    }
    chains
        .into_values()
        .map(|events| check_chain(&events, keys, None, signatures).map_err(|(_, e)| e))
        .collect()
}
