//! Storage port of user-org-service: the traits every backend implements, the records they
//! exchange, and the one error type.
//!
//! A write is one [`Tx`]: the changed rows, their version bumps, the idempotency record and the
//! audit event commit together or not at all. Reads use [`Store::read`], which gives the read
//! half of that interface ([`ReadTx`]) over a plain pooled connection (no transaction round
//! trips) and has no way to write. The two hottest
//! writes, a login's ([`Store::open_session_audited`]) and a refresh
//! ([`Store::refresh_session`]), are also steps of the [`Store`] itself, so that a backend can
//! make each one statement without a transaction around it; they are just as atomic.

mod error;
mod page;
mod records;

pub use error::StoreError;
pub use page::{Page, PageRequest};
pub use records::{
    AttemptOutcome, AuditExport, AuditFilter, AuditHead, AuditRow, CheckpointRow,
    DeclarativeControl, DeclaredAttempt, DeclaredKind, DeclaredOrg, DriftCheck, ExportOutcome,
    ExportStatus, ExternalIdentity, HoldOn, IdemClaim, IdempotencyRecord, LegacyRefreshToken,
    LegalHold, ListedAudit, ListedMember, LoginUser, MemberFilter, OrgFilter, OrgPurge,
    PasswordReset, Pause, PoolStats, Rotation, Session, SpendDelta, SubjectKey, TokenUse,
    TotpEnrolment, UsageEvent, UserFilter, WebhookDelivery,
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_domain::{
    ApiKey, ApiKeyId, Approval, ApprovalKind, ApprovalStatus, Budget, BudgetKey, BudgetState,
    CustomRole, Email, Invite, InviteId, Membership, Org, OrgId, OrgSlug, RoleName, ServiceAccount,
    ServiceAccountId, SessionId, User, UserId,
};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A storage backend (SQLite or PostgreSQL).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Start a write transaction. Dropping it without [`Tx::commit`] rolls back.
    async fn begin(&self) -> Result<Box<dyn Tx>>;
    /// A read handle over a pooled connection: each statement on its own, no writes.
    async fn read(&self) -> Result<Box<dyn ReadTx>>;
    /// Cheap liveness probe for `/readyz`.
    async fn ping(&self) -> Result<()>;
    /// Pool gauges for `/metrics`.
    fn pool_stats(&self) -> PoolStats;
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;
    /// Stop handing out connections (graceful shutdown).
    async fn close(&self);

    /// Become the one holder of lock `name` across every process on this store (the
    /// reconciler's leader lock), or `None` while another holds it. PostgreSQL keeps a session
    /// advisory lock on a connection of its own; SQLite locks a file beside the database.
    /// Dropping the guard releases it, and so does the holder's process ending in any way.
    async fn try_lock_leader(&self, name: &str) -> Result<Option<Box<dyn LeaderLock>>>;

    /// A login's write as one atomic step of its own: the session with the hash of its first
    /// refresh token ([`SessionRepo::insert_session`]) and the audit event that records it,
    /// appended after `prev` ([`AuditRepo::append_audit`]: `VersionConflict`, and nothing
    /// stored, if `prev` is no longer the head). The default runs a transaction; PostgreSQL
    /// makes it one statement, so a login pays one round trip here instead of four.
    async fn open_session_audited(
        &self,
        s: &Session,
        refresh_hash: &str,
        prev: &AuditHead,
        event: &AuditRow,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.insert_session(s, refresh_hash).await?;
        tx.append_audit(prev, event).await?;
        tx.commit().await
    }

    /// A refresh as one atomic step of its own: [`SessionRepo::rotate_refresh`], one update
    /// of the session row. The default runs it in a (short) transaction; PostgreSQL runs the
    /// same statement on its own, so a refresh pays one round trip instead of three.
    async fn refresh_session(
        &self,
        r: &Rotation,
        at: DateTime<Utc>,
        idle_since: DateTime<Utc>,
    ) -> Result<TokenUse> {
        let mut tx = self.begin().await?;
        let used = tx.rotate_refresh(r, at, idle_since).await?;
        tx.commit().await?;
        Ok(used)
    }
}

/// Everything a read can do: the read half of every repository, and no way to write. A read
/// handle from [`Store::read`] runs each statement on its own (autocommit), so a write through
/// it would bypass the unit of work and its audit event; this type makes that impossible.
#[async_trait]
pub trait ReadTx:
    OrgReads
    + UserReads
    + MembershipReads
    + InviteReads
    + RoleReads
    + SessionReads
    + CredentialReads
    + MachineReads
    + AuditReads
    + ExportReads
    + RetentionReads
    + BudgetReads
    + ApprovalReads
    + WebhookReads
    + DeclarativeReads
    + InventoryReads
    + Send
{
    /// Confine the rest of this unit of work to the rows of `org`: where the backend enforces
    /// it (PostgreSQL's row-level security), no statement after this one reads or changes an
    /// org-scoped row of another org. A unit of work calls it once it holds a capability for
    /// one org. A read handle runs each statement on its own, so there it changes nothing (and
    /// neither does it on SQLite, a single-tenant embedded store).
    async fn confine_to_org(&mut self, org: OrgId) -> Result<()>;
}

/// Everything a unit of work can do: every read, and the writes, which commit together or not
/// at all. Split by aggregate so each storage module has one job.
#[async_trait]
pub trait Tx:
    ReadTx
    + OrgRepo
    + UserRepo
    + MembershipRepo
    + InviteRepo
    + RoleRepo
    + SessionRepo
    + CredentialRepo
    + MachineRepo
    + IdempotencyRepo
    + AuditRepo
    + OutboxRepo
    + LeaseRepo
    + ExportRepo
    + RetentionRepo
    + BudgetRepo
    + ApprovalRepo
    + WebhookRepo
    + DeclarativeRepo
{
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// A held leader lock ([`Store::try_lock_leader`]).
#[async_trait]
pub trait LeaderLock: Send + Sync + std::fmt::Debug {
    /// Whether the lock is still held: false once the connection holding it was lost (then
    /// another process may hold it already, and this one must stop acting as the leader).
    async fn still_held(&mut self) -> bool;
}

/// The read half of [`OrgRepo`].
#[async_trait]
pub trait OrgReads: Send {
    async fn get_org(&mut self, id: OrgId) -> Result<Option<Org>>;
    async fn get_org_by_slug(&mut self, slug: &OrgSlug) -> Result<Option<Org>>;
    /// Creation order (by id). With `member` set, only orgs where that user has a membership
    /// (any membership status); `include_deleted` false hides deleted orgs.
    async fn list_orgs(&mut self, filter: &OrgFilter, page: &PageRequest) -> Result<Page<Org>>;
}

/// Optimistic locking: every `update_*` takes the version the caller read (`expected_version`)
/// and the entity carrying its *new* version; it writes only if the stored version still equals
/// `expected_version`, else [`StoreError::VersionConflict`] and nothing changes.
#[async_trait]
pub trait OrgRepo: OrgReads {
    /// `Conflict("slug_taken")` when the slug exists (in any status).
    async fn insert_org(&mut self, org: &Org) -> Result<()>;
    async fn update_org(&mut self, org: &Org, expected_version: i64) -> Result<()>;
}

/// The read half of [`UserRepo`].
#[async_trait]
pub trait UserReads: Send {
    async fn get_user(&mut self, id: UserId) -> Result<Option<User>>;
    async fn get_user_by_email(&mut self, email: &Email) -> Result<Option<User>>;
    /// [`get_user_by_email`](Self::get_user_by_email) plus whether the user has a confirmed
    /// TOTP enrolment, in one query: a login's only read before the password check.
    async fn get_login_user(&mut self, email: &Email) -> Result<Option<LoginUser>>;
    /// Creation order. `status` filters exactly; `email_prefix` matches the start of the email.
    async fn list_users(&mut self, filter: &UserFilter, page: &PageRequest) -> Result<Page<User>>;
    async fn count_users(&mut self) -> Result<i64>;
}

#[async_trait]
pub trait UserRepo: UserReads {
    /// `Conflict("email_taken")` when the (normalised) email exists.
    async fn insert_user(&mut self, user: &User) -> Result<()>;
    /// `Conflict("email_taken")` if the email changes to a taken one.
    async fn update_user(&mut self, user: &User, expected_version: i64) -> Result<()>;
}

/// The read half of [`MembershipRepo`].
#[async_trait]
pub trait MembershipReads: Send {
    async fn get_membership(&mut self, org: OrgId, user: UserId) -> Result<Option<Membership>>;
    /// Members of one org in membership creation order, each with its user's email, name and
    /// status: one statement per page, however many members it shows.
    async fn list_members(
        &mut self,
        filter: &MemberFilter,
        page: &PageRequest,
    ) -> Result<Page<ListedMember>>;
    /// All memberships of a user (bounded by the number of orgs a person joins).
    async fn list_memberships_of_user(&mut self, user: UserId) -> Result<Vec<Membership>>;
    /// How many memberships of the org hold this role directly (a custom role in use cannot
    /// be deleted).
    async fn count_members_with_role(&mut self, org: OrgId, role: &RoleName) -> Result<i64>;
}

#[async_trait]
pub trait MembershipRepo: MembershipReads {
    /// `Conflict("already_member")` for a second membership of the same user in the same org.
    async fn insert_membership(&mut self, m: &Membership) -> Result<()>;
    async fn update_membership(&mut self, m: &Membership, expected_version: i64) -> Result<()>;
    /// `NotFound` when absent.
    async fn delete_membership(&mut self, org: OrgId, user: UserId) -> Result<()>;
    /// Active memberships holding the `owner` role. On PostgreSQL this locks those rows
    /// (`for update`) so two concurrent demotions cannot both see "another owner remains".
    async fn lock_active_owners(&mut self, org: OrgId) -> Result<Vec<UserId>>;
}

/// The read half of [`InviteRepo`].
#[async_trait]
pub trait InviteReads: Send {
    async fn get_invite(&mut self, org: OrgId, id: InviteId) -> Result<Option<Invite>>;
    async fn get_invite_by_token_hash(&mut self, token_hash: &str) -> Result<Option<Invite>>;
    /// Invites of one org in creation order.
    async fn list_invites(&mut self, org: OrgId, page: &PageRequest) -> Result<Page<Invite>>;
}

#[async_trait]
pub trait InviteRepo: InviteReads {
    async fn insert_invite(&mut self, invite: &Invite) -> Result<()>;
    async fn update_invite(&mut self, invite: &Invite, expected_version: i64) -> Result<()>;
}

/// The read half of [`RoleRepo`].
#[async_trait]
pub trait RoleReads: Send {
    async fn get_role(&mut self, org: OrgId, name: &RoleName) -> Result<Option<CustomRole>>;
    /// Custom roles of one org, by name (roles are few; the HTTP list still pages them).
    async fn list_roles(&mut self, org: OrgId, page: &PageRequest) -> Result<Page<CustomRole>>;
    /// Every custom role of one org, for expansion and cycle checks.
    async fn all_roles(&mut self, org: OrgId) -> Result<Vec<CustomRole>>;
}

#[async_trait]
pub trait RoleRepo: RoleReads {
    /// `Conflict("role_exists")` for a duplicate name within the org.
    async fn insert_role(&mut self, role: &CustomRole) -> Result<()>;
    async fn update_role(&mut self, role: &CustomRole, expected_version: i64) -> Result<()>;
    /// `NotFound` when absent.
    async fn delete_role(&mut self, org: OrgId, name: &RoleName) -> Result<()>;
}

/// The read half of [`SessionRepo`].
#[async_trait]
pub trait SessionReads: Send {
    async fn get_session(&mut self, id: SessionId) -> Result<Option<Session>>;
    /// The user's sessions that are neither revoked nor expired at `now`, newest first, at most
    /// `limit`.
    async fn list_live_sessions(
        &mut self,
        user: UserId,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Session>>;
    /// The session a token from before migration 0016 belongs to, by the token's hash (see
    /// [`LegacyRefreshToken`]); `None` for any other hash.
    async fn get_legacy_refresh_token(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<LegacyRefreshToken>>;
}

#[async_trait]
pub trait SessionRepo: SessionReads {
    /// A new session whose current refresh token (generation 0) has hash `refresh_hash`.
    async fn insert_session(&mut self, s: &Session, refresh_hash: &str) -> Result<()>;
    /// Sets `revoked_at` if not yet revoked; returns whether it changed anything.
    async fn revoke_session(&mut self, id: SessionId, at: DateTime<Utc>) -> Result<bool>;
    /// Revokes every live session of a user; returns how many.
    async fn revoke_user_sessions(&mut self, user: UserId, at: DateTime<Utc>) -> Result<u64>;
    /// Revokes every live session of a user except `keep` ("log out my other devices").
    async fn revoke_other_sessions(
        &mut self,
        user: UserId,
        keep: SessionId,
        at: DateTime<Utc>,
    ) -> Result<u64>;
    /// A refresh: if `r` names the session's current token (its generation and hash), the
    /// session is live ([`Session::is_live`] at `at` with `idle_since`) and its user's status
    /// may log in, the session moves to `r.next_hash` at the next generation and is seen at
    /// `at`, in one conditional update of the session row (`Fresh`). Otherwise nothing
    /// changes, and the answer says why: an earlier generation is `Reused`, the current token
    /// of a dead session `Dead`, anything else `Unknown`. Two concurrent refreshes with one
    /// token: exactly one gets `Fresh` (the other, finding the generation moved on, `Reused`).
    /// The caller must have checked that `r` came from a token it issued: an earlier
    /// generation cannot be checked against a stored hash.
    async fn rotate_refresh(
        &mut self,
        r: &Rotation,
        at: DateTime<Utc>,
        idle_since: DateTime<Utc>,
    ) -> Result<TokenUse>;
}

/// The read half of [`CredentialRepo`].
#[async_trait]
pub trait CredentialReads: Send {
    async fn get_totp(&mut self, user: UserId) -> Result<Option<TotpEnrolment>>;
    async fn count_unused_recovery_codes(&mut self, user: UserId) -> Result<i64>;
    /// The user's previous password hashes, newest first, at most `limit`.
    async fn password_history(&mut self, user: UserId, limit: u32) -> Result<Vec<String>>;
    async fn get_password_reset(&mut self, id: uuid::Uuid) -> Result<Option<PasswordReset>>;
    async fn get_password_reset_by_token(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<PasswordReset>>;
    async fn get_external_identity(
        &mut self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<ExternalIdentity>>;
}

/// Second factors, password history, password resets and federated identities: the secrets
/// around a user that are not the user row itself. Every secret here is hashed or encrypted by
/// the caller before it arrives.
#[async_trait]
pub trait CredentialRepo: CredentialReads {
    /// Insert the user's enrolment, replacing any existing one (a new enrolment starts over).
    async fn put_totp(&mut self, e: &TotpEnrolment) -> Result<()>;
    /// Set `confirmed_at` if unconfirmed; returns whether it changed anything.
    async fn confirm_totp(&mut self, user: UserId, at: DateTime<Utc>) -> Result<bool>;
    /// Accept `step` only if it is newer than the last accepted one, atomically: of two
    /// concurrent logins with one code, exactly one gets `true`.
    async fn use_totp_step(&mut self, user: UserId, step: i64) -> Result<bool>;
    /// Remove the enrolment and every recovery code; returns whether there was an enrolment.
    async fn delete_totp(&mut self, user: UserId) -> Result<bool>;
    /// Replace all of the user's recovery codes with these hashes.
    async fn replace_recovery_codes(
        &mut self,
        user: UserId,
        hashes: &[String],
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// Mark the code used if it exists and is unused; returns whether this call did it.
    async fn use_recovery_code(
        &mut self,
        user: UserId,
        hash: &str,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Remember a password hash the user had (for the no-reuse rule).
    async fn push_password_history(
        &mut self,
        user: UserId,
        phc: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// `Conflict("reset_token_taken")` on a duplicate token hash.
    async fn insert_password_reset(&mut self, r: &PasswordReset) -> Result<()>;
    /// Approve a pending reset that is still unapproved and unused: sets the approver, the
    /// token hash and a new `expires_at`. Returns whether this call did it.
    async fn approve_password_reset(
        &mut self,
        id: uuid::Uuid,
        approver: UserId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Mark the reset with this token used if unused; returns whether this call did it.
    async fn use_password_reset(&mut self, token_hash: &str, at: DateTime<Utc>) -> Result<bool>;
    /// `Conflict("identity_linked")` when (issuer, subject) is already linked.
    async fn insert_external_identity(&mut self, x: &ExternalIdentity) -> Result<()>;
}

/// The read half of [`MachineRepo`].
#[async_trait]
pub trait MachineReads: Send {
    /// The account if it belongs to `org` (any status, deleted included).
    async fn get_service_account(
        &mut self,
        org: OrgId,
        id: ServiceAccountId,
    ) -> Result<Option<ServiceAccount>>;
    /// By id alone, for credential checks where the org is not yet known.
    async fn find_service_account(
        &mut self,
        id: ServiceAccountId,
    ) -> Result<Option<ServiceAccount>>;
    /// The org's accounts in creation order; deleted ones only with `include_deleted`.
    async fn list_service_accounts(
        &mut self,
        org: OrgId,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<ServiceAccount>>;
    /// How many undeleted accounts of the org hold this role directly (a role in use cannot
    /// be deleted).
    async fn count_service_accounts_with_role(
        &mut self,
        org: OrgId,
        role: &RoleName,
    ) -> Result<i64>;
    /// The key if it belongs to `org`.
    async fn get_api_key(&mut self, org: OrgId, id: ApiKeyId) -> Result<Option<ApiKey>>;
    /// The lookup of every API-key authentication.
    async fn get_api_key_by_prefix(&mut self, prefix: &str) -> Result<Option<ApiKey>>;
    /// Keys of one account in creation order, revoked and expired ones included.
    async fn list_api_keys(
        &mut self,
        sa: ServiceAccountId,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>>;
    /// Unrevoked, unreplaced, unexpired keys of the org whose account has a maximum key age
    /// that `created_at` exceeds at `now`, in creation order.
    async fn list_overdue_api_keys(
        &mut self,
        org: OrgId,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>>;
    /// Overdue keys (as above) across all orgs, for the metric.
    async fn count_overdue_api_keys(&mut self, now: DateTime<Utc>) -> Result<i64>;
    async fn is_access_token_revoked(&mut self, jti: uuid::Uuid) -> Result<bool>;
}

/// Service accounts, their API keys, and revoked client-credentials access tokens. Secrets
/// arrive here only as keyed hashes.
#[async_trait]
pub trait MachineRepo: MachineReads {
    /// `Conflict("name_taken")` when an undeleted account of the org has this name.
    async fn insert_service_account(&mut self, sa: &ServiceAccount) -> Result<()>;
    /// Optimistic lock like every `update_*`; `Conflict("name_taken")` on a rename to a taken
    /// name.
    async fn update_service_account(
        &mut self,
        sa: &ServiceAccount,
        expected_version: i64,
    ) -> Result<()>;
    /// `Conflict("prefix_taken")` on a duplicate prefix.
    async fn insert_api_key(&mut self, key: &ApiKey) -> Result<()>;
    /// Optimistic lock on `version`. `last_used_at` is left alone (see `touch_api_keys`).
    async fn update_api_key(&mut self, key: &ApiKey, expected_version: i64) -> Result<()>;
    /// Revoke every unrevoked key of the account (account deletion); returns their ids.
    async fn revoke_service_account_keys(
        &mut self,
        sa: ServiceAccountId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ApiKeyId>>;
    /// Quarantine the key (its request rate tripped the detector): sets `quarantined_at` and
    /// `quarantine_reason` and bumps the version, only if it is not quarantined already.
    /// The key as stored afterwards, or `None` if it was already quarantined or is unknown, so
    /// of concurrent callers exactly one gets it. Releasing goes through `update_api_key`.
    async fn quarantine_api_key(
        &mut self,
        id: ApiKeyId,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<Option<ApiKey>>;
    /// Record uses in one statement: `last_used_at` becomes the later of its value and the
    /// given time. Unknown ids are skipped. Does not bump versions (usage is not an edit).
    async fn touch_api_keys(&mut self, used: &[(ApiKeyId, DateTime<Utc>)]) -> Result<()>;
    /// Across all orgs: overdue keys (as above) not yet reported get `overdue_reported_at =
    /// now`, atomically, and are returned (at most `limit`). Two replicas sweeping at once
    /// never both get the same key.
    async fn claim_overdue_api_keys(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ApiKey>>;
    /// Deny a client-credentials access token (RFC 7009) until it expires anyway. Idempotent;
    /// `true` only for the call that added the denial, so of concurrent revocations exactly one
    /// records it.
    async fn revoke_access_token(
        &mut self,
        jti: uuid::Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Forget denials of tokens that have expired by `now`; returns how many.
    async fn purge_revoked_access_tokens(&mut self, now: DateTime<Utc>) -> Result<u64>;
}

#[async_trait]
pub trait IdempotencyRepo: Send {
    /// Insert an in-flight record, or return the existing one for (scope, key). An existing
    /// record created before `stale_before` (an abandoned in-flight claim or an expired
    /// completed one) is replaced by the new claim.
    async fn claim_idempotency(
        &mut self,
        rec: &IdempotencyRecord,
        stale_before: DateTime<Utc>,
    ) -> Result<IdemClaim>;
    /// Store the response of a claimed key (call inside the change's transaction).
    async fn complete_idempotency(
        &mut self,
        scope: &str,
        key: &str,
        status: u16,
        body: &serde_json::Value,
    ) -> Result<()>;
    /// Drop an in-flight claim whose request failed, so the client may retry.
    async fn release_idempotency(&mut self, scope: &str, key: &str) -> Result<()>;
}

/// What a backup records of a store, to check a restore against.
#[async_trait]
pub trait InventoryReads: Send {
    /// The number of rows of every table of the schema, by table name, in name order.
    async fn row_counts(&mut self) -> Result<Vec<(String, i64)>>;
}

/// A store's contents in brief, read in one snapshot: the rows of every table and the head of
/// every audit chain. A backup records it; a restore must reproduce it exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    pub row_counts: Vec<(String, i64)>,
    pub audit_heads: Vec<AuditHead>,
}

impl Inventory {
    /// The inventory of the store `r` reads (one snapshot if `r` is a transaction).
    pub async fn read(r: &mut (dyn ReadTx + '_)) -> Result<Self> {
        Ok(Self {
            row_counts: r.row_counts().await?,
            audit_heads: r.audit_heads().await?,
        })
    }
}

/// The read half of [`AuditRepo`].
#[async_trait]
pub trait AuditReads: Send {
    /// `chain`'s head as last committed (no lock: a writer chains from
    /// [`AuditRepo::lock_audit_head`] or a head it remembers); genesis for a chain with no
    /// events.
    async fn audit_head(&mut self, chain: &str) -> Result<AuditHead>;
    /// Every chain's head, ordered by chain name: what a checkpoint signs.
    async fn audit_heads(&mut self) -> Result<Vec<AuditHead>>;
    /// Chronological (in the order events were stored, which is `seq` order within each
    /// chain), with filters; the page cursor is opaque. Payloads come as stored (valid JSON,
    /// not parsed into a tree).
    async fn list_audit(
        &mut self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<ListedAudit>>;
    /// Checkpoints in the order they were issued, those issued at or after `since` only if
    /// given; the page cursor is the last checkpoint's id.
    async fn list_checkpoints(
        &mut self,
        since: Option<DateTime<Utc>>,
        page: &PageRequest,
    ) -> Result<Page<CheckpointRow>>;
    /// The checkpoint issued last, if any.
    async fn latest_checkpoint(&mut self) -> Result<Option<CheckpointRow>>;
    /// The checkpoint issued last at or before `at`, if any.
    async fn latest_checkpoint_before(
        &mut self,
        at: DateTime<Utc>,
    ) -> Result<Option<CheckpointRow>>;
}

#[async_trait]
pub trait AuditRepo: AuditReads {
    /// `chain`'s head, created at genesis if the chain has no events yet. On PostgreSQL it
    /// locks the head's row until the transaction ends, so concurrent writers to one chain
    /// append one after another while writers to other chains do not wait; SQLite writes are
    /// already serialised.
    async fn lock_audit_head(&mut self, chain: &str) -> Result<AuditHead>;
    /// Append a sealed event to `row.chain`, chained from `prev`, and move that chain's head
    /// to it, only if `prev` (chain, seq *and* hash) is still the head: otherwise nothing
    /// changes and the answer is `VersionConflict`. So a writer may seal from a head it only
    /// remembers, without [`lock_audit_head`](Self::lock_audit_head), and can never fork a
    /// chain.
    async fn append_audit(&mut self, prev: &AuditHead, row: &AuditRow) -> Result<()>;
    /// Store a signed checkpoint.
    async fn insert_checkpoint(&mut self, row: &CheckpointRow) -> Result<()>;
}

/// The audit table read as an outbox: what the relay has not yet published, per chain.
#[async_trait]
pub trait OutboxRepo: Send {
    /// Up to `limit` events past each chain's published seq, in the order they were stored
    /// (so each chain's in seq order). A chain's events commit in seq order (its writers take
    /// turns on its head), so progress per chain never skips an event that commits late.
    async fn unpublished_audit(&mut self, limit: u32) -> Result<Vec<AuditRow>>;
    /// How many events are unpublished, and when the oldest of them occurred.
    async fn audit_backlog(&mut self) -> Result<(u64, Option<DateTime<Utc>>)>;
    /// Record that each `(chain, seq)` was published up to and including `seq`; progress never
    /// moves back.
    async fn mark_published(&mut self, progress: &[(String, i64)]) -> Result<()>;
}

/// Named leases that let one replica at a time do a job (the audit relay).
#[async_trait]
pub trait LeaseRepo: Send {
    /// Take or renew lease `name` for `holder` until `until`, if it is free, expired at `now`,
    /// or already `holder`'s. True if `holder` holds it now.
    async fn claim_lease(
        &mut self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool>;
}

/// The read half of [`ExportRepo`].
#[async_trait]
pub trait ExportReads: Send {
    async fn get_audit_export(&mut self, id: uuid::Uuid) -> Result<Option<AuditExport>>;
    /// Exports a worker may claim, oldest first, at most `limit`: pending ones, and running
    /// ones whose row has not moved since `stale_before` (their replica died).
    async fn claimable_audit_exports(
        &mut self,
        stale_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<uuid::Uuid>>;
}

/// Audit export jobs. A job is run by the one replica whose `claim` it holds: progress and the
/// outcome are recorded only under that claim.
#[async_trait]
pub trait ExportRepo: ExportReads {
    async fn insert_audit_export(&mut self, e: &AuditExport) -> Result<()>;
    /// Move a claimable export (as [`ExportReads::claimable_audit_exports`] finds them) to
    /// running under `claim`, in one statement: of two replicas claiming one job, exactly one
    /// gets `true`. The progress of an earlier attempt is reset.
    async fn claim_audit_export(
        &mut self,
        id: uuid::Uuid,
        claim: uuid::Uuid,
        stale_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Record how many events the running attempt `claim` has written; `false` (and nothing
    /// changes) when the job is no longer that attempt's.
    async fn audit_export_progress(
        &mut self,
        id: uuid::Uuid,
        claim: uuid::Uuid,
        events_written: i64,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// End the running attempt `claim` as done or failed; `false` (and nothing changes) when
    /// the job is no longer that attempt's.
    async fn finish_audit_export(
        &mut self,
        id: uuid::Uuid,
        claim: uuid::Uuid,
        outcome: &ExportOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool>;
}

/// The read half of [`RetentionRepo`].
#[async_trait]
pub trait RetentionReads: Send {
    /// The stored keys of those of `subjects` that have one (a destroyed subject has none).
    async fn get_subject_keys(&mut self, subjects: &[String]) -> Result<Vec<SubjectKey>>;
    async fn get_legal_hold(&mut self, on: HoldOn) -> Result<Option<LegalHold>>;
    /// Whether a hold stops purging `user`: one on the user, or on an org the user is a
    /// member of.
    async fn user_is_held(&mut self, user: UserId) -> Result<bool>;
    /// Deleted users whose deletion is older than `deleted_before` and that no hold covers
    /// (see [`user_is_held`](Self::user_is_held)), oldest deletion first, at most `limit`.
    async fn purgeable_users(
        &mut self,
        deleted_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<UserId>>;
    /// Deleted, not yet purged orgs whose deletion is older than `deleted_before` and that
    /// have no hold, oldest deletion first, at most `limit`.
    async fn purgeable_orgs(
        &mut self,
        deleted_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OrgId>>;
    /// When the org was purged, if it was.
    async fn org_purged_at(&mut self, org: OrgId) -> Result<Option<DateTime<Utc>>>;
    /// The invitee addresses of `org`'s invites that no account has: the email subjects that
    /// only this org's trail may name.
    async fn org_invitees_without_account(&mut self, org: OrgId) -> Result<Vec<Email>>;
}

/// Retention and erasure: the per-subject keys that encrypt personal data in audit events,
/// legal holds, and the purge of users and orgs whose restore window has passed.
#[async_trait]
pub trait RetentionRepo: RetentionReads {
    /// Store a subject's key unless the subject has one already; true if this one was stored.
    /// Two writers creating the same subject's key at once: exactly one gets `true`.
    async fn insert_subject_key(&mut self, key: &SubjectKey) -> Result<bool>;
    /// Delete the keys of `subjects` (crypto-shredding); how many existed.
    async fn destroy_subject_keys(&mut self, subjects: &[String]) -> Result<u64>;
    /// The user, its row locked until the transaction ends: purging it and placing a hold on
    /// it take this lock first, so one of them sees what the other did.
    async fn lock_user(&mut self, id: UserId) -> Result<Option<User>>;
    /// [`lock_user`](Self::lock_user) for an org.
    async fn lock_org(&mut self, id: OrgId) -> Result<Option<Org>>;
    /// A new hold; `Conflict("legal_hold_exists")` if its user or org has one.
    async fn insert_legal_hold(&mut self, hold: &LegalHold) -> Result<()>;
    /// Replace a hold's reason (optimistic, as every `update_*`).
    async fn update_legal_hold(&mut self, hold: &LegalHold, expected_version: i64) -> Result<()>;
    /// Lift the hold on `on`; false if there was none.
    async fn delete_legal_hold(&mut self, on: HoldOn) -> Result<bool>;
    /// Remove everything that lets the user act or that describes them besides the row: its
    /// sessions and refresh tokens, second factor and recovery codes, password history,
    /// password resets and linked external identities. Memberships are removed separately
    /// (each is audited in its org). Returns how many sessions there were.
    async fn erase_user_credentials(&mut self, id: UserId) -> Result<u64>;
    /// Remove an org's members, invites, custom roles, service accounts and their API keys,
    /// and mark the org purged: `display_name` emptied, `slug` replaced by `slug` (freeing the
    /// old one), `purged_at` set, version bumped. The row and its audit chain stay.
    async fn purge_org(
        &mut self,
        org: OrgId,
        slug: &OrgSlug,
        at: DateTime<Utc>,
    ) -> Result<OrgPurge>;
}

/// The read half of [`BudgetRepo`].
#[async_trait]
pub trait BudgetReads: Send {
    async fn get_budget(&mut self, key: &BudgetKey) -> Result<Option<Budget>>;
    /// Those of `keys` that have a budget, in any order.
    async fn get_budgets(&mut self, keys: &[BudgetKey]) -> Result<Vec<Budget>>;
    /// What `key` spent on the days from `from_day` up to (not including) `until_day`, or with
    /// no end when `None`; 0 when nothing was.
    async fn spent(
        &mut self,
        key: &BudgetKey,
        from_day: i64,
        until_day: Option<i64>,
    ) -> Result<i64>;
}

/// Budgets, and the usage counted against them.
#[async_trait]
pub trait BudgetRepo: BudgetReads {
    /// A new budget; `Conflict("budget_exists")` if its scope has one.
    async fn insert_budget(&mut self, b: &Budget) -> Result<()>;
    /// Replace a budget's settings (optimistic, as every `update_*`).
    async fn update_budget(&mut self, b: &Budget, expected_version: i64) -> Result<()>;
    async fn delete_budget(&mut self, key: &BudgetKey) -> Result<bool>;
    /// Record `events` of `org`, each unless the org already has one with its source id;
    /// returns the source ids this call recorded. The source ids must be distinct. Two writers
    /// recording the same event at once: exactly one records it.
    async fn insert_usage(&mut self, org: OrgId, events: &[UsageEvent]) -> Result<Vec<String>>;
    /// Add each delta to its scope's spend on its day. Concurrent additions all count.
    async fn add_spend(&mut self, deltas: &[SpendDelta]) -> Result<()>;
    /// Note that `key` reached `state` in the period starting at `period_start`; true only for
    /// the first call for that budget, period and state.
    async fn mark_budget_state(
        &mut self,
        key: &BudgetKey,
        period_start: DateTime<Utc>,
        state: BudgetState,
        at: DateTime<Utc>,
    ) -> Result<bool>;
}

/// The read half of [`WebhookRepo`].
#[async_trait]
pub trait WebhookReads: Send {
    /// Deliveries in creation order, of `org` only when given, after the cursor (a delivery
    /// id) when given.
    async fn list_webhook_deliveries(
        &mut self,
        org: Option<OrgId>,
        page: &PageRequest,
    ) -> Result<Page<WebhookDelivery>>;
}

/// Webhook deliveries: the outbox of notifications and their log.
#[async_trait]
pub trait WebhookRepo: WebhookReads {
    async fn insert_webhook_deliveries(&mut self, deliveries: &[WebhookDelivery]) -> Result<()>;
    /// Up to `limit` pending deliveries due at `now`, oldest first, each moved to
    /// `next_attempt_at = lease_until` so that no other worker takes it meanwhile (and, should
    /// this one die, it is tried again then).
    async fn claim_webhook_deliveries(
        &mut self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>>;
    /// Record one attempt's outcome.
    async fn record_webhook_attempt(
        &mut self,
        id: uuid::Uuid,
        outcome: &AttemptOutcome,
        at: DateTime<Utc>,
    ) -> Result<()>;
}

/// The read half of [`ApprovalRepo`].
#[async_trait]
pub trait ApprovalReads: Send {
    async fn get_approval(&mut self, id: uuid::Uuid) -> Result<Option<Approval>>;
    /// The newest request of `kind` about `subject` (a password reset's id).
    async fn get_approval_by_subject(
        &mut self,
        kind: ApprovalKind,
        subject: uuid::Uuid,
    ) -> Result<Option<Approval>>;
    /// Requests of `kind` in `org` (every org and none when `None`), newest first, with the
    /// status they have at `now` when `status` is given (an expired one is stored as pending
    /// or active, past its time).
    async fn list_approvals(
        &mut self,
        kind: ApprovalKind,
        org: Option<OrgId>,
        status: Option<ApprovalStatus>,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<Approval>>;
    /// Requests and grants past their time at `now` whose expiry is not stored yet, oldest
    /// first, at most `limit`.
    async fn lapsed_approvals(&mut self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Approval>>;
    /// The grants of `kind` in force at `now`, in `org` (in every org and none when `None`).
    async fn active_approvals(
        &mut self,
        kind: ApprovalKind,
        org: Option<OrgId>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Approval>>;
}

/// Requests that wait for two approvers: budget overrides, break-glass, privileged resets.
#[async_trait]
pub trait ApprovalRepo: ApprovalReads {
    async fn insert_approval(&mut self, a: &Approval) -> Result<()>;
    /// Store an approval's new status and approvers (optimistic, as every `update_*`: two
    /// approvers at once, one of them gets `VersionConflict` and tries again).
    async fn update_approval(&mut self, a: &Approval, expected_version: i64) -> Result<()>;
}

/// The read half of [`DeclarativeRepo`].
#[async_trait]
pub trait DeclarativeReads: Send {
    async fn get_declared_org(&mut self, slug: &str) -> Result<Option<DeclaredOrg>>;
    /// The declared org that manages `org`, if any.
    async fn declared_org_of(&mut self, org: OrgId) -> Result<Option<DeclaredOrg>>;
    /// Every declared org, by slug.
    async fn list_declared_orgs(&mut self, page: &PageRequest) -> Result<Page<DeclaredOrg>>;
    async fn declarative_control(&mut self) -> Result<DeclarativeControl>;
    /// What the reconciler created in `org`, by kind and name.
    async fn declared_objects(&mut self, org: OrgId) -> Result<Vec<(DeclaredKind, String)>>;
}

/// The reconciler's state: its record of each declared org, what it created, and the switches
/// people use on it.
#[async_trait]
pub trait DeclarativeRepo: DeclarativeReads {
    /// Record that `slug` is declared in `file` (and, once it exists, which org that is),
    /// keeping the rest of the record.
    async fn note_declared_org(
        &mut self,
        slug: &str,
        org_id: Option<OrgId>,
        file: &str,
    ) -> Result<()>;
    /// Record the newest revision of the config repo the reconciler read.
    async fn record_seen_revision(&mut self, revision: &str) -> Result<()>;
    /// Record an apply of `slug`; an applied one also becomes the last applied revision, with
    /// the file's text as it was applied, and the org is then in sync (no drift).
    async fn record_declared_attempt(
        &mut self,
        slug: &str,
        attempt: &DeclaredAttempt,
        applied_text: Option<&str>,
    ) -> Result<()>;
    async fn record_drift(&mut self, slug: &str, drift: &DriftCheck) -> Result<()>;
    /// Forget `slug`, whose file left the repo: the org stays as it is, unmanaged. What the
    /// reconciler created there stays recorded, should the file come back.
    async fn forget_declared_org(&mut self, slug: &str) -> Result<()>;
    /// Pause (`Some`) or resume (`None`) one declared org; false when none has this slug.
    async fn set_declared_pause(&mut self, slug: &str, pause: Option<&Pause>) -> Result<bool>;
    /// Pause or resume the reconciler for every org.
    async fn set_global_pause(&mut self, pause: Option<&Pause>) -> Result<()>;
    async fn request_declarative_sync(&mut self, at: DateTime<Utc>) -> Result<()>;
    async fn add_declared_object(
        &mut self,
        org: OrgId,
        kind: DeclaredKind,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;
    async fn remove_declared_object(
        &mut self,
        org: OrgId,
        kind: DeclaredKind,
        name: &str,
    ) -> Result<()>;
}
