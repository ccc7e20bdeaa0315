//! Machine identities: service accounts, their API keys (lookup by prefix, batched usage,
//! the rotation-overdue sweep) and revoked client-credentials access tokens.

use crate::rows::{self, days_param, overfetch, uuid_cursor, API_KEY_COLS, SERVICE_ACCOUNT_COLS};
use crate::sql::{json, query, QueryBuilder};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use uos_domain::{ApiKey, ApiKeyId, OrgId, RoleName, ServiceAccount, ServiceAccountId};
use uos_store::{MachineReads, MachineRepo, Page, PageRequest, Result};

/// Keys joined with their accounts, for the overdue queries (which add `push_overdue`).
const KEYS_WITH_ACCOUNTS: &str = "from api_key join service_account \
     on service_account.service_account_id = api_key.service_account_id where true";

/// The overdue predicate of the port: the key is unrevoked, unreplaced and unexpired at `now`,
/// and its undeleted account has a maximum key age that the key has reached (the date
/// arithmetic is the dialect's).
fn push_overdue<D: Dialect>(q: &mut QueryBuilder<'_, D>, now: DateTime<Utc>) {
    q.push(
        " and api_key.revoked_at is null and api_key.replaced_by is null \
         and (api_key.expires_at is null or api_key.expires_at > ",
    )
    .push_bind(now)
    .push(
        ") and service_account.status <> 'deleted' \
         and service_account.max_key_age_days is not null and ",
    );
    D::push_key_age_reached(q, now);
}

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> MachineReads for SqlTx<D, M> {
    async fn get_service_account(
        &mut self,
        org: OrgId,
        id: ServiceAccountId,
    ) -> Result<Option<ServiceAccount>> {
        let sql = format!(
            "select {SERVICE_ACCOUNT_COLS} from service_account \
             where org_id = $1 and service_account_id = $2"
        );
        let row = query::<D>(&sql)
            .bind(org.0)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::service_account).transpose()
    }

    async fn find_service_account(
        &mut self,
        id: ServiceAccountId,
    ) -> Result<Option<ServiceAccount>> {
        let sql = format!(
            "select {SERVICE_ACCOUNT_COLS} from service_account where service_account_id = $1"
        );
        let row = query::<D>(&sql)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::service_account).transpose()
    }

    async fn list_service_accounts(
        &mut self,
        org: OrgId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<ServiceAccount>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q = QueryBuilder::<D>::new(format!(
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
        let found = q.fetch_all(self.conn()).await?;
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
        let sql = format!(
            "select count(*) as n from service_account \
             where org_id = $1 and status <> 'deleted' and {}",
            D::json_array_contains("service_account.roles", "$2")
        );
        let row = query::<D>(&sql)
            .bind(org.0)
            .bind(role.as_str())
            .fetch_one(self.conn())
            .await?;
        rows::get(&row, "n")
    }

    async fn get_api_key(&mut self, org: OrgId, id: ApiKeyId) -> Result<Option<ApiKey>> {
        let sql =
            format!("select {API_KEY_COLS} from api_key where org_id = $1 and api_key_id = $2");
        let row = query::<D>(&sql)
            .bind(org.0)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::api_key).transpose()
    }

    async fn get_api_key_by_prefix(&mut self, prefix: &str) -> Result<Option<ApiKey>> {
        // One lookup on the unique prefix index: this is every API-key authentication.
        let sql = format!("select {API_KEY_COLS} from api_key where prefix = $1");
        let row = query::<D>(&sql)
            .bind(prefix)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::api_key).transpose()
    }

    async fn list_api_keys(
        &mut self,
        sa: ServiceAccountId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q = QueryBuilder::<D>::new(format!(
            "select {API_KEY_COLS} from api_key where service_account_id = "
        ));
        q.push_bind(sa.0);
        if let Some(after) = after {
            q.push(" and api_key_id > ").push_bind(after);
        }
        q.push(" order by api_key_id limit ")
            .push_bind(overfetch(page.limit));
        let found = q.fetch_all(self.conn()).await?;
        let keys = found
            .iter()
            .map(rows::api_key)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(keys, page.limit, |k| k.id.to_string()))
    }

    async fn list_overdue_api_keys(
        &mut self,
        org: OrgId,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q = QueryBuilder::<D>::new(format!("select {API_KEY_COLS} {KEYS_WITH_ACCOUNTS}"));
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
        let found = q.fetch_all(self.conn()).await?;
        let keys = found
            .iter()
            .map(rows::api_key)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(keys, page.limit, |k| k.id.to_string()))
    }

    async fn count_overdue_api_keys(&mut self, now: DateTime<Utc>) -> Result<i64> {
        let mut q = QueryBuilder::<D>::new(format!("select count(*) as n {KEYS_WITH_ACCOUNTS}"));
        push_overdue(&mut q, now);
        let row = q.fetch_optional(self.conn()).await?;
        row.map_or(Ok(0), |r| rows::get(&r, "n"))
    }

    async fn is_access_token_revoked(&mut self, jti: uuid::Uuid) -> Result<bool> {
        let found = query::<D>("select 1 from revoked_access_token where jti = $1")
            .bind(jti)
            .fetch_optional(self.conn())
            .await?;
        Ok(found.is_some())
    }
}

#[async_trait]
impl<D: Dialect> MachineRepo for SqlTx<D> {
    #[tracing::instrument(skip_all)]
    async fn insert_service_account(&mut self, sa: &ServiceAccount) -> Result<()> {
        query::<D>(
            "insert into service_account (service_account_id, org_id, name, description, roles, \
             status, max_key_age_days, refuse_after_days, client_secret_hash, \
             client_secret_created_at, created_at, updated_at, deleted_at, version) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(sa.id.0)
        .bind(sa.org_id.0)
        .bind(&sa.name)
        .bind(&sa.description)
        .bind(json(&sa.roles)?)
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
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn update_service_account(
        &mut self,
        sa: &ServiceAccount,
        expected_version: i64,
    ) -> Result<()> {
        let done = query::<D>(
            "update service_account set name = $3, description = $4, roles = $5, status = $6, \
             max_key_age_days = $7, refuse_after_days = $8, client_secret_hash = $9, \
             client_secret_created_at = $10, updated_at = $11, deleted_at = $12, version = $13 \
             where service_account_id = $1 and version = $2",
        )
        .bind(sa.id.0)
        .bind(expected_version)
        .bind(&sa.name)
        .bind(&sa.description)
        .bind(json(&sa.roles)?)
        .bind(sa.status.as_str())
        .bind(days_param(sa.rotation.max_key_age_days))
        .bind(days_param(sa.rotation.refuse_after_days))
        .bind(&sa.client_secret_hash)
        .bind(sa.client_secret_created_at)
        .bind(sa.updated_at)
        .bind(sa.deleted_at)
        .bind(sa.version)
        .execute(self.conn())
        .await?;
        self.settle_update(
            done.rows_affected(),
            "select 1 from service_account where service_account_id = $1",
            sa.id.0,
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn insert_api_key(&mut self, key: &ApiKey) -> Result<()> {
        query::<D>(
            "insert into api_key (api_key_id, org_id, service_account_id, name, prefix, \
             secret_hash, scopes, created_at, expires_at, revoked_at, last_used_at, \
             replaced_by, replaces, overdue_reported_at, quarantined_at, quarantine_reason, \
             version) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(key.id.0)
        .bind(key.org_id.0)
        .bind(key.service_account_id.0)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.secret_hash)
        .bind(json(&key.scopes)?)
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.revoked_at)
        .bind(key.last_used_at)
        .bind(key.replaced_by.map(|k| k.0))
        .bind(key.replaces.map(|k| k.0))
        .bind(key.overdue_reported_at)
        .bind(key.quarantined_at)
        .bind(&key.quarantine_reason)
        .bind(key.version)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn update_api_key(&mut self, key: &ApiKey, expected_version: i64) -> Result<()> {
        // The key text (prefix and hash), its account and creation time never change, and
        // last_used_at belongs to touch_api_keys: a stale copy must not move it back.
        let done = query::<D>(
            "update api_key set name = $3, scopes = $4, expires_at = $5, revoked_at = $6, \
             replaced_by = $7, replaces = $8, overdue_reported_at = $9, quarantined_at = $10, \
             quarantine_reason = $11, version = $12 \
             where api_key_id = $1 and version = $2",
        )
        .bind(key.id.0)
        .bind(expected_version)
        .bind(&key.name)
        .bind(json(&key.scopes)?)
        .bind(key.expires_at)
        .bind(key.revoked_at)
        .bind(key.replaced_by.map(|k| k.0))
        .bind(key.replaces.map(|k| k.0))
        .bind(key.overdue_reported_at)
        .bind(key.quarantined_at)
        .bind(&key.quarantine_reason)
        .bind(key.version)
        .execute(self.conn())
        .await?;
        self.settle_update(
            done.rows_affected(),
            "select 1 from api_key where api_key_id = $1",
            key.id.0,
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_service_account_keys(
        &mut self,
        sa: ServiceAccountId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ApiKeyId>> {
        let found = query::<D>(
            "update api_key set revoked_at = $2, version = version + 1 \
             where service_account_id = $1 and revoked_at is null \
             returning api_key_id",
        )
        .bind(sa.0)
        .bind(at)
        .fetch_all(self.conn())
        .await?;
        let mut ids = found
            .iter()
            .map(|r| rows::get(r, "api_key_id").map(ApiKeyId))
            .collect::<Result<Vec<_>>>()?;
        ids.sort();
        Ok(ids)
    }

    #[tracing::instrument(skip_all)]
    async fn quarantine_api_key(
        &mut self,
        id: ApiKeyId,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<Option<ApiKey>> {
        // Mark and read in one statement, only if not marked yet: of replicas tripping the
        // same key at once, exactly one gets the row back (and records the quarantine).
        let found = query::<D>(&format!(
            "update api_key set quarantined_at = $2, quarantine_reason = $3, \
             version = version + 1 \
             where api_key_id = $1 and quarantined_at is null \
             returning {API_KEY_COLS}"
        ))
        .bind(id.0)
        .bind(at)
        .bind(reason)
        .fetch_optional(self.conn())
        .await?;
        found.as_ref().map(rows::api_key).transpose()
    }

    #[tracing::instrument(skip_all, fields(keys = used.len()))]
    async fn touch_api_keys(&mut self, used: &[(ApiKeyId, DateTime<Utc>)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        D::touch_api_keys(self, used).await
    }

    #[tracing::instrument(skip_all)]
    async fn claim_overdue_api_keys(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ApiKey>> {
        // Select and mark in one statement. A second sweep waits for the first (SQLite's one
        // writer) or skips the keys it is claiming right now (PostgreSQL's `skip locked`); a
        // key it claimed and committed meanwhile finds overdue_reported_at set and drops out.
        let mut q = QueryBuilder::<D>::new("update api_key set overdue_reported_at = ");
        q.push_bind(now).push(format!(
            " where api_key_id in (select api_key.api_key_id {KEYS_WITH_ACCOUNTS} \
             and api_key.overdue_reported_at is null"
        ));
        push_overdue(&mut q, now);
        q.push(" order by api_key.api_key_id limit ")
            .push_bind(i64::from(limit))
            .push(D::lock_rows_skip_locked("api_key"))
            .push(") returning ")
            .push(API_KEY_COLS);
        let found = q.fetch_all(self.conn()).await?;
        let mut keys = found
            .iter()
            .map(rows::api_key)
            .collect::<Result<Vec<_>>>()?;
        // RETURNING has no order of its own.
        keys.sort_by_key(|k| k.id);
        Ok(keys)
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_access_token(
        &mut self,
        jti: uuid::Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<bool> {
        let added = query::<D>(
            "insert into revoked_access_token (jti, expires_at) values ($1, $2) \
             on conflict (jti) do nothing",
        )
        .bind(jti)
        .bind(expires_at)
        .execute(self.conn())
        .await?;
        Ok(added.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all)]
    async fn purge_revoked_access_tokens(&mut self, now: DateTime<Utc>) -> Result<u64> {
        let done = query::<D>("delete from revoked_access_token where expires_at <= $1")
            .bind(now)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected())
    }
}

/// The portable [`MachineRepo::touch_api_keys`]: one statement per key, in id order (so two
/// replicas flushing overlapping batches lock the rows in the same order and cannot deadlock);
/// a key used twice in the batch counts with its latest time.
pub(crate) async fn touch_api_keys_in_steps<D: Dialect>(
    tx: &mut SqlTx<D>,
    used: &[(ApiKeyId, DateTime<Utc>)],
) -> Result<()> {
    let mut latest: BTreeMap<ApiKeyId, DateTime<Utc>> = BTreeMap::new();
    for (id, at) in used {
        let entry = latest.entry(*id).or_insert(*at);
        *entry = (*entry).max(*at);
    }
    for (id, at) in latest {
        query::<D>(
            "update api_key set last_used_at = $2 \
             where api_key_id = $1 and (last_used_at is null or last_used_at < $2)",
        )
        .bind(id.0)
        .bind(at)
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}
