//! The rows of every table, counted: what a backup's manifest records and a restore is
//! checked against.

use crate::rows::get;
use crate::sql::query;
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use uos_store::{InventoryReads, Result};

/// Every table of the schema, by name (both backends' migrations end with these tables); the
/// conformance suite holds this list to the migrated schema.
pub const TABLES: &[&str] = &[
    "api_key",
    "approval",
    "audit_chain",
    "audit_checkpoint",
    "audit_event",
    "audit_export",
    "audit_relay",
    "budget",
    "budget_state",
    "custom_role",
    "declarative_control",
    "declared_object",
    "declared_org",
    "external_identity",
    "idempotency",
    "invite",
    "lease",
    "legal_hold",
    "membership",
    "org",
    "password_history",
    "password_reset",
    "refresh_token",
    "revoked_access_token",
    "service_account",
    "session",
    "subject_key",
    "usage_event",
    "usage_spend",
    "user_account",
    "user_recovery_code",
    "user_totp",
    "webhook_delivery",
];

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> InventoryReads for SqlTx<D, M> {
    async fn row_counts(&mut self) -> Result<Vec<(String, i64)>> {
        // One statement, so the counts are of one snapshot where the backend gives one.
        let sql = TABLES
            .iter()
            .map(|t| format!("select '{t}' as t, count(*) as n from {t}"))
            .collect::<Vec<_>>()
            .join(" union all ");
        let rows = query::<D>(&sql).fetch_all(self.conn()).await?;
        rows.iter()
            .map(|r| Ok((get::<D, &str>(r, "t")?.to_owned(), get::<D, i64>(r, "n")?)))
            .collect()
    }
}
