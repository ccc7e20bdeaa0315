//! The audit trail: events, checkpoints, keys and exports.

use crate::extract::{is_seq, is_uuid, ApiJson, Query, ReqCtx};
use crate::json_body;
use crate::problem::{ApiError, Problem};
use crate::reply::{list, reply, ApiResult, ListBody};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use uos_domain::OrgSlug;
use uos_service::views::AuditExportView;
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
/// there; without it only platform admins may read. Each event's JSON is sent as the service
/// serves it (mostly as stored), not parsed again here.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", security(("bearer" = [])), params(
    ("org" = Option<String>, Query), ("actor" = Option<String>, Query), ("action" = Option<String>, Query), ("target" = Option<String>, Query),
    ("since" = Option<String>, Query, description = "RFC 3339, inclusive"), ("until" = Option<String>, Query, description = "RFC 3339, exclusive"),
    ("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query)),
    responses((status = 200, body = ListBody<Object>), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn events(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    mut q: Query,
) -> Result<Json<ListBody<Box<RawValue>>>, ApiError> {
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

json_body! {
    /// What to export: one org's trail (a slug, as `GET /v1/audit/events?org=`), or without
    /// `org` the whole trail (platform auditors only); `since` inclusive, `until` exclusive.
    pub struct CreateExportBody {
        #[schema(schema_with = crate::schemas::slug_or_null)]
        opt org: Option<OrgSlug>,
        #[schema(schema_with = crate::schemas::date_time_or_null)]
        opt since: Option<DateTime<Utc>>,
        #[schema(schema_with = crate::schemas::date_time_or_null)]
        opt until: Option<DateTime<Utc>>,
    }
}

/// Request an export of the audit trail: a background job writes it to the object store as
/// NDJSON; poll its status, then download it. Recorded as an `audit.exported` event.
#[utoipa::path(post, path = "/v1/audit/exports", tag = "audit", security(("bearer" = [])), request_body = CreateExportBody, responses(
    (status = 202, body = AuditExportView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn create_export(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<CreateExportBody>,
) -> ApiResult<AuditExportView> {
    reply(
        s.svc
            .create_audit_export(&ctx, b.org.as_ref(), b.since, b.until)
            .await,
    )
}

/// An export's status. An export the caller may not read is not found.
#[utoipa::path(get, path = "/v1/audit/exports/{id}", tag = "audit", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The export's id")),
    responses((status = 200, body = AuditExportView), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn get_export(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
) -> Result<Json<AuditExportView>, ApiError> {
    let id = super::uuid("id", &raw)?;
    Ok(Json(s.svc.get_audit_export(&ctx, id).await?))
}

/// A done export's file: one event per line (each as `GET /v1/audit/events` serves it), then
/// one manifest line `{"manifest": {chains, first_seq, last_seq, count, checkpoints, keys}}`
/// (`first_seq` and `last_seq` keyed by chain). `uosctl audit verify` checks it offline.
#[utoipa::path(get, path = "/v1/audit/exports/{id}/download", tag = "audit", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The export's id")),
    responses(
        (status = 200, description = "The export file (NDJSON, streamed)", content_type = "application/x-ndjson", body = String),
        (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "The export is not done", body = Problem)))]
pub async fn download_export(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = super::uuid("id", &raw)?;
    let bytes = s.svc.download_audit_export(&ctx, id).await?;
    // Streamed from the object store as it arrives: the file is never in memory whole.
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit-export.ndjson\"",
            ),
        ],
        Body::from_stream(bytes),
    )
        .into_response())
}
