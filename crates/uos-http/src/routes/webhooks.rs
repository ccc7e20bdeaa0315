//! The webhook delivery log.

use crate::extract::{is_uuid, Query, ReqCtx};
use crate::problem::{ApiError, Problem};
use crate::reply::{list, ListBody};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use uos_service::views::WebhookDeliveryView;

/// Every webhook delivery with its state, attempts and last outcome, in creation order; of one
/// org with `org` (its slug or id). Platform admins only.
#[utoipa::path(get, path = "/v1/webhooks/deliveries", tag = "webhooks", security(("bearer" = [])), params(
    ("org" = Option<String>, Query, description = "an org's slug or id"),
    ("limit" = Option<u32>, Query), ("page_token" = Option<String>, Query)),
    responses((status = 200, body = ListBody<WebhookDeliveryView>), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn deliveries(
    State(s): State<AppState>,
    ReqCtx(ctx): ReqCtx,
    mut q: Query,
) -> Result<Json<ListBody<WebhookDeliveryView>>, ApiError> {
    let page = q.page("webhooks", is_uuid);
    // Any text: a slug or id no visible org has is simply not found.
    let org = q.parse("org", |s| Ok::<_, std::convert::Infallible>(s.to_owned()));
    q.finish()?;
    list(
        "webhooks",
        s.svc
            .list_webhook_deliveries(&ctx, org.as_deref(), &page)
            .await,
    )
}
