//! The service side of declarative config (contract § Declarative config); the file format
//! itself is `uos-reconcile`'s.

mod apply;
mod control;
mod guard;
mod record;

pub use apply::Step;
pub use control::{
    AttemptView, DeclaredStatusView, DriftDifference, DriftView, PauseView, PAUSE_REASON_MAX_CHARS,
};
pub use record::NotApplied;

/// The secret push webhooks are signed with; never printed.
#[derive(Clone)]
pub struct PushSecret(pub String);

impl std::fmt::Debug for PushSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushSecret(<redacted>)")
    }
}

use uos_authz::{Action, Resource};
use uos_store::ReadTx;

use crate::{Ctx, Result, Services};

impl Services {
    /// May the caller read the JSON Schema of declarative org files? Public, as the OpenAPI
    /// document is, and asked of the policy like every other endpoint.
    pub fn declarative_schema_access(&self, ctx: &Ctx) -> Result<()> {
        self.inner
            .authorize(ctx, Action::DeclarativeSchema, Resource::default())
            .map(drop)
    }

    /// A read of the whole store for planning declared org files against it (platform
    /// admins: a plan shows any org a file names). Only reads: nothing is applied or recorded.
    pub async fn declarative_plan_reads(&self, ctx: &Ctx) -> Result<Box<dyn ReadTx>> {
        self.inner
            .authorize(ctx, Action::DeclarativePlan, Resource::default())
            .map(drop)?;
        Ok(self.inner.store.read().await?)
    }
}
