//! Reading the audit trail: filtered, paginated, org-scoped for org auditors and global for
//! platform admins.

use super::personal;
use super::whole_trail;
use crate::kernel::reads::LazyRead;
use crate::{Ctx, Result, ServiceError, Services};
use serde_json::value::RawValue;
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
    ) -> Result<Page<Box<RawValue>>> {
        let inner = &*self.inner;
        let mut r = LazyRead::new(&*inner.store);
        match org {
            Some(slug) => {
                let (org, _cap) = inner
                    .org_read_access(&mut r, ctx, slug, Action::AuditRead, |res| {
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
        let page = r.get().await?.list_audit(&filter, page).await?;
        drop(r);
        let stored = page.items.into_iter().map(|row| row.payload).collect();
        Ok(Page {
            items: inner.serve_events(stored).await?,
            next: page.next,
        })
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
    /// Stored event payloads as readers are served them (the events API, exports). Most are
    /// sent as stored, never parsed: only an event that may hold encrypted personal fields is
    /// parsed, to add what they decrypt to ([`reveal_personal`](Self::reveal_personal)).
    pub(crate) async fn serve_events(
        &self,
        mut events: Vec<Box<RawValue>>,
    ) -> Result<Vec<Box<RawValue>>> {
        let mut at = Vec::new();
        let mut parsed = Vec::new();
        for (i, event) in events.iter().enumerate() {
            if served_as_stored(event.get()) {
                continue;
            }
            let value = serde_json::from_str(event.get())
                .map_err(|e| ServiceError::Internal(format!("stored audit event: {e}")))?;
            at.push(i);
            parsed.push(value);
        }
        if parsed.is_empty() {
            return Ok(events);
        }
        self.reveal_personal(&mut parsed).await?;
        for (i, value) in at.into_iter().zip(parsed) {
            events[i] = serde_json::value::to_raw_value(&value)
                .map_err(|e| ServiceError::Internal(format!("serving an audit event: {e}")))?;
        }
        Ok(events)
    }

    /// Adds to each served event what its personal fields decrypt to (`personal`) and which
    /// can no longer be decrypted (`erased`): see [`personal`]. Keys come from this replica's
    /// cache, else from the store in one read.
    async fn reveal_personal(&self, events: &mut [serde_json::Value]) -> Result<()> {
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

/// Whether a stored payload is served exactly as stored. Not if it may hold an encrypted field:
/// every such field is a JSON string starting with [`personal::PREFIX`], which the writer
/// (serde_json, escaping no printable ASCII) stores literally, so a payload without that text
/// has none (and one that merely mentions it is parsed and found to have none). Nor if it holds
/// a line break, which only whitespace between tokens can be (a string escapes it): the service
/// stores compact JSON, but an export must be one event per line whatever the store holds.
fn served_as_stored(text: &str) -> bool {
    !text.contains(personal::PREFIX) && !text.contains('\n')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn only_payloads_that_may_hold_personal_fields_or_line_breaks_are_parsed() {
        assert!(served_as_stored(
            r#"{"changes":{"after":{"roles":["member"]},"before":null},"id":"x"}"#
        ));
        assert!(!served_as_stored(
            r#"{"changes":{"after":{"email":"uos-pd:1:user:u:AAAA"},"before":null}}"#
        ));
        assert!(!served_as_stored("{\"a\":\n1}"));
        assert!(
            served_as_stored(r#"{"reason":"line\nbreak"}"#),
            "an escaped line break inside a string is not a line of its own"
        );
    }
}
