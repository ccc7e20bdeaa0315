//! Use cases of user-org-service. Each write is one unit of work: authorize, change, record the
//! audit event and the idempotency response, commit — all in one store transaction.
//!
//! The HTTP layer calls these with a [`Ctx`] (who is calling, request id, idempotency ticket);
//! nothing here knows about HTTP beyond the numeric status a replayed response must carry.

mod access;
mod audit;
mod auth;
mod config;
mod ctx;
mod error;
mod idempotency;
mod invites;
mod me;
mod members;
mod orgs;
mod roles;
mod sessions;
mod uow;
mod users;
pub mod views;

pub use auth::{Bootstrap, PASSWORD_MAX_LEN};
pub use config::ServiceConfig;
pub use ctx::{AuthUser, Caller, Ctx, IdemTicket};
pub use error::{FieldError, ServiceError};
pub use idempotency::IdemOutcome;
pub use invites::NewInvite;
pub use me::ProfilePatch;
pub use members::MAX_ROLES;
pub use orgs::OrgMove;
pub use roles::{is_valid_description, NewRole, RolePatch, DESCRIPTION_MAX_CHARS};
pub use uow::Done;
pub use users::REASON_MAX_CHARS;

use std::sync::Arc;
use uos_authn::PasswordHasher;
use uos_authz::Authorizer;
use uos_keys::KeyProvider;
use uos_store::Store;

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The service facade: cheap to clone, shared by every request.
#[derive(Clone, Debug)]
pub struct Services {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    keys: Arc<dyn KeyProvider>,
    authz: Authorizer,
    hasher: PasswordHasher,
    cfg: ServiceConfig,
}

impl Services {
    pub fn new(
        store: Arc<dyn Store>,
        keys: Arc<dyn KeyProvider>,
        authz: Authorizer,
        cfg: ServiceConfig,
    ) -> Result<Self> {
        let hasher = PasswordHasher::new(cfg.password_hashing)
            .map_err(|e| ServiceError::Internal(format!("password hasher: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                keys,
                authz,
                hasher,
                cfg,
            }),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.cfg
    }
}
