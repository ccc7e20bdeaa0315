//! Webhook deliveries: the notification outbox and its log.

use crate::rows::{get, overfetch, uuid_cursor};
use crate::sql::{query, QueryBuilder, Row};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_domain::OrgId;
use uos_store::{
    AttemptOutcome, Page, PageRequest, Result, WebhookDelivery, WebhookReads, WebhookRepo,
};

const COLS: &str = "delivery_id, org_id, event_type, url, payload, created_at, state, attempts, \
     next_attempt_at, last_status, last_error, delivered_at";

fn delivery<D: Dialect>(r: &Row<D>) -> Result<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: get(r, "delivery_id")?,
        org_id: get::<_, Option<uuid::Uuid>>(r, "org_id")?.map(OrgId),
        event_type: get(r, "event_type")?,
        url: get(r, "url")?,
        payload: get(r, "payload")?,
        created_at: get(r, "created_at")?,
        state: get(r, "state")?,
        attempts: get(r, "attempts")?,
        next_attempt_at: get(r, "next_attempt_at")?,
        last_status: get(r, "last_status")?,
        last_error: get(r, "last_error")?,
        delivered_at: get(r, "delivered_at")?,
    })
}

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> WebhookReads for SqlTx<D, M> {
    async fn list_webhook_deliveries(
        &mut self,
        org: Option<OrgId>,
        page: &PageRequest,
    ) -> Result<Page<WebhookDelivery>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q =
            QueryBuilder::<D>::new(format!("select {COLS} from webhook_delivery where true"));
        if let Some(org) = org {
            q.push(" and org_id = ").push_bind(org.0);
        }
        if let Some(after) = after {
            q.push(" and delivery_id > ").push_bind(after);
        }
        q.push(" order by delivery_id limit ")
            .push_bind(overfetch(page.limit));
        let items = q
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(delivery)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.limit, |d| {
            d.id.to_string()
        }))
    }
}

#[async_trait]
impl<D: Dialect> WebhookRepo for SqlTx<D> {
    async fn insert_webhook_deliveries(&mut self, deliveries: &[WebhookDelivery]) -> Result<()> {
        let sql = format!(
            "insert into webhook_delivery ({COLS}) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        for d in deliveries {
            query::<D>(&sql)
                .bind(d.id)
                .bind(d.org_id.map(|o| o.0))
                .bind(d.event_type.as_str())
                .bind(d.url.as_str())
                .bind(d.payload.as_str())
                .bind(d.created_at)
                .bind(d.state.as_str())
                .bind(d.attempts)
                .bind(d.next_attempt_at)
                .bind(d.last_status)
                .bind(d.last_error.as_deref())
                .bind(d.delivered_at)
                .execute(self.conn())
                .await?;
        }
        Ok(())
    }

    async fn claim_webhook_deliveries(
        &mut self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>> {
        // One statement: the due rows are picked (skipping rows another worker is claiming,
        // on PostgreSQL) and moved past the lease together.
        let mut q = QueryBuilder::<D>::new("update webhook_delivery set next_attempt_at = ");
        q.push_bind(lease_until)
            .push(
                " where delivery_id in (select delivery_id from webhook_delivery \
                 where state = 'pending' and next_attempt_at <= ",
            )
            .push_bind(now)
            .push(" order by next_attempt_at, delivery_id limit ")
            .push_bind(i64::from(limit))
            .push(D::lock_rows_skip_locked("webhook_delivery"))
            .push(format!(") returning {COLS}"));
        let mut claimed = q
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(delivery)
            .collect::<Result<Vec<_>>>()?;
        // RETURNING has no order of its own.
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    }

    async fn record_webhook_attempt(
        &mut self,
        id: uuid::Uuid,
        outcome: &AttemptOutcome,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let (state, status, error, next, delivered_at) = match outcome {
            AttemptOutcome::Delivered { status } => {
                ("delivered", Some(*status), None, at, Some(at))
            }
            AttemptOutcome::Failed {
                status,
                error,
                retry_at,
            } => (
                if retry_at.is_some() {
                    "pending"
                } else {
                    "failed"
                },
                *status,
                Some(error.as_str()),
                retry_at.unwrap_or(at),
                None,
            ),
        };
        query::<D>(
            "update webhook_delivery set state = $2, attempts = attempts + 1, \
             last_status = $3, last_error = $4, next_attempt_at = $5, delivered_at = $6 \
             where delivery_id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(status)
        .bind(error)
        .bind(next)
        .bind(delivered_at)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
