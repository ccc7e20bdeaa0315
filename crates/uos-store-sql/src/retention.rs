//! Retention and erasure: per-subject data keys (crypto-shredding), legal holds, and the
//! purge of users and orgs whose restore window has passed.

use crate::rows::{self, get, ORG_COLS, USER_COLS};
use crate::sql::{query, QueryBuilder};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_domain::{Email, Org, OrgId, OrgSlug, User, UserId};
use uos_store::{
    HoldOn, LegalHold, OrgPurge, Result, RetentionReads, RetentionRepo, StoreError, SubjectKey,
};

const HOLD_COLS: &str = "legal_hold_id, user_id, org_id, reason, placed_by, placed_at, version";

/// A hold covers a user directly, or through an org the user is a member of.
const USER_HELD: &str = "exists (select 1 from legal_hold h where h.user_id = $1) \
     or exists (select 1 from membership m join legal_hold h on h.org_id = m.org_id \
     where m.user_id = $1)";

fn hold<D: Dialect>(r: &crate::sql::Row<D>) -> Result<LegalHold> {
    let user: Option<uuid::Uuid> = get(r, "user_id")?;
    let org: Option<uuid::Uuid> = get(r, "org_id")?;
    let on = match (user, org) {
        (Some(u), None) => HoldOn::User(UserId(u)),
        (None, Some(o)) => HoldOn::Org(OrgId(o)),
        _ => {
            return Err(StoreError::Corrupt(
                "legal_hold: not exactly one of user_id, org_id".into(),
            ))
        }
    };
    Ok(LegalHold {
        id: get(r, "legal_hold_id")?,
        on,
        reason: get(r, "reason")?,
        placed_by: get(r, "placed_by")?,
        placed_at: get(r, "placed_at")?,
        version: get(r, "version")?,
    })
}

/// The column a hold on `on` is keyed by, and the id.
fn hold_key(on: HoldOn) -> (&'static str, uuid::Uuid) {
    match on {
        HoldOn::User(u) => ("user_id", u.0),
        HoldOn::Org(o) => ("org_id", o.0),
    }
}

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> RetentionReads for SqlTx<D, M> {
    async fn get_subject_keys(&mut self, subjects: &[String]) -> Result<Vec<SubjectKey>> {
        let mut found = Vec::with_capacity(subjects.len());
        for batch in subjects.chunks(D::MAX_LIST_PARAMS) {
            let mut q = QueryBuilder::<D>::new(
                "select subject, wrapped_key, created_at from subject_key where subject in (",
            );
            q.push_list(batch.iter().map(String::as_str)).push(")");
            for r in q.fetch_all(self.conn()).await? {
                found.push(SubjectKey {
                    subject: get(&r, "subject")?,
                    wrapped_key: get(&r, "wrapped_key")?,
                    created_at: get(&r, "created_at")?,
                });
            }
        }
        Ok(found)
    }

    async fn get_legal_hold(&mut self, on: HoldOn) -> Result<Option<LegalHold>> {
        let (col, id) = hold_key(on);
        let sql = format!("select {HOLD_COLS} from legal_hold where {col} = $1");
        let row = query::<D>(&sql)
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(hold).transpose()
    }

    async fn user_is_held(&mut self, user: UserId) -> Result<bool> {
        let sql = format!("select ({USER_HELD}) as held");
        let row = query::<D>(&sql)
            .bind(user.0)
            .fetch_optional(self.conn())
            .await?;
        row.map_or(Ok(false), |r| get(&r, "held"))
    }

    async fn purgeable_users(
        &mut self,
        deleted_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<UserId>> {
        // Served by user_account_deleted_idx; the hold checks are per candidate.
        let sql = "select u.user_id from user_account u \
             where u.status = 'deleted' and u.deleted_at < $1 \
             and not exists (select 1 from legal_hold h where h.user_id = u.user_id) \
             and not exists (select 1 from membership m join legal_hold h \
                 on h.org_id = m.org_id where m.user_id = u.user_id) \
             order by u.deleted_at, u.user_id limit $2";
        query::<D>(sql)
            .bind(deleted_before)
            .bind(i64::from(limit))
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(|r| get(r, "user_id").map(UserId))
            .collect()
    }

    async fn purgeable_orgs(
        &mut self,
        deleted_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OrgId>> {
        let sql = "select o.org_id from org o \
             where o.status = 'deleted' and o.purged_at is null and o.deleted_at < $1 \
             and not exists (select 1 from legal_hold h where h.org_id = o.org_id) \
             order by o.deleted_at, o.org_id limit $2";
        query::<D>(sql)
            .bind(deleted_before)
            .bind(i64::from(limit))
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(|r| get(r, "org_id").map(OrgId))
            .collect()
    }

    async fn org_purged_at(&mut self, org: OrgId) -> Result<Option<DateTime<Utc>>> {
        let row = query::<D>("select purged_at from org where org_id = $1")
            .bind(org.0)
            .fetch_optional(self.conn())
            .await?;
        row.map_or(Ok(None), |r| get(&r, "purged_at"))
    }

    async fn org_invitees_without_account(&mut self, org: OrgId) -> Result<Vec<Email>> {
        query::<D>(
            "select distinct i.email from invite i where i.org_id = $1 \
             and not exists (select 1 from user_account u where u.email = i.email)",
        )
        .bind(org.0)
        .fetch_all(self.conn())
        .await?
        .iter()
        .map(|r| {
            let raw: String = get(r, "email")?;
            Email::parse(&raw).map_err(crate::error::corrupt("email"))
        })
        .collect()
    }
}

#[async_trait]
impl<D: Dialect> RetentionRepo for SqlTx<D> {
    async fn insert_subject_key(&mut self, key: &SubjectKey) -> Result<bool> {
        // On PostgreSQL a concurrent insert of the same subject waits for the other
        // transaction and then does nothing: the caller reads the winner's key.
        let done = query::<D>(
            "insert into subject_key (subject, wrapped_key, created_at) values ($1, $2, $3) \
             on conflict (subject) do nothing",
        )
        .bind(key.subject.as_str())
        .bind(key.wrapped_key.as_str())
        .bind(key.created_at)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all, fields(subjects = subjects.len()))]
    async fn destroy_subject_keys(&mut self, subjects: &[String]) -> Result<u64> {
        let mut destroyed = 0;
        for batch in subjects.chunks(D::MAX_LIST_PARAMS) {
            let mut q = QueryBuilder::<D>::new("delete from subject_key where subject in (");
            q.push_list(batch.iter().map(String::as_str)).push(")");
            destroyed += q.execute(self.conn()).await?.rows_affected();
        }
        Ok(destroyed)
    }

    async fn lock_user(&mut self, id: UserId) -> Result<Option<User>> {
        let sql = format!(
            "select {USER_COLS} from user_account where user_id = $1{}",
            D::LOCK_ROWS
        );
        let row = query::<D>(&sql)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn lock_org(&mut self, id: OrgId) -> Result<Option<Org>> {
        let sql = format!(
            "select {ORG_COLS} from org where org_id = $1{}",
            D::LOCK_ROWS
        );
        let row = query::<D>(&sql)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::org).transpose()
    }

    async fn insert_legal_hold(&mut self, h: &LegalHold) -> Result<()> {
        let (user, org) = match h.on {
            HoldOn::User(u) => (Some(u.0), None),
            HoldOn::Org(o) => (None, Some(o.0)),
        };
        query::<D>(&format!(
            "insert into legal_hold ({HOLD_COLS}) values ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(h.id)
        .bind(user)
        .bind(org)
        .bind(h.reason.as_str())
        .bind(h.placed_by.as_str())
        .bind(h.placed_at)
        .bind(h.version)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn update_legal_hold(&mut self, h: &LegalHold, expected_version: i64) -> Result<()> {
        let done = query::<D>(
            "update legal_hold set reason = $3, placed_by = $4, placed_at = $5, version = $6 \
             where legal_hold_id = $1 and version = $2",
        )
        .bind(h.id)
        .bind(expected_version)
        .bind(h.reason.as_str())
        .bind(h.placed_by.as_str())
        .bind(h.placed_at)
        .bind(h.version)
        .execute(self.conn())
        .await?;
        self.settle_update(
            done.rows_affected(),
            "select 1 from legal_hold where legal_hold_id = $1",
            h.id,
        )
        .await
    }

    async fn delete_legal_hold(&mut self, on: HoldOn) -> Result<bool> {
        let (col, id) = hold_key(on);
        let sql = format!("delete from legal_hold where {col} = $1");
        let done = query::<D>(&sql).bind(id).execute(self.conn()).await?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all)]
    async fn erase_user_credentials(&mut self, id: UserId) -> Result<u64> {
        // Children before parents (refresh tokens reference sessions).
        query::<D>(
            "delete from refresh_token where session_id in \
             (select session_id from session where user_id = $1)",
        )
        .bind(id.0)
        .execute(self.conn())
        .await?;
        let sessions = query::<D>("delete from session where user_id = $1")
            .bind(id.0)
            .execute(self.conn())
            .await?
            .rows_affected();
        for table in [
            "user_totp",
            "user_recovery_code",
            "password_history",
            "password_reset",
            "external_identity",
        ] {
            query::<D>(&format!("delete from {table} where user_id = $1"))
                .bind(id.0)
                .execute(self.conn())
                .await?;
        }
        Ok(sessions)
    }

    #[tracing::instrument(skip_all)]
    async fn purge_org(
        &mut self,
        org: OrgId,
        slug: &OrgSlug,
        at: DateTime<Utc>,
    ) -> Result<OrgPurge> {
        // API keys before the service accounts they reference.
        let mut counts = [0u64; 5];
        for (i, table) in [
            "api_key",
            "service_account",
            "custom_role",
            "invite",
            "membership",
        ]
        .into_iter()
        .enumerate()
        {
            counts[i] = query::<D>(&format!("delete from {table} where org_id = $1"))
                .bind(org.0)
                .execute(self.conn())
                .await?
                .rows_affected();
        }
        let [_, service_accounts, roles, invites, members] = counts;
        let done = query::<D>(
            "update org set display_name = '', slug = $2, purged_at = $3, updated_at = $3, \
             version = version + 1 where org_id = $1 and purged_at is null",
        )
        .bind(org.0)
        .bind(slug.as_str())
        .bind(at)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(OrgPurge {
            members_removed: members,
            invites_removed: invites,
            roles_removed: roles,
            service_accounts_removed: service_accounts,
        })
    }
}
