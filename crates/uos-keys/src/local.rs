//! Local key files in a data directory: the embedded default key store.
//!
//! Layout (each file hex of 32 bytes, mode 0600, in a 0700 directory; Unix only: the modes are
//! the protection):
//! - `<purpose>.key` — the current Ed25519 seed (`access-token.key`, `audit.key`, `decision.key`),
//! - `<purpose>.previous.key` — the seed it replaced at the last rotation, if any,
//! - `data-encryption.key` — the data key of [`KeyProvider::encrypt`],
//! - `secret-<name>.key` — a named symmetric secret.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rand::RngCore as _;

use crate::envelope::{DataKey, Envelope};
use crate::{check_secret_name, KeyError, KeyProvider, KeyPurpose, PublicKey, SigningKey};

const DATA_KEY_FILE: &str = "data-encryption.key";

/// Key files in one directory, loaded at [`LocalKeyStore::open`] and generated on first start.
///
/// Rotation ([`KeyProvider::rotate`]) updates both the files and this store; another process
/// using the same directory (another replica, or a running `admin-api` after `uosctl` rotated
/// offline) keeps the keys it loaded until it calls [`KeyProvider::reload`].
pub struct LocalKeyStore {
    dir: PathBuf,
    access_token: RwLock<KeyRing>,
    audit: RwLock<KeyRing>,
    decision: RwLock<KeyRing>,
    data_key: DataKey,
    /// Secrets already read or created, so each name touches the disk once per process.
    secrets: Mutex<HashMap<String, [u8; 32]>>,
}

/// The signing keys of one purpose. Rotation swaps the whole ring, so a reader never sees a
/// half-rotated pair.
#[derive(Clone)]
struct KeyRing {
    current: Arc<SigningKey>,
    previous: Option<Arc<SigningKey>>,
}

impl KeyRing {
    fn new(current: SigningKey, previous: Option<SigningKey>) -> Self {
        // A crash between the two writes of a rotation leaves the current key in both files;
        // publishing it twice would only confuse JWKS consumers.
        let previous = previous.filter(|p| p.key_id() != current.key_id());
        Self {
            current: Arc::new(current),
            previous: previous.map(Arc::new),
        }
    }
}

impl LocalKeyStore {
    /// Opens (creating with mode 0700 if missing) the key directory and loads each signing key
    /// (and its previous key, if rotated) and the data key, generating current keys on first
    /// start. Refuses key files that are group/world accessible or malformed, naming the file,
    /// rather than silently replacing a key.
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| io_error(dir, source))?;
        let load_ring = |purpose: KeyPurpose| -> Result<RwLock<KeyRing>, KeyError> {
            let seed = load_or_create(&current_path(dir, purpose), || {
                SigningKey::generate().seed()
            })?;
            Ok(RwLock::new(read_ring(dir, purpose, seed)?))
        };
        let data_key = load_or_create(&dir.join(DATA_KEY_FILE), random_32)?;
        Ok(Self {
            dir: dir.to_owned(),
            access_token: load_ring(KeyPurpose::AccessToken)?,
            audit: load_ring(KeyPurpose::Audit)?,
            decision: load_ring(KeyPurpose::Decision)?,
            data_key: DataKey::from_bytes(data_key),
            secrets: Mutex::new(HashMap::new()),
        })
    }

    /// Rotates the `purpose` signing key in `dir` without a running service (for `uosctl`):
    /// exactly [`LocalKeyStore::open`] then [`KeyProvider::rotate`]. Returns the new key id.
    /// A service already running on `dir` picks the new key up when it reloads its keys.
    pub fn rotate_offline(dir: &Path, purpose: KeyPurpose) -> Result<String, KeyError> {
        Self::open(dir)?.rotate(purpose)
    }

    /// Crash-safe order: (1) the current seed is copied to `<purpose>.previous.key`, then (2) the
    /// new seed replaces `<purpose>.key`, each by an atomic rename of a 0600 temporary file,
    /// with the directory synced after each. A crash before (2) leaves the old key current (the
    /// previous file may then hold a copy of it, which `open` ignores); after (2) the old key is
    /// already the previous one. The current key is therefore never lost.
    ///
    /// The current key is read from its file, not from memory, and the whole step holds an
    /// exclusive lock on the directory, so concurrent rotations (in this or another process)
    /// run one after the other and each keeps the key the other made.
    pub fn rotate(&self, purpose: KeyPurpose) -> Result<String, KeyError> {
        let _lock = lock_dir(&self.dir)?;
        let current_path = current_path(&self.dir, purpose);
        let old_seed = load_required(&current_path)?;
        let new_key = SigningKey::generate();
        replace_key_file(&previous_path(&self.dir, purpose), &old_seed)?;
        replace_key_file(&current_path, &new_key.seed())?;
        let key_id = new_key.key_id().to_owned();
        self.set_ring(
            purpose,
            KeyRing::new(new_key, Some(SigningKey::from_seed(&old_seed))),
        );
        Ok(key_id)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ring(&self, purpose: KeyPurpose) -> KeyRing {
        let lock = match purpose {
            KeyPurpose::AccessToken => &self.access_token,
            KeyPurpose::Audit => &self.audit,
            KeyPurpose::Decision => &self.decision,
        };
        // A poisoned lock only means another thread panicked; the ring is replaced whole, so it
        // is never half-written.
        lock.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_ring(&self, purpose: KeyPurpose, ring: KeyRing) {
        let lock = match purpose {
            KeyPurpose::AccessToken => &self.access_token,
            KeyPurpose::Audit => &self.audit,
            KeyPurpose::Decision => &self.decision,
        };
        *lock.write().unwrap_or_else(|e| e.into_inner()) = ring;
    }
}

#[async_trait::async_trait]
impl KeyProvider for LocalKeyStore {
    fn signing_key(&self, purpose: KeyPurpose) -> Arc<SigningKey> {
        self.ring(purpose).current
    }

    fn public_keys(&self, purpose: KeyPurpose) -> Vec<PublicKey> {
        let ring = self.ring(purpose);
        std::iter::once(&ring.current)
            .chain(ring.previous.as_ref())
            .map(|key| key.public_key())
            .collect()
    }

    fn secret(&self, name: &str) -> Result<[u8; 32], KeyError> {
        check_secret_name(name)?;
        // A poisoned lock only means another thread panicked; the map itself is still whole.
        let mut cache = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(secret) = cache.get(name) {
            return Ok(*secret);
        }
        let path = self.dir.join(format!("secret-{name}.key"));
        let secret = load_or_create(&path, random_32)?;
        cache.insert(name.to_owned(), secret);
        Ok(secret)
    }

    fn encrypt(&self, context: &str, plaintext: &[u8]) -> Result<String, KeyError> {
        self.data_key.encrypt(context, plaintext)
    }

    fn decrypt(&self, context: &str, ciphertext: &str) -> Result<Vec<u8>, KeyError> {
        let envelope = Envelope::parse(ciphertext)?;
        self.data_key.decrypt(context, &envelope)
    }

    async fn rotate(&self, purpose: KeyPurpose) -> Result<String, KeyError> {
        LocalKeyStore::rotate(self, purpose)
    }

    /// Under a shared lock on the directory, so a rotation (which holds it exclusively across
    /// its two writes) is seen whole or not at all.
    fn reload(&self) -> Result<bool, KeyError> {
        let _lock = lock_dir_shared(&self.dir)?;
        let mut changed = false;
        for purpose in KeyPurpose::ALL {
            let seed = load_required(&current_path(&self.dir, purpose))?;
            let ring = read_ring(&self.dir, purpose, seed)?;
            let held = self.ring(purpose);
            let same = ring.current.key_id() == held.current.key_id()
                && ring.previous.as_ref().map(|k| k.key_id())
                    == held.previous.as_ref().map(|k| k.key_id());
            if !same {
                self.set_ring(purpose, ring);
                changed = true;
            }
        }
        Ok(changed)
    }
}

impl fmt::Debug for LocalKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets are never shown; key ids are enough to tell stores apart.
        f.debug_struct("LocalKeyStore")
            .field("dir", &self.dir)
            .field(
                "access_token",
                &self.signing_key(KeyPurpose::AccessToken).key_id(),
            )
            .field("audit", &self.signing_key(KeyPurpose::Audit).key_id())
            .field("decision", &self.signing_key(KeyPurpose::Decision).key_id())
            .field("data_key", &self.data_key.key_id())
            .finish_non_exhaustive()
    }
}

fn current_path(dir: &Path, purpose: KeyPurpose) -> PathBuf {
    dir.join(format!("{}.key", purpose.as_str()))
}

fn previous_path(dir: &Path, purpose: KeyPurpose) -> PathBuf {
    dir.join(format!("{}.previous.key", purpose.as_str()))
}

fn random_32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// An exclusive advisory lock on the key directory, released when the handle is dropped.
fn lock_dir(dir: &Path) -> Result<File, KeyError> {
    let handle = File::open(dir).map_err(|source| io_error(dir, source))?;
    handle.lock().map_err(|source| io_error(dir, source))?;
    Ok(handle)
}

/// A shared advisory lock on the key directory: readers exclude a rotation, not each other.
fn lock_dir_shared(dir: &Path) -> Result<File, KeyError> {
    let handle = File::open(dir).map_err(|source| io_error(dir, source))?;
    handle
        .lock_shared()
        .map_err(|source| io_error(dir, source))?;
    Ok(handle)
}

/// The `purpose` ring whose current key is `seed`, with the previous key from its file if any.
fn read_ring(dir: &Path, purpose: KeyPurpose, seed: [u8; 32]) -> Result<KeyRing, KeyError> {
    let previous = load_existing(&previous_path(dir, purpose))?;
    Ok(KeyRing::new(
        SigningKey::from_seed(&seed),
        previous.map(|seed| SigningKey::from_seed(&seed)),
    ))
}

/// The 32 bytes stored at `path`, which must exist.
fn load_required(path: &Path) -> Result<[u8; 32], KeyError> {
    let file = File::open(path).map_err(|source| io_error(path, source))?;
    read_key_file(path, file)
}

/// The 32 bytes stored at `path`, or `None` if there is no such file.
fn load_existing(path: &Path) -> Result<Option<[u8; 32]>, KeyError> {
    match File::open(path) {
        Ok(file) => read_key_file(path, file).map(Some),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error(path, source)),
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
    let tmp = temporary_path(path);
    let result = write_new(&tmp, bytes).and_then(|()| fs::hard_link(&tmp, path));
    // The temporary name is never needed again, whether or not linking worked.
    let _ = fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(io_error(path, source)),
    }
}

/// Replaces (or creates) the key file at `path` atomically: a 0600 temporary file, synced, is
/// renamed over it and the directory is synced, so after a crash the name holds either the old
/// or the new key, never a mix, and a completed replacement survives power loss.
fn replace_key_file(path: &Path, bytes: &[u8; 32]) -> Result<(), KeyError> {
    let tmp = temporary_path(path);
    let result = write_new(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path))
        .and_then(|()| sync_parent(path));
    if result.is_err() {
        // Gone already if the rename worked; otherwise nothing will ever read it.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|source| io_error(path, source))
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut suffix = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    path.with_extension(format!("tmp-{}", hex::encode(suffix)))
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
            [
                "access-token.key",
                "audit.key",
                "data-encryption.key",
                "decision.key",
                "secret-api-key-pepper.key"
            ],
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
