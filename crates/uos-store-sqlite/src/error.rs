//! Translation of sqlx errors into the port's [`StoreError`].

use uos_store::StoreError;

/// The unique indexes the port gives a conflict code to, keyed by the column list SQLite names
/// in "UNIQUE constraint failed: …" (SQLite does not report index names).
const UNIQUE_CODES: &[(&str, &str)] = &[
    ("org.slug", "slug_taken"),
    ("user_account.email", "email_taken"),
    ("membership.org_id, membership.user_id", "already_member"),
    ("custom_role.org_id, custom_role.name", "role_exists"),
    ("invite.token_hash", "invite_token_taken"),
    ("password_reset.token_hash", "reset_token_taken"),
    (
        "external_identity.issuer, external_identity.subject",
        "identity_linked",
    ),
    ("service_account.org_id, service_account.name", "name_taken"),
    ("api_key.prefix", "prefix_taken"),
    ("legal_hold.user_id", "legal_hold_exists"),
    ("legal_hold.org_id", "legal_hold_exists"),
    (
        "budget.org_id, budget.scope, budget.scope_id",
        "budget_exists",
    ),
];

/// Primary result codes that mean "the database cannot serve us now": busy/locked after the
/// busy timeout, cannot open, I/O failure, full disk.
const UNAVAILABLE_CODES: &[i64] = &[5, 6, 10, 13, 14];

/// `SQLITE_READONLY`: the file, its directory or the connection (`query_only`) refuses writes.
const READ_ONLY_CODE: i64 = 8;

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(d) => {
            if d.is_unique_violation() {
                let msg = d.message();
                if let Some((_, code)) = UNIQUE_CODES.iter().find(|(cols, _)| msg.ends_with(cols)) {
                    return StoreError::Conflict(code);
                }
            }
            // Extended result codes carry the primary code in their low byte.
            let primary = d
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            if primary == Some(READ_ONLY_CODE) {
                StoreError::ReadOnly(d.to_string())
            } else if primary.is_some_and(|c| UNAVAILABLE_CODES.contains(&c)) {
                StoreError::Unavailable(d.to_string())
            } else {
                StoreError::Backend(d.to_string())
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        other => StoreError::Backend(other.to_string()),
    }
}
