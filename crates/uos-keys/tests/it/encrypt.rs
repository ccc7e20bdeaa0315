//! `encrypt`/`decrypt`: roundtrip, context binding, tamper detection, persistence.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use uos_keys::{KeyError, KeyProvider as _, LocalKeyStore};

const CONTEXT: &str = "totp:0190a3c4-0000-7000-8000-000000000001";

#[test]
fn roundtrip() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    for plaintext in [&b""[..], b"x", &[0u8; 20], &[0xffu8; 4096]] {
        let sealed = store.encrypt(CONTEXT, plaintext).unwrap();
        assert!(sealed.starts_with("uosenc:v1:"), "{sealed}");
        assert_eq!(store.decrypt(CONTEXT, &sealed).unwrap(), plaintext);
    }
}

#[test]
fn ciphertext_does_not_contain_the_plaintext() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    let plaintext = b"JBSWY3DPEHPK3PXP-secret-seed";
    let sealed = store.encrypt(CONTEXT, plaintext).unwrap();
    let payload = URL_SAFE_NO_PAD
        .decode(sealed.rsplit(':').next().unwrap())
        .unwrap();
    assert!(!payload
        .windows(plaintext.len())
        .any(|window| window == plaintext));
}

#[test]
fn wrong_context_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    let sealed = store.encrypt("totp:user-a", b"seed").unwrap();
    for other in [
        "totp:user-b",
        "totp:user-a ",
        "TOTP:user-a",
        "webauthn:user-a",
    ] {
        assert!(
            matches!(
                store.decrypt(other, &sealed),
                Err(KeyError::DecryptionFailed)
            ),
            "context {other:?} must not decrypt"
        );
    }
    assert!(matches!(
        store.decrypt("", &sealed),
        Err(KeyError::EmptyContext)
    ));
    assert!(matches!(
        store.encrypt("", b"seed"),
        Err(KeyError::EmptyContext)
    ));
}

#[test]
fn tampered_ciphertext_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    let sealed = store.encrypt(CONTEXT, b"twenty bytes of seed").unwrap();
    let (header, body) = sealed.rsplit_once(':').unwrap();
    let payload = URL_SAFE_NO_PAD.decode(body).unwrap();
    // Flip one bit in every byte position: nonce, ciphertext and tag are all covered.
    for i in 0..payload.len() {
        let mut altered = payload.clone();
        altered[i] ^= 0x01;
        let text = format!("{header}:{}", URL_SAFE_NO_PAD.encode(&altered));
        assert!(
            matches!(
                store.decrypt(CONTEXT, &text),
                Err(KeyError::DecryptionFailed)
            ),
            "bit flip at byte {i} must be detected"
        );
    }
    let truncated = format!(
        "{header}:{}",
        URL_SAFE_NO_PAD.encode(&payload[..payload.len() - 1])
    );
    assert!(store.decrypt(CONTEXT, &truncated).is_err());
}

#[test]
fn unknown_version_key_id_or_format_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    let sealed = store.encrypt(CONTEXT, b"seed").unwrap();
    let parts: Vec<&str> = sealed.split(':').collect();

    let v2 = format!("uosenc:v2:{}:{}", parts[2], parts[3]);
    assert!(matches!(
        store.decrypt(CONTEXT, &v2),
        Err(KeyError::UnsupportedCiphertextVersion(v)) if v == "v2"
    ));
    let other_key = format!("uosenc:v1:0123456789abcdef:{}", parts[3]);
    assert!(matches!(
        store.decrypt(CONTEXT, &other_key),
        Err(KeyError::UnknownDataKey(id)) if id == "0123456789abcdef"
    ));
    for junk in [
        "",
        "plain text",
        "vault:v1:abcd",
        "uosenc:v1:",
        "uosenc:v1:ab:%%",
    ] {
        assert!(
            matches!(
                store.decrypt(CONTEXT, junk),
                Err(KeyError::MalformedCiphertext(_))
            ),
            "{junk:?}"
        );
    }
}

#[test]
fn a_ciphertext_from_another_store_does_not_decrypt() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let sealed = LocalKeyStore::open(a.path())
        .unwrap()
        .encrypt(CONTEXT, b"seed")
        .unwrap();
    let other = LocalKeyStore::open(b.path()).unwrap();
    assert!(matches!(
        other.decrypt(CONTEXT, &sealed),
        Err(KeyError::UnknownDataKey(_))
    ));
}

#[test]
fn data_key_persists_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let sealed = LocalKeyStore::open(tmp.path())
        .unwrap()
        .encrypt(CONTEXT, b"seed")
        .unwrap();
    let reopened = LocalKeyStore::open(tmp.path()).unwrap();
    assert_eq!(reopened.decrypt(CONTEXT, &sealed).unwrap(), b"seed");
    assert_eq!(
        crate::files_with_modes(tmp.path())
            .into_iter()
            .find(|(name, _)| name == "data-encryption.key"),
        Some(("data-encryption.key".to_owned(), 0o600))
    );
}

#[test]
fn rotating_signing_keys_does_not_touch_the_data_key() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(tmp.path()).unwrap();
    let sealed = store.encrypt(CONTEXT, b"seed").unwrap();
    store.rotate(uos_keys::KeyPurpose::AccessToken).unwrap();
    store.rotate(uos_keys::KeyPurpose::Audit).unwrap();
    assert_eq!(store.decrypt(CONTEXT, &sealed).unwrap(), b"seed");
}
