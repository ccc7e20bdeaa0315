//! Users and the user lifecycle: an explicit transition table (see docs/user-lifecycle.md).

use crate::{DomainError, Email, UserId};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The seven lifecycle states. `Purged` is terminal: the row stays only as an anonymised
/// tombstone so audit references still resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    PendingVerification,
    Active,
    PasswordResetRequired,
    Suspended,
    Deactivated,
    Deleted,
    Purged,
}

/// Who or what asks for a status change. Some moves are only legal for one cause: a
/// `password_reset_required` user becomes `active` only by setting a new password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusCause {
    /// An administrator through `POST /v1/users/{id}/status` or `DELETE`.
    Admin,
    /// The user proved control of the address.
    EmailVerified,
    /// The user set a new password.
    PasswordChanged,
    /// The retention job after the restore window.
    Retention,
}

use StatusCause as C;
use UserStatus as S;

/// Every allowed move; anything not listed is refused. Restore out of `Deleted` is not here:
/// it returns to the remembered status (see [`User::restore`]).
pub const TRANSITIONS: &[(UserStatus, UserStatus, StatusCause)] = &[
    (S::PendingVerification, S::Active, C::EmailVerified),
    (S::PendingVerification, S::Suspended, C::Admin),
    (S::PendingVerification, S::Deleted, C::Admin),
    (S::Active, S::PasswordResetRequired, C::Admin),
    (S::Active, S::Suspended, C::Admin),
    (S::Active, S::Deactivated, C::Admin),
    (S::Active, S::Deleted, C::Admin),
    (S::PasswordResetRequired, S::Active, C::PasswordChanged),
    (S::PasswordResetRequired, S::Suspended, C::Admin),
    (S::PasswordResetRequired, S::Deactivated, C::Admin),
    (S::PasswordResetRequired, S::Deleted, C::Admin),
    (S::Suspended, S::Active, C::Admin),
    (S::Suspended, S::Deactivated, C::Admin),
    (S::Suspended, S::Deleted, C::Admin),
    (S::Deactivated, S::Deleted, C::Admin),
    (S::Deleted, S::Purged, C::Retention),
];

impl UserStatus {
    pub const ALL: [UserStatus; 7] = [
        S::PendingVerification,
        S::Active,
        S::PasswordResetRequired,
        S::Suspended,
        S::Deactivated,
        S::Deleted,
        S::Purged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            S::PendingVerification => "pending_verification",
            S::Active => "active",
            S::PasswordResetRequired => "password_reset_required",
            S::Suspended => "suspended",
            S::Deactivated => "deactivated",
            S::Deleted => "deleted",
            S::Purged => "purged",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                DomainError::invalid("invalid_status", format!("unknown user status {s:?}"))
            })
    }

    pub fn can_move(self, to: UserStatus, cause: StatusCause) -> bool {
        TRANSITIONS.contains(&(self, to, cause))
    }

    /// States whose sessions and tokens must stop working at once.
    pub fn cuts_off_access(self) -> bool {
        matches!(self, S::Suspended | S::Deactivated | S::Deleted | S::Purged)
    }

    /// States that may authenticate with a password (`password_reset_required` may log in
    /// only to change the password; the policy restricts what it can do).
    pub fn may_log_in(self) -> bool {
        matches!(self, S::Active | S::PasswordResetRequired)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub display_name: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub status: UserStatus,
    /// What `restore` returns to; set only while deleted.
    pub status_before_delete: Option<UserStatus>,
    pub platform_admin: bool,
    /// argon2id PHC string. Never serialised: it must not reach responses or audit events.
    #[serde(skip_serializing, default)]
    pub password_hash: Option<String>,
    /// Free-form client preferences (bounded by the HTTP layer).
    pub preferences: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub version: i64,
}

impl User {
    pub fn new(email: Email, status: UserStatus, now: DateTime<Utc>) -> Self {
        Self {
            id: UserId::new(),
            email,
            display_name: None,
            locale: None,
            timezone: None,
            status,
            status_before_delete: None,
            platform_admin: false,
            password_hash: None,
            preferences: serde_json::Value::Object(Default::default()),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            version: 1,
        }
    }

    pub fn touch(&mut self, now: DateTime<Utc>) {
        self.updated_at = now;
        self.version += 1;
    }

    /// Apply one move of the transition table.
    pub fn set_status(
        &mut self,
        to: UserStatus,
        cause: StatusCause,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        if !self.status.can_move(to, cause) {
            return Err(DomainError::Transition {
                from: self.status.as_str().into(),
                to: to.as_str().into(),
            });
        }
        if to == S::Deleted {
            self.status_before_delete = Some(self.status);
            self.deleted_at = Some(now);
        }
        self.status = to;
        self.touch(now);
        Ok(())
    }

    /// Undo a soft delete within `retention`, back to the status the user had.
    pub fn restore(&mut self, now: DateTime<Utc>, retention: Duration) -> Result<(), DomainError> {
        match (self.status, self.deleted_at, self.status_before_delete) {
            (S::Deleted, Some(at), Some(before)) if now - at <= retention => {
                self.status = before;
                self.status_before_delete = None;
                self.deleted_at = None;
                self.touch(now);
                Ok(())
            }
            _ => Err(DomainError::Transition {
                from: self.status.as_str().into(),
                to: "restored".into(),
            }),
        }
    }
}

/// BCP 47-shaped language tag such as `en`, `de-CH`, `zh-Hant-TW`.
pub fn parse_locale(raw: &str) -> Result<String, DomainError> {
    let ok = !raw.is_empty()
        && raw.len() <= 35
        && raw.split('-').enumerate().all(|(i, part)| {
            let n = part.len();
            part.chars().all(|c| c.is_ascii_alphanumeric())
                && if i == 0 {
                    (2..=3).contains(&n) && part.chars().all(|c| c.is_ascii_alphabetic())
                } else {
                    (2..=8).contains(&n)
                }
        });
    if ok {
        Ok(raw.to_string())
    } else {
        Err(DomainError::invalid(
            "invalid_locale",
            "locale must be a language tag such as en or de-CH",
        ))
    }
}

/// IANA time-zone name shape (`UTC`, `Europe/Zurich`, `America/Argentina/Buenos_Aires`).
pub fn parse_timezone(raw: &str) -> Result<String, DomainError> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw.split('/').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        });
    if ok {
        Ok(raw.to_string())
    } else {
        Err(DomainError::invalid(
            "invalid_timezone",
            "timezone must be an IANA zone name such as Europe/Zurich",
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn user(status: UserStatus) -> User {
        User::new(Email::parse("a@b.c").unwrap(), status, Utc::now())
    }

    #[test]
    fn contract_table_is_exactly_the_allowed_set() {
        // The table in CONTRACT.md, written out independently of TRANSITIONS.
        let allowed = |from: S, to: S, cause: C| -> bool {
            match (from, to) {
                (S::PendingVerification, S::Active) => cause == C::EmailVerified,
                (S::PendingVerification, S::Suspended | S::Deleted) => cause == C::Admin,
                (
                    S::Active,
                    S::PasswordResetRequired | S::Suspended | S::Deactivated | S::Deleted,
                ) => cause == C::Admin,
                (S::PasswordResetRequired, S::Active) => cause == C::PasswordChanged,
                (S::PasswordResetRequired, S::Suspended | S::Deactivated | S::Deleted) => {
                    cause == C::Admin
                }
                (S::Suspended, S::Active | S::Deactivated | S::Deleted) => cause == C::Admin,
                (S::Deactivated, S::Deleted) => cause == C::Admin,
                (S::Deleted, S::Purged) => cause == C::Retention,
                _ => false,
            }
        };
        for from in UserStatus::ALL {
            for to in UserStatus::ALL {
                for cause in [C::Admin, C::EmailVerified, C::PasswordChanged, C::Retention] {
                    assert_eq!(
                        from.can_move(to, cause),
                        allowed(from, to, cause),
                        "{from:?} -> {to:?} by {cause:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn deactivation_is_permanent() {
        let mut u = user(S::Active);
        u.set_status(S::Deactivated, C::Admin, Utc::now()).unwrap();
        for to in [S::Active, S::Suspended, S::PasswordResetRequired] {
            assert!(u.set_status(to, C::Admin, Utc::now()).is_err());
        }
    }

    #[test]
    fn restore_returns_to_previous_status_within_window() {
        let now = Utc::now();
        let mut u = user(S::Suspended);
        u.set_status(S::Deleted, C::Admin, now).unwrap();
        assert!(u
            .restore(now + Duration::days(31), Duration::days(30))
            .is_err());
        u.restore(now + Duration::days(1), Duration::days(30))
            .unwrap();
        assert_eq!(u.status, S::Suspended);
        assert!(u.deleted_at.is_none());
    }

    #[test]
    fn password_hash_never_serialises() {
        let mut u = user(S::Active);
        u.password_hash = Some("$argon2id$secret".into());
        let json = serde_json::to_string(&u).unwrap();
        assert!(!json.contains("argon2"), "{json}");
    }

    #[test]
    fn locale_and_timezone() {
        for ok in ["en", "de-CH", "zh-Hant-TW"] {
            assert!(parse_locale(ok).is_ok(), "{ok}");
        }
        for bad in ["", "e", "english-language-x", "en_US", "12"] {
            assert!(parse_locale(bad).is_err(), "{bad}");
        }
        for ok in [
            "UTC",
            "Europe/Zurich",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+3",
        ] {
            assert!(parse_timezone(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/UTC", "Europe//Zurich", "Europe/Zü rich"] {
            assert!(parse_timezone(bad).is_err(), "{bad}");
        }
    }

    fn any_status() -> impl Strategy<Value = UserStatus> {
        proptest::sample::select(UserStatus::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn random_walks_only_take_table_moves(steps in proptest::collection::vec((any_status(), 0usize..4), 0..40)) {
            let causes = [C::Admin, C::EmailVerified, C::PasswordChanged, C::Retention];
            let mut u = user(S::PendingVerification);
            for (to, c) in steps {
                let from = u.status;
                let version = u.version;
                match u.set_status(to, causes[c], Utc::now()) {
                    Ok(()) => {
                        prop_assert!(TRANSITIONS.contains(&(from, to, causes[c])));
                        prop_assert_eq!(u.version, version + 1);
                    }
                    Err(_) => {
                        prop_assert_eq!(u.status, from);
                        prop_assert_eq!(u.version, version);
                    }
                }
            }
        }
    }
}
