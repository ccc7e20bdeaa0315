//! The policy bundle as a resource: what decides now (`GET /v1/policy/bundle`), and reloads
//! from the API, a `SIGHUP` or a changed policy directory. A reload compiles and tests the new
//! bundle first; only a sound one replaces the running one, and a change of revision is
//! audited before it takes effect.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uos_audit::AuditAction;
use uos_authz::{Action, AuthzError, Capability, LoadedBundle, Resource, ResourceKind};

use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::{PolicyBundleView, PolicyModuleView, PolicyReloadView};
use crate::{Ctx, Done, FieldError, Result, ServiceError, Services};

/// What asked for a reload; recorded in the audit event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// `POST /v1/policy/reload`.
    Api,
    /// `SIGHUP` to the process.
    Sighup,
    /// The watched policy directory changed.
    Watch,
}

impl ReloadTrigger {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReloadTrigger::Api => "api",
            ReloadTrigger::Sighup => "sighup",
            ReloadTrigger::Watch => "watch",
        }
    }
}

fn bundle_resource() -> Resource {
    Resource {
        kind: ResourceKind::PolicyBundle,
        ..Resource::default()
    }
}

fn modules(bundle: &LoadedBundle) -> Vec<PolicyModuleView> {
    bundle
        .info()
        .modules
        .iter()
        .map(|m| PolicyModuleView {
            file: m.file.clone(),
            sha256: m.sha256.clone(),
        })
        .collect()
}

fn bundle_view(bundle: &LoadedBundle) -> PolicyBundleView {
    PolicyBundleView {
        revision: bundle.revision().to_owned(),
        loaded_at: DateTime::<Utc>::from(bundle.info().loaded_at),
        modules: modules(bundle),
    }
}

/// The refusal a client (and the log) gets: every problem with its file and line.
fn refused(error: &AuthzError, running: &str) -> ServiceError {
    let problems = error.problems();
    let first = problems
        .first()
        .map(|p| format!("{}: {}", p.location(), p.message))
        .unwrap_or_else(|| error.to_string());
    ServiceError::PolicyRefused {
        detail: format!(
            "the policy bundle was refused ({first}); the running bundle {running} stays"
        ),
        errors: problems
            .iter()
            .map(|p| FieldError::new(p.location(), p.code, p.message.clone()))
            .collect(),
    }
}

impl Services {
    /// The bundle deciding now: revision, load time and files (platform admins).
    pub fn policy_bundle(&self, ctx: &Ctx) -> Result<PolicyBundleView> {
        let inner = &*self.inner;
        let _cap = inner.authorize(ctx, Action::PolicyBundle, bundle_resource())?;
        Ok(bundle_view(&inner.authz.current()))
    }

    /// `POST /v1/policy/reload` (platform admins): read the bundle's source again and replace
    /// the running bundle if it changed and is sound.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn reload_policy(&self, ctx: &Ctx) -> Result<Done<PolicyReloadView>> {
        let cap = self
            .inner
            .authorize(ctx, Action::PolicyReload, bundle_resource())?;
        self.reload_with(ctx, &cap, ReloadTrigger::Api).await
    }

    /// A reload the service does on its own (a signal, a changed directory), as actor
    /// `system`.
    pub async fn reload_policy_on(&self, trigger: ReloadTrigger) -> Result<PolicyReloadView> {
        let ctx = Ctx::system(format!("policy-{}", trigger.as_str()));
        let cap = self.inner.authz.system_task(Action::PolicyReload);
        let done = self.reload_with(&ctx, &cap, trigger).await?;
        done.body
            .ok_or_else(|| ServiceError::Internal("a reload answered nothing".into()))
    }

    /// Policy bundles installed and refused by reloads on this replica (the metric's values).
    pub fn policy_reload_counts(&self) -> (u64, u64) {
        self.inner.authz.reload_counts()
    }

    async fn reload_with(
        &self,
        ctx: &Ctx,
        cap: &Capability,
        trigger: ReloadTrigger,
    ) -> Result<Done<PolicyReloadView>> {
        let inner = &*self.inner;
        let _one_at_a_time = inner.policy.reloading.lock().await;
        let previous = inner.authz.current();
        // Reading, compiling and testing a bundle is CPU and file work: off the runtime.
        let authz = inner.authz.clone();
        let staged = tokio::task::spawn_blocking(move || authz.stage())
            .await
            .map_err(|e| ServiceError::Internal(format!("policy reload task: {e}")))?;
        let staged = match staged {
            Ok(staged) => staged,
            Err(error) => {
                tracing::warn!(
                    trigger = trigger.as_str(),
                    source = %inner.authz.source(),
                    running = previous.revision(),
                    %error,
                    "policy bundle refused; the running bundle stays"
                );
                return Err(refused(&error, previous.revision()));
            }
        };
        let now = staged.as_ref().unwrap_or(&previous);
        let view = PolicyReloadView {
            changed: staged.is_some(),
            previous_revision: previous.revision().to_owned(),
            revision: now.revision().to_owned(),
            loaded_at: DateTime::<Utc>::from(now.info().loaded_at),
            modules: modules(now),
        };
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        if staged.is_some() {
            uow.record(
                AuditAction::PolicyReloaded,
                None,
                view.revision.clone(),
                serde_json::json!({"revision": view.previous_revision}),
                serde_json::json!({
                    "revision": view.revision,
                    "modules": view.modules.iter().map(|m| serde_json::json!({
                        "file": m.file,
                        "sha256": m.sha256,
                    })).collect::<Vec<_>>(),
                    "trigger": trigger.as_str(),
                }),
            )
            .await?;
        }
        let done = Done::ok(view, None);
        // Audited first: a bundle whose event could not be written does not take effect.
        uow.commit(cap, &done).await?;
        if let Some(bundle) = staged {
            inner.authz.install(bundle);
            tracing::info!(
                trigger = trigger.as_str(),
                previous = previous.revision(),
                revision = %inner.authz.revision(),
                "policy bundle reloaded"
            );
        }
        Ok(done)
    }

    /// Reload whenever the policy directory's content changes, checking every `every`. Must be
    /// called once from within the runtime, and only for a directory bundle (the embedded one
    /// never changes).
    pub fn spawn_policy_watch(&self, every: Duration) {
        let svc = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The content last acted on: a refused bundle is tried again only once it changes,
            // not every tick.
            let mut seen = svc.inner.authz.revision();
            let mut last_error = String::new();
            loop {
                tick.tick().await;
                let authz = svc.inner.authz.clone();
                let on_disk =
                    match tokio::task::spawn_blocking(move || authz.source_revision()).await {
                        Ok(Ok(revision)) => revision,
                        Ok(Err(error)) => {
                            let error = error.to_string();
                            if error != last_error {
                                tracing::warn!(%error, "cannot read the policy directory");
                                last_error = error;
                            }
                            continue;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "policy watch task failed");
                            continue;
                        }
                    };
                last_error.clear();
                // Also covers a reload by the API or a signal that got there first.
                if on_disk == seen || on_disk == svc.inner.authz.revision() {
                    seen = on_disk;
                    continue;
                }
                match svc.reload_policy_on(ReloadTrigger::Watch).await {
                    // A refusal was logged with its file and line by the reload itself.
                    Ok(_) | Err(ServiceError::PolicyRefused { .. }) => seen = on_disk,
                    // The store could not take the audit event: try again next tick.
                    Err(error) => tracing::warn!(%error, "policy reload after a change failed"),
                }
            }
        });
    }
}
