//! Taking usage in: each event counted once per org (by its `source_event_id`), its amount
//! added to the spend of the org, its service account and its member for the UTC day it
//! occurred on, and every budget it takes to `warn` or `blocked` recorded once per period.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use uos_audit::AuditAction;
use uos_authz::{Action, Capability, ResourceKind};
use uos_domain::budget::{day_number, MAX_LIMIT_CENTS};
use uos_domain::{
    ApiKeyId, BudgetKey, BudgetScope, BudgetState, Org, OrgId, ServiceAccountId, UserId,
};
use uos_store::{ReadTx, SpendDelta, UsageEvent};
use uuid::Uuid;

use super::book::BudgetStatus;
use super::manage::target_id;
use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::{UsageBatchView, UsageReceiptView};
use crate::orgs::cache::OrgRef;
use crate::{Ctx, Done, FieldError, Result, ServiceError, Services};

/// Most events one request may carry.
pub const MAX_USAGE_BATCH: usize = 1000;

/// The longest `source_event_id`.
pub const SOURCE_EVENT_ID_MAX_CHARS: usize = 255;

/// One usage event as reported.
#[derive(Clone, Debug)]
pub struct UsageReport {
    /// The org's slug or id.
    pub org: String,
    pub amount_cents: i64,
    pub occurred_at: DateTime<Utc>,
    pub source_event_id: String,
    pub service_account_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
}

/// A report checked against its org: who its spend counts for.
pub(super) struct Checked {
    index: usize,
    event: UsageEvent,
}

impl Services {
    /// Count usage events. Every event is checked before anything is counted; then each
    /// org's events commit together, in the order the orgs first appear. A retry after a
    /// failure counts nothing twice: events already counted are reported as duplicates.
    #[tracing::instrument(level = "debug", skip_all, fields(n = reports.len()), err(level = "debug"))]
    pub async fn record_usage(
        &self,
        ctx: &Ctx,
        reports: Vec<UsageReport>,
    ) -> Result<Done<UsageBatchView>> {
        self.ingest(ctx, reports, Some).await
    }

    /// Count one usage event (`POST /v1/usage`), as [`record_usage`](Self::record_usage).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn record_one_usage(
        &self,
        ctx: &Ctx,
        report: UsageReport,
    ) -> Result<Done<UsageReceiptView>> {
        self.ingest(ctx, vec![report], |mut view| view.items.pop())
            .await
    }

    /// The steps of both: `answer` shapes the response from the batch's receipts.
    async fn ingest<V: serde::Serialize + Clone>(
        &self,
        ctx: &Ctx,
        reports: Vec<UsageReport>,
        answer: impl Fn(UsageBatchView) -> Option<V>,
    ) -> Result<Done<V>> {
        if reports.is_empty() || reports.len() > MAX_USAGE_BATCH {
            return Err(ServiceError::field(
                "items",
                "invalid",
                format!("give 1 to {MAX_USAGE_BATCH} usage events"),
            ));
        }
        check_reports(&reports)?;
        let now = uos_domain::now();
        let groups = self.check_orgs(ctx, &reports, now).await?;
        let mut receipts: Vec<Option<UsageReceiptView>> = vec![None; reports.len()];
        let last = groups.len().saturating_sub(1);
        let mut done = None;
        for (i, (org, cap, checked)) in groups.into_iter().enumerate() {
            // The last org's commit stores the idempotent response: only then is it complete.
            let answered = self
                .count_in_org(ctx, &org, &cap, checked, &mut receipts, |receipts| {
                    (i == last).then(|| Done {
                        status: 202,
                        body: answer(batch_view(receipts)),
                        version: None,
                    })
                })
                .await?;
            done = answered.or(done);
        }
        done.ok_or_else(|| ServiceError::Internal("usage without an answer".into()))
    }

    /// Resolve and authorize every org the reports name, and check the accounts, keys and
    /// members they name belong to it. Grouped by org, in first-appearance order.
    async fn check_orgs(
        &self,
        ctx: &Ctx,
        reports: &[UsageReport],
        now: DateTime<Utc>,
    ) -> Result<Vec<(Org, Capability, Vec<Checked>)>> {
        let inner = &*self.inner;
        let mut r = inner.store.read().await?;
        let mut groups: Vec<(Org, Capability, Vec<Checked>)> = Vec::new();
        let mut by_ref: HashMap<&str, usize> = HashMap::new();
        let mut known = Known::default();
        for (index, rep) in reports.iter().enumerate() {
            let g = match by_ref.get(rep.org.as_str()) {
                Some(g) => *g,
                None => {
                    let org = org_by_ref(&mut *r, &rep.org).await?;
                    let cap = inner
                        .authorize_in_org(&mut *r, ctx, &org, Action::UsageRecord, |res| {
                            res.kind = ResourceKind::Budget;
                        })
                        .await?;
                    // The same org named by slug and by id is one group.
                    let g = match groups.iter().position(|(o, _, _)| o.id == org.id) {
                        Some(g) => g,
                        None => {
                            groups.push((org, cap, Vec::new()));
                            groups.len() - 1
                        }
                    };
                    by_ref.insert(rep.org.as_str(), g);
                    g
                }
            };
            let org_id = groups[g].0.id;
            let checked = check_refs(&mut *r, &mut known, org_id, index, rep, now).await?;
            groups[g].2.push(checked);
        }
        Ok(groups)
    }

    /// Count one org's events in one unit of work; fills their receipts. `answer` builds the
    /// response from the receipts so far when this commit completes the request.
    pub(super) async fn count_in_org<V: serde::Serialize>(
        &self,
        ctx: &Ctx,
        org: &Org,
        cap: &Capability,
        checked: Vec<Checked>,
        receipts: &mut [Option<UsageReceiptView>],
        answer: impl FnOnce(&[Option<UsageReceiptView>]) -> Option<Done<V>>,
    ) -> Result<Option<Done<V>>> {
        let inner = &*self.inner;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        uow.tx().confine_to_org(org.id).await?;
        // A source id repeated within the request counts once, at its first occurrence.
        let mut seen = HashSet::new();
        let firsts: Vec<UsageEvent> = checked
            .iter()
            .filter(|c| seen.insert(c.event.source_event_id.as_str()))
            .map(|c| c.event.clone())
            .collect();
        let recorded: HashSet<String> = uow
            .tx()
            .insert_usage(org.id, &firsts)
            .await?
            .into_iter()
            .collect();
        let mut counted = HashSet::new();
        let mut new_events = Vec::new();
        for c in &checked {
            let id = c.event.source_event_id.as_str();
            let is_new = recorded.contains(id) && counted.insert(id);
            if is_new {
                new_events.push(&c.event);
            }
            receipts[c.index] = Some(UsageReceiptView {
                source_event_id: id.to_owned(),
                org_id: org.id.0,
                duplicate: !is_new,
            });
        }
        let deltas = spend_deltas(&new_events);
        uow.tx().add_spend(&deltas).await?;
        let touched: BTreeSet<BudgetKey> = deltas.iter().map(|d| d.key).collect();
        self.note_state_changes(&mut uow, &new_events, &touched)
            .await?;
        let amount: i64 = new_events
            .iter()
            .map(|e| e.amount_cents)
            .fold(0, i64::saturating_add);
        uow.record(
            AuditAction::UsageRecorded,
            Some(org.id),
            org.id.to_string(),
            serde_json::Value::Null,
            serde_json::json!({
                "recorded": new_events.len(),
                "duplicates": checked.len() - new_events.len(),
                "amount_cents": amount,
            }),
        )
        .await?;
        let done = answer(receipts);
        match &done {
            Some(done) => uow.commit(cap, done).await?,
            None => uow.commit_unanswered(cap).await?,
        }
        inner.budgets.forget(touched);
        Ok(done)
    }

    /// Record, once per budget, period and state, each budget the new events took to `warn`
    /// or `blocked`, with its audit event.
    async fn note_state_changes(
        &self,
        uow: &mut UnitOfWork<'_>,
        events: &[&UsageEvent],
        touched: &BTreeSet<BudgetKey>,
    ) -> Result<()> {
        if touched.is_empty() {
            return Ok(());
        }
        let keys: Vec<BudgetKey> = touched.iter().copied().collect();
        let budgets = uow.tx().get_budgets(&keys).await?;
        let now = uos_domain::now();
        for budget in budgets {
            // Each period the new events fell in, once.
            let mut periods = BTreeMap::new();
            for e in events.iter().filter(|e| counts_for(e, &budget.key)) {
                periods
                    .entry(budget.period.bounds(e.occurred_at).0)
                    .or_insert(e.occurred_at);
            }
            for at in periods.into_values() {
                let status = BudgetStatus::read(uow.tx(), budget.clone(), at).await?;
                let state = status.state();
                if state == BudgetState::Ok
                    || !uow
                        .tx()
                        .mark_budget_state(&budget.key, status.period_start, state, now)
                        .await?
                {
                    continue;
                }
                let change = serde_json::json!({
                    "state": state.as_str(),
                    "period_start": status.period_start,
                    "spent_cents": status.spent_cents,
                    "effective_limit_cents": status.effective_limit_cents,
                });
                uow.record(
                    AuditAction::BudgetStateChanged,
                    Some(budget.key.org_id),
                    target_id(&budget.key),
                    serde_json::Value::Null,
                    change.clone(),
                )
                .await?;
                let mut data = serde_json::json!({"budget": status.view()});
                data["state"] = change["state"].clone();
                crate::notify::enqueue(
                    &self.inner,
                    uow,
                    Some(budget.key.org_id),
                    "budget.state_changed",
                    data,
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// Check that the accounts, keys and members `rep` names belong to org `org_id`: the event as
/// it will be counted (its service account filled in from its API key), or why not.
pub(super) async fn check_refs(
    r: &mut dyn ReadTx,
    known: &mut Known,
    org_id: OrgId,
    index: usize,
    rep: &UsageReport,
    now: DateTime<Utc>,
) -> Result<Checked> {
    // A reference the org does not have is not found, as a path naming it would be.
    let mut service_account_id = rep.service_account_id;
    if let Some(key) = rep.api_key_id {
        let owner = known
            .key_account(r, org_id, key)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if service_account_id.is_some_and(|sa| sa != owner) {
            return Err(ServiceError::conflict(
                "api_key_mismatch",
                format!("the API key of item {index} belongs to another service account"),
            ));
        }
        service_account_id = Some(owner);
    }
    if let Some(sa) = rep.service_account_id {
        if !known.account(r, org_id, sa).await? {
            return Err(ServiceError::NotFound);
        }
    }
    if let Some(user) = rep.user_id {
        if !known.member(r, org_id, user).await? {
            return Err(ServiceError::NotFound);
        }
    }
    Ok(Checked {
        index,
        event: UsageEvent {
            org_id,
            source_event_id: rep.source_event_id.clone(),
            amount_cents: rep.amount_cents,
            occurred_at: rep.occurred_at,
            recorded_at: now,
            service_account_id,
            user_id: rep.user_id.map(UserId),
            api_key_id: rep.api_key_id,
        },
    })
}

/// The checks that need nothing but the reports, every failure named.
pub(super) fn check_reports(reports: &[UsageReport]) -> Result<()> {
    let mut bad = Vec::new();
    for (i, rep) in reports.iter().enumerate() {
        let field = |name: &str| item_field(reports.len(), i, name);
        if !(0..=MAX_LIMIT_CENTS).contains(&rep.amount_cents) {
            bad.push(FieldError::new(
                field("amount_cents"),
                "invalid",
                format!("must be between 0 and {MAX_LIMIT_CENTS}"),
            ));
        }
        let id = &rep.source_event_id;
        if id.is_empty()
            || id.chars().count() > SOURCE_EVENT_ID_MAX_CHARS
            || id.chars().any(char::is_control)
        {
            bad.push(FieldError::new(
                field("source_event_id"),
                "invalid",
                format!("1 to {SOURCE_EVENT_ID_MAX_CHARS} characters, no control characters"),
            ));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Validation(bad))
    }
}

/// The name of a field of the `index`th report: `items[3].amount_cents` in a batch, the bare
/// name for a single report.
fn item_field(len: usize, index: usize, name: &str) -> String {
    if len == 1 {
        name.to_owned()
    } else {
        format!("items[{index}].{name}")
    }
}

/// An org by its slug or its id; not found either way when absent.
pub(crate) async fn org_by_ref(tx: &mut dyn ReadTx, raw: &str) -> Result<Org> {
    let org = match OrgRef::parse(raw) {
        OrgRef::Id(id) => tx.get_org(id).await?,
        OrgRef::Slug(slug) => tx.get_org_by_slug(&slug).await?,
        OrgRef::Invalid => None,
    };
    org.ok_or(ServiceError::NotFound)
}

/// The spend events add, summed by scope and day.
fn spend_deltas(events: &[&UsageEvent]) -> Vec<SpendDelta> {
    let mut sums: BTreeMap<(BudgetKey, i64), i64> = BTreeMap::new();
    for e in events {
        let day = day_number(e.occurred_at);
        for key in scopes_of(e) {
            let sum = sums.entry((key, day)).or_default();
            *sum = sum.saturating_add(e.amount_cents);
        }
    }
    sums.into_iter()
        .map(|((key, day), cents)| SpendDelta { key, day, cents })
        .collect()
}

/// Every budget key an event's spend counts for: its org, its service account, its member.
fn scopes_of(e: &UsageEvent) -> impl Iterator<Item = BudgetKey> + '_ {
    let key = move |scope, scope_id| BudgetKey {
        org_id: e.org_id,
        scope,
        scope_id,
    };
    std::iter::once(key(BudgetScope::Org, e.org_id.0))
        .chain(
            e.service_account_id
                .map(|sa| key(BudgetScope::ServiceAccount, sa)),
        )
        .chain(e.user_id.map(|u| key(BudgetScope::Member, u.0)))
}

fn counts_for(e: &UsageEvent, key: &BudgetKey) -> bool {
    scopes_of(e).any(|k| k == *key)
}

fn batch_view(receipts: &[Option<UsageReceiptView>]) -> UsageBatchView {
    let items: Vec<UsageReceiptView> = receipts.iter().flatten().cloned().collect();
    let duplicates = items.iter().filter(|r| r.duplicate).count();
    UsageBatchView {
        recorded: items.len() - duplicates,
        duplicates,
        items,
    }
}

/// What this request already learned about the org's accounts, keys and members.
#[derive(Default)]
pub(super) struct Known {
    accounts: HashMap<(OrgId, Uuid), bool>,
    keys: HashMap<(OrgId, Uuid), Option<Uuid>>,
    members: HashMap<(OrgId, Uuid), bool>,
}

impl Known {
    async fn account(&mut self, tx: &mut dyn ReadTx, org: OrgId, id: Uuid) -> Result<bool> {
        if let Some(found) = self.accounts.get(&(org, id)) {
            return Ok(*found);
        }
        let found = crate::machine::service_accounts::live_account(tx, org, ServiceAccountId(id))
            .await?
            .is_some();
        self.accounts.insert((org, id), found);
        Ok(found)
    }

    /// The service account of the org's key `id`, if the org has that key.
    async fn key_account(
        &mut self,
        tx: &mut dyn ReadTx,
        org: OrgId,
        id: Uuid,
    ) -> Result<Option<Uuid>> {
        if let Some(found) = self.keys.get(&(org, id)) {
            return Ok(*found);
        }
        let found = tx
            .get_api_key(org, ApiKeyId(id))
            .await?
            .map(|k| k.service_account_id.0);
        self.keys.insert((org, id), found);
        Ok(found)
    }

    async fn member(&mut self, tx: &mut dyn ReadTx, org: OrgId, user: Uuid) -> Result<bool> {
        if let Some(found) = self.members.get(&(org, user)) {
            return Ok(*found);
        }
        let found = tx.get_membership(org, UserId(user)).await?.is_some();
        self.members.insert((org, user), found);
        Ok(found)
    }
}
