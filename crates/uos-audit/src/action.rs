//! The closed list of audit actions: the `action` of every event the service records, what the
//! event is about and what its `changes` hold. The names are a public contract (`ce_type` of the
//! event stream), so a name, once shipped, never changes; `docs/audit-events.md` is generated
//! from this table.

use std::fmt;

/// What an audit event is about: the `target.type` of the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    User,
    /// An email address that matched no account (a failed login for an unknown user).
    Email,
    Session,
    Org,
    Invite,
    Role,
    ServiceAccount,
    ApiKey,
    /// A client-credentials access token, by its `jti`.
    AccessToken,
    /// A signing key, by its key id.
    Key,
    /// An audit export job, by its id.
    AuditExport,
    /// A spend budget, by `<scope>:<scope id>` (`org:…`, `service_account:…`, `member:…`).
    Budget,
    /// A policy decision, by its `decision_id`.
    Decision,
    /// A policy bundle, by its revision (content hash).
    PolicyBundle,
    /// A request that needs two approvers (budget override, break-glass, password reset), by
    /// its id.
    Approval,
    /// An org declared in the config repo, by its slug (`*`: every declared org).
    DeclaredOrg,
    /// A commit of the config repo, by its id.
    Commit,
}

impl TargetKind {
    /// The stored `target.type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TargetKind::User => "user",
            TargetKind::Email => "email",
            TargetKind::Session => "session",
            TargetKind::Org => "org",
            TargetKind::Invite => "invite",
            TargetKind::Role => "role",
            TargetKind::ServiceAccount => "service_account",
            TargetKind::ApiKey => "api_key",
            TargetKind::AccessToken => "access_token",
            TargetKind::Key => "key",
            TargetKind::Budget => "budget",
            TargetKind::Decision => "decision",
            TargetKind::AuditExport => "audit_export",
            TargetKind::PolicyBundle => "policy_bundle",
            TargetKind::Approval => "approval",
            TargetKind::DeclaredOrg => "declared_org",
            TargetKind::Commit => "commit",
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Generates the enum, `as_str`, the target and changes tables and `ALL` from one list, so the
/// code that records an event and the document that describes it cannot drift apart.
macro_rules! audit_actions {
    ($(
        $(#[$m:meta])*
        $variant:ident => $name:literal, [$($target:ident),+], $changes:literal;
    )+) => {
        /// An audit action, stored as its name (`"member.roles_changed"`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum AuditAction {
            $($(#[$m])* $variant,)+
        }

        impl AuditAction {
            /// Every action, in the order of the document.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)+];

            /// The stored `action` (and the `ce_type` of the streamed event).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $name,)+
                }
            }

            /// The kinds of `target` the event may have; the first is the usual one.
            pub const fn targets(self) -> &'static [TargetKind] {
                match self {
                    $(AuditAction::$variant => &[$(TargetKind::$target),+],)+
                }
            }

            /// What `changes.before` / `changes.after` hold, in one line.
            pub const fn changes(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $changes,)+
                }
            }
        }
    };
}

audit_actions! {
    // Platform: the first administrator and signing keys.
    UserBootstrapped => "user.bootstrapped", [User],
        "after: the first platform administrator, created at start-up";
    KeysRotated => "keys.rotated", [Key],
        "after: `purpose` of the new key and the key ids `published` in the JWKS";

    // Logins and sessions.
    SessionCreated => "session.created", [Session],
        "after: `user_id`, login `method`, `expires_at`, `ip`, `user_agent` (a successful login)";
    LoginFailed => "login.failed", [User, Email],
        "after: attempted `email`, `reason`, `ip`, `user_agent`; the target is the email's subject (`email:<keyed hash>`) when no account has it";
    LoginMfaRequired => "login.mfa_required", [User],
        "after: `ip` of a right password that still needs its second factor";
    AccountLocked => "account.locked", [User, Email],
        "after: `email`, `locked_for_secs`, `ip` of the attempt that locked the account";
    AccountUnlocked => "account.unlocked", [User],
        "before: `locked_for_secs` that were left when an administrator lifted the lock";
    SessionRevoked => "session.revoked", [Session],
        "after: `reason` (`logout` or `revoked_by_user`)";
    SessionRevokedOthers => "session.revoked_others", [User],
        "after: `sessions_revoked` and the session that was `kept`";
    SessionRevokedAll => "session.revoked_all", [User],
        "after: `sessions_revoked` by an administrator, `reason`";
    SessionRefreshReuseDetected => "session.refresh_reuse_detected", [Session],
        "after: `user_id`, whether the session was revoked, `ip`, `user_agent` of the replayed refresh token";
    IdentityLinked => "identity.linked", [User],
        "after: the OIDC `provider`, `issuer` and `subject` now linked to the user";

    // Second factor.
    MfaTotpEnrolmentStarted => "mfa.totp_enrolment_started", [User],
        "none: a TOTP secret was issued, not yet confirmed";
    MfaTotpEnabled => "mfa.totp_enabled", [User],
        "after: how many `recovery_codes_issued`";
    MfaTotpDisabled => "mfa.totp_disabled", [User],
        "none";
    MfaRecoveryCodeUsed => "mfa.recovery_code_used", [User],
        "after: `codes_left`";

    // Password recovery.
    PasswordResetRequested => "password_reset.requested", [User],
        "after: `reset_id`, whether it `requires_approval`, `ip`";
    PasswordResetApproved => "password_reset.approved", [User],
        "after: `reset_id` approved by a second administrator";
    PasswordResetCompleted => "password_reset.completed", [User],
        "after: `reset_id`, `sessions_revoked`, `ip`";

    // Users.
    UserCreated => "user.created", [User],
        "after: the new user (invite acceptance, federated login)";
    UserUpdated => "user.updated", [User],
        "before/after: the user's profile";
    UserPreferencesChanged => "user.preferences_changed", [User],
        "before/after: the preferences object";
    UserPasswordChanged => "user.password_changed", [User],
        "before/after: `status`; after: `sessions_revoked`";
    UserStatusChanged => "user.status_changed", [User],
        "before: `status`; after: `status`, `reason`, `sessions_revoked`";
    UserDeleted => "user.deleted", [User],
        "before: `status`; after: `status` (`deleted`), `reason`, `sessions_revoked`";
    UserRestored => "user.restored", [User],
        "before/after: `status`";
    UserPurged => "user.purged", [User],
        "before: `status` (`deleted`), `deleted_at`; after: `status` (`purged`), what was removed (`memberships_removed` as org ids, `sessions_removed`) and the `subject_keys_destroyed` (its personal data in earlier events now reads as erased). Actor `system`";
    UserLegalHoldPlaced => "user.legal_hold_placed", [User],
        "before: the hold it replaced, if any; after: the hold (`reason`, `placed_by`, `placed_at`): the user is never purged while it stands";
    UserLegalHoldLifted => "user.legal_hold_lifted", [User],
        "before: the hold that was lifted";

    // Organizations.
    OrgCreated => "org.created", [Org],
        "after: the new org";
    OrgUpdated => "org.updated", [Org],
        "before/after: the org";
    OrgSuspended => "org.suspended", [Org],
        "before/after: the org";
    OrgResumed => "org.resumed", [Org],
        "before/after: the org";
    OrgDeleted => "org.deleted", [Org],
        "before/after: the org (soft delete)";
    OrgRestored => "org.restored", [Org],
        "before/after: the org";
    OrgPurged => "org.purged", [Org],
        "before: `status` (`deleted`), `deleted_at`; after: how many `members_removed`, `invites_removed`, `roles_removed`, `service_accounts_removed`, `subject_keys_destroyed` (of invitees who never joined). The org's audit chain is kept. Actor `system`";
    OrgLegalHoldPlaced => "org.legal_hold_placed", [Org],
        "before: the hold it replaced, if any; after: the hold: neither the org nor its members are purged while it stands";
    OrgLegalHoldLifted => "org.legal_hold_lifted", [Org],
        "before: the hold that was lifted";

    // Memberships (the target is the member's user).
    MemberAdded => "member.added", [User],
        "after: the new membership";
    MemberRolesChanged => "member.roles_changed", [User],
        "before/after: the membership";
    MemberSuspended => "member.suspended", [User],
        "before/after: the membership";
    MemberReactivated => "member.reactivated", [User],
        "before/after: the membership";
    MemberRemoved => "member.removed", [User],
        "before: the membership";

    // Invites.
    InviteCreated => "invite.created", [Invite],
        "after: the invite (its token redacted)";
    InviteRevoked => "invite.revoked", [Invite],
        "before/after: the invite";
    InviteAccepted => "invite.accepted", [Invite],
        "before/after: the invite";

    // Custom roles.
    RoleCreated => "role.created", [Role],
        "after: the role";
    RoleUpdated => "role.updated", [Role],
        "before/after: the role";
    RoleDeleted => "role.deleted", [Role],
        "before: the role";

    // Machine identity.
    ServiceAccountCreated => "service_account.created", [ServiceAccount],
        "after: the service account";
    ServiceAccountUpdated => "service_account.updated", [ServiceAccount],
        "before/after: the service account";
    ServiceAccountDeleted => "service_account.deleted", [ServiceAccount],
        "before: the service account; after: `status`, `revoked_api_keys`";
    ClientSecretIssued => "client_secret.issued", [ServiceAccount],
        "before: `client_secret_created_at`; after: `client_secret_created_at`, whether one was `replaced`";
    ApiKeyCreated => "api_key.created", [ApiKey],
        "after: the key (never its secret)";
    ApiKeyRevoked => "api_key.revoked", [ApiKey],
        "before/after: the key";
    ApiKeyRotated => "api_key.rotated", [ApiKey],
        "before: the old key; after: `replaced_by`, `old_key_expires_at`, the `new_key`";
    ApiKeyRotationOverdue => "api_key.rotation_overdue", [ApiKey],
        "after: `service_account_id`, `prefix`, `created_at` of a key past its rotation age";
    ApiKeyRefused => "api_key.refused", [ApiKey],
        "after: `reason`, `prefix`, `service_account_id`, `ip`, `user_agent` (a right secret, refused)";
    ApiKeyQuarantined => "api_key.quarantined", [ApiKey],
        "after: the `key` (never its secret, now with `quarantined_at` and `quarantine_reason`), the `observed_requests` in one `window_secs` window on one replica, the key's `baseline` (requests per window), the `multiple` and `min_requests` it reached, and the `history_windows` of the baseline. Actor `system`; `request_id` is the request that tripped it";
    ApiKeyReleased => "api_key.released", [ApiKey],
        "before/after: the key (quarantined, then released)";
    AccessTokenRevoked => "access_token.revoked", [AccessToken],
        "after: `service_account_id`, `expires_at`";

    // The audit trail itself.
    AuditExported => "audit.exported", [AuditExport],
        "after: the export asked for: its `org_id` (null: the whole trail), `since`, `until`";

    // Budgets, usage and the decision point.
    BudgetSet => "budget.set", [Budget],
        "before: the budget it replaced, if any; after: the budget (`period`, `limit_cents`, `warn_percent`, `block_percent`)";
    BudgetDeleted => "budget.deleted", [Budget],
        "before: the budget";
    BudgetStateChanged => "budget.state_changed", [Budget],
        "after: the `state` reached (`warn` or `blocked`), `period_start`, `spent_cents`, `effective_limit_cents`; once per budget, period and state. Actor: whoever reported the usage";
    UsageRecorded => "usage.recorded", [Org],
        "after: how many events were `recorded` and how many were `duplicates`, and the `amount_cents` recorded (one event per request and org, not per usage event)";
    PolicyDenied => "policy.denied", [Decision],
        "after: the `principal`, `action`, `resource`, the `reasons` (each as `rule`, `policy` and, for a budget, its `scope`, `scope_id`, `spent_cents`, `effective_limit_cents`, `state`) and the `policy_revision`. Actor: the service that asked";
    PolicyReloaded => "policy.reloaded", [PolicyBundle],
        "before: the `revision` replaced; after: the new `revision`, its `modules` (`file`, `sha256`) and the `trigger` (`api`, `sighup` or `watch`). Only a reload that changes the revision is recorded. Actor: the platform admin, or `system` for a signal or a changed file";

    // Approvals: budget overrides, break-glass, privileged password resets.
    ApprovalRequested => "approval.requested", [Approval],
        "after: the request (`kind`, `status`, `requested_by`, `reason`, `detail`: an override's `scope` and `extra_cents`, break-glass `roles`)";
    ApprovalApproved => "approval.approved", [Approval],
        "before/after: the request; after `status` is `active` when this was the second approval, with `active_until`";
    ApprovalRejected => "approval.rejected", [Approval],
        "before/after: the request";
    ApprovalRevoked => "approval.revoked", [Approval],
        "before/after: the request (a pending one withdrawn or an active grant ended early)";
    ApprovalExpired => "approval.expired", [Approval],
        "before/after: the request; recorded by the service once a pending request or an active grant ran out (it was `expired` from that moment). Actor: `system`";
    BreakGlassUsed => "break_glass.used", [Approval],
        "after: the `action` the grant allowed, its `org_id` and the grant's `roles`; one event per request the grant authorized. Actor: the grant's holder";

    // Declarative config. The changes the reconciler applies are recorded by the same events
    // as the API's, with actor `reconciler` (its id is the commit) and request id
    // `declarative:<commit>:<file>`.
    DeclarativePaused => "declarative.paused", [DeclaredOrg],
        "after: the `reason`; the target id is the org's slug, or `*` when the reconciler is paused for every org";
    DeclarativeResumed => "declarative.resumed", [DeclaredOrg],
        "before: the pause lifted (`reason`, `at`, `by`)";
    DeclarativeRejected => "declarative.rejected", [Commit],
        "after: the `reason` the commit was refused (unsigned, unknown signer, bad signature) and the `branch`; nothing of it was applied. Actor: `reconciler`";
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `docs/audit-events.md`: generated from [`AuditAction::ALL`]; a test keeps the committed
/// file equal to it.
pub fn audit_events_markdown() -> String {
    let mut out = String::from(
        "<!-- Generated from crates/uos-audit/src/action.rs; do not edit. Regenerate with\n     \
         UPDATE_DOCS=1 cargo test -p uos-audit --test it docs -->\n\
         # Audit events\n\n\
         Every change, and every refused or failed credential worth investigating, is recorded as\n\
         one audit event in the same transaction as the change. `action` below is the stored\n\
         `action` of the event and the `ce_type` of the event streamed to Kafka: these names are\n\
         a public contract and never change. `target` is the event's `target.type`; its\n\
         `target.id` is that object's id (a role's name, an email, a key id). `changes` holds\n\
         `before` and `after`, `null` where there was nothing; secrets are redacted before\n\
         hashing, so they never enter the chain. `org_id` is set when the event belongs to an\n\
         org. Personal data in `changes` (`email`, `display_name`, `ip`, `user_agent`, `subject`)\n\
         is stored as ciphertext (`uos-pd:1:<subject>:…`) under its data subject's key; readers\n\
         add the unhashed `personal` (decrypted values by JSON pointer) and `erased` (pointers\n\
         whose subject was purged).\n\n\
         | action | target | changes |\n\
         |---|---|---|\n",
    );
    for a in AuditAction::ALL {
        let targets: Vec<String> = a.targets().iter().map(|t| format!("`{t}`")).collect();
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            a.as_str(),
            targets.join(" or "),
            a.changes()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names as they are stored and streamed. Changing one breaks every consumer of the
    /// event stream and every saved audit query: add a new action instead.
    const SHIPPED: &[&str] = &[
        "user.bootstrapped",
        "keys.rotated",
        "session.created",
        "login.failed",
        "login.mfa_required",
        "account.locked",
        "account.unlocked",
        "session.revoked",
        "session.revoked_others",
        "session.revoked_all",
        "session.refresh_reuse_detected",
        "identity.linked",
        "mfa.totp_enrolment_started",
        "mfa.totp_enabled",
        "mfa.totp_disabled",
        "mfa.recovery_code_used",
        "password_reset.requested",
        "password_reset.approved",
        "password_reset.completed",
        "user.created",
        "user.updated",
        "user.preferences_changed",
        "user.password_changed",
        "user.status_changed",
        "user.deleted",
        "user.restored",
        "user.purged",
        "user.legal_hold_placed",
        "user.legal_hold_lifted",
        "org.created",
        "org.updated",
        "org.suspended",
        "org.resumed",
        "org.deleted",
        "org.restored",
        "org.purged",
        "org.legal_hold_placed",
        "org.legal_hold_lifted",
        "member.added",
        "member.roles_changed",
        "member.suspended",
        "member.reactivated",
        "member.removed",
        "invite.created",
        "invite.revoked",
        "invite.accepted",
        "role.created",
        "role.updated",
        "role.deleted",
        "service_account.created",
        "service_account.updated",
        "service_account.deleted",
        "client_secret.issued",
        "api_key.created",
        "api_key.revoked",
        "api_key.rotated",
        "api_key.rotation_overdue",
        "api_key.refused",
        "api_key.quarantined",
        "api_key.released",
        "access_token.revoked",
        "audit.exported",
        "budget.set",
        "budget.deleted",
        "budget.state_changed",
        "usage.recorded",
        "policy.denied",
        "policy.reloaded",
        "approval.requested",
        "approval.approved",
        "approval.rejected",
        "approval.revoked",
        "approval.expired",
        "break_glass.used",
        "declarative.paused",
        "declarative.resumed",
        "declarative.rejected",
    ];

    #[test]
    fn shipped_names_are_unchanged() {
        let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            names, SHIPPED,
            "audit action names are a public contract: add actions, never rename or remove one"
        );
        assert_eq!(AuditAction::ALL.len(), 77);
    }

    #[test]
    fn names_are_unique_and_dotted() {
        let mut names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            AuditAction::ALL.len(),
            "an action is listed twice"
        );
        for name in names {
            let (noun, verb) = name.split_once('.').unwrap_or_default();
            assert!(
                !noun.is_empty()
                    && !verb.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
                "{name} is not `noun.verb` in snake case"
            );
        }
    }

    #[test]
    fn every_action_has_a_target_and_a_description() {
        for a in AuditAction::ALL {
            assert!(!a.targets().is_empty(), "{a} has no target");
            assert!(
                !a.changes().is_empty(),
                "{a} does not say what changes holds"
            );
            assert!(!a.changes().contains('|'), "{a}: `|` breaks the table");
        }
    }
}
