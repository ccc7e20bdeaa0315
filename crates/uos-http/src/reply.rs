//! Success responses: status from the use case, `ETag` from the entity version, JSON body;
//! list bodies with opaque page tokens.

use crate::extract::encode_page_token;
use crate::problem::ApiError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use uos_service::Done;
use uos_store::Page;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct Reply<V>(pub Done<V>);

pub type ApiResult<V> = Result<Reply<V>, ApiError>;

pub fn reply<V>(r: uos_service::Result<Done<V>>) -> ApiResult<V> {
    r.map(Reply).map_err(ApiError::from)
}

impl<V: Serialize> IntoResponse for Reply<V> {
    fn into_response(self) -> Response {
        let Done {
            status,
            body,
            version,
        } = self.0;
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let mut res = match body {
            Some(b) => (status, Json(b)).into_response(),
            None => status.into_response(),
        };
        if let Some(v) = version.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
            res.headers_mut().insert(header::ETAG, v);
        }
        res
    }
}

/// `{"items": [...], "next_page_token": "…" | null}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ListBody<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

pub fn list<T>(
    kind: &str,
    page: uos_service::Result<Page<T>>,
) -> Result<Json<ListBody<T>>, ApiError> {
    let page = page.map_err(ApiError::from)?;
    Ok(Json(ListBody {
        items: page.items,
        next_page_token: page.next.map(|c| encode_page_token(kind, &c)),
    }))
}
