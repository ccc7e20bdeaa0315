//! PostgreSQL's one-statement writes: the hottest writes of the service (a login, every audit
//! append, the API-key usage flush), each one round trip where the portable implementation
//! takes several. Data-modifying CTEs make each as atomic as its steps were.

use crate::error::db_err;
use crate::PgStore;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use uos_domain::ApiKeyId;
use uos_store::{AuditHead, AuditRow, Result, Session, StoreError};

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

/// `query` with `s` bound to its next eight parameters, in the session table's column order.
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
    /// autocommit statement: the session (with its first refresh token's hash) is inserted
    /// only from the audit head's move, so a stale `prev` stores nothing.
    pub(crate) async fn open_session_audited_in_one(
        &self,
        s: &Session,
        refresh_hash: &str,
        prev: &AuditHead,
        event: &AuditRow,
    ) -> Result<()> {
        let sql = format!(
            "{APPEND_AUDIT} insert into session (session_id, user_id, created_at, expires_at, \
               revoked_at, last_seen_at, user_agent, ip, refresh_hash, refresh_generation) \
             select $14, $15, $16, $17, $18, $19, $20, $21, $22, 0 from moved"
        );
        let query = bind_session(bind_append(sqlx::query(&sql), prev, event), s);
        let inserted = query
            .bind(refresh_hash)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::VersionConflict);
        }
        Ok(())
    }
}
