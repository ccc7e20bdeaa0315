//! `rotate`: current then previous in `public_keys`, old signatures keep verifying, files;
//! `reload`: a rotation made by another store on the same directory.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use uos_keys::{KeyError, KeyProvider as _, KeyPurpose, LocalKeyStore, PublicKey};

fn ids(keys: &[PublicKey]) -> Vec<String> {
    keys.iter().map(|k| k.key_id.clone()).collect()
}

#[test]
fn rotate_makes_a_new_current_key_and_keeps_the_old_one_second() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    let old = store.signing_key(KeyPurpose::AccessToken);
    assert_eq!(
        ids(&store.public_keys(KeyPurpose::AccessToken)),
        [old.key_id()]
    );

    let new_id = store.rotate(KeyPurpose::AccessToken).unwrap();
    assert_ne!(new_id, old.key_id());
    assert_eq!(store.signing_key(KeyPurpose::AccessToken).key_id(), new_id);
    assert_eq!(
        ids(&store.public_keys(KeyPurpose::AccessToken)),
        [new_id.as_str(), old.key_id()],
        "current first, then previous"
    );
    assert_eq!(
        store.public_keys(KeyPurpose::Audit).len(),
        1,
        "other purposes are untouched"
    );
}

#[test]
fn signatures_by_the_previous_key_still_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    let old = store.signing_key(KeyPurpose::Audit);
    let old_sig = old.sign(b"event 1");
    store.rotate(KeyPurpose::Audit).unwrap();
    let new_sig = store.signing_key(KeyPurpose::Audit).sign(b"event 2");

    let keys = store.public_keys(KeyPurpose::Audit);
    let by_id = |id: &str| keys.iter().find(|k| k.key_id == id).unwrap();
    assert!(by_id(old.key_id()).verify(b"event 1", &old_sig));
    assert!(by_id(&keys[0].key_id).verify(b"event 2", &new_sig));
    assert!(
        !keys[0].verify(b"event 1", &old_sig),
        "new key does not accept old signatures"
    );
}

#[test]
fn reopen_after_rotate_keeps_both_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    store.rotate(KeyPurpose::AccessToken).unwrap();
    let before = store.public_keys(KeyPurpose::AccessToken);
    let reopened = LocalKeyStore::open(tmp.path()).unwrap();
    assert_eq!(reopened.public_keys(KeyPurpose::AccessToken), before);
    assert_eq!(
        reopened.signing_key(KeyPurpose::AccessToken).key_id(),
        before[0].key_id
    );
}

#[test]
fn a_second_rotation_drops_the_oldest_key() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    let first = store
        .signing_key(KeyPurpose::AccessToken)
        .key_id()
        .to_owned();
    let second = store.rotate(KeyPurpose::AccessToken).unwrap();
    let third = store.rotate(KeyPurpose::AccessToken).unwrap();
    assert_eq!(
        ids(&store.public_keys(KeyPurpose::AccessToken)),
        [third.clone(), second.clone()]
    );
    assert!(!ids(&store.public_keys(KeyPurpose::AccessToken)).contains(&first));
    assert_eq!(
        ids(&LocalKeyStore::open(tmp.path())
            .unwrap()
            .public_keys(KeyPurpose::AccessToken)),
        [third, second]
    );
}

#[test]
fn a_rotation_elsewhere_is_seen_after_a_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let running = LocalKeyStore::open(tmp.path()).unwrap();
    let old = running.signing_key(KeyPurpose::Audit).key_id().to_owned();
    let token_keys = running.public_keys(KeyPurpose::AccessToken);
    let new_id = LocalKeyStore::rotate_offline(tmp.path(), KeyPurpose::Audit).unwrap();
    assert_eq!(
        running.signing_key(KeyPurpose::Audit).key_id(),
        old,
        "a running store keeps what it loaded until it reloads"
    );

    assert!(running.reload().unwrap(), "the rotation is a change");
    assert_eq!(running.signing_key(KeyPurpose::Audit).key_id(), new_id);
    assert_eq!(ids(&running.public_keys(KeyPurpose::Audit)), [new_id, old]);
    assert_eq!(
        running.public_keys(KeyPurpose::AccessToken),
        token_keys,
        "the other purpose is untouched"
    );
    assert!(!running.reload().unwrap(), "nothing new the second time");
}

#[test]
fn two_stores_on_one_directory_agree_after_a_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let a = LocalKeyStore::open(tmp.path()).unwrap();
    let b = LocalKeyStore::open(tmp.path()).unwrap();
    a.rotate(KeyPurpose::AccessToken).unwrap();
    a.rotate(KeyPurpose::AccessToken).unwrap();
    b.reload().unwrap();
    assert_eq!(
        b.public_keys(KeyPurpose::AccessToken),
        a.public_keys(KeyPurpose::AccessToken),
        "the key the first rotation made is now previous on both, the original dropped"
    );
    assert_eq!(
        b.signing_key(KeyPurpose::AccessToken).key_id(),
        a.signing_key(KeyPurpose::AccessToken).key_id()
    );
}

#[test]
fn a_failed_reload_keeps_the_keys_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    let before = store.public_keys(KeyPurpose::AccessToken);
    fs::write(tmp.path().join("access-token.key"), "not a key\n").unwrap();
    assert!(matches!(store.reload(), Err(KeyError::Malformed { .. })));
    assert_eq!(store.public_keys(KeyPurpose::AccessToken), before);
}

#[test]
fn rotation_reads_the_current_key_from_disk_so_no_rotation_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let stale = LocalKeyStore::open(tmp.path()).unwrap();
    let offline = LocalKeyStore::rotate_offline(tmp.path(), KeyPurpose::AccessToken).unwrap();
    let online = stale.rotate(KeyPurpose::AccessToken).unwrap();
    assert_eq!(
        ids(&stale.public_keys(KeyPurpose::AccessToken)),
        [online, offline],
        "the offline key, not the stale in-memory one, becomes previous"
    );
}

#[test]
fn key_files_stay_0600_and_no_temporary_files_remain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let store = LocalKeyStore::open(&dir).unwrap();
    store.rotate(KeyPurpose::AccessToken).unwrap();
    store.rotate(KeyPurpose::AccessToken).unwrap();
    store.rotate(KeyPurpose::Audit).unwrap();
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        crate::files_with_modes(&dir),
        [
            ("access-token.key".to_owned(), 0o600),
            ("access-token.previous.key".to_owned(), 0o600),
            ("audit.key".to_owned(), 0o600),
            ("audit.previous.key".to_owned(), 0o600),
            ("data-encryption.key".to_owned(), 0o600),
            ("decision.key".to_owned(), 0o600),
        ]
    );
}

#[test]
fn a_previous_key_readable_by_others_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    LocalKeyStore::rotate_offline(tmp.path(), KeyPurpose::Audit).unwrap();
    let path = tmp.path().join("audit.previous.key");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = LocalKeyStore::open(tmp.path()).unwrap_err();
    assert!(
        matches!(err, KeyError::InsecurePermissions { mode: 0o640, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("audit.previous.key"), "{err}");
}

#[test]
fn a_crash_between_the_two_rotation_writes_keeps_the_current_key() {
    // State after step 1 of a rotation: the current key was copied to the previous file, the
    // new key was never written.
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    let current = store
        .signing_key(KeyPurpose::AccessToken)
        .key_id()
        .to_owned();
    fs::copy(
        tmp.path().join("access-token.key"),
        tmp.path().join("access-token.previous.key"),
    )
    .unwrap();
    let reopened = LocalKeyStore::open(tmp.path()).unwrap();
    assert_eq!(
        ids(&reopened.public_keys(KeyPurpose::AccessToken)),
        [current.as_str()],
        "a previous key equal to the current one is not published twice"
    );
    let next = reopened.rotate(KeyPurpose::AccessToken).unwrap();
    assert_eq!(
        ids(&reopened.public_keys(KeyPurpose::AccessToken)),
        [next, current]
    );
}

#[test]
fn concurrent_rotations_all_complete_and_leave_a_consistent_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    let made: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| store.rotate(KeyPurpose::Audit).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let on_disk = ids(&LocalKeyStore::open(tmp.path())
        .unwrap()
        .public_keys(KeyPurpose::Audit));
    assert_eq!(on_disk.len(), 2);
    assert_eq!(
        ids(&store.public_keys(KeyPurpose::Audit)),
        on_disk,
        "memory and files agree after concurrent rotations"
    );
    assert!(
        made.contains(&on_disk[0]) && made.contains(&on_disk[1]),
        "{made:?} {on_disk:?}"
    );
}
