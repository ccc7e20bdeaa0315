//! The unit of work: one store transaction that carries the change, its audit events and the
//! idempotency response, and that can only be committed with a [`Capability`] that covers it.

use crate::audit::personal::{self, DataKey};
use crate::{Caller, Ctx, Inner, Result, ServiceError};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use uos_audit::{Actor, AuditAction, Changes, NewEvent, Target, TargetKind};
use uos_authz::Capability;
use uos_domain::{Membership, OrgId, User};
use uos_keys::KeyPurpose;
use uos_shared::Invalidation;
use uos_store::{AuditHead, AuditRow, Session, StoreError, SubjectKey, Tx};

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
    /// The head of each chain this transaction appended to: it holds them until it ends.
    heads: Vec<AuditHead>,
    /// Cached state this change makes stale, evicted on every replica after the commit.
    stale: Vec<Invalidation>,
    /// The orgs this change touches, as its audit events name them (every change records
    /// one): the capability it commits with must cover each.
    orgs: Vec<OrgId>,
    /// How many events it recorded.
    appended: u64,
    /// Subject keys this unit of work used, by subject.
    subject_keys: HashMap<String, Arc<DataKey>>,
    /// Those of them it created: cached for the replica only once they are committed.
    made_keys: Vec<String>,
}

impl<'a> UnitOfWork<'a> {
    pub(crate) async fn begin(inner: &'a Inner, ctx: &'a Ctx) -> Result<Self> {
        Ok(Self {
            inner,
            ctx,
            tx: inner.store.begin().await?,
            heads: Vec::new(),
            stale: Vec::new(),
            orgs: Vec::new(),
            appended: 0,
            subject_keys: HashMap::new(),
            made_keys: Vec::new(),
        })
    }

    /// The request this unit of work is for.
    pub(crate) fn ctx(&self) -> &'a Ctx {
        self.ctx
    }

    pub(crate) fn tx(&mut self) -> &mut dyn Tx {
        &mut *self.tx
    }

    /// Append one audit event to its chain (its org's, or the platform's) inside this
    /// transaction. `changes` are redacted by the audit crate before hashing, so secrets never
    /// enter the chain.
    ///
    /// The first event of a transaction in a chain links to the head this replica last
    /// committed there, without reading it first: the append checks it is still the head, so
    /// one round trip does it. Only when another writer got in between is the head read (and
    /// locked) and the event sealed again.
    ///
    /// The target is of the action's usual kind (the first of [`AuditAction::targets`]) with
    /// the id `target_id`.
    pub(crate) async fn record(
        &mut self,
        action: AuditAction,
        org_id: Option<OrgId>,
        target_id: String,
        before: serde_json::Value,
        after: serde_json::Value,
    ) -> Result<()> {
        let kind = action.targets()[0];
        self.record_on(action, org_id, (kind, target_id), before, after)
            .await
    }

    /// [`record`](Self::record) with a target of any kind the action allows (a failed login
    /// is about an email when no account has it).
    pub(crate) async fn record_on(
        &mut self,
        action: AuditAction,
        org_id: Option<OrgId>,
        target: (TargetKind, String),
        before: serde_json::Value,
        after: serde_json::Value,
    ) -> Result<()> {
        if let Some(msg) = stale_copies(action, &target, org_id) {
            self.invalidate(msg);
        }
        let event = new_event(self.ctx, action, org_id, target, before, after)?;
        self.record_event(event).await
    }

    /// [`record`](Self::record) for an event already built.
    async fn record_event(&mut self, event: NewEvent) -> Result<()> {
        let event = self.protect(event).await?;
        if let Some(org) = event.org_id.map(OrgId) {
            if !self.orgs.contains(&org) {
                self.orgs.push(org);
            }
        }
        let chain = uos_audit::chain_of(event.org_id);
        let held = self.heads.iter().position(|h| h.chain == chain);
        let (prev, remembered) = match held {
            // Held by this transaction since its first append to the chain.
            Some(i) => (self.heads.swap_remove(i), false),
            None => match self.inner.chain.remembered(&chain) {
                Some(h) => (h, true),
                None => (self.tx.lock_audit_head(&chain).await?, false),
            },
        };
        let row = seal(self.inner, event.clone(), &prev)?;
        let row = match self.tx.append_audit(&prev, &row).await {
            Ok(()) => row,
            Err(StoreError::VersionConflict) if remembered => {
                self.inner.chain.note_conflict();
                let prev = self.tx.lock_audit_head(&chain).await?;
                let row = seal(self.inner, event, &prev)?;
                self.tx.append_audit(&prev, &row).await?;
                row
            }
            Err(e) => return Err(e.into()),
        };
        self.appended += 1;
        self.heads.push(AuditHead {
            chain,
            seq: row.seq,
            hash: row.hash,
        });
        Ok(())
    }

    /// Encrypts the personal data of `event` under its subjects' keys (see
    /// [`crate::audit::personal`]), before it is sealed: the hash covers the ciphertext.
    async fn protect(&mut self, mut event: NewEvent) -> Result<NewEvent> {
        let fields = personal::personal_fields(&mut event, &self.inner.subjects);
        for f in &fields {
            if !self.subject_keys.contains_key(&f.subject) {
                let key = self.subject_key(&f.subject).await?;
                self.subject_keys.insert(f.subject.clone(), key);
            }
        }
        personal::encrypt_fields(&mut event, &fields, |s| self.subject_keys.get(s).cloned())
            .map_err(|e| ServiceError::Internal(format!("audit personal data: {e}")))?;
        Ok(event)
    }

    /// The subject's key: cached on this replica, or stored (unwrapped once, then cached), or
    /// created in this transaction, so that it commits with the first event that uses it.
    async fn subject_key(&mut self, subject: &str) -> Result<Arc<DataKey>> {
        if let Some(key) = self.inner.subjects.cached(subject) {
            return Ok(key);
        }
        if let Some(key) = self.stored_subject_key(subject).await? {
            return Ok(key);
        }
        let key = personal::new_key();
        let wrapped = personal::wrap_key(Arc::clone(&self.inner.keys), subject, key)
            .await
            .map_err(ServiceError::Internal)?;
        let row = SubjectKey {
            subject: subject.to_owned(),
            wrapped_key: wrapped,
            created_at: uos_domain::now(),
        };
        if self.tx.insert_subject_key(&row).await? {
            self.made_keys.push(subject.to_owned());
            return Ok(Arc::new(key));
        }
        // Another transaction created it first (and has committed: the insert waited for it).
        self.stored_subject_key(subject)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("subject key {subject} vanished")))
    }

    async fn stored_subject_key(&mut self, subject: &str) -> Result<Option<Arc<DataKey>>> {
        let rows = self.tx.get_subject_keys(&[subject.to_owned()]).await?;
        let unwrapped = personal::unwrap_keys(Arc::clone(&self.inner.keys), rows)
            .await
            .map_err(ServiceError::Internal)?;
        Ok(unwrapped.into_iter().next().map(|(s, key)| {
            // Only a key this transaction did not create is committed already.
            if !self.made_keys.contains(&s) {
                self.inner.subjects.remember(&s, Arc::clone(&key));
            }
            key
        }))
    }

    /// Store a new user with its `user.created` event (invite acceptance, federated login).
    pub(crate) async fn create_user(&mut self, user: &User) -> Result<()> {
        self.tx.insert_user(user).await?;
        self.record(
            AuditAction::UserCreated,
            None,
            user.id.to_string(),
            serde_json::Value::Null,
            snapshot(user),
        )
        .await
    }

    /// Store a new membership with its `member.added` event (org creation, invites, auto-join).
    pub(crate) async fn add_member(&mut self, m: &Membership) -> Result<()> {
        self.tx.insert_membership(m).await?;
        self.record(
            AuditAction::MemberAdded,
            Some(m.org_id),
            m.user_id.to_string(),
            serde_json::Value::Null,
            snapshot(m),
        )
        .await
    }

    /// After commit, evict this from the caches of every replica (a revoked session, a user
    /// whose status or password changed). Entity copies need no call: every recorded event
    /// evicts its target's (see [`stale_copies`]).
    pub(crate) fn invalidate(&mut self, msg: Invalidation) {
        if !self.stale.contains(&msg) {
            self.stale.push(msg);
        }
    }

    /// Store the idempotency response (if the request carries a key) and commit. Requiring the
    /// capability here means no change reaches the store without an allow from the policy,
    /// and only within what that allow covers (see [`covered_by`](Self::covered_by)).
    pub(crate) async fn commit<V: Serialize>(
        mut self,
        cap: &Capability,
        done: &Done<V>,
    ) -> Result<()> {
        self.record_grant_uses().await?;
        self.covered_by(cap)?;
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
        self.finish().await
    }

    /// Commit a change that is not the answer to the request, so no idempotency response is
    /// stored with it: the audit of a refused or failed attempt (the request answers with an
    /// error, and its idempotency claim is released rather than completed), a step a login
    /// takes before its session exists, or a start-up or background task with no request.
    pub(crate) async fn commit_unanswered(mut self, cap: &Capability) -> Result<()> {
        self.record_grant_uses().await?;
        self.covered_by(cap)?;
        self.finish().await
    }

    /// The break-glass grants this request relied on so far, audited with the change they
    /// allowed (what no unit of work records goes to the replica's recorder).
    async fn record_grant_uses(&mut self) -> Result<()> {
        let uses = self.ctx.grant_uses.take();
        if uses.is_empty() {
            return Ok(());
        }
        let inner = self.inner;
        crate::approvals::break_glass::record_uses(inner, self, uses).await
    }

    /// Refuses the commit unless `cap` covers every org this change touches: a capability
    /// issued for one org never commits a change in another, whatever the handler passed.
    /// Refused, the unit of work is dropped and its transaction rolls back: nothing changes.
    fn covered_by(&self, cap: &Capability) -> Result<()> {
        for org in &self.orgs {
            cap.ensure_covers_org(org.0)
                .map_err(|e| ServiceError::Internal(format!("commit refused: {e}")))?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<()> {
        self.tx.commit().await?;
        self.inner.chain.remember(std::mem::take(&mut self.heads));
        for subject in &self.made_keys {
            if let Some(key) = self.subject_keys.get(subject) {
                self.inner.subjects.remember(subject, Arc::clone(key));
            }
        }
        self.inner.appended(self.appended);
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

/// A login's write: the session, its first refresh token's hash and the `session.created` event
/// (`after`). Chained from the head this replica remembers, it is one store step with no
/// transaction of its own. Otherwise it goes through a [`UnitOfWork`]: when no head is
/// remembered yet, when an idempotency response must be stored with it, or when another
/// writer moved the head (then the unit of work locks the head before its append, rather
/// than trying the stale head a second time).
pub(crate) async fn open_session<T: Serialize>(
    inner: &Inner,
    ctx: &Ctx,
    cap: &Capability,
    (session, first): (&Session, &str),
    after: serde_json::Value,
    done: &Done<T>,
) -> Result<()> {
    let mut event = new_event(
        ctx,
        AuditAction::SessionCreated,
        None,
        (TargetKind::Session, session.id.to_string()),
        serde_json::Value::Null,
        after,
    )?;
    // The one-step write has no transaction to create a subject key in: it is taken only
    // when every key the event needs is cached (the user's, after its first login here).
    let fields = personal::personal_fields(&mut event, &inner.subjects);
    let cached: Option<HashMap<String, Arc<DataKey>>> = fields
        .iter()
        .map(|f| {
            inner
                .subjects
                .cached(&f.subject)
                .map(|k| (f.subject.clone(), k))
        })
        .collect();
    if let Some(keys) = &cached {
        personal::encrypt_fields(&mut event, &fields, |s| keys.get(s).cloned())
            .map_err(|e| ServiceError::Internal(format!("audit personal data: {e}")))?;
    }
    let chain = uos_audit::PLATFORM_CHAIN;
    let mut stale = false;
    if let Some(prev) = &inner
        .chain
        .remembered(chain)
        .filter(|_| ctx.idem.is_none() && cached.is_some())
    {
        let row = seal(inner, event.clone(), prev)?;
        match inner
            .store
            .open_session_audited(session, first, prev, &row)
            .await
        {
            Ok(()) => {
                inner.chain.remember([AuditHead {
                    chain: row.chain,
                    seq: row.seq,
                    hash: row.hash,
                }]);
                inner.appended(1);
                return Ok(());
            }
            Err(StoreError::VersionConflict) => {
                inner.chain.note_conflict();
                stale = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut uow = UnitOfWork::begin(inner, ctx).await?;
    if stale {
        let head = uow.tx.lock_audit_head(chain).await?;
        uow.heads.push(head);
    }
    uow.tx().insert_session(session, first).await?;
    uow.record_event(event).await?;
    uow.commit(cap, done).await
}

/// What a change recorded as `action` against `target` makes stale in the replicas' entity
/// copies ([`crate::kernel::reads`]). Derived from the audit event that every change records,
/// and matched without a catch-all, so a new action cannot be added without deciding.
fn stale_copies(
    action: AuditAction,
    (_, id): &(TargetKind, String),
    org: Option<OrgId>,
) -> Option<Invalidation> {
    use AuditAction as A;
    let id = uuid::Uuid::parse_str(id).ok();
    match action {
        // The user's row, or one of their memberships (member events name the user).
        A::UserUpdated
        | A::UserPreferencesChanged
        | A::UserPasswordChanged
        | A::UserStatusChanged
        | A::UserDeleted
        | A::UserRestored
        | A::UserPurged
        | A::UserLegalHoldPlaced
        | A::UserLegalHoldLifted
        | A::AccountLocked
        | A::AccountUnlocked
        | A::IdentityLinked
        | A::MfaTotpEnabled
        | A::MfaTotpDisabled
        | A::PasswordResetCompleted
        | A::MemberAdded
        | A::MemberRolesChanged
        | A::MemberSuspended
        | A::MemberReactivated
        | A::MemberRemoved => id.map(Invalidation::User),
        A::OrgUpdated
        | A::OrgSuspended
        | A::OrgResumed
        | A::OrgDeleted
        | A::OrgRestored
        | A::OrgPurged
        | A::OrgLegalHoldPlaced
        | A::OrgLegalHoldLifted => id.map(Invalidation::Org),
        // A custom role's change rewrites the role lists of the org's members.
        A::RoleUpdated | A::RoleDeleted => org.map(|o| Invalidation::Org(o.0)),
        A::ServiceAccountUpdated | A::ServiceAccountDeleted | A::ClientSecretIssued => {
            id.map(Invalidation::ServiceAccount)
        }
        // New entities were never copied; attempts, sessions, keys, budgets, decisions and
        // approvals are no entity a copy holds (their own caches evict explicitly).
        A::UserBootstrapped
        | A::UserCreated
        | A::OrgCreated
        | A::RoleCreated
        | A::ServiceAccountCreated
        | A::KeysRotated
        | A::SessionCreated
        | A::LoginFailed
        | A::LoginMfaRequired
        | A::SessionRevoked
        | A::SessionRevokedOthers
        | A::SessionRevokedAll
        | A::SessionRefreshReuseDetected
        | A::MfaTotpEnrolmentStarted
        | A::MfaRecoveryCodeUsed
        | A::PasswordResetRequested
        | A::PasswordResetApproved
        | A::InviteCreated
        | A::InviteRevoked
        | A::InviteAccepted
        | A::ApiKeyCreated
        | A::ApiKeyRevoked
        | A::ApiKeyRotated
        | A::ApiKeyRotationOverdue
        | A::ApiKeyRefused
        | A::ApiKeyQuarantined
        | A::ApiKeyReleased
        | A::AccessTokenRevoked
        | A::AuditExported
        | A::BudgetSet
        | A::BudgetDeleted
        | A::BudgetStateChanged
        | A::UsageRecorded
        | A::PolicyDenied
        | A::PolicyReloaded
        | A::ApprovalRequested
        | A::ApprovalApproved
        | A::ApprovalRejected
        | A::ApprovalRevoked
        | A::ApprovalExpired
        | A::BreakGlassUsed
        | A::DeclarativePaused
        | A::DeclarativeResumed
        | A::DeclarativeRejected => None,
    }
}

/// The event as the audit crate takes it. A target of a kind the action does not list is a bug
/// (the event would contradict `docs/audit-events.md`), refused before anything is written.
fn new_event(
    ctx: &Ctx,
    action: AuditAction,
    org_id: Option<OrgId>,
    target: (TargetKind, String),
    before: serde_json::Value,
    after: serde_json::Value,
) -> Result<NewEvent> {
    if !action.targets().contains(&target.0) {
        return Err(ServiceError::Internal(format!(
            "audit action {action} recorded on a {} target",
            target.0
        )));
    }
    Ok(NewEvent {
        id: uos_domain::new_id(),
        occurred_at: uos_domain::now(),
        actor: actor_of(ctx),
        action: action.as_str().to_owned(),
        org_id: org_id.map(|o| o.0),
        target: Target {
            kind: target.0.as_str().to_owned(),
            id: Some(target.1),
        },
        changes: Changes { before, after },
        request_id: Some(ctx.request_id.clone()),
    })
}

/// The stored form of `event` as the link after `prev`, signed with the audit key.
fn seal(inner: &Inner, event: NewEvent, prev: &AuditHead) -> Result<AuditRow> {
    let org_id = event.org_id.map(OrgId);
    let key = inner.keys.signing_key(KeyPurpose::Audit);
    let sealed = uos_audit::seal(event, prev.seq + 1, &prev.hash, &key);
    let payload = serde_json::to_value(&sealed)
        .map_err(|e| ServiceError::Internal(format!("audit encode: {e}")))?;
    Ok(AuditRow {
        chain: sealed.chain,
        seq: sealed.seq,
        id: sealed.id,
        occurred_at: sealed.occurred_at,
        org_id,
        actor_id: sealed.actor.id.clone(),
        action: sealed.action.clone(),
        target_id: sealed.target.id.clone(),
        hash: sealed.hash,
        payload,
        trace_parent: uos_telemetry::current_traceparent(),
    })
}

fn actor_of(ctx: &Ctx) -> Actor {
    let (kind, id) = match &ctx.caller {
        Caller::User(u) => ("user", Some(u.user.id.to_string())),
        Caller::Machine(m) => ("service_account", Some(m.account.id.to_string())),
        Caller::Reconciler(source) => ("reconciler", Some(source.revision.clone())),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;

    use uos_authz::{Action, Authorizer, Principal, Resource, ResourceKind};
    use uos_domain::{Org, OrgSlug};
    use uos_store::{AuditFilter, PageRequest};

    use super::*;
    use crate::{OidcProviders, Ports, ServiceConfig, Services};

    /// Services over a fresh SQLite file, local keys and in-process shared state.
    async fn services(dir: &std::path::Path) -> Services {
        let url = format!("sqlite://{}", dir.join("uos.db").display());
        let store = uos_store_sqlite::SqliteStore::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        let ports = Ports {
            store: Arc::new(store),
            keys: Arc::new(uos_keys::LocalKeyStore::open(&dir.join("keys")).unwrap()),
            shared: uos_shared::connect(None, "uos-test", None).await.unwrap(),
            mailer: Arc::new(uos_mail::DevMailbox::open(&dir.join("mailbox")).unwrap()),
            events: None,
            objects: Arc::new(uos_objects::LocalObjects::open(&dir.join("exports")).unwrap()),
            webhooks: None,
            push_secret: None,
        };
        Services::new(
            ports,
            Authorizer::new().unwrap(),
            ServiceConfig::default(),
            OidcProviders::new(Default::default()),
        )
        .unwrap()
    }

    /// Two committed orgs.
    async fn two_orgs(inner: &Inner) -> (Org, Org) {
        let now = uos_domain::now();
        let a = Org::new(OrgSlug::parse("org-a").unwrap(), "A".into(), now);
        let b = Org::new(OrgSlug::parse("org-b").unwrap(), "B".into(), now);
        let mut tx = inner.store.begin().await.unwrap();
        tx.insert_org(&a).await.unwrap();
        tx.insert_org(&b).await.unwrap();
        tx.commit().await.unwrap();
        (a, b)
    }

    /// What a platform administrator is allowed to do to `org`.
    fn capability_for(inner: &Inner, org: &Org) -> Capability {
        let admin = Principal {
            platform_admin: true,
            ..Principal::user(uuid::Uuid::now_v7(), "active")
        };
        let resource = Resource {
            kind: ResourceKind::Org,
            id: Some(org.id.to_string()),
            org_id: Some(org.id.0),
            org_status: Some(org.status.as_str().into()),
            ..Resource::default()
        };
        inner
            .authz
            .authorize(&admin, Action::OrgUpdate, &resource)
            .unwrap()
    }

    /// Renames `org` in a new unit of work, audited as a change in that org.
    async fn rename<'a>(inner: &'a Inner, ctx: &'a Ctx, org: &Org) -> UnitOfWork<'a> {
        let mut uow = UnitOfWork::begin(inner, ctx).await.unwrap();
        let mut next = org.clone();
        next.display_name = "renamed".into();
        uow.tx().update_org(&next, org.version).await.unwrap();
        uow.record(
            AuditAction::OrgUpdated,
            Some(org.id),
            org.id.to_string(),
            snapshot(org),
            snapshot(&next),
        )
        .await
        .unwrap();
        uow
    }

    async fn display_name(inner: &Inner, org: &Org) -> String {
        let mut r = inner.store.read().await.unwrap();
        r.get_org(org.id).await.unwrap().unwrap().display_name
    }

    async fn audit_count(inner: &Inner) -> usize {
        let mut r = inner.store.read().await.unwrap();
        let page = r
            .list_audit(&AuditFilter::default(), &PageRequest::first(100))
            .await
            .unwrap();
        page.items.len()
    }

    #[tokio::test]
    async fn a_capability_for_one_org_cannot_commit_a_change_in_another() {
        let dir = tempfile::tempdir().unwrap();
        let svc = services(dir.path()).await;
        let inner = &*svc.inner;
        let ctx = Ctx::system("test");
        let (a, b) = two_orgs(inner).await;

        let cap_a = capability_for(inner, &a);
        let err = rename(inner, &ctx, &b)
            .await
            .commit(&cap_a, &Done::ok((), None))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ServiceError::Internal(m) if m.contains("does not cover")),
            "a capability for org A committed a change in org B: {err:?}"
        );
        assert_eq!(
            display_name(inner, &b).await,
            "B",
            "the refused change was stored"
        );
        assert_eq!(
            audit_count(inner).await,
            0,
            "the refused change was audited"
        );

        // Without a response to store, the same refusal.
        let err = rename(inner, &ctx, &b)
            .await
            .commit_unanswered(&cap_a)
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::Internal(_)), "{err:?}");
        assert_eq!(display_name(inner, &b).await, "B");

        // The capability for org B is what commits it.
        let cap_b = capability_for(inner, &b);
        rename(inner, &ctx, &b)
            .await
            .commit(&cap_b, &Done::ok((), None))
            .await
            .unwrap();
        assert_eq!(display_name(inner, &b).await, "renamed");
        assert_eq!(audit_count(inner).await, 1);
    }

    #[tokio::test]
    async fn a_commit_without_response_leaves_the_idempotency_claim_open() {
        let dir = tempfile::tempdir().unwrap();
        let svc = services(dir.path()).await;
        let inner = &*svc.inner;
        let (a, _) = two_orgs(inner).await;
        let anon = Ctx::system("test");
        let ticket = match svc.claim_idempotency(&anon, "k1", "hash").await.unwrap() {
            crate::IdemOutcome::Proceed(t) => t,
            other => panic!("a fresh key was not claimed: {other:?}"),
        };
        let ctx = Ctx {
            idem: Some(ticket.clone()),
            ..anon.clone()
        };

        rename(inner, &ctx, &a)
            .await
            .commit_unanswered(&capability_for(inner, &a))
            .await
            .unwrap();
        assert_eq!(display_name(inner, &a).await, "renamed");
        // No response was stored under the key: the request is still in flight, and the
        // transport releases the claim if it answers with an error.
        assert!(matches!(
            svc.claim_idempotency(&anon, "k1", "hash").await,
            Err(ServiceError::IdempotencyInFlight)
        ));
        svc.release_idempotency(&ticket).await.unwrap();
        assert!(matches!(
            svc.claim_idempotency(&anon, "k1", "hash").await.unwrap(),
            crate::IdemOutcome::Proceed(_)
        ));
    }
}
