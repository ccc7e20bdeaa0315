//! The service side of declarative config (contract § Declarative config); the file format
//! itself is `uos-reconcile`'s.

use uos_authz::{Action, Resource};

use crate::{Ctx, Result, Services};

impl Services {
    /// May the caller read the JSON Schema of declarative org files? Public, as the OpenAPI
    /// document is, and asked of the policy like every other endpoint.
    pub fn declarative_schema_access(&self, ctx: &Ctx) -> Result<()> {
        self.inner
            .authorize(ctx, Action::DeclarativeSchema, Resource::default())
            .map(drop)
    }
}
