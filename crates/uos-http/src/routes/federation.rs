//! Login through an upstream OIDC provider.

use crate::extract::ReqCtx;
use crate::problem::{ApiError, Problem};
use crate::reply::{reply, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use uos_service::views::TokenView;

/// Redirect the browser to the provider's login page.
#[utoipa::path(get, path = "/v1/auth/oidc/{provider}/start", tag = "auth",
    params(("provider" = String, Path, description = "the name of a configured provider")), responses(
    (status = 302, description = "to the provider"), (status = 404, body = Problem),
    (status = 503, body = Problem, description = "the provider cannot be reached")))]
pub async fn start(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(provider): Path<String>,
) -> Result<Response, ApiError> {
    let url = s.svc.oidc_start(&ctx, &provider).await?;
    let location = HeaderValue::from_str(&url).map_err(|_| ApiError::internal())?;
    let mut res = StatusCode::FOUND.into_response();
    res.headers_mut().insert(header::LOCATION, location);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Where the provider sends the browser back: answers a session like a password login.
/// Providers add parameters of their own (`iss`, `session_state`), so unknown ones are allowed.
#[utoipa::path(get, path = "/v1/auth/oidc/{provider}/callback", tag = "auth", params(
    ("provider" = String, Path, description = "the name of a configured provider"),
    ("code" = String, Query), ("state" = String, Query), ("iss" = Option<String>, Query)), responses(
    (status = 200, body = TokenView), (status = 400, body = Problem),
    (status = 401, body = Problem, description = "invalid_state, federation_failed, email_unverified, email_domain_not_allowed or mfa_required")))]
pub async fn callback(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(provider): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<TokenView> {
    if let Some(error) = q.get("error") {
        // The provider refused (the user cancelled, consent denied): nothing to exchange.
        tracing::info!(%error, "upstream provider returned an error");
        return Err(uos_service::ServiceError::refused(
            uos_service::Refusal::FederationFailed,
            "the provider did not complete the login",
        )
        .into());
    }
    let mut errors = Vec::new();
    for field in ["code", "state"] {
        if q.get(field)
            .is_none_or(|v| v.is_empty() || v.chars().count() > 2048)
        {
            errors.push(uos_service::FieldError::new(
                field,
                "required",
                format!("{field} is required (1 to 2048 characters)"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let field = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let iss = q.get("iss").map(String::as_str);
    reply(
        s.svc
            .oidc_callback(&ctx, &provider, field("code"), field("state"), iss)
            .await,
    )
}
