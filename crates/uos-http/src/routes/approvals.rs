//! Requests that wait for two approvers: budget overrides (holders of `billing:approve` in the
//! org decide) and break-glass access (platform admins decide). Privileged password resets
//! use the same mechanism under `/v1/password-resets`.

use super::{slug, uuid};
use crate::extract::{integral, is_uuid, ApiJson, Query, ReqCtx};
use crate::json_body;
use crate::problem::{ApiError, Problem};
use crate::reply::{list, reply, ApiResult, ListBody};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::{de, Deserialize, Deserializer};
use uos_domain::budget::MAX_LIMIT_CENTS;
use uos_domain::{ApprovalStatus, RoleName, ServiceAccountId, UserId};
use uos_service::views::ApprovalView;
use uos_service::{
    parse_status, ApprovalStep, BudgetTarget, NewBreakGlass, NewOverride,
    APPROVAL_REASON_MAX_CHARS, MAX_BREAK_GLASS_MINUTES, MAX_BREAK_GLASS_ROLES, MAX_OVERRIDE_HOURS,
};

/// A whole number within `1..=max`, floats with no fraction accepted as JSON allows.
#[derive(Debug, Clone, Copy)]
pub struct Count<const MAX: i64>(pub i64);

impl<'de, const MAX: i64> Deserialize<'de> for Count<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match integral(serde_json::Value::deserialize(d)?).as_i64() {
            Some(n) if (1..=MAX).contains(&n) => Ok(Self(n)),
            _ => Err(de::Error::custom(format!(
                "must be a whole number from 1 to {MAX}"
            ))),
        }
    }
}

/// Why a request is made: 1 to [`APPROVAL_REASON_MAX_CHARS`] characters, not only spaces.
#[derive(Debug, Clone)]
pub struct Reason(pub String);

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() || s.chars().count() > APPROVAL_REASON_MAX_CHARS {
            return Err(de::Error::custom(format!(
                "1 to {APPROVAL_REASON_MAX_CHARS} characters, not only spaces"
            )));
        }
        Ok(Self(s))
    }
}

/// Break-glass roles: 1 to [`MAX_BREAK_GLASS_ROLES`] role names.
#[derive(Debug, Clone)]
pub struct Roles(pub Vec<String>);

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let roles = Vec::<String>::deserialize(d)?;
        let valid = roles.iter().all(|r| RoleName::parse(r).is_ok());
        if roles.is_empty() || roles.len() > MAX_BREAK_GLASS_ROLES || !valid {
            return Err(de::Error::custom(format!(
                "1 to {MAX_BREAK_GLASS_ROLES} role names (a-z, 0-9, '_' and '-', starting with a letter)"
            )));
        }
        Ok(Self(roles))
    }
}

/// The budget an override raises: `org`, `service_account:<id>` or `member:<user id>`.
#[derive(Debug, Clone, Copy)]
pub struct ScopeRef(pub BudgetTarget);

impl<'de> Deserialize<'de> for ScopeRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let bad = || de::Error::custom("must be org, service_account:<id> or member:<user id>");
        let target = match raw.split_once(':') {
            None if raw == "org" => BudgetTarget::Org,
            Some(("service_account", id)) => BudgetTarget::ServiceAccount(ServiceAccountId(
                uuid::Uuid::parse_str(id).map_err(|_| bad())?,
            )),
            Some(("member", id)) => {
                BudgetTarget::Member(UserId(uuid::Uuid::parse_str(id).map_err(|_| bad())?))
            }
            _ => return Err(bad()),
        };
        Ok(Self(target))
    }
}

json_body! {
    /// An override of one of the org's budgets: `extra_cents` more on its effective limit for
    /// `expires_in_hours` once two approvers other than the requester approve. `scope` is the
    /// budget (`org`, the default, `service_account:<id>` or `member:<user id>`).
    pub struct OverrideBody {
        #[schema(value_type = String, min_length = 1, max_length = 500, pattern = "\\S")]
        req reason: Reason,
        #[schema(value_type = i64, minimum = 1, maximum = 1_000_000_000_000_000_i64)]
        req extra_cents: Count<MAX_LIMIT_CENTS>,
        #[schema(value_type = i64, minimum = 1, maximum = 720)]
        req expires_in_hours: Count<MAX_OVERRIDE_HOURS>,
        #[schema(value_type = Option<String>, pattern = "^(org|service_account:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|member:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")]
        opt scope: Option<ScopeRef>,
    }
}

json_body! {
    /// Break-glass access: `roles` for the caller in `org` (its slug or id; every org when
    /// absent) for `duration_minutes` once two platform admins other than the caller approve.
    pub struct BreakGlassBody {
        #[schema(min_length = 1, max_length = 200)]
        opt org: Option<String>,
        #[schema(value_type = Vec<RoleItem>, min_items = 1, max_items = 10)]
        req roles: Roles,
        #[schema(value_type = String, min_length = 1, max_length = 500, pattern = "\\S")]
        req reason: Reason,
        #[schema(value_type = i64, minimum = 1, maximum = 240)]
        req duration_minutes: Count<MAX_BREAK_GLASS_MINUTES>,
    }
}

/// A role name.
#[derive(Debug, Clone, utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^[a-z][a-z0-9_-]{0,62}$")]
pub struct RoleItem(pub String);

fn status_filter(q: &mut Query) -> Option<ApprovalStatus> {
    q.parse("status", |s| {
        parse_status(s).map_err(|_| "pending, active, rejected, revoked or expired")
    })
}

/// An org's budget override requests, newest first; `status` filters them as they stand now.
#[utoipa::path(get, path = "/v1/orgs/{slug}/budget/overrides", tag = "budgets", security(("bearer" = [])), params(
    ("status" = Option<String>, Query, pattern = "^(pending|active|rejected|revoked|expired)$"),
    ("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query)),
    responses((status = 200, body = ListBody<ApprovalView>), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn list_overrides(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(org): Path<String>,
    mut q: Query,
) -> Result<Json<ListBody<ApprovalView>>, ApiError> {
    let page = q.page("overrides", is_uuid);
    let status = status_filter(&mut q);
    q.finish()?;
    let slug = slug(&org)?;
    list(
        "overrides",
        s.svc
            .list_budget_overrides(&ctx, &slug, status, &page)
            .await,
    )
}

/// Ask for a budget override (`billing:write`): pending until two holders of
/// `billing:approve` other than the caller approve. Audited and notified.
#[utoipa::path(post, path = "/v1/orgs/{slug}/budget/overrides", tag = "budgets", security(("bearer" = [])), request_body = OverrideBody, responses(
    (status = 201, body = ApprovalView), (status = 403, body = Problem), (status = 404, body = Problem, description = "the org, or the budget to raise, does not exist")))]
pub async fn request_override(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(org): Path<String>,
    ApiJson(b): ApiJson<OverrideBody>,
) -> ApiResult<ApprovalView> {
    let slug = slug(&org)?;
    let new = NewOverride {
        reason: b.reason.0,
        extra_cents: b.extra_cents.0,
        expires_in_hours: b.expires_in_hours.0,
        scope: b.scope.map(|s| s.0),
    };
    reply(s.svc.request_budget_override(&ctx, &slug, new).await)
}

/// One budget override request.
#[utoipa::path(get, path = "/v1/orgs/{slug}/budget/overrides/{id}", tag = "budgets", security(("bearer" = [])), responses(
    (status = 200, body = ApprovalView), (status = 404, body = Problem)))]
pub async fn get_override(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<ApprovalView> {
    let (slug, id) = (slug(&org)?, uuid("id", &id)?);
    reply(s.svc.get_budget_override(&ctx, &slug, id).await)
}

async fn step_override(
    s: AppState,
    ctx: uos_service::Ctx,
    org: &str,
    id: &str,
    step: ApprovalStep,
) -> ApiResult<ApprovalView> {
    let (slug, id) = (slug(org)?, uuid("id", id)?);
    reply(s.svc.step_budget_override(&ctx, &slug, id, step).await)
}

/// Approve a budget override (`billing:approve`, not the requester); the second distinct
/// approval makes it active. Audited and notified.
#[utoipa::path(post, path = "/v1/orgs/{slug}/budget/overrides/{id}/approve", tag = "budgets", security(("bearer" = [])), responses(
    (status = 200, body = ApprovalView), (status = 403, body = Problem, description = "second_approver_required: the requester cannot approve"),
    (status = 404, body = Problem), (status = 409, body = Problem, description = "already_approved, approval_closed"),
    (status = 410, body = Problem, description = "approval_expired")))]
pub async fn approve_override(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<ApprovalView> {
    step_override(s, ctx, &org, &id, ApprovalStep::Approve).await
}

/// Reject a pending budget override (`billing:approve`, not the requester). Audited.
#[utoipa::path(post, path = "/v1/orgs/{slug}/budget/overrides/{id}/reject", tag = "budgets", security(("bearer" = [])), responses(
    (status = 200, body = ApprovalView), (status = 403, body = Problem), (status = 404, body = Problem),
    (status = 409, body = Problem, description = "approval_closed"), (status = 410, body = Problem, description = "approval_expired")))]
pub async fn reject_override(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<ApprovalView> {
    step_override(s, ctx, &org, &id, ApprovalStep::Reject).await
}

/// Withdraw a pending override or end an active one (`billing:approve`). Audited.
#[utoipa::path(post, path = "/v1/orgs/{slug}/budget/overrides/{id}/revoke", tag = "budgets", security(("bearer" = [])), responses(
    (status = 200, body = ApprovalView), (status = 403, body = Problem), (status = 404, body = Problem),
    (status = 409, body = Problem, description = "approval_closed")))]
pub async fn revoke_override(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<ApprovalView> {
    step_override(s, ctx, &org, &id, ApprovalStep::Revoke).await
}

/// Ask for break-glass roles (any signed-in user): pending until two platform admins other
/// than the caller approve. Audited and notified.
#[utoipa::path(post, path = "/v1/break-glass", tag = "break-glass", security(("bearer" = [])), request_body = BreakGlassBody, responses(
    (status = 201, body = ApprovalView), (status = 403, body = Problem), (status = 404, body = Problem, description = "the org does not exist")))]
pub async fn request_break_glass(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<BreakGlassBody>,
) -> ApiResult<ApprovalView> {
    let new = NewBreakGlass {
        org: b.org,
        roles: b.roles.0,
        reason: b.reason.0,
        duration_minutes: b.duration_minutes.0,
    };
    reply(s.svc.request_break_glass(&ctx, new).await)
}

/// Break-glass requests and grants, newest first (platform admins).
#[utoipa::path(get, path = "/v1/break-glass", tag = "break-glass", security(("bearer" = [])), params(
    ("status" = Option<String>, Query, pattern = "^(pending|active|rejected|revoked|expired)$"),
    ("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query)),
    responses((status = 200, body = ListBody<ApprovalView>), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn list_break_glass(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    mut q: Query,
) -> Result<Json<ListBody<ApprovalView>>, ApiError> {
    let page = q.page("break_glass", is_uuid);
    let status = status_filter(&mut q);
    q.finish()?;
    list(
        "break_glass",
        s.svc.list_break_glass(&ctx, status, &page).await,
    )
}

/// One break-glass request (platform admins).
#[utoipa::path(get, path = "/v1/break-glass/{id}", tag = "break-glass", security(("bearer" = [])), responses(
    (status = 200, body = ApprovalView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_break_glass(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<ApprovalView> {
    let id = uuid("id", &id)?;
    reply(s.svc.get_break_glass(&ctx, id).await)
}

async fn step_break_glass(
    s: AppState,
    ctx: uos_service::Ctx,
    id: &str,
    step: ApprovalStep,
) -> ApiResult<ApprovalView> {
    let id = uuid("id", id)?;
    reply(s.svc.step_break_glass(&ctx, id, step).await)
}

/// Approve break-glass access (platform admins, not the requester); the second distinct
/// approval grants the roles until `active_until`. Audited and notified.
#[utoipa::path(post, path = "/v1/break-glass/{id}/approve", tag = "break-glass", security(("bearer" = [])), responses(
    (status = 200, body = ApprovalView), (status = 403, body = Problem, description = "second_approver_required: the requester cannot approve"),
    (status = 404, body = Problem), (status = 409, body = Problem, description = "already_approved, approval_closed"),
    (status = 410, body = Problem, description = "approval_expired")))]
pub async fn approve_break_glass(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<ApprovalView> {
    step_break_glass(s, ctx, &id, ApprovalStep::Approve).await
}

/// Reject a pending break-glass request (platform admins, not the requester). Audited.
#[utoipa::path(post, path = "/v1/break-glass/{id}/reject", tag = "break-glass", security(("bearer" = [])), responses(
    (status = 200, body = ApprovalView), (status = 403, body = Problem), (status = 404, body = Problem),
    (status = 409, body = Problem, description = "approval_closed"), (status = 410, body = Problem, description = "approval_expired")))]
pub async fn reject_break_glass(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<ApprovalView> {
    step_break_glass(s, ctx, &id, ApprovalStep::Reject).await
}

/// Withdraw a pending request or end an active grant early (platform admins). Audited.
#[utoipa::path(post, path = "/v1/break-glass/{id}/revoke", tag = "break-glass", security(("bearer" = [])), responses(
    (status = 200, body = ApprovalView), (status = 403, body = Problem), (status = 404, body = Problem),
    (status = 409, body = Problem, description = "approval_closed")))]
pub async fn revoke_break_glass(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<ApprovalView> {
    step_break_glass(s, ctx, &id, ApprovalStep::Revoke).await
}
