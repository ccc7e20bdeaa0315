//! Records that are storage concerns rather than domain entities: sessions, idempotency,
//! audit rows, list filters and pool gauges.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use uos_domain::{Email, Membership, MembershipStatus, OrgId, SessionId, User, UserId, UserStatus};

#[derive(Clone, Debug, Default)]
pub struct OrgFilter {
    /// Only orgs this user is a member of; `None` = all orgs (platform admins).
    pub member: Option<UserId>,
    pub include_deleted: bool,
}

#[derive(Clone, Debug, Default)]
pub struct UserFilter {
    pub status: Option<UserStatus>,
    /// Lower-case prefix of the email.
    pub email_prefix: Option<String>,
}

#[derive(Clone, Debug)]
pub struct MemberFilter {
    pub org: OrgId,
    pub status: Option<MembershipStatus>,
}

/// A member as a page lists it, read in one statement: the membership, and what the page
/// shows of its user (not the whole account: no password hash or preferences leave the store
/// for a listing).
#[derive(Clone, Debug, PartialEq)]
pub struct ListedMember {
    pub membership: Membership,
    pub email: Email,
    pub display_name: Option<String>,
    /// The user's global status.
    pub user_status: UserStatus,
}

/// An audit event as a listing reads it: the stored payload's text, unparsed.
pub type ListedAudit = AuditRow<Box<RawValue>>;

/// A login session. Access tokens carry its id, so revoking it stops them at once.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last login or refresh; the idle timeout counts from here.
    pub last_seen_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl Session {
    /// Usable at `at`: not revoked, not past its absolute end, and seen after `idle_since`
    /// (`at` minus the idle timeout).
    pub fn is_live(&self, at: DateTime<Utc>, idle_since: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > at && self.last_seen_at > idle_since
    }
}

/// A refresh as the store performs it: the presented token, named by the session and the
/// generation it was issued at (the caller has checked its MAC), its hash, and the hash of the
/// successor that becomes the session's current token at `generation + 1`. A session row keeps
/// only its current token's hash and generation, so a refresh updates that one row.
#[derive(Clone, Debug, PartialEq)]
pub struct Rotation {
    pub session_id: SessionId,
    pub generation: i64,
    /// Hex SHA-256 of the presented token.
    pub token_hash: String,
    /// Hex SHA-256 of the successor.
    pub next_hash: String,
}

/// A refresh token issued before the session row held its refresh state (migration 0016),
/// when each token was a row of its own. Such a token names no session, so its old row maps
/// it to one: unused, it is its session's current token at generation 0 and refreshes once;
/// used, it is a replay.
#[derive(Clone, Debug, PartialEq)]
pub struct LegacyRefreshToken {
    pub session_id: SessionId,
    pub used: bool,
}

/// What presenting a refresh token did.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenUse {
    /// It was the session's current token: the session now has the successor, one generation
    /// on, and was seen at the refresh's time. The session as it is after the refresh.
    Fresh(Session),
    /// It is an earlier token of the session: a replay (the caller revokes the session).
    Reused(SessionId),
    /// No such token: no such session, or a hash that is not the session's current one.
    Unknown,
    /// The session's current token, but the session is no longer live or its user may no
    /// longer log in: nothing changed.
    Dead,
}

/// An `Idempotency-Key` use. `status`/`response` are `None` while the first request runs.
#[derive(Clone, Debug, PartialEq)]
pub struct IdempotencyRecord {
    /// Who used the key (principal id, or `anonymous:<ip>`): keys are scoped per caller.
    pub scope: String,
    pub key: String,
    /// Hex SHA-256 of method, path and body: the same key with another request is refused.
    pub request_hash: String,
    pub status: Option<u16>,
    pub response: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum IdemClaim {
    /// The key is ours; run the request.
    Claimed,
    /// Someone used the key before (finished or still in flight).
    Existing(IdempotencyRecord),
}

/// Last link of one audit chain (`seq` 0 and the genesis hash while it has no events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditHead {
    /// `org:<org_id>`, `platform` or `legacy` (see `uos_audit::chain_of`).
    pub chain: String,
    pub seq: i64,
    pub hash: String,
}

/// A sealed audit event as stored: `payload` is the event's JSON (the source of truth the
/// verifier checks); the other columns are copies for filtering.
///
/// The payload is parsed (`serde_json::Value`) where an event is written or published, and
/// kept as the stored text ([`RawValue`]) where a listing serves it: a page of events is then
/// sent without building and re-serializing a JSON tree per event.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRow<P = serde_json::Value> {
    /// The chain the event extends, and its position there.
    pub chain: String,
    pub seq: i64,
    pub id: uuid::Uuid,
    pub occurred_at: DateTime<Utc>,
    pub org_id: Option<OrgId>,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_id: Option<String>,
    pub hash: String,
    pub payload: P,
    /// The W3C `traceparent` of the span that recorded the event, when traces are exported:
    /// the relay publishes the event as part of that trace. Outside the hash and the payload
    /// (it says how the event was processed, not what happened).
    pub trace_parent: Option<String>,
}

/// A signed checkpoint of every chain head as stored: `payload` is the checkpoint's JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointRow {
    pub id: uuid::Uuid,
    pub issued_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub org: Option<OrgId>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// What a password login needs of an account, read at once: the user, and whether a confirmed
/// second factor stands between the password and a session.
#[derive(Clone, Debug, PartialEq)]
pub struct LoginUser {
    pub user: User,
    pub second_factor: bool,
}

/// A user's TOTP enrolment. `secret_enc` is ciphertext from the key port (the raw secret is
/// never stored); an enrolment is inert until `confirmed_at` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct TotpEnrolment {
    pub user_id: UserId,
    pub secret_enc: String,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The newest RFC 6238 time step accepted; a code of this step or an earlier one is refused,
    /// so one code cannot be used twice.
    pub last_used_step: i64,
}

/// A password reset. Ordinary accounts get a token at once; a privileged account's request
/// waits (`token_hash` `None`) until a second admin approves it.
#[derive(Clone, Debug, PartialEq)]
pub struct PasswordReset {
    pub id: uuid::Uuid,
    pub user_id: UserId,
    /// Hex SHA-256 of the mailed token, once one was issued.
    pub token_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub requires_approval: bool,
    pub approved_by: Option<UserId>,
    pub approved_at: Option<DateTime<Utc>>,
    pub requested_ip: Option<String>,
}

/// An account at an upstream OIDC provider linked to a local user.
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalIdentity {
    pub issuer: String,
    pub subject: String,
    pub user_id: UserId,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

/// Where an audit export job is: `pending` → `running` → `done` or `failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportStatus {
    Pending,
    Running,
    Done,
    Failed,
}

impl ExportStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// An audit export job: which slice of the trail, who asked, and how far it got.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditExport {
    pub id: uuid::Uuid,
    /// `None`: the whole trail.
    pub org_id: Option<OrgId>,
    /// The actor id of whoever asked for it.
    pub requested_by: String,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub status: ExportStatus,
    pub events_written: i64,
    /// Lowercase hex SHA-256 of the file, once done.
    pub sha256: Option<String>,
    pub error: Option<String>,
    /// Where the file is in the object store, once done.
    pub object_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How an export attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum ExportOutcome {
    Done {
        events_written: i64,
        sha256: String,
        object_key: String,
    },
    Failed {
        events_written: i64,
        error: String,
    },
}

/// A subject's data key as stored: only the key provider's ciphertext of it. `subject` is
/// `user:<user id>` or `email:<hex keyed hash>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectKey {
    pub subject: String,
    pub wrapped_key: String,
    pub created_at: DateTime<Utc>,
}

/// What a legal hold is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldOn {
    User(UserId),
    Org(OrgId),
}

/// A legal hold: while it stands the purge job leaves its user (or its org and the org's
/// members) alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegalHold {
    pub id: uuid::Uuid,
    pub on: HoldOn,
    pub reason: String,
    /// The actor id of whoever placed it.
    pub placed_by: String,
    pub placed_at: DateTime<Utc>,
    pub version: i64,
}

/// What purging an org removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrgPurge {
    pub members_removed: u64,
    pub invites_removed: u64,
    pub roles_removed: u64,
    pub service_accounts_removed: u64,
}

/// A usage event as counted: its spend goes to the org, and to the service account and member
/// it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageEvent {
    pub org_id: OrgId,
    /// The id the source gave it; an org counts each one once.
    pub source_event_id: String,
    pub amount_cents: i64,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub service_account_id: Option<uuid::Uuid>,
    pub user_id: Option<UserId>,
    pub api_key_id: Option<uuid::Uuid>,
}

/// Spend to add to one scope on one UTC day (days since the Unix epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpendDelta {
    pub key: uos_domain::BudgetKey,
    pub day: i64,
    pub cents: i64,
}

/// A webhook delivery: one event to one endpoint, and how sending it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: uuid::Uuid,
    pub org_id: Option<OrgId>,
    pub event_type: String,
    pub url: String,
    /// The JSON body sent, exactly.
    pub payload: String,
    pub created_at: DateTime<Utc>,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// How one attempt at a delivery went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered {
        status: i64,
    },
    /// Failed; sent again at `retry_at`, or given up when `None`.
    Failed {
        status: Option<i64>,
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

/// The reconciler's record of one org a config repo declares (its status, contract
/// § Declarative config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredOrg {
    /// The file's slug: an org is declared, and can fail validation, before it exists.
    pub slug: String,
    pub org_id: Option<OrgId>,
    pub file: String,
    /// The commit whose version of the file was last applied.
    pub last_applied_revision: Option<String>,
    pub last_applied_at: Option<DateTime<Utc>>,
    /// The file as last applied: what the drift check compares the live org with.
    pub applied_text: Option<String>,
    pub last_attempt: Option<DeclaredAttempt>,
    pub drift: Option<DriftCheck>,
    pub paused: Option<Pause>,
}

/// The outcome of the latest apply of one declared org.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredAttempt {
    pub revision: String,
    pub at: DateTime<Utc>,
    /// `applied`, `failed` or `rejected` (the commit's signature).
    pub result: String,
    pub error: Option<String>,
}

/// The latest comparison of a managed org with its last applied file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriftCheck {
    pub checked_at: DateTime<Utc>,
    /// JSON array of `{path, declared, live}`; empty when in sync.
    pub differences: String,
}

/// Who stopped the reconciler (for one org or all), when and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    pub at: DateTime<Utc>,
    pub reason: String,
    /// The actor's id.
    pub by: String,
}

/// The reconciler's switches for every org at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeclarativeControl {
    /// The newest revision of the config repo the reconciler read.
    pub revision: Option<String>,
    pub paused: Option<Pause>,
    /// The latest request to reconcile now (API sync or webhook).
    pub sync_requested_at: Option<DateTime<Utc>>,
}

/// Something the reconciler created in an org, and so may prune.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeclaredKind {
    Role,
    /// A member by email, whether it joined directly or was invited.
    Member,
    ServiceAccount,
}

impl DeclaredKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeclaredKind::Role => "role",
            DeclaredKind::Member => "member",
            DeclaredKind::ServiceAccount => "service_account",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            DeclaredKind::Role,
            DeclaredKind::Member,
            DeclaredKind::ServiceAccount,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}
