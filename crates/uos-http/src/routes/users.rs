//! Platform user administration.

use crate::extract::{is_uuid, ApiJson, IfMatch, Query, ReqCtx};
use crate::json_body;
use crate::problem::{ApiError, Problem};
use crate::reply::{list, reply, ApiResult, ListBody};
use crate::routes::me::ProfileBody;
use crate::routes::{user_id, HoldBody, Reason};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use uos_domain::UserStatus;
use uos_service::views::{LegalHoldView, UserView};
use uos_store::UserFilter;

json_body! {
    /// A lifecycle move (see the transition table in the contract).
    pub struct StatusBody {
        #[schema(schema_with = crate::schemas::user_status)]
        req status: UserStatus,
        /// Why; recorded in the audit trail (at most 500 characters).
        #[schema(schema_with = crate::schemas::reason_or_null)]
        opt reason: Option<Reason>,
    }
}

/// All users (platform admins only). `q` matches the start of the email.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(
    ("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query), ("status" = Option<String>, Query), ("q" = Option<String>, Query)),
    responses((status = 200, body = ListBody<UserView>), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn list_users(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    mut q: Query,
) -> Result<Json<ListBody<UserView>>, ApiError> {
    let page = q.page("users", is_uuid);
    let status = q.parse("status", UserStatus::parse);
    let email_prefix = q.parse("q", |v| {
        if v.chars().count() <= 254 {
            Ok(v.trim().to_lowercase())
        } else {
            Err("q must be at most 254 characters")
        }
    });
    q.finish()?;
    list(
        "users",
        s.svc
            .list_users(
                &ctx,
                &UserFilter {
                    status,
                    email_prefix,
                },
                &page,
            )
            .await,
    )
}

#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])), responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<UserView> {
    reply(s.svc.get_user(&ctx, user_id(&id)?).await)
}

#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])), request_body = ProfileBody, params(IfMatch), responses(
    (status = 200, body = UserView), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(b): ApiJson<ProfileBody>,
) -> ApiResult<UserView> {
    reply(s.svc.update_user(&ctx, user_id(&id)?, b.into(), v).await)
}

/// Move the user through the lifecycle; moves that cut off access end every session.
#[utoipa::path(post, path = "/v1/users/{id}/status", tag = "users", security(("bearer" = [])), request_body = StatusBody, params(IfMatch), responses(
    (status = 200, body = UserView), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn set_status(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(b): ApiJson<StatusBody>,
) -> ApiResult<UserView> {
    reply(
        s.svc
            .set_user_status(&ctx, user_id(&id)?, b.status, b.reason.map(|r| r.0), v)
            .await,
    )
}

/// Soft delete (restorable within the retention window).
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])), params(IfMatch), responses((status = 200, body = UserView), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
) -> ApiResult<UserView> {
    reply(
        s.svc
            .set_user_status(&ctx, user_id(&id)?, UserStatus::Deleted, None, v)
            .await,
    )
}

#[utoipa::path(post, path = "/v1/users/{id}/restore", tag = "users", security(("bearer" = [])), params(IfMatch), responses((status = 200, body = UserView), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn restore(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
) -> ApiResult<UserView> {
    reply(s.svc.restore_user(&ctx, user_id(&id)?, v).await)
}

/// End every session of the user at once (platform admins).
#[utoipa::path(delete, path = "/v1/users/{id}/sessions", tag = "users", security(("bearer" = [])), responses(
    (status = 204, description = "revoked"), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn revoke_sessions(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<()> {
    reply(s.svc.revoke_user_sessions(&ctx, user_id(&id)?).await)
}

/// Lift the user's login lockout now (platform admins). Audited.
#[utoipa::path(post, path = "/v1/users/{id}/unlock", tag = "users", security(("bearer" = [])), responses(
    (status = 204, description = "unlocked"), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn unlock(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<()> {
    reply(s.svc.unlock_user(&ctx, user_id(&id)?).await)
}

/// Place a legal hold on the user, or change its reason (platform admins). While it stands the
/// retention purge leaves the user alone, even past its restore window. Audited.
#[utoipa::path(put, path = "/v1/users/{id}/legal-hold", tag = "users", security(("bearer" = [])), request_body = HoldBody, params(IfMatch), responses(
    (status = 200, body = LegalHoldView), (status = 409, body = Problem)))]
pub async fn place_hold(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(b): ApiJson<HoldBody>,
) -> ApiResult<LegalHoldView> {
    reply(
        s.svc
            .place_user_hold(&ctx, user_id(&id)?, b.reason.0, v)
            .await,
    )
}

/// Lift the user's legal hold (platform admins); the next purge sweep may then purge it.
#[utoipa::path(delete, path = "/v1/users/{id}/legal-hold", tag = "users", security(("bearer" = [])), params(IfMatch), responses(
    (status = 204, description = "lifted")))]
pub async fn lift_hold(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
    IfMatch(v): IfMatch,
) -> ApiResult<()> {
    reply(s.svc.lift_user_hold(&ctx, user_id(&id)?, v).await)
}
