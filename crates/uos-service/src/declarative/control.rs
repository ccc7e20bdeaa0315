//! What people see of the reconciler and the switches they use on it (contract § Declarative
//! config): status, pause and resume, sync now, and a Git host's push webhook.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use utoipa::ToSchema;

use uos_audit::AuditAction;
use uos_authz::{Action, Resource};
use uos_store::{DeclarativeControl, DeclaredOrg, Page, PageRequest, Pause};

use crate::kernel::uow::UnitOfWork;
use crate::{Ctx, Result, ServiceError, Services};

/// Longest pause reason kept.
pub const PAUSE_REASON_MAX_CHARS: usize = 500;

/// One declared org as the status API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeclaredStatusView {
    /// The org's slug, as its file declares it.
    pub org: String,
    pub file: String,
    pub paused: bool,
    /// Why and by whom, while paused (the org's own pause, else the global one).
    pub pause: Option<PauseView>,
    /// The newest revision of the config repo the reconciler read (every declared org is
    /// declared in it).
    pub revision: Option<String>,
    /// The commit whose version of the org's file was last applied: a later commit that
    /// leaves the file as it was does not change it.
    pub last_applied_revision: Option<String>,
    pub last_applied_at: Option<DateTime<Utc>>,
    pub last_attempt: Option<AttemptView>,
    pub drift: DriftView,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PauseView {
    pub reason: String,
    pub at: DateTime<Utc>,
    /// The actor's id.
    pub by: String,
    /// True when the whole reconciler is paused rather than this org.
    pub global: bool,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub revision: String,
    pub at: DateTime<Utc>,
    /// `applied`, `failed` or `rejected`.
    pub result: String,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DriftView {
    pub detected: bool,
    pub checked_at: Option<DateTime<Utc>>,
    pub differences: Vec<DriftDifference>,
}

/// One field whose live value differs from the last applied file.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct DriftDifference {
    /// The field of the file, e.g. `members[alice@example.com].roles`.
    pub path: String,
    #[schema(value_type = Object)]
    pub declared: serde_json::Value,
    #[schema(value_type = Object)]
    pub live: serde_json::Value,
}

impl DeclaredStatusView {
    fn new(d: &DeclaredOrg, control: &DeclarativeControl) -> Result<Self> {
        let pause = match (&d.paused, control.paused.as_ref()) {
            (Some(p), _) => Some(pause_view(p, false)),
            (None, Some(p)) => Some(pause_view(p, true)),
            (None, None) => None,
        };
        let differences: Vec<DriftDifference> = match &d.drift {
            Some(check) => serde_json::from_str(&check.differences)
                .map_err(|e| ServiceError::Internal(format!("stored drift: {e}")))?,
            None => Vec::new(),
        };
        Ok(Self {
            org: d.slug.clone(),
            file: d.file.clone(),
            paused: pause.is_some(),
            pause,
            revision: control.revision.clone(),
            last_applied_revision: d.last_applied_revision.clone(),
            last_applied_at: d.last_applied_at,
            last_attempt: d.last_attempt.as_ref().map(|a| AttemptView {
                revision: a.revision.clone(),
                at: a.at,
                result: a.result.clone(),
                error: a.error.clone(),
            }),
            drift: DriftView {
                detected: !differences.is_empty(),
                checked_at: d.drift.as_ref().map(|c| c.checked_at),
                differences,
            },
        })
    }
}

fn pause_view(p: &Pause, global: bool) -> PauseView {
    PauseView {
        reason: p.reason.clone(),
        at: p.at,
        by: p.by.clone(),
        global,
    }
}

impl Services {
    /// Every declared org's status, by slug.
    pub async fn declarative_statuses(
        &self,
        ctx: &Ctx,
        page: &PageRequest,
    ) -> Result<Page<DeclaredStatusView>> {
        let inner = &*self.inner;
        let _cap = inner.authorize(ctx, Action::DeclarativeStatus, Resource::default())?;
        let mut r = inner.store.read().await?;
        let control = r.declarative_control().await?;
        let page = r.list_declared_orgs(page).await?;
        let items = page
            .items
            .iter()
            .map(|d| DeclaredStatusView::new(d, &control))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// One declared org's status; 404 when no file declares `slug`.
    pub async fn declarative_status(&self, ctx: &Ctx, slug: &str) -> Result<DeclaredStatusView> {
        let inner = &*self.inner;
        let _cap = inner.authorize(ctx, Action::DeclarativeStatus, Resource::default())?;
        let mut r = inner.store.read().await?;
        let control = r.declarative_control().await?;
        let d = r
            .get_declared_org(slug)
            .await?
            .ok_or(ServiceError::NotFound)?;
        DeclaredStatusView::new(&d, &control)
    }

    /// Pause (`reason` given) or resume (`None`) the reconciler for `org`, or for every org.
    /// While paused, nothing is applied there and people may change the org through the API.
    pub async fn set_declarative_pause(
        &self,
        ctx: &Ctx,
        org: Option<&str>,
        reason: Option<String>,
    ) -> Result<()> {
        if let Some(r) = &reason {
            if r.trim().is_empty() || r.chars().count() > PAUSE_REASON_MAX_CHARS {
                return Err(ServiceError::field(
                    "reason",
                    "invalid",
                    format!("must be 1 to {PAUSE_REASON_MAX_CHARS} characters"),
                ));
            }
        }
        let inner = &*self.inner;
        let cap = inner.authorize(ctx, Action::DeclarativePause, Resource::default())?;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let pause = reason.map(|reason| Pause {
            at: uos_domain::now(),
            reason,
            by: ctx.actor_id(),
        });
        let before = match org {
            Some(slug) => {
                let d = uow
                    .tx()
                    .get_declared_org(slug)
                    .await?
                    .ok_or(ServiceError::NotFound)?;
                uow.tx().set_declared_pause(slug, pause.as_ref()).await?;
                d.paused
            }
            None => {
                let before = uow.tx().declarative_control().await?.paused;
                uow.tx().set_global_pause(pause.as_ref()).await?;
                before
            }
        };
        let target = org.unwrap_or("*").to_owned();
        match &pause {
            Some(p) => {
                uow.record(
                    AuditAction::DeclarativePaused,
                    None,
                    target,
                    serde_json::Value::Null,
                    serde_json::json!({"reason": p.reason}),
                )
                .await?
            }
            None => {
                let before = before.map_or(
                    serde_json::Value::Null,
                    |p| serde_json::json!({"reason": p.reason, "at": p.at, "by": p.by}),
                );
                uow.record(
                    AuditAction::DeclarativeResumed,
                    None,
                    target,
                    before,
                    serde_json::Value::Null,
                )
                .await?
            }
        }
        uow.commit_unanswered(&cap).await
    }

    /// Ask the reconciler to run now rather than at its next poll; with `org`, 404 unless a
    /// file declares it (a pass always covers every org).
    pub async fn request_declarative_sync(&self, ctx: &Ctx, org: Option<&str>) -> Result<()> {
        let inner = &*self.inner;
        let _cap = inner.authorize(ctx, Action::DeclarativeSync, Resource::default())?;
        if let Some(slug) = org {
            let mut r = inner.store.read().await?;
            r.get_declared_org(slug)
                .await?
                .ok_or(ServiceError::NotFound)?;
        }
        self.note_sync_request().await
    }

    /// A Git host's push event: `signature` is its `X-Hub-Signature-256` header
    /// (`sha256=<hex HMAC of the body>` with `declarative.webhook_secret`). A valid one asks
    /// the reconciler to run now; anything else is 401, and with no secret configured, 404.
    pub async fn declarative_webhook(
        &self,
        ctx: &Ctx,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<()> {
        let inner = &*self.inner;
        let _cap = inner.authorize(ctx, Action::DeclarativeWebhook, Resource::default())?;
        let Some(secret) = inner.push_secret.as_ref().map(|s| s.0.as_str()) else {
            return Err(ServiceError::NotFound);
        };
        if !signature.is_some_and(|s| signed_by(secret, body, s)) {
            return Err(ServiceError::Unauthenticated);
        }
        self.note_sync_request().await
    }

    async fn note_sync_request(&self) -> Result<()> {
        // Not an audited change: it asks for work, the work itself is audited.
        let mut tx = self.inner.store.begin().await?;
        tx.request_declarative_sync(uos_domain::now()).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Whether `header` is `sha256=<hex>` of the HMAC-SHA256 of `body` under `secret`; compared
/// in constant time.
fn signed_by(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| {
            unreachable!("HMAC takes a key of any length");
        });
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn only_the_right_secret_over_the_exact_body_is_accepted() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign("s3cret", body);
        assert!(signed_by("s3cret", body, &good));
        assert!(!signed_by("other", body, &good));
        assert!(!signed_by("s3cret", b"{}", &good));
        assert!(!signed_by(
            "s3cret",
            body,
            good.trim_start_matches("sha256=")
        ));
        assert!(!signed_by("s3cret", body, "sha256=zz"));
        assert!(!signed_by("s3cret", body, ""));
    }
}
