//! Declarative config (contract § Declarative config).

use crate::extract::ReqCtx;
use crate::problem::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;

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
