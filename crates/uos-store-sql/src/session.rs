//! Login sessions: insert, lookup, listing the live ones, revocation (one, every live one of a
//! user, or all but one), and refresh: the session row holds its current refresh token's hash
//! and generation, which a refresh moves on in one conditional update.

use crate::rows::{self, SESSION_COLS};
use crate::sql::{query, Conn};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::LazyLock;
use subtle::ConstantTimeEq as _;
use uos_domain::{SessionId, UserId, UserStatus};
use uos_store::{
    LegacyRefreshToken, Result, Rotation, Session, SessionReads, SessionRepo, TokenUse,
};

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

    async fn get_legacy_refresh_token(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<LegacyRefreshToken>> {
        let row = query::<D>("select session_id, used_at from refresh_token where token_hash = $1")
            .bind(token_hash)
            .fetch_optional(self.conn())
            .await?;
        row.map(|r| {
            Ok(LegacyRefreshToken {
                session_id: SessionId(rows::get(&r, "session_id")?),
                used: rows::get::<D, Option<DateTime<Utc>>>(&r, "used_at")?.is_some(),
            })
        })
        .transpose()
    }
}

#[async_trait]
impl<D: Dialect> SessionRepo for SqlTx<D> {
    #[tracing::instrument(skip_all)]
    async fn insert_session(&mut self, s: &Session, refresh_hash: &str) -> Result<()> {
        query::<D>(
            "insert into session (session_id, user_id, created_at, expires_at, revoked_at, \
             last_seen_at, user_agent, ip, refresh_hash, refresh_generation) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)",
        )
        .bind(s.id.0)
        .bind(s.user_id.0)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.revoked_at)
        .bind(s.last_seen_at)
        .bind(&s.user_agent)
        .bind(&s.ip)
        .bind(refresh_hash)
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
    async fn rotate_refresh(
        &mut self,
        r: &Rotation,
        at: DateTime<Utc>,
        idle_since: DateTime<Utc>,
    ) -> Result<TokenUse> {
        rotate_refresh::<D>(self.conn(), r, at, idle_since).await
    }
}

/// The one statement of a refresh: the session moves to its next token only from the
/// presented generation and hash, and only while it is live and its user may log in.
static ROTATE_REFRESH: LazyLock<String> = LazyLock::new(|| {
    let may_log_in = UserStatus::ALL
        .into_iter()
        .filter(|s| s.may_log_in())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "update session set refresh_hash = $4, refresh_generation = refresh_generation + 1, \
           last_seen_at = $5 \
         where session_id = $1 and refresh_generation = $2 and refresh_hash = $3 \
           and revoked_at is null and expires_at > $5 and last_seen_at > $6 \
           and exists (select 1 from user_account u where u.user_id = session.user_id \
             and u.status in ({may_log_in})) \
         returning {SESSION_COLS}"
    )
});

/// [`SessionRepo::rotate_refresh`] on `conn`: in a transaction (the default
/// [`Store::refresh_session`](uos_store::Store::refresh_session)) or on its own (PostgreSQL's,
/// one autocommit statement). One conditional update, no read first, so that exactly one of
/// two concurrent refreshes with one token wins: the second waits for the first's lock
/// (SQLite's one writer, PostgreSQL's row lock), then finds the generation moved on and
/// changes nothing. Only a refused token costs a second statement, to say why.
pub async fn rotate_refresh<D: Dialect>(
    conn: &mut Conn<D>,
    r: &Rotation,
    at: DateTime<Utc>,
    idle_since: DateTime<Utc>,
) -> Result<TokenUse> {
    let fresh = query::<D>(&ROTATE_REFRESH)
        .bind(r.session_id.0)
        .bind(r.generation)
        .bind(r.token_hash.as_str())
        .bind(r.next_hash.as_str())
        .bind(at)
        .bind(idle_since)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = fresh {
        return Ok(TokenUse::Fresh(rows::session(&row)?));
    }
    let now =
        query::<D>("select refresh_generation, refresh_hash from session where session_id = $1")
            .bind(r.session_id.0)
            .fetch_optional(conn)
            .await?;
    let Some(row) = now else {
        return Ok(TokenUse::Unknown);
    };
    let generation: i64 = rows::get(&row, "refresh_generation")?;
    let hash: Option<String> = rows::get(&row, "refresh_hash")?;
    // A generation before the current one can only be a replay: the caller checked that the
    // token is one we issued. The current generation with the current hash was refused for
    // the session's state. The hashes are compared in constant time, like every secret check
    // (in the update above the database compares digests, which tell a timing observer
    // nothing about the token).
    let current = hash.is_some_and(|h| bool::from(h.as_bytes().ct_eq(r.token_hash.as_bytes())));
    Ok(if generation > r.generation {
        TokenUse::Reused(r.session_id)
    } else if generation == r.generation && current {
        TokenUse::Dead
    } else {
        TokenUse::Unknown
    })
}
