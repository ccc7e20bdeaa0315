//! What the reconciler records besides the changes themselves: which orgs a commit declares,
//! the outcome of each apply that did not commit, rejected commits, and drift. Only the
//! reconciler may call these (its context comes from [`Ctx::reconciler`]).

use std::collections::HashMap;

use uos_audit::AuditAction;
use uos_authz::{Action, Capability, Resource};
use uos_store::{DeclarativeControl, DeclaredAttempt, DeclaredOrg, DriftCheck, PageRequest};

use crate::kernel::uow::UnitOfWork;
use crate::{Caller, Ctx, DeclaredSource, DriftDifference, Result, ServiceError, Services};

/// Declared orgs read per statement when a pass loads them all.
const STATES_PAGE: u32 = 1000;

/// The outcome of an apply that changed nothing: `failed` (invalid file, refused change,
/// store error) or `rejected` (the commit's signature).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotApplied {
    Failed,
    Rejected,
}

impl NotApplied {
    const fn as_str(self) -> &'static str {
        match self {
            NotApplied::Failed => "failed",
            NotApplied::Rejected => "rejected",
        }
    }
}

impl Services {
    /// The reconciler's own records are asked of the policy like every change; only the
    /// reconciler (whose context names the commit and file) makes them.
    fn authorize_record<'c>(&self, ctx: &'c Ctx) -> Result<(Capability, &'c DeclaredSource)> {
        let cap = self
            .inner
            .authorize(ctx, Action::DeclarativeRecord, Resource::default())?;
        match &ctx.caller {
            Caller::Reconciler(source) => Ok((cap, source)),
            _ => Err(ServiceError::Forbidden {
                rule: "reconciler_required".into(),
            }),
        }
    }

    /// The reconciler's switches and its record of every declared org, by slug, read at the
    /// start of a pass (a few statements however many orgs there are).
    pub async fn declared_states(
        &self,
        ctx: &Ctx,
    ) -> Result<(DeclarativeControl, HashMap<String, DeclaredOrg>)> {
        let _cap = self.authorize_record(ctx)?;
        let mut r = self.inner.store.read().await?;
        let control = r.declarative_control().await?;
        let mut states = HashMap::new();
        let mut page = PageRequest::first(STATES_PAGE);
        loop {
            let got = r.list_declared_orgs(&page).await?;
            states.extend(got.items.into_iter().map(|d| (d.slug.clone(), d)));
            match got.next {
                Some(after) => page.after = Some(after),
                None => break,
            }
        }
        Ok((control, states))
    }

    /// The switches alone: the global pause and the latest sync request.
    pub async fn declarative_control(&self, ctx: &Ctx) -> Result<DeclarativeControl> {
        let _cap = self.authorize_record(ctx)?;
        let mut r = self.inner.store.read().await?;
        Ok(r.declarative_control().await?)
    }

    /// Record that the commit in `ctx` is the newest one read.
    pub async fn record_seen_revision(&self, ctx: &Ctx) -> Result<()> {
        let (_, source) = self.authorize_record(ctx)?;
        let mut tx = self.inner.store.begin().await?;
        tx.record_seen_revision(&source.revision).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record that `slug` is declared in the file of `ctx`.
    pub async fn note_declared(&self, ctx: &Ctx, slug: &str) -> Result<()> {
        let (_, source) = self.authorize_record(ctx)?;
        let mut tx = self.inner.store.begin().await?;
        tx.note_declared_org(slug, None, &source.file).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record an apply of `slug` that changed nothing, and why.
    pub async fn record_not_applied(
        &self,
        ctx: &Ctx,
        slug: &str,
        outcome: NotApplied,
        error: &str,
    ) -> Result<()> {
        let (_, source) = self.authorize_record(ctx)?;
        let attempt = DeclaredAttempt {
            revision: source.revision.clone(),
            at: uos_domain::now(),
            result: outcome.as_str().into(),
            error: Some(error.into()),
        };
        let mut tx = self.inner.store.begin().await?;
        tx.record_declared_attempt(slug, &attempt, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audit that the commit in `ctx` was refused (its signature), so nothing of it applies.
    pub async fn record_rejected_commit(
        &self,
        ctx: &Ctx,
        branch: &str,
        reason: &str,
    ) -> Result<()> {
        let (cap, source) = self.authorize_record(ctx)?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        uow.record(
            AuditAction::DeclarativeRejected,
            None,
            source.revision.clone(),
            serde_json::Value::Null,
            serde_json::json!({"reason": reason, "branch": branch}),
        )
        .await?;
        uow.commit_unanswered(&cap).await
    }

    /// Forget `gone`, the declared orgs the newest revision no longer declares: their orgs
    /// stay as they are, no longer managed.
    pub async fn forget_declared(&self, ctx: &Ctx, gone: &[String]) -> Result<()> {
        let _cap = self.authorize_record(ctx)?;
        if gone.is_empty() {
            return Ok(());
        }
        let mut tx = self.inner.store.begin().await?;
        for slug in gone {
            tx.forget_declared_org(slug).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Record the latest comparison of `slug` with its last applied file.
    pub async fn record_drift(
        &self,
        ctx: &Ctx,
        slug: &str,
        differences: &[DriftDifference],
    ) -> Result<()> {
        let _cap = self.authorize_record(ctx)?;
        let check = DriftCheck {
            checked_at: uos_domain::now(),
            differences: serde_json::to_string(differences)
                .map_err(|e| ServiceError::Internal(format!("drift encode: {e}")))?,
        };
        let mut tx = self.inner.store.begin().await?;
        tx.record_drift(slug, &check).await?;
        tx.commit().await?;
        Ok(())
    }
}
