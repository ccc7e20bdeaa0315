//! Break-glass access: a user asks for roles in one org (or in every org) for at most four
//! hours; two platform admins other than the requester approve. While active, the roles are
//! added to the holder's standing wherever the grant applies, and every request the grant
//! authorizes is audited (`break_glass.used`, with the grant's id) and notified.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::mpsc;
use uos_audit::AuditAction;
use uos_authz::{Action, Resource, ResourceKind};
use uos_domain::{
    Approval, ApprovalKind, ApprovalRequest, ApprovalStatus, OrgId, RoleName, UserId,
};
use uos_store::{Page, PageRequest, ReadTx};

use super::check_reason;
use super::{answer_request, approval_window, take_step, view, ApprovalStep};
use crate::budgets::usage::org_by_ref;
use crate::kernel::reads::LazyRead;
use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::ApprovalView;
use crate::{AuthUser, Caller, Ctx, Done, FieldError, Inner, Result, ServiceError, Services};

/// The longest a grant may last.
pub const MAX_BREAK_GLASS_MINUTES: i64 = 240;
/// The most roles one grant may name.
pub const MAX_BREAK_GLASS_ROLES: usize = 10;

/// How long a replica trusts its list of grants in force. A grant approved or revoked on this
/// replica takes effect here at once, on the others within this time.
const GRANTS_TTL: StdDuration = StdDuration::from_secs(1);

/// Break-glass access as asked for.
#[derive(Clone, Debug)]
pub struct NewBreakGlass {
    /// The org the roles are for (its slug or id); every org when `None`.
    pub org: Option<String>,
    pub roles: Vec<String>,
    pub reason: String,
    pub duration_minutes: i64,
}

/// A grant in force, as authorization needs it.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub id: uuid::Uuid,
    pub holder: UserId,
    pub org: Option<OrgId>,
    pub roles: Vec<RoleName>,
    pub until: DateTime<Utc>,
}

impl Grant {
    fn from_approval(a: &Approval) -> Option<Self> {
        let roles = a
            .detail
            .get("roles")?
            .as_array()?
            .iter()
            .filter_map(|r| RoleName::parse(r.as_str()?).ok())
            .collect();
        Some(Self {
            id: a.id,
            holder: a.requested_by,
            org: a.org_id,
            roles,
            until: a.active_until?,
        })
    }

    fn applies(&self, user: UserId, org: OrgId, now: DateTime<Utc>) -> bool {
        self.holder == user && self.org.is_none_or(|o| o == org) && now < self.until
    }
}

/// A replica's copy of the grants in force: one read a second at most, and none on the
/// request path of anyone while no grant exists beyond that.
#[derive(Debug)]
pub(crate) struct GrantBook {
    state: Mutex<Option<(Instant, Arc<Vec<Grant>>)>>,
    /// Grants whose first use this replica already notified.
    notified: Mutex<HashSet<uuid::Uuid>>,
    /// Uses no unit of work recorded, for the recorder task (see [`GrantUses`]).
    sink: mpsc::UnboundedSender<GrantUse>,
}

impl GrantBook {
    pub(crate) fn new(sink: mpsc::UnboundedSender<GrantUse>) -> Self {
        Self {
            state: Mutex::default(),
            notified: Mutex::default(),
            sink,
        }
    }

    /// The grants `user` holds in `org` at `now`.
    pub(crate) async fn held(
        &self,
        r: &mut LazyRead<'_>,
        user: UserId,
        org: OrgId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Grant>> {
        let fresh = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state
                .as_ref()
                .filter(|(at, _)| at.elapsed() < GRANTS_TTL)
                .map(|(_, g)| g.clone())
        };
        let grants = match fresh {
            Some(g) => g,
            None => {
                let loaded: Vec<Grant> = r
                    .get()
                    .await?
                    .active_approvals(ApprovalKind::BreakGlass, None, now)
                    .await?
                    .iter()
                    .filter_map(Grant::from_approval)
                    .collect();
                let loaded = Arc::new(loaded);
                *self.state.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((Instant::now(), loaded.clone()));
                loaded
            }
        };
        Ok(grants
            .iter()
            .filter(|g| g.applies(user, org, now))
            .cloned()
            .collect())
    }

    /// Drop the copy (a grant changed on this replica).
    pub(crate) fn forget(&self) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether this is the first use of `grant` this replica notifies.
    fn first_use(&self, grant: uuid::Uuid) -> bool {
        self.notified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(grant)
    }
}

/// One request's use of a grant.
#[derive(Clone, Debug)]
pub struct GrantUse {
    grant: uuid::Uuid,
    org: OrgId,
    roles: Vec<RoleName>,
    action: Action,
    holder: Arc<AuthUser>,
    request_id: String,
    ip: Option<String>,
}

/// The grants a request relied on. A unit of work that commits records them in its own
/// transaction; what is left when the request's context goes away (a read, a refused write)
/// goes to the replica's recorder task, so every use is recorded either way.
#[derive(Clone, Debug, Default)]
pub struct GrantUses(Arc<Mutex<Pending>>);

#[derive(Debug, Default)]
struct Pending {
    uses: Vec<GrantUse>,
    sink: Option<mpsc::UnboundedSender<GrantUse>>,
}

impl GrantUses {
    pub(crate) fn push(&self, u: GrantUse, sink: &mpsc::UnboundedSender<GrantUse>) {
        let mut p = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = p
            .uses
            .iter()
            .any(|x| x.grant == u.grant && x.org == u.org && x.action == u.action);
        if !seen {
            p.uses.push(u);
        }
        p.sink.get_or_insert_with(|| sink.clone());
    }

    pub(crate) fn take(&self) -> Vec<GrantUse> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner).uses)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(sink) = &self.sink {
            for u in self.uses.drain(..) {
                // The recorder lives as long as the service; if it is gone, so is the
                // process, and the request never answered.
                let _ = sink.send(u);
            }
        }
    }
}

impl Inner {
    /// Record that `caller`'s request used `grants` to be allowed `action` in `org`.
    pub(crate) fn note_grant_use(&self, ctx: &Ctx, grants: &[Grant], org: OrgId, action: Action) {
        let Caller::User(holder) = &ctx.caller else {
            return;
        };
        for g in grants {
            ctx.grant_uses.push(
                GrantUse {
                    grant: g.id,
                    org,
                    roles: g.roles.clone(),
                    action,
                    holder: holder.clone(),
                    request_id: ctx.request_id.clone(),
                    ip: ctx.ip.clone(),
                },
                &self.grants.sink,
            );
        }
    }
}

/// Audit (and, the first time on this replica, notify) each use in `uow`.
pub(crate) async fn record_uses(
    inner: &Inner,
    uow: &mut UnitOfWork<'_>,
    uses: Vec<GrantUse>,
) -> Result<()> {
    for u in uses {
        let after = serde_json::json!({
            "action": u.action.as_str(),
            "org_id": u.org,
            "roles": u.roles,
        });
        uow.record(
            AuditAction::BreakGlassUsed,
            Some(u.org),
            u.grant.to_string(),
            serde_json::Value::Null,
            after.clone(),
        )
        .await?;
        if inner.grants.first_use(u.grant) {
            let data =
                serde_json::json!({"grant_id": u.grant, "user_id": u.holder.user.id, "use": after});
            crate::notify::enqueue(inner, uow, Some(u.org), "break_glass.used", data).await?;
        }
    }
    Ok(())
}

/// The replica's recorder of uses no unit of work recorded: each in a transaction of its
/// own, as its holder on the request that used it.
pub(crate) async fn run_use_recorder(
    services: Services,
    mut uses: mpsc::UnboundedReceiver<GrantUse>,
) {
    while let Some(u) = uses.recv().await {
        let inner = &*services.inner;
        let ctx = Ctx {
            caller: Caller::User(u.holder.clone()),
            ip: u.ip.clone(),
            ..Ctx::anonymous(u.request_id.clone())
        };
        let cap = inner
            .authz
            .system_task_in_org(Action::BreakGlassApprove, u.org.0);
        let result = async {
            let mut uow = UnitOfWork::begin(inner, &ctx).await?;
            record_uses(inner, &mut uow, vec![u]).await?;
            uow.commit_unanswered(&cap).await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "could not record a break-glass use");
        }
    }
}

impl Services {
    /// Ask for break-glass roles; two platform admins other than the requester decide.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn request_break_glass(
        &self,
        ctx: &Ctx,
        new: NewBreakGlass,
    ) -> Result<Done<ApprovalView>> {
        let mut bad = Vec::new();
        check_reason(&new.reason, &mut bad);
        if !(1..=MAX_BREAK_GLASS_MINUTES).contains(&new.duration_minutes) {
            bad.push(FieldError::new(
                "duration_minutes",
                "invalid",
                format!("must be between 1 and {MAX_BREAK_GLASS_MINUTES}"),
            ));
        }
        let roles: Vec<RoleName> = new
            .roles
            .iter()
            .filter_map(|r| RoleName::parse(r).ok())
            .collect();
        if roles.len() != new.roles.len() || roles.is_empty() || roles.len() > MAX_BREAK_GLASS_ROLES
        {
            bad.push(FieldError::new(
                "roles",
                "invalid",
                format!("1 to {MAX_BREAK_GLASS_ROLES} role names"),
            ));
        }
        if !bad.is_empty() {
            return Err(ServiceError::Validation(bad));
        }
        let inner = &*self.inner;
        let cap = inner.authorize(ctx, Action::BreakGlassRequest, break_glass_resource(None))?;
        let me = ctx.caller.user().ok_or(ServiceError::Forbidden {
            rule: "user_required".into(),
        })?;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let org_id = match &new.org {
            Some(raw) => Some(org_by_ref(uow.tx(), raw).await?.id),
            None => None,
        };
        let now = uos_domain::now();
        let mut names: Vec<&str> = roles.iter().map(RoleName::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let approval = Approval::request(
            ApprovalRequest {
                kind: ApprovalKind::BreakGlass,
                org_id,
                requested_by: me.user.id,
                subject_id: None,
                reason: new.reason,
                detail: serde_json::json!({"roles": names}),
                pending_for: approval_window(inner),
                grant_for: Duration::minutes(new.duration_minutes),
            },
            now,
        );
        answer_request(inner, uow, &cap, &approval).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_break_glass(
        &self,
        ctx: &Ctx,
        status: Option<ApprovalStatus>,
        page: &PageRequest,
    ) -> Result<Page<ApprovalView>> {
        let inner = &*self.inner;
        let _cap = inner.authorize(ctx, Action::BreakGlassList, break_glass_resource(None))?;
        let now = uos_domain::now();
        let mut r = inner.store.read().await?;
        let page = r
            .list_approvals(ApprovalKind::BreakGlass, None, status, now, page)
            .await?;
        Ok(Page {
            items: page.items.iter().map(|a| view(a, now)).collect(),
            next: page.next,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_break_glass(&self, ctx: &Ctx, id: uuid::Uuid) -> Result<Done<ApprovalView>> {
        let inner = &*self.inner;
        let _cap = inner.authorize(ctx, Action::BreakGlassList, break_glass_resource(Some(id)))?;
        let mut r = inner.store.read().await?;
        let a = break_glass(&mut *r, id).await?;
        Ok(Done::ok(view(&a, uos_domain::now()), Some(a.version)))
    }

    /// Approve, reject or revoke a break-glass request (platform admins).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn step_break_glass(
        &self,
        ctx: &Ctx,
        id: uuid::Uuid,
        step: ApprovalStep,
    ) -> Result<Done<ApprovalView>> {
        let inner = &*self.inner;
        let action = match step {
            ApprovalStep::Approve | ApprovalStep::Reject => Action::BreakGlassApprove,
            ApprovalStep::Revoke => Action::BreakGlassRevoke,
        };
        let cap = inner.authorize(ctx, action, break_glass_resource(Some(id)))?;
        let me = ctx.caller.user().ok_or(ServiceError::Forbidden {
            rule: "user_required".into(),
        })?;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let current = break_glass(uow.tx(), id).await?;
        let now = uos_domain::now();
        let stepped = take_step(inner, &mut uow, current, me.user.id, step, now).await?;
        let done = Done::ok(view(&stepped.after, now), Some(stepped.after.version));
        uow.commit(&cap, &done).await?;
        inner.grants.forget();
        Ok(done)
    }
}

fn break_glass_resource(id: Option<uuid::Uuid>) -> Resource {
    Resource {
        kind: ResourceKind::BreakGlass,
        id: id.map(|i| i.to_string()),
        ..Resource::default()
    }
}

async fn break_glass(tx: &mut dyn ReadTx, id: uuid::Uuid) -> Result<Approval> {
    tx.get_approval(id)
        .await?
        .filter(|a| a.kind == ApprovalKind::BreakGlass)
        .ok_or(ServiceError::NotFound)
}
