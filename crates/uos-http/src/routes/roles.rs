//! Custom roles.

use super::{slug, Description};
use crate::extract::{ApiJson, IfMatch, Query, ReqCtx};
use crate::json_body;
use crate::problem::{ApiError, Problem};
use crate::reply::{list, reply, ApiResult, ListBody};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use uos_domain::{Permission, RoleName};
use uos_service::views::RoleView;
use uos_service::{NewRole, RolePatch};

json_body! {
    /// A custom role: its own permissions plus those of the roles it inherits.
    pub struct CreateRoleBody {
        #[schema(schema_with = crate::schemas::role_name)]
        req name: RoleName,
        #[schema(schema_with = crate::schemas::description_or_null)]
        opt description: Option<Description>,
        #[schema(schema_with = crate::schemas::permission_list)]
        req permissions: Vec<Permission>,
        #[schema(schema_with = crate::schemas::role_name_list_or_null)]
        opt inherits: Option<Vec<RoleName>>,
    }
}

json_body! {
    /// Role fields to change; lists replace the previous lists.
    pub struct UpdateRoleBody {
        #[schema(schema_with = crate::schemas::description_or_null)]
        opt description: Option<Description>,
        #[schema(schema_with = crate::schemas::permission_list_or_null)]
        opt permissions: Option<Vec<Permission>>,
        #[schema(schema_with = crate::schemas::role_name_list_or_null)]
        opt inherits: Option<Vec<RoleName>>,
    }
}

fn role_name(raw: &str) -> Result<RoleName, ApiError> {
    RoleName::parse(raw).map_err(|e| ApiError::field("name", "invalid_role", e.to_string()))
}

#[utoipa::path(post, path = "/v1/orgs/{slug}/roles", tag = "roles", security(("bearer" = [])), request_body = CreateRoleBody, responses(
    (status = 201, body = RoleView), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    ApiJson(b): ApiJson<CreateRoleBody>,
) -> ApiResult<RoleView> {
    let req = NewRole {
        name: b.name,
        description: b.description.map(|d| d.0),
        permissions: b.permissions,
        inherits: b.inherits.unwrap_or_default(),
    };
    reply(s.svc.create_role(&ctx, &slug(&raw)?, req).await)
}

/// Custom roles of the org by name (built-in roles are readable by name).
#[utoipa::path(get, path = "/v1/orgs/{slug}/roles", tag = "roles", security(("bearer" = [])), params(("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query)),
    responses((status = 200, body = ListBody<RoleView>), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn list_roles(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    mut q: Query,
) -> Result<Json<ListBody<RoleView>>, ApiError> {
    let page = q.page("roles", |c| RoleName::parse(c).is_ok());
    q.finish()?;
    list("roles", s.svc.list_roles(&ctx, &slug(&raw)?, &page).await)
}

#[utoipa::path(get, path = "/v1/orgs/{slug}/roles/{name}", tag = "roles", security(("bearer" = [])), responses((status = 200, body = RoleView), (status = 404, body = Problem)))]
pub async fn get(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, name)): Path<(String, String)>,
) -> ApiResult<RoleView> {
    reply(s.svc.get_role(&ctx, &slug(&raw)?, &role_name(&name)?).await)
}

#[utoipa::path(patch, path = "/v1/orgs/{slug}/roles/{name}", tag = "roles", security(("bearer" = [])), request_body = UpdateRoleBody, params(IfMatch), responses(
    (status = 200, body = RoleView), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, name)): Path<(String, String)>,
    IfMatch(v): IfMatch,
    ApiJson(b): ApiJson<UpdateRoleBody>,
) -> ApiResult<RoleView> {
    let patch = RolePatch {
        description: b.description.map(|d| d.0),
        permissions: b.permissions,
        inherits: b.inherits,
    };
    reply(
        s.svc
            .update_role(&ctx, &slug(&raw)?, &role_name(&name)?, patch, v)
            .await,
    )
}

/// Delete a custom role that no member holds and no role inherits.
#[utoipa::path(delete, path = "/v1/orgs/{slug}/roles/{name}", tag = "roles", security(("bearer" = [])), params(IfMatch), responses(
    (status = 204, description = "deleted"), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, name)): Path<(String, String)>,
    IfMatch(v): IfMatch,
) -> ApiResult<()> {
    reply(
        s.svc
            .delete_role(&ctx, &slug(&raw)?, &role_name(&name)?, v)
            .await,
    )
}
