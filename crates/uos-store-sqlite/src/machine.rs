//! Machine identities: service accounts, their API keys (lookup by prefix, batched usage,
//! the rotation-overdue sweep) and revoked client-credentials access tokens.

use crate::error::db_err;
use crate::rows::{self, days_param, overfetch, uuid_cursor, API_KEY_COLS, SERVICE_ACCOUNT_COLS};
use crate::tx::SqliteTx;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Sqlite};
use uos_domain::{ApiKey, ApiKeyId, OrgId, RoleName, ServiceAccount, ServiceAccountId};
use uos_store::{MachineRepo, Page, PageRequest, Result, StoreError};

/// Keys joined with their accounts, for the overdue queries (which add `push_overdue`).
const KEYS_WITH_ACCOUNTS: &str = "from api_key join service_account \
     on service_account.service_account_id = api_key.service_account_id where true";

/// The overdue predicate of the port: the key is unrevoked, unreplaced and unexpired at `now`,
/// and its undeleted account has a maximum key age that `created_at + max_key_age_days days`
/// has reached. Timestamps are UTC text with a fixed `+00:00` offset, so adding whole days
/// moves only the date part: the shifted timestamp is the date of `created_at` plus the days,
/// followed by its unchanged time of day, and compares with `now` as text, exactly (SQLite's
/// own date arithmetic keeps only milliseconds). Only the date is handed to `date()`, because
/// it would round a time within half a millisecond of midnight into the next day.
fn push_overdue(q: &mut QueryBuilder<'_, Sqlite>, now: DateTime<Utc>) {
    q.push(
        " and api_key.revoked_at is null and api_key.replaced_by is null \
         and (api_key.expires_at is null or api_key.expires_at > ",
    )
    .push_bind(now)
    .push(
        ") and service_account.status <> 'deleted' \
         and service_account.max_key_age_days is not null \
         and date(substr(api_key.created_at, 1, 10), \
             '+' || service_account.max_key_age_days || ' days') \
             || substr(api_key.created_at, 11) <= ",
    )
    .push_bind(now);
}

/// A timestamp as sqlx writes `DateTime<Utc>` into SQLite (RFC 3339, `AutoSi` fractions,
/// `+00:00`), for values that travel inside a JSON parameter instead of a bind of their own.
/// Stored timestamps compare as text, so this must be byte for byte sqlx's encoding (a unit
/// test below checks it).
fn timestamp_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

#[async_trait]
impl MachineRepo for SqliteTx {
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
        let mut q = QueryBuilder::<Sqlite>::new(format!(
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
             and exists (select 1 from json_each(service_account.roles) \
                 where json_each.value = $2)",
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
        let mut q = QueryBuilder::<Sqlite>::new(format!(
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
        // The whole batch is one JSON parameter of [hex id, time] pairs (no limit on bound
        // variables); an id used twice counts with its latest time. Text max is time max, as
        // every stored timestamp has the same format and offset.
        let batch: Vec<(String, String)> = used
            .iter()
            .map(|(id, at)| (id.0.simple().to_string(), timestamp_text(at)))
            .collect();
        let batch = serde_json::to_string(&batch)
            .map_err(|e| StoreError::Backend(format!("encoding the usage batch: {e}")))?;
        sqlx::query(
            "update api_key \
             set last_used_at = max(coalesce(api_key.last_used_at, used.t), used.t) \
             from (select unhex(value ->> 0) as id, max(value ->> 1) as t \
                   from json_each($1) group by 1) as used \
             where api_key.api_key_id = used.id",
        )
        .bind(batch)
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
            QueryBuilder::<Sqlite>::new(format!("select {API_KEY_COLS} {KEYS_WITH_ACCOUNTS}"));
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
        // Select and mark in one statement; write transactions run one after the other on
        // the single writer connection, so a second sweep finds the keys already reported.
        let mut q = QueryBuilder::<Sqlite>::new("update api_key set overdue_reported_at = ");
        q.push_bind(now).push(format!(
            " where api_key_id in (select api_key.api_key_id {KEYS_WITH_ACCOUNTS} \
             and api_key.overdue_reported_at is null"
        ));
        push_overdue(&mut q, now);
        q.push(" order by api_key.api_key_id limit ")
            .push_bind(i64::from(limit))
            .push(") returning ")
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
        let mut q = QueryBuilder::<Sqlite>::new(format!("select count(*) {KEYS_WITH_ACCOUNTS}"));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use chrono::{Duration, TimeZone};
    use sqlx::{Connection, SqliteConnection};

    /// The JSON usage batch must carry timestamps exactly as sqlx binds them.
    #[tokio::test]
    async fn timestamp_text_is_what_sqlx_writes() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let base = Utc.with_ymd_and_hms(2031, 12, 31, 23, 59, 59).unwrap();
        for t in [
            base,
            base + Duration::milliseconds(120),
            base + Duration::microseconds(999_999),
            base + Duration::nanoseconds(1),
        ] {
            let bound: String = sqlx::query_scalar("select $1")
                .bind(t)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(timestamp_text(&t), bound);
        }
    }
}
