//! The representations the API returns. They are built from domain entities here so that a
//! replayed idempotent response is byte-for-byte what the first request returned.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use uos_domain::{
    builtin_permissions, ApiKey, CustomRole, Email, Invite, Membership, Org, RotationPolicy,
    ServiceAccount, User, UserStatus,
};

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OrgView {
    pub id: Uuid,
    pub slug: String,
    pub display_name: String,
    /// `active`, `suspended` or `deleted`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set while deleted; restorable until the retention window ends.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Longest lifetime of an API key issued in this org, in days; null = no org limit.
    pub api_key_max_days: Option<u32>,
}

impl From<&Org> for OrgView {
    fn from(o: &Org) -> Self {
        Self {
            id: o.id.0,
            slug: o.slug.to_string(),
            display_name: o.display_name.clone(),
            status: o.status.as_str().into(),
            created_at: o.created_at,
            updated_at: o.updated_at,
            deleted_at: o.deleted_at,
            api_key_max_days: o.api_key_max_days,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub display_name: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    /// One of the lifecycle states in CONTRACT.md.
    pub status: String,
    pub platform_admin: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.0,
            email: u.email.to_string(),
            display_name: u.display_name.clone(),
            locale: u.locale.clone(),
            timezone: u.timezone.clone(),
            status: u.status.as_str().into(),
            platform_admin: u.platform_admin,
            created_at: u.created_at,
            updated_at: u.updated_at,
            deleted_at: u.deleted_at,
        }
    }
}

/// A member of an org: the membership plus who the user is.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub display_name: Option<String>,
    pub roles: Vec<String>,
    /// Membership status in this org: `active` or `suspended`.
    pub status: String,
    /// The user's global status.
    pub user_status: String,
    pub joined_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl MemberView {
    pub fn new(m: &Membership, u: &User) -> Self {
        Self::of(m, &u.email, u.display_name.clone(), u.status)
    }

    fn of(
        m: &Membership,
        email: &Email,
        display_name: Option<String>,
        user_status: UserStatus,
    ) -> Self {
        Self {
            user_id: m.user_id.0,
            org_id: m.org_id.0,
            email: email.to_string(),
            display_name,
            roles: m.roles.iter().map(|r| r.to_string()).collect(),
            status: m.status.as_str().into(),
            user_status: user_status.as_str().into(),
            joined_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A listed member carries only what the view shows of its user (a listing reads no whole
/// account).
impl From<&uos_store::ListedMember> for MemberView {
    fn from(l: &uos_store::ListedMember) -> Self {
        Self::of(
            &l.membership,
            &l.email,
            l.display_name.clone(),
            l.user_status,
        )
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct InviteView {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub roles: Vec<String>,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The invite token; present only in the response that created the invite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl InviteView {
    pub fn new(i: &Invite, now: DateTime<Utc>, token: Option<String>) -> Self {
        Self {
            id: i.id.0,
            org_id: i.org_id.0,
            email: i.email.to_string(),
            roles: i.roles.iter().map(|r| r.to_string()).collect(),
            status: i.state(now).as_str().into(),
            expires_at: i.expires_at,
            created_at: i.created_at,
            created_by: i.created_by.map(|u| u.0),
            accepted_at: i.accepted_at,
            revoked_at: i.revoked_at,
            token,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RoleView {
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<String>,
    pub inherits: Vec<String>,
    /// Built-in roles exist in every org and cannot be changed.
    pub builtin: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<&CustomRole> for RoleView {
    fn from(r: &CustomRole) -> Self {
        Self {
            name: r.name.to_string(),
            description: r.description.clone(),
            permissions: r
                .permissions
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            inherits: r.inherits.iter().map(|p| p.to_string()).collect(),
            builtin: false,
            created_at: Some(r.created_at),
            updated_at: Some(r.updated_at),
        }
    }
}

impl RoleView {
    pub fn builtin(name: &str) -> Option<Self> {
        builtin_permissions(name).map(|perms| Self {
            name: name.into(),
            description: None,
            permissions: perms.iter().map(|p| p.to_string()).collect(),
            inherits: Vec::new(),
            builtin: true,
            created_at: None,
            updated_at: None,
        })
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AcceptedInviteView {
    pub user: UserView,
    pub membership: MemberView,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single use: `POST /v1/auth/refresh` answers with a new one. Presenting a used one
    /// revokes the whole session.
    pub refresh_token: String,
    pub session_id: Uuid,
}

/// A live session of the caller, with what we know of the device.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub device: DeviceView,
    /// The session of the token making this request.
    pub current: bool,
}

/// The user agent, parsed.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct DeviceView {
    /// Browser or client name, e.g. `Firefox`, `curl`.
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    /// e.g. `Linux`, `Mac OSX`, `iPhone`.
    pub os: Option<String>,
    /// `pc`, `smartphone`, `mobilephone`, `crawler`, `appliance`, `misc`.
    pub category: Option<String>,
}

impl DeviceView {
    pub fn parse(user_agent: Option<&str>) -> Self {
        let known = |s: &str| (!s.is_empty() && s != "UNKNOWN").then(|| s.to_string());
        match user_agent.and_then(|ua| woothee::parser::Parser::new().parse(ua)) {
            Some(r) => Self {
                browser: known(r.name),
                browser_version: known(r.version),
                os: known(r.os),
                category: known(r.category),
            },
            None => Self::default(),
        }
    }
}

/// The caller's own profile and where they belong.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MeView {
    #[serde(flatten)]
    pub user: UserView,
    pub orgs: Vec<MyOrgView>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MyOrgView {
    pub org_id: Uuid,
    pub roles: Vec<String>,
    pub status: String,
}

/// A started TOTP enrolment: what an authenticator app needs. Shown once; confirm with a code.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TotpEnrolmentView {
    /// Base32 (RFC 4648, unpadded) shared secret.
    pub secret: String,
    /// `otpauth://totp/...` URI for QR codes.
    pub otpauth_uri: String,
}

/// Single-use recovery codes, shown once when TOTP is confirmed.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RecoveryCodesView {
    pub recovery_codes: Vec<String>,
}

/// A privileged account's password reset waiting for two approvers (never the token).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PasswordResetView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The approver whose approval issued the token, once it was issued.
    pub approved_by: Option<Uuid>,
    pub approved_at: Option<DateTime<Utc>>,
    /// The request on the approval mechanism shared with budget overrides and break-glass.
    pub approval: ApprovalView,
}

/// RFC 7662 introspection response. Inactive tokens carry only `active: false`.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct IntrospectionView {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The session the token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    /// Space-separated permissions a machine credential may use (RFC 7662 `scope`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The OAuth2 client (service account) a machine credential belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The org a machine credential acts in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Uuid>,
}

/// The signing key now in use after a rotation; the previous one stays published.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct KeyRotationView {
    pub purpose: String,
    pub key_id: String,
    /// Key ids served in the JWKS, current first.
    pub published: Vec<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RotationPolicyView {
    /// Keys older than this are reported as overdue for rotation.
    pub max_key_age_days: Option<u32>,
    /// Overdue keys stop working this many days after becoming overdue; null = report only.
    pub refuse_after_days: Option<u32>,
}

impl From<&RotationPolicy> for RotationPolicyView {
    fn from(p: &RotationPolicy) -> Self {
        Self {
            max_key_age_days: p.max_key_age_days,
            refuse_after_days: p.refuse_after_days,
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ServiceAccountView {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub roles: Vec<String>,
    /// `active`, `disabled` or `deleted`.
    pub status: String,
    pub rotation_policy: RotationPolicyView,
    /// The OAuth2 `client_id` (the account id).
    pub client_id: String,
    /// When the current client secret was issued; null when there is none.
    pub client_secret_created_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<&ServiceAccount> for ServiceAccountView {
    fn from(a: &ServiceAccount) -> Self {
        Self {
            id: a.id.0,
            org_id: a.org_id.0,
            name: a.name.clone(),
            description: a.description.clone(),
            roles: a.roles.iter().map(|r| r.to_string()).collect(),
            status: a.status.as_str().into(),
            rotation_policy: RotationPolicyView::from(&a.rotation),
            client_id: a.id.to_string(),
            client_secret_created_at: a.client_secret_created_at,
            created_at: a.created_at,
            updated_at: a.updated_at,
            deleted_at: a.deleted_at,
        }
    }
}

/// An API key as listed: never its secret.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub service_account_id: Uuid,
    pub name: String,
    /// The public part of the key (`uos_<prefix>_…`), for recognising it.
    pub prefix: String,
    pub scopes: Vec<String>,
    /// `active`, `revoked`, `expired`, `rotated_out`, `quarantined` or `rotation_overdue` at
    /// read time.
    pub state: String,
    /// Past the account's maximum key age (rotation is due).
    pub rotation_overdue: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Approximate (uses are recorded in batches).
    pub last_used_at: Option<DateTime<Utc>>,
    pub replaced_by: Option<Uuid>,
    pub replaces: Option<Uuid>,
    /// When a spike in its request rate quarantined the key; it is refused
    /// (`api_key_quarantined`) until released (`POST …/api-keys/{id}/release`).
    pub quarantined_at: Option<DateTime<Utc>>,
    /// What tripped the quarantine: the observed rate against the key's baseline.
    pub quarantine_reason: Option<String>,
}

impl ApiKeyView {
    pub fn new(k: &ApiKey, policy: &RotationPolicy, now: DateTime<Utc>) -> Self {
        Self {
            id: k.id.0,
            service_account_id: k.service_account_id.0,
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: k.scopes.iter().map(|p| p.as_str().to_string()).collect(),
            state: k.state(policy, now).into(),
            rotation_overdue: k.is_overdue(policy, now),
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
            replaced_by: k.replaced_by.map(|i| i.0),
            replaces: k.replaces.map(|i| i.0),
            quarantined_at: k.quarantined_at,
            quarantine_reason: k.quarantine_reason.clone(),
        }
    }
}

/// A new or rotated API key: the only time its secret is shown.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct NewApiKeyView {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The whole key, `uos_<prefix>_<secret>_<checksum>`. Shown once; only a hash is kept.
    pub secret: String,
}

/// A new OAuth2 client secret: shown once; issuing another retires it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ClientSecretView {
    pub client_id: String,
    pub client_secret: String,
    pub created_at: DateTime<Utc>,
}

/// Who the caller is (user or service account) and what it may do.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WhoamiView {
    /// `user` or `service_account`.
    pub kind: String,
    pub id: Uuid,
    /// The org a service account belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Uuid>,
    /// A user's email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A service account's expanded roles.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// A service account's usable permissions (roles narrowed to the credential's scopes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// `password`-session, `api_key` or `client_credentials`.
    pub credential: String,
}

/// RFC 6749 §5.1 token response of the client-credentials grant.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OAuthTokenView {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_in: u64,
    /// The granted permissions, space-separated.
    pub scope: String,
}

/// An audit export job: `pending` until a replica takes it, `running` while it writes (with
/// `events_written` so far), then `done` (with the file's `sha256`) or `failed` (with `error`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditExportView {
    pub id: Uuid,
    #[schema(pattern = "^(pending|running|done|failed)$")]
    pub status: &'static str,
    pub events_written: i64,
    /// Lowercase hex SHA-256 of the downloaded file, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The org whose chain it holds; absent for the whole trail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&uos_store::AuditExport> for AuditExportView {
    fn from(e: &uos_store::AuditExport) -> Self {
        Self {
            id: e.id,
            status: e.status.as_str(),
            events_written: e.events_written,
            sha256: e.sha256.clone(),
            error: e.error.clone(),
            org_id: e.org_id.map(|o| o.0),
            since: e.since,
            until: e.until,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A legal hold on a user or an org: while it stands, neither is purged (nor, for an org, any
/// of its members).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LegalHoldView {
    /// `user` or `org`.
    pub on: String,
    /// The user's or org's id.
    pub id: Uuid,
    pub reason: String,
    /// The actor id of the platform admin who placed it (or last changed its reason).
    pub placed_by: String,
    pub placed_at: DateTime<Utc>,
}

impl From<&uos_store::LegalHold> for LegalHoldView {
    fn from(h: &uos_store::LegalHold) -> Self {
        let (on, id) = match h.on {
            uos_store::HoldOn::User(u) => ("user", u.0),
            uos_store::HoldOn::Org(o) => ("org", o.0),
        };
        Self {
            on: on.into(),
            id,
            reason: h.reason.clone(),
            placed_by: h.placed_by.clone(),
            placed_at: h.placed_at,
        }
    }
}

/// A budget with where its spend stands in the current period.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BudgetView {
    /// `org`, `service_account` or `member`.
    pub scope: String,
    /// The org's id, the service account's or the user's.
    pub scope_id: Uuid,
    /// `daily`, `weekly`, `monthly` (UTC calendar periods; weeks start on Monday) or `total`.
    pub period: String,
    pub limit_cents: i64,
    pub warn_percent: i32,
    pub block_percent: i32,
    /// Spent in the current period.
    pub spent_cents: i64,
    pub period_start: DateTime<Utc>,
    /// The first instant after the period; `null` for `total`.
    pub period_end: Option<DateTime<Utc>>,
    /// The limit the thresholds apply to.
    pub effective_limit_cents: i64,
    /// `ok`, `warn` or `blocked` (inclusive: spent ≥ block% of the effective limit is blocked).
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One usage event taken in.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UsageReceiptView {
    pub source_event_id: String,
    /// The org's id.
    pub org_id: Uuid,
    /// The org had counted this `source_event_id` before: nothing was added.
    pub duplicate: bool,
}

/// A batch of usage events taken in, in the order sent.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UsageBatchView {
    /// Events counted by this request.
    pub recorded: usize,
    /// Events counted before (same org and `source_event_id`), or repeated in the batch.
    pub duplicates: usize,
    pub items: Vec<UsageReceiptView>,
}

/// Why a decision came out as it did.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DecisionReasonView {
    /// e.g. `not_member`, `principal_inactive`, `budget_exceeded`.
    pub code: String,
    /// The rule that gave it (`uos.pdp.membership`, `uos.budget`…).
    pub policy: String,
    pub message: String,
    /// For a budget: the budget that refused, as `GET …/budget` shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetView>,
}

/// A signed decision of the decision point. `signature` is Ed25519, standard base64, over the
/// canonical JSON (sorted keys, no white space) of every other field, under the key `key_id`
/// of `GET /v1/policy/keys`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DecisionView {
    pub decision_id: Uuid,
    pub allow: bool,
    pub reasons: Vec<DecisionReasonView>,
    /// What the caller must do when it acts on an allow (e.g. `budget_warning`).
    #[schema(value_type = Object)]
    pub obligations: serde_json::Map<String, serde_json::Value>,
    /// The content hash of the policy bundle that decided.
    pub policy_revision: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub key_id: String,
    pub signature: String,
}

/// One webhook delivery: an event to one endpoint, and how sending it went.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryView {
    pub id: Uuid,
    pub org_id: Option<Uuid>,
    /// e.g. `budget.state_changed`.
    pub event_type: String,
    pub url: String,
    /// `pending`, `delivered` or `failed` (given up after the last attempt).
    pub state: String,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    /// When a pending delivery is tried next.
    pub next_attempt_at: DateTime<Utc>,
    /// The receiver's status of the last attempt, if it answered.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The body sent (the same on every attempt).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<&uos_store::WebhookDelivery> for WebhookDeliveryView {
    fn from(d: &uos_store::WebhookDelivery) -> Self {
        Self {
            id: d.id,
            org_id: d.org_id.map(|o| o.0),
            event_type: d.event_type.clone(),
            url: d.url.clone(),
            state: d.state.clone(),
            attempts: d.attempts,
            created_at: d.created_at,
            next_attempt_at: d.next_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            delivered_at: d.delivered_at,
            payload: serde_json::from_str(&d.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// One file of the policy bundle.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PolicyModuleView {
    /// Its name in the bundle (`pdp.rego`).
    pub file: String,
    /// SHA-256 of its text, hex.
    pub sha256: String,
}

/// The policy bundle deciding now (`GET /v1/policy/bundle`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PolicyBundleView {
    /// The bundle's content hash (hex SHA-256 over its files' names and texts): the
    /// `policy_revision` of every decision it makes.
    pub revision: String,
    pub loaded_at: DateTime<Utc>,
    /// Every `*.rego` file of the bundle, Rego tests included, by name.
    pub modules: Vec<PolicyModuleView>,
}

/// What `POST /v1/policy/reload` did: the bundle now deciding, and whether it replaced
/// another.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PolicyReloadView {
    /// `false` when the source held the running revision: nothing was replaced or audited.
    pub changed: bool,
    pub previous_revision: String,
    pub revision: String,
    pub loaded_at: DateTime<Utc>,
    pub modules: Vec<PolicyModuleView>,
}

/// A request that waits for two approvers (a budget override, break-glass access, a
/// privileged password reset) and the grant it became.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    pub id: Uuid,
    /// `budget_override`, `break_glass` or `password_reset`.
    pub kind: String,
    /// The org the grant is in; `null` for platform-wide break-glass and password resets.
    pub org_id: Option<Uuid>,
    /// Who asked: never one of the approvers.
    pub requested_by: Uuid,
    pub reason: String,
    /// `pending`, `active`, `rejected`, `revoked` or `expired`.
    pub status: String,
    /// The approvals so far, oldest first.
    pub approvals: Vec<ApproverView>,
    /// Distinct approvers needed (2).
    pub approvals_required: usize,
    pub created_at: DateTime<Utc>,
    /// A request still pending at this time expires.
    pub pending_until: DateTime<Utc>,
    pub active_from: Option<DateTime<Utc>>,
    /// The grant ends at this time (set once active).
    pub active_until: Option<DateTime<Utc>>,
    /// When it was rejected or revoked, and by whom.
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: Option<Uuid>,
    /// How long the grant lasts once active, minutes.
    pub grant_minutes: i64,
    /// Budget overrides: the budget raised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<BudgetRefView>,
    /// Budget overrides: how much the effective limit is raised while active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_cents: Option<i64>,
    /// Break-glass: the roles granted while active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// One approver's approval.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ApproverView {
    pub user_id: Uuid,
    pub approved_at: DateTime<Utc>,
}

/// A budget by its scope: `{type: "org"|"service_account"|"member", id}`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct BudgetRefView {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Uuid,
}
