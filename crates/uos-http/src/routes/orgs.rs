//! Organizations.

use super::slug;
use crate::extract::{is_uuid, ApiJson, IfMatch, Query, ReqCtx};
use crate::json_body;
use crate::problem::{ApiError, Problem};
use crate::reply::{list, reply, ApiResult, ListBody};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use uos_domain::{DisplayName, Email, OrgSlug};
use uos_service::views::OrgView;
use uos_service::OrgMove;

json_body! {
    /// A new organization. A platform admin may name another user as owner.
    pub struct CreateOrgBody {
        #[schema(schema_with = crate::schemas::slug)]
        req slug: OrgSlug,
        #[schema(schema_with = crate::schemas::display_name)]
        req display_name: DisplayName,
        #[schema(schema_with = crate::schemas::email_or_null)]
        opt owner_email: Option<Email>,
    }
}

json_body! {
    /// Organization fields to change.
    pub struct UpdateOrgBody {
        #[schema(schema_with = crate::schemas::display_name_or_null)]
        opt display_name: Option<DisplayName>,
        /// Longest lifetime of API keys issued from now on, in days (1–3650); null removes the limit.
        #[schema(schema_with = crate::schemas::key_days_or_null)]
        nul api_key_max_days: Option<Option<u32>>,
    }
}

/// Create an organization; the caller becomes its owner.
#[utoipa::path(post, path = "/v1/orgs", tag = "orgs", security(("bearer" = [])), request_body = CreateOrgBody, responses(
    (status = 201, body = OrgView), (status = 400, body = Problem), (status = 409, body = Problem)))]
pub async fn create(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<CreateOrgBody>,
) -> ApiResult<OrgView> {
    reply(
        s.svc
            .create_org(&ctx, b.slug, b.display_name, b.owner_email)
            .await,
    )
}

/// Organizations visible to the caller (all of them for platform admins).
#[utoipa::path(get, path = "/v1/orgs", tag = "orgs", security(("bearer" = [])), params(
    ("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query), ("include_deleted" = Option<bool>, Query)),
    responses((status = 200, body = ListBody<OrgView>), (status = 400, body = Problem)))]
pub async fn list_orgs(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    mut q: Query,
) -> Result<Json<ListBody<OrgView>>, ApiError> {
    let page = q.page("orgs", is_uuid);
    let include_deleted = q
        .parse("include_deleted", |v| v.parse::<bool>())
        .unwrap_or(false);
    q.finish()?;
    list("orgs", s.svc.list_orgs(&ctx, include_deleted, &page).await)
}

#[utoipa::path(get, path = "/v1/orgs/{slug}", tag = "orgs", security(("bearer" = [])), responses((status = 200, body = OrgView), (status = 404, body = Problem)))]
pub async fn get(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
) -> ApiResult<OrgView> {
    reply(s.svc.get_org(&ctx, &slug(&raw)?).await)
}

#[utoipa::path(patch, path = "/v1/orgs/{slug}", tag = "orgs", security(("bearer" = [])), request_body = UpdateOrgBody, params(IfMatch), responses(
    (status = 200, body = OrgView), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn update(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(b): ApiJson<UpdateOrgBody>,
) -> ApiResult<OrgView> {
    reply(
        s.svc
            .update_org(&ctx, &slug(&raw)?, b.display_name, b.api_key_max_days, v)
            .await,
    )
}

/// Soft delete: restorable until the retention window ends.
#[utoipa::path(delete, path = "/v1/orgs/{slug}", tag = "orgs", security(("bearer" = [])), params(IfMatch), responses(
    (status = 200, body = OrgView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn delete(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    IfMatch(v): IfMatch,
) -> ApiResult<OrgView> {
    reply(s.svc.move_org(&ctx, &slug(&raw)?, OrgMove::Delete, v).await)
}

#[utoipa::path(post, path = "/v1/orgs/{slug}/suspend", tag = "orgs", security(("bearer" = [])), params(IfMatch), responses((status = 200, body = OrgView), (status = 409, body = Problem)))]
pub async fn suspend(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    IfMatch(v): IfMatch,
) -> ApiResult<OrgView> {
    reply(
        s.svc
            .move_org(&ctx, &slug(&raw)?, OrgMove::Suspend, v)
            .await,
    )
}

#[utoipa::path(post, path = "/v1/orgs/{slug}/resume", tag = "orgs", security(("bearer" = [])), params(IfMatch), responses((status = 200, body = OrgView), (status = 409, body = Problem)))]
pub async fn resume(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    IfMatch(v): IfMatch,
) -> ApiResult<OrgView> {
    reply(s.svc.move_org(&ctx, &slug(&raw)?, OrgMove::Resume, v).await)
}

#[utoipa::path(post, path = "/v1/orgs/{slug}/restore", tag = "orgs", security(("bearer" = [])), params(IfMatch), responses((status = 200, body = OrgView), (status = 409, body = Problem)))]
pub async fn restore(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    IfMatch(v): IfMatch,
) -> ApiResult<OrgView> {
    reply(
        s.svc
            .move_org(&ctx, &slug(&raw)?, OrgMove::Restore, v)
            .await,
    )
}

/// Place a legal hold on the org, or change its reason (platform admins). While it stands the
/// retention purge leaves the org and every one of its members alone. Audited in the org.
#[utoipa::path(put, path = "/v1/orgs/{slug}/legal-hold", tag = "orgs", security(("bearer" = [])), request_body = crate::routes::HoldBody, params(IfMatch), responses(
    (status = 200, body = uos_service::views::LegalHoldView)))]
pub async fn place_hold(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(b): ApiJson<crate::routes::HoldBody>,
) -> ApiResult<uos_service::views::LegalHoldView> {
    reply(
        s.svc
            .place_org_hold(&ctx, &slug(&raw)?, b.reason.0, v)
            .await,
    )
}

/// Lift the org's legal hold (platform admins).
#[utoipa::path(delete, path = "/v1/orgs/{slug}/legal-hold", tag = "orgs", security(("bearer" = [])), params(IfMatch), responses(
    (status = 204, description = "lifted")))]
pub async fn lift_hold(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    IfMatch(v): IfMatch,
) -> ApiResult<()> {
    reply(s.svc.lift_org_hold(&ctx, &slug(&raw)?, v).await)
}
