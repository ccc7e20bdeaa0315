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
    #[error("{code}")]
    Refused { code: &'static str, detail: String },
    /// Too many guesses for this account or from this address; retry after the given seconds.
    #[error("too many attempts")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("forbidden by rule {rule}")]
    Forbidden { rule: String },
    #[error("not found")]
    NotFound,
    #[error("conflict: {code}")]
    Conflict { code: &'static str, detail: String },
    #[error("gone: {code}")]
    Gone { code: &'static str, detail: String },
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
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, code, message)])
    }

    pub fn refused(code: &'static str, detail: impl Into<String>) -> Self {
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
