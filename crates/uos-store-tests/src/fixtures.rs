//! Small builders for the conformance cases: valid entities with unique names, and seeding
//! helpers that write them in their own committed transaction.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use uos_domain::{
    ApiKey, ApiKeyId, CustomRole, Email, Invite, InviteId, Membership, Org, OrgId, OrgSlug,
    Permission, RoleId, RoleName, ServiceAccount, SessionId, User, UserId, UserStatus,
};
use uos_store::{
    AuditHead, AuditRow, ExternalIdentity, IdempotencyRecord, PasswordReset, Rotation, Session,
    Store, TotpEnrolment,
};

/// Now, at the microsecond precision every backend keeps (PostgreSQL `timestamptz`), so what
/// is written compares equal to what is read back.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A process-wide counter for unique slugs, emails and token hashes.
pub fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub fn role(name: &str) -> RoleName {
    RoleName::parse(name).expect("valid role name")
}

pub fn email(raw: &str) -> Email {
    Email::parse(raw).expect("valid email")
}

pub fn permission(name: &str) -> Permission {
    Permission::parse(name).expect("known permission")
}

pub fn org() -> Org {
    let slug = OrgSlug::parse(&format!("org-{}", unique())).expect("valid slug");
    Org::new(slug, "Some Org".into(), now())
}

pub fn user() -> User {
    user_with_email(&format!("user{}@example.test", unique()))
}

pub fn user_with_email(raw: &str) -> User {
    User::new(email(raw), UserStatus::Active, now())
}

pub fn membership(org: OrgId, user: UserId, roles: &[&str]) -> Membership {
    Membership::new(org, user, roles.iter().map(|r| role(r)).collect(), now())
}

pub fn invite(org: OrgId) -> Invite {
    let t = now();
    Invite {
        id: InviteId::new(),
        org_id: org,
        email: email(&format!("invitee{}@example.test", unique())),
        roles: vec![role("member")],
        token_hash: format!("{:064x}", unique()),
        expires_at: t + Duration::days(7),
        created_by: None,
        created_at: t,
        accepted_at: None,
        revoked_at: None,
        version: 1,
    }
}

pub fn custom_role(org: OrgId, name: &str) -> CustomRole {
    let t = now();
    CustomRole {
        id: RoleId::new(),
        org_id: org,
        name: role(name),
        description: Some(format!("the {name} role")),
        permissions: vec![
            Permission::parse("org:read").expect("known permission"),
            Permission::parse("audit:read").expect("known permission"),
        ],
        inherits: vec![role("member")],
        created_at: t,
        updated_at: t,
        version: 1,
    }
}

pub fn session(user: UserId) -> Session {
    let t = now();
    Session {
        id: SessionId::new(),
        user_id: user,
        created_at: t,
        expires_at: t + Duration::hours(12),
        revoked_at: None,
        last_seen_at: t,
        user_agent: Some("conformance/1.0".into()),
        ip: Some("192.0.2.1".into()),
    }
}

/// A refresh of `session` with its token of `generation` whose hash is `token_hash`, to a
/// successor with a unique hash.
pub fn rotation(session: SessionId, generation: i64, token_hash: &str) -> Rotation {
    Rotation {
        session_id: session,
        generation,
        token_hash: token_hash.to_string(),
        next_hash: hash(),
    }
}

/// A unique hex SHA-256-shaped hash (tokens, recovery codes).
pub fn hash() -> String {
    format!("{:064x}", unique())
}

/// An unconfirmed TOTP enrolment of `user` that has accepted no code yet.
pub fn totp(user: UserId) -> TotpEnrolment {
    TotpEnrolment {
        user_id: user,
        secret_enc: format!("v1:ciphertext-{}", unique()),
        created_at: now(),
        confirmed_at: None,
        last_used_step: 0,
    }
}

/// An unused reset of `user` with a mailed token, valid for an hour.
pub fn password_reset(user: UserId) -> PasswordReset {
    let t = now();
    PasswordReset {
        id: uuid::Uuid::now_v7(),
        user_id: user,
        token_hash: Some(hash()),
        created_at: t,
        expires_at: t + Duration::hours(1),
        used_at: None,
        requires_approval: false,
        approved_by: None,
        approved_at: None,
        requested_ip: Some("192.0.2.7".into()),
    }
}

/// A reset of `user` created at `created_at` that waits for approval (no token yet).
pub fn pending_reset(user: UserId, created_at: DateTime<Utc>) -> PasswordReset {
    PasswordReset {
        token_hash: None,
        created_at,
        expires_at: created_at + Duration::days(1),
        requires_approval: true,
        ..password_reset(user)
    }
}

pub fn external_identity(user: UserId) -> ExternalIdentity {
    ExternalIdentity {
        issuer: "https://idp.example.test".into(),
        subject: format!("subject-{}", unique()),
        user_id: user,
        email: format!("upstream{}@example.test", unique()),
        created_at: now(),
    }
}

pub fn idem(scope: &str, key: &str, created_at: DateTime<Utc>) -> IdempotencyRecord {
    IdempotencyRecord {
        scope: scope.into(),
        key: key.into(),
        request_hash: format!("{:064x}", unique()),
        status: None,
        response: None,
        created_at,
    }
}

/// The genesis hash of an empty chain.
pub fn genesis_hash() -> String {
    "0".repeat(64)
}

/// The chain of [`audit`] rows.
pub const AUDIT_CHAIN: &str = "platform";

/// The head of [`AUDIT_CHAIN`] after [`audit`] rows `1..=seq` (the genesis head for 0).
pub fn audit_head(seq: i64) -> AuditHead {
    AuditHead {
        chain: AUDIT_CHAIN.into(),
        seq,
        hash: if seq == 0 {
            genesis_hash()
        } else {
            audit(seq, now()).hash
        },
    }
}

/// Event `seq` of [`AUDIT_CHAIN`].
pub fn audit(seq: i64, occurred_at: DateTime<Utc>) -> AuditRow {
    AuditRow {
        chain: AUDIT_CHAIN.into(),
        seq,
        id: uuid::Uuid::now_v7(),
        occurred_at,
        org_id: None,
        actor_id: Some("system".into()),
        action: "test.event".into(),
        target_id: None,
        hash: format!("{seq:064x}"),
        // Keys deliberately out of order and nested: PostgreSQL jsonb reorders them.
        payload: json!({"z": 1, "a": {"y": [1, 2.5, "x"], "b": null}, "seq": seq, "ok": true}),
        trace_parent: Some(format!("00-{seq:032x}-{:016x}-01", seq + 1)),
    }
}

/// An active account of `org` with a unique name, the `member` role and no rotation policy.
pub fn service_account(org: OrgId) -> ServiceAccount {
    ServiceAccount::new(
        org,
        format!("robot-{}", unique()),
        vec![role("member")],
        now(),
    )
}

/// A fresh, never used key of `sa` with a unique prefix and hash, scoped to `org:read`.
pub fn api_key(sa: &ServiceAccount) -> ApiKey {
    ApiKey {
        id: ApiKeyId::new(),
        org_id: sa.org_id,
        service_account_id: sa.id,
        name: format!("key-{}", unique()),
        prefix: format!("uos_{:012x}", unique()),
        secret_hash: hash(),
        scopes: vec![permission("org:read")],
        created_at: now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        replaced_by: None,
        replaces: None,
        overdue_reported_at: None,
        quarantined_at: None,
        quarantine_reason: None,
        version: 1,
    }
}

pub async fn seed_org(store: &Arc<dyn Store>) -> Org {
    let o = org();
    let mut tx = store.begin().await.expect("begin");
    tx.insert_org(&o).await.expect("insert org");
    tx.commit().await.expect("commit");
    o
}

pub async fn seed_user(store: &Arc<dyn Store>) -> User {
    let u = user();
    let mut tx = store.begin().await.expect("begin");
    tx.insert_user(&u).await.expect("insert user");
    tx.commit().await.expect("commit");
    u
}

pub async fn seed_member(
    store: &Arc<dyn Store>,
    org: OrgId,
    user: UserId,
    roles: &[&str],
) -> Membership {
    let m = membership(org, user, roles);
    let mut tx = store.begin().await.expect("begin");
    tx.insert_membership(&m).await.expect("insert membership");
    tx.commit().await.expect("commit");
    m
}

/// A committed session of `user`, and the hash of its current refresh token (generation 0).
pub async fn seed_session(store: &Arc<dyn Store>, user: UserId) -> (Session, String) {
    let s = session(user);
    let token_hash = hash();
    let mut tx = store.begin().await.expect("begin");
    tx.insert_session(&s, &token_hash)
        .await
        .expect("insert session");
    tx.commit().await.expect("commit");
    (s, token_hash)
}

pub async fn seed_service_account(store: &Arc<dyn Store>, org: OrgId) -> ServiceAccount {
    let sa = service_account(org);
    let mut tx = store.begin().await.expect("begin");
    tx.insert_service_account(&sa)
        .await
        .expect("insert service account");
    tx.commit().await.expect("commit");
    sa
}

pub async fn seed_api_key(store: &Arc<dyn Store>, sa: &ServiceAccount) -> ApiKey {
    let key = api_key(sa);
    let mut tx = store.begin().await.expect("begin");
    tx.insert_api_key(&key).await.expect("insert api key");
    tx.commit().await.expect("commit");
    key
}
