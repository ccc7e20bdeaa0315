//! Verification that checks only each chain's last signature finds every tampering a full
//! check finds, and names the same event; and the hash covers exactly the object its
//! documentation describes, however the fields are spelled.

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use uos_audit::{
    canonical_json, compute_hash, seal, verify_chain_with, AuditEvent, Signatures, GENESIS_HASH,
    LEGACY_CHAIN,
};
use uos_keys::SigningKey;

use crate::chain::{chain, keys, new_event};

/// The object the hash covers, built as a `Value` the slow, obvious way.
fn hash_object(e: &AuditEvent) -> Value {
    let mut object = json!({
        "id": e.id,
        "seq": e.seq,
        "occurred_at": e.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
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
        object["chain"] = Value::String(e.chain.clone());
    }
    object
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".*".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".*", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn the_hash_covers_exactly_the_documented_object(
        action in ".*",
        actor_id in proptest::option::of(".*"),
        target_id in proptest::option::of(".*"),
        request_id in proptest::option::of(".*"),
        before in json_value(),
        after in json_value(),
        legacy in any::<bool>(),
        org in any::<bool>(),
    ) {
        let key = SigningKey::from_seed(&[3; 32]);
        let mut event = new_event(1);
        event.action = action;
        event.actor.id = actor_id;
        event.target.id = target_id;
        event.request_id = request_id;
        event.changes.before = before;
        event.changes.after = after;
        if !org {
            event.org_id = None;
        }
        let mut sealed = seal(event, 7, GENESIS_HASH, &key);
        if legacy {
            sealed.chain = LEGACY_CHAIN.into();
        }
        let expected = hex::encode(Sha256::digest(canonical_json(&hash_object(&sealed))));
        prop_assert_eq!(compute_hash(&sealed), expected);
    }
}

/// Both checks of `events`, which must agree.
fn both(
    events: &[AuditEvent],
    key: &SigningKey,
) -> Result<uos_audit::ChainReport, uos_audit::VerifyError> {
    let every = verify_chain_with(events, &keys(key), None, Signatures::Every);
    let last = verify_chain_with(events, &keys(key), None, Signatures::Last);
    assert_eq!(
        last, every,
        "checking the last signature reports what checking all does"
    );
    every
}

/// Re-hashes `events[from..]` and re-links them, as someone without the key would after an
/// edit: every hash and link is consistent, no signature from `from` on is.
fn rehash_from(events: &mut [AuditEvent], from: usize) {
    for i in from..events.len() {
        if i > 0 {
            events[i].prev_hash = events[i - 1].hash.clone();
        }
        events[i].hash = compute_hash(&events[i]);
    }
}

#[test]
fn the_last_signature_finds_every_tampering_at_the_same_event() {
    let key = SigningKey::generate();
    let attacker = SigningKey::generate();
    // Long enough that hashing and signatures are spread over threads.
    for n in [10usize, 600] {
        let events = chain(&key, n as i64);
        let report = both(&events, &key).expect("an untouched chain verifies");
        assert_eq!(report.events, n as u64);
        let k = n * 3 / 4;

        let mut edited = events.clone();
        edited[k].action = "org.deleted".into();
        assert!(both(&edited, &key).is_err());

        let mut rehashed = events.clone();
        rehashed[k].action = "org.deleted".into();
        rehash_from(&mut rehashed, k);
        let found = both(&rehashed, &key).unwrap_err();
        assert_eq!(
            found.seq,
            k as i64 + 1,
            "the first event changed, not the last"
        );

        let mut head_only = events.clone();
        let last = head_only.len() - 1;
        head_only[last].action = "org.deleted".into();
        rehash_from(&mut head_only, last);
        assert_eq!(both(&head_only, &key).unwrap_err().seq, n as i64);

        let mut deleted = events.clone();
        deleted.remove(k);
        assert!(both(&deleted, &key).is_err());

        let mut swapped = events.clone();
        swapped.swap(k, k + 1);
        assert!(both(&swapped, &key).is_err());

        let mut truncated_then_forged = events.clone();
        truncated_then_forged.truncate(k);
        let prev = truncated_then_forged[k - 1].hash.clone();
        truncated_then_forged.push(seal(new_event(999), k as i64 + 1, &prev, &attacker));
        assert!(both(&truncated_then_forged, &key).is_err());

        let mut resequenced = events.clone();
        resequenced[k].seq += 1;
        rehash_from(&mut resequenced, k);
        assert_eq!(both(&resequenced, &key).unwrap_err().seq, k as i64 + 2);
    }
}

#[test]
fn the_last_signature_does_not_vouch_for_earlier_signature_fields() {
    // What the cheaper check leaves out, pinned down: an earlier event's signature field may be
    // garbage while its content is still vouched for by the chain up to the last signature.
    let key = SigningKey::generate();
    let mut events = chain(&key, 300);
    events[10].signature = base64::engine::general_purpose::STANDARD.encode([0u8; 64]);
    assert_eq!(
        verify_chain_with(&events, &keys(&key), None, Signatures::Every)
            .unwrap_err()
            .seq,
        11
    );
    assert!(verify_chain_with(&events, &keys(&key), None, Signatures::Last).is_ok());
}
