//! Errors every backend reports the same way (the backend-specific mapping of sqlx errors is
//! [`Dialect::map_err`](crate::Dialect::map_err)).

use uos_store::StoreError;

/// A stored value that the domain refuses (a parse error), named by its column.
pub(crate) fn corrupt(column: &'static str) -> impl Fn(uos_domain::DomainError) -> StoreError {
    move |e| StoreError::Corrupt(format!("{column}: {e}"))
}

/// The HTTP layer validates cursors; an unparsable one reaching the store is a bug upstream.
pub(crate) fn bad_cursor() -> StoreError {
    StoreError::Corrupt("bad cursor".into())
}
