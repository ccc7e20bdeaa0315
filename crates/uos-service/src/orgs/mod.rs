//! Organizations and what belongs to them: the org lifecycle, members, invites and custom roles.

pub(crate) mod cache;
pub(crate) mod invites;
pub(crate) mod lifecycle;
pub(crate) mod members;
pub(crate) mod roles;
