//! Webhook notifications: written in the unit of work of the change they announce (so a
//! committed change is notified and a rolled-back one never is), then sent by a worker with
//! retries and exponential backoff. Every delivery and attempt is kept: the delivery log.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use uos_authz::{Action, Resource};
use uos_domain::OrgId;
use uos_store::{AttemptOutcome, Page, PageRequest, WebhookDelivery};
use uos_webhooks::{Delivery, WebhookError, WebhookTransport};

use crate::budgets::usage::org_by_ref;
use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::WebhookDeliveryView;
use crate::{Ctx, Inner, Result, Services};

/// Where notifications go, and how hard to try.
#[derive(Clone, Debug)]
pub struct Webhooks {
    pub transport: Arc<dyn WebhookTransport>,
    /// Every event goes to each of these.
    pub urls: Vec<String>,
    /// Attempts per delivery before it is given up as `failed`.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles with each further one, to at most
    /// an hour.
    pub retry_base: StdDuration,
}

/// Deliveries one worker round claims.
const CLAIM_BATCH: u32 = 50;

/// How long a claimed delivery is left alone by other workers: longer than an attempt's
/// timeout, so it is only taken again if this worker died.
const CLAIM_LEASE_SECS: i64 = 60;

/// The longest wait between attempts.
const MAX_BACKOFF: StdDuration = StdDuration::from_secs(3600);

/// Queue `event_type` with `data` for every configured endpoint, inside `uow`. Without
/// webhooks configured, nothing is written.
pub(crate) async fn enqueue(
    inner: &Inner,
    uow: &mut UnitOfWork<'_>,
    org: Option<OrgId>,
    event_type: &str,
    data: serde_json::Value,
) -> Result<()> {
    let Some(hooks) = &inner.webhooks else {
        return Ok(());
    };
    let now = uos_domain::now();
    let event_id = uuid::Uuid::now_v7();
    let payload = serde_json::json!({
        "id": event_id,
        "type": event_type,
        "occurred_at": now,
        "org_id": org.map(|o| o.0),
        "data": data,
    })
    .to_string();
    let deliveries: Vec<WebhookDelivery> = hooks
        .urls
        .iter()
        .map(|url| WebhookDelivery {
            id: uuid::Uuid::now_v7(),
            org_id: org,
            event_type: event_type.to_owned(),
            url: url.clone(),
            payload: payload.clone(),
            created_at: now,
            state: "pending".to_owned(),
            attempts: 0,
            next_attempt_at: now,
            last_status: None,
            last_error: None,
            delivered_at: None,
        })
        .collect();
    uow.tx().insert_webhook_deliveries(&deliveries).await?;
    inner.webhook_due.notify_one();
    Ok(())
}

/// When to try again after `attempts` failed attempts, or `None` to give up.
fn retry_at(hooks: &Webhooks, attempts: i64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if attempts >= i64::from(hooks.max_attempts) {
        return None;
    }
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let wait = hooks
        .retry_base
        .saturating_mul(2u32.pow(exp))
        .min(MAX_BACKOFF);
    Some(now + Duration::from_std(wait).unwrap_or(Duration::hours(1)))
}

impl Services {
    /// Start the delivery worker when webhooks are configured: it wakes when a delivery is
    /// queued on this replica and every second for retries and other replicas' deliveries.
    pub(crate) fn spawn_webhook_worker(&self) {
        if self.inner.webhooks.is_none() {
            return;
        }
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                let woken = svc.inner.webhook_due.notified();
                match svc.send_due_webhooks().await {
                    // A full batch: more may be due at once.
                    Ok(n) if n >= CLAIM_BATCH as usize => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "webhook deliveries failed; retrying"),
                }
                let _ = tokio::time::timeout(StdDuration::from_secs(1), woken).await;
            }
        });
    }

    /// Send the deliveries that are due (one claimed batch); how many were attempted.
    pub async fn send_due_webhooks(&self) -> Result<usize> {
        let inner = &*self.inner;
        let Some(hooks) = &inner.webhooks else {
            return Ok(0);
        };
        let now = uos_domain::now();
        let mut tx = inner.store.begin().await?;
        let claimed = tx
            .claim_webhook_deliveries(now, now + Duration::seconds(CLAIM_LEASE_SECS), CLAIM_BATCH)
            .await?;
        tx.commit().await?;
        for d in &claimed {
            let sent = hooks
                .transport
                .send(&Delivery {
                    url: &d.url,
                    id: &d.id.to_string(),
                    event_type: &d.event_type,
                    body: d.payload.as_bytes(),
                    timestamp: uos_domain::now().timestamp(),
                })
                .await;
            let at = uos_domain::now();
            let outcome = match sent {
                Ok(status) => AttemptOutcome::Delivered {
                    status: i64::from(status),
                },
                Err(e) => {
                    tracing::info!(delivery = %d.id, event = %d.event_type, error = %e, "webhook attempt failed");
                    AttemptOutcome::Failed {
                        status: match e {
                            WebhookError::Status(s) => Some(i64::from(s)),
                            WebhookError::Transport(_) => None,
                        },
                        error: e.to_string(),
                        retry_at: retry_at(hooks, d.attempts + 1, at),
                    }
                }
            };
            let mut tx = inner.store.begin().await?;
            tx.record_webhook_attempt(d.id, &outcome, at).await?;
            tx.commit().await?;
        }
        Ok(claimed.len())
    }

    /// The delivery log (platform admins): every delivery with its state, attempts and last
    /// outcome, in creation order; of one org when `org` (its slug or id) is given.
    pub async fn list_webhook_deliveries(
        &self,
        ctx: &Ctx,
        org: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<WebhookDeliveryView>> {
        let inner = &*self.inner;
        let _cap = inner.authorize(ctx, Action::WebhookList, Resource::default())?;
        let mut r = inner.store.read().await?;
        let org_id = match org {
            Some(raw) => Some(org_by_ref(&mut *r, raw).await?.id),
            None => None,
        };
        let page = r.list_webhook_deliveries(org_id, page).await?;
        Ok(Page {
            items: page.items.iter().map(WebhookDeliveryView::from).collect(),
            next: page.next,
        })
    }
}
