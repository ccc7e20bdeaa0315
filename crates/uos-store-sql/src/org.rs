//! Organizations: insert, lookups, optimistic update and the keyset-paged list.

use crate::rows::{self, days_param, overfetch, uuid_cursor, ORG_COLS};
use crate::sql::{query, QueryBuilder};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use uos_domain::{Org, OrgId, OrgSlug};
use uos_store::{OrgFilter, OrgReads, OrgRepo, Page, PageRequest, Result};

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> OrgReads for SqlTx<D, M> {
    async fn get_org(&mut self, id: OrgId) -> Result<Option<Org>> {
        let sql = format!("select {ORG_COLS} from org where org_id = $1");
        let row = query::<D>(&sql)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::org).transpose()
    }

    async fn get_org_by_slug(&mut self, slug: &OrgSlug) -> Result<Option<Org>> {
        let sql = format!("select {ORG_COLS} from org where slug = $1");
        let row = query::<D>(&sql)
            .bind(slug.as_str())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::org).transpose()
    }

    async fn list_orgs(&mut self, filter: &OrgFilter, page: &PageRequest) -> Result<Page<Org>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q = QueryBuilder::<D>::new(format!("select {ORG_COLS} from org where true"));
        if let Some(user) = filter.member {
            q.push(
                " and exists (select 1 from membership \
                 where membership.org_id = org.org_id and membership.user_id = ",
            )
            .push_bind(user.0)
            .push(")");
        }
        if !filter.include_deleted {
            q.push(" and org.status <> 'deleted'");
        }
        if let Some(after) = after {
            q.push(" and org.org_id > ").push_bind(after);
        }
        q.push(" order by org.org_id limit ")
            .push_bind(overfetch(page.limit));
        let found = q.fetch_all(self.conn()).await?;
        let orgs = found.iter().map(rows::org).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(orgs, page.limit, |o| o.id.to_string()))
    }
}

#[async_trait]
impl<D: Dialect> OrgRepo for SqlTx<D> {
    #[tracing::instrument(skip_all)]
    async fn insert_org(&mut self, org: &Org) -> Result<()> {
        query::<D>(
            "insert into org (org_id, slug, display_name, status, status_before_delete, \
             deleted_at, api_key_max_days, created_at, updated_at, version) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(org.id.0)
        .bind(org.slug.as_str())
        .bind(&org.display_name)
        .bind(org.status.as_str())
        .bind(org.status_before_delete.map(|s| s.as_str()))
        .bind(org.deleted_at)
        .bind(days_param(org.api_key_max_days))
        .bind(org.created_at)
        .bind(org.updated_at)
        .bind(org.version)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn update_org(&mut self, org: &Org, expected_version: i64) -> Result<()> {
        let done = query::<D>(
            "update org set slug = $3, display_name = $4, status = $5, \
             status_before_delete = $6, deleted_at = $7, api_key_max_days = $8, \
             updated_at = $9, version = $10 \
             where org_id = $1 and version = $2",
        )
        .bind(org.id.0)
        .bind(expected_version)
        .bind(org.slug.as_str())
        .bind(&org.display_name)
        .bind(org.status.as_str())
        .bind(org.status_before_delete.map(|s| s.as_str()))
        .bind(org.deleted_at)
        .bind(days_param(org.api_key_max_days))
        .bind(org.updated_at)
        .bind(org.version)
        .execute(self.conn())
        .await?;
        self.settle_update(
            done.rows_affected(),
            "select 1 from org where org_id = $1",
            org.id.0,
        )
        .await
    }
}
