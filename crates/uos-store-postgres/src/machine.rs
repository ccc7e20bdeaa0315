//! Machine identities: service accounts, their API keys (lookup by prefix, batched usage,
//! the rotation-overdue sweep) and revoked client-credentials access tokens.

use crate::error::db_err;
use crate::rows::{self, days_param, overfetch, uuid_cursor, API_KEY_COLS, SERVICE_ACCOUNT_COLS};
use crate::tx::PgTx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};
use uos_domain::{ApiKey, ApiKeyId, OrgId, RoleName, ServiceAccount, ServiceAccountId};
use uos_store::{MachineRepo, Page, PageRequest, Result};

/// Keys joined with their accounts, for the overdue queries (which add `push_overdue`).
const KEYS_WITH_ACCOUNTS: &str = "from api_key join service_account \
     on service_account.service_account_id = api_key.service_account_id where true";

/// The overdue predicate of the port: the key is unrevoked, unreplaced and unexpired at `now`,
/// and its undeleted account has a maximum key age that `created_at + max_key_age_days days`
/// has reached. Written as "the key's age in seconds reaches the days in seconds": a day is
/// exactly 86400 s as in the domain (`interval '1 day'` would follow the session time zone's
/// DST), the epoch of an interval is exact numeric, and no day count, however large, can
/// overflow an interval and fail the whole sweep.
fn push_overdue(q: &mut QueryBuilder<'_, Postgres>, now: DateTime<Utc>) {
    q.push(
        " and api_key.revoked_at is null and api_key.replaced_by is null \
         and (api_key.expires_at is null or api_key.expires_at > ",
    )
    .push_bind(now)
    .push(
        ") and service_account.status <> 'deleted' \
         and service_account.max_key_age_days is not null \
         and extract(epoch from ",
    )
    .push_bind(now)
    .push(" - api_key.created_at) >= service_account.max_key_age_days * 86400");
}

#[async_trait]
impl MachineRepo for PgTx {
    #[tracing::instrument(skip_all)]
    async fn insert_service_account(&mut self, sa: &ServiceAccount) -> Result<()> {
        sqlx::query(
            "insert into service_account (service_account_id, org_id, name, description, roles, \
             status, max_key_age_days, refuse_after_days, client_secret_hash, \
             client_secret_created_at, created_at, updated_at, deleted_at, version) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(sa.id.0)
        .bind(sa.org_id.0)
        .bind(&sa.name)
        .bind(&sa.description)
        .bind(Json(&sa.roles))
        .bind(sa.status.as_str())
        .bind(days_param(sa.rotation.max_key_age_days))
        .bind(days_param(sa.rotation.refuse_after_days))
        .bind(&sa.client_secret_hash)
        .bind(sa.client_secret_created_at)
        .bind(sa.created_at)
        .bind(sa.updated_at)
        .bind(sa.deleted_at)
        .bind(sa.version)
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_service_account(
        &mut self,
        org: OrgId,
        id: ServiceAccountId,
    ) -> Result<Option<ServiceAccount>> {
        let sql = format!(
            "select {SERVICE_ACCOUNT_COLS} from service_account \
             where org_id = $1 and service_account_id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(org.0)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::service_account).transpose()
    }

    async fn find_service_account(
        &mut self,
        id: ServiceAccountId,
    ) -> Result<Option<ServiceAccount>> {
        let sql = format!(
            "select {SERVICE_ACCOUNT_COLS} from service_account where service_account_id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::service_account).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn update_service_account(
        &mut self,
        sa: &ServiceAccount,
        expected_version: i64,
    ) -> Result<()> {
        let done = sqlx::query(
            "update service_account set name = $3, description = $4, roles = $5, status = $6, \
             max_key_age_days = $7, refuse_after_days = $8, client_secret_hash = $9, \
             client_secret_created_at = $10, updated_at = $11, deleted_at = $12, version = $13 \
             where service_account_id = $1 and version = $2",
        )
        .bind(sa.id.0)
        .bind(expected_version)
        .bind(&sa.name)
        .bind(&sa.description)
        .bind(Json(&sa.roles))
        .bind(sa.status.as_str())
        .bind(days_param(sa.rotation.max_key_age_days))
        .bind(days_param(sa.rotation.refuse_after_days))
        .bind(&sa.client_secret_hash)
        .bind(sa.client_secret_created_at)
        .bind(sa.updated_at)
        .bind(sa.deleted_at)
        .bind(sa.version)
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        self.settle_update(
            done.rows_affected(),
            "select 1 from service_account where service_account_id = $1",
            sa.id.0,
        )
        .await
    }

    async fn list_service_accounts(
        &mut self,
        org: OrgId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<ServiceAccount>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "select {SERVICE_ACCOUNT_COLS} from service_account where org_id = "
        ));
        q.push_bind(org.0);
        if !include_deleted {
            q.push(" and status <> 'deleted'");
        }
        if let Some(after) = after {
            q.push(" and service_account_id > ").push_bind(after);
        }
        q.push(" order by service_account_id limit ")
            .push_bind(overfetch(page.limit));
        let found = q.build().fetch_all(self.conn()).await.map_err(db_err)?;
        let accounts = found
            .iter()
            .map(rows::service_account)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(accounts, page.limit, |a| {
            a.id.to_string()
        }))
    }

    async fn count_service_accounts_with_role(
        &mut self,
        org: OrgId,
        role: &RoleName,
    ) -> Result<i64> {
        sqlx::query_scalar(
            "select count(*) from service_account \
             where org_id = $1 and status <> 'deleted' \
             and roles @> jsonb_build_array($2::text)",
        )
        .bind(org.0)
        .bind(role.as_str())
        .fetch_one(self.conn())
        .await
        .map_err(db_err)
    }

    #[tracing::instrument(skip_all)]
    async fn insert_api_key(&mut self, key: &ApiKey) -> Result<()> {
        sqlx::query(
            "insert into api_key (api_key_id, org_id, service_account_id, name, prefix, \
             secret_hash, scopes, created_at, expires_at, revoked_at, last_used_at, \
             replaced_by, replaces, overdue_reported_at, version) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(key.id.0)
        .bind(key.org_id.0)
        .bind(key.service_account_id.0)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.secret_hash)
        .bind(Json(&key.scopes))
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.revoked_at)
        .bind(key.last_used_at)
        .bind(key.replaced_by.map(|k| k.0))
        .bind(key.replaces.map(|k| k.0))
        .bind(key.overdue_reported_at)
        .bind(key.version)
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_api_key(&mut self, org: OrgId, id: ApiKeyId) -> Result<Option<ApiKey>> {
        let sql =
            format!("select {API_KEY_COLS} from api_key where org_id = $1 and api_key_id = $2");
        let row = sqlx::query(&sql)
            .bind(org.0)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::api_key).transpose()
    }

    async fn get_api_key_by_prefix(&mut self, prefix: &str) -> Result<Option<ApiKey>> {
        // One lookup on the unique prefix index: this is every API-key authentication.
        let sql = format!("select {API_KEY_COLS} from api_key where prefix = $1");
        let row = sqlx::query(&sql)
            .bind(prefix)
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::api_key).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn update_api_key(&mut self, key: &ApiKey, expected_version: i64) -> Result<()> {
        // The key text (prefix and hash), its account and creation time never change, and
        // last_used_at belongs to touch_api_keys: a stale copy must not move it back.
        let done = sqlx::query(
            "update api_key set name = $3, scopes = $4, expires_at = $5, revoked_at = $6, \
             replaced_by = $7, replaces = $8, overdue_reported_at = $9, version = $10 \
             where api_key_id = $1 and version = $2",
        )
        .bind(key.id.0)
        .bind(expected_version)
        .bind(&key.name)
        .bind(Json(&key.scopes))
        .bind(key.expires_at)
        .bind(key.revoked_at)
        .bind(key.replaced_by.map(|k| k.0))
        .bind(key.replaces.map(|k| k.0))
        .bind(key.overdue_reported_at)
        .bind(key.version)
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        self.settle_update(
            done.rows_affected(),
            "select 1 from api_key where api_key_id = $1",
            key.id.0,
        )
        .await
    }

    async fn list_api_keys(
        &mut self,
        sa: ServiceAccountId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "select {API_KEY_COLS} from api_key where service_account_id = "
        ));
        q.push_bind(sa.0);
        if let Some(after) = after {
            q.push(" and api_key_id > ").push_bind(after);
        }
        q.push(" order by api_key_id limit ")
            .push_bind(overfetch(page.limit));
        let found = q.build().fetch_all(self.conn()).await.map_err(db_err)?;
        let keys = found
            .iter()
            .map(rows::api_key)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(keys, page.limit, |k| k.id.to_string()))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_service_account_keys(
        &mut self,
        sa: ServiceAccountId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ApiKeyId>> {
        let found: Vec<uuid::Uuid> = sqlx::query_scalar(
            "update api_key set revoked_at = $2, version = version + 1 \
             where service_account_id = $1 and revoked_at is null \
             returning api_key_id",
        )
        .bind(sa.0)
        .bind(at)
        .fetch_all(self.conn())
        .await
        .map_err(db_err)?;
        let mut ids: Vec<ApiKeyId> = found.into_iter().map(ApiKeyId).collect();
        ids.sort();
        Ok(ids)
    }

    #[tracing::instrument(skip_all, fields(keys = used.len()))]
    async fn touch_api_keys(&mut self, used: &[(ApiKeyId, DateTime<Utc>)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        let (ids, times): (Vec<uuid::Uuid>, Vec<DateTime<Utc>>) =
            used.iter().map(|(id, at)| (id.0, *at)).unzip();
        // One statement for the whole batch; an id used twice counts with its latest time.
        // The rows are locked in id order before they are written, so two replicas flushing
        // overlapping batches at once wait for each other instead of deadlocking (a plain
        // UPDATE … FROM locks in whatever order its join produces).
        sqlx::query(
            "with used as materialized (select id, max(t) as t \
                 from unnest($1::uuid[], $2::timestamptz[]) as u(id, t) group by id), \
             locked as materialized (select api_key.api_key_id, used.t \
                 from api_key join used on api_key.api_key_id = used.id \
                 order by api_key.api_key_id for update of api_key) \
             update api_key \
             set last_used_at = greatest(coalesce(api_key.last_used_at, locked.t), locked.t) \
             from locked where api_key.api_key_id = locked.api_key_id",
        )
        .bind(ids)
        .bind(times)
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn list_overdue_api_keys(
        &mut self,
        org: OrgId,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q =
            QueryBuilder::<Postgres>::new(format!("select {API_KEY_COLS} {KEYS_WITH_ACCOUNTS}"));
        // Both org columns: the planner may start from either table.
        q.push(" and api_key.org_id = ")
            .push_bind(org.0)
            .push(" and service_account.org_id = ")
            .push_bind(org.0);
        push_overdue(&mut q, now);
        if let Some(after) = after {
            q.push(" and api_key.api_key_id > ").push_bind(after);
        }
        q.push(" order by api_key.api_key_id limit ")
            .push_bind(overfetch(page.limit));
        let found = q.build().fetch_all(self.conn()).await.map_err(db_err)?;
        let keys = found
            .iter()
            .map(rows::api_key)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(keys, page.limit, |k| k.id.to_string()))
    }

    #[tracing::instrument(skip_all)]
    async fn claim_overdue_api_keys(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ApiKey>> {
        // Select and mark in one statement. `skip locked` leaves keys another sweep is
        // claiming right now to it; a key it claimed and committed meanwhile is re-checked
        // against its new version (read committed), finds overdue_reported_at set, and drops
        // out. Only the key rows are locked, never the accounts.
        let mut q = QueryBuilder::<Postgres>::new("update api_key set overdue_reported_at = ");
        q.push_bind(now).push(format!(
            " where api_key_id in (select api_key.api_key_id {KEYS_WITH_ACCOUNTS} \
             and api_key.overdue_reported_at is null"
        ));
        push_overdue(&mut q, now);
        q.push(" order by api_key.api_key_id limit ")
            .push_bind(i64::from(limit))
            .push(" for update of api_key skip locked) returning ")
            .push(API_KEY_COLS);
        let found = q.build().fetch_all(self.conn()).await.map_err(db_err)?;
        let mut keys = found
            .iter()
            .map(rows::api_key)
            .collect::<Result<Vec<_>>>()?;
        // RETURNING has no order of its own.
        keys.sort_by_key(|k| k.id);
        Ok(keys)
    }

    async fn count_overdue_api_keys(&mut self, now: DateTime<Utc>) -> Result<i64> {
        let mut q = QueryBuilder::<Postgres>::new(format!("select count(*) {KEYS_WITH_ACCOUNTS}"));
        push_overdue(&mut q, now);
        q.build_query_scalar()
            .fetch_one(self.conn())
            .await
            .map_err(db_err)
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_access_token(
        &mut self,
        jti: uuid::Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        let added = sqlx::query(
            "insert into revoked_access_token (jti, expires_at) values ($1, $2) \
             on conflict (jti) do nothing",
        )
        .bind(jti)
        .bind(expires_at)
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        Ok(added.rows_affected() == 1)
    }

    async fn is_access_token_revoked(&mut self, jti: uuid::Uuid) -> Result<bool> {
        let found = sqlx::query("select 1 from revoked_access_token where jti = $1")
            .bind(jti)
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        Ok(found.is_some())
    }

    #[tracing::instrument(skip_all)]
    async fn purge_revoked_access_tokens(&mut self, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("delete from revoked_access_token where expires_at <= $1")
            .bind(now)
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}
