//! Vault/OpenBao Transit as the key provider: the production adapter of the key port.
//!
//! Transit never hands out its keys, and the hot paths (signing every audit event and access
//! token, opening a TOTP seed at each login) must not wait for a network round trip. So each key
//! this provider uses is *derived* by Transit: the HMAC-SHA256, under a Transit key version, of
//! a fixed label. HMAC is a PRF (the construction HKDF is built on), the output is 32 uniformly
//! random bytes, deterministic per version, and computing it needs the Transit key itself. The
//! result lives only in this process's memory:
//!
//! | Transit key (`<prefix>-…`) | label | derived |
//! |---|---|---|
//! | `access-token` | `uos ed25519 seed v1` | the Ed25519 seed of each version: rotation is Transit's |
//! | `audit` | `uos ed25519 seed v1` | the same for audit events and checkpoints |
//! | `decision` | `uos ed25519 seed v1` | the same for the decision point's decisions |
//! | `data` | `uos data key v1` | the XChaCha20-Poly1305 key of [`KeyProvider::encrypt`] per version |
//! | `secrets` | `uos named secrets v1` | version 1 only: the root named secrets are derived from |
//!
//! Consequences: no private key is ever written to disk; every replica pointed at the same
//! Transit keys derives the same keys with no shared files; rotating (here or with
//! `bao write -f transit/keys/<name>/rotate`) adds a version, whose derived key becomes current,
//! while every older version still available in Transit keeps being derived and published, so
//! old signatures and ciphertexts keep verifying and decrypting. Raising a key's
//! `min_decryption_version` or `min_encryption_version` in Transit retires the versions below it
//! here too. Named secrets (the API-key pepper) never rotate: a new pepper would void every
//! issued API key.
//!
//! Calls to Transit happen at [`TransitKeyStore::connect`], at rotation and on reload. Start-up
//! fails with a message naming the configuration key at fault when Vault is unreachable, the
//! token is refused or the mount is missing.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::envelope::{DataKey, Envelope};
use crate::{check_secret_name, KeyError, KeyProvider, KeyPurpose, PublicKey, SigningKey};

const SEED_LABEL: &[u8] = b"uos ed25519 seed v1";
const DATA_KEY_LABEL: &[u8] = b"uos data key v1";
const SECRETS_LABEL: &[u8] = b"uos named secrets v1";
/// How long one call to Vault may take before it counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Transit is and which keys to use (`vault.*` in the service configuration).
#[derive(Clone)]
pub struct TransitConfig {
    /// `http(s)://host:port` of the Vault or OpenBao server.
    pub address: String,
    pub token: String,
    /// Mount path of the Transit engine (default `transit`).
    pub mount: String,
    /// Transit key names are `<key_prefix>-access-token`, `-audit`, `-decision`, `-data`, `-secrets`.
    pub key_prefix: String,
}

impl fmt::Debug for TransitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransitConfig")
            .field("address", &self.address)
            .field("token", &"[redacted]")
            .field("mount", &self.mount)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// The keys derived from Transit, replaced whole on every refresh so readers never see a mix.
#[derive(Clone)]
struct Derived {
    /// Newest version first; never empty.
    access_token: Vec<Arc<SigningKey>>,
    audit: Vec<Arc<SigningKey>>,
    decision: Vec<Arc<SigningKey>>,
    data: Vec<DataKey>,
    /// The newest Transit version behind each list, in that order: a refresh that read Transit
    /// before a rotation finished must not put the older keys back.
    latest: [u64; 4],
}

impl Derived {
    fn ring(&self, purpose: KeyPurpose) -> &[Arc<SigningKey>] {
        match purpose {
            KeyPurpose::AccessToken => &self.access_token,
            KeyPurpose::Audit => &self.audit,
            KeyPurpose::Decision => &self.decision,
        }
    }

    fn ids(&self) -> Vec<String> {
        self.access_token
            .iter()
            .chain(&self.audit)
            .chain(&self.decision)
            .map(|k| k.key_id().to_owned())
            .chain(self.data.iter().map(|k| k.key_id().to_owned()))
            .collect()
    }
}

/// A Transit-backed [`KeyProvider`]; see the module documentation.
pub struct TransitKeyStore {
    transit: Arc<Transit>,
    keys: Arc<RwLock<Derived>>,
    secrets_root: [u8; 32],
    /// Set by a background refresh that changed the keys, taken by the next `reload`.
    changed: Arc<AtomicBool>,
    refreshing: Arc<AtomicBool>,
}

/// The Vault client and the names it works with.
struct Transit {
    client: VaultClient,
    cfg: TransitConfig,
}

impl TransitKeyStore {
    /// Checks that Transit answers with this token, creates the keys that do not exist yet
    /// (aes256-gcm96, not exportable) and derives every usable version of each.
    pub async fn connect(cfg: TransitConfig) -> Result<Self, KeyError> {
        let settings = VaultClientSettingsBuilder::default()
            .address(&cfg.address)
            .token(&cfg.token)
            .timeout(Some(REQUEST_TIMEOUT))
            .build()
            .map_err(|e| vault_error(&cfg, "vault.address", e.to_string()))?;
        let client = VaultClient::new(settings)
            .map_err(|e| vault_error(&cfg, "vault.address", e.to_string()))?;
        let transit = Transit { client, cfg };
        for purpose in ["access-token", "audit", "decision", "data", "secrets"] {
            transit.ensure_key(purpose).await?;
        }
        let keys = transit.derive_all().await?;
        let secrets_root = transit.derive("secrets", SECRETS_LABEL, 1).await?;
        Ok(Self {
            transit: Arc::new(transit),
            keys: Arc::new(RwLock::new(keys)),
            secrets_root,
            changed: Arc::new(AtomicBool::new(false)),
            refreshing: Arc::new(AtomicBool::new(false)),
        })
    }

    fn derived(&self) -> Derived {
        // A poisoned lock only means another thread panicked; the value is replaced whole.
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs `next` unless it is older than what is held; true if the keys changed.
    fn replace(keys: &RwLock<Derived>, next: Derived) -> bool {
        let mut held = keys.write().unwrap_or_else(|e| e.into_inner());
        if next.latest.iter().zip(held.latest).any(|(n, h)| *n < h) {
            return false;
        }
        let changed = held.ids() != next.ids();
        *held = next;
        changed
    }
}

impl Transit {
    fn name(&self, purpose: &str) -> String {
        format!("{}-{purpose}", self.cfg.key_prefix)
    }

    async fn ensure_key(&self, purpose: &str) -> Result<(), KeyError> {
        let name = self.name(purpose);
        match vaultrs::transit::key::read(&self.client, &self.cfg.mount, &name).await {
            Ok(_) => Ok(()),
            Err(ClientError::APIError { code: 404, errors }) if errors.is_empty() => {
                vaultrs::transit::key::create(&self.client, &self.cfg.mount, &name, None)
                    .await
                    .map_err(|e| self.explain(e, &name))
            }
            Err(e) => Err(self.explain(e, &name)),
        }
    }

    /// The versions of `purpose`'s key that can still be used, newest first.
    async fn versions(&self, purpose: &str) -> Result<Vec<u64>, KeyError> {
        let name = self.name(purpose);
        let key = vaultrs::transit::key::read(&self.client, &self.cfg.mount, &name)
            .await
            .map_err(|e| self.explain(e, &name))?;
        let vaultrs::api::transit::responses::ReadKeyData::Symmetric(versions) = key.keys else {
            return Err(vault_error(
                &self.cfg,
                "vault.transit_mount",
                format!(
                    "Transit key {name} is asymmetric; it must be a symmetric (aes256-gcm96) key"
                ),
            ));
        };
        let oldest = key
            .min_decryption_version
            .max(key.min_encryption_version)
            .max(1);
        let mut usable: Vec<u64> = versions
            .keys()
            .filter_map(|v| v.parse().ok())
            .filter(|v| *v >= oldest)
            .collect();
        usable.sort_unstable_by(|a, b| b.cmp(a));
        if usable.is_empty() {
            return Err(vault_error(
                &self.cfg,
                "vault.transit_mount",
                format!("Transit key {name} has no usable version"),
            ));
        }
        Ok(usable)
    }

    /// HMAC-SHA256 of `label` under `version` of `purpose`'s key: 32 bytes only Transit can make.
    async fn derive(
        &self,
        purpose: &str,
        label: &[u8],
        version: u64,
    ) -> Result<[u8; 32], KeyError> {
        let name = self.name(purpose);
        let answer = vaultrs::transit::generate::hmac(
            &self.client,
            &self.cfg.mount,
            &name,
            &STANDARD.encode(label),
            Some(
                vaultrs::api::transit::requests::GenerateHmacRequest::builder()
                    .key_version(version)
                    .algorithm(vaultrs::api::transit::HashAlgorithm::Sha2_256),
            ),
        )
        .await
        .map_err(|e| self.explain(e, &name))?;
        // `vault:v<version>:<base64 of the MAC>`
        answer
            .hmac
            .rsplit(':')
            .next()
            .and_then(|b64| STANDARD.decode(b64).ok())
            .and_then(|raw| <[u8; 32]>::try_from(raw).ok())
            .ok_or_else(|| {
                vault_error(
                    &self.cfg,
                    "vault.address",
                    format!("Transit answered an HMAC of unexpected form for {name}"),
                )
            })
    }

    /// The key of every usable version of `purpose`, newest first, and the newest version.
    async fn derive_versions<K>(
        &self,
        purpose: &str,
        label: &[u8],
        make: impl Fn([u8; 32]) -> K,
    ) -> Result<(Vec<K>, u64), KeyError> {
        let versions = self.versions(purpose).await?;
        let mut keys = Vec::with_capacity(versions.len());
        for version in &versions {
            keys.push(make(self.derive(purpose, label, *version).await?));
        }
        Ok((keys, versions[0]))
    }

    async fn derive_all(&self) -> Result<Derived, KeyError> {
        let signing = |seed: [u8; 32]| Arc::new(SigningKey::from_seed(&seed));
        let (access_token, a) = self
            .derive_versions("access-token", SEED_LABEL, signing)
            .await?;
        let (audit, b) = self.derive_versions("audit", SEED_LABEL, signing).await?;
        let (decision, d) = self
            .derive_versions("decision", SEED_LABEL, signing)
            .await?;
        let (data, c) = self
            .derive_versions("data", DATA_KEY_LABEL, DataKey::from_bytes)
            .await?;
        Ok(Derived {
            access_token,
            audit,
            decision,
            data,
            latest: [a, b, d, c],
        })
    }

    /// A Vault error as the operator needs to read it: which setting to look at.
    fn explain(&self, e: ClientError, key: &str) -> KeyError {
        match e {
            ClientError::RestClientError { source } => vault_error(
                &self.cfg,
                "vault.address",
                format!("cannot reach Vault: {source}"),
            ),
            ClientError::APIError { code: 403, .. } => vault_error(
                &self.cfg,
                "vault.token",
                format!("permission denied on Transit key {key} (token invalid, expired, or its policy lacks read/create/hmac/rotate on {}/keys/{key})", self.cfg.mount),
            ),
            ClientError::APIError { code: 404, errors } if !errors.is_empty() => vault_error(
                &self.cfg,
                "vault.transit_mount",
                format!("no Transit engine mounted at {:?} ({})", self.cfg.mount, errors.join("; ")),
            ),
            ClientError::APIError { code: 503, .. } => vault_error(
                &self.cfg,
                "vault.address",
                "Vault is sealed or in standby".to_owned(),
            ),
            other => vault_error(&self.cfg, "vault.address", format!("Transit key {key}: {other}")),
        }
    }
}

fn vault_error(cfg: &TransitConfig, setting: &'static str, reason: String) -> KeyError {
    KeyError::Vault {
        setting,
        address: cfg.address.clone(),
        reason,
    }
}

#[async_trait::async_trait]
impl KeyProvider for TransitKeyStore {
    fn signing_key(&self, purpose: KeyPurpose) -> Arc<SigningKey> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        // `versions` refuses a key without a usable version, so the ring is never empty.
        keys.ring(purpose)[0].clone()
    }

    fn public_keys(&self, purpose: KeyPurpose) -> Vec<PublicKey> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.ring(purpose).iter().map(|k| k.public_key()).collect()
    }

    fn secret(&self, name: &str) -> Result<[u8; 32], KeyError> {
        check_secret_name(name)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secrets_root)
            .map_err(|_| KeyError::EncryptionFailed)?;
        mac.update(b"uos secret\0");
        mac.update(name.as_bytes());
        Ok(mac.finalize().into_bytes().into())
    }

    fn encrypt(&self, context: &str, plaintext: &[u8]) -> Result<String, KeyError> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.data[0].encrypt(context, plaintext)
    }

    fn decrypt(&self, context: &str, ciphertext: &str) -> Result<Vec<u8>, KeyError> {
        let envelope = Envelope::parse(ciphertext)?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys
            .data
            .iter()
            .find(|k| k.key_id() == envelope.key_id)
            .ok_or_else(|| KeyError::UnknownDataKey(envelope.key_id.to_owned()))?;
        key.decrypt(context, &envelope)
    }

    /// Rotates the Transit key, then derives its new version. Another process's rotation of
    /// the same key at the same moment makes two versions; the newest is current everywhere.
    async fn rotate(&self, purpose: KeyPurpose) -> Result<String, KeyError> {
        let name = self.transit.name(purpose.as_str());
        vaultrs::transit::key::rotate(&self.transit.client, &self.transit.cfg.mount, &name)
            .await
            .map_err(|e| self.transit.explain(e, &name))?;
        let next = self.transit.derive_all().await?;
        let key_id = next.ring(purpose)[0].key_id().to_owned();
        Self::replace(&self.keys, next);
        Ok(key_id)
    }

    /// Reading Transit takes network round trips, which a caller on a request path cannot wait
    /// for. So this starts a refresh in the background (one at a time) and reports whether an
    /// earlier refresh changed the keys since the last call: a rotation made elsewhere is seen
    /// by the call after the refresh lands, milliseconds later.
    fn reload(&self) -> Result<bool, KeyError> {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            if !self.refreshing.swap(true, Ordering::AcqRel) {
                let transit = self.transit.clone();
                let keys = self.keys.clone();
                let changed = self.changed.clone();
                let refreshing = self.refreshing.clone();
                runtime.spawn(async move {
                    match transit.derive_all().await {
                        Ok(next) => {
                            if Self::replace(&keys, next) {
                                changed.store(true, Ordering::Release);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "Transit keys not refreshed"),
                    }
                    refreshing.store(false, Ordering::Release);
                });
            }
        }
        Ok(self.changed.swap(false, Ordering::AcqRel))
    }
}

impl fmt::Debug for TransitKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.derived();
        f.debug_struct("TransitKeyStore")
            .field("address", &self.transit.cfg.address)
            .field("mount", &self.transit.cfg.mount)
            .field("access_token", &keys.access_token[0].key_id())
            .field("audit", &keys.audit[0].key_id())
            .field("decision", &keys.decision[0].key_id())
            .field("data_key", &keys.data[0].key_id())
            .finish_non_exhaustive()
    }
}
