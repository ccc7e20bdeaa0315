//! Use cases of user-org-service. Each write is one unit of work: authorize, change, record the
//! audit event and the idempotency response, commit — all in one store transaction.
//!
//! The HTTP layer calls these with a [`Ctx`] (who is calling, request id, idempotency ticket);
//! nothing here knows about HTTP beyond the numeric status a replayed response must carry.

mod access;
mod audit;
mod auth;
mod authcache;
mod config;
mod ctx;
mod error;
mod federation;
mod idempotency;
mod introspect;
mod invites;
mod lockout;
mod me;
mod members;
mod mfa;
mod orgs;
mod passwords;
mod recovery;
mod roles;
mod sessions;
mod uow;
mod users;
pub mod views;

pub use auth::Bootstrap;
pub use config::{LockoutConfig, ServiceConfig};
pub use ctx::{AuthUser, Caller, Ctx, IdemTicket};
pub use error::{FieldError, ServiceError};
pub use federation::OidcProviders;
pub use idempotency::IdemOutcome;
pub use invites::NewInvite;
pub use me::ProfilePatch;
pub use members::MAX_ROLES;
pub use orgs::OrgMove;
pub use passwords::PASSWORD_MAX_LEN;
pub use roles::{is_valid_description, NewRole, RolePatch, DESCRIPTION_MAX_CHARS};
pub use uow::Done;
pub use users::REASON_MAX_CHARS;

use authcache::AuthCache;
use std::sync::Arc;
use uos_authn::PasswordHasher;
use uos_authz::Authorizer;
use uos_keys::KeyProvider;
use uos_mail::Mailer;
use uos_shared::SharedState;
use uos_store::Store;

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The service facade: cheap to clone, shared by every request.
#[derive(Clone, Debug)]
pub struct Services {
    inner: Arc<Inner>,
}

/// The outside systems the use cases talk to, each behind its port (embedded default or
/// production adapter, chosen by configuration).
#[derive(Clone, Debug)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub keys: Arc<dyn KeyProvider>,
    /// Counters, one-time state and the invalidation fan-out shared by all replicas.
    pub shared: Arc<dyn SharedState>,
    pub mailer: Arc<dyn Mailer>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    keys: Arc<dyn KeyProvider>,
    shared: Arc<dyn SharedState>,
    mailer: Arc<dyn Mailer>,
    oidc: OidcProviders,
    authz: Authorizer,
    hasher: PasswordHasher,
    /// One argon2 computation per core at a time: more in parallel only thrash the caches
    /// with their 19 MiB blocks and make every login slower.
    hash_slots: tokio::sync::Semaphore,
    cache: AuthCache,
    cfg: ServiceConfig,
}

impl Services {
    pub fn new(
        ports: Ports,
        authz: Authorizer,
        cfg: ServiceConfig,
        oidc: OidcProviders,
    ) -> Result<Self> {
        let hasher = PasswordHasher::new(cfg.password_hashing)
            .map_err(|e| ServiceError::Internal(format!("password hasher: {e}")))?;
        let cache = AuthCache::new(std::time::Duration::from_secs(cfg.auth_cache_secs));
        Ok(Self {
            inner: Arc::new(Inner {
                store: ports.store,
                keys: ports.keys,
                shared: ports.shared,
                mailer: ports.mailer,
                oidc,
                authz,
                hasher,
                hash_slots: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                ),
                cache,
                cfg,
            }),
        })
    }

    /// Evict cached sessions and users when any replica says so. Runs until the process ends;
    /// must be called once from within the runtime.
    pub fn spawn_invalidation_listener(&self) {
        let inner = Arc::clone(&self.inner);
        let mut rx = inner.shared.subscribe();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match rx.recv().await {
                    Ok(msg) => inner.cache.apply(&msg),
                    // Missed messages could have been revocations: drop everything.
                    Err(RecvError::Lagged(_)) => inner.cache.clear(),
                    Err(RecvError::Closed) => break,
                }
            }
        });
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn shared(&self) -> &Arc<dyn SharedState> {
        &self.inner.shared
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.cfg
    }
}
