//! Budgets of orgs, service accounts and members, and the usage counted against them.

use super::{slug, user_id, uuid};
use crate::extract::{integral, ApiJson, IfMatch, ReqCtx};
use crate::json_body;
use crate::problem::Problem;
use crate::reply::{reply, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{de, Deserialize, Deserializer};
use uos_domain::budget::{MAX_LIMIT_CENTS, MAX_PERCENT};
use uos_domain::{Period, ServiceAccountId};
use uos_service::views::{BudgetView, UsageBatchView, UsageReceiptView};
use uos_service::{BudgetTarget, NewBudget, UsageReport, SOURCE_EVENT_ID_MAX_CHARS};

/// An amount in cents: a whole number from 0 to [`MAX_LIMIT_CENTS`].
#[derive(Debug, Clone, Copy)]
pub struct Cents(pub i64);

impl<'de> Deserialize<'de> for Cents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = integral(serde_json::Value::deserialize(d)?);
        match v.as_i64() {
            Some(n) if (0..=MAX_LIMIT_CENTS).contains(&n) => Ok(Self(n)),
            _ => Err(de::Error::custom(format!(
                "must be a whole number of cents from 0 to {MAX_LIMIT_CENTS}"
            ))),
        }
    }
}

/// A threshold: a whole percentage from 1 to [`MAX_PERCENT`] of the limit.
#[derive(Debug, Clone, Copy)]
pub struct Percent(pub i32);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = integral(serde_json::Value::deserialize(d)?);
        match v.as_i64().and_then(|n| i32::try_from(n).ok()) {
            Some(n) if (1..=MAX_PERCENT).contains(&n) => Ok(Self(n)),
            _ => Err(de::Error::custom(format!(
                "must be a whole number from 1 to {MAX_PERCENT}"
            ))),
        }
    }
}

/// A budget period.
#[derive(Debug, Clone, Copy)]
pub struct PeriodName(pub Period);

impl<'de> Deserialize<'de> for PeriodName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Period::parse(&s).map(Self).map_err(de::Error::custom)
    }
}

/// A usage event's id at its source: 1 to 255 characters, no control characters.
#[derive(Debug, Clone)]
pub struct SourceEventId(pub String);

impl<'de> Deserialize<'de> for SourceEventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty()
            || s.chars().count() > SOURCE_EVENT_ID_MAX_CHARS
            || s.chars().any(char::is_control)
        {
            return Err(de::Error::custom(format!(
                "1 to {SOURCE_EVENT_ID_MAX_CHARS} characters, no control characters"
            )));
        }
        Ok(Self(s))
    }
}

json_body! {
    /// A budget: `period` (UTC calendar periods; weeks start on Monday), `limit_cents`, and the
    /// thresholds as percentages of the limit, both inclusive (defaults 80 and 100).
    pub struct BudgetBody {
        #[schema(value_type = String, pattern = "^(daily|weekly|monthly|total)$")]
        req period: PeriodName,
        #[schema(value_type = i64, minimum = 0, maximum = 1_000_000_000_000_000_i64)]
        req limit_cents: Cents,
        #[schema(value_type = Option<i32>, minimum = 1, maximum = 1000)]
        opt warn_percent: Option<Percent>,
        #[schema(value_type = Option<i32>, minimum = 1, maximum = 1000)]
        opt block_percent: Option<Percent>,
    }
}

impl From<BudgetBody> for NewBudget {
    fn from(b: BudgetBody) -> Self {
        Self {
            period: b.period.0,
            limit_cents: b.limit_cents.0,
            warn_percent: b.warn_percent.map(|p| p.0),
            block_percent: b.block_percent.map(|p| p.0),
        }
    }
}

json_body! {
    /// One usage event. Its amount counts for the org, for the service account (named, or the
    /// owner of the named API key) and for the member, in the UTC period `occurred_at` falls
    /// in. Counted once per org and `source_event_id`: a repeat adds nothing.
    pub struct UsageItem {
        #[schema(min_length = 1, max_length = 200)]
        req org: String,
        #[schema(value_type = i64, minimum = 0, maximum = 1_000_000_000_000_000_i64)]
        req amount_cents: Cents,
        req occurred_at: DateTime<Utc>,
        #[schema(value_type = String, min_length = 1, max_length = 255, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$")]
        req source_event_id: SourceEventId,
        opt service_account_id: Option<uuid::Uuid>,
        opt user_id: Option<uuid::Uuid>,
        opt api_key_id: Option<uuid::Uuid>,
    }
}

/// An item of a batch: parsed as the single body is, every bad field named in the message.
impl<'de> Deserialize<'de> for UsageItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::extract::object_as(serde_json::Map::deserialize(d)?)
    }
}

impl From<UsageItem> for UsageReport {
    fn from(i: UsageItem) -> Self {
        Self {
            org: i.org,
            amount_cents: i.amount_cents.0,
            occurred_at: i.occurred_at,
            source_event_id: i.source_event_id.0,
            service_account_id: i.service_account_id,
            user_id: i.user_id,
            api_key_id: i.api_key_id,
        }
    }
}

json_body! {
    /// 1 to 1000 usage events.
    pub struct UsageBatchBody {
        #[schema(min_items = 1, max_items = 1000)]
        req items: Vec<UsageItem>,
    }
}

/// The org's budget.
#[utoipa::path(get, path = "/v1/orgs/{slug}/budget", tag = "budgets", security(("bearer" = [])), responses(
    (status = 200, body = BudgetView), (status = 404, body = Problem)))]
pub async fn get_org_budget(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(org): Path<String>,
) -> ApiResult<BudgetView> {
    reply(
        s.svc
            .get_budget(&ctx, &slug(&org)?, BudgetTarget::Org)
            .await,
    )
}

/// Set the org's budget: created (201) or replaced (200). Audited.
#[utoipa::path(put, path = "/v1/orgs/{slug}/budget", tag = "budgets", security(("bearer" = [])), request_body = BudgetBody, params(IfMatch), responses(
    (status = 200, body = BudgetView), (status = 201, body = BudgetView)))]
pub async fn put_org_budget(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(org): Path<String>,
    IfMatch(v): IfMatch,
    ApiJson(b): ApiJson<BudgetBody>,
) -> ApiResult<BudgetView> {
    let slug = slug(&org)?;
    reply(
        s.svc
            .put_budget(&ctx, &slug, BudgetTarget::Org, b.into(), v)
            .await,
    )
}

/// Remove the org's budget. Audited.
#[utoipa::path(delete, path = "/v1/orgs/{slug}/budget", tag = "budgets", security(("bearer" = [])), params(IfMatch), responses(
    (status = 204, description = "removed")))]
pub async fn delete_org_budget(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(org): Path<String>,
    IfMatch(v): IfMatch,
) -> ApiResult<()> {
    reply(
        s.svc
            .delete_budget(&ctx, &slug(&org)?, BudgetTarget::Org, v)
            .await,
    )
}

fn account(id: &str) -> Result<BudgetTarget, crate::problem::ApiError> {
    Ok(BudgetTarget::ServiceAccount(ServiceAccountId(uuid(
        "id", id,
    )?)))
}

/// A service account's budget (its keys' spend counts for it).
#[utoipa::path(get, path = "/v1/orgs/{slug}/service-accounts/{id}/budget", tag = "budgets", security(("bearer" = [])), responses(
    (status = 200, body = BudgetView), (status = 404, body = Problem)))]
pub async fn get_account_budget(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<BudgetView> {
    reply(s.svc.get_budget(&ctx, &slug(&org)?, account(&id)?).await)
}

/// Set a service account's budget: created (201) or replaced (200). Audited.
#[utoipa::path(put, path = "/v1/orgs/{slug}/service-accounts/{id}/budget", tag = "budgets", security(("bearer" = [])), request_body = BudgetBody, params(IfMatch), responses(
    (status = 200, body = BudgetView), (status = 201, body = BudgetView)))]
pub async fn put_account_budget(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((org, id)): Path<(String, String)>,
    IfMatch(v): IfMatch,
    ApiJson(b): ApiJson<BudgetBody>,
) -> ApiResult<BudgetView> {
    let (slug, target) = (slug(&org)?, account(&id)?);
    reply(s.svc.put_budget(&ctx, &slug, target, b.into(), v).await)
}

/// Remove a service account's budget. Audited.
#[utoipa::path(delete, path = "/v1/orgs/{slug}/service-accounts/{id}/budget", tag = "budgets", security(("bearer" = [])), params(IfMatch), responses(
    (status = 204, description = "removed")))]
pub async fn delete_account_budget(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((org, id)): Path<(String, String)>,
    IfMatch(v): IfMatch,
) -> ApiResult<()> {
    let (slug, target) = (slug(&org)?, account(&id)?);
    reply(s.svc.delete_budget(&ctx, &slug, target, v).await)
}

fn member(id: &str) -> Result<BudgetTarget, crate::problem::ApiError> {
    Ok(BudgetTarget::Member(user_id(id)?))
}

/// A member's budget in the org.
#[utoipa::path(get, path = "/v1/orgs/{slug}/users/{user_id}/budget", tag = "budgets", security(("bearer" = [])), responses(
    (status = 200, body = BudgetView), (status = 404, body = Problem)))]
pub async fn get_member_budget(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((org, user)): Path<(String, String)>,
) -> ApiResult<BudgetView> {
    reply(s.svc.get_budget(&ctx, &slug(&org)?, member(&user)?).await)
}

/// Set a member's budget in the org: created (201) or replaced (200). Audited.
#[utoipa::path(put, path = "/v1/orgs/{slug}/users/{user_id}/budget", tag = "budgets", security(("bearer" = [])), request_body = BudgetBody, params(IfMatch), responses(
    (status = 200, body = BudgetView), (status = 201, body = BudgetView)))]
pub async fn put_member_budget(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((org, user)): Path<(String, String)>,
    IfMatch(v): IfMatch,
    ApiJson(b): ApiJson<BudgetBody>,
) -> ApiResult<BudgetView> {
    let (slug, target) = (slug(&org)?, member(&user)?);
    reply(s.svc.put_budget(&ctx, &slug, target, b.into(), v).await)
}

/// Remove a member's budget in the org. Audited.
#[utoipa::path(delete, path = "/v1/orgs/{slug}/users/{user_id}/budget", tag = "budgets", security(("bearer" = [])), params(IfMatch), responses(
    (status = 204, description = "removed")))]
pub async fn delete_member_budget(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((org, user)): Path<(String, String)>,
    IfMatch(v): IfMatch,
) -> ApiResult<()> {
    let (slug, target) = (slug(&org)?, member(&user)?);
    reply(s.svc.delete_budget(&ctx, &slug, target, v).await)
}

/// Report one usage event (the caller holds `usage:write` in its org). 202 with
/// `duplicate: true` when the org had counted this `source_event_id` already. An org, service
/// account, key or member the caller cannot see is 404; an API key of another service account
/// than the one named is 409.
#[utoipa::path(post, path = "/v1/usage", tag = "budgets", security(("bearer" = [])), request_body = UsageItem, responses(
    (status = 202, body = UsageReceiptView), (status = 404, body = Problem, description = "the org, account, key or member is not visible to the caller")))]
pub async fn record_usage(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(item): ApiJson<UsageItem>,
) -> ApiResult<UsageReceiptView> {
    reply(s.svc.record_one_usage(&ctx, item.into()).await)
}

/// Report 1 to 1000 usage events, of one org or several (each org's events count together).
#[utoipa::path(post, path = "/v1/usage/batch", tag = "budgets", security(("bearer" = [])), request_body = UsageBatchBody, responses(
    (status = 202, body = UsageBatchView), (status = 404, body = Problem, description = "an org, account, key or member is not visible to the caller")))]
pub async fn record_usage_batch(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<UsageBatchBody>,
) -> ApiResult<UsageBatchView> {
    let reports = b.items.into_iter().map(UsageReport::from).collect();
    reply(s.svc.record_usage(&ctx, reports).await)
}
