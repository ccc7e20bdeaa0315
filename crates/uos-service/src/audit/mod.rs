//! Reading the audit trail, the checkpoints that seal its chains, exporting it to the object
//! store, and the relay that publishes it.

pub(crate) mod checkpoints;
pub(crate) mod exports;
pub(crate) mod personal;
pub(crate) mod relay;
pub(crate) mod trail;

use uos_authz::{Resource, ResourceKind};

/// The audit resource outside any org: the whole trail (and the keys that verify it).
fn whole_trail() -> Resource {
    Resource {
        kind: ResourceKind::Audit,
        ..Default::default()
    }
}
