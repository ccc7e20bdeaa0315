//! Reading the audit trail: filtered, paginated, org-scoped for org auditors and global for
//! platform admins.

use super::whole_trail;
use crate::{Ctx, Result, ServiceError, Services};
use uos_authz::{Action, ResourceKind};
use uos_domain::OrgSlug;
use uos_store::{AuditFilter, Page, PageRequest};

impl Services {
    /// `org` narrows to one org (needs `audit:read` there); without it the whole trail is
    /// read, which only platform admins may do.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_audit(
        &self,
        ctx: &Ctx,
        org: Option<&OrgSlug>,
        mut filter: AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<serde_json::Value>> {
        let inner = &*self.inner;
        let mut r = inner.store.read().await?;
        match org {
            Some(slug) => {
                let (org, _cap) = inner
                    .org_access(&mut *r, ctx, slug, Action::AuditRead, |res| {
                        res.kind = ResourceKind::Audit
                    })
                    .await?;
                filter.org = Some(org.id);
            }
            None => {
                let _cap = inner.authorize(ctx, Action::AuditRead, whole_trail())?;
            }
        }
        let page = r.list_audit(&filter, page).await?;
        Ok(page.map(|row| row.payload))
    }

    pub fn audit_keys(&self, ctx: &Ctx) -> Result<Vec<uos_keys::PublicKey>> {
        let _cap = self
            .inner
            .authorize(ctx, Action::AuditKeys, whole_trail())?;
        if ctx.caller.user().is_none() {
            return Err(ServiceError::Unauthenticated);
        }
        Ok(self.audit_public_keys())
    }
}
