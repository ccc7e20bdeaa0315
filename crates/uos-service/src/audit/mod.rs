//! Reading the audit trail.

pub(crate) mod trail;
