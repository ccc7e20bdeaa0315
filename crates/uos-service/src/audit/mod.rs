//! Reading the audit trail, and the checkpoints that seal its chains.

pub(crate) mod checkpoints;
pub(crate) mod trail;
