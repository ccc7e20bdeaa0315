//! The registry of problem+json error codes: each code with its HTTP status, title and when it
//! is answered. `ApiError` takes its code from here, the problem `type` URI is derived from the
//! code, and both the page that URI serves and `docs/errors.md` are generated from the same
//! table.

use axum::http::StatusCode;

/// Generates the enum, its accessors and `ALL` from one list, so the answer a client gets and
/// the document that explains it cannot drift apart.
macro_rules! error_codes {
    ($($variant:ident => $code:literal, $status:ident, $title:literal, $when:literal;)+) => {
        /// An error `code` of a problem+json body.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)+
        }

        impl ErrorCode {
            /// Every code, in the order of the document (by status).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The `code` field.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// The response status (and the `status` field).
            pub const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)+
                }
            }

            /// The `title` field: the same for every occurrence of the code.
            pub const fn title(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $title,)+
                }
            }

            /// When the code is answered, for the document.
            pub const fn when(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $when,)+
                }
            }
        }
    };
}

error_codes! {
    ValidationFailed => "validation_failed", BAD_REQUEST, "Validation failed",
        "Malformed JSON, an unknown field or a bad value. `errors` lists every field that failed, each with its own `code`, not just the first.";
    Unauthenticated => "unauthenticated", UNAUTHORIZED, "Unauthenticated",
        "Credentials are missing, invalid, expired or revoked.";
    InvalidCredentials => "invalid_credentials", UNAUTHORIZED, "Invalid credentials",
        "A login failed. The answer is the same for an unknown email and a wrong password.";
    MfaRequired => "mfa_required", UNAUTHORIZED, "Second factor required",
        "The password was right and the account has a second factor: continue with `POST /v1/auth/mfa` and the body's `mfa_token`.";
    InvalidMfaToken => "invalid_mfa_token", UNAUTHORIZED, "Refused",
        "The `mfa_token` of a login's second step is unknown, used or expired: log in again.";
    InvalidCode => "invalid_code", UNAUTHORIZED, "Refused",
        "The second factor (TOTP or recovery code) is wrong.";
    EmailDomainNotAllowed => "email_domain_not_allowed", UNAUTHORIZED, "Refused",
        "A federated login's email domain is not allowed for that provider.";
    EmailUnverified => "email_unverified", UNAUTHORIZED, "Refused",
        "A federated login carries no verified email.";
    FederationFailed => "federation_failed", UNAUTHORIZED, "Refused",
        "The upstream identity provider did not complete the login.";
    InvalidState => "invalid_state", UNAUTHORIZED, "Refused",
        "A federated login's `state` is unknown or expired: start the login again.";
    Forbidden => "forbidden", FORBIDDEN, "Forbidden",
        "Authenticated, but the policy denies the action; `rule` names the rule that denied.";
    ApiKeyQuarantined => "api_key_quarantined", FORBIDDEN, "API key quarantined",
        "The API key is right, but its request rate jumped past a multiple of its own baseline and it is quarantined: every request with it is refused until an admin of its organization releases it (`POST /v1/orgs/{slug}/api-keys/{id}/release`). See docs/runbooks/key-quarantine.md.";
    NotFound => "not_found", NOT_FOUND, "Not found",
        "The resource does not exist, or the caller may not see it (existence never leaks across orgs), or no route matches.";
    MethodNotAllowed => "method_not_allowed", METHOD_NOT_ALLOWED, "Method not allowed",
        "The resource exists but does not support the method.";
    Conflict => "conflict", CONFLICT, "Conflict",
        "The change conflicts with the current state; `reason` says how (`slug_taken`, `email_taken`, `invalid_transition`, `last_owner`, `concurrent_update`, ...).";
    IdempotencyKeyInFlight => "idempotency_key_in_flight", CONFLICT, "Idempotency key in flight",
        "A request with the same `Idempotency-Key` is still being processed.";
    InviteExpired => "invite_expired", GONE, "Gone",
        "The invite has expired.";
    InviteRevoked => "invite_revoked", GONE, "Gone",
        "The invite was revoked.";
    ResetExpired => "reset_expired", GONE, "Gone",
        "The password-reset token expired or was already used.";
    ApprovalExpired => "approval_expired", GONE, "Gone",
        "The request waiting for approvers (a budget override, break-glass access, a privileged password reset) expired before it was decided, or its grant has ended.";
    PreconditionFailed => "precondition_failed", PRECONDITION_FAILED, "Precondition failed",
        "`If-Match` does not match the current `ETag` (or the resource changed while the request was applied); nothing was changed.";
    PayloadTooLarge => "payload_too_large", PAYLOAD_TOO_LARGE, "Payload too large",
        "The request body is larger than 1 MiB.";
    PolicyRefused => "policy_refused", UNPROCESSABLE_ENTITY, "Policy bundle refused",
        "A policy reload found a bundle that does not compile or fails its own Rego tests; the running bundle stays. `errors` lists every problem: `field` is `file:line`, `code` is `compile_error`, `test_failed`, `self_check_failed` or `unreadable`.";
    IdempotencyKeyReused => "idempotency_key_reused", UNPROCESSABLE_ENTITY, "Idempotency key reused",
        "The `Idempotency-Key` was used before for a different request.";
    TooManyAttempts => "too_many_attempts", TOO_MANY_REQUESTS, "Too many attempts",
        "Too many failed attempts for the account or from the address; retry after `Retry-After` seconds.";
    RateLimited => "rate_limited", TOO_MANY_REQUESTS, "Rate limited",
        "Too many requests to this operation from the caller or from the client address (`detail` says which); retry after `Retry-After` seconds. Every answer of a limited operation carries `RateLimit-Policy` and `RateLimit` (see docs/rate-limits.md).";
    Internal => "internal", INTERNAL_SERVER_ERROR, "Internal error",
        "The server failed. The body carries no detail; the `request_id` identifies the failure in the logs.";
    Unavailable => "unavailable", SERVICE_UNAVAILABLE, "Service unavailable",
        "A dependency (database, shared state) is unavailable; retry later.";
    ReadOnly => "read_only", SERVICE_UNAVAILABLE, "Read-only",
        "The database refuses writes for now (a read-only replica, a failover in progress): reads keep answering, and this change was not made. Retry after `Retry-After` seconds; the service recovers by itself once the database accepts writes. See docs/runbooks/read-only.md.";
}

/// Path of the page that documents a code, under the deployment's public URL.
pub const ERROR_PAGES: &str = "/errors/";

impl ErrorCode {
    /// The problem `type`: `<public_url>/errors/<code>`, where this service serves the code's
    /// entry ([`ErrorCode::page`]), so the URI resolves on every deployment.
    pub fn type_uri(self, public_url: &str) -> String {
        format!("{public_url}{ERROR_PAGES}{}", self.as_str())
    }

    /// The code's entry as an HTML page: what `GET /errors/<code>` serves.
    pub fn page(self) -> String {
        let status = self.status();
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{code}</title></head><body>\n<h1>{code}</h1>\n\
             <p>{status} {reason} \u{b7} title \u{201c}{title}\u{201d}</p>\n<p>{when}</p>\n\
             <p>Every error is an <code>application/problem+json</code> body (RFC 9457); \
             branch on its <code>code</code>, never on <code>detail</code>.</p>\n\
             </body></html>\n",
            code = self.as_str(),
            status = status.as_u16(),
            reason = status.canonical_reason().unwrap_or_default(),
            title = html_of_markdown_code(self.title()),
            when = html_of_markdown_code(self.when()),
        )
    }

    /// The code named `code`, if there is one.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }
}

/// The registry's sentences as HTML: escaped, with `code spans` as `<code>`.
fn html_of_markdown_code(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let mut out = String::with_capacity(escaped.len());
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(part);
            out.push_str("</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// `docs/errors.md`: generated from [`ErrorCode::ALL`]; a test keeps the committed file equal
/// to it.
pub fn errors_markdown() -> String {
    let mut out = format!(
        "<!-- Generated from crates/uos-http/src/error_code.rs; do not edit. Regenerate with\n     \
         UPDATE_DOCS=1 cargo test -p uos-http --lib docs -->\n\
         # Error codes\n\n\
         Every error is an `application/problem+json` body (RFC 9457) with `type`, `title`,\n\
         `status`, `code`, `detail` and `request_id`. A client branches on `code` (or `type`),\n\
         never on `detail`, whose wording may change. The `type` of a code is\n\
         `<public_url>{ERROR_PAGES}<code>` (`public_url` is configured, default\n\
         `http://<listen>`): the service itself serves the code's entry there as HTML, the\n\
         same text as the entry of this document with the anchor `#<code>`.\n\n\
         Some bodies carry more: `errors` (every failed field, 400), `rule` (the denying\n\
         policy rule, 403), `reason` (what conflicts, 409), `mfa_token` (`mfa_required`);\n\
         401 answers carry `WWW-Authenticate: Bearer` and 429 answers `Retry-After`. A 5xx\n\
         body never carries internals.\n\n\
         | code | status | title |\n\
         |---|---|---|\n"
    );
    for c in ErrorCode::ALL {
        out.push_str(&format!(
            "| [`{code}`](#{code}) | {status} | {title} |\n",
            code = c.as_str(),
            status = c.status().as_u16(),
            title = c.title()
        ));
    }
    for c in ErrorCode::ALL {
        out.push_str(&format!(
            "\n<a id=\"{code}\"></a>\n\
             ## {code}\n\n\
             `{status} {reason}` · type `{uri}` · title \"{title}\"\n\n\
             {when}\n",
            code = c.as_str(),
            status = c.status().as_u16(),
            reason = c.status().canonical_reason().unwrap_or_default(),
            uri = c.type_uri("<public_url>"),
            title = c.title(),
            when = c.when(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::path::PathBuf;

    use super::*;

    fn doc_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/errors.md")
    }

    #[test]
    fn docs_errors_md_is_current() {
        let generated = errors_markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(doc_path(), &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(doc_path()).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: regenerate it with `UPDATE_DOCS=1 cargo test -p uos-http --lib docs`",
            doc_path().display()
        );
    }

    #[test]
    fn docs_name_every_type_uri_in_its_entry() {
        // That each URI also resolves on a running server is an HTTP test (`conventions`).
        let doc = std::fs::read_to_string(doc_path()).unwrap_or_default();
        for c in ErrorCode::ALL {
            let uri = c.type_uri("<public_url>");
            let anchor = uri.rsplit('/').next().unwrap_or_default();
            assert_eq!(
                anchor,
                c.as_str(),
                "the type URI of {c:?} does not end in its code"
            );
            let start = doc
                .find(&format!("<a id=\"{anchor}\"></a>"))
                .unwrap_or_else(|| panic!("docs/errors.md has no anchor #{anchor}"));
            let entry = &doc[start..];
            let entry = &entry[..entry[1..].find("<a id=").map_or(entry.len(), |e| e + 1)];
            assert!(
                entry.contains(&format!("type `{uri}`")) && entry.contains(&format!("## {anchor}")),
                "the entry #{anchor} of docs/errors.md does not describe {uri}:\n{entry}"
            );
        }
    }

    #[test]
    fn codes_are_unique_snake_case_and_errors() {
        let mut codes: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorCode::ALL.len(), "a code is listed twice");
        for c in ErrorCode::ALL {
            let code = c.as_str();
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code} is not snake case"
            );
            assert!(
                c.status().is_client_error() || c.status().is_server_error(),
                "{code} has a non-error status"
            );
            assert!(!c.when().contains('|'), "{code}: `|` breaks the table");
        }
    }
}
