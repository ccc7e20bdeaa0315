//! Login and logout.

use crate::extract::{ApiJson, ReqCtx};
use crate::json_body;
use crate::problem::Problem;
use crate::reply::{reply, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use uos_domain::Email;
use uos_service::views::TokenView;

json_body! {
    /// Password login.
    pub struct LoginBody {
        #[schema(value_type = String, format = "email")]
        req email: Email,
        #[schema(value_type = String, format = "password")]
        req password: String,
    }
}

/// Log in with email and password; the access token is bound to a new session.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginBody, responses(
    (status = 200, body = TokenView), (status = 400, body = Problem), (status = 401, body = Problem, description = "invalid_credentials")))]
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
        #[schema(value_type = String)]
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
