//! Memberships: insert, lookup, optimistic update, delete, listings and the owner lock.

use crate::error::db_err;
use crate::rows::{self, overfetch, uuid_cursor, MEMBERSHIP_COLS};
use crate::tx::SqliteTx;
use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{QueryBuilder, Sqlite};
use uos_domain::{Membership, OrgId, RoleName, UserId};
use uos_store::{MemberFilter, MembershipRepo, Page, PageRequest, Result, StoreError};

#[async_trait]
impl MembershipRepo for SqliteTx {
    #[tracing::instrument(skip_all)]
    async fn insert_membership(&mut self, m: &Membership) -> Result<()> {
        sqlx::query(
            "insert into membership (membership_id, org_id, user_id, roles, status, created_at, \
             updated_at, version) values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(m.id.0)
        .bind(m.org_id.0)
        .bind(m.user_id.0)
        .bind(Json(&m.roles))
        .bind(m.status.as_str())
        .bind(m.created_at)
        .bind(m.updated_at)
        .bind(m.version)
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_membership(&mut self, org: OrgId, user: UserId) -> Result<Option<Membership>> {
        let sql =
            format!("select {MEMBERSHIP_COLS} from membership where org_id = $1 and user_id = $2");
        let row = sqlx::query(&sql)
            .bind(org.0)
            .bind(user.0)
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::membership).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn update_membership(&mut self, m: &Membership, expected_version: i64) -> Result<()> {
        let done = sqlx::query(
            "update membership set roles = $3, status = $4, updated_at = $5, version = $6 \
             where membership_id = $1 and version = $2",
        )
        .bind(m.id.0)
        .bind(expected_version)
        .bind(Json(&m.roles))
        .bind(m.status.as_str())
        .bind(m.updated_at)
        .bind(m.version)
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        self.settle_update(
            done.rows_affected(),
            "select 1 from membership where membership_id = $1",
            m.id.0,
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_membership(&mut self, org: OrgId, user: UserId) -> Result<()> {
        let done = sqlx::query("delete from membership where org_id = $1 and user_id = $2")
            .bind(org.0)
            .bind(user.0)
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn list_members(
        &mut self,
        filter: &MemberFilter,
        page: &PageRequest,
    ) -> Result<Page<Membership>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "select {MEMBERSHIP_COLS} from membership where org_id = "
        ));
        q.push_bind(filter.org.0);
        if let Some(status) = filter.status {
            q.push(" and status = ").push_bind(status.as_str());
        }
        if let Some(after) = after {
            q.push(" and membership_id > ").push_bind(after);
        }
        q.push(" order by membership_id limit ")
            .push_bind(overfetch(page.limit));
        let found = q.build().fetch_all(self.conn()).await.map_err(db_err)?;
        let members = found
            .iter()
            .map(rows::membership)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(members, page.limit, |m| {
            m.id.to_string()
        }))
    }

    async fn list_memberships_of_user(&mut self, user: UserId) -> Result<Vec<Membership>> {
        let sql = format!(
            "select {MEMBERSHIP_COLS} from membership where user_id = $1 order by membership_id"
        );
        let found = sqlx::query(&sql)
            .bind(user.0)
            .fetch_all(self.conn())
            .await
            .map_err(db_err)?;
        found.iter().map(rows::membership).collect()
    }

    async fn lock_active_owners(&mut self, org: OrgId) -> Result<Vec<UserId>> {
        // No row locks in SQLite: the caller's write transaction already holds the database
        // write lock, which serialises concurrent demotions.
        let found: Vec<uuid::Uuid> = sqlx::query_scalar(
            "select user_id from membership \
             where org_id = $1 and status = 'active' \
             and exists (select 1 from json_each(membership.roles) where json_each.value = 'owner') \
             order by membership_id",
        )
        .bind(org.0)
        .fetch_all(self.conn())
        .await
        .map_err(db_err)?;
        Ok(found.into_iter().map(UserId).collect())
    }

    async fn count_members_with_role(&mut self, org: OrgId, role: &RoleName) -> Result<i64> {
        sqlx::query_scalar(
            "select count(*) from membership where org_id = $1 \
             and exists (select 1 from json_each(membership.roles) where json_each.value = $2)",
        )
        .bind(org.0)
        .bind(role.as_str())
        .fetch_one(self.conn())
        .await
        .map_err(db_err)
    }
}
