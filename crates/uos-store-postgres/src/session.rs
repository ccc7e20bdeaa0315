//! Login sessions: insert, lookup, activity (`last_seen_at`), listing the live ones and
//! revocation (one, every live one of a user, or all but one); and their single-use refresh
//! tokens.

use crate::audit::{bind_append, APPEND_AUDIT};
use crate::error::db_err;
use crate::rows::{self, REFRESH_TOKEN_COLS, SESSION_COLS};
use crate::tx::PgTx;
use crate::PgStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::Postgres;
use uos_domain::{SessionId, UserId, UserStatus};
use uos_store::{
    AuditHead, AuditRow, RefreshToken, Result, Session, SessionRepo, Store, StoreError, TokenUse,
};

const INSERT_SESSION: &str = "insert into session (session_id, user_id, created_at, expires_at, \
     revoked_at, last_seen_at, user_agent, ip) values ($1, $2, $3, $4, $5, $6, $7, $8)";

/// `query` with `s` bound to `$1`..`$8` in [`INSERT_SESSION`]'s column order.
fn bind_session<'q>(
    query: Query<'q, Postgres, PgArguments>,
    s: &'q Session,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(s.id.0)
        .bind(s.user_id.0)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.revoked_at)
        .bind(s.last_seen_at)
        .bind(&s.user_agent)
        .bind(&s.ip)
}

#[async_trait]
impl SessionRepo for PgTx {
    #[tracing::instrument(skip_all)]
    async fn insert_session(&mut self, s: &Session) -> Result<()> {
        bind_session(sqlx::query(INSERT_SESSION), s)
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn open_session(&mut self, s: &Session, first: &RefreshToken) -> Result<()> {
        // One statement; the token's foreign key is checked at its end, when the session row
        // exists.
        let sql = format!(
            "with opened as ({INSERT_SESSION} returning session_id) \
             insert into refresh_token (token_hash, session_id, created_at, used_at) \
             select $9, session_id, $10, $11 from opened"
        );
        bind_session(sqlx::query(&sql), s)
            .bind(&first.token_hash)
            .bind(first.created_at)
            .bind(first.used_at)
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_session(&mut self, id: SessionId) -> Result<Option<Session>> {
        let sql = format!("select {SESSION_COLS} from session where session_id = $1");
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::session).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_session(&mut self, id: SessionId, at: DateTime<Utc>) -> Result<bool> {
        // The first revocation time is the one that counts; a second revoke changes nothing.
        let done = sqlx::query(
            "update session set revoked_at = $2 where session_id = $1 and revoked_at is null",
        )
        .bind(id.0)
        .bind(at)
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_user_sessions(&mut self, user: UserId, at: DateTime<Utc>) -> Result<u64> {
        // Live = neither revoked nor expired; expired sessions are dead already.
        let done = sqlx::query(
            "update session set revoked_at = $2 \
             where user_id = $1 and revoked_at is null and expires_at > $2",
        )
        .bind(user.0)
        .bind(at)
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_other_sessions(
        &mut self,
        user: UserId,
        keep: SessionId,
        at: DateTime<Utc>,
    ) -> Result<u64> {
        // Same notion of live as revoke_user_sessions; only the kept session is spared.
        let done = sqlx::query(
            "update session set revoked_at = $2 \
             where user_id = $1 and revoked_at is null and expires_at > $2 \
             and session_id <> $3",
        )
        .bind(user.0)
        .bind(at)
        .bind(keep.0)
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    #[tracing::instrument(skip_all)]
    async fn touch_session(&mut self, id: SessionId, at: DateTime<Utc>) -> Result<()> {
        // Unconditional: whether the session may still be used is the caller's check, and an
        // absent session has nothing to record.
        sqlx::query("update session set last_seen_at = $2 where session_id = $1")
            .bind(id.0)
            .bind(at)
            .execute(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn list_live_sessions(
        &mut self,
        user: UserId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Session>> {
        // The id breaks ties between sessions created in the same instant, so the order is
        // total and the same on every backend.
        let sql = format!(
            "select {SESSION_COLS} from session \
             where user_id = $1 and revoked_at is null and expires_at > $2 \
             order by created_at desc, session_id desc limit $3"
        );
        let found = sqlx::query(&sql)
            .bind(user.0)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(self.conn())
            .await
            .map_err(db_err)?;
        found.iter().map(rows::session).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn insert_refresh_token(&mut self, t: &RefreshToken) -> Result<()> {
        sqlx::query(
            "insert into refresh_token (token_hash, session_id, created_at, used_at) \
             values ($1, $2, $3, $4)",
        )
        .bind(&t.token_hash)
        .bind(t.session_id.0)
        .bind(t.created_at)
        .bind(t.used_at)
        .execute(self.conn())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_refresh_token(&mut self, token_hash: &str) -> Result<Option<RefreshToken>> {
        let sql = format!("select {REFRESH_TOKEN_COLS} from refresh_token where token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::refresh_token).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_refresh_token(
        &mut self,
        token_hash: &str,
        next_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<TokenUse> {
        // One conditional update, no read-then-write, so that exactly one of two concurrent
        // uses wins: under read committed the second update waits for the first's row lock,
        // then re-checks `used_at is null` against the committed row and changes nothing (and
        // so inserts nothing).
        let sql = format!(
            "with used as (update refresh_token set used_at = $2 \
               where token_hash = $1 and used_at is null returning session_id), {ROTATE}"
        );
        let fresh = sqlx::query(&sql)
            .bind(token_hash)
            .bind(at)
            .bind(next_hash)
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        if let Some(row) = fresh {
            return Ok(TokenUse::Fresh(rows::session(&row)?));
        }
        Ok(match self.get_refresh_token(token_hash).await? {
            Some(t) => TokenUse::Reused(t.session_id),
            None => TokenUse::Unknown,
        })
    }
}

/// The rest of a rotation after `used` (the token just marked used, `$2` the time, `$3` the
/// next token's hash). Every data-modifying CTE runs; `prev` reads the snapshot the statement
/// started from, i.e. the session before the touch, which is what the statement returns.
const ROTATE: &str = "prev as (select * from session \
       where session_id in (select session_id from used)), \
     touched as (update session s set last_seen_at = $2 from prev p \
       where s.session_id = p.session_id), \
     next as (insert into refresh_token (token_hash, session_id, created_at, used_at) \
       select $3, session_id, $2, null from used) \
     select session_id, user_id, created_at, expires_at, revoked_at, last_seen_at, \
       user_agent, ip from prev";

impl PgStore {
    /// [`Store::open_session_audited`](uos_store::Store::open_session_audited) as one
    /// autocommit statement: the session and its token are inserted only from the audit
    /// head's move, so a stale `prev` stores nothing.
    pub(crate) async fn open_session_in_one(
        &self,
        s: &Session,
        first: &RefreshToken,
        prev: &AuditHead,
        event: &AuditRow,
    ) -> Result<()> {
        let sql = format!(
            "{APPEND_AUDIT}, opened as (insert into session (session_id, user_id, created_at, \
               expires_at, revoked_at, last_seen_at, user_agent, ip) \
               select $12, $13, $14, $15, $16, $17, $18, $19 from moved returning session_id) \
             insert into refresh_token (token_hash, session_id, created_at, used_at) \
             select $20, session_id, $21, $22 from opened"
        );
        let query = bind_session(bind_append(sqlx::query(&sql), prev, event), s);
        let inserted = query
            .bind(&first.token_hash)
            .bind(first.created_at)
            .bind(first.used_at)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::VersionConflict);
        }
        Ok(())
    }

    /// [`Store::refresh_session`](uos_store::Store::refresh_session) as one autocommit
    /// statement: the token is used only if its session is live and its user may log in,
    /// checked in the same statement that uses it. Only a refused token costs a second
    /// query, to tell a replay from a dead session or a made-up token.
    pub(crate) async fn refresh_in_one(
        &self,
        token_hash: &str,
        next_hash: &str,
        at: DateTime<Utc>,
        idle_since: DateTime<Utc>,
    ) -> Result<TokenUse> {
        let may_log_in: Vec<&str> = UserStatus::ALL
            .into_iter()
            .filter(|s| s.may_log_in())
            .map(UserStatus::as_str)
            .collect();
        let sql = format!(
            "with used as (update refresh_token t set used_at = $2 \
               from session s join user_account u on u.user_id = s.user_id \
               where t.token_hash = $1 and t.used_at is null and s.session_id = t.session_id \
               and s.revoked_at is null and s.expires_at > $2 and s.last_seen_at > $4 \
               and u.status = any($5) returning t.session_id), {ROTATE}"
        );
        let fresh = sqlx::query(&sql)
            .bind(token_hash)
            .bind(at)
            .bind(next_hash)
            .bind(idle_since)
            .bind(&may_log_in)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        if let Some(row) = fresh {
            return Ok(TokenUse::Fresh(rows::session(&row)?));
        }
        let mut read = self.read().await?;
        Ok(match read.get_refresh_token(token_hash).await? {
            Some(t) if t.used_at.is_some() => TokenUse::Reused(t.session_id),
            Some(_) => TokenUse::Dead,
            None => TokenUse::Unknown,
        })
    }
}
