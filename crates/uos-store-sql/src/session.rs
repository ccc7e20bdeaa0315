//! Login sessions: insert, lookup, activity (`last_seen_at`), listing the live ones and
//! revocation (one, every live one of a user, or all but one); and their single-use refresh
//! tokens.

use crate::rows::{self, REFRESH_TOKEN_COLS, SESSION_COLS};
use crate::sql::query;
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_domain::{SessionId, UserId};
use uos_store::{RefreshToken, Result, Session, SessionReads, SessionRepo, StoreError, TokenUse};

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> SessionReads for SqlTx<D, M> {
    async fn get_session(&mut self, id: SessionId) -> Result<Option<Session>> {
        let sql = format!("select {SESSION_COLS} from session where session_id = $1");
        let row = query::<D>(&sql)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::session).transpose()
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
        let found = query::<D>(&sql)
            .bind(user.0)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(self.conn())
            .await?;
        found.iter().map(rows::session).collect()
    }

    async fn get_refresh_token(&mut self, token_hash: &str) -> Result<Option<RefreshToken>> {
        let sql = format!("select {REFRESH_TOKEN_COLS} from refresh_token where token_hash = $1");
        let row = query::<D>(&sql)
            .bind(token_hash)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::refresh_token).transpose()
    }
}

#[async_trait]
impl<D: Dialect> SessionRepo for SqlTx<D> {
    #[tracing::instrument(skip_all)]
    async fn insert_session(&mut self, s: &Session) -> Result<()> {
        query::<D>(
            "insert into session (session_id, user_id, created_at, expires_at, revoked_at, \
             last_seen_at, user_agent, ip) values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(s.id.0)
        .bind(s.user_id.0)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.revoked_at)
        .bind(s.last_seen_at)
        .bind(&s.user_agent)
        .bind(&s.ip)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_session(&mut self, id: SessionId, at: DateTime<Utc>) -> Result<bool> {
        // The first revocation time is the one that counts; a second revoke changes nothing.
        let done = query::<D>(
            "update session set revoked_at = $2 where session_id = $1 and revoked_at is null",
        )
        .bind(id.0)
        .bind(at)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_user_sessions(&mut self, user: UserId, at: DateTime<Utc>) -> Result<u64> {
        // Live = neither revoked nor expired; expired sessions are dead already.
        let done = query::<D>(
            "update session set revoked_at = $2 \
             where user_id = $1 and revoked_at is null and expires_at > $2",
        )
        .bind(user.0)
        .bind(at)
        .execute(self.conn())
        .await?;
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
        let done = query::<D>(
            "update session set revoked_at = $2 \
             where user_id = $1 and revoked_at is null and expires_at > $2 \
             and session_id <> $3",
        )
        .bind(user.0)
        .bind(at)
        .bind(keep.0)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }

    #[tracing::instrument(skip_all)]
    async fn touch_session(&mut self, id: SessionId, at: DateTime<Utc>) -> Result<()> {
        // Unconditional: whether the session may still be used is the caller's check, and an
        // absent session has nothing to record.
        query::<D>("update session set last_seen_at = $2 where session_id = $1")
            .bind(id.0)
            .bind(at)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn insert_refresh_token(&mut self, t: &RefreshToken) -> Result<()> {
        query::<D>(
            "insert into refresh_token (token_hash, session_id, created_at, used_at) \
             values ($1, $2, $3, $4)",
        )
        .bind(&t.token_hash)
        .bind(t.session_id.0)
        .bind(t.created_at)
        .bind(t.used_at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn open_session(&mut self, s: &Session, first: &RefreshToken) -> Result<()> {
        D::open_session(self, s, first).await
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_refresh_token(
        &mut self,
        token_hash: &str,
        next_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<TokenUse> {
        D::rotate_refresh_token(self, token_hash, next_hash, at).await
    }
}

/// The portable [`SessionRepo::open_session`]: the two inserts.
pub(crate) async fn open_session_in_steps<D: Dialect>(
    tx: &mut SqlTx<D>,
    s: &Session,
    first: &RefreshToken,
) -> Result<()> {
    tx.insert_session(s).await?;
    tx.insert_refresh_token(first).await
}

/// The portable [`SessionRepo::rotate_refresh_token`]. One conditional update, no
/// read-then-write, so that exactly one of two concurrent uses wins: the second waits for the
/// first's lock (SQLite's one writer, PostgreSQL's row lock), then finds `used_at` set and
/// changes nothing. The winner's further steps run in its own transaction.
pub(crate) async fn rotate_in_steps<D: Dialect>(
    tx: &mut SqlTx<D>,
    token_hash: &str,
    next_hash: &str,
    at: DateTime<Utc>,
) -> Result<TokenUse> {
    let fresh = query::<D>(
        "update refresh_token set used_at = $2 where token_hash = $1 and used_at is null \
         returning session_id",
    )
    .bind(token_hash)
    .bind(at)
    .fetch_optional(tx.conn())
    .await?;
    if let Some(row) = fresh {
        let id = SessionId(rows::get(&row, "session_id")?);
        let before = tx.get_session(id).await?.ok_or(StoreError::NotFound)?;
        tx.touch_session(id, at).await?;
        tx.insert_refresh_token(&RefreshToken {
            token_hash: next_hash.to_string(),
            session_id: id,
            created_at: at,
            used_at: None,
        })
        .await?;
        return Ok(TokenUse::Fresh(before));
    }
    Ok(match tx.get_refresh_token(token_hash).await? {
        Some(t) => TokenUse::Reused(t.session_id),
        None => TokenUse::Unknown,
    })
}
