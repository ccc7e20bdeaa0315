//! The caller's own account.

use crate::extract::{AnyJson, ApiJson, IfMatch, ReqCtx};
use crate::json_body;
use crate::problem::Problem;
use crate::reply::{reply, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use uos_domain::{DisplayName, Locale, Timezone};
use uos_service::views::{MeView, UserView};
use uos_service::ProfilePatch;

json_body! {
    /// Profile fields; absent fields stay unchanged.
    pub struct ProfileBody {
        #[schema(value_type = Option<String>)]
        opt display_name: Option<DisplayName>,
        #[schema(value_type = Option<String>, example = "de-CH")]
        opt locale: Option<Locale>,
        #[schema(value_type = Option<String>, example = "Europe/Zurich")]
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
        #[schema(value_type = String, format = "password")]
        req new_password: String,
    }
}

/// The caller's profile and org memberships.
#[utoipa::path(get, path = "/v1/me", tag = "me", security(("bearer" = [])), responses((status = 200, body = MeView), (status = 401, body = Problem)))]
pub async fn get_me(State(s): State<AppState>, ReqCtx(ctx): ReqCtx) -> ApiResult<MeView> {
    reply(s.svc.get_me(&ctx).await)
}

/// Update the caller's profile.
#[utoipa::path(patch, path = "/v1/me", tag = "me", security(("bearer" = [])), request_body = ProfileBody, responses(
    (status = 200, body = UserView), (status = 400, body = Problem), (status = 412, body = Problem)))]
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
#[utoipa::path(put, path = "/v1/me/preferences", tag = "me", security(("bearer" = [])), request_body = Object, responses(
    (status = 200, body = Object), (status = 400, body = Problem), (status = 412, body = Problem)))]
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
