//! In-memory key store: fresh keys per process, for tests and throwaway dev runs.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use rand::RngCore as _;

use crate::{check_secret_name, KeyError, KeyProvider, KeyPurpose, PublicKey, SigningKey};

/// Keys that live only as long as the value; nothing touches the disk.
pub struct MemoryKeyStore {
    access_token: Arc<SigningKey>,
    audit: Arc<SigningKey>,
    secrets: Mutex<HashMap<String, [u8; 32]>>,
}

impl MemoryKeyStore {
    pub fn generate() -> Self {
        Self {
            access_token: Arc::new(SigningKey::generate()),
            audit: Arc::new(SigningKey::generate()),
            secrets: Mutex::new(HashMap::new()),
        }
    }
}

impl Default for MemoryKeyStore {
    fn default() -> Self {
        Self::generate()
    }
}

impl KeyProvider for MemoryKeyStore {
    fn signing_key(&self, purpose: KeyPurpose) -> Arc<SigningKey> {
        match purpose {
            KeyPurpose::AccessToken => Arc::clone(&self.access_token),
            KeyPurpose::Audit => Arc::clone(&self.audit),
        }
    }

    fn public_keys(&self, purpose: KeyPurpose) -> Vec<PublicKey> {
        vec![self.signing_key(purpose).public_key()]
    }

    fn secret(&self, name: &str) -> Result<[u8; 32], KeyError> {
        check_secret_name(name)?;
        // A poisoned lock only means another thread panicked; the map itself is still whole.
        let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        let secret = secrets.entry(name.to_owned()).or_insert_with(|| {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            bytes
        });
        Ok(*secret)
    }
}

impl fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryKeyStore")
            .field("access_token", &self.access_token.key_id())
            .field("audit", &self.audit.key_id())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn usable_as_a_shared_provider() {
        let keys: Arc<dyn KeyProvider> = Arc::new(MemoryKeyStore::generate());
        let signing = keys.signing_key(KeyPurpose::Audit);
        assert_eq!(
            keys.public_keys(KeyPurpose::Audit),
            vec![signing.public_key()]
        );
        assert!(keys.public_keys(KeyPurpose::Audit)[0].verify(b"m", &signing.sign(b"m")));
        assert_eq!(
            keys.secret("pepper").unwrap(),
            keys.secret("pepper").unwrap()
        );
        assert_ne!(
            keys.secret("pepper").unwrap(),
            keys.secret("other").unwrap()
        );
    }
}
