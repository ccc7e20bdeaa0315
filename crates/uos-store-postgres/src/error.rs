//! Translation of sqlx errors into the port's [`StoreError`].

use std::sync::atomic::{AtomicU64, Ordering};
use uos_store::StoreError;

/// The unique indexes the port gives a conflict code to, by index name (see the migrations).
const UNIQUE_CODES: &[(&str, &str)] = &[
    ("org_slug_uq", "slug_taken"),
    ("user_account_email_uq", "email_taken"),
    ("membership_org_user_uq", "already_member"),
    ("custom_role_org_name_uq", "role_exists"),
    ("invite_token_hash_uq", "invite_token_taken"),
    ("password_reset_token_hash_uq", "reset_token_taken"),
    ("service_account_org_name_uq", "name_taken"),
    ("api_key_prefix_uq", "prefix_taken"),
    ("legal_hold_user_uq", "legal_hold_exists"),
    ("legal_hold_org_uq", "legal_hold_exists"),
    // Primary keys, under PostgreSQL's default names for them.
    ("external_identity_pkey", "identity_linked"),
    ("budget_pkey", "budget_exists"),
];

/// SQLSTATEs meaning "the database cannot serve us now" rather than "the request is wrong":
/// connection exceptions (class 08), too many connections, shutdown and start-up, and a
/// transaction chosen as a deadlock's victim (two units of work that append to the same two
/// audit chains in opposite orders): rolled back whole, so a retry is safe.
fn unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "53300" | "57P01" | "57P02" | "57P03" | "40P01")
}

/// SQLSTATE `read_only_sql_transaction`: a write on a read-only session (a hot standby, a
/// database set `default_transaction_read_only` during a failover, a read-only connection).
const READ_ONLY: &str = "25006";

/// When a write was last refused as read-only, in seconds since the epoch (0: never). While it
/// is recent, connections returned to the pool are checked and the read-only ones closed, so
/// writes recover by themselves once the database accepts them again (see `PgStore`).
static READ_ONLY_SEEN: AtomicU64 = AtomicU64::new(0);

/// How long after a refused write released connections are checked.
const READ_ONLY_WATCH_SECS: u64 = 60;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// True while a recently refused write makes pooled connections suspect.
pub(crate) fn read_only_recently() -> bool {
    now_secs().saturating_sub(READ_ONLY_SEEN.load(Ordering::Relaxed)) < READ_ONLY_WATCH_SECS
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(d) if d.code().is_some_and(|c| c == READ_ONLY) => {
            READ_ONLY_SEEN.store(now_secs(), Ordering::Relaxed);
            StoreError::ReadOnly(d.to_string())
        }
        sqlx::Error::Database(d) => {
            if d.is_unique_violation() {
                if let Some((_, code)) = d
                    .constraint()
                    .and_then(|name| UNIQUE_CODES.iter().find(|(n, _)| *n == name))
                {
                    return StoreError::Conflict(code);
                }
            }
            if d.code().is_some_and(|c| unavailable(&c)) {
                StoreError::Unavailable(d.to_string())
            } else {
                StoreError::Backend(d.to_string())
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Configuration(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        other => StoreError::Backend(other.to_string()),
    }
}
