//! Optimistic concurrency as the API offers it: a write that names the versions it may
//! change (`If-Match`) changes nothing if the current version is not one of them.

use crate::{Result, ServiceError};

/// What `If-Match` asks of a resource's current version (RFC 9110 §13.1.1), once the HTTP
/// layer has parsed the header: nothing (no header, or `*` on a resource that exists), or that
/// the version is one of a list. The list may be empty: weak tags never match under the strong
/// comparison `If-Match` uses, nor do tags this service never issued, so a header made only of
/// those fails against every version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Precondition {
    #[default]
    None,
    OneOf(Vec<i64>),
}

impl Precondition {
    pub fn holds(&self, current: i64) -> bool {
        match self {
            Self::None => true,
            Self::OneOf(versions) => versions.contains(&current),
        }
    }
}

/// `If-Match` check: a stale version changes nothing and answers 412.
pub(crate) fn check_version(current: i64, if_match: &Precondition) -> Result<()> {
    if if_match.holds(current) {
        Ok(())
    } else {
        Err(ServiceError::PreconditionFailed)
    }
}
