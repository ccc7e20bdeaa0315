//! Spend budgets (per org, service account and member) and the usage counted against them.

pub(crate) mod book;
pub(crate) mod manage;
pub(crate) mod stream;
pub(crate) mod usage;
