//! Signed checkpoints: the audit key's signed statement of every chain's head at one moment.
//!
//! A hash chain alone cannot show a truncated tail: delete the last events and what remains
//! still links and verifies. A verifier that also holds a checkpoint issued after those events
//! knows how far each chain reached, and which hash it had there.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, SubsecRound as _, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use uos_keys::{PublicKey, SigningKey};
use uuid::Uuid;

use crate::canonical::canonical_json;
use crate::event::{format_time, micros_rfc3339, AuditEvent};

/// The chain of events that belong to no org.
pub const PLATFORM_CHAIN: &str = "platform";

/// The single chain of every event written before chains were per org. It never grows; the
/// first checkpoint after the upgrade records where it ended.
pub const LEGACY_CHAIN: &str = "legacy";

/// The chain an event belongs to: `org:<org_id>`, or [`PLATFORM_CHAIN`] without an org.
pub fn chain_of(org_id: Option<Uuid>) -> String {
    org_id.map_or_else(|| PLATFORM_CHAIN.to_owned(), |id| format!("org:{id}"))
}

/// Where one chain ended when a checkpoint was issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub chain: String,
    /// The `seq` of the chain's last event (0 for a chain with none yet).
    pub seq: i64,
    /// That event's `hash`.
    pub hash: String,
}

/// A signed checkpoint, as served and exported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub checkpoint_id: Uuid,
    #[serde(with = "micros_rfc3339")]
    pub issued_at: DateTime<Utc>,
    /// One per chain, ordered by chain name.
    pub heads: Vec<ChainHead>,
    pub key_id: String,
    /// Standard base64 of the Ed25519 signature over the SHA-256 of the checkpoint's canonical
    /// JSON without `signature`.
    pub signature: String,
}

/// Signs `heads` (one per chain) as checkpoint `id`, issued at `issued_at` (truncated to
/// microseconds, as stored).
pub fn sign_checkpoint(
    id: Uuid,
    issued_at: DateTime<Utc>,
    mut heads: Vec<ChainHead>,
    key: &SigningKey,
) -> Checkpoint {
    heads.sort_by(|a, b| a.chain.cmp(&b.chain));
    let mut checkpoint = Checkpoint {
        checkpoint_id: id,
        issued_at: issued_at.trunc_subsecs(6),
        heads,
        key_id: key.key_id().to_owned(),
        signature: String::new(),
    };
    checkpoint.signature = STANDARD.encode(key.sign(&digest(&checkpoint)));
    checkpoint
}

/// SHA-256 of every field but `signature`, spelled out so that a change to the wire format
/// cannot silently change what existing signatures cover.
fn digest(c: &Checkpoint) -> [u8; 32] {
    let heads: Vec<_> = c
        .heads
        .iter()
        .map(|h| json!({"chain": h.chain, "seq": h.seq, "hash": h.hash}))
        .collect();
    let input = json!({
        "checkpoint_id": c.checkpoint_id,
        "issued_at": format_time(&c.issued_at),
        "heads": heads,
        "key_id": c.key_id,
    });
    Sha256::digest(canonical_json(&input).as_bytes()).into()
}

/// What is wrong with a checkpoint, or with a chain measured against one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint signed by unknown key {0:?}")]
    UnknownKey(String),
    #[error("checkpoint signature is not valid (checkpoint edited)")]
    BadSignature,
    #[error("chain {chain}: the checkpoint saw it reach seq {expected}, the events end at {found} (tail truncated)")]
    Truncated {
        chain: String,
        expected: i64,
        found: i64,
    },
    #[error(
        "chain {chain}: the event at seq {seq} is not the one the checkpoint saw (chain rewritten)"
    )]
    Diverged { chain: String, seq: i64 },
}

/// Checks the checkpoint's signature under the key named by its `key_id`, one of `keys`.
pub fn verify_checkpoint(c: &Checkpoint, keys: &[PublicKey]) -> Result<(), CheckpointError> {
    let key = keys
        .iter()
        .find(|k| k.key_id == c.key_id)
        .ok_or_else(|| CheckpointError::UnknownKey(c.key_id.clone()))?;
    let signature = STANDARD.decode(&c.signature).unwrap_or_default();
    if key.verify(&digest(c), &signature) {
        Ok(())
    } else {
        Err(CheckpointError::BadSignature)
    }
}

/// Holds `events`, one chain's events in `seq` order and already verified as a chain
/// ([`crate::verify_chain`]), to what the (verified) checkpoint `c` saw of `chain`: the
/// events reach at least the checkpoint's head, and the event there has the head's hash. A
/// chain the checkpoint does not name passes (it began after the checkpoint), and so does a
/// segment that starts after the head (there is nothing to compare).
pub fn check_against_checkpoint(
    c: &Checkpoint,
    chain: &str,
    events: &[AuditEvent],
) -> Result<(), CheckpointError> {
    check_events_against(c, chain, events)
}

/// [`check_against_checkpoint`] over events held or borrowed (an export's, without copies).
pub(crate) fn check_events_against<E: std::borrow::Borrow<AuditEvent>>(
    c: &Checkpoint,
    chain: &str,
    events: &[E],
) -> Result<(), CheckpointError> {
    let Some(head) = c.heads.iter().find(|h| h.chain == chain) else {
        return Ok(());
    };
    if head.seq == 0 {
        return Ok(());
    }
    let last = events.last().map_or(0, |e| e.borrow().seq);
    if last < head.seq {
        return Err(CheckpointError::Truncated {
            chain: chain.to_owned(),
            expected: head.seq,
            found: last,
        });
    }
    if events.first().is_some_and(|e| e.borrow().seq > head.seq) {
        return Ok(());
    }
    let at_head = events.iter().map(E::borrow).find(|e| e.seq == head.seq);
    if at_head.is_some_and(|e| e.hash == head.hash) {
        Ok(())
    } else {
        Err(CheckpointError::Diverged {
            chain: chain.to_owned(),
            seq: head.seq,
        })
    }
}
