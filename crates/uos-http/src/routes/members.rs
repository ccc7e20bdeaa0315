//! Org members.

use super::{slug, user_id, RoleList};
use crate::extract::{is_uuid, ApiJson, IfMatch, Query, ReqCtx};
use crate::json_body;
use crate::problem::{ApiError, Problem};
use crate::reply::{list, reply, ApiResult, ListBody};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use uos_domain::MembershipStatus;
use uos_service::views::MemberView;

json_body! {
    /// The complete set of roles the member should hold.
    pub struct RolesBody {
        #[schema(schema_with = crate::schemas::role_list)]
        req roles: RoleList,
    }
}

/// Members of the org in join order.
#[utoipa::path(get, path = "/v1/orgs/{slug}/users", tag = "members", security(("bearer" = [])), params(
    ("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query), ("status" = Option<String>, Query, description = "active or suspended")),
    responses((status = 200, body = ListBody<MemberView>), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn list_members(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    mut q: Query,
) -> Result<Json<ListBody<MemberView>>, ApiError> {
    let page = q.page("members", is_uuid);
    let status = q.parse("status", MembershipStatus::parse);
    q.finish()?;
    list(
        "members",
        s.svc.list_members(&ctx, &slug(&raw)?, status, &page).await,
    )
}

#[utoipa::path(get, path = "/v1/orgs/{slug}/users/{user_id}", tag = "members", security(("bearer" = [])), responses((status = 200, body = MemberView), (status = 404, body = Problem)))]
pub async fn get_member(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<MemberView> {
    reply(s.svc.get_member(&ctx, &slug(&raw)?, user_id(&id)?).await)
}

/// Remove the member from the org (the org keeps at least one owner).
#[utoipa::path(delete, path = "/v1/orgs/{slug}/users/{user_id}", tag = "members", security(("bearer" = [])), params(IfMatch), responses(
    (status = 204, description = "removed"), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn remove_member(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
    IfMatch(v): IfMatch,
) -> ApiResult<()> {
    reply(
        s.svc
            .remove_member(&ctx, &slug(&raw)?, user_id(&id)?, v)
            .await,
    )
}

/// Replace the member's roles. Granting or removing `owner` needs an owner.
#[utoipa::path(put, path = "/v1/orgs/{slug}/users/{user_id}/roles", tag = "members", security(("bearer" = [])), request_body = RolesBody, params(IfMatch), responses(
    (status = 200, body = MemberView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn set_roles(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
    IfMatch(v): IfMatch,
    ApiJson(b): ApiJson<RolesBody>,
) -> ApiResult<MemberView> {
    let (org, user) = (slug(&raw)?, user_id(&id)?);
    reply(s.svc.set_member_roles(&ctx, &org, user, b.roles.0, v).await)
}

/// Suspend the member in this org only.
#[utoipa::path(post, path = "/v1/orgs/{slug}/users/{user_id}/suspend", tag = "members", security(("bearer" = [])), params(IfMatch), responses((status = 200, body = MemberView), (status = 409, body = Problem)))]
pub async fn suspend(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
    IfMatch(v): IfMatch,
) -> ApiResult<MemberView> {
    reply(
        s.svc
            .set_member_status(
                &ctx,
                &slug(&raw)?,
                user_id(&id)?,
                MembershipStatus::Suspended,
                v,
            )
            .await,
    )
}

#[utoipa::path(post, path = "/v1/orgs/{slug}/users/{user_id}/reactivate", tag = "members", security(("bearer" = [])), params(IfMatch), responses((status = 200, body = MemberView), (status = 409, body = Problem)))]
pub async fn reactivate(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
    IfMatch(v): IfMatch,
) -> ApiResult<MemberView> {
    reply(
        s.svc
            .set_member_status(
                &ctx,
                &slug(&raw)?,
                user_id(&id)?,
                MembershipStatus::Active,
                v,
            )
            .await,
    )
}
