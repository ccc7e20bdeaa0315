//! The service error: what went wrong in terms a client can act on. The HTTP crate maps each
//! variant to a status and problem code in one table.

use thiserror::Error;
use uos_authz::Denied;
use uos_domain::DomainError;
use uos_store::StoreError;

/// One failed input field, listed in problem+json `errors`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }

    /// A domain parse failure attributed to `field`.
    pub fn from_domain(field: &str, e: &DomainError) -> Self {
        let code = match e {
            DomainError::Invalid { code, .. } => *code,
            DomainError::Transition { .. } => "invalid_transition",
            DomainError::RoleCycle { .. } => "role_cycle",
        };
        Self::new(field, code, e.to_string())
    }
}

/// Why a credential-bearing request was refused; each has its own error code in the HTTP
/// crate's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The one-time token of a login's second step is unknown, used or expired.
    InvalidMfaToken,
    /// The second factor (TOTP or recovery code) is wrong.
    InvalidCode,
    /// The upstream identity's email domain is not allowed for the provider.
    EmailDomainNotAllowed,
    /// The upstream identity has no verified email.
    EmailUnverified,
    /// The upstream provider did not complete the login.
    FederationFailed,
    /// The federated login's `state` is unknown or expired.
    InvalidState,
    /// The API key is right but quarantined (its request rate spiked) until an admin releases
    /// it.
    ApiKeyQuarantined,
}

/// What can no longer be used; each has its own error code in the HTTP crate's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoneReason {
    InviteExpired,
    InviteRevoked,
    /// A password-reset token that expired or was used.
    ResetExpired,
    /// A request waiting for approvers that expired, or a grant that ended by expiry.
    ApprovalExpired,
}

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The password was right; the second factor must follow with this one-time token.
    #[error("second factor required")]
    MfaRequired { mfa_token: String },
    /// A credential-bearing request that failed for a reason the client can name (bad second
    /// factor, unknown or used one-time token, a refused upstream login).
    #[error("refused: {code:?}")]
    Refused { code: Refusal, detail: String },
    /// Too many guesses for this account or from this address; retry after the given seconds.
    #[error("too many attempts")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("forbidden by rule {rule}")]
    Forbidden { rule: String },
    #[error("not found")]
    NotFound,
    #[error("conflict: {code}")]
    Conflict { code: &'static str, detail: String },
    /// The thing asked for existed but can no longer be used.
    #[error("gone: {code:?}")]
    Gone { code: GoneReason, detail: String },
    #[error("precondition failed")]
    PreconditionFailed,
    /// Another writer changed the row between this request's read and its write. The HTTP
    /// layer answers 412 if the request carried `If-Match` (its precondition no longer
    /// holds), 409 otherwise (the client asked for no precondition and may retry).
    #[error("concurrent update")]
    ConcurrentUpdate,
    #[error("idempotency key in flight")]
    IdempotencyInFlight,
    #[error("idempotency key reused with a different request")]
    IdempotencyReused,
    /// A policy bundle failed to compile or failed its own Rego tests; the running bundle
    /// stays. `errors` names each problem: `field` is `file:line`, `code` is
    /// `compile_error`, `test_failed`, `self_check_failed` or `unreadable`.
    #[error("policy bundle refused: {detail}")]
    PolicyRefused {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The store refuses writes for now (a read-only replica, a failover); reads still work.
    #[error("store is read-only: {0}")]
    ReadOnly(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, code, message)])
    }

    pub fn refused(code: Refusal, detail: impl Into<String>) -> Self {
        Self::Refused {
            code,
            detail: detail.into(),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }
}

/// Shared state holds the lockout counters: without it no guess may be checked, so the
/// request fails as unavailable rather than skipping the count.
impl From<uos_shared::SharedError> for ServiceError {
    fn from(e: uos_shared::SharedError) -> Self {
        Self::Unavailable(format!("shared state: {e}"))
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(code) => Self::conflict(code, conflict_detail(code)),
            StoreError::NotFound => Self::NotFound,
            StoreError::VersionConflict => Self::ConcurrentUpdate,
            StoreError::Unavailable(m) => Self::Unavailable(m),
            StoreError::ReadOnly(m) => Self::ReadOnly(m),
            StoreError::Corrupt(m) | StoreError::Backend(m) => Self::Internal(m),
        }
    }
}

fn conflict_detail(code: &str) -> &'static str {
    match code {
        "slug_taken" => "an organization with this slug already exists",
        "email_taken" => "a user with this email already exists",
        "already_member" => "the user is already a member of this organization",
        "role_exists" => "a role with this name already exists",
        _ => "the request conflicts with the current state",
    }
}

impl From<Denied> for ServiceError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::NotFound => Self::NotFound,
            // The policy's way of saying "log in first" is a 401, not a 403.
            Denied::Forbidden { rule } if rule == "authentication_required" => {
                Self::Unauthenticated
            }
            Denied::Forbidden { rule } => Self::Forbidden { rule },
        }
    }
}

/// A refused state transition is a 409 naming both states.
impl From<DomainError> for ServiceError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Transition { .. } => Self::conflict("invalid_transition", e.to_string()),
            other => Self::Validation(vec![FieldError::from_domain("body", &other)]),
        }
    }
}
