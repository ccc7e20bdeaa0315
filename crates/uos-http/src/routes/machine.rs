//! Machine identity: service accounts, their API keys and OAuth2 client secrets.

use super::{slug, uuid, Description, RoleList};
use crate::extract::{
    is_uuid, reject_unknown, take_field, AnyJson, ApiJson, FromJsonObject, IfMatch, OptionalJson,
    Query, ReqCtx,
};
use crate::json_body;
use crate::problem::{ApiError, Problem};
use crate::reply::{list, reply, ApiResult, ListBody};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use serde::{de, Deserialize, Deserializer};
use serde_json::Value;
use uos_domain::{
    ApiKeyId, DisplayName, OrgSlug, Permission, RotationPolicy, ServiceAccountId,
    ServiceAccountStatus, API_KEY_MAX_DAYS,
};
use uos_service::views::{ApiKeyView, ClientSecretView, NewApiKeyView, ServiceAccountView};
use uos_service::{
    Ctx, FieldError, NewApiKey, NewServiceAccount, ServiceAccountPatch, MAX_ROTATION_OVERLAP_SECS,
};

/// A number of days within `1..=API_KEY_MAX_DAYS`.
#[derive(Debug, Clone, Copy)]
pub struct Days(pub u32);

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if !(1..=API_KEY_MAX_DAYS).contains(&n) {
            return Err(de::Error::custom(format!(
                "must be between 1 and {API_KEY_MAX_DAYS}"
            )));
        }
        Ok(Self(n))
    }
}

/// Days of grace within `0..=API_KEY_MAX_DAYS`.
#[derive(Debug, Clone, Copy)]
pub struct GraceDays(pub u32);

impl<'de> Deserialize<'de> for GraceDays {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        if n > API_KEY_MAX_DAYS {
            return Err(de::Error::custom(format!(
                "must be between 0 and {API_KEY_MAX_DAYS}"
            )));
        }
        Ok(Self(n))
    }
}

/// An account's key rotation policy as sent. Each bad field inside it is reported as
/// `rotation_policy.<field>` (see [`parse_rotation_policy`]); its schema is
/// [`crate::schemas::rotation_policy`].
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicyBody {
    max_key_age_days: Option<u32>,
    refuse_after_days: Option<u32>,
}

impl utoipa::PartialSchema for RotationPolicyBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schemas::rotation_policy().into()
    }
}

impl utoipa::ToSchema for RotationPolicyBody {}

impl<'de> Deserialize<'de> for RotationPolicyBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        parse_rotation_policy(&v).map_err(|errors| {
            let detail: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            de::Error::custom(detail.join("; "))
        })
    }
}

/// A rotation policy object, with every bad field named `rotation_policy.<field>`.
fn parse_rotation_policy(v: &Value) -> Result<RotationPolicyBody, Vec<FieldError>> {
    let Value::Object(obj) = v else {
        return Err(vec![FieldError::new(
            "rotation_policy",
            "invalid_type",
            "rotation_policy must be an object",
        )]);
    };
    let mut obj = obj.clone();
    let mut errors = Vec::new();
    let max = take_field::<Days>(&mut obj, "max_key_age_days", false, &mut errors);
    let grace = take_field::<GraceDays>(&mut obj, "refuse_after_days", false, &mut errors);
    reject_unknown(obj, &mut errors);
    let max_failed = !errors.is_empty() && errors.iter().any(|e| e.field == "max_key_age_days");
    if grace.is_some() && max.is_none() && !max_failed {
        errors.push(FieldError::new(
            "refuse_after_days",
            "requires_max_key_age",
            "refusing overdue keys needs max_key_age_days",
        ));
    }
    if !errors.is_empty() {
        for e in &mut errors {
            e.field = format!("rotation_policy.{}", e.field);
        }
        return Err(errors);
    }
    Ok(RotationPolicyBody {
        max_key_age_days: max.map(|d| d.0),
        refuse_after_days: grace.map(|g| g.0),
    })
}

impl From<RotationPolicyBody> for RotationPolicy {
    fn from(b: RotationPolicyBody) -> Self {
        Self {
            max_key_age_days: b.max_key_age_days,
            refuse_after_days: b.refuse_after_days,
        }
    }
}

/// The `scopes` of a new key: at least one permission of the catalogue.
#[derive(Debug)]
pub struct ScopeList(pub Vec<Permission>);

impl<'de> Deserialize<'de> for ScopeList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let scopes = Vec::<Permission>::deserialize(d)?;
        if scopes.is_empty() {
            return Err(de::Error::custom("give at least one permission"));
        }
        Ok(Self(scopes))
    }
}

/// Parse a service-account body. When fields fail, the roles it names (if they parse) are
/// checked against the org too, so one answer lists every bad field, as the contract asks;
/// that second check tells only callers allowed to manage the org's accounts anything.
async fn account_body<T: FromJsonObject>(
    s: &AppState,
    ctx: &Ctx,
    slug: &OrgSlug,
    body: Value,
    update: bool,
) -> Result<T, ApiError> {
    let Value::Object(obj) = body else {
        return Err(ApiError::field(
            "body",
            "invalid_type",
            "the body must be a JSON object",
        ));
    };
    let rotation = obj.get("rotation_policy").cloned();
    let roles = obj
        .get("roles")
        .and_then(|v| serde_json::from_value::<RoleList>(v.clone()).ok());
    let mut errors = match T::from_object(obj) {
        Ok(b) => return Ok(b),
        Err(e) => e,
    };
    if let Some(v) = rotation {
        if errors.iter().any(|e| e.field == "rotation_policy") {
            errors.retain(|e| e.field != "rotation_policy");
            errors.extend(parse_rotation_policy(&v).err().unwrap_or_default());
        }
    }
    if let Some(RoleList(roles)) = roles {
        // A refusal (404, 403) or a store failure only means nothing more to add here.
        if let Ok(more) = s
            .svc
            .service_account_role_errors(ctx, slug, roles, update)
            .await
        {
            errors.extend(more);
        }
    }
    Err(ApiError::validation(errors))
}

/// `active` or `disabled` (deleting is `DELETE`).
#[derive(Debug, Clone, Copy)]
pub struct AccountStatus(pub ServiceAccountStatus);

impl<'de> Deserialize<'de> for AccountStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "active" => Ok(Self(ServiceAccountStatus::Active)),
            "disabled" => Ok(Self(ServiceAccountStatus::Disabled)),
            _ => Err(de::Error::custom("status must be active or disabled")),
        }
    }
}

json_body! {
    /// A service account: a machine principal of the org with roles (never `owner`).
    pub struct CreateServiceAccountBody {
        #[schema(schema_with = crate::schemas::display_name)]
        req name: DisplayName,
        #[schema(schema_with = crate::schemas::role_list)]
        req roles: RoleList,
        #[schema(schema_with = crate::schemas::description_or_null)]
        opt description: Option<Description>,
        opt rotation_policy: Option<RotationPolicyBody>,
    }
}

json_body! {
    /// Account fields to change; `roles` replaces the list, `description: null` clears it.
    pub struct UpdateServiceAccountBody {
        #[schema(schema_with = crate::schemas::display_name_or_null)]
        opt name: Option<DisplayName>,
        #[schema(schema_with = crate::schemas::role_list_or_null)]
        opt roles: Option<RoleList>,
        #[schema(schema_with = crate::schemas::description_or_null)]
        nul description: Option<Option<Description>>,
        #[schema(schema_with = crate::schemas::account_status_or_null)]
        opt status: Option<AccountStatus>,
        opt rotation_policy: Option<RotationPolicyBody>,
    }
}

json_body! {
    /// A new API key: its permissions (each granted by the account's roles) and lifetime.
    pub struct CreateApiKeyBody {
        #[schema(schema_with = crate::schemas::display_name)]
        req name: DisplayName,
        #[schema(schema_with = crate::schemas::scope_list)]
        req scopes: ScopeList,
        /// Days until the key expires (1–3650, and at most the org's maximum). Without it the
        /// org's maximum applies, or the key does not expire.
        #[schema(schema_with = crate::schemas::key_days_or_null)]
        opt expires_in_days: Option<Days>,
    }
}

/// Seconds within `0..=MAX_ROTATION_OVERLAP_SECS`.
#[derive(Debug, Clone, Copy)]
pub struct Overlap(pub u64);

impl<'de> Deserialize<'de> for Overlap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if n > MAX_ROTATION_OVERLAP_SECS {
            return Err(de::Error::custom(format!(
                "must be between 0 and {MAX_ROTATION_OVERLAP_SECS}"
            )));
        }
        Ok(Self(n))
    }
}

json_body! {
    /// How long the old key keeps working after the rotation. The body may be left out.
    pub struct RotateApiKeyBody {
        /// Seconds (0–2592000); the configured default (one day) when absent.
        #[schema(schema_with = crate::schemas::overlap_seconds_or_null)]
        opt overlap_seconds: Option<Overlap>,
    }
}

fn account_id(raw: &str) -> Result<ServiceAccountId, ApiError> {
    uuid("id", raw).map(ServiceAccountId)
}

fn key_id(raw: &str) -> Result<ApiKeyId, ApiError> {
    uuid("id", raw).map(ApiKeyId)
}

#[utoipa::path(post, path = "/v1/orgs/{slug}/service-accounts", tag = "machine", security(("bearer" = [])), request_body = CreateServiceAccountBody,
    responses(
    (status = 201, body = ServiceAccountView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn create_account(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    AnyJson(body): AnyJson,
) -> ApiResult<ServiceAccountView> {
    let slug = slug(&raw)?;
    let b: CreateServiceAccountBody = account_body(&s, &ctx, &slug, body, false).await?;
    let req = NewServiceAccount {
        name: b.name.into_string(),
        description: b.description.map(|d| d.0),
        roles: b.roles.0,
        rotation: b.rotation_policy.map(Into::into).unwrap_or_default(),
    };
    reply(s.svc.create_service_account(&ctx, &slug, req).await)
}

#[utoipa::path(get, path = "/v1/orgs/{slug}/service-accounts", tag = "machine", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query), ("include_deleted" = Option<bool>, Query)),
    responses((status = 200, body = ListBody<ServiceAccountView>), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn list_accounts(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    mut q: Query,
) -> Result<Json<ListBody<ServiceAccountView>>, ApiError> {
    let page = q.page("service_accounts", is_uuid);
    let include_deleted = q
        .parse("include_deleted", |v| v.parse::<bool>())
        .unwrap_or(false);
    q.finish()?;
    list(
        "service_accounts",
        s.svc
            .list_service_accounts(&ctx, &slug(&raw)?, include_deleted, &page)
            .await,
    )
}

#[utoipa::path(get, path = "/v1/orgs/{slug}/service-accounts/{id}", tag = "machine", security(("bearer" = [])),
    responses((status = 200, body = ServiceAccountView), (status = 404, body = Problem)))]
pub async fn get_account(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<ServiceAccountView> {
    reply(
        s.svc
            .get_service_account(&ctx, &slug(&raw)?, account_id(&id)?)
            .await,
    )
}

#[utoipa::path(patch, path = "/v1/orgs/{slug}/service-accounts/{id}", tag = "machine", security(("bearer" = [])), request_body = UpdateServiceAccountBody, params(IfMatch), responses(
    (status = 200, body = ServiceAccountView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn update_account(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
    IfMatch(v): IfMatch,
    AnyJson(body): AnyJson,
) -> ApiResult<ServiceAccountView> {
    let slug = slug(&raw)?;
    let b: UpdateServiceAccountBody = account_body(&s, &ctx, &slug, body, true).await?;
    let patch = ServiceAccountPatch {
        name: b.name.map(DisplayName::into_string),
        description: b.description.map(|d| d.map(|d| d.0)),
        roles: b.roles.map(|r| r.0),
        status: b.status.map(|s| s.0),
        rotation: b.rotation_policy.map(Into::into),
    };
    reply(
        s.svc
            .update_service_account(&ctx, &slug, account_id(&id)?, patch, v)
            .await,
    )
}

/// Soft delete: every key is revoked and the client secret dropped.
#[utoipa::path(delete, path = "/v1/orgs/{slug}/service-accounts/{id}", tag = "machine", security(("bearer" = [])), params(IfMatch), responses(
    (status = 204, description = "deleted"), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn delete_account(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
    IfMatch(v): IfMatch,
) -> ApiResult<()> {
    reply(
        s.svc
            .delete_service_account(&ctx, &slug(&raw)?, account_id(&id)?, v)
            .await,
    )
}

/// Issue an OAuth2 client secret (shown once); the previous one stops working.
#[utoipa::path(post, path = "/v1/orgs/{slug}/service-accounts/{id}/client-secret", tag = "machine", security(("bearer" = [])), responses(
    (status = 201, body = ClientSecretView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn issue_client_secret(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<ClientSecretView> {
    reply(
        s.svc
            .issue_client_secret(&ctx, &slug(&raw)?, account_id(&id)?)
            .await,
    )
}

/// Create an API key; the response is the only time its secret is shown.
#[utoipa::path(post, path = "/v1/orgs/{slug}/service-accounts/{id}/api-keys", tag = "machine", security(("bearer" = [])), request_body = CreateApiKeyBody,
    responses(
    (status = 201, body = NewApiKeyView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn create_key(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
    ApiJson(b): ApiJson<CreateApiKeyBody>,
) -> ApiResult<NewApiKeyView> {
    let req = NewApiKey {
        name: b.name.into_string(),
        scopes: b.scopes.0,
        expires_in_days: b.expires_in_days.map(|d| d.0),
    };
    reply(
        s.svc
            .create_api_key(&ctx, &slug(&raw)?, account_id(&id)?, req)
            .await,
    )
}

#[utoipa::path(get, path = "/v1/orgs/{slug}/service-accounts/{id}/api-keys", tag = "machine", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query)),
    responses((status = 200, body = ListBody<ApiKeyView>), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn list_keys(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
    mut q: Query,
) -> Result<Json<ListBody<ApiKeyView>>, ApiError> {
    let page = q.page("api_keys", is_uuid);
    q.finish()?;
    list(
        "api_keys",
        s.svc
            .list_api_keys(&ctx, &slug(&raw)?, account_id(&id)?, &page)
            .await,
    )
}

/// Keys of the org past their account's maximum key age (rotation policy), oldest first.
#[utoipa::path(get, path = "/v1/orgs/{slug}/api-keys/overdue", tag = "machine", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query)),
    responses((status = 200, body = ListBody<ApiKeyView>), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn list_overdue(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(raw): Path<String>,
    mut q: Query,
) -> Result<Json<ListBody<ApiKeyView>>, ApiError> {
    let page = q.page("overdue_keys", is_uuid);
    q.finish()?;
    list(
        "overdue_keys",
        s.svc.list_overdue_api_keys(&ctx, &slug(&raw)?, &page).await,
    )
}

#[utoipa::path(get, path = "/v1/orgs/{slug}/api-keys/{id}", tag = "machine", security(("bearer" = [])),
    responses((status = 200, body = ApiKeyView), (status = 404, body = Problem)))]
pub async fn get_key(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
) -> ApiResult<ApiKeyView> {
    reply(s.svc.get_api_key(&ctx, &slug(&raw)?, key_id(&id)?).await)
}

/// Revoke the key: it fails on every replica within a second.
#[utoipa::path(delete, path = "/v1/orgs/{slug}/api-keys/{id}", tag = "machine", security(("bearer" = [])), params(IfMatch), responses(
    (status = 204, description = "revoked"), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn revoke_key(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
    IfMatch(v): IfMatch,
) -> ApiResult<()> {
    reply(
        s.svc
            .revoke_api_key(&ctx, &slug(&raw)?, key_id(&id)?, v)
            .await,
    )
}

/// Replace the key with a new one (shown once); the old key works until the overlap ends.
#[utoipa::path(post, path = "/v1/orgs/{slug}/api-keys/{id}/rotate", tag = "machine", security(("bearer" = [])), request_body = RotateApiKeyBody, params(IfMatch), responses(
    (status = 201, body = NewApiKeyView), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn rotate_key(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
    IfMatch(v): IfMatch,
    OptionalJson(b): OptionalJson<RotateApiKeyBody>,
) -> ApiResult<NewApiKeyView> {
    reply(
        s.svc
            .rotate_api_key(
                &ctx,
                &slug(&raw)?,
                key_id(&id)?,
                b.overlap_seconds.map(|o| o.0),
                v,
            )
            .await,
    )
}

/// Lift the quarantine of a key whose request rate spiked: it works again on every replica
/// within a second, and its rate is measured afresh. 409 `conflict` (`key_not_quarantined`)
/// if it is not quarantined.
#[utoipa::path(post, path = "/v1/orgs/{slug}/api-keys/{id}/release", tag = "machine", security(("bearer" = [])), params(IfMatch), responses(
    (status = 200, body = ApiKeyView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn release_key(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path((raw, id)): Path<(String, String)>,
    IfMatch(v): IfMatch,
) -> ApiResult<ApiKeyView> {
    reply(
        s.svc
            .release_api_key(&ctx, &slug(&raw)?, key_id(&id)?, v)
            .await,
    )
}
