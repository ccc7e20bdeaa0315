//! PostgreSQL's one-statement writes: the hottest writes of the service (a login, a refresh,
//! every audit append, the API-key usage flush), each one round trip where the portable
//! implementation takes several. Data-modifying CTEs make each as atomic as its steps were.

use crate::error::db_err;
use crate::{PgDialect, PgStore};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use uos_domain::{ApiKeyId, UserStatus};
use uos_store::{
    AuditHead, AuditRow, RefreshToken, Result, Session, SessionReads, Store, StoreError, TokenUse,
};
use uos_store_sql::rows;
use uos_store_sql::sql::Row;
use uos_store_sql::SqlTx;

/// The common table expressions that append one event: `moved` advances the chain's head, only
/// from the link the event extends, and `appended` inserts the event for each row of `moved`.
/// A statement continues it with its main part; [`bind_append`] binds `$1`..`$13`. The chain's
/// head row must exist (a chain at genesis starts in its own statement first).
const APPEND_AUDIT: &str = "with moved as (update audit_chain set seq = $1, hash = $8 \
     where chain = $12 and seq = $1 - 1 and seq = $10 and hash = $11 returning seq), \
     appended as (insert into audit_event (chain, seq, audit_event_id, occurred_at, org_id, \
     actor_id, action, target_id, hash, payload, trace_parent) \
     select $12, $1, $2, $3, $4, $5, $6, $7, $8, $9, $13 from moved)";

/// `query` with `row` and the head it extends bound to `$1`..`$13` of [`APPEND_AUDIT`].
fn bind_append<'q>(
    query: Query<'q, Postgres, PgArguments>,
    prev: &'q AuditHead,
    row: &'q AuditRow,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(row.seq)
        .bind(row.id)
        .bind(row.occurred_at)
        .bind(row.org_id.map(|o| o.0))
        .bind(&row.actor_id)
        .bind(&row.action)
        .bind(&row.target_id)
        .bind(&row.hash)
        .bind(row.payload.to_string())
        .bind(prev.seq)
        .bind(&prev.hash)
        .bind(&row.chain)
        .bind(&row.trace_parent)
}

/// [`AuditRepo::append_audit`](uos_store::AuditRepo::append_audit) in one statement: a writer
/// that did not chain from the current head inserts nothing and gets `VersionConflict`. The
/// update takes the head's row lock, so a concurrent appender waits, then finds it moved.
pub(crate) async fn append_audit(
    conn: &mut PgConnection,
    prev: &AuditHead,
    row: &AuditRow,
) -> Result<()> {
    let sql = format!("{APPEND_AUDIT} select seq from moved");
    let moved = bind_append(sqlx::query(&sql), prev, row)
        .fetch_optional(conn)
        .await
        .map_err(db_err)?;
    match moved {
        Some(_) => Ok(()),
        None => Err(StoreError::VersionConflict),
    }
}

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

/// [`SessionRepo::open_session`](uos_store::SessionRepo::open_session) in one statement; the
/// token's foreign key is checked at its end, when the session row exists.
pub(crate) async fn open_session(
    conn: &mut PgConnection,
    s: &Session,
    first: &RefreshToken,
) -> Result<()> {
    let sql = format!(
        "with opened as ({INSERT_SESSION} returning session_id) \
         insert into refresh_token (token_hash, session_id, created_at, used_at) \
         select $9, session_id, $10, $11 from opened"
    );
    bind_session(sqlx::query(&sql), s)
        .bind(&first.token_hash)
        .bind(first.created_at)
        .bind(first.used_at)
        .execute(conn)
        .await
        .map_err(db_err)?;
    Ok(())
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

/// [`SessionRepo::rotate_refresh_token`](uos_store::SessionRepo::rotate_refresh_token) in one
/// statement. Exactly one of two concurrent uses wins: under read committed the second update
/// waits for the first's row lock, then re-checks `used_at is null` against the committed row
/// and changes nothing (and so inserts nothing).
pub(crate) async fn rotate_refresh_token(
    tx: &mut SqlTx<PgDialect>,
    token_hash: &str,
    next_hash: &str,
    at: DateTime<Utc>,
) -> Result<TokenUse> {
    let sql = format!(
        "with used as (update refresh_token set used_at = $2 \
           where token_hash = $1 and used_at is null returning session_id), {ROTATE}"
    );
    let fresh = sqlx::query(&sql)
        .bind(token_hash)
        .bind(at)
        .bind(next_hash)
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err)?;
    if let Some(row) = fresh {
        return Ok(TokenUse::Fresh(rows::session(&Row::<PgDialect>::new(row))?));
    }
    Ok(match tx.get_refresh_token(token_hash).await? {
        Some(t) => TokenUse::Reused(t.session_id),
        None => TokenUse::Unknown,
    })
}

/// [`MachineRepo::touch_api_keys`](uos_store::MachineRepo::touch_api_keys) in one statement;
/// an id used twice counts with its latest time. The rows are locked in id order before they
/// are written, so two replicas flushing overlapping batches at once wait for each other
/// instead of deadlocking (a plain UPDATE … FROM locks in whatever order its join produces).
pub(crate) async fn touch_api_keys(
    conn: &mut PgConnection,
    used: &[(ApiKeyId, DateTime<Utc>)],
) -> Result<()> {
    let (ids, times): (Vec<uuid::Uuid>, Vec<DateTime<Utc>>) =
        used.iter().map(|(id, at)| (id.0, *at)).unzip();
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
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

impl PgStore {
    /// [`Store::open_session_audited`](uos_store::Store::open_session_audited) as one
    /// autocommit statement: the session and its token are inserted only from the audit
    /// head's move, so a stale `prev` stores nothing.
    pub(crate) async fn open_session_audited_in_one(
        &self,
        s: &Session,
        first: &RefreshToken,
        prev: &AuditHead,
        event: &AuditRow,
    ) -> Result<()> {
        let sql = format!(
            "{APPEND_AUDIT}, opened as (insert into session (session_id, user_id, created_at, \
               expires_at, revoked_at, last_seen_at, user_agent, ip) \
               select $14, $15, $16, $17, $18, $19, $20, $21 from moved returning session_id) \
             insert into refresh_token (token_hash, session_id, created_at, used_at) \
             select $22, session_id, $23, $24 from opened"
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
            return Ok(TokenUse::Fresh(rows::session(&Row::<PgDialect>::new(row))?));
        }
        let mut read = self.read().await?;
        Ok(match read.get_refresh_token(token_hash).await? {
            Some(t) if t.used_at.is_some() => TokenUse::Reused(t.session_id),
            Some(_) => TokenUse::Dead,
            None => TokenUse::Unknown,
        })
    }
}
