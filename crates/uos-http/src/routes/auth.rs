//! Login, logout and who-am-I.

use crate::extract::{ApiJson, ReqCtx};
use crate::json_body;
use crate::problem::{ApiError, Problem};
use crate::reply::{reply, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use uos_domain::Email;
use uos_service::views::{TokenView, WhoamiView};

json_body! {
    /// Password login.
    pub struct LoginBody {
        #[schema(schema_with = crate::schemas::email)]
        req email: Email,
        #[schema(value_type = String, format = "password")]
        req password: String,
    }
}

/// Log in with email and password; the access token is bound to a new session.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginBody, responses(
    (status = 200, body = TokenView), (status = 400, body = Problem),
    (status = 401, body = Problem, description = "invalid_credentials, or mfa_required with an mfa_token"),
    (status = 429, body = Problem, description = "too_many_attempts (with Retry-After)")))]
pub async fn login(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<LoginBody>,
) -> ApiResult<TokenView> {
    reply(s.svc.login(&ctx, &b.email, b.password).await)
}

/// End the current session; its tokens stop working at once.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])), responses(
    (status = 204, description = "logged out"), (status = 401, body = Problem)))]
pub async fn logout(State(s): State<AppState>, ReqCtx(ctx): ReqCtx) -> ApiResult<()> {
    reply(s.svc.logout(&ctx).await)
}

json_body! {
    /// A refresh token from login or the previous refresh.
    pub struct RefreshBody {
        #[schema(schema_with = crate::schemas::opaque_token)]
        req refresh_token: super::OpaqueToken,
    }
}

/// Trade a refresh token for a new access and refresh token. Each refresh token works once;
/// presenting a used one revokes the whole session and answers 401.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshBody, responses(
    (status = 200, body = TokenView), (status = 400, body = Problem), (status = 401, body = Problem, description = "unauthenticated")))]
pub async fn refresh(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<RefreshBody>,
) -> ApiResult<TokenView> {
    reply(s.svc.refresh(&ctx, &b.refresh_token.0).await)
}

json_body! {
    /// Second step of a login that answered `mfa_required`.
    pub struct MfaBody {
        #[schema(schema_with = crate::schemas::opaque_token)]
        req mfa_token: super::OpaqueToken,
        /// A current TOTP code or an unused recovery code.
        #[schema(schema_with = crate::schemas::one_time_code)]
        req code: super::OneTimeCode,
    }
}

/// Complete a login with its second factor. The `mfa_token` works once, whatever the outcome.
#[utoipa::path(post, path = "/v1/auth/mfa", tag = "auth", request_body = MfaBody, responses(
    (status = 200, body = TokenView), (status = 400, body = Problem),
    (status = 401, body = Problem, description = "invalid_mfa_token or invalid_code"),
    (status = 429, body = Problem, description = "too_many_attempts")))]
pub async fn mfa(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<MfaBody>,
) -> ApiResult<TokenView> {
    reply(s.svc.complete_mfa(&ctx, &b.mfa_token.0, &b.code.0).await)
}

json_body! {
    /// Ask for a password-reset mail.
    pub struct ForgotBody {
        #[schema(schema_with = crate::schemas::email)]
        req email: Email,
    }
}

/// Mail a reset token if the account exists (privileged accounts: once a second admin
/// approves). Always 202, so the answer does not tell whether the account exists.
#[utoipa::path(post, path = "/v1/auth/password/forgot", tag = "auth", request_body = ForgotBody, responses(
    (status = 202, description = "accepted"), (status = 400, body = Problem)))]
pub async fn forgot_password(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<ForgotBody>,
) -> ApiResult<()> {
    reply(s.svc.forgot_password(&ctx, &b.email).await)
}

json_body! {
    /// Set a new password with a mailed reset token.
    pub struct ResetBody {
        #[schema(schema_with = crate::schemas::opaque_token)]
        req token: super::OpaqueToken,
        #[schema(schema_with = crate::schemas::new_password)]
        req new_password: String,
    }
}

/// Set a new password with a reset token (single use). Every session of the account ends.
#[utoipa::path(post, path = "/v1/auth/password/reset", tag = "auth", request_body = ResetBody, responses(
    (status = 204, description = "password set"),
    (status = 400, body = Problem, description = "invalid_token, or a password the policy refuses")))]
pub async fn reset_password(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<ResetBody>,
) -> ApiResult<()> {
    reply(s.svc.reset_password(&ctx, &b.token.0, b.new_password).await)
}

/// Who the bearer credential belongs to: a user, or a service account with the roles and
/// permissions its credential carries. A cheap check for API keys and tokens.
#[utoipa::path(get, path = "/v1/auth/whoami", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = WhoamiView), (status = 401, body = Problem)))]
pub async fn whoami(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
) -> Result<axum::Json<WhoamiView>, ApiError> {
    Ok(axum::Json(s.svc.whoami(&ctx)?))
}
