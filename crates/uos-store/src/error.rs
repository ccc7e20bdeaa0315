//! The storage error type: what a caller can act on, with backend detail kept for logs.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// A uniqueness rule was hit; the string is a stable code (`slug_taken`, `email_taken`,
    /// `already_member`, `role_exists`).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The row is absent (for operations that require it).
    #[error("not found")]
    NotFound,
    /// Optimistic lock lost: the stored version is not the expected one.
    #[error("version conflict")]
    VersionConflict,
    /// The database cannot be reached or the pool is exhausted/closed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database refuses writes: a read-only replica, a failover in progress, or a store
    /// opened read-only. Reads still work; a retry later may succeed.
    #[error("store is read-only: {0}")]
    ReadOnly(String),
    /// A stored value no longer parses into a domain type (corruption or a bad migration).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Anything else from the driver; logged, never shown to clients.
    #[error("database error: {0}")]
    Backend(String),
}
