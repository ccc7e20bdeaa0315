//! Login sessions: insert, lookup and revocation (one, or every live one of a user).

use crate::error::db_err;
use crate::rows::{self, SESSION_COLS};
use crate::tx::SqliteTx;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_domain::{SessionId, UserId};
use uos_store::{Result, Session, SessionRepo};

#[async_trait]
impl SessionRepo for SqliteTx {
    #[tracing::instrument(skip_all)]
    async fn insert_session(&mut self, s: &Session) -> Result<()> {
        sqlx::query(
            "insert into session (session_id, user_id, created_at, expires_at, revoked_at, \
             user_agent, ip) values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.id.0)
        .bind(s.user_id.0)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.revoked_at)
        .bind(&s.user_agent)
        .bind(&s.ip)
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
}
