//! problem+json (RFC 9457): the one table that maps service errors to HTTP statuses and error
//! codes, and the error response every failure path of the API goes through.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uos_service::{FieldError, ServiceError};
use utoipa::ToSchema;

/// Base of the problem `type` URIs; the code is appended.
pub const PROBLEM_TYPE_BASE: &str = "https://user-org-service.dev/errors/";

tokio::task_local! {
    /// The request id of the request this task serves, so error bodies built deep in an
    /// extractor still carry it.
    pub static REQUEST_ID: String;
}

pub(crate) fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
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
    status: StatusCode,
    code: &'static str,
    title: &'static str,
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
    /// `too_many_attempts`: seconds for the `Retry-After` header.
    RetryAfter(u64),
}

impl ApiError {
    fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            reason: None,
            extra: None,
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "Validation failed",
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
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
            "the request body is larger than 1 MiB",
        )
    }

    pub fn route_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Not found",
            "no such resource",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            "this resource does not support the method",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server failed; the request id identifies it in the logs",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use StatusCode as S;
        match e {
            ServiceError::Validation(errors) => Self::validation(errors),
            ServiceError::Unauthenticated => Self::new(
                S::UNAUTHORIZED,
                "unauthenticated",
                "Unauthenticated",
                "missing, invalid, expired or revoked credentials",
            ),
            ServiceError::InvalidCredentials => Self::new(
                S::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
                "the email or password is not correct",
            ),
            ServiceError::MfaRequired { mfa_token } => {
                let mut e = Self::new(
                    S::UNAUTHORIZED,
                    "mfa_required",
                    "Second factor required",
                    "complete the login with POST /v1/auth/mfa",
                );
                e.extra = Some(Box::new(Extra::MfaToken(mfa_token)));
                e
            }
            ServiceError::Refused { code, detail } => {
                Self::new(S::UNAUTHORIZED, code, "Refused", detail)
            }
            ServiceError::TooManyAttempts { retry_after_secs } => {
                let mut e = Self::new(
                    S::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    "Too many attempts",
                    "too many failed attempts; retry after the time in Retry-After",
                );
                e.extra = Some(Box::new(Extra::RetryAfter(retry_after_secs.max(1))));
                e
            }
            ServiceError::Forbidden { rule } => {
                let mut e = Self::new(
                    S::FORBIDDEN,
                    "forbidden",
                    "Forbidden",
                    format!("denied by policy rule {rule}"),
                );
                e.extra = Some(Box::new(Extra::Rule(rule)));
                e
            }
            ServiceError::NotFound => {
                Self::new(S::NOT_FOUND, "not_found", "Not found", "no such resource")
            }
            ServiceError::Conflict { code, detail } => {
                let mut e = Self::new(S::CONFLICT, "conflict", "Conflict", detail);
                e.reason = Some(code);
                e
            }
            ServiceError::Gone { code, detail } => Self::new(S::GONE, code, "Gone", detail),
            ServiceError::ConcurrentUpdate => {
                let mut e = Self::new(
                    S::CONFLICT,
                    "conflict",
                    "Conflict",
                    "the resource changed while this request was applied; read it again and retry",
                );
                e.reason = Some(CONCURRENT_UPDATE);
                e
            }
            ServiceError::PreconditionFailed => Self::new(
                S::PRECONDITION_FAILED,
                "precondition_failed",
                "Precondition failed",
                "If-Match does not match the current ETag",
            ),
            ServiceError::IdempotencyInFlight => Self::new(
                S::CONFLICT,
                "idempotency_key_in_flight",
                "Idempotency key in flight",
                "a request with this Idempotency-Key is still being processed",
            ),
            ServiceError::IdempotencyReused => Self::new(
                S::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
                "this Idempotency-Key was used for a different request",
            ),
            ServiceError::Unavailable(cause) => {
                tracing::error!(%cause, "dependency unavailable");
                Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Service unavailable",
                    "a dependency is unavailable; retry later",
                )
            }
            ServiceError::Internal(cause) => {
                // Logged once here with the request id (in the span); never sent to the client.
                tracing::error!(%cause, "internal error");
                Self::internal()
            }
        }
    }
}

/// `reason` of the 409 for a lost race between two writers.
const CONCURRENT_UPDATE: &str = "concurrent_update";

/// Marks a response as a lost write race, for the outer layer that knows whether the request
/// carried `If-Match` (then the answer becomes 412).
#[derive(Clone, Copy, Debug)]
pub struct LostRace;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let lost_race = self.reason == Some(CONCURRENT_UPDATE);
        let body = Problem {
            kind: format!("{PROBLEM_TYPE_BASE}{}", self.code),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            code: self.code.to_string(),
            detail: self.detail,
            request_id: current_request_id(),
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
        let mut res = (self.status, bytes).into_response();
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
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}
