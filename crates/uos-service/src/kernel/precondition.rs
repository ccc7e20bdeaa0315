//! Optimistic concurrency as the API offers it: a write that names the version it read
//! (`If-Match`) changes nothing if that version is no longer current.

use crate::{Result, ServiceError};

/// `If-Match` check: a stale version changes nothing and answers 412.
pub(crate) fn check_version(current: i64, if_match: Option<i64>) -> Result<()> {
    match if_match {
        Some(v) if v != current => Err(ServiceError::PreconditionFailed),
        _ => Ok(()),
    }
}
