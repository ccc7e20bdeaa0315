//! `uosctl audit verify` on good and tampered exports.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use chrono::Utc;
use serde_json::json;
use uos_audit::{
    seal, sign_checkpoint, Actor, AuditEvent, ChainHead, Changes, Checkpoint, Manifest, NewEvent,
    Target, GENESIS_HASH,
};
use uos_keys::SigningKey;
use uuid::Uuid;

/// `n` events of `org`'s chain.
fn chain_of(key: &SigningKey, org: Uuid, n: i64) -> Vec<AuditEvent> {
    let mut events: Vec<AuditEvent> = Vec::new();
    for seq in 1..=n {
        let prev = events
            .last()
            .map_or(GENESIS_HASH, |e| e.hash.as_str())
            .to_owned();
        let event = NewEvent {
            id: Uuid::now_v7(),
            occurred_at: Utc::now(),
            actor: Actor {
                kind: "system".into(),
                id: None,
            },
            action: "org.created".into(),
            org_id: Some(org),
            target: Target {
                kind: "org".into(),
                id: Some(format!("org-{seq}")),
            },
            changes: Changes {
                before: json!(null),
                after: json!({"slug": format!("org-{seq}")}),
            },
            request_id: None,
        };
        events.push(seal(event, seq, &prev, key));
    }
    events
}

/// `n` events of one org's chain.
fn chain(key: &SigningKey, n: i64) -> Vec<AuditEvent> {
    chain_of(key, Uuid::now_v7(), n)
}

fn ndjson(events: &[AuditEvent]) -> String {
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect()
}

/// Writes the keys body and returns its path inside `dir`.
fn write_keys(dir: &Path, key: &SigningKey) -> std::path::PathBuf {
    let path = dir.join("keys.json");
    std::fs::write(&path, json!({"keys": [key.public_key()]}).to_string()).unwrap();
    path
}

fn uosctl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uosctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn verify(events: &Path, keys: &Path) -> Output {
    uosctl(
        &[
            "audit",
            "verify",
            "--events",
            events.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
        ],
        None,
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn good_ndjson_export_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let events = chain(&key, 5);
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, ndjson(&events)).unwrap();

    let out = verify(&file, &write_keys(dir.path(), &key));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out),
        format!(
            "ok: {}: 5 events, head seq 5 hash {}\n",
            events[0].chain, events[4].hash
        )
    );
}

#[test]
fn good_list_body_from_stdin_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let events = chain(&key, 3);
    let body = json!({"items": events, "next_page_token": null}).to_string();
    let keys = write_keys(dir.path(), &key);

    let out = uosctl(
        &[
            "audit",
            "verify",
            "--events",
            "-",
            "--keys",
            keys.to_str().unwrap(),
        ],
        Some(&body),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).starts_with(&format!(
        "ok: {}: 3 events, head seq 3 hash ",
        events[0].chain
    )));
}

#[test]
fn tampered_export_fails_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let keys = write_keys(dir.path(), &key);

    let mut edited = chain(&key, 5);
    edited[2].action = "org.deleted".into();
    let file = dir.path().join("edited.ndjson");
    std::fs::write(&file, ndjson(&edited)).unwrap();
    let out = verify(&file, &keys);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("seq 3") && text.contains("hash"), "{text}");

    let mut reordered = chain(&key, 5);
    reordered.swap(1, 2);
    let file = dir.path().join("reordered.ndjson");
    std::fs::write(&file, ndjson(&reordered)).unwrap();
    let out = verify(&file, &keys);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("seq 3"), "{}", stdout(&out));
}

#[test]
fn unreadable_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let keys = write_keys(dir.path(), &key);
    let out = verify(&dir.path().join("missing.ndjson"), &keys);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.ndjson"));

    let garbage = dir.path().join("garbage.ndjson");
    std::fs::write(&garbage, "not json\n").unwrap();
    let out = verify(&garbage, &keys);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}

#[test]
fn an_export_of_several_chains_verifies_each_and_a_checkpoint_catches_a_cut_tail() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let keys = write_keys(dir.path(), &key);
    let (a, b) = (chain(&key, 3), chain(&key, 2));
    let mixed = [
        a[0].clone(),
        b[0].clone(),
        a[1].clone(),
        b[1].clone(),
        a[2].clone(),
    ];
    let file = dir.path().join("mixed.ndjson");
    std::fs::write(&file, ndjson(&mixed)).unwrap();
    let out = verify(&file, &keys);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("ok: {}: 3 events, head seq 3", a[0].chain))
            && text.contains(&format!("ok: {}: 2 events, head seq 2", b[0].chain)),
        "{text}"
    );

    // The checkpoint saw both chains at their heads; the export lost a's last event.
    let heads = [&a[2], &b[1]]
        .map(|e| ChainHead {
            chain: e.chain.clone(),
            seq: e.seq,
            hash: e.hash.clone(),
        })
        .to_vec();
    let checkpoint = sign_checkpoint(Uuid::now_v7(), Utc::now(), heads, &key);
    let cp = dir.path().join("checkpoints.json");
    std::fs::write(&cp, json!({"items": [checkpoint]}).to_string()).unwrap();
    let with_checkpoint = |file: &Path| {
        uosctl(
            &[
                "audit",
                "verify",
                "--events",
                file.to_str().unwrap(),
                "--keys",
                keys.to_str().unwrap(),
                "--checkpoint",
                cp.to_str().unwrap(),
            ],
            None,
        )
    };
    let out = with_checkpoint(&file);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("every chain reaches checkpoint"));

    let cut = dir.path().join("cut.ndjson");
    std::fs::write(&cut, ndjson(&mixed[..4])).unwrap();
    assert_eq!(
        verify(&cut, &keys).status.code(),
        Some(0),
        "alone it verifies"
    );
    let out = with_checkpoint(&cut);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&a[0].chain) && text.contains("truncated"),
        "{text}"
    );
}

/// An export file as `GET /v1/audit/exports/{id}/download` serves it: the events, then the
/// manifest with `checkpoint` (if any) and the key.
fn export_file(events: &[AuditEvent], key: &SigningKey, checkpoint: Option<Checkpoint>) -> String {
    let mut manifest = Manifest::default();
    for e in events {
        manifest.note(&e.chain, e.seq);
    }
    manifest.checkpoints = checkpoint.into_iter().collect();
    manifest.keys = vec![key.public_key()];
    ndjson(events) + &manifest.to_line() + "\n"
}

fn verify_file(file: &Path) -> Output {
    uosctl(&["audit", "verify", file.to_str().unwrap()], None)
}

fn head_of(e: &AuditEvent) -> ChainHead {
    ChainHead {
        chain: e.chain.clone(),
        seq: e.seq,
        hash: e.hash.clone(),
    }
}

#[test]
fn an_export_file_verifies_with_the_keys_and_checkpoint_of_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let (a, b) = (chain(&key, 3), chain(&key, 2));
    let events = [
        a[0].clone(),
        b[0].clone(),
        a[1].clone(),
        b[1].clone(),
        a[2].clone(),
    ];
    let checkpoint = sign_checkpoint(
        Uuid::now_v7(),
        Utc::now(),
        vec![head_of(&a[2]), head_of(&b[1])],
        &key,
    );
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, export_file(&events, &key, Some(checkpoint.clone()))).unwrap();
    let out = verify_file(&file);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!("ok: {}: 3 events, head seq 3", a[0].chain)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "every chain reaches checkpoint {}",
            checkpoint.checkpoint_id
        )),
        "{text}"
    );

    // `--events` and `--keys` still work on an export file.
    let out = verify(&file, &write_keys(dir.path(), &key));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn a_bad_export_file_is_named_by_its_first_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let (a, b) = (chain(&key, 4), chain(&key, 2));
    let events = [
        a[0].clone(),
        b[0].clone(),
        a[1].clone(),
        a[2].clone(),
        b[1].clone(),
        a[3].clone(),
    ];
    let checkpoint = sign_checkpoint(
        Uuid::now_v7(),
        Utc::now(),
        vec![head_of(&a[3]), head_of(&b[1])],
        &key,
    );
    let good = export_file(&events, &key, Some(checkpoint.clone()));
    let run = |name: &str, text: String| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let out = verify_file(&file);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stdout(&out));
        stdout(&out)
    };
    let lines: Vec<&str> = good.lines().collect();

    // An edited event: line 3 (a's second), edited in place.
    let mut edited = lines.clone();
    let changed = lines[2].replace("org-2", "org-X");
    edited[2] = &changed;
    let text = run("edited", edited.join("\n") + "\n");
    assert!(text.starts_with("FAILED: line 3: "), "{text}");
    assert!(text.contains("edited"), "{text}");

    // A deleted event in the middle of a chain: the next event of that chain is the bad line
    // (line 4 once line 3 is gone).
    let mut deleted = lines.clone();
    deleted.remove(2);
    let text = run("deleted", deleted.join("\n") + "\n");
    assert!(text.starts_with("FAILED: line 3: "), "{text}");

    // The last event cut off (and the manifest not fixed): the manifest line says so.
    let mut cut = lines.clone();
    cut.remove(5);
    let text = run("cut", cut.join("\n") + "\n");
    assert!(text.starts_with("FAILED: line 6: "), "{text}");

    // Cut off and the manifest rewritten to match: the checkpoint still catches it.
    let forged = export_file(&events[..5], &key, Some(checkpoint));
    let text = run("forged", forged);
    assert!(
        text.starts_with("FAILED: line 6: ") && text.contains("truncated"),
        "{text}"
    );

    // Two bad chains: the earlier line wins.
    let mut two = lines.clone();
    let b2 = lines[4].replace("org-2", "org-Y");
    let a4 = lines[5].replace("org-4", "org-Z");
    two[4] = &b2;
    two[5] = &a4;
    let text = run("two", two.join("\n") + "\n");
    assert!(text.starts_with("FAILED: line 5: "), "{text}");
}

#[test]
fn an_export_that_starts_after_genesis_verifies_from_its_first_seq() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let a = chain(&key, 6);
    let file = dir.path().join("since.ndjson");
    std::fs::write(&file, export_file(&a[2..], &key, None)).unwrap();
    let out = verify_file(&file);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("4 events, head seq 6"),
        "{}",
        stdout(&out)
    );

    // Without a manifest there is no first seq: it must start at genesis.
    let bare = dir.path().join("bare.ndjson");
    std::fs::write(&bare, ndjson(&a[2..])).unwrap();
    let out = verify(&bare, &write_keys(dir.path(), &key));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("FAILED: line 1: "),
        "{}",
        stdout(&out)
    );

    // A manifest line not at the end, or with no keys and no --keys: unreadable input.
    let misplaced = dir.path().join("misplaced.ndjson");
    let text = export_file(&a, &key, None);
    let mut lines: Vec<&str> = text.lines().collect();
    let manifest = lines.pop().unwrap();
    lines.insert(1, manifest);
    std::fs::write(&misplaced, lines.join("\n")).unwrap();
    let out = verify_file(&misplaced);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = verify_file(&bare);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--keys"));
}
