//! Second-admin approval of privileged accounts' password resets.

use crate::extract::ReqCtx;
use crate::problem::{ApiError, Problem};
use crate::reply::{reply, ApiResult, ListBody};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use uos_service::views::PasswordResetView;

/// Reset requests of privileged accounts waiting for approval (platform admins).
#[utoipa::path(get, path = "/v1/password-resets", tag = "users", security(("bearer" = [])), responses(
    (status = 200, body = ListBody<PasswordResetView>), (status = 403, body = Problem)))]
pub async fn list_pending(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
) -> Result<Json<ListBody<PasswordResetView>>, ApiError> {
    let items = s.svc.list_pending_resets(&ctx).await?;
    // Bounded and short-lived: one page holds them all.
    Ok(Json(ListBody {
        items,
        next_page_token: None,
    }))
}

/// Approve a pending reset: the reset token is issued and mailed to the account now. The
/// account itself cannot approve its own reset.
#[utoipa::path(post, path = "/v1/password-resets/{id}/approve", tag = "users", security(("bearer" = [])), responses(
    (status = 200, body = PasswordResetView), (status = 403, body = Problem, description = "second_admin_required"),
    (status = 404, body = Problem), (status = 409, body = Problem, description = "already_approved"),
    (status = 410, body = Problem, description = "reset_expired")))]
pub async fn approve(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<PasswordResetView> {
    let id = super::uuid("id", &id)?;
    reply(s.svc.approve_reset(&ctx, id).await)
}
