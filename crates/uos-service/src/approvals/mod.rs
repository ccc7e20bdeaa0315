//! The one approval mechanism (see `uos_domain::approval`): the steps every kind shares —
//! approve, reject, revoke — applied, stored and audited the same way. Each kind's module
//! authorizes its callers and says what the active grant does.

pub(crate) mod break_glass;
pub(crate) mod overrides;

use chrono::{DateTime, Utc};
use uos_audit::AuditAction;
use uos_authz::{Action, Capability};
use uos_domain::{Approval, ApprovalKind, ApprovalRefusal, ApprovalStatus, Approved, UserId};
use uos_store::StoreError;

use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::{ApprovalView, ApproverView, BudgetRefView};
use crate::{Ctx, Done, FieldError, GoneReason, Inner, Result, ServiceError, Services};

/// The longest reason a request may give.
pub const APPROVAL_REASON_MAX_CHARS: usize = 500;

/// The free-text reason of a request of any kind, checked.
pub(crate) fn check_reason(reason: &str, bad: &mut Vec<FieldError>) {
    let n = reason.trim().chars().count();
    if n == 0 || reason.chars().count() > APPROVAL_REASON_MAX_CHARS {
        bad.push(FieldError::new(
            "reason",
            "invalid",
            format!("must be 1 to {APPROVAL_REASON_MAX_CHARS} characters, not only spaces"),
        ));
    }
}

/// Attempts at a step when other approvers keep getting in first.
const STEP_ATTEMPTS: usize = 5;

/// What an approver does to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalStep {
    Approve,
    Reject,
    Revoke,
}

/// A step taken: the request after it.
pub(crate) struct Stepped {
    pub after: Approval,
    /// The grant became active with this step.
    pub activated: bool,
}

/// Take `step` on `current` (read in `uow`) as `me`, store it and audit it. When another
/// approver's step lands first, the request is read again and the step retried on what it
/// is now, so concurrent approvals are neither lost nor both counted as the last one.
pub(crate) async fn take_step(
    inner: &Inner,
    uow: &mut UnitOfWork<'_>,
    mut current: Approval,
    me: UserId,
    step: ApprovalStep,
    now: DateTime<Utc>,
) -> Result<Stepped> {
    for _ in 0..STEP_ATTEMPTS {
        let mut next = current.clone();
        let activated = match step {
            ApprovalStep::Approve => next.approve(me, now).map(|a| a == Approved::Activated),
            ApprovalStep::Reject => next.reject(me, now).map(|()| false),
            ApprovalStep::Revoke => next.revoke(me, now).map(|()| false),
        }
        .map_err(refused)?;
        match uow.tx().update_approval(&next, current.version).await {
            Ok(()) => {
                let action = match step {
                    ApprovalStep::Approve => AuditAction::ApprovalApproved,
                    ApprovalStep::Reject => AuditAction::ApprovalRejected,
                    ApprovalStep::Revoke => AuditAction::ApprovalRevoked,
                };
                uow.record(
                    action,
                    next.org_id,
                    next.id.to_string(),
                    audit_snapshot(&current, now),
                    audit_snapshot(&next, now),
                )
                .await?;
                notify(inner, uow, &next, step_event(step), now).await?;
                return Ok(Stepped {
                    after: next,
                    activated,
                });
            }
            Err(StoreError::VersionConflict) => {
                current = uow
                    .tx()
                    .get_approval(current.id)
                    .await?
                    .ok_or(ServiceError::NotFound)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ServiceError::conflict(
        "approval_busy",
        "other approvers kept changing the request; try again",
    ))
}

/// Lapsed approvals one sweep round takes.
const EXPIRY_BATCH: u32 = 100;
/// How often a replica looks for requests and grants that ran out, to record their expiry.
const EXPIRY_SWEEP: std::time::Duration = std::time::Duration::from_secs(60);

impl Services {
    /// Store and audit the expiry of every request and grant that ran out (`approval.expired`,
    /// notified as `<kind>.expired`). Their status already reads `expired` before this runs;
    /// this records when it was seen. Replicas may sweep at once: each expiry is recorded by
    /// exactly one of them. Returns how many this call recorded.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn expire_lapsed_approvals(&self) -> Result<usize> {
        let inner = &*self.inner;
        let ctx = Ctx::system(uuid::Uuid::now_v7().to_string());
        let mut recorded = 0;
        loop {
            let now = uos_domain::now();
            let lapsed = inner
                .store
                .read()
                .await?
                .lapsed_approvals(now, EXPIRY_BATCH)
                .await?;
            let full = lapsed.len() == EXPIRY_BATCH as usize;
            for current in lapsed {
                let mut next = current.clone();
                if !next.expire(now) {
                    continue;
                }
                let action = deciding_action(next.kind);
                let cap = match next.org_id {
                    Some(org) => inner.authz.system_task_in_org(action, org.0),
                    None => inner.authz.system_task(action),
                };
                let mut uow = UnitOfWork::begin(inner, &ctx).await?;
                match uow.tx().update_approval(&next, current.version).await {
                    Ok(()) => {}
                    // Another replica recorded it, or a step got in first: theirs stands.
                    Err(StoreError::VersionConflict) => continue,
                    Err(e) => return Err(e.into()),
                }
                uow.record(
                    AuditAction::ApprovalExpired,
                    next.org_id,
                    next.id.to_string(),
                    audit_snapshot(&current, now),
                    audit_snapshot(&next, now),
                )
                .await?;
                notify(inner, &mut uow, &next, "expired", now).await?;
                uow.commit_unanswered(&cap).await?;
                recorded += 1;
            }
            if !full {
                return Ok(recorded);
            }
        }
    }

    pub(crate) fn spawn_expiry_sweep(&self) {
        let svc = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPIRY_SWEEP);
            loop {
                tick.tick().await;
                if let Err(e) = svc.expire_lapsed_approvals().await {
                    tracing::warn!(error = %e, "approval expiry sweep failed; retrying");
                }
            }
        });
    }
}

/// The action whose holders decide on requests of `kind`: what the sweep acts as.
fn deciding_action(kind: ApprovalKind) -> Action {
    match kind {
        ApprovalKind::BudgetOverride => Action::BudgetOverrideRevoke,
        ApprovalKind::BreakGlass => Action::BreakGlassRevoke,
        ApprovalKind::PasswordReset => Action::PasswordResetApprove,
    }
}

/// How long a budget override or break-glass request may wait for its approvers.
pub(crate) fn approval_window(inner: &Inner) -> chrono::Duration {
    chrono::Duration::hours(i64::try_from(inner.cfg.approval_ttl_hours).unwrap_or(24))
}

/// File `a` and commit: the answer to a request for approval (201 with the request).
pub(crate) async fn answer_request(
    inner: &Inner,
    mut uow: UnitOfWork<'_>,
    cap: &Capability,
    a: &Approval,
) -> Result<Done<ApprovalView>> {
    file_request(inner, &mut uow, a).await?;
    let done = Done::created(view(a, a.created_at), Some(a.version));
    uow.commit(cap, &done).await?;
    Ok(done)
}

/// Store a new request and audit it.
pub(crate) async fn file_request(
    inner: &Inner,
    uow: &mut UnitOfWork<'_>,
    a: &Approval,
) -> Result<()> {
    uow.tx().insert_approval(a).await?;
    uow.record(
        AuditAction::ApprovalRequested,
        a.org_id,
        a.id.to_string(),
        serde_json::Value::Null,
        audit_snapshot(a, a.created_at),
    )
    .await?;
    notify(inner, uow, a, "requested", a.created_at).await
}

fn step_event(step: ApprovalStep) -> &'static str {
    match step {
        ApprovalStep::Approve => "approved",
        ApprovalStep::Reject => "rejected",
        ApprovalStep::Revoke => "revoked",
    }
}

/// Tell the webhooks (`<kind>.<event>`, e.g. `break_glass.approved`) in the unit of work of
/// the step, so a step is notified exactly when it commits.
pub(crate) async fn notify(
    inner: &Inner,
    uow: &mut UnitOfWork<'_>,
    a: &Approval,
    event: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let event_type = format!("{}.{event}", a.kind.as_str());
    let data = serde_json::json!({"approval": view(a, now)});
    crate::notify::enqueue(inner, uow, a.org_id, &event_type, data).await
}

fn refused(r: ApprovalRefusal) -> ServiceError {
    match r {
        ApprovalRefusal::OwnRequest => ServiceError::Forbidden {
            rule: "second_approver_required".into(),
        },
        ApprovalRefusal::AlreadyApproved => {
            ServiceError::conflict("already_approved", "you already approved this request")
        }
        ApprovalRefusal::NotOpen(ApprovalStatus::Expired) => ServiceError::Gone {
            code: GoneReason::ApprovalExpired,
            detail: "the request expired".into(),
        },
        ApprovalRefusal::NotOpen(status) => ServiceError::conflict(
            "approval_closed",
            format!("the request is {status}; only a pending one can be decided"),
        ),
    }
}

/// What the trail keeps of a request: where it stands, who asked and approved, and why.
fn audit_snapshot(a: &Approval, now: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "kind": a.kind.as_str(),
        "status": a.status_at(now).as_str(),
        "requested_by": a.requested_by,
        "reason": a.reason,
        "detail": a.detail,
        "approvers": a.approvers.iter().map(|v| v.user_id).collect::<Vec<_>>(),
        "active_until": a.active_until,
        "version": a.version,
    })
}

pub(crate) fn view(a: &Approval, now: DateTime<Utc>) -> ApprovalView {
    ApprovalView {
        id: a.id,
        kind: a.kind.as_str().to_owned(),
        org_id: a.org_id.map(|o| o.0),
        requested_by: a.requested_by.0,
        reason: a.reason.clone(),
        status: a.status_at(now).as_str().to_owned(),
        approvals: a
            .approvers
            .iter()
            .map(|v| ApproverView {
                user_id: v.user_id,
                approved_at: v.approved_at,
            })
            .collect(),
        approvals_required: uos_domain::REQUIRED_APPROVERS,
        created_at: a.created_at,
        pending_until: a.pending_until,
        active_from: a.active_from,
        active_until: a.active_until,
        ended_at: a.ended_at,
        ended_by: a.ended_by.map(|u| u.0),
        scope: a
            .detail
            .get("scope")
            .and_then(|s| serde_json::from_value::<BudgetRefView>(s.clone()).ok()),
        extra_cents: a.detail.get("extra_cents").and_then(|v| v.as_i64()),
        roles: a.detail.get("roles").and_then(|v| {
            v.as_array().map(|roles| {
                roles
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
        }),
        grant_minutes: a.grant_secs / 60,
    }
}

/// Whether `status` is a filter a list may be asked for.
pub fn parse_status(raw: &str) -> Result<ApprovalStatus> {
    ApprovalStatus::parse(raw).map_err(|_| {
        ServiceError::field(
            "status",
            "invalid",
            "status must be pending, active, rejected, revoked or expired",
        )
    })
}
