//! `Idempotency-Key` claims: the first request with a key runs, a replay gets the stored
//! response, a different request with the same key is refused, a concurrent one waits its turn.

use crate::{Ctx, IdemTicket, Result, ServiceError, Services};
use chrono::Duration;
use uos_store::{IdemClaim, IdempotencyRecord};

#[derive(Debug)]
pub enum IdemOutcome {
    /// Run the request; its unit of work stores the response under this ticket.
    Proceed(IdemTicket),
    /// The key was used for this very request before: answer with what it answered.
    Replay {
        status: u16,
        body: serde_json::Value,
    },
}

impl Services {
    /// Claim `key` for this caller and request (identified by `request_hash`).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn claim_idempotency(
        &self,
        ctx: &Ctx,
        key: &str,
        request_hash: &str,
    ) -> Result<IdemOutcome> {
        let inner = &*self.inner;
        let now = uos_domain::now();
        let scope = ctx.idempotency_scope();
        let rec = IdempotencyRecord {
            scope: scope.clone(),
            key: key.to_string(),
            request_hash: request_hash.to_string(),
            status: None,
            response: None,
            created_at: now,
        };
        let mut tx = inner.store.begin().await?;
        let expired = now - Duration::hours(i64::from(inner.cfg.idempotency_ttl_hours));
        let claim = tx.claim_idempotency(&rec, expired).await?;
        let outcome = match claim {
            IdemClaim::Claimed => IdemOutcome::Proceed(IdemTicket {
                scope,
                key: key.to_string(),
            }),
            IdemClaim::Existing(prev) => {
                if !uos_authn::constant_time_eq(
                    prev.request_hash.as_bytes(),
                    request_hash.as_bytes(),
                ) {
                    return Err(ServiceError::IdempotencyReused);
                }
                match (prev.status, prev.response) {
                    (Some(status), Some(body)) => IdemOutcome::Replay { status, body },
                    _ if prev.created_at
                        < now - Duration::seconds(i64::from(inner.cfg.idempotency_stale_secs)) =>
                    {
                        // The first attempt died mid-flight; let this one take over.
                        tx.release_idempotency(&scope, key).await?;
                        tx.claim_idempotency(&rec, now).await?;
                        IdemOutcome::Proceed(IdemTicket {
                            scope,
                            key: key.to_string(),
                        })
                    }
                    _ => return Err(ServiceError::IdempotencyInFlight),
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// The request failed without a change: forget the claim so the client can retry.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn release_idempotency(&self, ticket: &IdemTicket) -> Result<()> {
        let mut tx = self.inner.store.begin().await?;
        tx.release_idempotency(&ticket.scope, &ticket.key).await?;
        tx.commit().await?;
        Ok(())
    }
}
