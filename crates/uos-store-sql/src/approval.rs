//! Approvals: requests waiting for two approvers, and the grants they became.

use crate::rows::{get, overfetch, uuid_cursor};
use crate::sql::{query, QueryBuilder, Row};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_domain::{Approval, ApprovalKind, ApprovalStatus, Approver, OrgId, UserId};
use uos_store::{ApprovalReads, ApprovalRepo, Page, PageRequest, Result, StoreError};

const COLS: &str = "approval_id, kind, org_id, requested_by, subject_id, reason, detail, status, \
     approvers, created_at, pending_until, grant_secs, active_from, active_until, ended_at, \
     ended_by, version";

fn approval<D: Dialect>(r: &Row<D>) -> Result<Approval> {
    let corrupt =
        |col: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("approval: {col}: {e}"));
    let detail: String = get(r, "detail")?;
    let approvers: Vec<Approver> = serde_json::from_str(&get::<_, String>(r, "approvers")?)
        .map_err(|e| corrupt("approvers", &e))?;
    Ok(Approval {
        id: get(r, "approval_id")?,
        kind: ApprovalKind::parse(&get::<_, String>(r, "kind")?)
            .map_err(|e| corrupt("kind", &e))?,
        org_id: get::<_, Option<uuid::Uuid>>(r, "org_id")?.map(OrgId),
        requested_by: UserId(get(r, "requested_by")?),
        subject_id: get(r, "subject_id")?,
        reason: get(r, "reason")?,
        detail: serde_json::from_str(&detail).map_err(|e| corrupt("detail", &e))?,
        status: ApprovalStatus::parse(&get::<_, String>(r, "status")?)
            .map_err(|e| corrupt("status", &e))?,
        approvers,
        created_at: get(r, "created_at")?,
        pending_until: get(r, "pending_until")?,
        grant_secs: get(r, "grant_secs")?,
        active_from: get(r, "active_from")?,
        active_until: get(r, "active_until")?,
        ended_at: get(r, "ended_at")?,
        ended_by: get::<_, Option<uuid::Uuid>>(r, "ended_by")?.map(UserId),
        version: get(r, "version")?,
    })
}

fn approvers_json(a: &Approval) -> Result<String> {
    serde_json::to_string(&a.approvers).map_err(|e| StoreError::Backend(e.to_string()))
}

/// Appends the condition "has `status` at `now`" (expiry is read from the times, see the
/// migration).
fn push_status<D: Dialect>(
    q: &mut QueryBuilder<'_, D>,
    status: ApprovalStatus,
    now: DateTime<Utc>,
) {
    match status {
        ApprovalStatus::Pending => {
            q.push(" and status = 'pending' and pending_until > ")
                .push_bind(now);
        }
        ApprovalStatus::Active => {
            q.push(" and status = 'active' and active_until > ")
                .push_bind(now);
        }
        ApprovalStatus::Expired => {
            q.push(" and (status = 'expired' or (status = 'pending' and pending_until <= ")
                .push_bind(now)
                .push(") or (status = 'active' and active_until <= ")
                .push_bind(now)
                .push("))");
        }
        ApprovalStatus::Rejected | ApprovalStatus::Revoked => {
            q.push(" and status = ").push_bind(status.as_str());
        }
    }
}

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> ApprovalReads for SqlTx<D, M> {
    async fn get_approval(&mut self, id: uuid::Uuid) -> Result<Option<Approval>> {
        let sql = format!("select {COLS} from approval where approval_id = $1");
        let row = query::<D>(&sql)
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(approval).transpose()
    }

    async fn get_approval_by_subject(
        &mut self,
        kind: ApprovalKind,
        subject: uuid::Uuid,
    ) -> Result<Option<Approval>> {
        let sql = format!(
            "select {COLS} from approval where subject_id = $1 and kind = $2 \
             order by approval_id desc limit 1"
        );
        let row = query::<D>(&sql)
            .bind(subject)
            .bind(kind.as_str())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(approval).transpose()
    }

    async fn list_approvals(
        &mut self,
        kind: ApprovalKind,
        org: Option<OrgId>,
        status: Option<ApprovalStatus>,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<Approval>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q = QueryBuilder::<D>::new(format!("select {COLS} from approval where kind = "));
        q.push_bind(kind.as_str());
        if let Some(org) = org {
            q.push(" and org_id = ").push_bind(org.0);
        }
        if let Some(status) = status {
            push_status(&mut q, status, now);
        }
        if let Some(after) = after {
            q.push(" and approval_id < ").push_bind(after);
        }
        q.push(" order by approval_id desc limit ")
            .push_bind(overfetch(page.limit));
        let items = q
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(approval)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.limit, |a| {
            a.id.to_string()
        }))
    }

    async fn lapsed_approvals(&mut self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Approval>> {
        let sql = format!(
            "select {COLS} from approval where (status = 'pending' and pending_until <= $1) \
             or (status = 'active' and active_until <= $1) order by approval_id limit $2"
        );
        let rows = query::<D>(&sql)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(self.conn())
            .await?;
        rows.iter().map(approval).collect()
    }

    async fn active_approvals(
        &mut self,
        kind: ApprovalKind,
        org: Option<OrgId>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Approval>> {
        let mut q = QueryBuilder::<D>::new(format!("select {COLS} from approval where kind = "));
        q.push_bind(kind.as_str());
        if let Some(org) = org {
            q.push(" and org_id = ").push_bind(org.0);
        }
        push_status(&mut q, ApprovalStatus::Active, now);
        q.push(" order by approval_id");
        q.fetch_all(self.conn())
            .await?
            .iter()
            .map(approval)
            .collect()
    }
}

#[async_trait]
impl<D: Dialect> ApprovalRepo for SqlTx<D> {
    async fn insert_approval(&mut self, a: &Approval) -> Result<()> {
        let sql = format!(
            "insert into approval ({COLS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17)"
        );
        query::<D>(&sql)
            .bind(a.id)
            .bind(a.kind.as_str())
            .bind(a.org_id.map(|o| o.0))
            .bind(a.requested_by.0)
            .bind(a.subject_id)
            .bind(a.reason.as_str())
            .bind(a.detail.to_string())
            .bind(a.status.as_str())
            .bind(approvers_json(a)?)
            .bind(a.created_at)
            .bind(a.pending_until)
            .bind(a.grant_secs)
            .bind(a.active_from)
            .bind(a.active_until)
            .bind(a.ended_at)
            .bind(a.ended_by.map(|u| u.0))
            .bind(a.version)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn update_approval(&mut self, a: &Approval, expected_version: i64) -> Result<()> {
        let done = query::<D>(
            "update approval set status = $3, approvers = $4, active_from = $5, \
             active_until = $6, ended_at = $7, ended_by = $8, version = $9 \
             where approval_id = $1 and version = $2",
        )
        .bind(a.id)
        .bind(expected_version)
        .bind(a.status.as_str())
        .bind(approvers_json(a)?)
        .bind(a.active_from)
        .bind(a.active_until)
        .bind(a.ended_at)
        .bind(a.ended_by.map(|u| u.0))
        .bind(a.version)
        .execute(self.conn())
        .await?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        Err(match self.get_approval(a.id).await? {
            Some(_) => StoreError::VersionConflict,
            None => StoreError::NotFound,
        })
    }
}
