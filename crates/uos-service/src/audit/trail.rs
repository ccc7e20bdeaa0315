//! Reading the audit trail: filtered, paginated, org-scoped for org auditors and global for
//! platform admins.

use super::personal;
use super::whole_trail;
use crate::{Ctx, Result, ServiceError, Services};
use std::collections::HashMap;
use std::sync::Arc;
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
        // An email target is stored as the address's subject (see `personal`): a filter
        // naming an address finds its events.
        if let Some(target) = filter.target.as_mut() {
            if target.contains('@') {
                *target = inner.subjects.email_subject(target);
            }
        }
        let mut page = r.list_audit(&filter, page).await?.map(|row| row.payload);
        drop(r);
        inner.reveal_personal(&mut page.items).await?;
        Ok(page)
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

impl crate::Inner {
    /// Adds to each served event what its personal fields decrypt to (`personal`) and which
    /// can no longer be decrypted (`erased`): see [`personal`]. Keys come from this replica's
    /// cache, else from the store in one read.
    pub(crate) async fn reveal_personal(&self, events: &mut [serde_json::Value]) -> Result<()> {
        let mut keys = HashMap::new();
        let mut missing = Vec::new();
        for subject in personal::subjects_of(events) {
            match self.subjects.cached(&subject) {
                Some(key) => {
                    keys.insert(subject, key);
                }
                None => missing.push(subject),
            }
        }
        if !missing.is_empty() {
            let rows = self.store.read().await?.get_subject_keys(&missing).await?;
            let unwrapped = personal::unwrap_keys(Arc::clone(&self.keys), rows)
                .await
                .map_err(ServiceError::Internal)?;
            for (subject, key) in unwrapped {
                self.subjects.remember(&subject, Arc::clone(&key));
                keys.insert(subject, key);
            }
        }
        personal::reveal(events, &keys);
        Ok(())
    }
}
