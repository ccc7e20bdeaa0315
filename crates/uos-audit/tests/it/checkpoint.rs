//! Checkpoints: signed heads of every chain, and the truncation a chain alone cannot show.

use chrono::{TimeZone as _, Utc};
use uos_audit::{
    chain_of, check_against_checkpoint, sign_checkpoint, verify_chain, verify_checkpoint,
    ChainHead, Checkpoint, CheckpointError, PLATFORM_CHAIN,
};
use uos_keys::SigningKey;
use uuid::Uuid;

use crate::chain::{chain, keys, CHAIN};

fn checkpoint_at(key: &SigningKey, events: &[uos_audit::AuditEvent], seq: i64) -> Checkpoint {
    let at = &events[usize::try_from(seq - 1).unwrap()];
    let heads = vec![
        ChainHead {
            chain: PLATFORM_CHAIN.into(),
            seq: 0,
            hash: uos_audit::GENESIS_HASH.into(),
        },
        ChainHead {
            chain: CHAIN.into(),
            seq,
            hash: at.hash.clone(),
        },
    ];
    sign_checkpoint(
        Uuid::now_v7(),
        Utc.timestamp_opt(1_800_000_100, 987_654_321).unwrap(),
        heads,
        key,
    )
}

#[test]
fn chains_are_named_by_org() {
    let org = Uuid::now_v7();
    assert_eq!(chain_of(Some(org)), format!("org:{org}"));
    assert_eq!(chain_of(None), "platform");
}

#[test]
fn a_signed_checkpoint_verifies_and_survives_its_wire_format() {
    let key = SigningKey::generate();
    let events = chain(&key, 3);
    let c = checkpoint_at(&key, &events, 3);
    assert_eq!(
        c.heads.iter().map(|h| h.chain.as_str()).collect::<Vec<_>>(),
        [CHAIN, PLATFORM_CHAIN],
        "heads are ordered by chain"
    );
    verify_checkpoint(&c, &keys(&key)).unwrap();
    let wire = serde_json::to_string(&c).unwrap();
    let back: Checkpoint = serde_json::from_str(&wire).unwrap();
    assert_eq!(back, c);
    verify_checkpoint(&back, &keys(&key)).unwrap();
}

#[test]
fn an_edited_or_foreign_checkpoint_is_refused() {
    let key = SigningKey::generate();
    let events = chain(&key, 3);
    let mut c = checkpoint_at(&key, &events, 3);
    c.heads[0].seq = 2;
    assert_eq!(
        verify_checkpoint(&c, &keys(&key)),
        Err(CheckpointError::BadSignature)
    );
    let other = SigningKey::generate();
    let c = checkpoint_at(&other, &events, 3);
    assert_eq!(
        verify_checkpoint(&c, &keys(&key)),
        Err(CheckpointError::UnknownKey(other.key_id().to_owned()))
    );
}

#[test]
fn a_truncated_tail_verifies_as_a_chain_but_not_against_the_checkpoint() {
    let key = SigningKey::generate();
    let mut events = chain(&key, 5);
    let c = checkpoint_at(&key, &events, 5);
    events.truncate(3);
    // What is left is still a perfect chain: only the checkpoint shows what is missing.
    verify_chain(&events, &keys(&key), None).unwrap();
    assert_eq!(
        check_against_checkpoint(&c, CHAIN, &events),
        Err(CheckpointError::Truncated {
            chain: CHAIN.into(),
            expected: 5,
            found: 3
        })
    );
    assert_eq!(
        check_against_checkpoint(&c, CHAIN, &[]),
        Err(CheckpointError::Truncated {
            chain: CHAIN.into(),
            expected: 5,
            found: 0
        })
    );
}

#[test]
fn a_chain_rewritten_by_the_key_holder_diverges_from_the_checkpoint() {
    let key = SigningKey::generate();
    let events = chain(&key, 5);
    let c = checkpoint_at(&key, &events, 4);
    // Same length, same key, every link valid: a rewrite only the checkpoint can reveal.
    let rewritten = chain(&key, 5);
    verify_chain(&rewritten, &keys(&key), None).unwrap();
    assert_eq!(
        check_against_checkpoint(&c, CHAIN, &rewritten),
        Err(CheckpointError::Diverged {
            chain: CHAIN.into(),
            seq: 4
        })
    );
}

#[test]
fn growth_after_the_checkpoint_and_unnamed_chains_pass() {
    let key = SigningKey::generate();
    let events = chain(&key, 5);
    let c = checkpoint_at(&key, &events, 3);
    check_against_checkpoint(&c, CHAIN, &events).unwrap();
    // A segment that starts after the checkpoint's head has nothing to compare.
    check_against_checkpoint(&c, CHAIN, &events[3..]).unwrap();
    check_against_checkpoint(&c, "org:not-in-the-checkpoint", &events).unwrap();
    // The platform chain had no events yet when the checkpoint was issued.
    check_against_checkpoint(&c, PLATFORM_CHAIN, &[]).unwrap();
}
