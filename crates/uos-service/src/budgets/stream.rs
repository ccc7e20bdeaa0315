//! Usage from the billing stream (`billing.usage`): each message is the body of
//! `POST /v1/usage`, checked as that is, and counted by the same code. Unlike a request, a
//! batch of messages is not all-or-nothing: a message that can never be counted is rejected
//! on its own (the consumer dead-letters it with the reason) and the rest are counted.
//!
//! The stream is a trusted internal source, so no caller is authorized: the service acts as
//! itself, with a capability confined to the org each message names.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uos_authz::Action;
use uos_domain::{Org, OrgId, OrgStatus};
use uos_events::{
    Outcome, SinkError, UsageConsumer, UsageSink, UsageStreamCounts, UsageStreamStats,
};
use uuid::Uuid;

use super::usage::{check_refs, check_reports, org_by_ref, Checked, Known, UsageReport};
use crate::kernel::lease::Lease;
use crate::{Ctx, Result, ServiceError, Services};

/// One message: exactly the fields of the `POST /v1/usage` body, none other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageMessage {
    org: String,
    amount_cents: i64,
    occurred_at: DateTime<Utc>,
    source_event_id: String,
    #[serde(default)]
    service_account_id: Option<Uuid>,
    #[serde(default)]
    user_id: Option<Uuid>,
    #[serde(default)]
    api_key_id: Option<Uuid>,
}

/// This replica's side of the stream: the consumer's figures once it runs, and the lease
/// that lets one replica at a time consume.
#[derive(Debug)]
pub(crate) struct StreamState {
    stats: OnceLock<Arc<UsageStreamStats>>,
    lease: Lease,
}

impl Default for StreamState {
    fn default() -> Self {
        Self {
            stats: OnceLock::new(),
            lease: Lease::new("usage-consumer"),
        }
    }
}

impl Services {
    /// Count a batch of stream messages (message values, in partition order). One outcome
    /// per message: counted, counted before, or rejected with the reason. An error means the
    /// store failed and nothing may be taken as counted (some orgs' events may have been:
    /// offered again, they come out as duplicates).
    #[tracing::instrument(level = "debug", skip_all, fields(n = payloads.len()), err(level = "debug"))]
    pub async fn record_usage_from_stream(&self, payloads: &[&[u8]]) -> Result<Vec<Outcome>> {
        let ctx = Ctx::system(format!("usage-stream:{}", Uuid::now_v7()));
        let now = uos_domain::now();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; payloads.len()];
        let groups = {
            let mut r = self.inner.store.read().await?;
            let mut known = Known::default();
            let mut orgs: HashMap<String, std::result::Result<Org, String>> = HashMap::new();
            let mut groups: Vec<(Org, Vec<Checked>)> = Vec::new();
            let mut confined: Option<OrgId> = None;
            for (index, payload) in payloads.iter().enumerate() {
                let rep = match parse(payload) {
                    Ok(rep) => rep,
                    Err(reason) => {
                        outcomes[index] = Some(Outcome::Rejected(reason));
                        continue;
                    }
                };
                let org = match orgs.get(&rep.org) {
                    Some(org) => org.clone(),
                    None => {
                        let org = usable_org(&mut *r, &rep.org).await?;
                        orgs.insert(rep.org.clone(), org.clone());
                        org
                    }
                };
                let org = match org {
                    Ok(org) => org,
                    Err(reason) => {
                        outcomes[index] = Some(Outcome::Rejected(reason));
                        continue;
                    }
                };
                // Reads of an org's rows are confined to it, as a request's are once authorized.
                if confined != Some(org.id) {
                    r.confine_to_org(org.id).await?;
                    confined = Some(org.id);
                }
                match check_refs(&mut *r, &mut known, org.id, index, &rep, now).await {
                    Ok(checked) => match groups.iter_mut().find(|(o, _)| o.id == org.id) {
                        Some((_, items)) => items.push(checked),
                        None => groups.push((org, vec![checked])),
                    },
                    Err(ServiceError::NotFound) => {
                        outcomes[index] = Some(Outcome::Rejected(format!(
                            "org {}: service_account_id, api_key_id or user_id names nothing \
                             in it",
                            rep.org
                        )));
                    }
                    Err(ServiceError::Conflict { detail, .. }) => {
                        outcomes[index] = Some(Outcome::Rejected(detail));
                    }
                    Err(e) => return Err(e),
                }
            }
            groups
        };
        for (org, checked) in groups {
            let cap = self
                .inner
                .authz
                .system_task_in_org(Action::UsageRecord, org.id.0);
            let mut receipts = vec![None; payloads.len()];
            self.count_in_org::<()>(&ctx, &org, &cap, checked, &mut receipts, |_| None)
                .await?;
            for (i, receipt) in receipts.into_iter().enumerate() {
                if let Some(receipt) = receipt {
                    outcomes[i] = Some(if receipt.duplicate {
                        Outcome::Duplicate
                    } else {
                        Outcome::Stored
                    });
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Rejected("not counted".into())))
            .collect())
    }

    /// Consume usage with `consumer` until the process ends, on the replica holding the
    /// consumer lease. Must be called once from within the runtime.
    pub fn spawn_usage_consumer(&self, consumer: UsageConsumer) {
        if self.inner.usage_stream.stats.set(consumer.stats()).is_err() {
            tracing::error!("a usage consumer runs already; not starting another");
            return;
        }
        let sink: Arc<dyn UsageSink> = Arc::new(StreamSink(self.clone()));
        tokio::spawn(consumer.run(sink));
    }

    /// The usage consumer's figures, or `None` when none runs.
    pub fn usage_stream_counts(&self) -> Option<UsageStreamCounts> {
        self.inner.usage_stream.stats.get().map(|s| s.counts())
    }
}

/// The service as the consumer's sink.
struct StreamSink(Services);

#[async_trait]
impl UsageSink for StreamSink {
    async fn take(&self, payloads: &[&[u8]]) -> std::result::Result<Vec<Outcome>, SinkError> {
        self.0
            .record_usage_from_stream(payloads)
            .await
            .map_err(|e| SinkError(e.to_string()))
    }

    async fn may_consume(&self) -> bool {
        let inner = &*self.0.inner;
        match inner.usage_stream.lease.hold(inner).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "usage consumer lease not renewed; pausing");
                false
            }
        }
    }
}

/// The message as a report, checked as the request body is; or why not.
fn parse(payload: &[u8]) -> std::result::Result<UsageReport, String> {
    let m: UsageMessage = serde_json::from_slice(payload)
        .map_err(|e| format!("not a usage event (the POST /v1/usage body): {e}"))?;
    let rep = UsageReport {
        org: m.org,
        amount_cents: m.amount_cents,
        occurred_at: m.occurred_at,
        source_event_id: m.source_event_id,
        service_account_id: m.service_account_id,
        user_id: m.user_id,
        api_key_id: m.api_key_id,
    };
    match check_reports(std::slice::from_ref(&rep)) {
        Ok(()) => Ok(rep),
        Err(ServiceError::Validation(fields)) => Err(fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; ")),
        Err(e) => Err(e.to_string()),
    }
}

/// The org a message names, if usage may be counted for it: it exists and is active (a
/// request could not record usage in a suspended or deleted org either).
async fn usable_org(
    r: &mut dyn uos_store::ReadTx,
    raw: &str,
) -> Result<std::result::Result<Org, String>> {
    match org_by_ref(r, raw).await {
        Ok(org) if org.status == OrgStatus::Active => Ok(Ok(org)),
        Ok(org) => Ok(Err(format!("org {raw} is {}", org.status.as_str()))),
        Err(ServiceError::NotFound) => Ok(Err(format!("org {raw} not found"))),
        Err(e) => Err(e),
    }
}
