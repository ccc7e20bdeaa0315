//! Reading the audit trail, the checkpoints that seal its chains, and the relay that
//! publishes it.

pub(crate) mod checkpoints;
pub(crate) mod relay;
pub(crate) mod trail;
