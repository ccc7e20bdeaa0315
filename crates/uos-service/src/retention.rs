//! Retention: the purge of users and orgs whose restore window has passed, and the legal holds
//! that stop it.
//!
//! Purging a user keeps its row as an anonymised tombstone (status `purged`, so audit
//! references still resolve) and removes everything else about it: credentials, sessions,
//! memberships (each audited in its org as `member.removed`), and its subject keys, which
//! erases the personal data of every audit event about it (see [`crate::audit::personal`]).
//! Purging an org removes its members, invites, custom roles and service accounts, empties its
//! name and frees its slug; its row and its audit chain stay. Both are audited (`user.purged`,
//! `org.purged`, actor `system`) without personal data.
//!
//! Safe on several replicas at once: a sweep runs under a lease, and each purge re-reads its
//! user or org under a row lock in its own unit of work, so a purge that raced a restore or a
//! hold finds the row changed and leaves it. A hold is placed under the same row lock.

use std::time::Duration as StdDuration;

use chrono::Duration;
use uos_audit::AuditAction;
use uos_authz::{Action, Resource, ResourceKind};
use uos_domain::{Email, OrgId, OrgSlug, OrgStatus, StatusCause, UserId, UserStatus};
use uos_shared::Invalidation;
use uos_store::{HoldOn, LegalHold};

use crate::audit::personal;
use crate::kernel::precondition::{check_version, Precondition};
use crate::kernel::uow::{snapshot, UnitOfWork};
use crate::kernel::views::LegalHoldView;
use crate::{Ctx, Done, Result, ServiceError, Services};

/// Users or orgs looked at per round of a sweep.
const PURGE_BATCH: u32 = 100;

/// The lease one replica sweeps under; longer than a sweep of a large backlog takes.
const PURGE_LEASE: &str = "retention-purge";
const PURGE_LEASE_SECS: i64 = 600;

/// Longest legal-hold reason, in characters.
pub const HOLD_REASON_MAX_CHARS: usize = 500;

/// What one sweep purged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub users: usize,
    pub orgs: usize,
}

impl Services {
    /// Purge every user and org deleted longer ago than `retention_days` and not held.
    /// Returns what it purged; nothing when another replica holds the sweep's lease.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn purge_expired(&self) -> Result<PurgeReport> {
        let inner = &*self.inner;
        let now = uos_domain::now();
        let mut tx = inner.store.begin().await?;
        let held = tx
            .claim_lease(
                PURGE_LEASE,
                &inner.replica_id,
                now,
                now + Duration::seconds(PURGE_LEASE_SECS),
            )
            .await?;
        tx.commit().await?;
        let mut report = PurgeReport::default();
        if !held {
            return Ok(report);
        }
        let cutoff = now - Duration::days(i64::from(inner.cfg.retention_days));
        report.users = purge_in_batches(
            || {
                Box::pin(async move {
                    let mut r = inner.store.read().await?;
                    Ok(r.purgeable_users(cutoff, PURGE_BATCH).await?)
                })
            },
            |id| Box::pin(self.purge_user(id, cutoff)),
        )
        .await?;
        report.orgs = purge_in_batches(
            || {
                Box::pin(async move {
                    let mut r = inner.store.read().await?;
                    Ok(r.purgeable_orgs(cutoff, PURGE_BATCH).await?)
                })
            },
            |id| Box::pin(self.purge_org(id, cutoff)),
        )
        .await?;
        if report != PurgeReport::default() {
            tracing::info!(users = report.users, orgs = report.orgs, "retention purge");
        }
        Ok(report)
    }

    /// Purge one user if it is still deleted since before `cutoff` and not held; false if it
    /// changed since it was found (restored, held, purged by another replica).
    async fn purge_user(&self, id: UserId, cutoff: chrono::DateTime<chrono::Utc>) -> Result<bool> {
        let inner = &*self.inner;
        let ctx = Ctx::system("retention-purge");
        let cap = inner.authz.system_task(Action::UserDelete);
        let mut uow = UnitOfWork::begin(inner, &ctx).await?;
        let Some(user) = uow.tx().lock_user(id).await? else {
            return Ok(false);
        };
        let expired =
            user.status == UserStatus::Deleted && user.deleted_at.is_some_and(|at| at < cutoff);
        if !expired || uow.tx().user_is_held(id).await? {
            return Ok(false);
        }
        let now = uos_domain::now();
        let memberships = uow.tx().list_memberships_of_user(id).await?;
        for m in &memberships {
            uow.tx().delete_membership(m.org_id, id).await?;
            uow.record(
                AuditAction::MemberRemoved,
                Some(m.org_id),
                id.to_string(),
                snapshot(m),
                serde_json::Value::Null,
            )
            .await?;
        }
        let sessions = uow.tx().erase_user_credentials(id).await?;
        let mut after = user.clone();
        after.set_status(UserStatus::Purged, StatusCause::Retention, now)?;
        // The tombstone: unique and valid like every stored email, and naming nobody.
        after.email = Email::parse(&format!("purged-{}@purged.invalid", id.0.simple()))?;
        after.display_name = None;
        after.locale = None;
        after.timezone = None;
        after.password_hash = None;
        after.platform_admin = false;
        after.status_before_delete = None;
        after.preferences = serde_json::Value::Object(Default::default());
        uow.tx().update_user(&after, user.version).await?;
        let subjects = [
            personal::user_subject(id.0),
            inner.subjects.email_subject(user.email.as_str()),
        ];
        let destroyed = uow.tx().destroy_subject_keys(&subjects).await?;
        uow.invalidate(Invalidation::User(id.0));
        // No personal data here: this event must not need the keys just destroyed.
        uow.record(
            AuditAction::UserPurged,
            None,
            id.to_string(),
            serde_json::json!({"status": user.status, "deleted_at": user.deleted_at}),
            serde_json::json!({
                "status": after.status,
                "memberships_removed": memberships.iter().map(|m| m.org_id.0).collect::<Vec<_>>(),
                "sessions_removed": sessions,
                "subject_keys_destroyed": destroyed,
            }),
        )
        .await?;
        uow.commit_unanswered(&cap).await?;
        Ok(true)
    }

    /// Purge one org if it is still deleted since before `cutoff`, not purged and not held.
    async fn purge_org(&self, id: OrgId, cutoff: chrono::DateTime<chrono::Utc>) -> Result<bool> {
        let inner = &*self.inner;
        let ctx = Ctx::system("retention-purge");
        let cap = inner.authz.system_task(Action::OrgDelete);
        let mut uow = UnitOfWork::begin(inner, &ctx).await?;
        let Some(org) = uow.tx().lock_org(id).await? else {
            return Ok(false);
        };
        let expired =
            org.status == OrgStatus::Deleted && org.deleted_at.is_some_and(|at| at < cutoff);
        if !expired
            || uow.tx().org_purged_at(id).await?.is_some()
            || uow.tx().get_legal_hold(HoldOn::Org(id)).await?.is_some()
        {
            return Ok(false);
        }
        let invitees = uow.tx().org_invitees_without_account(id).await?;
        let slug = OrgSlug::parse(&format!("purged-{}", id.0.simple()))?;
        let removed = uow.tx().purge_org(id, &slug, uos_domain::now()).await?;
        let subjects: Vec<String> = invitees
            .iter()
            .map(|e| inner.subjects.email_subject(e.as_str()))
            .collect();
        let destroyed = uow.tx().destroy_subject_keys(&subjects).await?;
        uow.invalidate(Invalidation::Org(id.0));
        uow.record(
            AuditAction::OrgPurged,
            Some(id),
            id.to_string(),
            serde_json::json!({"status": org.status.as_str(), "deleted_at": org.deleted_at}),
            serde_json::json!({
                "members_removed": removed.members_removed,
                "invites_removed": removed.invites_removed,
                "roles_removed": removed.roles_removed,
                "service_accounts_removed": removed.service_accounts_removed,
                "subject_keys_destroyed": destroyed,
            }),
        )
        .await?;
        uow.commit_unanswered(&cap).await?;
        Ok(true)
    }

    /// Start the purge sweep (every `purge_sweep_secs`). Called by `spawn_background`.
    pub(crate) fn spawn_purge_sweep(&self) {
        let svc = self.clone();
        let every = StdDuration::from_secs(self.inner.cfg.purge_sweep_secs.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = svc.purge_expired().await {
                    tracing::warn!(error = %e, "retention purge failed; retrying");
                }
            }
        });
    }

    /// Place (or change the reason of) the legal hold on a user. Platform admins.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn place_user_hold(
        &self,
        ctx: &Ctx,
        id: UserId,
        reason: String,
        if_match: Precondition,
    ) -> Result<Done<LegalHoldView>> {
        let cap = self
            .inner
            .authorize(ctx, Action::UserLegalHold, user_resource(id))?;
        let reason = hold_reason(reason)?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let user = uow
            .tx()
            .lock_user(id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if user.status == UserStatus::Purged {
            return Err(ServiceError::conflict(
                "already_purged",
                "the user was purged; there is nothing left to hold",
            ));
        }
        let (before, hold) = put_hold(&mut uow, ctx, HoldOn::User(id), reason, &if_match).await?;
        uow.record(
            AuditAction::UserLegalHoldPlaced,
            None,
            id.to_string(),
            before,
            snapshot(&LegalHoldView::from(&hold)),
        )
        .await?;
        let done = Done::ok(LegalHoldView::from(&hold), Some(hold.version));
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Lift the legal hold on a user. Platform admins; 404 if there is none.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn lift_user_hold(
        &self,
        ctx: &Ctx,
        id: UserId,
        if_match: Precondition,
    ) -> Result<Done<()>> {
        let cap = self
            .inner
            .authorize(ctx, Action::UserLegalHold, user_resource(id))?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let before = lift_hold(&mut uow, HoldOn::User(id), &if_match).await?;
        uow.record(
            AuditAction::UserLegalHoldLifted,
            None,
            id.to_string(),
            snapshot(&LegalHoldView::from(&before)),
            serde_json::Value::Null,
        )
        .await?;
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Place (or change the reason of) the legal hold on an org. Platform admins.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn place_org_hold(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        reason: String,
        if_match: Precondition,
    ) -> Result<Done<LegalHoldView>> {
        let reason = hold_reason(reason)?;
        let (org_id, cap) = self.org_hold_access(ctx, slug).await?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        uow.tx()
            .lock_org(org_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let (before, hold) =
            put_hold(&mut uow, ctx, HoldOn::Org(org_id), reason, &if_match).await?;
        uow.record(
            AuditAction::OrgLegalHoldPlaced,
            Some(org_id),
            org_id.to_string(),
            before,
            snapshot(&LegalHoldView::from(&hold)),
        )
        .await?;
        let done = Done::ok(LegalHoldView::from(&hold), Some(hold.version));
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Lift the legal hold on an org. Platform admins; 404 if there is none.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn lift_org_hold(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        if_match: Precondition,
    ) -> Result<Done<()>> {
        let (org_id, cap) = self.org_hold_access(ctx, slug).await?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let before = lift_hold(&mut uow, HoldOn::Org(org_id), &if_match).await?;
        uow.record(
            AuditAction::OrgLegalHoldLifted,
            Some(org_id),
            org_id.to_string(),
            snapshot(&LegalHoldView::from(&before)),
            serde_json::Value::Null,
        )
        .await?;
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// The org of a hold request, and the capability to change its hold. A purged org (its
    /// slug is gone) is not found.
    async fn org_hold_access(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
    ) -> Result<(OrgId, uos_authz::Capability)> {
        let inner = &*self.inner;
        let mut r = inner.store.read().await?;
        let (org, cap) = inner
            .org_access(&mut *r, ctx, slug, Action::OrgLegalHold, |_| {})
            .await?;
        Ok((org.id, cap))
    }
}

fn user_resource(id: UserId) -> Resource {
    Resource {
        kind: ResourceKind::User,
        id: Some(id.to_string()),
        ..Default::default()
    }
}

/// A hold's reason: 1 to [`HOLD_REASON_MAX_CHARS`] characters, not only blanks.
fn hold_reason(reason: String) -> Result<String> {
    let trimmed = reason.trim();
    if trimmed.is_empty() || trimmed.chars().count() > HOLD_REASON_MAX_CHARS {
        return Err(ServiceError::field(
            "reason",
            "invalid",
            format!("reason must be 1 to {HOLD_REASON_MAX_CHARS} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Insert the hold on `on`, or replace the reason of the one there is; returns the hold it
/// replaced (as its audit snapshot, `null` if none) and the hold now standing. `If-Match` on
/// a hold that does not exist yet cannot match.
async fn put_hold(
    uow: &mut UnitOfWork<'_>,
    ctx: &Ctx,
    on: HoldOn,
    reason: String,
    if_match: &Precondition,
) -> Result<(serde_json::Value, LegalHold)> {
    let now = uos_domain::now();
    let placed_by = ctx.actor_id();
    match uow.tx().get_legal_hold(on).await? {
        Some(current) => {
            check_version(current.version, if_match)?;
            let next = LegalHold {
                reason,
                placed_by,
                placed_at: now,
                version: current.version + 1,
                ..current.clone()
            };
            uow.tx().update_legal_hold(&next, current.version).await?;
            Ok((snapshot(&LegalHoldView::from(&current)), next))
        }
        None => {
            if matches!(if_match, Precondition::OneOf(_)) {
                return Err(ServiceError::PreconditionFailed);
            }
            let hold = LegalHold {
                id: uos_domain::new_id(),
                on,
                reason,
                placed_by,
                placed_at: now,
                version: 1,
            };
            uow.tx().insert_legal_hold(&hold).await?;
            Ok((serde_json::Value::Null, hold))
        }
    }
}

async fn lift_hold(
    uow: &mut UnitOfWork<'_>,
    on: HoldOn,
    if_match: &Precondition,
) -> Result<LegalHold> {
    let current = uow
        .tx()
        .get_legal_hold(on)
        .await?
        .ok_or(ServiceError::NotFound)?;
    check_version(current.version, if_match)?;
    uow.tx().delete_legal_hold(on).await?;
    Ok(current)
}

/// One step of [`purge_in_batches`]: a future that may run on any worker thread.
type Step<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>>;

/// Purges what `candidates` lists, a batch at a time, until a batch comes back short or a
/// round purged nothing (it found only rows that changed under it: looking at them again
/// would loop). How many were purged.
async fn purge_in_batches<'a, Id: Copy + 'a>(
    candidates: impl Fn() -> Step<'a, Vec<Id>>,
    purge: impl Fn(Id) -> Step<'a, bool>,
) -> Result<usize> {
    let mut total = 0;
    loop {
        let batch = candidates().await?;
        let mut purged = 0;
        for id in &batch {
            if purge(*id).await? {
                purged += 1;
            }
        }
        total += purged;
        if batch.len() < PURGE_BATCH as usize || purged == 0 {
            return Ok(total);
        }
    }
}
