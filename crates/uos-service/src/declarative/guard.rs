//! Keeping people's hands off what a config repo declares: an interactive change to a declared
//! field of a managed org is refused (409 `managed_by_declarative`) unless the org, or the
//! reconciler as a whole, is paused. Otherwise the next reconcile would silently undo it.

use uos_domain::OrgId;
use uos_store::ReadTx;

use crate::{Caller, Ctx, Inner, Result, ServiceError};

impl Inner {
    /// Refuses the change unless the reconciler makes it, `org` is not declared, or it is
    /// paused. Called once the caller is authorized, so outsiders still get the policy's 404.
    pub(crate) async fn refuse_if_declared(
        &self,
        tx: &mut dyn ReadTx,
        ctx: &Ctx,
        org: OrgId,
    ) -> Result<()> {
        if matches!(ctx.caller, Caller::Reconciler(_)) {
            return Ok(());
        }
        let Some(declared) = tx.declared_org_of(org).await? else {
            return Ok(());
        };
        if declared.paused.is_some() || tx.declarative_control().await?.paused.is_some() {
            return Ok(());
        }
        Err(ServiceError::conflict(
            "managed_by_declarative",
            format!(
                "this org is managed by {} in the config repo: change it there, or pause the \
                 org's reconciliation first",
                declared.file
            ),
        ))
    }
}
