//! A sealed chain verifies, and every kind of tampering is reported at the right event.

use chrono::{TimeZone as _, Utc};
use serde_json::json;
use uos_audit::{
    compute_hash, parse_events, parse_keys, parse_ndjson, seal, verify_chain, verify_chains,
    verify_event, Actor, AuditEvent, Changes, NewEvent, Target, VerifyError, VerifyErrorKind,
    GENESIS_HASH, LEGACY_CHAIN, REDACTED,
};
use uos_keys::{PublicKey, SigningKey};
use uuid::Uuid;

/// The org of every event of [`chain`], so they form the chain [`CHAIN`].
pub const ORG: Uuid = Uuid::from_u128(0x0190_c3f4_0000_7000_8000_0000_0000_0001);
pub const CHAIN: &str = "org:0190c3f4-0000-7000-8000-000000000001";

pub fn new_event(i: i64) -> NewEvent {
    NewEvent {
        id: Uuid::now_v7(),
        // Nanosecond precision on purpose: sealing must truncate it.
        occurred_at: Utc.timestamp_opt(1_800_000_000 + i, 123_456_789).unwrap(),
        actor: Actor {
            kind: "user".into(),
            id: Some(Uuid::now_v7().to_string()),
        },
        action: "org.member.role_changed".into(),
        org_id: Some(ORG),
        target: Target {
            kind: "membership".into(),
            id: Some(format!("m-{i}")),
        },
        changes: Changes {
            before: json!({"role": "member", "n": i}),
            after: json!({"role": "admin", "n": i, "weight": 0.1 * i as f64}),
        },
        request_id: Some(format!("req-{i}")),
    }
}

/// A chain of `n` events from genesis, signed by `key`.
pub fn chain(key: &SigningKey, n: i64) -> Vec<AuditEvent> {
    let mut events: Vec<AuditEvent> = Vec::new();
    for seq in 1..=n {
        let prev = events
            .last()
            .map_or(GENESIS_HASH, |e| e.hash.as_str())
            .to_owned();
        events.push(seal(new_event(seq), seq, &prev, key));
    }
    events
}

pub fn keys(key: &SigningKey) -> Vec<PublicKey> {
    vec![key.public_key()]
}

fn err(seq: i64, kind: VerifyErrorKind) -> Result<uos_audit::ChainReport, VerifyError> {
    Err(VerifyError {
        chain: CHAIN.into(),
        seq,
        kind,
    })
}

#[test]
fn sealed_chain_verifies() {
    let key = SigningKey::generate();
    let events = chain(&key, 10);
    let report = verify_chain(&events, &keys(&key), None).unwrap();
    assert_eq!(report.events, 10);
    assert_eq!(report.head_seq, 10);
    assert_eq!(report.head_hash, events[9].hash);
    assert_eq!(events[0].prev_hash, GENESIS_HASH);
    assert_eq!(GENESIS_HASH.len(), 64);
    for e in &events {
        assert_eq!(e.key_id, key.key_id());
        assert_eq!(e.hash.len(), 64);
        assert_eq!(
            e.occurred_at.timestamp_subsec_nanos(),
            123_456_000,
            "truncated to µs"
        );
    }
}

#[test]
fn segment_verifies_from_a_given_start() {
    let key = SigningKey::generate();
    let events = chain(&key, 6);
    let start = (4, events[2].hash.as_str());
    let report = verify_chain(&events[3..], &keys(&key), Some(start)).unwrap();
    assert_eq!((report.events, report.head_seq), (3, 6));
    assert_eq!(
        verify_chain(&events[3..], &keys(&key), None),
        err(4, VerifyErrorKind::BrokenLink),
        "a segment is not a chain from genesis"
    );
}

#[test]
fn empty_chain_reports_the_start() {
    let report = verify_chain(&[], &[], None).unwrap();
    assert_eq!((report.events, report.head_seq), (0, 0));
    assert_eq!(report.head_hash, GENESIS_HASH);
}

#[test]
fn edited_event_is_a_hash_mismatch() {
    let key = SigningKey::generate();
    let mut events = chain(&key, 10);
    events[4].changes.after["role"] = json!("owner");
    assert_eq!(
        verify_chain(&events, &keys(&key), None),
        err(5, VerifyErrorKind::HashMismatch)
    );

    let mut events = chain(&key, 10);
    events[6].actor.id = None;
    assert_eq!(
        verify_chain(&events, &keys(&key), None),
        err(7, VerifyErrorKind::HashMismatch)
    );
}

#[test]
fn edited_event_with_recomputed_hash_fails_its_signature() {
    let key = SigningKey::generate();
    let mut events = chain(&key, 10);
    events[4].action = "org.deleted".into();
    events[4].hash = compute_hash(&events[4]);
    assert_eq!(
        verify_chain(&events, &keys(&key), None),
        err(5, VerifyErrorKind::BadSignature)
    );
}

#[test]
fn deleted_event_breaks_the_link() {
    let key = SigningKey::generate();
    let mut events = chain(&key, 10);
    events.remove(3);
    assert_eq!(
        verify_chain(&events, &keys(&key), None),
        err(5, VerifyErrorKind::BrokenLink)
    );
}

#[test]
fn deleted_first_event_breaks_the_link() {
    let key = SigningKey::generate();
    let mut events = chain(&key, 3);
    events.remove(0);
    assert_eq!(
        verify_chain(&events, &keys(&key), None),
        err(2, VerifyErrorKind::BrokenLink)
    );
}

#[test]
fn swapped_events_break_the_link() {
    let key = SigningKey::generate();
    let mut events = chain(&key, 10);
    events.swap(5, 6);
    assert_eq!(
        verify_chain(&events, &keys(&key), None),
        err(7, VerifyErrorKind::BrokenLink)
    );
}

#[test]
fn inserted_event_signed_with_another_key_is_unknown_key() {
    let key = SigningKey::generate();
    let attacker = SigningKey::generate();
    let mut events = chain(&key, 10);
    let forged = seal(new_event(99), 6, &events[4].hash, &attacker);
    events.insert(5, forged);
    assert_eq!(
        verify_chain(&events, &keys(&key), None),
        err(6, VerifyErrorKind::UnknownKey(attacker.key_id().to_owned()))
    );
}

#[test]
fn inserted_event_with_recomputed_links_fails_signature_or_link() {
    let key = SigningKey::generate();
    let attacker = SigningKey::generate();
    let mut events = chain(&key, 10);
    // The forger links it correctly and claims the real key id, but cannot sign for it.
    let mut forged = seal(new_event(99), 6, &events[4].hash, &attacker);
    forged.key_id = key.key_id().to_owned();
    forged.hash = compute_hash(&forged);
    forged.signature = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(attacker.sign(&hex::decode(&forged.hash).unwrap()))
    };
    events.insert(5, forged.clone());
    assert_eq!(
        verify_chain(&events, &keys(&key), None),
        err(6, VerifyErrorKind::BadSignature)
    );

    // Even if the forged event were accepted by signature, the next one no longer links.
    let trusted = vec![key.public_key(), attacker.public_key()];
    let mut events = chain(&key, 10);
    let forged = seal(new_event(99), 6, &events[4].hash, &attacker);
    events.insert(5, forged);
    assert_eq!(
        verify_chain(&events, &trusted, None),
        err(6, VerifyErrorKind::BrokenLink)
    );
}

#[test]
fn wrong_seq_with_intact_links_is_a_seq_gap() {
    let key = SigningKey::generate();
    let first = seal(new_event(1), 1, GENESIS_HASH, &key);
    let second = seal(new_event(2), 3, &first.hash, &key);
    assert_eq!(
        verify_chain([&first, &second], &keys(&key), None),
        err(3, VerifyErrorKind::SeqGap { expected: 2 })
    );
}

#[test]
fn garbage_signature_and_hash_do_not_panic() {
    let key = SigningKey::generate();
    let mut e = seal(new_event(1), 1, GENESIS_HASH, &key);
    e.signature = "%%%".into();
    assert_eq!(
        verify_event(&e, &keys(&key)).unwrap_err().kind,
        VerifyErrorKind::BadSignature
    );
    e.hash = "zz".into();
    assert_eq!(
        verify_event(&e, &keys(&key)).unwrap_err().kind,
        VerifyErrorKind::HashMismatch
    );
}

#[test]
fn error_display_names_seq_and_problem() {
    let e = VerifyError {
        chain: "platform".into(),
        seq: 42,
        kind: VerifyErrorKind::BrokenLink,
    };
    let text = e.to_string();
    assert!(
        text.contains("seq 42") && text.contains("prev_hash"),
        "{text}"
    );
    let e = VerifyError {
        chain: CHAIN.into(),
        seq: 7,
        kind: VerifyErrorKind::SeqGap { expected: 6 },
    };
    assert_eq!(
        e.to_string(),
        format!("audit event {CHAIN} seq 7: expected seq 6")
    );
}

#[test]
fn serde_round_trip_keeps_events_valid() {
    let key = SigningKey::generate();
    let events = chain(&key, 5);
    for e in &events {
        let text = serde_json::to_string(e).unwrap();
        let back: AuditEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, e);
        verify_event(&back, &keys(&key)).unwrap();
    }
    let wire = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(
        wire["occurred_at"], "2027-01-15T08:00:01.123456Z",
        "RFC 3339 UTC, microseconds, Z"
    );
    assert_eq!(wire["actor"]["type"], "user");
    assert_eq!(wire["target"]["type"], "membership");
}

#[test]
fn sealing_redacts_secrets() {
    let key = SigningKey::generate();
    let mut new = new_event(1);
    new.changes = Changes {
        before: json!({"password_hash": "$argon2id$old"}),
        after: json!({"password_hash": "$argon2id$new", "email": "a@example.com"}),
    };
    let e = seal(new, 1, GENESIS_HASH, &key);
    assert_eq!(e.changes.before["password_hash"], REDACTED);
    assert_eq!(e.changes.after["password_hash"], REDACTED);
    assert_eq!(e.changes.after["email"], "a@example.com");
    verify_event(&e, &keys(&key)).unwrap();
}

#[test]
fn parses_ndjson_and_list_bodies_in_given_order() {
    let key = SigningKey::generate();
    let events = chain(&key, 3);
    let ndjson: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n\n")
        .collect();
    assert_eq!(parse_ndjson(&ndjson).unwrap(), events);
    assert_eq!(parse_events(&ndjson).unwrap(), events);

    let one_line = serde_json::to_string(&events[0]).unwrap();
    assert_eq!(parse_events(&one_line).unwrap(), &events[..1]);

    let body = json!({"items": events, "next_page_token": null}).to_string();
    assert_eq!(parse_events(&body).unwrap(), events);

    let err = parse_ndjson(&format!("{one_line}\n\n{{\"seq\": 2}}\n")).unwrap_err();
    assert!(err.to_string().starts_with("line 3:"), "{err}");
}

#[test]
fn parses_key_bodies() {
    let key = SigningKey::generate();
    let body = json!({"keys": [key.public_key()]}).to_string();
    assert_eq!(parse_keys(&body).unwrap(), keys(&key));
    let bare = json!([key.public_key()]).to_string();
    assert_eq!(parse_keys(&bare).unwrap(), keys(&key));
    assert!(parse_keys("{}").is_err());
    assert!(parse_keys("nope").is_err());
}

/// `event` as stored before events had a chain: no `chain` field, hashed without one, signed.
fn as_legacy(e: &AuditEvent, key: &SigningKey) -> AuditEvent {
    use base64::Engine as _;
    let mut wire = serde_json::to_value(e).unwrap();
    wire.as_object_mut().unwrap().remove("chain");
    let mut legacy: AuditEvent = serde_json::from_value(wire).unwrap();
    legacy.hash = compute_hash(&legacy);
    legacy.signature = base64::engine::general_purpose::STANDARD
        .encode(key.sign(&hex::decode(&legacy.hash).unwrap()));
    legacy
}

#[test]
fn events_from_before_chains_verify_as_the_legacy_chain() {
    let key = SigningKey::generate();
    let mut events: Vec<AuditEvent> = Vec::new();
    for e in chain(&key, 4) {
        let mut legacy = e;
        legacy.prev_hash = events
            .last()
            .map_or(GENESIS_HASH, |p| p.hash.as_str())
            .to_owned();
        events.push(as_legacy(&legacy, &key));
    }
    assert!(events.iter().all(|e| e.chain == LEGACY_CHAIN));
    let report = verify_chain(&events, &keys(&key), None).unwrap();
    assert_eq!((report.chain.as_str(), report.head_seq), (LEGACY_CHAIN, 4));

    // Claiming a current event is legacy drops `chain` from what its hash covers: an edit.
    let mut relabelled = chain(&key, 1).remove(0);
    relabelled.chain = LEGACY_CHAIN.into();
    assert_eq!(
        verify_event(&relabelled, &keys(&key)).unwrap_err().kind,
        VerifyErrorKind::HashMismatch
    );
    // And moving an event to another chain is an edit too.
    let mut moved = chain(&key, 1).remove(0);
    moved.chain = "platform".into();
    assert_eq!(
        verify_event(&moved, &keys(&key)).unwrap_err().kind,
        VerifyErrorKind::HashMismatch
    );
}

#[test]
fn an_event_of_another_chain_in_a_chain_is_refused() {
    let key = SigningKey::generate();
    let mut events = chain(&key, 3);
    let mut other = new_event(4);
    other.org_id = None;
    events.push(seal(other, 4, &events[2].hash, &key));
    assert_eq!(
        verify_chain(&events, &keys(&key), None),
        Err(VerifyError {
            chain: "platform".into(),
            seq: 4,
            kind: VerifyErrorKind::WrongChain {
                expected: CHAIN.into()
            },
        })
    );
}

#[test]
fn interleaved_chains_verify_each_on_its_own() {
    let key = SigningKey::generate();
    let org_events = chain(&key, 3);
    let mut platform: Vec<AuditEvent> = Vec::new();
    for seq in 1..=2 {
        let mut e = new_event(seq);
        e.org_id = None;
        let prev = platform
            .last()
            .map_or(GENESIS_HASH, |p| p.hash.as_str())
            .to_owned();
        platform.push(seal(e, seq, &prev, &key));
    }
    let mixed = [
        &org_events[0],
        &platform[0],
        &org_events[1],
        &org_events[2],
        &platform[1],
    ];
    let reports = verify_chains(mixed, &keys(&key)).unwrap();
    let heads: Vec<_> = reports
        .iter()
        .map(|r| (r.chain.as_str(), r.head_seq))
        .collect();
    assert_eq!(heads, [(CHAIN, 3), ("platform", 2)]);

    // A chain missing its middle event is reported with its name.
    let gap = [&org_events[0], &platform[0], &org_events[2], &platform[1]];
    assert_eq!(
        verify_chains(gap, &keys(&key)).unwrap_err(),
        VerifyError {
            chain: CHAIN.into(),
            seq: 3,
            kind: VerifyErrorKind::BrokenLink,
        }
    );
}

/// What a reader adds when it serves an event (`personal`, `erased`) is outside the hash: the
/// same sealed event verifies with the decrypted values, with them erased, and without either,
/// as an export written before and after a purge holds it. The ciphertext they come from is
/// inside the hash: changing it is an edit.
#[test]
fn the_served_personal_and_erased_parts_are_not_hashed() {
    let key = SigningKey::generate();
    let mut events = chain(&key, 3);
    events[1].changes.after["email"] = json!("uos-pd:1:user:x:Y2lwaGVydGV4dA");
    events[1].hash = compute_hash(&events[1]);
    events[1].signature = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(key.sign(&hex::decode(&events[1].hash).unwrap()))
    };
    events[2].prev_hash = events[1].hash.clone();
    events[2].hash = compute_hash(&events[2]);
    events[2].signature = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(key.sign(&hex::decode(&events[2].hash).unwrap()))
    };
    verify_chain(&events, &keys(&key), None).expect("the sealed chain verifies");

    let mut readable = events.clone();
    readable[1]
        .personal
        .insert("/changes/after/email".into(), json!("a@example.com"));
    verify_chain(&readable, &keys(&key), None).expect("decrypted values are not hashed");

    let mut erased = events.clone();
    erased[1].erased.push("/changes/after/email".into());
    verify_chain(&erased, &keys(&key), None).expect("the erased list is not hashed");

    // Both survive a round trip through the wire form, and an export line without them
    // parses to an event without them.
    let line = serde_json::to_string(&readable[1]).unwrap();
    assert!(
        line.contains(r#""personal":{"/changes/after/email":"a@example.com"}"#),
        "{line}"
    );
    let back: AuditEvent = serde_json::from_str(&line).unwrap();
    assert_eq!(back, readable[1]);
    let sealed_line = serde_json::to_string(&events[1]).unwrap();
    assert!(
        !sealed_line.contains("personal") && !sealed_line.contains("erased"),
        "empty unhashed parts are not written: {sealed_line}"
    );

    // Swapping the ciphertext for the plaintext is an edit.
    let mut edited = readable.clone();
    edited[1].changes.after["email"] = json!("a@example.com");
    assert_eq!(
        verify_chain(&edited, &keys(&key), None),
        err(2, VerifyErrorKind::HashMismatch)
    );
}
