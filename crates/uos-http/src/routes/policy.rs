//! The decision point: signed decisions for downstream services, their keys, and the policy
//! bundle that makes them.

use crate::extract::{ApiJson, ReqCtx};
use crate::json_body;
use crate::problem::{ApiError, Problem};
use crate::reply::{reply, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Deserializer};
use uos_service::views::{DecisionView, PolicyBundleView, PolicyReloadView};
use uos_service::{DecisionRequest, PrincipalRef};
use utoipa::ToSchema;

/// How a principal is named.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalType {
    User,
    ServiceAccount,
    ApiKey,
}

/// A principal by its kind and id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalById {
    #[serde(rename = "type")]
    pub kind: PrincipalType,
    pub id: uuid::Uuid,
}

/// A principal by a credential it holds: an access token or an API key, checked as a bearer
/// credential is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalByToken {
    #[schema(min_length = 1, max_length = 4096)]
    pub token: String,
}

/// Who the decision is about.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PrincipalBody {
    ById(PrincipalById),
    ByToken(PrincipalByToken),
}

/// What the decision is about. `attributes.required_roles` (role names) is understood by the
/// built-in policy: the principal must hold each.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceBody {
    /// The caller's own resource type, e.g. `model`.
    #[serde(rename = "type")]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
    )]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    /// The org's slug or id.
    #[schema(min_length = 1, max_length = 200)]
    pub org: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The circumstances: `cost_cents` (a whole number of cents) makes every budget that applies
/// count; anything else is handed to the policy as `input.context`.
#[derive(Debug, Default)]
pub struct ContextBody(pub serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for ContextBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = serde_json::Map::deserialize(d)?;
        if let Some(cost) = map.remove("cost_cents") {
            let cost = crate::extract::integral(cost);
            map.insert("cost_cents".to_owned(), cost);
        }
        Ok(Self(map))
    }
}

impl utoipa::PartialSchema for ContextBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schemas::decision_context().into()
    }
}

impl ToSchema for ContextBody {}

json_body! {
    /// May this principal do this action on this resource now?
    pub struct EvaluateBody {
        req principal: PrincipalBody,
        #[schema(min_length = 1, max_length = 200, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$")]
        req action: String,
        req resource: ResourceBody,
        opt context: Option<ContextBody>,
    }
}

/// A question of a batch: parsed as the single body is.
impl<'de> Deserialize<'de> for EvaluateBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::extract::object_as(serde_json::Map::deserialize(d)?)
    }
}

impl From<EvaluateBody> for DecisionRequest {
    fn from(b: EvaluateBody) -> Self {
        let principal = match b.principal {
            PrincipalBody::ById(p) => match p.kind {
                PrincipalType::User => PrincipalRef::User(p.id),
                PrincipalType::ServiceAccount => PrincipalRef::ServiceAccount(p.id),
                PrincipalType::ApiKey => PrincipalRef::ApiKey(p.id),
            },
            PrincipalBody::ByToken(t) => PrincipalRef::Token(t.token),
        };
        Self {
            principal,
            action: b.action,
            resource_type: b.resource.kind,
            resource_id: b.resource.id,
            org: b.resource.org,
            attributes: serde_json::Value::Object(b.resource.attributes.unwrap_or_default()),
            context: b.context.unwrap_or_default().0,
        }
    }
}

json_body! {
    /// 1 to 100 questions, answered in order, each exactly as `POST /v1/policy/evaluate` would.
    pub struct EvaluateBatchBody {
        #[schema(min_items = 1, max_items = 100)]
        req requests: Vec<EvaluateBody>,
    }
}

/// The decisions of a batch, in the order asked.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct DecisionsBody {
    pub decisions: Vec<DecisionView>,
}

/// Ask the decision point (the caller holds `policy:evaluate` in the resource's org). A
/// denial is 200 with `allow: false`, naming every rule and budget that denied; denials are
/// audited. An unknown or inactive principal is a denial too.
#[utoipa::path(post, path = "/v1/policy/evaluate", tag = "policy", security(("bearer" = [])), request_body = EvaluateBody, responses(
    (status = 200, body = DecisionView), (status = 404, body = Problem, description = "the org is not visible to the caller")))]
pub async fn evaluate(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<EvaluateBody>,
) -> Result<Json<DecisionView>, ApiError> {
    Ok(Json(s.svc.evaluate(&ctx, b.into()).await?))
}

/// Ask up to 100 questions at once; budgets and every other rule apply exactly as for one.
#[utoipa::path(post, path = "/v1/policy/evaluate-batch", tag = "policy", security(("bearer" = [])), request_body = EvaluateBatchBody, responses(
    (status = 200, body = DecisionsBody), (status = 404, body = Problem, description = "an org is not visible to the caller")))]
pub async fn evaluate_batch(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<EvaluateBatchBody>,
) -> Result<Json<DecisionsBody>, ApiError> {
    let reqs = b.requests.into_iter().map(DecisionRequest::from).collect();
    Ok(Json(DecisionsBody {
        decisions: s.svc.evaluate_batch(&ctx, reqs).await?,
    }))
}

/// Public keys that verify decision signatures, by `key_id` (no credentials needed).
#[utoipa::path(get, path = "/v1/policy/keys", tag = "policy", responses((status = 200, body = Object)))]
pub async fn keys(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
) -> Result<Json<serde_json::Value>, ApiError> {
    let keys = s.svc.policy_keys(&ctx)?;
    Ok(Json(serde_json::json!({ "keys": keys })))
}

/// The policy bundle deciding now (platform admins): its revision (the `policy_revision` of
/// decisions), when it was loaded, and its files with their SHA-256.
#[utoipa::path(get, path = "/v1/policy/bundle", tag = "policy", security(("bearer" = [])), responses(
    (status = 200, body = PolicyBundleView)))]
pub async fn bundle(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
) -> Result<Json<PolicyBundleView>, ApiError> {
    Ok(Json(s.svc.policy_bundle(&ctx)?))
}

/// Read the bundle's source again (the policy directory, or the embedded policies) and make it
/// current if it changed and is sound (platform admins). It must compile and every `test_*`
/// rule must hold; otherwise the answer is 422 `policy_refused`, `errors` names each problem
/// by `file:line`, and the running bundle stays. A change of revision is audited
/// (`policy.reloaded`); the same revision is `changed: false`.
#[utoipa::path(post, path = "/v1/policy/reload", tag = "policy", security(("bearer" = [])), responses(
    (status = 200, body = PolicyReloadView),
    (status = 422, body = Problem, description = "`policy_refused`: the bundle does not compile or fails its Rego tests; `errors` lists each problem with `field` = `file:line` and `code` (`compile_error`, `test_failed`, `self_check_failed`, `unreadable`); the running bundle stays. Or `idempotency_key_reused`")))]
pub async fn reload(State(s): State<AppState>, ReqCtx(ctx): ReqCtx) -> ApiResult<PolicyReloadView> {
    reply(s.svc.reload_policy(&ctx).await)
}
