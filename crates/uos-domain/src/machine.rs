//! Machine identities: service accounts (org-scoped, with roles) and their API keys.
//!
//! A key's effective permissions are its account's expanded role permissions intersected with
//! the key's scopes, so a key can never do more than its account, even after the account's
//! roles shrink. Everything here is pure; the secret itself never reaches this crate (only
//! its keyed hash does).

use crate::{ApiKeyId, DomainError, OrgId, Permission, RoleName, ServiceAccountId};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Longest lifetime any key may ask for, whatever the org allows: ten years.
pub const API_KEY_MAX_DAYS: u32 = 3650;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAccountStatus {
    Active,
    Disabled,
    Deleted,
}

impl ServiceAccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            "deleted" => Ok(Self::Deleted),
            _ => Err(DomainError::invalid(
                "invalid_status",
                "status must be active or disabled",
            )),
        }
    }
}

/// When an account's keys are due for rotation, and whether overdue keys stop working.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPolicy {
    /// Keys older than this many days are overdue (reported: metric, audit event, list).
    pub max_key_age_days: Option<u32>,
    /// With `max_key_age_days`, overdue keys are refused this many days after they became
    /// overdue. `None` only reports.
    pub refuse_after_days: Option<u32>,
}

impl RotationPolicy {
    /// When a key created at `created` becomes overdue, if the policy sets an age.
    pub fn overdue_at(&self, created: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.max_key_age_days
            .map(|d| created + Duration::days(i64::from(d)))
    }

    /// When a key created at `created` stops working under this policy, if ever.
    pub fn refused_at(&self, created: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let grace = self.refuse_after_days?;
        self.overdue_at(created)
            .map(|t| t + Duration::days(i64::from(grace)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    pub id: ServiceAccountId,
    pub org_id: OrgId,
    /// 1–200 characters, unique among the org's undeleted accounts.
    pub name: String,
    pub description: Option<String>,
    /// Org roles (built-in or custom, never `owner`).
    pub roles: Vec<RoleName>,
    pub status: ServiceAccountStatus,
    pub rotation: RotationPolicy,
    /// Keyed hash of the current OAuth2 client secret; `None` until one is issued. Issuing a
    /// new one replaces it, which retires the old secret. Never serialised.
    #[serde(skip_serializing, default)]
    pub client_secret_hash: Option<String>,
    pub client_secret_created_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency version, exposed as the `ETag`.
    pub version: i64,
}

impl ServiceAccount {
    pub fn new(org_id: OrgId, name: String, roles: Vec<RoleName>, now: DateTime<Utc>) -> Self {
        Self {
            id: ServiceAccountId::new(),
            org_id,
            name,
            description: None,
            roles,
            status: ServiceAccountStatus::Active,
            rotation: RotationPolicy::default(),
            client_secret_hash: None,
            client_secret_created_at: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        }
    }

    /// Whether credentials of this account may be used right now.
    pub fn is_usable(&self) -> bool {
        self.status == ServiceAccountStatus::Active
    }

    /// Bump the version for a change made at `now`.
    pub fn touch(&mut self, now: DateTime<Utc>) {
        self.updated_at = now;
        self.version += 1;
    }

    /// Active ↔ disabled. A deleted account changes no more.
    pub fn set_status(
        &mut self,
        to: ServiceAccountStatus,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        if self.status == ServiceAccountStatus::Deleted || to == ServiceAccountStatus::Deleted {
            return Err(DomainError::Transition {
                from: self.status.as_str().into(),
                to: to.as_str().into(),
            });
        }
        if self.status != to {
            self.status = to;
            self.touch(now);
        }
        Ok(())
    }

    /// Soft delete: the row stays for the audit trail, every credential stops working.
    pub fn delete(&mut self, now: DateTime<Utc>) -> Result<(), DomainError> {
        if self.status == ServiceAccountStatus::Deleted {
            return Err(DomainError::Transition {
                from: "deleted".into(),
                to: "deleted".into(),
            });
        }
        self.status = ServiceAccountStatus::Deleted;
        self.deleted_at = Some(now);
        self.client_secret_hash = None;
        self.touch(now);
        Ok(())
    }
}

/// Why a key cannot be used right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRefusal {
    Revoked,
    Expired,
    /// Rotated, and the overlap window has ended.
    RotatedOut,
    /// Its request rate jumped past the quarantine threshold; refused until an admin
    /// releases it.
    Quarantined,
    /// Past the account's maximum key age plus its grace period.
    RotationOverdue,
}

impl KeyRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::RotatedOut => "rotated_out",
            Self::Quarantined => "quarantined",
            Self::RotationOverdue => "rotation_overdue",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub org_id: OrgId,
    pub service_account_id: ServiceAccountId,
    /// 1–200 characters, for people.
    pub name: String,
    /// The public lookup part of the key text; unique.
    pub prefix: String,
    /// Keyed hash (HMAC-SHA-256 with the server pepper) of the whole key text. Never
    /// serialised.
    #[serde(skip_serializing, default)]
    pub secret_hash: String,
    /// Permissions the key may use (a subset of its account's at creation).
    pub scopes: Vec<Permission>,
    pub created_at: DateTime<Utc>,
    /// Hard end of validity; for a rotated key, the end of the overlap window.
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Approximate: recorded in batches.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key that replaced this one (set by rotation).
    pub replaced_by: Option<ApiKeyId>,
    /// The key this one replaced.
    pub replaces: Option<ApiKeyId>,
    /// When the rotation-overdue report for this key was made (reported once).
    pub overdue_reported_at: Option<DateTime<Utc>>,
    /// When its request rate tripped the quarantine; refused until released.
    pub quarantined_at: Option<DateTime<Utc>>,
    /// What tripped it (the observed rate against the key's baseline), for people.
    pub quarantine_reason: Option<String>,
    pub version: i64,
}

impl ApiKey {
    /// Why the key is refused at `now` under `policy`, or `None` if it may be used.
    pub fn refusal(&self, policy: &RotationPolicy, now: DateTime<Utc>) -> Option<KeyRefusal> {
        if self.revoked_at.is_some() {
            return Some(KeyRefusal::Revoked);
        }
        if self.expires_at.is_some_and(|t| t <= now) {
            return Some(if self.replaced_by.is_some() {
                KeyRefusal::RotatedOut
            } else {
                KeyRefusal::Expired
            });
        }
        // After the permanent refusals: a revoked or expired key stays that, quarantined or not.
        if self.quarantined_at.is_some() {
            return Some(KeyRefusal::Quarantined);
        }
        if policy.refused_at(self.created_at).is_some_and(|t| t <= now) {
            return Some(KeyRefusal::RotationOverdue);
        }
        None
    }

    /// "active" or the refusal ("revoked", "expired", "rotated_out", "quarantined",
    /// "rotation_overdue"), as shown to clients.
    pub fn state(&self, policy: &RotationPolicy, now: DateTime<Utc>) -> &'static str {
        self.refusal(policy, now)
            .map_or("active", KeyRefusal::as_str)
    }

    /// Whether the key is overdue for rotation at `now` (still usable or not).
    pub fn is_overdue(&self, policy: &RotationPolicy, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none()
            && self.replaced_by.is_none()
            && policy.overdue_at(self.created_at).is_some_and(|t| t <= now)
    }

    /// Lift a quarantine; `false` if the key was not quarantined.
    pub fn release(&mut self) -> bool {
        if self.quarantined_at.is_none() {
            return false;
        }
        self.quarantined_at = None;
        self.quarantine_reason = None;
        self.version += 1;
        true
    }

    /// Revoke now; `false` if it already was.
    pub fn revoke(&mut self, now: DateTime<Utc>) -> bool {
        if self.revoked_at.is_some() {
            return false;
        }
        self.revoked_at = Some(now);
        self.version += 1;
        true
    }
}

/// A key lifetime in days within `[1, API_KEY_MAX_DAYS]` and the org's maximum (if any).
/// Without a request the org maximum applies; without either the key does not expire.
pub fn key_lifetime_days(
    requested: Option<u32>,
    org_max: Option<u32>,
) -> Result<Option<u32>, DomainError> {
    match (requested, org_max) {
        (Some(0), _) => Err(DomainError::invalid(
            "invalid_lifetime",
            "expires_in_days must be at least 1",
        )),
        (Some(d), Some(max)) if d > max => Err(DomainError::invalid(
            "lifetime_exceeds_org_maximum",
            format!("this organization allows keys of at most {max} days"),
        )),
        (Some(d), _) if d > API_KEY_MAX_DAYS => Err(DomainError::invalid(
            "invalid_lifetime",
            format!("expires_in_days must be at most {API_KEY_MAX_DAYS}"),
        )),
        (Some(d), _) => Ok(Some(d)),
        (None, max) => Ok(max),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn t(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::days(days)
    }

    fn key() -> ApiKey {
        ApiKey {
            id: ApiKeyId::new(),
            org_id: OrgId::new(),
            service_account_id: ServiceAccountId::new(),
            name: "ci".into(),
            prefix: "abcdefghijkl".into(),
            secret_hash: "00".into(),
            scopes: vec![],
            created_at: t(0),
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

    #[test]
    fn refusals_in_order() {
        let none = RotationPolicy::default();
        let mut k = key();
        assert_eq!(k.refusal(&none, t(1)), None);
        k.expires_at = Some(t(2));
        assert_eq!(k.refusal(&none, t(1)), None);
        assert_eq!(k.refusal(&none, t(2)), Some(KeyRefusal::Expired));
        k.replaced_by = Some(ApiKeyId::new());
        assert_eq!(k.refusal(&none, t(2)), Some(KeyRefusal::RotatedOut));
        assert!(k.revoke(t(1)));
        assert!(!k.revoke(t(1)));
        assert_eq!(k.refusal(&none, t(1)), Some(KeyRefusal::Revoked));
        assert_eq!(k.state(&none, t(1)), "revoked");
    }

    #[test]
    fn quarantine_refuses_until_released_and_revocation_wins() {
        let none = RotationPolicy::default();
        let mut k = key();
        assert!(
            !k.release(),
            "a key that is not quarantined is not released"
        );
        k.quarantined_at = Some(t(1));
        k.quarantine_reason = Some("spike".into());
        assert_eq!(k.refusal(&none, t(1)), Some(KeyRefusal::Quarantined));
        assert_eq!(k.state(&none, t(1)), "quarantined");
        assert!(k.release());
        assert_eq!(
            (k.quarantined_at, k.quarantine_reason.as_deref()),
            (None, None)
        );
        assert_eq!(k.version, 2);
        assert_eq!(k.refusal(&none, t(1)), None);
        k.quarantined_at = Some(t(1));
        assert!(k.revoke(t(1)));
        assert_eq!(k.refusal(&none, t(1)), Some(KeyRefusal::Revoked));
    }

    #[test]
    fn rotation_policy_reports_then_refuses() {
        let report = RotationPolicy {
            max_key_age_days: Some(30),
            refuse_after_days: None,
        };
        let refuse = RotationPolicy {
            max_key_age_days: Some(30),
            refuse_after_days: Some(7),
        };
        let k = key();
        assert!(!k.is_overdue(&report, t(29)));
        assert!(k.is_overdue(&report, t(30)));
        assert_eq!(k.refusal(&report, t(1000)), None);
        assert_eq!(k.refusal(&refuse, t(36)), None);
        assert_eq!(k.refusal(&refuse, t(37)), Some(KeyRefusal::RotationOverdue));
        assert!(!k.is_overdue(&RotationPolicy::default(), t(1000)));
    }

    #[test]
    fn lifetime_rules() {
        assert_eq!(key_lifetime_days(None, None).unwrap(), None);
        assert_eq!(key_lifetime_days(None, Some(90)).unwrap(), Some(90));
        assert_eq!(key_lifetime_days(Some(30), Some(90)).unwrap(), Some(30));
        assert!(key_lifetime_days(Some(91), Some(90)).is_err());
        assert!(key_lifetime_days(Some(0), None).is_err());
        assert!(key_lifetime_days(Some(API_KEY_MAX_DAYS + 1), None).is_err());
    }

    #[test]
    fn account_status_moves() {
        let mut sa = ServiceAccount::new(OrgId::new(), "ci".into(), vec![], t(0));
        assert!(sa.is_usable());
        sa.set_status(ServiceAccountStatus::Disabled, t(1)).unwrap();
        assert!(!sa.is_usable());
        assert_eq!(sa.version, 2);
        sa.set_status(ServiceAccountStatus::Disabled, t(1)).unwrap();
        assert_eq!(sa.version, 2, "no-op keeps the version");
        sa.client_secret_hash = Some("h".into());
        sa.delete(t(2)).unwrap();
        assert_eq!(sa.client_secret_hash, None);
        assert!(sa.delete(t(3)).is_err());
        assert!(sa.set_status(ServiceAccountStatus::Active, t(3)).is_err());
    }
}
