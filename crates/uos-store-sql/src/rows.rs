//! Column lists and row → domain conversions. A stored value the domain refuses is reported
//! as `StoreError::Corrupt` naming its column, never silently repaired.

use crate::error::corrupt;
use crate::sql::Row;
use crate::Dialect;
use serde_json::value::RawValue;
use sqlx::types::Json;
use uos_domain::{
    ApiKey, ApiKeyId, CustomRole, DomainError, Email, Invite, InviteId, Membership, MembershipId,
    MembershipStatus, Org, OrgId, OrgSlug, OrgStatus, Permission, RoleId, RoleName, RotationPolicy,
    ServiceAccount, ServiceAccountId, ServiceAccountStatus, SessionId, User, UserId, UserStatus,
};
use uos_store::{
    AuditRow, CheckpointRow, ExternalIdentity, IdempotencyRecord, ListedAudit, ListedMember,
    PasswordReset, Result, Session, StoreError, TotpEnrolment,
};

pub(crate) use crate::sql::get;

fn parsed<D: Dialect, T>(
    row: &Row<D>,
    col: &'static str,
    parse: impl Fn(&str) -> Result<T, DomainError>,
) -> Result<T> {
    parse(get::<_, &str>(row, col)?).map_err(corrupt(col))
}

fn parsed_opt<D: Dialect, T>(
    row: &Row<D>,
    col: &'static str,
    parse: impl Fn(&str) -> Result<T, DomainError>,
) -> Result<Option<T>> {
    get::<_, Option<&str>>(row, col)?
        .map(parse)
        .transpose()
        .map_err(corrupt(col))
}

/// A JSON array of names (roles, permissions), each parsed by the domain.
fn names<D: Dialect, T>(
    row: &Row<D>,
    col: &'static str,
    parse: impl Fn(&str) -> Result<T, DomainError>,
) -> Result<Vec<T>> {
    let Json(raw) = get::<_, Json<Vec<String>>>(row, col)?;
    raw.iter()
        .map(|s| parse(s))
        .collect::<Result<_, _>>()
        .map_err(corrupt(col))
}

/// A day count (`u32` in the domain) stored as a 64-bit integer.
fn days<D: Dialect>(row: &Row<D>, col: &'static str) -> Result<Option<u32>> {
    get::<_, Option<i64>>(row, col)?
        .map(u32::try_from)
        .transpose()
        .map_err(|_| StoreError::Corrupt(format!("{col}: day count out of range")))
}

/// A day count for binding: every `u32` fits an `i64` column.
pub(crate) fn days_param(days: Option<u32>) -> Option<i64> {
    days.map(i64::from)
}

pub const ORG_COLS: &str = "org.org_id, org.slug, org.display_name, org.status, \
     org.status_before_delete, org.deleted_at, org.api_key_max_days, org.created_at, \
     org.updated_at, org.version";

pub fn org<D: Dialect>(r: &Row<D>) -> Result<Org> {
    Ok(Org {
        id: OrgId(get(r, "org_id")?),
        slug: parsed(r, "slug", OrgSlug::parse)?,
        display_name: get(r, "display_name")?,
        status: parsed(r, "status", OrgStatus::parse)?,
        status_before_delete: parsed_opt(r, "status_before_delete", OrgStatus::parse)?,
        deleted_at: get(r, "deleted_at")?,
        api_key_max_days: days(r, "api_key_max_days")?,
        created_at: get(r, "created_at")?,
        updated_at: get(r, "updated_at")?,
        version: get(r, "version")?,
    })
}

pub const USER_COLS: &str = "user_id, email, display_name, locale, timezone, status, \
     status_before_delete, platform_admin, password_hash, preferences, created_at, updated_at, \
     deleted_at, version";

pub fn user<D: Dialect>(r: &Row<D>) -> Result<User> {
    let Json(preferences) = get::<_, Json<serde_json::Value>>(r, "preferences")?;
    Ok(User {
        id: UserId(get(r, "user_id")?),
        email: parsed(r, "email", Email::parse)?,
        display_name: get(r, "display_name")?,
        locale: get(r, "locale")?,
        timezone: get(r, "timezone")?,
        status: parsed(r, "status", UserStatus::parse)?,
        status_before_delete: parsed_opt(r, "status_before_delete", UserStatus::parse)?,
        platform_admin: get(r, "platform_admin")?,
        password_hash: get(r, "password_hash")?,
        preferences,
        created_at: get(r, "created_at")?,
        updated_at: get(r, "updated_at")?,
        deleted_at: get(r, "deleted_at")?,
        version: get(r, "version")?,
    })
}

/// Qualified, because the member listing joins `user_account`, whose column names overlap.
pub const MEMBERSHIP_COLS: &str = "membership.membership_id, membership.org_id, \
     membership.user_id, membership.roles, membership.status, membership.created_at, \
     membership.updated_at, membership.version";

pub fn membership<D: Dialect>(r: &Row<D>) -> Result<Membership> {
    Ok(Membership {
        id: MembershipId(get(r, "membership_id")?),
        org_id: OrgId(get(r, "org_id")?),
        user_id: UserId(get(r, "user_id")?),
        roles: names(r, "roles", RoleName::parse)?,
        status: parsed(r, "status", MembershipStatus::parse)?,
        created_at: get(r, "created_at")?,
        updated_at: get(r, "updated_at")?,
        version: get(r, "version")?,
    })
}

/// What a member listing shows of the user, beside [`MEMBERSHIP_COLS`], under names of their
/// own (`membership` has a `status` too).
pub const MEMBER_USER_COLS: &str = "user_account.email as user_email, \
     user_account.display_name as user_display_name, user_account.status as user_status";

pub fn listed_member<D: Dialect>(r: &Row<D>) -> Result<ListedMember> {
    Ok(ListedMember {
        membership: membership(r)?,
        email: parsed(r, "user_email", Email::parse)?,
        display_name: get(r, "user_display_name")?,
        user_status: parsed(r, "user_status", UserStatus::parse)?,
    })
}

pub const INVITE_COLS: &str = "invite_id, org_id, email, roles, token_hash, expires_at, \
     created_by, created_at, accepted_at, revoked_at, version";

pub fn invite<D: Dialect>(r: &Row<D>) -> Result<Invite> {
    Ok(Invite {
        id: InviteId(get(r, "invite_id")?),
        org_id: OrgId(get(r, "org_id")?),
        email: parsed(r, "email", Email::parse)?,
        roles: names(r, "roles", RoleName::parse)?,
        token_hash: get(r, "token_hash")?,
        expires_at: get(r, "expires_at")?,
        created_by: get::<_, Option<uuid::Uuid>>(r, "created_by")?.map(UserId),
        created_at: get(r, "created_at")?,
        accepted_at: get(r, "accepted_at")?,
        revoked_at: get(r, "revoked_at")?,
        version: get(r, "version")?,
    })
}

pub const ROLE_COLS: &str = "custom_role_id, org_id, name, description, permissions, \
     inherits, created_at, updated_at, version";

pub fn role<D: Dialect>(r: &Row<D>) -> Result<CustomRole> {
    Ok(CustomRole {
        id: RoleId(get(r, "custom_role_id")?),
        org_id: OrgId(get(r, "org_id")?),
        name: parsed(r, "name", RoleName::parse)?,
        description: get(r, "description")?,
        permissions: names(r, "permissions", Permission::parse)?,
        inherits: names(r, "inherits", RoleName::parse)?,
        created_at: get(r, "created_at")?,
        updated_at: get(r, "updated_at")?,
        version: get(r, "version")?,
    })
}

pub const SESSION_COLS: &str =
    "session_id, user_id, created_at, expires_at, revoked_at, last_seen_at, user_agent, ip";

pub fn session<D: Dialect>(r: &Row<D>) -> Result<Session> {
    Ok(Session {
        id: SessionId(get(r, "session_id")?),
        user_id: UserId(get(r, "user_id")?),
        created_at: get(r, "created_at")?,
        expires_at: get(r, "expires_at")?,
        revoked_at: get(r, "revoked_at")?,
        last_seen_at: get(r, "last_seen_at")?,
        user_agent: get(r, "user_agent")?,
        ip: get(r, "ip")?,
    })
}

pub const TOTP_COLS: &str = "user_id, secret_enc, created_at, confirmed_at, last_used_step";

pub fn totp<D: Dialect>(r: &Row<D>) -> Result<TotpEnrolment> {
    Ok(TotpEnrolment {
        user_id: UserId(get(r, "user_id")?),
        secret_enc: get(r, "secret_enc")?,
        created_at: get(r, "created_at")?,
        confirmed_at: get(r, "confirmed_at")?,
        last_used_step: get(r, "last_used_step")?,
    })
}

pub const PASSWORD_RESET_COLS: &str = "reset_id, user_id, token_hash, created_at, \
     expires_at, used_at, requires_approval, approved_by, approved_at, requested_ip";

pub fn password_reset<D: Dialect>(r: &Row<D>) -> Result<PasswordReset> {
    Ok(PasswordReset {
        id: get(r, "reset_id")?,
        user_id: UserId(get(r, "user_id")?),
        token_hash: get(r, "token_hash")?,
        created_at: get(r, "created_at")?,
        expires_at: get(r, "expires_at")?,
        used_at: get(r, "used_at")?,
        requires_approval: get(r, "requires_approval")?,
        approved_by: get::<_, Option<uuid::Uuid>>(r, "approved_by")?.map(UserId),
        approved_at: get(r, "approved_at")?,
        requested_ip: get(r, "requested_ip")?,
    })
}

pub const EXTERNAL_IDENTITY_COLS: &str = "issuer, subject, user_id, email, created_at";

pub fn external_identity<D: Dialect>(r: &Row<D>) -> Result<ExternalIdentity> {
    Ok(ExternalIdentity {
        issuer: get(r, "issuer")?,
        subject: get(r, "subject")?,
        user_id: UserId(get(r, "user_id")?),
        email: get(r, "email")?,
        created_at: get(r, "created_at")?,
    })
}

pub const IDEMPOTENCY_COLS: &str = "scope, idem_key, request_hash, status, response, created_at";

pub fn idempotency<D: Dialect>(r: &Row<D>) -> Result<IdempotencyRecord> {
    let status = get::<_, Option<i32>>(r, "status")?
        .map(u16::try_from)
        .transpose()
        .map_err(|_| StoreError::Corrupt("idempotency.status out of range".into()))?;
    Ok(IdempotencyRecord {
        scope: get(r, "scope")?,
        key: get(r, "idem_key")?,
        request_hash: get(r, "request_hash")?,
        status,
        response: get::<_, Option<Json<serde_json::Value>>>(r, "response")?.map(|j| j.0),
        created_at: get(r, "created_at")?,
    })
}

pub const SERVICE_ACCOUNT_COLS: &str = "service_account.service_account_id, \
     service_account.org_id, service_account.name, service_account.description, \
     service_account.roles, service_account.status, service_account.max_key_age_days, \
     service_account.refuse_after_days, service_account.client_secret_hash, \
     service_account.client_secret_created_at, service_account.created_at, \
     service_account.updated_at, service_account.deleted_at, service_account.version";

pub fn service_account<D: Dialect>(r: &Row<D>) -> Result<ServiceAccount> {
    Ok(ServiceAccount {
        id: ServiceAccountId(get(r, "service_account_id")?),
        org_id: OrgId(get(r, "org_id")?),
        name: get(r, "name")?,
        description: get(r, "description")?,
        roles: names(r, "roles", RoleName::parse)?,
        status: parsed(r, "status", ServiceAccountStatus::parse)?,
        rotation: RotationPolicy {
            max_key_age_days: days(r, "max_key_age_days")?,
            refuse_after_days: days(r, "refuse_after_days")?,
        },
        client_secret_hash: get(r, "client_secret_hash")?,
        client_secret_created_at: get(r, "client_secret_created_at")?,
        created_at: get(r, "created_at")?,
        updated_at: get(r, "updated_at")?,
        deleted_at: get(r, "deleted_at")?,
        version: get(r, "version")?,
    })
}

/// Qualified, because the overdue queries join `service_account`, whose column names overlap.
pub const API_KEY_COLS: &str = "api_key.api_key_id, api_key.org_id, \
     api_key.service_account_id, api_key.name, api_key.prefix, api_key.secret_hash, \
     api_key.scopes, api_key.created_at, api_key.expires_at, api_key.revoked_at, \
     api_key.last_used_at, api_key.replaced_by, api_key.replaces, api_key.overdue_reported_at, \
     api_key.quarantined_at, api_key.quarantine_reason, api_key.version";

pub fn api_key<D: Dialect>(r: &Row<D>) -> Result<ApiKey> {
    Ok(ApiKey {
        id: ApiKeyId(get(r, "api_key_id")?),
        org_id: OrgId(get(r, "org_id")?),
        service_account_id: ServiceAccountId(get(r, "service_account_id")?),
        name: get(r, "name")?,
        prefix: get(r, "prefix")?,
        secret_hash: get(r, "secret_hash")?,
        scopes: names(r, "scopes", Permission::parse)?,
        created_at: get(r, "created_at")?,
        expires_at: get(r, "expires_at")?,
        revoked_at: get(r, "revoked_at")?,
        last_used_at: get(r, "last_used_at")?,
        replaced_by: get::<_, Option<uuid::Uuid>>(r, "replaced_by")?.map(ApiKeyId),
        replaces: get::<_, Option<uuid::Uuid>>(r, "replaces")?.map(ApiKeyId),
        overdue_reported_at: get(r, "overdue_reported_at")?,
        quarantined_at: get(r, "quarantined_at")?,
        quarantine_reason: get(r, "quarantine_reason")?,
        version: get(r, "version")?,
    })
}

pub const AUDIT_COLS: &str = "chain, seq, audit_event_id, occurred_at, org_id, actor_id, action, \
     target_id, hash, payload, trace_parent";

/// The chain of events stored before chains were per org. Such an event has no `chain` in
/// its payload; it is served with the one it is on, which its hash does not cover.
const LEGACY_CHAIN: &str = "legacy";

/// An event's payload as stored, parsed; a legacy event's gets its `chain`.
fn audit_payload(text: &str, chain: &str) -> Result<serde_json::Value> {
    let mut payload: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("audit payload: {e}")))?;
    if chain == LEGACY_CHAIN {
        if let Some(event) = payload.as_object_mut() {
            event
                .entry("chain")
                .or_insert_with(|| serde_json::Value::String(chain.to_owned()));
        }
    }
    Ok(payload)
}

/// An event with its payload parsed, to publish it.
pub fn audit<D: Dialect>(r: &Row<D>) -> Result<AuditRow> {
    audit_row(r, |text, chain| audit_payload(&text, chain))
}

/// An event with its payload as stored, to serve it: checked to be JSON, never parsed into a
/// tree, except a legacy event's, which needs its `chain` added.
pub fn listed_audit<D: Dialect>(r: &Row<D>) -> Result<ListedAudit> {
    audit_row(r, |text, chain| {
        if chain == LEGACY_CHAIN {
            return serde_json::value::to_raw_value(&audit_payload(&text, chain)?)
                .map_err(|e| StoreError::Corrupt(format!("audit payload: {e}")));
        }
        RawValue::from_string(text).map_err(|e| StoreError::Corrupt(format!("audit payload: {e}")))
    })
}

/// An event's columns, its payload decoded by `payload` from the stored text and the chain.
fn audit_row<D: Dialect, P>(
    r: &Row<D>,
    payload: impl FnOnce(String, &str) -> Result<P>,
) -> Result<AuditRow<P>> {
    // Text on every backend: the hash covers these exact bytes' meaning, and jsonb would
    // reorder keys and drop duplicates.
    let text: String = get(r, "payload")?;
    let chain: String = get(r, "chain")?;
    let payload = payload(text, &chain)?;
    Ok(AuditRow {
        chain,
        seq: get(r, "seq")?,
        id: get(r, "audit_event_id")?,
        occurred_at: get(r, "occurred_at")?,
        org_id: get::<_, Option<uuid::Uuid>>(r, "org_id")?.map(OrgId),
        actor_id: get(r, "actor_id")?,
        action: get(r, "action")?,
        target_id: get(r, "target_id")?,
        hash: get(r, "hash")?,
        payload,
        trace_parent: get(r, "trace_parent")?,
    })
}

pub fn checkpoint<D: Dialect>(r: &Row<D>) -> Result<CheckpointRow> {
    let text: String = get(r, "payload")?;
    Ok(CheckpointRow {
        id: get(r, "checkpoint_id")?,
        issued_at: get(r, "issued_at")?,
        payload: serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("checkpoint payload: {e}")))?,
    })
}

/// Parse an id cursor (a hyphenated uuid).
pub(crate) fn uuid_cursor(after: Option<&str>) -> Result<Option<uuid::Uuid>> {
    after
        .map(|s| uuid::Uuid::parse_str(s).map_err(|_| crate::error::bad_cursor()))
        .transpose()
}

/// `limit + 1` as the SQL limit: one extra row tells whether another page follows.
pub(crate) fn overfetch(limit: u32) -> i64 {
    i64::from(limit) + 1
}
