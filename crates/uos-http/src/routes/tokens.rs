//! Token services for downstream services: introspection and signing-key rotation.

use crate::extract::{read_body, ReqCtx};
use crate::problem::{ApiError, Problem};
use crate::reply::{reply, ApiResult};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::header;
use axum::Json;
use uos_service::views::{IntrospectionView, KeyRotationView};

/// The token to introspect, from an RFC 7662 form body (`token=…`) or a JSON body
/// (`{"token": "…"}`); `token_type_hint` is accepted and ignored, as the RFC allows.
fn token_of(content_type: &str, body: &[u8]) -> Result<String, ApiError> {
    let missing = || ApiError::field("token", "required", "give the token to introspect");
    let token = if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map_err(|_| ApiError::field("body", "invalid_form", "the form body is malformed"))?
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    } else {
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| ApiError::field("body", "invalid_json", "the body is not JSON"))?;
        match v.get("token") {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(ApiError::field(
                    "token",
                    "invalid_type",
                    "token must be a string",
                ))
            }
        }
    };
    let token = token.ok_or_else(missing)?;
    if token.is_empty() || token.chars().count() > 4096 {
        return Err(ApiError::field(
            "token",
            "invalid",
            "token must be 1 to 4096 characters",
        ));
    }
    Ok(token)
}

/// What introspection reads from either body; other fields (`token_type_hint`) are ignored,
/// as RFC 7662 allows.
#[derive(Debug, utoipa::ToSchema)]
pub struct IntrospectBody {
    /// An access token or API key.
    #[schema(min_length = 1, max_length = 4096)]
    pub token: String,
}

/// RFC 7662 introspection of an access token or API key, for services that take our tokens.
/// The caller authenticates; an invalid, expired or revoked token is `{"active": false}`.
#[utoipa::path(post, path = "/v1/auth/introspect", tag = "auth", security(("bearer" = [])),
    request_body(content(
        (IntrospectBody = "application/json"),
        (IntrospectBody = "application/x-www-form-urlencoded"),
    ), description = "`token=…` (form) or `{\"token\": \"…\"}`; any other media type is read as JSON"),
    responses((status = 200, body = IntrospectionView), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn introspect(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    req: Request,
) -> Result<Json<IntrospectionView>, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let body = read_body(req).await?;
    let token = token_of(&content_type, &body)?;
    Ok(Json(s.svc.introspect(&ctx, &token).await?))
}

/// Make a new access-token signing key current (platform admins). The previous key stays in
/// the JWKS so tokens it signed keep working until they expire.
#[utoipa::path(post, path = "/v1/keys/rotate", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = KeyRotationView), (status = 403, body = Problem)))]
pub async fn rotate(State(s): State<AppState>, ReqCtx(ctx): ReqCtx) -> ApiResult<KeyRotationView> {
    reply(s.svc.rotate_token_key(&ctx).await)
}
