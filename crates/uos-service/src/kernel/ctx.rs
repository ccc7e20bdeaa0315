//! Who is calling and on which request: the context every use case receives.

use std::sync::Arc;
use uos_domain::{ApiKeyId, ServiceAccount, SessionId, User};

/// An authenticated user: the user row as of this request, and the session the token is bound to.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub user: User,
    pub session_id: SessionId,
}

/// How a service account proved itself on this request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineCredential {
    ApiKey {
        id: ApiKeyId,
        prefix: String,
    },
    /// An OAuth2 client-credentials access token (`jti`).
    ClientToken {
        jti: uuid::Uuid,
    },
}

/// An authenticated service account, with what it may do in its org on this request.
#[derive(Clone, Debug)]
pub struct AuthMachine {
    pub account: ServiceAccount,
    pub credential: MachineCredential,
    /// The account's roles with inherited ones, expanded.
    pub roles: Vec<String>,
    /// The roles' permissions narrowed to the credential's scopes.
    pub permissions: Vec<String>,
    /// The credential's scopes as granted (API key scopes or token `scope`).
    pub scopes: Vec<String>,
    /// Whether the account's org was active when the credential was checked. Machines of a
    /// suspended or deleted org stop working (people may still look at what happened).
    pub org_active: bool,
}

/// Which commit and file of a declarative config repo the reconciler is applying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredSource {
    pub revision: String,
    pub file: String,
}

#[derive(Clone, Debug)]
pub enum Caller {
    Anonymous,
    User(Arc<AuthUser>),
    Machine(Arc<AuthMachine>),
    /// The service itself (start-up tasks); never the result of authenticating a request.
    System,
    /// The reconciler applying one org file; never the result of authenticating a request.
    Reconciler(Arc<DeclaredSource>),
}

impl Caller {
    pub fn user(&self) -> Option<&AuthUser> {
        match self {
            Caller::User(u) => Some(u),
            Caller::Anonymous | Caller::System | Caller::Machine(_) | Caller::Reconciler(_) => None,
        }
    }

    pub fn machine(&self) -> Option<&AuthMachine> {
        match self {
            Caller::Machine(m) => Some(m),
            Caller::Anonymous | Caller::System | Caller::User(_) | Caller::Reconciler(_) => None,
        }
    }
}

/// An `Idempotency-Key` this request has claimed; the use case stores its response under it
/// in the same transaction as the change.
#[derive(Clone, Debug)]
pub struct IdemTicket {
    pub scope: String,
    pub key: String,
}

#[derive(Clone, Debug)]
pub struct Ctx {
    pub request_id: String,
    pub caller: Caller,
    pub idem: Option<IdemTicket>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Break-glass grants this request relied on: recorded in the trail.
    pub grant_uses: crate::GrantUses,
}

impl Ctx {
    pub fn anonymous(request_id: impl Into<String>) -> Self {
        Self {
            request_id: request_id.into(),
            caller: Caller::Anonymous,
            idem: None,
            ip: None,
            user_agent: None,
            grant_uses: crate::GrantUses::default(),
        }
    }

    /// Context for work the service does on its own (bootstrap).
    pub fn system(request_id: impl Into<String>) -> Self {
        Self {
            caller: Caller::System,
            ..Self::anonymous(request_id)
        }
    }

    /// Context for the reconciler applying `source`: its audit events name the commit (as the
    /// actor's id) and the file (in the request id, `declarative:<commit>:<file>`).
    pub fn reconciler(source: DeclaredSource) -> Self {
        Self {
            caller: Caller::Reconciler(Arc::new(source.clone())),
            ..Self::anonymous(format!("declarative:{}:{}", source.revision, source.file))
        }
    }

    /// This request's context with `user` (on `session_id`) as the caller: for use cases where
    /// the credential in the body, not a bearer token, says who acts (login, refresh).
    pub fn acting_as(&self, user: User, session_id: SessionId) -> Self {
        Self {
            caller: Caller::User(Arc::new(AuthUser { user, session_id })),
            ..self.clone()
        }
    }

    /// The idempotency scope of this caller: keys of different callers never collide.
    /// Who is calling, as audit events and records of who did something name them.
    pub(crate) fn actor_id(&self) -> String {
        match &self.caller {
            Caller::User(u) => u.user.id.to_string(),
            Caller::Machine(m) => m.account.id.to_string(),
            Caller::Reconciler(_) => "reconciler".into(),
            Caller::System | Caller::Anonymous => "system".into(),
        }
    }

    pub fn idempotency_scope(&self) -> String {
        match &self.caller {
            Caller::User(u) => format!("user:{}", u.user.id),
            Caller::Machine(m) => format!("service_account:{}", m.account.id),
            Caller::Reconciler(_) => "reconciler".into(),
            Caller::Anonymous | Caller::System => {
                format!("anonymous:{}", self.ip.as_deref().unwrap_or("-"))
            }
        }
    }
}
