//! problem+json (RFC 9457): the one table that maps service errors to error codes (whose
//! status, title and type come from [`ErrorCode`]), and the error response every failure path
//! of the API goes through.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uos_service::{FieldError, GoneReason, Refusal, ServiceError};

pub use crate::error_code::ErrorCode;
use utoipa::ToSchema;

/// What an error body takes from the request it answers rather than from the error: the
/// request id, and where this deployment serves its error pages.
#[derive(Clone, Debug)]
pub struct ProblemScope {
    pub request_id: String,
    /// The public URL of the API; a problem's `type` is `<public_url>/errors/<code>`.
    pub public_url: std::sync::Arc<str>,
}

tokio::task_local! {
    /// The scope of the request this task serves, so error bodies built deep in an extractor
    /// still carry its request id and this deployment's `type` URIs.
    pub static PROBLEM_SCOPE: ProblemScope;
}

/// The error body. `errors` lists every failed field; 5xx bodies never carry internals.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub code: String,
    pub detail: String,
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<FieldError>,
    /// The policy rule that denied (403 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// A more specific reason for a 409 (`slug_taken`, `last_owner`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The one-time token that continues a login with its second factor (`mfa_required`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_token: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    /// The registry entry: status, `code`, `title` and `type` all come from it.
    code: ErrorCode,
    detail: String,
    errors: Vec<FieldError>,
    // Boxed and static rather than `String`: every handler returns `Result<_, ApiError>`, and
    // these keep the error small enough to move cheaply (clippy's `result_large_err`).
    reason: Option<&'static str>,
    extra: Option<Box<Extra>>,
}

/// What a few errors carry besides the body's common fields (boxed: rare, and the error
/// must stay small).
#[derive(Debug)]
enum Extra {
    /// 403: the policy rule that denied.
    Rule(String),
    /// `mfa_required`: the token that continues the login.
    MfaToken(String),
    /// `too_many_attempts`, `rate_limited`, `read_only`: seconds for the `Retry-After` header.
    RetryAfter(u64),
}

impl ApiError {
    fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            reason: None,
            extra: None,
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut e = Self::new(
            ErrorCode::ValidationFailed,
            "the request is not valid; see errors",
        );
        e.errors = errors;
        e
    }

    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, code, message)])
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than 1 MiB",
        )
    }

    pub fn route_not_found() -> Self {
        Self::new(ErrorCode::NotFound, "no such resource")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            ErrorCode::MethodNotAllowed,
            "this resource does not support the method",
        )
    }

    /// 429 `rate_limited`: the `scope` (`caller` or `address`) is over its limit for another
    /// `retry_after_secs`.
    pub fn rate_limited(scope: &str, retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            ErrorCode::RateLimited,
            format!(
                "too many requests to this operation from this {scope}; retry after the time in \
                 Retry-After"
            ),
        );
        e.extra = Some(Box::new(Extra::RetryAfter(retry_after_secs.max(1))));
        e
    }

    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "the server failed; the request id identifies it in the logs",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The registry entry of this error.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

/// The HTTP code of each refusal the service names.
fn refusal_code(r: Refusal) -> ErrorCode {
    match r {
        Refusal::InvalidMfaToken => ErrorCode::InvalidMfaToken,
        Refusal::InvalidCode => ErrorCode::InvalidCode,
        Refusal::EmailDomainNotAllowed => ErrorCode::EmailDomainNotAllowed,
        Refusal::EmailUnverified => ErrorCode::EmailUnverified,
        Refusal::FederationFailed => ErrorCode::FederationFailed,
        Refusal::InvalidState => ErrorCode::InvalidState,
        Refusal::ApiKeyQuarantined => ErrorCode::ApiKeyQuarantined,
    }
}

/// The HTTP code of each thing the service says is gone.
fn gone_code(g: GoneReason) -> ErrorCode {
    match g {
        GoneReason::InviteExpired => ErrorCode::InviteExpired,
        GoneReason::InviteRevoked => ErrorCode::InviteRevoked,
        GoneReason::ResetExpired => ErrorCode::ResetExpired,
        GoneReason::ApprovalExpired => ErrorCode::ApprovalExpired,
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use ErrorCode as C;
        match e {
            ServiceError::Validation(errors) => Self::validation(errors),
            ServiceError::Unauthenticated => Self::new(
                C::Unauthenticated,
                "missing, invalid, expired or revoked credentials",
            ),
            ServiceError::InvalidCredentials => Self::new(
                C::InvalidCredentials,
                "the email or password is not correct",
            ),
            ServiceError::MfaRequired { mfa_token } => {
                let mut e = Self::new(C::MfaRequired, "complete the login with POST /v1/auth/mfa");
                e.extra = Some(Box::new(Extra::MfaToken(mfa_token)));
                e
            }
            ServiceError::Refused { code, detail } => Self::new(refusal_code(code), detail),
            ServiceError::TooManyAttempts { retry_after_secs } => {
                let mut e = Self::new(
                    C::TooManyAttempts,
                    "too many failed attempts; retry after the time in Retry-After",
                );
                e.extra = Some(Box::new(Extra::RetryAfter(retry_after_secs.max(1))));
                e
            }
            ServiceError::Forbidden { rule } => {
                let mut e = Self::new(C::Forbidden, format!("denied by policy rule {rule}"));
                e.extra = Some(Box::new(Extra::Rule(rule)));
                e
            }
            ServiceError::NotFound => Self::new(C::NotFound, "no such resource"),
            ServiceError::Conflict { code, detail } => {
                let mut e = Self::new(C::Conflict, detail);
                e.reason = Some(code);
                e
            }
            ServiceError::Gone { code, detail } => Self::new(gone_code(code), detail),
            ServiceError::ConcurrentUpdate => {
                let mut e = Self::new(
                    C::Conflict,
                    "the resource changed while this request was applied; read it again and retry",
                );
                e.reason = Some(CONCURRENT_UPDATE);
                e
            }
            ServiceError::PreconditionFailed => Self::new(
                C::PreconditionFailed,
                "If-Match does not match the current ETag",
            ),
            ServiceError::IdempotencyInFlight => Self::new(
                C::IdempotencyKeyInFlight,
                "a request with this Idempotency-Key is still being processed",
            ),
            ServiceError::IdempotencyReused => Self::new(
                C::IdempotencyKeyReused,
                "this Idempotency-Key was used for a different request",
            ),
            ServiceError::PolicyRefused { detail, errors } => {
                let mut e = Self::new(C::PolicyRefused, detail);
                e.errors = errors;
                e
            }
            ServiceError::ReadOnly(cause) => {
                tracing::warn!(%cause, "write refused: the store is read-only");
                let mut e = Self::new(
                    C::ReadOnly,
                    "the database accepts no writes for now; nothing was changed: retry after \
                     the time in Retry-After",
                );
                e.extra = Some(Box::new(Extra::RetryAfter(READ_ONLY_RETRY_SECS)));
                e
            }
            ServiceError::Unavailable(cause) => {
                tracing::error!(%cause, "dependency unavailable");
                Self::new(C::Unavailable, "a dependency is unavailable; retry later")
            }
            ServiceError::Internal(cause) => {
                // Logged once here with the request id (in the span); never sent to the client.
                tracing::error!(%cause, "internal error");
                Self::internal()
            }
        }
    }
}

/// `Retry-After` of a write refused by a read-only store: a failover usually takes seconds.
const READ_ONLY_RETRY_SECS: u64 = 5;

/// `reason` of the 409 for a lost race between two writers.
const CONCURRENT_UPDATE: &str = "concurrent_update";

/// Marks a response as a lost write race, for the outer layer that knows whether the request
/// carried `If-Match` (then the answer becomes 412).
#[derive(Clone, Copy, Debug)]
pub struct LostRace;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let lost_race = self.reason == Some(CONCURRENT_UPDATE);
        let status = self.code.status();
        let body = Problem {
            kind: PROBLEM_SCOPE
                .try_with(|s| self.code.type_uri(&s.public_url))
                // Only a response built outside any request (a unit test) gets here.
                .unwrap_or_else(|_| self.code.type_uri("")),
            title: self.code.title().to_string(),
            status: status.as_u16(),
            code: self.code.as_str().to_string(),
            detail: self.detail,
            request_id: PROBLEM_SCOPE.try_with(|s| s.request_id.clone()).ok(),
            errors: self.errors,
            rule: match self.extra.as_deref() {
                Some(Extra::Rule(r)) => Some(r.clone()),
                _ => None,
            },
            reason: self.reason.map(str::to_string),
            mfa_token: match self.extra.as_deref() {
                Some(Extra::MfaToken(t)) => Some(t.clone()),
                _ => None,
            },
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = (status, bytes).into_response();
        if lost_race {
            res.extensions_mut().insert(LostRace);
        }
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(Extra::RetryAfter(secs)) = self.extra.as_deref() {
            h.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}
