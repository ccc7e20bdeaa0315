//! The unit of work: one store transaction that carries the change, its audit events and the
//! idempotency response, and that can only be committed with a [`Capability`].

use crate::{Caller, Ctx, Inner, Result, ServiceError};
use serde::Serialize;
use uos_audit::{Actor, Changes, NewEvent, Target};
use uos_authz::Capability;
use uos_domain::{Membership, OrgId, User};
use uos_keys::KeyPurpose;
use uos_shared::Invalidation;
use uos_store::{AuditHead, AuditRow, RefreshToken, Session, StoreError, Tx};

/// What a successful use case hands back to the transport: the status a replay must repeat,
/// the body (None = 204) and the version for the `ETag`.
#[derive(Clone, Debug)]
pub struct Done<V> {
    pub status: u16,
    pub body: Option<V>,
    pub version: Option<i64>,
}

impl<V> Done<V> {
    pub fn ok(body: V, version: Option<i64>) -> Self {
        Self {
            status: 200,
            body: Some(body),
            version,
        }
    }

    pub fn created(body: V, version: Option<i64>) -> Self {
        Self {
            status: 201,
            body: Some(body),
            version,
        }
    }

    /// 202: taken in, with nothing to tell (password-reset requests look the same whether
    /// or not the account exists).
    pub fn accepted() -> Self {
        Self {
            status: 202,
            body: None,
            version: None,
        }
    }

    pub fn no_content() -> Self {
        Self {
            status: 204,
            body: None,
            version: None,
        }
    }
}

pub(crate) struct UnitOfWork<'a> {
    inner: &'a Inner,
    ctx: &'a Ctx,
    tx: Box<dyn Tx>,
    head: Option<AuditHead>,
    /// Cached state this change makes stale, evicted on every replica after the commit.
    stale: Vec<Invalidation>,
}

impl<'a> UnitOfWork<'a> {
    pub(crate) async fn begin(inner: &'a Inner, ctx: &'a Ctx) -> Result<Self> {
        Ok(Self {
            inner,
            ctx,
            tx: inner.store.begin().await?,
            head: None,
            stale: Vec::new(),
        })
    }

    pub(crate) fn tx(&mut self) -> &mut dyn Tx {
        &mut *self.tx
    }

    /// Append one audit event to the chain inside this transaction. `changes` are redacted by
    /// the audit crate before hashing, so secrets never enter the chain.
    ///
    /// The first event of a transaction chains from the head this replica last committed,
    /// without reading it first: the append checks it is still the head, so one round trip
    /// does it. Only when another writer got in between is the head read (and locked) and
    /// the event sealed again.
    pub(crate) async fn record(
        &mut self,
        action: &str,
        org_id: Option<OrgId>,
        target: (&str, String),
        before: serde_json::Value,
        after: serde_json::Value,
    ) -> Result<()> {
        let event = new_event(self.ctx, action, org_id, target, before, after);
        self.record_event(event).await
    }

    /// [`record`](Self::record) for an event already built.
    async fn record_event(&mut self, event: NewEvent) -> Result<()> {
        let (prev, remembered) = match self.head.take() {
            // Held by this transaction since its first append.
            Some(h) => (h, false),
            None => match self.inner.remembered_audit_head() {
                Some(h) => (h, true),
                None => (self.tx.lock_audit_head().await?, false),
            },
        };
        let row = seal(self.inner, event.clone(), &prev)?;
        let row = match self.tx.append_audit(&prev, &row).await {
            Ok(()) => row,
            Err(StoreError::VersionConflict) if remembered => {
                self.inner.note_audit_head_conflict();
                let prev = self.tx.lock_audit_head().await?;
                let row = seal(self.inner, event, &prev)?;
                self.tx.append_audit(&prev, &row).await?;
                row
            }
            Err(e) => return Err(e.into()),
        };
        self.head = Some(AuditHead {
            seq: row.seq,
            hash: row.hash,
        });
        Ok(())
    }

    /// Store a new user with its `user.created` event (invite acceptance, federated login).
    pub(crate) async fn create_user(&mut self, user: &User) -> Result<()> {
        self.tx.insert_user(user).await?;
        self.record(
            "user.created",
            None,
            ("user", user.id.to_string()),
            serde_json::Value::Null,
            snapshot(user),
        )
        .await
    }

    /// Store a new membership with its `member.added` event (org creation, invites, auto-join).
    pub(crate) async fn add_member(&mut self, m: &Membership) -> Result<()> {
        self.tx.insert_membership(m).await?;
        self.record(
            "member.added",
            Some(m.org_id),
            ("user", m.user_id.to_string()),
            serde_json::Value::Null,
            snapshot(m),
        )
        .await
    }

    /// After commit, evict this from the auth caches of every replica (a revoked session, a
    /// user whose status or password changed).
    pub(crate) fn invalidate(&mut self, msg: Invalidation) {
        self.stale.push(msg);
    }

    /// Store the idempotency response (if the request carries a key) and commit. Requiring the
    /// capability here means no change reaches the store without an allow from the policy.
    pub(crate) async fn commit<V: Serialize>(
        mut self,
        _cap: &Capability,
        done: &Done<V>,
    ) -> Result<()> {
        if let Some(ticket) = &self.ctx.idem {
            let mut body = match &done.body {
                Some(b) => serde_json::to_value(b)
                    .map_err(|e| ServiceError::Internal(format!("response encode: {e}")))?,
                None => serde_json::Value::Null,
            };
            // Secrets in a response (an invite token) are shown once and never stored in
            // clear: a replay returns them redacted.
            uos_audit::redact(&mut body);
            self.tx
                .complete_idempotency(&ticket.scope, &ticket.key, done.status, &body)
                .await?;
        }
        self.tx.commit().await?;
        if let Some(head) = self.head.take() {
            self.inner.remember_audit_head(head);
        }
        for msg in &self.stale {
            // Locally at once, so this replica never serves the old state after answering;
            // other replicas through the fan-out. A failed publish is bounded by the cache TTL.
            self.inner.evict(msg);
            if let Err(e) = self.inner.shared.publish(msg).await {
                tracing::warn!(error = %e, "invalidation not published; other replicas catch up by TTL");
            }
        }
        Ok(())
    }
}

/// A login's write: the session, its first refresh token and the `session.created` event
/// (`after`). Chained from the head this replica remembers, it is one store step with no
/// transaction of its own. Otherwise it goes through a [`UnitOfWork`]: when no head is
/// remembered yet, when an idempotency response must be stored with it, or when another
/// writer moved the head (then the unit of work locks the head before its append, rather
/// than trying the stale head a second time).
pub(crate) async fn open_session<T: Serialize>(
    inner: &Inner,
    ctx: &Ctx,
    cap: &Capability,
    (session, first): (&Session, &RefreshToken),
    after: serde_json::Value,
    done: &Done<T>,
) -> Result<()> {
    let event = new_event(
        ctx,
        "session.created",
        None,
        ("session", session.id.to_string()),
        serde_json::Value::Null,
        after,
    );
    let mut stale = false;
    if let Some(prev) = &inner.remembered_audit_head().filter(|_| ctx.idem.is_none()) {
        let row = seal(inner, event.clone(), prev)?;
        match inner
            .store
            .open_session_audited(session, first, prev, &row)
            .await
        {
            Ok(()) => {
                inner.remember_audit_head(AuditHead {
                    seq: row.seq,
                    hash: row.hash,
                });
                return Ok(());
            }
            Err(StoreError::VersionConflict) => {
                inner.note_audit_head_conflict();
                stale = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut uow = UnitOfWork::begin(inner, ctx).await?;
    if stale {
        uow.head = Some(uow.tx.lock_audit_head().await?);
    }
    uow.tx().open_session(session, first).await?;
    uow.record_event(event).await?;
    uow.commit(cap, done).await
}

fn new_event(
    ctx: &Ctx,
    action: &str,
    org_id: Option<OrgId>,
    target: (&str, String),
    before: serde_json::Value,
    after: serde_json::Value,
) -> NewEvent {
    NewEvent {
        id: uos_domain::new_id(),
        occurred_at: uos_domain::now(),
        actor: actor_of(ctx),
        action: action.to_string(),
        org_id: org_id.map(|o| o.0),
        target: Target {
            kind: target.0.to_string(),
            id: Some(target.1),
        },
        changes: Changes { before, after },
        request_id: Some(ctx.request_id.clone()),
    }
}

/// The stored form of `event` as the link after `prev`, signed with the audit key.
fn seal(inner: &Inner, event: NewEvent, prev: &AuditHead) -> Result<AuditRow> {
    let org_id = event.org_id.map(OrgId);
    let key = inner.keys.signing_key(KeyPurpose::Audit);
    let sealed = uos_audit::seal(event, prev.seq + 1, &prev.hash, &key);
    let payload = serde_json::to_value(&sealed)
        .map_err(|e| ServiceError::Internal(format!("audit encode: {e}")))?;
    Ok(AuditRow {
        seq: sealed.seq,
        id: sealed.id,
        occurred_at: sealed.occurred_at,
        org_id,
        actor_id: sealed.actor.id.clone(),
        action: sealed.action.clone(),
        target_id: sealed.target.id.clone(),
        hash: sealed.hash,
        payload,
    })
}

fn actor_of(ctx: &Ctx) -> Actor {
    let (kind, id) = match &ctx.caller {
        Caller::User(u) => ("user", Some(u.user.id.to_string())),
        Caller::Machine(m) => ("service_account", Some(m.account.id.to_string())),
        Caller::System => ("system", None),
        Caller::Anonymous => ("anonymous", None),
    };
    Actor {
        kind: kind.into(),
        id,
    }
}

/// Snapshot of an entity for `changes.before/after`. Entities never serialise secrets
/// (password and token hashes are `skip_serializing`) and the audit crate redacts again.
pub(crate) fn snapshot<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
