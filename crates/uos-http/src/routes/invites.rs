//! Invites.

use super::{slug, uuid, InviteHours, OpaqueToken, RoleList};
use crate::extract::{is_uuid, ApiJson, IfMatch, Query, ReqCtx};
use crate::json_body;
use crate::problem::{ApiError, Problem};
use crate::reply::{list, reply, ApiResult, ListBody};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use uos_domain::{DisplayName, Email, InviteId};
use uos_service::views::{AcceptedInviteView, InviteView};
use uos_service::NewInvite;

json_body! {
    /// Invite an email address into the org with roles.
    pub struct CreateInviteBody {
        #[schema(schema_with = crate::schemas::email)]
        req email: Email,
        #[schema(schema_with = crate::schemas::role_list)]
        req roles: RoleList,
        /// 1 to 720 hours; default 168 (a week).
        #[schema(schema_with = crate::schemas::invite_hours_or_null)]
        opt expires_in_hours: Option<InviteHours>,
    }
}

json_body! {
    /// Accept an invite. New accounts need a password.
    pub struct AcceptInviteBody {
        #[schema(schema_with = crate::schemas::opaque_token)]
        req token: OpaqueToken,
        #[schema(schema_with = crate::schemas::display_name_or_null)]
        opt display_name: Option<DisplayName>,
        #[schema(schema_with = crate::schemas::new_password_or_null)]
        opt password: Option<String>,
    }
}

/// Create an invite; the token is in this response only.
#[utoipa::path(post, path = "/v1/orgs/{slug}/invites", tag = "invites", security(("bearer" = [])), request_body = CreateInviteBody, responses(
    (status = 201, body = InviteView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    ApiJson(b): ApiJson<CreateInviteBody>,
) -> ApiResult<InviteView> {
    let req = NewInvite {
        email: b.email,
        roles: b.roles.0,
        expires_in_hours: b.expires_in_hours.map(|h| h.0),
    };
    reply(s.svc.create_invite(&ctx, &slug(&raw)?, req).await)
}

#[utoipa::path(get, path = "/v1/orgs/{slug}/invites", tag = "invites", security(("bearer" = [])), params(("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query)),
    responses((status = 200, body = ListBody<InviteView>), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn list_invites(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    mut q: Query,
) -> Result<Json<ListBody<InviteView>>, ApiError> {
    let page = q.page("invites", is_uuid);
    q.finish()?;
    list(
        "invites",
        s.svc.list_invites(&ctx, &slug(&raw)?, &page).await,
    )
}

/// Revoke an invite.
#[utoipa::path(delete, path = "/v1/orgs/{slug}/invites/{id}", tag = "invites", security(("bearer" = [])), params(IfMatch), responses(
    (status = 200, body = InviteView), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn revoke(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
    IfMatch(v): IfMatch,
) -> ApiResult<InviteView> {
    let id = InviteId(uuid("id", &id)?);
    reply(s.svc.revoke_invite(&ctx, &slug(&raw)?, id, v).await)
}

/// Accept an invite by its token (no login needed: the token is the credential).
#[utoipa::path(post, path = "/v1/invites/accept", tag = "invites", request_body = AcceptInviteBody, responses(
    (status = 200, body = AcceptedInviteView), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 410, body = Problem)))]
pub async fn accept(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<AcceptInviteBody>,
) -> ApiResult<AcceptedInviteView> {
    reply(
        s.svc
            .accept_invite(&ctx, &b.token.0, b.display_name, b.password)
            .await,
    )
}
