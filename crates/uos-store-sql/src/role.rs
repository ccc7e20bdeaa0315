//! Custom roles: insert, lookup by name, optimistic update, delete and name-ordered listings.

use crate::error::bad_cursor;
use crate::rows::{self, overfetch, ROLE_COLS};
use crate::sql::{json, query, QueryBuilder};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use uos_domain::{CustomRole, OrgId, RoleName};
use uos_store::{Page, PageRequest, Result, RoleReads, RoleRepo, StoreError};

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> RoleReads for SqlTx<D, M> {
    async fn get_role(&mut self, org: OrgId, name: &RoleName) -> Result<Option<CustomRole>> {
        let sql = format!("select {ROLE_COLS} from custom_role where org_id = $1 and name = $2");
        let row = query::<D>(&sql)
            .bind(org.0)
            .bind(name.as_str())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::role).transpose()
    }

    async fn list_roles(&mut self, org: OrgId, page: &PageRequest) -> Result<Page<CustomRole>> {
        let after = page
            .after
            .as_deref()
            .map(|s| RoleName::parse(s).map_err(|_| bad_cursor()))
            .transpose()?;
        let mut q = QueryBuilder::<D>::new(format!(
            "select {ROLE_COLS} from custom_role where org_id = "
        ));
        q.push_bind(org.0);
        if let Some(after) = &after {
            q.push(" and name > ").push_bind(after.as_str());
        }
        q.push(" order by name limit ")
            .push_bind(overfetch(page.limit));
        let found = q.fetch_all(self.conn()).await?;
        let roles = found.iter().map(rows::role).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(roles, page.limit, |r| {
            r.name.as_str().to_string()
        }))
    }

    async fn all_roles(&mut self, org: OrgId) -> Result<Vec<CustomRole>> {
        let sql = format!("select {ROLE_COLS} from custom_role where org_id = $1 order by name");
        let found = query::<D>(&sql).bind(org.0).fetch_all(self.conn()).await?;
        found.iter().map(rows::role).collect()
    }
}

#[async_trait]
impl<D: Dialect> RoleRepo for SqlTx<D> {
    #[tracing::instrument(skip_all)]
    async fn insert_role(&mut self, role: &CustomRole) -> Result<()> {
        query::<D>(
            "insert into custom_role (custom_role_id, org_id, name, description, permissions, \
             inherits, created_at, updated_at, version) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(role.id.0)
        .bind(role.org_id.0)
        .bind(role.name.as_str())
        .bind(&role.description)
        .bind(json(&role.permissions)?)
        .bind(json(&role.inherits)?)
        .bind(role.created_at)
        .bind(role.updated_at)
        .bind(role.version)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn update_role(&mut self, role: &CustomRole, expected_version: i64) -> Result<()> {
        let done = query::<D>(
            "update custom_role set name = $3, description = $4, permissions = $5, \
             inherits = $6, updated_at = $7, version = $8 \
             where custom_role_id = $1 and version = $2",
        )
        .bind(role.id.0)
        .bind(expected_version)
        .bind(role.name.as_str())
        .bind(&role.description)
        .bind(json(&role.permissions)?)
        .bind(json(&role.inherits)?)
        .bind(role.updated_at)
        .bind(role.version)
        .execute(self.conn())
        .await?;
        self.settle_update(
            done.rows_affected(),
            "select 1 from custom_role where custom_role_id = $1",
            role.id.0,
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_role(&mut self, org: OrgId, name: &RoleName) -> Result<()> {
        let done = query::<D>("delete from custom_role where org_id = $1 and name = $2")
            .bind(org.0)
            .bind(name.as_str())
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
