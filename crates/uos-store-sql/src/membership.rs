//! Memberships: insert, lookup, optimistic update, delete, listings and the owner lock.

use crate::rows::{self, overfetch, uuid_cursor, MEMBERSHIP_COLS, MEMBER_USER_COLS};
use crate::sql::{json, query, QueryBuilder};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use uos_domain::{Membership, OrgId, RoleName, UserId};
use uos_store::{
    ListedMember, MemberFilter, MembershipReads, MembershipRepo, Page, PageRequest, Result,
    StoreError,
};

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> MembershipReads for SqlTx<D, M> {
    async fn get_membership(&mut self, org: OrgId, user: UserId) -> Result<Option<Membership>> {
        let sql =
            format!("select {MEMBERSHIP_COLS} from membership where org_id = $1 and user_id = $2");
        let row = query::<D>(&sql)
            .bind(org.0)
            .bind(user.0)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::membership).transpose()
    }

    async fn list_members(
        &mut self,
        filter: &MemberFilter,
        page: &PageRequest,
    ) -> Result<Page<ListedMember>> {
        let after = uuid_cursor(page.after.as_deref())?;
        // The page walks the org's membership index in order and joins each row's user by its
        // key: one statement, and no more rows read than the page shows. Every membership has
        // its user (a foreign key), so the inner join drops none.
        let mut q = QueryBuilder::<D>::new(format!(
            "select {MEMBERSHIP_COLS}, {MEMBER_USER_COLS} from membership \
             join user_account on user_account.user_id = membership.user_id \
             where membership.org_id = "
        ));
        q.push_bind(filter.org.0);
        if let Some(status) = filter.status {
            q.push(" and membership.status = ")
                .push_bind(status.as_str());
        }
        if let Some(after) = after {
            q.push(" and membership.membership_id > ").push_bind(after);
        }
        q.push(" order by membership.membership_id limit ")
            .push_bind(overfetch(page.limit));
        let found = q.fetch_all(self.conn()).await?;
        let members = found
            .iter()
            .map(rows::listed_member)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(members, page.limit, |m| {
            m.membership.id.to_string()
        }))
    }

    async fn list_memberships_of_user(&mut self, user: UserId) -> Result<Vec<Membership>> {
        let sql = format!(
            "select {MEMBERSHIP_COLS} from membership where user_id = $1 order by membership_id"
        );
        let found = query::<D>(&sql).bind(user.0).fetch_all(self.conn()).await?;
        found.iter().map(rows::membership).collect()
    }

    async fn count_members_with_role(&mut self, org: OrgId, role: &RoleName) -> Result<i64> {
        let sql = format!(
            "select count(*) as n from membership where org_id = $1 and {}",
            D::json_array_contains("membership.roles", "$2")
        );
        let row = query::<D>(&sql)
            .bind(org.0)
            .bind(role.as_str())
            .fetch_one(self.conn())
            .await?;
        rows::get(&row, "n")
    }
}

#[async_trait]
impl<D: Dialect> MembershipRepo for SqlTx<D> {
    #[tracing::instrument(skip_all)]
    async fn insert_membership(&mut self, m: &Membership) -> Result<()> {
        query::<D>(
            "insert into membership (membership_id, org_id, user_id, roles, status, created_at, \
             updated_at, version) values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(m.id.0)
        .bind(m.org_id.0)
        .bind(m.user_id.0)
        .bind(json(&m.roles)?)
        .bind(m.status.as_str())
        .bind(m.created_at)
        .bind(m.updated_at)
        .bind(m.version)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn update_membership(&mut self, m: &Membership, expected_version: i64) -> Result<()> {
        let done = query::<D>(
            "update membership set roles = $3, status = $4, updated_at = $5, version = $6 \
             where membership_id = $1 and version = $2",
        )
        .bind(m.id.0)
        .bind(expected_version)
        .bind(json(&m.roles)?)
        .bind(m.status.as_str())
        .bind(m.updated_at)
        .bind(m.version)
        .execute(self.conn())
        .await?;
        self.settle_update(
            done.rows_affected(),
            "select 1 from membership where membership_id = $1",
            m.id.0,
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_membership(&mut self, org: OrgId, user: UserId) -> Result<()> {
        let done = query::<D>("delete from membership where org_id = $1 and user_id = $2")
            .bind(org.0)
            .bind(user.0)
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn lock_active_owners(&mut self, org: OrgId) -> Result<Vec<UserId>> {
        // Locks exactly the owner rows, in a fixed order (no lock-order deadlocks), so two
        // concurrent demotions cannot both count the other as the remaining owner. (SQLite
        // needs no row locks: its write transaction already holds the database lock.)
        let sql = format!(
            "select user_id from membership \
             where org_id = $1 and status = 'active' and {} \
             order by membership_id{}",
            D::json_array_contains("membership.roles", "'owner'"),
            D::LOCK_ROWS
        );
        let found = query::<D>(&sql).bind(org.0).fetch_all(self.conn()).await?;
        found
            .iter()
            .map(|r| rows::get(r, "user_id").map(UserId))
            .collect()
    }
}
