//! Invites: insert, lookups (by id within an org, by token hash), update and the paged list.

use crate::rows::{self, overfetch, uuid_cursor, INVITE_COLS};
use crate::sql::{json, query, QueryBuilder};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use uos_domain::{Invite, InviteId, OrgId};
use uos_store::{InviteReads, InviteRepo, Page, PageRequest, Result};

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> InviteReads for SqlTx<D, M> {
    async fn get_invite(&mut self, org: OrgId, id: InviteId) -> Result<Option<Invite>> {
        let sql = format!("select {INVITE_COLS} from invite where org_id = $1 and invite_id = $2");
        let row = query::<D>(&sql)
            .bind(org.0)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::invite).transpose()
    }

    async fn get_invite_by_token_hash(&mut self, token_hash: &str) -> Result<Option<Invite>> {
        let sql = format!("select {INVITE_COLS} from invite where token_hash = $1");
        let row = query::<D>(&sql)
            .bind(token_hash)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::invite).transpose()
    }

    async fn list_invites(&mut self, org: OrgId, page: &PageRequest) -> Result<Page<Invite>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q =
            QueryBuilder::<D>::new(format!("select {INVITE_COLS} from invite where org_id = "));
        q.push_bind(org.0);
        if let Some(after) = after {
            q.push(" and invite_id > ").push_bind(after);
        }
        q.push(" order by invite_id limit ")
            .push_bind(overfetch(page.limit));
        let found = q.fetch_all(self.conn()).await?;
        let invites = found.iter().map(rows::invite).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(invites, page.limit, |i| {
            i.id.to_string()
        }))
    }
}

#[async_trait]
impl<D: Dialect> InviteRepo for SqlTx<D> {
    #[tracing::instrument(skip_all)]
    async fn insert_invite(&mut self, invite: &Invite) -> Result<()> {
        query::<D>(
            "insert into invite (invite_id, org_id, email, roles, token_hash, expires_at, \
             created_by, created_at, accepted_at, revoked_at, version) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(invite.id.0)
        .bind(invite.org_id.0)
        .bind(invite.email.as_str())
        .bind(json(&invite.roles)?)
        .bind(&invite.token_hash)
        .bind(invite.expires_at)
        .bind(invite.created_by.map(|u| u.0))
        .bind(invite.created_at)
        .bind(invite.accepted_at)
        .bind(invite.revoked_at)
        .bind(invite.version)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn update_invite(&mut self, invite: &Invite, expected_version: i64) -> Result<()> {
        let done = query::<D>(
            "update invite set email = $3, roles = $4, token_hash = $5, expires_at = $6, \
             accepted_at = $7, revoked_at = $8, version = $9 \
             where invite_id = $1 and version = $2",
        )
        .bind(invite.id.0)
        .bind(expected_version)
        .bind(invite.email.as_str())
        .bind(json(&invite.roles)?)
        .bind(&invite.token_hash)
        .bind(invite.expires_at)
        .bind(invite.accepted_at)
        .bind(invite.revoked_at)
        .bind(invite.version)
        .execute(self.conn())
        .await?;
        self.settle_update(
            done.rows_affected(),
            "select 1 from invite where invite_id = $1",
            invite.id.0,
        )
        .await
    }
}
