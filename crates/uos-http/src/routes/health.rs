//! Liveness, readiness, metrics, OpenAPI, the error pages and the JWKS.

use crate::error_code::ErrorCode;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use std::time::Duration;

/// The process runs.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// The store answers within a second.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready: `{\"status\": \"ready\", \"checks\": {…}}`", body = Object),
    (status = 503, description = "a dependency is down: the same report, `\"status\": \"unavailable\"`", body = Object)))]
pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let store = s.svc.store();
    let shared = s.svc.shared();
    let (store_ok, shared_ok) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(1), store.ping()),
        tokio::time::timeout(Duration::from_secs(1), shared.ping()),
    );
    let store_ok = matches!(store_ok, Ok(Ok(())));
    let shared_ok = matches!(shared_ok, Ok(Ok(())));
    let ok = store_ok && shared_ok;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({"status": if ok { "ready" } else { "unavailable" }, "checks": {
        "store": {"backend": store.backend(), "ok": store_ok},
        "shared": {"backend": shared.backend(), "ok": shared_ok},
    }});
    (status, Json(body))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus metrics", content_type = "text/plain")))]
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let text = s.metrics.render(&s);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI document")))]
pub async fn openapi(State(s): State<AppState>) -> impl IntoResponse {
    Json(crate::openapi::document_limited(s.rate_limits.operations()))
}

/// The page a problem `type` URI names: what the error code means and when it is answered.
#[utoipa::path(get, path = "/errors/{code}", tag = "health",
    params(("code" = String, Path, description = "an error `code`, as in a problem body")),
    responses(
        (status = 200, description = "the code's entry", content_type = "text/html"),
        (status = 404, body = Problem, description = "no such code")))]
pub async fn error_page(Path(code): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let code = ErrorCode::from_code(&code).ok_or_else(ApiError::route_not_found)?;
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        code.page(),
    ))
}

/// Public keys of access tokens (JWK Set).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JWK Set")))]
pub async fn jwks(State(s): State<AppState>) -> impl IntoResponse {
    Json(s.svc.jwks())
}
