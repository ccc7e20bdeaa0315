//! `TransitKeyStore` against a real OpenBao dev server: two providers on the same Transit keys
//! behave as two replicas, rotations (ours and an operator's) keep old signatures and
//! ciphertexts valid, and every misconfiguration stops `connect` naming the setting.

use std::time::{Duration, Instant};

use uos_keys::testing::Bao;
use uos_keys::{KeyError, KeyProvider, KeyPurpose, PublicKey, TransitKeyStore};

fn find(keys: &[PublicKey], key_id: &str) -> PublicKey {
    keys.iter()
        .find(|k| k.key_id == key_id)
        .unwrap_or_else(|| panic!("key {key_id} not published in {keys:?}"))
        .clone()
}

/// `reload` on a Transit provider refreshes in the background: call it until it reports the
/// change (or fail after a few seconds).
async fn reload_until_changed(store: &TransitKeyStore) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if store.reload().unwrap() {
            return;
        }
        assert!(Instant::now() < deadline, "reload never saw the rotation");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_derived_keys_and_rotations_keep_old_signatures() {
    let mut bao = Bao::start();
    let a = TransitKeyStore::connect(bao.config("uos")).await.unwrap();
    let b = TransitKeyStore::connect(bao.config("uos")).await.unwrap();

    // Same Transit keys, same derived keys: nothing to copy between replicas.
    for purpose in [KeyPurpose::AccessToken, KeyPurpose::Audit] {
        assert_eq!(a.public_keys(purpose), b.public_keys(purpose));
        assert_eq!(a.public_keys(purpose).len(), 1);
    }
    assert_ne!(
        a.signing_key(KeyPurpose::AccessToken).key_id(),
        a.signing_key(KeyPurpose::Audit).key_id(),
        "each purpose has its own key"
    );
    assert_eq!(
        a.secret("api-key-pepper").unwrap(),
        b.secret("api-key-pepper").unwrap()
    );
    assert_ne!(
        a.secret("api-key-pepper").unwrap(),
        a.secret("recovery-code-pepper").unwrap()
    );
    assert!(a.secret("../etc").is_err());
    let sealed = a.encrypt("totp:u1", b"JBSWY3DPEHPK3PXP").unwrap();
    assert_eq!(b.decrypt("totp:u1", &sealed).unwrap(), b"JBSWY3DPEHPK3PXP");
    assert!(matches!(
        b.decrypt("totp:u2", &sealed),
        Err(KeyError::DecryptionFailed)
    ));

    // Rotation through the port: a new key id, the old one still published and verifying.
    let old = a.signing_key(KeyPurpose::AccessToken);
    let signed_before = old.sign(b"token");
    let new_id = a.rotate(KeyPurpose::AccessToken).await.unwrap();
    assert_ne!(new_id, old.key_id());
    assert_eq!(a.signing_key(KeyPurpose::AccessToken).key_id(), new_id);
    let published = a.public_keys(KeyPurpose::AccessToken);
    assert_eq!(published[0].key_id, new_id, "current key first");
    assert!(find(&published, old.key_id()).verify(b"token", &signed_before));
    assert_eq!(
        a.public_keys(KeyPurpose::Audit),
        b.public_keys(KeyPurpose::Audit),
        "the audit key did not rotate"
    );

    // The other replica sees it after a reload, and the pepper never moves.
    let pepper = b.secret("api-key-pepper").unwrap();
    reload_until_changed(&b).await;
    assert_eq!(b.signing_key(KeyPurpose::AccessToken).key_id(), new_id);
    assert!(find(&b.public_keys(KeyPurpose::AccessToken), old.key_id())
        .verify(b"token", &signed_before));
    assert_eq!(b.secret("api-key-pepper").unwrap(), pepper);
    assert!(!b.reload().unwrap(), "no change, no report");

    // An operator rotates the data key in Transit: new secrets use it, old ones still open.
    bao.bao(&["write", "-f", "transit/keys/uos-data/rotate"]);
    reload_until_changed(&a).await;
    let resealed = a.encrypt("totp:u1", b"second").unwrap();
    assert_ne!(
        resealed.split(':').nth(2),
        sealed.split(':').nth(2),
        "a new data key id after the operator's rotation"
    );
    assert_eq!(a.decrypt("totp:u1", &sealed).unwrap(), b"JBSWY3DPEHPK3PXP");
    assert_eq!(a.decrypt("totp:u1", &resealed).unwrap(), b"second");

    // Retiring versions in Transit retires them here: the old access-token key is gone.
    bao.bao(&[
        "write",
        "transit/keys/uos-access-token/config",
        "min_decryption_version=2",
    ]);
    reload_until_changed(&a).await;
    let published = a.public_keys(KeyPurpose::AccessToken);
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].key_id, new_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfiguration_stops_connect_naming_the_setting() {
    let mut bao = Bao::start();
    let message = |r: Result<TransitKeyStore, KeyError>| match r {
        Ok(_) => panic!("connect must fail"),
        Err(e) => e.to_string(),
    };

    let mut cfg = bao.config("uos");
    cfg.address = "http://127.0.0.1:9".into();
    let shown = message(TransitKeyStore::connect(cfg).await);
    assert!(
        shown.starts_with("vault.address (http://127.0.0.1:9): cannot reach Vault"),
        "{shown}"
    );

    let mut cfg = bao.config("uos");
    cfg.token = "not-a-token".into();
    let shown = message(TransitKeyStore::connect(cfg).await);
    assert!(shown.starts_with("vault.token ("), "{shown}");
    assert!(shown.contains("permission denied"), "{shown}");
    assert!(
        !shown.contains("not-a-token"),
        "the token is never shown: {shown}"
    );

    let mut cfg = bao.config("uos");
    cfg.mount = "no-such-mount".into();
    let shown = message(TransitKeyStore::connect(cfg).await);
    assert!(shown.starts_with("vault.transit_mount ("), "{shown}");
    assert!(shown.contains("no-such-mount"), "{shown}");

    // A key of the wrong type under our name is refused, not silently used.
    bao.bao(&["write", "transit/keys/odd-audit", "type=ed25519"]);
    let shown = message(TransitKeyStore::connect(bao.config("odd")).await);
    assert!(shown.contains("odd-audit"), "{shown}");
}
