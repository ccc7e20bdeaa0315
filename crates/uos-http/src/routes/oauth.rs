//! The OAuth2 endpoints for service accounts: the client-credentials token endpoint and token
//! revocation. They speak OAuth2, not the rest of the API's conventions: form-encoded bodies,
//! client authentication by HTTP Basic or in the body, and `{"error": …}` bodies (RFC 6749
//! §5.2) with `Cache-Control: no-store`.

use crate::extract::{read_body, ReqCtx};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::collections::HashMap;
use uos_service::views::OAuthTokenView;
use uos_service::{OAuthError, TokenRequest};

/// OAuth2 error body.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_scope`, `unsupported_grant_type`, …
    error: String,
    error_description: String,
}

fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

fn error_response(e: OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = OAuthErrorBody {
        error: e.error.into(),
        error_description: e.description,
    };
    let mut res = (status, axum::Json(body)).into_response();
    if e.basic_challenge {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"user-org-service\""),
        );
    }
    no_store(res)
}

/// `413` for a body over the size limit, in OAuth2's error shape (used by the outer layer
/// that refuses declared oversized bodies before they are read, and by the body reader).
pub(crate) fn body_too_large() -> Response {
    error_response(OAuthError {
        status: 413,
        error: "invalid_request",
        description: "the body is too large".into(),
        basic_challenge: false,
    })
}

/// Any method but POST on an OAuth2 endpoint: `405` with `Allow: POST`, in OAuth2's error
/// shape.
pub async fn method_not_allowed() -> Response {
    let mut res = error_response(OAuthError {
        status: 405,
        error: "invalid_request",
        description: "this endpoint only accepts POST".into(),
        basic_challenge: false,
    });
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    res
}

/// `client_id:client_secret` of an HTTP Basic header, each form-decoded as RFC 6749 §2.3.1
/// asks. `Err` for a Basic header that does not decode; `Ok(None)` without one.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ()> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| ())?;
    let Some((scheme, rest)) = v.split_once(' ') else {
        return Err(());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(());
    }
    let raw = STANDARD.decode(rest.trim()).map_err(|_| ())?;
    let text = String::from_utf8(raw).map_err(|_| ())?;
    let (id, secret) = text.split_once(':').ok_or(())?;
    Ok(Some((form_decode(id)?, form_decode(secret)?)))
}

/// One `application/x-www-form-urlencoded` value: `+` is a space, `%XX` a byte, the result
/// UTF-8. The value is decoded on its own: `&` and `=` in it are data, not separators.
fn form_decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let (hi, lo) = match bytes.get(i + 1..i + 3) {
                    Some(&[hi, lo]) => (hex_digit(hi)?, hex_digit(lo)?),
                    _ => return Err(()),
                };
                out.push(hi << 4 | lo);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ())
}

fn hex_digit(b: u8) -> Result<u8, ()> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(()),
    }
}

/// The request as the OAuth2 flow sees it: a form body whose fields each appear once.
async fn token_request(req: Request) -> Result<TokenRequest, OAuthError> {
    let basic = basic_credentials(req.headers()).map_err(|()| OAuthError {
        status: 401,
        error: "invalid_client",
        description: "the Authorization header is not HTTP Basic client authentication".into(),
        basic_challenge: true,
    })?;
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    let bytes = read_body(req).await.map_err(|_| OAuthError {
        status: 413,
        error: "invalid_request",
        description: "the body is too large".into(),
        basic_challenge: false,
    })?;
    let mut form = HashMap::new();
    let pairs = if is_form {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes).ok()
    } else {
        None
    };
    let mut valid = pairs.is_some();
    for (k, v) in pairs.unwrap_or_default() {
        // RFC 6749 §3.2: parameters must not be repeated.
        if form.insert(k, v).is_some() {
            valid = false;
        }
    }
    Ok(TokenRequest { basic, form, valid })
}

/// The token request's form (RFC 6749 §4.4.2, §2.3.1); unknown parameters are ignored.
#[derive(Debug, utoipa::ToSchema)]
pub struct TokenForm {
    pub grant_type: GrantType,
    /// Space-separated permissions; all the account may have when absent.
    pub scope: Option<String>,
    /// Without HTTP Basic client authentication.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// The one grant this endpoint serves; any other is `unsupported_grant_type`.
#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum GrantType {
    ClientCredentials,
}

/// The revocation request's form (RFC 7009 §2.1); unknown parameters are ignored.
#[derive(Debug, utoipa::ToSchema)]
pub struct RevokeForm {
    pub token: String,
    pub token_type_hint: Option<String>,
    /// Without HTTP Basic client authentication.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// Client-credentials grant (RFC 6749 §4.4): the service account authenticates with its client
/// secret (HTTP Basic or `client_id` + `client_secret` in the form) and gets a short-lived
/// access token for the requested `scope` (space-separated permissions; all it may have when
/// absent).
#[utoipa::path(post, path = "/oauth2/token", tag = "oauth2",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded",
        description = "`grant_type=client_credentials&scope=users:read` (+ `client_id`, `client_secret` without HTTP Basic)"),
    responses((status = 200, body = OAuthTokenView), (status = 400, body = OAuthErrorBody), (status = 401, body = OAuthErrorBody)))]
pub async fn token(State(s): State<AppState>, ReqCtx(ctx): ReqCtx, req: Request) -> Response {
    let req = match token_request(req).await {
        Ok(r) => r,
        Err(e) => return error_response(e),
    };
    match s.svc.client_credentials_grant(&ctx, &req).await {
        Ok(view) => no_store(axum::Json(view).into_response()),
        Err(e) => error_response(e),
    }
}

/// Token revocation (RFC 7009) of a client-credentials access token by its own client. Any
/// token the client may not revoke (unknown, expired, another client's) also answers 200.
#[utoipa::path(post, path = "/oauth2/revoke", tag = "oauth2",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded", description = "`token=…` (+ client authentication)"),
    responses((status = 200, description = "revoked, or nothing to revoke"), (status = 400, body = OAuthErrorBody), (status = 401, body = OAuthErrorBody)))]
pub async fn revoke(State(s): State<AppState>, ReqCtx(ctx): ReqCtx, req: Request) -> Response {
    let req = match token_request(req).await {
        Ok(r) => r,
        Err(e) => return error_response(e),
    };
    match s.svc.revoke_client_token(&ctx, &req).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => error_response(e),
    }
}
