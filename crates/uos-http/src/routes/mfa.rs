//! The caller's TOTP second factor: enrol, confirm, disable.

use crate::extract::{ApiJson, ReqCtx};
use crate::json_body;
use crate::problem::Problem;
use crate::reply::{reply, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use uos_service::views::{RecoveryCodesView, TotpEnrolmentView};

/// Start a TOTP enrolment: the secret to put into an authenticator app. Logins need no second
/// factor until the enrolment is confirmed.
#[utoipa::path(post, path = "/v1/me/mfa/totp", tag = "me", security(("bearer" = [])), responses(
    (status = 200, body = TotpEnrolmentView), (status = 401, body = Problem),
    (status = 409, body = Problem, description = "mfa_already_enabled")))]
pub async fn enrol(State(s): State<AppState>, ReqCtx(ctx): ReqCtx) -> ApiResult<TotpEnrolmentView> {
    reply(s.svc.enrol_totp(&ctx).await)
}

json_body! {
    /// A code from the authenticator app (or, to disable, a recovery code).
    pub struct CodeBody {
        #[schema(schema_with = crate::schemas::one_time_code)]
        req code: super::OneTimeCode,
    }
}

/// Confirm the enrolment with a first code. Answers 10 single-use recovery codes, shown once.
#[utoipa::path(post, path = "/v1/me/mfa/totp/confirm", tag = "me", security(("bearer" = [])),
    request_body = CodeBody, responses(
    (status = 200, body = RecoveryCodesView), (status = 400, body = Problem, description = "invalid_code"),
    (status = 409, body = Problem, description = "mfa_not_enrolled or mfa_already_enabled")))]
pub async fn confirm(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<CodeBody>,
) -> ApiResult<RecoveryCodesView> {
    reply(s.svc.confirm_totp(&ctx, &b.code.0).await)
}

/// Turn TOTP off, proven with a current code or a recovery code.
#[utoipa::path(delete, path = "/v1/me/mfa/totp", tag = "me", security(("bearer" = [])),
    request_body = CodeBody, responses(
    (status = 204, description = "disabled"), (status = 400, body = Problem, description = "invalid_code"),
    (status = 409, body = Problem, description = "mfa_not_enabled"), (status = 429, body = Problem)))]
pub async fn disable(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<CodeBody>,
) -> ApiResult<()> {
    reply(s.svc.disable_totp(&ctx, &b.code.0).await)
}
