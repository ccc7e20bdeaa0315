//! The caller's own account.

use crate::extract::{AnyJson, ApiJson, IfMatch, ReqCtx};
use crate::json_body;
use crate::problem::ApiError;
use crate::problem::Problem;
use crate::reply::ListBody;
use crate::reply::{reply, ApiResult};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::Json;
use uos_domain::SessionId;
use uos_domain::{DisplayName, Locale, Timezone};
use uos_service::views::{MeView, SessionView, UserView};
use uos_service::ProfilePatch;

json_body! {
    /// Profile fields; absent fields stay unchanged.
    pub struct ProfileBody {
        #[schema(schema_with = crate::schemas::display_name_or_null)]
        opt display_name: Option<DisplayName>,
        #[schema(schema_with = crate::schemas::locale_or_null)]
        opt locale: Option<Locale>,
        #[schema(schema_with = crate::schemas::timezone_or_null)]
        opt timezone: Option<Timezone>,
    }
}

impl From<ProfileBody> for ProfilePatch {
    fn from(b: ProfileBody) -> Self {
        Self {
            display_name: b.display_name,
            locale: b.locale,
            timezone: b.timezone,
        }
    }
}

json_body! {
    /// Change the caller's password.
    pub struct PasswordBody {
        #[schema(value_type = String, format = "password")]
        req current_password: String,
        #[schema(schema_with = crate::schemas::new_password)]
        req new_password: String,
    }
}

/// The caller's profile and org memberships.
#[utoipa::path(get, path = "/v1/me", tag = "me", security(("bearer" = [])), responses((status = 200, body = MeView), (status = 401, body = Problem)))]
pub async fn get_me(State(s): State<AppState>, ReqCtx(ctx): ReqCtx) -> ApiResult<MeView> {
    reply(s.svc.get_me(&ctx).await)
}

/// Update the caller's profile.
#[utoipa::path(patch, path = "/v1/me", tag = "me", security(("bearer" = [])), request_body = ProfileBody, params(IfMatch), responses(
    (status = 200, body = UserView), (status = 400, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn patch_me(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    IfMatch(v): IfMatch,
    ApiJson(b): ApiJson<ProfileBody>,
) -> ApiResult<UserView> {
    reply(s.svc.update_me(&ctx, b.into(), v).await)
}

/// The caller's free-form preferences document.
#[utoipa::path(get, path = "/v1/me/preferences", tag = "me", security(("bearer" = [])), responses((status = 200, body = Object)))]
pub async fn get_preferences(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
) -> ApiResult<serde_json::Value> {
    reply(s.svc.get_preferences(&ctx).await)
}

/// Replace the preferences document (a JSON object, at most 16 KiB).
#[utoipa::path(put, path = "/v1/me/preferences", tag = "me", security(("bearer" = [])), request_body = Object, params(IfMatch), responses(
    (status = 200, body = Object), (status = 400, body = Problem), (status = 409, body = Problem), (status = 412, body = Problem)))]
pub async fn put_preferences(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    IfMatch(v): IfMatch,
    AnyJson(doc): AnyJson,
) -> ApiResult<serde_json::Value> {
    reply(s.svc.put_preferences(&ctx, doc, v).await)
}

/// Change the password; every session of the user ends.
#[utoipa::path(post, path = "/v1/me/password", tag = "me", security(("bearer" = [])), request_body = PasswordBody, responses(
    (status = 204, description = "changed"), (status = 400, body = Problem)))]
pub async fn change_password(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    ApiJson(b): ApiJson<PasswordBody>,
) -> ApiResult<()> {
    reply(
        s.svc
            .change_password(&ctx, b.current_password, b.new_password)
            .await,
    )
}

/// The caller's live sessions (devices), newest first.
#[utoipa::path(get, path = "/v1/me/sessions", tag = "me", security(("bearer" = [])), responses(
    (status = 200, body = ListBody<SessionView>), (status = 401, body = Problem)))]
pub async fn list_sessions(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
) -> Result<Json<ListBody<SessionView>>, ApiError> {
    let items = s.svc.list_sessions(&ctx).await?;
    // Live sessions are few and bounded, so one page holds them all.
    Ok(Json(ListBody {
        items,
        next_page_token: None,
    }))
}

/// Revoke one of the caller's sessions.
#[utoipa::path(delete, path = "/v1/me/sessions/{id}", tag = "me", security(("bearer" = [])), responses(
    (status = 204, description = "revoked"), (status = 404, body = Problem)))]
pub async fn revoke_session(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    Path(id): Path<String>,
) -> ApiResult<()> {
    let id = SessionId(super::uuid("id", &id)?);
    reply(s.svc.revoke_my_session(&ctx, id).await)
}

/// Revoke every session of the caller except the current one.
#[utoipa::path(delete, path = "/v1/me/sessions", tag = "me", security(("bearer" = [])), responses(
    (status = 204, description = "revoked"), (status = 401, body = Problem)))]
pub async fn revoke_other_sessions(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
) -> ApiResult<()> {
    reply(s.svc.revoke_other_sessions(&ctx).await)
}
