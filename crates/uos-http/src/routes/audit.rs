//! The audit trail.

use crate::extract::{is_seq, is_uuid, Query, ReqCtx};
use crate::problem::{ApiError, Problem};
use crate::reply::{list, ListBody};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use uos_domain::OrgSlug;
use uos_store::AuditFilter;

fn time(v: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&Utc))
}

fn short(v: &str) -> Result<String, &'static str> {
    if v.is_empty() || v.chars().count() > 200 {
        Err("must be 1 to 200 characters")
    } else {
        Ok(v.to_string())
    }
}

/// Audit events in chain order. `org` (a slug) narrows to one org and needs `audit:read`
/// there; without it only platform admins may read.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", security(("bearer" = [])), params(
    ("org" = Option<String>, Query), ("actor" = Option<String>, Query), ("action" = Option<String>, Query), ("target" = Option<String>, Query),
    ("since" = Option<String>, Query, description = "RFC 3339, inclusive"), ("until" = Option<String>, Query, description = "RFC 3339, exclusive"),
    ("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query)),
    responses((status = 200, body = ListBody<Object>), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn events(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    mut q: Query,
) -> Result<Json<ListBody<serde_json::Value>>, ApiError> {
    let page = q.page("audit", is_seq);
    let org = q.parse("org", OrgSlug::parse);
    let filter = AuditFilter {
        org: None,
        actor: q.parse("actor", short),
        action: q.parse("action", short),
        target: q.parse("target", short),
        since: q.parse("since", time),
        until: q.parse("until", time),
    };
    q.finish()?;
    list(
        "audit",
        s.svc.list_audit(&ctx, org.as_ref(), filter, &page).await,
    )
}

/// Signed checkpoints of every audit chain's head, in the order they were issued, from `since`
/// on: given the latest, a verifier detects a truncated chain. Platform auditors only (a
/// checkpoint names every org's chain).
#[utoipa::path(get, path = "/v1/audit/checkpoints", tag = "audit", security(("bearer" = [])), params(
    ("since" = Option<String>, Query, description = "RFC 3339, inclusive"),
    ("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query)),
    responses((status = 200, body = ListBody<Object>), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn checkpoints(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    mut q: Query,
) -> Result<Json<ListBody<serde_json::Value>>, ApiError> {
    let page = q.page("checkpoints", is_uuid);
    let since = q.parse("since", time);
    q.finish()?;
    list(
        "checkpoints",
        s.svc.list_checkpoints(&ctx, since, &page).await,
    )
}

/// Public keys that verify audit event signatures, by `key_id`.
#[utoipa::path(get, path = "/v1/audit/keys", tag = "audit", security(("bearer" = [])), responses((status = 200, body = Object), (status = 401, body = Problem)))]
pub async fn keys(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
) -> Result<Json<serde_json::Value>, ApiError> {
    let keys = s.svc.audit_keys(&ctx)?;
    Ok(Json(serde_json::json!({ "keys": keys })))
}
