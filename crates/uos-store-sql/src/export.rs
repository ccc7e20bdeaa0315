//! Audit export jobs: inserted pending, claimed by one replica in one statement, moved along
//! by that claim only.

use crate::sql::{get, query, Row};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_domain::OrgId;
use uos_store::{
    AuditExport, ExportOutcome, ExportReads, ExportRepo, ExportStatus, Result, StoreError,
};
use uuid::Uuid;

const COLS: &str = "audit_export_id, org_id, requested_by, since, until, status, \
                    events_written, sha256, error, object_key, created_at, updated_at";

/// What makes a job claimable: pending, or running with a row that stopped moving since the
/// time bound at placeholder `$n` (placeholders are numbered in the order they appear).
fn claimable(n: u8) -> String {
    format!("(status = 'pending' or (status = 'running' and updated_at < ${n}))")
}

fn export<D: Dialect>(r: &Row<D>) -> Result<AuditExport> {
    let status: String = get(r, "status")?;
    Ok(AuditExport {
        id: get(r, "audit_export_id")?,
        org_id: get::<_, Option<Uuid>>(r, "org_id")?.map(OrgId),
        requested_by: get(r, "requested_by")?,
        since: get(r, "since")?,
        until: get(r, "until")?,
        status: ExportStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("audit_export.status: {status:?}")))?,
        events_written: get(r, "events_written")?,
        sha256: get(r, "sha256")?,
        error: get(r, "error")?,
        object_key: get(r, "object_key")?,
        created_at: get(r, "created_at")?,
        updated_at: get(r, "updated_at")?,
    })
}

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> ExportReads for SqlTx<D, M> {
    async fn get_audit_export(&mut self, id: Uuid) -> Result<Option<AuditExport>> {
        query::<D>(&format!(
            "select {COLS} from audit_export where audit_export_id = $1"
        ))
        .bind(id)
        .fetch_optional(self.conn())
        .await?
        .as_ref()
        .map(export)
        .transpose()
    }

    async fn claimable_audit_exports(
        &mut self,
        stale_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Uuid>> {
        let found = query::<D>(&format!(
            "select audit_export_id from audit_export where {} \
             order by audit_export_id limit $2",
            claimable(1)
        ))
        .bind(stale_before)
        .bind(i64::from(limit))
        .fetch_all(self.conn())
        .await?;
        found.iter().map(|r| get(r, "audit_export_id")).collect()
    }
}

#[async_trait]
impl<D: Dialect> ExportRepo for SqlTx<D> {
    async fn insert_audit_export(&mut self, e: &AuditExport) -> Result<()> {
        query::<D>(&format!(
            "insert into audit_export ({COLS}) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(e.id)
        .bind(e.org_id.map(|o| o.0))
        .bind(e.requested_by.as_str())
        .bind(e.since)
        .bind(e.until)
        .bind(e.status.as_str())
        .bind(e.events_written)
        .bind(e.sha256.as_deref())
        .bind(e.error.as_deref())
        .bind(e.object_key.as_deref())
        .bind(e.created_at)
        .bind(e.updated_at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn claim_audit_export(
        &mut self,
        id: Uuid,
        claim: Uuid,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        // One conditional update: the row is the lock, so of two claimants the second finds
        // it running (and fresh) and changes nothing.
        let done = query::<D>(&format!(
            "update audit_export set status = 'running', claim = $1, updated_at = $2, \
             events_written = 0, error = null \
             where audit_export_id = $3 and {}",
            claimable(4)
        ))
        .bind(claim)
        .bind(now)
        .bind(id)
        .bind(stale_before)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn audit_export_progress(
        &mut self,
        id: Uuid,
        claim: Uuid,
        events_written: i64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = query::<D>(
            "update audit_export set events_written = $1, updated_at = $2 \
             where audit_export_id = $3 and claim = $4 and status = 'running'",
        )
        .bind(events_written)
        .bind(now)
        .bind(id)
        .bind(claim)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_audit_export(
        &mut self,
        id: Uuid,
        claim: Uuid,
        outcome: &ExportOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (status, written, sha256, key, error) = match outcome {
            ExportOutcome::Done {
                events_written,
                sha256,
                object_key,
            } => (
                ExportStatus::Done,
                *events_written,
                Some(sha256.as_str()),
                Some(object_key.as_str()),
                None,
            ),
            ExportOutcome::Failed {
                events_written,
                error,
            } => (
                ExportStatus::Failed,
                *events_written,
                None,
                None,
                Some(error.as_str()),
            ),
        };
        let done = query::<D>(
            "update audit_export set status = $1, events_written = $2, sha256 = $3, \
             object_key = $4, error = $5, updated_at = $6 \
             where audit_export_id = $7 and claim = $8 and status = 'running'",
        )
        .bind(status.as_str())
        .bind(written)
        .bind(sha256)
        .bind(key)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(claim)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
