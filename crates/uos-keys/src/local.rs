//! Local key files in a data directory: the embedded default key store.
//!
//! Layout: `<dir>/access-token.key`, `<dir>/audit.key` (hex of the 32-byte Ed25519 seed) and
//! `<dir>/secret-<name>.key` (hex of a 32-byte symmetric secret). Unix only: the 0600/0700 modes
//! are the protection.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand::RngCore as _;

use crate::{check_secret_name, KeyError, KeyProvider, KeyPurpose, PublicKey, SigningKey};

/// Key files in one directory, loaded at [`LocalKeyStore::open`] and generated on first start.
pub struct LocalKeyStore {
    dir: PathBuf,
    access_token: Arc<SigningKey>,
    audit: Arc<SigningKey>,
    /// Secrets already read or created, so each name touches the disk once per process.
    secrets: Mutex<HashMap<String, [u8; 32]>>,
}

impl LocalKeyStore {
    /// Opens (creating with mode 0700 if missing) the key directory and loads each signing key,
    /// generating it on first start. Refuses key files that are group/world accessible or
    /// malformed, naming the file, rather than silently replacing a key.
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| io_error(dir, source))?;
        let load_key = |purpose: KeyPurpose| -> Result<Arc<SigningKey>, KeyError> {
            let path = dir.join(format!("{}.key", purpose.as_str()));
            let seed = load_or_create(&path, || SigningKey::generate().seed())?;
            Ok(Arc::new(SigningKey::from_seed(&seed)))
        };
        Ok(Self {
            dir: dir.to_owned(),
            access_token: load_key(KeyPurpose::AccessToken)?,
            audit: load_key(KeyPurpose::Audit)?,
            secrets: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl KeyProvider for LocalKeyStore {
    fn signing_key(&self, purpose: KeyPurpose) -> Arc<SigningKey> {
        match purpose {
            KeyPurpose::AccessToken => Arc::clone(&self.access_token),
            KeyPurpose::Audit => Arc::clone(&self.audit),
        }
    }

    fn public_keys(&self, purpose: KeyPurpose) -> Vec<PublicKey> {
        // Local files hold no rotation history yet, so only the current key is published.
        vec![self.signing_key(purpose).public_key()]
    }

    fn secret(&self, name: &str) -> Result<[u8; 32], KeyError> {
        check_secret_name(name)?;
        // A poisoned lock only means another thread panicked; the map itself is still whole.
        let mut cache = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(secret) = cache.get(name) {
            return Ok(*secret);
        }
        let path = self.dir.join(format!("secret-{name}.key"));
        let secret = load_or_create(&path, || {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            bytes
        })?;
        cache.insert(name.to_owned(), secret);
        Ok(secret)
    }
}

impl fmt::Debug for LocalKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets are never shown; key ids are enough to tell stores apart.
        f.debug_struct("LocalKeyStore")
            .field("dir", &self.dir)
            .field("access_token", &self.access_token.key_id())
            .field("audit", &self.audit.key_id())
            .finish_non_exhaustive()
    }
}

/// Reads the 32 bytes stored at `path`, or creates the file with `generate()` if it is absent.
fn load_or_create(path: &Path, generate: impl FnOnce() -> [u8; 32]) -> Result<[u8; 32], KeyError> {
    match File::open(path) {
        Ok(file) => read_key_file(path, file),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let bytes = generate();
            if create_key_file(path, &bytes)? {
                Ok(bytes)
            } else {
                // Another process created it first; its key wins so both use the same one.
                let file = File::open(path).map_err(|source| io_error(path, source))?;
                read_key_file(path, file)
            }
        }
        Err(source) => Err(io_error(path, source)),
    }
}

fn read_key_file(path: &Path, mut file: File) -> Result<[u8; 32], KeyError> {
    // Checked on the open handle, so the file cannot be swapped between check and read.
    let meta = file.metadata().map_err(|source| io_error(path, source))?;
    if !meta.is_file() {
        return Err(malformed(path, "not a regular file"));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    // A key file is 65 bytes; reading a little more is enough to notice a wrong file.
    (&mut file)
        .take(256)
        .read_to_string(&mut text)
        .map_err(|_| malformed(path, "not UTF-8 text"))?;
    let raw = hex::decode(text.trim()).map_err(|_| malformed(path, "not hex"))?;
    raw.try_into()
        .map_err(|_| malformed(path, "expected 64 hex characters (32 bytes)"))
}

/// Writes a new key file with mode 0600 from the start: the bytes go to a temporary file created
/// 0600, which is then hard-linked into place. Linking fails if the target exists, so a
/// concurrent start cannot overwrite a key another process already uses, and a crash never
/// leaves a half-written key file under the real name. Returns `false` if the file already
/// existed.
fn create_key_file(path: &Path, bytes: &[u8; 32]) -> Result<bool, KeyError> {
    let mut suffix = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let tmp = path.with_extension(format!("tmp-{}", hex::encode(suffix)));
    let result = write_new(&tmp, bytes).and_then(|()| fs::hard_link(&tmp, path));
    // The temporary name is never needed again, whether or not linking worked.
    let _ = fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(io_error(path, source)),
    }
}

fn write_new(path: &Path, bytes: &[u8; 32]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())?;
    file.sync_all()
}

fn io_error(path: &Path, source: std::io::Error) -> KeyError {
    KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn malformed(path: &Path, reason: &str) -> KeyError {
    KeyError::Malformed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generate_then_reload_gives_same_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let first = LocalKeyStore::open(&dir).unwrap();
        let second = LocalKeyStore::open(&dir).unwrap();
        for purpose in [KeyPurpose::AccessToken, KeyPurpose::Audit] {
            assert_eq!(
                first.signing_key(purpose).key_id(),
                second.signing_key(purpose).key_id(),
                "{purpose:?} key must survive a restart"
            );
            assert_eq!(first.public_keys(purpose), second.public_keys(purpose));
        }
        assert_ne!(
            first.signing_key(KeyPurpose::AccessToken).key_id(),
            first.signing_key(KeyPurpose::Audit).key_id(),
            "each purpose has its own key"
        );
    }

    #[test]
    fn files_are_0600_and_dir_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let store = LocalKeyStore::open(&dir).unwrap();
        store.secret("api-key-pepper").unwrap();
        assert_eq!(mode(&dir), 0o700);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["access-token.key", "audit.key", "secret-api-key-pepper.key"],
            "no temporary files are left behind"
        );
        for name in names {
            assert_eq!(mode(&dir.join(&name)), 0o600, "{name}");
        }
    }

    #[test]
    fn secret_is_created_once_and_persisted() {
        let tmp = tempfile::tempdir().unwrap();
        let a = LocalKeyStore::open(tmp.path()).unwrap();
        let pepper = a.secret("api-key-pepper").unwrap();
        assert_eq!(a.secret("api-key-pepper").unwrap(), pepper);
        assert_ne!(a.secret("other").unwrap(), pepper);
        let b = LocalKeyStore::open(tmp.path()).unwrap();
        assert_eq!(b.secret("api-key-pepper").unwrap(), pepper);
        assert!(matches!(
            b.secret("../escape"),
            Err(KeyError::InvalidSecretName(_))
        ));
    }

    #[test]
    fn malformed_file_is_an_error_naming_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        LocalKeyStore::open(tmp.path()).unwrap();
        let path = tmp.path().join("audit.key");
        fs::write(&path, "not a key\n").unwrap();
        let err = LocalKeyStore::open(tmp.path()).unwrap_err();
        assert!(matches!(err, KeyError::Malformed { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );

        fs::write(&path, "abcd\n").unwrap();
        let err = LocalKeyStore::open(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("audit.key"), "{err}");
    }

    #[test]
    fn group_or_world_readable_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        LocalKeyStore::open(tmp.path()).unwrap();
        let path = tmp.path().join("access-token.key");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = LocalKeyStore::open(tmp.path()).unwrap_err();
        assert!(
            matches!(err, KeyError::InsecurePermissions { mode: 0o644, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("access-token.key"), "{err}");
    }

    #[test]
    fn debug_shows_no_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalKeyStore::open(tmp.path()).unwrap();
        let pepper = store.secret("api-key-pepper").unwrap();
        let seed = store.signing_key(KeyPurpose::Audit).seed();
        let shown = format!("{store:?}");
        assert!(!shown.contains(&hex::encode(pepper)));
        assert!(!shown.contains(&hex::encode(seed)));
    }
}
