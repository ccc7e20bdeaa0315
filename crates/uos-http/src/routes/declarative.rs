//! Declarative config (contract § Declarative config): the file format's schema, the
//! reconciler's status per org, pausing and resuming it, and asking it to run now (by a
//! platform admin, or by a Git host's signed push webhook).

use super::approvals::Reason;
use super::slug;
use crate::extract::{ApiJson, Query, ReqCtx};
use crate::json_body;
use crate::problem::{ApiError, Problem};
use crate::reply::{list, reply, ApiResult, ListBody};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Deserializer};
use uos_domain::OrgSlug;
use uos_service::{DeclaredStatusView, Done, FieldError, ServiceError};

/// The JSON Schema (draft 2020-12) of a declarative org file, `orgs/<slug>.yaml` (no
/// credentials needed).
#[utoipa::path(get, path = "/v1/declarative/schema", tag = "declarative", responses((status = 200, body = Object)))]
pub async fn schema(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.svc.declarative_schema_access(&ctx)?;
    Ok(Json(uos_reconcile::json_schema()))
}

/// Files in one plan request: a repository with more is planned in several requests (the
/// body is at most 1 MiB anyway).
const PLAN_FILES_MAX: usize = 100;
/// The longest file name a plan accepts (a slug is at most 63 characters, plus `.yaml`).
const PLAN_NAME_MAX_CHARS: usize = 255;

json_body! {
    /// Org files as a config repository holds them under `orgs/`, to plan against the store as
    /// it is now: nothing is applied or recorded.
    pub struct PlanBody {
        #[schema(min_items = 1, max_items = 100)]
        req files: Vec<PlanFile>,
    }
}

json_body! {
    /// One org file: its name inside `orgs/` (`<slug>.yaml`) and its text.
    pub struct PlanFile {
        #[schema(min_length = 1, max_length = 255, pattern = "^[^/\\\\\\u0000-\\u001F\\u007F-\\u009F]+$")]
        req name: String,
        req content: String,
    }
}

/// A file of a plan request: parsed as the body is, every bad field named in the message.
impl<'de> Deserialize<'de> for PlanFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::extract::object_as(serde_json::Map::deserialize(d)?)
    }
}

/// Every problem with a plan request's file list, each naming its field.
fn plan_files_problems(files: &[PlanFile]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if files.is_empty() || files.len() > PLAN_FILES_MAX {
        errors.push(FieldError::new(
            "files",
            "invalid",
            format!("give 1 to {PLAN_FILES_MAX} files"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, f) in files.iter().enumerate() {
        let name = f.name.as_str();
        let problem = if name.is_empty() || name.chars().count() > PLAN_NAME_MAX_CHARS {
            Some(format!("1 to {PLAN_NAME_MAX_CHARS} characters"))
        } else if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
            Some("a file name inside orgs/, without slashes or control characters".to_owned())
        } else if !seen.insert(name) {
            Some(format!("{name} is given twice"))
        } else {
            None
        };
        if let Some(message) = problem {
            errors.push(FieldError::new(
                format!("files[{i}].name"),
                "invalid",
                message,
            ));
        }
    }
    errors
}

/// What applying these org files would change, planned against the store as it is now
/// (platform admins): per file the changes and the refusals, or every problem of an invalid
/// file; `blocked` when applying would leave something undone. `uosctl declarative plan
/// --api` sends a checkout's files here.
#[utoipa::path(post, path = "/v1/declarative/plan", tag = "declarative", security(("bearer" = [])), request_body = PlanBody, responses(
    (status = 200, body = uos_reconcile::RepoPlan), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn plan(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<PlanBody>,
) -> Result<Json<uos_reconcile::RepoPlan>, ApiError> {
    let mut reads = s.svc.declarative_plan_reads(&ctx).await?;
    let problems = plan_files_problems(&b.files);
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let files = b
        .files
        .into_iter()
        .map(|f| (f.name, f.content.into_bytes()))
        .collect();
    let plan = uos_reconcile::plan_repo(&mut *reads, uos_reconcile::read_files(files))
        .await
        .map_err(ServiceError::from)?;
    Ok(Json(plan))
}

/// Every org a config repo declares, by slug: pause, revisions, last attempt and drift
/// (platform admins).
#[utoipa::path(get, path = "/v1/declarative/status", tag = "declarative", security(("bearer" = [])), params(
    ("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query)),
    responses((status = 200, body = ListBody<DeclaredStatusView>), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub async fn statuses(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    mut q: Query,
) -> Result<Json<ListBody<DeclaredStatusView>>, ApiError> {
    let page = q.page("declared", |c| OrgSlug::parse(c).is_ok());
    q.finish()?;
    list("declared", s.svc.declarative_statuses(&ctx, &page).await)
}

/// One declared org's status (platform admins); 404 when no file declares it.
#[utoipa::path(get, path = "/v1/declarative/status/{slug}", tag = "declarative", security(("bearer" = [])), responses(
    (status = 200, body = DeclaredStatusView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn status(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
) -> ApiResult<DeclaredStatusView> {
    let org = slug(&raw)?;
    reply(
        s.svc
            .declarative_status(&ctx, org.as_str())
            .await
            .map(|v| Done::ok(v, None)),
    )
}

json_body! {
    /// Pause the reconciler for `org`, or for every org when absent. While paused nothing is
    /// applied there, and interactive changes to declared fields are allowed.
    pub struct PauseBody {
        #[schema(value_type = Option<String>, schema_with = crate::schemas::slug)]
        opt org: Option<OrgSlug>,
        #[schema(value_type = String, min_length = 1, max_length = 500, pattern = "\\S")]
        req reason: Reason,
    }
}

json_body! {
    /// The org to resume or sync; every org when absent.
    pub struct OrgBody {
        #[schema(value_type = Option<String>, schema_with = crate::schemas::slug)]
        opt org: Option<OrgSlug>,
    }
}

/// Pause the reconciler for one org or all (platform admins). Audited.
#[utoipa::path(post, path = "/v1/declarative/pause", tag = "declarative", security(("bearer" = [])), request_body = PauseBody, responses(
    (status = 204), (status = 403, body = Problem), (status = 404, body = Problem, description = "no file declares the org")))]
pub async fn pause(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<PauseBody>,
) -> ApiResult<()> {
    let org = b.org.as_ref().map(OrgSlug::as_str);
    reply(
        s.svc
            .set_declarative_pause(&ctx, org, Some(b.reason.0))
            .await
            .map(|()| Done::no_content()),
    )
}

/// Resume the reconciler for one org or all (platform admins). Audited.
#[utoipa::path(post, path = "/v1/declarative/resume", tag = "declarative", security(("bearer" = [])), request_body = OrgBody, responses(
    (status = 204), (status = 403, body = Problem), (status = 404, body = Problem, description = "no file declares the org")))]
pub async fn resume(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<OrgBody>,
) -> ApiResult<()> {
    let org = b.org.as_ref().map(OrgSlug::as_str);
    reply(
        s.svc
            .set_declarative_pause(&ctx, org, None)
            .await
            .map(|()| Done::no_content()),
    )
}

/// Ask the reconciler to run now (platform admins); a pass covers every org.
#[utoipa::path(post, path = "/v1/declarative/sync", tag = "declarative", security(("bearer" = [])), request_body = OrgBody, responses(
    (status = 202), (status = 403, body = Problem), (status = 404, body = Problem, description = "no file declares the org")))]
pub async fn sync(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<OrgBody>,
) -> ApiResult<()> {
    let org = b.org.as_ref().map(OrgSlug::as_str);
    reply(
        s.svc
            .request_declarative_sync(&ctx, org)
            .await
            .map(|()| Done::accepted()),
    )
}

/// A Git host's push event, signed with `declarative.webhook_secret` in
/// `X-Hub-Signature-256` (`sha256=<hex HMAC-SHA256 of the body>`): the reconciler runs now.
/// The body is not read otherwise: the reconciler fetches the branch it is configured with.
#[utoipa::path(post, path = "/v1/declarative/webhook", tag = "declarative",
    params(("X-Hub-Signature-256" = Option<String>, Header, description = "sha256=<hex HMAC-SHA256 of the body>")),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 202), (status = 401, body = Problem, description = "missing or wrong signature"),
    (status = 404, body = Problem, description = "no webhook secret is configured")))]
pub async fn webhook(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<()> {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    reply(
        s.svc
            .declarative_webhook(&ctx, &body, signature)
            .await
            .map(|()| Done::accepted()),
    )
}
